//! Live updates: every open stream of an experiment has a queue here, and ingest appends each
//! committed batch to the queue of every stream of its experiment. A queue holds at most
//! [`MAX_PENDING`] bytes of batches its stream has not sent yet; a stream whose client reads
//! slower than its run is written is dropped (its response ends, it reconnects with its cursor
//! and catches up from the database), so a slow or stalled client never grows server memory.
//! All queues together hold at most [`MAX_PENDING_TOTAL`] bytes of batches (a batch queued for
//! many streams counts once); past it, every stream that is behind is dropped the same way, so
//! many slow streams on many runs cannot add up either.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::store::logs::Recent;

/// The most bytes of not-yet-sent batches (their event JSON and their points) one stream may
/// hold. A queue always takes one batch, however large (a batch is at most 100,000 points), so
/// a stream holds at most this plus one batch.
pub const MAX_PENDING: usize = 8 << 20;
/// The most bytes of batches all queues together hold, beyond the batch each caught-up stream
/// is about to send.
pub const MAX_PENDING_TOTAL: usize = 64 << 20;

/// A committed batch as every watcher receives it: the points, and the JSON of a `logs` event
/// carrying all of them, built once however many streams are open (a stream that has already
/// seen some of the points, after replaying from the database, builds its own from `points`).
pub struct Published {
    pub points: Vec<Recent>,
    pub json: String,
    /// The queues holding this batch now: it counts toward the hub's total while any does.
    holders: AtomicUsize,
}

impl Published {
    pub fn new(points: Vec<Recent>, json: String) -> Published {
        Published {
            points,
            json,
            holders: AtomicUsize::new(0),
        }
    }

    /// What holding the batch costs a queue: the JSON and the points (the names are shared).
    fn bytes(&self) -> usize {
        self.json.len() + self.points.len() * std::mem::size_of::<Recent>()
    }
}

pub type Batch = Arc<Published>;

struct Queue {
    batches: VecDeque<Batch>,
    bytes: usize,
    /// False once the stream is dropped (too far behind, its client gone, or shutdown).
    open: bool,
}

struct Watcher {
    queue: Mutex<Queue>,
    ready: Notify,
    /// The hub's total of bytes held by all queues.
    total: Arc<AtomicUsize>,
}

impl Watcher {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, batch: &Batch) {
        if batch.holders.fetch_add(1, Ordering::AcqRel) == 0 {
            self.total.fetch_add(batch.bytes(), Ordering::AcqRel);
        }
    }

    fn release(&self, batch: &Batch) {
        if batch.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.total.fetch_sub(batch.bytes(), Ordering::AcqRel);
        }
    }

    fn close(&self) {
        let mut q = self.queue();
        q.open = false;
        let dropped: Vec<Batch> = q.batches.drain(..).collect();
        q.bytes = 0;
        drop(q);
        for b in &dropped {
            self.release(b);
        }
        self.ready.notify_one();
    }
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Bytes of batches held by all queues together (each batch once).
    total: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Inner {
    watchers: HashMap<i64, Vec<Arc<Watcher>>>,
    shut: bool,
}

/// One stream's end of its queue. Dropping it (the response went away) closes the queue.
pub struct Receiver {
    watcher: Arc<Watcher>,
}

impl Receiver {
    /// The next batch, or None once the stream is dropped: it fell [`MAX_PENDING`] behind, or
    /// the server is shutting down.
    pub async fn recv(&self) -> Option<Batch> {
        loop {
            {
                let mut q = self.watcher.queue();
                if let Some(b) = q.batches.pop_front() {
                    q.bytes = q.bytes.saturating_sub(b.bytes());
                    drop(q);
                    self.watcher.release(&b);
                    return Some(b);
                }
                if !q.open {
                    return None;
                }
            }
            // notify_one keeps a permit when nobody waits, so a batch queued between the look
            // above and this wait is not missed.
            self.watcher.ready.notified().await;
        }
    }

    /// False once the stream is dropped; a stream still replaying from the database checks.
    pub fn is_open(&self) -> bool {
        self.watcher.queue().open
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.watcher.close();
    }
}

impl Hub {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver for the batches of experiment `rowid` committed from now on (already closed
    /// once the server is shutting down).
    pub fn subscribe(&self, rowid: i64) -> Receiver {
        let mut inner = self.inner();
        let watcher = Arc::new(Watcher {
            queue: Mutex::new(Queue {
                batches: VecDeque::new(),
                bytes: 0,
                open: !inner.shut,
            }),
            ready: Notify::new(),
            total: self.total.clone(),
        });
        if !inner.shut {
            let list = inner.watchers.entry(rowid).or_default();
            // Streams that ended since the last batch leave here too, so a run nobody writes to
            // does not collect the streams that came and went.
            list.retain(|w| w.queue().open);
            list.push(watcher.clone());
        }
        Receiver { watcher }
    }

    /// Whether anyone watches `rowid`: ingest builds a live batch only then.
    pub fn watched(&self, rowid: i64) -> bool {
        let mut inner = self.inner();
        let Some(list) = inner.watchers.get_mut(&rowid) else {
            return false;
        };
        list.retain(|w| w.queue().open);
        if list.is_empty() {
            inner.watchers.remove(&rowid);
            return false;
        }
        true
    }

    /// Queues `batch` for every stream of `rowid`, dropping each stream that is behind if the
    /// batch would put it past [`MAX_PENDING`] or all queues past [`MAX_PENDING_TOTAL`]. A
    /// stream that has sent everything always takes the batch.
    pub fn publish(&self, rowid: i64, batch: Published) {
        let batch = Arc::new(batch);
        let bytes = batch.bytes();
        let crowded = self.total.load(Ordering::Acquire) + bytes > MAX_PENDING_TOTAL;
        let mut inner = self.inner();
        let Some(list) = inner.watchers.get_mut(&rowid) else {
            return;
        };
        list.retain(|w| {
            let mut q = w.queue();
            if !q.open {
                return false;
            }
            if !q.batches.is_empty() && (crowded || q.bytes + bytes > MAX_PENDING) {
                drop(q);
                w.close();
                return false;
            }
            // Counted before it can be taken, so a quick receiver never releases it first.
            w.hold(&batch);
            q.batches.push_back(batch.clone());
            q.bytes += bytes;
            drop(q);
            w.ready.notify_one();
            true
        });
        if list.is_empty() {
            inner.watchers.remove(&rowid);
        }
    }

    /// Whether [`Hub::shut_down`] was called.
    pub fn is_shut(&self) -> bool {
        self.inner().shut
    }

    /// Ends every open stream now (their responses finish, so a graceful shutdown need not wait
    /// for them) and every stream opened from now on at once.
    pub fn shut_down(&self) {
        let mut inner = self.inner();
        inner.shut = true;
        for (_, list) in inner.watchers.drain() {
            for w in list {
                w.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::Kind;

    fn batch(points: usize, json: usize) -> Published {
        let p = Recent {
            seq: 1,
            name: "loss".into(),
            kind: Kind::Metric,
            step: Some(0),
            value: 0.0,
            created_at: 0,
        };
        Published::new(vec![p; points], "x".repeat(json))
    }

    #[tokio::test]
    async fn streams_behind_on_many_runs_cannot_add_up_past_the_total() {
        let hub = Hub::default();
        // Stalled streams on 40 runs, each fed 4 MiB: under the per-stream bound, but 160 MiB
        // in all. Once the total is reached, streams that are behind are dropped.
        let stalled: Vec<Receiver> = (0..40).map(|run| hub.subscribe(run)).collect();
        for run in 0..40 {
            for _ in 0..4 {
                hub.publish(run, batch(0, 1 << 20));
            }
        }
        let held = hub.total.load(Ordering::Acquire);
        assert!(held <= MAX_PENDING_TOTAL, "{held} bytes held");
        let open = stalled.iter().filter(|r| r.is_open()).count();
        assert!(open < 40 && open > 0, "{open} streams open");
        // A batch shared by many queues counts once, and leaves the total once taken by all.
        let hub = Hub::default();
        let viewers: Vec<Receiver> = (0..100).map(|_| hub.subscribe(7)).collect();
        hub.publish(7, batch(0, 1 << 20));
        assert_eq!(hub.total.load(Ordering::Acquire), 1 << 20);
        for v in &viewers {
            assert!(v.recv().await.is_some());
        }
        assert_eq!(hub.total.load(Ordering::Acquire), 0);
        drop(stalled);
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_by_the_bound_is_dropped_not_grown() {
        let hub = Hub::default();
        let slow = hub.subscribe(1);
        let fast = hub.subscribe(1);
        let mut held = 0;
        while held <= MAX_PENDING {
            hub.publish(1, batch(100, 100_000));
            held += 100_000 + 100 * std::mem::size_of::<Recent>();
            assert!(fast.recv().await.is_some());
        }
        assert!(!slow.is_open(), "past the bound");
        assert_eq!(slow.watcher.queue().bytes, 0, "its batches are freed");
        assert!(slow.recv().await.is_none());
        assert!(fast.is_open() && hub.watched(1));
        drop(fast);
        assert!(!hub.watched(1), "a dropped receiver leaves");
        for _ in 0..1000 {
            drop(hub.subscribe(2));
        }
        let _open = hub.subscribe(2);
        assert_eq!(
            hub.inner().watchers[&2].len(),
            1,
            "streams that came and went are gone"
        );
    }

    #[tokio::test]
    async fn one_batch_larger_than_the_bound_still_gets_through() {
        let hub = Hub::default();
        let rx = hub.subscribe(1);
        hub.publish(1, batch(10, MAX_PENDING * 2));
        assert!(rx.recv().await.is_some());
        assert!(rx.is_open());
    }

    #[tokio::test]
    async fn shutting_down_ends_open_streams_and_later_ones() {
        let hub = Arc::new(Hub::default());
        let rx = hub.subscribe(1);
        let waiting = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::task::yield_now().await;
        hub.shut_down();
        assert!(waiting.await.unwrap(), "the waiting stream ends");
        let late = hub.subscribe(1);
        assert!(!late.is_open() && hub.is_shut());
        assert!(late.recv().await.is_none());
        assert!(!hub.watched(1));
    }
}
