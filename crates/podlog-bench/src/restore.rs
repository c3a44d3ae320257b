//! Row P6: restoring a long session into a sink, against the raw restore
//! baseline on the same file.
//!
//! The session is written once, at setup: podlog creates it (its
//! `SessionStart` at seq 1), then the rest of the corpus goes in through one
//! transaction on a second connection, in the columns of podlog's
//! `entries` table, with the session row's counters updated to match. One
//! transaction instead of one per entry keeps the setup to a second;
//! appending is what rows P1 to P3 measure. The restore then reads it back
//! through `Store::load_sink` (decode, seq and shape checks, the mirror) and
//! through [`crate::baseline::raw_restore`] (decode only).
//!
//! Row H3 restores whole pods on two such sessions, one short and one
//! long ([`RestoreFixture::build_closed`], [`RestoreFixture::pod_restore`]):
//! how `Pod::restore`'s time grows with the session's length.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{LogEntry, SessionId, SystemItem};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_store::{Store, Synchronous};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::append::{new_session, open_store};
use crate::baseline::{open_reader, raw_restore};
use crate::corpus::Corpus;
use crate::error::{self, BenchError, Result};

/// A store holding one session of a given length, and a raw reader on the
/// same file.
pub struct RestoreFixture {
    row: &'static str,
    path: PathBuf,
    store: Arc<Store>,
    session: SessionId,
    reader: Connection,
    len: usize,
}

impl RestoreFixture {
    /// Writes a `len`-entry session (`len` >= 1) to a new store at
    /// `dir/name`.
    pub fn build(dir: &Path, name: &str, len: usize) -> Result<Self> {
        Self::build_as("P6", dir, name, len, false)
    }

    /// [`RestoreFixture::build`] for `row`, with a session that ends with a
    /// closed run: where the corpus would end inside a run, that run's
    /// entries are replaced by runtime notifications, so that restoring a
    /// pod on it finds no run to close and writes nothing.
    pub fn build_closed(row: &'static str, dir: &Path, name: &str, len: usize) -> Result<Self> {
        Self::build_as(row, dir, name, len, true)
    }

    fn build_as(
        row: &'static str,
        dir: &Path,
        name: &str,
        len: usize,
        closed: bool,
    ) -> Result<Self> {
        let store = open_store(row, dir, name, Synchronous::Normal)?;
        let session = new_session(row, &store)?.0.session().clone();
        let path = dir.join(name);
        fill(row, &path, &session, len, closed)?;
        let reader = open_reader(&path)?;
        Ok(Self {
            row,
            path,
            store,
            session,
            reader,
            len: len.max(1),
        })
    }

    /// The store holding the session.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Entries in the session when it was built.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the session is empty (never: it has its `SessionStart`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Restores the session with `Store::load_sink`; returns the time taken.
    pub fn podlog(&self) -> Result<Duration> {
        let start = Instant::now();
        let sink = self
            .store
            .load_sink(&self.session)
            .map_err(error::store(self.row))?;
        let elapsed = start.elapsed();
        self.check(sink.len())?;
        Ok(elapsed)
    }

    /// Restores the session with the raw baseline; returns the time taken.
    pub fn raw(&self) -> Result<Duration> {
        let start = Instant::now();
        let entries = raw_restore(&self.reader, &self.path, self.session.as_str())?;
        let elapsed = start.elapsed();
        self.check(entries.len())?;
        Ok(elapsed)
    }

    /// Restores a pod on the session with `Pod::restore` (its writer, the
    /// entries read and checked, its mirror, its run loop), then shuts it
    /// down; returns the time `Pod::restore` took.
    pub fn pod_restore(&self) -> Result<Duration> {
        let start = Instant::now();
        let pod = Pod::restore(
            self.store.clone(),
            &self.session,
            Box::new(ScriptedDriver::demo()),
        )
        .map_err(|e| BenchError::Check {
            row: self.row,
            problem: format!("cannot restore a pod on session {}: {e}", self.session),
        })?;
        let elapsed = start.elapsed();
        let end = pod.end_seq().get();
        pod.shutdown();
        drop(pod);
        self.check(usize::try_from(end).unwrap_or(usize::MAX))?;
        Ok(elapsed)
    }

    fn check(&self, got: usize) -> Result<()> {
        if got == self.len {
            Ok(())
        } else {
            Err(BenchError::Check {
                row: self.row,
                problem: format!(
                    "restored {got} entries of session {}, want {}",
                    self.session, self.len
                ),
            })
        }
    }
}

/// Adds seq 2..=len to `session` (which holds only its `SessionStart`) in
/// one transaction; with `closed`, the entries of a run the corpus leaves
/// open at the end become notifications.
fn fill(
    row: &'static str,
    path: &Path,
    session: &SessionId,
    len: usize,
    closed: bool,
) -> Result<()> {
    let fail = error::sqlite(row, path);
    let mut conn = Connection::open(path).map_err(&fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&fail)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(&fail)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&fail)?;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO entries (session_id, seq, ts, kind, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(&fail)?;
        let mut put = |seq: u64, entry: &LogEntry| {
            insert
                .execute(params![
                    session.as_str(),
                    seq,
                    entry.ts(),
                    entry.kind(),
                    entry.to_json()
                ])
                .map(|_| ())
                .map_err(&fail)
        };
        // Entries of the run under way, held back while `closed` until the
        // run ends.
        let mut open_run: Vec<LogEntry> = Vec::new();
        let mut seq = 2u64;
        for entry in Corpus::new(6).take(len.saturating_sub(1)) {
            if !closed {
                put(seq, &entry)?;
                seq += 1;
                continue;
            }
            let ends = entry.ends_run();
            open_run.push(entry);
            if ends {
                for entry in open_run.drain(..) {
                    put(seq, &entry)?;
                    seq += 1;
                }
            }
        }
        for entry in open_run {
            let notification = LogEntry::SystemItem {
                ts: entry.ts(),
                item: SystemItem::Notification {
                    message: "the index is up to date".to_owned(),
                    body: "[Notification] the index is up to date".to_owned(),
                },
            };
            put(seq, &notification)?;
            seq += 1;
        }
    }
    let last = len.max(1) as u64;
    tx.execute(
        "UPDATE sessions SET last_seq = ?2, entry_count = ?2 WHERE id = ?1",
        params![session.as_str(), last],
    )
    .map_err(&fail)?;
    tx.commit().map_err(&fail)
}
