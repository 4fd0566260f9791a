//! The server's log: `tracing` to stderr as text or JSON lines, and one line per request
//! (method, route template, status, time to the response's head and to its last byte, user id,
//! bytes in and out), written when the response is done. A request line never carries a token,
//! key, password, body, header or query string: only the route template, which the routers
//! declare, so `/api/experiments/{id}` and never the path as sent.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use clap::ValueEnum;
use http_body::Frame;
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl LogLevel {
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Installs the log for `tora serve`. `RUST_LOG`, when set, is the filter (tracing's directive
/// syntax: `tora=debug,tora::request=warn`); otherwise `level`, for Tora's own events only
/// (the libraries' chatter stays at warn).
pub fn init(format: LogFormat, level: LogLevel) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec.trim())
            .map_err(|e| Error::bad_request(format!("RUST_LOG '{spec}' is not a filter: {e}")))?,
        _ => EnvFilter::new(format!("warn,tora={}", level.directive())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A second init in one process (tests) keeps the first: not an error worth stopping for.
    let _ = installed;
    Ok(())
}

/// What the request line learns while the request is handled: the route template (set by the
/// routers' own layer, after routing) and the caller (set by authentication).
#[derive(Default)]
pub struct RequestNote {
    route: Mutex<Option<String>>,
    user: Mutex<Option<String>>,
}

impl RequestNote {
    pub fn set_user(&self, id: &str) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }

    fn set_route(&self, route: String) {
        *self.route.lock().unwrap_or_else(|p| p.into_inner()) = Some(route);
    }
}

/// Notes the route template of a request a router matched (a layer on each router, so it runs
/// after routing); a nested router's layer runs after the outer one's, so the most specific
/// template wins.
pub async fn note_route(request: Request, next: Next) -> Response {
    if let (Some(note), Some(matched)) = (
        request.extensions().get::<Arc<RequestNote>>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        note.set_route(matched.as_str().to_string());
    }
    next.run(request).await
}

/// The outermost layer: counts the request's bytes and, once its response is sent (or
/// abandoned), writes its line and its counts (`telemetry`).
pub async fn log_requests(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let api = request.uri().path().starts_with("/api/");
    let note = Arc::new(RequestNote::default());
    request.extensions_mut().insert(note.clone());
    let received = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            bytes: received.clone(),
            _line: None,
        })
    });
    let response = next.run(request).await;
    let sent = Arc::new(AtomicU64::new(0));
    let line = Line {
        started,
        head: started.elapsed(),
        method,
        status: response.status().as_u16(),
        note,
        received,
        sent: sent.clone(),
        api,
    };
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            bytes: sent,
            _line: Some(line),
        })
    })
}

/// A body that counts its bytes as they pass: a request's as the handler reads them, a
/// response's as hyper sends them. A response's carries its request's line, written when the
/// body ends or is dropped (a client that went away).
struct Counted {
    inner: Body,
    bytes: Arc<AtomicU64>,
    /// Held for its `Drop`, which writes the line.
    _line: Option<Line>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct Line {
    started: Instant,
    head: Duration,
    method: String,
    status: u16,
    note: Arc<RequestNote>,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    /// The path is under /api/.
    api: bool,
}

impl Drop for Line {
    fn drop(&mut self) {
        let route = self
            .note
            .route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            // No router matched: under /api a 404, elsewhere the dashboard's files and pages.
            .unwrap_or_else(|| if self.api { "unmatched" } else { "dashboard" }.to_string());
        let user = self
            .note
            .user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        crate::telemetry::note_request(&route, &self.method, self.status, self.head, received);
        crate::telemetry::note_bytes(received, sent);
        tracing::info!(
            target: "tora::request",
            method = %self.method,
            route = %route,
            status = self.status,
            ms = round_ms(self.head),
            done_ms = round_ms(self.started.elapsed()),
            user = user.as_deref().unwrap_or("-"),
            bytes_in = received,
            bytes_out = sent,
            "request"
        );
    }
}

/// Milliseconds to a hundredth: finer is noise in a log.
fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}
