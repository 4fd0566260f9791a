//! MLflow 3's logged models, kept with the run that logged them: in its metadata under
//! `mlflow_models` ({model_id: {name, model_type, status, ...}}), their files among the run's
//! artifacts under `models/<model_id>/`. A model id is `m-` + its run's id (hex) + 8 random hex
//! digits, so finding a model is finding its run, with the run's access rules.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::experiments::KeyValue;
use super::{Body, Caller, Result, Segment, clean_key, run_of, workspace_of};
use crate::error::Error;
use crate::server::AppState;
use crate::store::experiments::{self as runs, Changes, Experiment};
use crate::store::workspaces::Role;
use crate::time::now_ms;

const KEY: &str = "mlflow_models";
/// Models one run keeps at most (all within the run's 16 KiB of metadata).
const MAX_MODELS: usize = 20;
const MAX_MODEL_PARAMS: usize = 100;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const PENDING: &str = "LOGGED_MODEL_PENDING";
/// Models one search answers with at most, newest runs' first.
const MAX_FOUND: usize = 1_000;

fn models_of(exp: &Experiment) -> (Map<String, Value>, Map<String, Value>) {
    let mut meta: Map<String, Value> = serde_json::from_str(&exp.metadata).unwrap_or_default();
    let models = meta
        .remove(KEY)
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    (meta, models)
}

fn save(
    tx: &crate::sql::Transaction,
    exp: &Experiment,
    mut meta: Map<String, Value>,
    models: Map<String, Value>,
) -> crate::error::Result<()> {
    meta.insert(KEY.into(), Value::Object(models));
    let text = Value::Object(meta).to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(Error::bad_request(format!(
            "the run's models and tags would take more than {} KiB",
            MAX_METADATA_BYTES >> 10
        )));
    }
    let changes = Changes {
        name: None,
        description: None,
        hyperparams: None,
        tags: None,
        metadata: Some(&text),
        group: None,
    };
    runs::update(tx, exp.rowid, &changes, now_ms())
}

/// The run a model id names.
fn run_id_of(model_id: &str) -> crate::error::Result<String> {
    let missing = || {
        Error::NotFound(format!(
            "Logged model with ID '{}' not found",
            model_id.chars().take(64).collect::<String>()
        ))
    };
    let hex = model_id
        .strip_prefix("m-")
        .and_then(|m| m.get(..32))
        .ok_or_else(missing)?;
    uuid::Uuid::try_parse(hex)
        .map(|u| u.to_string())
        .map_err(|_| missing())
}

fn pairs(map: Option<&Value>) -> Vec<Value> {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({"key": k, "value": v.as_str().unwrap_or("")}))
                .collect()
        })
        .unwrap_or_default()
}

fn model_json(exp: &Experiment, id: &str, m: &Value) -> Value {
    json!({
        "info": {
            "model_id": id,
            "experiment_id": exp.workspace_id,
            "name": m.get("name").cloned().unwrap_or(json!("model")),
            "creation_timestamp_ms": m.get("created").cloned().unwrap_or(json!(0)),
            "last_updated_timestamp_ms": m.get("updated").cloned().unwrap_or(json!(0)),
            "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts/models/{id}", exp.workspace_id, exp.id),
            "status": m.get("status").cloned().unwrap_or(json!(PENDING)),
            "model_type": m.get("model_type").cloned().unwrap_or(json!("")),
            "source_run_id": exp.id,
            "tags": pairs(m.get("tags")),
        },
        "data": {"params": pairs(m.get("params")), "metrics": []},
    })
}

fn put_pairs(model: &mut Value, field: &str, items: &[KeyValue]) -> crate::error::Result<()> {
    let Some(obj) = model.as_object_mut() else {
        return Ok(());
    };
    let map = obj
        .entry(field)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error::Internal("model field is not an object".into()))?;
    for kv in items {
        let key = clean_key(&kv.key, field.trim_end_matches('s'))?;
        map.insert(key, Value::String(kv.value.chars().take(6_000).collect()));
    }
    if map.len() > MAX_MODEL_PARAMS {
        return Err(Error::bad_request(format!(
            "a logged model keeps at most {MAX_MODEL_PARAMS} {field}"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct NewModel {
    experiment_id: String,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_MODEL_PARAMS>"
    )]
    params: Vec<KeyValue>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_MODEL_PARAMS>"
    )]
    tags: Vec<KeyValue>,
}

pub async fn create(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<NewModel>,
) -> Result<Json<Value>> {
    let run_id = body
        .source_run_id
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::bad_request(
                "Tora keeps a logged model with the run that logs it: log the model inside a run",
            )
        })?;
    let name = crate::api::clean_name(
        body.name.as_deref().unwrap_or("model"),
        "the model name",
        255,
    )?;
    let model_type = body.model_type.unwrap_or_default();
    let out = state
        .db
        .write(move |tx| {
            let now = now_ms();
            let exp = run_of(tx, &run_id, &user.id, Role::Editor)?;
            let ws = workspace_of(tx, &body.experiment_id, &user.id, Role::Editor, Some(now))?;
            if ws != exp.workspace_id {
                return Err(Error::bad_request(
                    "the model's experiment_id is not its source run's experiment",
                ));
            }
            let (meta, mut models) = models_of(&exp);
            if models.len() >= MAX_MODELS {
                return Err(Error::bad_request(format!(
                    "a run keeps at most {MAX_MODELS} logged models"
                )));
            }
            let id = format!(
                "m-{}{}",
                exp.id.replace('-', ""),
                &crate::store::new_id().replace('-', "")[..8]
            );
            let mut model = json!({
                "name": name, "model_type": model_type.chars().take(255).collect::<String>(),
                "status": PENDING, "created": now, "updated": now,
            });
            put_pairs(&mut model, "params", &body.params)?;
            put_pairs(&mut model, "tags", &body.tags)?;
            let out = model_json(&exp, &id, &model);
            models.insert(id, model);
            save(tx, &exp, meta, models)?;
            Ok(out)
        })
        .await?;
    Ok(Json(json!({"model": out})))
}

/// Reads or changes one model: `f` gets the model's JSON to change in place, and whether the
/// caller may write.
async fn with_model(
    state: &AppState,
    user: Caller,
    model_id: String,
    needed: Role,
    f: impl FnOnce(&mut Value) -> crate::error::Result<()> + Send + 'static,
) -> Result<Value> {
    let run_id = run_id_of(&model_id)?;
    Ok(state
        .db
        .write(move |tx| {
            let exp = run_of(tx, &run_id, &user.id, needed).map_err(|e| match e {
                Error::NotFound(_) => {
                    Error::NotFound(format!("Logged model with ID '{model_id}' not found"))
                }
                other => other,
            })?;
            let (meta, mut models) = models_of(&exp);
            let model = models.get_mut(&model_id).ok_or_else(|| {
                Error::NotFound(format!("Logged model with ID '{model_id}' not found"))
            })?;
            let before = model.clone();
            f(model)?;
            let out = model_json(&exp, &model_id, model);
            if *model != before {
                if let Some(m) = model.as_object_mut() {
                    m.insert("updated".into(), json!(now_ms()));
                }
                save(tx, &exp, meta, models)?;
            }
            Ok(out)
        })
        .await?)
}

pub async fn get_one(
    State(state): State<AppState>,
    user: Caller,
    Segment(model_id): Segment<String>,
) -> Result<Json<Value>> {
    let run_id = run_id_of(&model_id)?;
    let out = state
        .db
        .read(move |c| {
            let missing =
                || Error::NotFound(format!("Logged model with ID '{model_id}' not found"));
            let exp = run_of(c, &run_id, &user.id, Role::Viewer).map_err(|e| match e {
                Error::NotFound(_) => missing(),
                other => other,
            })?;
            let (_, models) = models_of(&exp);
            let model = models.get(&model_id).ok_or_else(missing)?;
            Ok(model_json(&exp, &model_id, model))
        })
        .await?;
    Ok(Json(json!({"model": out})))
}

#[derive(Deserialize)]
pub struct Finalize {
    status: String,
}

pub async fn finalize(
    State(state): State<AppState>,
    user: Caller,
    Segment(model_id): Segment<String>,
    Body(body): Body<Finalize>,
) -> Result<Json<Value>> {
    let status = match body.status.as_str() {
        s @ ("LOGGED_MODEL_READY" | "LOGGED_MODEL_UPLOAD_FAILED" | PENDING) => s.to_string(),
        other => {
            return Err(Error::bad_request(format!(
                "status must be LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED, not {:?}",
                other.chars().take(40).collect::<String>()
            ))
            .into());
        }
    };
    let out = with_model(&state, user, model_id, Role::Editor, move |m| {
        m["status"] = json!(status);
        Ok(())
    })
    .await?;
    Ok(Json(json!({"model": out})))
}

#[derive(Deserialize)]
pub struct Pairs {
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_MODEL_PARAMS>"
    )]
    params: Vec<KeyValue>,
    #[serde(
        default,
        deserialize_with = "crate::api::at_most::<_, _, MAX_MODEL_PARAMS>"
    )]
    tags: Vec<KeyValue>,
}

pub async fn log_params(
    State(state): State<AppState>,
    user: Caller,
    Segment(model_id): Segment<String>,
    Body(body): Body<Pairs>,
) -> Result<Json<Value>> {
    with_model(&state, user, model_id, Role::Editor, move |m| {
        put_pairs(m, "params", &body.params)
    })
    .await?;
    Ok(Json(json!({})))
}

pub async fn set_tags(
    State(state): State<AppState>,
    user: Caller,
    Segment(model_id): Segment<String>,
    Body(body): Body<Pairs>,
) -> Result<Json<Value>> {
    with_model(&state, user, model_id, Role::Editor, move |m| {
        put_pairs(m, "tags", &body.tags)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default, deserialize_with = "crate::api::at_most::<_, _, 100>")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: String,
}

/// The models of the runs in the given experiments, newest run first, at most [`MAX_FOUND`]
/// (no page token); no filter.
pub async fn search(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<Search>,
) -> Result<Json<Value>> {
    if !body.filter.trim().is_empty() {
        return Err(Error::bad_request("Tora searches logged models without a filter").into());
    }
    let out = state
        .db
        .read(move |c| {
            let mut out = vec![];
            for raw in &body.experiment_ids {
                let ws = workspace_of(c, raw, &user.id, Role::Viewer, None)?;
                for exp in runs::with_metadata_key(c, &ws, KEY, MAX_FOUND)? {
                    let (_, models) = models_of(&exp);
                    out.extend(models.iter().map(|(id, m)| model_json(&exp, id, m)));
                    if out.len() >= MAX_FOUND {
                        out.truncate(MAX_FOUND);
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(json!({"models": out})))
}

#[derive(Deserialize)]
pub struct Outputs {
    run_id: String,
}

/// A run's outputs are the models it logged, kept with it already; the run must be writable.
pub async fn log_outputs(
    State(state): State<AppState>,
    user: Caller,
    Body(body): Body<Outputs>,
) -> Result<Json<Value>> {
    state
        .db
        .read(move |c| run_of(c, &body.run_id, &user.id, Role::Editor))
        .await?;
    Ok(Json(json!({})))
}
