//! Runs taken together: which group a run falls in for a key (its `group`, a hyperparameter,
//! its tag set), each group's metric series aggregated over step-aligned buckets (mean, std,
//! min, max and how many runs each bucket holds), and the aggregate columns of the run
//! table's group rows.
//!
//! Buckets are aligned: one grid of equal-width x intervals for every run of a request, so the
//! runs' values in a bucket are values at the same steps (or times). Each run contributes to a
//! bucket the value its own line shows there (its last finite value, in step then arrival
//! order) to mean and std, and its finite min and max to min and max. NaN and ±Inf are never
//! averaged: they are counted per bucket (`nonfinite`), and a run whose bucket holds only
//! non-finite values adds to that count, not to `runs`.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::sql::Connection;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::experiments::Experiment;
use crate::store::series::{self, Axis, Series};

/// What runs are grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The run's `group`.
    Group,
    /// A hyperparameter's value.
    Hyperparam(String),
    /// The run's tags, as a sorted set.
    Tags,
}

impl Key {
    pub fn parse(raw: &str) -> Result<Key> {
        let raw = raw.trim();
        match raw {
            "group" => Ok(Key::Group),
            "tags" => Ok(Key::Tags),
            _ => match raw.strip_prefix("hp.") {
                Some(k) if !k.is_empty() && k.chars().count() <= 256 => {
                    Ok(Key::Hyperparam(k.to_string()))
                }
                _ => Err(Error::bad_request(format!(
                    "by must be 'group', 'tags' or 'hp.NAME' (a hyperparameter), not '{raw}'"
                ))),
            },
        }
    }

    /// The key as a client writes it.
    pub fn name(&self) -> String {
        match self {
            Key::Group => "group".into(),
            Key::Tags => "tags".into(),
            Key::Hyperparam(k) => format!("hp.{k}"),
        }
    }

    /// The run's value for this key; null when it has none (no group, no tags, no such
    /// hyperparameter or a null one).
    pub fn of(&self, e: &Experiment) -> Value {
        match self {
            Key::Group => e.group.clone().map_or(Value::Null, Value::String),
            Key::Tags => {
                let mut tags: Vec<String> = serde_json::from_str(&e.tags).unwrap_or_default();
                tags.sort();
                tags.dedup();
                if tags.is_empty() {
                    Value::Null
                } else {
                    Value::Array(tags.into_iter().map(Value::String).collect())
                }
            }
            Key::Hyperparam(k) => hyperparam(&e.hyperparams, k).unwrap_or(Value::Null),
        }
    }

    /// How a group with this key value is named on screen.
    pub fn label(&self, v: &Value) -> String {
        match v {
            Value::Null => match self {
                Key::Group => "(no group)".into(),
                Key::Tags => "(no tags)".into(),
                Key::Hyperparam(k) => format!("(no {k})"),
            },
            Value::String(s) => s.clone(),
            Value::Array(tags) => tags
                .iter()
                .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
}

/// The value of hyperparameter `key` in a run's hyperparameters (JSON `[{"key", "value"}]`).
fn hyperparam(json: &str, key: &str) -> Option<Value> {
    let list: Vec<Value> = serde_json::from_str(json).ok()?;
    list.into_iter()
        .find(|p| p.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|mut p| p.get_mut("value").map(Value::take))
        .filter(|v| !v.is_null())
}

/// The order groups are listed in: numbers (ascending), booleans, text, tag sets, anything
/// else, and the group of runs without the key last.
fn compare_keys(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::Bool(_) => 1,
            Value::String(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        // Tag sets: element by element, a set before the longer sets it begins.
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .map(Value::to_string)
            .cmp(y.iter().map(Value::to_string)),
        _ => a.to_string().cmp(&b.to_string()),
    })
}

/// One group: its key value and its runs, as indices into the runs partitioned, in their order.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: Value,
    pub members: Vec<usize>,
}

/// `runs` split by `key`, groups in [`compare_keys`] order. Numbers are one group when equal
/// as numbers (1 and 1.0).
pub fn partition(runs: &[Experiment], key: &Key) -> Vec<Group> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, e) in runs.iter().enumerate() {
        let value = key.of(e);
        let canonical = match &value {
            Value::Number(n) => format!("n:{}", n.as_f64().unwrap_or(f64::NAN)),
            other => other.to_string(),
        };
        let at = *index.entry(canonical).or_insert_with(|| {
            groups.push(Group {
                key: value,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        groups[at].members.push(i);
    }
    groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
    groups
}

/// The bucket grid of a request: `n` intervals of `width` from `lo`, the last ending at `hi`.
/// Bucket `i` holds x in `lo + i*width ..= lo + (i+1)*width - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    lo: i64,
    hi: i64,
    width: i128,
    n: usize,
}

impl Grid {
    /// At most `points` buckets covering `lo..=hi` (None when the range is empty), each at
    /// least one x wide, so a short series gets one bucket per step.
    pub fn new(lo: i64, hi: i64, points: usize) -> Option<Grid> {
        if lo > hi || points == 0 {
            return None;
        }
        let span = i128::from(hi) - i128::from(lo) + 1;
        let points = points as i128;
        let width = ((span + points - 1) / points).max(1);
        let n = ((span + width - 1) / width) as usize;
        Some(Grid { lo, hi, width, n })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn bucket(&self, x: i64) -> Option<usize> {
        if x < self.lo || x > self.hi {
            return None;
        }
        // x - lo fits in a u64 whatever the range; so does the width unless one bucket spans
        // every i64 (points = 1 over the whole range), where 128-bit division is rare enough.
        let offset = x.wrapping_sub(self.lo) as u64;
        Some(match u64::try_from(self.width) {
            Ok(w) => (offset / w) as usize,
            Err(_) => (u128::from(offset) / self.width as u128) as usize,
        })
    }

    /// The x a bucket is drawn at: its last x (the range's end for the last bucket).
    pub fn x(&self, i: usize) -> i64 {
        let end = i128::from(self.lo) + (i as i128 + 1) * self.width - 1;
        end.min(i128::from(self.hi)) as i64
    }
}

/// One group's aggregate of one metric: the buckets where some run had a point, in x order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub name: String,
    pub x: Vec<i64>,
    /// Over the runs' last finite values in the bucket.
    pub mean: Vec<Option<f64>>,
    /// Population standard deviation (divided by the number of runs) of the same values.
    pub std: Vec<Option<f64>>,
    /// Over every finite value of every run in the bucket.
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
    /// Runs with a finite value in the bucket: the values mean and std are over.
    pub runs: Vec<i64>,
    /// NaN and ±Inf points in the bucket, all runs together.
    pub nonfinite: Vec<i64>,
}

/// What one run has in one bucket.
#[derive(Debug, Clone, Copy)]
struct Cell {
    finite: bool,
    nonfinite: i64,
    min: f64,
    max: f64,
    last: f64,
    /// (x, seq) of `last`: the line's value is the latest finite one.
    last_at: (i64, i64),
}

const EMPTY: Cell = Cell {
    finite: false,
    nonfinite: 0,
    min: f64::INFINITY,
    max: f64::NEG_INFINITY,
    last: 0.0,
    last_at: (i64::MIN, i64::MIN),
};

impl Cell {
    fn add(&mut self, x: i64, seq: i64, v: f64) {
        if !v.is_finite() {
            self.nonfinite += 1;
            return;
        }
        self.finite = true;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if (x, seq) >= self.last_at {
            self.last_at = (x, seq);
            self.last = v;
        }
    }
}

/// A group's running totals in one bucket (Welford's mean and sum of squared deviations).
#[derive(Debug, Clone, Copy)]
struct Acc {
    runs: i64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    nonfinite: i64,
}

const ZERO: Acc = Acc {
    runs: 0,
    mean: 0.0,
    m2: 0.0,
    min: f64::INFINITY,
    max: f64::NEG_INFINITY,
    nonfinite: 0,
};

impl Acc {
    fn add(&mut self, c: &Cell) {
        self.nonfinite += c.nonfinite;
        if !c.finite {
            return;
        }
        self.runs += 1;
        let d = c.last - self.mean;
        self.mean += d / self.runs as f64;
        self.m2 += d * (c.last - self.mean);
        self.min = self.min.min(c.min);
        self.max = self.max.max(c.max);
    }
}

/// What a grouped chart asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub names: Vec<String>,
    pub axis: Axis,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub points: usize,
}

/// The metric series `names` of each run (None where a run has no such metric), by run.
pub fn series_of(
    conn: &Connection,
    runs: &[Experiment],
    names: &[String],
) -> Result<Vec<Vec<Option<Series>>>> {
    runs.iter()
        .map(|e| {
            names
                .iter()
                .map(|n| series::metric_named(conn, e.rowid, n))
                .collect()
        })
        .collect()
}

/// Calls `each(x, seq, value)` for every point of `s` (run `e`) whose x may be in
/// `lo..=hi` (and some outside it, which the caller leaves out): by step, only the blocks from
/// the first to the last that reach those steps are decoded. A series retention compacted has
/// no points left: each block's last one stands for it.
fn each_point(
    conn: &Connection,
    e: &Experiment,
    s: &Series,
    axis: Axis,
    lo: i64,
    hi: i64,
    mut each: impl FnMut(i64, i64, f64),
) -> Result<()> {
    let (steps_lo, steps_hi) = match axis {
        Axis::Step => (lo, hi),
        Axis::Time => (i64::MIN, i64::MAX),
    };
    if s.compacted_at.is_some() {
        // Its points are gone: each block's last point stands for the block.
        return series::scan_block_ends(conn, s, steps_lo, steps_hi, |step, t, seq, v| {
            let x = match axis {
                Axis::Step => step,
                Axis::Time => t.saturating_add(e.created_at),
            };
            each(x, seq, v);
        });
    }
    series::scan_points(conn, s, steps_lo, steps_hi, |p| {
        let x = match axis {
            Axis::Step => p.step,
            Axis::Time => p.t.saturating_add(e.created_at),
        };
        each(x, p.seq, p.value);
    })
}

/// The x range a request covers: `from`/`to` where given, else the series' own extent (by
/// step from their summaries, by time from their block rows).
fn range(
    conn: &Connection,
    runs: &[Experiment],
    found: &[Vec<Option<Series>>],
    req: &Request,
) -> Result<Option<(i64, i64)>> {
    if let (Some(lo), Some(hi)) = (req.from, req.to) {
        return Ok(Some((lo, hi)));
    }
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (e, list) in runs.iter().zip(found) {
        for s in list.iter().flatten() {
            match req.axis {
                Axis::Step => {
                    if let (Some(f), Some(l)) = (s.first_step, s.last_step) {
                        lo = lo.min(f);
                        hi = hi.max(l);
                    }
                }
                Axis::Time => {
                    if let Some((f, l)) = series::time_extent(conn, s)? {
                        lo = lo.min(f.saturating_add(e.created_at));
                        hi = hi.max(l.saturating_add(e.created_at));
                    }
                }
            }
        }
    }
    let lo = req.from.unwrap_or(lo);
    let hi = req.to.unwrap_or(hi);
    Ok((lo <= hi).then_some((lo, hi)))
}

/// Each group's aggregate of each of `req.names` (in that order), over one grid for all runs.
/// `found` is [`series_of`] for `runs`; `groups` index into `runs`.
pub fn aggregate(
    conn: &Connection,
    runs: &[Experiment],
    found: &[Vec<Option<Series>>],
    groups: &[Group],
    req: &Request,
) -> Result<Vec<Vec<Aggregate>>> {
    let empty = || {
        groups
            .iter()
            .map(|_| {
                req.names
                    .iter()
                    .map(|n| Aggregate {
                        name: n.clone(),
                        ..Aggregate::default()
                    })
                    .collect()
            })
            .collect()
    };
    let Some((lo, hi)) = range(conn, runs, found, req)? else {
        return Ok(empty());
    };
    let Some(grid) = Grid::new(lo, hi, req.points) else {
        return Ok(empty());
    };
    let mut cells = vec![EMPTY; grid.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut per_name = Vec::with_capacity(req.names.len());
        for (k, name) in req.names.iter().enumerate() {
            let mut accs = vec![ZERO; grid.len()];
            for &r in &g.members {
                let Some(s) = &found[r][k] else {
                    continue;
                };
                each_point(conn, &runs[r], s, req.axis, lo, hi, |x, seq, v| {
                    if let Some(i) = grid.bucket(x) {
                        if !cells[i].finite && cells[i].nonfinite == 0 {
                            touched.push(i);
                        }
                        cells[i].add(x, seq, v);
                    }
                })?;
                for &i in &touched {
                    accs[i].add(&cells[i]);
                    cells[i] = EMPTY;
                }
                touched.clear();
            }
            per_name.push(finish(name, &grid, &accs));
        }
        out.push(per_name);
    }
    Ok(out)
}

fn finish(name: &str, grid: &Grid, accs: &[Acc]) -> Aggregate {
    let mut a = Aggregate {
        name: name.to_string(),
        ..Aggregate::default()
    };
    let finite = |v: f64| v.is_finite().then_some(v);
    for (i, acc) in accs.iter().enumerate() {
        if acc.runs == 0 && acc.nonfinite == 0 {
            continue;
        }
        a.x.push(grid.x(i));
        let some = acc.runs > 0;
        a.mean.push(if some { finite(acc.mean) } else { None });
        a.std.push(if some {
            finite((acc.m2 / acc.runs as f64).max(0.0).sqrt())
        } else {
            None
        });
        a.min.push(if some { finite(acc.min) } else { None });
        a.max.push(if some { finite(acc.max) } else { None });
        a.runs.push(acc.runs);
        a.nonfinite.push(acc.nonfinite);
    }
    a
}

/// A column of the run table: `hp.KEY`, `result.NAME` or `metric.NAME` (its last value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Hyperparam(String),
    Result(String),
    Metric(String),
}

impl Column {
    pub fn parse(raw: &str) -> Result<Column> {
        let raw = raw.trim();
        let (kind, name) = raw.split_once('.').unwrap_or((raw, ""));
        if name.is_empty() || name.chars().count() > 256 {
            return Err(Error::bad_request(format!(
                "a column is hp.KEY, result.NAME or metric.NAME, not '{raw}'"
            )));
        }
        match kind {
            "hp" => Ok(Column::Hyperparam(name.into())),
            "result" => Ok(Column::Result(name.into())),
            "metric" => Ok(Column::Metric(name.into())),
            _ => Err(Error::bad_request(format!(
                "a column is hp.KEY, result.NAME or metric.NAME, not '{raw}'"
            ))),
        }
    }
}

/// Each run's finite number in `col`, if it has one: a numeric hyperparameter, a result's or
/// a metric's last value (NaN and ±Inf count as none).
pub fn column_values(
    conn: &Connection,
    runs: &[Experiment],
    col: &Column,
) -> Result<Vec<Option<f64>>> {
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let (kind, name) = match col {
        Column::Hyperparam(k) => {
            return Ok(runs
                .iter()
                .map(|e| finite(hyperparam(&e.hyperparams, k).and_then(|v| v.as_f64())))
                .collect());
        }
        Column::Result(n) => (1, n),
        Column::Metric(n) => (0, n),
    };
    let rowids = serde_json::to_string(&runs.iter().map(|e| e.rowid).collect::<Vec<_>>())
        .map_err(|e| Error::Internal(format!("run ids: {e}")))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT experiment_id, last_value FROM series
         WHERE kind = ?1 AND name = ?2 AND experiment_id IN (SELECT CAST(r.value AS BIGINT) FROM {})",
        conn.dialect().json_elements("?3", "r")
    ))?;
    let values: HashMap<i64, Option<f64>> = stmt
        .query_map(crate::sql::params![kind, name, rowids], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<crate::sql::Result<_>>()?;
    Ok(runs
        .iter()
        .map(|e| finite(values.get(&e.rowid).copied().flatten()))
        .collect())
}

/// Count, mean, min and max of some numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stat {
    pub count: i64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The [`Stat`] of the values of `members` (indices into `values`) that are there.
pub fn stat(values: &[Option<f64>], members: &[usize]) -> Stat {
    let mut s = Stat::default();
    let mut mean = 0.0;
    for v in members.iter().filter_map(|&i| values[i]) {
        s.count += 1;
        mean += (v - mean) / s.count as f64;
        s.min = Some(s.min.map_or(v, |m| m.min(v)));
        s.max = Some(s.max.map_or(v, |m| m.max(v)));
    }
    if s.count > 0 {
        s.mean = Some(mean).filter(|m| m.is_finite());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_covers_the_range_with_at_most_the_buckets_asked_for() {
        for (lo, hi, points) in [
            (0, 9_999, 300),
            (0, 0, 300),
            (5, 104, 300),
            (-7, 1_000_003, 7),
            (i64::MIN, i64::MAX, 1000),
            (i64::MIN, i64::MAX, 1),
            (i64::MIN, i64::MAX, 2),
            (3, 10, 1),
        ] {
            let g = Grid::new(lo, hi, points).unwrap();
            assert!(g.len() <= points && !g.is_empty(), "{lo} {hi} {points}");
            assert_eq!(g.bucket(lo), Some(0));
            assert_eq!(g.bucket(hi), Some(g.len() - 1));
            assert_eq!(g.x(g.len() - 1), hi);
            assert_eq!(g.bucket(g.x(0)), Some(0));
            if g.len() > 1 {
                assert_eq!(g.bucket(g.x(0).saturating_add(1)), Some(1));
            }
            if lo > i64::MIN {
                assert_eq!(g.bucket(lo - 1), None);
            }
        }
        // Fewer steps than buckets: one bucket per step.
        let g = Grid::new(5, 104, 300).unwrap();
        assert_eq!(g.len(), 100);
        assert_eq!((g.x(0), g.x(99)), (5, 104));
        assert!(Grid::new(5, 4, 10).is_none());
    }

    #[test]
    fn groups_come_in_key_order_with_missing_last() {
        let key = |v: Value| Group {
            key: v,
            members: vec![],
        };
        let mut g = [
            key(Value::Null),
            key(serde_json::json!("b")),
            key(serde_json::json!(10)),
            key(serde_json::json!(2.5)),
            key(serde_json::json!(["x", "y"])),
            key(serde_json::json!(["x"])),
            key(serde_json::json!("a")),
        ];
        g.sort_by(|a, b| compare_keys(&a.key, &b.key));
        let keys: Vec<Value> = g.iter().map(|g| g.key.clone()).collect();
        assert_eq!(
            keys,
            serde_json::json!([2.5, 10, "a", "b", ["x"], ["x", "y"], null])
                .as_array()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn stat_skips_the_runs_without_a_value() {
        let values = [Some(1.0), None, Some(3.0), Some(-2.0)];
        let s = stat(&values, &[0, 1, 2]);
        assert_eq!(
            s,
            Stat {
                count: 2,
                mean: Some(2.0),
                min: Some(1.0),
                max: Some(3.0)
            }
        );
        assert_eq!(stat(&values, &[1]), Stat::default());
    }
}
