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
//! * **Folds the session rows.** An append leaves its session's row alone
//!   (`migrations/postgres/0004_session_tail.sql`). After a catch-up, each
//!   session handed over that went [`FOLD_EVERY`] seqs or more past the
//!   last seq this thread folded it at (0 for one it has not folded) gets
//!   its row's counters brought up to date with its tail ([`FOLD_TAIL`]),
//!   in a transaction of its own at `synchronous_commit=off`, so that the
//!   tail every read adds stays short, and no append's transaction pays
//!   for it. A fold moves a row only forward and only while its session is
//!   open for writing (`tail`); one lost in a crash leaves the tail
//!   longer, never the counters wrong.
//! * **Best effort.** A catch-up or a fold that fails (the server is gone, an entry
//!   cannot be indexed) is dropped; the entries stay above their session's
//!   mark, and the next catch-up or search indexes them (or says why it
//!   cannot). A failed batch makes the next one open a new connection.
//! * **Lifetime.** The thread and its connection start with the first
//!   commit handed over and end when the store is dropped, after indexing
//!   what is queued (waited for, except inside an async runtime, where the
//!   drop does not block).

use std::collections::{BTreeMap, HashMap};
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

/// How far past its last fold a session goes before the thread folds it
/// again.
pub(crate) const FOLD_EVERY: i64 = 64;

/// Brings the rows of the sessions `$1` up to date with their tails, as
/// the writer's open does (`pg/writer.rs`), without touching `tail`. Run
/// without the sessions' locks, next to their writers' appends and
/// folds, so guarded to be right whatever the order: only a session open
/// for writing (`tail`) is folded (a closed one's row is exact, and a
/// fold that waited for the close sees `tail` gone), and only forward
/// (`last_seq` grows). Any snapshot's fold is right: it sets the counters
/// of the entries up to the `last_seq` it sets, and readers add the rest.
pub(crate) const FOLD_TAIL: &str = "\
     WITH folded AS ( \
       UPDATE sessions AS s SET last_seq = n.last_seq, entry_count = n.entry_count, \
         updated_at = n.updated_at, redactions = n.redactions, stored_bytes = n.stored_bytes \
       FROM unnest($1::text[]) AS f (id), sessions_now AS n \
       WHERE s.id = f.id AND n.id = s.id AND s.tail AND n.last_seq > s.last_seq \
       RETURNING 1) \
     SELECT set_config('synchronous_commit', 'off', true), (SELECT count(*) FROM folded)";

/// Most sessions whose last fold the thread remembers; past that it
/// forgets them all, and folds each again when it next comes by.
const REMEMBERED: usize = 4096;

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

/// The indexer's connection, with its statements prepared once.
struct Connection {
    client: PgClient,
    catch_up: postgres::Statement,
    fold: postgres::Statement,
}

impl Connection {
    fn open(target: &Target) -> Option<Self> {
        let mut client = super::connect(&target.config, &target.options, &target.location).ok()?;
        let catch_up = client.prepare(CATCH_UP).ok()?;
        let fold = client.prepare(FOLD_TAIL).ok()?;
        Some(Connection {
            client,
            catch_up,
            fold,
        })
    }

    /// Catches the index up with `sessions`, each up to its seq in
    /// `bounds`, then folds those of them `folds` says are due.
    fn run(
        &mut self,
        sessions: &[String],
        bounds: &[i64],
        folds: &mut Folds,
    ) -> Result<(), postgres::Error> {
        self.client
            .query(&self.catch_up, &[&sessions, &bounds])
            .map(drop)?;
        let due = folds.due(sessions, bounds);
        if !due.is_empty() {
            self.client.query(&self.fold, &[&due]).map(drop)?;
        }
        Ok(())
    }
}

/// The seq each session was last folded at, by this thread.
#[derive(Default)]
struct Folds {
    at: HashMap<String, i64>,
}

impl Folds {
    /// The sessions of `sessions` (each reached the seq beside it in
    /// `bounds`) that went [`FOLD_EVERY`] past their last fold, noted as
    /// folded there.
    fn due(&mut self, sessions: &[String], bounds: &[i64]) -> Vec<String> {
        if self.at.len() > REMEMBERED {
            self.at.clear();
        }
        let mut due = Vec::new();
        for (session, &seq) in sessions.iter().zip(bounds) {
            let at = self.at.get(session).copied().unwrap_or(0);
            if seq - at >= FOLD_EVERY {
                self.at.insert(session.clone(), seq);
                due.push(session.clone());
            }
        }
        due
    }
}

/// The thread: a batch at a time, until the store goes.
fn run(target: &Target, rx: &Receiver<Reached>) {
    let mut connection: Option<Connection> = None;
    let mut folds = Folds::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
            connection = Connection::open(target);
        }
        if let Some(c) = connection.as_mut() {
            let (sessions, bounds) = reached(batch);
            if c.run(&sessions, &bounds, &mut folds).is_err() {
                connection = None;
            }
        }
        std::thread::sleep(REST);
    }
}
