//! Runs in groups: grouped charts (`/series/groups`: each group's mean line with its min–max
//! and ±1 std bands, aggregated here over step-aligned buckets) and the run table's group rows
//! (counts and aggregate columns, and the rows of a group opened).

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::{ExperimentOut, SUMMARY_PER_KIND, run_summary};
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::series::MAX_BUCKETS;
use super::{Path, Query, Reply, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::query;
use crate::server::AppState;
use crate::store::experiments::{self, Experiment};
use crate::store::groups::{self, Column, Key, Request};
use crate::store::series::Axis;
use crate::store::summaries;
use crate::store::workspaces::{Role, require_role};
use crate::time::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(series_groups))
        .routes(routes!(table_groups))
        .routes(routes!(table_rows))
}

/// Runs one grouped request may take from a workspace's filter.
pub const MAX_GROUP_RUNS: usize = 10_000;
/// Runs named one by one (`experiments=`), as `/api/series`.
const MAX_EXPERIMENTS: usize = 200;
/// Groups one grouped chart may draw; past it the request is refused (a key with fewer
/// values, or a narrower filter), since fifty bands are already past reading.
pub const MAX_CHART_GROUPS: usize = 50;
/// Group rows one run table answer may have.
pub const MAX_TABLE_GROUPS: usize = 1_000;
/// Metric names one grouped chart may ask for.
pub const MAX_NAMES: usize = 20;
/// Runs × names × points one grouped chart may cost: every run's series is read over the
/// whole range, so this bounds the work as [`MAX_BUCKETS`] bounds the answer.
pub const MAX_GROUP_CELLS: usize = 10_000_000;
/// Aggregate columns one run table answer may have.
pub const MAX_COLUMNS: usize = 100;
/// Rows of a group opened one request may read.
const MAX_ROWS: usize = 500;
const DEFAULT_POINTS: usize = 1000;
const MAX_POINTS: usize = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupsQuery {
    /// `group`, `tags` (a run's sorted tag set) or `hp.NAME` (a hyperparameter).
    by: String,
    /// Comma-separated metric names (1 to 20).
    names: Option<String>,
    /// The most buckets per group and metric (default 1000, at most 10000).
    points: Option<usize>,
    /// `step` (default) or `time` (ms since the unix epoch).
    x: Option<String>,
    /// Inclusive start of the x range (default: the series' first x).
    from: Option<i64>,
    /// Inclusive end of the x range (default: the series' last x).
    to: Option<i64>,
    /// Comma-separated experiment ids (at most 200); those the caller may not see are left
    /// out. Either this or `workspace`.
    experiments: Option<String>,
    /// Every run of this workspace that matches `filter` (at most 10,000).
    workspace: Option<String>,
    /// A filter in the run table's query language (with `workspace`).
    filter: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupSeriesOut {
    name: String,
    /// The last x of each bucket (its end; the range's end for the last one). Buckets are
    /// the same for every group of an answer; those where no run of the group has a point are
    /// left out.
    x: Vec<i64>,
    /// Mean of the runs' values in the bucket, each run's value being its line's (its last
    /// finite value there).
    mean: Vec<Option<f64>>,
    /// Population standard deviation of the same values.
    std: Vec<Option<f64>>,
    /// Least and greatest finite value of any run in the bucket.
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
    /// Runs with a finite value in the bucket.
    runs: Vec<i64>,
    /// NaN and ±Inf points in the bucket, over the group's runs (never in mean, std, min, max).
    nonfinite: Vec<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupOut {
    /// The runs' value for the key: a JSON value, a sorted array of tags, or null for the
    /// runs without one.
    key: Value,
    label: String,
    /// Runs in the group.
    runs: usize,
    experiment_ids: Vec<String>,
    series: Vec<GroupSeriesOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupedSeries {
    by: String,
    /// "step" or "time"
    x: &'static str,
    groups: Vec<GroupOut>,
}

fn ids_of(raw: &str) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for raw in raw.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let id = parse_id(raw, "experiment")?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The runs of `workspace` matching `filter` (the caller must be a member), newest first,
/// refused past [`MAX_GROUP_RUNS`].
fn filtered_runs(
    c: &crate::sql::Connection,
    workspace: &str,
    user_id: &str,
    filter: Option<&str>,
    sort: &query::Sort,
) -> Result<Vec<Experiment>> {
    require_role(c, workspace, user_id, Role::Viewer)?;
    // Parsed only once the caller may read the workspace, as the run table's list does.
    let filter = filter
        .filter(|f| !f.trim().is_empty())
        .map(query::parse)
        .transpose()?;
    let page = experiments::page(
        c,
        workspace,
        filter.as_ref(),
        sort,
        Some(MAX_GROUP_RUNS),
        None,
        now_ms(),
    )?;
    if page.total > MAX_GROUP_RUNS as i64 {
        return Err(Error::bad_request(format!(
            "{} runs match; groups take at most {MAX_GROUP_RUNS}: narrow the filter",
            page.total
        )));
    }
    Ok(page.experiments)
}

/// Each group's mean, std, min and max of each metric over step-aligned buckets: one grid of
/// buckets for every run of the request, each run contributing its line's value in a bucket
/// (its last finite one) to mean and std, and its finite extremes to min and max.
#[utoipa::path(get, path = "/series/groups", tag = "charts", security(("api_key" = []), ("bearer" = [])),
    params(GroupsQuery), responses((status = 200, body = Envelope<GroupedSeries>), Errors))]
async fn series_groups(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<GroupsQuery>,
) -> Result<Reply<GroupedSeries>> {
    let key = Key::parse(&q.by)?;
    let axis = match q.x.as_deref().unwrap_or("step") {
        "step" => Axis::Step,
        "time" => Axis::Time,
        other => {
            return Err(Error::bad_request(format!(
                "x must be 'step' or 'time', not '{other}'"
            )));
        }
    };
    let points = q.points.unwrap_or(DEFAULT_POINTS);
    if points == 0 || points > MAX_POINTS {
        return Err(Error::bad_request(format!(
            "points must be between 1 and {MAX_POINTS}"
        )));
    }
    let mut names: Vec<String> = Vec::new();
    for n in q.names.as_deref().unwrap_or("").split(',') {
        let n = n.trim();
        if !n.is_empty() && !names.iter().any(|m| m == n) {
            names.push(n.to_string());
            // One past the cap is enough to refuse: the check above is linear in what is kept.
            if names.len() > MAX_NAMES {
                break;
            }
        }
    }
    if names.is_empty() || names.len() > MAX_NAMES {
        return Err(Error::bad_request(format!(
            "names must list 1 to {MAX_NAMES} metric names"
        )));
    }
    enum Source {
        Ids(Vec<String>),
        Workspace(String, Option<String>),
    }
    let source = match (&q.experiments, &q.workspace) {
        (Some(raw), None) => {
            let ids = ids_of(raw)?;
            if ids.is_empty() || ids.len() > MAX_EXPERIMENTS {
                return Err(Error::bad_request(format!(
                    "experiments must list 1 to {MAX_EXPERIMENTS} ids"
                )));
            }
            Source::Ids(ids)
        }
        (None, Some(ws)) => Source::Workspace(parse_id(ws, "workspace")?, q.filter.clone()),
        _ => {
            return Err(Error::bad_request(
                "name the runs with either experiments=ID,ID,... or workspace=ID (and filter=)",
            ));
        }
    };
    let req = Request {
        names,
        axis,
        from: q.from,
        to: q.to,
        points,
    };
    let by = key.name();
    let out = state
        .db
        .read(move |c| {
            let runs = match source {
                Source::Ids(ids) => experiments::visible_among(c, &user.id, &ids)?,
                Source::Workspace(ws, filter) => filtered_runs(
                    c,
                    &ws,
                    &user.id,
                    filter.as_deref(),
                    &query::parse_sort("-created")?,
                )?,
            };
            let groups = groups::partition(&runs, &key);
            if groups.len() > MAX_CHART_GROUPS {
                return Err(Error::bad_request(format!(
                    "grouping these runs by {} makes {} groups, over the {MAX_CHART_GROUPS} one chart may draw: group by a key with fewer values or narrow the filter",
                    key.name(),
                    groups.len()
                )));
            }
            let n = req.names.len();
            let answered = groups.len().saturating_mul(n).saturating_mul(req.points);
            if answered > MAX_BUCKETS {
                return Err(Error::bad_request(format!(
                    "{} groups × {n} metrics × {} points is over the {MAX_BUCKETS} buckets one answer may have: ask for points={} or less, or fewer metrics",
                    groups.len(),
                    req.points,
                    (MAX_BUCKETS / groups.len().max(1) / n).max(1)
                )));
            }
            let cells = runs.len().saturating_mul(n).saturating_mul(req.points);
            if cells > MAX_GROUP_CELLS {
                return Err(Error::bad_request(format!(
                    "{} runs × {n} metrics × {} points is over the {MAX_GROUP_CELLS} one grouped chart may cost: ask for fewer points, fewer metrics or fewer runs",
                    runs.len(),
                    req.points
                )));
            }
            let found = groups::series_of(c, &runs, &req.names)?;
            let aggregates = groups::aggregate(c, &runs, &found, &groups, &req)?;
            let groups = groups
                .into_iter()
                .zip(aggregates)
                .map(|(g, series)| GroupOut {
                    label: key.label(&g.key),
                    runs: g.members.len(),
                    experiment_ids: g.members.iter().map(|&i| runs[i].id.clone()).collect(),
                    key: g.key,
                    series: series
                        .into_iter()
                        .map(|a| GroupSeriesOut {
                            name: a.name,
                            x: a.x,
                            mean: a.mean,
                            std: a.std,
                            min: a.min,
                            max: a.max,
                            runs: a.runs,
                            nonfinite: a.nonfinite,
                        })
                        .collect(),
                })
                .collect();
            Ok(groups)
        })
        .await?;
    Ok(ok(GroupedSeries {
        by,
        x: if axis == Axis::Step { "step" } else { "time" },
        groups: out,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TableGroupsQuery {
    /// `group`, `tags` or `hp.NAME`.
    by: String,
    /// The run table's filter.
    q: Option<String>,
    /// The run table's sort (as its list): the order of each group's `experiment_ids`.
    sort: Option<String>,
    /// Comma-separated columns to aggregate (at most 100): `hp.KEY`, `result.NAME`,
    /// `metric.NAME` (its last value).
    cols: Option<String>,
}

/// Count, mean, min and max of a column's finite numbers among a group's runs.
#[derive(Serialize, utoipa::ToSchema)]
struct StatOut {
    /// Runs with a finite number in the column.
    count: i64,
    mean: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TableGroupOut {
    key: Value,
    label: String,
    runs: usize,
    /// The group's runs in the table's sort order.
    experiment_ids: Vec<String>,
    /// Column → its aggregate.
    columns: BTreeMap<String, StatOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TableGroups {
    by: String,
    /// Runs matching the filter, all groups together.
    total: usize,
    groups: Vec<TableGroupOut>,
}

/// The run table grouped: every run matching the filter (at most 10,000) in groups by `by`,
/// each with its count, its runs' ids and the aggregates of the columns asked for.
#[utoipa::path(get, path = "/workspaces/{id}/experiments/groups", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), TableGroupsQuery), responses((status = 200, body = Envelope<TableGroups>), Errors))]
async fn table_groups(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<TableGroupsQuery>,
) -> Result<Reply<TableGroups>> {
    let workspace = parse_id(&id, "workspace")?;
    let key = Key::parse(&q.by)?;
    let sort = query::parse_sort(q.sort.as_deref().unwrap_or("-created"))?;
    let mut cols: Vec<(String, Column)> = Vec::new();
    for raw in q.cols.as_deref().unwrap_or("").split(',') {
        let raw = raw.trim();
        if raw.is_empty() || cols.iter().any(|(c, _)| c == raw) {
            continue;
        }
        // Refused as soon as it is past the cap: the dedup check above is linear in what is kept.
        if cols.len() == MAX_COLUMNS {
            return Err(Error::bad_request(format!(
                "cols may name at most {MAX_COLUMNS} columns"
            )));
        }
        cols.push((raw.to_string(), Column::parse(raw)?));
    }
    let by = key.name();
    let out = state
        .db
        .read(move |c| {
            let runs = filtered_runs(c, &workspace, &user.id, q.q.as_deref(), &sort)?;
            let groups = groups::partition(&runs, &key);
            if groups.len() > MAX_TABLE_GROUPS {
                return Err(Error::bad_request(format!(
                    "grouping these runs by {} makes {} groups, over the {MAX_TABLE_GROUPS} a table may show: group by a key with fewer values or narrow the filter",
                    key.name(),
                    groups.len()
                )));
            }
            let values = cols
                .iter()
                .map(|(_, col)| groups::column_values(c, &runs, col))
                .collect::<Result<Vec<_>>>()?;
            let total = runs.len();
            let groups = groups
                .into_iter()
                .map(|g| TableGroupOut {
                    label: key.label(&g.key),
                    runs: g.members.len(),
                    experiment_ids: g.members.iter().map(|&i| runs[i].id.clone()).collect(),
                    columns: cols
                        .iter()
                        .zip(&values)
                        .map(|((name, _), v)| {
                            let s = groups::stat(v, &g.members);
                            (
                                name.clone(),
                                StatOut {
                                    count: s.count,
                                    mean: s.mean,
                                    min: s.min,
                                    max: s.max,
                                },
                            )
                        })
                        .collect(),
                    key: g.key,
                })
                .collect();
            Ok((total, groups))
        })
        .await?;
    Ok(ok(TableGroups {
        by,
        total: out.0,
        groups: out.1,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RowsQuery {
    /// Comma-separated experiment ids of this workspace (at most 500), e.g. a page of a
    /// group's `experiment_ids`.
    ids: String,
}

/// Runs of a workspace as the run table shows them (with their summaries), in the order
/// asked: the rows of a group opened. Ids of other workspaces, or unknown, are left out.
#[utoipa::path(get, path = "/workspaces/{id}/experiments/rows", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), RowsQuery), responses((status = 200, body = Envelope<Vec<ExperimentOut>>), Errors))]
async fn table_rows(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RowsQuery>,
) -> Result<Reply<Vec<ExperimentOut>>> {
    let workspace = parse_id(&id, "workspace")?;
    let ids = ids_of(&q.ids)?;
    if ids.len() > MAX_ROWS {
        return Err(Error::bad_request(format!(
            "ids may list at most {MAX_ROWS} experiments"
        )));
    }
    let (runs, mut summaries) = state
        .db
        .read(move |c| {
            require_role(c, &workspace, &user.id, Role::Viewer)?;
            let mut runs = experiments::visible_among(c, &user.id, &ids)?;
            runs.retain(|e| e.workspace_id == workspace);
            let rowids: Vec<i64> = runs.iter().map(|e| e.rowid).collect();
            // Bounded per run as the list's summary=1 is (a run may have 10,000 metrics).
            Ok((runs, summaries::briefs(c, &rowids, SUMMARY_PER_KIND, &[])?))
        })
        .await?;
    let base = state.public_url(&headers);
    Ok(ok(runs
        .into_iter()
        .map(|e| {
            let summary = summaries
                .remove(&e.rowid)
                .map(|b| run_summary(b.series, b.partial));
            ExperimentOut::new(e, &base).with_summary(summary)
        })
        .collect()))
}
