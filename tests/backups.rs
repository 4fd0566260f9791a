//! Backups over time: the server backs itself up into --backup-dir on a schedule, keeps the
//! newest few, and `tora restore` puts one back safely.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Auth, BIN, TempDir, TestServer};
use serde_json::json;

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.retain(|p| p.extension().is_some_and(|e| e == "db"));
    all.sort();
    all
}

fn tora(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn points_in(file: &Path) -> i64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.query_row(
        "SELECT coalesce(sum(count), 0) FROM series WHERE kind = 0",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn log_points(server: &TestServer, key: &str, exp: &str, n: usize) {
    let steps: Vec<usize> = (0..n).collect();
    let values: Vec<f64> = steps.iter().map(|&i| i as f64 / 7.0).collect();
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &Auth::Key(key.into()),
        json!({"metrics": [{"name": "loss", "steps": steps, "values": values}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_server_backs_itself_up_on_schedule_and_keeps_the_newest() {
    let dir = TempDir::new();
    let backups = dir.join("backups");
    let server = TestServer::start_with(&[
        "--backup-dir",
        backups.to_str().unwrap(),
        "--backup-every",
        "1s",
        "--backup-keep",
        "2",
    ]);
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "resnet", None);
    log_points(&server, &alice.key, &exp, 3_000);
    let written = std::time::SystemTime::now();

    // Wait for a backup taken after the points, and for older ones to have been pruned.
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no backup after the write"
        );
        let all = backups_in(&backups);
        if let Some(last) = all.last()
            && std::fs::metadata(last).unwrap().modified().unwrap() > written
            && all.len() == 2
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2_500));
    let all = backups_in(&backups);
    assert_eq!(all.len(), 2, "keeps the newest 2");
    // (The newest lives about 2 s before two newer ones replace it: enough to check it.)
    let newest = all.last().unwrap().clone();

    let (ok, out, err) = tora(&["doctor", newest.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(points_in(&newest), 3_000);
    #[cfg(unix)]
    {
        assert_eq!(mode(&backups), 0o700);
        assert_eq!(mode(&newest), 0o600);
    }
    // Nothing half-written is left in the directory.
    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("tora-") && n.ends_with(".db")),
        "{names:?}"
    );
}

#[test]
fn a_restart_neither_skips_nor_repeats_a_backup() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let backups = dir.join("backups");
    let args = [
        "--backup-dir",
        backups.to_str().unwrap(),
        "--backup-every",
        "1h",
    ];
    let server = TestServer::start_on(&db, &args);
    // None there yet: one is taken at once.
    let start = Instant::now();
    while backups_in(&backups).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    // The newest is minutes old, not an hour: a restart waits for its time.
    let server = TestServer::start_on(&db, &args);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(backups_in(&backups).len(), 1);
    drop(server);
}

#[test]
fn backup_flags_are_checked_at_start() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    for (every, expected) in [
        ("0s", "1s to 366d"),
        ("1w", "s, m, h or d"),
        ("soon", "s, m, h or d"),
    ] {
        let (ok, _, err) = tora(&[
            "serve",
            "--db",
            db.to_str().unwrap(),
            "--backup-dir",
            dir.join("b").to_str().unwrap(),
            "--backup-every",
            every,
        ]);
        assert!(!ok);
        assert!(err.contains(expected), "{every}: {err}");
    }
    let (ok, _, err) = tora(&[
        "serve",
        "--db",
        db.to_str().unwrap(),
        "--backup-every",
        "1h",
    ]);
    assert!(!ok);
    assert!(err.contains("--backup-dir"), "{err}");
    // A directory that cannot be made is an error at start, not a day later.
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let (ok, _, err) = tora(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--backup-dir",
        file.join("backups").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("cannot create"), "{err}");
}

#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let server = TestServer::start();
    let (ok, _, err) = tora(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--db",
        server.db.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("another tora serve is using"), "{err}");
}

#[test]
fn restore_puts_a_backup_back_and_keeps_what_it_replaced() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let mut server = TestServer::start_on(&db, &[]);
    let alice = server.user("alice@lab.org");
    let kept = server.experiment(&alice, "in the backup", None);
    log_points(&server, &alice.key, &kept, 2_000);
    let backup = dir.join("backup.db");
    assert!(
        tora(&[
            "backup",
            backup.to_str().unwrap(),
            "--db",
            db.to_str().unwrap()
        ])
        .0
    );
    let later = server.experiment(&alice, "after the backup", None);

    // Not while a server uses the file: nothing changes.
    let (ok, _, err) = tora(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("stop it first"), "{err}");
    assert!(
        server
            .get(&format!("/api/experiments/{later}"), &alice.auth())
            .status
            == 200
    );

    // Not a backup that is not sound: nothing changes.
    server.sigkill();
    let bad = dir.join("bad.db");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = tora(&[
        "restore",
        bad.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("not a complete, intact"), "{err}");
    assert!(db.exists());

    // The server died with changes in its -wal: restoring keeps them aside, with the file.
    let (ok, out, err) = tora(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let aside = out
        .lines()
        .find_map(|l| l.strip_prefix("moved the database that was there to "))
        .and_then(|l| l.split(" (").next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert!(!Path::new(&format!("{}-wal", db.display())).exists());

    let restored = TestServer::start_on(&db, &[]);
    restored.login(&alice.email, "correct horse battery");
    let points = restored
        .get(&format!("/api/experiments/{kept}/metrics"), &alice.auth())
        .data();
    assert_eq!(points.as_array().unwrap().len(), 2_000);
    assert_eq!(
        restored
            .get(&format!("/api/experiments/{later}"), &alice.auth())
            .status,
        404
    );
    drop(restored);
    let old = TestServer::start_on(Path::new(&aside), &[]);
    assert_eq!(
        old.get(&format!("/api/experiments/{later}"), &alice.auth())
            .status,
        200,
        "the replaced database, with its -wal, is whole"
    );
}

#[test]
fn restore_with_artifacts_dir_puts_the_backups_files_back() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let files = dir.join("artifacts");
    let files_arg = files.to_str().unwrap().to_string();
    let mut server = TestServer::start_on(&db, &["--artifacts-dir", &files_arg]);
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "with files", None);
    let put = |server: &TestServer, name: &str, body: &[u8]| {
        let r = server.raw(
            "PUT",
            &format!("/api/experiments/{exp}/artifacts/{name}"),
            &alice.auth(),
            Some(body),
            Some("application/octet-stream"),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    };
    put(&server, "model.bin", b"weights as they were at the backup");
    let backup = dir.join("backup.db");
    let (ok, out, err) = tora(&[
        "backup",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--artifacts-dir",
        &files_arg,
    ]);
    assert!(ok, "{out}{err}");
    put(&server, "later.bin", b"uploaded after the backup");
    server.sigkill();
    drop(server);

    // Without the directory the database comes back and the command says what it left.
    let plain = dir.join("plain.db");
    let (ok, _, err) = tora(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        plain.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("1 artifact files kept as files beside it"),
        "{err}"
    );

    let (ok, out, err) = tora(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--artifacts-dir",
        &files_arg,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("put 1 artifact files back"), "{out}");
    let replaced = out
        .lines()
        .find_map(|l| l.strip_prefix("moved the artifact files that were there to "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();

    let restored = TestServer::start_on(&db, &["--artifacts-dir", &files_arg]);
    let r = restored.get(
        &format!("/api/experiments/{exp}/artifacts/model.bin"),
        &alice.auth(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "weights as they were at the backup");
    let r = restored.get(
        &format!("/api/experiments/{exp}/artifacts/later.bin"),
        &alice.auth(),
    );
    assert_eq!(r.status, 404);
    // What was replaced is kept: both files of the later state are in the directory set aside.
    assert_eq!(std::fs::read_dir(&replaced).unwrap().count(), 2);
}
