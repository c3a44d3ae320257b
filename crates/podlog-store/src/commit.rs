//! Group commit: concurrent appends share one SQLite transaction.
//!
//! Each [`Store::append`] call queues its entry and waits. The first caller
//! to find no commit under way becomes the *leader*: it takes every queued
//! entry (its own and those of callers that arrived meanwhile, for any
//! session), writes them in one `BEGIN IMMEDIATE` transaction, commits, then
//! publishes each entry to its session's sink in queue order, and only then
//! hands every caller its result. Callers that arrive while a leader is
//! committing queue up and are committed by the next leader, so one disk
//! flush covers many entries when appends are concurrent, and a lone append
//! costs what it did without batching.
//!
//! # Guarantees
//!
//! * An entry is published, and its `append` returns `Ok`, only after the
//!   transaction that holds it committed.
//! * If the transaction fails (disk full, I/O error, read-only file, lock
//!   timeout), every entry in it fails with that error and none is
//!   published. An entry that is wrong on its own (an unknown session) fails
//!   alone and is left out of the transaction.
//! * Within a session, seqs follow queue order, and entries reach the sink in
//!   seq order: the leader publishes while it still holds the writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_sink::SessionLogSink;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::StoreError;
use crate::{insert_entry, Result, Store};

/// One queued append.
pub(crate) struct Pending {
    session: SessionId,
    entry: LogEntry,
    sink: SessionLogSink,
    result: Mutex<Option<Result<Seq>>>,
}

/// The queue of appends waiting for a leader, and whether one is at work.
#[derive(Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
    transactions: AtomicU64,
    entries: AtomicU64,
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

impl Store {
    /// Commits `entry` as the next entry of `session`, then publishes it to
    /// `sink`, the session's mirror. Returns its seq.
    ///
    /// Concurrent calls are committed together (see [`crate::commit`]).
    /// Fails, publishing nothing, if the session does not exist, if `entry`
    /// is a `SessionStart` (only seq 1 holds one), or if the transaction
    /// fails (disk full, read-only file, lock timeout, ...).
    pub fn append(
        &self,
        session: &SessionId,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Seq> {
        if entry.is_session_start() {
            return Err(StoreError::Rejected {
                session: session.clone(),
                kind: entry.kind().to_owned(),
                reason: "a SessionStart is only ever seq 1; compact or fork to start a session"
                    .to_owned(),
            });
        }
        let me = Arc::new(Pending {
            session: session.clone(),
            entry,
            sink: sink.clone(),
            result: Mutex::new(None),
        });
        let group = &self.group;
        let mut state = group.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.queue.push(me.clone());
        loop {
            if let Some(result) = take_result(&me) {
                return result;
            }
            if !state.leader_active {
                state.leader_active = true;
                drop(state);
                {
                    // Take the batch only once the writer is ours, so that
                    // appends arriving while a compaction or fork holds it
                    // join this transaction.
                    let mut conn = self.writer();
                    let batch = std::mem::take(
                        &mut group
                            .state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .queue,
                    );
                    self.commit_batch(&mut conn, &batch);
                }
                let mut state = group.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.leader_active = false;
                drop(state);
                group.done.notify_all();
                return take_result(&me).unwrap_or_else(|| {
                    Err(StoreError::Rejected {
                        session: session.clone(),
                        kind: me.entry.kind().to_owned(),
                        reason: "the commit holding this entry did not finish".to_owned(),
                    })
                });
            }
            state = group
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
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

    /// Writes `batch` in one transaction, then publishes and hands out
    /// results. The caller holds the writer.
    fn commit_batch(&self, conn: &mut Connection, batch: &[Arc<Pending>]) {
        if batch.is_empty() {
            return;
        }
        let now = self.now();
        let mut failed: Vec<bool> = vec![false; batch.len()];
        let mut seqs: Vec<Seq> = vec![Seq::ZERO; batch.len()];
        let outcome = (|| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Last seq and entries added, per session touched by the batch.
            let mut touched: HashMap<&SessionId, (u64, u64)> = HashMap::new();
            for (i, p) in batch.iter().enumerate() {
                let last = match touched.get(&p.session) {
                    Some(&(last, _)) => Some(last),
                    None => tx
                        .prepare_cached("SELECT last_seq FROM sessions WHERE id = ?1")
                        .and_then(|mut s| {
                            s.query_row([p.session.as_str()], |r| r.get::<_, u64>(0))
                                .optional()
                        })?,
                };
                let Some(last) = last else {
                    failed[i] = true;
                    set_result(p, Err(StoreError::UnknownSession(p.session.to_string())));
                    continue;
                };
                let seq = Seq(last).next();
                insert_entry(&tx, &p.session, seq, &p.entry)?;
                let added = touched.get(&p.session).map_or(0, |&(_, n)| n);
                touched.insert(&p.session, (seq.get(), added + 1));
                seqs[i] = seq;
            }
            for (session, (last, added)) in &touched {
                tx.prepare_cached(
                    "UPDATE sessions SET last_seq = ?2, entry_count = entry_count + ?3, \
                     updated_at = max(updated_at, ?4) WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![session.as_str(), last, added, now]))?;
            }
            tx.commit()?;
            Ok(touched.values().map(|&(_, n)| n as usize).sum())
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
                // Committed: now, and only now, the entries may be seen.
                for (i, p) in batch.iter().enumerate() {
                    if failed[i] {
                        continue;
                    }
                    let seq = seqs[i];
                    let published = p
                        .sink
                        .publish(Committed::new(seq, p.entry.clone()))
                        .map(|()| seq)
                        .map_err(|source| StoreError::Publish {
                            session: p.session.clone(),
                            seq,
                            source,
                        });
                    set_result(p, published);
                }
            }
        }
    }
}

fn set_result(p: &Pending, result: Result<Seq>) {
    *p.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
}

fn take_result(p: &Pending) -> Option<Result<Seq>> {
    p.result
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}
