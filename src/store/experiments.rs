//! Experiments: name, description, hyperparameters and tags. Their logs are in `logs`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Experiment {
    /// Internal number, used by the log tables; never sent to clients.
    pub rowid: i64,
    pub id: String,
    pub workspace_id: String,
    pub created_by: Option<String>,
    pub name: String,
    pub description: Option<String>,
    /// JSON text: `[{"key": .., "value": ..}]`
    pub hyperparams: String,
    /// JSON text: `["tag", ..]`
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "e.id, e.uuid, e.workspace_id, e.created_by, e.name, e.description, e.hyperparams, e.tags, e.created_at, e.updated_at";

fn from_row(r: &Row) -> rusqlite::Result<Experiment> {
    Ok(Experiment {
        rowid: r.get(0)?,
        id: r.get(1)?,
        workspace_id: r.get(2)?,
        created_by: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        hyperparams: r.get(6)?,
        tags: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub struct NewExperiment<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub created_by: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub hyperparams: &'a str,
    pub tags: &'a str,
}

pub fn create(conn: &Connection, new: &NewExperiment, now: i64) -> Result<Experiment> {
    conn.execute(
        "INSERT INTO experiments (uuid, workspace_id, created_by, name, description, hyperparams, tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            new.id,
            new.workspace_id,
            new.created_by,
            new.name,
            new.description,
            new.hyperparams,
            new.tags,
            now
        ],
    )
    .map_err(|e| crate::error::conflict_on_unique(e, "an experiment with this id already exists"))?;
    get(conn, new.id)?.ok_or_else(|| Error::Internal("experiment vanished after insert".into()))
}

/// Any experiment by its public id, whoever may see it: callers check access next.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Experiment>> {
    let sql = format!("SELECT {COLUMNS} FROM experiments e WHERE e.uuid = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn in_workspace(conn: &Connection, workspace_id: &str) -> Result<Vec<Experiment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.workspace_id = ?1 ORDER BY e.created_at DESC, e.id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([workspace_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every experiment in every workspace `user_id` belongs to.
pub fn visible_to(conn: &Connection, user_id: &str) -> Result<Vec<Experiment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e JOIN workspace_members m ON m.workspace_id = e.workspace_id
         WHERE m.user_id = ?1 ORDER BY e.created_at DESC, e.id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Those of `ids` that `user_id` may see, in the order asked; unknown or hidden ones are left out.
pub fn visible_among(conn: &Connection, user_id: &str, ids: &[String]) -> Result<Vec<Experiment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e JOIN workspace_members m ON m.workspace_id = e.workspace_id
         WHERE e.uuid = ?1 AND m.user_id = ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(e) = stmt.query_row([id, user_id], from_row).optional()? {
            out.push(e);
        }
    }
    Ok(out)
}

pub struct Changes<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub hyperparams: Option<&'a str>,
    pub tags: Option<&'a str>,
}

pub fn update(conn: &Connection, rowid: i64, c: &Changes, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE experiments SET
            name = coalesce(?2, name),
            description = CASE WHEN ?3 THEN ?4 ELSE description END,
            hyperparams = coalesce(?5, hyperparams),
            tags = coalesce(?6, tags),
            updated_at = ?7
         WHERE id = ?1",
        params![
            rowid,
            c.name,
            c.description.is_some(),
            c.description.flatten(),
            c.hyperparams,
            c.tags,
            now
        ],
    )?;
    Ok(())
}

/// Deletes an experiment; foreign keys cascade to its series, logs and metadata.
pub fn delete(conn: &Connection, rowid: i64) -> Result<()> {
    conn.execute("DELETE FROM experiments WHERE id = ?1", [rowid])?;
    Ok(())
}
