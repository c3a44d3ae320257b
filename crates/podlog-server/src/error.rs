//! Errors of the server: [`ApiError`], what a request gets back when it
//! fails, and [`ServerError`], why a server could not start.
//!
//! # Contract
//!
//! Every failed request gets a JSON body `{"error": "..."}` with a lowercase
//! message naming what was wrong (the pod, session or seq concerned) and the
//! status that says whose fault it is:
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed request: bad JSON, wrong types, a bad query or `Last-Event-ID`, an impossible fork cut, a malformed payload hash |
//! | 401 | the listener needs a bearer token and the request has none or a wrong one |
//! | 404 | unknown route, pod, session or payload |
//! | 405 | a route that exists, with the wrong method |
//! | 409 | conflict: the pod is busy with a run, or another process writes the session |
//! | 413 | the body is over the limit |
//! | 416 | a byte `Range` of a blob that starts past its end (with `Content-Range: bytes */SIZE`) |
//! | 500 | the store or the pod failed (its files, a corrupt row or payload, a panic); the message says how |
//! | 502 | the pod's driver failed to summarise for a compaction |
//! | 503 | the pod or the server is shutting down, or the database is locked by another connection |
//! | 507 | the disk or database is full |
//!
//! Each error response is logged once: its status and message, or, where
//! the message quotes what the client sent (a malformed body), a version
//! that does not ([`ApiError::with_log`]). The log never holds a body.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use podlog_pod::PodError;
use podlog_store::StoreError;

/// A failed request: its status and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// What the server's log says instead of `message`, when `message`
    /// quotes the request.
    log: Option<String>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            log: None,
        }
    }

    /// The same error, logged as `log` rather than its message: for
    /// messages that quote what the client sent.
    pub fn with_log(mut self, log: impl Into<String>) -> Self {
        self.log = Some(log.into());
        self
    }

    /// What the server's log says about this error.
    pub fn log_text(&self) -> &str {
        self.log.as_deref().unwrap_or(&self.message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such route, pod or session.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token \
             from the server's token file",
        )
    }

    /// 500: something broke on the server's side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let logged = self.log_text();
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %logged, "request failed");
        } else {
            tracing::warn!(status = self.status.as_u16(), error = %logged, "request refused");
        }
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

impl ApiError {
    /// The status a store failure maps to. Every variant is named, so a new
    /// one must be placed here: a client's mistake never becomes a 500 by
    /// default.
    fn from_store_status(e: &StoreError) -> StatusCode {
        match e {
            StoreError::UnknownSession(_) | StoreError::UnknownShare(_) => StatusCode::NOT_FOUND,
            StoreError::AmbiguousSession { .. }
            | StoreError::BadCut { .. }
            | StoreError::Import { .. }
            | StoreError::BadSearch { .. } => StatusCode::BAD_REQUEST,
            StoreError::SessionLocked { .. }
            | StoreError::Rejected { .. }
            | StoreError::StaleWriter { .. } => StatusCode::CONFLICT,
            StoreError::Sqlite { .. } if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Sqlite { .. } if e.is_disk_full() => StatusCode::INSUFFICIENT_STORAGE,
            // The pod's database connection, and its session lock, are gone.
            StoreError::LockLost { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // What this server's backend cannot do.
            StoreError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            // The server's own files or data: nothing the client can fix.
            StoreError::Open { .. }
            | StoreError::NotADatabase { .. }
            | StoreError::TooNew { .. }
            | StoreError::Migration { .. }
            | StoreError::Decode { .. }
            | StoreError::Corrupt { .. }
            | StoreError::CorruptSession { .. }
            | StoreError::CorruptPayload { .. }
            | StoreError::Lock { .. }
            | StoreError::Io { .. }
            | StoreError::Sqlite { .. }
            | StoreError::Postgres { .. }
            | StoreError::PgMigration { .. }
            | StoreError::Panicked { .. }
            | StoreError::Publish { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status a pod failure maps to; every variant named, as above.
    fn from_pod_status(e: &PodError) -> StatusCode {
        match e {
            PodError::Store(store) => ApiError::from_store_status(store),
            PodError::Busy { .. } | PodError::SessionLocked { .. } | PodError::Rejected { .. } => {
                StatusCode::CONFLICT
            }
            PodError::Closed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The driver's summariser (typically a model call) failed.
            PodError::Summarise { .. } => StatusCode::BAD_GATEWAY,
            PodError::Mirror { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(ApiError::from_store_status(&e), e.to_string())
    }
}

impl From<PodError> for ApiError {
    fn from(e: PodError) -> Self {
        ApiError::new(ApiError::from_pod_status(&e), e.to_string())
    }
}

/// Why a server could not start (or shut down cleanly).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A TCP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The Unix socket path is held by a server that still answers.
    #[error("unix socket {0} is in use by a running server; stop it or choose another path")]
    SocketInUse(PathBuf),
    /// The Unix socket path exists and is not a socket.
    #[error("{0} exists and is not a unix socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The Unix socket could not be created.
    #[error("cannot listen on unix socket {path}: {source}")]
    Unix {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A non-loopback address without a token.
    #[error("{0} is not a loopback address; serving it needs a bearer token (give a token file)")]
    TokenRequired(std::net::SocketAddr),
    /// The token file could not be read or written, or is unsafe.
    #[error("token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    /// Neither a TCP address nor a Unix socket was given.
    #[error("nothing to listen on: give a TCP address, a unix socket path, or both")]
    NoListener,
    /// The store failed (checkpoint on shutdown, or opening pods).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A pod failed to start or restore.
    #[error(transparent)]
    Pod(#[from] PodError),
}

#[cfg(test)]
mod tests {
    use podlog_entry::{Seq, SessionId};

    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite {
            context: "appending".to_owned(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    #[test]
    fn every_store_and_pod_error_has_its_status() {
        let s = || SessionId::new("s-1").unwrap();
        let cases: Vec<(StoreError, u16)> = vec![
            (StoreError::UnknownSession("x".into()), 404),
            (
                StoreError::AmbiguousSession {
                    prefix: "s".into(),
                    matches: "s-1, s-2".into(),
                },
                400,
            ),
            (
                StoreError::BadCut {
                    session: s(),
                    seq: Seq(3),
                    reason: "r".into(),
                },
                400,
            ),
            (
                StoreError::StaleWriter {
                    session: s(),
                    seq: Seq(3),
                },
                409,
            ),
            (sqlite(rusqlite::ffi::SQLITE_BUSY), 503),
            (sqlite(rusqlite::ffi::SQLITE_FULL), 507),
            (sqlite(rusqlite::ffi::SQLITE_IOERR), 500),
            (
                StoreError::Corrupt {
                    session: s(),
                    seq: Seq(2),
                    problem: "p".into(),
                },
                500,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert_eq!(ApiError::from(e).status.as_u16(), want, "{text}");
        }
        let pods: Vec<(PodError, u16)> = vec![
            (PodError::Busy { session: s() }, 409),
            (PodError::Closed { session: s() }, 503),
            (
                PodError::Summarise {
                    session: s(),
                    message: "model down".into(),
                },
                502,
            ),
            (PodError::Store(StoreError::UnknownSession("x".into())), 404),
            (PodError::Store(sqlite(rusqlite::ffi::SQLITE_BUSY)), 503),
        ];
        for (e, want) in pods {
            let text = e.to_string();
            assert_eq!(ApiError::from(e).status.as_u16(), want, "{text}");
        }
    }
}
