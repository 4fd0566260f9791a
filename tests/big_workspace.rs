//! Big workspaces (issue 15, item 7) at a size a test can afford: every sort key, both
//! directions, with and without a filter, paged at several sizes, must list every matching run
//! exactly once and in the order a brute-force sort of the runs (SQLite's rules: NOCASE names,
//! numbers before text, missing values last, ties by creation) gives. The speed is in
//! bench/workspace.py.

mod common;

use std::cmp::Ordering;

use common::{TestServer, User};
use serde_json::{Value, json};

/// What a run was made with: the brute force sorts these.
#[derive(Debug, Clone)]
struct Run {
    id: String,
    name: String,
    group: Option<String>,
    /// None: no such key, or a null value (both sort as missing).
    lr: Option<Value>,
    /// None: no result, or a NaN one.
    acc: Option<f64>,
    loss: Option<f64>,
}

const N: usize = 41;

/// Which runs a filter keeps, by brute force.
type Keep = fn(&Run) -> bool;

fn make(server: &TestServer, user: &User, ws: &str) -> Vec<Run> {
    let names = ["alpha", "Alpha", "beta", "BETA", "gamma", "Zeta", "eta"];
    let groups = [None, Some("g-A"), Some("g-b"), Some("G-a")];
    let mut runs = Vec::new();
    for i in 0..N {
        let name = format!(
            "{}{}",
            names[i % names.len()],
            if i % 3 == 0 { "" } else { "-x" }
        );
        let group = groups[i % groups.len()];
        // Ties, integers beside reals, text (sorts after numbers), null and absent.
        let lr: Option<Value> = match i % 9 {
            0 => None,
            1 => Some(json!(null)),
            2 => Some(json!("auto")),
            3 => Some(json!(1)),
            4 => Some(json!(0.5)),
            5 => Some(json!(1.0)),
            _ => Some(json!((i % 4) as f64 * 0.25)),
        };
        let mut hp = vec![json!({"key": "seed", "value": i})];
        if let Some(v) = &lr {
            hp.push(json!({"key": "lr", "value": v}));
        }
        let r = server.post(
            "/api/experiments",
            &user.auth(),
            json!({"name": name, "workspaceId": ws, "hyperparams": hp, "group": group}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.data()["id"].as_str().unwrap().to_string();
        let acc = match i % 6 {
            0 => None,
            1 => Some(f64::NAN),
            _ => Some(((i * 7) % 10) as f64 / 10.0),
        };
        let loss = (i % 5 != 0).then_some(((i * 3) % 8) as f64 - 2.0);
        let mut logs = vec![];
        if let Some(a) = acc {
            logs.push(
                json!({"name": "acc", "value": if a.is_nan() { json!("NaN") } else { json!(a) }}),
            );
        }
        if let Some(l) = loss {
            logs.push(json!({"name": "loss", "value": l, "step": 1}));
        }
        if !logs.is_empty() {
            let r = server.post(
                &format!("/api/experiments/{id}/logs/batch"),
                &user.auth(),
                json!({ "logs": logs }),
            );
            assert_eq!(r.status, 201, "{}", r.text);
        }
        runs.push(Run {
            id,
            name,
            group: group.map(str::to_string),
            lr: lr.filter(|v| !v.is_null()),
            acc: acc.filter(|a| !a.is_nan()),
            loss,
        });
    }
    runs
}

/// SQLite's order of two stored values: numbers (compared as numbers) before text.
fn sqlite_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (x, y) => x.as_str().unwrap().cmp(y.as_str().unwrap()),
    }
}

fn nocase(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The brute-force order of `runs` (creation order = id order) by `sort`.
fn expected(runs: &[Run], sort: &str) -> Vec<String> {
    let descending = sort.starts_with('-');
    let key = sort.trim_start_matches('-');
    let value = |r: &Run| -> Option<Value> {
        match key {
            "created" => Some(json!(0)),
            "name" => Some(json!(nocase(&r.name))),
            "group" => r.group.as_deref().map(|g| json!(nocase(g))),
            "hp.lr" => r.lr.clone(),
            "result.acc" => r.acc.map(|a| json!(a)),
            "metric.loss" => r.loss.map(|l| json!(l)),
            other => panic!("no such key {other}"),
        }
    };
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| {
        let (va, vb) = (value(&runs[a]), value(&runs[b]));
        match (va, vb) {
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (None, None) => {
                if descending {
                    b.cmp(&a)
                } else {
                    a.cmp(&b)
                }
            }
            (Some(x), Some(y)) => {
                let o = sqlite_cmp(&x, &y).then(a.cmp(&b));
                if descending { o.reverse() } else { o }
            }
        }
    });
    order.into_iter().map(|i| runs[i].id.clone()).collect()
}

fn all_pages(
    server: &TestServer,
    user: &User,
    ws: &str,
    sort: &str,
    q: &str,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    for _ in 0..=N {
        let mut path = format!(
            "/api/workspaces/{ws}/experiments?limit={limit}&sort={}&q={}",
            urlencode(sort),
            urlencode(q)
        );
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let r = server.get(&path, &user.auth());
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let body = r.json();
        let page: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= limit);
        total.get_or_insert(body["total"].as_i64().unwrap());
        out.extend(page);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert_eq!(Some(out.len() as i64), total, "{sort} {q}: total");
                return out;
            }
        }
    }
    panic!("{sort} {q}: more pages than runs");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_sort_pages_every_run_once_in_the_brute_force_order() {
    let server = TestServer::start();
    let user = server.user("owner@example.org");
    let ws = server.workspace(&user, "big");
    let runs = make(&server, &user, &ws);
    // Runs elsewhere share the keys: sorts that walk a global index must skip them.
    let other = server.workspace(&user, "other");
    make(&server, &user, &other);

    let filters: [(&str, Keep); 4] = [
        ("", |_| true),
        // Text is greater than every number, on every engine.
        ("hp.lr > 0.4", |r| {
            r.lr.as_ref()
                .is_some_and(|v| sqlite_cmp(v, &json!(0.4)) == Ordering::Greater)
        }),
        ("group:g-a", |r| {
            r.group
                .as_deref()
                .is_some_and(|g| g.eq_ignore_ascii_case("g-a"))
        }),
        ("acc >= 0.5", |r| r.acc.is_some_and(|a| a >= 0.5)),
    ];
    for key in [
        "created",
        "name",
        "group",
        "hp.lr",
        "result.acc",
        "metric.loss",
    ] {
        for sort in [key.to_string(), format!("-{key}")] {
            for (q, keep) in &filters {
                let matching: Vec<Run> = runs.iter().filter(|r| keep(r)).cloned().collect();
                let want = expected(&matching, &sort);
                for limit in [1, 4, 500] {
                    let got = all_pages(&server, &user, &ws, &sort, q, limit);
                    assert_eq!(got, want, "sort={sort} q={q:?} limit={limit}");
                }
            }
        }
    }
}

#[test]
fn a_page_of_a_sort_is_refused_to_outsiders_and_bad_cursors_are_400() {
    let server = TestServer::start();
    let owner = server.user("owner@example.org");
    let outsider = server.user("outsider@example.org");
    let viewer = server.user("viewer@example.org");
    let ws = server.workspace(&owner, "big");
    server.add_member(&ws, &viewer, 3);
    make(&server, &owner, &ws);
    let path = format!("/api/workspaces/{ws}/experiments?limit=5&sort=-hp.lr");
    let r = server.get(&path, &viewer.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 5);
    let r = server.get(&path, &outsider.auth());
    r.expect_error(404);
    assert!(!r.text.contains("alpha"), "{}", r.text);
    let r = server.get(&format!("{path}&cursor=zz"), &owner.auth());
    r.expect_error(400);
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?limit=501"),
        &owner.auth(),
    );
    r.expect_error(400);
}
