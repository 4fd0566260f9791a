//! Workspaces: the unit of sharing. Every experiment belongs to one.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::{Deleted, ExperimentPage, ListQuery, list_in_workspace};
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Query, Reply, clean_name, created, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::workspaces::{self, Role, Workspace, require_role};
use crate::time::{now_ms, rfc3339};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, delete_workspace))
        .routes(routes!(leave_workspace))
        .routes(routes!(list_members))
        .routes(routes!(change_member_role, remove_member))
        .routes(routes!(list_workspace_experiments))
        .routes(routes!(list_roles))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceOut {
    id: String,
    name: String,
    description: Option<String>,
    created_at: String,
    role: &'static str,
}

impl From<Workspace> for WorkspaceOut {
    fn from(w: Workspace) -> Self {
        WorkspaceOut {
            id: w.id,
            name: w.name,
            description: w.description,
            created_at: rfc3339(w.created_at),
            role: w.role.name(),
        }
    }
}

#[utoipa::path(get, path = "/workspaces", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<Vec<WorkspaceOut>>), Errors))]
async fn list_workspaces(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Reply<Vec<WorkspaceOut>>> {
    let list = state
        .db
        .read(move |c| workspaces::list_for(c, &user.id))
        .await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewWorkspace {
    name: String,
    description: Option<String>,
}

#[utoipa::path(post, path = "/workspaces", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), request_body = NewWorkspace, responses((status = 201, body = Envelope<WorkspaceOut>), Errors))]
async fn create_workspace(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewWorkspace>,
) -> Result<Reply<WorkspaceOut>> {
    let name = clean_name(&body.name, "the workspace name", 255)?;
    let description = body
        .description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 10_000)
    {
        return Err(Error::bad_request(
            "the description is longer than 10000 characters",
        ));
    }
    let ws = state
        .db
        .write(move |tx| {
            workspaces::create(tx, &user.id, &name, description.as_deref(), false, now_ms())
        })
        .await?;
    Ok(created(ws.into()))
}

#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<WorkspaceOut>), Errors))]
async fn get_workspace(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<WorkspaceOut>> {
    let id = parse_id(&id, "workspace")?;
    let ws = state
        .db
        .read(move |c| workspaces::get_for(c, &id, &user.id))
        .await?;
    Ok(ok(ws.ok_or_else(|| Error::not_found("workspace"))?.into()))
}

#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Deleted>), Errors))]
async fn delete_workspace(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Deleted>> {
    let id = parse_id(&id, "workspace")?;
    let deleted = id.clone();
    state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            // A Personal workspace holds its owner's runs: only they may delete it.
            if workspaces::personal_owner(tx, &id)?.is_some_and(|owner| owner != user.id) {
                return Err(Error::Forbidden(
                    "this is another member's Personal workspace; only they may delete it".into(),
                ));
            }
            workspaces::delete(tx, &id)
        })
        .await?;
    // Its streams end: reconnecting, their clients find it gone.
    state.live.end_workspace_streams(&deleted, None);
    Ok(ok(Deleted {
        id: deleted,
        deleted: true,
    }))
}

#[utoipa::path(post, path = "/workspaces/{id}/leave", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Left>), Errors))]
async fn leave_workspace(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Left>> {
    let id = parse_id(&id, "workspace")?;
    let left = id.clone();
    let user_id = user.id.clone();
    state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Viewer)?;
            workspaces::keep_an_owner(tx, &id, &user.id, "leave")?;
            workspaces::remove_member(tx, &id, &user.id)
        })
        .await?;
    state.live.end_workspace_streams(&left, Some(&user_id));
    Ok(ok(Left {
        id: left,
        left: true,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Left {
    id: String,
    left: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MemberOut {
    user_id: String,
    email: String,
    role: &'static str,
    role_id: i64,
    joined_at: String,
}

#[utoipa::path(get, path = "/workspaces/{id}/members", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<MemberOut>>), Errors))]
async fn list_members(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Vec<MemberOut>>> {
    let id = parse_id(&id, "workspace")?;
    let members = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Viewer)?;
            workspaces::members(c, &id)
        })
        .await?;
    Ok(ok(members.into_iter().map(member_out).collect()))
}

fn member_out(m: workspaces::Member) -> MemberOut {
    MemberOut {
        user_id: m.user_id,
        email: m.email,
        role: m.role.name(),
        role_id: m.role as i64,
        joined_at: rfc3339(m.joined_at),
    }
}

#[utoipa::path(get, path = "/workspaces/{id}/experiments", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ListQuery), responses((status = 200, body = ExperimentPage), Errors))]
async fn list_workspace_experiments(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<ExperimentPage> {
    let id = parse_id(&id, "workspace")?;
    list_in_workspace(&state, user, &headers, id, q).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RoleChange {
    role_id: i64,
}

pub fn parse_role(id: i64) -> Result<Role> {
    Role::from_id(id)
        .ok_or_else(|| Error::bad_request("roleId must be 1 (OWNER), 2 (EDITOR) or 3 (VIEWER)"))
}

#[utoipa::path(put, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)), request_body = RoleChange, responses((status = 200, body = Envelope<Vec<MemberOut>>), Errors))]
async fn change_member_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(String, String)>,
    Json(body): Json<RoleChange>,
) -> Result<Reply<Vec<MemberOut>>> {
    let id = parse_id(&id, "workspace")?;
    let member = parse_id(&member, "user")?;
    let role = parse_role(body.role_id)?;
    let members = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            workspaces::member_role(tx, &id, &member)?;
            if role != Role::Owner {
                workspaces::keep_an_owner(tx, &id, &member, "demote")?;
            }
            workspaces::set_role(tx, &id, &member, role)?;
            workspaces::members(tx, &id)
        })
        .await?;
    Ok(ok(members.into_iter().map(member_out).collect()))
}

#[utoipa::path(delete, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<MemberOut>>), Errors))]
async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(String, String)>,
) -> Result<Reply<Vec<MemberOut>>> {
    let id = parse_id(&id, "workspace")?;
    let member = parse_id(&member, "user")?;
    let (ws, removed) = (id.clone(), member.clone());
    let members = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            workspaces::member_role(tx, &id, &member)?;
            workspaces::keep_an_owner(tx, &id, &member, "remove")?;
            workspaces::remove_member(tx, &id, &member)?;
            workspaces::members(tx, &id)
        })
        .await?;
    // What they may no longer read, they no longer watch.
    state.live.end_workspace_streams(&ws, Some(&removed));
    Ok(ok(members.into_iter().map(member_out).collect()))
}

#[derive(Serialize, utoipa::ToSchema)]
struct RoleOut {
    id: i64,
    name: &'static str,
}

#[utoipa::path(get, path = "/workspace-roles", tag = "workspaces", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<Vec<RoleOut>>), Errors))]
async fn list_roles(_user: AuthUser) -> Result<Reply<Vec<RoleOut>>> {
    Ok(ok([Role::Owner, Role::Editor, Role::Viewer]
        .into_iter()
        .map(|r| RoleOut {
            id: r as i64,
            name: r.name(),
        })
        .collect()))
}
