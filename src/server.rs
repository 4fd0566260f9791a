//! The running server: shared state, the router, and `serve` (bind, announce, shut down cleanly).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;

use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::error::{Error, Result};

/// Request bodies above this get a 413 (a 100,000-point batch is about 12 MiB of JSON).
pub const BODY_LIMIT: usize = 32 << 20;
/// How long in-flight requests may run after SIGINT/SIGTERM before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often API-key last-use times gathered in memory are saved.
const KEY_USE_SAVE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub auth: Arc<Auth>,
    pub config: Arc<ServeConfig>,
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
    Router::new()
        .nest("/api", crate::api::router())
        .fallback(crate::assets::serve)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

pub async fn serve(config: ServeConfig) -> Result<()> {
    let db = Db::open(&config.db.path)?;
    let auth = Auth::load(&db).await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.bind)))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this exact first line to find the port.
    println!("listening on http://{addr}");
    let users = db.read(crate::store::users::count).await?;
    if users == 0 {
        println!("no accounts yet: open http://{addr}/ to sign up, or POST /api/signup");
    }
    println!("database: {}", config.db.path.display());

    let state = AppState {
        db: db.clone(),
        auth: auth.clone(),
        config: Arc::new(config),
    };
    let saver = tokio::spawn(save_key_uses_periodically(state.clone()));

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        shutdown_signal().await;
        println!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
    });
    let grace = async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.map_err(|e| Error::Internal(format!("server: {e}")))?,
        _ = grace => eprintln!("requests still running after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    saver.abort();
    save_key_uses(&state).await;
    // Fold the WAL into the main file, so the .db file alone is the complete state.
    tokio::task::spawn_blocking(move || db.checkpoint())
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    println!("stopped cleanly");
    Ok(())
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
