//! The stored form of a block's points: up to 128 points of one series packed into one BLOB of
//! the `chunks` table, instead of one B-tree row each.
//!
//! Why: a row per point cost ~2 µs of SQLite work (B-tree search, page splits, record build)
//! and ~47 bytes; packing makes a point a few bytes appended to a buffer, and a series reads
//! back as a handful of sequential blobs.
//!
//! Layout: a version byte, then per point a flag byte (which kind of msg_id follows), the
//! zig-zag varint deltas of step, seq and t from the previous point (all usually tiny), the
//! value's 8 IEEE-754 bytes (so NaN, ±Inf and -0.0 keep their exact bits), then the msg_id: none,
//! 16 UUID bytes, or a varint length and UTF-8 text.

use crate::error::{Error, Result};
use crate::store::logs::MsgId;

const VERSION: u8 = 1;
const NO_ID: u8 = 0;
const UUID_ID: u8 = 1;
const TEXT_ID: u8 = 2;

/// One stored point. `step` is -1 for a log without a step (most results).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub step: i64,
    pub seq: i64,
    /// Milliseconds after the experiment's creation.
    pub t: i64,
    pub value: f64,
    pub msg_id: Option<MsgId>,
}

pub fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + points.len() * 14);
    out.push(VERSION);
    let (mut step, mut seq, mut t) = (0i64, 0i64, 0i64);
    for p in points {
        let flag = match p.msg_id {
            None => NO_ID,
            Some(MsgId::Uuid(_)) => UUID_ID,
            Some(MsgId::Text(_)) => TEXT_ID,
        };
        out.push(flag);
        varint(&mut out, zigzag(p.step.wrapping_sub(step)));
        varint(&mut out, zigzag(p.seq.wrapping_sub(seq)));
        varint(&mut out, zigzag(p.t.wrapping_sub(t)));
        out.extend_from_slice(&p.value.to_bits().to_le_bytes());
        match &p.msg_id {
            None => {}
            Some(MsgId::Uuid(b)) => out.extend_from_slice(b),
            Some(MsgId::Text(s)) => {
                varint(&mut out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
        }
        (step, seq, t) = (p.step, p.seq, p.t);
    }
    out
}

/// Unpacks a chunk. Without `msg_ids` the ids are skipped, not allocated (charts, streams and
/// CSV never show them).
pub fn decode(data: &[u8], msg_ids: bool) -> Result<Vec<Point>> {
    let mut r = Reader { data, at: 1 };
    if data.first() != Some(&VERSION) {
        return Err(corrupt());
    }
    let mut out = Vec::with_capacity(data.len() / 12);
    let (mut step, mut seq, mut t) = (0i64, 0i64, 0i64);
    while r.at < data.len() {
        let flag = r.byte()?;
        step = step.wrapping_add(unzigzag(r.varint()?));
        seq = seq.wrapping_add(unzigzag(r.varint()?));
        t = t.wrapping_add(unzigzag(r.varint()?));
        let value = f64::from_bits(u64::from_le_bytes(
            r.take(8)?.try_into().map_err(|_| corrupt())?,
        ));
        let msg_id = match flag {
            NO_ID => None,
            UUID_ID => {
                let b = r.take(16)?;
                msg_ids.then(|| MsgId::Uuid(b.try_into().unwrap_or([0; 16])))
            }
            TEXT_ID => {
                let len = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
                let b = r.take(len)?;
                msg_ids.then(|| MsgId::Text(String::from_utf8_lossy(b).into_owned()))
            }
            _ => return Err(corrupt()),
        };
        out.push(Point {
            step,
            seq,
            t,
            value,
            msg_id,
        });
    }
    Ok(out)
}

fn corrupt() -> Error {
    Error::Internal("a stored chunk of points is corrupt".into())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.data.get(self.at).ok_or_else(corrupt)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let b = self.data.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(step: i64, seq: i64, t: i64, value: f64, msg_id: Option<MsgId>) -> Point {
        Point {
            step,
            seq,
            t,
            value,
            msg_id,
        }
    }

    #[test]
    fn every_kind_of_point_round_trips_bit_for_bit() {
        let points = vec![
            p(0, 1, 0, 0.5, None),
            p(1, 11, 3, f64::NAN, Some(MsgId::parse("client-7"))),
            p(
                2,
                21,
                3,
                -0.0,
                Some(MsgId::parse("6f1c1f0e-8b3a-4c59-9d1e-1a2b3c4d5e6f")),
            ),
            p(
                -1,
                22,
                2,
                f64::NEG_INFINITY,
                Some(MsgId::Text("é".repeat(200))),
            ),
            p(i64::MAX, i64::MAX, i64::MIN, f64::MAX, None),
            p(0, 0, 0, f64::MIN_POSITIVE, None),
        ];
        let data = encode(&points);
        let back = decode(&data, true).unwrap();
        assert_eq!(back.len(), points.len());
        for (a, b) in points.iter().zip(&back) {
            assert_eq!((a.step, a.seq, a.t), (b.step, b.seq, b.t));
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!(a.msg_id, b.msg_id);
        }
        // Without ids: same points, no ids.
        let bare = decode(&data, false).unwrap();
        assert!(bare.iter().all(|p| p.msg_id.is_none()));
        assert_eq!(bare[4].step, i64::MAX);
    }

    #[test]
    fn a_typical_point_takes_twelve_bytes() {
        // Ten metrics interleaved: each series' seq moves by 10 a step; one batch, one t.
        let points: Vec<Point> = (0..128)
            .map(|i| p(1000 + i, 5000 + i * 10, 40_000, i as f64 * 0.1, None))
            .collect();
        let first = encode(&points[..1]).len();
        assert_eq!(encode(&points).len(), first + 127 * 12);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let data = encode(&[p(5, 6, 7, 1.0, Some(MsgId::parse("abc")))]);
        for cut in 0..data.len() {
            assert!(
                decode(&data[..cut], true).is_err() || cut == 1,
                "cut at {cut}"
            );
        }
        let mut bad = data.clone();
        bad[1] = 9;
        assert!(decode(&bad, true).is_err());
        assert!(decode(&[2, 0], true).is_err(), "unknown version");
    }
}
