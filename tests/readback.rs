//! The long reads (`/metrics`, `/logs`, `/results`, the CSV export) byte for byte against a
//! brute-force expectation built from what was sent: pages that end exactly at the page size
//! or one point either side, NaN / ±Infinity / -0.0, results beside metrics, several metrics
//! interleaved, and steps logged again.

mod common;

use base64::Engine;
use common::{TestServer, User};
use serde_json::json;
use tora::store::logs::PAGE;
use tora::time::{now_ms, rfc3339};

/// One point as sent, with the id the server gives it (ids count up in the order stored).
#[derive(Clone, Debug)]
struct Sent {
    id: i64,
    name: String,
    /// None for a result.
    step: Option<i64>,
    value: f64,
    at: i64,
}

/// Stores one columnar batch (metrics first, in order, then results) and records each point
/// with its id. `metrics` is (name, [(step, value)]); `results` is (name, value).
fn send(
    server: &TestServer,
    user: &User,
    exp: &str,
    sent: &mut Vec<Sent>,
    metrics: &[(&str, Vec<(i64, f64)>)],
    results: &[(&str, f64)],
    base: i64,
) {
    let before = sent.len();
    let mut cols = Vec::new();
    let mut next = sent.last().map_or(1, |s| s.id + 1);
    for (name, points) in metrics {
        let mut values = Vec::new();
        let mut steps = Vec::new();
        let mut times = Vec::new();
        for &(step, value) in points {
            // Times spread over seconds and days; a minute ahead of the run's start, so kept
            // as given.
            let at = base + next * 777;
            values.extend_from_slice(&value.to_le_bytes());
            steps.push(step);
            times.push(at);
            sent.push(Sent {
                id: next,
                name: name.to_string(),
                step: Some(step),
                value,
                at,
            });
            next += 1;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&values);
        cols.push(json!({"name": name, "steps": steps, "values_f64": b64, "times": times}));
    }
    let mut res = Vec::new();
    for &(name, value) in results {
        let at = base + next * 777;
        let v = if value.is_nan() {
            json!("NaN")
        } else if value.is_infinite() {
            json!(if value > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            json!(value)
        };
        res.push(json!({"name": name, "value": v, "time": at}));
        sent.push(Sent {
            id: next,
            name: name.to_string(),
            step: None,
            value,
            at,
        });
        next += 1;
    }
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &user.auth(),
        json!({"metrics": cols, "results": res}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["inserted"], sent.len() - before, "{}", r.text);
}

/// A value as the JSON lists write it.
fn json_value(v: f64) -> String {
    if v.is_nan() {
        r#""NaN""#.into()
    } else if v == f64::INFINITY {
        r#""Infinity""#.into()
    } else if v == f64::NEG_INFINITY {
        r#""-Infinity""#.into()
    } else {
        serde_json::to_string(&v).unwrap()
    }
}

/// The whole body of `/logs`, `/metrics` or `/results` for these points, in this order.
fn expected_json(exp: &str, points: &[&Sent]) -> String {
    let items: Vec<String> = points
        .iter()
        .map(|p| {
            let kind = if p.step.is_some() { "metric" } else { "result" };
            let step = p.step.map_or("null".to_string(), |s| s.to_string());
            format!(
                r#"{{"id":{},"experiment_id":"{exp}","msg_id":null,"name":{},"value":{},"step":{step},"metadata":{{"type":"{kind}"}},"created_at":"{}"}}"#,
                p.id,
                serde_json::to_string(&p.name).unwrap(),
                json_value(p.value),
                rfc3339(p.at),
            )
        })
        .collect();
    format!(r#"{{"status":200,"data":[{}]}}"#, items.join(","))
}

/// The whole CSV export: series by kind (metrics first) then name, each by step then id.
fn expected_csv(sent: &[Sent]) -> String {
    let mut rows: Vec<&Sent> = sent.iter().collect();
    rows.sort_by_key(|p| (p.step.is_none(), p.name.clone(), p.step, p.id));
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["name", "type", "step", "value", "created_at"])
        .unwrap();
    for p in rows {
        let name = match p.name.chars().next() {
            Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{}", p.name),
            _ => p.name.clone(),
        };
        csv.write_record([
            name.as_str(),
            if p.step.is_some() { "metric" } else { "result" },
            &p.step.map(|s| s.to_string()).unwrap_or_default(),
            &format!("{:?}", p.value),
            &rfc3339(p.at),
        ])
        .unwrap();
    }
    String::from_utf8(csv.into_inner().unwrap()).unwrap()
}

/// Every long read of `exp` against what was sent, whole bodies compared as text.
fn check_reads(server: &TestServer, user: &User, exp: &str, sent: &[Sent]) {
    let get = |what: &str| {
        let r = server.get(&format!("/api/experiments/{exp}/{what}"), &user.auth());
        assert_eq!(r.status, 200, "{what}");
        r.text
    };
    let by_id: Vec<&Sent> = sent.iter().collect();
    let mut metrics: Vec<&Sent> = sent.iter().filter(|p| p.step.is_some()).collect();
    metrics.sort_by(|a, b| (a.step, &a.name, a.id).cmp(&(b.step, &b.name, b.id)));
    let results: Vec<&Sent> = sent.iter().filter(|p| p.step.is_none()).collect();
    for (what, want) in [
        ("logs", expected_json(exp, &by_id)),
        ("metrics", expected_json(exp, &metrics)),
        ("results", expected_json(exp, &results)),
        ("logs/csv", expected_csv(sent)),
    ] {
        let got = get(what);
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            let from = at.saturating_sub(200);
            panic!(
                "/{what} differs at byte {at} of {} (expected {}):\n got: {}\nwant: {}",
                got.len(),
                want.len(),
                &got[from..(at + 200).min(got.len())],
                &want[from..(at + 200).min(want.len())],
            );
        }
    }
}

#[test]
fn reads_that_end_at_or_beside_a_page_boundary_are_exact() {
    let server = TestServer::start();
    let user = server.user("pages@lab.org");
    let base = now_ms() + 60_000;
    let page = PAGE as i64;
    for n in [page - 1, page, page + 1, 2 * page] {
        let exp = server.experiment(&user, &format!("{n} points"), None);
        let mut sent = Vec::new();
        let points: Vec<(i64, f64)> = (0..n).map(|s| (s, s as f64 * 0.1 - 3.0)).collect();
        send(
            &server,
            &user,
            &exp,
            &mut sent,
            &[("loss", points)],
            &[],
            base,
        );
        check_reads(&server, &user, &exp, &sent);
    }
}

#[test]
fn interleaved_metrics_results_and_non_finite_values_read_back_exactly() {
    let server = TestServer::start();
    let user = server.user("mixed@lab.org");
    let exp = server.experiment(&user, "mixed", None);
    let base = now_ms() + 60_000;
    let special = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        1e-7,
        3e-5,
        1e16,
        1.0 / 3.0,
        f64::MAX,
        5e-324,
    ];
    let value = |i: i64| {
        if i % 5 == 0 {
            special[(i / 5) as usize % special.len()]
        } else {
            (i as f64).sqrt() * if i % 2 == 0 { 1.0 } else { -1e-3 }
        }
    };
    let names = ["b", "a", "c,\"q\"", "=sum"];
    let mut sent = Vec::new();
    // Four metrics written side by side in batches, so ids interleave across series and a
    // page holds several; the last batches log steps again (a run resumed from a checkpoint),
    // so one series is out of step order. Results come with some batches.
    for batch in 0..6i64 {
        let steps: Vec<i64> = if batch < 4 {
            (batch * 2_500..(batch + 1) * 2_500).collect()
        } else {
            (batch * 1_000 - 3_000..batch * 1_000 - 1_000).collect()
        };
        let metrics: Vec<(&str, Vec<(i64, f64)>)> = names
            .iter()
            .enumerate()
            .filter(|(m, _)| batch < 4 || *m == 0)
            .map(|(m, name)| {
                let points = steps
                    .iter()
                    .map(|&s| (s, value(s * 4 + m as i64)))
                    .collect();
                (*name, points)
            })
            .collect();
        let results: Vec<(&str, f64)> = if batch % 2 == 0 {
            vec![("best", value(batch * 5)), ("acc", -0.0)]
        } else {
            vec![]
        };
        send(&server, &user, &exp, &mut sent, &metrics, &results, base);
    }
    assert!(sent.len() > 5 * PAGE);
    check_reads(&server, &user, &exp, &sent);
}
