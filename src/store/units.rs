//! A metric series in step order, as aggregates only: what a chart by step reads, so that its
//! cost follows the buckets drawn rather than the points stored, whether or not the series'
//! steps arrived in order.
//!
//! A **unit** is the aggregate of the points of a range of steps: least and greatest step,
//! min/max over its finite values, the last finite value by (step, arrival) and its step,
//! how many points, how many NaN/Inf. Level 0 cuts the series into units that hold whole steps
//! (a step is in exactly one unit), in ascending, disjoint step ranges; a new unit starts when
//! a point arrives past the last unit's steps while that unit holds 128 points or more, so a
//! series logged in step order has one unit per block. Level `l` unit `j` is the aggregate of
//! level-0 units `j * 4^l .. (j + 1) * 4^l`, stored once all of them are closed.
//!
//! A point never moves a unit's edges past its neighbours': one logged again at an old step (a
//! run resumed from a checkpoint) is folded into the unit that holds that step (or the one
//! before the gap it falls in), and into each stored unit above it; being later than every
//! point already folded in, it becomes the line's value when its step is at or past the unit's
//! last finite step. Units only ever grow, so every stored aggregate stays exact.
//!
//! Storage: the last (open) level-0 unit, the count of units and up to three closed level-0
//! units not yet in a row sit in `series.open_unit` (written with the summary each batch);
//! closed units are packed 32 to a `series_units` row
//! whose rowid is `series_id << 32 | level << 27 | part` (units `part * 32 ..`), 64 bytes each,
//! little-endian. So a 1M-point series is ~250 rows of level 0, ~60 of level 1, and a chart of
//! it at 300 buckets reads ~10 rows. Units are for charts by step: they keep no times.

use std::collections::{BTreeMap, BTreeSet};

use crate::sql::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::store::packed::Point;

/// Level-0 units close once they hold this many points (the block size).
pub const UNIT_POINTS: i64 = 128;
/// Units of one level per unit of the next.
pub const FAN: i64 = 4;
/// Units packed in one row.
pub const PER_ROW: i64 = 32;
/// Bytes of one unit as stored.
const SIZE: usize = 64;
/// Levels 0..MAX_LEVEL; 4^16 units is more than a series can hold (2^32 blocks).
const MAX_LEVEL: u32 = 16;

/// The aggregate of the points of a range of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub first_step: i64,
    pub last_step: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The last finite value by (step, arrival), and its step.
    pub last_finite: Option<(i64, f64)>,
    pub count: i64,
    pub nonfinite: i64,
}

impl Unit {
    pub fn of(p: &Point) -> Unit {
        let finite = p.value.is_finite();
        Unit {
            first_step: p.step,
            last_step: p.step,
            min: finite.then_some(p.value),
            max: finite.then_some(p.value),
            last_finite: finite.then_some((p.step, p.value)),
            count: 1,
            nonfinite: i64::from(!finite),
        }
    }

    /// Folds in a point that arrived after every point already in the unit.
    pub fn add(&mut self, p: &Point) {
        self.first_step = self.first_step.min(p.step);
        self.last_step = self.last_step.max(p.step);
        self.count += 1;
        if p.value.is_finite() {
            self.min = Some(self.min.map_or(p.value, |m| m.min(p.value)));
            self.max = Some(self.max.map_or(p.value, |m| m.max(p.value)));
            if self.last_finite.is_none_or(|(s, _)| p.step >= s) {
                self.last_finite = Some((p.step, p.value));
            }
        } else {
            self.nonfinite += 1;
        }
    }

    /// Folds in `next`, whose steps all come after this unit's.
    pub fn then(&mut self, next: &Unit) {
        self.first_step = self.first_step.min(next.first_step);
        self.last_step = self.last_step.max(next.last_step);
        self.min = match (self.min, next.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, next.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.last_finite = next.last_finite.or(self.last_finite);
        self.count += next.count;
        self.nonfinite += next.nonfinite;
    }

    fn write(&self, out: &mut Vec<u8>) {
        let (lf_step, lf) = self.last_finite.unwrap_or((0, f64::NAN));
        for v in [self.first_step, self.last_step] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.min.unwrap_or(f64::NAN),
            self.max.unwrap_or(f64::NAN),
            lf,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [lf_step, self.count, self.nonfinite] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn read(b: &[u8]) -> Unit {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            w
        };
        let int = |i| i64::from_le_bytes(word(i));
        // min, max and the last finite value are finite or absent (stored as NaN).
        let float = |i| Some(f64::from_le_bytes(word(i))).filter(|v| !v.is_nan());
        Unit {
            first_step: int(0),
            last_step: int(1),
            min: float(2),
            max: float(3),
            last_finite: float(4).map(|v| (int(5), v)),
            count: int(6),
            nonfinite: int(7),
        }
    }
}

#[cfg(test)]
fn encode(units: &[Unit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len() * SIZE);
    for u in units {
        u.write(&mut out);
    }
    out
}

/// `series.open_unit`: the number of units, the open (last) one, then the closed ones not yet
/// in a row (at most 3: they go to their row four at a time, with the level-1 unit they make,
/// so the usual batch touches no row of `series_units`, only the series row it rewrites anyway).
fn encode_open(count: i64, open: &Unit, pending: &[Unit]) -> Vec<u8> {
    let mut out = count.to_le_bytes().to_vec();
    open.write(&mut out);
    for u in pending {
        u.write(&mut out);
    }
    out
}

fn decode_open(data: &[u8]) -> Result<(i64, Unit, Vec<Unit>)> {
    if data.len() < 8 + SIZE || !(data.len() - 8).is_multiple_of(SIZE) || data.len() > 8 + SIZE * 4
    {
        return Err(Error::Internal(format!(
            "an open series unit is {} bytes",
            data.len()
        )));
    }
    let mut w = [0; 8];
    w.copy_from_slice(&data[..8]);
    let units: Vec<Unit> = data[8..].chunks_exact(SIZE).map(Unit::read).collect();
    Ok((i64::from_le_bytes(w), units[0], units[1..].to_vec()))
}

fn row_id(series: i64, level: u32, part: i64) -> i64 {
    (series << 32) | (i64::from(level) << 27) | part
}

/// How many units of `level` are stored (closed) when the series has `n` level-0 units.
fn stored(n: i64, level: u32) -> i64 {
    if level == 0 {
        (n - 1).max(0)
    } else {
        (n - 1).max(0) >> (2 * level)
    }
}

/// The units of one series: the open one and the rows read or changed so far.
pub struct Units {
    series: i64,
    /// Level-0 units, the open one included.
    n: i64,
    open: Option<Unit>,
    /// Closed level-0 units not yet in their row: units `n - 1 - pending.len() .. n - 1`.
    pending: Vec<Unit>,
    /// Rows as stored (records of `SIZE` bytes), read or changed so far.
    rows: BTreeMap<(u32, i64), Vec<u8>>,
    dirty: BTreeSet<(u32, i64)>,
    /// Units appended to a row that was not read: (its length before, the bytes appended),
    /// saved by appending in SQL, so the usual batch neither reads nor rewrites a row.
    tails: BTreeMap<(u32, i64), (usize, Vec<u8>)>,
    /// Nothing is stored yet (a fresh build): no row needs reading.
    fresh: bool,
}

impl Units {
    /// The units of `series` as `series.open_unit` describes them (None: no point yet).
    pub fn new(series: i64, open_unit: Option<&[u8]>) -> Result<Units> {
        let (n, open, pending) = match open_unit {
            Some(data) => {
                let (n, u, pending) = decode_open(data)?;
                (n, Some(u), pending)
            }
            None => (0, None, Vec::new()),
        };
        Ok(Units {
            series,
            n,
            open,
            pending,
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
            tails: BTreeMap::new(),
            fresh: n == 0,
        })
    }

    pub fn series(&self) -> i64 {
        self.series
    }

    /// Level-0 units, the open one included.
    pub fn len(&self) -> i64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// What `series.open_unit` holds now.
    pub fn open_column(&self) -> Option<Vec<u8>> {
        self.open
            .as_ref()
            .map(|u| encode_open(self.n, u, &self.pending))
    }

    fn row(&mut self, conn: &Connection, level: u32, part: i64) -> Result<&mut Vec<u8>> {
        if !self.rows.contains_key(&(level, part)) {
            let data: Option<Vec<u8>> = if self.fresh {
                None
            } else {
                conn.prepare_cached("SELECT data FROM series_units WHERE id = ?1")?
                    .query_row([row_id(self.series, level, part)], |r| r.get(0))
                    .optional()?
            };
            let mut data = data.unwrap_or_default();
            if let Some((base, tail)) = self.tails.remove(&(level, part)) {
                if data.len() != base {
                    return Err(Error::Internal(format!(
                        "a row of series units is {} bytes, not {base}",
                        data.len()
                    )));
                }
                data.extend_from_slice(&tail);
                self.dirty.insert((level, part));
            }
            if !data.len().is_multiple_of(SIZE) {
                return Err(Error::Internal(format!(
                    "a row of series units is {} bytes",
                    data.len()
                )));
            }
            self.rows.insert((level, part), data);
        }
        Ok(self.rows.get_mut(&(level, part)).expect("just inserted"))
    }

    /// The bytes of unit `i` of `level` within its row.
    fn place(&mut self, conn: &Connection, level: u32, i: i64) -> Result<&mut [u8]> {
        let series = self.series;
        let at = (i % PER_ROW) as usize * SIZE;
        let row = self.row(conn, level, i / PER_ROW)?;
        match row.get_mut(at..at + SIZE) {
            Some(bytes) => Ok(bytes),
            None => Err(Error::Internal(format!(
                "unit {i} of level {level} of series {series} is missing"
            ))),
        }
    }

    /// Unit `i` of `level`, which must be stored (or be the open one).
    pub fn get(&mut self, conn: &Connection, level: u32, i: i64) -> Result<Unit> {
        if level == 0 && i == self.n - 1 {
            return self
                .open
                .ok_or_else(|| Error::Internal("no open unit".into()));
        }
        if let Some(k) = self.pending_index(level, i) {
            return Ok(self.pending[k]);
        }
        let at = (i % PER_ROW) as usize * SIZE;
        if let Some((base, tail)) = self.tails.get(&(level, i / PER_ROW))
            && at >= *base
            && at + SIZE <= base + tail.len()
        {
            return Ok(Unit::read(&tail[at - base..at - base + SIZE]));
        }
        Ok(Unit::read(self.place(conn, level, i)?))
    }

    /// Where unit `i` of `level` is in `pending`, if it is there.
    fn pending_index(&self, level: u32, i: i64) -> Option<usize> {
        let first = self.n - 1 - self.pending.len() as i64;
        (level == 0 && i >= first && i < self.n - 1).then(|| (i - first) as usize)
    }

    /// Folds a point into unit `i` of `level` (stored, or the open one).
    fn add_to(&mut self, conn: &Connection, level: u32, i: i64, p: &Point) -> Result<()> {
        if level == 0 && i == self.n - 1 {
            return match self.open.as_mut() {
                Some(u) => {
                    u.add(p);
                    Ok(())
                }
                None => Err(Error::Internal("no open unit".into())),
            };
        }
        if let Some(k) = self.pending_index(level, i) {
            self.pending[k].add(p);
            return Ok(());
        }
        self.dirty.insert((level, i / PER_ROW));
        let bytes = self.place(conn, level, i)?;
        let mut u = Unit::read(bytes);
        u.add(p);
        let mut out = Vec::with_capacity(SIZE);
        u.write(&mut out);
        bytes.copy_from_slice(&out);
        Ok(())
    }

    /// Stores unit `i` of `level`, the next one of its level.
    fn append(&mut self, conn: &Connection, level: u32, i: i64, u: Unit) -> Result<()> {
        let part = i / PER_ROW;
        let at = (i % PER_ROW) as usize * SIZE;
        let series = self.series;
        let wrong = || {
            Error::Internal(format!(
                "unit {i} of level {level} of series {series} does not follow its row"
            ))
        };
        if let Some((base, tail)) = self.tails.get_mut(&(level, part)) {
            if *base + tail.len() != at {
                return Err(wrong());
            }
            u.write(tail);
            return Ok(());
        }
        if !self.rows.contains_key(&(level, part)) && at > 0 && !self.fresh {
            let mut tail = Vec::with_capacity(SIZE * 4);
            u.write(&mut tail);
            self.tails.insert((level, part), (at, tail));
            return Ok(());
        }
        self.dirty.insert((level, part));
        let row = self.row(conn, level, part)?;
        if row.len() != at {
            return Err(wrong());
        }
        u.write(row);
        Ok(())
    }

    /// The level-0 unit that holds `step`: the last one starting at or before it (the first
    /// when none does).
    fn find(&mut self, conn: &Connection, step: i64) -> Result<i64> {
        let (mut lo, mut hi) = (0, self.n);
        // The last unit starting at or before `step` is below `lo`... found by bisection.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.get(conn, 0, mid)?.first_step <= step {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Folds in the next point of the series (in arrival order).
    pub fn add(&mut self, conn: &Connection, p: &Point) -> Result<()> {
        let Some(open) = self.open.as_mut() else {
            self.open = Some(Unit::of(p));
            self.n = 1;
            return Ok(());
        };
        if p.step >= open.first_step || self.n == 1 {
            if open.count >= UNIT_POINTS && p.step > open.last_step {
                let closed = *open;
                self.open = Some(Unit::of(p));
                let i = self.n - 1;
                self.n += 1;
                self.pending.push(closed);
                if i % FAN != FAN - 1 {
                    return Ok(());
                }
                let first = i + 1 - self.pending.len() as i64;
                for (k, u) in std::mem::take(&mut self.pending).into_iter().enumerate() {
                    self.append(conn, 0, first + k as i64, u)?;
                }
                return self.close_above(conn, i);
            }
            open.add(p);
            return Ok(());
        }
        let i = self.find(conn, p.step)?;
        self.add_to(conn, 0, i, p)?;
        for level in 1..MAX_LEVEL {
            let j = i >> (2 * level);
            if j >= stored(self.n, level) {
                break;
            }
            self.add_to(conn, level, j, p)?;
        }
        Ok(())
    }

    /// Level-0 unit `i` was just closed: stores every unit above it that it completes.
    fn close_above(&mut self, conn: &Connection, mut i: i64) -> Result<()> {
        let mut level = 1;
        while i % FAN == FAN - 1 && level < MAX_LEVEL {
            let j = i / FAN;
            let mut u = self.get(conn, level - 1, j * FAN)?;
            for c in 1..FAN {
                u.then(&self.get(conn, level - 1, j * FAN + c)?);
            }
            self.append(conn, level, j, u)?;
            i = j;
            level += 1;
        }
        Ok(())
    }

    /// Writes the rows changed since they were read.
    pub fn save(&mut self, conn: &Connection) -> Result<()> {
        let mut put =
            conn.prepare_cached("INSERT INTO series_units (id, data) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET data = excluded.data")?;
        for key in std::mem::take(&mut self.dirty) {
            put.execute(params![row_id(self.series, key.0, key.1), &self.rows[&key]])?;
        }
        // `||` makes text of the two blobs' bytes, unchanged in a UTF-8 database (Tora's);
        // the cast makes a blob of them again.
        let mut extend = conn.prepare_cached(
            "UPDATE series_units SET data = CAST(data || ?2 AS BLOB) WHERE id = ?1 AND length(data) = ?3",
        )?;
        for ((level, part), (base, tail)) in std::mem::take(&mut self.tails) {
            let id = row_id(self.series, level, part);
            if extend.execute(params![id, tail, base as i64])? != 1 {
                return Err(Error::Internal(format!(
                    "row {part} of level {level} of series {} is not {base} bytes long",
                    self.series
                )));
            }
        }
        self.fresh = false;
        Ok(())
    }

    /// Every stored row as (rowid, bytes), for a fresh build (`tora doctor` compares them).
    pub fn rows(&self) -> Vec<(i64, Vec<u8>)> {
        self.rows
            .iter()
            .filter(|(_, u)| !u.is_empty())
            .map(|(k, u)| (row_id(self.series, k.0, k.1), u.clone()))
            .collect()
    }

    /// The first level-0 unit whose steps reach `lo` (n when none), by bisection.
    pub fn first_reaching(&mut self, conn: &Connection, lo: i64) -> Result<i64> {
        let (mut a, mut b) = (0, self.n);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.get(conn, 0, mid)?.last_step >= lo {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        Ok(a)
    }

    /// The last level-0 unit starting at or before `hi` (-1 when none), by bisection.
    pub fn last_starting(&mut self, conn: &Connection, hi: i64) -> Result<i64> {
        let (mut a, mut b) = (0, self.n);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.get(conn, 0, mid)?.first_step <= hi {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        Ok(a - 1)
    }

    /// Level-0 units `c0..=c1` in order, as few units as levels up to `top` allow: each taken
    /// from the highest stored level whose unit starts there and ends within the range.
    pub fn cover(&mut self, conn: &Connection, c0: i64, c1: i64, top: u32) -> Result<Vec<Unit>> {
        let mut out = Vec::new();
        let mut p = c0;
        while p <= c1 {
            let mut level = top.min(MAX_LEVEL - 1);
            loop {
                let span = 1i64 << (2 * level);
                if level == 0
                    || (p % span == 0 && p + span - 1 <= c1 && p / span < stored(self.n, level))
                {
                    out.push(self.get(conn, level, p / span)?);
                    p += span;
                    break;
                }
                level -= 1;
            }
        }
        Ok(out)
    }

    /// The highest level whose units over `n` level-0 units still give at least `want`.
    pub fn level_for(n: i64, want: i64) -> u32 {
        let mut level = 0;
        while level + 1 < MAX_LEVEL && (n >> (2 * (level + 1))) >= want {
            level += 1;
        }
        level
    }
}

/// Builds the units of one series from its points in arrival order (nothing stored yet), and
/// what `series.open_unit` becomes.
pub fn build(
    conn: &Connection,
    series: i64,
    points: impl IntoIterator<Item = Point>,
) -> Result<Units> {
    let mut units = Units::new(series, None)?;
    for p in points {
        units.add(conn, &p)?;
    }
    Ok(units)
}

/// Schema 6 to 7: builds the units of every metric series from its blocks.
pub fn build_all(conn: &Connection) -> Result<()> {
    let series: Vec<i64> = conn
        .prepare("SELECT id FROM series WHERE kind = 0 ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    for id in series {
        let mut units = build(conn, id, crate::store::series::all_points(conn, id)?)?;
        units.save(conn)?;
        conn.prepare_cached("UPDATE series SET open_unit = ?2 WHERE id = ?1")?
            .execute(params![id, units.open_column()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, value: f64, seq: i64) -> Point {
        Point {
            step,
            seq,
            t: seq,
            value,
            msg_id: None,
        }
    }

    #[test]
    fn a_unit_round_trips_its_bytes() {
        let mut u = Unit::of(&point(3, f64::NAN, 0));
        assert_eq!(Unit::read(&encode(&[u])), u);
        u.add(&point(-1, -0.0, 1));
        u.add(&point(9, f64::NEG_INFINITY, 2));
        u.add(&point(5, 2.5, 3));
        let back = Unit::read(&encode(&[u]));
        assert_eq!(back, u);
        assert_eq!(back.last_finite, Some((5, 2.5)));
        assert_eq!((back.count, back.nonfinite), (4, 2));
        assert_eq!(back.min.map(f64::to_bits), Some((-0.0f64).to_bits()));
    }

    #[test]
    fn levels_are_chosen_to_give_at_least_what_is_wanted() {
        assert_eq!(Units::level_for(782, 150), 1);
        assert_eq!(Units::level_for(782, 391), 0);
        assert_eq!(Units::level_for(7_813, 500), 1);
        assert_eq!(Units::level_for(7_813, 400), 2);
        assert_eq!(Units::level_for(1, 1), 0);
    }
}
