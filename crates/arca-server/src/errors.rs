//! API errors: an HTTP status and a message for the client. Internal failures show the client only
//! a request id; their details go to the log.

use arca_store::{ErrorKind, ObjectKind};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

/// Marks a response as an internal error, so the request middleware replaces its body with a
/// message naming the request id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Internal;

impl ApiError {
    /// An error with a status and a message the client sees.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500, with details for the log only.
    pub fn internal(details: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, details)
    }

    /// Maps a store failure on `kind`/`name`. Messages never show server paths.
    pub fn from_store(err: arca_store::Error, kind: ObjectKind, name: &str) -> ApiError {
        match err.kind() {
            ErrorKind::NotFound => Self::not_found(format!("{kind} object {name} does not exist")),
            ErrorKind::Truncated => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the requested range is past the end of {kind} object {name}"),
            ),
            ErrorKind::InvalidName => Self::bad_request(format!("invalid object name {name:?}")),
            ErrorKind::AlreadyExists => Self::new(StatusCode::CONFLICT, "the repository already exists"),
            ErrorKind::NoSpace => {
                tracing::error!("disk full: {err}");
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "the server's disk is full; nothing was stored")
            }
            ErrorKind::Io | ErrorKind::PermissionDenied => {
                // The object store (a disk, an S3 endpoint) failed or is unreachable: a retry may
                // well succeed; the details stay in the log.
                tracing::error!("object store failure on {kind}/{name}: {err}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server's object store is unavailable; nothing was changed, retry later",
                )
            }
        }
    }

    /// Maps a failure of the server's own disk (spooling an upload): a full disk is 507, anything
    /// else 503 (a retry may succeed). The details, which name server paths, go to the log only.
    pub fn from_io(what: String, err: std::io::Error) -> ApiError {
        if err.kind() == std::io::ErrorKind::StorageFull {
            tracing::error!("disk full: {what}: {err}");
            return Self::new(StatusCode::INSUFFICIENT_STORAGE, "the server's disk is full; nothing was stored");
        }
        tracing::error!("{what}: {err}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server could not write the upload; nothing was stored, retry later",
        )
    }

    /// Maps a metadata failure. An unreachable database is 503 (clients retry), never a 500 that
    /// hides what happened.
    pub fn from_db(err: crate::db::DbError) -> ApiError {
        use crate::db::DbError;
        match err {
            DbError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            DbError::NotFound(m) => Self::not_found(m),
            DbError::Invalid(m) => Self::bad_request(m),
            DbError::Busy(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m).with_retry_after(1),
            DbError::Sql(e) => match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => {
                    tracing::error!("metadata database unavailable: {e}");
                    Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server's metadata database is unavailable; nothing was changed, retry later",
                    )
                }
                // PostgreSQL's "connection exception" and "operator intervention" classes: the
                // server went away or was shut down under us.
                sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57")) => {
                    tracing::error!("metadata database unavailable: {d}");
                    Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server's metadata database is unavailable; nothing was changed, retry later",
                    )
                }
                e => Self::internal(format!("metadata database: {e}")),
            },
        }
    }

    /// Adds a `Retry-After` (seconds) to the answer.
    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (for internal errors: the details meant for the log).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error()
            && !matches!(self.status, StatusCode::INSUFFICIENT_STORAGE | StatusCode::SERVICE_UNAVAILABLE)
        {
            tracing::error!("internal error: {}", self.message);
            let mut resp = (self.status, "internal server error").into_response();
            resp.extensions_mut().insert(Internal);
            return resp;
        }
        tracing::info!(status = self.status.as_u16(), "refused: {}", self.message);
        let mut resp = (self.status, self.message).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}
