//! [`PgClient`]: a PostgreSQL connection that can be dropped anywhere.
//!
//! # Contract
//!
//! A `postgres::Client` owns a small tokio runtime and blocks on it, to
//! query and also to close: dropping one on a thread that drives async
//! tasks (a tokio worker, inside `block_on`) panics. The pod, the server
//! and the CLI drop stores, writers and watches wherever their owners go,
//! a server's shutdown included, so every connection the PostgreSQL store
//! keeps is a [`PgClient`]: dropped on a thread of its own when the
//! dropping thread is inside a runtime, in place otherwise. Queries are
//! still the caller's to keep off the async workers (`spawn_blocking`), as
//! for SQLite.

use std::ops::{Deref, DerefMut};

use postgres::Client;

/// A connection, closed off any async runtime when dropped.
pub(crate) struct PgClient(Option<Client>);

impl PgClient {
    pub(crate) fn new(client: Client) -> Self {
        PgClient(Some(client))
    }

    /// The connection, for work to do with it before it closes.
    pub(crate) fn into_inner(mut self) -> Client {
        self.0
            .take()
            .expect("a PgClient holds its client until dropped")
    }
}

impl Deref for PgClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0
            .as_ref()
            .expect("a PgClient holds its client until dropped")
    }
}

impl DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.0
            .as_mut()
            .expect("a PgClient holds its client until dropped")
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            off_runtime(move || drop(client));
        }
    }
}

/// Runs `f` here, or on a new thread when this thread is inside a tokio
/// runtime, where blocking on another runtime panics.
pub(crate) fn off_runtime(f: impl FnOnce() + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        // Nothing waits for it: a close that fails has nothing to report.
        let _ = std::thread::Builder::new()
            .name("podlog-pg-close".to_owned())
            .spawn(f);
    } else {
        f();
    }
}
