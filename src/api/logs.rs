//! Logs: metric points and results of one experiment. Writes are exactly-once per msg_id; reads
//! come as JSON or as a streamed CSV export.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::authorize;
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Reply, created};
use crate::auth::AuthUser;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::live::Progress;
use crate::server::{AppState, MAX_DOWNLOADS};
use crate::store::experiments::Experiment;
use crate::store::logs::{self, Inserted, Kind, Log, MsgId, NewLog, Pages, Recent, Selection};
use crate::store::workspaces::Role;
use crate::time::{now_ms, rfc3339};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_logs, create_log))
        .routes(routes!(create_logs))
        .routes(routes!(create_points))
        .routes(routes!(export_csv))
        .routes(routes!(list_metrics))
        .routes(routes!(list_results))
}

pub const MAX_BATCH: usize = 100_000;
const MAX_NAME: usize = 255;
const MAX_MSG_ID: usize = 255;
const MAX_METADATA: usize = 10 * 1024;

/// A log value: a JSON number, or "NaN" / "Infinity" / "-Infinity" (JSON has no such numbers).
#[derive(Debug, Clone, Copy)]
pub struct LogValue(pub f64);

impl<'de> Deserialize<'de> for LogValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LogValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a number, or one of the strings "NaN", "Infinity", "-Infinity""#)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LogValue, E> {
                Ok(LogValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LogValue, E> {
                Ok(LogValue(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LogValue, E> {
                Ok(LogValue(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LogValue, E> {
                match v.to_ascii_lowercase().as_str() {
                    "nan" => Ok(LogValue(f64::NAN)),
                    "infinity" | "+infinity" | "inf" | "+inf" => Ok(LogValue(f64::INFINITY)),
                    "-infinity" | "-inf" => Ok(LogValue(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for LogValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["NaN", "Infinity", "-Infinity"])),
            )
            .description(Some("a number, or \"NaN\" / \"Infinity\" / \"-Infinity\""))
            .into()
    }
}

impl utoipa::ToSchema for LogValue {}

impl Serialize for LogValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(v)
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LogIn {
    /// The client's id for this log: a resend with the same id is skipped.
    msg_id: Option<String>,
    name: String,
    value: LogValue,
    #[schema(minimum = 0)]
    step: Option<i64>,
    /// `{"type": "metric" | "result", ...}`, at most 10 KB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BatchIn {
    #[serde(deserialize_with = "super::at_most::<_, _, MAX_BATCH>")]
    logs: Vec<LogIn>,
}

/// Checks one incoming log and decides its kind: `metadata.type` if given, else a log with a
/// step is a metric and one without is a result. Errors are messages without the log's
/// position, which the caller adds; nothing is formatted unless something is wrong, as this runs
/// for every point of every batch.
fn validate(log: LogIn) -> std::result::Result<NewLog, String> {
    let name =
        super::clean_name(&log.name, "the name", MAX_NAME).map_err(|e| e.message().to_string())?;
    if log.step.is_some_and(|s| s < 0) {
        return Err("step must be a non-negative integer".into());
    }
    let msg_id = match log.msg_id {
        Some(id) if id.len() > MAX_MSG_ID => {
            return Err(format!("msg_id is longer than {MAX_MSG_ID} characters"));
        }
        Some(id) if !id.is_empty() => Some(MsgId::parse(&id)),
        _ => None,
    };
    let (kind, extra_metadata) = match log.metadata.as_deref().map(RawValue::get) {
        None | Some("null") => (None, None),
        Some(raw) => match plain_type(raw) {
            Some(kind) => (Some(kind), None),
            None => metadata(raw)?,
        },
    };
    let kind = kind.unwrap_or(if log.step.is_some() {
        Kind::Metric
    } else {
        Kind::Result
    });
    if kind == Kind::Metric && log.step.is_none() {
        return Err("a metric needs a step".into());
    }
    Ok(NewLog {
        msg_id,
        name: name.into(),
        kind,
        step: log.step,
        value: log.value.0,
        at: None,
        extra_metadata,
    })
}

/// The common case, `{"type": "metric"}` or `{"type": "result"}`, recognised without parsing.
fn plain_type(raw: &str) -> Option<Kind> {
    if raw.len() > 24 {
        return None;
    }
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        r#"{"type":"metric"}"# => Some(Kind::Metric),
        r#"{"type":"result"}"# => Some(Kind::Result),
        _ => None,
    }
}

/// Any other metadata: its kind, and the whole object to keep if it says more than the type.
fn metadata(raw: &str) -> std::result::Result<(Option<Kind>, Option<String>), String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
        return Err("metadata must be an object".into());
    };
    let kind = match map.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t == "metric" => Some(Kind::Metric),
        Some(Value::String(t)) if t == "result" => Some(Kind::Result),
        Some(_) => return Err("metadata.type must be \"metric\" or \"result\"".into()),
    };
    if !map.keys().any(|k| k != "type") {
        return Ok((kind, None));
    }
    let text = Value::Object(map).to_string();
    if text.len() > MAX_METADATA {
        return Err("metadata is over 10 KB".into());
    }
    Ok((kind, Some(text)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Stored {
    inserted: usize,
    skipped: usize,
}

/// A change to the run made in its batch's own transaction, before the points: MLflow's
/// log-batch stores params and tags with the metrics, all or nothing.
pub(crate) type Before =
    Box<dyn FnOnce(&crate::sql::Transaction, &Experiment) -> Result<()> + Send + 'static>;

pub(crate) async fn store(
    state: AppState,
    user: AuthUser,
    id: String,
    batch_id: Option<String>,
    logs: Vec<NewLog>,
) -> Result<Reply<Stored>> {
    store_with(state, user, id, batch_id, logs, None).await
}

/// `store`, with `before` changing the run first in the same transaction (its new state is
/// then published to the workspace's streams).
pub(crate) async fn store_with(
    state: AppState,
    user: AuthUser,
    id: String,
    batch_id: Option<String>,
    logs: Vec<NewLog>,
    before: Option<Before>,
) -> Result<Reply<Stored>> {
    let hub = state.live.clone();
    let publisher = state.live.clone();
    let (
        Inserted {
            inserted, skipped, ..
        },
        ..,
    ) = state
        .db
        .write_then(
            move |tx| {
                let exp = authorize(tx, &id, &user.id, Role::Editor)?;
                let changed = match before {
                    Some(change) => {
                        change(tx, &exp)?;
                        crate::store::experiments::get(tx, &exp.id)?
                    }
                    None => None,
                };
                if let Some(run) = &changed {
                    crate::store::experiments::announce(
                        tx,
                        crate::live::server_id(),
                        &run.workspace_id,
                        &run.id,
                    )?;
                }
                let now = now_ms();
                // A batch id seen before means a resend: the whole batch is already stored. An
                // empty batch stores nothing, so it does not use its id up either.
                if let Some(batch) = batch_id.as_deref().filter(|_| !logs.is_empty())
                    && !logs::claim_batch(tx, &exp, batch)?
                {
                    let skipped = Inserted {
                        skipped: logs.len(),
                        ..Inserted::default()
                    };
                    return Ok((skipped, None, None, changed));
                }
                let done = logs::insert(tx, &exp, &logs, now)?;
                if let Some(&(_, last)) = done.stored.last() {
                    logs::announce(
                        tx,
                        crate::live::server_id(),
                        exp.rowid,
                        last,
                        &exp.workspace_id,
                    )?;
                }
                let progress = hub
                    .workspace_watched(&exp.workspace_id)
                    .then(|| progress(&exp, &logs, &done, now));
                // Decided inside the write transaction: a stream that subscribes later fences
                // on the writer and then finds this batch in the database instead (see
                // api::stream).
                let live = hub.watched(exp.rowid).then(|| {
                    let batch = done
                        .stored
                        .iter()
                        .map(|&(i, seq)| Recent {
                            seq,
                            name: logs[i].name.clone(),
                            kind: logs[i].kind,
                            step: logs[i].step,
                            value: logs[i].value,
                            // As `logs::insert` keeps a client's time.
                            created_at: logs[i].at.map_or(now, |at| {
                                let latest = now + crate::time::MAX_AHEAD_MS;
                                at.clamp(exp.created_at, latest.max(exp.created_at))
                            }),
                        })
                        .collect::<Vec<_>>();
                    (exp.rowid, batch)
                });
                Ok((done, live, progress, changed))
            },
            // After the commit (a watcher never sees a point that could vanish) and before the
            // writer is free: batches reach streams in commit order, which is id order.
            move |(_, live, progress, changed)| {
                if let Some(run) = changed {
                    publisher.publish_run(run);
                }
                if let Some((rowid, batch)) = live.as_ref().filter(|(_, b)| !b.is_empty()) {
                    publisher.publish(*rowid, super::stream::publishable(batch.clone()));
                }
                if let Some(p) = progress.as_ref().filter(|p| !p.is_empty()) {
                    publisher.publish_progress(p.clone());
                }
            },
        )
        .await?;
    crate::telemetry::note_points(inserted as u64);
    Ok(created(Stored { inserted, skipped }))
}

/// What a stored batch tells a workspace's streams: the last step and value of each series it
/// stored points in (skipped duplicates tell nothing).
fn progress(exp: &Experiment, logs: &[NewLog], done: &Inserted, now: i64) -> Progress {
    let mut p = Progress::new(exp.workspace_id.clone(), exp.id.clone(), now);
    for &(i, _) in &done.stored {
        let log = &logs[i];
        match (log.kind, log.step) {
            (Kind::Metric, Some(step)) => p.metric(&log.name, step, log.value),
            _ => p.result(&log.name, log.value),
        }
    }
    p
}

#[utoipa::path(post, path = "/experiments/{id}/logs/batch", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = BatchIn, responses((status = 201, body = Envelope<Stored>), Errors))]
async fn create_logs(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<BatchIn>,
) -> Result<Reply<Stored>> {
    if body.logs.len() > MAX_BATCH {
        return Err(Error::bad_request(format!(
            "{} logs in one batch; the limit is {MAX_BATCH}",
            body.logs.len()
        )));
    }
    // All or nothing: one bad log rejects the batch before anything is written.
    let logs = body
        .logs
        .into_iter()
        .enumerate()
        .map(|(i, log)| validate(log).map_err(|m| Error::bad_request(format!("logs[{i}]: {m}"))))
        .collect::<Result<Vec<_>>>()?;
    store(state, user, id, None, logs).await
}

#[utoipa::path(post, path = "/experiments/{id}/logs", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = LogIn, responses((status = 201, body = Envelope<Stored>), Errors))]
async fn create_log(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<LogIn>,
) -> Result<Reply<Stored>> {
    let log = validate(body).map_err(|m| Error::bad_request(format!("log: {m}")))?;
    store(state, user, id, None, vec![log]).await
}

/// One metric's points as two columns: `steps[i]` goes with value `i`. The values come as
/// `values` (JSON) or as `values_f64`, exactly one of the two.
#[derive(Deserialize, utoipa::ToSchema)]
struct ColumnIn {
    name: String,
    #[schema(value_type = Vec<u64>)]
    #[serde(deserialize_with = "super::at_most::<_, _, MAX_BATCH>")]
    steps: Vec<i64>,
    /// Numbers, or "NaN" / "Infinity" / "-Infinity".
    #[serde(default, deserialize_with = "super::at_most_opt::<_, _, MAX_BATCH>")]
    values: Option<Vec<LogValue>>,
    /// The values as little-endian IEEE-754 doubles, base64 (standard alphabet, padded): exact
    /// bits, and a fraction of the client's cost of decimal text (Python:
    /// `base64.b64encode(array("d", values).tobytes())`, byte-swapped on big-endian machines).
    values_f64: Option<String>,
    /// When each point was taken, in ms since the unix epoch (`times[i]` goes with `steps[i]`),
    /// for points logged earlier or elsewhere (an import); default: when the batch arrives.
    /// Kept as the time since the run began: an earlier time counts as its start, and a time
    /// may be at most a day past the server's clock.
    #[schema(value_type = Option<Vec<u64>>)]
    #[serde(default, deserialize_with = "super::at_most_opt::<_, _, MAX_BATCH>")]
    times: Option<Vec<i64>>,
}

impl ColumnIn {
    fn values(&self) -> std::result::Result<Vec<f64>, String> {
        use base64::Engine;
        match (&self.values, &self.values_f64) {
            (Some(v), None) => Ok(v.iter().map(|v| v.0).collect()),
            (None, Some(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("values_f64 is not base64: {e}"))?;
                if bytes.len() % 8 != 0 {
                    return Err(format!(
                        "values_f64 holds {} bytes, not a whole number of 8-byte doubles",
                        bytes.len()
                    ));
                }
                Ok(bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
                    .collect())
            }
            (Some(_), Some(_)) => Err("give values or values_f64, not both".into()),
            (None, None) => Err("values (or values_f64) is required".into()),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ResultIn {
    name: String,
    value: LogValue,
    /// When it was recorded, in ms since the unix epoch, as a metric's `times`.
    #[schema(minimum = 0)]
    time: Option<i64>,
}

/// The columnar batch: names once per metric instead of once per point, and one id for the whole
/// batch instead of a msg_id per point, so a client builds and the server reads a fraction of
/// the JSON that `logs/batch` needs for the same points.
#[derive(Deserialize, utoipa::ToSchema)]
struct PointsIn {
    /// The batch's idempotency key: a batch with an id already stored for this experiment is
    /// skipped whole, so a resend after a lost reply never duplicates it.
    batch_id: Option<String>,
    #[serde(default, deserialize_with = "super::at_most::<_, _, MAX_BATCH>")]
    metrics: Vec<ColumnIn>,
    #[serde(default, deserialize_with = "super::at_most::<_, _, MAX_BATCH>")]
    results: Vec<ResultIn>,
}

/// Checks a columnar batch and flattens it into logs, metrics first, in body order.
fn points(body: PointsIn) -> Result<(Option<String>, Vec<NewLog>)> {
    let batch_id = match body.batch_id {
        Some(id) if id.is_empty() || id.len() > MAX_MSG_ID => {
            return Err(Error::bad_request(format!(
                "batch_id must be 1 to {MAX_MSG_ID} characters"
            )));
        }
        id => id,
    };
    let total = body.metrics.iter().map(|m| m.steps.len()).sum::<usize>() + body.results.len();
    if total > MAX_BATCH {
        return Err(Error::bad_request(format!(
            "{total} points in one batch; the limit is {MAX_BATCH}"
        )));
    }
    let mut logs = Vec::with_capacity(total);
    for (i, m) in body.metrics.into_iter().enumerate() {
        let at = |what: String| Error::bad_request(format!("metrics[{i}]: {what}"));
        let name: Arc<str> = super::clean_name(&m.name, "the name", MAX_NAME)
            .map_err(|e| at(e.message().to_string()))?
            .into();
        let values = m.values().map_err(at)?;
        if m.steps.len() != values.len() {
            return Err(at(format!(
                "{} steps but {} values; each step needs its value",
                m.steps.len(),
                values.len()
            )));
        }
        if let Some(j) = m.steps.iter().position(|&s| s < 0) {
            return Err(at(format!("steps[{j}] must be a non-negative integer")));
        }
        if let Some(times) = &m.times {
            if times.len() != m.steps.len() {
                return Err(at(format!(
                    "{} steps but {} times; each step needs its time",
                    m.steps.len(),
                    times.len()
                )));
            }
            if let Some(j) = times.iter().position(|&t| t < 0) {
                return Err(at(format!(
                    "times[{j}] must be ms since the unix epoch (not negative)"
                )));
            }
        }
        let times = m.times.as_deref().unwrap_or_default();
        logs.extend(
            m.steps
                .iter()
                .zip(values)
                .enumerate()
                .map(|(j, (&step, value))| NewLog {
                    msg_id: None,
                    name: name.clone(),
                    kind: Kind::Metric,
                    step: Some(step),
                    value,
                    at: times.get(j).copied(),
                    extra_metadata: None,
                }),
        );
    }
    for (i, r) in body.results.into_iter().enumerate() {
        let name = super::clean_name(&r.name, "the name", MAX_NAME)
            .map_err(|e| Error::bad_request(format!("results[{i}]: {}", e.message())))?;
        if r.time.is_some_and(|t| t < 0) {
            return Err(Error::bad_request(format!(
                "results[{i}]: time must be ms since the unix epoch (not negative)"
            )));
        }
        logs.push(NewLog {
            msg_id: None,
            name: name.into(),
            kind: Kind::Result,
            step: None,
            value: r.value.0,
            at: r.time,
            extra_metadata: None,
        });
    }
    Ok((batch_id, logs))
}

#[utoipa::path(post, path = "/experiments/{id}/points", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = PointsIn, responses((status = 201, body = Envelope<Stored>), Errors))]
async fn create_points(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<PointsIn>,
) -> Result<Reply<Stored>> {
    let (batch_id, logs) = points(body)?;
    store(state, user, id, batch_id, logs).await
}

#[derive(Serialize, utoipa::ToSchema)]
struct LogOut<'a> {
    id: i64,
    experiment_id: &'a str,
    /// The client's id for the log; null for points sent without one (such as `/points`).
    msg_id: Option<String>,
    name: String,
    value: LogValue,
    step: Option<i64>,
    #[schema(value_type = Object)]
    metadata: Metadata,
    created_at: String,
}

/// A log's metadata: `{"type": ..}` for nearly every log, written without building a map.
/// Answers are written by [`JsonLogs`]; this type describes them (OpenAPI) and is what tests
/// hold that writer to.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "built only by the tests' serde reference")
)]
enum Metadata {
    Type(Kind),
    Extra(Value),
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Metadata::Type(kind) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("type", kind.name())?;
                map.end()
            }
            Metadata::Extra(v) => v.serialize(s),
        }
    }
}

/// `created_at` as RFC 3339, formatted once for a run of logs that share it (a batch does).
#[derive(Default)]
pub(super) struct Times(Option<(i64, String)>);

impl Times {
    pub(super) fn format(&mut self, t: i64) -> String {
        match &self.0 {
            Some((at, text)) if *at == t => text.clone(),
            _ => {
                let text = rfc3339(t);
                self.0 = Some((t, text.clone()));
                text
            }
        }
    }
}

/// The `LogOut` that serde would write for `l` (what [`JsonLogs`] is tested against).
#[cfg(test)]
fn log_out<'a>(experiment_id: &'a str, l: Log, times: &mut Times) -> LogOut<'a> {
    let metadata = match l.extra_metadata.and_then(|m| serde_json::from_str(&m).ok()) {
        Some(extra) => Metadata::Extra(extra),
        None => Metadata::Type(l.kind),
    };
    LogOut {
        id: l.seq,
        experiment_id,
        msg_id: l.msg_id.map(|m| m.to_string()),
        name: l.name.to_string(),
        value: LogValue(l.value),
        step: l.step,
        metadata,
        created_at: times.format(l.created_at),
    }
}

/// `created_at` as RFC 3339 written into a buffer: the text up to the second is formatted once
/// per second met, the milliseconds each time.
#[derive(Default)]
struct Stamps {
    /// The second (ms / 1000) and its text up to and including the `.`.
    second: Option<(i64, String)>,
}

impl Stamps {
    fn write(&mut self, t: i64, out: &mut Vec<u8>) {
        let second = t.div_euclid(1000);
        if self.second.as_ref().is_none_or(|(s, _)| *s != second) {
            let mut text = rfc3339(second * 1000);
            // `...:09.000Z` without `000Z`.
            text.truncate(text.len() - 4);
            self.second = Some((second, text));
        }
        if let Some((_, prefix)) = &self.second {
            out.extend_from_slice(prefix.as_bytes());
        }
        let ms = t.rem_euclid(1000) as u32;
        out.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

/// A number as serde_json writes it (itoa for integers, ryu's shortest round-trip digits for
/// finite floats); writing into a Vec cannot fail.
fn number(out: &mut Vec<u8>, n: impl Serialize) {
    let _ = serde_json::to_writer(out, &n);
}

/// Logs as the JSON objects of `LogOut`, written by hand into the page's buffer: the same bytes
/// serde writes for `log_out` (a test holds the two together), without a `String` per field
/// per log. Names, the experiment id and the time's date part are escaped or formatted once.
struct JsonLogs {
    /// `,"experiment_id":"...","msg_id":`
    after_id: Vec<u8>,
    /// The last name written and its JSON string.
    name: Option<(Arc<str>, Vec<u8>)>,
    times: Stamps,
}

impl JsonLogs {
    fn new(experiment_id: &str) -> JsonLogs {
        let mut after_id = b",\"experiment_id\":".to_vec();
        let _ = serde_json::to_writer(&mut after_id, experiment_id);
        after_id.extend_from_slice(b",\"msg_id\":");
        JsonLogs {
            after_id,
            name: None,
            times: Stamps::default(),
        }
    }

    fn write(&mut self, l: &Log, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        number(out, l.seq);
        out.extend_from_slice(&self.after_id);
        match &l.msg_id {
            None => out.extend_from_slice(b"null"),
            Some(MsgId::Uuid(b)) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let text = uuid::Uuid::from_bytes(*b)
                    .hyphenated()
                    .encode_lower(&mut text);
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            }
            Some(MsgId::Text(t)) => {
                let _ = serde_json::to_writer(&mut *out, t);
            }
        }
        out.extend_from_slice(b",\"name\":");
        if self.name.as_ref().is_none_or(|(name, _)| *name != l.name) {
            let json = serde_json::to_vec(&*l.name).unwrap_or_default();
            self.name = Some((l.name.clone(), json));
        }
        if let Some((_, json)) = &self.name {
            out.extend_from_slice(json);
        }
        out.extend_from_slice(b",\"value\":");
        let v = l.value;
        if v.is_nan() {
            out.extend_from_slice(b"\"NaN\"");
        } else if v == f64::INFINITY {
            out.extend_from_slice(b"\"Infinity\"");
        } else if v == f64::NEG_INFINITY {
            out.extend_from_slice(b"\"-Infinity\"");
        } else {
            number(out, v);
        }
        out.extend_from_slice(b",\"step\":");
        match l.step {
            Some(step) => number(out, step),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"metadata\":");
        match l
            .extra_metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
        {
            Some(extra) => {
                let _ = serde_json::to_writer(&mut *out, &extra);
            }
            None => {
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(l.kind.name().as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
        out.extend_from_slice(b",\"created_at\":\"");
        self.times.write(l.created_at, out);
        out.extend_from_slice(b"\"}");
    }
}

/// A value as `{:?}` writes it (shortest round-trip digits; `NaN`, `inf`, `-inf`): what the CSV
/// export has always sent. Not ryu, though it is faster: among equally short digit strings the
/// two sometimes pick differently (887437575057898.3 against ryu's ...898.2), and a download
/// should not change its values' text between versions.
fn debug_f64(out: &mut Vec<u8>, v: f64) {
    use std::io::Write;
    let _ = write!(out, "{v:?}");
}

/// Logs as CSV rows `name,type,step,value,created_at`, written by hand: the bytes the csv
/// crate writes for the same fields (a test holds the two together). Only the name can need
/// quoting, so its field is made (spreadsheet-safe, quoted by the csv crate) once per series.
#[derive(Default)]
struct CsvLogs {
    /// The last (name, kind) written and the row's start: `name,type,`.
    series: Option<(Arc<str>, Kind, Vec<u8>)>,
    times: Stamps,
}

impl CsvLogs {
    fn write(&mut self, l: &Log, out: &mut Vec<u8>) {
        if self
            .series
            .as_ref()
            .is_none_or(|(name, kind, _)| *kind != l.kind || *name != l.name)
        {
            let mut csv = csv::Writer::from_writer(Vec::new());
            let _ =
                csv.write_record([super::spreadsheet_safe(&l.name).as_ref(), l.kind.name(), ""]);
            let mut start = csv.into_inner().unwrap_or_default();
            // The record's terminator goes; its empty last field leaves the `,` we want.
            while start.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                start.pop();
            }
            self.series = Some((l.name.clone(), l.kind, start));
        }
        if let Some((_, _, start)) = &self.series {
            out.extend_from_slice(start);
        }
        if let Some(step) = l.step {
            number(out, step);
        }
        out.push(b',');
        debug_f64(out, l.value);
        out.push(b',');
        self.times.write(l.created_at, out);
        out.push(b'\n');
    }
}

/// The walk of a JSON list: by step for `/metrics`, by id for the others.
enum Walk {
    ByStep(logs::ByStep),
    ById(logs::ById),
}

impl Pages for Walk {
    type Item = Log;

    fn next_page(&mut self, conn: &crate::sql::Connection) -> Result<Option<Vec<Log>>> {
        match self {
            Walk::ByStep(w) => w.next_page(conn),
            Walk::ById(w) => w.next_page(conn),
        }
    }

    fn finished(&self) -> bool {
        match self {
            Walk::ByStep(w) => w.finished(),
            Walk::ById(w) => w.finished(),
        }
    }
}

/// `/logs`, `/metrics`, `/results`: the usual `{"status": 200, "data": [...]}`, streamed a
/// page at a time (see [`paged`]), so a run of any size costs a page or two of memory. The
/// first page is read in the same read as the authorization (and rendered after its reader is
/// back), so an answer of one page takes one trip to the blocking pool, not three.
async fn read_logs(
    state: AppState,
    user: AuthUser,
    id: String,
    which: Selection,
) -> Result<Response> {
    const HEAD: &str = r#"{"status":200,"data":["#;
    const TAIL: &str = "]}";
    let downloads = state.downloads.clone();
    let (walk, place, render, first) = state
        .db
        .read_then(
            move |c| {
                let exp = authorize(c, &id, &user.id, Role::Viewer)?;
                let end = logs::last_seq(c, &exp)?;
                // Taken after the caller was authorized, so an outsider still gets a 404.
                let place = take_place(downloads)?;
                let exp_id = exp.id.clone();
                let mut walk = match which {
                    Selection::Metrics => Walk::ByStep(logs::ByStep::metrics(exp, end, true)),
                    _ => Walk::ById(logs::ById::new(exp, which, 0, end, true)),
                };
                let page = walk.next_page(c)?;
                Ok((walk, place, exp_id, page))
            },
            |(walk, place, exp_id, page)| {
                let mut json = JsonLogs::new(&exp_id);
                let mut first = true;
                let mut render = move |page: Vec<Log>, out: &mut Vec<u8>| {
                    // About 200 bytes a log with a msg_id and a name of a few letters.
                    out.reserve(page.len() * 200);
                    for l in &page {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        json.write(l, out);
                    }
                };
                let mut out = HEAD.as_bytes().to_vec();
                if let Some(items) = page {
                    render(items, &mut out);
                }
                (walk, place, render, out)
            },
        )
        .await?;
    let body = paged(state.db.clone(), place, walk, first, TAIL, render);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A place among the [`MAX_DOWNLOADS`] paged downloads, or a 503: taken after the caller was
/// authorized, so an outsider still gets a 404.
pub(super) fn download_place(state: &AppState) -> Result<OwnedSemaphorePermit> {
    take_place(state.downloads.clone())
}

fn take_place(downloads: Arc<Semaphore>) -> Result<OwnedSemaphorePermit> {
    downloads
        .try_acquire_owned()
        .map_err(|_| Error::Unavailable {
            message: format!(
                "{MAX_DOWNLOADS} downloads are in progress, the most at once; try again shortly"
            ),
            retry_after: 2,
        })
}

/// A response body read from the database a page at a time: `head`, each page as `render`
/// writes it, `tail`. Each page is one short [`Db::read_page_then`] (one read transaction,
/// within the query budget), rendered on the same blocking thread after its reader is back in
/// the pool; the next is read only when the server has written the last to the socket, that
/// is, when the client is taking it. A client that stalls holds no connection and no
/// transaction, only the page it has not taken; a client that leaves drops the body, which
/// ends the walk. A failure after the head cuts the response short (the status is sent).
pub(super) fn paged<P: Pages, R>(
    db: Db,
    place: OwnedSemaphorePermit,
    pages: P,
    head: impl Into<Bytes>,
    tail: &'static str,
    render: R,
) -> Body
where
    R: FnMut(Vec<P::Item>, &mut Vec<u8>) + Send + 'static,
{
    struct State<P, R> {
        db: Db,
        /// Held until the body is done or dropped.
        _place: OwnedSemaphorePermit,
        /// Both away on the blocking thread while a page is read and rendered.
        walk: Option<(P, R)>,
        head: Option<Bytes>,
        tail: Option<&'static str>,
    }
    let start = State {
        db,
        _place: place,
        // A walk already done (its only page went out with the head) takes no reader.
        walk: (!pages.finished()).then_some((pages, render)),
        head: Some(head.into()),
        tail: Some(tail),
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        if let Some(head) = st.head.take() {
            return Some((Ok(head), st));
        }
        while let Some((mut pages, mut render)) = st.walk.take() {
            let read = st
                .db
                .read_page_then(
                    move |c| {
                        let page = pages.next_page(c);
                        Ok((pages, page))
                    },
                    move |(pages, page)| {
                        let page = page.map(|items| {
                            items.map(|items| {
                                let mut out = Vec::new();
                                if !items.is_empty() {
                                    render(items, &mut out);
                                }
                                out
                            })
                        });
                        (pages, render, page)
                    },
                )
                .await;
            match read {
                Ok((pages, render, Ok(Some(mut out)))) => {
                    if pages.finished() {
                        // The last page: the tail goes with it, and no reader is taken again.
                        if let Some(tail) = st.tail.take() {
                            out.extend_from_slice(tail.as_bytes());
                        }
                    } else {
                        st.walk = Some((pages, render));
                    }
                    if out.is_empty() {
                        continue;
                    }
                    return Some((Ok(Bytes::from(out)), st));
                }
                Ok((_, _, Ok(None))) => {}
                Ok((_, _, Err(e))) | Err(e) => {
                    eprintln!("error: a paged response stopped: {e}");
                    st.tail = None;
                    return Some((Err(std::io::Error::other(e.to_string())), st));
                }
            }
        }
        let tail = st.tail.take()?;
        Some((Ok(Bytes::from_static(tail.as_bytes())), st))
    });
    Body::from_stream(stream)
}

#[utoipa::path(get, path = "/experiments/{id}/logs", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<LogOut>>), Errors))]
async fn list_logs(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    read_logs(state, user, id, Selection::All).await
}

#[utoipa::path(get, path = "/experiments/{id}/metrics", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<LogOut>>), Errors))]
async fn list_metrics(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    read_logs(state, user, id, Selection::Metrics).await
}

#[utoipa::path(get, path = "/experiments/{id}/results", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<LogOut>>), Errors))]
async fn list_results(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    read_logs(state, user, id, Selection::Results).await
}

/// Streams `name,type,step,value,created_at` rows, series after series (by kind, then name),
/// each in step order, a page at a time (see [`paged`]).
#[utoipa::path(get, path = "/experiments/{id}/logs/csv", tag = "logs", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, description = "name,type,step,value,created_at rows", content_type = "text/csv", body = String), Errors))]
async fn export_csv(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let walk = state
        .db
        .read(move |c| {
            let exp = authorize(c, &id, &user.id, Role::Viewer)?;
            let end = logs::last_seq(c, &exp)?;
            logs::BySeries::new(c, exp, end)
        })
        .await?;
    let place = download_place(&state)?;
    let filename = super::file_name(&walk.experiment().name);
    let mut rows = CsvLogs::default();
    let render = move |page: Vec<Log>, out: &mut Vec<u8>| {
        out.reserve(page.len() * 48);
        for l in &page {
            rows.write(l, out);
        }
    };
    let body = paged(
        state.db.clone(),
        place,
        walk,
        "name,type,step,value,created_at\n",
        "",
        render,
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values whose text differs most between formatters: signed zeros, the ends of the
    /// decimal range, exponents, subnormals, the extremes, NaN and the infinities.
    fn tricky_values() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            1.0 / 3.0,
            1e-4,
            9.999_999_999_999_999e-5,
            1e-5,
            1.5e-5,
            3e-5,
            1e-7,
            1e15,
            1e16,
            9_999_999_999_999_998.0,
            123_456_789_012_345.67,
            1e21,
            1e22,
            1e308,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // Random bit patterns (every exponent), and random values near the decimal range's ends.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(match i % 3 {
                0 => f64::from_bits(x),
                1 => (x >> 11) as f64 / (1u64 << 53) as f64 * 2e-4,
                _ => (x >> 11) as f64 * (1e16 / (1u64 << 53) as f64) * 1.5,
            });
        }
        v
    }

    fn log(seq: i64, name: &str, kind: Kind, step: Option<i64>, value: f64) -> Log {
        Log {
            seq,
            msg_id: None,
            name: name.into(),
            kind,
            step,
            value,
            extra_metadata: None,
            created_at: 1_764_000_000_000 + seq * 7,
        }
    }

    /// Logs of every shape a page holds: kinds, names that need escaping or quoting or start
    /// like a formula, msg_ids of both kinds, metadata, times across seconds, days and years.
    fn logs() -> Vec<Log> {
        let mut logs = Vec::new();
        let names = [
            "loss",
            "a \"quoted\", name",
            "=1+1",
            "ünï\tcode\n",
            "-x",
            "x",
        ];
        for (i, v) in tricky_values().into_iter().take(20_000).enumerate() {
            let i = i as i64;
            let name = names[(i / 3 % names.len() as i64) as usize];
            let kind = if i % 11 == 0 {
                Kind::Result
            } else {
                Kind::Metric
            };
            let step = (kind == Kind::Metric).then_some(i * 1_000_003);
            let mut l = log(i + 1, name, kind, step, v);
            l.msg_id = match i % 4 {
                0 => None,
                1 => Some(MsgId::random()),
                2 => Some(MsgId::Text(format!("client \"{i}\"\\é"))),
                _ => Some(MsgId::parse("6f1c1f0e-8b3a-4c59-9d1e-1a2b3c4d5e6f")),
            };
            if i % 13 == 0 {
                l.extra_metadata = Some(format!(r#"{{"type":"result","z":1,"a":[{i}]}}"#));
            }
            l.created_at = match i % 5 {
                0 => i * 999,
                1 => 1_764_000_000_000 + i * 123_457,
                2 => 253_402_300_799_000 - i,
                _ => 1_764_000_000_000 + i / 50,
            };
            logs.push(l);
        }
        logs
    }

    #[test]
    fn hand_written_json_is_what_serde_writes() {
        let exp = "0b6a0c6e-3c2c-4a3e-9c57-3f1f5f5e2a10";
        let mut json = JsonLogs::new(exp);
        let mut times = Times::default();
        for l in logs() {
            let mut fast = Vec::new();
            json.write(&l, &mut fast);
            let expected = serde_json::to_string(&log_out(exp, l.clone(), &mut times)).unwrap();
            assert_eq!(String::from_utf8(fast).unwrap(), expected, "{l:?}");
        }
    }

    #[test]
    fn hand_written_csv_is_what_the_csv_crate_writes() {
        let mut rows = CsvLogs::default();
        let mut times = Times::default();
        for l in logs() {
            let mut fast = Vec::new();
            rows.write(&l, &mut fast);
            let mut csv = csv::Writer::from_writer(Vec::new());
            let step = l.step.map(|s| s.to_string()).unwrap_or_default();
            csv.write_record([
                super::super::spreadsheet_safe(&l.name).as_ref(),
                l.kind.name(),
                &step,
                &format!("{:?}", l.value),
                &times.format(l.created_at),
            ])
            .unwrap();
            let expected = csv.into_inner().unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{l:?}"
            );
        }
    }
}
