//! Request bodies are read before anything answers.
//!
//! # Why
//!
//! An HTTP/1.1 server that answers (a `401`, a `404`, a `413`) while the
//! client is still sending its body, and then closes the connection, makes
//! the kernel reset it: the client's next write fails and the answer it was
//! sent is often lost with the connection. The client sees "connection
//! reset" instead of the clear error the server meant to give.
//!
//! # Contract
//!
//! * This layer sits just inside authentication, which drains the body the
//!   same way before its `401` (see `refuse`). It reads the whole body of every request, up to
//!   [`HttpOptions::body_limit`](crate::HttpOptions::body_limit), before the
//!   request goes on; the handlers then get it from memory.
//! * A body over the limit (declared by `Content-Length` or found while
//!   reading) is answered `413` with a JSON error and `Connection: close`.
//!   Before answering, the rest of the body is read and thrown away, up to
//!   [`DRAIN_FACTOR`] times the limit and for at most [`DRAIN_TIME`] (the
//!   "lingering close" of common HTTP servers), so an ordinary client that
//!   sends a too-large body reads the `413`. Beyond either bound the
//!   connection is closed at once.
//! * An unreadable body (the client went away, bad chunked framing) is a
//!   `400` naming the cause.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;

/// How many times the body limit is read and discarded before a `413`.
pub const DRAIN_FACTOR: u64 = 8;
/// How long a too-large body is read and discarded before a `413`.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The middleware: `limit` is the largest body accepted.
pub(crate) async fn read_first(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit64 = limit as u64;
    if declared.is_some_and(|n| n > limit64) {
        return too_large(body, limit, 0).await;
    }
    let mut body = body;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                return ApiError::bad_request(format!("cannot read the request body: {e}"))
                    .into_response();
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                    if buffer.len() > limit {
                        let read = buffer.len() as u64;
                        return too_large(body, limit, read).await;
                    }
                }
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(buffer)))
        .await
}

/// Drains what is left of a too-large body (within the bounds above), then
/// answers `413`.
async fn too_large(body: Body, limit: usize, already: u64) -> Response {
    let answer = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over the limit of {limit} bytes"),
    );
    refuse(body, limit, already, answer).await
}

/// Answers `answer` to a request whose body was not (fully) read: what is
/// left of `body` is read and discarded first, up to [`DRAIN_FACTOR`] times
/// `limit` bytes in all (`already` were read before) and for at most
/// [`DRAIN_TIME`], so the client gets to read the answer. The connection is
/// closed after it.
pub(crate) async fn refuse(
    mut body: Body,
    limit: usize,
    already: u64,
    answer: ApiError,
) -> Response {
    let cap = (limit as u64).saturating_mul(DRAIN_FACTOR);
    let drain = async {
        let mut read = already;
        while read <= cap {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read += data.len() as u64;
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    // Whether it finished or not, the answer is the same; a body that could
    // not be drained ends with the connection.
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    let mut response = answer.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
