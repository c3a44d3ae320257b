//! [`SessionWriter`]: the one way to append to a session.
//!
//! # Contract
//!
//! * [`Store::session_writer`] takes the session's cross-process write lock
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
//! * [`SessionWriter::append`] commits, then publishes to the sink passed
//!   in, then returns the seq; a failed append publishes nothing (invariant
//!   1). Appends of many writers are committed together (see
//!   [`crate::commit`]). After a failed append the writer reads `last_seq`
//!   again before its next one, so a failure never leaves it out of step.
//! * Dropping the writer releases the lock; so does the process dying.
//!
//! "One writer per session" is therefore a property of the types: appending
//! needs a `&mut SessionWriter`, and holding one means holding the lock.

use std::sync::Arc;

use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_sink::SessionLogSink;

use crate::lock::SessionLock;
use crate::{Result, Store, StoreError};

/// The write handle of one session: holds its write lock and its last seq.
/// See the module docs.
#[derive(Debug)]
pub struct SessionWriter {
    store: Arc<Store>,
    lock: SessionLock,
    last_seq: Seq,
    /// A failed append may have left the counter elsewhere (a commit that
    /// panicked after `COMMIT`): read it again before the next append.
    reread: bool,
}

impl Store {
    /// Opens `session` for appending: takes its write lock (failing at once
    /// with [`StoreError::SessionLocked`] if another writer has it) and reads
    /// its last seq. See [`crate::writer`].
    pub fn session_writer(self: &Arc<Self>, session: &SessionId) -> Result<SessionWriter> {
        let lock = self.lock_session(session)?;
        let last_seq = self.session(session)?.last_seq;
        Ok(SessionWriter {
            store: self.clone(),
            lock,
            last_seq,
            reread: false,
        })
    }
}

impl SessionWriter {
    /// The session this writer appends to.
    pub fn session(&self) -> &SessionId {
        self.lock.session()
    }

    /// The seq of the session's last committed entry.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The store written to.
    pub fn store(&self) -> &Arc<Store> {
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

    /// [`SessionWriter::append`], returning the entry as it was published:
    /// lean (large strings as previews, with their payload references) when
    /// strings were cut out, as the mirror and the wire carry it.
    pub fn append_published(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Committed> {
        if self.reread {
            self.last_seq = self.store.session(self.lock.session())?.last_seq;
            self.reread = false;
        }
        let seq = self.last_seq.next();
        match self.store.append_at(self.lock.session(), seq, entry, sink) {
            Ok(committed) => {
                self.last_seq = committed.seq;
                Ok(committed)
            }
            // Committed, but the sink refused it: the seq is taken.
            Err(e @ StoreError::Publish { .. }) => {
                self.last_seq = seq;
                Err(e)
            }
            Err(e) => {
                self.reread = true;
                Err(e)
            }
        }
    }
}
