//! Server-wide settings kept inside the database file.

use crate::sql::{Connection, OptionalExtension, params};

use crate::error::Result;

pub fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Stores `value` under `key` unless the key already has one; returns the value that stands.
pub fn get_or_insert(conn: &Connection, key: &str, value: &[u8]) -> Result<Vec<u8>> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
    )?
    .execute(params![key, value])?;
    Ok(get(conn, key)?.unwrap_or_else(|| value.to_vec()))
}
