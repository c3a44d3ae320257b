//! [`Announcer`]: sends the notices of committed appends from a thread of
//! the store's own, so that an append returns right after its commit.
//!
//! # Contract
//!
//! * **After the commit, never before.** A writer hands `<session>:<seq>`
//!   over only once its append's commit returned Ok; the announcer sends it
//!   on the store's channel with `pg_notify`, in a transaction of its own at
//!   `synchronous_commit=off` (it writes nothing, so committing it
//!   asynchronously risks nothing).
//! * **Why not in the append's transaction.** A transaction that notifies
//!   holds a server-wide lock on the notification queue from its commit
//!   until its WAL flush is done, so notices inside durable commits would
//!   make every session's commit wait for every other's flush
//!   (`docs/performance.md`, PG2). And why not on the writer's connection:
//!   that is one more round trip before the append returns (PG1).
//! * **Batched, in order.** Notices that queue up while one batch is sent go
//!   in the next, one statement, in the order they were handed over.
//! * **The search index catches up first.** The same statement indexes the
//!   batch's sessions' entries that their writers committed unindexed
//!   (`search_catch_up`, migrations/postgres/0003_search_deferred.sql), so
//!   the index trails the log by about one batch; searches catch up on
//!   their own before they look, so they never see it trail.
//! * **Best effort.** A notice that cannot be sent (the server is gone, the
//!   process exits first) is dropped; followers also look again on their
//!   own at least once a second (`crate::store::PG_RECHECK`). A failed batch
//!   makes the next one open a new connection.
//! * **Lifetime.** The thread and its connection start with the first
//!   notice and end when the store is dropped, after sending what is
//!   queued (waited for, except inside an async runtime, where the drop
//!   does not block).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use postgres::Config;

use super::client::PgClient;
use crate::StoreOptions;

/// Sends the notices of one batch, in order, without waiting for a flush.
const ANNOUNCE: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     pg_notify($1::text, n.notice) \
     FROM unnest($2::text[]) WITH ORDINALITY AS n (notice, i) ORDER BY n.i";

/// [`ANNOUNCE`], and in the same transaction the search index caught up
/// with the sessions `$3`, each up to the seq in `$4` (`search_catch_up`, see
/// migrations/postgres/0003_search_deferred.sql). Notices go out at commit
/// whatever their place in the statement, so a follower they wake finds
/// the entries searchable.
const CATCH_UP_AND_ANNOUNCE: &str = "WITH indexed AS ( \
       SELECT set_config('synchronous_commit', 'off', true), \
         search_catch_up($3::text[], $4::bigint[])) \
     SELECT pg_notify($1::text, n.notice) \
     FROM indexed, unnest($2::text[]) WITH ORDINALITY AS n (notice, i) ORDER BY n.i";

/// The most notices one statement sends.
const BATCH: usize = 512;

/// How the announcer's thread connects.
pub(crate) struct Target {
    pub(crate) config: Config,
    pub(crate) options: StoreOptions,
    pub(crate) location: String,
    pub(crate) channel: String,
}

/// The store's announcer; see the module docs.
pub(crate) struct Announcer {
    target: Target,
    running: Mutex<Option<(Sender<String>, JoinHandle<()>)>>,
}

impl Announcer {
    pub(crate) fn new(target: Target) -> Self {
        Announcer {
            target,
            running: Mutex::new(None),
        }
    }

    /// Queues `notice`, starting the thread on first use.
    pub(crate) fn announce(&self, notice: String) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.is_none() {
            let (tx, rx) = channel();
            let target = Target {
                config: self.target.config.clone(),
                options: self.target.options.clone(),
                location: self.target.location.clone(),
                channel: self.target.channel.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("podlog-pg-announce".to_owned())
                .spawn(move || run(&target, &rx));
            // Without a thread the notice is dropped, as the contract allows.
            let Ok(handle) = spawned else { return };
            *running = Some((tx, handle));
        }
        if let Some((tx, _)) = running.as_ref() {
            let _ = tx.send(notice);
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, handle)) = running {
            // The thread sends what is queued, then sees the channel closed.
            drop(tx);
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = handle.join();
            }
        }
    }
}

/// The sessions of a batch of notices `<session>:<seq>`, each with the
/// highest seq announced for it.
fn reached(batch: &[String]) -> (Vec<&str>, Vec<i64>) {
    let mut highest: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for notice in batch {
        if let Some((session, seq)) = notice.rsplit_once(':') {
            let seq: i64 = seq.parse().unwrap_or(i64::MAX);
            let at = highest.entry(session).or_insert(seq);
            *at = (*at).max(seq);
        }
    }
    highest.into_iter().unzip()
}

/// The announcer's connection, with its two statements prepared once
/// (planning them for every batch cost as much as running them).
struct Connection {
    client: PgClient,
    catch_up_and_announce: postgres::Statement,
    announce: postgres::Statement,
}

impl Connection {
    fn open(target: &Target) -> Option<Self> {
        let mut client = super::connect(&target.config, &target.options, &target.location).ok()?;
        let catch_up_and_announce = client.prepare(CATCH_UP_AND_ANNOUNCE).ok()?;
        let announce = client.prepare(ANNOUNCE).ok()?;
        Some(Connection {
            client,
            catch_up_and_announce,
            announce,
        })
    }
}

/// The thread: a batch at a time, until the store goes.
fn run(target: &Target, rx: &Receiver<String>) {
    let mut connection: Option<Connection> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
            connection = Connection::open(target);
        }
        if let Some(c) = connection.as_mut() {
            let (sessions, bounds) = reached(&batch);
            // Should the catch-up fail (its entry cannot be indexed), the
            // notices still go; the entries stay above the mark, and the
            // next search says why.
            let sent = c
                .client
                .query(
                    &c.catch_up_and_announce,
                    &[&target.channel, &batch, &sessions, &bounds],
                )
                .or_else(|_| c.client.query(&c.announce, &[&target.channel, &batch]));
            if sent.is_err() {
                connection = None;
            }
        }
    }
}
