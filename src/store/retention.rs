//! A workspace's retention policy (set by an OWNER): runs whose last activity is older than
//! `delete_after_days` are deleted, unless tagged `keep_tag`. A run's last activity is the
//! latest of its creation, its last point's arrival, its last heartbeat and its end, so a run
//! still logging or alive is never old.

use crate::sql::{Connection, OptionalExtension, params};

use crate::error::Result;

/// The fewest and most days a policy may keep runs.
pub const MIN_DAYS: i64 = 1;
pub const MAX_DAYS: i64 = 36_500;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub delete_after_days: i64,
    /// Runs carrying this tag (compared case-insensitively) are never deleted.
    pub keep_tag: String,
}

/// What a policy deletes if applied now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preview {
    pub runs: i64,
    pub points: i64,
    /// Bytes of the runs' packed points and artifacts: about what deleting them frees.
    pub bytes: i64,
}

pub fn get(conn: &Connection, workspace: &str) -> Result<Option<Policy>> {
    Ok(conn
        .prepare_cached(
            "SELECT delete_after_days, keep_tag FROM retention WHERE workspace_id = ?1",
        )?
        .query_row([workspace], |r| {
            Ok(Policy {
                delete_after_days: r.get(0)?,
                keep_tag: r.get(1)?,
            })
        })
        .optional()?)
}

pub fn set(conn: &Connection, workspace: &str, policy: &Policy, by: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO retention (workspace_id, delete_after_days, keep_tag, set_by, set_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workspace_id) DO UPDATE SET delete_after_days = ?2, keep_tag = ?3,
           set_by = ?4, set_at = ?5",
    )?
    .execute(params![
        workspace,
        policy.delete_after_days,
        policy.keep_tag,
        by,
        now
    ])?;
    Ok(())
}

pub fn clear(conn: &Connection, workspace: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM retention WHERE workspace_id = ?1")?
        .execute([workspace])?
        > 0)
}

/// Every workspace with a policy.
pub fn all(conn: &Connection) -> Result<Vec<(String, Policy)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, delete_after_days, keep_tag FROM retention ORDER BY workspace_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Policy {
                delete_after_days: r.get(1)?,
                keep_tag: r.get(2)?,
            },
        ))
    })?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The runs of `workspace` the policy deletes at `now`: (rowid, public id), oldest first, at
/// most `limit`.
const EXPIRED: &str = "
    SELECT e.id, e.uuid FROM experiments e
    WHERE e.workspace_id = ?1
      AND max(e.created_at,
              coalesce((SELECT max(updated_at) FROM series WHERE experiment_id = e.id), 0),
              coalesce(e.heartbeat_at, 0),
              coalesce(e.ended_at, 0)) < ?2
      AND NOT EXISTS (SELECT 1 FROM json_each(e.tags) t
                      WHERE t.type = 'text' AND lower(t.value) = lower(?3))";

pub fn expired(
    conn: &Connection,
    workspace: &str,
    policy: &Policy,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let before = now - policy.delete_after_days * DAY_MS;
    let mut stmt = conn.prepare_cached(&format!("{EXPIRED} ORDER BY e.created_at LIMIT ?4"))?;
    let rows = stmt.query_map(
        params![workspace, before, policy.keep_tag, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// What `policy` would delete from `workspace` at `now` (a dry run).
pub fn preview(conn: &Connection, workspace: &str, policy: &Policy, now: i64) -> Result<Preview> {
    let before = now - policy.delete_after_days * DAY_MS;
    let sql = format!(
        "WITH gone AS ({EXPIRED})
         SELECT (SELECT count(*) FROM gone),
                (SELECT coalesce(sum(s.count), 0) FROM series s WHERE s.experiment_id IN (SELECT id FROM gone)),
                (SELECT coalesce(sum(length(c.data)), 0) FROM series s JOIN chunks c
                   ON c.id BETWEEN s.id * 4294967296 AND s.id * 4294967296 + 4294967295
                 WHERE s.experiment_id IN (SELECT id FROM gone))
              + (SELECT coalesce(sum(a.size), 0) FROM artifacts a
                 WHERE a.experiment_id IN (SELECT id FROM gone))"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![workspace, before, policy.keep_tag], |r| {
            Ok(Preview {
                runs: r.get(0)?,
                points: r.get(1)?,
                bytes: r.get(2)?,
            })
        })?)
}
