//! The running server: shared state, the router, and `serve` (bind, announce, shut down cleanly).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::connections::{BusyBody, Connections, ReceivingBody};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::limits::Limiter;

/// Request bodies above this get a 413 (a 100,000-point batch is about 12 MiB of JSON).
pub const BODY_LIMIT: usize = 32 << 20;
/// How long in-flight requests may run after SIGINT/SIGTERM before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Paged downloads (`/logs`, `/metrics`, `/results`, CSV) in progress at once. Each holds the
/// page it is sending (about 1.5 MB of JSON for 8,192 logs) for as long as its client takes to
/// read it, so this bounds what slow downloaders hold together; past it a 503.
pub const MAX_DOWNLOADS: usize = 64;
/// How long a client has to send a request's line and headers, counted from when the
/// connection opens or its previous response ends: so also how long a keep-alive connection
/// may sit idle. Past it the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of request line and headers: hyper's read and write buffers, so what one
/// connection holds in each direction. Room for hyper's own 64 KiB limit on the URL.
pub const MAX_HEAD: usize = 64 << 10;
/// Pending connections the kernel may queue (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 1024;
/// How often API-key last-use times gathered in memory are saved.
const KEY_USE_SAVE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub auth: Arc<Auth>,
    pub config: Arc<ServeConfig>,
    pub limits: Arc<Limiter>,
    pub live: Arc<crate::live::Hub>,
    /// Bytes of request bodies being read now, over all requests (see `api::read_body`).
    pub bodies: Arc<crate::budget::ByteBudget>,
    /// Places for paged downloads (logs, metrics, results, CSV) in progress; see
    /// [`MAX_DOWNLOADS`].
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// Outgoing mail, when `--smtp-url` is set.
    pub mailer: Option<crate::mail::Mailer>,
    /// Where new artifacts' bytes go as files, when `--artifacts-dir` is set.
    pub artifact_dir: Option<Arc<crate::artifact_files::ArtifactDir>>,
    /// Wakes the retention pass (`crate::retention`) when a policy is set.
    pub retention: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// Where the dashboard lives, for experiment links: `--public-url`, or else the scheme and
    /// Host the request came in on.
    pub fn public_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.clone();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .map(str::to_string)
            .unwrap_or_else(|| self.config.bind.to_string());
        format!("http://{host}")
    }
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .nest(
            crate::mlflow_api::ROOT,
            crate::mlflow_api::router().layer(middleware::from_fn(crate::logging::note_route)),
        )
        .route(
            "/api/2.0/preview/mlflow/{*rest}",
            axum::routing::any(crate::mlflow_api::not_served),
        )
        .route(
            "/api/3.0/mlflow/{*rest}",
            axum::routing::any(crate::mlflow_api::not_served),
        )
        .nest(
            crate::api::ROOT,
            crate::api::router().layer(middleware::from_fn(crate::logging::note_route)),
        )
        .route("/sdk", axum::routing::get(crate::sdk::serve))
        .route("/sdk/", axum::routing::get(crate::sdk::serve))
        .route("/sdk/{*rest}", axum::routing::get(crate::sdk::serve))
        .route("/metrics", axum::routing::get(crate::telemetry::serve))
        .route_layer(middleware::from_fn(crate::logging::note_route))
        .fallback(crate::assets::serve)
        .layer(middleware::from_fn_with_state(state.clone(), check_host));
    if !state.config.cors_origins.is_empty() {
        router = router.layer(cors(&state.config.cors_origins));
    }
    // Outermost: every request gets its line, the refused ones included.
    router
        .layer(middleware::from_fn(crate::logging::log_requests))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ])
        .max_age(Duration::from_secs(3600))
}

/// DNS-rebinding defence: a server bound to loopback answers only requests addressed to a
/// loopback name (or the public URL's host). Otherwise a web page on some evil.example whose
/// name was re-pointed at 127.0.0.1 could read the API from the researcher's own browser.
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.config.bind.ip().is_loopback()
        && let Some(host) = request.headers().get(header::HOST)
    {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(host, state.config.public_url.as_deref()) {
            return Error::MisdirectedRequest(format!(
                "this server is bound to loopback and does not answer for host '{host}'; use localhost, or start it with --public-url"
            ))
            .into_response();
        }
    }
    next.run(request).await
}

fn host_allowed(host: &str, public_url: Option<&str>) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    }
    .to_ascii_lowercase();
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let public = public_url
        .and_then(|u| u.split("://").nth(1))
        .map(|rest| {
            rest.split(['/', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .is_some_and(|public_host| public_host == name);
    loopback || public
}

pub async fn serve(config: ServeConfig) -> Result<()> {
    let mailer = match (&config.smtp_url, &config.mail_from) {
        (Some(relay), Some(from)) => Some(crate::mail::Mailer::new(relay.clone(), from.clone())),
        (None, None) => None,
        _ => {
            return Err(Error::bad_request(
                "--smtp-url and --mail-from go together: give both, or neither",
            ));
        }
    };
    // SIGTERM and SIGINT are ours before any request can be served: a signal that came between
    // the first response and the handlers' registration would end the process without the
    // graceful stop (requests finished, WAL folded).
    let stop = shutdown_signal();
    let postgres = config.db.postgres_url().map(str::to_string);
    // Scheduled backups copy a SQLite file; PostgreSQL has its own tools for that.
    if postgres.is_some() && config.backup_dir.is_some() {
        return Err(Error::bad_request(format!(
            "--backup-dir copies a SQLite database file; {} is PostgreSQL: back it up with pg_dump, or take a SQLite copy with `tora migrate --from URL --to FILE`",
            config.db.shown()
        )));
    }
    // The port first: a server that cannot listen leaves no database file behind.
    let listener = listen(config.bind).map_err(|e| {
        let bind = config.bind;
        let next = std::net::SocketAddr::new(bind.ip(), bind.port().wrapping_add(1).max(1));
        Error::Internal(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{bind} is already in use (another tora serve, or another program); stop it, or pick another port with --bind {next}"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "not allowed to listen on {bind} (ports below 1024 need root); pick another with --bind {next}"
            ),
            _ => format!("cannot listen on {bind}: {e}"),
        })
    })?;
    // Before opening: a second server on the same file stops here, changing nothing.
    let mut lock_lost = None;
    let db = match &postgres {
        // Shared with other servers on the same database; a migrate excludes them all.
        Some(url) => {
            lock_lost = Some(crate::db::hold_postgres_for_serving(
                url,
                &config.db.shown(),
            )?);
            Db::open_postgres(url)?
        }
        None => {
            crate::db::hold_for_serving(&config.db.path)?;
            Db::open(&config.db.path)?
        }
    };
    // Uploads a stopped server left half-written: never published, so nobody saw them.
    db.write(|tx| crate::store::artifacts::discard_all_staged(tx))
        .await?;
    let artifact_dir = match &config.artifacts_dir {
        Some(dir) => Some(crate::artifact_files::ArtifactDir::open(dir)?),
        None => None,
    };
    let auth = Auth::load(&db).await?;
    let addr = listener.local_addr()?;
    let state = AppState {
        db: db.clone(),
        auth: auth.clone(),
        config: Arc::new(config),
        limits: Arc::new(Limiter::default()),
        live: Arc::new(crate::live::Hub::default()),
        bodies: crate::budget::ByteBudget::new(crate::api::BODY_BUDGET),
        downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
        mailer,
        artifact_dir: artifact_dir.clone(),
        retention: Arc::new(tokio::sync::Notify::new()),
    };
    if let Some(url) = &postgres {
        crate::fanout::start(url, state.live.clone(), db.clone())?;
    }
    if let Some(dir) = artifact_dir {
        tokio::spawn(dir.sweep_forever(db.clone()));
    }
    // Built before the announcement, so what a reader of the next line measures (start-up time,
    // idle memory) includes the router and its API description.
    let app = router(state.clone());
    // Tests and scripts read this exact first line to find the port.
    println!("listening on http://{addr}");
    // Then what a training script needs, as lines to copy: where the API is, and the SDK.
    let (base, elsewhere) = announced_url(state.config.public_url.as_deref(), addr);
    println!("TORA_BASE_URL={base}/api");
    println!("{}", crate::sdk::pip_command(&base));
    println!(
        "(for training scripts: the API's address, and the SDK from this server; more at {base}/sdk/{elsewhere})"
    );
    let users = db.read(crate::store::users::count).await?;
    if users == 0 {
        println!(
            "no accounts yet: create one with `tora user add EMAIL --db {}` (or sign up at {base}/ unless --signup closed)",
            state.config.db.shown()
        );
    }
    println!(
        "database: {} (schema version {}); tora {}",
        state.config.db.shown(),
        crate::db::SCHEMA_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    // File modes mean nothing for PostgreSQL, whose own roles guard the secret.
    let files = match postgres {
        Some(_) => Vec::new(),
        None => crate::db::readable_by_others(&state.config.db.path),
    };
    for (file, mode) in files {
        println!(
            "warning: {} is readable by other users (mode {mode:o}); it holds the token-signing secret: chmod 600 it",
            file.display()
        );
    }
    let cap = connection_cap(state.config.max_connections);
    let connections = Arc::new(Connections::new(cap));
    println!(
        "limits: {cap} connections, request bodies up to {} MiB ({} MiB being read at once), {} points a batch, {} s a query, {} downloads at once, artifacts up to {} MiB each and {} MiB a workspace",
        BODY_LIMIT >> 20,
        crate::api::BODY_BUDGET >> 20,
        crate::api::logs::MAX_BATCH,
        crate::db::QUERY_BUDGET.as_secs(),
        MAX_DOWNLOADS,
        state.config.max_artifact_size >> 20,
        state.config.max_workspace_artifacts >> 20,
    );
    println!(
        "log: {} on stderr, {}; metrics: GET /metrics from this machine{}",
        state.config.log_format.name(),
        if std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty()) {
            "filtered by RUST_LOG".to_string()
        } else {
            format!("{} and above", state.config.log_level.directive())
        },
        if state.config.metrics_token.is_some() {
            " or with the --metrics-token"
        } else {
            ""
        }
    );
    match &state.mailer {
        Some(m) => println!(
            "mail: through {} as {} (signup confirmations, invitation links)",
            m.relay(),
            m.sender()
        ),
        None => println!("mail: off (invitations travel as links their OWNER shares)"),
    }
    let saver = tokio::spawn(save_key_uses_periodically(state.clone()));
    // Only a SQLite file has a WAL to fold.
    let folder = (!db.is_postgres()).then(|| tokio::spawn(crate::wal::fold_when_idle(db.clone())));
    let expiry = tokio::spawn(crate::retention::apply_forever(
        db.clone(),
        state.live.clone(),
        state.retention.clone(),
    ));
    let backups = match backup_schedule(&state.config) {
        Some(schedule) => {
            crate::backups::prepare(&schedule)?;
            println!(
                "backups: every {} into {}, keeping {}",
                describe(schedule.every),
                schedule.dir.display(),
                schedule.keep
            );
            Some(tokio::spawn(crate::backups::run_forever(
                db.path().to_path_buf(),
                schedule,
            )))
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let accepting = tokio::spawn(accept(listener, app, connections.clone(), stop_rx));
    // A signal, or (PostgreSQL) the serving lock lost to a migrate: serving on beside a copy
    // in progress could write where it is not copied, so the server stops.
    let mut ended_by = None;
    tokio::select! {
        _ = stop => {}
        Ok(reason) = async { match lock_lost { Some(rx) => rx.await, None => std::future::pending().await } } => {
            eprintln!("{reason}: stopping, not to serve beside a copy in progress");
            ended_by = Some(reason);
        }
    }
    println!("shutting down: finishing requests in flight");
    // Live streams never finish on their own: end them, so shutdown waits only for real work.
    state.live.shut_down();
    let _ = stop_tx.send(true);
    let _ = accepting.await;
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.all_closed())
        .await
        .is_err()
    {
        eprintln!("requests still running after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    saver.abort();
    if let Some(task) = folder {
        task.abort();
    }
    expiry.abort();
    if let Some(task) = backups {
        task.abort();
    }
    save_key_uses(&state).await;
    // Fold the WAL into the main file, so the .db file alone is the complete state. If that
    // fails the data is still safe in the -wal file, but the .db file alone is not a backup.
    match tokio::task::spawn_blocking(move || db.checkpoint()).await {
        Ok(Ok(())) if ended_by.is_none() => println!("stopped cleanly"),
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(Error::Internal(format!(
                "final checkpoint failed ({e}); the latest changes are in the -wal file beside the database, which must be kept with it"
            )));
        }
        Err(e) => return Err(Error::Internal(format!("final checkpoint: {e}"))),
    }
    match ended_by {
        Some(reason) => Err(Error::Conflict(format!("stopped: {reason}"))),
        None => Ok(()),
    }
}

fn backup_schedule(config: &ServeConfig) -> Option<crate::backups::Schedule> {
    Some(crate::backups::Schedule {
        dir: config.backup_dir.clone()?,
        every: config.backup_every,
        keep: config.backup_keep as usize,
        artifacts_dir: config.artifacts_dir.clone(),
    })
}

/// An interval as its largest whole unit: 1d, 6h, 30m, 45s.
fn describe(every: std::time::Duration) -> String {
    let s = every.as_secs();
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .iter()
        .find(|(unit, _)| s.is_multiple_of(*unit))
        .map_or_else(
            || format!("{s}s"),
            |(unit, name)| format!("{}{name}", s / unit),
        )
}

/// The URL to tell people: `--public-url`, else the address listened on, with a loopback
/// address for an unspecified one (0.0.0.0), plus a note that other machines need this one's
/// name there.
fn announced_url(public_url: Option<&str>, addr: std::net::SocketAddr) -> (String, &'static str) {
    if let Some(url) = public_url {
        return (url.to_string(), "");
    }
    if addr.ip().is_unspecified() {
        let local = if addr.is_ipv4() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        let local = std::net::SocketAddr::new(local, addr.port());
        return (
            format!("http://{local}"),
            "; from other machines use this one's name or address, or set --public-url",
        );
    }
    (format!("http://{addr}"), "")
}

/// The connection cap in force: `--max-connections`, lowered to what the open-file limit
/// allows once it has been raised as far as it goes.
fn connection_cap(wanted: u32) -> usize {
    let (soft, hard) = crate::connections::raise_open_files();
    let wanted = wanted as usize;
    let Some(soft) = soft else {
        return wanted;
    };
    let room = soft.saturating_sub(crate::connections::RESERVED_FILES) as usize;
    if room < wanted {
        let hard = hard.map_or("unlimited".to_string(), |h| h.to_string());
        println!(
            "open files: soft limit {soft}, hard limit {hard}: at most {room} connections instead of {wanted} (raise the hard limit, e.g. `ulimit -Hn`, LimitNOFILE=)"
        );
        return room.max(1);
    }
    wanted
}

/// Accepts connections until `stop`, each served on its own task with the timeouts and the
/// connection cap in force.
async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    connections: Arc<Connections>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let full = crate::connections::full_response();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors or memory: say so, and give closing connections a
                // moment instead of spinning on the same error.
                eprintln!("warning: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = connections.admit() else {
            // A fresh socket's send buffer is empty, so this never waits.
            let _ = stream.try_write(&full);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            connections.clone(),
            slot,
            stop.clone(),
        ));
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    connections: Arc<Connections>,
    slot: Arc<crate::connections::Slot>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tracker = connections.clone();
    let this = slot.clone();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let busy = tracker.begin(&this);
        let app = app.clone();
        let slot = this.clone();
        async move {
            use tower::ServiceExt;
            let request =
                request.map(|body| ReceivingBody::wrap(axum::body::Body::new(body), &slot));
            let response = app.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| BusyBody::wrap(body, busy)))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    let stalled = async {
        let mut tick = tokio::time::interval(crate::connections::WRITE_STALL / 6);
        loop {
            tick.tick().await;
            if connections.stalled(&slot) {
                return;
            }
        }
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        // Dropping the connection closes the socket.
        _ = slot.evicted.notified() => {}
        _ = stalled => {}
        _ = async { drop(stop.wait_for(|stopped| *stopped).await) } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
    connections.release(&slot);
}

/// Binds with a deep accept queue: after a restart every open dashboard's EventSource
/// reconnects at once, and with the usual 128 the kernel drops SYNs (a 1 s client stall each).
/// SO_REUSEADDR as tokio's own `bind` sets it, so a restart can take the same port at once.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn save_key_uses_periodically(state: AppState) {
    let mut tick = tokio::time::interval(KEY_USE_SAVE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        save_key_uses(&state).await;
    }
}

async fn save_key_uses(state: &AppState) {
    let uses = state.auth.take_key_uses();
    if uses.is_empty() {
        return;
    }
    if let Err(e) = state
        .db
        .write(move |tx| crate::store::api_keys::save_last_used(tx, &uses))
        .await
    {
        eprintln!("error: saving API key last-use times: {e}");
    }
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are registered here, when called,
/// not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                _ = received(term.as_mut()) => {},
                _ = received(int.as_mut()) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next delivery of a signal; never, for one whose handler could not be registered.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_loopback_names_and_the_public_host_are_answered() {
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "app.localhost",
            "127.0.0.1",
        ] {
            assert!(host_allowed(ok, None), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.5:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!host_allowed(bad, None), "{bad}");
        }
        assert!(host_allowed("tora.lab:8080", Some("http://tora.lab:8080")));
        assert!(!host_allowed(
            "other.lab:8080",
            Some("http://tora.lab:8080")
        ));
    }
}
