//! Applies every workspace's retention policy (`store::retention`): at start, every hour, and
//! whenever a policy is set. Runs go 50 per short write transaction, so ingest and other
//! writes interleave; their deletion is published to the workspace's live streams like any
//! other, and the space comes back through the idle fold (`wal.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::Db;
use crate::error::Result;
use crate::live::Hub;
use crate::store::{experiments, retention};
use crate::time::now_ms;

pub const EVERY: Duration = Duration::from_secs(3600);
/// Runs deleted per write transaction.
const STEP: usize = 50;

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

/// One pass over every policy; the runs deleted.
pub async fn apply(db: &Db, hub: &Arc<Hub>) -> Result<usize> {
    let policies = db.read(retention::all).await?;
    let mut total = 0;
    for (workspace, policy) in policies {
        let mut deleted = 0;
        loop {
            let (ws, p, publisher) = (workspace.clone(), policy.clone(), hub.clone());
            let gone = db
                .write_then(
                    move |tx| {
                        // The policy may have changed or gone since the pass began.
                        if retention::get(tx, &ws)?.as_ref() != Some(&p) {
                            return Ok(Vec::new());
                        }
                        let runs = retention::expired(tx, &ws, &p, now_ms(), STEP)?;
                        for (rowid, _) in &runs {
                            experiments::delete(tx, *rowid)?;
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
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(
                workspace = %workspace,
                runs = deleted,
                days = policy.delete_after_days,
                "retention deleted runs past the workspace's policy"
            );
        }
        total += deleted;
    }
    Ok(total)
}
