//! Serves podlog pods to clients: a JSON API and a live SSE event stream per
//! pod, over TCP and/or a Unix socket.
//!
//! The wire protocol (routes, events, resume, errors) is documented for
//! clients in `docs/protocol.md`; [`api`] lists the routes, [`sse`] the
//! stream's contract, [`auth`] the token rules, [`listen`] the socket rules.
//!
//! # Contract
//!
//! * **What is served.** A [`PodRegistry`] maps pod names to [`Pod`]s; the
//!   server serves whatever the registry holds at the time of each request.
//!   Sessions and their entries are read through the [`Store`]; writes go
//!   through the pods. This crate never touches SQL.
//! * **Who may connect.** TCP is loopback-only unless a bearer token is in
//!   force ([`auth`]); the Unix socket is 0600 ([`listen`]). A share token
//!   reads one session on any listener and nothing else ([`share`]).
//! * **Errors.** Every failed request gets `{"error": "..."}` with its
//!   status ([`error`]); one bad request never disturbs another client.
//! * **Shutdown** ([`Server::shutdown`]): stop accepting; shut every pod down
//!   (each finishes its in-flight commit and closes its event channel); end
//!   every SSE stream after what it was already sent, with a `shutdown`
//!   message; wait (bounded) for responses in flight; remove the Unix socket
//!   file; checkpoint the database.
//! * **Logs** (`tracing`): one line per connection, per event stream, per
//!   error and per lag catch-up; never an entry's body or the token.

pub mod api;
pub mod auth;
pub mod body;
mod cache;
pub mod demo;
pub mod error;
pub mod listen;
pub mod share;
pub mod sse;
pub mod web;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use podlog_pod::{Followers, Pod};
use podlog_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::DEFAULT_TAIL;
pub use auth::{Token, TokenOrigin, TokenSource};
pub use error::{ApiError, ServerError};
pub use podlog_protocol::EventId;

/// The pods a server serves, by name. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct PodRegistry {
    pods: Arc<RwLock<BTreeMap<String, Pod>>>,
}

impl std::fmt::Debug for PodRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.list()).finish()
    }
}

impl PodRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the pod `name`; returns the one it replaced.
    /// Names are 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
    pub fn insert(&self, name: &str, pod: Pod) -> Result<Option<Pod>, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(format!(
                "invalid pod name {name:?}: want 1 to 64 letters, digits, `-`, `_` or `.`"
            ));
        }
        Ok(self
            .pods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), pod))
    }

    /// Removes the pod `name` (without shutting it down).
    pub fn remove(&self, name: &str) -> Option<Pod> {
        self.pods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
    }

    /// The pod `name`.
    pub fn get(&self, name: &str) -> Option<Pod> {
        self.pods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every pod, by name.
    pub fn list(&self) -> Vec<(String, Pod)> {
        self.pods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect()
    }
}

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// How often an idle SSE stream gets a comment line (15 s by default).
    pub heartbeat: Duration,
    /// The largest request body accepted (1 MiB by default).
    pub body_limit: usize,
    /// The largest page of entries one request may ask for (1000).
    pub max_page: usize,
    /// How long shutdown waits for responses in flight (10 s).
    pub drain_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            body_limit: 1 << 20,
            max_page: 1000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how to listen.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// A TCP address (port 0 picks a free port).
    pub listen: Option<SocketAddr>,
    /// A Unix socket path.
    pub unix: Option<PathBuf>,
    /// The bearer token of the TCP listener (see [`auth`]).
    pub token: TokenSource,
    pub http: HttpOptions,
}

/// Counters of a running server, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// SSE streams opened.
    pub streams_opened: AtomicU64,
    /// Times a lagging SSE stream caught up from the pod.
    pub lag_catch_ups: AtomicU64,
    /// User inputs accepted.
    pub inputs: AtomicU64,
}

impl Stats {
    /// `(connections, streams_opened, lag_catch_ups, inputs)` now.
    pub fn read(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
            lag_catch_ups: self.lag_catch_ups.load(Ordering::Relaxed),
            inputs: self.inputs.load(Ordering::Relaxed),
        }
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub streams_opened: u64,
    pub lag_catch_ups: u64,
    pub inputs: u64,
}

/// Where the server is in its life, as SSE streams see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving.
    Running,
    /// Shutting down: pods are closing; a stream whose pod closed ends with
    /// `shutdown`.
    Stopping,
    /// Pods are closed: every stream sends what is queued and ends.
    Closed,
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Inner>,
    /// Whether this listener requires a bearer token: what it serves for
    /// good is then `Cache-Control: private`, kept by no shared cache.
    pub(crate) token_required: bool,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    pub(crate) pods: PodRegistry,
    pub(crate) options: HttpOptions,
    /// Where the server is in its shutdown: SSE streams end on it.
    pub(crate) closing: watch::Receiver<Phase>,
    pub(crate) stats: Arc<Stats>,
    /// The sessions followed through the store, with their watcher.
    pub(crate) followers: Followers,
    /// The shares of open streams, with their watcher.
    pub(crate) shares: share::ShareWatch,
}

/// The router with authentication for a listener whose token is `token`.
fn app(state: AppState, token: Option<Token>) -> Router {
    let state = AppState {
        token_required: token.is_some(),
        ..state
    };
    let body_limit = state.inner.options.body_limit;
    let store = state.inner.store.clone();
    // The body is read (or, when refused, drained) before anything answers:
    // see [`body`].
    api::router(state)
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            body::read_first,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth::Gate {
                token,
                store,
                body_limit,
            },
            auth::authorize,
        ))
}

/// A running server. Dropping it without [`Server::shutdown`] stops the
/// accept loops but skips the orderly shutdown.
pub struct Server {
    store: Arc<Store>,
    pods: PodRegistry,
    tcp_addr: Option<SocketAddr>,
    socket: Option<listen::SocketFile>,
    token_origin: TokenOrigin,
    token: Option<Token>,
    stop_accepting: watch::Sender<bool>,
    closing: watch::Sender<Phase>,
    accept_tasks: Vec<JoinHandle<()>>,
    graceful: Arc<GracefulShutdown>,
    stats: Arc<Stats>,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tcp_addr", &self.tcp_addr)
            .field("unix", &self.socket.as_ref().map(|s| &s.path))
            .field("token_origin", &self.token_origin)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listeners of `config` and starts serving `pods` and the
    /// sessions of `store`. Must run inside a tokio runtime.
    pub async fn start(
        config: ServerConfig,
        store: Arc<Store>,
        pods: PodRegistry,
    ) -> Result<Server, ServerError> {
        if config.listen.is_none() && config.unix.is_none() {
            return Err(ServerError::NoListener);
        }
        let (token, token_origin) = match &config.listen {
            Some(addr) => auth::resolve_token(addr, &config.token)?,
            None => (None, TokenOrigin::None),
        };
        let tcp = match config.listen {
            Some(addr) => Some(listen::bind_tcp(addr).await?),
            None => None,
        };
        let unix = match &config.unix {
            Some(path) => Some(listen::bind_unix(path)?),
            None => None,
        };
        let tcp_addr = match &tcp {
            Some(l) => Some(l.local_addr().map_err(|source| ServerError::Bind {
                addr: config.listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                source,
            })?),
            None => None,
        };
        let (stop_accepting, stop_rx) = watch::channel(false);
        let (closing, closing_rx) = watch::channel(Phase::Running);
        let stats = Arc::new(Stats::default());
        let state = AppState {
            inner: Arc::new(Inner {
                store: store.clone(),
                pods: pods.clone(),
                options: config.http.clone(),
                closing: closing_rx,
                stats: stats.clone(),
                followers: Followers::new(store.clone()),
                shares: share::ShareWatch::start(store.clone()),
            }),
            token_required: false,
        };
        let graceful = Arc::new(GracefulShutdown::new());
        let mut accept_tasks = Vec::new();
        if let Some(listener) = tcp {
            accept_tasks.push(tokio::spawn(listen::accept_loop(
                listener,
                "tcp",
                app(state.clone(), token.clone()),
                stop_rx.clone(),
                graceful.clone(),
                stats.clone(),
            )));
        }
        let socket = match unix {
            Some((listener, file)) => {
                accept_tasks.push(tokio::spawn(listen::accept_loop(
                    listener,
                    "unix",
                    app(state.clone(), None),
                    stop_rx.clone(),
                    graceful.clone(),
                    stats.clone(),
                )));
                Some(file)
            }
            None => None,
        };
        tracing::info!(
            tcp = tcp_addr.map(|a| a.to_string()).as_deref().unwrap_or("-"),
            unix = socket
                .as_ref()
                .map(|s| s.path.display().to_string())
                .as_deref()
                .unwrap_or("-"),
            "serving"
        );
        match &token_origin {
            TokenOrigin::Generated(path) => {
                tracing::info!(path = %path.display(), "generated a bearer token into this file (0600)")
            }
            TokenOrigin::Read(path) => {
                tracing::info!(path = %path.display(), "bearer token required; read from this file")
            }
            TokenOrigin::Given => tracing::info!("bearer token required"),
            TokenOrigin::None => {}
        }
        Ok(Server {
            store,
            pods,
            tcp_addr,
            socket,
            token_origin,
            token,
            stop_accepting,
            closing,
            accept_tasks,
            graceful,
            stats,
            drain_timeout: config.http.drain_timeout,
        })
    }

    /// The bound TCP address (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The Unix socket path.
    pub fn unix_path(&self) -> Option<&Path> {
        self.socket.as_ref().map(|s| s.path.as_path())
    }

    /// Where the TCP listener's token came from.
    pub fn token_origin(&self) -> &TokenOrigin {
        &self.token_origin
    }

    /// The TCP listener's token, for an embedding application's own client.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The pods served.
    pub fn pods(&self) -> &PodRegistry {
        &self.pods
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.read()
    }

    /// The orderly shutdown described in the crate docs. The checkpoint's
    /// failure is returned; everything else is logged and carried on past.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        tracing::info!("shutting down: no new connections");
        let _ = self.stop_accepting.send(true);
        for task in self.accept_tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(socket) = &self.socket {
            socket.remove();
        }
        let _ = self.closing.send(Phase::Stopping);
        for (name, pod) in self.pods.list() {
            tracing::info!(pod = %name, "shutting the pod down after its in-flight commit");
            let _ = tokio::task::spawn_blocking(move || pod.shutdown()).await;
        }
        let _ = self.closing.send(Phase::Closed);
        let graceful = std::mem::replace(&mut self.graceful, Arc::new(GracefulShutdown::new()));
        match Arc::try_unwrap(graceful) {
            Ok(graceful) => {
                if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        timeout_ms = self.drain_timeout.as_millis() as u64,
                        "connections still open after the drain timeout; closing them"
                    );
                }
            }
            Err(_) => tracing::warn!("connections could not be drained"),
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| {
                ServerError::Store(podlog_store::StoreError::Open {
                    path: self.store.location().into(),
                    reason: format!("checkpoint task failed: {e}"),
                })
            })??;
        tracing::info!(database = %self.store.location(), "database checkpointed; stopped");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_accepting.send(true);
        let _ = self.closing.send(Phase::Closed);
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, for a binary's shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
