//! Copying tora.db is a backup: a lab that copies the database file with its usual tools (cp,
//! rsync, a NAS job) while the server runs gets every acknowledged change once the server has
//! been idle for a second, and `tora doctor` tells a good copy from a bad one.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Auth, BIN, TempDir, TestServer};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const POINTS: usize = 5_000;

/// The value logged at step `i`: distinct, and not round in decimal.
fn value(i: usize) -> f64 {
    1.0 / (i as f64 + 3.0)
}

fn log_points(server: &TestServer, key: &str, exp: &str) {
    let steps: Vec<usize> = (0..POINTS).collect();
    let values: Vec<f64> = steps.iter().map(|&i| value(i)).collect();
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &Auth::Key(key.into()),
        json!({"metrics": [{"name": "loss", "steps": steps, "values": values}],
               "results": [{"name": "accuracy", "value": 0.93}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

fn wal_len(db: &Path) -> u64 {
    std::fs::metadata(tora::wal::wal_path(db))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Waits until the server has folded its WAL into the database file, as it does once writes
/// stop for `wal::IDLE`; returns how long that took.
fn wait_until_folded(db: &Path) -> Duration {
    let start = Instant::now();
    while wal_len(db) > 0 {
        assert!(
            start.elapsed() < tora::wal::IDLE * 10,
            "the WAL still holds {} bytes {:?} after the last write",
            wal_len(db),
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// `tora doctor FILE`: (exit success, stdout, stderr).
fn doctor(file: &Path) -> (bool, String, String) {
    let out = Command::new(BIN).arg("doctor").arg(file).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Copies the database file alone: no -wal, no -shm, as `cp tora.db` does.
fn copy_alone(db: &Path, to: &Path) {
    std::fs::copy(db, to).unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut name = to.as_os_str().to_owned();
        name.push(suffix);
        assert!(!Path::new(&name).exists());
    }
}

fn points_in(file: &Path) -> i64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    conn.query_row(
        "SELECT coalesce(sum(count), 0) FROM series WHERE kind = 0",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_copy_of_the_idle_database_file_alone_holds_every_acknowledged_change() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let bob = server.user("bob@lab.org");
    let workspace = server.workspace(&alice, "vision");
    let exp = server.experiment(&alice, "resnet", Some(&workspace));
    let r = server.call(
        "PATCH",
        &format!("/api/experiments/{exp}"),
        &alice.auth(),
        Some(&json!({"hyperparams": [{"key": "lr", "value": 0.1}], "tags": ["baseline"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    log_points(&server, &alice.key, &exp);

    // Nothing more is written: within about a second the WAL is folded and emptied.
    wait_until_folded(&server.db);
    let dir = TempDir::new();
    let copy = dir.join("copy.db");
    copy_alone(&server.db, &copy);

    let (ok, out, err) = doctor(&copy);
    assert!(ok, "doctor refused the copy:\n{out}\n{err}");
    assert!(out.contains("complete, intact"), "{out}");
    assert!(out.contains(&format!("{} points", POINTS + 1)), "{out}");
    assert_eq!(points_in(&copy), POINTS as i64);

    // The copy, served by a fresh server, is the lab as it was.
    let restored = TestServer::start_on(&copy, &[]);
    for user in [&alice, &bob] {
        // Accounts (the password), API keys and sessions' signing secret all came along.
        restored.login(&user.email, PASSWORD);
        let r = restored.get("/api/workspaces", &user.auth());
        assert_eq!(r.status, 200, "{}'s key: {}", user.email, r.text);
        let r = restored.get(&format!("/api/experiments/{exp}"), &user.bearer());
        let expected = if user.email == alice.email { 200 } else { 404 };
        assert_eq!(r.status, expected, "{}", r.text);
    }
    let run = restored
        .get(&format!("/api/experiments/{exp}"), &alice.auth())
        .data();
    assert_eq!(run["name"], "resnet");
    assert_eq!(run["tags"], json!(["baseline"]));
    let metrics = restored
        .get(&format!("/api/experiments/{exp}/metrics"), &alice.auth())
        .data();
    let points: Vec<&Value> = metrics.as_array().unwrap().iter().collect();
    assert_eq!(points.len(), POINTS);
    for p in &points {
        let step = p["step"].as_u64().unwrap() as usize;
        assert_eq!(p["value"].as_f64().unwrap(), value(step), "step {step}");
    }
    let results = restored
        .get(&format!("/api/experiments/{exp}/results"), &alice.auth())
        .data();
    assert_eq!(results[0]["value"], json!(0.93));
}

/// What a copy taken during writes holds is not promised (that is what `tora backup` is for);
/// this test records what it is here: 100 ms after a write, the file alone is intact but does
/// not have that write yet, which is still in the WAL.
#[test]
fn a_copy_taken_100ms_after_a_write_is_intact_but_misses_that_write() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "resnet", None);
    wait_until_folded(&server.db);

    log_points(&server, &alice.key, &exp);
    std::thread::sleep(Duration::from_millis(100));
    let dir = TempDir::new();
    let copy = dir.join("copy.db");
    copy_alone(&server.db, &copy);
    assert!(
        wal_len(&server.db) > 0,
        "the write should still be in the WAL"
    );

    let (ok, out, err) = doctor(&copy);
    assert!(ok, "{out}\n{err}");
    // All of the batch or none of it, never a part: here, none (unless the machine stalled
    // for the whole idle delay between the write and the copy).
    let points = points_in(&copy);
    assert!(points == 0 || points == POINTS as i64, "{points} points");
    eprintln!("a copy 100 ms after the write holds {points} of its {POINTS} points");

    // Once idle, a copy has it.
    wait_until_folded(&server.db);
    let later = dir.join("later.db");
    copy_alone(&server.db, &later);
    assert_eq!(points_in(&later), POINTS as i64);
}

#[test]
fn doctor_tells_a_torn_or_foreign_copy_from_a_good_one() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "resnet", None);
    log_points(&server, &alice.key, &exp);
    wait_until_folded(&server.db);
    let dir = TempDir::new();
    let good = dir.join("good.db");
    copy_alone(&server.db, &good);
    assert!(doctor(&good).0);
    // doctor only reads: nothing appears beside the file it checked.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["good.db".to_string()]);
    let bytes = std::fs::read(&good).unwrap();

    // A copy cut short (the source grew while it was copied).
    let cut = dir.join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len() - 4096]).unwrap();
    let (ok, _, err) = doctor(&cut);
    assert!(!ok);
    assert!(err.contains("header says"), "{err}");

    // Pages overwritten (a torn copy): found by SQLite's check or by decoding the points.
    let torn = dir.join("torn.db");
    let mut damaged = bytes.clone();
    let conn = rusqlite::Connection::open(&good).unwrap();
    let page_size: usize = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize;
    drop(conn);
    // Every other page past the first few, as if written by something else.
    for page in (3..damaged.len() / page_size).step_by(2) {
        damaged[page * page_size..(page + 1) * page_size].fill(0x5a);
    }
    std::fs::write(&torn, &damaged).unwrap();
    let (ok, out, err) = doctor(&torn);
    assert!(!ok, "{out}");
    assert!(err.contains("problem:"), "{err}");

    // A block of points that no longer decodes, in a file SQLite itself finds sound.
    let bad_block = dir.join("bad-block.db");
    std::fs::write(&bad_block, &bytes).unwrap();
    {
        let conn = rusqlite::Connection::open(&bad_block).unwrap();
        conn.execute(
            "UPDATE chunks SET data = x'01ff' WHERE id = (SELECT min(id) FROM chunks)",
            [],
        )
        .unwrap();
    } // the last connection closing folds its WAL back into the file
    let (ok, _, err) = doctor(&bad_block);
    assert!(!ok);
    assert!(err.contains("stored points are damaged"), "{err}");

    // Not a database at all, and an empty file (a copy of a file whose data was all in -wal).
    let text = dir.join("notes.db");
    std::fs::write(&text, "x".repeat(8192)).unwrap();
    let (ok, _, err) = doctor(&text);
    assert!(!ok);
    assert!(err.contains("not an SQLite database"), "{err}");
    let empty = dir.join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let (ok, _, err) = doctor(&empty);
    assert!(!ok);
    assert!(err.contains("empty"), "{err}");

    // A missing file is an error that names it.
    let (ok, _, err) = doctor(&dir.join("nope.db"));
    assert!(!ok);
    assert!(err.contains("nope.db"), "{err}");
}

/// The live file with unfolded changes beside it: doctor checks the file alone and says the
/// -wal file is there.
#[test]
fn doctor_warns_about_a_wal_file_beside_the_one_it_checks() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "resnet", None);
    wait_until_folded(&server.db);
    log_points(&server, &alice.key, &exp);
    assert!(wal_len(&server.db) > 0);
    let (_, out, _) = doctor(&server.db);
    assert!(out.contains("tora.db-wal"), "{out}");
}

/// doctor also says what a server on the file would meet: a file others can read, the disk.
#[cfg(unix)]
#[test]
fn doctor_warns_about_a_database_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "resnet", None);
    log_points(&server, &alice.key, &exp);
    wait_until_folded(&server.db);
    let dir = TempDir::new();
    let copy = dir.join("copy.db");
    copy_alone(&server.db, &copy);
    let (ok, out, _) = doctor(&copy);
    assert!(ok);
    assert!(out.contains("MiB free"), "{out}");
    assert!(!out.contains("can be read by other users"), "{out}");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out, _) = doctor(&copy);
    assert!(ok, "a warning, not a fault of the file");
    assert!(
        out.contains("can be read by other users (mode 644)"),
        "{out}"
    );
}
