//! A workspace's retention policy (set by an OWNER), in one or both of two modes: runs whose
//! last activity is older than `delete_after_days` are deleted; runs older than
//! `aggregate_after_days` keep only their metrics' aggregates (the summary, the blocks'
//! min/max/last/count and the step-ordered units), their raw points (`chunks`) deleted. A run
//! tagged `keep_tag` is exempt from both. A run's last activity is the latest of its creation,
//! its last point's arrival, its last heartbeat and its end, so a run still logging or alive is
//! never old.
//!
//! Compacting a run is two kinds of short write: [`compact`] marks it and its metrics
//! (`compacted_at`, which readers and ingest check) and queues the metrics in `compacting`;
//! [`drop_chunks`] then deletes a bounded number of their chunks per call. A marked run is
//! never picked again, and the queue survives a restart, so the work is done once.

use crate::sql::{Connection, Dialect, OptionalExtension, params};

use crate::error::Result;

/// The fewest and most days a policy may keep runs (or their raw points).
pub const MIN_DAYS: i64 = 1;
pub const MAX_DAYS: i64 = 36_500;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Runs older than this are deleted.
    pub delete_after_days: Option<i64>,
    /// Runs older than this keep only their metrics' aggregates; below `delete_after_days`.
    pub aggregate_after_days: Option<i64>,
    /// Runs carrying this tag (compared case-insensitively) are never deleted or compacted.
    pub keep_tag: String,
}

/// What one mode of a policy does if applied now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    pub runs: i64,
    /// The raw points that go: all the runs' points still stored (deleting; a compacted
    /// metric's are gone already), or their metrics' points (compacting).
    pub points: i64,
    /// Bytes of what goes: the runs' packed points and artifacts (deleting), or their
    /// metrics' packed points (compacting). About what it frees.
    pub bytes: i64,
}

/// A dry run of a policy: each of its modes' [`Due`] (None for a mode it does not set). A run
/// old enough for both is counted where it goes: deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preview {
    pub delete: Option<Due>,
    pub aggregate: Option<Due>,
}

const POLICY_COLUMNS: &str = "delete_after_days, aggregate_after_days, keep_tag";

fn policy_from_row(r: &crate::sql::Row, at: usize) -> crate::sql::Result<Policy> {
    Ok(Policy {
        delete_after_days: r.get(at)?,
        aggregate_after_days: r.get(at + 1)?,
        keep_tag: r.get(at + 2)?,
    })
}

pub fn get(conn: &Connection, workspace: &str) -> Result<Option<Policy>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {POLICY_COLUMNS} FROM retention WHERE workspace_id = ?1"
        ))?
        .query_row([workspace], |r| policy_from_row(r, 0))
        .optional()?)
}

pub fn set(conn: &Connection, workspace: &str, policy: &Policy, by: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO retention (workspace_id, delete_after_days, aggregate_after_days, keep_tag, set_by, set_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (workspace_id) DO UPDATE SET delete_after_days = ?2,
           aggregate_after_days = ?3, keep_tag = ?4, set_by = ?5, set_at = ?6",
    )?
    .execute(params![
        workspace,
        policy.delete_after_days,
        policy.aggregate_after_days,
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
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT workspace_id, {POLICY_COLUMNS} FROM retention ORDER BY workspace_id"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, policy_from_row(r, 1)?)))?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// A run's last activity, in SQL over `e` (an experiments row).
const ACTIVITY: &str = "max(e.created_at,
    coalesce((SELECT max(updated_at) FROM series WHERE experiment_id = e.id), 0),
    coalesce(e.heartbeat_at, 0),
    coalesce(e.ended_at, 0))";

/// Whether `e` (an experiments row) is tagged ?3, ignoring case. Tags are strings (the API
/// takes nothing else), so each element's text is the tag.
fn tagged_keep(d: Dialect) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {} WHERE lower(t.value) = lower(?3))",
        d.json_elements("e.tags", "t")
    )
}

/// The runs of workspace ?1 the delete mode takes (last activity before ?2, not tagged ?3).
fn expired_sql(d: Dialect) -> String {
    format!(
        "SELECT e.id, e.uuid FROM experiments e
         WHERE e.workspace_id = ?1 AND {ACTIVITY} < ?2 AND NOT {}",
        tagged_keep(d)
    )
}

/// The runs of workspace ?1 the aggregate mode takes: last activity before ?2 but not before
/// ?4 (those are deleted; NULL: none is), not tagged ?3, not compacted yet, with metric points.
/// (The CAST types ?4 where a bare `?4 IS NULL` leaves PostgreSQL unable to.)
fn compactable_sql(d: Dialect) -> String {
    format!(
        "SELECT e.id, e.uuid FROM experiments e
         WHERE e.workspace_id = ?1 AND e.compacted_at IS NULL
           AND {ACTIVITY} < ?2 AND (CAST(?4 AS BIGINT) IS NULL OR {ACTIVITY} >= ?4)
           AND EXISTS (SELECT 1 FROM series WHERE experiment_id = e.id AND kind = 0 AND count > 0)
           AND NOT {}",
        tagged_keep(d)
    )
}

fn before(now: i64, days: Option<i64>) -> Option<i64> {
    days.map(|d| now - d * DAY_MS)
}

/// The runs of `workspace` the policy deletes at `now`: (rowid, public id), oldest first, at
/// most `limit`. None without a delete mode.
pub fn expired(
    conn: &Connection,
    workspace: &str,
    policy: &Policy,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let Some(before) = before(now, policy.delete_after_days) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "{} ORDER BY e.created_at LIMIT ?4",
        expired_sql(conn.dialect())
    ))?;
    let rows = stmt.query_map(
        params![workspace, before, policy.keep_tag, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The runs of `workspace` the policy compacts at `now`: (rowid, public id), oldest first, at
/// most `limit`. None without an aggregate mode.
pub fn compactable(
    conn: &Connection,
    workspace: &str,
    policy: &Policy,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let Some(aggregate) = before(now, policy.aggregate_after_days) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "{} ORDER BY e.created_at LIMIT ?5",
        compactable_sql(conn.dialect())
    ))?;
    let rows = stmt.query_map(
        params![
            workspace,
            aggregate,
            policy.keep_tag,
            before(now, policy.delete_after_days),
            limit as i64
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Compacts run `run` at `now`: it and its metrics are marked (from here on their raw points
/// are not read, and the run takes no new points), and its metrics with points are queued for
/// [`drop_chunks`]. Results keep their points.
pub fn compact(conn: &Connection, run: i64, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE experiments SET compacted_at = ?2 WHERE id = ?1")?
        .execute(params![run, now])?;
    conn.prepare_cached(
        "UPDATE series SET compacted_at = ?2 WHERE experiment_id = ?1 AND kind = 0",
    )?
    .execute(params![run, now])?;
    conn.prepare_cached(
        "INSERT INTO compacting (series_id)
         SELECT id FROM series WHERE experiment_id = ?1 AND kind = 0 AND count > 0
         ON CONFLICT DO NOTHING",
    )?
    .execute([run])?;
    Ok(())
}

/// What one [`drop_chunks`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dropped {
    pub chunks: usize,
    pub bytes: i64,
    /// Queued chunks remain.
    pub more: bool,
}

/// Deletes at most `limit` chunks of the series queued by [`compact`], series by series; a
/// series leaves the queue once none is left.
pub fn drop_chunks(conn: &Connection, limit: usize) -> Result<Dropped> {
    let mut out = Dropped::default();
    while out.chunks < limit {
        let next: Option<i64> = conn
            .prepare_cached("SELECT series_id FROM compacting ORDER BY series_id LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let Some(series) = next else {
            return Ok(out);
        };
        let (lo, hi) = (series << 32, (series << 32) | 0xffff_ffff);
        let room = (limit - out.chunks) as i64;
        let bytes: i64 = conn
            .prepare_cached(
                "SELECT coalesce(sum(length(data)), 0) FROM
                   (SELECT data FROM chunks WHERE id BETWEEN ?1 AND ?2 ORDER BY id LIMIT ?3) c",
            )?
            .query_row(params![lo, hi, room], |r| r.get(0))?;
        let n = conn
            .prepare_cached(
                "DELETE FROM chunks WHERE id IN
                   (SELECT id FROM chunks WHERE id BETWEEN ?1 AND ?2 ORDER BY id LIMIT ?3)",
            )?
            .execute(params![lo, hi, room])?;
        out.chunks += n;
        out.bytes += bytes;
        if (n as i64) < room {
            conn.prepare_cached("DELETE FROM compacting WHERE series_id = ?1")?
                .execute([series])?;
        }
    }
    out.more = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM compacting)")?
        .query_row([], |r| r.get(0))?;
    Ok(out)
}

/// What `policy` would do to `workspace` at `now` (a dry run).
pub fn preview(conn: &Connection, workspace: &str, policy: &Policy, now: i64) -> Result<Preview> {
    let mut out = Preview::default();
    if let Some(before) = before(now, policy.delete_after_days) {
        let sql = format!(
            "WITH gone AS ({})
             SELECT (SELECT count(*) FROM gone),
                    (SELECT coalesce(sum(s.count), 0) FROM series s
                     WHERE s.compacted_at IS NULL AND s.experiment_id IN (SELECT id FROM gone)),
                    (SELECT coalesce(sum(length(c.data)), 0) FROM series s JOIN chunks c
                       ON c.id BETWEEN s.id * 4294967296 AND s.id * 4294967296 + 4294967295
                     WHERE s.experiment_id IN (SELECT id FROM gone))
                  + (SELECT coalesce(sum(a.size), 0) FROM artifacts a
                     WHERE a.experiment_id IN (SELECT id FROM gone))",
            expired_sql(conn.dialect())
        );
        out.delete = Some(
            conn.prepare_cached(&sql)?
                .query_row(params![workspace, before, policy.keep_tag], due)?,
        );
    }
    if let Some(aggregate) = before(now, policy.aggregate_after_days) {
        let sql = format!(
            "WITH kept AS ({})
             SELECT (SELECT count(*) FROM kept),
                    (SELECT coalesce(sum(s.count), 0) FROM series s
                     WHERE s.kind = 0 AND s.experiment_id IN (SELECT id FROM kept)),
                    (SELECT coalesce(sum(length(c.data)), 0) FROM series s JOIN chunks c
                       ON c.id BETWEEN s.id * 4294967296 AND s.id * 4294967296 + 4294967295
                     WHERE s.kind = 0 AND s.experiment_id IN (SELECT id FROM kept))",
            compactable_sql(conn.dialect())
        );
        out.aggregate = Some(conn.prepare_cached(&sql)?.query_row(
            params![
                workspace,
                aggregate,
                policy.keep_tag,
                before(now, policy.delete_after_days)
            ],
            due,
        )?);
    }
    Ok(out)
}

fn due(r: &crate::sql::Row) -> crate::sql::Result<Due> {
    Ok(Due {
        runs: r.get(0)?,
        points: r.get(1)?,
        bytes: r.get(2)?,
    })
}
