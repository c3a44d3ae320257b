//! [`PodError`]: every way a pod operation can fail, naming the session (and
//! seq) concerned.

use podlog_entry::{Seq, SessionId};
use podlog_store::{LockHolder, StoreError};

/// A pod operation failed. Messages are lowercase and can be shown to a user
/// as they are.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The store failed (disk full, I/O error, unknown session, a fork cut
    /// that is refused, ...). Nothing was published.
    #[error(transparent)]
    Store(StoreError),

    /// Another live process (or another pod in this one) writes the session.
    #[error("session {session} is being written by {holder}; attach read-only or stop that pod")]
    SessionLocked {
        session: SessionId,
        holder: LockHolder,
    },

    /// A run, compaction or fork is in progress; try again when it is over.
    #[error("session {session} is busy with a run, compaction or fork")]
    Busy { session: SessionId },

    /// The pod was shut down: it no longer writes.
    #[error("the pod of session {session} is shut down")]
    Closed { session: SessionId },

    /// The entry may not be committed this way (a driver committing the
    /// entries that open or close a run, which the pod commits itself).
    #[error("cannot commit {kind} to session {session}: {reason}")]
    Rejected {
        session: SessionId,
        kind: String,
        reason: String,
    },

    /// The driver could not summarise the conversation for a compaction.
    #[error("cannot compact session {session}: the driver failed to summarise: {message}")]
    Summarise { session: SessionId, message: String },

    /// The sink refused what the store committed: the pod's mirror no longer
    /// matches the store. The entry is on disk.
    #[error("session {session} seq {seq} is committed but the mirror refused it: {source}")]
    Mirror {
        session: SessionId,
        seq: Seq,
        source: podlog_sink::SinkError,
    },
}

impl From<StoreError> for PodError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SessionLocked { session, holder } => {
                PodError::SessionLocked { session, holder }
            }
            StoreError::Publish {
                session,
                seq,
                source,
            } => PodError::Mirror {
                session,
                seq,
                source,
            },
            other => PodError::Store(other),
        }
    }
}
