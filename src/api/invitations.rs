//! Invitations: an OWNER invites an e-mail address with a role and gets, once, a single-use link
//! to share (and mailed to the address when the server has mail). Whoever opens the link signed
//! in may accept or decline it. Without the link, an invitation reaches only an account whose
//! address is proven (confirmed through a mailed link, or vouched for by an admin): knowing or
//! claiming an address is never enough to join a workspace.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::workspaces::parse_role;
use super::{Json, Path, Query, Reply, created, ok, parse_id};
use crate::auth::{self, AuthUser};
use crate::error::{Error, Result};
use crate::limits::{self, Action, Key};
use crate::server::AppState;
use crate::store::invitations::{self, Invitation, NewInvitation};
use crate::store::users;
use crate::store::workspaces::{self, Role, require_role};
use crate::time::{now_ms, rfc3339};

/// What every invitation link starts with, so a leaked one is recognisable (secret scanners,
/// logs). 40 characters from [A-Za-z0-9] follow: 238 random bits, far beyond guessing, which
/// is why the link endpoints need no rate limit.
pub const LINK_PREFIX: &str = "tora_inv_";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_my_invitations, invite))
        .routes(routes!(list_workspace_invitations, answer_invitation))
        .routes(routes!(cancel_invitation))
        .routes(routes!(accept_link))
        .routes(routes!(decline_link))
        .routes(routes!(preview_link))
}

/// One answer for a link that never existed, was used, was cancelled or has expired: the
/// caller learns nothing about which.
fn dead_link() -> Error {
    Error::NotFound("this invitation link is invalid, was already used, or has expired".into())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct InvitationOut {
    id: String,
    workspace_id: String,
    workspace_name: String,
    /// The address it was made for.
    email: String,
    role: &'static str,
    role_id: i64,
    from: Option<String>,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "expires_at")]
    expires_at: String,
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
            expires_at: rfc3339(i.expires_at),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewInvite {
    workspace_id: String,
    email: String,
    role_id: i64,
}

/// A new invitation, with its link: shown this once, as only its hash is stored.
#[derive(Serialize, utoipa::ToSchema)]
struct Invited {
    #[serde(flatten)]
    invitation: InvitationOut,
    /// The link's secret (`tora_inv_` + 40 characters).
    token: String,
    /// `{public URL}/invitations/{token}`: share it with the invitee; it works once.
    link: String,
    /// Whether the link was also mailed to the address (only when the server has mail).
    mailed: bool,
}

#[utoipa::path(post, path = "/workspace-invitations", tag = "invitations", security(("api_key" = []), ("bearer" = [])), request_body = NewInvite, responses((status = 201, body = Envelope<Invited>), Errors))]
async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<NewInvite>,
) -> Result<Reply<Invited>> {
    let workspace = parse_id(&body.workspace_id, "workspace")?;
    let email = crate::validate::normalize_email(&body.email)?;
    let role = parse_role(body.role_id)?;
    let token = auth::random_token(LINK_PREFIX, 40);
    let token_hash = auth::sha256(&token);
    let inviter = user.id.clone();
    let inv = state
        .db
        .write(move |tx| {
            require_role(tx, &workspace, &user.id, Role::Owner)?;
            let new = NewInvitation {
                workspace_id: &workspace,
                email: &email,
                role,
                by: &user.id,
                token_hash: &token_hash,
            };
            invitations::create(tx, &new, now_ms())
        })
        .await?;
    let link = format!("{}/invitations/{token}", state.public_url(&headers));
    let mailed = mail_link(&state, &inviter, &inv, &link).await;
    Ok(created(Invited {
        invitation: inv.into(),
        token,
        link,
        mailed,
    }))
}

/// Mails an invitation's link to its address: false without mail, past the inviter's mail
/// limit (the invitation stands; its OWNER shares the link), or when the relay failed.
async fn mail_link(state: &AppState, inviter: &str, inv: &Invitation, link: &str) -> bool {
    let Some(mailer) = &state.mailer else {
        return false;
    };
    let key = Key::account(Action::Mail, inviter);
    if state.limits.check(key, limits::MAIL_PER_ACCOUNT).is_err() {
        eprintln!(
            "warning: invitation to {} not mailed: its inviter is over the mail limit",
            inv.email
        );
        return false;
    }
    let mail = crate::mail::invitation(
        &inv.email,
        inv.from.as_deref(),
        &inv.workspace_name,
        inv.role.name(),
        link,
        &rfc3339(inv.expires_at),
    );
    mailer.send(mail).await
}

/// The caller's pending invitations, by address: empty unless the caller's address is proven.
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
            if me.email_confirmed_at.is_none() {
                return Ok(Vec::new());
            }
            invitations::for_email(c, &me.email, now_ms())
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
            invitations::for_workspace(c, &id, now_ms())
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
/// the workspace segment is not used; the invitation names its workspace). Answers by address:
/// only an account whose address is proven and is the one invited.
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
            let now = now_ms();
            let me = users::by_id(tx, &user.id)?
                .ok_or_else(|| Error::Unauthorized("account gone".into()))?;
            // Only the addressee, with a proven address, may answer; to anyone else the
            // invitation does not exist.
            let inv = invitations::get(tx, &id, now)?
                .filter(|i| {
                    me.email_confirmed_at.is_some() && i.email.eq_ignore_ascii_case(&me.email)
                })
                .ok_or_else(|| Error::not_found("invitation"))?;
            invitations::delete(tx, &inv.id)?;
            if accept && workspaces::role_of(tx, &inv.workspace_id, &me.id)?.is_none() {
                workspaces::add_member(tx, &inv.workspace_id, &me.id, inv.role, now)?;
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

/// What a link offers, for the page that asks "accept or decline?".
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LinkPreview {
    workspace_id: String,
    workspace_name: String,
    role: &'static str,
    role_id: i64,
    /// The address the OWNER made it for (the link works for whoever holds it).
    email: String,
    /// The inviter's e-mail.
    from: Option<String>,
    #[serde(rename = "expires_at")]
    expires_at: String,
    /// The caller is already a member: accepting would change nothing, so it is refused.
    member: bool,
}

/// Shows the invitation behind a link without using it.
#[utoipa::path(get, path = "/invitations/{token}", tag = "invitations", security(("api_key" = []), ("bearer" = [])), params(("token" = String, Path, description = "the link's secret, tora_inv_...")), responses((status = 200, body = Envelope<LinkPreview>), Errors))]
async fn preview_link(
    State(state): State<AppState>,
    user: AuthUser,
    Path(token): Path<String>,
) -> Result<Reply<LinkPreview>> {
    let hash = auth::sha256(token.trim());
    let (inv, member) = state
        .db
        .read(move |c| {
            let inv = invitations::by_token(c, &hash, now_ms())?.ok_or_else(dead_link)?;
            let member = workspaces::role_of(c, &inv.workspace_id, &user.id)?.is_some();
            Ok((inv, member))
        })
        .await?;
    Ok(ok(LinkPreview {
        workspace_id: inv.workspace_id,
        workspace_name: inv.workspace_name,
        role: inv.role.name(),
        role_id: inv.role as i64,
        email: inv.email,
        from: inv.from,
        expires_at: rfc3339(inv.expires_at),
        member,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LinkToken {
    /// The link's secret, `tora_inv_...` (the last part of the link).
    token: String,
}

/// Joins the caller to the workspace with the invitation's role and uses the link up. A member
/// gets a 409 and the link stays usable (an OWNER trying their own link does not spend it).
#[utoipa::path(post, path = "/invitations/accept", tag = "invitations", security(("api_key" = []), ("bearer" = [])), request_body = LinkToken, responses((status = 200, body = Envelope<Answered>), Errors))]
async fn accept_link(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<LinkToken>,
) -> Result<Reply<Answered>> {
    let hash = auth::sha256(body.token.trim());
    let workspace_id = state
        .db
        .write(move |tx| {
            let now = now_ms();
            let inv = invitations::by_token(tx, &hash, now)?.ok_or_else(dead_link)?;
            if workspaces::role_of(tx, &inv.workspace_id, &user.id)?.is_some() {
                return Err(Error::Conflict(
                    "you are already a member of this workspace".into(),
                ));
            }
            invitations::delete(tx, &inv.id)?;
            workspaces::add_member(tx, &inv.workspace_id, &user.id, inv.role, now)?;
            Ok(inv.workspace_id)
        })
        .await?;
    Ok(ok(Answered {
        workspace_id,
        action: "accepted",
    }))
}

/// Declines: the link stops working. Anyone holding the link may do this, as they could have
/// accepted it.
#[utoipa::path(post, path = "/invitations/decline", tag = "invitations", security(("api_key" = []), ("bearer" = [])), request_body = LinkToken, responses((status = 200, body = Envelope<Answered>), Errors))]
async fn decline_link(
    State(state): State<AppState>,
    _user: AuthUser,
    Json(body): Json<LinkToken>,
) -> Result<Reply<Answered>> {
    let hash = auth::sha256(body.token.trim());
    let workspace_id = state
        .db
        .write(move |tx| {
            let inv = invitations::by_token(tx, &hash, now_ms())?.ok_or_else(dead_link)?;
            invitations::delete(tx, &inv.id)?;
            Ok(inv.workspace_id)
        })
        .await?;
    Ok(ok(Answered {
        workspace_id,
        action: "declined",
    }))
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
            let inv = invitations::get(tx, &invitation, now_ms())?
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
