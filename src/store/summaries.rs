//! A run's series summaries read a bounded page at a time: the run page's `/summary` (paged by
//! name, narrowed by prefix or search) and the run table's `summary=1` (the first few of each
//! kind per run, plus the ones its columns name). Both walk the `series` UNIQUE index
//! (experiment_id, kind, name), so a run with 10,000 metric names costs a page, not 10,000 rows.

use std::collections::HashMap;

use crate::sql::{Connection, Row, params};

use super::logs::Kind;
use super::series::Series;
use crate::error::Result;

const COLUMNS: &str = "kind, name, count, nonfinite, first_step, last_step, last_value, min_value, max_value, ordered, updated_at, id, compacted_at";

fn from_row(r: &Row) -> crate::sql::Result<Series> {
    let count: i64 = r.get(2)?;
    let last: Option<f64> = r.get(6)?;
    Ok(Series {
        kind: if r.get::<_, i64>(0)? == 1 {
            Kind::Result
        } else {
            Kind::Metric
        },
        name: r.get(1)?,
        count,
        nonfinite: r.get(3)?,
        first_step: r.get(4)?,
        last_step: r.get(5)?,
        // NULL is how a NaN last value is stored (as `series::list` reads it).
        last_value: if count > 0 {
            Some(last.unwrap_or(f64::NAN))
        } else {
            None
        },
        min_value: r.get(7)?,
        max_value: r.get(8)?,
        ordered: r.get::<_, i64>(9)? != 0,
        updated_at: r.get(10)?,
        id: r.get(11)?,
        compacted_at: r.get(12)?,
        // Summaries never need a metric's open unit (charts read it through `series::list`).
        open_unit: None,
    })
}

/// Which names a page holds: those starting with `prefix` and containing `search` (ASCII case
/// ignored, as SQLite's `lower`), when given.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub prefix: Option<String>,
    pub search: Option<String>,
}

/// Where a page starts: after this (kind, name). Metrics come before results.
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    pub kind: Kind,
    pub name: String,
}

pub struct Page {
    /// Metrics by name, then results by name.
    pub series: Vec<Series>,
    /// Where the next page starts; None on the last.
    pub next: Option<After>,
    /// How many metrics and results match `Names` in all.
    pub metrics_total: i64,
    pub results_total: i64,
}

/// One page of at most `limit` of the series of `experiment` that match `names`, after `after`.
pub fn page(
    conn: &Connection,
    experiment: i64,
    names: &Names,
    after: Option<&After>,
    limit: usize,
) -> Result<Page> {
    use crate::sql::types::Value as Sql;
    let mut args: Vec<Sql> = vec![Sql::Integer(experiment)];
    let mut clause = String::from("experiment_id = ?1");
    if let Some(p) = &names.prefix {
        args.push(Sql::Text(p.clone()));
        clause += &format!(
            " AND substr(name, 1, length(CAST(?{0} AS TEXT))) = ?{0}",
            args.len()
        );
    }
    if let Some(s) = &names.search {
        args.push(Sql::Text(s.to_ascii_lowercase()));
        clause += &format!(" AND instr(lower(name), ?{}) > 0", args.len());
    }
    let mut totals = [0i64; 2];
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT kind, count(*) FROM series WHERE {clause} GROUP BY kind"
        ))?;
        let mut rows = stmt.query(crate::sql::params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let kind: i64 = r.get(0)?;
            totals[usize::from(kind == 1)] = r.get(1)?;
        }
    }
    if let Some(a) = after {
        args.push(Sql::Integer(a.kind as i64));
        args.push(Sql::Text(a.name.clone()));
        // A row value: SQLite walks the (experiment_id, kind, name) index from there.
        clause += &format!(" AND (kind, name) > (?{}, ?{})", args.len() - 1, args.len());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM series WHERE {clause} ORDER BY kind, name LIMIT {}",
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(crate::sql::params_from_iter(args.iter()), from_row)?;
    let mut series: Vec<Series> = rows.collect::<crate::sql::Result<_>>()?;
    let next = if series.len() > limit {
        series.truncate(limit);
        series.last().map(|s| After {
            kind: s.kind,
            name: s.name.clone(),
        })
    } else {
        None
    };
    Ok(Page {
        series,
        next,
        metrics_total: totals[0],
        results_total: totals[1],
    })
}

/// What the run table gets of one run: some of its series, and whether it has more.
#[derive(Debug, Default)]
pub struct Brief {
    pub series: Vec<Series>,
    /// The run has series beyond the first `per_kind` of a kind that `names` did not ask for.
    pub partial: bool,
}

/// For each of `experiments`: its first `per_kind` metrics and first `per_kind` results by
/// name, plus those of `named` (kind, name) it has; each run's series ordered by kind, name.
/// At most `experiments.len() × (2 × per_kind + named.len())` rows, whatever the runs hold.
pub fn briefs(
    conn: &Connection,
    experiments: &[i64],
    per_kind: usize,
    named: &[(Kind, String)],
) -> Result<HashMap<i64, Brief>> {
    let mut first = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM series WHERE experiment_id = ?1 AND kind = ?2 ORDER BY name LIMIT ?3"
    ))?;
    let mut one = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM series WHERE experiment_id = ?1 AND kind = ?2 AND name = ?3"
    ))?;
    let mut out = HashMap::with_capacity(experiments.len());
    for &e in experiments {
        let mut brief = Brief::default();
        for kind in [Kind::Metric, Kind::Result] {
            let rows = first.query_map(params![e, kind as i64, per_kind as i64 + 1], from_row)?;
            let mut list: Vec<Series> = rows.collect::<crate::sql::Result<_>>()?;
            let cut = list.len() > per_kind;
            if cut {
                list.truncate(per_kind);
                brief.partial = true;
            }
            // Runs with no more than `per_kind` of a kind have them all listed already.
            let last = list.last().map(|s| s.name.clone());
            for (k, name) in named {
                let listed = last.as_ref().is_some_and(|l| name <= l);
                if *k != kind || !cut || listed {
                    continue;
                }
                if let Some(s) = one
                    .query_map(params![e, kind as i64, name], from_row)?
                    .next()
                    .transpose()?
                {
                    list.push(s);
                }
            }
            list.sort_by(|a, b| a.name.cmp(&b.name));
            brief.series.extend(list);
        }
        out.insert(e, brief);
    }
    Ok(out)
}
