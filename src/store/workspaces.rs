//! Workspaces, their members and roles, and [`require_role`]: the one access check.

use crate::sql::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};

/// A member's role. The numbers are the `roles` table ids; a smaller number may do more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner = 1,
    Editor = 2,
    Viewer = 3,
}

impl Role {
    pub fn from_id(id: i64) -> Option<Role> {
        match id {
            1 => Some(Role::Owner),
            2 => Some(Role::Editor),
            3 => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Editor => "EDITOR",
            Role::Viewer => "VIEWER",
        }
    }

    /// Whether a member with this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self <= needed
    }
}

/// Every handler that touches a workspace's objects goes through here first. A non-member gets
/// the same 404 as for a workspace that does not exist, so ids cannot be probed; a member whose
/// role is too weak gets a 403 naming the role needed.
pub fn require_role(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    needed: Role,
) -> Result<Role> {
    let role =
        role_of(conn, workspace_id, user_id)?.ok_or_else(|| Error::not_found("workspace"))?;
    if role.allows(needed) {
        Ok(role)
    } else {
        Err(Error::Forbidden(format!(
            "this needs the {} role in the workspace; you are {}",
            needed.name(),
            role.name()
        )))
    }
}

pub fn role_of(conn: &Connection, workspace_id: &str, user_id: &str) -> Result<Option<Role>> {
    let id: Option<i64> = conn
        .prepare_cached(
            "SELECT role_id FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
        )?
        .query_row([workspace_id, user_id], |r| r.get(0))
        .optional()?;
    Ok(id.and_then(Role::from_id))
}

/// The role of `user_id`, who must be a member of the workspace (404 "member not found" if not).
pub fn member_role(conn: &Connection, workspace_id: &str, user_id: &str) -> Result<Role> {
    role_of(conn, workspace_id, user_id)?.ok_or_else(|| Error::not_found("member"))
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub role: Role,
}

fn from_row(r: &Row) -> crate::sql::Result<Workspace> {
    Ok(Workspace {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        created_at: r.get(3)?,
        role: Role::from_id(r.get(4)?).unwrap_or(Role::Viewer),
    })
}

const SELECT: &str = "SELECT w.id, w.name, w.description, w.created_at, m.role_id
    FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id";

/// Creates a workspace with `owner` as its OWNER.
pub fn create(
    conn: &Connection,
    owner: &str,
    name: &str,
    description: Option<&str>,
    personal: bool,
    now: i64,
) -> Result<Workspace> {
    if !personal {
        let joined: i64 = conn
            .prepare_cached("SELECT count(*) FROM workspace_members WHERE user_id = ?1")?
            .query_row([owner], |r| r.get(0))?;
        if joined >= MAX_MEMBERSHIPS {
            return Err(Error::bad_request(format!(
                "you are in {joined} workspaces, the most one account may be in; leave or delete one first"
            )));
        }
    }
    let id = super::new_id();
    conn.prepare_cached("INSERT INTO workspaces (id, name, description, personal_of, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![id, name, description, personal.then_some(owner), now])?;
    add_member(conn, &id, owner, Role::Owner, now)?;
    Ok(Workspace {
        id,
        name: name.to_string(),
        description: description.map(str::to_string),
        created_at: now,
        role: Role::Owner,
    })
}

pub fn add_member(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    role: Role,
    now: i64,
) -> Result<()> {
    conn.prepare_cached("INSERT INTO workspace_members (workspace_id, user_id, role_id, created_at) VALUES (?1, ?2, ?3, ?4)")?.execute(params![workspace_id, user_id, role as i64, now])?;
    Ok(())
}

/// Workspaces one account may create while in this many (its workspace list stays small).
pub const MAX_MEMBERSHIPS: i64 = 1_000;

/// The workspace experiments go to when the client names none, created on first need. Its
/// owner is always its OWNER: a file from before that rule, where a co-owner removed or
/// demoted them, is mended here.
pub fn personal(conn: &Connection, user_id: &str, now: i64) -> Result<String> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT id FROM workspaces WHERE personal_of = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?;
    let Some(id) = existing else {
        return Ok(create(conn, user_id, "Personal", None, true, now)?.id);
    };
    match role_of(conn, &id, user_id)? {
        Some(Role::Owner) => {}
        Some(_) => set_role(conn, &id, user_id, Role::Owner)?,
        None => add_member(conn, &id, user_id, Role::Owner, now)?,
    }
    Ok(id)
}

/// The id of `user_id`'s Personal workspace, if it has one yet.
pub fn personal_of(conn: &Connection, user_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM workspaces WHERE personal_of = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?)
}

pub fn list_for(conn: &Connection, user_id: &str) -> Result<Vec<Workspace>> {
    let sql = format!("{SELECT} WHERE m.user_id = ?1 ORDER BY w.created_at, w.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([user_id], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The workspace as its member `user_id` sees it (None for a non-member or a missing one).
pub fn get_for(conn: &Connection, id: &str, user_id: &str) -> Result<Option<Workspace>> {
    let sql = format!("{SELECT} WHERE w.id = ?1 AND m.user_id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id, user_id], from_row)
        .optional()?)
}

/// The oldest workspace named `name` that `user_id` is a member of.
pub fn by_name_for(conn: &Connection, name: &str, user_id: &str) -> Result<Option<Workspace>> {
    let sql = format!(
        "{SELECT} WHERE w.name = ?1 AND m.user_id = ?2 ORDER BY w.created_at, w.id LIMIT 1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name, user_id], from_row)
        .optional()?)
}

/// Renames a workspace and, when `description` is given, sets its description.
pub fn rename(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE workspaces SET name = coalesce(?2, name), description = coalesce(?3, description) WHERE id = ?1",
    )?
    .execute(params![id, name, description])?;
    Ok(())
}

/// Deletes a workspace; the foreign keys cascade to members, experiments and their logs.
pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM workspaces WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

pub fn owner_count(conn: &Connection, workspace_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM workspace_members WHERE workspace_id = ?1 AND role_id = ?2",
        )?
        .query_row(params![workspace_id, Role::Owner as i64], |r| r.get(0))?)
}

pub fn remove_member(conn: &Connection, workspace_id: &str, user_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2")?
        .execute([workspace_id, user_id])?;
    Ok(())
}

pub fn set_role(conn: &Connection, workspace_id: &str, user_id: &str, role: Role) -> Result<()> {
    conn.prepare_cached(
        "UPDATE workspace_members SET role_id = ?3 WHERE workspace_id = ?1 AND user_id = ?2",
    )?
    .execute(params![workspace_id, user_id, role as i64])?;
    Ok(())
}

/// The user whose Personal workspace this is, if it is one.
pub fn personal_owner(conn: &Connection, workspace_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT personal_of FROM workspaces WHERE id = ?1")?
        .query_row([workspace_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Refuses a change that would leave the workspace without an OWNER, or take a Personal
/// workspace from its owner (runs created without a workspace land there, so its owner must
/// always be able to write and manage them).
pub fn keep_an_owner(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    what: &str,
) -> Result<()> {
    if personal_owner(conn, workspace_id)?.as_deref() == Some(user_id) {
        return Err(Error::bad_request(format!(
            "cannot {what}: this is the member's Personal workspace, which always keeps its owner as OWNER"
        )));
    }
    if role_of(conn, workspace_id, user_id)? == Some(Role::Owner)
        && owner_count(conn, workspace_id)? <= 1
    {
        return Err(Error::bad_request(format!(
            "cannot {what}: this is the workspace's last OWNER; make another member OWNER first, or delete the workspace"
        )));
    }
    Ok(())
}

/// A workspace that would be lost with an account: its Personal workspace (which the database
/// deletes with it), or one where it is the last OWNER.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub name: String,
    pub personal: bool,
    /// Members besides the account.
    pub others: i64,
    pub runs: i64,
}

/// The workspaces that deleting `user_id` would delete or leave without an OWNER: its Personal
/// workspace first, then the others it is the last OWNER of, oldest first.
pub fn held_by(conn: &Connection, user_id: &str) -> Result<Vec<Held>> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.id, w.name, CASE WHEN w.personal_of = ?1 THEN 1 ELSE 0 END AS personal,
            (SELECT count(*) FROM workspace_members m WHERE m.workspace_id = w.id AND m.user_id != ?1),
            (SELECT count(*) FROM experiments e WHERE e.workspace_id = w.id)
         FROM workspaces w
         WHERE w.personal_of = ?1
            OR (EXISTS (SELECT 1 FROM workspace_members m
                        WHERE m.workspace_id = w.id AND m.user_id = ?1 AND m.role_id = ?2)
                AND NOT EXISTS (SELECT 1 FROM workspace_members m
                        WHERE m.workspace_id = w.id AND m.user_id != ?1 AND m.role_id = ?2))
         ORDER BY personal DESC, w.created_at, w.id",
    )?;
    let rows = stmt.query_map(params![user_id, Role::Owner as i64], |r| {
        Ok(Held {
            id: r.get(0)?,
            name: r.get(1)?,
            personal: r.get(2)?,
            others: r.get(3)?,
            runs: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Makes `user_id` an OWNER of the workspace (a member already, or added), and a Personal
/// workspace an ordinary one named `name`: how a departing account's workspaces change hands.
pub fn hand_over(
    conn: &Connection,
    workspace_id: &str,
    user_id: &str,
    name: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached("UPDATE workspaces SET personal_of = NULL, name = ?2 WHERE id = ?1")?
        .execute([workspace_id, name])?;
    match role_of(conn, workspace_id, user_id)? {
        Some(Role::Owner) => Ok(()),
        Some(_) => set_role(conn, workspace_id, user_id, Role::Owner),
        None => add_member(conn, workspace_id, user_id, Role::Owner, now),
    }
}

pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub joined_at: i64,
}

pub fn members(conn: &Connection, workspace_id: &str) -> Result<Vec<Member>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.email, m.role_id, m.created_at FROM workspace_members m
         JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ?1 ORDER BY m.created_at, u.email",
    )?;
    let rows = stmt.query_map([workspace_id], |r| {
        Ok(Member {
            user_id: r.get(0)?,
            email: r.get(1)?,
            role: Role::from_id(r.get(2)?).unwrap_or(Role::Viewer),
            joined_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users;

    #[test]
    fn roles_gate_by_strength_and_hide_from_outsiders() {
        let conn = crate::db::memory();
        let owner = users::create(&conn, "o@x.org", "h", 1).unwrap();
        let viewer = users::create(&conn, "v@x.org", "h", 1).unwrap();
        let outsider = users::create(&conn, "z@x.org", "h", 1).unwrap();
        let ws = create(&conn, &owner.id, "lab", None, false, 1).unwrap();
        add_member(&conn, &ws.id, &viewer.id, Role::Viewer, 2).unwrap();

        assert_eq!(
            require_role(&conn, &ws.id, &owner.id, Role::Owner).unwrap(),
            Role::Owner
        );
        assert_eq!(
            require_role(&conn, &ws.id, &viewer.id, Role::Viewer).unwrap(),
            Role::Viewer
        );
        let refused = require_role(&conn, &ws.id, &viewer.id, Role::Editor).unwrap_err();
        assert!(matches!(refused, Error::Forbidden(_)), "{refused:?}");
        let hidden = require_role(&conn, &ws.id, &outsider.id, Role::Viewer).unwrap_err();
        assert!(matches!(hidden, Error::NotFound(_)), "{hidden:?}");
    }

    #[test]
    fn an_account_creates_workspaces_up_to_the_membership_cap() {
        let conn = crate::db::memory();
        let u = users::create(&conn, "busy@x.org", "h", 1).unwrap();
        for i in 0..MAX_MEMBERSHIPS {
            create(&conn, &u.id, &format!("ws{i}"), None, false, 1).unwrap();
        }
        let err = create(&conn, &u.id, "one more", None, false, 1).unwrap_err();
        assert!(err.to_string().contains("in 1000 workspaces"), "{err}");
        // The Personal workspace is never refused: runs without a workspace need it.
        personal(&conn, &u.id, 2).unwrap();
    }

    #[test]
    fn personal_workspace_is_created_once() {
        let conn = crate::db::memory();
        let u = users::create(&conn, "p@x.org", "h", 1).unwrap();
        let a = personal(&conn, &u.id, 1).unwrap();
        let b = personal(&conn, &u.id, 2).unwrap();
        assert_eq!(a, b);
        assert_eq!(list_for(&conn, &u.id).unwrap().len(), 1);
    }
}
