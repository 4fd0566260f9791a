//! How many bytes a stored point takes, and how fast chunks encode and decode, for the value
//! encodings considered for `store::packed` version 2, on curves shaped like training runs.
//!
//! ```bash
//! cargo run --release --example point_encoding
//! ```
//!
//! Every curve is 100,000 points of one metric cut into 128-point chunks (the blocks of
//! `store::series`), logged as ten metrics at once (`seq` moves by 10 a step) in batches of 100
//! steps that share one arrival time, unless the curve's name says otherwise. Columns:
//! `v1` and `v2` are whole chunks as `store::packed` writes them (version 1, the old format, and
//! version 2, the current one); `raw`, `gorilla`, `bytes` and `f32` are the value alone under
//! each candidate (8 bytes; Gorilla's bit-level XOR; XOR with a byte of leading/trailing zero
//! byte counts and the bytes between; a float32 detector: 4 XOR bytes of the float32 form when
//! the double is one, else 8), the step/seq/t part being the same for all of them.

use std::hint::black_box;
use std::time::Instant;

use tora::store::logs::{Kind, MsgId, NewLog};
use tora::store::packed::{self, Point};
use tora::store::{experiments, logs, series, users, workspaces};

const N: i64 = 100_000;
const CHUNK: usize = 128;

/// xorshift64*, with a normal sample by Box-Muller.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn f32(v: f64) -> f64 {
    f64::from(v as f32)
}

/// Steps +1, seq +10, one t per 100-step batch (a batch every ~80 ms).
fn points(values: impl Fn(i64, &mut Rng) -> f64) -> Vec<Point> {
    let mut r = Rng(42);
    (0..N)
        .map(|s| Point {
            step: s,
            seq: 3 + s * 10,
            t: 1_000 + (s / 100) * 80,
            value: values(s, &mut r),
            msg_id: None,
        })
        .collect()
}

fn loss(s: i64, r: &mut Rng) -> f64 {
    2.3 * (-(s as f64) / 20_000.0).exp() + 0.15 + 0.05 * r.normal()
}

fn cosine(s: i64) -> f64 {
    let warm = 2_000;
    if s < warm {
        3e-4 * s as f64 / warm as f64
    } else {
        let p = (s - warm) as f64 / (N - warm) as f64;
        1e-5 + 0.5 * (3e-4 - 1e-5) * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

fn curves() -> Vec<(&'static str, Vec<Point>)> {
    let mut out = vec![
        ("loss, float64 + noise", points(loss)),
        (
            "loss, float32 (loss.item())",
            points(|s, r| f32(loss(s, r))),
        ),
        (
            "loss, float32, smoothed (EMA)",
            points({
                let ema = std::cell::Cell::new(2.45f64);
                move |s, r| {
                    ema.set(0.98 * ema.get() + 0.02 * loss(s, r));
                    f32(ema.get())
                }
            }),
        ),
        (
            "accuracy, correct / 10000 (float64)",
            points(|s, r| {
                let p = 0.97 - 0.87 * (-(s as f64) / 15_000.0).exp();
                ((p * 10_000.0 + 40.0 * r.normal())
                    .round()
                    .clamp(0.0, 10_000.0))
                    / 10_000.0
            }),
        ),
        (
            "accuracy, batch of 256 (float32)",
            points(|s, r| {
                let p = 0.97 - 0.87 * (-(s as f64) / 15_000.0).exp();
                let k = (0..256).filter(|_| r.uniform() < p).count();
                f32(k as f64 / 256.0)
            }),
        ),
        (
            "lr, step decay 0.1 / 0.01 / 0.001",
            points(|s, _| match s {
                s if s < 30_000 => 0.1,
                s if s < 60_000 => 0.01,
                _ => 0.001,
            }),
        ),
        ("lr, warmup + cosine (float64)", points(|s, _| cosine(s))),
        (
            "lr, warmup + cosine (float32)",
            points(|s, _| f32(cosine(s))),
        ),
        (
            "grad norm, lognormal (float32)",
            points(|s, r| {
                f32((0.5 + 2.0 * (-(s as f64) / 30_000.0).exp()) * (0.4 * r.normal()).exp())
            }),
        ),
        (
            "loss f32 with NaN spikes, ±Inf, -0.0",
            points(|s, r| match s % 997 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                _ => f32(loss(s, r)),
            }),
        ),
        (
            "uniform random doubles (the benches' values)",
            points(|_, r| r.uniform()),
        ),
        (
            "decay + uniform noise (bench/query.py's values)",
            points(|s, r| (-(s as f64) / 20_000.0).exp() + 0.05 * r.uniform()),
        ),
        ("constant 1.0", points(|_, _| 1.0)),
        (
            "epoch as float (step / 1000)",
            points(|s, _| (s / 1_000) as f64),
        ),
    ];
    // Step patterns on the float32 loss.
    let mut k = points(|s, r| f32(loss(s, r)));
    for p in &mut k {
        p.step *= 50;
    }
    out.push(("steps +50 (eval every 50)", k));
    let mut rewound = points(|s, r| f32(loss(s, r)));
    for p in &mut rewound {
        // Resumed from a checkpoint 700 steps back every 20,000 steps.
        p.step -= (p.step / 20_000) * 700;
    }
    out.push(("steps rewound on resume", rewound));
    let mut timed = points(|s, r| f32(loss(s, r)));
    let mut r = Rng(9);
    let mut t = 0i64;
    for p in &mut timed {
        t += 25 + (r.next() % 20) as i64;
        p.t = t;
    }
    out.push(("own times (~35 ms apart, jitter)", timed));
    let mut ids = points(|s, r| f32(loss(s, r)));
    for p in &mut ids {
        p.msg_id = Some(MsgId::random());
    }
    out.push(("float32 loss with UUID msg_ids", ids));
    out
}

fn xor_words(values: &[f64]) -> impl Iterator<Item = u64> + '_ {
    values.windows(2).map(|w| w[0].to_bits() ^ w[1].to_bits())
}

/// Gorilla's value bits (the first value raw), as `store::packed` version 2 writes them.
fn gorilla_bits(values: &[f64]) -> u64 {
    let mut bits = 64;
    let mut window: Option<(u32, u32)> = None;
    for x in xor_words(values) {
        if x == 0 {
            bits += 1;
            continue;
        }
        let (lead, trail) = (x.leading_zeros().min(31), x.trailing_zeros());
        match window {
            Some((l, t)) if lead >= l && trail >= t => bits += 2 + u64::from(64 - l - t),
            _ => {
                bits += 2 + 5 + 6 + u64::from(64 - lead - trail);
                window = Some((lead, trail));
            }
        }
    }
    bits
}

/// XOR with byte granularity: a header byte (leading and trailing zero bytes), then the
/// bytes between; byte-aligned, so simpler to decode.
fn byte_xor_bits(values: &[f64]) -> u64 {
    let mut bytes = 8;
    for x in xor_words(values) {
        let lead = x.leading_zeros() / 8;
        let trail = if x == 0 { 0 } else { x.trailing_zeros() / 8 };
        bytes += 1 + u64::from(8 - lead.min(8) - trail);
    }
    bytes * 8
}

/// A flag bit, then the float32 form's XOR with the previous float32 form in 4 bytes when the
/// double is exactly a float32, else the 8 bytes.
fn f32_bits(values: &[f64]) -> u64 {
    let mut bits = 64;
    for w in values.windows(2) {
        let is_f32 = f64::from(w[1] as f32).to_bits() == w[1].to_bits();
        bits += 1 + if is_f32 { 32 } else { 64 };
    }
    bits
}

fn per_point<T>(chunks: &[&[Point]], f: impl Fn(&[Point]) -> T) -> f64 {
    let n: usize = chunks.iter().map(|c| c.len()).sum();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for c in chunks {
            black_box(f(black_box(c)));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

fn main() {
    println!(
        "| curve | v1 B/pt | v2 B/pt | raw | gorilla | bytes | f32 | v1 enc / dec ns/pt | v2 enc / dec ns/pt |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, pts) in curves() {
        let chunks: Vec<&[Point]> = pts.chunks(CHUNK).collect();
        let n = pts.len() as f64;
        let v1: Vec<Vec<u8>> = chunks.iter().map(|c| packed::encode_v1(c)).collect();
        let v2: Vec<Vec<u8>> = chunks.iter().map(|c| packed::encode(c)).collect();
        for (c, data) in chunks.iter().zip(&v2) {
            let back = packed::decode(data, true).expect("decodes");
            assert!(
                back.iter()
                    .zip(c.iter())
                    .all(|(a, b)| a.value.to_bits() == b.value.to_bits()
                        && (a.step, a.seq, a.t) == (b.step, b.seq, b.t)
                        && a.msg_id == b.msg_id)
            );
        }
        let size = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / n;
        let mut value_bits = [0u64; 3];
        for c in &chunks {
            let values: Vec<f64> = c.iter().map(|p| p.value).collect();
            value_bits[0] += gorilla_bits(&values);
            value_bits[1] += byte_xor_bits(&values);
            value_bits[2] += f32_bits(&values);
        }
        let vb = |b: u64| b as f64 / 8.0 / n;
        let v1_refs: Vec<&[u8]> = v1.iter().map(Vec::as_slice).collect();
        let v2_refs: Vec<&[u8]> = v2.iter().map(Vec::as_slice).collect();
        let dec = |data: &[&[u8]]| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let start = Instant::now();
                for d in data {
                    black_box(packed::decode(black_box(d), false).expect("decodes"));
                }
                best = best.min(start.elapsed().as_nanos() as f64 / n);
            }
            best
        };
        println!(
            "| {name} | {:.2} | {:.2} | 8.00 | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} | {:.1} / {:.1} |",
            size(&v1),
            size(&v2),
            vb(value_bits[0]),
            vb(value_bits[1]),
            vb(value_bits[2]),
            per_point(&chunks, packed::encode_v1),
            dec(&v1_refs),
            per_point(&chunks, packed::encode),
            dec(&v2_refs),
        );
    }
    read_path();
}

fn read_path() {
    let dir = std::env::temp_dir().join(format!("tora-point-encoding-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut conn = tora::db::open_connection(&dir.join("tora.db")).expect("database");
    tora::db::migrate(&mut conn).expect("schema");
    let u = users::create(&conn, "bench@example.org", "h", 0).expect("user");
    let ws = workspaces::personal(&conn, &u.id, 0).expect("workspace");
    let new = experiments::NewExperiment {
        id: "00000000-0000-4000-8000-000000000001",
        workspace_id: &ws,
        created_by: &u.id,
        name: "run",
        description: None,
        hyperparams: "[]",
        tags: "[]",
        metadata: "{}",
        group: None,
        created_at: None,
    };
    let exp = experiments::create(&conn, &new, 0).expect("experiment");
    let names: Vec<std::sync::Arc<str>> = (0..20).map(|i| format!("m{i}").into()).collect();
    let mut r = Rng(5);
    for start in (0..20_000).step_by(250) {
        let batch: Vec<NewLog> = (start..start + 250)
            .flat_map(|s| names.iter().map(move |n| (s, n.clone())))
            .map(|(s, name)| NewLog {
                msg_id: None,
                name,
                kind: Kind::Metric,
                step: Some(s),
                value: (-(s as f64) / 4_000.0).exp() + 0.05 * r.uniform(),
                extra_metadata: None,
                at: None,
            })
            .collect();
        let tx = conn.transaction().expect("transaction");
        logs::insert(&tx, &exp, &batch, 1_000 + start).expect("insert");
        tx.commit().expect("commit");
    }
    let all = series::list(&conn, exp.rowid).expect("series");
    let time = |f: &dyn Fn(&series::Series)| {
        let mut runs: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                for s in &all {
                    f(s);
                }
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        runs[3]
    };
    let measure = |label: &str| {
        let points = time(&|s| {
            black_box(series::points(&conn, s, i64::MIN, i64::MAX, false).expect("points"));
        });
        let chart = time(&|s| {
            let b = series::downsample(&conn, &exp, s, series::Axis::Step, None, None, 1_000);
            black_box(b.expect("downsample"));
        });
        println!("| {label} | {points:.1} ms | {chart:.1} ms |");
    };
    println!();
    println!(
        "| 20 series x 20,000 points | series::points, all | downsample to 1,000 (raw points) |"
    );
    println!("|---|---|---|");
    measure("chunks in version 2");
    let chunks: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT id, data FROM chunks")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("chunks");
    for (id, data) in chunks {
        let old = packed::encode_v1(&packed::decode(&data, true).expect("decodes"));
        conn.execute(
            "UPDATE chunks SET data = ?2 WHERE id = ?1",
            rusqlite::params![id, old],
        )
        .expect("rewrite");
    }
    measure("the same chunks in version 1");
    drop(conn);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}
