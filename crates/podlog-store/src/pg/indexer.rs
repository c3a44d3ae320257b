//! [`Indexer`]: indexes for search, from a thread of the store's own, the
//! entries session writers committed unindexed, so that an append returns
//! right after its commit and the index keeps up without a search having
//! to prompt it.
//!
//! # Contract
//!
//! * **After the commit, never before.** A writer hands `(session, seq)`
//!   over only once its append's commit returned Ok; the indexer runs
//!   `search_catch_up` (migrations/postgres/0003_search_deferred.sql) for
//!   the sessions handed over, each up to the highest seq handed over, in a
//!   transaction of its own at `synchronous_commit=off` (what it writes is
//!   derived from committed entries, and written again by the next catch-up
//!   if a crash loses it).
//! * **Batched.** After each catch-up the thread rests for [`REST`], so
//!   that a stream of commits is indexed in a few transactions rather than
//!   one per commit; the first commit after a quiet spell is indexed at
//!   once. The index trails the log by at most about that long; searches
//!   catch up on their own before they look, so they never see it trail.
//! * **Best effort.** A catch-up that fails (the server is gone, an entry
//!   cannot be indexed) is dropped; the entries stay above their session's
//!   mark, and the next catch-up or search indexes them (or says why it
//!   cannot). A failed batch makes the next one open a new connection.
//! * **Lifetime.** The thread and its connection start with the first
//!   commit handed over and end when the store is dropped, after indexing
//!   what is queued (waited for, except inside an async runtime, where the
//!   drop does not block).

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::Config;

use super::client::PgClient;
use crate::StoreOptions;

/// Catches the index up with the sessions `$1`, each up to the seq in `$2`.
const CATCH_UP: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     search_catch_up($1::text[], $2::bigint[])";

/// How long the thread rests after each catch-up.
const REST: Duration = Duration::from_millis(50);

/// How the indexer's thread connects.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    pub(crate) options: StoreOptions,
    pub(crate) location: String,
}

/// One commit handed over: the session and the seq it reached.
type Reached = (String, i64);

/// The store's indexer; see the module docs.
pub(crate) struct Indexer {
    target: Target,
    running: Mutex<Option<(Sender<Reached>, JoinHandle<()>)>>,
}

impl Indexer {
    pub(crate) fn new(target: Target) -> Self {
        Indexer {
            target,
            running: Mutex::new(None),
        }
    }

    /// Queues `session`'s entries up to `seq`, starting the thread on first
    /// use.
    pub(crate) fn committed(&self, session: &str, seq: i64) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.is_none() {
            let (tx, rx) = channel();
            let target = self.target.clone();
            let spawned = std::thread::Builder::new()
                .name("podlog-pg-index".to_owned())
                .spawn(move || run(&target, &rx));
            // Without a thread the entries wait for the next search, as the
            // contract allows.
            let Ok(handle) = spawned else { return };
            *running = Some((tx, handle));
        }
        if let Some((tx, _)) = running.as_ref() {
            let _ = tx.send((session.to_owned(), seq));
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, handle)) = running {
            // The thread indexes what is queued, then sees the channel closed.
            drop(tx);
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = handle.join();
            }
        }
    }
}

/// The sessions handed over, each with the highest seq handed over for it.
fn reached(batch: Vec<Reached>) -> (Vec<String>, Vec<i64>) {
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    for (session, seq) in batch {
        let at = highest.entry(session).or_insert(seq);
        *at = (*at).max(seq);
    }
    highest.into_iter().unzip()
}

/// The indexer's connection, with its statement prepared once.
struct Connection {
    client: PgClient,
    catch_up: postgres::Statement,
}

impl Connection {
    fn open(target: &Target) -> Option<Self> {
        let mut client = super::connect(&target.config, &target.options, &target.location).ok()?;
        let catch_up = client.prepare(CATCH_UP).ok()?;
        Some(Connection { client, catch_up })
    }
}

/// The thread: a batch at a time, until the store goes.
fn run(target: &Target, rx: &Receiver<Reached>) {
    let mut connection: Option<Connection> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
            connection = Connection::open(target);
        }
        if let Some(c) = connection.as_mut() {
            let (sessions, bounds) = reached(batch);
            if c.client.query(&c.catch_up, &[&sessions, &bounds]).is_err() {
                connection = None;
            }
        }
        std::thread::sleep(REST);
    }
}
