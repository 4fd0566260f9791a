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
use tokio::sync::OwnedSemaphorePermit;
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
    Box<dyn FnOnce(&rusqlite::Transaction, &Experiment) -> Result<()> + Send + 'static>;

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

fn log_out<'a>(experiment_id: &'a str, l: Log, times: &mut Times) -> LogOut<'a> {
    let metadata = match l.extra_metadata.and_then(|m| serde_json::from_str(&m).ok()) {
        Some(extra) => Metadata::Extra(extra),
        None => Metadata::Type(l.kind),
    };
    LogOut {
        id: l.seq,
        experiment_id,
        msg_id: l.msg_id.map(|m| m.to_string()),
        name: l.name,
        value: LogValue(l.value),
        step: l.step,
        metadata,
        created_at: times.format(l.created_at),
    }
}

/// `/logs`, `/metrics`, `/results`: the usual `{"status": 200, "data": [...]}`, streamed a
/// page at a time (see [`paged`]), so a run of any size costs a page or two of memory.
async fn read_logs(
    state: AppState,
    user: AuthUser,
    id: String,
    which: Selection,
) -> Result<Response> {
    let (exp, end) = state
        .db
        .read(move |c| {
            let exp = authorize(c, &id, &user.id, Role::Viewer)?;
            let end = logs::last_seq(c, &exp)?;
            Ok((exp, end))
        })
        .await?;
    let place = download_place(&state)?;
    let exp_id = exp.id.clone();
    let mut first = true;
    let mut times = Times::default();
    let render = move |page: Vec<Log>, out: &mut Vec<u8>| {
        for l in page {
            if !first {
                out.push(b',');
            }
            first = false;
            // Serializing plain structs and strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &log_out(&exp_id, l, &mut times));
        }
    };
    const HEAD: &str = r#"{"status":200,"data":["#;
    const TAIL: &str = "]}";
    let body = match which {
        Selection::Metrics => paged(
            state.db.clone(),
            place,
            logs::ByStep::metrics(exp, end, true),
            HEAD,
            TAIL,
            render,
        ),
        _ => paged(
            state.db.clone(),
            place,
            logs::ById::new(exp, which, 0, end, true),
            HEAD,
            TAIL,
            render,
        ),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A place among the [`MAX_DOWNLOADS`] paged downloads, or a 503: taken after the caller was
/// authorized, so an outsider still gets a 404.
pub(super) fn download_place(state: &AppState) -> Result<OwnedSemaphorePermit> {
    state
        .downloads
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::Unavailable {
            message: format!(
                "{MAX_DOWNLOADS} downloads are in progress, the most at once; try again shortly"
            ),
            retry_after: 2,
        })
}

/// A response body read from the database a page at a time: `head`, each page as `render`
/// writes it, `tail`. Each page is one short [`Db::read`] (one read transaction, within the
/// query budget); the next is read only when the server has written the last to the socket,
/// that is, when the client is taking it. A client that stalls holds no connection and no
/// transaction, only the page it has not taken; a client that leaves drops the body, which
/// ends the walk. A failure after the head cuts the response short (the status is sent).
pub(super) fn paged<P: Pages>(
    db: Db,
    place: OwnedSemaphorePermit,
    pages: P,
    head: impl Into<Bytes>,
    tail: &'static str,
    render: impl FnMut(Vec<P::Item>, &mut Vec<u8>) + Send + 'static,
) -> Body {
    struct State<P, R> {
        db: Db,
        /// Held until the body is done or dropped.
        _place: OwnedSemaphorePermit,
        pages: Option<P>,
        render: R,
        head: Option<Bytes>,
        tail: Option<&'static str>,
    }
    let start = State {
        db,
        _place: place,
        pages: Some(pages),
        render,
        head: Some(head.into()),
        tail: Some(tail),
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        if let Some(head) = st.head.take() {
            return Some((Ok(head), st));
        }
        while let Some(mut pages) = st.pages.take() {
            let read = st
                .db
                .read_page(move |c| {
                    let page = pages.next_page(c);
                    Ok((pages, page))
                })
                .await;
            match read {
                Ok((pages, Ok(Some(items)))) => {
                    st.pages = Some(pages);
                    if items.is_empty() {
                        continue;
                    }
                    let mut out = Vec::new();
                    (st.render)(items, &mut out);
                    return Some((Ok(Bytes::from(out)), st));
                }
                Ok((_, Ok(None))) => {}
                Ok((_, Err(e))) | Err(e) => {
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
    let mut times = Times::default();
    let render = move |page: Vec<Log>, out: &mut Vec<u8>| {
        let mut csv = csv::Writer::from_writer(out);
        for row in page {
            let step = row.step.map(|s| s.to_string()).unwrap_or_default();
            // Debug formatting: shortest round-trip digits, and NaN / inf / -inf.
            let value = format!("{:?}", row.value);
            // Writing to a Vec cannot fail.
            let _ = csv.write_record([
                super::spreadsheet_safe(&row.name).as_ref(),
                row.kind.name(),
                &step,
                &value,
                &times.format(row.created_at),
            ]);
        }
        let _ = csv.flush();
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
