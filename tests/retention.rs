//! A lab keeps a year of runs: its OWNER sets a retention policy, sees first what it would
//! delete, and the server deletes exactly the runs past it (never one tagged keep, nor one still
//! logging), at once and from then on; members may read the policy, only OWNERs change it.
//! Or the OWNER keeps old runs but only their aggregates: charts still draw them as before, the
//! summaries are unchanged, the raw points (and the disk they took) are gone, and whatever
//! needs them says so.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{BIN, TestServer, User};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A run in `ws` created `days` ago (as an importer would), with `tags`.
fn run(server: &TestServer, user: &User, ws: &str, name: &str, days: i64, tags: &[&str]) -> String {
    let r = server.post(
        "/api/experiments",
        &user.auth(),
        json!({"name": name, "workspaceId": ws, "tags": tags, "created_at": now() - days * DAY}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

fn names(server: &TestServer, user: &User, ws: &str) -> Vec<String> {
    let r = server.get(&format!("/api/workspaces/{ws}/experiments"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    let mut out: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn an_owner_previews_then_sets_a_policy_and_exactly_the_old_runs_go() {
    let server = TestServer::start();
    let ada = server.user("ada@lab.org");
    let bob = server.user("bob@lab.org");
    let ws = server.workspace(&ada, "vision lab");
    server.add_member(&ws, &bob, 3);
    let old = run(&server, &ada, &ws, "old", 400, &[]);
    run(&server, &ada, &ws, "old-kept", 400, &["Keep"]);
    let resumed = run(&server, &ada, &ws, "old-but-logging", 400, &[]);
    run(&server, &ada, &ws, "recent", 10, &[]);
    run(&server, &ada, &ws, "fresh", 0, &[]);
    // A run created long ago that logged a point just now is active, not old.
    let r = server.post(
        &format!("/api/experiments/{resumed}/logs/batch"),
        &ada.auth(),
        json!({"logs": [{"name": "loss", "value": 0.1, "step": 1}]}),
    );
    assert_eq!(r.status, 201);
    let r = server.post(
        &format!("/api/experiments/{old}/logs/batch"),
        &ada.auth(),
        json!({"logs": [{"name": "loss", "value": 0.1, "step": 1}]}),
    );
    assert_eq!(r.status, 201);
    // ... which is only true while it is new: make old's point arrive long ago too.
    {
        let conn = server.sql();
        conn.execute(
            "UPDATE series SET updated_at = ?1 WHERE experiment_id = (SELECT id FROM experiments WHERE uuid = ?2)",
            tora::sql::params![now() - 400 * DAY, old],
        )
        .unwrap();
    }

    // Nothing yet; the dry run says what 30 days would delete, and deletes nothing.
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &bob.auth());
    assert_eq!(r.data(), json!({"policy": null, "due": null}));
    let r = server.get(
        &format!("/api/workspaces/{ws}/retention/preview?delete_after_days=30"),
        &bob.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["delete"]["runs"], 1, "{}", r.text);
    assert_eq!(r.data()["delete"]["points"], 1);
    assert!(r.data()["delete"]["bytes"].as_i64().unwrap() > 0);
    assert_eq!(r.data()["aggregate"], Value::Null);
    let r = server.get(
        &format!("/api/workspaces/{ws}/retention/preview?delete_after_days=5"),
        &ada.auth(),
    );
    assert_eq!(r.data()["delete"]["runs"], 2, "old and recent: {}", r.text);
    assert_eq!(names(&server, &ada, &ws).len(), 5);

    // A VIEWER may not set one; nothing changes.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &bob.auth(),
        Some(&json!({"delete_after_days": 1})),
    );
    r.expect_error(403);
    // Bad policies are refused with what is allowed.
    for body in [
        json!({"delete_after_days": 0}),
        json!({"delete_after_days": 36501}),
        json!({"delete_after_days": 30, "keep_tag": ""}),
        json!({"delete_after_days": 30, "keep_tag": "x".repeat(65)}),
        json!({"keep_tag": "keep"}),
        json!({"aggregate_after_days": 0}),
        json!({"delete_after_days": 30, "aggregate_after_days": 30}),
    ] {
        let r = server.call(
            "PUT",
            &format!("/api/workspaces/{ws}/retention"),
            &ada.auth(),
            Some(&body),
        );
        let message = r.expect_error(400);
        assert!(
            message.contains("days") || message.contains("keep_tag"),
            "{message}"
        );
    }

    // The OWNER sets 30 days: applied at once.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        Some(&json!({"delete_after_days": 30})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["policy"],
        json!({"delete_after_days": 30, "aggregate_after_days": null, "keep_tag": "keep"})
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while names(&server, &ada, &ws).len() == 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy was not applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        names(&server, &ada, &ws),
        ["fresh", "old-but-logging", "old-kept", "recent"]
    );
    let r = server.get(&format!("/api/experiments/{old}"), &ada.auth());
    assert_eq!(r.status, 404);
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &bob.auth());
    assert_eq!(r.data()["due"]["delete"]["runs"], 0, "{}", r.text);

    // Removing the policy is the OWNER's too.
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/retention"),
        &bob.auth(),
        None,
    );
    r.expect_error(403);
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        None,
    );
    assert_eq!(r.data()["policy"], Value::Null);
    // An outsider sees nothing of it.
    let eve = server.user("eve@else.org");
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &eve.auth());
    r.expect_error(404);
}

/// Waits until `done` holds, polling; panics with `what` after 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `steps` points of full-precision noise for each of `metrics` metrics, one a second from the
/// run's start, and a result `best`.
fn log_noise(
    server: &TestServer,
    user: &User,
    run: &str,
    started: i64,
    metrics: usize,
    steps: usize,
) {
    for start in (0..steps).step_by(10_000) {
        let end = (start + 10_000).min(steps);
        let columns: Vec<_> = (0..metrics)
            .map(|m| {
                let steps: Vec<usize> = (start..end).collect();
                let bytes: Vec<u8> = steps
                    .iter()
                    .flat_map(|s| (((s * 31 + m) as f64) * 12.9898).sin().to_le_bytes())
                    .collect();
                let times: Vec<i64> = steps.iter().map(|&s| started + s as i64 * 1000).collect();
                json!({"name": format!("m{m}"), "steps": steps, "times": times,
                       "values_f64": base64::engine::general_purpose::STANDARD.encode(bytes)})
            })
            .collect();
        let r = server.post(
            &format!("/api/experiments/{run}/points"),
            &user.auth(),
            json!({"metrics": columns}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = server.post(
        &format!("/api/experiments/{run}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "best", "value": 0.93, "type": "result"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

fn open(db: &Path) -> tora::sql::Connection {
    common::sql_at(db)
}

/// Makes the points of `run` look as if they arrived `days` ago.
fn age(db: &Path, run: &str, days: i64) {
    open(db)
        .execute(
            "UPDATE series SET updated_at = ?1 WHERE experiment_id = (SELECT id FROM experiments WHERE uuid = ?2)",
            tora::sql::params![now() - days * DAY, run],
        )
        .unwrap();
}

/// The bytes of packed points the file holds for `run`'s metrics.
fn metric_chunk_bytes(db: &Path, run: &str) -> i64 {
    open(db)
        .query_row(
            "SELECT coalesce(sum(length(c.data)), 0) FROM series s JOIN experiments e ON e.id = s.experiment_id
             JOIN chunks c ON c.id BETWEEN s.id * 4294967296 AND s.id * 4294967296 + 4294967295
             WHERE e.uuid = ?1 AND s.kind = 0",
            [run],
            |r| r.get(0),
        )
        .unwrap()
}

/// Pages in use (not free) in the database file, as a reader sees it committed. PostgreSQL
/// frees a table's pages only at its next VACUUM, so there: the bytes of every packed point.
fn used_bytes(db: &Path) -> i64 {
    let conn = open(db);
    let q = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    if common::on_postgres() {
        return q("SELECT coalesce(sum(length(data)), 0) FROM chunks");
    }
    (q("PRAGMA page_count") - q("PRAGMA freelist_count")) * q("PRAGMA page_size")
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// The charts a dashboard draws of a run: by step and by time, whole and zoomed to whole
/// blocks, at several bucket counts (each answered from aggregates while the points are
/// whole, so the same after compaction).
fn charts(server: &TestServer, user: &User, run: &str, started: i64) -> Vec<(String, Value)> {
    let t = |step: i64| started + step * 1000;
    let queries = [
        "points=20".to_string(),
        "points=100".to_string(),
        "points=400".to_string(),
        "names=m0,m3&points=50".to_string(),
        "from=1280&to=2559&points=10".to_string(),
        "from=0&to=12799&points=60".to_string(),
        "x=time&points=20".to_string(),
        "x=time&points=300".to_string(),
        format!("x=time&from={}&to={}&points=10", t(1280), t(2559)),
        "format=binary&points=100".to_string(),
    ];
    queries
        .into_iter()
        .map(|q| {
            let r = server.get(&format!("/api/experiments/{run}/series?{q}"), &user.auth());
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            let body = if q.contains("binary") {
                Value::String(r.text.clone())
            } else {
                r.json()["data"].clone()
            };
            (q, body)
        })
        .collect()
}

#[test]
fn an_owner_keeps_only_the_aggregates_of_old_runs_and_their_charts_still_draw() {
    let mut server = TestServer::start();
    let db = server.db.clone();
    let ada = server.user("ada@lab.org");
    let bob = server.user("bob@lab.org");
    let ws = server.workspace(&ada, "vision lab");
    server.add_member(&ws, &bob, 2);
    // A year-old sweep of 10 metrics x 30,000 steps, one kept the same age, one of last week.
    let started = now() - 400 * DAY;
    let old = run(&server, &ada, &ws, "old", 400, &[]);
    log_noise(&server, &ada, &old, started, 10, 30_000);
    let kept = run(&server, &ada, &ws, "old-kept", 400, &["keep"]);
    log_noise(&server, &ada, &kept, started, 2, 3_000);
    let young = run(&server, &ada, &ws, "young", 7, &[]);
    log_noise(&server, &ada, &young, now() - 7 * DAY, 2, 3_000);
    age(&db, &old, 400);
    age(&db, &kept, 400);
    age(&db, &young, 7);

    let before = charts(&server, &ada, &old, started);
    let summary = server.get(&format!("/api/experiments/{old}/summary"), &ada.auth());
    assert_eq!(summary.status, 200, "{}", summary.text);
    let deep = server.get(
        &format!("/api/experiments/{old}/series?names=m0&from=1300&to=1400&points=1000"),
        &ada.auth(),
    );
    let raw = deep.data()["series"][0].clone();
    assert_eq!(raw["raw"], true, "{raw}");

    // The dry run: exactly the old run, its 300,000 metric points and their packed bytes.
    let r = server.get(
        &format!("/api/workspaces/{ws}/retention/preview?aggregate_after_days=30"),
        &bob.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let due = r.data()["aggregate"].clone();
    assert_eq!(due["runs"], 1, "{}", r.text);
    assert_eq!(due["points"], 300_000, "{}", r.text);
    let bytes = due["bytes"].as_i64().unwrap();
    assert_eq!(bytes, metric_chunk_bytes(&db, &old));
    assert!(bytes > 1 << 20, "{bytes}");
    assert_eq!(r.data()["delete"], Value::Null);

    // An EDITOR may not set it.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &bob.auth(),
        Some(&json!({"aggregate_after_days": 30})),
    );
    r.expect_error(403);

    eventually("the WAL was never folded", || {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        file_len(Path::new(&wal)) == 0
    });
    let used = used_bytes(&db);
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        Some(&json!({"aggregate_after_days": 30})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["policy"],
        json!({"delete_after_days": null, "aggregate_after_days": 30, "keep_tag": "keep"})
    );
    eventually("the old run was not compacted", || {
        metric_chunk_bytes(&db, &old) == 0
            && server
                .get(&format!("/api/experiments/{old}"), &ada.auth())
                .data()["compacted_at"]
                .is_string()
    });

    // Every chart and the summary as before.
    for ((q, a), (_, b)) in before.iter().zip(charts(&server, &ada, &old, started)) {
        assert_eq!(a, &b, "{q}");
    }
    let r = server.get(&format!("/api/experiments/{old}/summary"), &ada.auth());
    assert_eq!(r.data(), summary.data());
    // Zoomed past a block, the chart shows the block that holds the range: its aggregates
    // bound the points that were there.
    let r = server.get(
        &format!("/api/experiments/{old}/series?names=m0&from=1300&to=1400&points=1000"),
        &ada.auth(),
    );
    let coarse = r.data()["series"][0].clone();
    assert_eq!(coarse["raw"], false, "{coarse}");
    assert_eq!(coarse["count"], json!([128]), "{coarse}");
    let lowest = raw["min"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap());
    assert!(lowest.fold(f64::MAX, f64::min) >= coarse["min"][0].as_f64().unwrap());
    // The run table still lists it, marked.
    assert_eq!(names(&server, &ada, &ws), ["old", "old-kept", "young"]);

    // What needs the raw points says they are gone, and when; results are whole.
    let today = &now_rfc3339()[..10];
    for path in [
        format!("/api/experiments/{old}/logs"),
        format!("/api/experiments/{old}/metrics"),
        format!("/api/experiments/{old}/logs/csv"),
        format!("/api/experiments/{old}/stream?cursor=0"),
    ] {
        let r = server.get(&path, &bob.auth());
        let message = r.expect_error(410);
        assert!(
            message.contains("compacted to aggregates") && message.contains(today),
            "{path}: {message}"
        );
    }
    let r = server.get(&format!("/api/experiments/{old}/results"), &bob.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()[0]["value"], 0.93, "{}", r.text);
    let r = server.get(
        &format!("/api/2.0/mlflow/metrics/get-history?run_id={old}&metric_key=m0"),
        &bob.auth(),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error_code"], "INVALID_STATE", "{}", r.text);
    // New points are refused, whole: nothing of the batch is stored.
    let r = server.post(
        &format!("/api/experiments/{old}/logs/batch"),
        &ada.auth(),
        json!({"logs": [{"name": "m0", "value": 1.0, "step": 30_000}]}),
    );
    assert!(r.expect_error(410).contains("takes no new points"));
    let r = server.get(&format!("/api/experiments/{old}/summary"), &ada.auth());
    assert_eq!(r.data(), summary.data());
    // A grouped chart still draws it (a point per block).
    let r = server.get(
        &format!("/api/series/groups?by=tags&experiments={old},{kept}&names=m0&points=50"),
        &ada.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["groups"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );

    // The kept and the young run are whole.
    for run in [&kept, &young] {
        let r = server.get(&format!("/api/experiments/{run}/metrics"), &bob.auth());
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.data().as_array().unwrap().len(), 6_000);
        assert!(metric_chunk_bytes(&db, run) > 0);
    }
    // The policy has nothing more to do.
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &bob.auth());
    assert_eq!(r.data()["due"]["aggregate"]["runs"], 0, "{}", r.text);

    // The pages they took are free, and the idle server gives them back to the disk.
    eventually("the pages were not freed", || {
        used_bytes(&db) <= used - bytes * 9 / 10
    });
    server.sigterm();
    // `tora doctor` checks a file: a PostgreSQL database is first moved into one.
    let scratch = common::TempDir::new();
    let file = if common::on_postgres() {
        let file = scratch.join("moved.db");
        let out = std::process::Command::new(BIN)
            .args(["migrate", "--from"])
            .arg(&db)
            .arg("--to")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        file
    } else {
        db.clone()
    };
    let out = std::process::Command::new(BIN)
        .arg("doctor")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("10 metrics compacted"), "{said}");
}

#[test]
fn a_policy_with_both_modes_compacts_the_old_and_deletes_the_oldest() {
    let server = TestServer::start();
    let db = server.db.clone();
    let ada = server.user("ada@lab.org");
    let ws = server.workspace(&ada, "nlp");
    let ancient = run(&server, &ada, &ws, "ancient", 400, &[]);
    log_noise(&server, &ada, &ancient, now() - 400 * DAY, 1, 1_000);
    let old = run(&server, &ada, &ws, "old", 60, &[]);
    log_noise(&server, &ada, &old, now() - 60 * DAY, 2, 1_000);
    let fresh = run(&server, &ada, &ws, "fresh", 1, &[]);
    log_noise(&server, &ada, &fresh, now() - DAY, 1, 1_000);
    age(&db, &ancient, 400);
    age(&db, &old, 60);

    // Each mode counts its own runs: the oldest goes whole, the next keeps its aggregates.
    let r = server.get(
        &format!(
            "/api/workspaces/{ws}/retention/preview?aggregate_after_days=30&delete_after_days=365"
        ),
        &ada.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["delete"]["runs"], 1, "{}", r.text);
    assert_eq!(r.data()["delete"]["points"], 1_001, "{}", r.text);
    assert_eq!(r.data()["aggregate"]["runs"], 1, "{}", r.text);
    assert_eq!(r.data()["aggregate"]["points"], 2_000, "{}", r.text);
    assert_eq!(
        r.data()["aggregate"]["bytes"].as_i64().unwrap(),
        metric_chunk_bytes(&db, &old)
    );
    // Compacting after deleting makes no sense.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        Some(&json!({"aggregate_after_days": 400, "delete_after_days": 365})),
    );
    assert!(r.expect_error(400).contains("below delete_after_days"));

    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        Some(&json!({"aggregate_after_days": 30, "delete_after_days": 365})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("the policy was not applied", || {
        names(&server, &ada, &ws).len() == 2 && metric_chunk_bytes(&db, &old) == 0
    });
    assert_eq!(names(&server, &ada, &ws), ["fresh", "old"]);
    let r = server.get(&format!("/api/experiments/{old}"), &ada.auth());
    assert!(r.data()["compacted_at"].is_string(), "{}", r.text);
    let r = server.get(&format!("/api/experiments/{fresh}"), &ada.auth());
    assert_eq!(r.data().get("compacted_at"), None, "{}", r.text);
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &ada.auth());
    assert_eq!(
        r.data()["due"],
        json!({"delete": {"runs": 0, "points": 0, "bytes": 0},
               "aggregate": {"runs": 0, "points": 0, "bytes": 0}}),
    );
    // Removing the policy leaves a compacted run compacted.
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.get(&format!("/api/experiments/{old}/metrics"), &ada.auth());
    r.expect_error(410);
}

fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
