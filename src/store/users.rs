//! Accounts.

use crate::sql::{Connection, OptionalExtension, Row, params};

use crate::error::{Result, conflict_on_unique};

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub disabled: bool,
    /// When the address was proven (a mailed link opened, or an admin vouched); see
    /// [`confirm_email`].
    pub email_confirmed_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, email, password_hash, disabled, created_at, email_confirmed_at";

fn from_row(r: &Row) -> crate::sql::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        created_at: r.get(4)?,
        email_confirmed_at: r.get(5)?,
    })
}

/// Inserts a user; an e-mail already taken (compared case-insensitively) is a 409.
pub fn create(conn: &Connection, email: &str, password_hash: &str, now: i64) -> Result<User> {
    let id = super::new_id();
    conn.prepare_cached(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, email, password_hash, now])
    .map_err(|e| conflict_on_unique(e, "an account with this email already exists"))?;
    Ok(User {
        id,
        email: email.to_string(),
        password_hash: password_hash.to_string(),
        disabled: false,
        email_confirmed_at: None,
        created_at: now,
    })
}

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email COLLATE NOCASE = ?1 COLLATE NOCASE");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([email], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM users")?
        .query_row([], |r| r.get(0))?)
}

pub fn list(conn: &Connection) -> Result<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY created_at, email");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

pub fn set_password(conn: &Connection, id: &str, password_hash: &str) -> Result<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id, password_hash])?;
    Ok(())
}

pub fn set_disabled(conn: &Connection, id: &str, disabled: bool) -> Result<()> {
    conn.prepare_cached("UPDATE users SET disabled = ?2 WHERE id = ?1")?
        .execute(params![id, disabled])?;
    Ok(())
}

/// Deletes an account. The foreign keys take its keys, tokens, memberships and its Personal
/// workspace (with that workspace's runs) with it, and clear `created_by` on the runs it made
/// elsewhere: `admin::user_delete` decides beforehand what may go.
pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Records that the account's address is proven: invitations addressed to it now count. The
/// first proof's time stays.
pub fn confirm_email(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET email_confirmed_at = coalesce(email_confirmed_at, ?2) WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn emails_are_unique_regardless_of_case() {
        let conn = crate::db::memory();
        let ada = create(&conn, "ada@lab.org", "h", 1).unwrap();
        let err = create(&conn, "ADA@lab.org", "h", 2).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        let found = by_email(&conn, "Ada@Lab.org").unwrap().unwrap();
        assert_eq!(found.id, ada.id);
        assert_eq!(count(&conn).unwrap(), 1);
    }
}
