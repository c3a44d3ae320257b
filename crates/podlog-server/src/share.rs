//! Read-only share links on the server: what a share token may reach, and
//! how open streams learn that their share was revoked or expired.
//!
//! # Contract
//!
//! * **Where a share token comes from.** `?share=TOKEN` in the query (what a
//!   browser's `EventSource` can send), else `Authorization: Bearer TOKEN`.
//!   The `share` parameter is taken out of the query before the route sees
//!   it. The server's own bearer token, when it is the one presented, wins
//!   and grants everything.
//! * **What it reaches** ([`route`]): `GET` (or `HEAD`) of
//!   `/sessions/{id}`, `/sessions/{id}/entries` and `/sessions/{id}/events`
//!   where `{id}` is the share's session id written out whole (a prefix
//!   could name, or in an error list, other sessions); `/blobs/{hash}` when
//!   an entry of that session references the payload; and the viewer's
//!   static files, `/`, `/index.html`, `/favicon.ico` and `/assets/...`.
//!   Anything else is `403`. An unknown, expired or revoked token is `401`.
//! * **Scope.** The one session shared: a compaction or fork of it is
//!   another session, with another share.
//! * **Revocation ends streams.** An event stream opened with a share holds
//!   a [`ShareWatch`] receiver. One task of the server watches every share
//!   that has an open stream: every [`POLL`] it asks, on the blocking pool,
//!   whether any connection committed (`PRAGMA data_version`, see
//!   [`podlog_store::ChangeWatch`]) or an expiry passed, and only then
//!   which of those shares are still in force (one query). A stream whose
//!   share is not ends at once with an `event: revoked` control message.
//!   With no share streamed, the task sleeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::http::Method;
use podlog_entry::SessionId;
use podlog_store::{ChangeWatch, ShareInfo, Store};
use tokio::sync::{watch, Notify};

/// How often open share streams are checked against the database.
pub const POLL: Duration = Duration::from_millis(50);

/// The share a request was let in with: handlers that open streams watch
/// it (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct ShareGrant(pub(crate) ShareInfo);

/// What a share token may do with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Let it through.
    Allow,
    /// Let it through if the share's session references this payload.
    Blob(String),
    /// `403`, with this reason.
    Deny(&'static str),
}

/// Decodes `%XX` escapes of a path segment; `None` when malformed or not
/// UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `path` is one of the web viewer's static files.
pub(crate) fn is_viewer_file(path: &str) -> bool {
    matches!(path, "/" | "/index.html" | "/favicon.ico") || path.starts_with("/assets/")
}

/// What a share of `session` may do with `method path`.
pub(crate) fn route(method: &Method, path: &str, session: &SessionId) -> Route {
    if method != Method::GET && method != Method::HEAD {
        return Route::Deny("a share link can only read");
    }
    if is_viewer_file(path) {
        return Route::Allow;
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match segments.as_slice() {
        ["sessions", id] | ["sessions", id, "entries" | "events"] => {
            if percent_decode(id).as_deref() == Some(session.as_str()) {
                Route::Allow
            } else {
                Route::Deny("a share link reads only its own session, named by its whole id")
            }
        }
        ["blobs", hash] => Route::Blob((*hash).to_owned()),
        _ => {
            Route::Deny("a share link reads only its own session, its entries, events and payloads")
        }
    }
}

/// The shares of open streams, and the task that ends those streams when
/// their share stops being in force. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ShareWatch {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<Store>,
    state: Mutex<Watched>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Watched {
    /// By share id: the sender its streams watch (`true`: ended), and when
    /// it expires.
    shares: HashMap<String, (watch::Sender<bool>, Option<u64>)>,
    /// A share was added since the last look: check whatever the data
    /// version says, since the revocation may predate the watch.
    added: bool,
}

impl ShareWatch {
    /// A watch of `store`'s shares; its task runs on the current runtime
    /// and ends when the last clone is dropped.
    pub(crate) fn start(store: Arc<Store>) -> Self {
        let shared = Arc::new(Shared {
            store,
            state: Mutex::new(Watched::default()),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(run(Arc::downgrade(&shared)));
        ShareWatch { shared }
    }

    /// A receiver that turns `true` once `share` is revoked or expired.
    pub(crate) fn watch(&self, share: &ShareInfo) -> watch::Receiver<bool> {
        let rx = {
            let mut state = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.added = true;
            let (tx, _) = state
                .shares
                .entry(share.id.clone())
                .or_insert_with(|| (watch::channel(false).0, share.expires_at));
            tx.subscribe()
        };
        self.shared.wake.notify_one();
        rx
    }
}

/// The watcher task: holds its state only weakly, so the server's drop ends
/// it; runs every SQLite call on the blocking pool.
async fn run(shared: Weak<Shared>) {
    let mut changes: Option<ChangeWatch> = None;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (ids, expiry, added) = {
            let mut state = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.shares.retain(|_, (tx, _)| tx.receiver_count() > 0);
            let ids: Vec<String> = state.shares.keys().cloned().collect();
            let expiry = state.shares.values().filter_map(|(_, at)| *at).min();
            (ids, expiry, std::mem::take(&mut state.added))
        };
        if ids.is_empty() {
            changes = None;
            let wake = strong.wake.clone();
            drop(strong);
            // Wakes for a new stream (a permit is kept if it came first);
            // the timeout lets a dropped server end the task.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        let store = strong.store.clone();
        drop(strong);
        let mut watch = changes.take();
        let checked = tokio::task::spawn_blocking(move || {
            if watch.is_none() {
                watch = store.change_watch().ok();
            }
            let changed = match watch.as_mut().map(ChangeWatch::changed) {
                Some(Ok(changed)) => changed,
                // Cannot tell: look anyway, with a new watch next time.
                _ => {
                    watch = None;
                    true
                }
            };
            let due = expiry.is_some_and(|at| at <= store.now());
            let active = if changed || due || added {
                Some(store.active_shares(&ids))
            } else {
                None
            };
            (watch, ids, active)
        })
        .await;
        let Ok((watch, ids, active)) = checked else {
            return;
        };
        changes = watch;
        match active {
            Some(Ok(active)) => {
                let Some(strong) = shared.upgrade() else {
                    return;
                };
                let mut state = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
                for id in ids.iter().filter(|id| !active.contains(id)) {
                    if let Some((tx, _)) = state.shares.remove(id) {
                        tracing::info!(share = %id, "share revoked or expired; ending its streams");
                        let _ = tx.send(true);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot check the shares of open streams; retrying");
                changes = None;
            }
            None => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_reaches_its_session_its_payloads_and_the_viewer_only() {
        let s = SessionId::new("01a2-b").unwrap();
        let get = Method::GET;
        for path in [
            "/sessions/01a2-b",
            "/sessions/01a2-b/entries",
            "/sessions/01a2-b/events",
            "/sessions/01a2%2Db/events",
            "/",
            "/index.html",
            "/assets/app.js",
        ] {
            assert_eq!(route(&get, path, &s), Route::Allow, "{path}");
            assert_eq!(route(&Method::HEAD, path, &s), Route::Allow, "{path}");
        }
        assert_eq!(route(&get, "/blobs/abc", &s), Route::Blob("abc".to_owned()));
        for path in [
            "/sessions",
            "/sessions/",
            "/sessions/01a2",
            "/sessions/01a2-c/entries",
            "/sessions/01a2-b/other",
            "/sessions/01a2-b/entries/x",
            "/pods",
            "/pods/p",
            "/pods/p/events",
            "/blobs",
            "/blobs/a/b",
            "/shares",
            "/assets",
            "/search",
        ] {
            assert!(matches!(route(&get, path, &s), Route::Deny(_)), "{path}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            for path in ["/pods/p/input", "/sessions/01a2-b", "/"] {
                assert!(
                    matches!(route(&method, path, &s), Route::Deny(_)),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("a%2"), None);
    }
}
