//! [`Replica`]: a client's copy of a pod's log, rebuilt from the events it
//! receives, with every seq checked.
//!
//! A replica starts empty. A `Snapshot` replaces it with the snapshot's
//! session and entries; a `SessionRotated` replaces it with the new
//! session's `SessionStart`; each committed event must carry the next seq
//! and is appended. A committed event that skips a seq or repeats one is an
//! error ([`ReplicaError`]), and the replica is left as it was: a client
//! that gets one has missed events and should `resume`. Ephemeral events
//! change nothing. Applying what `Pod::subscribe` and the receiver give
//! yields exactly the entries the store holds for the pod's session.

use podlog_entry::{Committed, Seq, SessionId};

use crate::event::Event;

/// An event that does not continue the replica.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A committed event arrived before any `Snapshot` or `SessionRotated`.
    #[error("{kind} at seq {seq} arrived before a snapshot")]
    NoSnapshot { kind: &'static str, seq: Seq },
    /// A committed event whose seq is not the next one.
    #[error("session {session}: {kind} at seq {got} does not follow seq {last}")]
    OutOfOrder {
        session: SessionId,
        kind: &'static str,
        last: Seq,
        got: Seq,
    },
    /// A snapshot whose entries do not run 1, 2, 3, ... with no gap, or
    /// whose `end_seq` is not its last entry's seq.
    #[error("snapshot of session {session} is not contiguous at seq {seq}")]
    BadSnapshot { session: SessionId, seq: Seq },
}

/// A client's copy of the pod's current session. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replica {
    session: Option<SessionId>,
    entries: Vec<Committed>,
}

impl Replica {
    /// An empty replica, waiting for a snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session the replica follows (`None` before a snapshot).
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// The entries, in seq order from seq 1.
    pub fn entries(&self) -> &[Committed] {
        &self.entries
    }

    /// The last seq the replica holds: what to pass to `Pod::resume`.
    pub fn end_seq(&self) -> Seq {
        self.entries.last().map_or(Seq::ZERO, |c| c.seq)
    }

    /// Applies one event. Fails, changing nothing, on an event that does not
    /// continue the replica.
    pub fn apply(&mut self, event: &Event) -> Result<(), ReplicaError> {
        match event {
            Event::Snapshot {
                session_id,
                entries,
                end_seq,
            } => {
                let mut want = Seq::FIRST;
                for e in entries {
                    if e.seq != want {
                        return Err(ReplicaError::BadSnapshot {
                            session: session_id.clone(),
                            seq: want,
                        });
                    }
                    want = want.next();
                }
                let last = entries.last().map_or(Seq::ZERO, |e| e.seq);
                if last != *end_seq {
                    return Err(ReplicaError::BadSnapshot {
                        session: session_id.clone(),
                        seq: *end_seq,
                    });
                }
                self.session = Some(session_id.clone());
                self.entries = entries
                    .iter()
                    .map(|e| Committed {
                        seq: e.seq,
                        entry: e.entry.clone(),
                    })
                    .collect();
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
            } => {
                if *seq != Seq::FIRST {
                    return Err(ReplicaError::BadSnapshot {
                        session: session_id.clone(),
                        seq: *seq,
                    });
                }
                self.session = Some(session_id.clone());
                self.entries = vec![Committed::new(*seq, entry.clone())];
            }
            committed => {
                let Some(c) = committed.to_committed() else {
                    // Ephemeral: nothing to keep.
                    return Ok(());
                };
                let Some(session) = &self.session else {
                    return Err(ReplicaError::NoSnapshot {
                        kind: committed.kind(),
                        seq: c.seq,
                    });
                };
                let last = self.end_seq();
                if c.seq != last.next() {
                    return Err(ReplicaError::OutOfOrder {
                        session: session.clone(),
                        kind: committed.kind(),
                        last,
                        got: c.seq,
                    });
                }
                self.entries.push(c);
            }
        }
        Ok(())
    }
}
