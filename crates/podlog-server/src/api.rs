//! The HTTP API: routes, request parsing and JSON responses (documented for
//! clients in `docs/protocol.md`).
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /` | the web viewer's page (see [`crate::web`]) |
//! | `GET /assets/{file}` | the viewer's scripts and styles, embedded in the binary |
//! | `GET /pods` | `{"pods": [pod, ...]}` |
//! | `GET /pods/{pod}` | one pod: `{"name", "session_id", "end_seq", "busy", "closed", "lock_lost"}` (`lock_lost`: the session's write lock went with the store's connection; commits fail until it is restored) |
//! | `GET /pods/{pod}/events?tail=N` | the SSE stream (see [`crate::sse`]); `tail` makes a fresh attach start with the last `N` entries |
//! | `POST /pods/{pod}/input` | body `{"text": "..."}`: `202 {"session_id"}` once the input is committed |
//! | `POST /pods/{pod}/compact` | body `{}` or `{"summary": [message, ...]}`: `{"session_id"}` of the new session |
//! | `POST /pods/{pod}/fork` | body `{"at": SEQ}`: `{"session_id"}` of the new session |
//! | `GET /sessions` | `{"sessions": [session, ...]}`, newest first |
//! | `GET /sessions/{id}` | one session (id or unique prefix) |
//! | `GET /sessions/{id}/entries?after=SEQ&limit=N` | `{"session_id", "last_seq", "entries": [{"seq", "entry", "payloads"?}], "next_after", "prev_before"}` |
//! | `GET /sessions/{id}/entries?before=SEQ&limit=N` | the same, the page just below `SEQ`: how a client holding the tail pages back |
//! | `GET /sessions/{id}/events` | the session's SSE stream, whoever writes it, followed through the store (`podlog_pod::follow`) |
//! | `GET /blobs/{hash}` | the payload `hash` names, as text: cacheable for good, with `ETag`, `If-None-Match` and single byte `Range`s |
//! | `GET /search?q=QUERY&session=&kind=&since=&limit=&cursor=&plain=` | full-text search, newest first: `{"hits": [{"session_id", "seq", "ts", "time", "kind", "snippet": [{"text", "match"}]}], "next": CURSOR or null}` (see [`search`]) |
//!
//! Entry pages are lean: an entry's large strings are previews and its
//! `payloads` name the blobs that hold them whole. A page that does not
//! reach the end of its session can never change (history is never
//! rewritten), so it carries a weak `ETag` and an immutable
//! `Cache-Control` (see [`page_etag`]); the page that reaches the end can
//! still grow and gets `Cache-Control: no-cache`.
//!
//! A share token (see [`crate::share`]) reaches only the `/sessions/{id}`
//! routes of its own session and the `/blobs/{hash}` its entries
//! reference; [`crate::auth::authorize`] refuses the rest before any route
//! runs. Its event stream watches the share and ends when it is revoked.
//!
//! Request bodies are read up to the configured limit (1 MiB by default;
//! more is `413`), parsed as JSON whatever the `Content-Type`, and refused
//! with `400` when malformed, of the wrong types, or with unknown fields.
//! Every error is `{"error": "..."}` (see [`crate::error`]). Nothing here
//! touches SQL: reads go through the `Store`, writes through the `Pod`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use podlog_entry::{Message, PayloadHash, Seq, SessionId};
use podlog_pod::Pod;
use podlog_protocol::WireEntry;
use podlog_store::SessionInfo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cache::{self, ByteRange};
use crate::error::ApiError;
use crate::share::ShareGrant;
use crate::sse::{self, Source, Start};
use crate::AppState;

/// The router of one listener (without authentication; see
/// [`crate::auth`]).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::web::index))
        .route("/assets/{file}", get(crate::web::asset))
        .route("/pods", get(list_pods))
        .route("/pods/{pod}", get(pod_info))
        .route("/pods/{pod}/events", get(events))
        .route("/pods/{pod}/input", post(input))
        .route("/pods/{pod}/compact", post(compact))
        .route("/pods/{pod}/fork", post(fork))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", get(session_info))
        .route("/sessions/{id}/entries", get(entries))
        .route("/sessions/{id}/events", get(session_events))
        .route("/blobs/{hash}", get(blob))
        .route("/search", get(search))
        .fallback(|| async { ApiError::not_found("no such route; see docs/protocol.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route; see docs/protocol.md",
            )
        })
        .with_state(state)
}

/// Runs blocking work (store reads, pod writes that wait for the disk) off
/// the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a request task failed: {e}")))?
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", e.body_text()))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query: {}", e.body_text()))
}

/// Parses the body as `T`. The body layer ([`crate::body`]) has already
/// read it into memory and refused it if it was over the limit.
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(body_error)
}

/// A body that does not parse as what the route takes. The client gets
/// serde's message, which may quote the body; the log gets only where and
/// what kind of error it was.
fn body_error(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("malformed JSON body: {e}")).with_log(format!(
        "malformed JSON body ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    ))
}

fn pod(state: &AppState, name: &str) -> Result<Pod, ApiError> {
    state
        .inner
        .pods
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("unknown pod {name:?}")))
}

/// A pod's JSON, from its published status: never waits for a commit, so
/// it may run on an async worker.
fn pod_json(name: &str, pod: &Pod) -> Value {
    let status = pod.status();
    json!({
        "name": name,
        "session_id": status.session_id,
        "end_seq": status.end_seq,
        "busy": status.busy,
        "closed": status.closed,
        "lock_lost": status.lock_lost,
    })
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.id,
        "origin": s.origin.as_str(),
        "parent": s.parent.as_ref().map(|p| json!({"session_id": p.session_id, "seq": p.seq})),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "last_seq": s.last_seq,
        "entry_count": s.entry_count,
        "title": s.title,
        "redactions": s.redactions,
        "stored_bytes": s.stored_bytes,
    })
}

async fn list_pods(State(state): State<AppState>) -> Json<Value> {
    let pods: Vec<Value> = state
        .inner
        .pods
        .list()
        .iter()
        .map(|(name, pod)| pod_json(name, pod))
        .collect();
    Json(json!({ "pods": pods }))
}

async fn pod_info(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let pod = pod(&state, &name)?;
    Ok(Json(pod_json(&name, &pod)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<String>,
    tail: Option<String>,
}

/// How many entries a fresh attach starts with when the client names no
/// `tail`: enough to fill a screen or two, few enough that attaching costs
/// the same for a session of any length (about 100 KiB of lean entries).
pub const DEFAULT_TAIL: usize = 200;

/// The `tail` of an events request: `None` for `all` (the whole session),
/// the number of entries otherwise ([`DEFAULT_TAIL`] when absent).
fn parse_tail(tail: Option<&str>) -> Result<Option<usize>, ApiError> {
    match tail {
        None => Ok(Some(DEFAULT_TAIL)),
        Some("all") => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(0) => Err(ApiError::bad_request(
                "tail=0 out of range: want at least 1 entry, or tail=all for the whole session",
            )),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(ApiError::bad_request(format!(
                "tail={text:?} is not a number of entries or \"all\""
            ))),
        },
    }
}

/// How a stream asked for with `query` and `headers` starts.
fn stream_start(query: &EventsQuery, headers: &HeaderMap) -> Result<Start, ApiError> {
    let position = sse::resume_position(headers.get("last-event-id"), query.after.as_deref())?;
    let tail = parse_tail(query.tail.as_deref())?;
    Ok(match (position, tail) {
        // A resume carries on from its position; the tail only shapes a
        // snapshot, should the client have to start over.
        (Some(id), tail) => Start::After(id, tail),
        (None, Some(n)) => Start::Tail(n),
        (None, None) => Start::Fresh,
    })
}

async fn events(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let Query(query) = query.map_err(query_error)?;
    let start = stream_start(&query, &headers)?;
    let pod = pod(&state, &name)?;
    tracing::info!(pod = %name, "event stream opened");
    event_stream(&state, Source::Pod(pod), &name, start, None).await
}

/// `GET /sessions/{id}/events`: the session's stream, whoever writes it,
/// followed through the store (see `podlog_pod::follow`).
async fn session_events(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
    grant: Option<Extension<ShareGrant>>,
) -> Result<Response, ApiError> {
    let Path(text) = id.map_err(path_error)?;
    let Query(query) = query.map_err(query_error)?;
    let start = stream_start(&query, &headers)?;
    // Watched before the stream opens: a revocation from now on ends it.
    let revoked = grant.map(|Extension(ShareGrant(share))| state.inner.shares.watch(&share));
    let follow = {
        let state = state.clone();
        blocking(move || {
            let id = resolve(&state, &text)?;
            Ok(state.inner.followers.follow(&id)?)
        })
        .await?
    };
    let name = follow.session_id().to_string();
    tracing::info!(session = %name, shared = revoked.is_some(), "session stream opened");
    event_stream(&state, Source::Session(follow), &name, start, revoked).await
}

/// The SSE response of `source` for one client.
async fn event_stream(
    state: &AppState,
    source: Source,
    name: &str,
    start: Start,
    revoked: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Response, ApiError> {
    let stream = sse::open(
        source,
        Arc::from(name),
        start,
        state.inner.closing.clone(),
        state.inner.stats.clone(),
        state.inner.options.heartbeat,
        revoked,
    )
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputBody {
    text: String,
}

async fn input(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let body: InputBody = json_body(body).await?;
    let pod = pod(&state, &name)?;
    let session = blocking(move || {
        pod.submit_input(body.text)?;
        Ok(pod.session_id())
    })
    .await?;
    state.inner.stats.inputs.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(json!({ "session_id": session }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactBody {
    #[serde(default)]
    summary: Option<Vec<Message>>,
}

async fn compact(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let body: CompactBody = json_body(body).await?;
    let pod = pod(&state, &name)?;
    let session = blocking(move || Ok(pod.compact(body.summary)?)).await?;
    tracing::info!(pod = %name, session = %session, "compacted");
    Ok(Json(json!({ "session_id": session })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    at: Seq,
}

async fn fork(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let body: ForkBody = json_body(body).await?;
    let pod = pod(&state, &name)?;
    let session = blocking(move || Ok(pod.fork(body.at)?)).await?;
    tracing::info!(pod = %name, session = %session, at = %body.at, "forked");
    Ok(Json(json!({ "session_id": session })))
}

async fn list_sessions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.inner.store.clone();
    let listed = blocking(move || Ok(store.sessions()?)).await?;
    // Rows that do not read are named, not left out.
    let mut sessions = Vec::new();
    let mut unreadable = Vec::new();
    for s in &listed {
        match s {
            Ok(info) => sessions.push(session_json(info)),
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    Ok(Json(
        json!({ "sessions": sessions, "unreadable": unreadable }),
    ))
}

/// The session `text` names (its id or an unambiguous prefix).
fn resolve(state: &AppState, text: &str) -> Result<SessionId, ApiError> {
    Ok(state.inner.store.resolve(text)?)
}

async fn session_info(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(text) = id.map_err(path_error)?;
    let info = blocking(move || {
        let id = resolve(&state, &text)?;
        Ok(state.inner.store.session(&id)?)
    })
    .await?;
    Ok(Json(session_json(&info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<usize>,
}

async fn entries(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<EntriesQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(text) = id.map_err(path_error)?;
    let Query(query) = query.map_err(query_error)?;
    let max = state.inner.options.max_page;
    let limit = query.limit.unwrap_or(max.min(100));
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(format!(
            "limit {limit} out of range: want 1 to {max}"
        )));
    }
    let (after, before) = match (query.after, query.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `after` or `before`, not both: `after` pages forward, `before` back",
            ))
        }
        (after, before) => (Seq(after.unwrap_or(0)), before.map(Seq)),
    };
    let cache_control = cache::immutable(state.token_required);
    let (id, info, span, page) = blocking(move || {
        let id = resolve(&state, &text)?;
        let info = state.inner.store.session(&id)?;
        // Only a page named by the session's whole id is cached: a prefix
        // that names one session today may be ambiguous tomorrow.
        let span = (text == id.as_str())
            .then(|| immutable_span(after, before, limit, info.last_seq))
            .flatten();
        if let Some(span) = span {
            if cache::none_match(&headers, &page_etag(&id, span)) {
                return Ok((id, info, Some(span), None));
            }
        }
        let page = match before {
            // Past the end means from the end.
            Some(before) => {
                let before = before.min(info.last_seq.next());
                state.inner.store.previews_before(&id, before, limit)?
            }
            None => state.inner.store.previews_after(&id, after, limit)?,
        };
        Ok((id, info, span, Some(page)))
    })
    .await?;
    let Some(page) = page else {
        let etag = span.map(|span| page_etag(&id, span)).unwrap_or_default();
        return not_modified(&etag, cache_control);
    };
    // The rows are contiguous, so the page read is the span foreseen; a
    // page that is not gets no ETag rather than a wrong one.
    let read = page.first().zip(page.last()).map(|(f, l)| (f.seq, l.seq));
    let etag = span
        .filter(|&span| read == Some(span))
        .map(|span| page_etag(&id, span));
    let next_after = match page.last().map(|c| c.seq) {
        Some(seq) if seq < info.last_seq => Some(seq),
        _ => None,
    };
    let prev_before = match page.first().map(|c| c.seq) {
        Some(seq) if seq > Seq::FIRST => Some(seq),
        _ => None,
    };
    let entries: Vec<WireEntry> = page.iter().map(WireEntry::from).collect();
    let body = Json(json!({
        "session_id": id,
        "last_seq": info.last_seq,
        "entries": entries,
        "next_after": next_after,
        "prev_before": prev_before,
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    match etag {
        Some(etag) => {
            headers.insert(header::ETAG, header_value(&etag)?);
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            );
        }
        None => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
    }
    Ok(response)
}

/// The seqs `(first, last)` of the page a request asks for, when that page
/// can never change, else `None`.
///
/// History is never rewritten, so a page is fixed once every seq it covers
/// exists; it must also end before the session's last entry, or its
/// `next_after` (null at the end) would change as the session grows. That
/// leaves a `before` page with `before <= last_seq` and an `after` page
/// that comes back full short of the end. Empty pages are not cached.
fn immutable_span(
    after: Seq,
    before: Option<Seq>,
    limit: usize,
    last_seq: Seq,
) -> Option<(Seq, Seq)> {
    let limit = limit as u64;
    let (first, last) = match before {
        Some(before) => (
            before.get().saturating_sub(limit).max(1),
            before.get().checked_sub(1)?,
        ),
        None => (
            after.get().checked_add(1)?,
            after.get().saturating_add(limit),
        ),
    };
    (first <= last && last < last_seq.get()).then_some((Seq(first), Seq(last)))
}

/// The entity tag of an immutable page: weak, because the page's
/// `last_seq` says how long the session was when it was served, while its
/// entries, `next_after` and `prev_before` never change. It names the
/// session (bytes an entity tag cannot hold percent-encoded), the page's
/// first and last seq, and the page format (`v1`: lean entries with their
/// `payloads`).
fn page_etag(session: &SessionId, (first, last): (Seq, Seq)) -> String {
    let mut tag = String::from("W/\"");
    for b in session.as_str().bytes() {
        if b.is_ascii_graphic() && b != b'"' && b != b'%' {
            tag.push(char::from(b));
        } else {
            tag.push_str(&format!("%{b:02X}"));
        }
    }
    tag.push_str(&format!(":{first}-{last}:v1\""));
    tag
}

/// A header value the server built itself (an entity tag, a range).
fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|e| ApiError::internal(format!("cannot send header value {text:?}: {e}")))
}

/// `304 Not Modified`: the client's copy, named by `etag`, is current.
fn not_modified(etag: &str, cache_control: &'static str) -> Result<Response, ApiError> {
    Ok((
        StatusCode::NOT_MODIFIED,
        [
            (header::ETAG, header_value(etag)?),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
        ],
    )
        .into_response())
}

/// `GET /blobs/{hash}`: the payload's text. A hash names one text forever,
/// so the answer is cacheable for good: its entity tag is the hash itself.
async fn blob(
    State(state): State<AppState>,
    hash: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(text) = hash.map_err(path_error)?;
    let hash = PayloadHash::new(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.inner.store.clone();
    let wanted = hash.clone();
    let payload = blocking(move || Ok(store.payload(&wanted)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown payload {hash}")))?;
    let etag = format!("\"{hash}\"");
    let cache_control = cache::immutable(state.token_required);
    if cache::none_match(&headers, &etag) {
        return not_modified(&etag, cache_control);
    }
    let body = Bytes::from(payload.text);
    let size = body.len() as u64;
    let range = if cache::if_range_allows(&headers, &etag) {
        cache::byte_range(&headers, size)
    } else {
        ByteRange::Whole
    };
    let common = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (header::ETAG, header_value(&etag)?),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    Ok(match range {
        ByteRange::Whole => (common, body).into_response(),
        ByteRange::Part { start, end } => {
            let part = body.slice(start as usize..=end as usize);
            let content_range = header_value(&format!("bytes {start}-{end}/{size}"))?;
            (
                StatusCode::PARTIAL_CONTENT,
                common,
                [(header::CONTENT_RANGE, content_range)],
                part,
            )
                .into_response()
        }
        ByteRange::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range not satisfiable: payload {hash} is {size} bytes"),
            )
            .into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}"))?,
            );
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            response
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_body_is_quoted_to_the_client_but_not_in_the_log() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Input {
            at: u64,
        }
        for body in [
            r#"{"at": "my secret plan"}"#,
            r#"{"my secret plan": 1}"#,
            r#"{"at": 1, "my secret plan"#,
        ] {
            let e = serde_json::from_str::<Input>(body)
                .map(|_| ())
                .map_err(body_error)
                .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains("malformed JSON body"), "{}", e.message);
            assert!(e.log_text().contains("line 1 column"), "{}", e.log_text());
            assert!(!e.log_text().contains("secret"), "{body}: {}", e.log_text());
        }
        let plain = ApiError::not_found("unknown pod \"x\"");
        assert_eq!(plain.log_text(), plain.message);
    }

    #[test]
    fn only_pages_short_of_the_end_are_immutable() {
        let span = |after: u64, before: Option<u64>, limit: usize, last: u64| {
            immutable_span(Seq(after), before.map(Seq), limit, Seq(last))
                .map(|(f, l)| (f.get(), l.get()))
        };
        // Forward: a full page short of the end.
        assert_eq!(span(0, None, 7, 30), Some((1, 7)));
        assert_eq!(span(22, None, 7, 30), Some((23, 29)));
        assert_eq!(span(23, None, 7, 30), None, "it reaches the end");
        assert_eq!(span(28, None, 7, 30), None, "not full");
        assert_eq!(span(40, None, 7, 30), None, "past the end");
        assert_eq!(span(u64::MAX, None, 7, 30), None);
        // Back: every seq below `before` exists and the page ends short.
        assert_eq!(span(0, Some(30), 5, 30), Some((25, 29)));
        assert_eq!(span(0, Some(4), 5, 30), Some((1, 3)));
        assert_eq!(span(0, Some(2), 5, 30), Some((1, 1)));
        assert_eq!(span(0, Some(31), 5, 30), None, "it reaches the end");
        assert_eq!(span(0, Some(99), 5, 30), None, "clamped to the end");
        assert_eq!(span(0, Some(1), 5, 30), None, "empty");
        assert_eq!(span(0, Some(0), 5, 30), None, "empty");
    }

    #[test]
    fn a_page_etag_is_weak_and_names_session_span_and_format() {
        let id = SessionId::new("s-1").unwrap();
        assert_eq!(page_etag(&id, (Seq(3), Seq(9))), "W/\"s-1:3-9:v1\"");
        let odd = SessionId::new("a\"b%cé").unwrap();
        let tag = page_etag(&odd, (Seq(1), Seq(2)));
        assert_eq!(tag, "W/\"a%22b%25c%C3%A9:1-2:v1\"");
        assert!(header_value(&tag).is_ok());
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    session: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    plain: Option<bool>,
}

/// `GET /search`: one page of the entries matching `q` (FTS5 query syntax,
/// or words as written with `plain=true`), newest first, 20 by default and
/// at most 1000; `next` is the `cursor` of the following page, `null` on
/// the last. `since` is an ISO date or time in UTC, a time ago (`7d`,
/// `12h`) or milliseconds since the epoch. A malformed query or parameter
/// is `400` naming it. A share token is refused (`403`): search reaches
/// every session.
async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    let Some(text) = params.q.filter(|q| !q.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "missing search query: give `q`, e.g. /search?q=error",
        ));
    };
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > podlog_store::search::MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit} out of range: want 1 to {}",
            podlog_store::search::MAX_LIMIT
        )));
    }
    let cursor = match &params.cursor {
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "bad cursor {c:?}: give the `next` of the previous page"
            ))
        })?),
        None => None,
    };
    let page = blocking(move || {
        let store = &state.inner.store;
        let since = match &params.since {
            Some(s) => Some(
                podlog_store::search::parse_since(s, store.now())
                    .map_err(|e| ApiError::bad_request(format!("bad `since`: {e}")))?,
            ),
            None => None,
        };
        let session = match &params.session {
            Some(s) => Some(resolve(&state, s)?),
            None => None,
        };
        let page = store
            .search(&podlog_store::SearchQuery {
                text,
                plain: params.plain.unwrap_or(false),
                session,
                kind: params.kind,
                since,
                limit,
                cursor,
            })
            .map_err(|e| {
                let bad = matches!(e, podlog_store::StoreError::BadSearch { .. });
                let error = ApiError::from(e);
                if bad {
                    // The message quotes the query; the log does not.
                    error.with_log("malformed search query")
                } else {
                    error
                }
            })?;
        Ok(page)
    })
    .await?;
    let hits: Vec<Value> = page
        .hits
        .iter()
        .map(|hit| {
            json!({
                "session_id": hit.session.as_str(),
                "seq": hit.seq.get(),
                "ts": hit.ts,
                "time": podlog_entry::iso8601(hit.ts),
                "kind": hit.kind,
                "snippet": hit
                    .snippet_parts()
                    .into_iter()
                    .map(|(text, matched)| json!({ "text": text, "match": matched }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "hits": hits,
        "next": page.next.map(|n| n.to_string()),
    })))
}
