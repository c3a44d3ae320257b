//! A client of the podlog server, over TCP or a Unix socket: JSON requests,
//! the SSE event stream, and [`LogView`], which rebuilds a pod's log from the
//! events.
//!
//! # Contract
//!
//! * [`Client`] opens one HTTP/1.1 connection per request (hyper's
//!   low-level client), sends the bearer token when it has one, and gives
//!   back the status and body. A non-2xx answer to [`Client::events`] is
//!   [`ClientError::Status`] with the server's `{"error"}` message.
//! * [`EventStream::next`] yields each SSE message as it arrives (comments,
//!   the heartbeats, are counted, not yielded) and `None` when the server
//!   ends the stream. [`EventStream::last_id`] is the `id:` of the last
//!   message that had one: what to send as `Last-Event-ID` on reconnect.
//! * [`LogView::apply`] folds events into the sessions a client has seen and
//!   fails, naming session and seq, on a gap, a duplicate, or a snapshot that
//!   disagrees with what the view already holds: the check every client of
//!   the protocol can make.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_pod::Event;
use serde_json::Value;
use tokio::task::JoinHandle;

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
}

/// A client of one server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
}

/// A raw answer: status and body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
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

    async fn connect(
        &self,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<Full<Bytes>>,
            JoinHandle<()>,
        ),
        ClientError,
    > {
        let endpoint = self.endpoint.to_string();
        let connect_error = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let http_error = |source| ClientError::Http {
            endpoint: endpoint.clone(),
            source,
        };
        match &self.endpoint {
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(http_error)?;
                Ok((
                    send,
                    tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                ))
            }
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(http_error)?;
                Ok((
                    send,
                    tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                ))
            }
        }
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
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.to_string(),
                source,
            })?
            .to_bytes();
        conn.abort();
        Ok(Answer { status, body })
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

/// One SSE message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    /// The `event:` name (`message` when absent).
    pub event: String,
    pub data: String,
}

impl SseMessage {
    /// The pod event this message carries; `None` for the control messages
    /// (`shutdown`, `reconnect`) that end a stream.
    pub fn pod_event(&self) -> Option<Result<Event, ClientError>> {
        if self.is_control() {
            return None;
        }
        Some(
            serde_json::from_str(&self.data)
                .map_err(|e| ClientError::Malformed(format!("{} event: {e}", self.event))),
        )
    }

    /// Whether this is a control message that ends the stream.
    pub fn is_control(&self) -> bool {
        matches!(self.event.as_str(), "shutdown" | "reconnect")
    }
}

/// What the SSE parser found in the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Message(SseMessage),
    Comment(String),
}

/// An incremental parser of the `text/event-stream` format.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds `bytes`; returns the messages and comments completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseItem> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(SseItem::Message(SseMessage {
                        id: self.id.take(),
                        event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                        data,
                    }));
                }
                self.id = None;
                self.event = None;
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                out.push(SseItem::Comment(comment.trim_start().to_owned()));
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.id = Some(value.to_owned()),
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        out
    }
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

/// A view that broke the protocol's promises.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("session {session}: got seq {got} after seq {last} (gap or duplicate)")]
    OutOfOrder {
        session: SessionId,
        last: Seq,
        got: Seq,
    },
    #[error("a {kind} event came before any snapshot")]
    NoSession { kind: String },
    #[error(
        "session {session}: the snapshot disagrees with the entries already seen at seq {seq}"
    )]
    Disagrees { session: SessionId, seq: Seq },
    #[error("session {session}: a snapshot must run from seq 1 without gaps (seq {seq})")]
    BadSnapshot { session: SessionId, seq: Seq },
}

/// The log a client rebuilds from events: every session it has seen, with
/// the entries it has of each, and the session it views now.
#[derive(Clone, Debug, Default)]
pub struct LogView {
    current: Option<SessionId>,
    sessions: BTreeMap<SessionId, Vec<Committed>>,
}

impl LogView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session viewed now.
    pub fn current(&self) -> Option<&SessionId> {
        self.current.as_ref()
    }

    /// The entries seen of `session`, from seq 1.
    pub fn entries(&self, session: &SessionId) -> &[Committed] {
        self.sessions.get(session).map_or(&[], Vec::as_slice)
    }

    /// Every session seen.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionId, &[Committed])> {
        self.sessions.iter().map(|(s, e)| (s, e.as_slice()))
    }

    /// The last seq seen of the current session.
    pub fn last_seq(&self) -> Seq {
        self.current
            .as_ref()
            .and_then(|s| self.sessions.get(s))
            .and_then(|e| e.last())
            .map_or(Seq::ZERO, |c| c.seq)
    }

    /// Folds one event in. Ephemeral events change nothing.
    pub fn apply(&mut self, event: &Event) -> Result<(), ViewError> {
        match event {
            Event::Snapshot {
                session_id,
                entries,
                ..
            } => {
                let new: Vec<Committed> = entries
                    .iter()
                    .map(|w| Committed {
                        seq: w.seq,
                        entry: w.entry.clone(),
                    })
                    .collect();
                for (i, c) in new.iter().enumerate() {
                    if c.seq != Seq(i as u64 + 1) {
                        return Err(ViewError::BadSnapshot {
                            session: session_id.clone(),
                            seq: c.seq,
                        });
                    }
                }
                if let Some(old) = self.sessions.get(session_id) {
                    for (a, b) in old.iter().zip(new.iter()) {
                        if a != b {
                            return Err(ViewError::Disagrees {
                                session: session_id.clone(),
                                seq: a.seq,
                            });
                        }
                    }
                    // A snapshot never takes back entries already seen.
                    if old.len() > new.len() {
                        return Err(ViewError::Disagrees {
                            session: session_id.clone(),
                            seq: Seq(new.len() as u64 + 1),
                        });
                    }
                }
                self.sessions.insert(session_id.clone(), new);
                self.current = Some(session_id.clone());
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
            } => {
                let start = Committed::new(*seq, entry.clone());
                match self.sessions.get(session_id) {
                    Some(old) if old.first() != Some(&start) => {
                        return Err(ViewError::Disagrees {
                            session: session_id.clone(),
                            seq: *seq,
                        })
                    }
                    Some(_) => {}
                    None => {
                        if *seq != Seq::FIRST {
                            return Err(ViewError::BadSnapshot {
                                session: session_id.clone(),
                                seq: *seq,
                            });
                        }
                        self.sessions.insert(session_id.clone(), vec![start]);
                    }
                }
                self.current = Some(session_id.clone());
            }
            other => {
                let Some(committed) = other.to_committed() else {
                    return Ok(());
                };
                let Some(session) = self.current.clone() else {
                    return Err(ViewError::NoSession {
                        kind: other.kind().to_owned(),
                    });
                };
                let entries = self.sessions.entry(session.clone()).or_default();
                let last = entries.last().map_or(Seq::ZERO, |c| c.seq);
                if committed.seq != last.next() {
                    return Err(ViewError::OutOfOrder {
                        session,
                        last,
                        got: committed.seq,
                    });
                }
                entries.push(committed);
            }
        }
        Ok(())
    }
}

/// The entries of a view's session as the store's entry type, for
/// comparisons.
pub fn entries_of(view: &LogView, session: &SessionId) -> Vec<(Seq, LogEntry)> {
    view.entries(session)
        .iter()
        .map(|c| (c.seq, (*c.entry).clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&str]) -> String {
        let mut parser = SseParser::default();
        let mut out = String::new();
        for chunk in chunks {
            for item in parser.push(chunk.as_bytes()) {
                match item {
                    SseItem::Message(m) => out.push_str(&format!(
                        "[{}|{}|{}]",
                        m.id.as_deref().unwrap_or("-"),
                        m.event,
                        m.data
                    )),
                    SseItem::Comment(c) => out.push_str(&format!("(:{c})")),
                }
            }
        }
        out
    }

    #[test]
    fn sse_framing() {
        let cases: [(&[&str], &str); 6] = [
            (&["id: a:1\nevent: x\ndata: {}\n\n"], "[a:1|x|{}]"),
            (&["id: a:1\nev", "ent: x\ndata: {}\n", "\n"], "[a:1|x|{}]"),
            (&["data: one\ndata: two\n\n"], "[-|message|one\ntwo]"),
            (&[": heartbeat\n\n"], "(:heartbeat)"),
            (&["event: x\r\ndata:y\r\n\r\n"], "[-|x|y]"),
            (&["id: 1\n\nid: 2\ndata: d\n\n"], "[2|message|d]"),
        ];
        for (chunks, want) in cases {
            assert_eq!(check(chunks), want, "{chunks:?}");
        }
    }

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
