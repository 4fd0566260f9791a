//! The one error type. Every failure a request can meet becomes an [`Error`], and this file is
//! the only place that turns one into an HTTP status and a JSON body.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    Conflict(String),
    /// What was asked for existed and was removed on purpose (a run's raw points, compacted to
    /// aggregates by its workspace's retention policy).
    Gone(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// Too many tries; come back after `retry_after` seconds.
    TooManyRequests {
        retry_after: u64,
    },
    /// The Host header names a host this server does not answer for (DNS rebinding).
    MisdirectedRequest(String),
    /// The client took too long to send its request (a slow body).
    RequestTimeout(String),
    /// The server is at a limit it chose (connections, bytes in flight, database readers, a
    /// query's time budget); come back after `retry_after` seconds.
    Unavailable {
        message: String,
        retry_after: u64,
    },
    /// The disk holding the database (or the artifacts directory) is full: nothing of the
    /// request was stored, and the same request succeeds once space is freed. Holds the cause,
    /// for the log.
    StorageFull(String),
    /// A bug or an environment failure: logged in full, sent to the client as a bare 500.
    Internal(String),
}

impl Error {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn not_found(what: &str) -> Self {
        Error::NotFound(format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "BAD_REQUEST",
            Error::Unauthorized(_) => "UNAUTHORIZED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::NotFound(_) => "NOT_FOUND",
            Error::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Error::Conflict(_) => "CONFLICT",
            Error::Gone(_) => "GONE",
            Error::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Error::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Error::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            Error::MisdirectedRequest(_) => "MISDIRECTED_REQUEST",
            Error::RequestTimeout(_) => "REQUEST_TIMEOUT",
            Error::Unavailable { .. } => "SERVICE_UNAVAILABLE",
            Error::StorageFull(_) => "STORAGE_FULL",
            Error::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Gone(m)
            | Error::PayloadTooLarge(m)
            | Error::UnsupportedMediaType(m)
            | Error::MisdirectedRequest(m)
            | Error::RequestTimeout(m)
            | Error::Unavailable { message: m, .. } => m,
            Error::StorageFull(_) => {
                "the server's disk is full: nothing of this request was stored, and everything stored before is safe; retry once the server's admin has freed space (reads still work)"
            }
            Error::TooManyRequests { .. } => {
                "too many attempts; wait and try again (see Retry-After)"
            }
            Error::MethodNotAllowed => "method not allowed on this path",
            // The cause stays in the server log; a client learns nothing about internals.
            Error::Internal(_) => "internal server error",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Internal(cause) => write!(f, "internal error: {cause}"),
            other => write!(f, "{}: {}", other.code(), other.message()),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The error in plain words, for the command line: the message without the status name,
    /// and an internal failure's cause (the person running the command is the admin).
    pub fn plain(&self) -> String {
        match self {
            Error::Internal(cause) => cause.clone(),
            Error::StorageFull(cause) => {
                format!(
                    "the disk is full ({cause}); nothing was changed: free space and run it again"
                )
            }
            other => other.message().to_string(),
        }
    }

    /// What the admin must know of a failure sent to a client: the causes clients never see.
    fn log(&self) {
        match self {
            Error::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            Error::StorageFull(cause) => tracing::error!(
                cause = %cause,
                "disk full: a write was refused (nothing of it stored); writes succeed again once space is freed"
            ),
            _ => {}
        }
    }

    fn body(&self) -> serde_json::Value {
        json!({
            "status": self.status().as_u16(),
            "error": self.code(),
            "message": self.message(),
        })
    }

    /// The whole HTTP/1.1 response, bytes ready for a socket, closing the connection: for the
    /// one answer given before any request is read (a connection past the cap).
    pub fn raw_response(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.body().to_string();
        let retry = match self {
            Error::TooManyRequests { retry_after } | Error::Unavailable { retry_after, .. } => {
                format!("retry-after: {retry_after}\r\n")
            }
            _ => String::new(),
        };
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{retry}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if let Error::TooManyRequests { retry_after } | Error::Unavailable { retry_after, .. } =
            self
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
        }
        response
    }
}

/// A failure under `/api/2.0/mlflow`, answered in MLflow's shape
/// (`{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ..}`) with the status MLflow's own
/// server gives, so the official client raises its usual `MlflowException`s.
#[derive(Debug)]
pub enum MlflowError {
    Tora(Error),
    /// A path under the MLflow prefix that Tora does not serve (the model registry, traces...).
    EndpointNotFound(String),
}

impl From<Error> for MlflowError {
    fn from(e: Error) -> Self {
        MlflowError::Tora(e)
    }
}

impl MlflowError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let e = match self {
            MlflowError::EndpointNotFound(_) => {
                return (StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND");
            }
            MlflowError::Tora(e) => e,
        };
        match e {
            Error::BadRequest(_) | Error::UnsupportedMediaType(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "ENDPOINT_NOT_FOUND"),
            Error::Conflict(_) => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            // MLflow has no code for it; its client does not retry a 400 with this message.
            Error::Gone(_) => (StatusCode::BAD_REQUEST, "INVALID_STATE"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED"),
            Error::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "REQUEST_LIMIT_EXCEEDED")
            }
            // MLflow's client retries 503 (not 507): a full disk is worth waiting out.
            Error::Unavailable { .. } | Error::StorageFull(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
            Error::MisdirectedRequest(_) | Error::RequestTimeout(_) => (e.status(), "BAD_REQUEST"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            MlflowError::EndpointNotFound(m) => m.as_str(),
            MlflowError::Tora(e) => {
                e.log();
                e.message()
            }
        };
        let mut response = (
            status,
            Json(json!({"error_code": code, "message": message})),
        )
            .into_response();
        if let MlflowError::Tora(
            Error::TooManyRequests { retry_after } | Error::Unavailable { retry_after, .. },
        ) = self
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
        }
        response
    }
}

impl From<crate::sql::Error> for Error {
    fn from(e: crate::sql::Error) -> Self {
        use crate::sql::Failure;
        match e.failure() {
            // Only a read past its time budget is interrupted (see db::Db::read).
            Failure::Interrupted => Error::Unavailable {
                message: format!(
                    "the query ran past its {} s budget and was stopped; ask for less (fewer runs, a simpler filter, a narrower range)",
                    crate::db::QUERY_BUDGET.as_secs()
                ),
                retry_after: 1,
            },
            Failure::Full => Error::StorageFull(e.to_string()),
            // The engine refuses statements past its own limits (expression depth, variables,
            // string size); only a request can make one that big, so it is the request that
            // is at fault.
            Failure::TooBig => Error::BadRequest(format!(
                "the request is too large for the database to run ({e}); ask for less"
            )),
            Failure::Unique | Failure::Other => Error::Internal(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        crate::sql::Error::from(e).into()
    }
}

impl From<r2d2::Error> for Error {
    /// r2d2's only error is a timeout waiting for a free connection: every reader is busy.
    fn from(e: r2d2::Error) -> Self {
        tracing::warn!(cause = %e, "no database connection free");
        Error::Unavailable {
            message: "the server is busy (every database connection is in use); try again".into(),
            retry_after: 1,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            return Error::StorageFull(format!("io: {e}"));
        }
        Error::Internal(format!("io: {e}"))
    }
}

impl From<PathRejection> for Error {
    fn from(e: PathRejection) -> Self {
        Error::BadRequest(format!("invalid path: {}", e.body_text()))
    }
}

impl From<QueryRejection> for Error {
    fn from(e: QueryRejection) -> Self {
        Error::BadRequest(format!("invalid query string: {}", e.body_text()))
    }
}

impl From<JsonRejection> for Error {
    fn from(e: JsonRejection) -> Self {
        Error::BadRequest(e.body_text())
    }
}

/// Turns a UNIQUE violation into a 409 with `msg`, at the call site that knows what was taken.
pub fn conflict_on_unique(e: crate::sql::Error, msg: &str) -> Error {
    match e.failure() {
        crate::sql::Failure::Unique => Error::Conflict(msg.to_string()),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement past SQLite's own limits comes from what a request asked for: a 400 that
    /// says so, never a 500.
    #[test]
    fn sqlite_limit_errors_are_the_requests_fault() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let deep = format!("SELECT 1{}", "+1".repeat(1_100));
        let err: Error = conn.prepare(&deep).unwrap_err().into();
        assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
        assert!(
            err.message().contains("too large for the database"),
            "{err}"
        );
        let err: Error = conn.prepare("SELECT nope FROM nothing").unwrap_err().into();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
    }
}
