//! Live updates: every open stream has a queue here. Ingest appends each committed batch to the
//! queue of every stream of its experiment; changes to runs (created, changed, moved, deleted,
//! their progress) go to the queue of every stream of their workspace.
//!
//! An experiment stream's queue holds at most [`MAX_PENDING`] bytes of batches its stream has
//! not sent yet; a stream whose client reads slower than its run is written is dropped (its
//! response ends, it reconnects with its cursor and catches up from the database), so a slow or
//! stalled client never grows server memory. A workspace stream's queue holds at most
//! [`WORKSPACE_PENDING`] bytes and [`WORKSPACE_PENDING_EVENTS`] events; past either it is
//! dropped the same way (its client reconnects and fetches the table again: there is no
//! replay). All queues of both kinds together hold at most [`MAX_PENDING_TOTAL`] bytes (an item
//! queued for many streams counts once); past it, every stream that is behind is dropped, so
//! many slow streams on many runs cannot add up either.
//!
//! Progress (the last values a run's batches stored) is coalesced per run: at most one
//! `progress` notice per run every [`PROGRESS_EVERY`], carrying the latest step and value of
//! every series the batches in between touched.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::experiments::Experiment;
use crate::store::logs::Recent;

/// The most bytes of not-yet-sent batches (their event JSON and their points) one experiment
/// stream may hold. A queue always takes one batch, however large (a batch is at most 100,000
/// points), so a stream holds at most this plus one batch.
pub const MAX_PENDING: usize = 8 << 20;
/// The most bytes of not-yet-sent notices one workspace stream may hold (plus one notice,
/// whatever its size, like [`MAX_PENDING`]).
pub const WORKSPACE_PENDING: usize = 4 << 20;
/// The most notices one workspace stream may hold unsent: a bulk change of 1,000 runs fits.
pub const WORKSPACE_PENDING_EVENTS: usize = 2_000;
/// The most bytes of batches and notices all queues together hold, beyond the one each
/// caught-up stream is about to send.
pub const MAX_PENDING_TOTAL: usize = 64 << 20;
/// A run's progress goes out at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The most series of each kind (metrics, results) one progress notice names; a batch touching
/// more names fills the notice up to this and marks it `truncated` (the table's next fetch has
/// them all).
pub const MAX_PROGRESS_SERIES: usize = 1_000;

/// What a queue holds: something with a size, counted toward the hub's total while any queue
/// holds it.
pub trait Item: Send + Sync + 'static {
    /// Whether its streams are workspace streams (for `/metrics`' count of open streams).
    const WORKSPACE: bool;
    fn bytes(&self) -> usize;
    /// The queues holding it now.
    fn holders(&self) -> &AtomicUsize;
}

/// A committed batch as every watcher receives it: the points, and the JSON of a `logs` event
/// carrying all of them, built once however many streams are open (a stream that has already
/// seen some of the points, after replaying from the database, builds its own from `points`).
pub struct Published {
    pub points: Vec<Recent>,
    pub json: String,
    /// The run holds points up to this id: the last of `points`, or, for a batch another server
    /// stored (`points` empty, see [`Hub::poke`]), the id its notice named, for the stream to
    /// read from the database.
    pub through: i64,
    holders: AtomicUsize,
}

impl Published {
    pub fn new(points: Vec<Recent>, json: String) -> Published {
        Published {
            through: points.last().map_or(0, |p| p.seq),
            points,
            json,
            holders: AtomicUsize::new(0),
        }
    }
}

/// This process's id among the servers sharing one PostgreSQL database (random per process),
/// so it can tell its own notices from theirs.
pub fn server_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

impl Item for Published {
    const WORKSPACE: bool = false;
    /// What holding the batch costs a queue: the JSON and the points (the names are shared).
    fn bytes(&self) -> usize {
        // A marker from [`Hub::poke`] counts as its own size, so markers are bounded too.
        let marker = if self.points.is_empty() && self.json.is_empty() {
            std::mem::size_of::<Published>()
        } else {
            0
        };
        marker + self.json.len() + self.points.len() * std::mem::size_of::<Recent>()
    }

    fn holders(&self) -> &AtomicUsize {
        &self.holders
    }
}

pub type Batch = Arc<Published>;

/// What a workspace stream is told.
pub enum Change {
    /// A run was created, changed, or moved into the workspace. Each stream renders its JSON
    /// with its own public URL (see [`Notice::rendered`]).
    Run(Box<Experiment>),
    /// A run was deleted or moved out of the workspace.
    Deleted { id: String },
    /// A run's new last values: the JSON of a `progress` event.
    Progress { json: String },
}

/// A change as the streams of a workspace receive it, shared by all of them.
pub struct Notice {
    pub change: Change,
    size: usize,
    holders: AtomicUsize,
    /// A run's JSON as rendered for one public URL (nearly always the only one in use), so the
    /// streams of a workspace serialize it once.
    rendered: Mutex<Option<(String, Arc<str>)>>,
}

impl Notice {
    fn new(change: Change) -> Notice {
        let size = std::mem::size_of::<Notice>()
            + match &change {
                // Counted twice: the run, and its rendered JSON once a stream has built it.
                Change::Run(e) => {
                    2 * (512
                        + e.id.len()
                        + e.workspace_id.len()
                        + e.name.len()
                        + e.description.as_ref().map_or(0, String::len)
                        + e.hyperparams.len()
                        + e.tags.len())
                }
                Change::Deleted { id } => id.len(),
                Change::Progress { json } => json.len(),
            };
        Notice {
            change,
            size,
            holders: AtomicUsize::new(0),
            rendered: Mutex::new(None),
        }
    }

    /// The JSON of a [`Change::Run`] for public URL `base`: built by `render` for the first
    /// stream that asks with this base, and shared from then on.
    pub fn rendered(&self, base: &str, render: impl FnOnce() -> String) -> Arc<str> {
        let mut cache = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((b, json)) = cache.as_ref()
            && b == base
        {
            return json.clone();
        }
        let json: Arc<str> = render().into();
        *cache = Some((base.to_string(), json.clone()));
        json
    }
}

impl Item for Notice {
    const WORKSPACE: bool = true;
    fn bytes(&self) -> usize {
        self.size
    }

    fn holders(&self) -> &AtomicUsize {
        &self.holders
    }
}

/// A run's progress since its last `progress` notice: the last step and value of each series
/// its batches touched.
#[derive(Debug, Clone)]
pub struct Progress {
    pub workspace: String,
    /// The run's public id.
    pub id: String,
    /// When its last batch was stored (unix ms).
    pub active_at: i64,
    /// Metric name -> (step, value) of its last point.
    pub metrics: BTreeMap<Arc<str>, (i64, f64)>,
    /// Result name -> its last value.
    pub results: BTreeMap<Arc<str>, f64>,
    /// More series were touched than [`MAX_PROGRESS_SERIES`].
    pub truncated: bool,
}

impl Progress {
    pub fn new(workspace: String, id: String, active_at: i64) -> Progress {
        Progress {
            workspace,
            id,
            active_at,
            metrics: BTreeMap::new(),
            results: BTreeMap::new(),
            truncated: false,
        }
    }

    /// Records a metric's point. As in the run's summary, the last value is the one at the
    /// highest step (of points at the same step, the later), so a point that goes back in
    /// steps does not replace it.
    pub fn metric(&mut self, name: &Arc<str>, step: i64, value: f64) {
        if let Some(last) = self.metrics.get_mut(name) {
            if step >= last.0 {
                *last = (step, value);
            }
        } else if self.metrics.len() < MAX_PROGRESS_SERIES {
            self.metrics.insert(name.clone(), (step, value));
        } else {
            self.truncated = true;
        }
    }

    /// Whether it names no series.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.results.is_empty()
    }

    /// Records a result's value; a later one replaces an earlier one of the same name.
    pub fn result(&mut self, name: &Arc<str>, value: f64) {
        if self.results.len() < MAX_PROGRESS_SERIES || self.results.contains_key(name) {
            self.results.insert(name.clone(), value);
        } else {
            self.truncated = true;
        }
    }

    /// Folds `newer` (a later batch of the same run) into this.
    fn merge(&mut self, newer: Progress) {
        self.active_at = self.active_at.max(newer.active_at);
        self.truncated |= newer.truncated;
        for (name, (step, value)) in &newer.metrics {
            self.metric(name, *step, *value);
        }
        for (name, value) in &newer.results {
            self.result(name, *value);
        }
    }

    /// The `data` of a `progress` event: `{"id", "active_at", "metrics": {name: {"step",
    /// "value"}}, "results": {name: value}}`, a NaN or infinite value as null.
    pub fn json(&self) -> String {
        let finite = |v: f64| v.is_finite().then_some(v);
        let metrics: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .map(|(name, (step, value))| {
                (
                    name.to_string(),
                    serde_json::json!({"step": step, "value": finite(*value)}),
                )
            })
            .collect();
        let results: serde_json::Map<String, serde_json::Value> = self
            .results
            .iter()
            .map(|(name, value)| (name.to_string(), serde_json::json!(finite(*value))))
            .collect();
        let mut out = serde_json::json!({
            "id": self.id,
            "active_at": crate::time::rfc3339(self.active_at),
            "metrics": metrics,
            "results": results,
        });
        if self.truncated {
            out["truncated"] = serde_json::Value::Bool(true);
        }
        out.to_string()
    }
}

struct Queue<T> {
    items: VecDeque<Arc<T>>,
    bytes: usize,
    /// False once the stream is dropped (too far behind, its client gone, or shutdown).
    open: bool,
}

/// How much one queue may hold unsent: past either, its stream is dropped.
#[derive(Clone, Copy)]
struct Bound {
    bytes: usize,
    items: usize,
}

struct Watcher<T> {
    queue: Mutex<Queue<T>>,
    ready: Notify,
    bound: Bound,
    /// The hub's total of bytes held by all queues.
    total: Arc<AtomicUsize>,
    /// Whose stream it is (workspace streams: ended when they leave the workspace).
    user: Option<String>,
}

impl<T: Item> Watcher<T> {
    fn new(bound: Bound, total: Arc<AtomicUsize>, user: Option<String>, open: bool) -> Self {
        Watcher {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                open,
            }),
            ready: Notify::new(),
            bound,
            total,
            user,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_open(&self) -> bool {
        self.queue().open
    }

    fn hold(&self, item: &Arc<T>) {
        if item.holders().fetch_add(1, Ordering::AcqRel) == 0 {
            self.total.fetch_add(item.bytes(), Ordering::AcqRel);
        }
    }

    fn release(&self, item: &Arc<T>) {
        if item.holders().fetch_sub(1, Ordering::AcqRel) == 1 {
            self.total.fetch_sub(item.bytes(), Ordering::AcqRel);
        }
    }

    /// Queues `item`, or drops the stream if it is behind and the item would put it past its
    /// bound (or `crowded`: all queues past the total). A stream that has sent everything
    /// always takes the item. False once the stream is dropped.
    fn offer(&self, item: &Arc<T>, crowded: bool) -> bool {
        let bytes = item.bytes();
        let mut q = self.queue();
        if !q.open {
            return false;
        }
        if !q.items.is_empty()
            && (crowded || q.bytes + bytes > self.bound.bytes || q.items.len() >= self.bound.items)
        {
            drop(q);
            self.close();
            return false;
        }
        // Counted before it can be taken, so a quick receiver never releases it first.
        self.hold(item);
        q.items.push_back(item.clone());
        q.bytes += bytes;
        drop(q);
        self.ready.notify_one();
        true
    }

    fn close(&self) {
        let mut q = self.queue();
        q.open = false;
        let dropped: Vec<Arc<T>> = q.items.drain(..).collect();
        q.bytes = 0;
        drop(q);
        for item in &dropped {
            self.release(item);
        }
        self.ready.notify_one();
    }
}

/// The open streams, and the runs whose progress is being paced.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Bytes of batches and notices held by all queues together (each once).
    total: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Inner {
    /// Experiment streams by the experiment's rowid.
    watchers: HashMap<i64, Vec<Arc<Watcher<Published>>>>,
    /// Workspace streams by the workspace's id.
    workspaces: HashMap<String, Vec<Arc<Watcher<Notice>>>>,
    /// Runs (by public id) whose last progress notice went out less than [`PROGRESS_EVERY`]
    /// ago, with what came since, to go out when that time is up.
    paced: HashMap<String, Option<Progress>>,
    shut: bool,
}

/// One stream's end of its queue. Dropping it (the response went away) closes the queue.
pub struct Receiver<T: Item = Published> {
    watcher: Arc<Watcher<T>>,
}

impl<T: Item> Receiver<T> {
    /// The next item, or None once the stream is dropped: it fell past its bound, or the
    /// server is shutting down.
    pub async fn recv(&self) -> Option<Arc<T>> {
        loop {
            {
                let mut q = self.watcher.queue();
                if let Some(item) = q.items.pop_front() {
                    q.bytes = q.bytes.saturating_sub(item.bytes());
                    drop(q);
                    self.watcher.release(&item);
                    return Some(item);
                }
                if !q.open {
                    return None;
                }
            }
            // notify_one keeps a permit when nobody waits, so an item queued between the look
            // above and this wait is not missed.
            self.watcher.ready.notified().await;
        }
    }

    /// False once the stream is dropped; a stream still replaying from the database checks.
    pub fn is_open(&self) -> bool {
        self.watcher.is_open()
    }
}

impl<T: Item> Receiver<T> {
    fn new(watcher: Arc<Watcher<T>>) -> Receiver<T> {
        crate::telemetry::note_stream(T::WORKSPACE, 1);
        Receiver { watcher }
    }
}

impl<T: Item> Drop for Receiver<T> {
    fn drop(&mut self) {
        crate::telemetry::note_stream(T::WORKSPACE, -1);
        self.watcher.close();
    }
}

/// Streams that ended leave `list`, so a run or workspace nobody changes does not collect the
/// streams that came and went.
fn prune<T: Item>(list: &mut Vec<Arc<Watcher<T>>>) {
    list.retain(|w| w.is_open());
}

impl Hub {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn crowded(&self, bytes: usize) -> bool {
        self.total.load(Ordering::Acquire) + bytes > MAX_PENDING_TOTAL
    }

    /// A receiver for the batches of experiment `rowid` committed from now on (already closed
    /// once the server is shutting down).
    pub fn subscribe(&self, rowid: i64) -> Receiver {
        let mut inner = self.inner();
        let bound = Bound {
            bytes: MAX_PENDING,
            items: usize::MAX,
        };
        let watcher = Arc::new(Watcher::new(bound, self.total.clone(), None, !inner.shut));
        if !inner.shut {
            let list = inner.watchers.entry(rowid).or_default();
            prune(list);
            list.push(watcher.clone());
        }
        Receiver::new(watcher)
    }

    /// Whether anyone watches `rowid`: ingest builds a live batch only then.
    pub fn watched(&self, rowid: i64) -> bool {
        let mut inner = self.inner();
        let Some(list) = inner.watchers.get_mut(&rowid) else {
            return false;
        };
        prune(list);
        if list.is_empty() {
            inner.watchers.remove(&rowid);
            return false;
        }
        true
    }

    /// Tells every stream of `rowid` that the run holds points up to `seq` (another server
    /// stored them): each reads what it has not sent from the database, after its own cursor,
    /// so a point goes out once. Queued like a batch (small, and bounded the same way).
    pub fn poke(&self, rowid: i64, seq: i64) {
        let mut marker = Published::new(Vec::new(), String::new());
        marker.through = seq;
        self.publish(rowid, marker);
    }

    /// Ends every open stream, of both kinds (experiment streams reconnect with their cursor
    /// and catch up from the database; workspace streams fetch their table again): for when
    /// notices from other servers may have been missed.
    pub fn end_streams(&self) {
        close_all(&mut self.inner());
    }

    /// Queues `batch` for every stream of `rowid`, dropping each stream that is behind if the
    /// batch would put it past [`MAX_PENDING`] or all queues past [`MAX_PENDING_TOTAL`]. A
    /// stream that has sent everything always takes the batch.
    pub fn publish(&self, rowid: i64, batch: Published) {
        let batch = Arc::new(batch);
        let crowded = self.crowded(batch.bytes());
        let mut inner = self.inner();
        let Some(list) = inner.watchers.get_mut(&rowid) else {
            return;
        };
        list.retain(|w| w.offer(&batch, crowded));
        if list.is_empty() {
            inner.watchers.remove(&rowid);
        }
    }

    /// A receiver for the changes to the runs of `workspace` from now on, for `user`'s stream
    /// (already closed once the server is shutting down).
    pub fn watch_workspace(&self, workspace: &str, user: &str) -> Receiver<Notice> {
        let mut inner = self.inner();
        let bound = Bound {
            bytes: WORKSPACE_PENDING,
            items: WORKSPACE_PENDING_EVENTS,
        };
        let watcher = Arc::new(Watcher::new(
            bound,
            self.total.clone(),
            Some(user.to_string()),
            !inner.shut,
        ));
        if !inner.shut {
            let list = inner.workspaces.entry(workspace.to_string()).or_default();
            prune(list);
            list.push(watcher.clone());
        }
        Receiver::new(watcher)
    }

    /// Whether anyone watches `workspace`: ingest gathers a run's progress only then.
    pub fn workspace_watched(&self, workspace: &str) -> bool {
        let mut inner = self.inner();
        let Some(list) = inner.workspaces.get_mut(workspace) else {
            return false;
        };
        prune(list);
        if list.is_empty() {
            inner.workspaces.remove(workspace);
            return false;
        }
        true
    }

    fn notify(&self, inner: &mut Inner, workspace: &str, change: Change) {
        let Some(list) = inner.workspaces.get_mut(workspace) else {
            return;
        };
        let notice = Arc::new(Notice::new(change));
        let crowded = self.crowded(notice.bytes());
        list.retain(|w| w.offer(&notice, crowded));
        if list.is_empty() {
            inner.workspaces.remove(workspace);
        }
    }

    /// Tells the streams of the run's workspace about the run as it is now: created, changed,
    /// or moved in. Call it after the commit, while still holding the writer
    /// (`Db::write_then`), so streams see changes in commit order.
    pub fn publish_run(&self, exp: &Experiment) {
        let mut inner = self.inner();
        if inner.workspaces.contains_key(&exp.workspace_id) {
            let ws = exp.workspace_id.clone();
            self.notify(&mut inner, &ws, Change::Run(Box::new(exp.clone())));
        }
    }

    /// Tells the streams of `workspace` that run `id` left it (deleted or moved out). Progress
    /// of the run not yet sent is forgotten, so nothing about it follows.
    pub fn publish_deleted(&self, workspace: &str, id: &str) {
        let mut inner = self.inner();
        if let Some(pending) = inner.paced.get_mut(id) {
            *pending = None;
        }
        let change = Change::Deleted { id: id.to_string() };
        self.notify(&mut inner, workspace, change);
    }

    /// Tells the streams of the run's workspace its new last values: at once if its last
    /// progress went out [`PROGRESS_EVERY`] ago or more, else folded into what goes out when
    /// that time is up.
    pub fn publish_progress(self: &Arc<Self>, progress: Progress) {
        let mut inner = self.inner();
        if inner.shut {
            return;
        }
        if let Some(pending) = inner.paced.get_mut(&progress.id) {
            match pending {
                Some(earlier) => earlier.merge(progress),
                None => *pending = Some(progress),
            }
            return;
        }
        let ws = progress.workspace.clone();
        let json = progress.json();
        self.notify(&mut inner, &ws, Change::Progress { json });
        // Without a runtime (never, in the server) nothing is paced.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        inner.paced.insert(progress.id.clone(), None);
        let hub = Arc::clone(self);
        let id = progress.id;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let mut inner = hub.inner();
                let due = match inner.paced.get_mut(&id) {
                    Some(pending) => pending.take(),
                    None => None,
                };
                let Some(due) = due else {
                    inner.paced.remove(&id);
                    return;
                };
                let ws = due.workspace.clone();
                let json = due.json();
                hub.notify(&mut inner, &ws, Change::Progress { json });
            }
        });
    }

    /// Ends the streams of `workspace` (all, or only `user`'s): it was deleted, or they left
    /// or were removed, so they may not watch it any more.
    pub fn end_workspace_streams(&self, workspace: &str, user: Option<&str>) {
        let mut inner = self.inner();
        let Some(list) = inner.workspaces.get_mut(workspace) else {
            return;
        };
        list.retain(|w| {
            let theirs = user.is_none_or(|u| w.user.as_deref() == Some(u));
            if theirs {
                w.close();
            }
            !theirs
        });
        if list.is_empty() {
            inner.workspaces.remove(workspace);
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
        close_all(&mut inner);
        inner.paced.clear();
    }
}

/// Ends every open stream of both kinds (their queues close; their responses finish).
fn close_all(inner: &mut Inner) {
    for (_, list) in inner.watchers.drain() {
        for w in list {
            w.close();
        }
    }
    for (_, list) in inner.workspaces.drain() {
        for w in list {
            w.close();
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
    async fn notices_from_other_servers_are_bounded_like_batches() {
        let hub = Hub::default();
        let stalled = hub.subscribe(3);
        let reading = hub.subscribe(3);
        hub.poke(3, 17);
        assert_eq!(reading.recv().await.unwrap().through, 17);
        // A stalled stream is dropped once its markers reach the bound, never grown past it.
        for seq in 0..1_000_000 {
            hub.poke(3, seq);
        }
        assert!(!stalled.is_open());
        assert!(hub.total.load(Ordering::Acquire) <= MAX_PENDING + 1024);
        hub.end_streams();
        assert!(!reading.is_open() && !hub.watched(3));
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
        let table = hub.watch_workspace("ws", "u");
        let watching = tokio::spawn(async move { table.recv().await.is_none() });
        tokio::task::yield_now().await;
        hub.shut_down();
        assert!(waiting.await.unwrap(), "the waiting stream ends");
        assert!(watching.await.unwrap(), "the workspace stream ends");
        assert!(!hub.watch_workspace("ws", "u").is_open());
        let late = hub.subscribe(1);
        assert!(!late.is_open() && hub.is_shut());
        assert!(late.recv().await.is_none());
        assert!(!hub.watched(1));
    }

    fn progress(id: &str, step: i64) -> Progress {
        let mut p = Progress::new("ws".into(), id.into(), 0);
        p.metric(&"loss".into(), step, step as f64);
        p
    }

    #[tokio::test]
    async fn a_workspace_stream_past_its_event_bound_is_dropped_and_its_bytes_freed() {
        let hub = Hub::default();
        let stalled = hub.watch_workspace("ws", "u");
        let reader = hub.watch_workspace("ws", "v");
        for i in 0..=WORKSPACE_PENDING_EVENTS {
            hub.publish_deleted("ws", &format!("run-{i}"));
            assert!(reader.recv().await.is_some());
        }
        assert!(!stalled.is_open(), "past {WORKSPACE_PENDING_EVENTS} events");
        assert!(reader.is_open() && hub.workspace_watched("ws"));
        assert_eq!(hub.total.load(Ordering::Acquire), 0, "nothing is held");
        assert!(!hub.workspace_watched("elsewhere"));
        hub.end_workspace_streams("ws", Some("v"));
        assert!(!reader.is_open() && !hub.workspace_watched("ws"));
    }

    #[tokio::test]
    async fn progress_is_paced_per_run_and_forgotten_when_the_run_goes() {
        let hub = Arc::new(Hub::default());
        let rx = hub.watch_workspace("ws", "u");
        let next = || async {
            let n = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await;
            let n = n.ok().flatten();
            n.map(|n| match &n.change {
                Change::Progress { json } => json.clone(),
                Change::Deleted { id } => format!("deleted {id}"),
                Change::Run(_) => "run".into(),
            })
        };
        hub.publish_progress(progress("a", 1));
        hub.publish_progress(progress("a", 3));
        hub.publish_progress(progress("a", 2));
        hub.publish_progress(progress("b", 1));
        let first = next().await.unwrap();
        assert!(
            first.contains(r#""a""#) && first.contains(r#""step":1"#),
            "{first}"
        );
        assert!(
            next().await.unwrap().contains(r#""b""#),
            "another run is not held back"
        );
        let started = std::time::Instant::now();
        let second = next().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(800));
        assert!(second.contains(r#""step":3,"value":3.0"#), "{second}");

        hub.publish_progress(progress("a", 4));
        hub.publish_deleted("ws", "a");
        assert_eq!(next().await.unwrap(), "deleted a");
        let after = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await;
        assert!(after.is_err(), "no progress follows the run's deletion");
    }

    #[test]
    fn a_progress_notice_names_at_most_1000_series_of_each_kind() {
        let mut p = Progress::new("ws".into(), "a".into(), 0);
        for i in 0..=MAX_PROGRESS_SERIES {
            p.metric(&format!("m{i:04}").into(), 1, 0.5);
            p.result(&format!("r{i:04}").into(), 0.5);
        }
        assert_eq!(p.metrics.len(), MAX_PROGRESS_SERIES);
        assert_eq!(p.results.len(), MAX_PROGRESS_SERIES);
        // A name already there still takes its newer point.
        p.metric(&"m0000".into(), 2, f64::INFINITY);
        let json: serde_json::Value = serde_json::from_str(&p.json()).unwrap();
        assert_eq!(json["truncated"], true);
        assert_eq!(
            json["metrics"]["m0000"],
            serde_json::json!({"step": 2, "value": null})
        );
        assert!(json["metrics"].get("m1000").is_none());
        let small = Progress::new("ws".into(), "b".into(), 0).json();
        assert!(!small.contains("truncated"), "{small}");
    }
}
