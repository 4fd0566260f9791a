//! Invitations to a workspace, addressed by e-mail.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::workspaces::Role;
use crate::error::{Error, Result, conflict_on_unique};

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
}

const SELECT: &str =
    "SELECT i.id, i.workspace_id, w.name, i.email, i.role_id, u.email, i.created_at
    FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
    LEFT JOIN users u ON u.id = i.invited_by";

fn from_row(r: &Row) -> rusqlite::Result<Invitation> {
    Ok(Invitation {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        workspace_name: r.get(2)?,
        email: r.get(3)?,
        role: Role::from_id(r.get(4)?).unwrap_or(Role::Viewer),
        from: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Records an invitation; 409 when that e-mail already belongs to a member or already has a
/// pending invitation to this workspace.
pub fn create(
    conn: &Connection,
    workspace_id: &str,
    email: &str,
    role: Role,
    by: &str,
    now: i64,
) -> Result<Invitation> {
    let member: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM workspace_members m JOIN users u ON u.id = m.user_id
                        WHERE m.workspace_id = ?1 AND u.email = ?2)",
        )?
        .query_row([workspace_id, email], |r| r.get(0))?;
    if member {
        return Err(Error::Conflict(format!(
            "{email} is already a member of this workspace"
        )));
    }
    let id = super::new_id();
    conn.prepare_cached("INSERT INTO invitations (id, workspace_id, email, role_id, invited_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![id, workspace_id, email, role as i64, by, now])
    .map_err(|e| conflict_on_unique(e, &format!("{email} already has a pending invitation to this workspace")))?;
    get(conn, &id)?.ok_or_else(|| Error::Internal("invitation vanished after insert".into()))
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Invitation>> {
    let sql = format!("{SELECT} WHERE i.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// Pending invitations addressed to `email`.
pub fn for_email(conn: &Connection, email: &str) -> Result<Vec<Invitation>> {
    let sql = format!("{SELECT} WHERE i.email = ?1 ORDER BY i.created_at, i.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([email], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Pending invitations of a workspace.
pub fn for_workspace(conn: &Connection, workspace_id: &str) -> Result<Vec<Invitation>> {
    let sql = format!("{SELECT} WHERE i.workspace_id = ?1 ORDER BY i.created_at, i.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([workspace_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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

    #[test]
    fn an_invitation_waits_for_an_account_and_cannot_be_doubled() {
        let conn = crate::db::memory();
        let owner = users::create(&conn, "o@x.org", "h", 1).unwrap();
        let ws = workspaces::create(&conn, &owner.id, "lab", None, false, 1).unwrap();
        let inv = create(&conn, &ws.id, "new@x.org", Role::Editor, &owner.id, 2).unwrap();
        assert_eq!(inv.workspace_name, "lab");
        assert_eq!(inv.from.as_deref(), Some("o@x.org"));
        let again = create(&conn, &ws.id, "NEW@x.org", Role::Viewer, &owner.id, 3).unwrap_err();
        assert!(matches!(again, Error::Conflict(_)), "{again:?}");
        let member = create(&conn, &ws.id, "O@x.org", Role::Viewer, &owner.id, 3).unwrap_err();
        assert!(matches!(member, Error::Conflict(_)), "{member:?}");
        // Signing up later with the address in another case still finds it.
        assert_eq!(for_email(&conn, "New@X.org").unwrap().len(), 1);
    }
}
