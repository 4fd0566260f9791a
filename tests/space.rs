//! Space: deleting a run gives its disk space back while the server runs, and `tora vacuum`
//! does it once for a file made before Tora freed pages by itself.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{BIN, TempDir, TestServer};
use serde_json::json;

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn wal_of(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Waits until `done` holds, polling; panics with `what` after `within`.
fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `steps` points of full-precision noise for 10 metrics, in /points batches of 100k.
fn log_noise(server: &TestServer, user: &common::User, run: &str, steps: usize) {
    for start in (0..steps).step_by(10_000) {
        let metrics: Vec<_> = (0..10)
            .map(|m| {
                let steps: Vec<usize> = (start..start + 10_000).collect();
                let bytes: Vec<u8> = steps
                    .iter()
                    .flat_map(|s| (((s * 31 + m) as f64) * 12.9898).sin().to_le_bytes())
                    .collect();
                json!({"name": format!("m{m}"), "steps": steps,
                       "values_f64": base64::engine::general_purpose::STANDARD.encode(bytes)})
            })
            .collect();
        let r = server.post(
            &format!("/api/experiments/{run}/points"),
            &user.auth(),
            json!({"metrics": metrics}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

fn doctor(db: &Path) {
    let out = Command::new(BIN).arg("doctor").arg(db).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deleting_a_run_gives_its_space_back_while_the_server_runs() {
    let mut server = TestServer::start();
    let db = server.db.clone();
    let user = server.user("ada@lab.org");
    let keep = server.experiment(&user, "keep", None);
    log_noise(&server, &user, &keep, 10_000);
    let big = server.experiment(&user, "big", None);
    log_noise(&server, &user, &big, 300_000); // 3M points, ~27 MB
    eventually(Duration::from_secs(20), "the WAL was never folded", || {
        file_len(&wal_of(&db)) == 0
    });
    let full = file_len(&db);
    assert!(full > 20 << 20, "{full}");

    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{big}"),
        &user.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Idle, the server folds the WAL and hands free pages back, 8 MiB a second.
    eventually(
        Duration::from_secs(60),
        "the file did not shrink after the delete",
        || file_len(&db) < full / 4 && file_len(&wal_of(&db)) == 0,
    );
    let r = server.get(&format!("/api/experiments/{keep}/summary"), &user.auth());
    let counts: Vec<i64> = r.data()["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![10_000; 10]);
    server.sigterm();
    doctor(&db);
}

#[test]
fn tora_vacuum_converts_an_older_file_and_refuses_a_served_one() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    // A file as an older Tora made it: pages never given back (auto_vacuum off).
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute_batch(include_str!("fixtures/upgrade_v6.sql"))
            .unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 0);
    }
    let mut server = TestServer::start_on(&db, &[]);
    let user = server.login("pi@lab.org", "correct horse battery");
    let run = server.experiment(&user, "big", None);
    log_noise(&server, &user, &run, 100_000);
    let out = Command::new(BIN)
        .args(["vacuum", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{run}"),
        &user.auth(),
        None,
    );
    assert_eq!(r.status, 200);
    server.sigterm();
    // The server could not give those pages back: the file keeps its size.
    let full = file_len(&db);

    let out = Command::new(BIN)
        .args(["vacuum", "--dry-run", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("after a vacuum"),
        "{said}"
    );
    assert_eq!(file_len(&db), full, "a dry run changes nothing");

    let out = Command::new(BIN)
        .args(["vacuum", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(file_len(&db) < full / 2, "{} of {full}", file_len(&db));
    let mode: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental from now on");
    doctor(&db);
    // Everything the old file held is there.
    let server = TestServer::start_on(&db, &[]);
    let user = server.login("pi@lab.org", "correct horse battery");
    let r = server.get(
        "/api/experiments/0f8fad5b-d9cb-469f-a165-70867728950e/summary",
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["metrics"].as_array().unwrap().len(), 2);
}
