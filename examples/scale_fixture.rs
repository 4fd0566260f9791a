//! Fills a stopped server's database with many runs, for bench/workspace.py and
//! bench/cardinality.py: creating 100,000 runs one request at a time takes minutes, so the
//! benches make the account, the workspace and a few runs over HTTP, stop the server, add the
//! bulk here through the same store functions the handlers call, and serve the file again.
//!
//! ```bash
//! cargo run --release --example scale_fixture -- DB WORKSPACE_ID USER_ID \
//!     [--runs N] [--points P] [--wide K] [--metrics M] [--wide-points Q]
//! ```
//!
//! `--runs N` (default 100,000) narrow runs: hyperparameters lr, batch_size, seed, optimizer,
//! tags, one of 100 groups, results `acc` and `f1`, metrics `loss` and `val/acc` of P points
//! (default 10). `--wide K` (default 0) runs with M metric names each (default 10,000:
//! `loss`, then `blockBB/pPP` for 100 sections of 100, the last ones `sys/...`) of Q points
//! each (default 5), made after the narrow ones (so they are the newest). Runs are created one
//! second apart, in transactions of 1,000 runs.

use std::sync::Arc;

use tora::store::experiments::{self, NewExperiment};
use tora::store::logs::{self, Kind, NewLog};

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
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// The metric names of a wide run: `loss`, then sections of 100 names, `sys/...` last.
pub fn wide_names(m: usize) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = vec!["loss".into()];
    for j in 0..m.saturating_sub(1) {
        let name = if j + 10 >= m.saturating_sub(1) {
            format!("sys/s{j:05}")
        } else {
            format!("block{:02}/p{:05}", j / 100, j)
        };
        out.push(name.into());
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, workspace, user] = [0, 1, 2].map(|i| args.get(i).expect(USAGE).clone());
    let runs = arg(&args, "--runs", 100_000);
    let points = arg(&args, "--points", 10) as i64;
    let wide = arg(&args, "--wide", 0);
    let metrics = arg(&args, "--metrics", 10_000);
    let wide_points = arg(&args, "--wide-points", 5) as i64;

    let mut conn = tora::db::open_connection(std::path::Path::new(&db)).expect("database");
    tora::db::migrate(&mut conn).expect("schema");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = tora::time::now_ms() - (runs + wide) as i64 * 1_000 - 60_000;
    let optimizers = ["adam", "sgd", "adamw", "lion"];
    let narrow_names: [(Arc<str>, Kind); 4] = [
        ("loss".into(), Kind::Metric),
        ("val/acc".into(), Kind::Metric),
        ("acc".into(), Kind::Result),
        ("f1".into(), Kind::Result),
    ];
    let wide_names = wide_names(metrics);
    let began = std::time::Instant::now();
    let mut i = 0;
    while i < runs + wide {
        let tx = conn.transaction().expect("transaction");
        let end = (i + 1_000).min(runs + wide);
        for n in i..end {
            let created = start + n as i64 * 1_000;
            let lr = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2][n % 5];
            let batch_size = [32, 64, 128, 256][(n / 5) % 4];
            let hp = serde_json::json!([
                {"key": "lr", "value": lr},
                {"key": "batch_size", "value": batch_size},
                {"key": "seed", "value": n},
                {"key": "optimizer", "value": optimizers[(n / 20) % 4]},
            ])
            .to_string();
            let tags = if n % 10 == 0 {
                r#"["sweep","baseline"]"#
            } else {
                r#"["sweep"]"#
            };
            let id = format!("00000000-0000-4000-8000-{n:012}");
            let is_wide = n >= runs;
            let name = if is_wide {
                format!("wide-{n}")
            } else {
                format!("run-{n}")
            };
            let group = format!("g{:02}", n % 100);
            let new = NewExperiment {
                id: &id,
                workspace_id: &workspace,
                created_by: &user,
                name: &name,
                description: None,
                hyperparams: &hp,
                tags,
                metadata: "{}",
                group: Some(&group),
                created_at: Some(created),
            };
            let exp = experiments::create(&tx, &new, created).expect("experiment");
            let mut batch = Vec::new();
            if is_wide {
                for s in 0..wide_points {
                    for name in &wide_names {
                        batch.push(NewLog {
                            msg_id: None,
                            name: name.clone(),
                            kind: Kind::Metric,
                            step: Some(s),
                            value: rng.uniform(),
                            extra_metadata: None,
                            at: None,
                        });
                    }
                }
            } else {
                for s in 0..points {
                    for (name, kind) in &narrow_names {
                        if *kind == Kind::Result && s + 1 < points {
                            continue;
                        }
                        batch.push(NewLog {
                            msg_id: None,
                            name: name.clone(),
                            kind: *kind,
                            step: (*kind == Kind::Metric).then_some(s),
                            value: rng.uniform(),
                            extra_metadata: None,
                            at: None,
                        });
                    }
                }
            }
            logs::insert(&tx, &exp, &batch, created + 500).expect("points");
        }
        tx.commit().expect("commit");
        i = end;
        if i % 10_000 == 0 || i == runs + wide {
            eprintln!("{i} runs in {:.1} s", began.elapsed().as_secs_f64());
        }
    }
}

const USAGE: &str = "usage: scale_fixture DB WORKSPACE_ID USER_ID [--runs N] [--points P] [--wide K] [--metrics M] [--wide-points Q]";
