//! Live streams across servers sharing one PostgreSQL database. Every stored batch notifies
//! [`LIVE_CHANNEL`] inside its write transaction (`store::logs::announce`: PostgreSQL delivers
//! it at commit, in commit order, never for a rolled-back batch). Each server listens on one
//! connection of its own (not from a pool) on a thread of its own, and hands a notice from
//! another server about a run it has streams on to the hub ([`Hub::poke`]): each stream then
//! reads the points after its own cursor from the database, so a point goes out once.
//!
//! Nothing is missed silently: when the listening connection drops, every experiment stream of
//! this server ends (its client reconnects with its cursor and catches up from the database),
//! and again once listening resumes (streams opened meanwhile heard nothing), the connection
//! being retried with a growing pause. Notices go straight into the streams' queues, which the
//! hub bounds: there is no queue here to grow.

use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use crate::error::{Error, Result};
use crate::live::{Hub, server_id};
use crate::store::logs::LIVE_CHANNEL;

/// How long the listening connection waits for a notice before checking that it still works.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// The longest pause between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts listening to the other servers on the PostgreSQL database at `url`, feeding `hub`.
pub fn start(url: &str, hub: Arc<Hub>) -> Result<()> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| Error::bad_request(format!("not a PostgreSQL URL: {e}")))?;
    // A thread of its own: the blocking client refuses to run on a thread driving async tasks.
    std::thread::Builder::new()
        .name("tora-pg-listen".into())
        .spawn(move || listen_forever(&config, &hub))
        .map_err(|e| Error::Internal(format!("starting the listening thread: {e}")))?;
    Ok(())
}

fn listen_forever(config: &postgres::Config, hub: &Hub) {
    let mut backoff = Duration::from_millis(100);
    while !hub.is_shut() {
        if let Err(e) = listen(config, hub, &mut backoff) {
            tracing::warn!(error = %e, "listening for other servers' batches failed; live streams end and reconnect");
        }
        hub.end_streams();
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens until the connection fails (or the server shuts down).
fn listen(
    config: &postgres::Config,
    hub: &Hub,
    backoff: &mut Duration,
) -> std::result::Result<(), postgres::Error> {
    let mut client = config.connect(postgres::NoTls)?;
    client.batch_execute(&format!("LISTEN {LIVE_CHANNEL}"))?;
    // Streams opened while nobody listened may have missed a notice.
    hub.end_streams();
    *backoff = Duration::from_millis(100);
    loop {
        let next = client.notifications().timeout_iter(IDLE_CHECK).next();
        match next? {
            Some(notice) => forward(hub, notice.payload()),
            None if hub.is_shut() => return Ok(()),
            None => {
                client.simple_query("")?;
            }
        }
    }
}

/// Hands one notice (`<server id> logs <run rowid> <last point id>`) to the hub, unless this
/// server sent it (its streams already had the batch) or nobody here watches the run.
fn forward(hub: &Hub, payload: &str) {
    let mut parts = payload.split(' ');
    let (Some(server), Some("logs"), Some(rowid), Some(seq)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(rowid), Ok(seq)) = (rowid.parse::<i64>(), seq.parse::<i64>()) else {
        return;
    };
    if server != server_id() && hub.watched(rowid) {
        hub.poke(rowid, seq);
    }
}
