//! [`SqliteSessionWriter`]: the one way to append to a session.
//!
//! # Contract
//!
//! * [`SqliteStore::session_writer`] takes the session's cross-process write lock
//!   (see [`crate::lock`]) and reads the session's `last_seq` once. It fails
//!   with [`StoreError::SessionLocked`], naming the holder, while another
//!   writer (in this process or another) has the session, and with
//!   [`StoreError::UnknownSession`] for a session that does not exist.
//! * While the writer lives, no one else appends to the session, so the
//!   writer keeps `last_seq` in memory: an append is the entry's `INSERT`
//!   and the session row's counter update, with nothing read first
//!   (invariant 3: the seq is still assigned inside the write transaction,
//!   from a counter only this writer moves). The update is guarded by the
//!   counter's expected value, so a row changed behind the lock's back (by
//!   hand, with the lock ignored) fails the append with
//!   [`StoreError::StaleWriter`] instead of writing a gap or a duplicate.
//! * [`SqliteSessionWriter::append`] commits, then publishes to the sink passed
//!   in, then returns the seq; a failed append publishes nothing (invariant
//!   1). Appends of many writers are committed together (see
//!   [`crate::commit`]). After a failed append the writer reads `last_seq`
//!   again before its next one, so a failure never leaves it out of step.
//! * The writer also keeps the session's `redactions` and `stored_bytes`
//!   counters (read with `last_seq`), so [`SqliteSessionWriter::append_reported`]
//!   can say what an append changed without a read: whether it was the
//!   session's first redaction, and which size it grew from and to.
//! * Dropping the writer releases the lock; so does the process dying.
//!
//! "One writer per session" is therefore a property of the types: appending
//! needs a `&mut SqliteSessionWriter`, and holding one means holding the lock.

use std::sync::Arc;

use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_redact::Redactions;
use podlog_sink::SessionLogSink;

use crate::lock::SessionLock;
use crate::{Result, SqliteStore, StoreError};

/// The write handle of one session: holds its write lock and its last seq.
/// See the module docs.
#[derive(Debug)]
pub struct SqliteSessionWriter {
    store: Arc<SqliteStore>,
    lock: SessionLock,
    last_seq: Seq,
    /// The session's `redactions` counter.
    redactions: u64,
    /// The session's `stored_bytes` counter.
    stored_bytes: u64,
    /// A failed append may have left the counter elsewhere (a commit that
    /// panicked after `COMMIT`): read it again before the next append.
    reread: bool,
}

impl SqliteStore {
    /// Opens `session` for appending: takes its write lock (failing at once
    /// with [`StoreError::SessionLocked`] if another writer has it) and reads
    /// its last seq. See [`crate::writer`].
    pub fn session_writer(self: &Arc<Self>, session: &SessionId) -> Result<SqliteSessionWriter> {
        let lock = self.lock_session(session)?;
        let info = self.session(session)?;
        Ok(SqliteSessionWriter {
            store: self.clone(),
            lock,
            last_seq: info.last_seq,
            redactions: info.redactions,
            stored_bytes: info.stored_bytes,
            reread: false,
        })
    }
}

impl SqliteSessionWriter {
    /// The session this writer appends to.
    pub fn session(&self) -> &SessionId {
        self.lock.session()
    }

    /// The seq of the session's last committed entry.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Secrets redacted in the session so far.
    pub fn redactions(&self) -> u64 {
        self.redactions
    }

    /// The session's stored size in bytes (`sessions.stored_bytes`).
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// The store written to.
    pub fn store(&self) -> &Arc<SqliteStore> {
        &self.store
    }

    /// The write lock held.
    pub fn lock(&self) -> &SessionLock {
        &self.lock
    }

    /// Commits `entry` as the session's next entry, then publishes it to
    /// `sink` (the session's mirror) and returns its seq. Fails, publishing
    /// nothing, if `entry` is a `SessionStart` (only seq 1 holds one) or if
    /// the transaction fails (disk full, read-only file, lock timeout, ...).
    pub fn append(&mut self, entry: LogEntry, sink: &SessionLogSink) -> Result<Seq> {
        self.append_published(entry, sink).map(|c| c.seq)
    }

    /// [`SqliteSessionWriter::append`], returning the entry as it was published:
    /// lean (large strings as previews, with their payload references) when
    /// strings were cut out, as the mirror and the wire carry it.
    pub fn append_published(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Committed> {
        self.append_reported(entry, sink).map(|r| r.committed)
    }

    /// [`SqliteSessionWriter::append_published`], with what the append changed:
    /// the secrets redacted in the entry and the session's counters before
    /// and after it.
    pub fn append_reported(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<AppendReport> {
        if self.reread {
            let info = self.store.session(self.lock.session())?;
            self.last_seq = info.last_seq;
            self.redactions = info.redactions;
            self.stored_bytes = info.stored_bytes;
            self.reread = false;
        }
        let seq = self.last_seq.next();
        match self.store.append_at(self.lock.session(), seq, entry, sink) {
            Ok(appended) => {
                let report = AppendReport {
                    redactions_before: self.redactions,
                    stored_before: self.stored_bytes,
                    stored_after: self.stored_bytes + appended.bytes,
                    committed: appended.committed,
                    redactions: appended.redactions,
                };
                self.last_seq = report.committed.seq;
                self.redactions += report.redactions.total();
                self.stored_bytes = report.stored_after;
                Ok(report)
            }
            // Committed, but the sink refused it: the seq is taken (and
            // the counters moved by amounts this writer no longer knows).
            Err(e @ StoreError::Publish { .. }) => {
                self.last_seq = seq;
                self.reread = true;
                Err(e)
            }
            Err(e) => {
                self.reread = true;
                Err(e)
            }
        }
    }
}

/// What one append did: see [`SqliteSessionWriter::append_reported`].
#[derive(Clone, Debug)]
pub struct AppendReport {
    /// The entry as published (redacted; lean when strings were cut).
    pub committed: Committed,
    /// The secrets replaced in it.
    pub redactions: Redactions,
    /// The session's `redactions` before this append.
    pub redactions_before: u64,
    /// The session's `stored_bytes` before and after this append.
    pub stored_before: u64,
    pub stored_after: u64,
}
