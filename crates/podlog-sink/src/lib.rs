//! The pod-side session-log mirror and its live fan-out.
//!
//! [`SessionLogSink`] holds the active session's committed entries in commit
//! order (the *mirror*) and a `tokio::sync::broadcast` channel that carries
//! new commits to subscribers. It knows nothing of SQL or sockets: the store
//! calls [`SessionLogSink::publish`] once an entry's transaction committed.
//!
//! # Contract
//!
//! * **Disk is the gate.** `publish` must be called only after the entry's
//!   transaction committed; a failed write never reaches the sink, so it is
//!   never in the mirror or on the channel.
//! * **Clean split.** `publish` appends to the mirror and sends on the channel
//!   in one critical section, and [`SessionLogSink::subscribe_with_snapshot`]
//!   takes the snapshot and the receiver in the same critical section. So for
//!   every subscriber, each committed entry is in exactly one of the snapshot
//!   or the receiver's stream: no gap, no duplicate.
//! * **Seq-checked.** Every entry carries its [`Seq`]. The mirror holds one
//!   session from seq 1 with no gap; `publish` refuses an entry whose seq is
//!   not the next one, and leaves the mirror as it was.
//! * **Live subset.** Every entry is mirrored, but only `SessionStart` (a
//!   session rotation) and `SystemItem` are sent live: the pod's streaming
//!   lane already carries the rest to connected clients, and sending them
//!   twice would render every block twice.
//! * **Cheap snapshots.** The mirror is an append-only log of `Arc`-shared
//!   entries in write-once chunks ([`entries`]): a [`Snapshot`] shares its
//!   memory with the mirror, and taking one costs the same for ten entries as
//!   for a million. Publishers wait only for that constant-time clone, and a
//!   publish after a snapshot copies nothing.
//! * **Rotation.** [`SessionLogSink::reset_with_initial`] swaps the mirror to
//!   a new session's `SessionStart`, bumps the [`Snapshot::generation`] and
//!   broadcasts the `SessionStart`; subscribers keep their receiver and reset
//!   their view when it arrives. [`SessionLogSink::replace_silent`] swaps the
//!   mirror without broadcasting, for restores before anyone subscribed.
//! * **Window.** A sink made with [`SessionLogSink::windowed`] keeps only the
//!   last entries (at least its window, at most a [`entries::CHUNK`] more)
//!   and the session's `SessionStart` ([`Snapshot::session_start`]): older
//!   chunks are dropped as commits arrive, so its memory does not grow with
//!   the session. Its snapshots start at [`Snapshot::first_seq`]; whoever
//!   needs entries before it reads them from the store, where they are
//!   immutable. A sink made otherwise keeps every entry from seq 1.
//! * **Lag.** The channel holds [`BROADCAST_CAPACITY`] entries. A receiver
//!   that falls further behind gets `RecvError::Lagged`; it keeps its place by
//!   calling [`SessionLogSink::resubscribe_after`] with the last seq it saw,
//!   which returns exactly the entries it missed (or the new session's
//!   snapshot if the session rotated, or, from a windowed sink that no
//!   longer holds all it missed, the snapshot to complete from the store)
//!   and a fresh receiver, split cleanly.
//! * **No poisoning.** A panic in another thread while it held the lock does
//!   not make the sink unusable: every critical section leaves the state
//!   consistent, so a poisoned lock is taken over as it is.

use std::sync::{Arc, Mutex, MutexGuard};

use podlog_entry::{Committed, LogEntry, Seq};
use tokio::sync::broadcast;

pub mod entries;

use entries::AppendLog;
pub use entries::Entries;

/// How many live entries a receiver may fall behind before it lags.
pub const BROADCAST_CAPACITY: usize = 256;

/// A sink refused an entry: its position does not continue the mirror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// `publish` got an entry whose seq is not the mirror's next one.
    #[error("entry at seq {got} does not follow the mirror's last seq {last}")]
    OutOfOrder { last: Seq, got: Seq },
    /// A mirror seed (`with_initial`, `replace_silent`) that does not run
    /// 1, 2, 3, ... with no gap.
    #[error("mirror seed has seq {got} at index {index}; want {want}")]
    NotContiguous { index: usize, want: Seq, got: Seq },
    /// `reset_with_initial` with something other than a `SessionStart` at seq 1.
    #[error("a session must start with a SessionStart at seq 1, got {kind} at seq {seq}")]
    NotASessionStart { kind: String, seq: Seq },
    /// A window of zero entries.
    #[error("a mirror window must hold at least one entry")]
    EmptyWindow,
}

/// A point-in-time view of the mirror. Shares memory with the mirror: cheap
/// to take, cheap to clone, and unaffected by later commits.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Counts session rotations of this sink: two snapshots with the same
    /// generation hold prefixes of the same session.
    pub generation: u64,
    /// The committed entries, in seq order from [`Snapshot::first_seq`]:
    /// seq 1, unless the sink is windowed.
    pub entries: Entries,
    /// The session's `SessionStart` (seq 1), kept by a windowed sink when
    /// its window has moved past it.
    pub session_start: Option<Committed>,
}

impl Snapshot {
    /// The seq of the last entry in the snapshot ([`Seq::ZERO`] when empty):
    /// a subscriber's live stream starts right after it.
    pub fn end_seq(&self) -> Seq {
        self.entries.back().map_or(Seq::ZERO, |c| c.seq)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The seq of the first entry held: 1, unless a windowed sink dropped
    /// older ones ([`Snapshot::end_seq`] + 1 when empty).
    pub fn first_seq(&self) -> Seq {
        self.entries
            .front()
            .map_or(self.end_seq().next(), |c| c.seq)
    }

    /// Whether the snapshot holds every entry after `seq` (`seq` is at or
    /// after the one before [`Snapshot::first_seq`]).
    pub fn holds_after(&self, seq: Seq) -> bool {
        seq.next() >= self.first_seq()
    }

    /// The entries after `seq` that the snapshot holds, sharing memory with
    /// it: all of them when [`Snapshot::holds_after`] says so.
    pub fn after(&self, seq: Seq) -> Entries {
        let held_before = self.first_seq().get().saturating_sub(1);
        let skip = seq.get().saturating_sub(held_before);
        self.entries
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

/// What a resubscribing receiver missed.
#[derive(Clone, Debug)]
pub enum CatchUp {
    /// Same session: the entries after the seq it gave, in order (possibly
    /// none). The new receiver carries on right after the last of them.
    Missed(Entries),
    /// The session rotated since: the new session's full snapshot.
    Rotated(Snapshot),
    /// Same session, but a windowed sink no longer holds every entry after
    /// the seq given: the snapshot, whose entries from
    /// [`Snapshot::first_seq`] on the receiver missed too, and the entries
    /// between to read from the store.
    Dropped(Snapshot),
}

/// In-memory mirror + broadcast fan-out for the active session log.
///
/// `Clone` is an `Arc` clone: the pod keeps one for its write path and hands
/// others to the serving layer.
#[derive(Clone)]
pub struct SessionLogSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    state: Mutex<State>,
    /// Survives rotations, so subscribers keep their receiver and see the
    /// rotation as a broadcast `SessionStart`.
    tx: broadcast::Sender<Committed>,
}

#[derive(Default)]
struct State {
    generation: u64,
    mirror: AppendLog,
    /// How many entries a windowed sink keeps at least; `None`: all.
    window: Option<usize>,
    /// The session's `SessionStart`, once known.
    start: Option<Committed>,
}

impl State {
    fn end_seq(&self) -> Seq {
        self.mirror.back().map_or(Seq::ZERO, |c| c.seq)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            entries: self.mirror.view(),
            session_start: self.start.clone(),
        }
    }

    /// Replaces the mirror with `log`, whose session starts with `start`.
    fn replace(&mut self, log: AppendLog, start: Option<Committed>) {
        self.mirror = log;
        self.start = start;
        self.generation += 1;
        if let Some(window) = self.window {
            self.mirror.trim_front(window);
        }
    }
}

/// The `SessionStart` among `entries`, if the first of them is one at seq 1.
fn start_of<'a>(entries: impl IntoIterator<Item = &'a Committed>) -> Option<Committed> {
    entries
        .into_iter()
        .next()
        .filter(|c| c.seq == Seq::FIRST && c.entry.is_session_start())
        .cloned()
}

fn check_contiguous<'a>(entries: impl IntoIterator<Item = &'a Committed>) -> Result<(), SinkError> {
    for (index, c) in entries.into_iter().enumerate() {
        let want = Seq(index as u64 + 1);
        if c.seq != want {
            return Err(SinkError::NotContiguous {
                index,
                want,
                got: c.seq,
            });
        }
    }
    Ok(())
}

/// `true` for entry kinds the serving layer forwards as a typed live event.
pub fn is_live_relevant(entry: &LogEntry) -> bool {
    matches!(
        entry,
        LogEntry::SessionStart { .. } | LogEntry::SystemItem { .. }
    )
}

impl SessionLogSink {
    /// A sink with an empty mirror, for a session whose `SessionStart` is not
    /// written yet, or for tests.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            inner: Arc::new(SinkInner {
                state: Mutex::new(State::default()),
                tx,
            }),
        }
    }

    /// A sink seeded with a session's committed entries (seq 1, 2, ...), as
    /// restore and fork paths load them before anyone subscribes.
    pub fn with_initial(entries: impl IntoIterator<Item = Committed>) -> Result<Self, SinkError> {
        let sink = Self::new();
        sink.replace_silent(entries)?;
        Ok(sink)
    }

    /// A sink that keeps at least the last `window` entries of a session
    /// and its `SessionStart`, seeded with `start` (seq 1) and `tail`, the
    /// session's last entries (1, 2, ... or from any later seq, with no
    /// gap). For a pod restoring a session of any length: what it loads and
    /// keeps does not grow with the session.
    pub fn windowed(
        window: usize,
        start: Committed,
        tail: impl IntoIterator<Item = Committed>,
    ) -> Result<Self, SinkError> {
        if window == 0 {
            return Err(SinkError::EmptyWindow);
        }
        if !start.entry.is_session_start() || start.seq != Seq::FIRST {
            return Err(SinkError::NotASessionStart {
                kind: start.entry.kind().to_owned(),
                seq: start.seq,
            });
        }
        let mut tail: Vec<Committed> = tail.into_iter().collect();
        let first = tail.first().map_or(Seq(2), |c| c.seq);
        if first <= Seq::FIRST {
            // The tail is the whole session.
            check_contiguous(&tail)?;
        } else {
            for (index, c) in tail.iter().enumerate() {
                let want = Seq(first.get() + index as u64);
                if c.seq != want {
                    return Err(SinkError::NotContiguous {
                        index,
                        want,
                        got: c.seq,
                    });
                }
            }
            if first == Seq(2) {
                tail.insert(0, start.clone());
            }
        }
        let sink = Self::new();
        {
            let mut state = sink.lock();
            state.window = Some(window);
            state.replace(AppendLog::from_entries(tail), Some(start));
        }
        Ok(sink)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section below leaves `State` consistent even if it
        // unwinds part-way (the mirror is replaced or pushed in one step), so
        // a lock poisoned by a panicking thread is safe to take over.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a committed entry to the mirror and, if it is live-relevant,
    /// sends it to every subscriber, in one critical section.
    ///
    /// Call only after the entry's transaction committed. Fails, changing
    /// nothing, if `committed.seq` is not the mirror's last seq + 1.
    pub fn publish(&self, committed: Committed) -> Result<(), SinkError> {
        let mut state = self.lock();
        let last = state.end_seq();
        if committed.seq != last.next() {
            return Err(SinkError::OutOfOrder {
                last,
                got: committed.seq,
            });
        }
        if committed.seq == Seq::FIRST && committed.entry.is_session_start() {
            state.start = Some(committed.clone());
        }
        state.mirror.push(committed.clone());
        if let Some(window) = state.window {
            state.mirror.trim_front(window);
        }
        if is_live_relevant(&committed.entry) {
            // An error means no receiver exists: nothing to deliver. The lock
            // is still held, so no subscriber can take a snapshot without
            // this entry and then miss it on the channel.
            let _ = self.inner.tx.send(committed);
        }
        Ok(())
    }

    /// Swaps the mirror to `[initial]`, the `SessionStart` (seq 1) of the
    /// session that replaces the current one after a compaction or fork, and
    /// broadcasts it. Existing subscribers keep their receiver; the
    /// `SessionStart` tells them to reset their view.
    pub fn reset_with_initial(&self, initial: Committed) -> Result<(), SinkError> {
        if !initial.entry.is_session_start() || initial.seq != Seq::FIRST {
            return Err(SinkError::NotASessionStart {
                kind: initial.entry.kind().to_owned(),
                seq: initial.seq,
            });
        }
        let mut state = self.lock();
        state.replace(
            AppendLog::from_entries([initial.clone()]),
            Some(initial.clone()),
        );
        let _ = self.inner.tx.send(initial);
        Ok(())
    }

    /// Replaces the mirror with a session's entries (seq 1, 2, ... with no
    /// gap) without broadcasting. For restores that run before any
    /// subscriber is connected; use [`Self::reset_with_initial`] to tell
    /// existing subscribers.
    pub fn replace_silent(
        &self,
        entries: impl IntoIterator<Item = Committed>,
    ) -> Result<(), SinkError> {
        let entries: Vec<Committed> = entries.into_iter().collect();
        check_contiguous(&entries)?;
        let start = start_of(&entries);
        let entries = AppendLog::from_entries(entries);
        let mut state = self.lock();
        state.replace(entries, start);
        Ok(())
    }

    /// Atomically takes a snapshot of the mirror and subscribes to later
    /// commits: every committed entry is in exactly one of the two.
    pub fn subscribe_with_snapshot(&self) -> (Snapshot, broadcast::Receiver<Committed>) {
        let state = self.lock();
        let snapshot = state.snapshot();
        let rx = self.inner.tx.subscribe();
        (snapshot, rx)
    }

    /// For a receiver that lagged or reconnected: what it missed after
    /// (`generation`, `seq`), and a fresh receiver that carries on right
    /// after it, split cleanly like [`Self::subscribe_with_snapshot`].
    pub fn resubscribe_after(
        &self,
        generation: u64,
        seq: Seq,
    ) -> (CatchUp, broadcast::Receiver<Committed>) {
        let state = self.lock();
        let snapshot = state.snapshot();
        let rx = self.inner.tx.subscribe();
        drop(state);
        if snapshot.generation != generation || seq > snapshot.end_seq() {
            (CatchUp::Rotated(snapshot), rx)
        } else if snapshot.holds_after(seq) {
            (CatchUp::Missed(snapshot.after(seq)), rx)
        } else {
            (CatchUp::Dropped(snapshot), rx)
        }
    }

    /// The current mirror, without subscribing.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot()
    }

    /// The seq of the last mirrored entry ([`Seq::ZERO`] when empty).
    pub fn end_seq(&self) -> Seq {
        self.lock().end_seq()
    }

    /// Number of mirrored entries.
    pub fn len(&self) -> usize {
        self.lock().mirror.len()
    }

    /// Whether the mirror is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live receivers.
    pub fn receiver_count(&self) -> usize {
        self.inner.tx.receiver_count()
    }
}

impl Default for SessionLogSink {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SessionLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("SessionLogSink")
            .field("generation", &state.generation)
            .field("len", &state.mirror.len())
            .field("end_seq", &state.end_seq())
            .finish()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;

#[cfg(test)]
mod window_tests;
