//! Live updates: one broadcast channel per experiment that has watchers. Ingest publishes each
//! committed batch; every open stream holds a receiver. The channel keeps the last
//! [`CAPACITY`] batches; a watcher that falls further behind is dropped (it reconnects with its
//! cursor and catches up from the database), so a slow client never grows server memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::store::logs::Recent;

const CAPACITY: usize = 256;

/// A committed batch as every watcher receives it: the points, and the JSON of a `logs` event
/// carrying all of them, built once however many streams are open (a stream that has already
/// seen some of the points, after replaying from the database, builds its own from `points`).
pub struct Published {
    pub points: Vec<Recent>,
    pub json: String,
}

pub type Batch = Arc<Published>;

#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<i64, broadcast::Sender<Batch>>>,
}

impl Hub {
    /// A receiver for the batches of experiment `rowid` committed from now on.
    pub fn subscribe(&self, rowid: i64) -> broadcast::Receiver<Batch> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(rowid)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Whether anyone watches `rowid`: ingest builds a live batch only then.
    pub fn watched(&self, rowid: i64) -> bool {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .get(&rowid)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    pub fn publish(&self, rowid: i64, batch: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(&rowid) {
            // Err means every watcher left: forget the channel.
            if tx.send(Arc::new(batch)).is_err() {
                channels.remove(&rowid);
            }
        }
    }
}
