//! A real PostgreSQL for the tests that need one (tests/postgres/cluster.sh: Debian's
//! postgresql in a temp dir): one cluster per test binary, a database per test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The cluster's URL (its `postgres` database). Started once for this binary, unless
/// TORA_TEST_POSTGRES names one; a watcher process stops it and removes its directory when this
/// process ends, however it ends.
pub fn cluster() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TORA_TEST_POSTGRES") {
            return url;
        }
        let dir = std::env::temp_dir().join(format!("tora-pg-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres/cluster.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/postgres/cluster.sh");
        assert!(out.status.success(), "cluster.sh start failed");
        // In the background of a shell that exits at once: the watcher outlives this process.
        Command::new("sh")
            .args([
                "-c",
                "(tail --pid=\"$0\" -f /dev/null; \"$1\" stop \"$2\"; rm -rf \"$2\") >/dev/null 2>&1 </dev/null &",
            ])
            .arg(std::process::id().to_string())
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("start the cluster's watcher");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// A new, empty database of this test's own; its URL.
pub fn database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(cluster(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let base = cluster().rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// A plain client to the database at `url`.
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}
