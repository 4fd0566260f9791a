//! The HTTP API under `/api`: one module per resource, each with its routes at the top (through
//! `routes!` only, so each is described). This module holds what they share: the router and its
//! description, the JSON envelope and extractors whose rejections are JSON.

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::budget::ByteBudget;
use crate::error::{Error, Result};
use crate::server::{AppState, BODY_LIMIT};

mod accounts;
mod api_keys;
mod artifacts;
mod experiments;
mod groups;
mod invitations;
pub(crate) mod logs;
mod openapi;
mod retention;
mod series;
mod stream;
mod workspaces;

/// Where `server::router` nests this API: every described path starts with it.
pub const ROOT: &str = "/api";

/// The API's routes and their description, made by the same `routes!` calls, so a route cannot
/// be served without being described. Each resource module's `routes()` registers its handlers
/// only through `routes!`; the paths in their `#[utoipa::path]` attributes are relative to
/// [`ROOT`]. `tests::every_route_is_described_and_every_description_is_served` checks the result.
fn described() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openapi::health))
        .routes(routes!(openapi::openapi_json))
        .merge(accounts::routes())
        .merge(api_keys::routes())
        .merge(workspaces::routes())
        .merge(retention::routes())
        .merge(experiments::routes())
        .merge(invitations::routes())
        .merge(logs::routes())
        .merge(series::routes())
        .merge(groups::routes())
        .merge(stream::routes())
        .merge(artifacts::routes())
}

pub fn router() -> Router<AppState> {
    let (routes, doc) = described().split_for_parts();
    // Serialized once, at start-up, from the very construction that made the routes. Another
    // router in the same process (tests) describes the same API, so the first one set stays.
    let json = serde_json::to_vec(&under_root(doc))
        .map(axum::body::Bytes::from)
        .map_err(|e| e.to_string());
    let _ = openapi::DESCRIPTION.set(json);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(no_store))
}

/// The API description as served, with the paths clients use.
pub fn description() -> utoipa::openapi::OpenApi {
    under_root(described().into_openapi())
}

/// `doc` with its paths under [`ROOT`], where the server nests the routes, and axum's
/// catch-all parameters (`{*path}`, the rest of the path, slashes and all) written as OpenAPI
/// parameters (`{path}`).
fn under_root(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (format!("{ROOT}{}", path.replace("{*", "{")), item))
        .collect();
    doc
}

/// API answers carry tokens, keys and private runs: no browser or proxy may keep a copy.
/// (A live stream's own `no-cache` stays.)
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> Error {
    Error::NotFound("no such API endpoint".into())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// The success envelope every endpoint answers with: `{"status": 200, "data": ...}`.
pub struct Reply<T>(StatusCode, T);

pub fn ok<T: Serialize>(data: T) -> Reply<T> {
    Reply(StatusCode::OK, data)
}

pub fn created<T: Serialize>(data: T) -> Reply<T> {
    Reply(StatusCode::CREATED, data)
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<T> {
            status: u16,
            data: T,
        }
        let body = Envelope {
            status: self.0.as_u16(),
            data: self.1,
        };
        match serde_json::to_vec(&body) {
            Ok(bytes) => {
                (self.0, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
            }
            Err(e) => Error::Internal(format!("serialize reply: {e}")).into_response(),
        }
    }
}

/// The most bytes of request bodies being read at once, over all requests: eight bodies at the
/// 32 MiB limit. A body that would pass it is refused with a 503 (come back in a moment) rather
/// than letting many concurrent uploads grow the process without bound.
pub const BODY_BUDGET: usize = 256 << 20;
/// A body must have arrived whole this long after its request's head: a client that stops
/// sending half-way gets a 408 and gives its share of [`BODY_BUDGET`] back. A 32 MiB body needs
/// only ~0.6 MB/s to make it.
pub const BODY_DEADLINE: Duration = Duration::from_secs(60);
/// Retry-After for a body refused because the budget is spent.
const BODY_RETRY_AFTER: u64 = 2;

/// A JSON body. Unlike axum's `Json`, every rejection is a JSON error, and a bare `NaN` or
/// `Infinity` token (what Python's json module writes) gets a message saying what to send.
/// This is the only place a request body is read (see [`read_body`] for its bounds).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        if !is_json(req.headers()) {
            return Err(Error::UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'".into(),
            ));
        }
        let bytes = read_body(req, &state.bodies).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Reads a whole body: at most [`BODY_LIMIT`] bytes (a larger Content-Length is refused before
/// a byte is read), charged to `budget` while it is read (a declared length up front, a chunked
/// body as it grows), and within [`BODY_DEADLINE`].
async fn read_body(req: Request, budget: &std::sync::Arc<ByteBudget>) -> Result<Vec<u8>> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "the body is over the {} MiB limit; send smaller batches",
            BODY_LIMIT >> 20
        ))
    };
    let busy = || Error::Unavailable {
        message: format!(
            "the server is already reading {} MiB of request bodies; try again shortly",
            budget.limit() >> 20
        ),
        retry_after: BODY_RETRY_AFTER,
    };
    // hyper has already refused a Content-Length that is not a number.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let declared = match declared {
        Some(n) if n > BODY_LIMIT as u64 => return Err(too_large()),
        Some(n) => Some(n as usize),
        None => None,
    };
    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    let mut charge = budget.charge();
    let mut body = Vec::new();
    let reserve = |body: &mut Vec<u8>, more: usize| {
        body.try_reserve_exact(more)
            .map_err(|e| Error::Internal(format!("request body buffer: {e}")))
    };
    if let Some(n) = declared {
        if !charge.grow_to(n) {
            return Err(busy());
        }
        reserve(&mut body, n)?;
    }
    let mut chunks = req.into_body().into_data_stream();
    loop {
        let next = tokio::time::timeout_at(deadline, chunks.next())
            .await
            .map_err(|_| {
                Error::RequestTimeout(format!(
                    "the body did not arrive within {} s; send it faster or in smaller batches",
                    BODY_DEADLINE.as_secs()
                ))
            })?;
        let Some(chunk) = next else {
            return Ok(body);
        };
        let chunk =
            chunk.map_err(|e| Error::bad_request(format!("could not read the body: {e}")))?;
        let needed = body.len() + chunk.len();
        if needed > BODY_LIMIT {
            return Err(too_large());
        }
        if needed > body.capacity() {
            // Grown here rather than by Vec, so the charge covers the capacity actually held.
            let capacity = needed.max(body.capacity() * 2).min(BODY_LIMIT);
            if !charge.grow_to(capacity) {
                return Err(busy());
            }
            let more = capacity - body.len();
            reserve(&mut body, more)?;
        }
        body.extend_from_slice(&chunk);
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The most array elements read through [`at_most`] in one body, all arrays together: a body's
/// size limit bounds its bytes, this bounds what they expand to once parsed (a 2-byte JSON step
/// is an 8-byte integer, a 22-byte log a ~100-byte struct). Three per point (step, value and
/// time) of the largest batch, with room for its results.
pub const MAX_ELEMENTS: usize = 3 * logs::MAX_BATCH + 10_000;

thread_local! {
    /// Elements [`at_most`] may still read in the body being parsed on this thread.
    static ELEMENTS_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_ELEMENTS) };
}

/// `#[serde(deserialize_with = "at_most::<_, _, N>")]`: an array of at most `N` elements,
/// refused as soon as it is longer (so it is never built whole), and counted against the
/// body's [`MAX_ELEMENTS`].
pub fn at_most<'de, D, T, const N: usize>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Elements<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Elements<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {N} elements")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::custom(format!(
                        "an array of more than {N} elements"
                    )));
                }
                let left = ELEMENTS_LEFT.get();
                if left == 0 {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_ELEMENTS} values in one body"
                    )));
                }
                ELEMENTS_LEFT.set(left - 1);
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Elements::<T, N>(std::marker::PhantomData))
}

/// [`at_most`] for an optional array.
pub fn at_most_opt<'de, D, T, const N: usize>(d: D) -> std::result::Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct AtMost<T, const N: usize>(Vec<T>);
    impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::Deserialize<'de> for AtMost<T, N> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            at_most::<D, T, N>(d).map(AtMost)
        }
    }
    Ok(<Option<AtMost<T, N>> as serde::Deserialize>::deserialize(d)?.map(|a| a.0))
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // JSON can carry U+0000 only as the escape \u0000; PostgreSQL text cannot hold it, and a
    // SQLite database holding it could not move to PostgreSQL: refused on both engines. Finding
    // the field means building the body as a serde_json::Value, which no element budget bounds,
    // so only a small body is searched; a larger one is refused as a whole.
    if holds_nul_escape(bytes) {
        let field = if bytes.len() <= NUL_SEARCH_LIMIT {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|value| nul_at(&value, String::new(), 0))
        } else {
            Some(String::new())
        };
        if let Some(field) = field {
            return Err(Error::bad_request(format!(
                "{} holds the character U+0000 (NUL), which Tora does not store; remove it",
                if field.is_empty() { "the body" } else { &field }
            )));
        }
    }
    ELEMENTS_LEFT.set(MAX_ELEMENTS);
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() && bare_non_finite_at(bytes, e.line(), e.column()) {
            Error::bad_request(format!(
                "{e}: bare NaN/Infinity is not JSON; send the value as the string \"NaN\", \"Infinity\" or \"-Infinity\""
            ))
        } else if e.is_eof() && bytes.iter().all(u8::is_ascii_whitespace) {
            Error::bad_request("the request body is empty; send a JSON object")
        } else {
            Error::bad_request(format!("invalid JSON body: {e}"))
        }
    })
}

/// Whether JSON text holds the escape `\u0000`: a backslash-u that is not itself an escaped
/// backslash followed by `u0000` (an odd run of backslashes before the `u`).
fn holds_nul_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// The largest body searched for the field holding U+0000 (see [`parse_json`]).
const NUL_SEARCH_LIMIT: usize = 1 << 20;

/// Where in `value` a string or a key holds U+0000, as a path (`tags[2]`, `metadata.note`);
/// `None` if nowhere. Depth-limited like the rest of the body's parsing.
fn nul_at(value: &serde_json::Value, at: String, depth: usize) -> Option<String> {
    use serde_json::Value;
    if depth > 128 {
        return None;
    }
    let key = |at: &str, k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match value {
        Value::String(s) => s.contains('\0').then_some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{at}[{i}]"), depth + 1)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(key(&at, &k.replace('\0', "\\u0000")))
            } else {
                nul_at(v, key(&at, k), depth + 1)
            }
        }),
        _ => None,
    }
}

/// Whether the syntax error at (line, column) sits on a NaN / Infinity / -Infinity token.
fn bare_non_finite_at(bytes: &[u8], line: usize, column: usize) -> bool {
    let Some(text) = std::str::from_utf8(bytes).ok() else {
        return false;
    };
    let Some(line_text) = text.lines().nth(line.saturating_sub(1)) else {
        return false;
    };
    // serde_json reports the column of the offending character (1-based); look around it.
    let start = column.saturating_sub(2).min(line_text.len());
    let rest = line_text.get(start..).unwrap_or("");
    let rest =
        rest.trim_start_matches(|c: char| c == ':' || c == ',' || c == '[' || c.is_whitespace());
    ["NaN", "Infinity", "-Infinity", "inf", "-inf", "nan"]
        .iter()
        .any(|t| rest.starts_with(t))
}

/// Path parameters with a JSON 400 on failure.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// Query parameters with a JSON 400 on failure, and a 400 naming the parameter for one that
/// holds U+0000 (`%00`), which PostgreSQL text cannot hold (refused on both engines, as in
/// bodies: see [`parse_json`]).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        if let Some(query) = parts.uri.query().filter(|q| q.contains("%00")) {
            let name = query
                .split('&')
                .find(|pair| pair.contains("%00"))
                .and_then(|pair| pair.split('=').next())
                .unwrap_or("");
            return Err(Error::bad_request(format!(
                "the query parameter '{}' holds the character U+0000 (NUL, %00), which Tora does not store; remove it",
                name.replace("%00", "\\u0000")
            )));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// A text cell of a CSV download as a spreadsheet will not run it: a cell starting with `=`,
/// `+`, `-` or `@` (a formula in Excel, LibreOffice and Google Sheets), or with a tab or
/// carriage return, gets a leading `'`, which spreadsheets show as text and do not display.
/// Only text (names, tags, text hyperparameters) goes through here; numbers are written as
/// numbers.
pub fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// `name` as a download's file name (without extension): ASCII letters, digits, `-_.`, the
/// rest as `_`.
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses a public id (a UUID) from a path or body, naming `what` in the error.
pub fn parse_id(raw: &str, what: &str) -> Result<String> {
    uuid::Uuid::try_parse(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| Error::bad_request(format!("'{raw}' is not a valid {what} id (a UUID)")))
}

/// Trims `raw` and checks it is 1..=max characters with no control characters.
pub fn clean_name(raw: &str, what: &str, max: usize) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::bad_request(format!("{what} must not be empty")));
    }
    if name.chars().count() > max {
        return Err(Error::bad_request(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    #[test]
    fn nul_is_refused_in_bodies_of_any_size_but_an_escaped_backslash_is_not() {
        let small = parse_json::<serde_json::Value>(br#"{"tags": ["a", "b\u0000"]}"#);
        assert!(format!("{:?}", small.unwrap_err()).contains("tags[1]"));
        // The text \u0000 (a backslash, then u0000) is not the character.
        let text = parse_json::<serde_json::Value>(br#"{"note": "C:\\u0000"}"#).unwrap();
        assert_eq!(text["note"], "C:\\u0000");
        // A body too large to search for the field is refused as a whole, without building it.
        let mut big = br#"{"pad": ""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', NUL_SEARCH_LIMIT));
        big.extend_from_slice(br#"", "n": "\u0000"}"#);
        let err = format!("{:?}", parse_json::<serde_json::Value>(&big).unwrap_err());
        assert!(err.contains("the body holds the character U+0000"), "{err}");
    }

    /// Routes served on purpose without a description, as (method, path under [`ROOT`], why).
    /// None today: even the never-ending stream, which schemathesis skips, is described.
    const UNDESCRIBED: &[(&str, &str, &str)] = &[];

    /// Every (method, path) the router serves. axum has no API that lists routes, but its
    /// `Debug` output names each route's path and, per method, whether a handler is there
    /// (`None` when not). Should an axum upgrade change that output, the comparison below fails
    /// rather than passes: the described set is never empty. A route that is a whole service
    /// (`route_service`, `nest_service`) answers every method and is listed as `ANY`.
    fn served(router: &Router<AppState>) -> BTreeSet<(String, String)> {
        let text = format!("{router:?}");
        // The fallback router's entries are not paths a client can name.
        let (routes, _) = text
            .split_once(", fallback_router:")
            .expect("Router's Debug output names its fallback_router");
        let (routes, paths) = routes
            .split_once("node: Node { paths: ")
            .expect("Router's Debug output names its paths");
        let path_of: HashMap<&str, &str> = paths
            .split("RouteId(")
            .skip(1)
            .map(|entry| {
                let (id, rest) = entry.split_once(')').expect("RouteId(N)");
                (id, rest.split('"').nth(1).expect("a quoted path"))
            })
            .collect();
        let mut out = BTreeSet::new();
        for entry in routes.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once(')').expect("RouteId(N)");
            let path = path_of[id].replace("{*", "{");
            let Some((_, methods)) = rest.split_once("MethodRouter { ") else {
                out.insert(("ANY".to_string(), path));
                continue;
            };
            let methods = methods.split(", fallback:").next().unwrap_or("");
            for field in methods.split(", ") {
                let (method, handler) = field.split_once(": ").expect("method: handler");
                if handler != "None" {
                    out.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn described_operations(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let path = path
                .strip_prefix(ROOT)
                .unwrap_or_else(|| panic!("{path} is not under {ROOT}"));
            for (method, operation) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ] {
                if operation.is_some() {
                    out.insert((method.to_string(), path.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_described_and_every_description_is_served() {
        let mut served = served(&router());
        for (method, path, _why) in UNDESCRIBED {
            assert!(
                served.remove(&(method.to_string(), path.to_string())),
                "{method} {path} is listed as undescribed but not served"
            );
        }
        let described = described_operations(&description());
        assert!(described.len() > 40, "{described:?}");
        let undescribed: Vec<_> = served.difference(&described).collect();
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(
            undescribed.is_empty() && unserved.is_empty(),
            "served but not described (register it with routes!, or list it in UNDESCRIBED with \
             the reason): {undescribed:?}; described but not served: {unserved:?}"
        );
    }

    #[test]
    fn the_description_keeps_its_security_schemes_and_error_body() {
        let doc = serde_json::to_value(description()).unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["name"], "x-api-key");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        let ingest = &doc["paths"]["/api/experiments/{id}/points"]["post"];
        assert_eq!(ingest["tags"], serde_json::json!(["logs"]), "{ingest}");
        assert!(ingest["security"].is_array(), "{ingest}");

        // What /api/openapi.json serves is this description, made along with the routes.
        let _ = router();
        let served = openapi::DESCRIPTION.get().unwrap().as_ref().unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(served).unwrap(),
            doc
        );
    }

    #[test]
    fn json_nested_past_128_levels_is_a_400_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_json::<serde_json::Value>(fine.as_bytes()).is_ok());
    }

    #[test]
    fn bare_nan_is_recognised_with_its_position() {
        let body = br#"{"logs":[{"name":"loss","value":NaN,"step":1}]}"#;
        let err = parse_json::<serde_json::Value>(body).unwrap_err();
        assert!(
            err.to_string().contains("send the value as the string"),
            "{err}"
        );
        let err = parse_json::<serde_json::Value>(br#"{"value": -Infinity}"#).unwrap_err();
        assert!(err.to_string().contains("\"NaN\""), "{err}");
        let err = parse_json::<serde_json::Value>(br#"{"value": nope}"#).unwrap_err();
        assert!(!err.to_string().contains("\"NaN\""), "{err}");
    }
}
