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
//! | 400 | malformed request: bad JSON, wrong types, a bad query or `Last-Event-ID`, an impossible fork cut |
//! | 401 | the listener needs a bearer token and the request has none or a wrong one |
//! | 404 | unknown route, pod or session |
//! | 405 | a route that exists, with the wrong method |
//! | 409 | conflict: the pod is busy with a run, or another process writes the session |
//! | 413 | the body is over the limit |
//! | 500 | the store or the pod failed; the message says how |
//! | 503 | the pod or the server is shutting down |
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
    /// The status a store failure maps to.
    fn from_store_status(e: &StoreError) -> StatusCode {
        match e {
            StoreError::UnknownSession(_) => StatusCode::NOT_FOUND,
            StoreError::AmbiguousSession { .. } | StoreError::BadCut { .. } => {
                StatusCode::BAD_REQUEST
            }
            StoreError::SessionLocked { .. } | StoreError::Rejected { .. } => StatusCode::CONFLICT,
            _ if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
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
        let status = match &e {
            PodError::Store(store) => {
                return ApiError::new(ApiError::from_store_status(store), e.to_string())
            }
            PodError::Busy { .. } | PodError::SessionLocked { .. } | PodError::Rejected { .. } => {
                StatusCode::CONFLICT
            }
            PodError::Closed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
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
