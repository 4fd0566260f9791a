//! MLflow experiments: Tora workspaces.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, Params, Result, no_experiment, workspace_of};
use crate::error::Error;
use crate::server::AppState;
use crate::store::workspaces::{self, Role, Workspace};
use crate::time::now_ms;

/// The tag MLflow keeps an experiment's description in: the workspace's description.
const NOTE: &str = "mlflow.note.content";
/// Experiments in one search page at most (MLflow's own default page).
const MAX_PAGE: usize = 1_000;

pub fn to_json(ws: &Workspace) -> Value {
    let mut tags = vec![];
    if let Some(d) = &ws.description {
        tags.push(json!({"key": NOTE, "value": d}));
    }
    json!({
        "experiment_id": ws.id,
        "name": ws.name,
        "artifact_location": format!("mlflow-artifacts:/{}", ws.id),
        "lifecycle_stage": "active",
        "creation_time": ws.created_at,
        "last_update_time": ws.created_at,
        "tags": tags,
    })
}

#[derive(Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize)]
pub struct NewExperiment {
    name: String,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

/// Only the description can be kept with a workspace.
fn description_of(tags: &[KeyValue]) -> Result<Option<String>> {
    let mut description = None;
    for t in tags {
        if t.key != NOTE {
            return Err(Error::bad_request(format!(
                "Tora keeps no experiment tags but '{NOTE}' (the description); tag runs instead"
            ))
            .into());
        }
        description = Some(t.value.chars().take(10_000).collect());
    }
    Ok(description)
}

pub async fn create(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<NewExperiment>,
) -> Result<Json<Value>> {
    let name = crate::api::clean_name(&body.name, "the experiment name", 255)?;
    let description = description_of(&body.tags)?;
    let ws = state
        .db
        .write(move |tx| {
            if workspaces::by_name_for(tx, &name, &user.id)?.is_some() {
                return Err(Error::Conflict(format!(
                    "Experiment '{name}' already exists."
                )));
            }
            workspaces::create(tx, &user.id, &name, description.as_deref(), false, now_ms())
        })
        .await?;
    Ok(Json(json!({"experiment_id": ws.id})))
}

#[derive(Deserialize)]
pub struct ById {
    experiment_id: String,
}

pub async fn get_one(
    State(state): State<AppState>,
    user: Caller,
    Params(q): Params<ById>,
) -> Result<Json<Value>> {
    let ws = state
        .db
        .read(move |c| {
            let id = workspace_of(c, &q.experiment_id, &user.id, Role::Viewer, None)?;
            workspaces::get_for(c, &id, &user.id)?.ok_or_else(|| no_experiment(&id))
        })
        .await?;
    Ok(Json(json!({"experiment": to_json(&ws)})))
}

#[derive(Deserialize)]
pub struct ByName {
    experiment_name: String,
}

pub async fn get_by_name(
    State(state): State<AppState>,
    user: Caller,
    Params(q): Params<ByName>,
) -> Result<Json<Value>> {
    let name = q.experiment_name;
    let found = {
        let name = name.clone();
        state
            .db
            .read(move |c| workspaces::by_name_for(c, &name, &user.id))
            .await?
    };
    let ws = found.ok_or_else(|| {
        Error::NotFound(format!(
            "Could not find experiment with name '{}'",
            name.chars().take(255).collect::<String>()
        ))
    })?;
    Ok(Json(json!({"experiment": to_json(&ws)})))
}

#[derive(Deserialize, Default)]
pub struct Search {
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    view_type: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
}

/// `name = 'x'`, `name LIKE 'x%'` or `name ILIKE '%x%'`: the filters MLflow's client and UI
/// send for experiments. Returns whether a name passes.
/// A test on experiment names.
type NameTest = Box<dyn Fn(&str) -> bool + Send>;

fn name_filter(filter: &str) -> Result<NameTest> {
    let f = filter.trim();
    if f.is_empty() {
        return Ok(Box::new(|_| true));
    }
    let refused = || {
        Error::bad_request(
            "Tora filters experiments only by name: name = '...', name LIKE '...' or name ILIKE '...'",
        )
    };
    let rest = f
        .strip_prefix("name")
        .or_else(|| f.strip_prefix("attributes.name"))
        .ok_or_else(refused)?
        .trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("!=") {
        ("!=", r)
    } else if let Some(r) = rest.strip_prefix('=') {
        ("=", r)
    } else if rest.len() > 5 && rest[..5].eq_ignore_ascii_case("ilike") {
        ("ilike", &rest[5..])
    } else if rest.len() > 4 && rest[..4].eq_ignore_ascii_case("like") {
        ("like", &rest[4..])
    } else {
        return Err(refused().into());
    };
    let value = crate::mlflow_query::quoted(rest.trim()).ok_or_else(refused)?;
    Ok(match op {
        "=" => Box::new(move |n| n == value),
        "!=" => Box::new(move |n| n != value),
        "like" => Box::new(move |n| crate::mlflow_query::like(&value, n, false)),
        _ => Box::new(move |n| crate::mlflow_query::like(&value, n, true)),
    })
}

pub async fn search(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<Search>,
) -> Result<Json<Value>> {
    search_experiments(state, user, body).await
}

pub async fn search_get(
    State(state): State<AppState>,
    user: Caller,
    Params(q): Params<Search>,
) -> Result<Json<Value>> {
    search_experiments(state, user, q).await
}

/// The caller's workspaces, oldest first, in pages (the list is bounded: an account is in at
/// most `workspaces::MAX_MEMBERSHIPS`).
async fn search_experiments(state: AppState, user: Caller, q: Search) -> Result<Json<Value>> {
    if q.filter.as_deref().is_some_and(|f| f.len() > 1_000) {
        return Err(Error::bad_request("the filter is longer than 1000 characters").into());
    }
    if !q.order_by.is_empty() {
        return Err(Error::bad_request(
            "Tora lists experiments oldest first and takes no order_by",
        )
        .into());
    }
    let deleted_only = q.view_type.as_deref() == Some("DELETED_ONLY");
    let keep = name_filter(q.filter.as_deref().unwrap_or(""))?;
    let limit = usize::try_from(q.max_results.unwrap_or(MAX_PAGE as i64))
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    let skip: usize = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse()
            .map_err(|_| Error::bad_request("invalid page_token"))?,
        None => 0,
    };
    let all = state
        .db
        .read(move |c| workspaces::list_for(c, &user.id))
        .await?;
    let matching: Vec<&Workspace> = all
        .iter()
        .filter(|w| !deleted_only && keep(&w.name))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(limit)
        .map(|w| to_json(w))
        .collect();
    let mut out = json!({"experiments": page});
    if skip + limit < matching.len() {
        out["next_page_token"] = json!((skip + limit).to_string());
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct Rename {
    experiment_id: String,
    new_name: String,
}

/// Renames the workspace (OWNER, as for Tora's workspace settings).
pub async fn update(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<Rename>,
) -> Result<Json<Value>> {
    let name = crate::api::clean_name(&body.new_name, "the experiment name", 255)?;
    state
        .db
        .write(move |tx| {
            let id = workspace_of(
                tx,
                &body.experiment_id,
                &user.id,
                Role::Owner,
                Some(now_ms()),
            )?;
            workspaces::rename(tx, &id, Some(&name), None)
        })
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct SetTag {
    experiment_id: String,
    key: String,
    #[serde(default)]
    value: String,
}

/// Only `mlflow.note.content`, the description, is kept (EDITOR).
pub async fn set_tag(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<SetTag>,
) -> Result<Json<Value>> {
    let tag = [KeyValue {
        key: body.key,
        value: body.value,
    }];
    let description = description_of(&tag)?;
    state
        .db
        .write(move |tx| {
            let id = workspace_of(
                tx,
                &body.experiment_id,
                &user.id,
                Role::Editor,
                Some(now_ms()),
            )?;
            workspaces::rename(tx, &id, None, description.as_deref())
        })
        .await?;
    Ok(Json(json!({})))
}

/// Deletes the workspace and every run in it (OWNER; a Personal workspace only by its owner).
/// Tora deletes for good: there is no restore.
pub async fn delete(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<ById>,
) -> Result<Json<Value>> {
    let id = state
        .db
        .write(move |tx| {
            let id = workspace_of(
                tx,
                &body.experiment_id,
                &user.id,
                Role::Owner,
                Some(now_ms()),
            )?;
            if workspaces::personal_owner(tx, &id)?.is_some_and(|owner| owner != user.id) {
                return Err(Error::Forbidden(
                    "this is another member's Personal workspace; only they may delete it".into(),
                ));
            }
            workspaces::delete(tx, &id)?;
            Ok(id)
        })
        .await?;
    state.live.end_workspace_streams(&id, None);
    Ok(Json(json!({})))
}

pub async fn restore(_user: Caller, Body(_body): Body<ById>) -> Result<Json<Value>> {
    Err(Error::bad_request(
        "Tora deletes experiments (workspaces) for good, with their runs: there is nothing to restore",
    )
    .into())
}
