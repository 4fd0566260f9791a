//! The disk under the database: a full one mid-ingest refuses writes with a clear 507, loses
//! nothing acknowledged, keeps serving reads and recovers by itself once space returns; a
//! database directory that is missing or read-only stops the start with a sentence saying so.
//!
//! These tests mount small tmpfs filesystems, so they run as root (CI does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, TempDir, TestServer};
use serde_json::{Value, json};

/// A tmpfs of `size` mounted for the test's life.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &TempDir, size: &str) -> Mount {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a small tmpfs to fill it: run the suite as root (test.sh in CI does)"
        );
        let at = dir.join("disk");
        std::fs::create_dir_all(&at).unwrap();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            &at,
        );
        Mount(at)
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.0);
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount").args(args).arg(at).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn points(batch: usize) -> Value {
    let logs: Vec<Value> = (0..1000)
        .map(|j| {
            let step = batch * 1000 + j;
            // Full-precision noise: about 8 bytes a point, so the disk fills in a few batches.
            let value = ((step as f64) * 12.9898).sin() * 43758.5453 % 1.0;
            json!({"msg_id": format!("{batch}-{j}"), "name": format!("layer{}", j % 20), "value": value, "step": step})
        })
        .collect();
    json!({ "logs": logs })
}

fn stored(server: &TestServer, auth: &common::Auth, run: &str) -> i64 {
    let r = server.get(&format!("/api/experiments/{run}/summary"), auth);
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_i64().unwrap())
        .sum()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_returns() {
    let dir = TempDir::new();
    let disk = Mount::tmpfs(&dir, "3m");
    let db = disk.0.join("tora.db");
    let mut server = TestServer::start_on(&db, &[]);
    let user = server.user("ada@lab.org");
    let run = server.experiment(&user, "resnet", None);
    let path = format!("/api/experiments/{run}/logs/batch");

    // Train until the disk is full.
    let mut acknowledged = 0;
    let mut refused = None;
    for batch in 0..1000 {
        let r = server.post(&path, &user.auth(), points(batch));
        if r.status == 201 {
            acknowledged += 1000;
            continue;
        }
        let message = r.expect_error(507);
        assert_eq!(r.json()["error"], "STORAGE_FULL", "{}", r.text);
        assert!(message.contains("disk is full"), "{message}");
        refused = Some(batch);
        break;
    }
    let refused = refused.expect("3 MiB filled up");
    assert!(acknowledged > 0);

    // Reads go on, and hold exactly what was acknowledged.
    assert_eq!(stored(&server, &user.auth(), &run), acknowledged);
    let r = server.get("/api/experiments", &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.get(
        &format!("/api/experiments/{run}/series?names=layer0&points=100"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // A second refused write is refused the same way (no 500 once the disk stays full).
    server
        .post(&path, &user.auth(), points(refused))
        .expect_error(507);
    // The health check says so, without needing a database connection.
    let health = server.get("/api/health", &common::Auth::None).json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["database"]["writable"], false, "{health}");
    assert_eq!(health["database"]["reason"], "disk full", "{health}");

    // Space comes back; the same batch, sent again as any client retries, is stored once.
    disk.remount("size=64m");
    let r = server.post(&path, &user.auth(), points(refused));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["inserted"], 1000);
    let r = server.post(&path, &user.auth(), points(refused + 1));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(stored(&server, &user.auth(), &run), acknowledged + 2000);
    let health = server.get("/api/health", &common::Auth::None).json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"]["writable"], true, "{health}");
    assert!(
        health["database"]["free_bytes"].as_u64().unwrap() > 32 << 20,
        "{health}"
    );

    // A clean stop folds everything into the file, which is sound.
    server.sigterm();
    let out = Command::new(BIN).arg("doctor").arg(&db).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let server = TestServer::start_on(&db, &[]);
    let user = server.login("ada@lab.org", "correct horse battery");
    assert_eq!(stored(&server, &user.auth(), &run), acknowledged + 2000);
}

fn serve_fails(db: &Path) -> String {
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_or_read_only_database_directory_stops_the_start_with_a_sentence() {
    let dir = TempDir::new();
    let missing = dir.join("no/such/dir/tora.db");
    let err = serve_fails(&missing);
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    assert!(!missing.exists());

    // A database made, then its filesystem remounted read-only.
    let disk = Mount::tmpfs(&dir, "8m");
    let db = disk.0.join("tora.db");
    let mut server = TestServer::start_on(&db, &[]);
    server.user("ada@lab.org");
    server.sigterm();
    disk.remount("ro");
    let err = serve_fails(&db);
    assert!(err.contains("read-only filesystem"), "{err}");
    assert!(err.contains(&db.display().to_string()), "{err}");
}
