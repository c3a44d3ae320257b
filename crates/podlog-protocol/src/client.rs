//! A client of the podlog server, over TCP or a Unix socket: JSON requests
//! and the SSE event stream (feature `client`). Fold the events it yields
//! into a [`crate::LogView`] to hold the pod's log.
//!
//! # Contract
//!
//! * [`Client`] opens one HTTP/1.1 connection per request (hyper's
//!   low-level client), sends the bearer token when it has one, and gives
//!   back the status, headers and body. A non-2xx answer to
//!   [`Client::events`], [`Client::get_json`], [`Client::post_json`] or
//!   [`Client::blob`] is [`ClientError::Status`] with the server's
//!   `{"error"}` message.
//! * [`Client::blob`] fetches the whole text of a payload that a lean
//!   entry's reference names (`GET /blobs/{hash}`).
//! * [`EventStream::next`] yields each SSE message as it arrives (comments,
//!   the heartbeats, are counted, not yielded) and `None` when the server
//!   ends the stream. [`EventStream::last_id`] is the `id:` of the last
//!   message that had one: what to send as `Last-Event-ID` on reconnect.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use podlog_entry::PayloadHash;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::sse::{SseItem, SseMessage, SseParser};

/// The sending half of one HTTP/1.1 connection.
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` over TCP.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `http://HOST:PORT` (a trailing `/` allowed; no path, no TLS).
    pub fn from_url(url: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::BadUrl(format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("want http://HOST:PORT"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("want http://HOST:PORT with no path"));
        }
        if !authority.contains(':') || authority.ends_with(':') {
            return Err(bad("give the port, as in http://127.0.0.1:7878"));
        }
        Ok(Endpoint::Tcp(authority.to_owned()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(authority) => write!(f, "http://{authority}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A request or stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one this client can use.
    #[error("bad server url {0}")]
    BadUrl(String),
    /// No connection could be made.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    /// HTTP failed on an open connection.
    #[error("http error talking to {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: hyper::Error,
    },
    /// The server answered with an error status.
    #[error("server answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    /// A body that should be JSON is not.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
    /// An SSE message whose data is not the event its name says.
    #[error(transparent)]
    Event(#[from] crate::sse::MalformedEvent),
}

/// A client of one server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
}

/// A raw answer: status, headers and body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Malformed(e.to_string()))
    }
}

impl Client {
    /// A client of the server at `endpoint`, sending `token` if given.
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        Self { endpoint, token }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connect(&self) -> Result<(Sender, JoinHandle<()>), ClientError> {
        let connect_error = |source| ClientError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        match &self.endpoint {
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                self.handshake(stream).await
            }
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                self.handshake(stream).await
            }
        }
    }

    /// HTTP/1.1 over a connected `stream`; the connection is driven by a
    /// task of its own.
    async fn handshake<S>(&self, stream: S) -> Result<(Sender, JoinHandle<()>), ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.to_string(),
                source,
            })?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((send, task))
    }

    /// Sends one request; the response body is not read yet.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(hyper::Response<Incoming>, JoinHandle<()>), ClientError> {
        let (mut send, conn) = self.connect().await?;
        let host = match &self.endpoint {
            Endpoint::Tcp(authority) => authority.clone(),
            Endpoint::Unix(_) => "localhost".to_owned(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::BadUrl(format!("{path:?}: {e}")))?;
        let response = send
            .send_request(request)
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.to_string(),
                source,
            })?;
        Ok((response, conn))
    }

    /// Sends a request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, ClientError> {
        let (response, conn) = self.send(method, path, headers, body.into()).await?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.to_string(),
                source,
            })?
            .to_bytes();
        conn.abort();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`, as JSON; an error status is [`ClientError::Status`].
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let answer = self.request(Method::GET, path, &[], Bytes::new()).await?;
        ok_json(answer)
    }

    /// `POST path` with a JSON body, as JSON; an error status is
    /// [`ClientError::Status`].
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let answer = self
            .request(Method::POST, path, &[], body.to_string())
            .await?;
        ok_json(answer)
    }

    /// The whole text of the payload `hash` names (`GET /blobs/{hash}`),
    /// which a lean entry's [`PayloadRef`](podlog_entry::PayloadRef) points
    /// to; an error status is [`ClientError::Status`].
    pub async fn blob(&self, hash: &PayloadHash) -> Result<String, ClientError> {
        let path = format!("/blobs/{hash}");
        let answer = self.request(Method::GET, &path, &[], Bytes::new()).await?;
        if !answer.status.is_success() {
            return Err(status_error(answer.status, &answer.body));
        }
        String::from_utf8(answer.body.into())
            .map_err(|e| ClientError::Malformed(format!("payload {hash} is not UTF-8: {e}")))
    }

    /// Opens the SSE stream of `pod`, resuming after `last_id`
    /// (`SESSION:SEQ`) when given.
    pub async fn events(
        &self,
        pod: &str,
        last_id: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        self.events_at(&format!("/pods/{pod}/events"), last_id)
            .await
    }

    /// Opens the SSE stream at `path` (which may carry `?after=SESSION:SEQ`),
    /// sending `Last-Event-ID: last_id` when given.
    pub async fn events_at(
        &self,
        path: &str,
        last_id: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(id) = last_id {
            headers.push(("last-event-id", id));
        }
        let (response, conn) = self.send(Method::GET, path, &headers, Bytes::new()).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            conn.abort();
            return Err(status_error(status, &body));
        }
        Ok(EventStream {
            body: response.into_body(),
            parser: SseParser::default(),
            pending: std::collections::VecDeque::new(),
            last_id: last_id.map(str::to_owned).or_else(|| {
                path.split_once("?after=")
                    .map(|(_, id)| id.split('&').next().unwrap_or(id).to_owned())
            }),
            heartbeats: 0,
            conn,
            endpoint: self.endpoint.to_string(),
        })
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    ClientError::Status { status, message }
}

fn ok_json(answer: Answer) -> Result<Value, ClientError> {
    if !answer.status.is_success() {
        return Err(status_error(answer.status, &answer.body));
    }
    answer.json()
}

/// An open SSE stream.
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
    pending: std::collections::VecDeque<SseMessage>,
    last_id: Option<String>,
    heartbeats: u64,
    conn: JoinHandle<()>,
    endpoint: String,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("endpoint", &self.endpoint)
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl EventStream {
    /// The next message, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseMessage>, ClientError> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                if let Some(id) = &message.id {
                    self.last_id = Some(id.clone());
                }
                return Ok(Some(message));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|source| ClientError::Http {
                endpoint: self.endpoint.clone(),
                source,
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for item in self.parser.push(&data) {
                match item {
                    SseItem::Message(m) => self.pending.push_back(m),
                    SseItem::Comment(_) => self.heartbeats += 1,
                }
            }
        }
    }

    /// The `id:` of the last message read that had one (or the id the
    /// stream was opened with).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Comment lines (heartbeats) seen so far.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, want) in [
            ("http://127.0.0.1:7878", Some("127.0.0.1:7878")),
            ("http://localhost:1/", Some("localhost:1")),
            ("https://x:1", None),
            ("http://x", None),
            ("http://x:1/pods", None),
        ] {
            let got = Endpoint::from_url(url).ok();
            assert_eq!(got, want.map(|a| Endpoint::Tcp(a.to_owned())), "{url}");
        }
    }
}
