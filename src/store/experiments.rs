//! Experiments: name, description, hyperparameters, tags, metadata, and the times their state
//! is derived from (`run_state`). Their logs are in `logs`.

use crate::sql::{Connection, Dialect, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::query::{Expr, Field, Op, Sort, SortKey, Value};
use crate::run_state::{Activity, EndState, STALE_MS};

#[derive(Debug, Clone)]
pub struct Experiment {
    /// Internal number, used by the log tables; never sent to clients.
    pub rowid: i64,
    pub id: String,
    pub workspace_id: String,
    pub created_by: Option<String>,
    pub name: String,
    pub description: Option<String>,
    /// JSON text: `[{"key": .., "value": ..}]`
    pub hyperparams: String,
    /// JSON text: `["tag", ..]`
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// When its last point arrived, if any.
    pub last_log_at: Option<i64>,
    /// Its client's last heartbeat, if it ever sent one.
    pub heartbeat_at: Option<i64>,
    /// When and how its client ended it, if it did.
    pub ended_at: Option<i64>,
    pub end_state: Option<EndState>,
    /// JSON text: an object.
    pub metadata: String,
    /// The group it belongs to (`validate::group`), if any.
    pub group: Option<String>,
    /// When retention compacted its metrics to aggregates (their raw points are gone).
    pub compacted_at: Option<i64>,
}

impl Experiment {
    /// What its state is derived from.
    pub fn activity(&self) -> Activity {
        Activity {
            created_at: self.created_at,
            last_point_at: self.last_log_at,
            heartbeat_at: self.heartbeat_at,
            ended_at: self.ended_at,
            end_state: self.end_state,
        }
    }
}

/// When a run's last point arrived: the latest write to any of its series.
macro_rules! last_point_sql {
    () => {
        "(SELECT max(updated_at) FROM series WHERE experiment_id = e.id)"
    };
}

const COLUMNS: &str = concat!(
    "e.id, e.uuid, e.workspace_id, e.created_by, e.name, e.description, e.hyperparams, e.tags, ",
    "e.created_at, e.updated_at, ",
    last_point_sql!(),
    ", e.heartbeat_at, e.ended_at, e.end_state, e.metadata, e.run_group, e.compacted_at"
);
/// How many columns [`COLUMNS`] selects: a query's own columns come after them.
const COLUMN_COUNT: usize = 17;

/// [`crate::run_state::Activity::state`] in SQL: the state word of `e` (an experiments row) at
/// the time bound to the parameter `now`, its cases in the same order. The unit test
/// `the_state_filter_and_the_state_rule_agree` checks the two against each other.
fn state_sql(now: &str) -> String {
    let last_point = last_point_sql!();
    format!(
        "CASE WHEN e.end_state IS NOT NULL THEN e.end_state \
         WHEN {now} - max(e.created_at, coalesce({last_point}, e.created_at), coalesce(e.heartbeat_at, e.created_at)) <= {STALE_MS} THEN 'running' \
         WHEN e.heartbeat_at IS NULL THEN 'finished' \
         ELSE 'crashed' END"
    )
}

fn from_row(r: &Row) -> crate::sql::Result<Experiment> {
    Ok(Experiment {
        rowid: r.get(0)?,
        id: r.get(1)?,
        workspace_id: r.get(2)?,
        created_by: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        hyperparams: r.get(6)?,
        tags: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        last_log_at: r.get(10)?,
        heartbeat_at: r.get(11)?,
        ended_at: r.get(12)?,
        end_state: r
            .get::<_, Option<String>>(13)?
            .as_deref()
            .and_then(EndState::parse),
        metadata: r.get(14)?,
        group: r.get(15)?,
        compacted_at: r.get(16)?,
    })
}

pub struct NewExperiment<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub created_by: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub hyperparams: &'a str,
    pub tags: &'a str,
    /// JSON text: an object.
    pub metadata: &'a str,
    pub group: Option<&'a str>,
    /// When the run began, for an imported run; None: `now`.
    pub created_at: Option<i64>,
}

pub fn create(conn: &Connection, new: &NewExperiment, now: i64) -> Result<Experiment> {
    conn.prepare_cached("INSERT INTO experiments (uuid, workspace_id, created_by, name, description, hyperparams, tags, metadata, run_group, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?.execute(params![
            new.id,
            new.workspace_id,
            new.created_by,
            new.name,
            new.description,
            new.hyperparams,
            new.tags,
            new.metadata,
            new.group,
            new.created_at.unwrap_or(now),
            now
        ])
    .map_err(|e| crate::error::conflict_on_unique(e, "an experiment with this id already exists"))?;
    let exp = get(conn, new.id)?
        .ok_or_else(|| Error::Internal("experiment vanished after insert".into()))?;
    set_hyperparams(conn, exp.rowid, new.hyperparams)?;
    Ok(exp)
}

/// Any experiment by its public id, whoever may see it: callers check access next.
/// Tells the other servers on this PostgreSQL database that run `id` of `workspace` was
/// created, changed, moved out of `workspace` or deleted (they read its row again): like
/// `logs::announce`, inside the write transaction. Does nothing on SQLite.
pub fn announce(conn: &Connection, server: &str, workspace: &str, id: &str) -> Result<()> {
    if conn.dialect() != Dialect::Postgres {
        return Ok(());
    }
    let payload = format!("{server} run {workspace} {id}");
    conn.execute(
        "SELECT pg_notify(?1, ?2)",
        params![crate::store::logs::LIVE_CHANNEL, payload],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Experiment>> {
    let sql = format!("SELECT {COLUMNS} FROM experiments e WHERE e.uuid = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// Every experiment in every workspace `user_id` belongs to.
/// The newest `limit` experiments `user_id` may see, over all their workspaces, and how many
/// there are in all.
pub fn visible_to(
    conn: &Connection,
    user_id: &str,
    limit: usize,
) -> Result<(Vec<Experiment>, i64)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e JOIN workspace_members m ON m.workspace_id = e.workspace_id
         WHERE m.user_id = ?1 ORDER BY e.created_at DESC, e.id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user_id, limit as i64], from_row)?;
    let list = rows.collect::<crate::sql::Result<_>>()?;
    let total = conn
        .prepare_cached(
            "SELECT count(*) FROM experiments e JOIN workspace_members m ON m.workspace_id = e.workspace_id
             WHERE m.user_id = ?1",
        )?
        .query_row([user_id], |r| r.get(0))?;
    Ok((list, total))
}

/// Those of `ids` that `user_id` may see, in the order asked; unknown or hidden ones are left out.
pub fn visible_among(conn: &Connection, user_id: &str, ids: &[String]) -> Result<Vec<Experiment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e JOIN workspace_members m ON m.workspace_id = e.workspace_id
         WHERE e.uuid = ?1 AND m.user_id = ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(e) = stmt.query_row([id, user_id], from_row).optional()? {
            out.push(e);
        }
    }
    Ok(out)
}

pub struct Changes<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub hyperparams: Option<&'a str>,
    pub tags: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// None leaves the group as it is, Some(None) clears it (as `description`).
    pub group: Option<Option<&'a str>>,
}

/// Mirrors the hyperparameters' JSON into `experiment_hyperparams`, where queries can use them.
fn set_hyperparams(conn: &Connection, rowid: i64, json: &str) -> Result<()> {
    use crate::sql::types::Value as Sql;
    conn.prepare_cached("DELETE FROM experiment_hyperparams WHERE experiment_id = ?1")?
        .execute([rowid])?;
    let items: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let mut insert = conn.prepare_cached(
        "INSERT INTO experiment_hyperparams (experiment_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )?;
    for item in items {
        let Some(key) = item.get("key").and_then(|k| k.as_str()) else {
            continue;
        };
        let value = match item.get("value") {
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => Sql::Integer(i),
                None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(serde_json::Value::String(s)) => Sql::Text(s.clone()),
            Some(serde_json::Value::Bool(b)) => Sql::Integer(i64::from(*b)),
            _ => Sql::Null,
        };
        insert.execute(params![rowid, key, value])?;
    }
    Ok(())
}

pub fn update(conn: &Connection, rowid: i64, c: &Changes, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE experiments SET
            name = coalesce(?2, name),
            description = CASE WHEN ?3 THEN ?4 ELSE description END,
            hyperparams = coalesce(?5, hyperparams),
            tags = coalesce(?6, tags),
            metadata = coalesce(?7, metadata),
            updated_at = ?8,
            run_group = CASE WHEN ?9 THEN ?10 ELSE run_group END
         WHERE id = ?1",
    )?
    .execute(params![
        rowid,
        c.name,
        c.description.is_some(),
        c.description.flatten(),
        c.hyperparams,
        c.tags,
        c.metadata,
        now,
        c.group.is_some(),
        c.group.flatten()
    ])?;
    if let Some(hp) = c.hyperparams {
        set_hyperparams(conn, rowid, hp)?;
    }
    Ok(())
}

/// Moves an experiment to another workspace. Its series, points and metadata hang off the
/// experiment, not the workspace, so they all go with it.
pub fn move_to(conn: &Connection, rowid: i64, workspace_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE experiments SET workspace_id = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![rowid, workspace_id, now])?;
    Ok(())
}

/// Records a heartbeat from the run's client. A heartbeat on an ended run reopens it: the run
/// was resumed.
pub fn heartbeat(conn: &Connection, rowid: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE experiments SET heartbeat_at = ?2, ended_at = NULL, end_state = NULL WHERE id = ?1",
    )?
    .execute(params![rowid, now])?;
    Ok(())
}

/// Ends a run as its client says. Ending it again the same way keeps the first time (a
/// retried request); the other way records the new state and time.
pub fn finish(conn: &Connection, rowid: i64, end: EndState, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE experiments SET
            ended_at = CASE WHEN end_state IS NOT DISTINCT FROM ?2 AND ended_at IS NOT NULL
                THEN ended_at ELSE ?3 END,
            end_state = ?2
         WHERE id = ?1",
    )?
    .execute(params![rowid, end.as_str(), now])?;
    Ok(())
}

/// The newest `limit` runs of a workspace whose metadata has `key` at its top level.
pub fn with_metadata_key(
    conn: &Connection,
    workspace_id: &str,
    key: &str,
    limit: usize,
) -> Result<Vec<Experiment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.workspace_id = ?1
         AND EXISTS (SELECT 1 FROM {} WHERE m.key = ?2)
         ORDER BY e.created_at DESC, e.id DESC LIMIT ?3",
        conn.dialect().json_members("e.metadata", None, "m")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![workspace_id, key, limit as i64], from_row)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Deletes an experiment; foreign keys cascade to its series, logs and metadata.
pub fn delete(conn: &Connection, rowid: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM experiments WHERE id = ?1")?
        .execute([rowid])?;
    Ok(())
}

/// Where a page of an experiment list starts: the sort value and id of the last row before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub value: crate::sql::types::Value,
    pub rowid: i64,
}

impl Cursor {
    /// Opaque to clients: hex of a small JSON array.
    pub fn encode(&self) -> String {
        use crate::sql::types::Value as Sql;
        let v = match &self.value {
            Sql::Null => serde_json::Value::Null,
            Sql::Integer(i) => serde_json::json!({"i": i}),
            Sql::Real(f) => serde_json::json!({"f": f}),
            Sql::Text(t) => serde_json::json!({"t": t}),
            Sql::Blob(_) => serde_json::Value::Null,
        };
        serde_json::json!([v, self.rowid])
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        use crate::sql::types::Value as Sql;
        let bytes: Option<Vec<u8>> = (0..raw.len())
            .step_by(2)
            .map(|i| {
                raw.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let json: serde_json::Value = serde_json::from_slice(&bytes?).ok()?;
        let rowid = json.get(1)?.as_i64()?;
        let v = json.get(0)?;
        let value = if v.is_null() {
            Sql::Null
        } else if let Some(i) = v.get("i").and_then(|i| i.as_i64()) {
            Sql::Integer(i)
        } else if let Some(f) = v.get("f").and_then(|f| f.as_f64()) {
            Sql::Real(f)
        } else {
            Sql::Text(v.get("t")?.as_str()?.to_string())
        };
        Some(Cursor { value, rowid })
    }
}

pub struct Page {
    pub experiments: Vec<Experiment>,
    pub next: Option<Cursor>,
    pub total: i64,
}

/// Past this many matching runs, a sort on a value that can be missing walks that value's index
/// for its page; up to it, the matching runs are found first and sorted.
const FEW: i64 = 5_000;

/// A workspace's experiments matching `filter` at time `now` (a run's state depends on it),
/// ordered by `sort` (missing values last, then by id), `limit` at a time from `after`. Keyset
/// pagination: a page starts after the previous page's last row, so experiments created
/// meanwhile neither repeat nor push rows out of view.
pub fn page(
    conn: &Connection,
    workspace_id: &str,
    filter: Option<&Expr>,
    sort: &Sort,
    limit: Option<usize>,
    after: Option<&Cursor>,
    now: i64,
) -> Result<Page> {
    page_with(conn, workspace_id, filter, sort, limit, after, now, FEW)
}

/// [`page`] with the threshold between its two plans as a parameter, so a test can hold them
/// to the same answers.
#[allow(clippy::too_many_arguments)]
fn page_with(
    conn: &Connection,
    workspace_id: &str,
    filter: Option<&Expr>,
    sort: &Sort,
    limit: Option<usize>,
    after: Option<&Cursor>,
    now: i64,
    few: i64,
) -> Result<Page> {
    use crate::sql::types::Value as Sql;
    let d = conn.dialect();
    let (clause, args) = matching(d, workspace_id, filter, now);
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM experiments e WHERE {clause}"
        ))?
        .query_row(crate::sql::params_from_iter(args.iter()), |r| r.get(0))?;

    if total == 0 {
        return Ok(Page {
            experiments: Vec::new(),
            next: None,
            total,
        });
    }
    let (cmp, dir) = if sort.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let limit_sql = |n: Option<usize>| n.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    let more = limit.map(|l| l + 1);
    let read = |sql: &str, args: &[Sql]| -> Result<Vec<(Experiment, Sql)>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(crate::sql::params_from_iter(args.iter()), |r| {
            Ok((from_row(r)?, r.get::<_, Sql>(COLUMN_COUNT)?))
        })?;
        Ok(rows.collect::<crate::sql::Result<_>>()?)
    };
    let mut rows: Vec<(Experiment, Sql)> = match &sort.key {
        // Never missing: one walk of an index in order ((workspace_id, created_at), (workspace_id,
        // updated_at), (workspace_id, name COLLATE NOCASE)), stopped after the page.
        SortKey::Created | SortKey::Updated | SortKey::Name => {
            let key = match sort.key {
                SortKey::Created => "e.created_at",
                SortKey::Updated => "e.updated_at",
                _ => "e.name COLLATE NOCASE",
            };
            let mut args = args.clone();
            let mut page_clause = clause.clone();
            if let Some(c) = after {
                args.push(c.value.clone());
                args.push(Sql::Integer(c.rowid));
                page_clause += &format!(
                    " AND ({key}, e.id) {cmp} (?{}, ?{})",
                    args.len() - 1,
                    args.len()
                );
            }
            read(
                &format!(
                    "SELECT {COLUMNS}, {key} FROM experiments e WHERE {page_clause}
                     ORDER BY {key} {dir}, e.id {dir}{}",
                    limit_sql(more)
                ),
                &args,
            )?
        }
        // Can be missing, and missing sorts last either way: first the runs that have the value,
        // walking an index on it in order; then, once those run out, the others by id.
        // A filter that leaves few runs: sort those (walking a value index for a page could
        // pass every run of the workspace, and of the others, to find none).
        SortKey::Group | SortKey::Hyperparam(_) | SortKey::Result(_) | SortKey::Metric(_)
            if filter.is_some() && total <= few =>
        {
            let mut args = args.clone();
            let key = match &sort.key {
                SortKey::Group => "e.run_group COLLATE NOCASE".to_string(),
                SortKey::Hyperparam(k) => {
                    args.push(Sql::Text(k.clone()));
                    format!(
                        "(SELECT value FROM experiment_hyperparams WHERE experiment_id = e.id AND key = ?{})",
                        args.len()
                    )
                }
                SortKey::Result(n) | SortKey::Metric(n) => {
                    let kind = i64::from(matches!(sort.key, SortKey::Result(_)));
                    args.push(Sql::Text(n.clone()));
                    format!(
                        "(SELECT last_value FROM series WHERE experiment_id = e.id AND kind = {kind} AND name = ?{})",
                        args.len()
                    )
                }
                other => {
                    return Err(Error::Internal(format!(
                        "sort {other:?} reached a value sort"
                    )));
                }
            };
            // What orders the values (a hyperparameter's as SQLite orders it on every engine);
            // `key` itself is what the cursor keeps.
            let order = |v: &str| match &sort.key {
                SortKey::Hyperparam(_) => d.hyperparam_order(v),
                _ => v.to_string(),
            };
            let ordered = order(&format!("({key})"));
            let mut page_clause = clause.clone();
            if let Some(c) = after {
                args.push(Sql::Integer(c.rowid));
                let id = args.len();
                if c.value == Sql::Null {
                    page_clause += &format!(" AND ({key}) IS NULL AND e.id {cmp} ?{id}");
                } else {
                    args.push(c.value.clone());
                    let v = order(&format!("?{}", args.len()));
                    page_clause += &format!(
                        " AND (({key}) IS NULL OR {ordered} {cmp} {v} OR ({ordered} = {v} AND e.id {cmp} ?{id}))"
                    );
                }
            }
            read(
                &format!(
                    "SELECT {COLUMNS}, ({key}) FROM experiments e WHERE {page_clause}
                     ORDER BY ({key}) IS NULL, {ordered} {dir}, e.id {dir}{}",
                    limit_sql(more)
                ),
                &args,
            )?
        }
        SortKey::Group | SortKey::Hyperparam(_) | SortKey::Result(_) | SortKey::Metric(_) => {
            let mut args_a = args.clone();
            let mut args_b = args.clone();
            let (from, key, tie, present, absent) = match &sort.key {
                SortKey::Group => (
                    "experiments e".to_string(),
                    "e.run_group COLLATE NOCASE",
                    "e.id",
                    "e.run_group IS NOT NULL".to_string(),
                    "e.run_group IS NULL".to_string(),
                ),
                SortKey::Hyperparam(k) => {
                    args_a.push(Sql::Text(k.clone()));
                    args_b.push(Sql::Text(k.clone()));
                    // CROSS JOIN: the (key, value) index leads, so the page is read in order.
                    (
                        format!(
                            "experiment_hyperparams h {} experiments e ON e.id = h.experiment_id",
                            d.join_in_order()
                        ),
                        "h.value",
                        "h.experiment_id",
                        format!("h.key = ?{} AND h.value IS NOT NULL", args_a.len()),
                        format!(
                            "NOT EXISTS (SELECT 1 FROM experiment_hyperparams x WHERE x.experiment_id = e.id AND x.key = ?{} AND x.value IS NOT NULL)",
                            args_b.len()
                        ),
                    )
                }
                SortKey::Result(n) | SortKey::Metric(n) => {
                    let kind = i64::from(matches!(sort.key, SortKey::Result(_)));
                    args_a.push(Sql::Text(n.clone()));
                    args_b.push(Sql::Text(n.clone()));
                    (
                        format!(
                            "series s {} experiments e ON e.id = s.experiment_id",
                            d.join_in_order()
                        ),
                        "s.last_value",
                        "s.experiment_id",
                        format!(
                            "s.kind = {kind} AND s.name = ?{} AND s.last_value IS NOT NULL",
                            args_a.len()
                        ),
                        format!(
                            "NOT EXISTS (SELECT 1 FROM series x WHERE x.experiment_id = e.id AND x.kind = {kind} AND x.name = ?{} AND x.last_value IS NOT NULL)",
                            args_b.len()
                        ),
                    )
                }
                other => {
                    return Err(Error::Internal(format!(
                        "sort {other:?} reached a value sort"
                    )));
                }
            };
            // As above: `ordered` orders, `key` is what the cursor keeps.
            let order = |v: &str| match &sort.key {
                SortKey::Hyperparam(_) => d.hyperparam_order(v),
                _ => v.to_string(),
            };
            let ordered = order(key);
            let in_missing = after.is_some_and(|c| c.value == Sql::Null);
            let mut rows = if in_missing {
                Vec::new()
            } else {
                let mut page_clause = format!("{clause} AND {present}");
                if let Some(c) = after {
                    args_a.push(c.value.clone());
                    args_a.push(Sql::Integer(c.rowid));
                    page_clause += &format!(
                        " AND ({ordered}, {tie}) {cmp} ({}, ?{})",
                        order(&format!("?{}", args_a.len() - 1)),
                        args_a.len()
                    );
                }
                read(
                    &format!(
                        "SELECT {COLUMNS}, {key} FROM {from} WHERE {page_clause}
                         ORDER BY {ordered} {dir}, {tie} {dir}{}",
                        limit_sql(more)
                    ),
                    &args_a,
                )?
            };
            if more.is_none_or(|m| rows.len() < m) {
                let mut page_clause = format!("{clause} AND {absent}");
                if let Some(c) = after.filter(|_| in_missing) {
                    args_b.push(Sql::Integer(c.rowid));
                    page_clause += &format!(" AND e.id {cmp} ?{}", args_b.len());
                }
                let rest = more.map(|m| m - rows.len());
                rows.extend(read(
                    &format!(
                        "SELECT {COLUMNS}, NULL FROM experiments e WHERE {page_clause}
                         ORDER BY e.id {dir}{}",
                        limit_sql(rest)
                    ),
                    &args_b,
                )?);
            }
            rows
        }
    };
    let next = match limit {
        Some(l) if rows.len() > l => {
            rows.truncate(l);
            rows.last().map(|(e, v)| Cursor {
                value: v.clone(),
                rowid: e.rowid,
            })
        }
        _ => None,
    };
    Ok(Page {
        experiments: rows.into_iter().map(|(e, _)| e).collect(),
        next,
        total,
    })
}

/// The WHERE clause (over `experiments e`) and its values for the runs of `workspace_id` that
/// match `filter` at time `now`.
fn matching(
    d: Dialect,
    workspace_id: &str,
    filter: Option<&Expr>,
    now: i64,
) -> (String, Vec<crate::sql::types::Value>) {
    let mut args = vec![crate::sql::types::Value::Text(workspace_id.to_string())];
    let mut clause = String::from("e.workspace_id = ?1");
    if let Some(f) = filter {
        clause += " AND ";
        clause += &compile(d, f, &mut args, now);
    }
    (clause, args)
}

/// The columns of a table export: the hyperparameter keys, result names and metric names of
/// the matching runs, each sorted.
#[derive(Debug, Default)]
pub struct Columns {
    pub hyperparams: Vec<String>,
    pub results: Vec<String>,
    pub metrics: Vec<String>,
}

/// The [`Columns`] of the runs of `workspace_id` that match `filter` at time `now`, at most
/// `limit` + 1 of each kind (so the caller can tell that a kind has more than `limit`).
pub fn columns(
    conn: &Connection,
    workspace_id: &str,
    filter: Option<&Expr>,
    limit: usize,
    now: i64,
) -> Result<Columns> {
    let (clause, args) = matching(conn.dialect(), workspace_id, filter, now);
    let names = |sql: String| -> Result<Vec<String>> {
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(crate::sql::params_from_iter(args.iter()), |r| r.get(0))?;
        Ok(rows.collect::<crate::sql::Result<_>>()?)
    };
    let more = limit + 1;
    let series = |kind: i64| {
        format!(
            "SELECT DISTINCT sr.name FROM series sr JOIN experiments e ON e.id = sr.experiment_id
             WHERE sr.kind = {kind} AND sr.count > 0 AND {clause} ORDER BY sr.name LIMIT {more}"
        )
    };
    Ok(Columns {
        hyperparams: names(format!(
            "SELECT DISTINCT hp.key FROM experiment_hyperparams hp JOIN experiments e ON e.id = hp.experiment_id
             WHERE {clause} ORDER BY hp.key LIMIT {more}"
        ))?,
        results: names(series(1))?,
        metrics: names(series(0))?,
    })
}

/// The matching runs of a table export with their series, walked a page of [`EXPORT_PAGE`]
/// runs at a time in `sort` order (keyset, as [`page`]), at most `limit` runs in all. States in
/// the filter are taken at `now`, the export's start, for every page alike.
pub struct Export {
    workspace_id: String,
    filter: Option<Expr>,
    sort: Sort,
    after: Option<Cursor>,
    left: usize,
    now: i64,
}

/// Runs per page of an export: each page is one short read.
pub const EXPORT_PAGE: usize = 50;

impl Export {
    pub fn new(
        workspace_id: String,
        filter: Option<Expr>,
        sort: Sort,
        limit: usize,
        now: i64,
    ) -> Export {
        Export {
            workspace_id,
            filter,
            sort,
            after: None,
            left: limit,
            now,
        }
    }
}

impl super::logs::Pages for Export {
    type Item = (Experiment, Vec<super::series::Series>);

    fn finished(&self) -> bool {
        self.left == 0
    }

    fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<Self::Item>>> {
        if self.left == 0 {
            return Ok(None);
        }
        let p = page(
            conn,
            &self.workspace_id,
            self.filter.as_ref(),
            &self.sort,
            Some(EXPORT_PAGE.min(self.left)),
            self.after.as_ref(),
            self.now,
        )?;
        self.left = match p.next {
            Some(_) => self.left.saturating_sub(p.experiments.len()),
            None => 0,
        };
        self.after = p.next;
        let ids: Vec<i64> = p.experiments.iter().map(|e| e.rowid).collect();
        let mut series = super::series::for_experiments(conn, &ids)?;
        Ok(Some(
            p.experiments
                .into_iter()
                .map(|e| {
                    let s = series.remove(&e.rowid).unwrap_or_default();
                    (e, s)
                })
                .collect(),
        ))
    }
}

/// Turns a parsed filter into a WHERE fragment at time `now`, pushing its values onto `args`.
fn compile(d: Dialect, e: &Expr, args: &mut Vec<crate::sql::types::Value>, now: i64) -> String {
    use crate::sql::types::Value as Sql;
    let bind = |v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        format!("?{}", args.len())
    };
    match e {
        Expr::And(terms) | Expr::Or(terms) if terms.is_empty() => (if matches!(e, Expr::And(_)) {
            "1 = 1"
        } else {
            "1 = 0"
        })
        .to_string(),
        // Recursion is bounded: `query::parse` caps nesting at query::MAX_DEPTH.
        Expr::And(terms) | Expr::Or(terms) => {
            let joiner = if matches!(e, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let parts: Vec<String> = terms.iter().map(|t| compile(d, t, args, now)).collect();
            format!("({})", parts.join(joiner))
        }
        Expr::Not(a) => format!("(NOT {})", compile(d, a, args, now)),
        Expr::NameLike { pattern, ci } => {
            let p = bind(Sql::Text(d.like_pattern(pattern, *ci)), args);
            d.like("e.name", &p, *ci)
        }
        Expr::ParamText { key, value, equal } => {
            let k = bind(Sql::Text(key.clone()), args);
            let v = bind(Sql::Text(value.clone()), args);
            let op = if *equal { "=" } else { "!=" };
            format!(
                "e.id IN (SELECT h.experiment_id FROM experiment_hyperparams h WHERE h.key = {k} AND {} {op} {v})",
                d.hyperparam_text("h.value")
            )
        }
        Expr::ParamLike { key, pattern, ci } => {
            let k = bind(Sql::Text(key.clone()), args);
            let p = bind(Sql::Text(d.like_pattern(pattern, *ci)), args);
            format!(
                "e.id IN (SELECT h.experiment_id FROM experiment_hyperparams h WHERE h.key = {k} AND {})",
                d.like(&d.hyperparam_text("h.value"), &p, *ci)
            )
        }
        Expr::MetaTag { key, value } => {
            let k = bind(Sql::Text(key.clone()), args);
            let v = bind(Sql::Text(value.clone()), args);
            format!(
                "EXISTS (SELECT 1 FROM {} WHERE t.key = {k} AND t.value = {v})",
                d.json_members("e.metadata", Some("mlflow_tags"), "t")
            )
        }
        Expr::MetaTagLike { key, pattern, ci } => {
            let k = bind(Sql::Text(key.clone()), args);
            let p = bind(Sql::Text(d.like_pattern(pattern, *ci)), args);
            format!(
                "EXISTS (SELECT 1 FROM {} WHERE t.key = {k} AND {})",
                d.json_members("e.metadata", Some("mlflow_tags"), "t"),
                d.like("CAST(t.value AS TEXT)", &p, *ci)
            )
        }
        Expr::State(s) => {
            let now = bind(Sql::Integer(now), args);
            let word = bind(Sql::Text(s.as_str().to_string()), args);
            format!("({}) = {word}", state_sql(&now))
        }
        Expr::Tag(t) => {
            let p = bind(Sql::Text(t.clone()), args);
            format!(
                "EXISTS (SELECT 1 FROM {} WHERE t.value COLLATE NOCASE = {p} COLLATE NOCASE)",
                d.json_elements("e.tags", "t")
            )
        }
        Expr::Group(g) => {
            let p = bind(Sql::Text(g.clone()), args);
            // Never NULL, so `not group:x` holds the runs in no group.
            format!("(e.run_group IS NOT NULL AND e.run_group COLLATE NOCASE = {p} COLLATE NOCASE)")
        }
        Expr::NameContains(w) => {
            let p = bind(Sql::Text(w.to_lowercase()), args);
            format!("instr(lower(e.name), {p}) > 0")
        }
        Expr::Compare { field, op, value } => {
            let v = match value {
                Value::Number(n) => Sql::Real(*n),
                Value::Text(t) => Sql::Text(t.clone()),
            };
            // `text` is the column as text (for `~`); `order` gives what compares a value of the
            // column (a hyperparameter's, as SQLite compares it on every engine) or a parameter.
            let test = |column: &str,
                        text: &str,
                        order: &dyn Fn(&str) -> String,
                        args: &mut Vec<Sql>|
             -> String {
                let p = bind(v.clone(), args);
                if matches!(op, Op::Contains) {
                    return format!("instr(lower({text}), lower({p})) > 0");
                }
                let (column, p) = (order(column), order(&p));
                match op {
                    Op::Contains | Op::Eq => format!("{column} = {p}"),
                    Op::Lt => format!("{column} < {p}"),
                    Op::Le => format!("{column} <= {p}"),
                    Op::Gt => format!("{column} > {p}"),
                    Op::Ge => format!("{column} >= {p}"),
                    Op::Ne => format!("{column} != {p}"),
                }
            };
            let hp = |k: &str, args: &mut Vec<Sql>| {
                let key = bind(Sql::Text(k.to_string()), args);
                // IN, not EXISTS: the (key, value) index finds the matching runs once, instead
                // of one lookup per run of the workspace.
                format!(
                    "e.id IN (SELECT h.experiment_id FROM experiment_hyperparams h WHERE h.key = {key} AND {})",
                    test(
                        "h.value",
                        &d.hyperparam_text("h.value"),
                        &|v| d.hyperparam_order(v),
                        args
                    )
                )
            };
            let series = |kind: i64, n: &str, args: &mut Vec<Sql>| {
                let name = bind(Sql::Text(n.to_string()), args);
                format!(
                    "e.id IN (SELECT s.experiment_id FROM series s WHERE s.kind = {kind} AND s.name = {name} AND {})",
                    test(
                        "s.last_value",
                        "CAST(s.last_value AS TEXT)",
                        &|v| v.to_string(),
                        args
                    )
                )
            };
            match field {
                Field::Name => test("e.name", "e.name", &|v| v.to_string(), args),
                Field::Hyperparam(k) => hp(k, args),
                Field::Result(n) => series(1, n, args),
                Field::Metric(n) => series(0, n, args),
                Field::Any(k) => format!("({} OR {})", hp(k, args), series(1, k, args)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Sort, SortKey};
    use crate::run_state::{EndState, RunState, STALE_MS};

    const NOW: i64 = 1_800_000_000_000;

    /// One run per case the rule tells apart, the times set as a client would have left them:
    /// (name, created_at, last point, heartbeat, end).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, i64, Option<i64>, Option<i64>, Option<(i64, EndState)>)] = &[
        ("just created", NOW - 1_000, None, None, None),
        ("created at the edge", NOW - STALE_MS, None, None, None),
        (
            "quiet without heartbeats",
            NOW - STALE_MS - 1,
            None,
            None,
            None,
        ),
        (
            "old, recent point",
            NOW - 10 * STALE_MS,
            Some(NOW - 60_000),
            None,
            None,
        ),
        (
            "old, stale point",
            NOW - 10 * STALE_MS,
            Some(NOW - STALE_MS - 1),
            None,
            None,
        ),
        (
            "old, recent heartbeat",
            NOW - 10 * STALE_MS,
            None,
            Some(NOW - 30_000),
            None,
        ),
        (
            "heartbeat then silence",
            NOW - 10 * STALE_MS,
            Some(NOW - 2 * STALE_MS),
            Some(NOW - STALE_MS - 1),
            None,
        ),
        (
            "point after its last heartbeat",
            NOW - 10 * STALE_MS,
            Some(NOW - 1_000),
            Some(NOW - 3 * STALE_MS),
            None,
        ),
        (
            "finished long ago",
            NOW - 10 * STALE_MS,
            Some(NOW - 9 * STALE_MS),
            Some(NOW - 9 * STALE_MS),
            Some((NOW - 9 * STALE_MS, EndState::Finished)),
        ),
        (
            "failed a moment ago",
            NOW - 10 * STALE_MS,
            Some(NOW - 1_000),
            Some(NOW - 1_000),
            Some((NOW - 500, EndState::Failed)),
        ),
        (
            "finished, never a heartbeat",
            NOW - 1_000,
            None,
            None,
            Some((NOW - 10, EndState::Finished)),
        ),
        (
            "in the future (a skewed clock)",
            NOW + 60_000,
            None,
            None,
            None,
        ),
    ];

    fn runs(conn: &Connection) -> (String, Vec<Experiment>) {
        let first = crate::store::test_experiment(conn);
        let mut out = vec![];
        for (i, (name, created, point, beat, end)) in CASES.iter().enumerate() {
            let id = format!("00000000-0000-4000-8000-0000000001{i:02}");
            let new = NewExperiment {
                id: &id,
                workspace_id: &first.workspace_id,
                created_by: first.created_by.as_deref().unwrap(),
                name,
                description: None,
                hyperparams: "[]",
                tags: "[]",
                metadata: "{}",
                group: None,
                created_at: None,
            };
            let e = create(conn, &new, *created).unwrap();
            if let Some(t) = point {
                conn.execute(
                    "INSERT INTO series (experiment_id, kind, name, updated_at) VALUES (?1, 0, 'loss', ?2)",
                    params![e.rowid, t],
                )
                .unwrap();
            }
            conn.execute(
                "UPDATE experiments SET heartbeat_at = ?2, ended_at = ?3, end_state = ?4 WHERE id = ?1",
                params![
                    e.rowid,
                    beat,
                    end.map(|(t, _)| t),
                    end.map(|(_, s)| s.as_str())
                ],
            )
            .unwrap();
            out.push(get(conn, &id).unwrap().unwrap());
        }
        delete(conn, first.rowid).unwrap();
        (first.workspace_id, out)
    }

    #[test]
    fn the_state_filter_and_the_state_rule_agree() {
        let conn = crate::db::memory();
        let (ws, runs) = runs(&conn);
        let mut seen = std::collections::HashSet::new();
        for e in &runs {
            let rust = e.activity().state(NOW);
            seen.insert(rust);
            let sql: String = conn
                .query_row(
                    &format!(
                        "SELECT {} FROM experiments e WHERE e.uuid = ?2",
                        state_sql("?1")
                    ),
                    params![NOW, e.id],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(sql, rust.as_str(), "{}", e.name);
        }
        assert_eq!(seen.len(), 4, "every state has a case");

        let sort = Sort {
            key: SortKey::Name,
            descending: false,
        };
        for state in RunState::ALL {
            let page = page(
                &conn,
                &ws,
                Some(&Expr::State(state)),
                &sort,
                None,
                None,
                NOW,
            )
            .unwrap();
            let mut filtered: Vec<&str> =
                page.experiments.iter().map(|e| e.name.as_str()).collect();
            let mut rule: Vec<&str> = runs
                .iter()
                .filter(|e| e.activity().state(NOW) == state)
                .map(|e| e.name.as_str())
                .collect();
            filtered.sort();
            rule.sort();
            assert_eq!(filtered, rule, "state:{}", state.as_str());
            assert_eq!(page.total as usize, rule.len());
        }
    }

    /// Both plans of a sort on a value that can be missing (walk its index; or filter, then
    /// sort) give the same pages, cursor by cursor, for every key, direction and page size.
    #[test]
    fn the_index_walk_and_the_filtered_sort_agree() {
        let conn = crate::db::memory();
        let first = crate::store::test_experiment(&conn);
        let ws = first.workspace_id.clone();
        for i in 0..30i64 {
            let id = format!("00000000-0000-4000-8000-0000000002{i:02}");
            let lr = match i % 5 {
                0 => String::new(),
                1 => r#",{"key":"lr","value":null}"#.to_string(),
                2 => r#",{"key":"lr","value":"auto"}"#.to_string(),
                _ => format!(r#",{{"key":"lr","value":{}}}"#, (i % 3) as f64 * 0.5),
            };
            let hp = format!(r#"[{{"key":"seed","value":{i}}}{lr}]"#);
            let group = ["a", "B", "b"][i as usize % 3];
            let new = NewExperiment {
                id: &id,
                workspace_id: &ws,
                created_by: first.created_by.as_deref().unwrap(),
                name: "run",
                description: None,
                hyperparams: &hp,
                tags: if i % 2 == 0 { r#"["even"]"# } else { "[]" },
                metadata: "{}",
                group: (i % 4 != 0).then_some(group),
                created_at: None,
            };
            let e = create(&conn, &new, i).unwrap();
            if i % 3 != 0 {
                conn.execute(
                    "INSERT INTO series (experiment_id, kind, name, count, last_value) VALUES (?1, 1, 'acc', 1, ?2)",
                    params![e.rowid, if i % 7 == 0 { None } else { Some((i % 4) as f64) }],
                )
                .unwrap();
            }
        }
        let filter = crate::query::parse("tag:even or seed > 20").unwrap();
        for key in [
            SortKey::Group,
            SortKey::Hyperparam("lr".into()),
            SortKey::Result("acc".into()),
        ] {
            for descending in [false, true] {
                let sort = Sort {
                    key: key.clone(),
                    descending,
                };
                for limit in [1, 4, 100] {
                    let walk = |few: i64| {
                        let mut out = vec![];
                        let mut after = None;
                        loop {
                            let p = page_with(
                                &conn,
                                &ws,
                                Some(&filter),
                                &sort,
                                Some(limit),
                                after.as_ref(),
                                NOW,
                                few,
                            )
                            .unwrap();
                            out.extend(p.experiments.iter().map(|e| e.rowid));
                            match p.next {
                                Some(c) => after = Some(c),
                                None => return out,
                            }
                        }
                    };
                    let (index, sorted) = (walk(0), walk(i64::MAX));
                    assert_eq!(index.len(), 20, "{key:?} every match once");
                    assert_eq!(
                        index, sorted,
                        "{key:?} descending={descending} limit={limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_heartbeat_reopens_an_ended_run_and_a_repeated_finish_keeps_its_time() {
        let conn = crate::db::memory();
        let e = crate::store::test_experiment(&conn);
        finish(&conn, e.rowid, EndState::Finished, 100).unwrap();
        finish(&conn, e.rowid, EndState::Finished, 200).unwrap();
        let done = get(&conn, &e.id).unwrap().unwrap();
        assert_eq!(
            (done.ended_at, done.end_state),
            (Some(100), Some(EndState::Finished))
        );
        finish(&conn, e.rowid, EndState::Failed, 300).unwrap();
        let failed = get(&conn, &e.id).unwrap().unwrap();
        assert_eq!(
            (failed.ended_at, failed.end_state),
            (Some(300), Some(EndState::Failed))
        );

        heartbeat(&conn, e.rowid, 400).unwrap();
        let back = get(&conn, &e.id).unwrap().unwrap();
        assert_eq!(
            (back.heartbeat_at, back.ended_at, back.end_state),
            (Some(400), None, None)
        );
        assert_eq!(back.activity().state(400 + STALE_MS), RunState::Running);
        assert_eq!(back.activity().state(401 + STALE_MS), RunState::Crashed);
    }
}
