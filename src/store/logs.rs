//! Logged points: metrics (with a step) and results, stored through the series they belong to
//! (`series.rs` keeps the blocks, `packed.rs` the bytes). See `schema.sql` for the layout and why.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::store::experiments::Experiment;
use crate::store::packed::Point;
use crate::store::series;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Metric = 0,
    Result = 1,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Metric => "metric",
            Kind::Result => "result",
        }
    }
}

/// A client's id for one log, the key of exactly-once delivery. UUIDs are stored as 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MsgId {
    Uuid([u8; 16]),
    Text(String),
}

impl MsgId {
    pub fn parse(s: &str) -> MsgId {
        match uuid::Uuid::try_parse(s) {
            Ok(u) => MsgId::Uuid(*u.as_bytes()),
            Err(_) => MsgId::Text(s.to_string()),
        }
    }

    pub fn random() -> MsgId {
        MsgId::Uuid(*uuid::Uuid::new_v4().as_bytes())
    }

    /// A msg_id as the version-1 `logs` table stored it (read by the migration).
    pub fn read(v: rusqlite::types::ValueRef) -> Option<MsgId> {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Blob(b) if b.len() == 16 => {
                Some(MsgId::Uuid(b.try_into().unwrap_or([0; 16])))
            }
            ValueRef::Text(t) => Some(MsgId::Text(String::from_utf8_lossy(t).into_owned())),
            _ => None,
        }
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MsgId::Uuid(b) => write!(f, "{}", uuid::Uuid::from_bytes(*b)),
            MsgId::Text(t) => f.write_str(t),
        }
    }
}

/// One validated log, ready to store.
#[derive(Debug, Clone)]
pub struct NewLog {
    /// None: the client gave no id, so the point is never taken for a resend.
    pub msg_id: Option<MsgId>,
    /// Shared by every point of a columnar batch's metric, so a point costs no name copy.
    pub name: Arc<str>,
    pub kind: Kind,
    pub step: Option<i64>,
    pub value: f64,
    /// Metadata beyond `type`, as JSON text; None for the usual `{"type": ..}` or no metadata.
    pub extra_metadata: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    pub inserted: usize,
    pub skipped: usize,
    /// (index in the batch, id given) of every stored log, in order.
    pub stored: Vec<(usize, i64)>,
}

/// Stores `logs` in order. A log with a msg_id whose (name, kind, step, msg_id) is already
/// stored is skipped, so a client that resends a batch after a lost reply changes nothing.
pub fn insert(conn: &Connection, exp: &Experiment, logs: &[NewLog], now: i64) -> Result<Inserted> {
    let known = series::list(conn, exp.rowid)?;
    // One name map per kind, so looking a name up borrows it instead of cloning it.
    let mut ids: [HashMap<String, i64>; 2] = [HashMap::new(), HashMap::new()];
    for s in &known {
        ids[s.kind as usize].insert(s.name.clone(), s.id);
    }
    let mut tracker = series::Tracker::new(known);
    let mut next_seq: i64 = conn
        .prepare_cached("SELECT next_seq FROM experiments WHERE id = ?1")?
        .query_row([exp.rowid], |r| r.get(0))?;
    let t = now - exp.created_at;

    let mut new_series = conn.prepare_cached(
        "INSERT INTO series (experiment_id, kind, name) VALUES (?1, ?2, ?3) RETURNING id",
    )?;
    let mut metadata = conn.prepare_cached(
        "INSERT INTO log_metadata (experiment_id, seq, metadata) VALUES (?1, ?2, ?3)",
    )?;

    // Resolve every log's series first (creating new ones), so the loop below only stores.
    let mut series_of = Vec::with_capacity(logs.len());
    // Per series, the step range of this batch's logs that carry a msg_id.
    let mut id_range: HashMap<i64, (i64, i64)> = HashMap::new();
    for log in logs {
        let id = match ids[log.kind as usize].get(&*log.name) {
            Some(id) => *id,
            None => {
                let id: i64 = new_series
                    .query_row(params![exp.rowid, log.kind as i64, &*log.name], |r| {
                        r.get(0)
                    })?;
                ids[log.kind as usize].insert(log.name.to_string(), id);
                tracker.add_series(id, log.kind, log.name.to_string());
                id
            }
        };
        if log.msg_id.is_some() {
            let step = log.step.unwrap_or(-1);
            let r = id_range.entry(id).or_insert((step, step));
            *r = (r.0.min(step), r.1.max(step));
        }
        series_of.push(id);
    }

    // The ids a resent log would match: stored points with a msg_id in those step ranges (none
    // at all for the usual batch, whose steps are all past what is stored), then this batch's
    // own as they are stored.
    let mut seen: HashSet<(i64, i64, MsgId)> = HashSet::new();
    for (id, (lo, hi)) in id_range {
        // Nothing is added to the tracker yet, so it still holds the series as stored.
        let Some(s) = tracker.series(id) else {
            continue;
        };
        let past_the_end = s.kind == Kind::Metric && s.last_step.is_none_or(|last| lo > last);
        if s.count == 0 || past_the_end {
            continue;
        }
        for (step, msg_id) in series::stored_ids(conn, s, lo, hi)? {
            seen.insert((id, step, msg_id));
        }
    }

    let mut out = Inserted::default();
    for (index, log) in logs.iter().enumerate() {
        let series_id = series_of[index];
        let step = log.step.unwrap_or(-1);
        if let Some(msg_id) = &log.msg_id
            && !seen.insert((series_id, step, msg_id.clone()))
        {
            out.skipped += 1;
            continue;
        }
        if let Some(extra) = &log.extra_metadata {
            metadata.execute(params![exp.rowid, next_seq, extra])?;
        }
        let point = Point {
            step,
            seq: next_seq,
            t,
            value: log.value,
            msg_id: log.msg_id.clone(),
        };
        tracker.add(conn, series_id, point)?;
        out.stored.push((index, next_seq));
        next_seq += 1;
        out.inserted += 1;
    }
    if out.inserted > 0 {
        tracker.save(conn, now)?;
        conn.prepare_cached("UPDATE experiments SET next_seq = ?2 WHERE id = ?1")?
            .execute(params![exp.rowid, next_seq])?;
    }
    Ok(out)
}

/// Records that `batch_id` is being stored in `exp`; false if it was stored before (a resend).
/// Called in the batch's own transaction, so the id is kept exactly when its points are.
pub fn claim_batch(conn: &Connection, exp: &Experiment, batch_id: &str) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO batches (experiment_id, batch_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![exp.rowid, batch_id])?;
    Ok(added == 1)
}

/// Schema 1 to 2: moves every point of the one-row-per-point `logs` table into packed blocks,
/// series by series in arrival order (so block numbers and summaries stay as they were), then
/// drops the table.
pub fn pack_v1_logs(conn: &Connection) -> Result<()> {
    let series: Vec<i64> = conn
        .prepare("SELECT id FROM series ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut rows = conn.prepare_cached(
        "SELECT step, seq, t, value, msg_id FROM logs WHERE series_id = ?1 ORDER BY seq",
    )?;
    for id in series {
        let points: Vec<Point> = rows
            .query_map([id], |r| {
                Ok(Point {
                    step: r.get(0)?,
                    seq: r.get(1)?,
                    t: r.get(2)?,
                    // Version 1 stored NaN as NULL.
                    value: r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
                    msg_id: MsgId::read(r.get_ref(4)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        series::rebuild_blocks(conn, id, &points)?;
    }
    drop(rows);
    conn.execute_batch("DROP TABLE logs")?;
    Ok(())
}

/// A stored log as clients see it.
#[derive(Debug, Clone)]
pub struct Log {
    pub seq: i64,
    pub msg_id: Option<MsgId>,
    pub name: String,
    pub kind: Kind,
    pub step: Option<i64>,
    pub value: f64,
    pub extra_metadata: Option<String>,
    pub created_at: i64,
}

/// Which logs to read, and in what order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Everything, in the order it was stored.
    All,
    /// Metrics, by step (then name).
    Metrics,
    /// Results, in the order they were stored.
    Results,
}

pub fn list(conn: &Connection, exp: &Experiment, which: Selection) -> Result<Vec<Log>> {
    let mut extra: HashMap<i64, String> = HashMap::new();
    let mut stmt =
        conn.prepare_cached("SELECT seq, metadata FROM log_metadata WHERE experiment_id = ?1")?;
    let rows = stmt.query_map([exp.rowid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    for row in rows {
        let (seq, metadata) = row?;
        extra.insert(seq, metadata);
    }
    let mut out = Vec::new();
    for s in series::list(conn, exp.rowid)? {
        let wanted = match which {
            Selection::All => true,
            Selection::Metrics => s.kind == Kind::Metric,
            Selection::Results => s.kind == Kind::Result,
        };
        if !wanted || s.count == 0 {
            continue;
        }
        for p in series::points(conn, &s, i64::MIN, i64::MAX, true)? {
            out.push(Log {
                seq: p.seq,
                msg_id: p.msg_id,
                name: s.name.clone(),
                kind: s.kind,
                step: (p.step >= 0).then_some(p.step),
                value: p.value,
                extra_metadata: extra.remove(&p.seq),
                created_at: exp.created_at + p.t,
            });
        }
    }
    match which {
        Selection::Metrics => {
            out.sort_by(|a, b| (a.step, &a.name, a.seq).cmp(&(b.step, &b.name, b.seq)))
        }
        _ => out.sort_by_key(|l| l.seq),
    }
    Ok(out)
}

/// A log as the live stream sends it.
#[derive(Debug, Clone)]
pub struct Recent {
    pub seq: i64,
    pub name: Arc<str>,
    pub kind: Kind,
    pub step: Option<i64>,
    pub value: f64,
    pub created_at: i64,
}

/// Every log stored after `cursor` (an id), in id order: what a reconnecting stream missed.
pub fn since(conn: &Connection, exp: &Experiment, cursor: i64) -> Result<Vec<Recent>> {
    let mut out = Vec::new();
    for s in series::list(conn, exp.rowid)? {
        if s.count == 0 {
            continue;
        }
        let name: Arc<str> = s.name.as_str().into();
        out.extend(
            series::points_after(conn, &s, cursor)?
                .into_iter()
                .map(|p| Recent {
                    seq: p.seq,
                    name: name.clone(),
                    kind: s.kind,
                    step: (p.step >= 0).then_some(p.step),
                    value: p.value,
                    created_at: exp.created_at + p.t,
                }),
        );
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// The id of the newest log (0 before the first).
pub fn last_seq(conn: &Connection, exp: &Experiment) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT next_seq - 1 FROM experiments WHERE id = ?1")?
        .query_row([exp.rowid], |r| r.get(0))?)
}

/// One CSV row of an export.
pub struct CsvRow<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub step: Option<i64>,
    pub value: f64,
    pub created_at: i64,
}

/// Feeds every log of `exp` to `each`, grouped by kind and name, in step order, holding one
/// series in memory at a time. `each` returning an error stops the walk.
pub fn for_each_csv_row(
    conn: &Connection,
    exp: &Experiment,
    mut each: impl FnMut(CsvRow<'_>) -> Result<()>,
) -> Result<()> {
    for s in series::list(conn, exp.rowid)? {
        for p in series::points(conn, &s, i64::MIN, i64::MAX, false)? {
            each(CsvRow {
                name: &s.name,
                kind: s.kind,
                step: (p.step >= 0).then_some(p.step),
                value: p.value,
                created_at: exp.created_at + p.t,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(conn: &Connection) -> Experiment {
        crate::store::test_experiment(conn)
    }

    fn metric(msg: &str, name: &str, step: i64, value: f64) -> NewLog {
        NewLog {
            msg_id: Some(MsgId::parse(msg)),
            name: name.into(),
            kind: Kind::Metric,
            step: Some(step),
            value,
            extra_metadata: None,
        }
    }

    #[test]
    fn a_resent_batch_is_skipped_not_duplicated() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        let batch = vec![
            metric("6f1c1f0e-8b3a-4c59-9d1e-1a2b3c4d5e6f", "loss", 0, 1.0),
            metric("client-7", "loss", 1, 0.5),
        ];
        assert_eq!(
            insert(&conn, &exp, &batch, 2_000).unwrap(),
            Inserted {
                inserted: 2,
                skipped: 0,
                stored: vec![(0, 1), (1, 2)]
            }
        );
        let mut again = batch.clone();
        again.push(metric("client-8", "loss", 2, 0.25));
        assert_eq!(
            insert(&conn, &exp, &again, 3_000).unwrap(),
            Inserted {
                inserted: 1,
                skipped: 2,
                stored: vec![(2, 3)]
            }
        );

        let logs = list(&conn, &exp, Selection::All).unwrap();
        let seqs: Vec<i64> = logs.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(
            logs[0].msg_id.as_ref().unwrap().to_string(),
            "6f1c1f0e-8b3a-4c59-9d1e-1a2b3c4d5e6f"
        );
        assert_eq!(logs[1].msg_id.as_ref().unwrap().to_string(), "client-7");
        assert_eq!(logs[2].created_at, 3_000);
    }

    #[test]
    fn large_resent_batches_skip_exactly_the_stored_points() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        let batch: Vec<NewLog> = (0..300)
            .map(|i| metric(&format!("m-{i}"), "loss", i, i as f64))
            .collect();
        // The first 200 arrive, the reply is lost, the client resends all 300 (plus a repeat of
        // one point inside the batch itself).
        let first = insert(&conn, &exp, &batch[..200], 2_000).unwrap();
        assert_eq!((first.inserted, first.skipped), (200, 0));
        let mut again = batch.clone();
        again.insert(250, batch[260].clone());
        let second = insert(&conn, &exp, &again, 3_000).unwrap();
        assert_eq!((second.inserted, second.skipped), (100, 201));
        let logs = list(&conn, &exp, Selection::Metrics).unwrap();
        assert_eq!(logs.len(), 300);
        assert_eq!(
            logs.iter().map(|l| l.step.unwrap()).collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>()
        );
        let mut ids: Vec<i64> = logs.iter().map(|l| l.seq).collect();
        ids.sort();
        assert_eq!(
            ids,
            (1..=300).collect::<Vec<_>>(),
            "ids stay dense: skipped points use none"
        );
        let s = crate::store::series::list(&conn, exp.rowid)
            .unwrap()
            .remove(0);
        assert_eq!(s.count, 300, "the summary counts each point once");
    }

    #[test]
    fn non_finite_values_round_trip() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        let batch = vec![
            metric("a", "x", 0, f64::NAN),
            metric("b", "x", 1, f64::INFINITY),
            metric("c", "x", 2, f64::NEG_INFINITY),
            metric("d", "x", 3, -0.5),
        ];
        insert(&conn, &exp, &batch, 2_000).unwrap();
        let values: Vec<f64> = list(&conn, &exp, Selection::Metrics)
            .unwrap()
            .iter()
            .map(|l| l.value)
            .collect();
        assert!(values[0].is_nan());
        assert_eq!(&values[1..], &[f64::INFINITY, f64::NEG_INFINITY, -0.5]);
    }

    #[test]
    fn metrics_come_back_by_step_and_results_apart() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        let mut batch = vec![metric("m2", "acc", 5, 0.9), metric("m1", "acc", 1, 0.1)];
        batch.push(NewLog {
            msg_id: Some(MsgId::parse("r")),
            name: "acc".into(),
            kind: Kind::Result,
            step: None,
            value: 0.95,
            extra_metadata: Some(r#"{"type":"result","split":"test"}"#.into()),
        });
        insert(&conn, &exp, &batch, 2_000).unwrap();
        let steps: Vec<Option<i64>> = list(&conn, &exp, Selection::Metrics)
            .unwrap()
            .iter()
            .map(|l| l.step)
            .collect();
        assert_eq!(steps, vec![Some(1), Some(5)]);
        let results = list(&conn, &exp, Selection::Results).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].step, None);
        assert_eq!(
            results[0].extra_metadata.as_deref(),
            Some(r#"{"type":"result","split":"test"}"#)
        );
    }
}
