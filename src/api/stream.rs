//! Live streams, as Server-Sent Events: an experiment's new points, and a workspace's runs.
//!
//! An experiment stream's every event id is a cursor (the id of its last point); reconnecting
//! with `Last-Event-ID` replays exactly what was missed, then goes live. A workspace stream
//! (one per run table) tells what changed in its runs: created or changed, gone, new last
//! values; it has no replay: on `hello` its client fetches the table, and a client that falls
//! too far behind is dropped, reconnects and fetches again.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::{ExperimentOut, authorize};
use super::logs::{LogValue, Times};
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Path, Query, Reply, ok, parse_id};
use crate::auth::{self, AuthUser, Stream};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::live::{self, Change, Hub, Notice, Published};
use crate::server::AppState;
use crate::store::experiments::Experiment;
use crate::store::logs::{self, ById, Pages, Recent, Selection};
use crate::store::workspaces::{Role, require_role};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_stream_token))
        .routes(routes!(stream))
        .routes(routes!(create_workspace_stream_token))
        .routes(routes!(workspace_stream))
}

const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a stream trusts the access it was opened with: before an event goes out later than
/// this after the last check, the user's account and role are checked again, so a user disabled
/// (`tora user disable`, possibly from another process), removed from the workspace, or whose
/// run moved out of reach gets nothing more than this long after.
const RECHECK: Duration = Duration::from_secs(5);
/// Points per event while replaying a long gap.
const REPLAY_CHUNK: usize = 5_000;

#[derive(Serialize, utoipa::ToSchema)]
struct StreamToken {
    token: String,
    /// Unix seconds; connect before then.
    expires_at: i64,
}

/// A short-lived token that opens this experiment's stream, for EventSource (which cannot send
/// headers).
#[utoipa::path(post, path = "/experiments/{id}/logs/stream-token", tag = "live", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<StreamToken>), Errors))]
async fn create_stream_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<StreamToken>> {
    let user_id = user.id.clone();
    let exp = state
        .db
        .read(move |c| authorize(c, &id, &user_id, Role::Viewer))
        .await?;
    let (token, expires_at) = state
        .auth
        .issue_stream(&user.id, Stream::Experiment(&exp.id))?;
    Ok(ok(StreamToken { token, expires_at }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// From POST .../logs/stream-token; or authenticate with headers instead.
    token: Option<String>,
    /// Resume after this point id (same as the Last-Event-ID header).
    cursor: Option<i64>,
}

/// One Server-Sent Event as it travels: `event: logs`, `id: 17`, `data: [...]` (JSON text:
/// an array of points for `logs`, `{"cursor": N}` for `hello`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the wire format only
struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<u64>,
}

#[derive(Serialize)]
struct LivePoint<'a> {
    id: i64,
    name: &'a str,
    kind: &'static str,
    step: Option<i64>,
    value: LogValue,
    created_at: String,
}

/// The `data` of a `logs` event: the points as a JSON array.
fn points_json(points: &[Recent]) -> String {
    let mut times = Times::default();
    let data: Vec<LivePoint> = points
        .iter()
        .map(|p| LivePoint {
            id: p.seq,
            name: &p.name,
            kind: p.kind.name(),
            step: p.step,
            value: LogValue(p.value),
            created_at: times.format(p.created_at),
        })
        .collect();
    // Serializing plain structs and strings cannot fail.
    serde_json::to_string(&data).unwrap_or_default()
}

fn event(points: &[Recent], json: &str) -> Option<Event> {
    let last = points.last()?.seq;
    Some(
        Event::default()
            .event("logs")
            .id(last.to_string())
            .data(json),
    )
}

/// A committed batch ready for every stream of its experiment, serialized once here.
pub fn publishable(points: Vec<Recent>) -> Published {
    let json = points_json(&points);
    Published::new(points, json)
}

/// What a stream may show, and to whom: checked again at most every [`RECHECK`] while the
/// stream sends (an idle stream sends nothing, so it costs no reads).
struct Access {
    state: AppState,
    user_id: String,
    watched: Watched,
    checked: std::time::Instant,
}

#[derive(Clone)]
enum Watched {
    Experiment(String),
    Workspace(String),
}

impl Access {
    fn new(state: &AppState, user_id: &str, watched: Watched) -> Access {
        Access {
            state: state.clone(),
            user_id: user_id.to_string(),
            watched,
            checked: std::time::Instant::now(),
        }
    }

    /// Whether the stream may send its next event. False ends it: the client's reconnect then
    /// meets the ordinary checks (a 401 or 404).
    async fn still_allowed(&mut self) -> bool {
        if self.checked.elapsed() < RECHECK {
            return true;
        }
        if auth::enabled(&self.state, self.user_id.clone())
            .await
            .is_err()
        {
            return false;
        }
        let (watched, user) = (self.watched.clone(), self.user_id.clone());
        let allowed = self
            .state
            .db
            .read(move |c| match watched {
                Watched::Experiment(id) => authorize(c, &id, &user, Role::Viewer).map(|_| ()),
                Watched::Workspace(ws) => require_role(c, &ws, &user, Role::Viewer).map(|_| ()),
            })
            .await
            .is_ok();
        self.checked = std::time::Instant::now();
        allowed
    }
}

/// What one open stream sends: the replay from the database a page at a time (never the whole
/// gap at once), then live batches.
struct Feed {
    db: Db,
    hub: Arc<Hub>,
    exp: Experiment,
    rx: live::Receiver,
    replay: Option<ById>,
    pending: VecDeque<Event>,
    /// The id of the last point sent.
    last: i64,
}

impl Feed {
    /// The next event, or None when the stream ends: the hub dropped it (too far behind while
    /// live, or shutdown) or a replay page failed; the client resumes from its cursor.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some(mut walk) = self.replay.take() {
                if self.hub.is_shut() {
                    return None;
                }
                let (walk, page) = self
                    .db
                    .read_page(move |c| {
                        let page = walk.next_page(c);
                        Ok((walk, page))
                    })
                    .await
                    .ok()?;
                let Some(page) = page.ok()? else {
                    if !self.rx.is_open() {
                        // The live queue overflowed during a long replay (heavy ingest, or a
                        // slow client): what it dropped is in the database, so replay again
                        // from here instead of ending a stream that is making progress.
                        self.catch_up().await?;
                    }
                    continue;
                };
                self.last = walk.cursor().max(self.last);
                self.replay = Some(walk);
                let points: Vec<Recent> = page.into_iter().map(Recent::from).collect();
                for chunk in points.chunks(REPLAY_CHUNK) {
                    self.pending.extend(event(chunk, &points_json(chunk)));
                }
                continue;
            }
            let batch = self.rx.recv().await?;
            if batch.through > self.last
                && batch.points.first().is_none_or(|p| p.seq > self.last + 1)
            {
                // Points after the cursor that this batch does not carry: stored through
                // another server on the same PostgreSQL database (its notice, see
                // `crate::fanout`), or committed there before this one. Ids are consecutive
                // per run, so read the gap (and the batch) from the database.
                self.replay = Some(ById::new(
                    self.exp.clone(),
                    Selection::All,
                    self.last,
                    batch.through,
                    false,
                ));
                continue;
            }
            let points = &batch.points;
            let e = if points.first().is_some_and(|p| p.seq > self.last) {
                // The usual case: all of it is new, and already serialized.
                event(points, &batch.json)
            } else {
                // Overlaps what the replay sent: only the unseen points.
                let fresh: Vec<Recent> = points
                    .iter()
                    .filter(|p| p.seq > self.last)
                    .cloned()
                    .collect();
                event(&fresh, &points_json(&fresh))
            };
            self.last = points.last().map_or(self.last, |p| p.seq.max(self.last));
            if let Some(e) = e {
                return Some(e);
            }
        }
    }

    /// Subscribes again, fences on the writer as the first subscription did, and replays from
    /// the last id sent to what is stored now. None when the server is shutting down.
    async fn catch_up(&mut self) -> Option<()> {
        self.rx = self.hub.subscribe(self.exp.rowid);
        if !self.rx.is_open() {
            return None;
        }
        self.db.write(|_| Ok(())).await.ok()?;
        let exp = self.exp.clone();
        let end = self.db.read(move |c| logs::last_seq(c, &exp)).await.ok()?;
        self.replay = Some(ById::new(
            self.exp.clone(),
            Selection::All,
            self.last,
            end,
            false,
        ));
        Some(())
    }
}

/// Server-Sent Events: `event: logs` with `id: CURSOR` and a JSON array of points; `event:
/// hello` with the current cursor when starting fresh; `: ping` comments as heartbeats.
#[utoipa::path(get, path = "/experiments/{id}/stream", tag = "live", security(("api_key" = []), ("bearer" = []), ()),
    params(("id" = uuid::Uuid, Path), StreamQuery),
    responses((status = 200, description = "text/event-stream of `hello` and `logs` events", content_type = "text/event-stream", body = SseEvent), Errors))]
async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<Response> {
    let id = super::parse_id(&id, "experiment")?;
    let user = match &q.token {
        Some(token) => {
            let user_id = state.auth.verify_stream(token, Stream::Experiment(&id))?;
            auth::enabled(&state, user_id).await?
        }
        None => auth::authenticate(&state, &headers).await?,
    };
    let exp = state
        .db
        .read({
            let user_id = user.id.clone();
            move |c| authorize(c, &id, &user_id, Role::Viewer)
        })
        .await?;
    let cursor = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(raw) => Some(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| Error::bad_request("Last-Event-ID must be a point id"))?,
        ),
        None => q.cursor,
    };

    // Subscribe before looking at the database, then fence on the writer: every batch is then
    // either in what we read below, or decided (in its write transaction) to be published to
    // us. Duplicates from the overlap are dropped by id.
    let rx = state.live.subscribe(exp.rowid);
    state.db.write(|_| Ok(())).await?;
    let now_exp = exp.clone();
    let current = state.db.read(move |c| logs::last_seq(c, &now_exp)).await?;
    if let (Some(c), Some(at)) = (cursor, exp.compacted_at)
        && c < current
    {
        // The points to replay were compacted to aggregates; none will come after them.
        return Err(crate::store::series::compacted(at));
    }
    let (replay, pending, last) = match cursor {
        Some(c) => (
            Some(ById::new(exp.clone(), Selection::All, c, current, false)),
            VecDeque::new(),
            c,
        ),
        None => {
            let hello = Event::default()
                .event("hello")
                .json_data(serde_json::json!({"cursor": current}))
                .map_err(|e| Error::Internal(format!("hello event: {e}")))?;
            (None, VecDeque::from([hello]), current)
        }
    };
    let access = Access::new(&state, &user.id, Watched::Experiment(exp.id.clone()));
    let feed = Feed {
        db: state.db.clone(),
        hub: state.live.clone(),
        exp,
        rx,
        replay,
        pending,
        last,
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let e = feed.next().await?;
        Some((e, feed))
    });
    Ok(respond(events, access))
}

/// The response of a stream: its events, each sent only while `access` still holds, and
/// heartbeat comments. The body pulls events itself: nothing is queued for a client beyond its
/// live queue (which the hub bounds) and the event being written, and when the response goes
/// away the feed and its subscription go with it.
fn respond<S>(events: S, access: Access) -> Response
where
    S: futures_util::Stream<Item = Event> + Send + 'static,
{
    use futures_util::StreamExt;
    let events = Box::pin(events);
    let stream =
        futures_util::stream::unfold((events, access), |(mut events, mut access)| async move {
            let e = events.next().await?;
            if !access.still_allowed().await {
                return None;
            }
            Some((Ok::<_, Infallible>(e), (events, access)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("ping"))
        .into_response()
}

/// A short-lived token that opens this workspace's stream, for EventSource (which cannot send
/// headers).
#[utoipa::path(post, path = "/workspaces/{id}/stream-token", tag = "live", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<StreamToken>), Errors))]
async fn create_workspace_stream_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<StreamToken>> {
    let id = parse_id(&id, "workspace")?;
    let (ws, user_id) = (id.clone(), user.id.clone());
    state
        .db
        .read(move |c| require_role(c, &ws, &user_id, Role::Viewer))
        .await?;
    let (token, expires_at) = state.auth.issue_stream(&user.id, Stream::Workspace(&id))?;
    Ok(ok(StreamToken { token, expires_at }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WorkspaceStreamQuery {
    /// From POST .../stream-token; or authenticate with headers instead.
    token: Option<String>,
}

/// What one open workspace stream sends: `hello`, then its notices as they come.
struct WorkspaceFeed {
    rx: live::Receiver<Notice>,
    /// The public URL runs' `url` is made from, as for this client's own requests.
    base: String,
    hello: bool,
}

impl WorkspaceFeed {
    /// The next event, or None when the stream ends (it fell too far behind, or shutdown).
    async fn next(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.hello) {
            return Some(Event::default().event("hello").data("{}"));
        }
        let notice = self.rx.recv().await?;
        Some(match &notice.change {
            Change::Run(exp) => {
                let base = &self.base;
                let json = notice.rendered(base, || {
                    // Serializing plain structs and strings cannot fail.
                    serde_json::to_string(&ExperimentOut::new((**exp).clone(), base))
                        .unwrap_or_default()
                });
                Event::default().event("run").data(&*json)
            }
            Change::Deleted { id } => Event::default()
                .event("deleted")
                .data(serde_json::json!({ "id": id }).to_string()),
            Change::Progress { json } => Event::default().event("progress").data(json),
        })
    }
}

/// Server-Sent Events about the workspace's runs: `hello` (`{}`) on connect, after which the
/// client fetches its table; `run` (the experiment, as `GET /experiments/{id}` answers) when one
/// is created, changed or moved in; `deleted` (`{"id"}`) when one is deleted or moved out;
/// `progress` (`{"id", "active_at", "metrics": {name: {"step", "value"}}, "results": {name:
/// value}}`, NaN/Inf as null) after points arrive, at most once a second per run; `: ping`
/// comments every 15 s. A stream that falls too far behind ends: reconnect and fetch again.
#[utoipa::path(get, path = "/workspaces/{id}/stream", tag = "live", security(("api_key" = []), ("bearer" = []), ()),
    params(("id" = uuid::Uuid, Path), WorkspaceStreamQuery),
    responses((status = 200, description = "text/event-stream of `hello`, `run`, `deleted` and `progress` events", content_type = "text/event-stream", body = SseEvent), Errors))]
async fn workspace_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WorkspaceStreamQuery>,
) -> Result<Response> {
    let id = parse_id(&id, "workspace")?;
    let user = match &q.token {
        Some(token) => {
            let user_id = state.auth.verify_stream(token, Stream::Workspace(&id))?;
            auth::enabled(&state, user_id).await?
        }
        None => auth::authenticate(&state, &headers).await?,
    };
    let (ws, user_id) = (id.clone(), user.id.clone());
    state
        .db
        .read(move |c| require_role(c, &ws, &user_id, Role::Viewer))
        .await?;
    // Watch first, then fence on the writer: a change whose write transaction did not see this
    // stream has committed by `hello`, so the table the client fetches then holds it.
    let rx = state.live.watch_workspace(&id, &user.id);
    state.db.write(|_| Ok(())).await?;
    let feed = WorkspaceFeed {
        rx,
        base: state.public_url(&headers),
        hello: true,
    };
    let access = Access::new(&state, &user.id, Watched::Workspace(id));
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let e = feed.next().await?;
        Some((e, feed))
    });
    Ok(respond(events, access))
}
