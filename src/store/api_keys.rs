//! API keys: only the SHA-256 of a key is stored.

use crate::sql::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

/// Keys one account may hold that are not revoked, and keys in all (revoked ones stay listed,
/// as a record): the key list, read on every settings page, stays small.
pub const MAX_LIVE_KEYS: i64 = 100;
pub const MAX_KEYS: i64 = 1_000;

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
    let (live, all): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE revoked = 0), count(*) FROM api_keys WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if live >= MAX_LIVE_KEYS || all >= MAX_KEYS {
        return Err(Error::bad_request(format!(
            "this account has {live} API keys ({all} with revoked ones); the most is {MAX_LIVE_KEYS} ({MAX_KEYS}): revoke one you no longer use"
        )));
    }
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
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Revokes a key of this user; false when the user has no such key.
pub fn revoke(conn: &Connection, user_id: &str, id: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE api_keys SET revoked = 1 WHERE id = ?1 AND user_id = ?2")?
        .execute(params![id, user_id])?;
    Ok(n == 1)
}

/// A key as the admin lists it: with its account's address.
#[derive(Debug, Clone)]
pub struct KeyOfUser {
    pub key: ApiKey,
    pub email: String,
}

const WITH_EMAIL: &str = "SELECT k.id, k.name, k.created_at, k.last_used, k.revoked, u.email
    FROM api_keys k JOIN users u ON u.id = k.user_id";

fn with_email(r: &crate::sql::Row) -> crate::sql::Result<KeyOfUser> {
    Ok(KeyOfUser {
        key: ApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            last_used: r.get(3)?,
            revoked: r.get(4)?,
        },
        email: r.get(5)?,
    })
}

/// Every key (of one account, or of all), oldest first, for `tora api-key list`.
pub fn list_all(conn: &Connection, user_id: Option<&str>) -> Result<Vec<KeyOfUser>> {
    let sql =
        // The CAST types the parameter where a bare `?1 IS NULL` leaves PostgreSQL unable to.
        format!("{WITH_EMAIL} WHERE CAST(?1 AS TEXT) IS NULL OR k.user_id = ?1 ORDER BY k.created_at, k.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([user_id], with_email)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Revokes a key by its id, whoever holds it; the key as it was before (None: no such key).
pub fn revoke_any(conn: &Connection, id: &str) -> Result<Option<KeyOfUser>> {
    let sql = format!("{WITH_EMAIL} WHERE k.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([id], with_email)
        .optional()?;
    if found.is_some() {
        conn.prepare_cached("UPDATE api_keys SET revoked = 1 WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users;

    #[test]
    fn an_account_holds_at_most_100_live_keys_and_1000_in_all() {
        let conn = crate::db::memory();
        let u = users::create(&conn, "k@x.org", "h", 1).unwrap();
        let mut ids = Vec::new();
        for i in 0..MAX_LIVE_KEYS {
            ids.push(create(&conn, &u.id, "k", &i.to_le_bytes(), 1).unwrap().id);
        }
        let err = create(&conn, &u.id, "k", b"one more", 1).unwrap_err();
        assert!(err.to_string().contains("the most is 100"), "{err}");
        // Revoking makes room, up to 1,000 keys in all.
        for n in 0..(MAX_KEYS - MAX_LIVE_KEYS) {
            let id = ids.remove(0);
            assert!(revoke(&conn, &u.id, &id).unwrap());
            let hash = (1_000 + n).to_le_bytes();
            ids.push(create(&conn, &u.id, "k", &hash, 1).unwrap().id);
        }
        revoke(&conn, &u.id, &ids.remove(0)).unwrap();
        let err = create(&conn, &u.id, "k", b"past all", 1).unwrap_err();
        assert!(err.to_string().contains("(1000)"), "{err}");
    }
}
