//! Who is connected: the cap on open connections, which connection makes room for a newcomer,
//! and the open-file limit those connections need. HTTP itself is hyper's (see `server.rs`).
//!
//! A connection is *busy* while a request on it has not finished its response (a live stream
//! stays busy for as long as it runs) and *idle* otherwise: not yet sent a request, trickling
//! its headers, or between requests of a keep-alive. At the cap, a newcomer takes the place of
//! the connection idle the longest, so sockets that open and send nothing can never lock
//! everyone else out. A request still sending its body counts as idle for this: a client that
//! trickles bodies cannot hold places either. Only when every connection is busy does the
//! newcomer get a 503.
//!
//! A busy connection whose client has stopped reading (the response body has a chunk ready and
//! hyper has not asked for the next one for [`WRITE_STALL`]) is closed, so a client that
//! never reads cannot keep a place, or what its response holds, for good.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use http_body::Frame;
use tokio::sync::{Notify, watch};

/// How long a response may wait for its client to take the next bytes before the connection
/// is closed.
pub const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Descriptors kept back from the connection cap for the database files, the WAL and the
/// blocking threads' work.
pub const RESERVED_FILES: u64 = 64;

/// The answer to a connection that finds every place taken by a busy one.
pub fn full_response() -> Vec<u8> {
    crate::error::Error::Unavailable {
        message: "the server is at its connection limit; try again in a moment".into(),
        retry_after: 1,
    }
    .raw_response()
}

pub struct Connections {
    max: usize,
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    /// The number of open connections, watched by shutdown to know when all are gone.
    count: watch::Sender<usize>,
}

/// One open connection's place.
pub struct Slot {
    id: u64,
    /// Requests on this connection whose responses have not finished.
    busy: AtomicUsize,
    /// Of those, the ones whose request bodies have not finished arriving.
    receiving: AtomicUsize,
    /// Milliseconds since the server started at which the connection last became idle.
    idle_since: AtomicU64,
    /// When the response body last handed hyper a chunk that hyper has not yet followed with a
    /// request for the next one (ms since start, plus one); 0 while nothing waits on the client.
    waiting_since: AtomicU64,
    /// Told when the connection must close to make room for a newcomer.
    pub evicted: Notify,
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections {
            max: max.max(1),
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            count: watch::channel(0).0,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A place for a new connection: a free one, or the place of the connection idle the
    /// longest (which is told to close). None when every connection is busy.
    pub fn admit(&self) -> Option<Arc<Slot>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max {
            // A linear scan, only at the cap: a few microseconds for thousands of connections.
            let oldest = open
                .values()
                .filter(|s| {
                    s.busy.load(Ordering::Acquire) == 0 || s.receiving.load(Ordering::Acquire) > 0
                })
                .min_by_key(|s| s.idle_since.load(Ordering::Relaxed))?
                .id;
            if let Some(slot) = open.remove(&oldest) {
                slot.evicted.notify_one();
            }
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            waiting_since: AtomicU64::new(0),
            evicted: Notify::new(),
        });
        open.insert(slot.id, slot.clone());
        self.count.send_replace(open.len());
        Some(slot)
    }

    /// Gives the place back when the connection has closed.
    pub fn release(&self, slot: &Slot) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&slot.id);
        self.count.send_replace(open.len());
    }

    /// Marks a request as started on `slot`; the guard, carried by the response body, marks it
    /// finished when the body is done or dropped.
    pub fn begin(self: &Arc<Self>, slot: &Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            connections: self.clone(),
            slot: slot.clone(),
        }
    }

    /// Whether `slot`'s client has left a response chunk untaken for longer than
    /// [`WRITE_STALL`].
    pub fn stalled(&self, slot: &Slot) -> bool {
        let since = slot.waiting_since.load(Ordering::Relaxed);
        since != 0 && self.now_ms().saturating_sub(since - 1) > WRITE_STALL.as_millis() as u64
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

pub struct Busy {
    connections: Arc<Connections>,
    slot: Arc<Slot>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        // A body hyper never asked to finish (it knew the length) leaves no wait behind.
        self.slot.waiting_since.store(0, Ordering::Relaxed);
        self.slot
            .idle_since
            .store(self.connections.now_ms(), Ordering::Relaxed);
        self.slot.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that marks its connection as still receiving until the body has ended.
pub struct ReceivingBody {
    inner: Body,
    slot: Option<Arc<Slot>>,
}

impl ReceivingBody {
    /// `inner` as a body that counts as arriving on `slot` until it ends (or is dropped).
    pub fn wrap(inner: Body, slot: &Arc<Slot>) -> Body {
        if http_body::Body::is_end_stream(&inner) {
            return inner;
        }
        slot.receiving.fetch_add(1, Ordering::AcqRel);
        Body::new(ReceivingBody {
            inner,
            slot: Some(slot.clone()),
        })
    }

    fn done(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.receiving.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for ReceivingBody {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for ReceivingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || self.inner.is_end_stream()
        {
            self.done();
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

/// A response body that keeps its connection marked busy until it is finished or dropped.
pub struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl BusyBody {
    pub fn wrap(inner: Body, busy: Busy) -> Body {
        Body::new(BusyBody { inner, _busy: busy })
    }
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // Hyper asks for the next chunk once it has room for it: a chunk handed over starts
        // the wait on the client, the next ask ends it.
        let waiting = match &polled {
            Poll::Ready(Some(Ok(_))) => self._busy.connections.now_ms() + 1,
            _ => 0,
        };
        self._busy
            .slot
            .waiting_since
            .store(waiting, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard limit (the usual soft 1,024 is what a
/// thousand idle sockets used to exhaust), and returns (soft, hard) as they are afterwards.
pub fn raise_open_files() -> (Option<u64>, Option<u64>) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let now = getrlimit(Resource::Nofile);
        if now.current != now.maximum {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: now.maximum,
                    maximum: now.maximum,
                },
            );
        }
        let after = getrlimit(Resource::Nofile);
        (after.current, after.maximum)
    }
    #[cfg(not(unix))]
    {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_makes_room_and_busy_ones_never_do() {
        let c = Arc::new(Connections::new(2));
        let a = c.admit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = c.admit().unwrap();
        // Both idle: the newcomer takes the place of `a`, idle the longest.
        let third = c.admit().unwrap();
        assert_eq!(*c.count.borrow(), 2);
        assert!(!c.open.lock().unwrap().contains_key(&a.id));
        // `b` and `third` busy: no room for anyone.
        let _b = c.begin(&b);
        let busy_third = c.begin(&third);
        assert!(c.admit().is_none());
        // A finished response makes its connection idle, so evictable, again.
        drop(busy_third);
        let fourth = c.admit().unwrap();
        assert!(!c.open.lock().unwrap().contains_key(&third.id));
        // A request still sending its body can be replaced; once the body is in, it cannot.
        let _sending = c.begin(&fourth);
        let never_ends = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let body = ReceivingBody::wrap(Body::from_stream(never_ends), &fourth);
        assert_eq!(fourth.receiving.load(Ordering::Acquire), 1);
        let fifth = c.admit().unwrap();
        assert!(!c.open.lock().unwrap().contains_key(&fourth.id));
        drop(body);
        assert_eq!(fourth.receiving.load(Ordering::Acquire), 0);
        c.release(&fifth);
        c.release(&b);
        assert_eq!(*c.count.borrow(), 0);
    }

    #[test]
    fn the_open_file_limit_ends_at_the_hard_limit() {
        let (soft, hard) = raise_open_files();
        assert_eq!(soft, hard);
    }

    #[test]
    fn the_full_response_is_well_formed() {
        let bytes = full_response();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 503);
    }
}
