//! Refresh tokens and e-mail confirmation tokens, both stored only as SHA-256 hashes.

use crate::sql::{Connection, OptionalExtension, params};

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
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![hash, user_id, family, expires_at, now])?;
    Ok(())
}

pub fn refresh_by_hash(conn: &Connection, hash: &[u8]) -> Result<Option<RefreshToken>> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, family, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?1",
        )?
        .query_row([hash], |r| {
            Ok(RefreshToken {
                user_id: r.get(0)?,
                family: r.get(1)?,
                expires_at: r.get(2)?,
                used_at: r.get(3)?,
            })
        })
        .optional()?)
}

/// Marks a token used; returns false if someone else used it first (a concurrent refresh).
pub fn mark_refresh_used(conn: &Connection, hash: &[u8], now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        )?
        .execute(params![hash, now])?;
    Ok(n == 1)
}

pub fn revoke_family(conn: &Connection, family: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM refresh_tokens WHERE family = ?1")?
        .execute([family])?;
    Ok(())
}

/// Ends every login of a user (password change, disabling).
pub fn revoke_user(conn: &Connection, user_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM refresh_tokens WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

pub fn insert_confirmation(conn: &Connection, hash: &[u8], user_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO confirmations (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![hash, user_id, now])?;
    Ok(())
}

/// Forgets every confirmation token of a user (a new link replaces the old ones).
pub fn clear_confirmations(conn: &Connection, user_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM confirmations WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

/// How long a mailed confirmation link works, as long as an invitation does.
pub const CONFIRMATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Consumes a confirmation token: returns its user if it was made less than
/// [`CONFIRMATION_TTL_MS`] before `now`, and the token can never be used again either way.
pub fn take_confirmation(conn: &Connection, hash: &[u8], now: i64) -> Result<Option<String>> {
    let taken: Option<(String, i64)> = conn
        .prepare_cached(
            "DELETE FROM confirmations WHERE token_hash = ?1 RETURNING user_id, created_at",
        )?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(taken
        .filter(|(_, created)| now - created < CONFIRMATION_TTL_MS)
        .map(|(user, _)| user))
}
