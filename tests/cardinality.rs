//! Runs with thousands of metric names (issue 15, item 6), at a size a test can afford:
//! `/summary` pages cover every metric and result exactly once, in order, narrowed by prefix
//! and search as a brute-force filter of the names says; the run table's `summary=1` stays
//! bounded per run and still lists the columns it is asked for. Speed: bench/cardinality.py.

mod common;

use common::{TestServer, User};
use serde_json::{Value, json};

const METRICS: usize = 2_345;
const RESULTS: usize = 30;

/// Which names a narrowed page keeps, by brute force.
type Keep = Box<dyn Fn(&str) -> bool>;

/// Metric names as a per-layer logger makes them, in sections, with a few odd ones.
fn metric_names() -> Vec<String> {
    let mut names: Vec<String> = (0..METRICS - 3)
        .map(|j| format!("block{:02}/Layer{:04}/grad_norm", j / 100, j))
        .collect();
    names.extend([
        "loss".to_string(),
        "sys/cpu".to_string(),
        "Ünïcode/x".to_string(),
    ]);
    names
}

fn result_names() -> Vec<String> {
    (0..RESULTS).map(|j| format!("r{j:02}")).collect()
}

fn wide_run(server: &TestServer, user: &User, ws: Option<&str>) -> String {
    let id = server.experiment(user, "wide", ws);
    let mut logs: Vec<Value> = metric_names()
        .iter()
        .enumerate()
        .flat_map(|(j, n)| {
            [0, 1].map(|s| json!({"name": n, "value": j as f64 + s as f64, "step": s}))
        })
        .collect();
    logs.extend(
        result_names()
            .iter()
            .map(|n| json!({"name": n, "value": 0.5})),
    );
    let r = server.post(
        &format!("/api/experiments/{id}/logs/batch"),
        &user.auth(),
        json!({ "logs": logs }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    id
}

/// Every page of `/summary?query`, as (kind, name) in the order given, with the totals of the
/// first page (which every page must repeat).
fn pages(server: &TestServer, user: &User, id: &str, query: &str) -> (Vec<(u8, String)>, i64, i64) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut totals = None;
    for _ in 0..=METRICS + RESULTS {
        let mut path = format!("/api/experiments/{id}/summary?{query}");
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let r = server.get(&path, &user.auth());
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let d = r.data();
        let t = (
            d["metrics_total"].as_i64().unwrap(),
            d["results_total"].as_i64().unwrap(),
        );
        assert_eq!(*totals.get_or_insert(t), t, "totals change between pages");
        for m in d["metrics"].as_array().unwrap() {
            out.push((0, m["name"].as_str().unwrap().to_string()));
        }
        for m in d["results"].as_array().unwrap() {
            out.push((1, m["name"].as_str().unwrap().to_string()));
        }
        match d["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                let (m, r) = totals.unwrap();
                return (out, m, r);
            }
        }
    }
    panic!("more pages than series");
}

fn brute(keep: impl Fn(&str) -> bool) -> Vec<(u8, String)> {
    let mut m: Vec<String> = metric_names().into_iter().filter(|n| keep(n)).collect();
    let mut r: Vec<String> = result_names().into_iter().filter(|n| keep(n)).collect();
    m.sort();
    r.sort();
    m.into_iter()
        .map(|n| (0, n))
        .chain(r.into_iter().map(|n| (1, n)))
        .collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn summary_pages_cover_every_series_once_in_order() {
    let server = TestServer::start();
    let user = server.user("owner@example.org");
    let id = wide_run(&server, &user, None);

    // Without parameters: the whole run in one answer, as the 0.0.12 SDK and the pages expect.
    let r = server.get(&format!("/api/experiments/{id}/summary"), &user.auth());
    assert_eq!(r.status, 200);
    let d = r.data();
    assert!(d["next"].is_null());
    assert_eq!(d["metrics"].as_array().unwrap().len(), METRICS);
    assert_eq!(d["results"].as_array().unwrap().len(), RESULTS);
    assert_eq!(d["metrics_total"], json!(METRICS));
    let loss = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "loss")
        .unwrap();
    assert_eq!(
        (loss["count"].clone(), loss["last_step"].clone()),
        (json!(2), json!(1))
    );

    let all = brute(|_| true);
    for limit in [1, 7, 1000, 10_000] {
        let (got, m, r) = pages(&server, &user, &id, &format!("limit={limit}"));
        assert_eq!(got, all, "limit={limit}");
        assert_eq!((m, r), (METRICS as i64, RESULTS as i64));
    }
    let cases: [(&str, &str, Keep); 5] = [
        (
            "prefix",
            "block07/",
            Box::new(|n: &str| n.starts_with("block07/")),
        ),
        (
            "prefix",
            "BLOCK07/",
            Box::new(|n: &str| n.starts_with("BLOCK07/")),
        ),
        (
            "search",
            "layer000",
            Box::new(|n: &str| n.to_ascii_lowercase().contains("layer000")),
        ),
        (
            "search",
            "R1",
            Box::new(|n: &str| n.to_ascii_lowercase().contains("r1")),
        ),
        ("search", "ünï", Box::new(|n: &str| n.contains("ünï"))),
    ];
    for (param, value, keep) in &cases {
        let want = brute(keep);
        for limit in [3, 10_000] {
            let (got, m, r) = pages(
                &server,
                &user,
                &id,
                &format!("{param}={}&limit={limit}", enc(value)),
            );
            assert_eq!(got, want, "{param}={value} limit={limit}");
            let metrics = want.iter().filter(|(k, _)| *k == 0).count() as i64;
            assert_eq!((m, r), (metrics, want.len() as i64 - metrics));
        }
    }
}

#[test]
fn summary_bounds_are_clear_400s_and_outsiders_get_404() {
    let server = TestServer::start();
    let owner = server.user("owner@example.org");
    let viewer = server.user("viewer@example.org");
    let outsider = server.user("outsider@example.org");
    let ws = server.workspace(&owner, "team");
    server.add_member(&ws, &viewer, 3);
    let id = wide_run(&server, &owner, Some(&ws));
    let base = format!("/api/experiments/{id}/summary");
    for bad in [
        "limit=0".to_string(),
        "limit=10001".to_string(),
        "cursor=zz".to_string(),
        "cursor=393a78".to_string(), // "9:x": no such kind
        format!("prefix={}", "p".repeat(256)),
        format!("search={}", "s".repeat(256)),
    ] {
        let r = server.get(&format!("{base}?{bad}"), &owner.auth());
        let msg = r.expect_error(400);
        assert!(!msg.is_empty(), "{bad}");
    }
    let r = server.get(&format!("{base}?limit=5"), &viewer.auth());
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["metrics"].as_array().unwrap().len(), 5);
    let r = server.get(&format!("{base}?limit=5"), &outsider.auth());
    r.expect_error(404);
    assert!(!r.text.contains("grad_norm"));
}

#[test]
fn summary_1_on_the_run_table_is_bounded_per_run_and_lists_asked_columns() {
    let server = TestServer::start();
    let user = server.user("owner@example.org");
    let ws = server.workspace(&user, "wide");
    let wide = wide_run(&server, &user, Some(&ws));
    let narrow = server.experiment(&user, "narrow", Some(&ws));
    let r = server.post(
        &format!("/api/experiments/{narrow}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "loss", "value": 1.0, "step": 0}, {"name": "acc", "value": 0.9}]}),
    );
    assert_eq!(r.status, 201);

    let last = metric_names().into_iter().max().unwrap();
    let list = |query: &str| -> Vec<Value> {
        let r = server.get(
            &format!("/api/workspaces/{ws}/experiments?limit=10&summary=1&{query}"),
            &user.auth(),
        );
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        r.json()["data"].as_array().unwrap().clone()
    };
    let by_id = |rows: &[Value], id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();

    let rows = list("");
    let w = by_id(&rows, &wide);
    let metrics = w["summary"]["metrics"].as_object().unwrap();
    let mut first: Vec<String> = metric_names();
    first.sort();
    first.truncate(100);
    assert_eq!(metrics.keys().cloned().collect::<Vec<_>>(), first);
    assert_eq!(w["summary"]["results"].as_object().unwrap().len(), RESULTS);
    assert_eq!(w["summary"]["partial"], json!(true));
    let n = by_id(&rows, &narrow);
    assert_eq!(n["summary"]["partial"], json!(false));
    assert_eq!(n["summary"]["metrics"]["loss"]["last"], json!(1.0));
    assert_eq!(n["summary"]["results"]["acc"], json!(0.9));

    // Columns asked for, and the sort's, are listed beyond the first 100.
    let rows = list(&format!(
        "columns={},result.r29,hp.lr,metric.nothing&sort=-metric.{}",
        enc(&format!("metric.{last}")),
        enc("block10/Layer1000/grad_norm")
    ));
    let w = by_id(&rows, &wide);
    let metrics = w["summary"]["metrics"].as_object().unwrap();
    assert_eq!(
        metrics.len(),
        102,
        "{:?}",
        metrics.keys().collect::<Vec<_>>()
    );
    assert!(metrics.contains_key(&last));
    assert!(metrics.contains_key("block10/Layer1000/grad_norm"));
    assert!(!metrics.contains_key("nothing"));
    assert_eq!(metrics[&last]["count"], json!(2));

    let many: Vec<String> = (0..101).map(|i| format!("metric.m{i}")).collect();
    let r = server.get(
        &format!(
            "/api/workspaces/{ws}/experiments?summary=1&columns={}",
            many.join(",")
        ),
        &user.auth(),
    );
    r.expect_error(400);
}
