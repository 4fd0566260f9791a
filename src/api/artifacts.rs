//! Artifacts: files kept with a run, through Tora's API (`/experiments/{id}/artifacts`) and
//! MLflow's artifact proxy (`/2.0/mlflow-artifacts/artifacts`), over one store
//! (`store::artifacts`). Uploads and downloads stream a chunk at a time: a file is never whole
//! in memory, and the single writer is held only for one chunk's short transaction.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::experiments::authorize;
#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Path, Query, Reply, created, ok};
use crate::artifact_files::ArtifactDir;
use crate::auth::AuthUser;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::artifacts::{self, Artifact, CHUNK};
use crate::store::experiments::Experiment;
use crate::store::workspaces::Role;
use crate::time::{now_ms, rfc3339};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_artifacts))
        .routes(routes!(upload, download, delete))
        .routes(routes!(mlflow_list))
        .routes(routes!(mlflow_upload, mlflow_download, mlflow_delete))
}

/// The most files one run may keep.
pub const MAX_PER_RUN: i64 = 10_000;
/// The longest artifact path, in bytes.
pub const MAX_PATH: usize = 1024;
/// An upload whose client sends nothing for this long gets a 408 and stores nothing.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// Checks a client's artifact path: relative, `/`-separated, no empty, `.` or `..` segment,
/// no control character, at most [`MAX_PATH`] bytes.
pub fn clean_path(raw: &str) -> Result<String> {
    let bad =
        |why: &str| Error::bad_request(format!("artifact path '{}': {why}", raw.escape_debug()));
    if raw.is_empty() {
        return Err(bad("must not be empty"));
    }
    if raw.len() > MAX_PATH {
        return Err(Error::bad_request(format!(
            "the artifact path is longer than {MAX_PATH} bytes"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    if raw.starts_with('/') {
        return Err(bad("must be relative, not start with /"));
    }
    for segment in raw.split('/') {
        match segment {
            "" => return Err(bad("must not have empty segments (// or a trailing /)")),
            "." | ".." => return Err(bad("must not have . or .. segments")),
            _ => {}
        }
    }
    Ok(raw.to_string())
}

#[derive(Serialize, utoipa::ToSchema)]
struct ArtifactOut {
    path: String,
    size: i64,
    /// Hex SHA-256 of the bytes.
    sha256: String,
    /// RFC 3339.
    created_at: String,
}

impl From<Artifact> for ArtifactOut {
    fn from(a: Artifact) -> Self {
        ArtifactOut {
            path: a.path,
            size: a.size,
            sha256: hex(&a.sha256),
            created_at: rfc3339(a.created_at),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An upload in progress: its staged row is dropped unless it was published, whether the
/// upload failed or its request was dropped (the client went away).
struct Staged {
    db: Db,
    id: i64,
    published: bool,
    /// Set when the bytes go to a file there.
    dir: Option<Arc<ArtifactDir>>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        let (db, id, dir) = (self.db.clone(), self.id, self.dir.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(purge(db, id, dir));
        }
    }
}

/// Chunks deleted per write transaction when a file goes: 16 MiB, a few milliseconds.
const PURGE_CHUNKS: i64 = 64;

/// Deletes an unpublished (or never published) file a few chunks per short write, so deleting
/// a 1 GiB file never holds the writer for long; with `dir`, then sweeps its file away. What a
/// failure leaves is staged, and start-up removes it.
async fn purge(db: Db, id: i64, dir: Option<Arc<ArtifactDir>>) {
    loop {
        match db
            .write(move |tx| artifacts::purge(tx, id, PURGE_CHUNKS))
            .await
        {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                eprintln!("error: could not delete artifact {id}: {e}");
                break;
            }
        }
    }
    // Its row is gone (or will be at the next start): the sweep removes the file.
    if let Some(dir) = dir {
        dir.sweep_soon();
    }
}

fn too_large(what: &str, limit: u64) -> Error {
    Error::PayloadTooLarge(format!(
        "{what} limit is {} bytes ({}); nothing was stored",
        limit,
        human(limit)
    ))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Stores `body` as `path` of the experiment `raw_id` names, streamed in chunks. Shared by both
/// APIs. The per-file limit is checked against Content-Length before a byte is read and again
/// as bytes arrive; the workspace limit before, at every chunk and at publishing.
async fn store_upload(
    state: &AppState,
    user: AuthUser,
    raw_id: String,
    workspace: Option<String>,
    path: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Artifact> {
    let path = clean_path(&path)?;
    let max_file = state.config.max_artifact_size;
    let max_ws = state.config.max_workspace_artifacts;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let check_path = path.clone();
    let exp: Experiment = state
        .db
        .read(move |c| {
            let exp = authorize(c, &raw_id, &user.id, Role::Editor)?;
            if workspace.as_deref().is_some_and(|w| w != exp.workspace_id) {
                return Err(Error::not_found("experiment"));
            }
            if artifacts::get(c, exp.rowid, &check_path)?.is_none()
                && artifacts::count(c, exp.rowid)? >= MAX_PER_RUN
            {
                return Err(Error::bad_request(format!(
                    "this run already keeps {MAX_PER_RUN} artifacts, the most one run may; delete some first"
                )));
            }
            if let Some(n) = declared {
                let used = artifacts::workspace_bytes(c, &exp.workspace_id)? as u64;
                if used.saturating_add(n) > max_ws {
                    return Err(too_large("the workspace's artifact", max_ws));
                }
            }
            Ok(exp)
        })
        .await?;
    if declared.is_some_and(|n| n > max_file) {
        return Err(too_large("the per-file artifact", max_file));
    }
    // The chunk this upload holds, from the budget all request bodies share.
    let mut charge = state.bodies.charge();
    if !charge.grow_to(CHUNK) {
        return Err(Error::Unavailable {
            message: "the server is already reading many request bodies; try again shortly".into(),
            retry_after: 2,
        });
    }
    let rowid = exp.rowid;
    let now = now_ms();
    let dir = state.artifact_dir.clone();
    let external = dir.is_some();
    let id = state
        .db
        .write(move |tx| artifacts::stage(tx, rowid, now, external))
        .await?;
    let mut staged = Staged {
        db: state.db.clone(),
        id,
        published: false,
        dir: dir.clone(),
    };
    // The file is made after its staged row, so a sweep never takes an upload's file.
    let mut file = match &dir {
        Some(dir) => {
            let dir = dir.clone();
            Some(blocking(move || dir.create(id)).await?)
        }
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut seq = 0i64;
    let mut total: u64 = 0;
    let mut frames = body.into_data_stream();
    loop {
        let next = tokio::time::timeout(UPLOAD_IDLE, frames.next())
            .await
            .map_err(|_| {
                Error::RequestTimeout(format!(
                    "the upload sent nothing for {} s; nothing was stored",
                    UPLOAD_IDLE.as_secs()
                ))
            })?;
        let done = match next {
            None => true,
            Some(Ok(bytes)) => {
                total += bytes.len() as u64;
                if total > max_file {
                    return Err(too_large("the per-file artifact", max_file));
                }
                hasher.update(&bytes);
                let mut rest: &[u8] = &bytes;
                while !rest.is_empty() {
                    let take = (CHUNK - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == CHUNK {
                        let data = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK));
                        file = write_chunk(state, &exp, id, seq, data, max_ws, file).await?;
                        seq += 1;
                    }
                }
                false
            }
            Some(Err(e)) => {
                return Err(Error::bad_request(format!(
                    "the upload broke off ({e}); nothing was stored"
                )));
            }
        };
        if done {
            break;
        }
    }
    if !buf.is_empty() {
        file = write_chunk(state, &exp, id, seq, buf, max_ws, file).await?;
    }
    if let Some(f) = file {
        // On disk before the row that names it is published.
        blocking(move || {
            f.sync_all()
                .map_err(|e| Error::Internal(format!("cannot sync artifact file {id}: {e}")))
        })
        .await?;
    }
    if declared.is_some_and(|n| n != total) {
        return Err(Error::bad_request(format!(
            "the body had {total} bytes, not the {} its Content-Length said; nothing was stored",
            declared.unwrap_or_default()
        )));
    }
    let digest = hasher.finalize().to_vec();
    let published = state
        .db
        .write(move |tx| {
            if artifacts::get(tx, rowid, &path)?.is_none()
                && artifacts::count(tx, rowid)? >= MAX_PER_RUN
            {
                return Err(Error::bad_request(format!(
                    "this run already keeps {MAX_PER_RUN} artifacts, the most one run may; delete some first"
                )));
            }
            artifacts::publish(tx, rowid, id, &path, &digest, now_ms())
        })
        .await?;
    staged.published = true;
    drop(charge);
    let (published, replaced) = published;
    if let Some(old) = replaced {
        tokio::spawn(purge(state.db.clone(), old, dir));
    }
    Ok(published)
}

/// One chunk in one short write transaction (with `file`, the chunk is appended to it and the
/// transaction only counts its size), refused (413) if the workspace would pass its limit.
async fn write_chunk(
    state: &AppState,
    exp: &Experiment,
    staged: i64,
    seq: i64,
    data: Vec<u8>,
    max_ws: u64,
    file: Option<std::fs::File>,
) -> Result<Option<std::fs::File>> {
    let workspace = exp.workspace_id.clone();
    let len = data.len();
    let (data, file) = match file {
        Some(mut f) => {
            let f = blocking(move || {
                use std::io::Write;
                f.write_all(&data)
                    .map_err(|e| Error::Internal(format!("cannot write artifact file: {e}")))?;
                Ok(f)
            })
            .await?;
            (None, Some(f))
        }
        None => (Some(data), None),
    };
    state
        .db
        .write(move |tx| {
            let used = artifacts::workspace_bytes(tx, &workspace)? as u64;
            if used + len as u64 > max_ws {
                return Err(too_large("the workspace's artifact", max_ws));
            }
            match &data {
                Some(data) => artifacts::append(tx, staged, seq, data),
                None => artifacts::grow(tx, staged, len as i64),
            }
        })
        .await?;
    Ok(file)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file task failed: {e}")))?
}

/// A file's bytes as a response body read one chunk per short read (see `logs::paged`): a
/// slow client holds no connection and only the chunk it has not taken. A file replaced or
/// deleted mid-download cuts the response short.
fn stream_file(state: &AppState, file: &Artifact) -> Result<Body> {
    let place = super::logs::download_place(state)?;
    if file.external {
        let dir = state.artifact_dir.clone().ok_or_else(|| {
            Error::Internal(format!(
                "artifact {} is kept in an --artifacts-dir this server was not started with",
                file.id
            ))
        })?;
        // Opened now: a file replaced or deleted later is still read whole (its name goes,
        // its bytes stay until closed).
        let handle = dir.open_file(file.id)?;
        let left = file.size as u64;
        let stream = futures_util::stream::unfold(
            (Some(handle), left, place),
            |(handle, left, place)| async move {
                let f = handle?;
                if left == 0 {
                    return None;
                }
                let take = left.min(CHUNK as u64) as usize;
                let read = blocking(move || {
                    use std::io::Read;
                    let mut f = f;
                    let mut buf = vec![0u8; take];
                    f.read_exact(&mut buf)
                        .map_err(|e| Error::Internal(format!("cannot read artifact file: {e}")))?;
                    Ok((f, buf))
                })
                .await;
                match read {
                    Ok((f, buf)) => {
                        Some((Ok(Bytes::from(buf)), (Some(f), left - take as u64, place)))
                    }
                    Err(e) => Some((Err(std::io::Error::other(e.to_string())), (None, 0, place))),
                }
            },
        );
        return Ok(Body::from_stream(stream));
    }
    let chunks = (file.size as u64).div_ceil(CHUNK as u64) as i64;
    let start = (state.db.clone(), place, 0i64, file.id);
    let stream = futures_util::stream::unfold(start, move |(db, place, seq, id)| async move {
        if seq >= chunks {
            return None;
        }
        let read = db.read_page(move |c| artifacts::chunk(c, id, seq)).await;
        let item = match read {
            Ok(Some(data)) => Ok(Bytes::from(data)),
            Ok(None) => Err(std::io::Error::other(
                "the file was replaced or deleted during the download",
            )),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let next = if item.is_ok() { seq + 1 } else { chunks };
        Some((item, (db, place, next, id)))
    });
    Ok(Body::from_stream(stream))
}

/// The media type of a file by its extension, and whether a browser may show it inline.
fn media_type(path: &str) -> (&'static str, bool) {
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => ("image/png", true),
        "jpg" | "jpeg" => ("image/jpeg", true),
        "gif" => ("image/gif", true),
        "webp" => ("image/webp", true),
        "txt" | "log" | "py" | "yaml" | "yml" | "toml" | "cfg" | "ini" => {
            ("text/plain; charset=utf-8", true)
        }
        "md" => ("text/markdown; charset=utf-8", true),
        "csv" => ("text/csv; charset=utf-8", true),
        "json" => ("application/json", true),
        // Anything else, HTML and SVG included, is only ever a download.
        _ => ("application/octet-stream", false),
    }
}

fn download_response(state: &AppState, file: &Artifact, inline: bool) -> Result<Response> {
    let (media, showable) = media_type(&file.path);
    let name = super::file_name(file.path.rsplit('/').next().unwrap_or("artifact"));
    let disposition = if inline && showable {
        format!("inline; filename=\"{name}\"")
    } else {
        format!("attachment; filename=\"{name}\"")
    };
    let body = stream_file(state, file)?;
    Ok((
        [
            (header::CONTENT_TYPE, media.to_string()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            (
                header::HeaderName::from_static("x-artifact-sha256"),
                hex(&file.sha256),
            ),
        ],
        body,
    )
        .into_response())
}

async fn find(
    state: &AppState,
    user: AuthUser,
    raw_id: String,
    workspace: Option<String>,
    path: String,
) -> Result<Artifact> {
    let path = clean_path(&path)?;
    state
        .db
        .read(move |c| {
            let exp = authorize(c, &raw_id, &user.id, Role::Viewer)?;
            if workspace.as_deref().is_some_and(|w| w != exp.workspace_id) {
                return Err(Error::not_found("experiment"));
            }
            artifacts::get(c, exp.rowid, &path)?.ok_or_else(|| Error::not_found("artifact"))
        })
        .await
}

async fn remove(
    state: &AppState,
    user: AuthUser,
    raw_id: String,
    workspace: Option<String>,
    path: String,
) -> Result<()> {
    let path = clean_path(&path)?;
    let id = state
        .db
        .write(move |tx| {
            let exp = authorize(tx, &raw_id, &user.id, Role::Editor)?;
            if workspace.as_deref().is_some_and(|w| w != exp.workspace_id) {
                return Err(Error::not_found("experiment"));
            }
            artifacts::unpublish(tx, exp.rowid, &path)?.ok_or_else(|| Error::not_found("artifact"))
        })
        .await?;
    tokio::spawn(purge(state.db.clone(), id, state.artifact_dir.clone()));
    Ok(())
}

/// Stores the raw request body as the file at `path` (replacing one already there): streamed,
/// with its SHA-256 computed on the way. At most `--max-artifact-size` bytes, and the workspace
/// keeps at most `--max-workspace-artifacts`.
#[utoipa::path(put, path = "/experiments/{id}/artifacts/{*path}", tag = "artifacts", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("path" = String, Path, description = "relative, /-separated")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, body = Envelope<ArtifactOut>), Errors))]
async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<ArtifactOut>> {
    let file = store_upload(&state, user, id, None, path, &headers, body).await?;
    Ok(created(file.into()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DownloadQuery {
    /// 1: show an image or text file in the browser instead of downloading it.
    inline: Option<u8>,
}

/// The file's bytes, streamed.
#[utoipa::path(get, path = "/experiments/{id}/artifacts/{*path}", tag = "artifacts", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("path" = String, Path), DownloadQuery), responses((status = 200, description = "the file's bytes", content_type = "*/*", body = Vec<u8>), Errors))]
async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response> {
    let file = find(&state, user, id, None, path).await?;
    download_response(&state, &file, q.inline == Some(1))
}

#[utoipa::path(delete, path = "/experiments/{id}/artifacts/{*path}", tag = "artifacts", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path), ("path" = String, Path)), responses((status = 200, body = Envelope<Deleted>), Errors))]
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, path)): Path<(String, String)>,
) -> Result<Reply<Deleted>> {
    remove(&state, user, id, None, path.clone()).await?;
    Ok(ok(Deleted { deleted: path }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Deleted {
    deleted: String,
}

/// The run's files, by path.
#[utoipa::path(get, path = "/experiments/{id}/artifacts", tag = "artifacts", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<Vec<ArtifactOut>>), Errors))]
async fn list_artifacts(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Vec<ArtifactOut>>> {
    let files = state
        .db
        .read(move |c| {
            let exp = authorize(c, &id, &user.id, Role::Viewer)?;
            artifacts::list(c, exp.rowid)
        })
        .await?;
    Ok(ok(files.into_iter().map(ArtifactOut::from).collect()))
}

// ---- MLflow's artifact proxy ------------------------------------------------------------

/// MLflow's error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MlflowErrorBody {
    /// Such as RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE, UNAUTHENTICATED
    error_code: String,
    message: String,
}

/// The errors an MLflow endpoint may answer with, in MLflow's shape.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only describes responses; never built
pub enum MlflowErrors {
    /// INVALID_PARAMETER_VALUE: a malformed path or id
    #[response(status = 400)]
    BadRequest(MlflowErrorBody),
    /// UNAUTHENTICATED: no valid credentials
    #[response(status = 401)]
    Unauthorized(MlflowErrorBody),
    /// PERMISSION_DENIED: a member whose role is too weak
    #[response(status = 403)]
    Forbidden(MlflowErrorBody),
    /// RESOURCE_DOES_NOT_EXIST: unknown, or not visible to the caller
    #[response(status = 404)]
    NotFound(MlflowErrorBody),
    /// The upload stalled
    #[response(status = 408)]
    Timeout(MlflowErrorBody),
    /// RESOURCE_EXHAUSTED: over the per-file or per-workspace limit
    #[response(status = 413)]
    PayloadTooLarge(MlflowErrorBody),
    /// TEMPORARILY_UNAVAILABLE: the server is busy; see Retry-After
    #[response(status = 503)]
    Unavailable(MlflowErrorBody),
}

/// An error in MLflow's shape (`error::MlflowError`, shared with the tracking API).
pub use crate::error::MlflowError;

/// The caller of an MLflow call, as the tracking API signs it in (`mlflow_api::Caller`): Tora's
/// `x-api-key`, `Authorization: Bearer` with an API key (MLFLOW_TRACKING_TOKEN) or an access
/// token, or Basic e-mail and password.
pub struct MlflowUser(pub AuthUser);

impl axum::extract::FromRequestParts<AppState> for MlflowUser {
    type Rejection = MlflowError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> std::result::Result<Self, MlflowError> {
        let caller = crate::mlflow_api::Caller::from_request_parts(parts, state).await?;
        Ok(MlflowUser(caller.into()))
    }
}

/// `<experiment_id>/<run_id>/artifacts[/<path>]` as (workspace to check, run, path).
fn mlflow_location(raw: &str) -> Result<(Option<String>, String, Option<String>)> {
    let raw = raw.trim_start_matches('/');
    let mut parts = raw.splitn(4, '/');
    let (Some(ws), Some(run), Some("artifacts")) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::bad_request(format!(
            "'{raw}' is not <experiment_id>/<run_id>/artifacts[/<path>]"
        )));
    };
    let ws = if ws == "0" {
        None
    } else {
        Some(super::parse_id(ws, "MLflow experiment")?)
    };
    let rest = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
    Ok((ws, run.to_string(), rest))
}

fn mlflow_file(raw: &str) -> Result<(Option<String>, String, String)> {
    let (ws, run, path) = mlflow_location(raw)?;
    let path = path.ok_or_else(|| Error::bad_request("name a file after /artifacts/"))?;
    Ok((ws, run, path))
}

/// MLflow's `log_artifact`: the raw body as the file.
#[utoipa::path(put, path = "/2.0/mlflow-artifacts/artifacts/{*path}", tag = "mlflow", security(("api_key" = []), ("bearer" = [])), params(("path" = String, Path, description = "<experiment_id>/<run_id>/artifacts/<path>")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "{}", body = Object), MlflowErrors))]
async fn mlflow_upload(
    State(state): State<AppState>,
    MlflowUser(user): MlflowUser,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> std::result::Result<axum::Json<serde_json::Value>, MlflowError> {
    let (ws, run, path) = mlflow_file(&raw)?;
    store_upload(&state, user, run, ws, path, &headers, body).await?;
    Ok(axum::Json(serde_json::json!({})))
}

#[utoipa::path(get, path = "/2.0/mlflow-artifacts/artifacts/{*path}", tag = "mlflow", security(("api_key" = []), ("bearer" = [])), params(("path" = String, Path, description = "<experiment_id>/<run_id>/artifacts/<path>")), responses((status = 200, description = "the file's bytes", content_type = "*/*", body = Vec<u8>), MlflowErrors))]
async fn mlflow_download(
    State(state): State<AppState>,
    MlflowUser(user): MlflowUser,
    Path(raw): Path<String>,
) -> std::result::Result<Response, MlflowError> {
    let (ws, run, path) = mlflow_file(&raw)?;
    let file = find(&state, user, run, ws, path).await?;
    Ok(download_response(&state, &file, false)?)
}

#[utoipa::path(delete, path = "/2.0/mlflow-artifacts/artifacts/{*path}", tag = "mlflow", security(("api_key" = []), ("bearer" = [])), params(("path" = String, Path, description = "<experiment_id>/<run_id>/artifacts/<path>")), responses((status = 200, description = "{}", body = Object), MlflowErrors))]
async fn mlflow_delete(
    State(state): State<AppState>,
    MlflowUser(user): MlflowUser,
    Path(raw): Path<String>,
) -> std::result::Result<axum::Json<serde_json::Value>, MlflowError> {
    let (ws, run, path) = mlflow_file(&raw)?;
    remove(&state, user, run, ws, path).await?;
    Ok(axum::Json(serde_json::json!({})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MlflowListQuery {
    /// `<experiment_id>/<run_id>/artifacts[/<dir>]`
    path: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct FileInfo {
    /// The name within the listed directory.
    path: String,
    is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_size: Option<i64>,
}

/// The files and directories directly inside a run's artifact directory, as MLflow's proxy
/// lists them.
#[utoipa::path(get, path = "/2.0/mlflow-artifacts/artifacts", tag = "mlflow", security(("api_key" = []), ("bearer" = [])), params(MlflowListQuery), responses((status = 200, description = "{\"files\": [{path, is_dir, file_size}]}", body = Object), MlflowErrors))]
async fn mlflow_list(
    State(state): State<AppState>,
    MlflowUser(user): MlflowUser,
    Query(q): Query<MlflowListQuery>,
) -> std::result::Result<axum::Json<serde_json::Value>, MlflowError> {
    let raw = q.path.unwrap_or_default();
    let (ws, run, dir) = mlflow_location(&raw)?;
    let dir = match dir {
        Some(d) => Some(clean_path(d.trim_end_matches('/'))?),
        None => None,
    };
    let files = state
        .db
        .read(move |c| {
            let exp = authorize(c, &run, &user.id, Role::Viewer)?;
            if ws.as_deref().is_some_and(|w| w != exp.workspace_id) {
                return Err(Error::not_found("experiment"));
            }
            artifacts::list(c, exp.rowid)
        })
        .await?;
    let prefix = dir.map(|d| format!("{d}/")).unwrap_or_default();
    let mut out: Vec<FileInfo> = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let Some(rest) = f.path.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((sub, _)) => {
                if dirs.insert(sub.to_string()) {
                    out.push(FileInfo {
                        path: sub.to_string(),
                        is_dir: true,
                        file_size: None,
                    });
                }
            }
            None => out.push(FileInfo {
                path: rest.to_string(),
                is_dir: false,
                file_size: Some(f.size),
            }),
        }
    }
    if out.is_empty() {
        return Ok(axum::Json(serde_json::json!({})));
    }
    Ok(axum::Json(serde_json::json!({ "files": out })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_are_relative_and_plain() {
        for good in ["model.pkl", "plots/loss.png", "a b/ü.txt", "x/.hidden"] {
            assert_eq!(clean_path(good).unwrap(), good);
        }
        let long = "a".repeat(MAX_PATH + 1);
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            "./a",
            "a/.",
            "a\0b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(clean_path(bad).is_err(), "{bad:?}");
        }
        assert!(clean_path(&"a".repeat(MAX_PATH)).is_ok());
    }

    #[test]
    fn only_images_and_text_may_show_inline() {
        assert_eq!(media_type("plots/a.PNG"), ("image/png", true));
        assert!(!media_type("page.html").1);
        assert!(!media_type("logo.svg").1);
        assert_eq!(media_type("noext").0, "application/octet-stream");
    }
}
