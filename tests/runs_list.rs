//! Run tables: filtering with the query language, sorting on any hyperparameter or result,
//! and cursor pages that stay stable while new runs arrive.

mod common;

use std::collections::HashSet;

use common::{TestServer, User};
use serde_json::{Value, json};

struct Run {
    id: String,
    lr: f64,
    baseline: bool,
    acc: Option<f64>,
}

fn lab(server: &TestServer, user: &User, n: usize) -> (String, Vec<Run>) {
    let ws = server.workspace(user, "sweep");
    let mut runs = Vec::new();
    for i in 0..n {
        let lr = [0.1, 0.03, 0.01, 0.003, 0.001][i % 5];
        let baseline = i % 3 == 0;
        let tags = if baseline {
            json!(["Baseline", "sweep"])
        } else {
            json!(["sweep"])
        };
        let r = server.post(
            "/api/experiments",
            &user.auth(),
            json!({"name": format!("run-{i:02}"), "workspaceId": ws, "tags": tags,
                   "hyperparams": [{"key": "lr", "value": lr}, {"key": "opt", "value": if i % 2 == 0 {"adam"} else {"sgd"}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.data()["id"].as_str().unwrap().to_string();
        // Every fourth run has no result yet.
        let acc = (i % 4 != 3).then_some(0.80 + (i as f64) * 0.005);
        if let Some(acc) = acc {
            let r = server.post(
                &format!("/api/experiments/{id}/logs/batch"),
                &user.auth(),
                json!({"logs": [{"name": "acc", "value": acc}, {"name": "loss", "value": 1.0 - acc, "step": 10}]}),
            );
            assert_eq!(r.status, 201);
        }
        runs.push(Run {
            id,
            lr,
            baseline,
            acc,
        });
    }
    (ws, runs)
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn list(server: &TestServer, user: &User, ws: &str, query: &str) -> Value {
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?{query}"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    r.json()
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_query_language_filters_runs() {
    let server = TestServer::start();
    let user = server.user("q@lab.org");
    let (ws, runs) = lab(&server, &user, 30);

    let got: HashSet<String> = ids(&list(
        &server,
        &user,
        &ws,
        &format!("q={}", enc("lr < 0.01 and tag:baseline and acc >= 0.9")),
    ))
    .into_iter()
    .collect();
    let want: HashSet<String> = runs
        .iter()
        .filter(|r| r.lr < 0.01 && r.baseline && r.acc.is_some_and(|a| a >= 0.9))
        .map(|r| r.id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    for (q, expect) in [
        (
            "hp.opt = adam",
            runs.iter().enumerate().filter(|(i, _)| i % 2 == 0).count(),
        ),
        (
            "not tag:baseline",
            runs.iter().filter(|r| !r.baseline).count(),
        ),
        ("run-0 or run-1", 20),
        ("name ~ \"RUN-2\"", 10),
        (
            "(lr = 0.1 or lr = 0.001) and result.acc > 0",
            runs.iter()
                .filter(|r| (r.lr == 0.1 || r.lr == 0.001) && r.acc.is_some())
                .count(),
        ),
        (
            "metric.loss < 0.1",
            runs.iter()
                .filter(|r| r.acc.is_some_and(|a| 1.0 - a < 0.1))
                .count(),
        ),
    ] {
        let v = list(&server, &user, &ws, &format!("q={}", enc(q)));
        assert_eq!(v["data"].as_array().unwrap().len(), expect, "{q}");
        assert_eq!(v["total"], expect, "{q}");
    }

    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?q={}", enc("lr < and acc")),
        &user.auth(),
    );
    let msg = r.expect_error(400);
    assert!(msg.contains("column 6"), "{msg}");
    server
        .get(
            &format!("/api/workspaces/{ws}/experiments?sort=lr"),
            &user.auth(),
        )
        .expect_error(400);
    server
        .get(
            &format!("/api/workspaces/{ws}/experiments?cursor=zz"),
            &user.auth(),
        )
        .expect_error(400);
}

#[test]
fn runs_sort_on_hyperparameters_and_results_with_missing_values_last() {
    let server = TestServer::start();
    let user = server.user("s@lab.org");
    let (ws, runs) = lab(&server, &user, 12);

    let v = list(&server, &user, &ws, "sort=-result.acc&summary=1");
    let accs: Vec<Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"]["results"]["acc"].clone())
        .collect();
    let with: Vec<f64> = accs.iter().filter_map(|a| a.as_f64()).collect();
    assert!(with.windows(2).all(|w| w[0] >= w[1]), "{accs:?}");
    assert_eq!(with.len(), runs.iter().filter(|r| r.acc.is_some()).count());
    assert!(
        accs[with.len()..].iter().all(Value::is_null),
        "runs without the result come last: {accs:?}"
    );
    let first = &v["data"][0];
    assert_eq!(first["live"], true, "a point just arrived");
    assert!(first["summary"]["metrics"]["loss"]["last"].is_number());

    let v = list(&server, &user, &ws, "sort=hp.lr");
    let lrs: Vec<f64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hyperparams"][0]["value"].as_f64().unwrap())
        .collect();
    assert!(lrs.windows(2).all(|w| w[0] <= w[1]), "{lrs:?}");
    let names: Vec<String> = list(&server, &user, &ws, "sort=name")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn pages_stay_stable_while_new_runs_arrive() {
    let server = TestServer::start();
    let user = server.user("p@lab.org");
    let (ws, runs) = lab(&server, &user, 23);

    let mut late = 0;
    for sort in ["-created", "hp.lr", "-result.acc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = format!("limit=5&sort={sort}");
            if let Some(c) = &cursor {
                query += &format!("&cursor={c}");
            }
            let v = list(&server, &user, &ws, &query);
            assert_eq!(v["total"].as_i64().unwrap() as usize, 23 + late);
            seen.extend(ids(&v));
            pages += 1;
            // Someone starts a run between two page loads.
            if sort == "-created" {
                server.experiment(&user, &format!("late-{pages}"), Some(&ws));
                late += 1;
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        if sort != "-created" {
            assert_eq!(
                seen.len(),
                23 + late,
                "{sort}: every run once, late ones (no lr, no acc) last"
            );
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: a run appeared twice");
        let original: HashSet<String> = runs.iter().map(|r| r.id.clone()).collect();
        let seen_original: HashSet<String> = seen
            .iter()
            .filter(|id| original.contains(*id))
            .cloned()
            .collect();
        assert_eq!(seen_original, original, "{sort}: a run was skipped");
        if sort == "-created" {
            assert_eq!(
                seen.len(),
                23,
                "runs created after the first page stay out of this walk"
            );
            assert_eq!(pages, 5);
        }
    }
}

#[test]
fn the_list_across_workspaces_answers_the_newest_ten_thousand_and_counts_all() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let ws = server.workspace(&alice, "sweeps");
    // 10,050 runs, written straight into the file: what a long sweep leaves behind.
    let conn = server.sql();
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..10_050i64 {
        conn.execute(
            "INSERT INTO experiments (uuid, workspace_id, created_by, name, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            tora::sql::params![
                format!("00000000-0000-4000-8000-{i:012}"),
                ws,
                alice.id,
                format!("run-{i}"),
                1_000 + i
            ],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);
    let r = server.get("/api/experiments", &alice.auth());
    assert_eq!(r.status, 200);
    let body = r.json();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 10_000);
    assert_eq!(body["total"], 10_050);
    assert_eq!(data[0]["name"], "run-10049", "newest first");
    // The workspace's own list pages through all of them.
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?limit=500"),
        &alice.auth(),
    );
    assert_eq!(r.json()["total"], 10_050);
}
