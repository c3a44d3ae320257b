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
//! * **Between bursts.** A catch-up waits for the commits handed over to
//!   pause for [`QUIET`], or for [`MOST_WAIT`] after the first of them,
//!   whichever comes first, so that indexing (`to_tsvector` on the
//!   server, the costliest part of an entry's life) does not compete for
//!   the CPU with a burst of durable appends, the path a pod waits on: an
//!   agent's turn appends in bursts, and a burst is indexed right after
//!   it. After each catch-up the thread rests for [`REST`], so that even a
//!   slow trickle of commits is indexed in a few transactions rather than
//!   one per commit. The index trails the log by at most about
//!   [`MOST_WAIT`] plus [`REST`]; searches catch up on their own before
//!   they look, so they never see it trail.
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
//! * **Best effort.** A catch-up or a fold that fails (the server is gone,
//!   an entry cannot be indexed) is dropped; the entries stay above their
//!   session's mark, and the next catch-up or search indexes them (or says
//!   why it cannot); the session's tail stays longer until a later fold. A
//!   failed batch makes the next one open a new connection.
//! * **Lifetime.** The thread and its connection start with the first
//!   commit handed over and end when the store is dropped, after indexing
//!   what is queued (waited for, except inside an async runtime, where the
//!   drop does not block).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Config;

use super::client::PgClient;
use crate::StoreOptions;

/// Catches the index up with the sessions `$1`, each up to the seq in `$2`.
const CATCH_UP: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     search_catch_up($1::text[], $2::bigint[])";

/// How long the thread rests after each catch-up.
const REST: Duration = Duration::from_millis(50);

/// How long commits must pause before a catch-up starts.
const QUIET: Duration = Duration::from_millis(10);

/// The longest a commit handed over waits for its catch-up to start, when
/// commits keep coming.
const MOST_WAIT: Duration = Duration::from_millis(200);

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

/// The commits handed over from `first` on, until they pause for
/// [`QUIET`] or [`MOST_WAIT`] has passed (or the store is going): each
/// session with the highest seq handed over for it. The thread sleeps and
/// then looks, rather than waiting on the channel, so that a stream of
/// commits does not wake it once per commit.
fn gather(first: Reached, rx: &Receiver<Reached>) -> BTreeMap<String, i64> {
    let started = Instant::now();
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    let mut add = |(session, seq): Reached| {
        let at = highest.entry(session).or_insert(seq);
        *at = (*at).max(seq);
    };
    add(first);
    rx.try_iter().for_each(&mut add);
    while started.elapsed() < MOST_WAIT {
        std::thread::sleep(QUIET);
        let mut more = false;
        for reached in rx.try_iter() {
            add(reached);
            more = true;
        }
        if !more {
            break;
        }
    }
    highest
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
        let batch = gather(first, rx);
        if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
            connection = Connection::open(target);
        }
        if let Some(c) = connection.as_mut() {
            let (sessions, bounds): (Vec<String>, Vec<i64>) = batch.into_iter().unzip();
            if c.run(&sessions, &bounds, &mut folds).is_err() {
                connection = None;
            }
        }
        std::thread::sleep(REST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch is each session's highest seq; it ends once commits pause
    /// for `QUIET`, and at once when the store goes.
    #[test]
    fn a_batch_waits_for_a_pause_and_keeps_each_sessions_highest_seq() {
        let (tx, rx) = channel();
        for (session, seq) in [("b", 4), ("a", 2), ("b", 3), ("a", 5)] {
            tx.send((session.to_owned(), seq)).unwrap();
        }
        let started = Instant::now();
        let batch = gather(("b".to_owned(), 1), &rx);
        assert!(started.elapsed() >= QUIET, "{:?}", started.elapsed());
        assert_eq!(
            batch.into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 5), ("b".to_owned(), 4)]
        );
        tx.send(("c".to_owned(), 9)).unwrap();
        drop(tx);
        let started = Instant::now();
        let batch = gather(("c".to_owned(), 7), &rx);
        assert!(started.elapsed() < MOST_WAIT, "the store is going");
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), [("c".to_owned(), 9)]);
    }
}
