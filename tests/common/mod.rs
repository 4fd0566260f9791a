//! The test harness: a real `tora serve` process on a free port with its own database file, and
//! a minimal HTTP/1.0 client (no extra crates; HTTP/1.0 means the body simply ends at EOF).
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tora");

/// Whether this run serves from PostgreSQL (`TORA_TEST_ENGINE=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("TORA_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// The database `db` names (a file, or a postgres:// URL) through Tora's engine-neutral layer.
pub fn sql_at(db: &Path) -> tora::sql::Connection {
    let db = db.to_str().unwrap();
    if db.starts_with("postgres://") {
        return tora::db::connect_postgres(db, db).unwrap();
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    tora::sql::Connection::from(conn)
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tora-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestServer {
    pub child: Child,
    pub client: Client,
    pub db: PathBuf,
    pub dir: Option<TempDir>,
}

/// Talks HTTP to a server; cheap to clone into a writer thread.
#[derive(Clone)]
pub struct Client {
    pub addr: String,
}

impl std::ops::Deref for TestServer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl TestServer {
    /// A fresh server with an empty database of its own.
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// With `TORA_TEST_ENGINE=postgres`, the database is a fresh one of this test's own in the
    /// test binary's PostgreSQL cluster (see [`pg`]) instead of a file: test.sh runs the
    /// engine-neutral test binaries a second time that way.
    pub fn start_with(args: &[&str]) -> TestServer {
        let dir = TempDir::new();
        let db = if on_postgres() {
            PathBuf::from(pg::database())
        } else {
            dir.join("tora.db")
        };
        let mut server = Self::start_on(&db, args);
        server.dir = Some(dir);
        server
    }

    /// A fresh server on a SQLite file whatever the engine under test: for what only a file
    /// has (its pages, backups, `tora doctor`).
    pub fn start_file(args: &[&str]) -> TestServer {
        let dir = TempDir::new();
        let mut server = Self::start_on(&dir.join("tora.db"), args);
        server.dir = Some(dir);
        server
    }

    /// A server on an existing database file (a restart, or a backup copy).
    pub fn start_on(db: &Path, args: &[&str]) -> TestServer {
        let mut command = Command::new(BIN);
        // One log line per request would bury the test output: warnings and errors only.
        command.env(
            "TORA_LOG_LEVEL",
            std::env::var("TORA_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        );
        command.stderr(Stdio::inherit());
        Self::spawn(command, db, &["--bind", "127.0.0.1:0"], args)
    }

    /// A fresh server started by `command` (its environment and stderr set by the caller),
    /// listening as `bind` says (`["--bind", ADDR]`).
    pub fn spawn(mut command: Command, db: &Path, bind: &[&str], args: &[&str]) -> TestServer {
        let mut child = command
            .arg("serve")
            .args(bind)
            .arg("--db")
            .arg(db)
            .args(args)
            .env_remove("TORA_PUBLIC_URL")
            .env_remove("TORA_SIGNUP")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tora serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        TestServer {
            child,
            client: Client { addr },
            db: db.to_path_buf(),
            dir: None,
        }
    }

    /// Adds `user` to a workspace with a role, directly in the database (a file, or a
    /// PostgreSQL URL) (invitations arrive with the teams feature; the permission checks under
    /// test are the server's).
    pub fn add_member(&self, workspace: &str, user: &User, role_id: i64) {
        self.sql()
            .execute(
                "INSERT INTO workspace_members (workspace_id, user_id, role_id, created_at) VALUES (?1, ?2, ?3, 0)",
                tora::sql::params![workspace, user.id, role_id],
            )
            .unwrap();
    }

    /// This server's database (the file, or the PostgreSQL database) through Tora's own
    /// engine-neutral layer, for what a test sets up or reads directly; `?N` parameters work on
    /// both engines.
    pub fn sql(&self) -> tora::sql::Connection {
        sql_at(&self.db)
    }

    /// Runs `tora ARGS --db <this server's database>` with `stdin`; returns (success, stdout,
    /// stderr).
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// An account made by the admin with `tora user add` (so its address is vouched for),
    /// logged in.
    pub fn admin_user(&self, email: &str) -> User {
        let password = "admin made password";
        let (ok, out, err) = self.admin(&["user", "add", email], Some(&format!("{password}\n")));
        assert!(ok, "tora user add: {out} {err}");
        self.login(email, password)
    }

    /// The admin vouches for an existing account's address (`tora user confirm`).
    pub fn confirm(&self, email: &str) {
        let (ok, out, err) = self.admin(&["user", "confirm", email], None);
        assert!(ok, "tora user confirm: {out} {err}");
    }

    /// The server's resident memory in KiB (VmRSS from /proc).
    pub fn rss_kib(&self) -> u64 {
        rss_of(self.child.id()).expect("VmRSS of the server: is it still running?")
    }

    /// Whether the server process is still running (it has not crashed or aborted).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A normal client's request, timed: asserts the server answers `GET /api/health` with 200
    /// within `within`, and returns how long it took. The yardstick of every attack test.
    pub fn assert_serves_within(&mut self, within: std::time::Duration) -> std::time::Duration {
        assert!(self.alive(), "the server process died");
        let start = std::time::Instant::now();
        let mut stream = TcpStream::connect(&self.client.addr).expect("connect");
        stream.set_read_timeout(Some(within)).unwrap();
        let head = format!(
            "GET /api/health HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.client.addr
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let took = start.elapsed();
        assert!(
            raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200"),
            "a normal client was not served within {within:?} (after {took:?}): {:?}",
            String::from_utf8_lossy(&raw)
        );
        assert!(
            took <= within,
            "a normal client waited {took:?} (bound {within:?})"
        );
        took
    }

    pub fn sigterm(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a request; `body` as JSON when given.
    pub fn call(&self, method: &str, path: &str, auth: &Auth, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.raw(
            method,
            path,
            auth,
            bytes.as_deref(),
            Some("application/json"),
        )
    }

    pub fn get(&self, path: &str, auth: &Auth) -> Response {
        self.call("GET", path, auth, None)
    }

    pub fn post(&self, path: &str, auth: &Auth, body: Value) -> Response {
        self.call("POST", path, auth, Some(&body))
    }

    /// Like [`Client::call`], from the loopback address `source` (such as 127.0.0.2): another
    /// machine, as far as per-address rate limits can tell.
    pub fn call_from(
        &self,
        source: &str,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<&Value>,
    ) -> Response {
        use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
        let source: std::net::IpAddr = source.parse().unwrap();
        let server: std::net::SocketAddr = self.addr.parse().unwrap();
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&fd, &std::net::SocketAddr::new(source, 0)).unwrap();
        connect(&fd, &server).unwrap();
        let mut stream = TcpStream::from(fd);
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.addr);
        match auth {
            Auth::None => {}
            Auth::Key(k) => head += &format!("x-api-key: {k}\r\n"),
            Auth::Bearer(t) => head += &format!("Authorization: Bearer {t}\r\n"),
        }
        if let Some(body) = &bytes {
            head += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        if let Some(body) = &bytes {
            stream.write_all(body).unwrap();
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Response::parse(&raw)
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> Response {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.addr);
        match auth {
            Auth::None => {}
            Auth::Key(k) => head += &format!("x-api-key: {k}\r\n"),
            Auth::Bearer(t) => head += &format!("Authorization: Bearer {t}\r\n"),
        }
        if let Some(body) = body {
            if let Some(ct) = content_type {
                head += &format!("Content-Type: {ct}\r\n");
            }
            head += &format!("Content-Length: {}\r\n", body.len());
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        if let Some(body) = body {
            // The server may answer (413) and close before reading everything; that is fine.
            let _ = stream.write_all(body);
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Response::parse(&raw)
    }

    /// Signs up and logs in a new user; returns its session and an API key. Its address is
    /// not proven (no mail confirmed it).
    pub fn user(&self, email: &str) -> User {
        let password = "correct horse battery";
        let r = self.post(
            "/api/signup",
            &Auth::None,
            json!({"email": email, "password": password}),
        );
        assert_eq!(r.status, 201, "signup: {}", r.text);
        self.login(email, password)
    }

    /// Logs in an existing account and gives it an API key.
    pub fn login(&self, email: &str, password: &str) -> User {
        let r = self.post(
            "/api/login",
            &Auth::None,
            json!({"email": email, "password": password}),
        );
        assert_eq!(r.status, 200, "login: {}", r.text);
        let token = r.data()["access_token"].as_str().unwrap().to_string();
        let refresh = r.data()["refresh_token"].as_str().unwrap().to_string();
        let id = r.data()["user"]["id"].as_str().unwrap().to_string();
        let r = self.post(
            "/api/api-keys",
            &Auth::Bearer(token.clone()),
            json!({"name": "test"}),
        );
        assert_eq!(r.status, 201, "api key: {}", r.text);
        User {
            id,
            email: email.to_string(),
            token,
            refresh,
            key: r.data()["key"].as_str().unwrap().to_string(),
        }
    }

    /// Creates an experiment as `user` (in its personal workspace unless `workspace` is given).
    pub fn experiment(&self, user: &User, name: &str, workspace: Option<&str>) -> String {
        let mut body = json!({"name": name});
        if let Some(ws) = workspace {
            body["workspaceId"] = json!(ws);
        }
        let r = self.post("/api/experiments", &user.auth(), body);
        assert_eq!(r.status, 201, "create experiment: {}", r.text);
        r.data()["id"].as_str().unwrap().to_string()
    }

    pub fn workspace(&self, user: &User, name: &str) -> String {
        let r = self.post("/api/workspaces", &user.auth(), json!({"name": name}));
        assert_eq!(r.status, 201, "create workspace: {}", r.text);
        r.data()["id"].as_str().unwrap().to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh: String,
    pub key: String,
}

impl User {
    pub fn auth(&self) -> Auth {
        Auth::Key(self.key.clone())
    }

    pub fn bearer(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }
}

#[derive(Clone)]
pub enum Auth {
    None,
    Key(String),
    Bearer(String),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Response {
    pub fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            text: String::from_utf8_lossy(&raw[split + 4..]).to_string(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a JSON error with this status and returns its message.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}, got: {}", self.text);
        let body = self.json();
        assert_eq!(body["status"], status, "{}", self.text);
        assert!(body["error"].is_string(), "{}", self.text);
        body["message"].as_str().expect("message").to_string()
    }
}

/// A process's resident memory in KiB (VmRSS from /proc), None once it is gone.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a server's RSS every 10 ms on a thread of its own, keeping the highest (KiB), until
/// stopped or dropped.
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeakRss {
    pub fn watch(server: &TestServer) -> PeakRss {
        use std::sync::atomic::Ordering;
        let pid = server.child.id();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, d) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                if let Some(kib) = rss_of(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        PeakRss { peak, done }
    }

    /// The highest RSS seen so far, in KiB.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops sampling and returns the highest RSS seen, in KiB.
    pub fn stop(self) -> u64 {
        self.peak()
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A raw Server-Sent Events reader over a connection whose request was already sent: reads
/// the status (asserting 200) and headers, then yields events as they arrive.
pub struct Sse {
    lines: BufReader<TcpStream>,
}

impl Sse {
    pub fn from(stream: TcpStream) -> Sse {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut lines = BufReader::with_capacity(1 << 20, stream);
        let mut status = String::new();
        lines.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut header = String::new();
            lines.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
        }
        Sse { lines }
    }

    /// The next event as (event, id, data), or None when the server ended the stream.
    /// Heartbeats, and the chunk-size lines of an HTTP/1.1 response, are skipped.
    pub fn next(&mut self) -> Option<(String, Option<i64>, String)> {
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        loop {
            let mut line = String::new();
            if self
                .lines
                .read_line(&mut line)
                .expect("an event within 30 s")
                == 0
            {
                return None;
            }
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            } else if line.is_empty() && !data.is_empty() {
                return Some((event, id, data));
            }
        }
    }

    /// The point ids of `logs` events until `count` have come or the stream ends, checking
    /// that each event's id is its last point's.
    pub fn ids(&mut self, count: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        while ids.len() < count {
            let Some((event, cursor, data)) = self.next() else {
                break;
            };
            assert_eq!(event, "logs");
            let batch = ids_in(&data);
            assert_eq!(
                cursor,
                batch.last().copied(),
                "the event id is its last point's"
            );
            ids.extend(batch);
        }
        ids
    }
}

/// The `id`s of a JSON array of points, without building a JSON tree of a million points.
pub fn ids_in(data: &str) -> Vec<i64> {
    data.split("{\"id\":")
        .skip(1)
        .map(|rest| {
            let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
            rest[..end].parse().unwrap()
        })
        .collect()
}
