//! Keeps `tora.db` alone a complete database whenever the server is idle, so that copying that
//! one file (`cp`, `rsync`, a NAS job, a filesystem snapshot) is a backup.
//!
//! Why: under WAL, a commit lands in `tora.db-wal`, and SQLite moves it into `tora.db` only
//! every 1,000 pages. A copy of `tora.db` alone taken after a quiet minute held none of the
//! runs and points since the last such checkpoint. So once writes stop for [`IDLE`], this
//! loop folds the WAL into the main file and truncates it.
//!
//! It watches the `-wal` file itself (size and modification time), not the server's own writes,
//! so changes made by `tora user add` or another process on the same file are folded too. A
//! copy taken *during* writes can still miss the last second, or be torn if it overlaps a
//! checkpoint: that is what `tora backup` is for, and `tora doctor` tells a torn copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::db::Db;

/// How long the `-wal` file must go unchanged before it is folded in.
pub const IDLE: Duration = Duration::from_secs(1);
/// How often the `-wal` file is looked at (one `stat`).
const TICK: Duration = Duration::from_millis(250);
/// How long a fold waits for readers still on the WAL before trying again next tick.
const READER_WAIT: Duration = Duration::from_millis(100);

/// The WAL file beside a database file.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Size and modification time: a write changes at least one of them.
type Stamp = (u64, SystemTime);

fn stamp(wal: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(wal).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Free pages kept for reuse before the idle server gives the rest back (4 MiB of 4 KiB pages).
const RECLAIM_ABOVE: i64 = 1_024;
/// Pages given back per idle step (8 MiB): one short write transaction.
const RECLAIM_STEP: i64 = 2_048;

/// Folds the WAL into the database file each time it has been idle for [`IDLE`]; runs until
/// the server stops (the final checkpoint at shutdown is the server's own).
pub async fn fold_when_idle(db: Db) {
    let wal = wal_path(db.path());
    // The WAL as it was after the last complete fold: nothing new to do while it stays so.
    let mut folded: Option<Stamp> = None;
    // Said once, not every tick, until it changes.
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(now) = stamp(&wal) else { continue };
        let idle = now.1.elapsed().unwrap_or(IDLE) >= IDLE;
        if now.0 == 0 || folded == Some(now) || !idle {
            continue;
        }
        let db2 = db.clone();
        match tokio::task::spawn_blocking(move || db2.fold_wal(READER_WAIT)).await {
            Ok(Ok(Some(true))) => {
                folded = stamp(&wal);
                last_error.clear();
                // Idle and folded: a good moment to give deleted runs' pages back. Each step
                // changes the WAL, which is folded again after the next idle second.
                let db3 = db.clone();
                match tokio::task::spawn_blocking(move || db3.reclaim(RECLAIM_ABOVE, RECLAIM_STEP))
                    .await
                {
                    Ok(Ok(Some(freed))) if freed > 0 => {
                        tracing::debug!(pages = freed, "gave free pages back to the filesystem");
                    }
                    Ok(Err(e)) => tracing::warn!("giving free pages back: {e}"),
                    _ => {}
                }
            }
            // The writer was busy or a reader held an old snapshot: try again next tick.
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let error = format!("folding the WAL into {}: {e}", db.path().display());
                if error != last_error {
                    tracing::warn!("{error}");
                    last_error = error;
                }
            }
            Err(e) => tracing::warn!("folding the WAL: {e}"),
        }
    }
}
