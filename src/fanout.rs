//! Live streams across servers sharing one PostgreSQL database. Every stored batch notifies
//! [`LIVE_CHANNEL`] inside its write transaction (`store::logs::announce`: PostgreSQL delivers
//! it at commit, in commit order, never for a rolled-back batch). Each server listens on one
//! connection of its own (not from a pool) on a thread of its own, and hands a notice from
//! another server about a run it has streams on to the hub ([`Hub::poke`]): each stream then
//! reads the points after its own cursor from the database, so a point goes out once. A run
//! created, changed or deleted through another server (`store::experiments::announce`) is read
//! again and told to this server's workspace streams.
//!
//! Nothing is missed silently: when the listening connection drops, every experiment stream of
//! this server ends (its client reconnects with its cursor and catches up from the database),
//! and again once listening resumes (streams opened meanwhile heard nothing), the connection
//! being retried with a growing pause. Point notices go straight into the streams' queues, which
//! the hub bounds; run notices wait in a queue of [`RUNS_PENDING`], past which every stream
//! ends instead: nothing here grows.

use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use tokio::sync::mpsc;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::live::{Hub, PROGRESS_EVERY, Progress, server_id};
use crate::sql::pg_url::Target;
use crate::store::experiments;
use crate::store::logs::{self, Kind, LIVE_CHANNEL};

/// The listening connection's `application_name`.
pub const LISTENER_NAME: &str = "tora live";

/// How long the listening connection waits for a notice before checking that it still works.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// The longest pause between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Run notices waiting for their row to be read; past this, every stream ends instead.
const RUNS_PENDING: usize = 1_024;

/// A run's workspace (before the change) and public id, from another server's notice.
type RunNotice = (String, String);

/// Runs whose last values one database read takes, so that one read holds at most this many
/// runs' series (each at most 2 x [`crate::live::MAX_PROGRESS_SERIES`]).
const PROGRESS_READ: usize = 32;

/// Starts listening to the other servers on the PostgreSQL database at `url`, feeding `hub`;
/// runs they changed are read from `db`. Call from within the runtime.
pub fn start(url: &str, hub: Arc<Hub>, db: Db) -> Result<()> {
    let mut target = crate::sql::pg_url::parse(url).map_err(Error::bad_request)?;
    // So an operator (and a test) can tell it in pg_stat_activity.
    target.config.application_name(LISTENER_NAME);
    let (runs, pending) = tokio::sync::mpsc::channel(RUNS_PENDING);
    tokio::spawn(publish_runs(pending, hub.clone(), db.clone()));
    let (progress, stored) = tokio::sync::mpsc::channel(RUNS_PENDING);
    tokio::spawn(publish_progress(stored, hub.clone(), db));
    let queues = Queues { runs, progress };
    // A thread of its own: the blocking client refuses to run on a thread driving async tasks.
    std::thread::Builder::new()
        .name("tora-pg-listen".into())
        .spawn(move || listen_forever(&target, &hub, &queues))
        .map_err(|e| Error::Internal(format!("starting the listening thread: {e}")))?;
    Ok(())
}

/// Reads each run another server changed and tells this server's workspace streams: `run` if
/// it is there (and `deleted` to the workspace it left, if it moved), else `deleted`.
async fn publish_runs(mut pending: mpsc::Receiver<RunNotice>, hub: Arc<Hub>, db: Db) {
    while let Some((workspace, id)) = pending.recv().await {
        let read = id.clone();
        match db.read(move |c| experiments::get(c, &read)).await {
            Ok(Some(exp)) => {
                if exp.workspace_id != workspace {
                    hub.publish_deleted(&workspace, &id);
                }
                hub.publish_run(&exp);
            }
            Ok(None) => hub.publish_deleted(&workspace, &id),
            // Its streams would miss the change: they fetch their table again.
            Err(_) => hub.end_streams(),
        }
    }
}

/// Reads the last values of each run another server stored points in and tells this server's
/// workspace streams (a `progress` notice, paced per run by the hub as a local batch's is).
async fn publish_progress(mut stored: mpsc::Receiver<i64>, hub: Arc<Hub>, db: Db) {
    while let Some(first) = stored.recv().await {
        // One read a run a [`PROGRESS_EVERY`] however many batches arrived meanwhile (the pace
        // the hub keeps for its notices anyway).
        let mut due = std::collections::HashSet::from([first]);
        let until = tokio::time::Instant::now() + PROGRESS_EVERY;
        while due.len() < RUNS_PENDING {
            match tokio::time::timeout_at(until, stored.recv()).await {
                Ok(Some(rowid)) => {
                    due.insert(rowid);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let due: Vec<i64> = due.into_iter().collect();
        for part in due.chunks(PROGRESS_READ) {
            let part = part.to_vec();
            let read = db
                .read(move |c| {
                    part.iter()
                        .map(|&rowid| logs::last_values(c, rowid))
                        .collect::<Result<Vec<_>>>()
                })
                .await;
            match read {
                Ok(runs) => {
                    for run in runs.into_iter().flatten() {
                        hub.publish_progress(progress(run));
                    }
                }
                // Their tables would miss the values: they fetch again.
                Err(_) => {
                    hub.end_streams();
                    break;
                }
            }
        }
    }
}

/// A run's last values as a `progress` notice.
fn progress(run: logs::LastValues) -> Progress {
    let mut p = Progress::new(run.workspace, run.id, run.active_at);
    for (kind, name, step, value) in run.series {
        let name: Arc<str> = name.into();
        let value = value.unwrap_or(f64::NAN);
        match kind {
            Kind::Metric => p.metric(&name, step.unwrap_or(0), value),
            Kind::Result => p.result(&name, value),
        }
    }
    p
}

/// Where the listening thread hands notices on: runs to read again, runs with new points.
struct Queues {
    runs: mpsc::Sender<RunNotice>,
    progress: mpsc::Sender<i64>,
}

fn listen_forever(target: &Target, hub: &Hub, queues: &Queues) {
    let mut backoff = Duration::from_millis(100);
    while !hub.is_shut() {
        if let Err(e) = listen(target, hub, queues, &mut backoff) {
            tracing::warn!(error = %crate::sql::pg_url::describe(&e), "listening for other servers' batches failed; live streams end and reconnect");
        }
        hub.end_streams();
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens until the connection fails (or the server shuts down).
fn listen(
    target: &Target,
    hub: &Hub,
    queues: &Queues,
    backoff: &mut Duration,
) -> std::result::Result<(), postgres::Error> {
    let mut client = target.connect()?;
    client.batch_execute(&format!("LISTEN {LIVE_CHANNEL}"))?;
    // Streams opened while nobody listened may have missed a notice.
    hub.end_streams();
    *backoff = Duration::from_millis(100);
    loop {
        let next = client.notifications().timeout_iter(IDLE_CHECK).next();
        match next? {
            Some(notice) => forward(hub, queues, notice.payload()),
            None if hub.is_shut() => return Ok(()),
            None => {
                client.simple_query("")?;
            }
        }
    }
}

/// Hands one notice (`<server id> logs <run rowid> <last point id> <workspace>` or `<server
/// id> run <workspace> <run id>`) on, unless this server sent it (its streams already had it) or
/// nobody here watches the run or its workspace.
fn forward(hub: &Hub, queues: &Queues, payload: &str) {
    let mut parts = payload.split(' ');
    let (Some(server), Some(kind), Some(a), Some(b)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if server == server_id() {
        return;
    }
    match kind {
        "logs" => {
            let (Ok(rowid), Ok(seq)) = (a.parse::<i64>(), b.parse::<i64>()) else {
                return;
            };
            if hub.watched(rowid) {
                hub.poke(rowid, seq);
            }
            // Overwhelmed: end the streams (they fetch again) rather than queue more.
            if parts.next().is_some_and(|ws| hub.workspace_watched(ws))
                && queues.progress.try_send(rowid).is_err()
            {
                hub.end_streams();
            }
        }
        "run"
            if hub.workspace_watched(a)
                && queues
                    .runs
                    .try_send((a.to_string(), b.to_string()))
                    .is_err() =>
        {
            hub.end_streams();
        }
        _ => {}
    }
}
