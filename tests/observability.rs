//! An admin watching a lab's server: one log line per request (never a secret), JSON lines for
//! a collector, and Prometheus metrics that count what really happened, readable from the
//! machine itself or with the metrics token.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Auth, BIN, Client, TempDir, TestServer};
use serde_json::{Value, json};

/// A server whose log (stderr) goes to `log`, with `env` set.
fn logging_server(dir: &TempDir, env: &[(&str, &str)], args: &[&str]) -> TestServer {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG").env_remove("TORA_LOG_LEVEL");
    for (k, v) in env {
        command.env(k, v);
    }
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    command.stderr(Stdio::from(log));
    TestServer::spawn(
        command,
        &dir.join("tora.db"),
        &["--bind", "127.0.0.1:0"],
        args,
    )
}

/// The log so far, once `want` request lines are in it (a line is written when its response
/// is done, which can be just after the client has read it).
fn log_with(dir: &TempDir, want: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("server.log")).unwrap();
        if text.matches("tora::request").count() >= want || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a busy lab member does in a minute: signs up, logs in, makes a key, logs points with
/// it, reads the run with the session token, and watches it live through a stream token.
struct Session {
    user: common::User,
    password: &'static str,
    run: String,
    stream_token: String,
}

fn a_minute_of_work(server: &TestServer) -> Session {
    let user = server.user("ada@lab.org");
    let run = server.experiment(&user, "resnet", None);
    let r = server.post(
        &format!("/api/experiments/{run}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "loss", "value": 0.5, "step": 1}, {"name": "loss", "value": 0.4, "step": 2}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.get(&format!("/api/experiments/{run}"), &user.bearer());
    assert_eq!(r.status, 200);
    let r = server.post(
        &format!("/api/experiments/{run}/logs/stream-token"),
        &user.auth(),
        json!({}),
    );
    assert!(r.status < 300, "{}", r.text);
    let stream_token = r.data()["token"].as_str().unwrap().to_string();
    // A live stream, its token in the query string, read until it says hello, then left.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET /api/experiments/{run}/stream?token={stream_token} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hello") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    Session {
        user,
        password: "correct horse battery",
        run,
        stream_token,
    }
}

#[test]
fn every_request_gets_a_line_and_no_line_carries_a_secret() {
    let dir = TempDir::new();
    let mut server = logging_server(&dir, &[], &[]);
    let work = a_minute_of_work(&server);
    // signup, login, api-key, experiment, batch, get, stream-token, stream
    let log = log_with(&dir, 8);
    server.sigterm();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tora::request"))
        .collect();
    let expect = [
        ("POST", "/api/signup", "201"),
        ("POST", "/api/login", "200"),
        ("POST", "/api/api-keys", "201"),
        ("POST", "/api/experiments", "201"),
        ("POST", "/api/experiments/{id}/logs/batch", "201"),
        ("GET", "/api/experiments/{id}", "200"),
        ("POST", "/api/experiments/{id}/logs/stream-token", "200"),
        ("GET", "/api/experiments/{id}/stream", "200"),
    ];
    for (method, route, status) in expect {
        let found = lines.iter().any(|l| {
            l.contains(&format!("method={method} "))
                && l.contains(&format!("route={route} "))
                && l.contains(&format!("status={status} "))
        });
        assert!(found, "no line for {method} {route} {status} in:\n{log}");
    }
    // The authenticated ones name their user.
    let batch = lines
        .iter()
        .find(|l| l.contains("route=/api/experiments/{id}/logs/batch "))
        .unwrap();
    assert!(batch.contains(&work.user.id), "{batch}");
    for secret in [
        work.password,
        &work.user.key,
        &work.user.token,
        &work.user.refresh,
        &work.stream_token,
        // Paths are logged as their route's template, never as sent.
        &work.run,
        "token=",
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

#[test]
fn json_lines_carry_each_field_and_the_bytes() {
    let dir = TempDir::new();
    let mut server = logging_server(&dir, &[], &["--log-format", "json"]);
    let user = server.user("grace@lab.org");
    let run = server.experiment(&user, "bert", None);
    let body = json!({"logs": [{"name": "acc", "value": 0.9, "step": 1}]}).to_string();
    let r = server.raw(
        "POST",
        &format!("/api/experiments/{run}/logs/batch"),
        &user.auth(),
        Some(body.as_bytes()),
        Some("application/json"),
    );
    assert_eq!(r.status, 201);
    let r = server.get(&format!("/api/experiments/{run}/summary"), &user.auth());
    assert_eq!(r.status, 200);
    let log = log_with(&dir, 6);
    server.sigterm();
    let requests: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "tora::request")
        .collect();
    for v in &requests {
        for field in [
            "timestamp",
            "level",
            "method",
            "route",
            "status",
            "ms",
            "done_ms",
            "user",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
    }
    let post = requests
        .iter()
        .find(|v| v["route"] == "/api/experiments/{id}/logs/batch")
        .unwrap();
    assert_eq!(post["bytes_in"], json!(body.len()));
    assert_eq!(post["user"], json!(user.id));
    let summary = requests
        .iter()
        .find(|v| v["route"] == "/api/experiments/{id}/summary")
        .unwrap();
    assert_eq!(summary["bytes_out"], json!(r.text.len()), "{summary}");
}

#[test]
fn the_level_and_rust_log_choose_what_is_written() {
    // warn: no request lines, and still the start-up lines on stdout.
    let dir = TempDir::new();
    let mut server = logging_server(&dir, &[], &["--log-level", "warn"]);
    assert_eq!(server.get("/api/health", &Auth::None).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    server.sigterm();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(!log.contains("tora::request"), "{log}");

    // RUST_LOG wins over --log-level.
    let dir = TempDir::new();
    let mut server = logging_server(
        &dir,
        &[("RUST_LOG", "tora::request=info")],
        &["--log-level", "error"],
    );
    assert_eq!(server.get("/api/health", &Auth::None).status, 200);
    let log = log_with(&dir, 1);
    server.sigterm();
    assert!(log.contains("route=/api/health "), "{log}");

    // A filter that does not parse stops the start with a clear message.
    let dir = TempDir::new();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(dir.join("tora.db"))
        .env("RUST_LOG", "tora=loud")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RUST_LOG"), "{err}");
}

/// `/metrics` as name{labels} -> value.
fn scrape(client: &Client, auth: &Auth) -> HashMap<String, f64> {
    let r = client.get("/metrics", auth);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    let mut out = HashMap::new();
    for line in r.text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        out.insert(name.to_string(), value.parse().unwrap());
    }
    out
}

fn metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} not exported; have {:?}", m.keys()))
}

/// Polls `/metrics` until `name` has `want`.
fn wait_for(client: &Client, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = scrape(client, &Auth::None).get(name).copied();
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed {got:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_requests_points_streams_refusals_and_the_files() {
    let server = TestServer::start();
    let user = server.user("ada@lab.org");
    let run = server.experiment(&user, "resnet", None);
    let logs: Vec<Value> = (0..1234)
        .map(|i| json!({"msg_id": format!("m{i}"), "name": "loss", "value": 1.0 / (i + 1) as f64, "step": i}))
        .collect();
    let batch = json!({"logs": logs});
    let path = format!("/api/experiments/{run}/logs/batch");
    assert_eq!(server.post(&path, &user.auth(), batch.clone()).status, 201);
    // The same points again (a client's retry: the same msg_ids) store nothing, and count nothing.
    assert_eq!(server.post(&path, &user.auth(), batch.clone()).status, 201);
    let m = scrape(&server, &Auth::None);
    assert_eq!(metric(&m, "tora_ingested_points_total"), 1234.0);
    assert_eq!(
        metric(
            &m,
            "tora_http_requests_total{route=\"/api/experiments/{id}/logs/batch\",method=\"POST\",status=\"201\"}"
        ),
        2.0
    );
    assert!(
        metric(&m, "tora_ingested_bytes_total") >= 2.0 * batch.to_string().len() as f64,
        "{m:?}"
    );
    assert_eq!(
        metric(
            &m,
            "tora_http_request_duration_seconds_count{route=\"/api/experiments/{id}/logs/batch\"}"
        ),
        2.0
    );
    assert!(metric(&m, "tora_database_bytes{file=\"db\"}") > 0.0);
    assert!(metric(&m, "tora_db_acquire_seconds_count{pool=\"write\"}") >= 2.0);
    assert_eq!(metric(&m, "tora_live_streams{kind=\"run\"}"), 0.0);
    assert_eq!(metric(&m, "tora_backups"), 0.0);
    assert!(!m.contains_key("tora_backup_age_seconds"));

    // A live stream counts while it is open.
    let r = server.post(
        &format!("/api/experiments/{run}/logs/stream-token"),
        &user.auth(),
        json!({}),
    );
    let token = r.data()["token"].as_str().unwrap().to_string();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET /api/experiments/{run}/stream?token={token} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    )
    .unwrap();
    wait_for(&server, "tora_live_streams{kind=\"run\"}", 1.0);
    drop(s);
    wait_for(&server, "tora_live_streams{kind=\"run\"}", 0.0);

    // Password guessing until the limit refuses.
    let mut refused = 0;
    for _ in 0..30 {
        let r = server.post(
            "/api/login",
            &Auth::None,
            json!({"email": "ada@lab.org", "password": "wrong guess!"}),
        );
        if r.status == 429 {
            refused += 1;
        }
    }
    assert!(refused > 0);
    let m = scrape(&server, &Auth::None);
    assert_eq!(
        metric(&m, "tora_rate_limit_refusals_total{action=\"login\"}"),
        f64::from(refused)
    );
    assert_eq!(
        metric(
            &m,
            "tora_http_requests_total{route=\"/api/login\",method=\"POST\",status=\"429\"}"
        ),
        f64::from(refused)
    );
}

#[test]
fn backup_age_is_exported_with_a_backup_dir() {
    let dir = TempDir::new();
    let backups = dir.join("backups");
    // Scheduled backups copy a file.
    let server = TestServer::start_file(&["--backup-dir", backups.to_str().unwrap()]);
    // The first backup is taken at start when the directory is empty.
    wait_for(&server, "tora_backups", 1.0);
    let m = scrape(&server, &Auth::None);
    let age = metric(&m, "tora_backup_age_seconds");
    assert!((0.0..120.0).contains(&age), "{age}");
}

/// An address of this machine other than loopback: connections to it come from it.
fn lan_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // connect() on UDP only picks a route and a source address; nothing is sent.
    probe
        .connect("192.0.2.1:9")
        .or_else(|_| probe.connect("10.255.255.255:9"))
        .expect("this machine needs a non-loopback IPv4 address for this test");
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

fn lan_server(dir: &Path, args: &[&str]) -> TestServer {
    let mut command = Command::new(BIN);
    command.env("TORA_LOG_LEVEL", "warn");
    TestServer::spawn(
        command,
        &dir.join("tora.db"),
        &["--bind", "0.0.0.0:0"],
        args,
    )
}

#[test]
fn metrics_from_another_machine_need_the_token() {
    let token = "scrape-me-7f3a9c2e1b";
    let dir = TempDir::new();
    let server = lan_server(&dir.0, &["--metrics-token", token]);
    let port = server.addr.rsplit_once(':').unwrap().1;
    let lan = Client {
        addr: format!("{}:{port}", lan_address()),
    };
    let r = lan.get("/metrics", &Auth::None);
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"], "NOT_FOUND", "{}", r.text);
    let r = lan.get("/metrics", &Auth::Bearer("scrape-me-7f3a9c2e1".into()));
    assert_eq!(r.status, 404);
    scrape(&lan, &Auth::Bearer(token.into()));
    // On the machine itself no token is needed.
    let local = Client {
        addr: format!("127.0.0.1:{port}"),
    };
    scrape(&local, &Auth::None);

    // Without --metrics-token, nobody else may scrape at all.
    let dir = TempDir::new();
    let server = lan_server(&dir.0, &[]);
    let port = server.addr.rsplit_once(':').unwrap().1;
    let lan = Client {
        addr: format!("{}:{port}", lan_address()),
    };
    assert_eq!(lan.get("/metrics", &Auth::Bearer(token.into())).status, 404);
    assert_eq!(lan.get("/api/health", &Auth::None).status, 200);
}

#[test]
fn a_short_metrics_token_is_refused_at_start() {
    let dir = TempDir::new();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--metrics-token",
            "short",
            "--db",
        ])
        .arg(dir.join("tora.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's table of metrics is the list a scrape exports: neither can gain a name alone.
#[test]
fn the_readme_lists_every_exported_metric() {
    let dir = TempDir::new();
    let backups = dir.join("backups");
    // With a backup directory every family is present (the backup's age only exists then).
    // Scheduled backups copy a file.
    let server = TestServer::start_file(&["--backup-dir", backups.to_str().unwrap()]);
    wait_for(&server, "tora_backups", 1.0);
    let r = server.get("/metrics", &Auth::None);
    let exported: std::collections::BTreeSet<String> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Metrics section");
    let documented: std::collections::BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `tora_"))
        .flat_map(|l| {
            l.split('|').nth(1).unwrap().split('`').filter_map(|w| {
                let name: String = w
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                name.starts_with("tora_").then_some(name)
            })
        })
        .collect();
    assert_eq!(exported, documented);
}
