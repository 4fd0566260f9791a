//! Experiments: create, read, update, delete, fetch several at once, and their run state
//! (heartbeat, finish).

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::logs::LogValue;
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Query, Reply, clean_name, created, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::query;
use crate::run_state::{EndState, RunState};
use crate::server::AppState;
use crate::store::experiments::{self, Changes, Experiment, NewExperiment};
use crate::store::logs::Kind;
use crate::store::series::Series;
use crate::store::summaries;
use crate::store::workspaces::{self, Role, require_role};
use crate::time::{now_ms, rfc3339};
use std::collections::BTreeMap;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_experiments, create_experiment))
        .routes(routes!(batch_experiments))
        .routes(routes!(bulk_experiments))
        .routes(routes!(export_table))
        .routes(routes!(
            get_experiment,
            update_experiment,
            patch_experiment,
            delete_experiment
        ))
        .routes(routes!(heartbeat))
        .routes(routes!(finish))
}

const MAX_HYPERPARAMS: usize = 1000;
const MAX_TAGS: usize = 100;
const MAX_DESCRIPTION: usize = 10_000;
const MAX_BATCH_IDS: usize = 1000;
/// `POST /experiments/batch` with `summary`: at most this many ids...
const MAX_BATCH_SUMMARY_IDS: usize = 200;
/// ...and this many series (metrics and results) over all of them.
const MAX_BATCH_SUMMARY_SERIES: usize = 200_000;
/// The most runs one bulk change names.
pub const MAX_BULK_IDS: usize = 1000;
/// Run metadata: at most this many bytes as compact JSON...
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// ...and this many keys at its top level.
const MAX_METADATA_KEYS: usize = 200;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ExperimentOut {
    id: String,
    name: String,
    description: Option<String>,
    #[schema(value_type = Vec<Hyperparam>)]
    hyperparams: Value,
    #[schema(value_type = Vec<String>)]
    tags: Value,
    /// The group it belongs to (a sweep, cross-validation folds, a resumed job), or null.
    group: Option<String>,
    created_at: String,
    updated_at: String,
    workspace_id: String,
    url: String,
    /// A point arrived in the last minute.
    live: bool,
    /// Derived when read: `finished`/`failed` as its client ended it; else `running` while
    /// created, a point or a heartbeat came within 5 minutes; else `finished` for a client that
    /// never sent heartbeats, `crashed` for one that did.
    state: RunState,
    /// = created_at.
    started_at: String,
    /// When its client ended it, or, for a run found finished or crashed by going quiet, its
    /// last activity; null while running.
    ended_at: Option<String>,
    /// Its last activity: creation, its last point or its last heartbeat.
    active_at: String,
    /// Seconds from start to end, or to now while running.
    duration_s: f64,
    /// What its client recorded about it (git commit, command, host, ...): a JSON object.
    #[schema(value_type = Object)]
    metadata: Value,
    /// When the workspace's retention policy compacted its metrics to aggregates: charts and
    /// the summary still work, its raw points are gone (their reads answer 410) and it takes no
    /// new points. Absent while every point is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    compacted_at: Option<String>,
    /// With `summary=1` on lists: results and metric summaries, for run tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<RunSummary>,
}

impl ExperimentOut {
    pub fn new(e: Experiment, public_url: &str) -> Self {
        let now = now_ms();
        let activity = e.activity();
        ExperimentOut {
            state: activity.state(now),
            started_at: rfc3339(e.created_at),
            ended_at: activity.ended_at(now).map(rfc3339),
            active_at: rfc3339(activity.active_at()),
            duration_s: activity.duration_ms(now) as f64 / 1000.0,
            metadata: serde_json::from_str(&e.metadata)
                .unwrap_or_else(|_| Value::Object(Default::default())),
            url: format!("{public_url}/experiments/{}", e.id),
            hyperparams: serde_json::from_str(&e.hyperparams).unwrap_or(Value::Array(vec![])),
            tags: serde_json::from_str(&e.tags).unwrap_or(Value::Array(vec![])),
            id: e.id,
            name: e.name,
            description: e.description,
            group: e.group,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            live: e.last_log_at.is_some_and(|t| t > now - LIVE_WINDOW_MS),
            workspace_id: e.workspace_id,
            compacted_at: e.compacted_at.map(rfc3339),
            summary: None,
        }
    }

    /// With the results and metric summaries a run table shows (`summary=1`).
    pub fn with_summary(mut self, summary: Option<RunSummary>) -> Self {
        self.summary = summary;
        self
    }
}

/// A run counts as live while points keep arriving within this window.
const LIVE_WINDOW_MS: i64 = 60_000;

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// Latest value of each result: name → number, "NaN"/"Infinity"/"-Infinity", or null.
    #[schema(value_type = Object)]
    results: BTreeMap<String, Option<LogValue>>,
    metrics: BTreeMap<String, MetricBrief>,
    /// True when the run has more metrics or results than listed here: `summary=1` lists the
    /// first 100 of each kind by name, plus those `columns` and `sort` name.
    partial: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MetricBrief {
    last: Option<LogValue>,
    min: Option<f64>,
    max: Option<f64>,
    count: i64,
    last_step: Option<i64>,
}

pub fn run_summary(all: Vec<Series>, partial: bool) -> RunSummary {
    let mut out = RunSummary {
        results: BTreeMap::new(),
        metrics: BTreeMap::new(),
        partial,
    };
    for s in all {
        match s.kind {
            Kind::Result => {
                out.results.insert(s.name, s.last_value.map(LogValue));
            }
            Kind::Metric => {
                out.metrics.insert(
                    s.name,
                    MetricBrief {
                        last: s.last_value.map(LogValue),
                        min: s.min_value,
                        max: s.max_value,
                        count: s.count,
                        last_step: s.last_step,
                    },
                );
            }
        }
    }
    out
}

/// One page of an experiment list: `data` plus where the next page starts (null on the last)
/// and how many experiments match in all.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExperimentPage {
    status: u16,
    data: Vec<ExperimentOut>,
    next_cursor: Option<String>,
    total: i64,
}

impl axum::response::IntoResponse for ExperimentPage {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self).into_response()
    }
}

const MAX_PAGE: usize = 500;
/// `GET /api/experiments` without a workspace answers the newest this many (with `total`
/// counting all): one answer's memory does not grow with how many runs a member makes. Page
/// through one workspace with `?workspace=ID&cursor=..` for more.
const MAX_UNPAGED: usize = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this workspace (GET /api/experiments); needed for the options below.
    workspace: Option<String>,
    /// Page size (at most 500); without it, every match.
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// created, updated, name, group, hp.KEY, result.NAME or metric.NAME; '-' first for
    /// descending. Default -created.
    sort: Option<String>,
    /// A filter in the query language, e.g. `lr < 0.01 and tag:baseline and acc >= 0.9`.
    q: Option<String>,
    /// 1 to include each run's results and metric summaries: the first 100 metrics and 100
    /// results of each run by name, plus those named in `columns` and `sort`.
    summary: Option<String>,
    /// With `summary=1`: the table's columns (`metric.NAME`, `result.NAME`; `hp.KEY` and
    /// others are ignored), comma-separated, at most 100.
    columns: Option<String>,
}

/// Metrics, and results, listed per run with `summary=1` before the ones asked for by name.
pub const SUMMARY_PER_KIND: usize = 100;
/// The most names `columns` may hold.
pub const MAX_SUMMARY_COLUMNS: usize = 100;

/// The (kind, name) pairs `summary=1` lists whatever their rank: the `columns` asked for and
/// the sort's, each once.
fn summary_names(columns: Option<&str>, sort: &query::Sort) -> Result<Vec<(Kind, String)>> {
    let mut out = std::collections::BTreeSet::new();
    let listed: Vec<&str> = columns
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if listed.len() > MAX_SUMMARY_COLUMNS {
        return Err(Error::bad_request(format!(
            "columns may name at most {MAX_SUMMARY_COLUMNS} columns, not {}",
            listed.len()
        )));
    }
    for c in listed {
        if let Some(n) = c.strip_prefix("metric.") {
            out.insert((0, n.to_string()));
        } else if let Some(n) = c.strip_prefix("result.") {
            out.insert((1, n.to_string()));
        }
    }
    match &sort.key {
        query::SortKey::Metric(n) => {
            out.insert((0, n.clone()));
        }
        query::SortKey::Result(n) => {
            out.insert((1, n.clone()));
        }
        _ => {}
    }
    Ok(out
        .into_iter()
        .map(|(k, n)| (if k == 0 { Kind::Metric } else { Kind::Result }, n))
        .collect())
}

impl ListQuery {
    fn narrows(&self) -> bool {
        self.limit.is_some() || self.cursor.is_some() || self.sort.is_some() || self.q.is_some()
    }
}

/// A workspace's experiments, filtered, sorted and paged: what run tables show.
pub async fn list_in_workspace(
    state: &AppState,
    user: AuthUser,
    headers: &HeaderMap,
    workspace: String,
    q: ListQuery,
) -> Result<ExperimentPage> {
    let sort = query::parse_sort(q.sort.as_deref().unwrap_or("-created"))?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(Error::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            experiments::Cursor::decode(c)
                .ok_or_else(|| Error::bad_request("cursor is not one this server gave out"))
        })
        .transpose()?;
    let with_summary = matches!(q.summary.as_deref(), Some("1" | "true"));
    let named = summary_names(q.columns.as_deref(), &sort)?;
    let now = now_ms();
    let (page, summaries) = state
        .db
        .read(move |c| {
            require_role(c, &workspace, &user.id, Role::Viewer)?;
            // Parsed only once the caller may read the workspace: an outsider learns nothing
            // from the filter's error messages and costs no parsing.
            let filter =
                q.q.as_deref()
                    .filter(|f| !f.trim().is_empty())
                    .map(query::parse)
                    .transpose()?;
            let page = experiments::page(
                c,
                &workspace,
                filter.as_ref(),
                &sort,
                q.limit,
                after.as_ref(),
                now,
            )?;
            let summaries = if with_summary {
                let ids: Vec<i64> = page.experiments.iter().map(|e| e.rowid).collect();
                Some(summaries::briefs(c, &ids, SUMMARY_PER_KIND, &named)?)
            } else {
                None
            };
            Ok((page, summaries))
        })
        .await?;
    let base = state.public_url(headers);
    let mut summaries = summaries.unwrap_or_default();
    let data = page
        .experiments
        .into_iter()
        .map(|e| {
            let summary = summaries
                .remove(&e.rowid)
                .map(|b| run_summary(b.series, b.partial));
            let mut out = ExperimentOut::new(e, &base);
            out.summary = summary;
            out
        })
        .collect();
    Ok(ExperimentPage {
        status: 200,
        data,
        next_cursor: page.next.map(|c| c.encode()),
        total: page.total,
    })
}

/// Finds an experiment and checks the caller's role in its workspace: the one access path for
/// everything under `/experiments/{id}`. Unknown and hidden experiments are the same 404.
pub fn authorize(
    conn: &crate::sql::Connection,
    raw_id: &str,
    user_id: &str,
    needed: Role,
) -> Result<Experiment> {
    let id = parse_id(raw_id, "experiment")?;
    let exp = experiments::get(conn, &id)?.ok_or_else(|| Error::not_found("experiment"))?;
    require_role(conn, &exp.workspace_id, user_id, needed).map_err(|e| match e {
        Error::NotFound(_) => Error::not_found("experiment"),
        other => other,
    })?;
    Ok(exp)
}

#[utoipa::path(get, path = "/experiments", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(ListQuery), responses((status = 200, body = ExperimentPage), Errors))]
async fn list_experiments(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<ExperimentPage> {
    if let Some(ws) = &q.workspace {
        let ws = parse_id(ws, "workspace")?;
        return list_in_workspace(&state, user, &headers, ws, q).await;
    }
    if q.narrows() {
        return Err(Error::bad_request(
            "limit, cursor, sort and q need a workspace",
        ));
    }
    let (list, total) = state
        .db
        .read(move |c| experiments::visible_to(c, &user.id, MAX_UNPAGED))
        .await?;
    let base = state.public_url(&headers);
    let data: Vec<ExperimentOut> = list
        .into_iter()
        .map(|e| ExperimentOut::new(e, &base))
        .collect();
    Ok(ExperimentPage {
        status: 200,
        total,
        data,
        next_cursor: None,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewExperimentBody {
    /// Client-chosen id (a UUID), so an offline run can be uploaded later exactly once.
    id: Option<String>,
    name: String,
    workspace_id: Option<String>,
    description: Option<String>,
    #[schema(value_type = Option<Vec<Hyperparam>>)]
    hyperparams: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<Value>,
    /// What the client records about the run: a JSON object of at most 200 keys and 16 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The run's group: at most 128 characters, no control characters; blank or null is none.
    group: Option<String>,
    /// When the run began, in ms since the unix epoch, for a run imported from elsewhere:
    /// from 0 to a day past now. Default now.
    #[serde(rename = "created_at", alias = "createdAt")]
    #[schema(minimum = 0)]
    created_at: Option<i64>,
}

/// An imported run's start: ms since the epoch, not negative, at most a day past `now`.
fn clean_created_at(raw: Option<i64>, now: i64) -> Result<Option<i64>> {
    match raw {
        Some(t) if !(0..=now + crate::time::MAX_AHEAD_MS).contains(&t) => {
            Err(Error::bad_request(format!(
                "created_at must be ms since the unix epoch, from 0 to a day past now ({}), not {t}",
                now + crate::time::MAX_AHEAD_MS
            )))
        }
        t => Ok(t),
    }
}

#[utoipa::path(post, path = "/experiments", tag = "experiments", security(("api_key" = []), ("bearer" = [])), request_body = NewExperimentBody, responses((status = 201, body = Envelope<ExperimentOut>), (status = 200, description = "the experiment with this client id already existed", body = Envelope<ExperimentOut>), Errors))]
async fn create_experiment(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<NewExperimentBody>,
) -> Result<Reply<ExperimentOut>> {
    let name = clean_name(&body.name, "the experiment name", 255)?;
    let description = clean_description(body.description)?;
    let hyperparams = clean_hyperparams(body.hyperparams.unwrap_or(Value::Null))?;
    let tags = clean_tags(body.tags.unwrap_or(Value::Null))?;
    let metadata = clean_metadata(body.metadata.unwrap_or(Value::Null))?;
    let group = body
        .group
        .as_deref()
        .map(crate::validate::group)
        .transpose()?
        .flatten();
    let created_at = clean_created_at(body.created_at, now_ms())?;
    let workspace = body
        .workspace_id
        .filter(|w| !w.trim().is_empty())
        .map(|w| parse_id(&w, "workspace"))
        .transpose()?;
    let client_id = body.id.map(|id| parse_id(&id, "experiment")).transpose()?;

    let hub = state.live.clone();
    let (exp, is_new) = state
        .db
        .write_then(
            move |tx| {
                let now = now_ms();
                if let Some(id) = &client_id
                    && let Some(existing) = experiments::get(tx, id)?
                {
                    // The same user creating the same id again is a retry: answer with what exists.
                    let mine = existing.created_by.as_deref() == Some(user.id.as_str())
                        && workspaces::role_of(tx, &existing.workspace_id, &user.id)?.is_some();
                    return if mine {
                        Ok((existing, false))
                    } else {
                        Err(Error::Conflict(
                            "an experiment with this id already exists".into(),
                        ))
                    };
                }
                let workspace_id = match workspace {
                    Some(ws) => {
                        require_role(tx, &ws, &user.id, Role::Editor)?;
                        ws
                    }
                    None => workspaces::personal(tx, &user.id, now)?,
                };
                let id = client_id.unwrap_or_else(crate::store::new_id);
                let new = NewExperiment {
                    id: &id,
                    workspace_id: &workspace_id,
                    created_by: &user.id,
                    name: &name,
                    description: description.as_deref(),
                    hyperparams: &hyperparams,
                    tags: &tags,
                    metadata: &metadata,
                    group: group.as_deref(),
                    created_at,
                };
                let exp = experiments::create(tx, &new, now)?;
                experiments::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                Ok((exp, true))
            },
            move |(exp, is_new)| {
                if *is_new {
                    hub.publish_run(exp);
                }
            },
        )
        .await?;
    let out = ExperimentOut::new(exp, &state.public_url(&headers));
    Ok(if is_new { created(out) } else { ok(out) })
}

#[utoipa::path(get, path = "/experiments/{id}", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<ExperimentOut>), Errors))]
async fn get_experiment(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Reply<ExperimentOut>> {
    let exp = state
        .db
        .read(move |c| authorize(c, &id, &user.id, Role::Viewer))
        .await?;
    Ok(ok(ExperimentOut::new(exp, &state.public_url(&headers))))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateExperiment {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[schema(value_type = Option<Vec<Hyperparam>>)]
    hyperparams: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<Value>,
    /// Replaces the run's metadata (a JSON object, at most 200 keys and 16 KiB).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The run's group (at most 128 characters, no control characters); null or blank takes
    /// the run out of its group.
    #[serde(default, deserialize_with = "present")]
    group: Option<Option<String>>,
}

/// One hyperparameter; `value` is a string, number, boolean or null.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON shape only
struct Hyperparam {
    key: String,
    value: Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// Tells `"description": null` (clear it) from a missing field (leave it).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Changes the fields given and leaves the others.
#[utoipa::path(put, path = "/experiments/{id}", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = UpdateExperiment, responses((status = 200, body = Envelope<ExperimentOut>), Errors))]
async fn update_experiment(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<UpdateExperiment>,
) -> Result<Reply<ExperimentOut>> {
    update(state, user, headers, id, body).await
}

/// The same as PUT: changes the fields given and leaves the others.
#[utoipa::path(patch, path = "/experiments/{id}", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = UpdateExperiment, responses((status = 200, body = Envelope<ExperimentOut>), Errors))]
async fn patch_experiment(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<UpdateExperiment>,
) -> Result<Reply<ExperimentOut>> {
    update(state, user, headers, id, body).await
}

async fn update(
    state: AppState,
    user: AuthUser,
    headers: HeaderMap,
    id: String,
    body: UpdateExperiment,
) -> Result<Reply<ExperimentOut>> {
    let name = body
        .name
        .map(|n| clean_name(&n, "the experiment name", 255))
        .transpose()?;
    let description = body.description.map(clean_description).transpose()?;
    let hyperparams = body.hyperparams.map(clean_hyperparams).transpose()?;
    let tags = body.tags.map(clean_tags).transpose()?;
    let metadata = body.metadata.map(clean_metadata).transpose()?;
    let group = body
        .group
        .map(|g| g.as_deref().map(crate::validate::group).transpose())
        .transpose()?
        .map(Option::flatten);
    let hub = state.live.clone();
    let exp = state
        .db
        .write_then(
            move |tx| {
                let exp = authorize(tx, &id, &user.id, Role::Editor)?;
                let changes = Changes {
                    name: name.as_deref(),
                    description: description.as_ref().map(|d| d.as_deref()),
                    hyperparams: hyperparams.as_deref(),
                    tags: tags.as_deref(),
                    metadata: metadata.as_deref(),
                    group: group.as_ref().map(|g| g.as_deref()),
                };
                experiments::update(tx, exp.rowid, &changes, now_ms())?;
                experiments::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                experiments::get(tx, &exp.id)?.ok_or_else(|| Error::not_found("experiment"))
            },
            move |exp| hub.publish_run(exp),
        )
        .await?;
    Ok(ok(ExperimentOut::new(exp, &state.public_url(&headers))))
}

#[utoipa::path(delete, path = "/experiments/{id}", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Deleted>), Errors))]
async fn delete_experiment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Deleted>> {
    let hub = state.live.clone();
    let exp = state
        .db
        .write_then(
            move |tx| {
                let exp = authorize(tx, &id, &user.id, Role::Owner)?;
                experiments::delete(tx, exp.rowid)?;
                experiments::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                Ok(exp)
            },
            move |exp| hub.publish_deleted(&exp.workspace_id, &exp.id),
        )
        .await?;
    Ok(ok(Deleted {
        id: exp.id,
        deleted: true,
    }))
}

/// The answer to a heartbeat: the run's state after it (always `running`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Beat {
    state: RunState,
}

/// The run's client is alive: keeps the run `running` for 5 more minutes. On a finished or
/// failed run it reopens it (a resumed run). Our SDK sends one every 30 s.
#[utoipa::path(post, path = "/experiments/{id}/heartbeat", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Beat>), Errors))]
async fn heartbeat(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Beat>> {
    let hub = state.live.clone();
    let (_, state) = state
        .db
        .write_then(
            move |tx| {
                let exp = authorize(tx, &id, &user.id, Role::Editor)?;
                let now = now_ms();
                experiments::heartbeat(tx, exp.rowid, now)?;
                let after =
                    experiments::get(tx, &exp.id)?.ok_or_else(|| Error::not_found("experiment"))?;
                let (before, state) = (exp.activity().state(now), after.activity().state(now));
                // Only a beat that changes the state (a resumed or revived run) is news to
                // the run's table.
                if before != state {
                    experiments::announce(
                        tx,
                        crate::live::server_id(),
                        &exp.workspace_id,
                        &exp.id,
                    )?;
                }
                Ok(((before != state).then_some(after), state))
            },
            move |(changed, _)| {
                if let Some(run) = changed {
                    hub.publish_run(run);
                }
            },
        )
        .await?;
    Ok(ok(Beat { state }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FinishBody {
    #[schema(value_type = EndState)]
    state: String,
    /// When it ended, in ms since the unix epoch, for a run imported from elsewhere: from the
    /// run's `created_at` to a day past now. Default now.
    #[schema(minimum = 0)]
    ended_at: Option<i64>,
}

/// The run's client ended it: `finished`, or `failed` (an exception), now or at `ended_at` (an
/// imported run). Ending it again the same way keeps the first end time; a later heartbeat
/// reopens it.
#[utoipa::path(post, path = "/experiments/{id}/finish", tag = "experiments", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = FinishBody, responses((status = 200, body = Envelope<ExperimentOut>), Errors))]
async fn finish(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<FinishBody>,
) -> Result<Reply<ExperimentOut>> {
    let end = EndState::parse(&body.state).ok_or_else(|| {
        Error::bad_request(format!(
            "state must be \"finished\" or \"failed\", not {:?}",
            body.state.chars().take(40).collect::<String>()
        ))
    })?;
    let hub = state.live.clone();
    let exp = state
        .db
        .write_then(
            move |tx| {
                let exp = authorize(tx, &id, &user.id, Role::Editor)?;
                let now = now_ms();
                let latest = now + crate::time::MAX_AHEAD_MS;
                let at = match body.ended_at {
                    Some(t) if t < exp.created_at || t > latest => {
                        return Err(Error::bad_request(format!(
                            "ended_at must be ms since the unix epoch, from the run's created_at ({}) to a day past now ({latest}), not {t}",
                            exp.created_at
                        )));
                    }
                    t => t.unwrap_or(now),
                };
                experiments::finish(tx, exp.rowid, end, at)?;
                experiments::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                experiments::get(tx, &exp.id)?.ok_or_else(|| Error::not_found("experiment"))
            },
            move |exp| hub.publish_run(exp),
        )
        .await?;
    Ok(ok(ExperimentOut::new(exp, &state.public_url(&headers))))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BatchBody {
    ids: Vec<String>,
    /// true to include each run's results and metric summaries (as `summary=1` on lists), so a
    /// comparison needs one request for its runs instead of one `/summary` each.
    #[serde(default)]
    summary: bool,
}

/// The experiments among `ids` that the caller may see; others are left out, not reported,
/// so the answer never confirms that a hidden id exists.
#[utoipa::path(post, path = "/experiments/batch", tag = "experiments", security(("api_key" = []), ("bearer" = [])), request_body = BatchBody, responses((status = 200, body = Envelope<Vec<ExperimentOut>>), Errors))]
async fn batch_experiments(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<BatchBody>,
) -> Result<Reply<Vec<ExperimentOut>>> {
    if body.ids.len() > MAX_BATCH_IDS {
        return Err(Error::bad_request(format!(
            "at most {MAX_BATCH_IDS} ids at once"
        )));
    }
    let ids = body
        .ids
        .iter()
        .map(|id| parse_id(id, "experiment"))
        .collect::<Result<Vec<_>>>()?;
    let with_summary = body.summary;
    if with_summary && body.ids.len() > MAX_BATCH_SUMMARY_IDS {
        return Err(Error::bad_request(format!(
            "at most {MAX_BATCH_SUMMARY_IDS} ids at once with summary"
        )));
    }
    let (list, summaries) = state
        .db
        .read(move |c| {
            let list = experiments::visible_among(c, &user.id, &ids)?;
            let summaries = if with_summary {
                let rowids: Vec<i64> = list.iter().map(|e| e.rowid).collect();
                let found = crate::store::series::for_experiments(c, &rowids)?;
                let total: usize = found.values().map(Vec::len).sum();
                if total > MAX_BATCH_SUMMARY_SERIES {
                    return Err(Error::bad_request(format!(
                        "these runs have {total} series, over the {MAX_BATCH_SUMMARY_SERIES} one summary answer holds; ask for fewer runs"
                    )));
                }
                found
            } else {
                Default::default()
            };
            Ok((list, summaries))
        })
        .await?;
    let base = state.public_url(&headers);
    let mut summaries = summaries;
    Ok(ok(list
        .into_iter()
        .map(|e| {
            let summary = with_summary
                .then(|| run_summary(summaries.remove(&e.rowid).unwrap_or_default(), false));
            let mut out = ExperimentOut::new(e, &base);
            out.summary = summary;
            out
        })
        .collect()))
}

#[derive(Deserialize, Clone, Copy, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum BulkAction {
    /// Delete the runs (OWNER of each run's workspace).
    Delete,
    /// Add `tags` to each run (EDITOR).
    Tag,
    /// Remove `tags` from each run (EDITOR).
    Untag,
    /// Move the runs, with everything under them, to `workspace_id` (EDITOR on each run's
    /// workspace and on the destination).
    Move,
    /// Put the runs in `group`, or in none when it is null or blank (EDITOR).
    Group,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BulkBody {
    /// At most 1,000 experiment ids; a repeated id counts once.
    #[serde(deserialize_with = "super::at_most::<_, _, MAX_BULK_IDS>")]
    ids: Vec<String>,
    action: BulkAction,
    /// For tag and untag.
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<Value>,
    /// For move: the destination.
    #[serde(alias = "workspaceId")]
    workspace_id: Option<String>,
    /// For group: the group's name (at most 128 characters), or null for none.
    #[serde(default, deserialize_with = "present")]
    group: Option<Option<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct BulkDone {
    /// Runs changed (a tag a run already had, or a move to where it is, changes nothing).
    changed: usize,
}

/// What a bulk change did to one run, for the workspace streams.
enum Done {
    /// Changed, or moved in: as it is now.
    Run(Box<Experiment>),
    /// Deleted or moved out of its workspace.
    Gone { workspace: String, id: String },
}

/// One change to many runs, all or nothing, in one transaction: every run must exist and allow
/// the caller the action (an unknown or hidden id is a 404 for the whole request, a run whose
/// workspace gives too weak a role a 403), or nothing changes.
#[utoipa::path(post, path = "/experiments/bulk", tag = "experiments", security(("api_key" = []), ("bearer" = [])), request_body = BulkBody, responses((status = 200, body = Envelope<BulkDone>), Errors))]
async fn bulk_experiments(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<BulkBody>,
) -> Result<Reply<BulkDone>> {
    let mut ids: Vec<String> = Vec::with_capacity(body.ids.len());
    for raw in &body.ids {
        let id = parse_id(raw, "experiment")?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let action = body.action;
    let tags: Vec<String> = match action {
        BulkAction::Tag | BulkAction::Untag => {
            let tags = clean_tags(body.tags.unwrap_or(Value::Null))?;
            let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
            if tags.is_empty() {
                return Err(Error::bad_request(
                    "tag and untag need a non-empty list of tags",
                ));
            }
            tags
        }
        _ => vec![],
    };
    let group = match (action, body.group) {
        (BulkAction::Group, Some(g)) => g
            .as_deref()
            .map(crate::validate::group)
            .transpose()?
            .flatten(),
        (BulkAction::Group, None) => {
            return Err(Error::bad_request(
                "group needs \"group\": a name, or null to take the runs out of their groups",
            ));
        }
        _ => None,
    };
    let destination = match action {
        BulkAction::Move => Some(parse_id(
            body.workspace_id.as_deref().unwrap_or(""),
            "workspace",
        )?),
        _ => None,
    };
    let hub = state.live.clone();
    let done = state
        .db
        .write_then(
            move |tx| {
                let now = now_ms();
                if let Some(dest) = &destination {
                    require_role(tx, dest, &user.id, Role::Editor)?;
                }
                let needed = match action {
                    BulkAction::Delete => Role::Owner,
                    _ => Role::Editor,
                };
                // Every run is checked before any is changed: a refusal leaves them all as
                // they were (the transaction is dropped, too).
                let runs = ids
                    .iter()
                    .map(|id| authorize(tx, id, &user.id, needed))
                    .collect::<Result<Vec<_>>>()?;
                let mut done = Vec::with_capacity(runs.len());
                for exp in runs {
                    match action {
                        BulkAction::Delete => {
                            experiments::delete(tx, exp.rowid)?;
                            done.push(Done::Gone {
                                workspace: exp.workspace_id,
                                id: exp.id,
                            });
                        }
                        BulkAction::Tag | BulkAction::Untag => {
                            let mut now_tags: Vec<String> =
                                serde_json::from_str(&exp.tags).unwrap_or_default();
                            let before = now_tags.len();
                            if action == BulkAction::Tag {
                                for t in &tags {
                                    if !now_tags.contains(t) {
                                        now_tags.push(t.clone());
                                    }
                                }
                                if now_tags.len() > MAX_TAGS {
                                    return Err(Error::bad_request(format!(
                                        "run '{}' would have more than {MAX_TAGS} tags",
                                        exp.name
                                    )));
                                }
                            } else {
                                now_tags.retain(|t| !tags.contains(t));
                            }
                            if now_tags.len() == before {
                                continue;
                            }
                            let json = serde_json::to_string(&now_tags)
                                .map_err(|e| Error::Internal(format!("tags: {e}")))?;
                            let changes = Changes {
                                name: None,
                                description: None,
                                hyperparams: None,
                                tags: Some(&json),
                                metadata: None,
                                group: None,
                            };
                            experiments::update(tx, exp.rowid, &changes, now)?;
                            let exp = experiments::get(tx, &exp.id)?
                                .ok_or_else(|| Error::not_found("experiment"))?;
                            done.push(Done::Run(Box::new(exp)));
                        }
                        BulkAction::Group => {
                            if exp.group == group {
                                continue;
                            }
                            let changes = Changes {
                                name: None,
                                description: None,
                                hyperparams: None,
                                tags: None,
                                metadata: None,
                                group: Some(group.as_deref()),
                            };
                            experiments::update(tx, exp.rowid, &changes, now)?;
                            let exp = experiments::get(tx, &exp.id)?
                                .ok_or_else(|| Error::not_found("experiment"))?;
                            done.push(Done::Run(Box::new(exp)));
                        }
                        BulkAction::Move => {
                            let dest = destination.as_deref().unwrap_or_default();
                            if exp.workspace_id == dest {
                                continue;
                            }
                            experiments::move_to(tx, exp.rowid, dest, now)?;
                            done.push(Done::Gone {
                                workspace: exp.workspace_id,
                                id: exp.id.clone(),
                            });
                            let moved = experiments::get(tx, &exp.id)?
                                .ok_or_else(|| Error::not_found("experiment"))?;
                            done.push(Done::Run(Box::new(moved)));
                        }
                    }
                }
                // Other servers' run tables (PostgreSQL): each changed run once, by the
                // workspace it was in (a moved run is read again there and found elsewhere).
                let gone: std::collections::HashSet<&str> = done
                    .iter()
                    .filter_map(|d| match d {
                        Done::Gone { id, .. } => Some(id.as_str()),
                        Done::Run(_) => None,
                    })
                    .collect();
                for d in &done {
                    let (workspace, id) = match d {
                        Done::Gone { workspace, id } => (workspace, id),
                        Done::Run(exp) if !gone.contains(exp.id.as_str()) => {
                            (&exp.workspace_id, &exp.id)
                        }
                        Done::Run(_) => continue,
                    };
                    experiments::announce(tx, crate::live::server_id(), workspace, id)?;
                }
                Ok(done)
            },
            move |done| {
                for d in done {
                    match d {
                        Done::Run(exp) => hub.publish_run(exp),
                        Done::Gone { workspace, id } => hub.publish_deleted(workspace, id),
                    }
                }
            },
        )
        .await?;
    let changed = done.iter().filter(|d| match d {
        // A move is a Gone and a Run: count it once.
        Done::Run(_) => action != BulkAction::Move,
        Done::Gone { .. } => true,
    });
    Ok(ok(BulkDone {
        changed: changed.count(),
    }))
}

/// The most runs one table export holds.
pub const MAX_EXPORT_RUNS: usize = 10_000;
/// The most columns of each kind (hyperparameters, results, metrics) one table export holds.
pub const MAX_EXPORT_COLUMNS: usize = 2_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// A filter in the query language, as for the run table.
    q: Option<String>,
    /// As for the run table; default -created.
    sort: Option<String>,
}

/// One run as a CSV row, its cells in the order of `columns`.
fn export_row(
    e: &Experiment,
    all: &[Series],
    columns: &experiments::Columns,
    now: i64,
) -> Vec<String> {
    let activity = e.activity();
    let (state, ended_at, duration_ms) = (
        activity.state(now).as_str(),
        activity.ended_at(now),
        activity.duration_ms(now),
    );
    let tags: Vec<String> = serde_json::from_str(&e.tags).unwrap_or_default();
    let mut row = vec![
        e.id.clone(),
        super::spreadsheet_safe(&e.name).into_owned(),
        state.to_string(),
        rfc3339(e.created_at),
        ended_at.map(rfc3339).unwrap_or_default(),
        format!("{:.3}", duration_ms as f64 / 1000.0),
        super::spreadsheet_safe(&tags.join(";")).into_owned(),
        super::spreadsheet_safe(e.group.as_deref().unwrap_or_default()).into_owned(),
    ];
    let hyperparams: Vec<Value> = serde_json::from_str(&e.hyperparams).unwrap_or_default();
    let hp: BTreeMap<&str, &Value> = hyperparams
        .iter()
        .filter_map(|h| Some((h.get("key")?.as_str()?, h.get("value")?)))
        .collect();
    row.extend(
        columns
            .hyperparams
            .iter()
            .map(|k| match hp.get(k.as_str()) {
                Some(Value::String(text)) => super::spreadsheet_safe(text).into_owned(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }),
    );
    let last = |kind: Kind, name: &str| {
        all.iter()
            .find(|s| s.kind == kind && s.name == name)
            .and_then(|s| s.last_value)
            // Debug formatting: shortest round-trip digits, and NaN / inf / -inf (as the points CSV).
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
    };
    row.extend(columns.results.iter().map(|n| last(Kind::Result, n)));
    row.extend(columns.metrics.iter().map(|n| last(Kind::Metric, n)));
    row
}

/// The run table as CSV: the runs `q` matches, in `sort` order, with `id, name, state,
/// created_at, ended_at, duration_s, tags` (joined by `;`), `group`, then `hp.KEY` for every
/// hyperparameter, `result.NAME` for every result and `metric.NAME` (its last value) for every
/// metric among them. At most 10,000 runs and 2,000 columns of each kind (400 past either);
/// text cells that a spreadsheet would run as a formula start with `'`. Streamed, 50 runs a
/// read.
#[utoipa::path(get, path = "/workspaces/{id}/experiments.csv", tag = "experiments", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ExportQuery),
    responses((status = 200, description = "the matching runs, one a row", content_type = "text/csv", body = String), Errors))]
async fn export_table(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let id = parse_id(&id, "workspace")?;
    let sort = query::parse_sort(q.sort.as_deref().unwrap_or("-created"))?;
    let (ws, walk_sort) = (id.clone(), sort.clone());
    // One instant for the filter's states, the count, the columns, every page and every row.
    let now = now_ms();
    let (name, columns, filter) = state
        .db
        .read(move |c| {
            let workspace = workspaces::get_for(c, &ws, &user.id)?
                .ok_or_else(|| Error::not_found("workspace"))?;
            // Parsed only once the caller may read the workspace, as for the run table.
            let filter =
                q.q.as_deref()
                    .filter(|f| !f.trim().is_empty())
                    .map(query::parse)
                    .transpose()?;
            let total =
                experiments::page(c, &ws, filter.as_ref(), &sort, Some(1), None, now)?.total;
            if total > MAX_EXPORT_RUNS as i64 {
                return Err(Error::bad_request(format!(
                    "{total} runs match; an export holds at most {MAX_EXPORT_RUNS}: narrow it with q"
                )));
            }
            let columns =
                experiments::columns(c, &ws, filter.as_ref(), MAX_EXPORT_COLUMNS, now)?;
            for (kind, names) in [
                ("hyperparameters", &columns.hyperparams),
                ("results", &columns.results),
                ("metrics", &columns.metrics),
            ] {
                if names.len() > MAX_EXPORT_COLUMNS {
                    return Err(Error::bad_request(format!(
                        "the matching runs have more than {MAX_EXPORT_COLUMNS} {kind}, the most an export has columns for: narrow it with q"
                    )));
                }
            }
            Ok((workspace.name, columns, filter))
        })
        .await?;
    let place = super::logs::download_place(&state)?;
    let mut head = csv::Writer::from_writer(Vec::new());
    let fixed = [
        "id",
        "name",
        "state",
        "created_at",
        "ended_at",
        "duration_s",
        "tags",
        "group",
    ];
    let named = |prefix: &str, names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|n| super::spreadsheet_safe(&format!("{prefix}{n}")).into_owned())
            .collect()
    };
    let header: Vec<String> = fixed
        .iter()
        .map(|f| f.to_string())
        .chain(named("hp.", &columns.hyperparams))
        .chain(named("result.", &columns.results))
        .chain(named("metric.", &columns.metrics))
        .collect();
    // Writing to a Vec cannot fail.
    let _ = head.write_record(&header);
    let head = head.into_inner().unwrap_or_default();
    let render = move |page: Vec<(Experiment, Vec<Series>)>, out: &mut Vec<u8>| {
        let mut csv = csv::Writer::from_writer(out);
        for (e, all) in page {
            let _ = csv.write_record(export_row(&e, &all, &columns, now));
        }
        let _ = csv.flush();
    };
    let walk = experiments::Export::new(id, filter, walk_sort, MAX_EXPORT_RUNS, now);
    let body = super::logs::paged(state.db.clone(), place, walk, head, "", render);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-runs.csv\"",
                    super::file_name(&name)
                ),
            ),
        ],
        body,
    )
        .into_response())
}

fn clean_description(raw: Option<String>) -> Result<Option<String>> {
    let d = raw.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
    if d.as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(Error::bad_request(format!(
            "the description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(d)
}

/// `[{key, value}]` with string keys and scalar values, stored as JSON text in the given order.
fn clean_hyperparams(raw: Value) -> Result<String> {
    let items = match raw {
        Value::Null => vec![],
        Value::Array(items) => items,
        _ => {
            return Err(Error::bad_request(
                "hyperparams must be a list of {key, value} objects",
            ));
        }
    };
    if items.len() > MAX_HYPERPARAMS {
        return Err(Error::bad_request(format!(
            "at most {MAX_HYPERPARAMS} hyperparams"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Value::Object(mut obj) = item else {
            return Err(Error::bad_request(
                "each hyperparam must be an object {key, value}",
            ));
        };
        let key = match obj.remove("key") {
            Some(Value::String(k)) => clean_name(&k, "a hyperparam key", 255)?,
            _ => return Err(Error::bad_request("each hyperparam needs a string 'key'")),
        };
        let value = obj.remove("value").unwrap_or(Value::Null);
        match &value {
            Value::String(s) if s.chars().count() > 10_000 => {
                return Err(Error::bad_request(format!(
                    "hyperparam '{key}' is longer than 10000 characters"
                )));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(Error::bad_request(format!(
                    "hyperparam '{key}' must be a string, number, boolean or null"
                )));
            }
            _ => {}
        }
        if !seen.insert(key.clone()) {
            return Err(Error::bad_request(format!(
                "hyperparam '{key}' is given twice"
            )));
        }
        out.push(serde_json::json!({"key": key, "value": value}));
    }
    Ok(Value::Array(out).to_string())
}

/// A JSON object of at most [`MAX_METADATA_KEYS`] keys and [`MAX_METADATA_BYTES`] as compact
/// JSON, any values (their nesting is bounded where the body is parsed); null is `{}`.
fn clean_metadata(raw: Value) -> Result<String> {
    let map = match raw {
        Value::Null => Default::default(),
        Value::Object(map) => map,
        _ => {
            return Err(Error::bad_request(
                "metadata must be a JSON object, e.g. {\"git_commit\": \"3f2a1c\"}",
            ));
        }
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(Error::bad_request(format!(
            "metadata has {} keys; the limit is {MAX_METADATA_KEYS}",
            map.len()
        )));
    }
    let text = Value::Object(map).to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(Error::bad_request(format!(
            "metadata is {} bytes as JSON; the limit is {MAX_METADATA_BYTES} (16 KiB)",
            text.len()
        )));
    }
    Ok(text)
}

/// A list of distinct non-empty strings, stored as JSON text.
fn clean_tags(raw: Value) -> Result<String> {
    let items = match raw {
        Value::Null => vec![],
        Value::Array(items) => items,
        _ => return Err(Error::bad_request("tags must be a list of strings")),
    };
    if items.len() > MAX_TAGS {
        return Err(Error::bad_request(format!("at most {MAX_TAGS} tags")));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(t) = item else {
            return Err(Error::bad_request("each tag must be a string"));
        };
        let tag = clean_name(&t, "a tag", 255)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()))
}
