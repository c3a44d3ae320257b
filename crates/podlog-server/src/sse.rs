//! The SSE event stream of a pod: framing, resume and lag catch-up.
//!
//! # Framing
//!
//! Each pod [`Event`] is one SSE message: `id:` is `{session_id}:{seq}`, the
//! session the client is viewing and the event's watermark (the last
//! committed seq the client has once it has the event); `event:` is the
//! event's `"type"`; `data:` is the event's JSON on one line. A comment line
//! (`: heartbeat`) is sent after each heartbeat interval (15 s by default)
//! without a message, so proxies and clients can tell an idle stream from a
//! dead one.
//!
//! Live events come from the pod's channel as [`SharedEvent`]s, whose frame
//! is rendered once and shared: a thousand clients cost one serialisation
//! of each event, not a thousand.
//!
//! Two control messages end a stream; they carry no `id:`, so a client's last
//! event id stays the last real one:
//!
//! * `event: shutdown`: the server is shutting down; reconnect later with
//!   the last id.
//! * `event: reconnect`: this stream cannot go on (the pod was closed or
//!   replaced, or an event could not be encoded); reconnect now with the
//!   last id.
//! * `event: revoked`: the share link the stream was opened with was
//!   revoked or expired (see [`crate::share`]); nothing more is sent, and
//!   reconnecting with that link gets `401`.
//!
//! # Contract
//!
//! * **Fresh attach**: the pod's `Snapshot`, then every later event in commit
//!   order (the pod splits the two cleanly). With `?tail=N` the snapshot
//!   holds only the session's last `N` entries (its first entry's seq says
//!   where it starts); the client pages back with
//!   `GET /sessions/{id}/entries?before=SEQ`. Without it the snapshot is
//!   whole: the default, so that a client that does not page gets the
//!   whole log as the protocol always gave it.
//! * **Resume** (`Last-Event-ID: SID:SEQ`, or `?after=SID:SEQ`): if `SID` is
//!   the pod's current session and `SEQ` is not past its end, exactly the
//!   committed events after `SEQ`, then live; otherwise `SessionRotated` and
//!   the current session's `Snapshot`, then live. Ephemeral events (text
//!   deltas) missed while away are not replayed: the committed entries that
//!   follow them carry the whole text.
//! * **Lag**: when the stream falls more than the pod's channel capacity
//!   behind (a slow client), it catches up with `Pod::resume` from the last
//!   seq it sent and keeps the connection: the client gets the committed
//!   events it would have missed (ephemeral ones are skipped), with no gap and
//!   no duplicate.
//! * **End**: when the pod closes its channel (it shut down) the stream sends
//!   what was queued, then `shutdown` (server shutting down) or `reconnect`,
//!   and ends. When the server shuts down with the pod still open, the stream
//!   sends what is queued, then `shutdown`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use podlog_entry::{Seq, SessionId};
use podlog_pod::{Follow, Pod, PodError};
use podlog_protocol::sse::control_frame;
use podlog_protocol::{Event, EventId, SharedEvent};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::{Phase, Stats};

/// The resume position of a request: the `Last-Event-ID` header if present
/// (and not empty), else the `after` query parameter. `Err` is a 400.
pub fn resume_position(
    header: Option<&axum::http::HeaderValue>,
    after: Option<&str>,
) -> Result<Option<EventId>, ApiError> {
    if let Some(value) = header {
        let text = value.to_str().map_err(|_| {
            ApiError::bad_request("invalid Last-Event-ID: not printable ASCII; want SESSION:SEQ")
        })?;
        if !text.is_empty() {
            return EventId::parse(text)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")));
        }
    }
    match after {
        None => Ok(None),
        Some(text) => EventId::parse(text)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("?after: {e}"))),
    }
}

/// How the stream of one client starts.
pub(crate) enum Start {
    /// A fresh attach: the snapshot first.
    Fresh,
    /// A fresh attach, tail-first: a snapshot of the last `n` entries.
    Tail(usize),
    /// A resume after this position; a tail-first client's tail, for when
    /// it has to start over on another session.
    After(EventId, Option<usize>),
}

/// Where a stream's events come from: a pod of this server, or a session
/// followed through the store, whoever writes it.
#[derive(Clone)]
pub(crate) enum Source {
    Pod(Pod),
    Session(Follow),
}

/// What a stream starts with: the session and seq of the client's view,
/// the events to send first, and the receiver of what follows.
type Opened = (
    SessionId,
    Seq,
    Vec<SharedEvent>,
    broadcast::Receiver<SharedEvent>,
);

impl Source {
    /// The first events of a stream that starts at `start`, split cleanly
    /// from the receiver. Reads the store: runs on the blocking pool.
    fn open(&self, start: Start) -> Result<Opened, PodError> {
        let (tail, after) = match start {
            Start::Fresh => (None, None),
            Start::Tail(n) => (Some(n), None),
            Start::After(id, tail) => (tail, Some(id)),
        };
        if let Some(id) = after {
            let (events, rx) = self.resume_tail(&id.session, id.seq, tail)?;
            return Ok((id.session, id.seq, events, rx));
        }
        let (snapshot, rx) = match self {
            Source::Pod(pod) => match tail {
                Some(n) => pod.subscribe_tail(n)?,
                None => pod.subscribe()?,
            },
            Source::Session(follow) => follow.subscribe_tail(tail)?,
        };
        let session = snapshot.session().clone();
        Ok((session, Seq::ZERO, vec![snapshot], rx))
    }

    fn resume_tail(
        &self,
        session: &SessionId,
        after: Seq,
        tail: Option<usize>,
    ) -> Result<(Vec<SharedEvent>, broadcast::Receiver<SharedEvent>), PodError> {
        match self {
            Source::Pod(pod) => pod.resume_tail(session, after, tail),
            Source::Session(follow) => follow.resume_tail(session, after, tail),
        }
    }
}

/// Why a stream ends.
#[derive(Clone, Copy)]
enum End {
    Shutdown,
    Reconnect(&'static str),
    /// The share the stream was opened with was revoked or expired.
    Revoked,
}

/// One client's stream: what it has been sent, and where the next events
/// come from.
struct StreamState {
    source: Source,
    name: Arc<str>,
    /// The session and seq of the client's view: the `id:` of what it got.
    session: SessionId,
    last: Seq,
    rx: broadcast::Receiver<SharedEvent>,
    queue: VecDeque<SharedEvent>,
    heartbeat: Duration,
    /// When a heartbeat is due if nothing else is sent before.
    next_heartbeat: Instant,
    closing: watch::Receiver<Phase>,
    server_closing: bool,
    end: Option<End>,
    finished: bool,
    stats: Arc<Stats>,
    /// For a stream opened with a share: turns `true` when the share is
    /// revoked or expires.
    revoked: Option<watch::Receiver<bool>>,
}

/// Runs `f` (which takes the pod mutex, so may wait for a commit's disk
/// flush) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Opens the stream of `source` for one client. Fails if the blocking pool
/// is gone (the runtime is shutting down) or the store cannot be read.
pub(crate) async fn open(
    source: Source,
    name: Arc<str>,
    start: Start,
    closing: watch::Receiver<Phase>,
    stats: Arc<Stats>,
    heartbeat: Duration,
    revoked: Option<watch::Receiver<bool>>,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static, ApiError> {
    let opened = {
        let source = source.clone();
        blocking(move || source.open(start)).await
    };
    let opened: Result<Opened, PodError> = opened.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    })?;
    let (session, last, events, rx) = opened?;
    stats.streams_opened.fetch_add(1, Ordering::Relaxed);
    let state = StreamState {
        source,
        name,
        session,
        last,
        rx,
        queue: events.into(),
        heartbeat,
        next_heartbeat: Instant::now() + heartbeat,
        closing,
        server_closing: false,
        end: None,
        finished: false,
        stats,
        revoked,
    };
    Ok(futures_util::stream::unfold(
        state,
        |mut state| async move {
            let message = state.next().await?;
            Some((Ok(message), state))
        },
    ))
}

impl StreamState {
    /// The next SSE message, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            if self.revoked.as_ref().is_some_and(|r| *r.borrow()) && self.end.is_none() {
                // Nothing more of the session goes out, queued or not.
                self.queue.clear();
                self.end = Some(End::Revoked);
            }
            if let Some(event) = self.queue.pop_front() {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                return Some(self.frame(event));
            }
            if let Some(end) = self.end {
                self.finished = true;
                return Some(control(end));
            }
            if self.server_closing {
                // Drain what the pod already sent, without waiting for more.
                match self.rx.try_recv() {
                    Ok(event) => self.queue.push_back(event),
                    Err(TryRecvError::Lagged(missed)) => self.catch_up(missed).await,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => {
                        self.end = Some(End::Shutdown)
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                () = revocation(&mut self.revoked) => continue,
                received = self.rx.recv() => match received {
                    Ok(event) => self.queue.push_back(event),
                    Err(RecvError::Lagged(missed)) => self.catch_up(missed).await,
                    Err(RecvError::Closed) => {
                        self.end = Some(if *self.closing.borrow() != Phase::Running {
                            End::Shutdown
                        } else {
                            End::Reconnect("the pod was closed")
                        });
                    }
                },
                changed = self.closing.changed() => {
                    if changed.is_err() || *self.closing.borrow() == Phase::Closed {
                        self.server_closing = true;
                    }
                }
                () = tokio::time::sleep_until(self.next_heartbeat) => {
                    self.next_heartbeat = Instant::now() + self.heartbeat;
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
            }
        }
    }

    /// The receiver lagged: fetch the committed events after the last seq
    /// sent, and a fresh receiver that carries on after them.
    async fn catch_up(&mut self, missed: u64) {
        self.stats.lag_catch_ups.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            pod = %self.name,
            session = %self.session,
            after = %self.last,
            missed,
            "slow client lagged; catching up from the mirror"
        );
        let source = self.source.clone();
        let session = self.session.clone();
        let last = self.last;
        match blocking(move || source.resume_tail(&session, last, None)).await {
            Some(Ok((events, rx))) => {
                self.rx = rx;
                self.queue.extend(events);
            }
            Some(Err(e)) => {
                tracing::error!(pod = %self.name, error = %e, "cannot catch up a lagged stream");
                self.end = Some(End::Reconnect("the server could not catch up this stream"));
            }
            None => self.end = Some(End::Reconnect("the server could not catch up this stream")),
        }
    }

    /// Frames `event`, moving the client's position past it. The frame is
    /// the event's shared one: its `id:` is the event's session and
    /// watermark, which is the client's position once it has the event.
    fn frame(&mut self, event: SharedEvent) -> Bytes {
        match &*event {
            Event::Snapshot { end_seq, .. } => {
                self.session = event.session().clone();
                self.last = *end_seq;
            }
            Event::SessionRotated { seq, .. } => {
                self.session = event.session().clone();
                self.last = *seq;
            }
            e if e.is_committed() => self.last = e.watermark(),
            _ => {}
        }
        match event.sse_frame() {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(pod = %self.name, error = %e, "cannot encode an event; ending the stream");
                self.queue.clear();
                self.finished = true;
                control(End::Reconnect("an event could not be encoded"))
            }
        }
    }
}

/// Resolves once the share of `revoked` is revoked or expired; never for a
/// stream opened without a share, or once the watch is gone (the server is
/// shutting down and ends the stream its own way).
async fn revocation(revoked: &mut Option<watch::Receiver<bool>>) {
    match revoked {
        Some(rx) => {
            if rx.wait_for(|ended| *ended).await.is_err() {
                *revoked = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The control message that ends a stream.
fn control(end: End) -> Bytes {
    let (kind, reason) = match end {
        End::Shutdown => (
            "shutdown",
            "the server is shutting down; reconnect later with the last event id",
        ),
        End::Reconnect(why) => ("reconnect", why),
        End::Revoked => (
            "revoked",
            "the share link this stream was opened with was revoked or expired",
        ),
    };
    Bytes::from(control_frame(kind, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_query_and_an_empty_header_is_absent() {
        let header = axum::http::HeaderValue::from_static("h:1");
        let got = resume_position(Some(&header), Some("q:2"))
            .unwrap()
            .unwrap();
        assert_eq!(got.to_string(), "h:1");
        let empty = axum::http::HeaderValue::from_static("");
        let got = resume_position(Some(&empty), Some("q:2")).unwrap().unwrap();
        assert_eq!(got.to_string(), "q:2");
        assert_eq!(resume_position(None, None).unwrap(), None);
        let err = resume_position(None, Some("nope")).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
