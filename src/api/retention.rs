//! A workspace's retention policy: read by any member, set or removed by an OWNER, with a dry
//! run of what it deletes and compacts. Setting one applies it at once (the server then applies every policy
//! hourly: `crate::retention`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Query, Reply, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::retention::{self, Due, MAX_DAYS, MIN_DAYS, Policy, Preview};
use crate::store::workspaces::{Role, require_role};
use crate::time::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_retention, set_retention, clear_retention))
        .routes(routes!(preview_retention))
}

/// The longest keep tag.
const MAX_TAG: usize = 64;

#[derive(Deserialize, Serialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyIo {
    /// Runs whose last activity (creation, last point, heartbeat, end) is older than this many
    /// days are deleted; 1 to 36500. Null or absent: none is deleted.
    #[serde(default)]
    delete_after_days: Option<i64>,
    /// Runs older than this many days keep only their metrics' aggregates (the summary and
    /// each 128-point block's min/max/last/count, which charts draw at every zoom): their raw
    /// points are deleted; 1 to 36500, below delete_after_days. Null or absent: none is
    /// compacted. At least one of the two is set.
    #[serde(default)]
    aggregate_after_days: Option<i64>,
    /// Runs with this tag (any case) are kept whole whatever their age; default "keep".
    #[serde(default)]
    keep_tag: Option<String>,
}

impl PolicyIo {
    fn policy(&self) -> Result<Policy> {
        let (delete, aggregate) = (self.delete_after_days, self.aggregate_after_days);
        if delete.is_none() && aggregate.is_none() {
            return Err(Error::bad_request(
                "set delete_after_days, aggregate_after_days or both",
            ));
        }
        for (name, days) in [
            ("delete_after_days", delete),
            ("aggregate_after_days", aggregate),
        ] {
            if days.is_some_and(|d| !(MIN_DAYS..=MAX_DAYS).contains(&d)) {
                return Err(Error::bad_request(format!(
                    "{name} must be from {MIN_DAYS} to {MAX_DAYS}"
                )));
            }
        }
        if let (Some(d), Some(a)) = (delete, aggregate)
            && a >= d
        {
            return Err(Error::bad_request(format!(
                "aggregate_after_days ({a}) must be below delete_after_days ({d}): runs are compacted first, deleted later"
            )));
        }
        let tag = self.keep_tag.as_deref().unwrap_or("keep").trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG || tag.chars().any(char::is_control) {
            return Err(Error::bad_request(format!(
                "keep_tag must be 1 to {MAX_TAG} characters, no control characters"
            )));
        }
        Ok(Policy {
            delete_after_days: delete,
            aggregate_after_days: aggregate,
            keep_tag: tag.to_string(),
        })
    }
}

/// What one mode of a policy does if applied now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DueOut {
    /// Runs it deletes (or compacts) now.
    runs: i64,
    /// Their points (deleting), or their metrics' raw points (compacting).
    points: i64,
    /// About the bytes it frees: the runs' packed points and artifacts (deleting), or their
    /// metrics' packed points (compacting).
    bytes: i64,
}

impl From<Due> for DueOut {
    fn from(d: Due) -> Self {
        DueOut {
            runs: d.runs,
            points: d.points,
            bytes: d.bytes,
        }
    }
}

/// A dry run: what each mode of a policy does if applied now (a run old enough for both is
/// counted as deleted).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewOut {
    /// The delete mode; null when the policy does not delete.
    delete: Option<DueOut>,
    /// The aggregate mode; null when the policy does not compact.
    aggregate: Option<DueOut>,
}

impl From<Preview> for PreviewOut {
    fn from(p: Preview) -> Self {
        PreviewOut {
            delete: p.delete.map(Into::into),
            aggregate: p.aggregate.map(Into::into),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetentionOut {
    /// The policy in force, if any.
    policy: Option<PolicyIo>,
    /// What it does if applied now (null without a policy).
    due: Option<PreviewOut>,
}

fn answer(c: &crate::sql::Connection, workspace: &str) -> Result<RetentionOut> {
    let policy = retention::get(c, workspace)?;
    let due = match &policy {
        Some(p) => Some(retention::preview(c, workspace, p, now_ms())?.into()),
        None => None,
    };
    Ok(RetentionOut {
        policy: policy.map(|p| PolicyIo {
            delete_after_days: p.delete_after_days,
            aggregate_after_days: p.aggregate_after_days,
            keep_tag: Some(p.keep_tag),
        }),
        due,
    })
}

/// The workspace's retention policy and what it deletes if applied now.
#[utoipa::path(get, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn get_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let out = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Viewer)?;
            answer(c, &id)
        })
        .await?;
    Ok(ok(out))
}

/// A dry run: what a policy would delete and compact in the workspace now (nothing is changed).
#[utoipa::path(get, path = "/workspaces/{id}/retention/preview", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), PolicyIo), responses((status = 200, body = Envelope<PreviewOut>), Errors))]
async fn preview_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<PolicyIo>,
) -> Result<Reply<PreviewOut>> {
    let id = parse_id(&id, "workspace")?;
    let policy = q.policy()?;
    let out = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Viewer)?;
            retention::preview(c, &id, &policy, now_ms())
        })
        .await?;
    Ok(ok(out.into()))
}

/// Sets the policy (OWNER) and applies it at once: the runs it names are deleted or compacted
/// within seconds, then every hour those that come of age.
#[utoipa::path(put, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = PolicyIo, responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn set_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<PolicyIo>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let policy = body.policy()?;
    let out = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            retention::set(tx, &id, &policy, &user.id, now_ms())?;
            answer(tx, &id)
        })
        .await?;
    state.retention.notify_one();
    Ok(ok(out))
}

/// Removes the policy (OWNER): nothing is deleted or compacted by age any more (runs already
/// compacted stay so).
#[utoipa::path(delete, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn clear_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let out = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            retention::clear(tx, &id)?;
            answer(tx, &id)
        })
        .await?;
    Ok(ok(out))
}
