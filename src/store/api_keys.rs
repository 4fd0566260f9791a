//! API keys: only the SHA-256 of a key is stored.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used: Option<i64>,
    pub revoked: bool,
}

pub fn create(
    conn: &Connection,
    user_id: &str,
    name: &str,
    hash: &[u8],
    now: i64,
) -> Result<ApiKey> {
    let id = super::new_id();
    conn.prepare_cached("INSERT INTO api_keys (id, user_id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![id, user_id, name, hash, now])?;
    Ok(ApiKey {
        id,
        name: name.to_string(),
        created_at: now,
        last_used: None,
        revoked: false,
    })
}

pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<ApiKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, created_at, last_used, revoked FROM api_keys
         WHERE user_id = ?1 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(ApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            last_used: r.get(3)?,
            revoked: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Revokes a key of this user; false when the user has no such key.
pub fn revoke(conn: &Connection, user_id: &str, id: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE api_keys SET revoked = 1 WHERE id = ?1 AND user_id = ?2")?
        .execute(params![id, user_id])?;
    Ok(n == 1)
}

/// The (key id, user id) of a live key whose user is enabled.
pub fn owner_of(conn: &Connection, hash: &[u8]) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT k.id, k.user_id FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = ?1 AND k.revoked = 0 AND u.disabled = 0",
        )?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Writes the last-use times gathered in memory since the previous save.
pub fn save_last_used(conn: &Connection, uses: &[(String, i64)]) -> Result<()> {
    let mut stmt = conn
        .prepare("UPDATE api_keys SET last_used = max(coalesce(last_used, 0), ?2) WHERE id = ?1")?;
    for (id, at) in uses {
        stmt.execute(params![id, at])?;
    }
    Ok(())
}
