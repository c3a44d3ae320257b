//! What a pod and a [`crate::Follow`] share: a session's mirror loaded
//! tail-first from the store, and the events a client gets from a mirror
//! snapshot, completed from the store where the window ends.
//!
//! Entries the window no longer holds are read after the snapshot and the
//! receiver were taken together; they can no longer change (history is never
//! rewritten), so the split stays clean.

use podlog_entry::{Committed, Seq, SessionId};
use podlog_protocol::{Event, SharedEvent, WireEntry};
use podlog_sink::{SessionLogSink, Snapshot};
use podlog_store::{Store, StoreError};

use crate::error::PodError;

/// How many of the session's last entries a mirror keeps at least (it keeps
/// up to [`podlog_sink::entries::CHUNK`] more, and the `SessionStart`).
/// Lean entries (large strings as 512-byte previews) of this many take a few
/// MiB at most; anything older is read from the store when a client asks
/// for it. Larger than both channels, so a receiver that lags catches up
/// from memory.
pub const MIRROR_WINDOW: usize = 4096;

/// A windowed sink holding `session`'s `SessionStart` and its last
/// [`MIRROR_WINDOW`] entries up to `last` (its `last_seq`), lean, read from
/// the end: what it costs does not grow with the session.
pub(crate) fn load_tail(
    store: &Store,
    session: &SessionId,
    last: Seq,
) -> Result<SessionLogSink, PodError> {
    let tail = store.previews_before(session, last.next(), MIRROR_WINDOW)?;
    let ends = tail.last().map_or(Seq::ZERO, |c| c.seq);
    if ends != last {
        return Err(PodError::Store(StoreError::Corrupt {
            session: session.clone(),
            seq: ends.next(),
            problem: format!(
                "the session row's last_seq is {last} but the entries end at seq {ends}"
            ),
        }));
    }
    let start = match tail.first() {
        Some(first) if first.seq == Seq::FIRST => first.clone(),
        _ => store
            .previews_after(session, Seq::ZERO, 1)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt {
                session: session.clone(),
                seq: Seq::FIRST,
                problem: "the SessionStart at seq 1 is missing".to_owned(),
            })?,
    };
    SessionLogSink::windowed(MIRROR_WINDOW, start, tail).map_err(|source| PodError::Mirror {
        session: session.clone(),
        seq: last,
        source,
    })
}

/// The committed entries of `session` after `after`, lean: from `snapshot`,
/// and those its window no longer holds from the store.
pub(crate) fn entries_after(
    store: &Store,
    session: &SessionId,
    snapshot: &Snapshot,
    after: Seq,
) -> Result<Vec<Committed>, PodError> {
    let mut out = Vec::new();
    if !snapshot.holds_after(after) {
        let first = snapshot.first_seq();
        let missing = usize::try_from(first.get() - after.get() - 1).unwrap_or(usize::MAX);
        out = store.previews_after(session, after, missing)?;
        let got = out.last().map_or(after, |c| c.seq);
        if got.next() != first {
            return Err(PodError::Store(StoreError::Corrupt {
                session: session.clone(),
                seq: got.next(),
                problem: format!("entries {} to {} are missing", got.next(), first.get() - 1),
            }));
        }
    }
    out.extend(snapshot.after(after).iter().cloned());
    Ok(out)
}

/// The snapshot event of `session`: its last `tail` entries (every entry
/// with `None`), read from the store where the window ends.
pub(crate) fn snapshot_event(
    store: &Store,
    session: SessionId,
    snapshot: &Snapshot,
    tail: Option<usize>,
) -> Result<SharedEvent, PodError> {
    let end = snapshot.end_seq();
    let after = match tail {
        Some(n) => Seq(end.get().saturating_sub(n.max(1) as u64)),
        None => Seq::ZERO,
    };
    let entries = entries_after(store, &session, snapshot, after)?;
    let event = Event::Snapshot {
        session_id: session.clone(),
        end_seq: end,
        entries: entries.iter().map(WireEntry::from).collect(),
    };
    Ok(SharedEvent::new(session, event))
}

/// What a client that saw `session` up to `after` gets from `current`'s
/// `snapshot`: the committed events after `after` if `session` is
/// `current` and `after` is not past its end; otherwise `SessionRotated`
/// and `current`'s snapshot, shaped by `tail`.
pub(crate) fn resume_events(
    store: &Store,
    current: &SessionId,
    snapshot: &Snapshot,
    session: &SessionId,
    after: Seq,
    tail: Option<usize>,
) -> Result<Vec<SharedEvent>, PodError> {
    if session == current && after <= snapshot.end_seq() {
        return Ok(entries_after(store, current, snapshot, after)?
            .iter()
            .map(|c| SharedEvent::new(current.clone(), Event::from_committed(c)))
            .collect());
    }
    let mut events = Vec::with_capacity(2);
    if let Some(start) = &snapshot.session_start {
        let rotated = Event::SessionRotated {
            session_id: current.clone(),
            seq: start.seq,
            entry: (*start.entry).clone(),
            payloads: start.payloads.clone(),
        };
        events.push(SharedEvent::new(current.clone(), rotated));
    }
    events.push(snapshot_event(store, current.clone(), snapshot, tail)?);
    Ok(events)
}
