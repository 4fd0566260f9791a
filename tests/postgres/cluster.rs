// A real PostgreSQL for tests, shared by the lib's unit tests (`sql::pg::testing`) and the
// integration tests (`tests/common/pg.rs`), which include this file by path: the cluster URL
// from `TORA_TEST_POSTGRES` if set, else one cluster per test binary (tests/postgres/cluster.sh:
// Debian's postgresql in a temp dir), started on first use and stopped by a watchdog once the
// test process is gone, however it ends; and a fresh database per call.

use std::sync::OnceLock;

/// The cluster's URL (its `postgres` database).
pub fn cluster() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TORA_TEST_POSTGRES") {
            return url;
        }
        start("tora-pg", None)
    })
}

/// A second cluster of this process's that speaks TLS with `certs`' server.crt and server.key
/// and refuses any other connection, but to its `postgres` database (see cluster.sh); its URL.
#[allow(dead_code)] // the TLS tests' alone
pub fn tls_cluster(certs: &std::path::Path) -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| start("tora-pg-tls", Some(certs)))
}

/// Starts a cluster in a temp dir named after `name` and this process, stopped by a watchdog
/// once this process is gone.
fn start(name: &str, tls: Option<&std::path::Path>) -> String {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postgres/cluster.sh");
    let mut command = std::process::Command::new("bash");
    command.arg(script).arg("start").arg(&dir);
    if let Some(certs) = tls {
        command.env("TORA_PG_TLS", certs);
    }
    let out = command.output().expect("run tests/postgres/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In the background of a shell that returns at once, so it is no child of ours and
    // outlives this process.
    std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"(tail --pid="$0" -f /dev/null; bash "$1" stop "$2"; rm -rf "$2") >/dev/null 2>&1 </dev/null &"#)
        .arg(std::process::id().to_string())
        .arg(script)
        .arg(&dir)
        .status()
        .expect("start the cluster's watchdog");
    String::from_utf8(out.stdout)
        .expect("url")
        .trim()
        .to_string()
}

/// A new, empty database of the caller's own; its URL.
pub fn database() -> String {
    database_in(cluster())
}

/// A new, empty database in the cluster at `server`; its URL.
pub fn database_in(server: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    // On a thread of its own: the blocking client refuses to run on a thread driving async
    // tasks, and async tests call this too.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut admin = postgres::Client::connect(server, postgres::NoTls).expect("connect");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create database");
        });
    });
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("no database in {server}"),
    }
}
