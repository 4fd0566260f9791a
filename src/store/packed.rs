//! The stored form of a block's points: up to 128 points of one series packed into one BLOB of
//! the `chunks` table, instead of one B-tree row each.
//!
//! Why: a row per point cost ~2 µs of SQLite work (B-tree search, page splits, record build)
//! and ~47 bytes; packing makes a point a few bytes appended to a buffer, and a series reads
//! back as a handful of sequential blobs.
//!
//! Version 2 (written now), after Facebook's Gorilla (VLDB 2015), measured against other
//! encodings in `examples/point_encoding.rs`:
//!
//! ```text
//! 2, flags (bit 0: msg_ids follow), varint count,
//! first point: zig-zag varint step, seq, t, then the value's 8 bytes (little-endian),
//! a bit stream (most significant bit first) for every later point:
//!     step and seq: delta of delta, t: delta, each zig-zag coded and written as
//!         0 | 10 + 7 bits | 110 + 14 bits | 1110 + 32 bits | 1111 + 64 bits
//!     value: its bits XOR the previous value's bits
//!         0                                     the same bits
//!         10 + the XOR's bits inside the previous window (its leading and trailing zeros)
//!         11 + 5 bits leading zeros + 6 bits length (0 = 64) + the XOR's bits
//! padding to a whole byte, then, if flag bit 0, per point a kind byte and its msg_id:
//!     0 none, 1 + 16 UUID bytes, 2 + varint length + UTF-8 text
//! ```
//!
//! A point costs ~0.7 bytes in a constant series or a step schedule, 1.5-4.6 when its values
//! came from float32 tensors (the XOR of two float32-born doubles ends in 29 zero bits), and
//! 6-7.5 for full-precision noise, which no XOR scheme shrinks much. Values keep their exact
//! bits (NaN payloads, ±Inf, -0.0). Gorilla's bit-level XOR was smaller than a byte-level
//! XOR (a header byte of zero-byte counts) and than a float32 detector on every curve measured.
//! Decoding takes ~9 ns a point (v1: ~8), encoding ~10 (v1: ~4).
//!
//! Version 1 (a flag byte, varint deltas and 8 value bytes per point) still decodes: an open
//! block written before is decoded, extended and written back as version 2.

use crate::error::{Error, Result};
use crate::store::logs::MsgId;

const V1: u8 = 1;
const V2: u8 = 2;
const NO_ID: u8 = 0;
const UUID_ID: u8 = 1;
const TEXT_ID: u8 = 2;
/// v2 flags: the chunk ends with a msg_id section.
const HAS_IDS: u8 = 1;

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

/// Packs points in the current format (version 2).
pub fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + points.len() * 4);
    out.push(V2);
    let has_ids = points.iter().any(|p| p.msg_id.is_some());
    out.push(if has_ids { HAS_IDS } else { 0 });
    varint(&mut out, points.len() as u64);
    let Some(first) = points.first() else {
        return out;
    };
    varint(&mut out, zigzag(first.step));
    varint(&mut out, zigzag(first.seq));
    varint(&mut out, zigzag(first.t));
    out.extend_from_slice(&first.value.to_bits().to_le_bytes());

    let mut w = BitWriter::new(out);
    let (mut step, mut seq, mut t) = (first.step, first.seq, first.t);
    let (mut step_delta, mut seq_delta) = (0i64, 0i64);
    let mut value = Xor::new(first.value.to_bits());
    for p in &points[1..] {
        let d = p.step.wrapping_sub(step);
        w.int(zigzag(d.wrapping_sub(step_delta)));
        (step, step_delta) = (p.step, d);
        let d = p.seq.wrapping_sub(seq);
        w.int(zigzag(d.wrapping_sub(seq_delta)));
        (seq, seq_delta) = (p.seq, d);
        w.int(zigzag(p.t.wrapping_sub(t)));
        t = p.t;
        value.put(&mut w, p.value.to_bits());
    }
    let mut out = w.finish();
    if has_ids {
        for p in points {
            push_id(&mut out, &p.msg_id);
        }
    }
    out
}

/// Packs points in version 1, the format of chunks written before version 2. Kept so tests can
/// make old chunks and the measurement example can compare.
pub fn encode_v1(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + points.len() * 14);
    out.push(V1);
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
        id_body(&mut out, &p.msg_id);
        (step, seq, t) = (p.step, p.seq, p.t);
    }
    out
}

fn push_id(out: &mut Vec<u8>, id: &Option<MsgId>) {
    out.push(match id {
        None => NO_ID,
        Some(MsgId::Uuid(_)) => UUID_ID,
        Some(MsgId::Text(_)) => TEXT_ID,
    });
    id_body(out, id);
}

fn id_body(out: &mut Vec<u8>, id: &Option<MsgId>) {
    match id {
        None => {}
        Some(MsgId::Uuid(b)) => out.extend_from_slice(b),
        Some(MsgId::Text(s)) => {
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Unpacks a chunk of either version. Without `msg_ids` the ids are skipped, not allocated
/// (charts, streams and CSV never show them). A damaged chunk is an error, never a panic.
pub fn decode(data: &[u8], msg_ids: bool) -> Result<Vec<Point>> {
    match data.first() {
        Some(&V1) => decode_v1(data, msg_ids),
        Some(&V2) => decode_v2(data, msg_ids),
        _ => Err(corrupt()),
    }
}

fn decode_v2(data: &[u8], msg_ids: bool) -> Result<Vec<Point>> {
    let mut r = Reader { data, at: 1 };
    let flags = r.byte()?;
    if flags & !HAS_IDS != 0 {
        return Err(corrupt());
    }
    let count = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
    // Every point after the first takes at least 4 bits: a cap before allocating.
    if count > 1 + data.len().saturating_mul(2) {
        return Err(corrupt());
    }
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return if r.at == data.len() {
            Ok(out)
        } else {
            Err(corrupt())
        };
    }
    let mut step = unzigzag(r.varint()?);
    let mut seq = unzigzag(r.varint()?);
    let mut t = unzigzag(r.varint()?);
    let bits = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| corrupt())?);
    out.push(Point {
        step,
        seq,
        t,
        value: f64::from_bits(bits),
        msg_id: None,
    });
    let mut b = BitReader::new(&data[r.at..]);
    let (mut step_delta, mut seq_delta) = (0i64, 0i64);
    let mut value = Xor::new(bits);
    for _ in 1..count {
        // The usual point: step and seq moved as before, t did not (three 0 bits).
        if b.window() >> 61 == 0 {
            b.advance(3)?;
        } else {
            step_delta = step_delta.wrapping_add(unzigzag(b.int()?));
            seq_delta = seq_delta.wrapping_add(unzigzag(b.int()?));
            t = t.wrapping_add(unzigzag(b.int()?));
        }
        step = step.wrapping_add(step_delta);
        seq = seq.wrapping_add(seq_delta);
        out.push(Point {
            step,
            seq,
            t,
            value: f64::from_bits(value.get(&mut b)?),
            msg_id: None,
        });
    }
    r.at += b.bytes_used();
    if flags & HAS_IDS != 0 {
        for p in &mut out {
            let kind = r.byte()?;
            p.msg_id = read_id(&mut r, kind, msg_ids)?;
        }
    }
    if r.at != data.len() {
        return Err(corrupt());
    }
    Ok(out)
}

fn read_id(r: &mut Reader, kind: u8, keep: bool) -> Result<Option<MsgId>> {
    Ok(match kind {
        NO_ID => None,
        UUID_ID => {
            let b = r.take(16)?;
            keep.then(|| MsgId::Uuid(b.try_into().unwrap_or([0; 16])))
        }
        TEXT_ID => {
            let len = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
            let b = r.take(len)?;
            keep.then(|| MsgId::Text(String::from_utf8_lossy(b).into_owned()))
        }
        _ => return Err(corrupt()),
    })
}

fn decode_v1(data: &[u8], msg_ids: bool) -> Result<Vec<Point>> {
    let mut r = Reader { data, at: 1 };
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
        let msg_id = read_id(&mut r, flag, msg_ids)?;
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

/// The widths of the integer codes after their 1-4 bit prefixes `10`, `110`, `1110`, `1111`.
const INT_WIDTHS: [u32; 4] = [7, 14, 32, 64];

/// Gorilla's value code: the previous value's bits and the window of the last written XOR.
struct Xor {
    prev: u64,
    /// Leading and trailing zeros of the window; none before the first written XOR.
    window: Option<(u32, u32)>,
}

impl Xor {
    fn new(first: u64) -> Xor {
        Xor {
            prev: first,
            window: None,
        }
    }

    fn put(&mut self, w: &mut BitWriter, bits: u64) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.put(0, 1);
            return;
        }
        let (lead, trail) = (x.leading_zeros().min(31), x.trailing_zeros());
        match self.window {
            Some((l, t)) if lead >= l && trail >= t => {
                w.put(0b10, 2);
                w.put(x >> t, 64 - l - t);
            }
            _ => {
                let len = 64 - lead - trail;
                w.put(0b11, 2);
                w.put(u64::from(lead), 5);
                w.put(u64::from(len & 63), 6);
                w.put(x >> trail, len);
                self.window = Some((lead, trail));
            }
        }
    }

    fn get(&mut self, r: &mut BitReader) -> Result<u64> {
        // One 57-bit window holds the control bits, and the XOR's bits too when they are few.
        let w = r.window();
        if w >> 63 == 0 {
            r.advance(1)?;
            return Ok(self.prev);
        }
        let (lead, trail, head) = if w >> 62 == 0b10 {
            let (l, t) = self.window.ok_or_else(corrupt)?;
            (l, t, 2)
        } else {
            let lead = (w >> 57) as u32 & 31;
            let len = match (w >> 51) as u32 & 63 {
                0 => 64,
                n => n,
            };
            let trail = 64u32.checked_sub(lead + len).ok_or_else(corrupt)?;
            self.window = Some((lead, trail));
            (lead, trail, 13)
        };
        let len = 64 - lead - trail;
        let x = if head + len <= 57 {
            r.advance(head + len)?;
            (w << head) >> (64 - len)
        } else {
            r.advance(head)?;
            r.get(len)?
        };
        self.prev ^= x << trail;
        Ok(self.prev)
    }
}

/// Writes bits most significant first, after the bytes already in `out`.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    /// Bits held in `acc`, from its top; always < 64 between calls.
    n: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> BitWriter {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Writes the low `width` bits of `v` (`width` ≤ 64).
    fn put(&mut self, v: u64, width: u32) {
        if width == 0 {
            return;
        }
        let v = if width == 64 {
            v
        } else {
            v & ((1 << width) - 1)
        };
        let free = 64 - self.n;
        if width < free {
            self.acc |= v << (free - width);
            self.n += width;
        } else {
            let rest = width - free;
            self.acc |= v.checked_shr(rest).unwrap_or(0);
            self.out.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = v.checked_shl(64 - rest).unwrap_or(0);
            self.n = rest;
        }
    }

    /// A zig-zag coded integer under the prefixes of [`INT_WIDTHS`].
    fn int(&mut self, z: u64) {
        if z == 0 {
            self.put(0, 1);
        } else if z < 1 << 7 {
            self.put((0b10 << 7) | z, 9);
        } else if z < 1 << 14 {
            self.put((0b110 << 14) | z, 17);
        } else if z < 1 << 32 {
            self.put(0b1110, 4);
            self.put(z, 32);
        } else {
            self.put(0b1111, 4);
            self.put(z, 64);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let bytes = self.n.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_be_bytes()[..bytes]);
        self.out
    }
}

/// Reads what [`BitWriter`] wrote; reading past the end is an error.
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    at: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, at: 0 }
    }

    /// The 64 bits from `at` on (zeros past the end).
    fn window(&self) -> u64 {
        let i = self.at / 8;
        let word = match self.data.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
            None => {
                let mut b = [0u8; 8];
                let rest = self.data.get(i..).unwrap_or_default();
                b[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(b)
            }
        };
        word << (self.at % 8)
    }

    fn advance(&mut self, width: u32) -> Result<()> {
        let end = self.at + width as usize;
        if end > self.data.len() * 8 {
            return Err(corrupt());
        }
        self.at = end;
        Ok(())
    }

    /// The next `width` bits (≤ 64) as a number.
    fn get(&mut self, width: u32) -> Result<u64> {
        if width == 0 {
            return Ok(0);
        }
        if width > 57 {
            let high = self.get(width - 32)?;
            return Ok((high << 32) | self.get(32)?);
        }
        let v = self.window() >> (64 - width);
        self.advance(width)?;
        Ok(v)
    }

    fn int(&mut self) -> Result<u64> {
        let w = self.window();
        let n = w.leading_ones().min(4);
        if n == 0 {
            self.advance(1)?;
            return Ok(0);
        }
        let head = (n + 1).min(4);
        let width = INT_WIDTHS[n as usize - 1];
        if head + width <= 57 {
            self.advance(head + width)?;
            Ok((w << head) >> (64 - width))
        } else {
            self.advance(head)?;
            self.get(width)
        }
    }

    fn bytes_used(&self) -> usize {
        self.at.div_ceil(8)
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

    /// Equal field by field, values by their bits.
    fn assert_same(got: &[Point], want: &[Point], ids: bool) {
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert_eq!((a.step, a.seq, a.t), (b.step, b.seq, b.t), "point {i}");
            assert_eq!(a.value.to_bits(), b.value.to_bits(), "point {i}");
            let want_id = if ids { b.msg_id.clone() } else { None };
            assert_eq!(a.msg_id, want_id, "point {i}");
        }
    }

    /// xorshift64*: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A value of a kind chosen at random, often related to the previous one (as curves are).
    fn value(r: &mut Rng, prev: f64) -> f64 {
        match r.below(14) {
            0 => f64::from_bits(r.next()),
            1 => f64::from_bits(0x7ff0_0000_0000_0000 | r.next() | 1), // NaN, any payload and sign
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => -0.0,
            5 => 0.0,
            6 => f64::from_bits(r.below(1 << 52)), // subnormal
            7 | 8 => prev,
            9 => (prev as f32) as f64,
            10 => prev + (r.below(1000) as f64 - 500.0) * 1e-4,
            11 => f64::from_bits(prev.to_bits() ^ (1 << r.below(64))),
            12 => f64::MIN_POSITIVE,
            _ => (r.below(1 << 20) as f64 / 1e6) as f32 as f64,
        }
    }

    fn int(r: &mut Rng, prev: i64, delta: i64) -> i64 {
        match r.below(12) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => r.next() as i64,
            3 => prev.wrapping_sub(r.below(1000) as i64),
            4 => prev.wrapping_add(r.below(1 << 40) as i64),
            5 => prev,
            6 => -1,
            _ => prev.wrapping_add(delta),
        }
    }

    fn msg_id(r: &mut Rng) -> Option<MsgId> {
        match r.below(4) {
            0 => Some(MsgId::random()),
            1 => Some(MsgId::Text(format!("m-{}", r.below(1_000_000)))),
            2 => Some(MsgId::Text(String::new())),
            _ => None,
        }
    }

    fn series(r: &mut Rng) -> Vec<Point> {
        let n = r.below(200) as usize;
        let ids = r.below(3) == 0;
        let (mut step, mut seq, mut t, mut v) = (r.below(100) as i64, 0i64, 0i64, 0.5f64);
        let (step_k, seq_k) = (1 + r.below(10) as i64, 1 + r.below(20) as i64);
        (0..n)
            .map(|_| {
                step = int(r, step, step_k);
                seq = int(r, seq, seq_k);
                let jump = (r.below(3) == 0) as i64 * r.below(5000) as i64;
                t = int(r, t, jump);
                v = value(r, v);
                p(step, seq, t, v, if ids { msg_id(r) } else { None })
            })
            .collect()
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
        for data in [encode(&points), encode_v1(&points)] {
            assert_same(&decode(&data, true).unwrap(), &points, true);
            // Without ids: same points, no ids.
            assert_same(&decode(&data, false).unwrap(), &points, false);
        }
        assert_eq!(encode(&points)[0], 2, "new chunks are version 2");
        assert!(decode(&encode(&[]), true).unwrap().is_empty());
    }

    #[test]
    fn generated_series_round_trip_exactly_in_both_versions() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let points = series(&mut r);
            let v2 = encode(&points);
            assert_same(&decode(&v2, true).unwrap(), &points, true);
            assert_same(&decode(&v2, false).unwrap(), &points, false);
            assert_same(&decode(&encode_v1(&points), true).unwrap(), &points, true);
        }
    }

    #[test]
    fn a_chunk_written_by_version_one_still_decodes() {
        // The bytes the encoder wrote before version 2, for these points.
        let v1: &[u8] = &[
            1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 224, 63, 2, 2, 20, 6, 1, 0, 0, 0, 0, 0, 248, 127, 8,
            99, 108, 105, 101, 110, 116, 45, 55, 1, 2, 20, 0, 0, 0, 0, 0, 0, 0, 0, 128, 111, 28,
            31, 14, 139, 58, 76, 89, 157, 30, 26, 43, 60, 77, 94, 111, 0, 5, 2, 1, 0, 0, 0, 0, 0,
            0, 240, 255, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1, 210, 255, 255, 255,
            255, 255, 255, 255, 255, 1, 252, 255, 255, 255, 255, 255, 255, 255, 255, 1, 255, 255,
            255, 255, 255, 255, 239, 127,
        ];
        let points = vec![
            p(0, 1, 0, 0.5, None),
            p(
                1,
                11,
                3,
                f64::from_bits(0x7ff8_0000_0000_0001),
                Some(MsgId::parse("client-7")),
            ),
            p(
                2,
                21,
                3,
                -0.0,
                Some(MsgId::parse("6f1c1f0e-8b3a-4c59-9d1e-1a2b3c4d5e6f")),
            ),
            p(-1, 22, 2, f64::NEG_INFINITY, None),
            p(i64::MAX, i64::MAX, i64::MIN, f64::MAX, None),
        ];
        assert_same(&decode(v1, true).unwrap(), &points, true);
        assert_eq!(encode_v1(&points), v1, "encode_v1 is the old encoder");
    }

    #[test]
    fn a_float32_curve_takes_under_five_bytes_a_point() {
        // Ten metrics interleaved: each series' seq moves by 10 a step; one batch, one t. The
        // loss came from a float32 tensor, as `loss.item()` gives it.
        let points: Vec<Point> = (0..128)
            .map(|i| {
                let loss =
                    (2.5 * (-(i as f64) / 300.0).exp() + 0.01 * ((i * 37) % 11) as f64) as f32;
                p(1000 + i, 5000 + i * 10, 40_000, f64::from(loss), None)
            })
            .collect();
        let size = encode(&points).len();
        assert!(size < 5 * 128, "{size} bytes");
        assert_eq!(
            encode_v1(&points).len(),
            1 + 16 + 127 * 12,
            "twelve bytes a point in v1"
        );
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let mut r = Rng(7);
        for round in 0..120 {
            let mut points = series(&mut r);
            if points.is_empty() {
                points.push(p(1, 2, 3, 4.0, None));
            }
            let data = if round % 5 == 0 {
                encode_v1(&points)
            } else {
                encode(&points)
            };
            for cut in 0..data.len() {
                let got = decode(&data[..cut], true);
                // v1 has no count: a cut between two points is a shorter valid chunk.
                assert!(
                    got.is_err() || data[0] == 1,
                    "cut at {cut} of {}",
                    data.len()
                );
            }
            for _ in 0..100 {
                let mut bad = data.clone();
                let bit = r.below(bad.len() as u64 * 8) as usize;
                bad[bit / 8] ^= 1 << (bit % 8);
                let _ = decode(&bad, true);
                let _ = decode(&bad, false);
            }
            let noise: Vec<u8> = (0..r.below(64)).map(|_| r.next() as u8).collect();
            let _ = decode(&[&[2u8][..], &noise].concat(), true);
        }
        assert!(decode(&[3, 0], true).is_err(), "unknown version");
        assert!(decode(&[], true).is_err());
        assert!(
            decode(&[2, 0, 255, 255, 255, 255, 15], true).is_err(),
            "absurd count"
        );
    }
}
