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
//! * **Then the search index catches up, in a lull.** The entries that
//!   writers committed unindexed (`search_catch_up`,
//!   migrations/postgres/0003_search_deferred.sql) are indexed once no
//!   notice came for [`LULL`], or once the oldest of them waited
//!   [`MAX_LAG`] (as a search engine refreshes its index every second), in
//!   one transaction of their own for every session announced meanwhile,
//!   each up to the seq announced. Computing words is the most CPU and WAL
//!   an entry costs: done while appends stream, it takes the server from
//!   their commits (`docs/performance.md`, PG2). Searches, verify and the
//!   index's size catch up on their own before they look, so none sees
//!   the index trail the log.
//! * **Best effort.** A notice that cannot be sent (the server is gone, the
//!   process exits first) is dropped; followers also look again on their
//!   own at least once a second (`crate::store::PG_RECHECK`). A failed batch
//!   makes the next one open a new connection.
//! * **Lifetime.** The thread and its connection start with the first
//!   notice and end when the store is dropped, after sending what is
//!   queued and catching the index up (waited for, except inside an async
//!   runtime, where the drop does not block).

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Config;

use super::client::PgClient;
use crate::StoreOptions;

/// Sends the notices of one batch, in order, without waiting for a flush.
const ANNOUNCE: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     pg_notify($1::text, n.notice) \
     FROM unnest($2::text[]) WITH ORDINALITY AS n (notice, i) ORDER BY n.i";

/// Indexes the sessions `$1`, each up to the seq in `$2`, without waiting
/// for a flush (derived from entries already durable).
const CATCH_UP: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     search_catch_up($1::text[], $2::bigint[])";

/// How long no notice must come before the search index catches up.
pub(crate) const LULL: Duration = Duration::from_millis(50);

/// The longest an announced entry waits for the search index to catch up
/// while notices keep coming.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(1);

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

/// What the search index has yet to catch up with: each session announced
/// since the last catch-up, with the highest seq announced, and when the
/// first of them was.
#[derive(Default)]
struct Pending {
    reached: BTreeMap<String, i64>,
    since: Option<Instant>,
}

impl Pending {
    fn add(&mut self, batch: &[String]) {
        for notice in batch {
            if let Some((session, seq)) = notice.rsplit_once(':') {
                let seq: i64 = seq.parse().unwrap_or(i64::MAX);
                let at = self.reached.entry(session.to_owned()).or_insert(seq);
                *at = (*at).max(seq);
            }
        }
        self.since.get_or_insert_with(Instant::now);
    }

    /// How long the thread may wait for the next notice before catching up.
    fn patience(&self) -> Option<Duration> {
        self.since
            .map(|since| LULL.min(MAX_LAG.saturating_sub(since.elapsed())))
    }
}

/// A connection of the thread's, opened again after a failure.
struct Link<'a> {
    target: &'a Target,
    client: Option<PgClient>,
}

impl Link<'_> {
    fn client(&mut self) -> Option<&mut PgClient> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = super::connect(
                &self.target.config,
                &self.target.options,
                &self.target.location,
            )
            .ok();
        }
        self.client.as_mut()
    }

    fn announce(&mut self, batch: &[String]) {
        let channel = self.target.channel.clone();
        if let Some(c) = self.client() {
            if c.query(ANNOUNCE, &[&channel, &batch]).is_err() {
                self.client = None;
            }
        }
    }

    /// Indexes what `pending` names. A failure (the server gone, or an
    /// entry that cannot be indexed) leaves the entries above their marks
    /// for the next catch-up, or the next search, which says why.
    fn catch_up(&mut self, pending: &mut Pending) {
        let reached = std::mem::take(&mut pending.reached);
        pending.since = None;
        if reached.is_empty() {
            return;
        }
        let (sessions, bounds): (Vec<String>, Vec<i64>) = reached.into_iter().unzip();
        if let Some(c) = self.client() {
            if c.query(CATCH_UP, &[&sessions, &bounds]).is_err() && c.is_closed() {
                self.client = None;
            }
        }
    }
}

/// The thread: a batch of notices at a time, the search index caught up in
/// lulls, until the store goes.
fn run(target: &Target, rx: &Receiver<String>) {
    let mut link = Link {
        target,
        client: None,
    };
    let mut pending = Pending::default();
    loop {
        let first = match pending.patience() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        let first = match first {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => {
                link.catch_up(&mut pending);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        link.announce(&batch);
        pending.add(&batch);
        if pending.patience() == Some(Duration::ZERO) {
            link.catch_up(&mut pending);
        }
    }
    link.catch_up(&mut pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_waits_for_a_lull_but_never_past_the_longest_lag() {
        let mut pending = Pending::default();
        assert_eq!(
            pending.patience(),
            None,
            "nothing to catch up: wait for notices"
        );
        pending.add(&[
            "a:3".to_owned(),
            "b:1".to_owned(),
            "a:5".to_owned(),
            "a:4".to_owned(),
        ]);
        assert_eq!(
            pending
                .reached
                .iter()
                .map(|(s, n)| (s.as_str(), *n))
                .collect::<Vec<_>>(),
            [("a", 5), ("b", 1)],
            "each session up to the highest seq announced"
        );
        assert!(pending
            .patience()
            .is_some_and(|p| p <= LULL && p > Duration::ZERO));
        pending.since = Instant::now().checked_sub(MAX_LAG + Duration::from_millis(1));
        assert_eq!(pending.patience(), Some(Duration::ZERO), "overdue: at once");
    }
}
