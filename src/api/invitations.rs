//! Invitations: an OWNER invites an e-mail address with a role; the addressee accepts or
//! declines. An invitation to an address without an account waits until someone signs up with it.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::workspaces::parse_role;
use super::{Json, Path, Query, Reply, created, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::invitations::{self, Invitation};
use crate::store::users;
use crate::store::workspaces::{self, Role, require_role};
use crate::time::{now_ms, rfc3339};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_my_invitations, invite))
        .routes(routes!(list_workspace_invitations, answer_invitation))
        .routes(routes!(cancel_invitation))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct InvitationOut {
    id: String,
    workspace_id: String,
    workspace_name: String,
    email: String,
    role: &'static str,
    role_id: i64,
    from: Option<String>,
    #[serde(rename = "created_at")]
    created_at: String,
}

impl From<Invitation> for InvitationOut {
    fn from(i: Invitation) -> Self {
        InvitationOut {
            id: i.id,
            workspace_id: i.workspace_id,
            workspace_name: i.workspace_name,
            email: i.email,
            role: i.role.name(),
            role_id: i.role as i64,
            from: i.from,
            created_at: rfc3339(i.created_at),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewInvitation {
    workspace_id: String,
    email: String,
    role_id: i64,
}

#[utoipa::path(post, path = "/workspace-invitations", tag = "invitations", security(("api_key" = []), ("bearer" = [])), request_body = NewInvitation, responses((status = 201, body = Envelope<InvitationOut>), Errors))]
async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewInvitation>,
) -> Result<Reply<InvitationOut>> {
    let workspace = parse_id(&body.workspace_id, "workspace")?;
    let email = crate::validate::normalize_email(&body.email)?;
    let role = parse_role(body.role_id)?;
    let inv = state
        .db
        .write(move |tx| {
            require_role(tx, &workspace, &user.id, Role::Owner)?;
            invitations::create(tx, &workspace, &email, role, &user.id, now_ms())
        })
        .await?;
    Ok(created(inv.into()))
}

#[utoipa::path(get, path = "/workspace-invitations", tag = "invitations", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<Vec<InvitationOut>>), Errors))]
async fn list_my_invitations(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Reply<Vec<InvitationOut>>> {
    let list = state
        .db
        .read(move |c| {
            let me = users::by_id(c, &user.id)?
                .ok_or_else(|| Error::Unauthorized("account gone".into()))?;
            invitations::for_email(c, &me.email)
        })
        .await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/workspaces/{id}/invitations", tag = "invitations", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<InvitationOut>>), Errors))]
async fn list_workspace_invitations(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Vec<InvitationOut>>> {
    let id = parse_id(&id, "workspace")?;
    let list = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Owner)?;
            invitations::for_workspace(c, &id)
        })
        .await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
struct Answer {
    invitation_id: String,
    action: String,
}

/// `PUT /api/workspaces/any/invitations?invitationId=..&action=accept|decline` (the seed's path:
/// the workspace segment is not used; the invitation names its workspace).
#[utoipa::path(put, path = "/workspaces/{id}/invitations", tag = "invitations", security(("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "not used; clients send \"any\""), Answer), responses((status = 200, body = Envelope<Answered>), Errors))]
async fn answer_invitation(
    State(state): State<AppState>,
    user: AuthUser,
    Path(_workspace): Path<String>,
    Query(q): Query<Answer>,
) -> Result<Reply<Answered>> {
    let id = parse_id(&q.invitation_id, "invitation")?;
    let accept = match q.action.to_ascii_lowercase().as_str() {
        "accept" => true,
        "decline" | "deny" => false,
        _ => return Err(Error::bad_request("action must be 'accept' or 'decline'")),
    };
    let workspace_id = state
        .db
        .write(move |tx| {
            let me = users::by_id(tx, &user.id)?
                .ok_or_else(|| Error::Unauthorized("account gone".into()))?;
            // Only the addressee may answer; to anyone else the invitation does not exist.
            let inv = invitations::get(tx, &id)?
                .filter(|i| i.email.eq_ignore_ascii_case(&me.email))
                .ok_or_else(|| Error::not_found("invitation"))?;
            invitations::delete(tx, &inv.id)?;
            if accept && workspaces::role_of(tx, &inv.workspace_id, &me.id)?.is_none() {
                workspaces::add_member(tx, &inv.workspace_id, &me.id, inv.role, now_ms())?;
            }
            Ok(inv.workspace_id)
        })
        .await?;
    Ok(ok(Answered {
        workspace_id,
        action: if accept { "accepted" } else { "declined" },
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Answered {
    workspace_id: String,
    /// "accepted" or "declined"
    action: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Cancelled {
    id: String,
    cancelled: bool,
}

#[utoipa::path(delete, path = "/workspaces/{id}/invitations/{invitation_id}", tag = "invitations", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("invitation_id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Cancelled>), Errors))]
async fn cancel_invitation(
    State(state): State<AppState>,
    user: AuthUser,
    Path((workspace, invitation)): Path<(String, String)>,
) -> Result<Reply<Cancelled>> {
    let workspace = parse_id(&workspace, "workspace")?;
    let invitation = parse_id(&invitation, "invitation")?;
    let cancelled = invitation.clone();
    state
        .db
        .write(move |tx| {
            require_role(tx, &workspace, &user.id, Role::Owner)?;
            let inv = invitations::get(tx, &invitation)?
                .filter(|i| i.workspace_id == workspace)
                .ok_or_else(|| Error::not_found("invitation"))?;
            invitations::delete(tx, &inv.id)
        })
        .await?;
    Ok(ok(Cancelled {
        id: cancelled,
        cancelled: true,
    }))
}
