//! Grouped charts (`GET /api/series/groups`) and the run table's group rows
//! (`/api/workspaces/{id}/experiments/groups`, `/rows`), over real HTTP. Every bucket of every
//! group is checked against a brute-force scan of the points as they were sent: NaN and ±Inf,
//! runs of different lengths, a run that logged steps again (resumed), runs without the metric,
//! the group of runs without the key, zoom edges, and time as the x axis. Then the bounds and
//! who may see what. (tests/groups.rs is about the `group` field itself.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{Value, json};

/// A run as sent: its key values and its `loss` points in arrival order (step, value, time).
struct Run {
    id: String,
    points: Vec<(i64, f64, i64)>,
}

fn enc(v: f64) -> Value {
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

fn send(server: &TestServer, user: &User, exp: &str, name: &str, pts: &[(i64, f64, i64)]) {
    let body = json!({"metrics": [{
        "name": name,
        "steps": pts.iter().map(|p| p.0).collect::<Vec<_>>(),
        "values": pts.iter().map(|p| enc(p.1)).collect::<Vec<_>>(),
        "times": pts.iter().map(|p| p.2).collect::<Vec<_>>(),
    }]});
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &user.auth(),
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A noisy curve with NaN, +Inf and -Inf at some steps (per run, so buckets mix them).
fn value(seed: u64, step: i64) -> f64 {
    let s = step as u64;
    let h = (s.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 10_000;
    match (s + seed) % 97 {
        13 => f64::NAN,
        41 => f64::INFINITY,
        77 => f64::NEG_INFINITY,
        _ => 1.0 / (1.0 + step as f64) + h as f64 * 1e-4 + seed as f64 * 0.01,
    }
}

/// A run to make: name, group, lr, tags and the step ranges it logs, in order.
type Spec = (&'static str, Value, Value, Value, &'static [(i64, i64)]);

struct World {
    server: TestServer,
    owner: User,
    ws: String,
    runs: Vec<Run>,
}

/// Nine runs in a workspace: group "a" (4 runs, lr 0.1, tags x), group "b" (3 runs, lr 0.01,
/// tags y and x; one resumed, one whose points are all NaN), and two in no group (one without
/// lr, one without the metric at all).
fn world() -> World {
    let server = TestServer::start();
    let owner = server.user("owner@groups.org");
    let ws = server.workspace(&owner, "sweep");
    let base = now_ms() + 60_000;
    let mut runs = Vec::new();
    let specs: [Spec; 9] = [
        ("a1", json!("a"), json!(0.1), json!(["x"]), &[(0, 300)]),
        ("a2", json!("a"), json!(0.1), json!(["x"]), &[(0, 250)]),
        ("a3", json!("a"), json!(0.1), json!(["x"]), &[(5, 420)]),
        ("a4", json!("a"), json!(0.1), json!(["x"]), &[(0, 60)]),
        // Resumed from a checkpoint: steps 250..400 logged again.
        (
            "b1",
            json!("b"),
            json!(0.01),
            json!(["y", "x"]),
            &[(0, 400), (250, 500)],
        ),
        (
            "b2",
            json!("b"),
            json!(0.01),
            json!(["x", "y"]),
            &[(100, 110)],
        ),
        (
            "b3",
            json!("b"),
            json!(0.01),
            json!(["y", "x"]),
            &[(0, 333)],
        ),
        ("c1", Value::Null, json!(0.01), json!([]), &[(0, 150)]),
        ("c2", Value::Null, Value::Null, json!([]), &[]),
    ];
    for (i, (name, group, lr, tags, ranges)) in specs.into_iter().enumerate() {
        let mut hps = vec![json!({"key": "seed", "value": i})];
        if !lr.is_null() {
            hps.push(json!({"key": "lr", "value": lr}));
        }
        let r = server.post(
            "/api/experiments",
            &owner.auth(),
            json!({"name": name, "workspaceId": ws, "group": group, "tags": tags, "hyperparams": hps}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.data()["id"].as_str().unwrap().to_string();
        let mut points = Vec::new();
        for &(first, end) in ranges {
            let mut batch = Vec::new();
            for step in first..end {
                let v = if name == "b2" {
                    f64::NAN
                } else {
                    value(i as u64 * 7 + points.len() as u64 % 3, step)
                };
                let t = base + (points.len() + batch.len()) as i64 * 1_000 + i as i64 * 7;
                batch.push((step, v, t));
            }
            send(&server, &owner, &id, "loss", &batch);
            points.extend(batch);
        }
        if name == "c2" {
            send(&server, &owner, &id, "acc", &[(0, 0.5, base)]);
        }
        runs.push(Run { id, points });
    }
    World {
        server,
        owner,
        ws,
        runs,
    }
}

/// One bucket as the answer should have it.
#[derive(Debug)]
struct Expected {
    x: i64,
    mean: Option<f64>,
    std: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    runs: i64,
    nonfinite: i64,
}

/// The buckets of one group by brute force: the grid from the documented rule (at most
/// `points` buckets of equal width over lo..=hi), each run's line value in a bucket its last
/// finite point by (x, arrival).
fn brute(
    all: &[&Run],
    group: &[&Run],
    by_time: bool,
    from: Option<i64>,
    to: Option<i64>,
    points: i64,
) -> Vec<Expected> {
    let x_of = |p: &(i64, f64, i64)| if by_time { p.2 } else { p.0 };
    let xs: Vec<i64> = all.iter().flat_map(|r| r.points.iter().map(x_of)).collect();
    let (Some(&min), Some(&max)) = (xs.iter().min(), xs.iter().max()) else {
        return vec![];
    };
    let lo = from.unwrap_or(min);
    let hi = to.unwrap_or(max);
    if lo > hi {
        return vec![];
    }
    let span = hi - lo + 1;
    let width = ((span + points - 1) / points).max(1);
    let n = (span + width - 1) / width;
    let mut out = Vec::new();
    for b in 0..n {
        let (start, end) = (lo + b * width, (lo + (b + 1) * width - 1).min(hi));
        let mut lasts = Vec::new();
        let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut nonfinite = 0;
        for r in group {
            let inside: Vec<(usize, &(i64, f64, i64))> = r
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| x_of(p) >= start && x_of(p) <= end)
                .collect();
            nonfinite += inside.iter().filter(|(_, p)| !p.1.is_finite()).count() as i64;
            let last = inside
                .iter()
                .filter(|(_, p)| p.1.is_finite())
                .max_by_key(|(i, p)| (x_of(p), *i));
            if let Some((_, p)) = last {
                lasts.push(p.1);
                for (_, q) in inside.iter().filter(|(_, q)| q.1.is_finite()) {
                    mn = mn.min(q.1);
                    mx = mx.max(q.1);
                }
            }
        }
        if lasts.is_empty() && nonfinite == 0 {
            continue;
        }
        let k = lasts.len() as f64;
        let mean = lasts.iter().sum::<f64>() / k;
        let var = lasts.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k;
        let some = !lasts.is_empty();
        out.push(Expected {
            x: end,
            mean: some.then_some(mean),
            std: some.then_some(var.sqrt()),
            min: some.then_some(mn),
            max: some.then_some(mx),
            runs: lasts.len() as i64,
            nonfinite,
        });
    }
    out
}

fn close(got: &Value, want: Option<f64>, what: &str) {
    match want {
        None => assert!(got.is_null(), "{what}: {got} where none was expected"),
        Some(w) => {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {got}, expected {w}"));
            assert!(
                (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
                "{what}: {g} != {w}"
            );
        }
    }
}

fn check_series(got: &Value, want: &[Expected], what: &str) {
    let x = got["x"].as_array().unwrap();
    assert_eq!(
        x.len(),
        want.len(),
        "{what}: {} buckets, expected {}: {got}",
        x.len(),
        want.len()
    );
    for (i, w) in want.iter().enumerate() {
        let at = format!("{what} bucket {i} (x {})", w.x);
        assert_eq!(got["x"][i], json!(w.x), "{at}");
        assert_eq!(got["runs"][i], json!(w.runs), "{at} runs");
        assert_eq!(got["nonfinite"][i], json!(w.nonfinite), "{at} nonfinite");
        close(&got["mean"][i], w.mean, &format!("{at} mean"));
        close(&got["std"][i], w.std, &format!("{at} std"));
        close(&got["min"][i], w.min, &format!("{at} min"));
        close(&got["max"][i], w.max, &format!("{at} max"));
    }
}

impl World {
    fn run(&self, id: &str) -> &Run {
        self.runs.iter().find(|r| r.id == id).unwrap()
    }

    /// Asks `query` and checks every group's buckets against [`brute`], and the groups' keys
    /// and members against `expected` (key → run indices).
    fn check(&self, query: &str, expected: &[(Value, &[usize])]) -> Value {
        let r = self
            .server
            .get(&format!("/api/series/groups?{query}"), &self.owner.auth());
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let data = r.data();
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let by_time = params.get("x") == Some(&"time");
        let from = params.get("from").map(|v| v.parse().unwrap());
        let to = params.get("to").map(|v| v.parse().unwrap());
        let points = params.get("points").map_or(1000, |v| v.parse().unwrap());
        let groups = data["groups"].as_array().unwrap();
        let keys: Vec<Value> = groups.iter().map(|g| g["key"].clone()).collect();
        let want_keys: Vec<Value> = expected.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, want_keys, "{query}");
        let all: Vec<&Run> = groups
            .iter()
            .flat_map(|g| g["experiment_ids"].as_array().unwrap())
            .map(|id| self.run(id.as_str().unwrap()))
            .collect();
        for (g, (key, members)) in groups.iter().zip(expected) {
            let ids: BTreeSet<&str> = g["experiment_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let want: BTreeSet<&str> = members.iter().map(|&i| self.runs[i].id.as_str()).collect();
            assert_eq!(ids, want, "{query}: members of {key}");
            assert_eq!(g["runs"], json!(members.len()), "{query}");
            let group: Vec<&Run> = ids.iter().map(|id| self.run(id)).collect();
            let want = brute(&all, &group, by_time, from, to, points);
            assert_eq!(g["series"][0]["name"], "loss");
            check_series(&g["series"][0], &want, &format!("{query} group {key}"));
        }
        data
    }
}

#[test]
fn group_aggregates_match_a_brute_force_scan_of_the_points() {
    let w = world();
    let ws = &w.ws;
    let ids = w
        .runs
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let by_group: &[(Value, &[usize])] = &[
        (json!("a"), &[0, 1, 2, 3]),
        (json!("b"), &[4, 5, 6]),
        (Value::Null, &[7, 8]),
    ];
    // Every run named, then the same runs through the workspace's filter.
    let data = w.check(
        &format!("by=group&names=loss&points=37&experiments={ids}"),
        by_group,
    );
    assert_eq!(data["by"], "group");
    assert_eq!(data["x"], "step");
    assert_eq!(data["groups"][2]["label"], "(no group)");
    w.check(
        &format!("by=group&names=loss&points=37&workspace={ws}"),
        by_group,
    );
    // More buckets than steps: one bucket per step.
    w.check(
        &format!("by=group&names=loss&points=5000&workspace={ws}"),
        by_group,
    );
    // Zoomed, edges inside buckets and past the data.
    w.check(
        &format!("by=group&names=loss&points=20&from=57&to=311&workspace={ws}"),
        by_group,
    );
    w.check(
        &format!("by=group&names=loss&points=7&from=405&to=10000&workspace={ws}"),
        by_group,
    );
    // A hyperparameter: numbers in order, the run without it last.
    let data = w.check(
        &format!("by=hp.lr&names=loss&points=50&workspace={ws}"),
        &[
            (json!(0.01), &[4, 5, 6, 7]),
            (json!(0.1), &[0, 1, 2, 3]),
            (Value::Null, &[8]),
        ],
    );
    assert_eq!(data["groups"][2]["label"], "(no lr)");
    // Tags as a sorted set: ["y","x"] and ["x","y"] are one group.
    let data = w.check(
        &format!("by=tags&names=loss&points=50&workspace={ws}"),
        &[
            (json!(["x"]), &[0, 1, 2, 3]),
            (json!(["x", "y"]), &[4, 5, 6]),
            (Value::Null, &[7, 8]),
        ],
    );
    assert_eq!(data["groups"][1]["label"], "x, y");
    // The filter narrows the runs; the grid follows the runs left.
    w.check(
        &format!("by=group&names=loss&points=40&workspace={ws}&filter=group:b"),
        &[(json!("b"), &[4, 5, 6])],
    );
    // Time as the x axis: the points' own times.
    w.check(
        &format!("by=group&names=loss&points=60&x=time&workspace={ws}"),
        by_group,
    );
    let t0 = w.runs[0].points[40].2;
    let t1 = w.runs[2].points[200].2;
    w.check(
        &format!("by=group&names=loss&points=13&x=time&from={t0}&to={t1}&workspace={ws}"),
        by_group,
    );
}

#[test]
fn a_metric_no_run_has_and_several_names_answer_in_order() {
    let w = world();
    let r = w.server.get(
        &format!(
            "/api/series/groups?by=group&names=nothing,acc,loss&points=10&workspace={}",
            w.ws
        ),
        &w.owner.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let groups = r.data()["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 3);
    for g in &groups {
        let names: Vec<&str> = g["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nothing", "acc", "loss"]);
        assert_eq!(g["series"][0]["x"], json!([]));
    }
    // Only c2 (no group) has acc: one point at step 0.
    assert_eq!(groups[0]["series"][1]["x"], json!([]));
    assert_eq!(groups[2]["series"][1]["mean"], json!([0.5]));
    assert_eq!(groups[2]["series"][1]["runs"], json!([1]));
}

#[test]
fn bad_requests_and_bounds_are_400s_that_say_what_to_do() {
    let w = world();
    let ws = &w.ws;
    let get = |q: &str| {
        w.server
            .get(&format!("/api/series/groups?{q}"), &w.owner.auth())
    };
    for (q, says) in [
        (format!("by=color&names=loss&workspace={ws}"), "by must be"),
        (format!("by=group&workspace={ws}"), "names must list"),
        ("by=group&names=loss".to_string(), "either experiments"),
        (
            format!(
                "by=group&names=loss&workspace={ws}&experiments={}",
                w.runs[0].id
            ),
            "either experiments",
        ),
        (
            format!("by=group&names=loss&points=0&workspace={ws}"),
            "points must be",
        ),
        (
            format!("by=group&names=loss&points=10001&workspace={ws}"),
            "points must be",
        ),
        (
            format!("by=group&names=loss&x=epoch&workspace={ws}"),
            "x must be",
        ),
        (
            format!("by=group&names=loss&workspace={ws}&filter=lr+%3C"),
            "",
        ),
        (
            format!(
                "by=group&names={}&workspace={ws}",
                (0..21)
                    .map(|i| format!("m{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "names must list",
        ),
        // 3 groups × 20 names × 10000 points is past the answer's bound.
        (
            format!(
                "by=group&points=10000&names={}&workspace={ws}",
                (0..20)
                    .map(|i| format!("m{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "buckets one answer may have",
        ),
    ] {
        let msg = get(&q).expect_error(400);
        assert!(msg.contains(says), "{q}: {msg}");
    }
    // One group per seed is 9 groups: fine. Past 50 groups is refused.
    let r = get(&format!("by=hp.seed&names=loss&points=10&workspace={ws}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["groups"].as_array().unwrap().len(), 9);
    for i in 0..42 {
        let r = w.server.post(
            "/api/experiments",
            &w.owner.auth(),
            json!({"name": format!("extra-{i}"), "workspaceId": ws, "hyperparams": [{"key": "seed", "value": 100 + i}]}),
        );
        assert_eq!(r.status, 201);
    }
    let msg = get(&format!("by=hp.seed&names=loss&points=10&workspace={ws}")).expect_error(400);
    assert!(msg.contains("51 groups") && msg.contains("50"), "{msg}");
    // 200 ids at most, as /api/series.
    let many = (0..201)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect::<Vec<_>>()
        .join(",");
    let msg = get(&format!("by=group&names=loss&experiments={many}")).expect_error(400);
    assert!(msg.contains("1 to 200"), "{msg}");
}

#[test]
fn a_workspace_past_ten_thousand_matching_runs_is_refused_and_a_filter_brings_it_back() {
    let server = TestServer::start();
    let owner = server.user("owner@big.org");
    let ws = server.workspace(&owner, "big");
    // 10,001 runs, written straight into the database (the API would take minutes).
    let conn = server.sql();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO experiments (uuid, workspace_id, name, hyperparams, tags, metadata, created_at, updated_at, run_group)
         SELECT '00000000-0000-4000-8000-' || substr('000000000000' || i, length('000000000000' || i) - 11), ?1, 'run-' || i, '[]', '[]', '{}', i, i,
                CASE WHEN i < 10 THEN 'few' END
         FROM n",
        [&ws],
    )
    .unwrap();
    drop(conn);
    for path in [
        format!("/api/series/groups?by=group&names=loss&points=10&workspace={ws}"),
        format!("/api/workspaces/{ws}/experiments/groups?by=group"),
    ] {
        let msg = server.get(&path, &owner.auth()).expect_error(400);
        assert!(
            msg.contains("10001 runs match") && msg.contains("10000"),
            "{path}: {msg}"
        );
    }
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments/groups?by=group&q=group:few"),
        &owner.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["total"], 10);
    assert_eq!(r.data()["groups"][0]["runs"], 10);
}

#[test]
fn a_viewer_sees_the_groups_and_an_outsider_sees_nothing() {
    let w = world();
    let viewer = w.server.user("viewer@groups.org");
    let outsider = w.server.user("outsider@groups.org");
    w.server.add_member(&w.ws, &viewer, 3);
    let ws = &w.ws;
    let ids = w
        .runs
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let paths = [
        format!("/api/series/groups?by=group&names=loss&points=10&workspace={ws}"),
        format!("/api/series/groups?by=group&names=loss&points=10&experiments={ids}"),
        format!("/api/workspaces/{ws}/experiments/groups?by=group&cols=metric.loss"),
        format!("/api/workspaces/{ws}/experiments/rows?ids={ids}"),
    ];
    for path in &paths {
        let r = w.server.get(path, &viewer.bearer());
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(r.text.contains(&w.runs[0].id), "{path}: {}", r.text);
    }
    // An outsider: the workspace does not exist for them; named runs are left out.
    for path in [&paths[0], &paths[2], &paths[3]] {
        let r = w.server.get(path, &outsider.auth());
        r.expect_error(404);
        assert!(!r.text.contains(&w.runs[0].id));
    }
    let r = w.server.get(&paths[1], &outsider.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["groups"], json!([]));
    // A filter's errors say nothing to an outsider either.
    let r = w.server.get(
        &format!("/api/series/groups?by=group&names=loss&workspace={ws}&filter=lr+%3C"),
        &outsider.auth(),
    );
    r.expect_error(404);
    for path in &paths {
        w.server.get(path, &Auth::None).expect_error(401);
    }
}

#[test]
fn the_run_table_groups_runs_with_counts_aggregates_and_rows() {
    let w = world();
    let ws = &w.ws;
    let r = w.server.get(
        &format!(
            "/api/workspaces/{ws}/experiments/groups?by=group&sort=name&cols=hp.lr,hp.seed,metric.loss,result.none,metric.acc"
        ),
        &w.owner.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.data();
    assert_eq!(data["by"], "group");
    assert_eq!(data["total"], 9);
    let groups = data["groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["label"].clone())
            .collect::<Vec<_>>(),
        [json!("a"), json!("b"), json!("(no group)")]
    );
    assert_eq!(
        groups.iter().map(|g| g["runs"].clone()).collect::<Vec<_>>(),
        [json!(4), json!(3), json!(2)]
    );
    // In the table's sort order (by name).
    let names = ["a1", "a2", "a3", "a4"];
    assert_eq!(
        groups[0]["experiment_ids"],
        json!((0..4).map(|i| w.runs[i].id.clone()).collect::<Vec<_>>()),
        "{names:?}"
    );
    // Each aggregate by brute force from what each run's row says.
    let rows = w.server.get(
        &format!("/api/workspaces/{ws}/experiments?summary=1&limit=100"),
        &w.owner.auth(),
    );
    let rows = rows.data();
    let cell = |id: &str, col: &str| -> Option<f64> {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        let (kind, name) = col.split_once('.').unwrap();
        let v = match kind {
            "hp" => row["hyperparams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["key"] == name)
                .map(|p| p["value"].clone()),
            "metric" => row["summary"]["metrics"]
                .get(name)
                .map(|m| m["last"].clone()),
            _ => row["summary"]["results"].get(name).cloned(),
        };
        v.and_then(|v| v.as_f64()).filter(|v| v.is_finite())
    };
    for g in groups {
        for col in [
            "hp.lr",
            "hp.seed",
            "metric.loss",
            "result.none",
            "metric.acc",
        ] {
            let vals: Vec<f64> = g["experiment_ids"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|id| cell(id.as_str().unwrap(), col))
                .collect();
            let got = &g["columns"][col];
            assert_eq!(got["count"], json!(vals.len()), "{col} {got}");
            if vals.is_empty() {
                assert!(got["mean"].is_null() && got["min"].is_null() && got["max"].is_null());
                continue;
            }
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            close(&got["mean"], Some(mean), col);
            close(
                &got["min"],
                Some(vals.iter().cloned().fold(f64::INFINITY, f64::min)),
                col,
            );
            close(
                &got["max"],
                Some(vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
                col,
            );
        }
    }
    // The rows of a group opened: in the order asked, with the summaries the table shows.
    let b: Vec<&str> = groups[1]["experiment_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let r = w.server.get(
        &format!(
            "/api/workspaces/{ws}/experiments/rows?ids={},{}",
            b[2], b[0]
        ),
        &w.owner.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let got = r.data();
    assert_eq!(got[0]["id"], b[2]);
    assert_eq!(got[1]["id"], b[0]);
    assert!(
        got[0]["summary"]["metrics"]["loss"]["count"]
            .as_i64()
            .unwrap()
            > 0
    );
    // A run of another workspace is left out of this workspace's rows.
    let other = w.server.experiment(&w.owner, "elsewhere", None);
    let r = w.server.get(
        &format!("/api/workspaces/{ws}/experiments/rows?ids={other},{}", b[0]),
        &w.owner.auth(),
    );
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    // Bounds: bad columns and keys.
    for (q, says) in [
        ("by=group&cols=loss", "a column is"),
        ("by=nope", "by must be"),
        ("by=group&q=lr+%3C", ""),
    ] {
        let msg = w
            .server
            .get(
                &format!("/api/workspaces/{ws}/experiments/groups?{q}"),
                &w.owner.auth(),
            )
            .expect_error(400);
        assert!(msg.contains(says), "{q}: {msg}");
    }
    let many = (0..501)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect::<Vec<_>>()
        .join(",");
    w.server
        .get(
            &format!("/api/workspaces/{ws}/experiments/rows?ids={many}"),
            &w.owner.auth(),
        )
        .expect_error(400);
}
