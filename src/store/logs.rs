//! Logged points: metrics (with a step) and results, stored through the series they belong to
//! (`series.rs` keeps the blocks, `packed.rs` the bytes). See `schema.sql` for the layout and why.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::sql::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

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
    pub fn read(v: crate::sql::types::ValueRef) -> Option<MsgId> {
        use crate::sql::types::ValueRef;
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
    /// When the client says it took the point (ms since the epoch; MLflow's `timestamp`, the
    /// `times` of a columnar batch), kept as its time since the run began: from 0 (an earlier
    /// time) to a day past now (`time::MAX_AHEAD_MS`, for a client clock ahead of ours). None:
    /// when it is stored.
    pub at: Option<i64>,
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
    // Read in this write transaction, so a run compacted a moment ago is seen; first, and with
    // the run's row locked on PostgreSQL: two servers storing into one run take turns, and the
    // second reads the first's series, seqs and msg_ids below.
    let (mut next_seq, compacted_at): (i64, Option<i64>) = conn
        .prepare_cached(&format!(
            "SELECT next_seq, compacted_at FROM experiments WHERE id = ?1{}",
            conn.dialect().for_update()
        ))?
        .query_row([exp.rowid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let known = series::list(conn, exp.rowid)?;
    // One name map per kind, so looking a name up borrows it instead of cloning it.
    let mut ids: [HashMap<String, i64>; 2] = [HashMap::new(), HashMap::new()];
    for s in &known {
        ids[s.kind as usize].insert(s.name.clone(), s.id);
    }
    // Its blocks cannot grow without their points: a compacted run takes no new points.
    if let Some(at) = compacted_at {
        return Err(series::compacted(at));
    }
    let mut tracker = series::Tracker::new(known);
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
            t: log.at.map_or(t, |at| {
                (at - exp.created_at).clamp(0, (t + crate::time::MAX_AHEAD_MS).max(0))
            }),
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
        .collect::<crate::sql::Result<_>>()?;
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
            .collect::<crate::sql::Result<_>>()?;
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
    /// Shared by the logs of one series in a page.
    pub name: Arc<str>,
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

/// The most points one page of a long read holds in its result. A read that answers a slow
/// client (JSON lists, CSV, a stream's replay) takes one page per short read transaction and
/// reads the next only when the client has taken the last, so memory per request is a page or
/// two whatever the run's size, and no connection waits on a client.
pub const PAGE: usize = 8_192;

/// Windows one page may try before it hands back what it has (a short page is not the end).
const WINDOWS: usize = 32;

/// A read that runs in pages, each within one read transaction on `conn`; None once done.
pub trait Pages: Send + 'static {
    type Item: Send + 'static;
    fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<Self::Item>>>;

    /// True when the next `next_page` would surely be None, so a download can end with its
    /// last page instead of taking a reader once more to learn that. False when unsure.
    fn finished(&self) -> bool {
        false
    }
}

/// Runs `f` inside one read transaction, so a page sees one consistent state of the file even
/// while ingest commits beside it (the binary searches below rely on the blocks not moving).
fn snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// The series a read walks: those of one kind, or all, or one; empty ones left out.
fn wanted(conn: &Connection, exp: &Experiment, which: Which) -> Result<Vec<Walked>> {
    let mut all = series::list(conn, exp.rowid)?;
    all.retain(|s| {
        s.count > 0
            && match which {
                Which::Logs(Selection::All) => true,
                Which::Logs(Selection::Metrics) => s.kind == Kind::Metric,
                Which::Logs(Selection::Results) => s.kind == Kind::Result,
                Which::Series(id) => s.id == id,
            }
    });
    for s in &all {
        series::require_points(s)?;
    }
    Ok(all
        .into_iter()
        .map(|s| Walked {
            name: s.name.as_str().into(),
            series: s,
        })
        .collect())
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Logs(Selection),
    Series(i64),
}

/// A series a read walks, with its name shared by every log read from it (a log costs no copy
/// of its name).
struct Walked {
    series: series::Series,
    name: Arc<str>,
}

impl std::ops::Deref for Walked {
    type Target = series::Series;
    fn deref(&self) -> &series::Series {
        &self.series
    }
}

fn log_of(exp: &Experiment, s: &Walked, p: Point) -> Log {
    Log {
        seq: p.seq,
        msg_id: p.msg_id,
        name: s.name.clone(),
        kind: s.kind,
        step: (p.step >= 0).then_some(p.step),
        value: p.value,
        extra_metadata: None,
        created_at: exp.created_at + p.t,
    }
}

/// Logs in id order, a page at a time. The cursor is the id of the last log handed out; ids
/// are dense per experiment, so a page is the window of the next [`PAGE`] ids (jumping over
/// stretches that belong to series not walked), and holds at most [`PAGE`] logs. Logs stored
/// after `end` are left out, so the whole walk is one consistent snapshot: nothing is ever
/// deleted below it.
pub struct ById {
    exp: Experiment,
    which: Selection,
    /// With msg_ids and metadata (the JSON lists); without, for a live stream's replay.
    full: bool,
    after: i64,
    end: i64,
}

impl ById {
    pub fn new(exp: Experiment, which: Selection, after: i64, end: i64, full: bool) -> ById {
        ById {
            exp,
            which,
            full,
            after,
            end,
        }
    }

    /// The id of the last log handed out (or the starting cursor).
    pub fn cursor(&self) -> i64 {
        self.after
    }
}

impl Pages for ById {
    type Item = Log;

    fn finished(&self) -> bool {
        self.after >= self.end
    }

    fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<Log>>> {
        if self.after >= self.end {
            return Ok(None);
        }
        snapshot(conn, |c| {
            let series = wanted(c, &self.exp, Which::Logs(self.which))?;
            let mut out: Vec<Log> = Vec::new();
            for _ in 0..WINDOWS {
                let room = PAGE.saturating_sub(out.len());
                if room < PAGE / 2 || self.after >= self.end {
                    break;
                }
                let mut lo: Option<i64> = None;
                for s in &series {
                    if let Some(n) = series::next_seq_after(c, s, self.after)? {
                        lo = Some(lo.map_or(n, |l| l.min(n)));
                    }
                }
                let Some(lo) = lo.filter(|&l| l <= self.end) else {
                    self.after = self.end;
                    break;
                };
                let hi = self.end.min(lo.saturating_add(room as i64 - 1));
                let start = out.len();
                for s in &series {
                    series::points_by_seq(c, s, lo, hi, self.full, |p| {
                        out.push(log_of(&self.exp, s, p))
                    })?;
                }
                out[start..].sort_unstable_by_key(|l| l.seq);
                if self.full {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, metadata FROM log_metadata
                         WHERE experiment_id = ?1 AND seq BETWEEN ?2 AND ?3",
                    )?;
                    let mut rows = stmt.query(params![self.exp.rowid, lo, hi])?;
                    while let Some(r) = rows.next()? {
                        let seq: i64 = r.get(0)?;
                        if let Ok(i) = out[start..].binary_search_by_key(&seq, |l| l.seq) {
                            out[start + i].extra_metadata = Some(r.get(1)?);
                        }
                    }
                }
                self.after = hi;
            }
            Ok((!out.is_empty() || self.after < self.end).then_some(out))
        })
    }
}

/// Where a step-order walk stands: the (step, name, id) of the last log handed out.
pub type StepCursor = (i64, String, i64);

/// Logs in (step, name, id) order, a page at a time: every metric (`GET /metrics`), or the
/// points of one series (a CSV export walks its series one after the other).
///
/// A page reads windows of steps. The window's points are found through the block extents
/// (binary search while a series is in step order; a scan of its block rows, decoding only the
/// blocks that meet the window, when steps arrived out of order), and the smallest [`PAGE`] by
/// (step, name, id) above the cursor are kept: candidates are cut back to that whenever they
/// reach twice the room left, so a page never holds more than 3 x [`PAGE`] + one block of
/// points, however the blocks overlap. The window width adapts (it halves to what fitted when a
/// window overflowed, doubles when it was sparse); a window of one step needs no sorting,
/// since a step's points come in block order, which is id order, so a step with a million
/// points streams in pages like any other. Logs stored after `end` are left out.
pub struct ByStep {
    exp: Experiment,
    which: Which,
    full: bool,
    end: i64,
    after: Option<StepCursor>,
    /// Every log at a lower step has been handed out.
    from: i64,
    /// Steps per window; 0 until the first page estimates it.
    span: i64,
    done: bool,
}

impl ByStep {
    /// Every metric of `exp`, by step.
    pub fn metrics(exp: Experiment, end: i64, full: bool) -> ByStep {
        Self::new(exp, Which::Logs(Selection::Metrics), end, full)
    }

    /// The points of one series, by step.
    pub fn series(exp: Experiment, series: i64, end: i64) -> ByStep {
        Self::new(exp, Which::Series(series), end, false)
    }

    fn new(exp: Experiment, which: Which, end: i64, full: bool) -> ByStep {
        ByStep {
            exp,
            which,
            full,
            end,
            after: None,
            from: i64::MIN,
            span: 0,
            done: false,
        }
    }

    /// Resumes after `cursor` (a log handed out before).
    pub fn resume(mut self, cursor: StepCursor) -> ByStep {
        self.from = cursor.0;
        self.after = Some(cursor);
        self
    }

    pub fn cursor(&self) -> Option<&StepCursor> {
        self.after.as_ref()
    }

    /// Steps per window such that a window holds about a page, if points were spread evenly.
    fn estimate(series: &[Walked]) -> i64 {
        let per_step: f64 = series
            .iter()
            .map(|s| {
                let width = s.last_step.unwrap_or(-1) - s.first_step.unwrap_or(-1);
                s.count as f64 / (width.max(0) as f64 + 1.0)
            })
            .sum();
        (PAGE as f64 / per_step.max(1e-9)).clamp(1.0, 1e15) as i64
    }

    /// One window of exactly one step: series in name order, each in block (= id) order.
    fn one_step(
        &mut self,
        c: &Connection,
        series: &[Walked],
        step: i64,
        out: &mut Vec<Log>,
    ) -> Result<()> {
        let (end, after) = (self.end, self.after.clone());
        let start = out.len();
        let mut full = false;
        for s in series {
            if let Some((a_step, a_name, _)) = &after
                && *a_step == step
                && &*s.name < a_name.as_str()
            {
                continue;
            }
            let a_seq = match &after {
                Some((a_step, a_name, a_seq)) if *a_step == step && **a_name == *s.name => *a_seq,
                _ => i64::MIN,
            };
            series::points_in_steps(
                c,
                s,
                step,
                step,
                self.full,
                |e| e.min_seq > end || e.max_seq <= a_seq,
                |p| {
                    if p.seq > end || p.seq <= a_seq {
                        return true;
                    }
                    if out.len() >= PAGE {
                        full = true;
                        return false;
                    }
                    out.push(log_of(&self.exp, s, p));
                    true
                },
            )?;
            if full {
                break;
            }
        }
        if let Some(last) = out[start..].last() {
            self.after = Some((step, last.name.to_string(), last.seq));
        }
        if !full {
            // The step is done; try wider windows again.
            match step.checked_add(1) {
                Some(next) => self.from = next,
                None => self.done = true,
            }
            self.span = 2;
        }
        Ok(())
    }

    /// One window of several steps: the smallest `room` points above the cursor, sorted.
    fn window(
        &mut self,
        c: &Connection,
        series: &[Walked],
        lo: i64,
        room: usize,
        out: &mut Vec<Log>,
    ) -> Result<()> {
        let hi = lo.saturating_add(self.span - 1);
        let (end, after) = (self.end, self.after.clone());
        // (step, index of the series in name order, seq): sorts as (step, name, id).
        let mut found: Vec<((i64, usize, i64), Point)> = Vec::new();
        for (i, s) in series.iter().enumerate() {
            series::points_in_steps(
                c,
                s,
                lo,
                hi,
                self.full,
                |e| e.min_seq > end,
                |p| {
                    let newer = p.seq <= end
                        && after.as_ref().is_none_or(|(a_step, a_name, a_seq)| {
                            (p.step, &*s.name, p.seq) > (*a_step, a_name.as_str(), *a_seq)
                        });
                    if newer {
                        found.push(((p.step, i, p.seq), p));
                        if found.len() >= 2 * room {
                            found.sort_unstable_by_key(|(k, _)| *k);
                            found.truncate(room + 1);
                        }
                    }
                    true
                },
            )?;
        }
        found.sort_unstable_by_key(|(k, _)| *k);
        let overflow = found.len() > room;
        found.truncate(room);
        let fetched = found.len();
        let last_step = found.last().map(|((step, ..), _)| *step);
        for ((_, i, _), p) in found {
            out.push(log_of(&self.exp, &series[i], p));
        }
        if let (Some(last), Some(step)) = (out.last(), last_step) {
            self.after = Some((step, last.name.to_string(), last.seq));
        }
        match (overflow, last_step) {
            (true, Some(step)) => {
                // What fitted is the next window's width; one step means a crowded step.
                self.from = step;
                self.span = (step - lo).saturating_add(1).max(1);
            }
            _ => {
                match hi.checked_add(1) {
                    Some(next) => self.from = next,
                    None => self.done = true,
                }
                if fetched < room / 2 {
                    self.span = self.span.saturating_mul(2);
                }
            }
        }
        Ok(())
    }
}

impl Pages for ByStep {
    type Item = Log;

    fn finished(&self) -> bool {
        self.done
    }

    fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<Log>>> {
        if self.done {
            return Ok(None);
        }
        snapshot(conn, |c| {
            let series = wanted(c, &self.exp, self.which)?;
            let top = series.iter().map(|s| s.last_step.unwrap_or(-1)).max();
            if self.span == 0 {
                self.span = Self::estimate(&series);
            }
            let mut out = Vec::new();
            for _ in 0..WINDOWS {
                let room = PAGE.saturating_sub(out.len());
                if room < PAGE / 2 || self.done {
                    break;
                }
                if top.is_none_or(|top| self.from > top) {
                    self.done = true;
                    break;
                }
                let mut lo: Option<i64> = None;
                for s in &series {
                    if let Some(n) = series::next_step_from(c, s, self.from)? {
                        lo = Some(lo.map_or(n, |l| l.min(n)));
                    }
                }
                let Some(lo) = lo else {
                    self.done = true;
                    break;
                };
                self.from = lo;
                if self.span == 1 {
                    self.one_step(c, &series, lo, &mut out)?;
                } else {
                    self.window(c, &series, lo, room, &mut out)?;
                }
            }
            if self.full {
                attach_metadata(c, &self.exp, &mut out)?;
            }
            Ok((!out.is_empty() || !self.done).then_some(out))
        })
    }
}

/// Every log of an experiment for a CSV export: series after series (metrics, then results,
/// each kind by name), each in step order through [`ByStep`]. Holds the series' ids, and one
/// series' page at a time.
pub struct BySeries {
    exp: Experiment,
    end: i64,
    series: std::vec::IntoIter<i64>,
    walk: Option<ByStep>,
}

impl BySeries {
    pub fn new(conn: &Connection, exp: Experiment, end: i64) -> Result<BySeries> {
        let mut ids = Vec::new();
        for s in series::list(conn, exp.rowid)? {
            if s.count > 0 {
                series::require_points(&s)?;
                ids.push(s.id);
            }
        }
        Ok(BySeries {
            exp,
            end,
            series: ids.into_iter(),
            walk: None,
        })
    }

    pub fn experiment(&self) -> &Experiment {
        &self.exp
    }
}

impl Pages for BySeries {
    type Item = Log;

    fn finished(&self) -> bool {
        self.series.len() == 0 && self.walk.as_ref().is_none_or(|w| w.finished())
    }

    fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<Log>>> {
        loop {
            let walk = match &mut self.walk {
                Some(walk) => walk,
                None => match self.series.next() {
                    Some(id) => self
                        .walk
                        .insert(ByStep::series(self.exp.clone(), id, self.end)),
                    None => return Ok(None),
                },
            };
            match walk.next_page(conn)? {
                Some(page) => return Ok(Some(page)),
                None => self.walk = None,
            }
        }
    }
}

/// Fills in the rare metadata beyond `{"type": ..}` of logs in any order.
fn attach_metadata(conn: &Connection, exp: &Experiment, logs: &mut [Log]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT metadata FROM log_metadata WHERE experiment_id = ?1 AND seq = ?2",
    )?;
    // Most runs have none at all: one look at the table settles it.
    let any: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM log_metadata WHERE experiment_id = ?1)")?
        .query_row([exp.rowid], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    for l in logs {
        l.extra_metadata = stmt
            .query_row(params![exp.rowid, l.seq], |r| r.get(0))
            .optional()?;
    }
    Ok(())
}

/// Every log of `exp` at once: the plain reading the paged walks are tested against.
#[cfg(test)]
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
    for s in wanted(conn, exp, Which::Logs(which))? {
        for p in series::points(conn, &s, i64::MIN, i64::MAX, true)? {
            let mut log = log_of(exp, &s, p);
            log.extra_metadata = extra.remove(&log.seq);
            out.push(log);
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

impl From<Log> for Recent {
    fn from(l: Log) -> Recent {
        Recent {
            seq: l.seq,
            name: l.name,
            kind: l.kind,
            step: l.step,
            value: l.value,
            created_at: l.created_at,
        }
    }
}

/// Every log stored after `cursor` (an id), in id order, all at once (tests only; a stream
/// replays through [`ById`]).
#[cfg(test)]
pub fn since(conn: &Connection, exp: &Experiment, cursor: i64) -> Result<Vec<Recent>> {
    let end = last_seq(conn, exp)?;
    let mut walk = ById::new(exp.clone(), Selection::All, cursor, end, false);
    let mut out = Vec::new();
    while let Some(page) = walk.next_page(conn)? {
        out.extend(page.into_iter().map(Recent::from));
    }
    Ok(out)
}

/// The id of the newest log (0 before the first).
pub fn last_seq(conn: &Connection, exp: &Experiment) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT next_seq - 1 FROM experiments WHERE id = ?1")?
        .query_row([exp.rowid], |r| r.get(0))?)
}

/// The channel on which servers sharing one PostgreSQL database tell each other about
/// committed batches (see `crate::fanout`).
pub const LIVE_CHANNEL: &str = "tora_live";

/// Tells the other servers on this PostgreSQL database that the run at `rowid` now holds points
/// up to `seq` (and that run is in `workspace`, whose run tables show its progress):
/// `pg_notify` inside the write transaction, delivered at its commit (in commit
/// order; never if it rolls back). `server` is this process's id, so it ignores its own notices.
/// Does nothing on SQLite, which one server serves alone.
pub fn announce(
    conn: &Connection,
    server: &str,
    rowid: i64,
    seq: i64,
    workspace: &str,
) -> Result<()> {
    if conn.dialect() != crate::sql::Dialect::Postgres {
        return Ok(());
    }
    let payload = format!("{server} logs {rowid} {seq} {workspace}");
    conn.execute("SELECT pg_notify(?1, ?2)", params![LIVE_CHANNEL, payload])?;
    Ok(())
}

/// A run's last values, as a `progress` notice carries them: what another server's batches
/// stored, for this server's run tables (`crate::fanout`).
#[derive(Debug)]
pub struct LastValues {
    /// The run's public id and workspace.
    pub id: String,
    pub workspace: String,
    /// When a point was last stored (unix ms).
    pub active_at: i64,
    /// (kind, name, last step, last value: None for NaN), the latest written first: at most
    /// [`crate::live::MAX_PROGRESS_SERIES`] of each kind and one more (which marks it truncated).
    pub series: Vec<(Kind, String, Option<i64>, Option<f64>)>,
}

/// The last values of the run with row id `rowid` (None: it is gone).
pub fn last_values(conn: &Connection, rowid: i64) -> Result<Option<LastValues>> {
    let Some((id, workspace)) = conn
        .prepare_cached("SELECT uuid, workspace_id FROM experiments WHERE id = ?1")?
        .query_row([rowid], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut series = Vec::new();
    let mut active_at = 0;
    for kind in [Kind::Metric, Kind::Result] {
        let mut stmt = conn.prepare_cached(
            "SELECT name, last_step, last_value, coalesce(updated_at, 0) FROM series
             WHERE experiment_id = ?1 AND kind = ?2 AND count > 0
             ORDER BY coalesce(updated_at, 0) DESC, id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                rowid,
                kind as i64,
                crate::live::MAX_PROGRESS_SERIES as i64 + 1
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )?;
        for row in rows {
            let (name, step, value, at) = row?;
            active_at = active_at.max(at);
            series.push((kind, name, step, value));
        }
    }
    Ok(Some(LastValues {
        id,
        workspace,
        active_at,
        series,
    }))
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
            at: None,
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
            at: None,
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

#[cfg(test)]
mod walk_tests {
    use super::*;

    type Row = (
        i64,
        String,
        Kind,
        Option<i64>,
        u64,
        Option<String>,
        Option<String>,
    );

    fn rows(logs: &[Log]) -> Vec<Row> {
        logs.iter()
            .map(|l| {
                (
                    l.seq,
                    l.name.to_string(),
                    l.kind,
                    l.step,
                    l.value.to_bits(),
                    l.msg_id.as_ref().map(|m| m.to_string()),
                    l.extra_metadata.clone(),
                )
            })
            .collect()
    }

    /// Every page of a walk, checking each against the bound.
    fn drain(conn: &Connection, mut walk: impl Pages<Item = Log>) -> Vec<Log> {
        let mut out = Vec::new();
        while let Some(page) = walk.next_page(conn).unwrap() {
            assert!(page.len() <= PAGE, "a page of {} points", page.len());
            out.extend(page);
        }
        out
    }

    /// A small xorshift, so the out-of-order data is the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: i64) -> i64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as i64
        }
    }

    fn point(name: &str, step: i64, value: f64, msg: Option<String>) -> NewLog {
        NewLog {
            msg_id: msg.map(|m| MsgId::parse(&m)),
            name: name.into(),
            kind: Kind::Metric,
            step: Some(step),
            value,
            at: None,
            extra_metadata: None,
        }
    }

    /// Ordered, resumed (overlapping step ranges), random-order, crowded-step and many small
    /// series, plus results with metadata, written interleaved so ids mix across series.
    fn a_messy_run(conn: &Connection) -> Experiment {
        let exp = crate::store::test_experiment(conn);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut batches: Vec<Vec<NewLog>> = Vec::new();
        for part in 0..4 {
            let mut b = Vec::new();
            b.extend((part * 5_000..(part + 1) * 5_000).map(|s| point("loss", s, s as f64, None)));
            // A run resumed from a checkpoint: 0..3000, then 2000..5000 again.
            let resumed = [0..1_500, 1_500..3_000, 2_000..3_500, 3_500..5_000];
            b.extend(
                resumed[part as usize]
                    .clone()
                    .map(|s| point("acc", s, 1.0 / (s + 1) as f64, None)),
            );
            b.extend((0..800).map(|i| {
                let msg = (i % 3 == 0).then(|| format!("noise-{part}-{i}"));
                point("noise", rng.next(1_000), f64::NAN, msg)
            }));
            // One step with far more points than a page, across two series.
            b.extend((0..3 * PAGE as i64).map(|i| {
                let name = if i % 2 == 0 { "crowd" } else { "crowd2" };
                point(name, 7, i as f64, None)
            }));
            for m in 0..40 {
                let name = format!("m{m:02}");
                b.extend((part * 50..(part + 1) * 50).map(|s| point(&name, s, -0.0, None)));
            }
            b.push(NewLog {
                msg_id: Some(MsgId::random()),
                name: "best".into(),
                kind: Kind::Result,
                step: None,
                value: part as f64,
                at: None,
                extra_metadata: (part % 2 == 0)
                    .then(|| format!(r#"{{"type":"result","p":{part}}}"#)),
            });
            batches.push(b);
        }
        // Shuffle each batch a little, so arrival order differs from step order within series.
        for (i, b) in batches.iter_mut().enumerate() {
            let n = b.len();
            for k in 0..n / 10 {
                let j = rng.next(n as i64) as usize;
                b.swap(k * 10, j);
            }
            insert(conn, &exp, b, 1_000 + i as i64).unwrap();
        }
        let s = series::list(conn, exp.rowid).unwrap();
        assert!(s.iter().any(|s| s.name == "loss" && !s.ordered));
        exp
    }

    #[test]
    fn paged_walks_match_reading_everything_at_once() {
        let conn = crate::db::memory();
        let exp = a_messy_run(&conn);
        let end = last_seq(&conn, &exp).unwrap();
        assert!(end > 10 * PAGE as i64);

        for which in [Selection::All, Selection::Results] {
            let paged = drain(&conn, ById::new(exp.clone(), which, 0, end, true));
            assert_eq!(
                rows(&paged),
                rows(&list(&conn, &exp, which).unwrap()),
                "{which:?}"
            );
        }
        let by_step = drain(&conn, ByStep::metrics(exp.clone(), end, true));
        let all = list(&conn, &exp, Selection::Metrics).unwrap();
        assert_eq!(by_step.len(), all.len());
        assert_eq!(rows(&by_step), rows(&all));

        // Resumed from a cursor in the middle of the crowded step, and elsewhere.
        for at in [10, all.len() / 3, all.len() / 2 + 17, all.len() - 1] {
            let l = &all[at];
            let cursor = (l.step.unwrap(), l.name.to_string(), l.seq);
            let rest = drain(
                &conn,
                ByStep::metrics(exp.clone(), end, true).resume(cursor),
            );
            assert_eq!(rows(&rest), rows(&all[at + 1..]), "resumed after {at}");
        }
        for cursor in [0, 1, 12_345, end - 3, end] {
            let expected: Vec<Log> = list(&conn, &exp, Selection::All)
                .unwrap()
                .into_iter()
                .filter(|l| l.seq > cursor)
                .collect();
            let got: Vec<i64> = since(&conn, &exp, cursor)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(got, expected.iter().map(|l| l.seq).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_csv_walk_gives_each_series_in_step_order() {
        let conn = crate::db::memory();
        let exp = a_messy_run(&conn);
        let end = last_seq(&conn, &exp).unwrap();
        let mut expected = Vec::new();
        for s in series::list(&conn, exp.rowid).unwrap() {
            for p in series::points(&conn, &s, i64::MIN, i64::MAX, false).unwrap() {
                let s = Walked {
                    name: s.name.as_str().into(),
                    series: s.clone(),
                };
                expected.push(log_of(&exp, &s, p));
            }
        }
        let walk = BySeries::new(&conn, exp.clone(), end).unwrap();
        assert_eq!(rows(&drain(&conn, walk)), rows(&expected));
    }

    #[test]
    fn a_walk_leaves_out_what_was_stored_after_it_began() {
        let conn = crate::db::memory();
        let exp = crate::store::test_experiment(&conn);
        let first: Vec<NewLog> = (0..2 * PAGE as i64)
            .map(|s| point("loss", s, 1.0, None))
            .collect();
        insert(&conn, &exp, &first, 1).unwrap();
        let end = last_seq(&conn, &exp).unwrap();
        let mut by_id = ById::new(exp.clone(), Selection::All, 0, end, false);
        let mut by_step = ByStep::metrics(exp.clone(), end, false);
        let mut got = (by_id.next_page(&conn).unwrap().unwrap(), Vec::new());
        got.1 = by_step.next_page(&conn).unwrap().unwrap();
        // Lower steps and higher ones arrive while the walks are half-way.
        let late: Vec<NewLog> = (0..100)
            .chain(50_000..50_100)
            .map(|s| point("loss", s, 2.0, None))
            .collect();
        insert(&conn, &exp, &late, 2).unwrap();
        while let Some(p) = by_id.next_page(&conn).unwrap() {
            got.0.extend(p);
        }
        while let Some(p) = by_step.next_page(&conn).unwrap() {
            got.1.extend(p);
        }
        for walk in [got.0, got.1] {
            assert_eq!(walk.len(), 2 * PAGE);
            assert!(walk.iter().all(|l| l.value == 1.0));
            assert!(walk.windows(2).all(|w| w[0].step < w[1].step));
        }
    }
}
