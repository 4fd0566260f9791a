//! Running Tora: the CLI, the dashboard shell, graceful shutdown, crash durability, backup.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Auth, BIN, TempDir, TestServer};
use serde_json::{Value, json};

#[test]
fn version_and_help_describe_the_commands() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tora "));
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--bind",
        "--db",
        "--public-url",
        "--signup",
        "TORA_BIND",
        "TORA_DB",
        "TORA_PUBLIC_URL",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    let help = Command::new(BIN)
        .args(["backup", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("never overwritten"));
}

#[test]
fn the_dashboard_shell_is_served_for_app_paths_but_not_api_paths() {
    let server = TestServer::start();
    let health = server.get("/api/health", &Auth::None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["database"]["writable"], true);
    for path in [
        "/",
        "/experiments/7d444840-9dc0-11d1-b245-5ffdce74fad2",
        "/workspaces",
    ] {
        let r = server.get(path, &Auth::None);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.text.contains("<title>Tora</title>"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
    server
        .get(
            "/api/experiments/7d444840-9dc0-11d1-b245-5ffdce74fad2/nope",
            &Auth::None,
        )
        .expect_error(404);
}

#[test]
fn sigterm_checkpoints_so_the_db_file_alone_is_complete() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let mut server = TestServer::start_on(&db, &[]);
    let user = server.user("s@lab.org");
    let exp = server.experiment(&user, "persist", None);
    let logs: Vec<Value> = (0..1000)
        .map(|i| json!({"name": "loss", "value": i, "step": i}))
        .collect();
    assert_eq!(
        server
            .post(
                &format!("/api/experiments/{exp}/logs/batch"),
                &user.auth(),
                json!({"logs": logs})
            )
            .status,
        201
    );
    server.sigterm();

    let wal = dir.join("tora.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL left behind"
    );
    // Copy only the .db file somewhere else: it must hold everything, secrets included.
    let copy_dir = TempDir::new();
    let copy = copy_dir.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let again = TestServer::start_on(&copy, &[]);
    let points = again
        .get(&format!("/api/experiments/{exp}/metrics"), &user.auth())
        .data();
    assert_eq!(points.as_array().unwrap().len(), 1000);
    // The same signing secret: the old access token still verifies.
    assert_eq!(again.get("/api/workspaces", &user.bearer()).status, 200);
}

#[test]
fn a_killed_server_keeps_every_acknowledged_point() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let mut server = TestServer::start_on(&db, &[]);
    let user = server.user("k@lab.org");
    let exp = server.experiment(&user, "crash", None);

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, addr, key, exp) = (
            acked.clone(),
            stop.clone(),
            server.addr.clone(),
            user.key.clone(),
            exp.clone(),
        );
        std::thread::spawn(move || {
            let client = common::Client { addr };
            for b in 0..10_000u64 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let logs: Vec<Value> = (0..500)
                    .map(|i| json!({"name": "loss", "value": 1.0, "step": b * 500 + i}))
                    .collect();
                let r = std::panic::catch_unwind(|| {
                    client.post(
                        &format!("/api/experiments/{exp}/logs/batch"),
                        &Auth::Key(key.clone()),
                        json!({"logs": logs}),
                    )
                });
                match r {
                    Ok(r) if r.status == 201 => acked.store((b + 1) * 500, Ordering::SeqCst),
                    _ => break,
                }
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 20_000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.sigkill();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acknowledged = acked.load(Ordering::SeqCst);

    let again = TestServer::start_on(&db, &[]);
    let stored = again
        .get(&format!("/api/experiments/{exp}/metrics"), &user.auth())
        .data();
    let stored = stored.as_array().unwrap().len() as u64;
    assert!(
        stored >= acknowledged,
        "{acknowledged} acknowledged, {stored} after restart"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn backup_during_writes_is_consistent_and_never_overwrites() {
    let server = TestServer::start();
    let user = server.user("b@lab.org");
    let exp = server.experiment(&user, "backed-up", None);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, addr, key, exp) = (
            stop.clone(),
            server.addr.clone(),
            user.key.clone(),
            exp.clone(),
        );
        std::thread::spawn(move || {
            let client = common::Client { addr };
            let mut b = 0u64;
            while !stop.load(Ordering::SeqCst) && b < 2_000 {
                let logs: Vec<Value> = (0..200)
                    .map(|i| json!({"name": "loss", "value": 0.5, "step": b * 200 + i}))
                    .collect();
                let r = client.post(
                    &format!("/api/experiments/{exp}/logs/batch"),
                    &Auth::Key(key.clone()),
                    json!({"logs": logs}),
                );
                assert_eq!(r.status, 201);
                b += 1;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out_dir = TempDir::new();
    let dest = out_dir.join("backup.db");
    let out = Command::new(BIN)
        .arg("backup")
        .arg(&dest)
        .arg("--db")
        .arg(&server.db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("backup.db"));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let conn = rusqlite::Connection::open(&dest).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let in_copy: i64 = conn
        .query_row("SELECT coalesce(sum(count), 0) FROM series", [], |r| {
            r.get(0)
        })
        .unwrap();
    let in_blocks: i64 = conn
        .query_row(
            "SELECT coalesce(sum(count), 0) FROM series_blocks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_copy, in_blocks, "summaries and blocks agree in the copy");
    assert!(
        in_copy > 0 && in_copy % 200 == 0,
        "a torn copy has {in_copy} logs"
    );
    drop(conn);

    let restored = TestServer::start_on(&dest, &[]);
    let points = restored
        .get(&format!("/api/experiments/{exp}/metrics"), &user.auth())
        .data();
    assert_eq!(points.as_array().unwrap().len() as i64, in_copy);

    let before = std::fs::metadata(&dest).unwrap().len();
    let again = Command::new(BIN)
        .arg("backup")
        .arg(&dest)
        .arg("--db")
        .arg(&server.db)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), before);
}

/// The database holds the token-signing secret: whatever the umask, the server and the CLI
/// create it, its WAL and shared-memory files, and backups readable by the owner only.
#[test]
fn the_database_its_wal_and_backups_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {BIN} serve --bind 127.0.0.1:0 --db {}",
            db.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap();
    let client = common::Client {
        addr: addr.to_string(),
    };
    client.user("alice@lab.org");
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(&format!("tora.db{suffix}"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let backup = dir.join("copy.db");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {BIN} backup {} --db {}",
            backup.display(),
            db.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&backup), 0o600);
    let _ = child.kill();
    let _ = child.wait();

    // A file someone made readable gets a warning naming it at start-up.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let expected = format!(
        "warning: {} is readable by other users (mode 644)",
        db.display()
    );
    let mut said = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(10)) {
        let found = line.starts_with(&expected);
        said.push(line);
        if found {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(said.iter().any(|l| l.starts_with(&expected)), "{said:?}");
}

/// The command line speaks plainly: a port in use says so and how to pick another, leaves no
/// database file behind, and refusals carry no HTTP status names.
#[test]
fn a_port_in_use_is_named_with_a_fix_and_leaves_no_file() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    let out = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port} is already in use"))
            && err.contains("--bind 127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains("internal"), "{err}");
    assert!(
        !db.exists(),
        "a server that could not start left {}",
        db.display()
    );

    let out = Command::new(BIN)
        .args(["user", "add", "not-an-address", "--db"])
        .arg(&db)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with("error: the e-mail address needs an '@'"),
        "{err}"
    );
    assert!(!err.contains("BAD_REQUEST"), "{err}");
    drop(busy);
}

/// The dashboard loads from one versioned tree (`/v/BUILD/...`) that browsers keep for good,
/// while index.html is revalidated every time: a warm load fetches one small file, and a new
/// binary's dashboard (a new build id, so new URLs) shows up at once.
#[test]
fn the_dashboard_is_cached_for_good_under_its_build_and_index_html_never() {
    let server = TestServer::start();
    let index = server.get("/", &Auth::None);
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let urls: Vec<String> = index
        .text
        .split('"')
        .filter(|s| s.starts_with("/v/"))
        .map(str::to_string)
        .collect();
    assert!(
        urls.iter().any(|u| u.ends_with("/js/app.js")),
        "{}",
        index.text
    );
    assert!(
        urls.iter().any(|u| u.ends_with("/css/app.css")),
        "{}",
        index.text
    );
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/vendor/uplot/uPlot.esm.js"))
    );
    assert!(
        !index.text.contains("\"/js/"),
        "an unversioned script: {}",
        index.text
    );
    for url in &urls {
        let r = server.get(url, &Auth::None);
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{url}"
        );
        let kind = r.header("content-type").unwrap();
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{url}: {kind}"
        );
        // The same bytes as the unversioned file, which is revalidated instead.
        let plain = url.splitn(4, '/').nth(3).unwrap();
        let same = server.get(&format!("/{plain}"), &Auth::None);
        assert_eq!(same.text, r.text, "{url}");
        assert_eq!(same.header("cache-control"), Some("no-cache"));
    }
    // Another build's URL (a page open across an upgrade) still gets the file, revalidated.
    let old = server.get("/v/000000000000/js/app.js", &Auth::None);
    assert_eq!(old.status, 200);
    assert_eq!(old.header("cache-control"), Some("no-cache"));
}
