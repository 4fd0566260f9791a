//! Applies every workspace's retention policy (`store::retention`): at start, every hour, and
//! whenever a policy is set. Runs are deleted 50 per short write transaction, so ingest and
//! other writes interleave; their deletion is published to the workspace's live streams like
//! any other. Runs to compact are marked 50 per write, then their metrics' chunks deleted 1,024
//! per write. The space comes back through the idle fold (`wal.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::Db;
use crate::error::Result;
use crate::live::Hub;
use crate::store::{experiments, retention};
use crate::time::now_ms;

pub const EVERY: Duration = Duration::from_secs(3600);
/// Runs deleted, or marked compacted, per write transaction.
const STEP: usize = 50;
/// Chunks (128 points each) deleted per write transaction while compacting: about 1 MiB.
const CHUNK_STEP: usize = 1024;

pub async fn apply_forever(db: Db, hub: Arc<Hub>, wake: Arc<Notify>) {
    // The first pass waits a little: start-up is for serving.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        _ = wake.notified() => {}
    }
    loop {
        if let Err(e) = apply(&db, &hub).await {
            tracing::error!(cause = %e, "applying retention policies");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = wake.notified() => {}
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pass {
    pub deleted: usize,
    pub compacted: usize,
    /// Chunks deleted from compacted runs, and their bytes.
    pub chunks: usize,
    pub bytes: i64,
}

/// One pass over every policy: deletes, then compacts, then deletes the chunks of what is
/// compacted (also those a stopped server left queued).
pub async fn apply(db: &Db, hub: &Arc<Hub>) -> Result<Pass> {
    let policies = db.read(retention::all).await?;
    let mut pass = Pass::default();
    for (workspace, policy) in policies {
        let deleted = delete(db, hub, &workspace, &policy).await?;
        if deleted > 0 {
            tracing::info!(
                workspace = %workspace,
                runs = deleted,
                days = policy.delete_after_days,
                "retention deleted runs past the workspace's policy"
            );
        }
        let compacted = compact(db, &workspace, &policy).await?;
        if compacted > 0 {
            tracing::info!(
                workspace = %workspace,
                runs = compacted,
                days = policy.aggregate_after_days,
                "retention compacted runs past the workspace's policy to their aggregates"
            );
        }
        pass.deleted += deleted;
        pass.compacted += compacted;
    }
    loop {
        let step = db
            .write(|tx| retention::drop_chunks(tx, CHUNK_STEP))
            .await?;
        pass.chunks += step.chunks;
        pass.bytes += step.bytes;
        if !step.more {
            break;
        }
    }
    if pass.chunks > 0 {
        tracing::info!(
            chunks = pass.chunks,
            bytes = pass.bytes,
            "retention deleted the raw points of compacted runs"
        );
    }
    Ok(pass)
}

/// Deletes the runs past `policy`'s delete mode, [`STEP`] per write; how many.
async fn delete(
    db: &Db,
    hub: &Arc<Hub>,
    workspace: &str,
    policy: &retention::Policy,
) -> Result<usize> {
    let mut deleted = 0;
    loop {
        let (ws, p, publisher) = (workspace.to_string(), policy.clone(), hub.clone());
        let gone = db
            .write_then(
                move |tx| {
                    // The policy may have changed or gone since the pass began.
                    if retention::get(tx, &ws)?.as_ref() != Some(&p) {
                        return Ok(Vec::new());
                    }
                    let runs = retention::expired(tx, &ws, &p, now_ms(), STEP)?;
                    for (rowid, id) in &runs {
                        experiments::delete(tx, *rowid)?;
                        experiments::announce(tx, crate::live::server_id(), &ws, id)?;
                    }
                    Ok(runs.into_iter().map(|(_, id)| (ws.clone(), id)).collect())
                },
                move |gone: &Vec<(String, String)>| {
                    for (ws, id) in gone {
                        publisher.publish_deleted(ws, id);
                    }
                },
            )
            .await?;
        deleted += gone.len();
        if gone.len() < STEP {
            return Ok(deleted);
        }
    }
}

/// Marks the runs past `policy`'s aggregate mode compacted, [`STEP`] per write; how many.
async fn compact(db: &Db, workspace: &str, policy: &retention::Policy) -> Result<usize> {
    let mut compacted = 0;
    loop {
        let (ws, p) = (workspace.to_string(), policy.clone());
        let n = db
            .write(move |tx| {
                if retention::get(tx, &ws)?.as_ref() != Some(&p) {
                    return Ok(0);
                }
                let now = now_ms();
                let runs = retention::compactable(tx, &ws, &p, now, STEP)?;
                for (rowid, _) in &runs {
                    retention::compact(tx, *rowid, now)?;
                }
                Ok(runs.len())
            })
            .await?;
        compacted += n;
        if n < STEP {
            return Ok(compacted);
        }
    }
}
