//! Charts from the step-ordered units (schema 8), over HTTP: every bucket of
//! `/api/experiments/{id}/series` and `/api/series`, in JSON and in `format=binary`, checked
//! against a scan of the points as they were logged, for runs logged in order, resumed from
//! checkpoints (steps logged again), with NaN, +-Inf and -0.0, at zooms whose edges fall on
//! and beside the units' edges.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use serde_json::{Value, json};

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

    fn value(&mut self, step: i64) -> f64 {
        match self.below(30) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 1e12,
            _ => 1.0 / (1.0 + step as f64) + self.below(1_000) as f64 * 1e-4,
        }
    }
}

fn wire(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// Sends `logged` (step, value) in batches of at most 1,000, in order.
fn log(server: &TestServer, user: &User, id: &str, name: &str, logged: &[(i64, f64)]) {
    for part in logged.chunks(1_000) {
        let steps: Vec<i64> = part.iter().map(|p| p.0).collect();
        let values: Vec<Value> = part.iter().map(|p| wire(p.1)).collect();
        let r = server.post(
            &format!("/api/experiments/{id}/points"),
            &user.auth(),
            json!({"metrics": [{"name": name, "steps": steps, "values": values}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

/// One chart series as columns, from either format.
#[derive(Debug, PartialEq)]
struct Chart {
    total: i64,
    x: Vec<i64>,
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
    last: Vec<Option<f64>>,
    count: Vec<i64>,
    nonfinite: Vec<i64>,
}

fn from_json(s: &Value) -> Chart {
    let ints = |k: &str| -> Vec<i64> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let floats = |k: &str| -> Vec<Option<f64>> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect()
    };
    Chart {
        total: s["total"].as_i64().unwrap(),
        x: ints("x"),
        min: floats("min"),
        max: floats("max"),
        last: floats("last"),
        count: ints("count"),
        nonfinite: ints("nonfinite"),
    }
}

/// GET `path` on a connection of its own; the status, content type and body bytes.
fn get_bytes(server: &TestServer, user: &User, path: &str) -> (u16, String, Vec<u8>) {
    let key = match user.auth() {
        Auth::Key(k) => k,
        _ => panic!("users here have API keys"),
    };
    let mut stream = TcpStream::connect(server.url().trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {}\r\nx-api-key: {key}\r\n\r\n",
        server.url().trim_start_matches("http://")
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let kind = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, kind, raw[split + 4..].to_vec())
}

/// Reads a `format=binary` answer: (experiment id, [(name, chart)]) per run.
fn from_binary(bytes: &[u8]) -> Vec<(String, Vec<(String, Chart)>)> {
    assert_eq!(&bytes[..4], b"TSB1");
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let head: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let mut at = (8 + len).div_ceil(8) * 8;
    assert!(bytes[8 + len..at].iter().all(|&b| b == 0), "zero padding");
    let mut column = |n: usize| -> Vec<f64> {
        let out = bytes[at..at + n * 8]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        at += n * 8;
        out
    };
    let opt = |v: Vec<f64>| v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect();
    let int = |v: Vec<f64>| v.into_iter().map(|x| x as i64).collect();
    let mut out = Vec::new();
    for run in head.as_array().unwrap() {
        let mut series = Vec::new();
        for s in run["series"].as_array().unwrap() {
            let n = s["n"].as_u64().unwrap() as usize;
            let chart = Chart {
                total: s["total"].as_i64().unwrap(),
                x: int(column(n)),
                min: opt(column(n)),
                max: opt(column(n)),
                last: opt(column(n)),
                count: int(column(n)),
                nonfinite: int(column(n)),
            };
            series.push((s["name"].as_str().unwrap().to_string(), chart));
        }
        out.push((run["experiment_id"].as_str().unwrap().to_string(), series));
    }
    assert_eq!(at, bytes.len(), "nothing after the columns");
    out
}

/// Every bucket against a scan of `logged` (in arrival order): the points with a step in
/// (previous x, x]; min/max over the finite ones; the line's value the last finite one by step,
/// then arrival; NaN/Inf counted.
fn check(chart: &Chart, logged: &[(i64, f64)], from: Option<i64>, to: Option<i64>, what: &str) {
    let inside: Vec<(usize, i64, f64)> = logged
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| from.is_none_or(|f| *s >= f) && to.is_none_or(|t| *s <= t))
        .map(|(i, &(s, v))| (i, s, v))
        .collect();
    let mut prev = i64::MIN;
    let mut total = 0;
    for i in 0..chart.x.len() {
        assert!(chart.x[i] > prev, "{what}: bucket {i} goes back");
        let mut pts: Vec<(usize, i64, f64)> = inside
            .iter()
            .copied()
            .filter(|&(_, s, _)| s > prev && s <= chart.x[i])
            .collect();
        assert!(!pts.is_empty(), "{what}: bucket {i} is empty");
        assert_eq!(
            pts.iter().map(|p| p.1).max(),
            Some(chart.x[i]),
            "{what}: bucket {i} x"
        );
        pts.sort_by_key(|&(arrival, s, _)| (s, arrival));
        let finite: Vec<f64> = pts.iter().map(|p| p.2).filter(|v| v.is_finite()).collect();
        assert_eq!(chart.count[i], pts.len() as i64, "{what}: bucket {i} count");
        assert_eq!(
            chart.nonfinite[i],
            (pts.len() - finite.len()) as i64,
            "{what}: bucket {i} non-finite"
        );
        assert_eq!(
            chart.min[i],
            finite.iter().copied().reduce(f64::min),
            "{what}: bucket {i} min"
        );
        assert_eq!(
            chart.max[i],
            finite.iter().copied().reduce(f64::max),
            "{what}: bucket {i} max"
        );
        assert_eq!(
            chart.last[i],
            finite.last().copied(),
            "{what}: bucket {i} last"
        );
        prev = chart.x[i];
        total += pts.len() as i64;
    }
    assert_eq!(
        total,
        inside.len() as i64,
        "{what}: every point in a bucket"
    );
    assert_eq!(chart.total, total, "{what}: total");
}

#[test]
fn every_bucket_of_every_zoom_matches_a_scan_of_the_points_in_both_formats() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    // One run in order (a step logged twice now and then), one resumed twice from earlier
    // checkpoints, one a single point.
    let ordered: Vec<(i64, f64)> = (0..20_000)
        .flat_map(|s| {
            let again = s % 97 == 0;
            std::iter::once(s).chain(again.then_some(s))
        })
        .map(|s| (s, rng.value(s)))
        .collect();
    let resumed: Vec<(i64, f64)> = (0..12_000)
        .chain(4_000..15_000)
        .chain(9_000..9_700)
        .chain(15_000..20_000)
        .map(|s| (s, rng.value(s)))
        .collect();
    let single = vec![(7, -0.0)];
    let runs = [
        ("ordered", ordered),
        ("resumed", resumed),
        ("single", single),
    ];
    let mut ids = Vec::new();
    for (name, logged) in &runs {
        let id = server.experiment(&alice, name, None);
        log(&server, &alice, &id, "loss", logged);
        ids.push(id);
    }

    // Edges: around multiples of 128 and 512 points (where units and level-1 units of the
    // ordered run end) and random ones.
    let mut edges: Vec<Option<i64>> = vec![None];
    for k in [1, 2, 3, 4, 5, 16, 40, 77, 128, 155] {
        for e in [k * 128 - 1, k * 128, k * 512 - 1, k * 512, k * 512 + 1] {
            edges.push(Some(e));
        }
    }
    for _ in 0..10 {
        edges.push(Some(rng.below(21_000)));
    }

    for (r, (name, logged)) in runs.iter().enumerate() {
        let id = &ids[r];
        for round in 0..40 {
            let from = edges[rng.below(edges.len() as u64) as usize];
            let to = edges[rng.below(edges.len() as u64) as usize];
            let points = [1, 3, 50, 150, 300, 1_000, 10_000][rng.below(7) as usize];
            let mut query = format!("names=loss&points={points}");
            if let Some(f) = from {
                query += &format!("&from={f}");
            }
            if let Some(t) = to {
                query += &format!("&to={t}");
            }
            let what = format!("{name} round {round}: {query}");
            let r = server.get(
                &format!("/api/experiments/{id}/series?{query}"),
                &alice.auth(),
            );
            assert_eq!(r.status, 200, "{what}: {}", r.text);
            let data = r.data();
            let series = data["series"].as_array().unwrap();
            let json_chart = from_json(&series[0]);
            assert!(
                json_chart.x.len() <= points,
                "{what}: at most {points} buckets"
            );
            check(&json_chart, logged, from, to, &what);

            let (status, kind, bytes) = get_bytes(
                &server,
                &alice,
                &format!("/api/experiments/{id}/series?{query}&format=binary"),
            );
            assert_eq!(status, 200, "{what}");
            assert_eq!(kind, "application/octet-stream");
            let runs = from_binary(&bytes);
            assert_eq!(runs.len(), 1);
            assert_eq!(runs[0].1[0].0, "loss");
            assert_eq!(runs[0].1[0].1, json_chart, "{what}: binary = JSON");
        }
    }

    // /api/series: every run at once, the two formats agreeing run by run.
    let list = ids.join(",");
    for query in [
        "points=300",
        "points=40&from=3000&to=16000",
        "points=7&to=0",
    ] {
        let r = server.get(
            &format!("/api/series?experiments={list}&names=loss&{query}"),
            &alice.auth(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let (status, _, bytes) = get_bytes(
            &server,
            &alice,
            &format!("/api/series?experiments={list}&names=loss&{query}&format=binary"),
        );
        assert_eq!(status, 200);
        let binary = from_binary(&bytes);
        let data = r.data();
        let json_runs = data.as_array().unwrap();
        assert_eq!(binary.len(), json_runs.len());
        for (b, j) in binary.iter().zip(json_runs) {
            assert_eq!(b.0, j["experiment_id"].as_str().unwrap());
            let js = j["series"].as_array().unwrap();
            assert_eq!(b.1.len(), js.len());
            for ((name, chart), s) in b.1.iter().zip(js) {
                assert_eq!(name, s["name"].as_str().unwrap());
                assert_eq!(chart, &from_json(s), "{query}");
            }
        }
    }
}

#[test]
fn an_unknown_format_is_refused() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let id = server.experiment(&alice, "run", None);
    let r = server.get(
        &format!("/api/experiments/{id}/series?format=csv"),
        &alice.auth(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("format"), "{}", r.text);
    // An empty run answers an empty binary answer with its header.
    let (status, _, bytes) = get_bytes(
        &server,
        &alice,
        &format!("/api/experiments/{id}/series?format=binary"),
    );
    assert_eq!(status, 200);
    let runs = from_binary(&bytes);
    assert_eq!(runs.len(), 1);
    assert!(runs[0].1.is_empty());
}

/// `tora doctor` rebuilds every metric's units from its points and compares them with the
/// stored ones: a stopped server's file passes, one whose units were changed does not.
#[test]
fn doctor_rebuilds_the_units_and_finds_a_changed_one() {
    // `tora doctor` checks a file.
    let mut server = TestServer::start_file(&[]);
    let alice = server.user("alice@lab.org");
    let id = server.experiment(&alice, "resumed", None);
    let logged: Vec<(i64, f64)> = (0..3_000)
        .chain(1_000..2_000)
        .map(|s| (s, s as f64))
        .collect();
    log(&server, &alice, &id, "loss", &logged);
    server.sigterm();
    let doctor = |file: &std::path::Path| {
        let out = std::process::Command::new(BIN)
            .arg("doctor")
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = doctor(&server.db);
    assert!(ok, "{out}{err}");
    assert!(out.contains("units rebuilt and compared"), "{out}");

    let dir = TempDir::new();
    let changed = dir.join("changed.db");
    std::fs::copy(&server.db, &changed).unwrap();
    {
        let conn = rusqlite::Connection::open(&changed).unwrap();
        // The count of the first stored unit, one more than its points.
        let (row, mut data): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT id, data FROM series_units ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        data[64] = data[64].wrapping_add(1);
        conn.execute(
            "UPDATE series_units SET data = ?2 WHERE id = ?1",
            rusqlite::params![row, data],
        )
        .unwrap();
    }
    let (ok, _, err) = doctor(&changed);
    assert!(!ok);
    assert!(err.contains("step-ordered units of series"), "{err}");
}
