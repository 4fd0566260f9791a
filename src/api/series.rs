//! Chart data: downsampled series of one or many experiments, and per-experiment summaries,
//! all answered from what ingest keeps (summaries, blocks) rather than by scanning points.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::authorize;
use super::logs::LogValue;
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Path, Query, Reply, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::experiments::{self, Experiment};
use crate::store::logs::Kind;
use crate::store::series::{self, Axis, Series};
use crate::store::summaries;
use crate::store::workspaces::Role;
use crate::time::rfc3339;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_series))
        .routes(routes!(get_summary))
        .routes(routes!(compare_series))
}

const DEFAULT_POINTS: usize = 1000;
const MAX_POINTS: usize = 10_000;
const MAX_EXPERIMENTS: usize = 200;
/// The most buckets one request may ask for: series answered × `points`. A reply at the cap is
/// ~15 MB of JSON and ~26 MiB of memory while built (tests/memory_bounds.rs), so even eight at
/// once (every database reader) stay near 200 MiB. The compare page asks 300 a run (60,000 for
/// 200 runs) and 200 runs at the default 1000 are 200,000; a run with thousands of metrics has
/// to name the ones it wants, or ask for fewer points.
pub const MAX_BUCKETS: usize = 250_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SeriesQuery {
    /// Comma-separated metric names; default every metric.
    names: Option<String>,
    /// The most buckets per series (default 1000, at most 10000).
    points: Option<usize>,
    /// Inclusive start of the x range.
    from: Option<i64>,
    /// Inclusive end of the x range.
    to: Option<i64>,
    /// `step` (default) or `time` (ms since the unix epoch).
    x: Option<String>,
    /// For /api/series: comma-separated experiment ids.
    experiments: Option<String>,
    /// `json` (default) or `binary`: the same answer as little-endian columns (see the 200
    /// response's `application/octet-stream` content).
    format: Option<String>,
}

struct Request {
    /// A set: a name listed twice is answered once.
    names: Option<HashSet<String>>,
    points: usize,
    from: Option<i64>,
    to: Option<i64>,
    axis: Axis,
    binary: bool,
}

impl SeriesQuery {
    fn parse(&self) -> Result<Request> {
        let axis = match self.x.as_deref().unwrap_or("step") {
            "step" => Axis::Step,
            "time" => Axis::Time,
            other => {
                return Err(Error::bad_request(format!(
                    "x must be 'step' or 'time', not '{other}'"
                )));
            }
        };
        let binary = match self.format.as_deref().unwrap_or("json") {
            "json" => false,
            "binary" => true,
            other => {
                return Err(Error::bad_request(format!(
                    "format must be 'json' or 'binary', not '{other}'"
                )));
            }
        };
        let points = self.points.unwrap_or(DEFAULT_POINTS);
        if points == 0 || points > MAX_POINTS {
            return Err(Error::bad_request(format!(
                "points must be between 1 and {MAX_POINTS}"
            )));
        }
        let names = self.names.as_deref().map(|n| {
            n.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        });
        Ok(Request {
            names,
            points,
            from: self.from,
            to: self.to,
            axis,
            binary,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct SeriesOut {
    name: String,
    /// Points of this series in the range.
    total: i64,
    /// One entry per point (the range held no more points than asked for, and no step twice).
    raw: bool,
    /// The x of each bucket's last point.
    x: Vec<i64>,
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
    /// The last finite value of each bucket.
    last: Vec<Option<f64>>,
    count: Vec<i64>,
    /// How many of each bucket's points were NaN or +-Inf.
    nonfinite: Vec<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ExperimentSeries {
    experiment_id: String,
    /// "step" or "time"
    x: &'static str,
    series: Vec<SeriesOut>,
}

/// The metric series of `exp` that `req` asks for.
fn wanted(conn: &crate::sql::Connection, exp: &Experiment, req: &Request) -> Result<Vec<Series>> {
    let mut all = series::list(conn, exp.rowid)?;
    all.retain(|s| {
        s.kind == Kind::Metric
            && req
                .names
                .as_ref()
                .is_none_or(|names| names.contains(&s.name))
    });
    Ok(all)
}

/// Plans the answer for `runs` (series by run) and refuses it, before any point is read, once
/// the series found so far times `points` pass [`MAX_BUCKETS`].
fn plan(
    conn: &crate::sql::Connection,
    runs: Vec<Experiment>,
    req: &Request,
) -> Result<Vec<(Experiment, Vec<Series>)>> {
    let mut answered = 0;
    let mut out = Vec::with_capacity(runs.len());
    for exp in runs {
        let wanted = wanted(conn, &exp, req)?;
        answered += wanted.len();
        within_cap(answered, req.points)?;
        out.push((exp, wanted));
    }
    Ok(out)
}

fn within_cap(series: usize, points: usize) -> Result<()> {
    if series.saturating_mul(points) <= MAX_BUCKETS {
        return Ok(());
    }
    let fit = MAX_BUCKETS / series;
    let instead = if fit == 0 {
        "name fewer metrics in names=".to_string()
    } else {
        format!("name fewer metrics in names=, ask for fewer runs, or ask for points={fit} or less")
    };
    Err(Error::bad_request(format!(
        "this asks for at least {series} series × {points} points, over the {MAX_BUCKETS} buckets one request may have; {instead}"
    )))
}

fn bucket_experiment(
    conn: &crate::sql::Connection,
    exp: &Experiment,
    wanted: &[Series],
    req: &Request,
) -> Result<ExperimentSeries> {
    let mut out = Vec::with_capacity(wanted.len());
    for s in wanted {
        let b = series::downsample(conn, exp, s, req.axis, req.from, req.to, req.points)?;
        out.push(SeriesOut {
            name: s.name.clone(),
            total: b.total,
            raw: b.raw,
            x: b.x,
            min: b.min,
            max: b.max,
            last: b.last,
            count: b.count,
            nonfinite: b.nonfinite,
        });
    }
    Ok(ExperimentSeries {
        experiment_id: exp.id.clone(),
        x: if req.axis == Axis::Step {
            "step"
        } else {
            "time"
        },
        series: out,
    })
}

/// An answer in `format=binary`: `TSB1`, the header's length (u32), the header (JSON: the
/// experiments and series with `n`, their bucket counts, instead of the columns), zero bytes up
/// to a multiple of 8, then each series' six columns of `n` little-endian f64 in header order:
/// x, min, max, last, count, nonfinite (NaN where JSON has null). A client can view the
/// columns as Float64Arrays without copying or parsing numbers.
const BINARY_DOC: &str = "format=binary: the bytes `TSB1`, a u32 (little-endian) header length H, H bytes of JSON     header ([{experiment_id, x, series: [{name, total, raw, n}]}], the JSON answer without its columns, n the     bucket count), zero bytes up to the next multiple of 8, then for each series in header order six     columns of n little-endian f64: x, min, max, last, count, nonfinite; NaN where the JSON answer has null.";

fn binary(runs: &[ExperimentSeries]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Head<'a> {
        name: &'a str,
        total: i64,
        raw: bool,
        n: usize,
    }
    #[derive(Serialize)]
    struct Run<'a> {
        experiment_id: &'a str,
        x: &'a str,
        series: Vec<Head<'a>>,
    }
    let head: Vec<Run> = runs
        .iter()
        .map(|r| Run {
            experiment_id: &r.experiment_id,
            x: r.x,
            series: r
                .series
                .iter()
                .map(|s| Head {
                    name: &s.name,
                    total: s.total,
                    raw: s.raw,
                    n: s.x.len(),
                })
                .collect(),
        })
        .collect();
    let head = serde_json::to_vec(&head).expect("plain data serializes");
    let buckets: usize = runs.iter().flat_map(|r| &r.series).map(|s| s.x.len()).sum();
    let start = (8 + head.len()).div_ceil(8) * 8;
    let mut out = Vec::with_capacity(start + buckets * 48);
    out.extend_from_slice(b"TSB1");
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.resize(start, 0);
    let opt = |v: &Option<f64>| v.unwrap_or(f64::NAN).to_le_bytes();
    for s in runs.iter().flat_map(|r| &r.series) {
        out.extend(s.x.iter().flat_map(|&v| (v as f64).to_le_bytes()));
        out.extend(s.min.iter().flat_map(opt));
        out.extend(s.max.iter().flat_map(opt));
        out.extend(s.last.iter().flat_map(opt));
        out.extend(s.count.iter().flat_map(|&v| (v as f64).to_le_bytes()));
        out.extend(s.nonfinite.iter().flat_map(|&v| (v as f64).to_le_bytes()));
    }
    out
}

/// The answer in the format asked for: the JSON envelope, or [`binary`]'s bytes.
enum Answer<T> {
    Json(T),
    Binary(Vec<u8>),
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match self {
            Answer::Json(data) => ok(data).into_response(),
            Answer::Binary(bytes) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
            }
        }
    }
}

/// Downsampled metric series of one experiment: at most `points` buckets each.
#[utoipa::path(get, path = "/experiments/{id}/series", tag = "charts", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), SeriesQuery),
    responses((status = 200, description = BINARY_DOC, content(
        (Envelope<ExperimentSeries> = "application/json"),
        (Vec<u8> = "application/octet-stream"))), Errors))]
async fn get_series(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Answer<ExperimentSeries>> {
    let req = q.parse()?;
    state
        .db
        .read(move |c| {
            let exp = authorize(c, &id, &user.id, Role::Viewer)?;
            let wanted = wanted(c, &exp, &req)?;
            within_cap(wanted.len(), req.points)?;
            let out = bucket_experiment(c, &exp, &wanted, &req)?;
            Ok(if req.binary {
                Answer::Binary(binary(std::slice::from_ref(&out)))
            } else {
                Answer::Json(out)
            })
        })
        .await
}

/// The same for many experiments in one request (comparisons): those the caller may not see
/// are left out.
#[utoipa::path(get, path = "/series", tag = "charts", security(("api_key" = []), ("bearer" = [])),
    params(SeriesQuery),
    responses((status = 200, description = BINARY_DOC, content(
        (Envelope<Vec<ExperimentSeries>> = "application/json"),
        (Vec<u8> = "application/octet-stream"))), Errors))]
async fn compare_series(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<SeriesQuery>,
) -> Result<Answer<Vec<ExperimentSeries>>> {
    let req = q.parse()?;
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for raw in q.experiments.as_deref().unwrap_or("").split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        // A run listed twice is answered once: the reply's size follows the runs, not the ids.
        let id = parse_id(raw, "experiment")?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    if ids.is_empty() || ids.len() > MAX_EXPERIMENTS {
        return Err(Error::bad_request(format!(
            "experiments must list 1 to {MAX_EXPERIMENTS} ids"
        )));
    }
    state
        .db
        .read(move |c| {
            let visible = experiments::visible_among(c, &user.id, &ids)?;
            let out = plan(c, visible, &req)?
                .iter()
                .map(|(exp, wanted)| bucket_experiment(c, exp, wanted, &req))
                .collect::<Result<Vec<_>>>()?;
            Ok(if req.binary {
                Answer::Binary(binary(&out))
            } else {
                Answer::Json(out)
            })
        })
        .await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MetricSummary {
    name: String,
    count: i64,
    first_step: Option<i64>,
    last_step: Option<i64>,
    /// The value at the highest step.
    last: Option<LogValue>,
    /// Over finite values.
    min: Option<f64>,
    max: Option<f64>,
    nonfinite: i64,
    updated_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResultSummary {
    name: String,
    /// The latest value.
    value: Option<LogValue>,
    updated_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Summary {
    experiment_id: String,
    /// This page's metrics, by name.
    metrics: Vec<MetricSummary>,
    /// This page's results, by name (they come after every metric).
    results: Vec<ResultSummary>,
    /// Pass as `cursor` for the next page; null on the last (always, for a run with no more
    /// than `limit` metrics and results together).
    next: Option<String>,
    /// How many metrics and results match `prefix` and `search`, over all pages.
    metrics_total: i64,
    results_total: i64,
}

pub fn summarize(experiment_id: &str, all: Vec<Series>) -> Summary {
    let mut summary = Summary {
        experiment_id: experiment_id.to_string(),
        metrics: Vec::new(),
        results: Vec::new(),
        next: None,
        metrics_total: 0,
        results_total: 0,
    };
    for s in all {
        let updated_at = s.updated_at.map(rfc3339);
        match s.kind {
            Kind::Metric => summary.metrics.push(MetricSummary {
                name: s.name,
                count: s.count,
                first_step: s.first_step,
                last_step: s.last_step,
                last: s.last_value.map(LogValue),
                min: s.min_value,
                max: s.max_value,
                nonfinite: s.nonfinite,
                updated_at,
            }),
            Kind::Result => summary.results.push(ResultSummary {
                name: s.name,
                value: s.last_value.map(LogValue),
                updated_at,
            }),
        }
    }
    summary.metrics_total = summary.metrics.len() as i64;
    summary.results_total = summary.results.len() as i64;
    summary
}

/// Series a `/summary` page holds when the request names no `limit`, and the most it may name:
/// every metric and result of an ordinary run in one answer (~2 MB of JSON at the cap).
pub const MAX_SUMMARY_PAGE: usize = 10_000;
/// The longest `prefix` or `search`: a metric name's own limit.
const MAX_SUMMARY_NEEDLE: usize = 255;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SummaryQuery {
    /// Metrics and results per page, together (1 to 10000; default 10000).
    limit: Option<usize>,
    /// `next` of the previous page.
    cursor: Option<String>,
    /// Only names starting with this (case matters), e.g. `train/`.
    prefix: Option<String>,
    /// Only names containing this, ASCII case ignored.
    search: Option<String>,
}

/// A `/summary` cursor: hex of `KIND:NAME` (0 metric, 1 result), opaque to clients.
fn encode_after(a: &summaries::After) -> String {
    format!("{}:{}", a.kind as i64, a.name)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_after(raw: &str) -> Option<summaries::After> {
    // Hex of "K:" and a name of at most 255 characters of up to 4 bytes each.
    if !raw.len().is_multiple_of(2) || raw.len() > 2 * (2 + 4 * MAX_SUMMARY_NEEDLE) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..raw.len())
        .step_by(2)
        .map(|i| {
            raw.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (kind, name) = text.split_once(':')?;
    let kind = match kind {
        "0" => Kind::Metric,
        "1" => Kind::Result,
        _ => return None,
    };
    Some(summaries::After {
        kind,
        name: name.to_string(),
    })
}

fn needle(raw: Option<String>, what: &str) -> Result<Option<String>> {
    match raw {
        Some(n) if n.chars().count() > MAX_SUMMARY_NEEDLE => Err(Error::bad_request(format!(
            "{what} must be at most {MAX_SUMMARY_NEEDLE} characters"
        ))),
        Some(n) if n.is_empty() => Ok(None),
        n => Ok(n),
    }
}

/// Metrics with count, first and last step, last value, min and max, then results; kept
/// current at ingest, so this never scans the points. Paged by name (`limit`, `cursor`),
/// narrowed by `prefix` and `search`.
#[utoipa::path(get, path = "/experiments/{id}/summary", tag = "charts", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), SummaryQuery), responses((status = 200, body = Envelope<Summary>), Errors))]
async fn get_summary(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<SummaryQuery>,
) -> Result<Reply<Summary>> {
    let limit = q.limit.unwrap_or(MAX_SUMMARY_PAGE);
    if limit == 0 || limit > MAX_SUMMARY_PAGE {
        return Err(Error::bad_request(format!(
            "limit must be between 1 and {MAX_SUMMARY_PAGE}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            decode_after(c)
                .ok_or_else(|| Error::bad_request("cursor is not one this server gave out"))
        })
        .transpose()?;
    let names = summaries::Names {
        prefix: needle(q.prefix, "prefix")?,
        search: needle(q.search, "search")?,
    };
    let out = state
        .db
        .read(move |c| {
            let exp = authorize(c, &id, &user.id, Role::Viewer)?;
            let page = summaries::page(c, exp.rowid, &names, after.as_ref(), limit)?;
            let mut out = summarize(&exp.id, page.series);
            out.next = page.next.as_ref().map(encode_after);
            out.metrics_total = page.metrics_total;
            out.results_total = page.results_total;
            Ok(out)
        })
        .await?;
    Ok(ok(out))
}
