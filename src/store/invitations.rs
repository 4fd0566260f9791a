//! Invitations to a workspace: each a single-use link (stored as the SHA-256 of its secret),
//! addressed to an e-mail, and good for [`TTL_MS`]. An expired invitation is treated as gone by
//! every read here, and swept away by the next invitation made.

use crate::sql::{Connection, OptionalExtension, Row, params};

use super::workspaces::Role;
use crate::error::{Error, Result, conflict_on_unique};

/// How long an invitation lasts: long enough to reach someone on leave for a week, short
/// enough that a link forgotten in a chat log stops working.
pub const TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Pending invitations one workspace may have: its list, read on every members page, stays
/// small.
pub const MAX_PENDING: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub email: String,
    pub role: Role,
    /// The inviter's e-mail (None once that account is gone).
    pub from: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

const SELECT: &str =
    "SELECT i.id, i.workspace_id, w.name, i.email, i.role_id, u.email, i.created_at, i.expires_at
    FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
    LEFT JOIN users u ON u.id = i.invited_by";

/// Only invitations still alive at `now` (`?1` in every query below).
const ALIVE: &str = "coalesce(i.expires_at, 0) > ?1";

fn from_row(r: &Row) -> crate::sql::Result<Invitation> {
    Ok(Invitation {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        workspace_name: r.get(2)?,
        email: r.get(3)?,
        role: Role::from_id(r.get(4)?).unwrap_or(Role::Viewer),
        from: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
    })
}

/// A new invitation.
pub struct NewInvitation<'a> {
    pub workspace_id: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub by: &'a str,
    /// SHA-256 of the link's secret.
    pub token_hash: &'a [u8],
}

/// Records an invitation that expires [`TTL_MS`] after `now`; 409 when that e-mail already
/// belongs to a member or already has a pending invitation to this workspace. Expired
/// invitations are deleted first, so an address whose invitation lapsed can be invited again.
pub fn create(conn: &Connection, new: &NewInvitation, now: i64) -> Result<Invitation> {
    conn.prepare_cached("DELETE FROM invitations WHERE coalesce(expires_at, 0) <= ?1")?
        .execute([now])?;
    let member: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM workspace_members m JOIN users u ON u.id = m.user_id
                        WHERE m.workspace_id = ?1 AND u.email COLLATE NOCASE = ?2 COLLATE NOCASE)",
        )?
        .query_row([new.workspace_id, new.email], |r| r.get(0))?;
    let email = new.email;
    let pending: i64 = conn
        .prepare_cached("SELECT count(*) FROM invitations WHERE workspace_id = ?1")?
        .query_row([new.workspace_id], |r| r.get(0))?;
    if pending >= MAX_PENDING {
        return Err(Error::bad_request(format!(
            "this workspace has {pending} pending invitations, the most it may have; cancel some first"
        )));
    }
    if member {
        return Err(Error::Conflict(format!(
            "{email} is already a member of this workspace"
        )));
    }
    let id = super::new_id();
    conn.prepare_cached(
        "INSERT INTO invitations (id, workspace_id, email, role_id, invited_by, created_at, token_hash, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        new.workspace_id,
        email,
        new.role as i64,
        new.by,
        now,
        new.token_hash,
        now + TTL_MS
    ])
    .map_err(|e| {
        conflict_on_unique(
            e,
            &format!(
                "{email} already has a pending invitation to this workspace; cancel it to make a new link"
            ),
        )
    })?;
    get(conn, &id, now)?.ok_or_else(|| Error::Internal("invitation vanished after insert".into()))
}

/// The invitation `id`, if it is still alive at `now`.
pub fn get(conn: &Connection, id: &str, now: i64) -> Result<Option<Invitation>> {
    let sql = format!("{SELECT} WHERE i.id = ?2 AND {ALIVE}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![now, id], from_row)
        .optional()?)
}

/// The invitation whose link secret hashes to `token_hash`, if it is still alive at `now`.
pub fn by_token(conn: &Connection, token_hash: &[u8], now: i64) -> Result<Option<Invitation>> {
    let sql = format!("{SELECT} WHERE i.token_hash = ?2 AND {ALIVE}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![now, token_hash], from_row)
        .optional()?)
}

/// Pending invitations addressed to `email`. Callers decide whether the address is proven.
pub fn for_email(conn: &Connection, email: &str, now: i64) -> Result<Vec<Invitation>> {
    let sql = format!(
        "{SELECT} WHERE i.email COLLATE NOCASE = ?2 COLLATE NOCASE AND {ALIVE} ORDER BY i.created_at, i.id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![now, email], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Pending invitations of a workspace.
pub fn for_workspace(conn: &Connection, workspace_id: &str, now: i64) -> Result<Vec<Invitation>> {
    let sql = format!("{SELECT} WHERE i.workspace_id = ?2 AND {ALIVE} ORDER BY i.created_at, i.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![now, workspace_id], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM invitations WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{users, workspaces};

    fn new<'a>(ws: &'a str, email: &'a str, by: &'a str, token: &'a [u8]) -> NewInvitation<'a> {
        NewInvitation {
            workspace_id: ws,
            email,
            role: Role::Editor,
            by,
            token_hash: token,
        }
    }

    #[test]
    fn a_workspace_has_at_most_max_pending_invitations() {
        let conn = crate::db::memory();
        let owner = users::create(&conn, "o@x.org", "h", 1).unwrap();
        let ws = workspaces::create(&conn, &owner.id, "lab", None, false, 1).unwrap();
        for i in 0..MAX_PENDING {
            let email = format!("p{i}@x.org");
            let token = i.to_le_bytes();
            create(&conn, &new(&ws.id, &email, &owner.id, &token), 2).unwrap();
        }
        let err = create(&conn, &new(&ws.id, "late@x.org", &owner.id, b"late"), 2).unwrap_err();
        assert!(
            err.to_string().contains("1000 pending invitations"),
            "{err}"
        );
    }

    #[test]
    fn an_invitation_waits_for_an_account_and_cannot_be_doubled() {
        let conn = crate::db::memory();
        let owner = users::create(&conn, "o@x.org", "h", 1).unwrap();
        let ws = workspaces::create(&conn, &owner.id, "lab", None, false, 1).unwrap();
        let inv = create(&conn, &new(&ws.id, "new@x.org", &owner.id, b"t1"), 2).unwrap();
        assert_eq!(inv.workspace_name, "lab");
        assert_eq!(inv.from.as_deref(), Some("o@x.org"));
        assert_eq!(inv.expires_at, 2 + TTL_MS);
        let again = create(&conn, &new(&ws.id, "NEW@x.org", &owner.id, b"t2"), 3).unwrap_err();
        assert!(matches!(again, Error::Conflict(_)), "{again:?}");
        let member = create(&conn, &new(&ws.id, "O@x.org", &owner.id, b"t3"), 3).unwrap_err();
        assert!(matches!(member, Error::Conflict(_)), "{member:?}");
        // Signing up later with the address in another case still finds it.
        assert_eq!(for_email(&conn, "New@X.org", 3).unwrap().len(), 1);
        assert_eq!(by_token(&conn, b"t1", 3).unwrap().unwrap().id, inv.id);
        assert!(by_token(&conn, b"t2", 3).unwrap().is_none());
    }

    #[test]
    fn an_expired_invitation_is_gone_everywhere_and_the_address_can_be_invited_again() {
        let conn = crate::db::memory();
        let owner = users::create(&conn, "o@x.org", "h", 1).unwrap();
        let ws = workspaces::create(&conn, &owner.id, "lab", None, false, 1).unwrap();
        let inv = create(&conn, &new(&ws.id, "new@x.org", &owner.id, b"t1"), 0).unwrap();
        let later = TTL_MS;
        assert!(get(&conn, &inv.id, later).unwrap().is_none());
        assert!(by_token(&conn, b"t1", later).unwrap().is_none());
        assert!(for_email(&conn, "new@x.org", later).unwrap().is_empty());
        assert!(for_workspace(&conn, &ws.id, later).unwrap().is_empty());
        let again = create(&conn, &new(&ws.id, "new@x.org", &owner.id, b"t2"), later).unwrap();
        assert_ne!(again.id, inv.id);
        assert!(by_token(&conn, b"t1", later).unwrap().is_none());
    }
}
