//! Group commit: concurrent appends share one SQLite transaction.
//!
//! Each [`crate::SqliteSessionWriter::append`] call queues its entry, with the
//! seq its writer assigned, and waits. The first caller
//! to find no commit under way becomes the *leader*: it takes every queued
//! entry (its own and those of callers that arrived meanwhile, for any
//! session), writes them in one `BEGIN IMMEDIATE` transaction, commits, then
//! publishes each entry to its session's sink in queue order, and only then
//! hands every caller its result. Callers that arrive while a leader is
//! committing queue up and are committed by the next leader, so one disk
//! flush covers many entries when appends are concurrent, and a lone append
//! costs what it did without batching.
//!
//! # Gathering
//!
//! Writers released by one commit come back with their next entries a few
//! microseconds apart; a leader that took the queue at once would commit the
//! first one or two and leave the rest for another flush. So a leader that
//! has the writer waits, before taking the queue, until as many callers have
//! queued as there were distinct callers in the last two transactions, or
//! until half of a typical commit's duration (a moving average) has passed,
//! whichever comes first. Only callers that shared a transaction count: a
//! lone writer, or writers that take turns, never wait; with many at once,
//! a wait costs at most half a commit and usually saves a whole one. This is PostgreSQL's `commit_delay` idea, made adaptive.
//! Callers redact and render their entry's JSON before they queue (see
//! [`crate::redaction`]), so the leader's time goes to SQLite.
//!
//! # Guarantees
//!
//! * An entry is published, and its `append` returns `Ok`, only after the
//!   transaction that holds it committed.
//! * If the transaction fails (disk full, I/O error, read-only file, lock
//!   timeout), every entry in it fails with that error and none is
//!   published. An entry that is wrong on its own (its session row's
//!   `last_seq` is not the one its writer expects) fails alone and is left
//!   out of the transaction.
//! * **Unwind safety.** A panic anywhere in a batch (rendering an entry,
//!   inserting, publishing) fails that batch's callers that have no result
//!   yet with [`StoreError::Panicked`], which says whether their entry was
//!   rolled back or is committed but unpublished; the leader's role is given
//!   up on the way out, so the next append finds the store usable.
//! * Within a session, seqs follow queue order, and entries reach the sink in
//!   seq order: the leader publishes while it still holds the writer.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_sink::SessionLogSink;
use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::StoreError;
use crate::payloads::{insert_rendered, Rendered};
use crate::{Result, SqliteStore};
use podlog_redact::Redactions;

/// One queued append.
pub(crate) struct Pending {
    caller: ThreadId,
    session: SessionId,
    /// The seq its writer assigned: the session's `last_seq` plus one.
    seq: Seq,
    entry: LogEntry,
    /// `entry`'s row (its JSON, lean when large strings were cut out, and
    /// those strings), rendered by the caller before it queued, so that the
    /// writer's time goes to SQLite alone.
    rendered: Rendered,
    /// The secrets replaced in `entry` (already redacted).
    redactions: Redactions,
    sink: SessionLogSink,
    /// Set once the transaction holding the entry has committed.
    committed: AtomicBool,
    /// The entry as published (lean when strings were cut), or the error.
    result: Mutex<Option<Result<Committed>>>,
}

/// An entry appended: as published, with what redaction replaced in it and
/// what its row added to `sessions.stored_bytes`.
#[derive(Clone, Debug)]
pub struct Appended {
    pub committed: Committed,
    pub redactions: Redactions,
    pub bytes: u64,
}

/// The queue of appends waiting for a leader, and whether one is at work.
#[derive(Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
    /// Signalled when the appends a gathering leader waits for have queued.
    arrived: Condvar,
    transactions: AtomicU64,
    entries: AtomicU64,
    /// A panic to raise in the next batch, for the unwind-safety tests.
    #[cfg(test)]
    pub(crate) fault: Mutex<Option<Fault>>,
}

/// Where a test makes the next batch panic.
/// Appends never write a `SessionStart`: only seq 1 holds one, written by
/// creating, forking or compacting a session. Both backends' writers refuse
/// it with this error.
pub(crate) fn refuse_session_start(session: &SessionId, entry: &LogEntry) -> Result<()> {
    if entry.is_session_start() {
        return Err(StoreError::Rejected {
            session: session.clone(),
            kind: entry.kind().to_owned(),
            reason: "a SessionStart is only ever seq 1; compact or fork to start a session"
                .to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// After the inserts, before `COMMIT`.
    BeforeCommit,
    /// After `COMMIT`, before the entries are published.
    AfterCommit,
}

/// How appends were grouped since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Append transactions that committed.
    pub transactions: u64,
    /// Entries those transactions held.
    pub entries: u64,
}

#[derive(Default)]
struct GroupState {
    queue: Vec<Arc<Pending>>,
    leader_active: bool,
    /// A leader holds the writer and waits for more appends to queue.
    gathering: bool,
    pace: Pace<ThreadId>,
}

/// How long a gathering leader spins before it sleeps.
const SPIN: Duration = Duration::from_micros(20);

/// The longest a leader gathers, whatever the commits cost.
const MAX_GATHER: Duration = Duration::from_millis(2);

/// What a group commit learned from its last transactions: how many appends
/// a leader waits for, and for how long. `K` names a caller (a thread for
/// SQLite, a session for PostgreSQL's write connection).
#[derive(Debug)]
pub(crate) struct Pace<K> {
    /// The distinct callers of the previous transaction.
    previous_callers: HashSet<K>,
    /// How many distinct callers the last two transactions had: how many
    /// appends a leader waits for.
    expected: usize,
    /// Moving average of a transaction's duration, in nanoseconds.
    commit_nanos: u64,
}

impl<K> Default for Pace<K> {
    fn default() -> Self {
        Pace {
            previous_callers: HashSet::new(),
            expected: 0,
            commit_nanos: 0,
        }
    }
}

impl<K: Eq + std::hash::Hash> Pace<K> {
    /// Records the callers and duration of a transaction.
    pub(crate) fn record(&mut self, callers: impl IntoIterator<Item = K>, took: Duration) {
        let callers: HashSet<K> = callers.into_iter().collect();
        // Appends that only take turns (one pod after another, or one pod
        // whose commits come from different threads) never shared a
        // transaction: waiting for the other would only add latency.
        let concurrent = callers.len() > 1 || self.previous_callers.len() > 1;
        self.expected = if concurrent {
            callers.union(&self.previous_callers).count()
        } else {
            callers.len()
        };
        self.previous_callers = callers;
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.commit_nanos = if self.commit_nanos == 0 {
            nanos
        } else {
            (self.commit_nanos * 7 + nanos) / 8
        };
    }

    /// How many appends a leader waits for.
    pub(crate) fn expected(&self) -> usize {
        self.expected
    }

    /// How long a leader may wait for more appends.
    pub(crate) fn gather_time(&self) -> Duration {
        Duration::from_nanos(self.commit_nanos / 2).min(MAX_GATHER)
    }
}

/// A leader's wait for the appends it expects (see "Gathering" above):
/// until `ready` says they have queued, or `gather_time` has passed. It
/// spins for a few microseconds first (writers released by the last commit
/// are often already on their way, and catching them without sleeping
/// saves a wake-up per transaction), then sleeps on `arrived` with
/// `set_gathering` on, so that the append that completes the batch wakes
/// it: on a busy machine a spinning leader (even one that yields) starves
/// the threads it waits for.
pub(crate) fn gather<'a, S>(
    mutex: &'a Mutex<S>,
    arrived: &Condvar,
    ready: impl Fn(&S) -> bool,
    gather_time: impl Fn(&S) -> Duration,
    set_gathering: impl Fn(&mut S, bool),
) -> MutexGuard<'a, S> {
    let mut state = mutex.lock().unwrap_or_else(PoisonError::into_inner);
    if ready(&state) {
        return state;
    }
    let started = Instant::now();
    let deadline = started + gather_time(&state);
    let spin_until = (started + SPIN).min(deadline);
    while !ready(&state) && Instant::now() < spin_until {
        drop(state);
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        state = mutex.lock().unwrap_or_else(PoisonError::into_inner);
    }
    set_gathering(&mut state, true);
    while !ready(&state) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state = arrived
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    set_gathering(&mut state, false);
    state
}

/// A copy of a SQLite error, for handing one failure to every entry of the
/// failed transaction (`rusqlite::Error` is not `Clone`). Keeps the error
/// code, so `StoreError::is_disk_full` and friends still answer.
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

fn append_context(p: &Pending) -> String {
    format!("appending {} to session {}", p.entry.kind(), p.session)
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Clears `leader_active` and wakes every waiting caller when the leader is
/// done, whether its batch returned or panicked.
struct LeaderGuard<'a>(&'a Group);

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leader_active = false;
        self.0.done.notify_all();
    }
}

impl SqliteStore {
    /// Commits `entry` as seq `seq` of `session` (its writer's next seq),
    /// then publishes it to `sink`. Called by [`crate::SqliteSessionWriter`], which
    /// holds the session's lock and so knows the seq.
    ///
    /// Concurrent calls are committed together (see [`crate::commit`]).
    /// Fails, publishing nothing, if `entry` is a `SessionStart` (only seq 1
    /// holds one), if the session row's `last_seq` is not `seq - 1`, or if
    /// the transaction fails (disk full, read-only file, lock timeout, a
    /// panic, ...).
    pub(crate) fn append_at(
        &self,
        session: &SessionId,
        seq: Seq,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Appended> {
        refuse_session_start(session, &entry)?;
        let kind = entry.kind().to_owned();
        let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| self.prepare(entry)))
            .map_err(|panic| StoreError::Panicked {
                session: session.clone(),
                seq,
                committed: false,
                message: format!("rendering the entry: {}", panic_message(&*panic)),
            })?
            .map_err(|reason| StoreError::Rejected {
                session: session.clone(),
                kind,
                reason,
            })?;
        let me = Arc::new(Pending {
            caller: std::thread::current().id(),
            session: session.clone(),
            seq,
            rendered: prepared.rendered,
            entry: prepared.entry,
            redactions: prepared.redactions,
            sink: sink.clone(),
            committed: AtomicBool::new(false),
            result: Mutex::new(None),
        });
        let group = &self.group;
        let mut state = group.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.queue.push(me.clone());
        if state.gathering && state.queue.len() >= state.pace.expected() {
            group.arrived.notify_one();
        }
        let appended = |committed: Committed| Appended {
            committed,
            redactions: me.redactions.clone(),
            bytes: me.rendered.stored_bytes(),
        };
        loop {
            if let Some(result) = take_result(&me) {
                return result.map(appended);
            }
            if !state.leader_active {
                state.leader_active = true;
                drop(state);
                self.lead();
                return take_result(&me)
                    .unwrap_or_else(|| {
                        Err(StoreError::Rejected {
                            session: session.clone(),
                            kind: me.entry.kind().to_owned(),
                            reason: "the commit holding this entry did not finish".to_owned(),
                        })
                    })
                    .map(appended);
            }
            state = group
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// One leader's turn: takes the writer, gathers the queue, commits it.
    /// A panic anywhere in the batch fails the batch's callers that have no
    /// result yet (rolled back, or committed but not published) and leaves
    /// the store usable: the next caller becomes leader as usual.
    fn lead(&self) {
        let group = &self.group;
        let _leader = LeaderGuard(group);
        // Take the batch only once the writer is ours, so that appends
        // arriving while a compaction or fork holds it join this
        // transaction.
        let mut conn = self.writer();
        let batch = group.gather();
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.commit_batch(&mut conn, &batch)));
        if let Err(panic) = outcome {
            let message = panic_message(&*panic);
            for p in &batch {
                let mut result = p.result.lock().unwrap_or_else(PoisonError::into_inner);
                if result.is_none() {
                    *result = Some(Err(StoreError::Panicked {
                        session: p.session.clone(),
                        seq: p.seq,
                        committed: p.committed.load(Ordering::Acquire),
                        message: message.clone(),
                    }));
                }
            }
        }
        let took = started.elapsed();
        group
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pace
            .record(batch.iter().map(|p| p.caller), took);
    }

    /// How appends were grouped into transactions so far.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            transactions: self.group.transactions.load(Ordering::Relaxed),
            entries: self.group.entries.load(Ordering::Relaxed),
        }
    }

    /// The number of appends queued and waiting for a leader.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.group
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }

    /// Makes the next batch panic at `fault`.
    #[cfg(test)]
    pub(crate) fn inject(&self, fault: Fault) {
        *self
            .group
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }

    #[cfg(test)]
    fn maybe_panic(&self, at: Fault) {
        let mut fault = self
            .group
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *fault == Some(at) {
            *fault = None;
            drop(fault);
            panic!("injected fault {at:?}");
        }
    }

    /// Writes `batch` in one transaction, then publishes and hands out
    /// results. The caller holds the writer.
    ///
    /// Per entry: the session row's counters move from `seq - 1` to `seq`
    /// (an `UPDATE` guarded by the expected `last_seq`, so an entry whose
    /// writer is out of step fails alone; `redactions` and `stored_bytes`
    /// grow by the entry's), then the entry row is inserted.
    fn commit_batch(&self, conn: &mut Connection, batch: &[Arc<Pending>]) {
        if batch.is_empty() {
            return;
        }
        let now = self.now();
        let mut failed: Vec<bool> = vec![false; batch.len()];
        let outcome = (|| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut written = 0;
            for (i, p) in batch.iter().enumerate() {
                let moved = tx
                    .prepare_cached(
                        "UPDATE sessions SET last_seq = ?2, entry_count = entry_count + 1, \
                         updated_at = max(updated_at, ?3), redactions = redactions + ?5, \
                         stored_bytes = stored_bytes + ?6 WHERE id = ?1 AND last_seq = ?4",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            p.session.as_str(),
                            p.seq.get(),
                            now,
                            p.seq.get().saturating_sub(1),
                            p.redactions.total(),
                            p.rendered.stored_bytes()
                        ])
                    })?;
                if moved == 0 {
                    failed[i] = true;
                    set_result(
                        p,
                        Err(StoreError::StaleWriter {
                            session: p.session.clone(),
                            seq: p.seq,
                        }),
                    );
                    continue;
                }
                insert_rendered(&tx, &p.session, p.seq, &p.entry, &p.rendered)?;
                written += 1;
            }
            #[cfg(test)]
            self.maybe_panic(Fault::BeforeCommit);
            tx.commit()?;
            Ok(written)
        })();
        match outcome {
            Err(error) => {
                // Rolled back (the transaction was dropped): nothing is
                // published, and every entry in it fails with the cause.
                for (i, p) in batch.iter().enumerate() {
                    if !failed[i] {
                        set_result(
                            p,
                            Err(StoreError::Sqlite {
                                context: append_context(p),
                                source: copy_error(&error),
                            }),
                        );
                    }
                }
            }
            Ok(entries) => {
                self.group.transactions.fetch_add(1, Ordering::Relaxed);
                self.group
                    .entries
                    .fetch_add(entries as u64, Ordering::Relaxed);
                for (i, p) in batch.iter().enumerate() {
                    if !failed[i] {
                        p.committed.store(true, Ordering::Release);
                    }
                }
                #[cfg(test)]
                self.maybe_panic(Fault::AfterCommit);
                // Committed: now, and only now, the entries may be seen.
                for (i, p) in batch.iter().enumerate() {
                    if failed[i] {
                        continue;
                    }
                    let committed = p.rendered.committed(p.seq, &p.entry);
                    let published = p
                        .sink
                        .publish(committed.clone())
                        .map(|()| committed)
                        .map_err(|source| StoreError::Publish {
                            session: p.session.clone(),
                            seq: p.seq,
                            source,
                        });
                    set_result(p, published);
                }
            }
        }
    }
}

impl Group {
    /// Waits (see "Gathering" above) for the expected appends, then takes
    /// the queue. Called by the leader once it holds the writer.
    fn gather(&self) -> Vec<Arc<Pending>> {
        let mut state = gather(
            &self.state,
            &self.arrived,
            |s: &GroupState| s.queue.len() >= s.pace.expected(),
            |s: &GroupState| s.pace.gather_time(),
            |s: &mut GroupState, on| s.gathering = on,
        );
        std::mem::take(&mut state.queue)
    }
}

fn set_result(p: &Pending, result: Result<Committed>) {
    *p.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
}

fn take_result(p: &Pending) -> Option<Result<Committed>> {
    p.result
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_ids(n: usize) -> Vec<ThreadId> {
        (0..n)
            .map(|_| {
                std::thread::spawn(|| std::thread::current().id())
                    .join()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_leader_expects_the_callers_of_the_last_two_transactions() {
        let t = thread_ids(4);
        let mut state = GroupState::default();
        assert_eq!(state.pace.expected, 0, "nothing to wait for at first");
        state
            .pace
            .record([t[0], t[1], t[1]], Duration::from_micros(100));
        assert_eq!(state.pace.expected, 2);
        state.pace.record([t[2]], Duration::from_micros(100));
        assert_eq!(state.pace.expected, 3, "two transactions: t0, t1 and t2");
        state.pace.record([t[2]], Duration::from_micros(100));
        assert_eq!(state.pace.expected, 1, "a lone writer waits for no one");
        state.pace.record([t[3], t[2]], Duration::from_micros(100));
        assert_eq!(state.pace.expected, 2);
        // Writers that take turns, one transaction each, never wait.
        state.pace.record([t[0]], Duration::from_micros(100));
        assert_eq!(state.pace.expected, 3, "t0 follows a shared transaction");
        for (i, &t) in t.iter().cycle().take(8).enumerate() {
            state.pace.record([t], Duration::from_micros(100));
            assert_eq!(state.pace.expected, 1, "turn {i}");
        }
    }

    #[test]
    fn a_leader_gathers_for_half_a_typical_commit_at_most() {
        let mut state = GroupState::default();
        state
            .pace
            .record([std::thread::current().id()], Duration::from_micros(400));
        assert_eq!(state.pace.gather_time(), Duration::from_micros(200));
        // A moving average: one slow commit moves it by an eighth.
        state
            .pace
            .record([std::thread::current().id()], Duration::from_micros(1200));
        assert_eq!(state.pace.gather_time(), Duration::from_micros(250));
        // However slow the disk, the wait is capped.
        for _ in 0..100 {
            state
                .pace
                .record([std::thread::current().id()], Duration::from_secs(1));
        }
        assert_eq!(state.pace.gather_time(), MAX_GATHER);
    }

    #[test]
    fn gathering_stops_at_the_deadline_when_fewer_callers_come() {
        let group = Group::default();
        {
            let mut state = group.state.lock().unwrap();
            state.pace.expected = 8;
            state.pace.commit_nanos = 2_000_000;
        }
        let started = Instant::now();
        let batch = group.gather();
        assert!(batch.is_empty());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1),
            "gathered for {waited:?}"
        );
    }
}
