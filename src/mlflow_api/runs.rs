//! MLflow runs: Tora experiments. Params are hyperparameters, metrics metric series, tags live
//! in the run's metadata under `mlflow_tags` (but `mlflow.runName` is the name and
//! `mlflow.note.content` the description), and status is Tora's run state.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::experiments::KeyValue;
use super::{Body, Caller, Params, Result, clean_key, run_of, workspace_of};
use crate::api::logs::LogValue;
use crate::error::Error;
use crate::run_state::{EndState, RunState};
use crate::server::AppState;
use crate::store::experiments::{self as runs, Changes, Experiment, NewExperiment};
use crate::store::logs::{Kind, NewLog};
use crate::store::series;
use crate::store::workspaces::Role;
use crate::time::now_ms;

const RUN_NAME: &str = "mlflow.runName";
const NOTE: &str = "mlflow.note.content";
/// Tora's plain tags show in MLflow as `tora.tag.<tag>` = "".
const TORA_TAG: &str = "tora.tag.";
/// MLflow's own log-batch limits.
const MAX_BATCH_METRICS: usize = 1_000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
/// MLflow's own limits on values.
const MAX_PARAM_VALUE: usize = 6_000;
const MAX_TAG_VALUE: usize = 8_000;
/// As Tora's own API: hyperparameters per run, and the metadata object's size.
const MAX_HYPERPARAMS: usize = 1_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Runs in one search page at most, and points in one metric history page.
const MAX_RUNS_PAGE: usize = 1_000;
const MAX_HISTORY_PAGE: usize = 25_000;

fn status_of(state: RunState) -> &'static str {
    match state {
        RunState::Running => "RUNNING",
        RunState::Finished => "FINISHED",
        RunState::Failed | RunState::Crashed => "FAILED",
    }
}

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn mlflow_tags(exp: &Experiment) -> Map<String, Value> {
    serde_json::from_str::<Value>(&exp.metadata)
        .ok()
        .and_then(|m| m.get("mlflow_tags").and_then(Value::as_object).cloned())
        .unwrap_or_default()
}

/// The run in MLflow's shape, with the latest value of each metric.
fn run_json(
    conn: &crate::sql::Connection,
    exp: &Experiment,
    now: i64,
) -> crate::error::Result<Value> {
    let activity = exp.activity();
    let state = activity.state(now);
    let metrics: Vec<Value> = series::list(conn, exp.rowid)?
        .into_iter()
        .filter(|s| s.count > 0)
        .map(|s| {
            json!({
                "key": s.name,
                "value": LogValue(s.last_value.unwrap_or(f64::NAN)),
                "timestamp": s.updated_at.unwrap_or(exp.created_at),
                "step": s.last_step.unwrap_or(0).max(0),
            })
        })
        .collect();
    let params: Vec<Value> = serde_json::from_str::<Vec<Value>>(&exp.hyperparams)
        .unwrap_or_default()
        .iter()
        .filter_map(|h| {
            Some(json!({"key": h.get("key")?.as_str()?, "value": param_text(h.get("value")?)}))
        })
        .collect();
    let mut tags: Vec<Value> = mlflow_tags(exp)
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": param_text(&v)}))
        .collect();
    tags.push(json!({"key": RUN_NAME, "value": exp.name}));
    if let Some(d) = &exp.description {
        tags.push(json!({"key": NOTE, "value": d}));
    }
    for t in serde_json::from_str::<Vec<String>>(&exp.tags).unwrap_or_default() {
        tags.push(json!({"key": format!("{TORA_TAG}{t}"), "value": ""}));
    }
    let mut info = json!({
        "run_id": exp.id,
        "run_uuid": exp.id,
        "run_name": exp.name,
        "experiment_id": exp.workspace_id,
        "user_id": exp.created_by.clone().unwrap_or_default(),
        "status": status_of(state),
        "start_time": exp.created_at,
        "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp.workspace_id, exp.id),
        "lifecycle_stage": "active",
    });
    if let Some(end) = activity.ended_at(now) {
        info["end_time"] = json!(end);
    }
    Ok(json!({
        "info": info,
        "data": {"metrics": metrics, "params": params, "tags": tags},
        "inputs": {"dataset_inputs": []},
    }))
}

/// What a write changes in a run's name, description, hyperparameters, tags and metadata,
/// checked against MLflow's and Tora's limits.
struct Edit {
    name: String,
    description: Option<String>,
    hyperparams: Vec<Value>,
    tags: Vec<String>,
    meta: Map<String, Value>,
    mlflow_tags: Map<String, Value>,
}

impl Edit {
    fn of(exp: &Experiment) -> Edit {
        let mut meta: Map<String, Value> = serde_json::from_str(&exp.metadata).unwrap_or_default();
        let mlflow_tags = meta
            .remove("mlflow_tags")
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Edit {
            name: exp.name.clone(),
            description: exp.description.clone(),
            hyperparams: serde_json::from_str(&exp.hyperparams).unwrap_or_default(),
            tags: serde_json::from_str(&exp.tags).unwrap_or_default(),
            meta,
            mlflow_tags,
        }
    }

    fn param(&mut self, key: &str, value: &str, run: &str) -> crate::error::Result<()> {
        let key = clean_key(key, "param")?;
        if value.chars().count() > MAX_PARAM_VALUE {
            return Err(Error::bad_request(format!(
                "param '{key}' is longer than {MAX_PARAM_VALUE} characters"
            )));
        }
        if let Some(old) = self
            .hyperparams
            .iter()
            .find(|h| h.get("key").and_then(Value::as_str) == Some(&key))
        {
            let old = param_text(old.get("value").unwrap_or(&Value::Null));
            if old != value {
                return Err(Error::bad_request(format!(
                    "Changing param values is not allowed. Param with key='{key}' was already logged with value='{old}' for run ID='{run}'. Attempted logging new value '{value}'."
                )));
            }
            return Ok(());
        }
        if self.hyperparams.len() >= MAX_HYPERPARAMS {
            return Err(Error::bad_request(format!(
                "a run holds at most {MAX_HYPERPARAMS} params"
            )));
        }
        self.hyperparams.push(json!({"key": key, "value": value}));
        Ok(())
    }

    fn tag(&mut self, key: &str, value: &str) -> crate::error::Result<()> {
        let key = clean_key(key, "tag")?;
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(Error::bad_request(format!(
                "tag '{key}' is longer than {MAX_TAG_VALUE} characters"
            )));
        }
        if key == RUN_NAME {
            self.name = crate::api::clean_name(value, "the run name", 255)?;
        } else if key == NOTE {
            self.description = Some(value.chars().take(10_000).collect());
        } else if let Some(t) = key.strip_prefix(TORA_TAG) {
            if !self.tags.iter().any(|x| x == t) {
                self.tags.push(t.to_string());
            }
        } else {
            self.mlflow_tags
                .insert(key, Value::String(value.to_string()));
        }
        Ok(())
    }

    fn untag(&mut self, key: &str) {
        if key == NOTE {
            self.description = None;
        } else if let Some(t) = key.strip_prefix(TORA_TAG) {
            self.tags.retain(|x| x != t);
        } else {
            self.mlflow_tags.remove(key);
        }
    }

    /// The JSON texts to store: (hyperparams, tags, metadata).
    fn texts(mut self) -> crate::error::Result<(String, Option<String>, String, String, String)> {
        if !self.mlflow_tags.is_empty() {
            self.meta
                .insert("mlflow_tags".into(), Value::Object(self.mlflow_tags));
        }
        let meta = Value::Object(self.meta).to_string();
        if meta.len() > MAX_METADATA_BYTES {
            return Err(Error::bad_request(format!(
                "the run's tags would take more than {} KiB",
                MAX_METADATA_BYTES >> 10
            )));
        }
        Ok((
            self.name,
            self.description,
            Value::Array(self.hyperparams).to_string(),
            json!(self.tags).to_string(),
            meta,
        ))
    }

    fn save(self, tx: &crate::sql::Transaction, exp: &Experiment) -> crate::error::Result<()> {
        let (name, description, hyperparams, tags, metadata) = self.texts()?;
        let changes = Changes {
            name: Some(&name),
            description: Some(description.as_deref()),
            hyperparams: Some(&hyperparams),
            tags: Some(&tags),
            metadata: Some(&metadata),
            group: None,
        };
        runs::update(tx, exp.rowid, &changes, now_ms())
    }
}

#[derive(Deserialize)]
pub struct NewRun {
    #[serde(default)]
    experiment_id: Option<String>,
    run_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_BATCH_TAGS>"
    )]
    tags: Vec<KeyValue>,
}

pub async fn create(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<NewRun>,
) -> Result<Json<Value>> {
    let hub = state.live.clone();
    let out = state
        .db
        .write_then(
            move |tx| {
                let now = now_ms();
                let raw = body.experiment_id.unwrap_or_else(|| "0".into());
                let ws = workspace_of(tx, &raw, &user.id, Role::Editor, Some(now))?;
                let id = crate::store::new_id();
                let name = match body.run_name.as_deref().map(str::trim) {
                    Some(n) if !n.is_empty() => n.to_string(),
                    _ => format!("run-{}", &id[..8]),
                };
                let name = crate::api::clean_name(&name, "the run name", 255)?;
                let new = NewExperiment {
                    id: &id,
                    workspace_id: &ws,
                    created_by: &user.id,
                    name: &name,
                    description: None,
                    hyperparams: "[]",
                    tags: "[]",
                    metadata: "{}",
                    group: None,
                    created_at: None,
                };
                let exp = runs::create(tx, &new, now)?;
                let mut edit = Edit::of(&exp);
                for t in &body.tags {
                    if t.key == RUN_NAME && body.run_name.is_some() {
                        continue;
                    }
                    edit.tag(&t.key, &t.value)?;
                }
                edit.save(tx, &exp)?;
                let exp = runs::get(tx, &id)?.ok_or_else(|| Error::not_found("run"))?;
                runs::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                Ok((run_json(tx, &exp, now)?, exp))
            },
            move |(_, exp)| hub.publish_run(exp),
        )
        .await?;
    Ok(Json(json!({"run": out.0})))
}

/// A run's id, as `run_id` or as the older `run_uuid` (the client sends both).
#[derive(Deserialize)]
pub struct Id {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

impl Id {
    fn get(self) -> String {
        self.run_id.or(self.run_uuid).unwrap_or_default()
    }
}

#[derive(Deserialize)]
pub struct RunId {
    #[serde(flatten)]
    run_id: Id,
}

pub async fn get_one(
    State(state): State<AppState>,
    user: Caller,
    Params(q): Params<RunId>,
) -> Result<Json<Value>> {
    let run = state
        .db
        .read(move |c| {
            let exp = run_of(c, &q.run_id.get(), &user.id, Role::Viewer)?;
            run_json(c, &exp, now_ms())
        })
        .await?;
    Ok(Json(json!({"run": run})))
}

/// A change to one run, then its `run` notice for the workspace streams.
async fn change(
    state: &AppState,
    user: Caller,
    run_id: String,
    f: impl FnOnce(&crate::sql::Transaction, &Experiment) -> crate::error::Result<()> + Send + 'static,
) -> Result<Experiment> {
    let hub = state.live.clone();
    Ok(state
        .db
        .write_then(
            move |tx| {
                let exp = run_of(tx, &run_id, &user.id, Role::Editor)?;
                f(tx, &exp)?;
                runs::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                runs::get(tx, &exp.id)?.ok_or_else(|| Error::not_found("run"))
            },
            move |exp| hub.publish_run(exp),
        )
        .await?)
}

#[derive(Deserialize)]
pub struct UpdateRun {
    #[serde(flatten)]
    run_id: Id,
    status: Option<String>,
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<UpdateRun>,
) -> Result<Json<Value>> {
    let end = match body.status.as_deref() {
        None | Some("") => None,
        Some("RUNNING" | "SCHEDULED") => Some(None),
        Some("FINISHED") => Some(Some(EndState::Finished)),
        Some("FAILED" | "KILLED") => Some(Some(EndState::Failed)),
        Some(other) => {
            return Err(Error::bad_request(format!(
                "status must be RUNNING, FINISHED, FAILED or KILLED, not {:?}",
                other.chars().take(40).collect::<String>()
            ))
            .into());
        }
    };
    let name = body
        .run_name
        .filter(|n| !n.trim().is_empty())
        .map(|n| crate::api::clean_name(&n, "the run name", 255))
        .transpose()?;
    let end_time = body.end_time;
    let exp = change(&state, user, body.run_id.get(), move |tx, exp| {
        let now = now_ms();
        if let Some(name) = &name {
            let mut edit = Edit::of(exp);
            edit.name = name.clone();
            edit.save(tx, exp)?;
        }
        match end {
            Some(Some(e)) => {
                // The client's end time, if it is a sensible one; else now.
                let at = end_time
                    .filter(|t| *t >= exp.created_at && *t <= now + 60_000)
                    .unwrap_or(now);
                runs::finish(tx, exp.rowid, e, at)
            }
            Some(None) => runs::heartbeat(tx, exp.rowid, now),
            None => Ok(()),
        }
    })
    .await?;
    let now = now_ms();
    let activity = exp.activity();
    let mut info = json!({
        "run_id": exp.id, "run_uuid": exp.id, "run_name": exp.name,
        "experiment_id": exp.workspace_id, "status": status_of(activity.state(now)),
        "start_time": exp.created_at, "lifecycle_stage": "active",
        "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp.workspace_id, exp.id),
    });
    if let Some(end) = activity.ended_at(now) {
        info["end_time"] = json!(end);
    }
    Ok(Json(json!({"run_info": info})))
}

/// Deletes the run for good (OWNER, as Tora's own delete).
pub async fn delete(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<RunId>,
) -> Result<Json<Value>> {
    let hub = state.live.clone();
    state
        .db
        .write_then(
            move |tx| {
                let exp = run_of(tx, &body.run_id.get(), &user.id, Role::Owner)?;
                runs::delete(tx, exp.rowid)?;
                runs::announce(tx, crate::live::server_id(), &exp.workspace_id, &exp.id)?;
                Ok(exp)
            },
            move |exp| hub.publish_deleted(&exp.workspace_id, &exp.id),
        )
        .await?;
    Ok(Json(json!({})))
}

pub async fn restore(_user: Caller, Body(_body): Body<RunId>) -> Result<Json<Value>> {
    Err(Error::bad_request("Tora deletes runs for good: there is nothing to restore").into())
}

#[derive(Deserialize)]
pub struct MetricIn {
    key: String,
    value: LogValue,
    #[serde(default)]
    step: i64,
    /// Milliseconds since the epoch.
    timestamp: Option<i64>,
}

fn metric(m: &MetricIn) -> crate::error::Result<NewLog> {
    let key = clean_key(&m.key, "metric")?;
    if m.step < 0 {
        return Err(Error::bad_request(format!(
            "metric '{key}': Tora keeps steps from 0 up, not {}",
            m.step
        )));
    }
    Ok(NewLog {
        msg_id: None,
        name: Arc::from(key),
        kind: Kind::Metric,
        step: Some(m.step),
        value: m.value.0,
        extra_metadata: None,
        at: m.timestamp,
    })
}

#[derive(Deserialize)]
pub struct LogMetric {
    #[serde(flatten)]
    run_id: Id,
    #[serde(flatten)]
    metric: MetricIn,
}

/// Stores points as Tora's own ingest does, so they reach the run's live streams too.
async fn store(state: AppState, user: Caller, run_id: String, logs: Vec<NewLog>) -> Result<()> {
    if logs.is_empty() {
        return Ok(());
    }
    crate::api::logs::store(state, user.into(), run_id, None, logs).await?;
    Ok(())
}

pub async fn log_metric(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<LogMetric>,
) -> Result<Json<Value>> {
    let log = metric(&body.metric)?;
    store(state, user, body.run_id.get(), vec![log]).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogBatch {
    run_id: String,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_BATCH_METRICS>"
    )]
    metrics: Vec<MetricIn>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_BATCH_PARAMS>"
    )]
    params: Vec<KeyValue>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_BATCH_TAGS>"
    )]
    tags: Vec<KeyValue>,
}

/// Params, tags and metrics in one transaction (Tora's ingest, with the run's edit first).
pub async fn log_batch(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<LogBatch>,
) -> Result<Json<Value>> {
    let logs = body
        .metrics
        .iter()
        .map(metric)
        .collect::<crate::error::Result<Vec<_>>>()?;
    let (params, tags) = (body.params, body.tags);
    let before: Option<crate::api::logs::Before> =
        (!params.is_empty() || !tags.is_empty()).then(|| {
            Box::new(move |tx: &crate::sql::Transaction, exp: &Experiment| {
                let mut edit = Edit::of(exp);
                for p in &params {
                    edit.param(&p.key, &p.value, &exp.id)?;
                }
                for t in &tags {
                    edit.tag(&t.key, &t.value)?;
                }
                edit.save(tx, exp)
            }) as crate::api::logs::Before
        });
    // One transaction for all of it, checked and stored together (an empty batch still
    // checks that the run exists and is writable).
    crate::api::logs::store_with(state, user.into(), body.run_id, None, logs, before).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogParam {
    #[serde(flatten)]
    run_id: Id,
    key: String,
    #[serde(default)]
    value: String,
}

pub async fn log_param(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<LogParam>,
) -> Result<Json<Value>> {
    change(&state, user, body.run_id.get(), move |tx, exp| {
        let mut edit = Edit::of(exp);
        edit.param(&body.key, &body.value, &exp.id)?;
        edit.save(tx, exp)
    })
    .await?;
    Ok(Json(json!({})))
}

pub async fn set_tag(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<LogParam>,
) -> Result<Json<Value>> {
    change(&state, user, body.run_id.get(), move |tx, exp| {
        let mut edit = Edit::of(exp);
        edit.tag(&body.key, &body.value)?;
        edit.save(tx, exp)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteTag {
    run_id: String,
    key: String,
}

pub async fn delete_tag(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<DeleteTag>,
) -> Result<Json<Value>> {
    change(&state, user, body.run_id, move |tx, exp| {
        let mut edit = Edit::of(exp);
        edit.untag(&body.key);
        edit.save(tx, exp)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogInputs {
    run_id: String,
}

/// Datasets are not kept (README: "Coming from MLflow"); the run must still be writable.
pub async fn log_inputs(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<LogInputs>,
) -> Result<Json<Value>> {
    state
        .db
        .read(move |c| run_of(c, &body.run_id, &user.id, Role::Editor))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct History {
    #[serde(flatten)]
    run_id: Id,
    metric_key: String,
    max_results: Option<i64>,
    page_token: Option<String>,
}

/// A metric's points in arrival order, a page at a time.
pub async fn metric_history(
    State(state): State<AppState>,
    user: Caller,
    Params(q): Params<History>,
) -> Result<Json<Value>> {
    let limit = usize::try_from(q.max_results.unwrap_or(MAX_HISTORY_PAGE as i64))
        .unwrap_or(MAX_HISTORY_PAGE)
        .clamp(1, MAX_HISTORY_PAGE);
    let after: i64 = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse()
            .map_err(|_| Error::bad_request("invalid page_token"))?,
        None => -1,
    };
    let key = q.metric_key;
    let out = state
        .db
        .read(move |c| {
            let exp = run_of(c, &q.run_id.get(), &user.id, Role::Viewer)?;
            let Some(s) = series::list(c, exp.rowid)?
                .into_iter()
                .find(|s| s.name == key && s.kind == Kind::Metric)
            else {
                return Ok(json!({"metrics": []}));
            };
            let mut points = series::after_seq(c, &s, after, limit)?;
            let more = points.len() > limit;
            points.truncate(limit);
            let next = points.last().map(|p| p.seq);
            let metrics: Vec<Value> = points
                .iter()
                .map(|p| {
                    json!({"key": key, "value": LogValue(p.value), "step": p.step.max(0),
                           "timestamp": exp.created_at + p.t})
                })
                .collect();
            let mut out = json!({"metrics": metrics});
            if more && let Some(n) = next {
                out["next_page_token"] = json!(n.to_string());
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct SearchRuns {
    #[serde(default, deserialize_with = "crate::api::at_most::<_, _, 100>")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: String,
    run_view_type: Option<String>,
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "crate::api::at_most::<_, _, 10>")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// Runs of the given experiments (in the order given) matching MLflow's filter, through the
/// same filter compiler and keyset pagination as Tora's run table. The page token names the
/// experiment it is in and the keyset cursor there.
pub async fn search(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<SearchRuns>,
) -> Result<Json<Value>> {
    let filter = crate::mlflow_query::parse(&body.filter)?;
    let sort = crate::mlflow_query::parse_order(&body.order_by)?;
    let limit = usize::try_from(body.max_results.unwrap_or(MAX_RUNS_PAGE as i64))
        .unwrap_or(MAX_RUNS_PAGE)
        .clamp(1, MAX_RUNS_PAGE);
    let (mut index, mut cursor) = match body.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => {
            let bad = || Error::bad_request("invalid page_token");
            let (i, c) = t.split_once(':').ok_or_else(bad)?;
            let i: usize = i.parse().map_err(|_| bad())?;
            let c = if c.is_empty() {
                None
            } else {
                Some(runs::Cursor::decode(c).ok_or_else(bad)?)
            };
            (i, c)
        }
        None => (0, None),
    };
    let deleted_only = body.run_view_type.as_deref() == Some("DELETED_ONLY");
    let ids = body.experiment_ids;
    let out = state
        .db
        .read(move |tx| {
            let now = now_ms();
            let mut found = vec![];
            let mut token = None;
            if deleted_only {
                return Ok(json!({"runs": []}));
            }
            while index < ids.len() {
                let ws = workspace_of(tx, &ids[index], &user.id, Role::Viewer, None)?;
                let want = limit - found.len();
                let page = runs::page(
                    tx,
                    &ws,
                    filter.as_ref(),
                    &sort,
                    Some(want),
                    cursor.as_ref(),
                    now,
                )?;
                for e in &page.experiments {
                    found.push(run_json(tx, e, now)?);
                }
                if let Some(next) = page.next {
                    token = Some(format!("{index}:{}", next.encode()));
                    break;
                }
                index += 1;
                cursor = None;
                if found.len() == limit {
                    if index < ids.len() {
                        token = Some(format!("{index}:"));
                    }
                    break;
                }
            }
            let mut out = json!({"runs": found});
            if let Some(t) = token {
                out["next_page_token"] = json!(t);
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out))
}
