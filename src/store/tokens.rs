//! Refresh tokens and e-mail confirmation tokens, both stored only as SHA-256 hashes.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

pub struct RefreshToken {
    pub user_id: String,
    pub family: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub fn insert_refresh(
    conn: &Connection,
    hash: &[u8],
    user_id: &str,
    family: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash, user_id, family, expires_at, now],
    )?;
    Ok(())
}

pub fn refresh_by_hash(conn: &Connection, hash: &[u8]) -> Result<Option<RefreshToken>> {
    Ok(conn
        .query_row(
            "SELECT user_id, family, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?1",
            [hash],
            |r| {
                Ok(RefreshToken {
                    user_id: r.get(0)?,
                    family: r.get(1)?,
                    expires_at: r.get(2)?,
                    used_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Marks a token used; returns false if someone else used it first (a concurrent refresh).
pub fn mark_refresh_used(conn: &Connection, hash: &[u8], now: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![hash, now],
    )?;
    Ok(n == 1)
}

pub fn revoke_family(conn: &Connection, family: &str) -> Result<()> {
    conn.execute("DELETE FROM refresh_tokens WHERE family = ?1", [family])?;
    Ok(())
}

/// Ends every login of a user (password change, disabling).
pub fn revoke_user(conn: &Connection, user_id: &str) -> Result<()> {
    conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [user_id])?;
    Ok(())
}

pub fn insert_confirmation(conn: &Connection, hash: &[u8], user_id: &str, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO confirmations (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![hash, user_id, now],
    )?;
    Ok(())
}

/// Consumes a confirmation token: returns its user, and the token can never be used again.
pub fn take_confirmation(conn: &Connection, hash: &[u8]) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "DELETE FROM confirmations WHERE token_hash = ?1 RETURNING user_id",
            [hash],
            |r| r.get(0),
        )
        .optional()?)
}
