//! Per-series state kept at ingest: the summary columns of `series`, the 128-point blocks of
//! `series_blocks` and their packed points in `chunks`; and the reads built on them: summaries,
//! downsampled chart data, and the points themselves.

use std::collections::HashMap;

use crate::sql::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::store::experiments::Experiment;
use crate::store::logs::{Kind, MsgId};
use crate::store::packed::{self, Point};
use crate::store::units::{Unit, Units};

/// Points per block. Small enough that a zoomed-in chart reads few raw points at the edges,
/// large enough that a 1M-point series is ~8k block rows.
pub const BLOCK: i64 = 128;

#[derive(Debug, Clone)]
pub struct Series {
    pub id: i64,
    pub kind: Kind,
    pub name: String,
    pub count: i64,
    pub nonfinite: i64,
    pub first_step: Option<i64>,
    pub last_step: Option<i64>,
    /// NaN when the last value was NaN (stored as NULL); None only while `count` is 0.
    pub last_value: Option<f64>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub ordered: bool,
    pub updated_at: Option<i64>,
    /// `series.open_unit`: the last step-ordered unit of a metric ([`units`]); None for
    /// results and metrics without points.
    pub open_unit: Option<Vec<u8>>,
    /// When retention deleted its raw points (`chunks`), keeping the summary, its blocks'
    /// aggregates and its units; None while every point is stored.
    pub compacted_at: Option<i64>,
}

const COLUMNS: &str = "id, kind, name, count, nonfinite, first_step, last_step, last_value, min_value, max_value, ordered, updated_at, open_unit, compacted_at";

fn from_row(r: &Row) -> crate::sql::Result<Series> {
    let count: i64 = r.get(3)?;
    let last: Option<f64> = r.get(7)?;
    Ok(Series {
        id: r.get(0)?,
        kind: if r.get::<_, i64>(1)? == 1 {
            Kind::Result
        } else {
            Kind::Metric
        },
        name: r.get(2)?,
        count,
        nonfinite: r.get(4)?,
        first_step: r.get(5)?,
        last_step: r.get(6)?,
        last_value: if count > 0 {
            Some(last.unwrap_or(f64::NAN))
        } else {
            None
        },
        min_value: r.get(8)?,
        max_value: r.get(9)?,
        ordered: r.get(10)?,
        updated_at: r.get(11)?,
        open_unit: r.get(12)?,
        compacted_at: r.get(13)?,
    })
}

/// Every series of an experiment, metrics first, by name.
pub fn list(conn: &Connection, experiment: i64) -> Result<Vec<Series>> {
    let sql = format!("SELECT {COLUMNS} FROM series WHERE experiment_id = ?1 ORDER BY kind, name");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([experiment], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The series of many experiments at once (for run tables), keyed by experiment row id.
pub fn for_experiments(
    conn: &Connection,
    experiments: &[i64],
) -> Result<HashMap<i64, Vec<Series>>> {
    let mut out: HashMap<i64, Vec<Series>> = HashMap::new();
    let sql = format!(
        "SELECT {COLUMNS}, experiment_id FROM series WHERE experiment_id = ?1 ORDER BY kind, name"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    for &e in experiments {
        let rows = stmt.query_map([e], from_row)?;
        out.insert(e, rows.collect::<crate::sql::Result<_>>()?);
    }
    Ok(out)
}

/// A block's aggregates; also used for partial blocks and raw points while bucketing.
#[derive(Debug, Clone, Copy)]
struct Block {
    no: i64,
    first_step: i64,
    last_step: i64,
    first_t: i64,
    last_t: i64,
    min: Option<f64>,
    max: Option<f64>,
    last: f64,
    last_finite: Option<f64>,
    count: i64,
    nonfinite: i64,
    min_seq: i64,
    max_seq: i64,
}

impl Block {
    fn point(no: i64, step: i64, t: i64, value: f64, seq: i64) -> Block {
        let finite = value.is_finite().then_some(value);
        Block {
            no,
            first_step: step,
            last_step: step,
            first_t: t,
            last_t: t,
            min: finite,
            max: finite,
            last: value,
            last_finite: finite,
            count: 1,
            nonfinite: i64::from(finite.is_none()),
            min_seq: seq,
            max_seq: seq,
        }
    }

    /// A stored point as a one-point block.
    fn of(no: i64, p: &Point) -> Block {
        Block::point(no, p.step, p.t, p.value, p.seq)
    }

    /// Appends `next`, which arrived after everything in `self`. Steps and times keep their
    /// extent (least first, greatest last), which for a series in step order is the same thing.
    fn absorb(&mut self, next: &Block) {
        self.first_step = self.first_step.min(next.first_step);
        self.last_step = self.last_step.max(next.last_step);
        self.first_t = self.first_t.min(next.first_t);
        self.last_t = self.last_t.max(next.last_t);
        self.min = min_opt(self.min, next.min);
        self.max = max_opt(self.max, next.max);
        self.last = next.last;
        self.last_finite = next.last_finite.or(self.last_finite);
        self.count += next.count;
        self.nonfinite += next.nonfinite;
        self.min_seq = self.min_seq.min(next.min_seq);
        self.max_seq = self.max_seq.max(next.max_seq);
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

const BLOCK_COLUMNS: &str = "block, first_step, last_step, first_t, last_t, min_value, max_value, last_value, \
                             last_finite, count, nonfinite, min_seq, max_seq";

fn block_from_row(r: &Row) -> crate::sql::Result<Block> {
    Ok(Block {
        no: r.get(0)?,
        first_step: r.get(1)?,
        last_step: r.get(2)?,
        first_t: r.get(3)?,
        last_t: r.get(4)?,
        min: r.get(5)?,
        max: r.get(6)?,
        last: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
        last_finite: r.get(8)?,
        count: r.get(9)?,
        nonfinite: r.get(10)?,
        min_seq: r.get(11)?,
        max_seq: r.get(12)?,
    })
}

/// The rowid of a block's points in `chunks`: series_id * 2^32 + block.
fn chunk_id(series: i64, block: i64) -> i64 {
    (series << 32) | block
}

/// What a read of the raw points of a run retention compacted answers (410): the run's points
/// were reduced to aggregates on that date.
pub fn compacted(at: i64) -> Error {
    let when = crate::time::rfc3339(at);
    Error::Gone(format!(
        "this run's metric points were compacted to aggregates on {} by its workspace's \
         retention policy: charts, the summary and results still work; the raw points are gone \
         and the run takes no new points",
        when.get(..10).unwrap_or(&when)
    ))
}

/// Refuses to read the raw points of a series whose points retention deleted.
pub fn require_points(s: &Series) -> Result<()> {
    match s.compacted_at {
        Some(at) => Err(compacted(at)),
        None => Ok(()),
    }
}

/// The points of one block, as stored.
fn chunk(conn: &Connection, series: i64, block: i64, msg_ids: bool) -> Result<Vec<Point>> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM chunks WHERE id = ?1")?
        .query_row([chunk_id(series, block)], |r| r.get(0))
        .optional()?;
    let Some(data) = data else {
        // Compacted since the caller read the series (a long download's later page).
        let at: Option<Option<i64>> = conn
            .prepare_cached("SELECT compacted_at FROM series WHERE id = ?1")?
            .query_row([series], |r| r.get(0))
            .optional()?;
        return Err(match at.flatten() {
            Some(at) => compacted(at),
            None => Error::Internal(format!("block {block} of series {series} has no points")),
        });
    };
    packed::decode(&data, msg_ids)
}

/// Writes (or rewrites) one block: its aggregates and its packed points.
fn write_block(conn: &Connection, series: i64, b: &Block, points: &[Point]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO series_blocks (series_id, block, first_step, last_step, first_t, last_t,
            min_value, max_value, last_value, last_finite, count, nonfinite, min_seq, max_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (series_id, block) DO UPDATE SET first_step = excluded.first_step,
            last_step = excluded.last_step, first_t = excluded.first_t, last_t = excluded.last_t,
            min_value = excluded.min_value, max_value = excluded.max_value,
            last_value = excluded.last_value, last_finite = excluded.last_finite,
            count = excluded.count, nonfinite = excluded.nonfinite, min_seq = excluded.min_seq,
            max_seq = excluded.max_seq",
    )?
    .execute(params![
        series,
        b.no,
        b.first_step,
        b.last_step,
        b.first_t,
        b.last_t,
        b.min,
        b.max,
        (!b.last.is_nan()).then_some(b.last),
        b.last_finite,
        b.count,
        b.nonfinite,
        b.min_seq,
        b.max_seq
    ])?;
    conn.prepare_cached(
        "INSERT INTO chunks (id, data) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![chunk_id(series, b.no), packed::encode(points)])?;
    Ok(())
}

/// Replaces every block of a series with blocks cut from `points`, which are in arrival order
/// (the schema migration that packs the old one-row-per-point table uses this).
pub fn rebuild_blocks(conn: &Connection, series: i64, points: &[Point]) -> Result<()> {
    conn.prepare_cached("DELETE FROM series_blocks WHERE series_id = ?1")?
        .execute([series])?;
    for (no, part) in points.chunks(BLOCK as usize).enumerate() {
        let no = no as i64;
        let mut b = Block::of(no, &part[0]);
        for p in &part[1..] {
            b.absorb(&Block::of(no, p));
        }
        write_block(conn, series, &b, part)?;
    }
    Ok(())
}

/// Summary and block bookkeeping for one batch: fold points in as they are stored, then
/// [`Tracker::save`] once per batch.
pub struct Tracker {
    state: HashMap<i64, Tracked>,
}

struct Tracked {
    series: Series,
    /// The block being filled and its points, loaded on first use.
    open: Option<(Block, Vec<Point>)>,
    loaded: bool,
    finished: Vec<(Block, Vec<Point>)>,
    touched: bool,
    /// The series in step order (metrics only), loaded on first use.
    units: Option<Units>,
}

impl Tracked {
    /// `loaded`: nothing to load (a series created by this batch has no open block yet).
    fn new(series: Series, loaded: bool) -> Tracked {
        Tracked {
            series,
            open: None,
            loaded,
            finished: Vec::new(),
            touched: false,
            units: None,
        }
    }
}

impl Tracker {
    pub fn new(series: Vec<Series>) -> Tracker {
        Tracker {
            state: series
                .into_iter()
                .map(|s| (s.id, Tracked::new(s, false)))
                .collect(),
        }
    }

    pub fn add_series(&mut self, id: i64, kind: Kind, name: String) {
        let series = Series {
            id,
            kind,
            name,
            count: 0,
            nonfinite: 0,
            first_step: None,
            last_step: None,
            last_value: None,
            min_value: None,
            max_value: None,
            ordered: true,
            updated_at: None,
            open_unit: None,
            compacted_at: None,
        };
        self.state.insert(id, Tracked::new(series, true));
    }

    /// The series as this batch has left it so far.
    pub fn series(&self, id: i64) -> Option<&Series> {
        self.state.get(&id).map(|t| &t.series)
    }

    /// Stores one point: folds it into its series' summary and appends it to the series' open
    /// block (a new block every 128 points).
    pub fn add(&mut self, conn: &Connection, series_id: i64, point: Point) -> Result<()> {
        // -1 is how a log without a step is stored (steps sent are never negative).
        let step = (point.step >= 0).then_some(point.step);
        let Some(tr) = self.state.get_mut(&series_id) else {
            return Err(Error::Internal(format!(
                "series {series_id} is not tracked"
            )));
        };
        tr.touched = true;
        let s = &mut tr.series;
        let value = point.value;
        let finite = value.is_finite();
        let in_order = match (step, s.last_step) {
            (Some(step), Some(last)) => step >= last,
            _ => true,
        };
        if s.kind == Kind::Metric && !in_order {
            s.ordered = false;
        }
        if in_order || s.kind == Kind::Result {
            s.last_value = Some(value);
        }
        if let Some(step) = step {
            s.first_step = Some(s.first_step.map_or(step, |f| f.min(step)));
            s.last_step = Some(s.last_step.map_or(step, |l| l.max(step)));
        }
        if finite {
            s.min_value = min_opt(s.min_value, Some(value));
            s.max_value = max_opt(s.max_value, Some(value));
        } else {
            s.nonfinite += 1;
        }
        let index = s.count;
        s.count += 1;
        let no = index / BLOCK;
        if no >= 1 << 32 {
            return Err(Error::bad_request(format!(
                "series {:?} is full ({index} points)",
                s.name
            )));
        }

        if !tr.loaded {
            tr.loaded = true;
            if index % BLOCK != 0 {
                let sql = format!(
                    "SELECT {BLOCK_COLUMNS} FROM series_blocks WHERE series_id = ?1 AND block = ?2"
                );
                let block = conn
                    .prepare_cached(&sql)?
                    .query_row(params![series_id, no], block_from_row)
                    .optional()?;
                if let Some(block) = block {
                    tr.open = Some((block, chunk(conn, series_id, no, true)?));
                }
            }
        }
        // A metric keeps its units from its first point on (or from schema 8's build).
        if s.kind == Kind::Metric && tr.units.is_none() && (s.open_unit.is_some() || index == 0) {
            tr.units = Some(Units::new(series_id, s.open_unit.as_deref())?);
        }
        if let Some(u) = tr.units.as_mut() {
            u.add(conn, &point)?;
        }
        let b = Block::of(no, &point);
        match &mut tr.open {
            Some((open, points)) if open.no == no => {
                open.absorb(&b);
                points.push(point);
            }
            _ => {
                if let Some(full) = tr.open.take() {
                    tr.finished.push(full);
                }
                tr.open = Some((b, vec![point]));
            }
        }
        Ok(())
    }

    /// Writes the summaries and the blocks touched by this batch.
    pub fn save(self, conn: &Connection, now: i64) -> Result<()> {
        let mut update = conn.prepare_cached(
            "UPDATE series SET count = ?2, nonfinite = ?3, first_step = ?4, last_step = ?5, last_value = ?6,
                min_value = ?7, max_value = ?8, ordered = ?9, updated_at = ?10, open_unit = ?11
             WHERE id = ?1",
        )?;
        for (id, mut tr) in self.state {
            if !tr.touched {
                continue;
            }
            let open_unit = match tr.units.as_mut() {
                Some(u) => {
                    u.save(conn)?;
                    u.open_column()
                }
                None => tr.series.open_unit.clone(),
            };
            let s = &tr.series;
            update.execute(params![
                id,
                s.count,
                s.nonfinite,
                s.first_step,
                s.last_step,
                s.last_value.filter(|v| !v.is_nan()),
                s.min_value,
                s.max_value,
                s.ordered,
                now,
                open_unit
            ])?;
            for (b, points) in tr.finished.iter().chain(tr.open.iter()) {
                write_block(conn, id, b, points)?;
            }
        }
        Ok(())
    }
}

/// The numbers of the blocks of `s` that may hold points with steps in `lo..=hi`, in order.
fn blocks_with_steps(conn: &Connection, s: &Series, lo: i64, hi: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT block FROM series_blocks WHERE series_id = ?1 AND last_step >= ?2 AND first_step <= ?3
         ORDER BY block",
    )?;
    let rows = stmt.query_map(params![s.id, lo, hi], |r| r.get(0))?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Every point of a series in arrival order (schema 8 builds its units from them).
pub fn all_points(conn: &Connection, series: i64) -> Result<Vec<Point>> {
    let blocks: Vec<i64> = conn
        .prepare_cached("SELECT block FROM series_blocks WHERE series_id = ?1 ORDER BY block")?
        .query_map([series], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    let mut out = Vec::new();
    for no in blocks {
        out.extend(chunk(conn, series, no, false)?);
    }
    Ok(out)
}

/// The points of `s` with steps in `lo..=hi`, in step order (arrival order within a step).
pub fn points(
    conn: &Connection,
    s: &Series,
    lo: i64,
    hi: i64,
    msg_ids: bool,
) -> Result<Vec<Point>> {
    require_points(s)?;
    let mut out = Vec::new();
    if step_sorted(s) {
        // Found by bisection rather than by a scan of the block rows.
        points_in_steps(
            conn,
            s,
            lo,
            hi,
            msg_ids,
            |_| false,
            |p| {
                out.push(p);
                true
            },
        )?;
        return Ok(out);
    }
    for block in blocks_with_steps(conn, s, lo, hi)? {
        out.extend(
            chunk(conn, s.id, block, msg_ids)?
                .into_iter()
                .filter(|p| p.step >= lo && p.step <= hi),
        );
    }
    // Blocks are in arrival order, which is step order only while the series stays ordered.
    if !s.ordered {
        out.sort_by_key(|p| (p.step, p.seq));
    }
    Ok(out)
}

/// The (step, msg_id) of every stored point of `s` with a step in `lo..=hi` that came with a
/// msg_id: what a batch is checked against for resent points.
pub fn stored_ids(conn: &Connection, s: &Series, lo: i64, hi: i64) -> Result<Vec<(i64, MsgId)>> {
    Ok(points(conn, s, lo, hi, true)?
        .into_iter()
        .filter_map(|p| p.msg_id.map(|m| (p.step, m)))
        .collect())
}

/// The part of a block's row that tells a paged read whether to decode it.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub no: i64,
    pub first_step: i64,
    pub last_step: i64,
    pub min_seq: i64,
    pub max_seq: i64,
}

fn extent_from_row(r: &Row) -> crate::sql::Result<Extent> {
    Ok(Extent {
        no: r.get(0)?,
        first_step: r.get(1)?,
        last_step: r.get(2)?,
        min_seq: r.get(3)?,
        max_seq: r.get(4)?,
    })
}

fn extent(conn: &Connection, series: i64, no: i64) -> Result<Option<Extent>> {
    Ok(conn
        .prepare_cached(
            "SELECT block, first_step, last_step, min_seq, max_seq FROM series_blocks
             WHERE series_id = ?1 AND block = ?2",
        )?
        .query_row(params![series, no], extent_from_row)
        .optional()?)
}

/// Whether the blocks of `s` are in step order, so a binary search over them by step is sound.
/// Results never clear `ordered`, so only metrics can be trusted here.
fn step_sorted(s: &Series) -> bool {
    s.ordered && s.kind == Kind::Metric
}

/// The first block of `s` for which `past` holds, given that once it holds for a block it holds
/// for every later one; by binary search over the block numbers (dense from 0), so a page of a
/// long series costs a dozen row lookups, not a scan of its block rows.
fn first_block(
    conn: &Connection,
    s: &Series,
    past: impl Fn(&Extent) -> bool,
) -> Result<Option<Extent>> {
    let (mut lo, mut hi) = (0, (s.count + BLOCK - 1) / BLOCK);
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match extent(conn, s.id, mid)? {
            Some(e) if past(&e) => {
                found = Some(e);
                hi = mid;
            }
            Some(_) => lo = mid + 1,
            // The summary counts more points than there are blocks: read what is there.
            None => hi = mid,
        }
    }
    Ok(found)
}

/// The blocks of `s` from number `from` on, in order, until `each` says stop.
fn blocks_from(
    conn: &Connection,
    s: &Series,
    from: i64,
    mut each: impl FnMut(&Extent) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT block, first_step, last_step, min_seq, max_seq FROM series_blocks
         WHERE series_id = ?1 AND block >= ?2 ORDER BY block",
    )?;
    let mut rows = stmt.query(params![s.id, from])?;
    while let Some(r) = rows.next()? {
        if !each(&extent_from_row(&r)?)? {
            break;
        }
    }
    Ok(())
}

/// A lower bound on the smallest seq above `after` in `s` (None: there is none), so an id-order
/// walk can jump over a gap left by other series.
pub fn next_seq_after(conn: &Connection, s: &Series, after: i64) -> Result<Option<i64>> {
    Ok(first_block(conn, s, |e| e.max_seq > after)?.map(|e| e.min_seq.max(after + 1)))
}

/// Calls `each` with every point of `s` whose seq is in `lo..=hi`, in seq order. Decodes only
/// the blocks that hold such points (seqs grow with block numbers in every series).
pub fn points_by_seq(
    conn: &Connection,
    s: &Series,
    lo: i64,
    hi: i64,
    msg_ids: bool,
    mut each: impl FnMut(Point),
) -> Result<()> {
    require_points(s)?;
    let Some(first) = first_block(conn, s, |e| e.max_seq >= lo)? else {
        return Ok(());
    };
    blocks_from(conn, s, first.no, |e| {
        if e.min_seq > hi {
            return Ok(false);
        }
        for p in chunk(conn, s.id, e.no, msg_ids)? {
            if p.seq >= lo && p.seq <= hi {
                each(p);
            }
        }
        Ok(true)
    })
}

/// Up to `limit` + 1 points of `s` with a seq above `after`, in seq (arrival) order: a page of
/// a metric's history and whether another follows. Reads windows of seqs from the first one
/// above `after`, so it holds at most a few pages' worth of points whatever the series' size.
pub fn after_seq(conn: &Connection, s: &Series, after: i64, limit: usize) -> Result<Vec<Point>> {
    require_points(s)?;
    let window = (limit as i64).saturating_mul(4).max(BLOCK);
    let mut out = Vec::new();
    let mut from = after;
    while out.len() <= limit {
        let Some(lo) = next_seq_after(conn, s, from)? else {
            break;
        };
        let hi = lo.saturating_add(window);
        points_by_seq(conn, s, lo, hi, false, |p| out.push(p))?;
        if hi == i64::MAX {
            break;
        }
        from = hi;
    }
    out.truncate(limit + 1);
    Ok(out)
}

/// A lower bound on the smallest step at or above `lo` among the points of `s` (None: no
/// point has one), so a step-order walk can jump over a gap.
pub fn next_step_from(conn: &Connection, s: &Series, lo: i64) -> Result<Option<i64>> {
    if step_sorted(s) {
        return Ok(first_block(conn, s, |e| e.last_step >= lo)?.map(|e| e.first_step.max(lo)));
    }
    let least: Option<i64> = conn
        .prepare_cached(
            "SELECT min(first_step) FROM series_blocks WHERE series_id = ?1 AND last_step >= ?2",
        )?
        .query_row(params![s.id, lo], |r| r.get(0))?;
    Ok(least.map(|f| f.max(lo)))
}

/// Calls `each` with every point of `s` whose step is in `lo..=hi`, block by block in arrival
/// order (so the points of any one step come in seq order), until `each` says stop. Decodes
/// only the blocks whose step extent meets the range: found by binary search while the series
/// is in step order, by a scan of its block rows (no points decoded) when it is not.
pub fn points_in_steps(
    conn: &Connection,
    s: &Series,
    lo: i64,
    hi: i64,
    msg_ids: bool,
    skip: impl Fn(&Extent) -> bool,
    mut each: impl FnMut(Point) -> bool,
) -> Result<()> {
    require_points(s)?;
    let sorted = step_sorted(s);
    let from = if sorted {
        match first_block(conn, s, |e| e.last_step >= lo)? {
            Some(e) => e.no,
            None => return Ok(()),
        }
    } else {
        0
    };
    blocks_from(conn, s, from, |e| {
        if sorted && e.first_step > hi {
            return Ok(false);
        }
        if e.last_step < lo || e.first_step > hi || skip(e) {
            return Ok(true);
        }
        for p in chunk(conn, s.id, e.no, msg_ids)? {
            if p.step >= lo && p.step <= hi && !each(p) {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// What a chart's x axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Step,
    /// Milliseconds since the unix epoch, when the point arrived.
    Time,
}

/// A series cut into at most `points` buckets of consecutive points (columnar, for charts).
#[derive(Debug, Clone, Default)]
pub struct Bucketed {
    pub total: i64,
    /// One entry per point: the range held no more points than were asked for, and (by step)
    /// no step twice.
    pub raw: bool,
    pub x: Vec<i64>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
    pub last: Vec<Option<f64>>,
    pub count: Vec<i64>,
    pub nonfinite: Vec<i64>,
}

/// Buckets the part of metric series `s` whose x lies in `from..=to`. Buckets are runs of
/// consecutive points; each reports the x of its last point, min/max/last over its finite
/// values, its point count and how many points were NaN/Inf, so no spike is ever averaged away.
/// A large range is answered from the 128-point blocks; a small one, or a series whose steps
/// arrived out of order, from the points themselves.
///
/// By step, points of the same step (a run resumed from a checkpoint logs some steps again)
/// are one unit, never split between buckets: its line value is the one that arrived last,
/// its min/max cover them all.
pub fn downsample(
    conn: &Connection,
    exp: &Experiment,
    s: &Series,
    axis: Axis,
    from: Option<i64>,
    to: Option<i64>,
    points: usize,
) -> Result<Bucketed> {
    let points = points.max(1);
    // Time is stored relative to the experiment's creation; the API speaks absolute ms.
    let shift = if axis == Axis::Time {
        exp.created_at
    } else {
        0
    };
    let lo = from.map_or(i64::MIN, |f| f.saturating_sub(shift));
    let hi = to.map_or(i64::MAX, |t| t.saturating_sub(shift));
    if lo > hi {
        return Ok(Bucketed::default());
    }
    let x_of = |b: &Block| {
        if axis == Axis::Step {
            b.last_step
        } else {
            b.last_t
        }
    };
    let first_x = |b: &Block| {
        if axis == Axis::Step {
            b.first_step
        } else {
            b.first_t
        }
    };

    if axis == Axis::Step
        && s.kind == Kind::Metric
        && let Some(open) = s.open_unit.as_deref()
    {
        return by_units(conn, s, Units::new(s.id, Some(open))?, lo, hi, points);
    }
    if s.compacted_at.is_some() {
        // The points are gone: every block reaching the range counts whole.
        let mut blocks = blocks_in(conn, s.id, axis, lo, hi)?;
        if !s.ordered {
            blocks.sort_by_key(|b| (first_x(b), x_of(b), b.no));
        }
        let units = if axis == Axis::Step {
            same_steps_together(blocks)
        } else {
            blocks
        };
        return Ok(bucket(&units, points, shift, axis));
    }
    let blocks = if s.ordered {
        blocks_in(conn, s.id, axis, lo, hi)?
    } else {
        Vec::new()
    };
    let inside = blocks
        .iter()
        .filter(|b| first_x(b) >= lo && x_of(b) <= hi)
        .count();
    // Blocks answer when they give at least half the buckets asked for ("at most N", so a
    // 100k-point series asked for 800 buckets gets 782 whole blocks, not a 100k-row read).
    let units: Vec<Block> = if s.ordered && inside * 2 >= points {
        let mut units = Vec::with_capacity(blocks.len());
        for b in &blocks {
            if first_x(b) >= lo && x_of(b) <= hi {
                units.push(*b);
            } else if let Some(part) = fold_points(&block_points(conn, s, b.no)?, axis, lo, hi) {
                // An edge block reaching past the range: only its points inside count.
                units.push(part);
            }
        }
        units
    } else {
        let (step_lo, step_hi) = match axis {
            Axis::Step => (lo, hi),
            // Ordered series: the blocks say which steps the time range covers.
            Axis::Time if s.ordered => match (blocks.first(), blocks.last()) {
                (Some(a), Some(b)) => (a.first_step, b.last_step),
                _ => return Ok(Bucketed::default()),
            },
            Axis::Time => (i64::MIN, i64::MAX),
        };
        let mut pts: Vec<Block> = raw_points(conn, s, step_lo, step_hi)?
            .into_iter()
            .filter(|p| {
                let x = x_of(p);
                x >= lo && x <= hi
            })
            .collect();
        if axis == Axis::Time && !s.ordered {
            pts.sort_by_key(|p| (p.last_t, p.min_seq));
        }
        pts
    };
    let units = if axis == Axis::Step {
        same_steps_together(units)
    } else {
        units
    };

    Ok(bucket(&units, points, shift, axis))
}

/// [`downsample`] by step from the series' units: the units wholly inside `lo..=hi` at the
/// coarsest level that still gives half the buckets asked for, the points of the (at most two)
/// units reaching past an edge folded into one each; or, when fewer units than that lie
/// inside, the points themselves. Whether the steps arrived in order does not matter.
fn by_units(
    conn: &Connection,
    s: &Series,
    mut u: Units,
    lo: i64,
    hi: i64,
    points: usize,
) -> Result<Bucketed> {
    let first = if lo == i64::MIN {
        0
    } else {
        u.first_reaching(conn, lo)?
    };
    let last = if hi == i64::MAX {
        u.len() - 1
    } else {
        u.last_starting(conn, hi)?
    };
    if first > last {
        return Ok(Bucketed::default());
    }
    let want = (points as i64 + 1) / 2;
    if s.compacted_at.is_some() {
        // The points are gone: the units reaching past an edge count whole, and a range of
        // fewer units than buckets is drawn unit by unit.
        let level = Units::level_for(last - first + 1, want);
        let units: Vec<Block> = u
            .cover(conn, first, last, level)?
            .iter()
            .map(block_of_unit)
            .collect();
        return Ok(bucket(&units, points, 0, Axis::Step));
    }
    let (a, b) = (u.get(conn, 0, first)?, u.get(conn, 0, last)?);
    let c0 = if a.first_step >= lo { first } else { first + 1 };
    let c1 = if b.last_step <= hi { last } else { last - 1 };
    let inside = (c1 - c0 + 1).max(0);
    let units: Vec<Block> = if inside >= want {
        let mut edges = Vec::new();
        if c0 > first {
            edges.push((lo, a.last_step));
        }
        if c1 < last {
            edges.push((b.first_step, hi));
        }
        let pts = points_in_ranges(conn, s, &edges)?;
        let edge = |(from, to): (i64, i64)| {
            fold_points(
                &pts.iter()
                    .filter(|p| p.step >= from && p.step <= to)
                    .map(|p| Block::of(0, p))
                    .collect::<Vec<_>>(),
                Axis::Step,
                from,
                to,
            )
        };
        let mut out = Vec::with_capacity(points * 2 + 2);
        if c0 > first {
            out.extend(edge(edges[0]));
        }
        let level = Units::level_for(inside, want);
        out.extend(u.cover(conn, c0, c1, level)?.iter().map(block_of_unit));
        if c1 < last {
            out.extend(edge(*edges.last().expect("pushed above")));
        }
        out
    } else {
        same_steps_together(raw_points(conn, s, lo, hi)?)
    };
    Ok(bucket(&units, points, 0, Axis::Step))
}

/// A unit as the bucketing sees it (a block of consecutive steps).
fn block_of_unit(u: &Unit) -> Block {
    Block {
        no: 0,
        first_step: u.first_step,
        last_step: u.last_step,
        // Not read: by step, buckets take their x from steps.
        first_t: 0,
        last_t: 0,
        min: u.min,
        max: u.max,
        last: u.last_finite.map_or(f64::NAN, |(_, v)| v),
        last_finite: u.last_finite.map(|(_, v)| v),
        count: u.count,
        nonfinite: u.nonfinite,
        min_seq: 0,
        max_seq: 0,
    }
}

/// The points of `s` with a step in any of `ranges`, in step order (arrival within a step):
/// one walk over the block rows for a series whose steps arrived out of order.
fn points_in_ranges(conn: &Connection, s: &Series, ranges: &[(i64, i64)]) -> Result<Vec<Point>> {
    let mut out = Vec::new();
    if ranges.is_empty() {
        return Ok(out);
    }
    if step_sorted(s) {
        for &(lo, hi) in ranges {
            out.extend(points(conn, s, lo, hi, false)?);
        }
        return Ok(out);
    }
    let within = |step: i64| ranges.iter().any(|&(lo, hi)| step >= lo && step <= hi);
    let (a, b) = (ranges[0], ranges[ranges.len() - 1]);
    if ranges.len() > 2 {
        return Err(Error::Internal("at most two edge ranges".into()));
    }
    // SQLite filters the block rows; only those that meet a range come back.
    let mut stmt = conn.prepare_cached(
        "SELECT block FROM series_blocks WHERE series_id = ?1
           AND ((last_step >= ?2 AND first_step <= ?3) OR (last_step >= ?4 AND first_step <= ?5))
         ORDER BY block",
    )?;
    let blocks: Vec<i64> = stmt
        .query_map(params![s.id, a.0, a.1, b.0, b.1], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    for no in blocks {
        out.extend(
            chunk(conn, s.id, no, false)?
                .into_iter()
                .filter(|p| within(p.step)),
        );
    }
    out.sort_by_key(|p| (p.step, p.seq));
    Ok(out)
}

/// Cuts `units` (consecutive, in x order) into at most `points` buckets of whole units.
fn bucket(units: &[Block], points: usize, shift: i64, axis: Axis) -> Bucketed {
    let total: i64 = units.iter().map(|u| u.count).sum();
    let raw = total as usize <= points && units.iter().all(|u| u.count == 1);
    let n = units.len().min(points);
    let mut out = Bucketed {
        total,
        raw,
        ..Bucketed::default()
    };
    for i in 0..n {
        let group = &units[i * units.len() / n..(i + 1) * units.len() / n];
        let mut b = group[0];
        for next in &group[1..] {
            b.absorb(next);
        }
        out.x.push(
            if axis == Axis::Step {
                b.last_step
            } else {
                b.last_t
            } + shift,
        );
        out.min.push(b.min);
        out.max.push(b.max);
        out.last.push(b.last_finite);
        out.count.push(b.count);
        out.nonfinite.push(b.nonfinite);
    }
    out
}

fn blocks_in(conn: &Connection, series: i64, axis: Axis, lo: i64, hi: i64) -> Result<Vec<Block>> {
    let range = match axis {
        Axis::Step => "last_step >= ?2 AND first_step <= ?3",
        Axis::Time => "last_t >= ?2 AND first_t <= ?3",
    };
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM series_blocks WHERE series_id = ?1 AND {range} ORDER BY block"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![series, lo, hi], block_from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The points of a series with steps in `lo..=hi`, each as a one-point block, in step order.
fn raw_points(conn: &Connection, s: &Series, lo: i64, hi: i64) -> Result<Vec<Block>> {
    Ok(points(conn, s, lo, hi, false)?
        .into_iter()
        .map(|p| Block::of(0, &p))
        .collect())
}

/// The points of one block, each as a one-point block, in arrival (= step, here) order.
fn block_points(conn: &Connection, s: &Series, no: i64) -> Result<Vec<Block>> {
    Ok(chunk(conn, s.id, no, false)?
        .into_iter()
        .map(|p| Block::of(no, &p))
        .collect())
}

/// Folds each unit into the one before it when they share a step: points of one step, in
/// arrival order (raw points come sorted by step, then arrival; blocks of an ordered series
/// touch only at an edge step, and arrive in order). So the later value is the unit's last.
fn same_steps_together(units: Vec<Block>) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::with_capacity(units.len());
    for u in units {
        match out.last_mut() {
            Some(prev) if prev.last_step == u.first_step => prev.absorb(&u),
            _ => out.push(u),
        }
    }
    out
}

/// The points among `pts` whose x is in `lo..=hi`, folded into one unit.
fn fold_points(pts: &[Block], axis: Axis, lo: i64, hi: i64) -> Option<Block> {
    let mut inside = pts.iter().filter(|p| {
        let x = if axis == Axis::Step {
            p.last_step
        } else {
            p.last_t
        };
        x >= lo && x <= hi
    });
    let mut unit = *inside.next()?;
    for p in inside {
        unit.absorb(p);
    }
    Some(unit)
}

/// The metric `name` of an experiment, if it has one (grouped charts ask for a few names
/// across many runs, so they read those rows alone rather than every series of each run).
pub fn metric_named(conn: &Connection, experiment: i64, name: &str) -> Result<Option<Series>> {
    let sql =
        format!("SELECT {COLUMNS} FROM series WHERE experiment_id = ?1 AND kind = 0 AND name = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![experiment, name], from_row)
        .optional()?)
}

/// Calls `each` with every point of the blocks of `s` whose steps meet `lo..=hi` (and of any
/// block between them, whose points may lie outside: the caller filters), block by block in
/// arrival order. One range scan over the series' chunks rather than a lookup per block, for
/// reads that take most of a series (grouped charts read every run's whole line).
pub fn scan_points(
    conn: &Connection,
    s: &Series,
    lo: i64,
    hi: i64,
    mut each: impl FnMut(&Point),
) -> Result<()> {
    require_points(s)?;
    let (first, last): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT min(block), max(block) FROM series_blocks
             WHERE series_id = ?1 AND last_step >= ?2 AND first_step <= ?3",
        )?
        .query_row(params![s.id, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(());
    };
    let mut stmt =
        conn.prepare_cached("SELECT data FROM chunks WHERE id BETWEEN ?1 AND ?2 ORDER BY id")?;
    let mut rows = stmt.query(params![chunk_id(s.id, first), chunk_id(s.id, last)])?;
    while let Some(r) = rows.next()? {
        let data = r.get_ref(0)?.as_blob().map_err(crate::sql::Error::from)?;
        for p in packed::decode(data, false)? {
            each(&p);
        }
    }
    Ok(())
}

/// For a series whose raw points retention deleted: calls `each(step, t, seq, value)` once per
/// block whose steps meet `lo..=hi`, with the block's last point as its aggregates keep it (its
/// greatest step and time, its last seq and value; NaN when that value was not finite).
pub fn scan_block_ends(
    conn: &Connection,
    s: &Series,
    lo: i64,
    hi: i64,
    mut each: impl FnMut(i64, i64, i64, f64),
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT last_step, last_t, max_seq, last_value FROM series_blocks
         WHERE series_id = ?1 AND last_step >= ?2 AND first_step <= ?3 ORDER BY block",
    )?;
    let mut rows = stmt.query(params![s.id, lo, hi])?;
    while let Some(r) = rows.next()? {
        let value: Option<f64> = r.get(3)?;
        each(r.get(0)?, r.get(1)?, r.get(2)?, value.unwrap_or(f64::NAN));
    }
    Ok(())
}

/// The least and greatest time of the points of `s` (ms after its experiment's creation), from
/// its block rows, without decoding a point.
pub fn time_extent(conn: &Connection, s: &Series) -> Result<Option<(i64, i64)>> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(first_t), max(last_t) FROM series_blocks WHERE series_id = ?1")?
        .query_row([s.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(lo.zip(hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::{self, NewLog};
    use crate::store::units;

    fn experiment(conn: &Connection) -> Experiment {
        crate::store::test_experiment(conn)
    }

    /// A noisy decaying curve with a few spikes and non-finite values, as training produces.
    fn value(step: i64) -> f64 {
        match step {
            s if s % 9_973 == 0 => 1e6,      // spikes
            s if s % 7_919 == 0 => f64::NAN, // diverged steps
            s if s % 15_485 == 0 => f64::INFINITY,
            s => 1.0 / (1.0 + s as f64) + ((s * 7_919) % 1_000) as f64 * 1e-6,
        }
    }

    fn ingest(conn: &Connection, exp: &Experiment, steps: std::ops::Range<i64>, batch: usize) {
        let all: Vec<i64> = steps.collect();
        for (i, chunk) in all.chunks(batch).enumerate() {
            let logs: Vec<NewLog> = chunk
                .iter()
                .map(|&s| NewLog {
                    msg_id: None,
                    name: "loss".into(),
                    kind: Kind::Metric,
                    step: Some(s),
                    value: value(s),
                    at: None,
                    extra_metadata: None,
                })
                .collect();
            logs::insert(conn, exp, &logs, 1_000 + i as i64).unwrap();
        }
    }

    /// Checks every bucket against a scan of the points with x in (previous x, x].
    fn check_against_scan(b: &Bucketed, steps: &[i64]) {
        let mut prev = i64::MIN;
        let mut total = 0;
        for i in 0..b.x.len() {
            let pts: Vec<f64> = steps
                .iter()
                .filter(|&&s| s > prev && s <= b.x[i])
                .map(|&s| value(s))
                .collect();
            let finite: Vec<f64> = pts.iter().copied().filter(|v| v.is_finite()).collect();
            assert_eq!(b.count[i], pts.len() as i64, "bucket {i} count");
            assert_eq!(
                b.nonfinite[i],
                (pts.len() - finite.len()) as i64,
                "bucket {i} non-finite"
            );
            assert_eq!(
                b.min[i],
                finite.iter().copied().reduce(f64::min),
                "bucket {i} min"
            );
            assert_eq!(
                b.max[i],
                finite.iter().copied().reduce(f64::max),
                "bucket {i} max"
            );
            assert_eq!(b.last[i], finite.last().copied(), "bucket {i} last");
            prev = b.x[i];
            total += pts.len() as i64;
        }
        assert_eq!(b.total, total);
    }

    #[test]
    fn buckets_match_a_brute_force_scan_and_keep_every_spike() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 0..200_000, 5_000);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert!(s.ordered);
        assert_eq!(s.count, 200_000);
        let steps: Vec<i64> = (0..200_000).collect();

        // Whole range, from the blocks.
        let b = downsample(&conn, &exp, &s, Axis::Step, None, None, 1000).unwrap();
        assert_eq!(b.x.len(), 1000);
        assert!(!b.raw);
        check_against_scan(&b, &steps);
        let spikes = b.max.iter().filter(|m| **m == Some(1e6)).count();
        assert_eq!(
            spikes,
            (0..200_000).filter(|s| s % 9_973 == 0).count(),
            "every spike survives"
        );

        // A zoom with edges inside blocks, still from blocks.
        let b = downsample(&conn, &exp, &s, Axis::Step, Some(1_000), Some(150_333), 700).unwrap();
        let zoomed: Vec<i64> = (1_000..=150_333).collect();
        check_against_scan(&b, &zoomed);
        assert_eq!(b.total, zoomed.len() as i64);

        // A narrow zoom, from the raw points.
        let b = downsample(
            &conn,
            &exp,
            &s,
            Axis::Step,
            Some(15_000),
            Some(40_000),
            1000,
        )
        .unwrap();
        check_against_scan(&b, &(15_000..=40_000).collect::<Vec<_>>());

        // Fewer points than asked for: every point as it is.
        let b = downsample(&conn, &exp, &s, Axis::Step, Some(7_910), Some(7_930), 1000).unwrap();
        assert!(b.raw);
        assert_eq!(b.x, (7_910..=7_930).collect::<Vec<_>>());
        assert_eq!(b.nonfinite.iter().sum::<i64>(), 1, "step 7919 was NaN");
    }

    #[test]
    fn time_axis_and_out_of_order_steps_fall_back_correctly() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 1_000..3_000, 100);
        ingest(&conn, &exp, 0..1_000, 100); // late, lower steps
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert!(!s.ordered);
        let b = downsample(&conn, &exp, &s, Axis::Step, None, None, 100).unwrap();
        check_against_scan(&b, &(0..3_000).collect::<Vec<_>>());
        // By time: batch i of each ingest call arrived at 1000 + i ms, so 1000..=1004 holds
        // five 100-point batches of each call.
        let b = downsample(&conn, &exp, &s, Axis::Time, Some(1_000), Some(1_004), 100).unwrap();
        assert_eq!(b.total, 1_000);
        assert!(b.x.windows(2).all(|w| w[0] <= w[1]), "time buckets ascend");
        assert_eq!(
            s.min_value,
            Some(
                (0..3_000)
                    .map(value)
                    .filter(|v| v.is_finite())
                    .fold(f64::MAX, f64::min)
            )
        );
    }

    /// Stores `points` (step, value) as one batch of the metric "loss".
    fn ingest_points(conn: &Connection, exp: &Experiment, points: &[(i64, f64)], now: i64) {
        let logs: Vec<NewLog> = points
            .iter()
            .map(|&(step, value)| NewLog {
                msg_id: None,
                name: "loss".into(),
                kind: Kind::Metric,
                step: Some(step),
                value,
                at: None,
                extra_metadata: None,
            })
            .collect();
        logs::insert(conn, exp, &logs, now).unwrap();
    }

    /// Checks every bucket against a scan of `logged` (step, value), in arrival order: the
    /// points with a step in (previous x, x], their min/max over all of them and, for the line,
    /// the last finite value by step and then arrival. No step is in two buckets.
    fn check_against_logged(b: &Bucketed, logged: &[(i64, f64)]) {
        let mut prev = i64::MIN;
        let mut total = 0;
        for i in 0..b.x.len() {
            assert!(b.x[i] > prev, "bucket {i}: x {} after {prev}", b.x[i]);
            let mut pts: Vec<(usize, i64, f64)> = logged
                .iter()
                .enumerate()
                .filter(|(_, (s, _))| *s > prev && *s <= b.x[i])
                .map(|(arrival, &(s, v))| (arrival, s, v))
                .collect();
            pts.sort_by_key(|&(arrival, s, _)| (s, arrival));
            let finite: Vec<f64> = pts.iter().map(|p| p.2).filter(|v| v.is_finite()).collect();
            assert_eq!(b.count[i], pts.len() as i64, "bucket {i} count");
            assert_eq!(
                b.nonfinite[i],
                (pts.len() - finite.len()) as i64,
                "bucket {i} non-finite"
            );
            assert_eq!(
                b.min[i],
                finite.iter().copied().reduce(f64::min),
                "bucket {i} min"
            );
            assert_eq!(
                b.max[i],
                finite.iter().copied().reduce(f64::max),
                "bucket {i} max"
            );
            assert_eq!(b.last[i], finite.last().copied(), "bucket {i} last");
            prev = b.x[i];
            total += pts.len() as i64;
        }
        assert_eq!(b.total, total);
    }

    #[test]
    fn a_relogged_step_is_one_unit_whose_line_is_the_later_value_and_band_covers_both() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        // Trained to step 2999, resumed from the checkpoint of step 1000: steps 1000..=1499
        // again, with other values (one of them NaN), then on past the old end.
        let first: Vec<(i64, f64)> = (0..3_000).map(|s| (s, value(s))).collect();
        let again: Vec<(i64, f64)> = (1_000..1_500)
            .map(|s| {
                (
                    s,
                    if s == 1_234 {
                        f64::NAN
                    } else {
                        10.0 - value(s)
                    },
                )
            })
            .chain((3_000..3_200).map(|s| (s, value(s))))
            .collect();
        ingest_points(&conn, &exp, &first[..1_700], 1_000);
        ingest_points(&conn, &exp, &first[1_700..], 1_001);
        ingest_points(&conn, &exp, &again, 1_002);
        let logged: Vec<(i64, f64)> = first.iter().chain(&again).copied().collect();
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert!(!s.ordered);
        assert_eq!(s.count, 3_700, "every point is kept");

        // At full resolution: one entry per step, the later value on the line.
        let b = downsample(&conn, &exp, &s, Axis::Step, None, None, 5_000).unwrap();
        assert_eq!(b.x, (0..3_200).collect::<Vec<_>>());
        check_against_logged(&b, &logged);
        assert_eq!(b.last[1_100], Some(10.0 - value(1_100)));
        assert_eq!(b.max[1_100], Some(10.0 - value(1_100)));
        assert_eq!(b.min[1_100], Some(value(1_100)));
        assert_eq!(b.count[1_100], 2);
        assert_eq!(
            (b.last[1_234], b.nonfinite[1_234]),
            (Some(value(1_234)), 1),
            "a NaN re-log is marked; the line keeps the finite value"
        );
        assert_eq!(b.last[2_000], Some(value(2_000)), "logged once");

        // Fewer buckets than steps, zooms with edges inside the re-logged range.
        for (from, to, points) in [
            (None, None, 1_000),
            (None, None, 7),
            (Some(999), Some(1_001), 10),
            (Some(1_200), Some(2_000), 333),
            (Some(1_499), None, 50),
        ] {
            let b = downsample(&conn, &exp, &s, Axis::Step, from, to, points).unwrap();
            assert!(b.x.len() <= points);
            let inside: Vec<(i64, f64)> = logged
                .iter()
                .copied()
                .filter(|&(st, _)| from.is_none_or(|f| st >= f) && to.is_none_or(|t| st <= t))
                .collect();
            check_against_logged(&b, &inside);
        }
    }

    #[test]
    fn a_step_logged_again_across_a_block_edge_stays_in_one_bucket() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        // Ordered all along (a step equal to the last is in order): step 127 ends block 0 and
        // starts block 1.
        let logged: Vec<(i64, f64)> = (0..128)
            .map(|s| (s, s as f64))
            .chain((127..1_000).map(|s| (s, -(s as f64))))
            .collect();
        ingest_points(&conn, &exp, &logged, 1_000);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert!(s.ordered);
        for points in [1, 2, 3, 5, 8, 9, 64, 500, 2_000] {
            let b = downsample(&conn, &exp, &s, Axis::Step, None, None, points).unwrap();
            check_against_logged(&b, &logged);
        }
        let b = downsample(&conn, &exp, &s, Axis::Step, Some(100), Some(200), 1_000).unwrap();
        assert_eq!(b.x, (100..=200).collect::<Vec<_>>());
        assert_eq!(
            (b.last[27], b.min[27], b.max[27]),
            (Some(-127.0), Some(-127.0), Some(127.0))
        );
    }

    /// A small deterministic generator (xorshift), so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> i64 {
            (self.next() % n) as i64
        }

        /// Mostly a noisy curve; sometimes NaN, +-Inf, -0.0, 0.0 or a spike.
        fn value(&mut self, step: i64) -> f64 {
            match self.below(40) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                5 => 1e9,
                _ => 1.0 / (1.0 + step as f64) + self.below(1_000) as f64 * 1e-5,
            }
        }
    }

    /// The series as it was logged: steps in arrival order, with rewinds (a run resumed from a
    /// checkpoint), steps logged twice in a row, gaps, and a part logged in step order.
    fn history(rng: &mut Rng, shape: u8) -> Vec<(i64, f64)> {
        let mut steps: Vec<i64> = Vec::new();
        match shape {
            // In order, a step now and then logged again at once, gaps of 1-3.
            0 => {
                let mut s = 0;
                for _ in 0..6_000 {
                    steps.push(s);
                    if rng.below(10) != 0 {
                        s += 1 + rng.below(3) * i64::from(rng.below(5) == 0);
                    }
                }
            }
            // Resumed three times, each from an earlier checkpoint.
            1 => {
                steps.extend(0..3_000);
                steps.extend(1_000..4_000);
                steps.extend(2_500..2_600);
                steps.extend((3_900..7_000).step_by(2));
                steps.extend(0..50);
            }
            // Logged backwards in small runs (every point is a rewind).
            2 => {
                for run in (0..60).rev() {
                    steps.extend(run * 50..run * 50 + 50);
                }
            }
            // One point.
            _ => steps.push(42),
        }
        steps.into_iter().map(|s| (s, rng.value(s))).collect()
    }

    /// Stores `logged` in batches of random sizes, as one run would send them.
    fn ingest_history(conn: &Connection, exp: &Experiment, rng: &mut Rng, logged: &[(i64, f64)]) {
        let mut at = 0;
        let mut now = 1_000;
        while at < logged.len() {
            let n = (1 + rng.below(700) as usize).min(logged.len() - at);
            ingest_points(conn, exp, &logged[at..at + n], now);
            at += n;
            now += 1;
        }
    }

    #[test]
    fn units_answer_every_zoom_and_bucket_count_as_a_scan_of_the_points_does() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for shape in 0..4 {
            let conn = crate::db::memory();
            let exp = experiment(&conn);
            let logged = history(&mut rng, shape);
            ingest_history(&conn, &exp, &mut rng, &logged);
            let s = list(&conn, exp.rowid).unwrap().remove(0);
            assert_eq!(s.ordered, shape == 0 || shape == 3, "shape {shape}");
            assert!(s.open_unit.is_some(), "a metric has units");

            // What ingest built, batch by batch, is what a build from every point gives (the
            // schema 8 migration and `tora doctor` rebuild them so).
            let built = units::build(&conn, s.id, all_points(&conn, s.id).unwrap()).unwrap();
            let stored: Vec<(i64, Vec<u8>)> = conn
                .prepare("SELECT id, data FROM series_units ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<crate::sql::Result<_>>()
                .unwrap();
            assert_eq!(stored, built.rows(), "shape {shape}: stored units");
            assert_eq!(s.open_unit, built.open_column(), "shape {shape}: open unit");

            // Zoom edges on the steps where units and levels begin and end, one either side,
            // and random ones.
            let mut u = Units::new(s.id, s.open_unit.as_deref()).unwrap();
            let mut edges = vec![None];
            for level in 0..3u32 {
                let span = 1i64 << (2 * level);
                let mut i = 0;
                while i < u.len() {
                    let unit = u.get(&conn, 0, i).unwrap();
                    for e in [
                        unit.first_step - 1,
                        unit.first_step,
                        unit.last_step,
                        unit.last_step + 1,
                    ] {
                        edges.push(Some(e));
                    }
                    i += span * (1 + rng.below(3));
                }
            }
            for _ in 0..20 {
                edges.push(Some(rng.below(8_000) - 100));
            }
            let mut checked = 0;
            for _ in 0..400 {
                let from = edges[rng.below(edges.len() as u64) as usize];
                let to = edges[rng.below(edges.len() as u64) as usize];
                let points =
                    [1, 2, 3, 7, 64, 128, 299, 300, 1_000, 5_000, 10_000][rng.below(11) as usize];
                let b = downsample(&conn, &exp, &s, Axis::Step, from, to, points).unwrap();
                assert!(b.x.len() <= points);
                let inside: Vec<(i64, f64)> = logged
                    .iter()
                    .copied()
                    .filter(|&(st, _)| from.is_none_or(|f| st >= f) && to.is_none_or(|t| st <= t))
                    .collect();
                check_against_logged(&b, &inside);
                checked += usize::from(!b.x.is_empty());
            }
            assert!(checked > 100, "shape {shape}: most ranges hold points");
        }
    }

    #[test]
    fn a_wide_range_is_answered_from_coarse_units_with_exact_bands() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 0..300_000, 7_000);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        let mut u = Units::new(s.id, s.open_unit.as_deref()).unwrap();
        assert_eq!(u.len(), (300_000 + BLOCK - 1) / BLOCK, "a unit per block");
        // 300 buckets over 2,344 units: level 1 (units of 512 points) answers.
        let b = downsample(&conn, &exp, &s, Axis::Step, None, None, 300).unwrap();
        assert!(b.x.len() >= 150 && b.x.len() <= 300, "{}", b.x.len());
        check_against_scan(&b, &(0..300_000).collect::<Vec<_>>());
        // 585 closed level-1 units (units 0..2340), then 2340..=2342 and the open one.
        assert_eq!(u.cover(&conn, 0, u.len() - 1, 1).unwrap().len(), 585 + 4);
        // A zoom whose edges fall inside units, at every bucket count.
        for points in [1, 10, 150, 300, 1_000] {
            let b = downsample(
                &conn,
                &exp,
                &s,
                Axis::Step,
                Some(1_001),
                Some(299_000),
                points,
            )
            .unwrap();
            check_against_scan(&b, &(1_001..=299_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn summaries_follow_ingest() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 0..20_000, 3_333);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert_eq!(
            (s.first_step, s.last_step, s.count),
            (Some(0), Some(19_999), 20_000)
        );
        assert_eq!(s.last_value, Some(value(19_999)));
        assert_eq!(s.max_value, Some(1e6));
        assert_eq!(
            s.nonfinite,
            (0..20_000).filter(|&x| !value(x).is_finite()).count() as i64
        );
        let blocks: i64 = conn
            .query_row("SELECT count(*) FROM series_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, (20_000 + BLOCK - 1) / BLOCK);
    }

    #[test]
    fn a_block_written_as_version_one_is_extended_and_rewritten_as_version_two() {
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 0..200, 200);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        // Both blocks back in the old format, as a database from before version 2 holds them.
        for no in 0..2 {
            let old = packed::encode_v1(&chunk(&conn, s.id, no, true).unwrap());
            conn.execute(
                "UPDATE chunks SET data = ?2 WHERE id = ?1",
                params![chunk_id(s.id, no), old],
            )
            .unwrap();
        }
        let version = |no| -> u8 {
            conn.query_row(
                "SELECT data FROM chunks WHERE id = ?1",
                [chunk_id(s.id, no)],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .unwrap()[0]
        };
        assert_eq!((version(0), version(1)), (1, 1));

        ingest(&conn, &exp, 200..300, 100);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        let got = points(&conn, &s, 0, i64::MAX, false).unwrap();
        assert_eq!(
            got.iter().map(|p| p.step).collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>()
        );
        assert!(
            got.iter()
                .all(|p| p.value.to_bits() == value(p.step).to_bits())
        );
        // The full block stays as it was; the open one was extended and written anew.
        assert_eq!((version(0), version(1), version(2)), (1, 2, 2));
    }

    type Columns = (
        i64,
        bool,
        Vec<i64>,
        Vec<Option<f64>>,
        Vec<Option<f64>>,
        Vec<Option<f64>>,
        Vec<i64>,
        Vec<i64>,
    );

    fn columns(b: &Bucketed) -> Columns {
        (
            b.total,
            b.raw,
            b.x.clone(),
            b.min.clone(),
            b.max.clone(),
            b.last.clone(),
            b.count.clone(),
            b.nonfinite.clone(),
        )
    }

    /// Compaction deletes the chunks in bounded steps, done once; charts answered from
    /// aggregates answer the same after it, a zoom past a unit answers whole units (exact for
    /// the steps they hold), and what needs the points is refused.
    #[test]
    fn a_compacted_series_charts_from_its_aggregates_and_refuses_raw_reads() {
        use crate::store::retention;
        let conn = crate::db::memory();
        let exp = experiment(&conn);
        ingest(&conn, &exp, 0..50_000, 5_000);
        let s = list(&conn, exp.rowid).unwrap().remove(0);
        let charts = |s: &Series| {
            [
                downsample(&conn, &exp, s, Axis::Step, None, None, 100).unwrap(),
                downsample(&conn, &exp, s, Axis::Step, None, None, 300).unwrap(),
                downsample(&conn, &exp, s, Axis::Step, Some(1_280), Some(12_799), 40).unwrap(),
                downsample(&conn, &exp, s, Axis::Time, None, None, 100).unwrap(),
            ]
            .map(|b| columns(&b))
        };
        let before = charts(&s);

        retention::compact(&conn, exp.rowid, 86_400_000).unwrap();
        let blocks = (50_000 + BLOCK - 1) / BLOCK;
        let mut steps = 0;
        loop {
            let d = retention::drop_chunks(&conn, 100).unwrap();
            assert!(d.chunks <= 100);
            steps += 1;
            if !d.more {
                break;
            }
        }
        assert_eq!(steps, (blocks + 99) / 100);
        let left: i64 = conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        // Done once: nothing is queued any more.
        assert_eq!(
            retention::drop_chunks(&conn, 100).unwrap(),
            retention::Dropped::default()
        );

        let s = list(&conn, exp.rowid).unwrap().remove(0);
        assert_eq!(s.compacted_at, Some(86_400_000));
        assert_eq!(s.count, 50_000);
        assert_eq!(charts(&s), before);
        // A narrow zoom: the units that hold it, whole and exact.
        let b = downsample(
            &conn,
            &exp,
            &s,
            Axis::Step,
            Some(15_000),
            Some(40_000),
            1000,
        )
        .unwrap();
        assert!(!b.raw);
        check_against_scan(&b, &(14_976..40_064).collect::<Vec<_>>());
        let b = downsample(&conn, &exp, &s, Axis::Time, None, None, 1000).unwrap();
        assert_eq!(b.total, 50_000);

        for e in [
            points(&conn, &s, 0, 10, false).unwrap_err(),
            after_seq(&conn, &s, 0, 10).unwrap_err(),
            scan_points(&conn, &s, 0, 10, |_| {}).unwrap_err(),
            logs::insert(
                &conn,
                &exp,
                &[NewLog {
                    msg_id: None,
                    name: "loss".into(),
                    kind: Kind::Metric,
                    step: Some(50_000),
                    value: 1.0,
                    at: None,
                    extra_metadata: None,
                }],
                2_000,
            )
            .unwrap_err(),
        ] {
            assert!(matches!(e, Error::Gone(_)), "{e:?}");
            assert!(e.message().contains("1970-01-02"), "{}", e.message());
        }
        let mut ends = 0;
        scan_block_ends(&conn, &s, i64::MIN, i64::MAX, |_, _, _, _| ends += 1).unwrap();
        assert_eq!(ends, blocks);
    }
}
