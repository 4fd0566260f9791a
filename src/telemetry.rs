//! What the server counts about itself, and `GET /metrics`, which exports it in Prometheus'
//! text format (version 0.0.4). Counting is a few atomic adds or one short lock per request:
//! nothing here touches the database; the file sizes and the backup's age are read when
//! scraped.
//!
//! Every label set is bounded: routes are the templates the routers declare (`/api/experiments/{id}`),
//! never a raw path, and everything unrouted is counted as one `unmatched`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};
use crate::limits::Action;
use crate::server::AppState;

/// The routes that store points: their accepted bodies count as ingested bytes.
const INGEST_ROUTES: [&str; 5] = [
    "/api/experiments/{id}/logs",
    "/api/experiments/{id}/logs/batch",
    "/api/experiments/{id}/points",
    "/api/2.0/mlflow/runs/log-metric",
    "/api/2.0/mlflow/runs/log-batch",
];

/// Upper bounds, in seconds, of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], then +Inf: not cumulative here, summed when rendered.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[BUCKETS.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Which database pool a connection was taken from.
#[derive(Clone, Copy)]
pub enum Pool {
    Read,
    Page,
    Write,
}

impl Pool {
    const ALL: [Pool; 3] = [Pool::Read, Pool::Page, Pool::Write];

    fn label(self) -> &'static str {
        match self {
            Pool::Read => "read",
            Pool::Page => "page",
            Pool::Write => "write",
        }
    }
}

const ACTIONS: [Action; 5] = [
    Action::Login,
    Action::Signup,
    Action::Refresh,
    Action::Password,
    Action::Mail,
];

fn action_label(a: Action) -> &'static str {
    match a {
        Action::Login => "login",
        Action::Signup => "signup",
        Action::Refresh => "refresh",
        Action::Password => "password",
        Action::Mail => "mail",
    }
}

#[derive(Default)]
struct Requests {
    /// (route, method, status) -> count
    counts: BTreeMap<(String, String, u16), u64>,
    /// route -> latency to the response's head
    latency: BTreeMap<String, Histogram>,
}

/// The process's counters: one per server process, like the process itself.
pub struct Telemetry {
    started: Instant,
    requests: Mutex<Requests>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    points: AtomicU64,
    ingest_bytes: AtomicU64,
    acquire: Mutex<[Histogram; 3]>,
    refusals: [AtomicU64; 5],
    run_streams: AtomicI64,
    workspace_streams: AtomicI64,
    /// The last write transaction was refused for a full disk (cleared by the next commit).
    disk_full: std::sync::atomic::AtomicBool,
}

static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(|| Telemetry {
    started: Instant::now(),
    requests: Mutex::default(),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    points: AtomicU64::new(0),
    ingest_bytes: AtomicU64::new(0),
    acquire: Mutex::default(),
    refusals: Default::default(),
    run_streams: AtomicI64::new(0),
    workspace_streams: AtomicI64::new(0),
    disk_full: std::sync::atomic::AtomicBool::new(false),
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the clock of `tora_uptime_seconds` (otherwise it starts at the first count).
pub fn start() {
    LazyLock::force(&TELEMETRY);
}

/// One answered request: its route template, method, status and time to the response's head.
pub fn note_request(route: &str, method: &str, status: u16, latency: Duration, received: u64) {
    if method == "POST" && (200..300).contains(&status) && INGEST_ROUTES.contains(&route) {
        TELEMETRY
            .ingest_bytes
            .fetch_add(received, Ordering::Relaxed);
    }
    let mut r = lock(&TELEMETRY.requests);
    *r.counts
        .entry((route.to_string(), method.to_string(), status))
        .or_default() += 1;
    r.latency
        .entry(route.to_string())
        .or_default()
        .observe(latency.as_secs_f64());
}

/// Bytes of request bodies read and of responses sent.
pub fn note_bytes(received: u64, sent: u64) {
    TELEMETRY.bytes_in.fetch_add(received, Ordering::Relaxed);
    TELEMETRY.bytes_out.fetch_add(sent, Ordering::Relaxed);
}

/// Points stored by one ingest request (points of a resent batch are not counted again).
pub fn note_points(points: u64) {
    TELEMETRY.points.fetch_add(points, Ordering::Relaxed);
}

/// How long taking a connection from `pool` waited.
pub fn note_acquire(pool: Pool, waited: Duration) {
    lock(&TELEMETRY.acquire)[pool as usize].observe(waited.as_secs_f64());
}

/// A request refused by a rate limit.
pub fn note_refusal(action: Action) {
    if let Some(i) = ACTIONS.iter().position(|&a| a == action) {
        TELEMETRY.refusals[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A live stream opened (+1) or closed (-1): a run's points, or a workspace's run table.
pub fn note_stream(workspace: bool, delta: i64) {
    let gauge = if workspace {
        &TELEMETRY.workspace_streams
    } else {
        &TELEMETRY.run_streams
    };
    gauge.fetch_add(delta, Ordering::Relaxed);
}

/// A write transaction committed (true) or was refused for a full disk (false).
pub fn note_write(committed: bool) {
    TELEMETRY.disk_full.store(!committed, Ordering::Relaxed);
}

/// Whether the server can write its database now, and if not why: the filesystem is mounted
/// read-only, has no space left, or refused the last write for lack of space. Two system calls
/// and an atomic read: no database connection, so it answers even when every one is busy.
pub fn writable(db: &crate::db::Db) -> (bool, Option<&'static str>, Option<u64>) {
    // PostgreSQL's disk is not this machine's to ask: only a write refused for lack of space
    // (PostgreSQL's disk_full error) says anything, and asking the server would need a
    // connection, which this answer must not wait for.
    if db.is_postgres() {
        if TELEMETRY.disk_full.load(Ordering::Relaxed) {
            return (false, Some("disk full"), None);
        }
        return (true, None, None);
    }
    let db = db.path();
    let space = crate::db::space(db);
    let free = space.as_ref().map(|s| s.free);
    if space.as_ref().is_some_and(|s| s.read_only) {
        return (false, Some("read-only filesystem"), free);
    }
    if free == Some(0) || TELEMETRY.disk_full.load(Ordering::Relaxed) {
        return (false, Some("disk full"), free);
    }
    (true, None, free)
}

/// Whether `peer` may scrape without a token: a client on this machine.
fn local(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Constant-time comparison through SHA-256: the token's length is not timed either.
fn same_token(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether the request may read `/metrics`: from loopback, or with `--metrics-token` as a
/// Bearer token. A reverse proxy on this machine makes every client loopback: give the proxy a
/// rule for `/metrics`, or set a token (README, "Metrics").
fn allowed(peer: Option<IpAddr>, headers: &HeaderMap, token: Option<&str>) -> bool {
    if let Some(expected) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| same_token(g.trim(), expected)) {
            return true;
        }
    }
    peer.is_some_and(local)
}

/// `GET /metrics`.
pub async fn serve(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response> {
    let peer = Some(peer.ip());
    if !allowed(peer, &headers, state.config.metrics_token.as_deref()) {
        // 404, as for a path that does not exist: a stranger learns nothing about the server.
        return Err(Error::NotFound(
            "no /metrics here: it answers clients on this machine, or with --metrics-token".into(),
        ));
    }
    let db = state.db.clone();
    let backup_dir = state.config.backup_dir.clone();
    let mut files = tokio::task::spawn_blocking(move || Files::read(&db, backup_dir.as_deref()))
        .await
        .map_err(|e| Error::Internal(format!("reading file sizes: {e}")))?;
    // PostgreSQL's size is the server's to tell (its WAL is the cluster's, not this database's:
    // reported as 0).
    if state.db.is_postgres() {
        files.db_bytes = state
            .db
            .read(|c| {
                Ok(
                    c.query_row("SELECT pg_database_size(current_database())", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .await
            .map_or(0, |n| n.max(0) as u64);
    }
    let mut response = render(&files).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// What a scrape reads from the disk.
struct Files {
    db_bytes: u64,
    wal_bytes: u64,
    /// Seconds since the newest backup was written; None without --backup-dir or before the
    /// first backup.
    backup_age: Option<f64>,
    backups: usize,
    writable: bool,
    free: Option<u64>,
}

impl Files {
    fn read(db: &crate::db::Db, backup_dir: Option<&std::path::Path>) -> Files {
        let (writable, _, free) = writable(db);
        let db = db.path();
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let list = backup_dir
            .and_then(|d| crate::backups::list(d).ok())
            .unwrap_or_default();
        let backup_age = list
            .last()
            .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
            .map(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_secs_f64()
            });
        Files {
            writable,
            free,
            db_bytes: size(db),
            wal_bytes: size(std::path::Path::new(&wal)),
            backup_age,
            backups: list.len(),
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render(files: &Files) -> String {
    let t = &*TELEMETRY;
    let mut out = String::with_capacity(16 * 1024);
    family(&mut out, "tora_build_info", "gauge", "The running version.");
    let _ = writeln!(
        out,
        "tora_build_info{{version=\"{}\",schema=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::db::SCHEMA_VERSION
    );
    family(
        &mut out,
        "tora_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(
        out,
        "tora_uptime_seconds {}",
        t.started.elapsed().as_secs_f64()
    );
    {
        let r = lock(&t.requests);
        family(
            &mut out,
            "tora_http_requests_total",
            "counter",
            "Requests answered, by route template, method and status.",
        );
        for ((route, method, status), n) in &r.counts {
            let _ = writeln!(
                out,
                "tora_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        family(
            &mut out,
            "tora_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response's head, by route template.",
        );
        for (route, h) in &r.latency {
            h.render(
                &mut out,
                "tora_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
    }
    let counters = [
        (
            "tora_http_received_bytes_total",
            "Bytes of request bodies read.",
            t.bytes_in.load(Ordering::Relaxed),
        ),
        (
            "tora_http_sent_bytes_total",
            "Bytes of response bodies sent.",
            t.bytes_out.load(Ordering::Relaxed),
        ),
        (
            "tora_ingested_points_total",
            "Metric points stored (points of a resent batch are not counted again).",
            t.points.load(Ordering::Relaxed),
        ),
        (
            "tora_ingested_bytes_total",
            "Bytes of accepted request bodies on the routes that store points.",
            t.ingest_bytes.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "tora_live_streams",
        "gauge",
        "Live streams open: a run's points, or a workspace's run table.",
    );
    let _ = writeln!(
        out,
        "tora_live_streams{{kind=\"run\"}} {}",
        t.run_streams.load(Ordering::Relaxed).max(0)
    );
    let _ = writeln!(
        out,
        "tora_live_streams{{kind=\"workspace\"}} {}",
        t.workspace_streams.load(Ordering::Relaxed).max(0)
    );
    family(
        &mut out,
        "tora_database_bytes",
        "gauge",
        "Size of the database file and of its -wal file (PostgreSQL: pg_database_size, wal 0).",
    );
    let _ = writeln!(out, "tora_database_bytes{{file=\"db\"}} {}", files.db_bytes);
    let _ = writeln!(
        out,
        "tora_database_bytes{{file=\"wal\"}} {}",
        files.wal_bytes
    );
    family(
        &mut out,
        "tora_database_writable",
        "gauge",
        "1 while the database can be written; 0 on a read-only filesystem, a full disk, or after a write refused for lack of space.",
    );
    let _ = writeln!(out, "tora_database_writable {}", u8::from(files.writable));
    if let Some(free) = files.free {
        family(
            &mut out,
            "tora_disk_free_bytes",
            "gauge",
            "Bytes free (for this user) on the filesystem holding the database.",
        );
        let _ = writeln!(out, "tora_disk_free_bytes {free}");
    }
    family(
        &mut out,
        "tora_db_acquire_seconds",
        "histogram",
        "Time spent waiting for a database connection, by pool (read, page: long downloads, write).",
    );
    {
        let acquire = lock(&t.acquire).clone();
        for pool in Pool::ALL {
            acquire[pool as usize].render(
                &mut out,
                "tora_db_acquire_seconds",
                &format!("pool=\"{}\"", pool.label()),
            );
        }
    }
    family(
        &mut out,
        "tora_rate_limit_refusals_total",
        "counter",
        "Requests refused with 429 by a rate limit, by what was limited.",
    );
    for (i, action) in ACTIONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "tora_rate_limit_refusals_total{{action=\"{}\"}} {}",
            action_label(*action),
            t.refusals[i].load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "tora_backups",
        "gauge",
        "Backups in --backup-dir (0 without it).",
    );
    let _ = writeln!(out, "tora_backups {}", files.backups);
    if let Some(age) = files.backup_age {
        family(
            &mut out,
            "tora_backup_age_seconds",
            "gauge",
            "Seconds since the newest backup in --backup-dir was written.",
        );
        let _ = writeln!(out, "tora_backup_age_seconds {age}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut h = Histogram::default();
        for s in [0.0001, 0.003, 0.003, 20.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "route=\"/a\"");
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.005\"} 3\n"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"10\"} 3\n"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_count{route=\"/a\"} 4\n"));
    }

    #[test]
    fn only_loopback_or_the_token_may_scrape() {
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let none = HeaderMap::new();
        let mut good = HeaderMap::new();
        good.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let mut bad = HeaderMap::new();
        bad.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(allowed(Some(lo), &none, None));
        assert!(allowed(Some(mapped), &none, None));
        assert!(!allowed(Some(lan), &none, None));
        assert!(!allowed(Some(lan), &good, None));
        assert!(allowed(Some(lan), &good, Some("s3cret")));
        assert!(!allowed(Some(lan), &bad, Some("s3cret")));
        assert!(!allowed(None, &none, Some("s3cret")));
    }
}
