//! [`LogView`]: the log a client rebuilds from the events it receives, with
//! every seq checked. The one fold of events for every client: the pod's
//! tests, the server's tests, `podlog tail` and third-party clients.
//!
//! # Contract
//!
//! A view starts empty. It keeps every session it has seen (a client that
//! follows a pod across compactions sees several) and the one it views now:
//!
//! * a `Snapshot` must run from seq 1 to its `end_seq` with no gap; it
//!   becomes the view's current session, and must agree with what the view
//!   already holds of that session (a snapshot never takes an entry back);
//! * a `SessionRotated` starts the new session with its `SessionStart` at
//!   seq 1 (or, for a session seen before, must match its seq 1);
//! * each committed event must carry the next seq of the current session
//!   and is appended;
//! * ephemeral events change nothing.
//!
//! An event that breaks these rules is an error ([`ViewError`], naming the
//! session and seq) and leaves the view as it was: a client that gets one
//! has missed events and should resume. Applying what a pod's subscription
//! gives yields exactly the entries the store holds.

use std::collections::BTreeMap;

use podlog_entry::{Committed, LogEntry, Seq, SessionId};

use crate::event::Event;

/// An event that does not continue the view.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// A committed event whose seq is not the next one.
    #[error("session {session}: got {kind} at seq {got} after seq {last} (gap or duplicate)")]
    OutOfOrder {
        session: SessionId,
        kind: &'static str,
        last: Seq,
        got: Seq,
    },
    /// A committed event arrived before any `Snapshot` or `SessionRotated`.
    #[error("a {kind} event at seq {seq} came before any snapshot")]
    NoSession { kind: &'static str, seq: Seq },
    /// A snapshot or rotation that disagrees with what the view holds.
    #[error(
        "session {session}: the snapshot disagrees with the entries already seen at seq {seq}"
    )]
    Disagrees { session: SessionId, seq: Seq },
    /// A snapshot whose entries do not run 1, 2, 3, ... to its `end_seq`.
    #[error(
        "session {session}: a snapshot must run from seq 1 to its end_seq without gaps (seq {seq})"
    )]
    BadSnapshot { session: SessionId, seq: Seq },
}

/// A client's copy of the log: every session seen, the entries it has of
/// each, and the session it views now. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogView {
    current: Option<SessionId>,
    sessions: BTreeMap<SessionId, Vec<Committed>>,
}

impl LogView {
    /// An empty view, waiting for a snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session viewed now (`None` before a snapshot).
    pub fn current(&self) -> Option<&SessionId> {
        self.current.as_ref()
    }

    /// The entries held of `session`, in seq order: from seq 1, or, for a
    /// session attached tail-first, from the first seq the view holds.
    pub fn entries(&self, session: &SessionId) -> &[Committed] {
        self.sessions.get(session).map_or(&[], Vec::as_slice)
    }

    /// The first seq held of `session` (1 unless it was attached
    /// tail-first and not paged back to the start); `None` if none is held.
    pub fn first_seq(&self, session: &SessionId) -> Option<Seq> {
        self.entries(session).first().map(|c| c.seq)
    }

    /// Puts `page`, the entries just below the first one held of `session`
    /// (as `GET /sessions/{id}/entries?before=SEQ` gives them), in front.
    /// Fails, changing nothing, unless `page` runs without a gap up to the
    /// first seq held.
    pub fn prepend(&mut self, session: &SessionId, page: &[Committed]) -> Result<(), ViewError> {
        let Some(held) = self.sessions.get_mut(session) else {
            return Err(ViewError::NoSession {
                kind: "page",
                seq: page.first().map_or(Seq::ZERO, |c| c.seq),
            });
        };
        let first_held = held.first().map_or(Seq::FIRST, |c| c.seq);
        let mut want = match page.first() {
            Some(c) => c.seq,
            None => return Ok(()),
        };
        for c in page {
            if c.seq != want || c.seq == Seq::ZERO {
                return Err(ViewError::BadSnapshot {
                    session: session.clone(),
                    seq: c.seq,
                });
            }
            want = want.next();
        }
        if want != first_held {
            return Err(ViewError::OutOfOrder {
                session: session.clone(),
                kind: "page",
                last: want,
                got: first_held,
            });
        }
        let mut merged = page.to_vec();
        merged.append(held);
        *held = merged;
        Ok(())
    }

    /// The entries of the current session (see [`LogView::entries`]).
    pub fn current_entries(&self) -> &[Committed] {
        self.current.as_ref().map_or(&[], |s| self.entries(s))
    }

    /// Every session seen.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionId, &[Committed])> {
        self.sessions.iter().map(|(s, e)| (s, e.as_slice()))
    }

    /// The last seq seen of the current session: with [`LogView::current`],
    /// the position to resume from.
    pub fn last_seq(&self) -> Seq {
        self.current_entries().last().map_or(Seq::ZERO, |c| c.seq)
    }

    /// The entries of `session` as `(seq, entry)` pairs, for comparisons
    /// with a store's.
    pub fn pairs(&self, session: &SessionId) -> Vec<(Seq, LogEntry)> {
        self.entries(session)
            .iter()
            .map(|c| (c.seq, (*c.entry).clone()))
            .collect()
    }

    /// Folds one event in. Fails, changing nothing, on an event that does
    /// not continue the view.
    pub fn apply(&mut self, event: &Event) -> Result<(), ViewError> {
        match event {
            Event::Snapshot {
                session_id,
                entries,
                end_seq,
            } => {
                let bad = |seq| ViewError::BadSnapshot {
                    session: session_id.clone(),
                    seq,
                };
                // A full snapshot starts at seq 1; a tail-first one at the
                // seq of its first entry.
                let first = entries.first().map_or(Seq::FIRST, |w| w.seq);
                if first == Seq::ZERO {
                    return Err(bad(first));
                }
                let mut want = first;
                for w in entries {
                    if w.seq != want {
                        return Err(bad(w.seq));
                    }
                    want = want.next();
                }
                let last = entries.last().map_or(Seq::ZERO, |w| w.seq);
                if last != *end_seq {
                    return Err(bad(*end_seq));
                }
                let new: Vec<Committed> = entries.iter().map(Committed::from).collect();
                let merged = match self.sessions.get(session_id) {
                    Some(old) => merge(session_id, old, new)?,
                    None => new,
                };
                self.sessions.insert(session_id.clone(), merged);
                self.current = Some(session_id.clone());
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
                payloads,
            } => {
                let start = Committed {
                    seq: *seq,
                    entry: std::sync::Arc::new(entry.clone()),
                    payloads: payloads.clone(),
                };
                match self.sessions.get(session_id) {
                    Some(old) if old.first() != Some(&start) => {
                        return Err(ViewError::Disagrees {
                            session: session_id.clone(),
                            seq: *seq,
                        })
                    }
                    Some(_) => {}
                    None => {
                        if *seq != Seq::FIRST {
                            return Err(ViewError::BadSnapshot {
                                session: session_id.clone(),
                                seq: *seq,
                            });
                        }
                        self.sessions.insert(session_id.clone(), vec![start]);
                    }
                }
                self.current = Some(session_id.clone());
            }
            other => {
                let Some(committed) = other.to_committed() else {
                    // Ephemeral: nothing to keep.
                    return Ok(());
                };
                let Some(session) = self.current.clone() else {
                    return Err(ViewError::NoSession {
                        kind: other.kind(),
                        seq: committed.seq,
                    });
                };
                let entries = self.sessions.entry(session.clone()).or_default();
                let last = entries.last().map_or(Seq::ZERO, |c| c.seq);
                if committed.seq != last.next() {
                    return Err(ViewError::OutOfOrder {
                        session,
                        kind: other.kind(),
                        last,
                        got: committed.seq,
                    });
                }
                entries.push(committed);
            }
        }
        Ok(())
    }
}

/// What a view holds of a session after a snapshot `new` of it arrives,
/// given `old`, what it held: where the two overlap they must agree, and a
/// snapshot never ends before what was already seen. A snapshot that
/// reaches back to (or past) what was held replaces it, keeping any older
/// entries it does not cover; one that starts after a gap starts the
/// window over from its own first seq.
fn merge(
    session: &SessionId,
    old: &[Committed],
    new: Vec<Committed>,
) -> Result<Vec<Committed>, ViewError> {
    let disagrees = |seq| ViewError::Disagrees {
        session: session.clone(),
        seq,
    };
    let (Some(old_first), Some(old_last)) = (old.first(), old.last()) else {
        return Ok(new);
    };
    let new_first = new.first().map_or(Seq::FIRST, |c| c.seq);
    let new_last = new.last().map_or(Seq::ZERO, |c| c.seq);
    // A snapshot never takes back entries already seen.
    if old_last.seq > new_last {
        return Err(disagrees(new_last.next()));
    }
    for a in old {
        if a.seq < new_first {
            continue;
        }
        let index = usize::try_from(a.seq.get() - new_first.get()).unwrap_or(usize::MAX);
        match new.get(index) {
            Some(b) if b.entry == a.entry => {}
            _ => return Err(disagrees(a.seq)),
        }
    }
    if old_first.seq < new_first && old_last.seq.next() >= new_first {
        let keep = old.iter().take_while(|c| c.seq < new_first).cloned();
        Ok(keep.chain(new).collect())
    } else {
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use podlog_entry::RequestConfig;

    use super::*;
    use crate::event::WireEntry;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn ext(n: u64) -> LogEntry {
        LogEntry::Extension {
            ts: n,
            name: "test".to_owned(),
            data: serde_json::json!({ "n": n }),
        }
    }

    fn start(n: u64) -> LogEntry {
        LogEntry::SessionStart {
            ts: n,
            system_prompt: None,
            config: RequestConfig::default(),
            history: vec![],
            forked_from: None,
            compacted_from: None,
        }
    }

    fn snapshot(session: &str, seqs: &[u64], end: u64) -> Event {
        Event::Snapshot {
            session_id: sid(session),
            entries: seqs
                .iter()
                .map(|&n| WireEntry {
                    seq: Seq(n),
                    entry: Arc::new(if n == 1 { start(1) } else { ext(n) }),
                    payloads: None,
                })
                .collect(),
            end_seq: Seq(end),
        }
    }

    fn entry(n: u64) -> Event {
        Event::from_committed(&Committed::new(Seq(n), ext(n)))
    }

    fn rotated(session: &str) -> Event {
        Event::SessionRotated {
            session_id: sid(session),
            seq: Seq::FIRST,
            entry: start(9),
            payloads: None,
        }
    }

    /// Applies `events` in order; the outcome of each, then the view.
    fn check(events: &[Event]) -> String {
        let mut view = LogView::new();
        let mut out = String::new();
        for e in events {
            let before = view.clone();
            match view.apply(e) {
                Ok(()) => out.push_str(&format!("{}: ok\n", e.kind())),
                Err(err) => {
                    assert_eq!(view, before, "a refused event changes nothing");
                    out.push_str(&format!("{}: {err}\n", e.kind()));
                }
            }
        }
        for (s, entries) in view.sessions() {
            let seqs: Vec<String> = entries.iter().map(|c| c.seq.to_string()).collect();
            out.push_str(&format!("{s}: [{}]\n", seqs.join(" ")));
        }
        out.push_str(&format!(
            "current {} at {}\n",
            view.current().map_or("-".to_owned(), ToString::to_string),
            view.last_seq()
        ));
        out
    }

    #[test]
    fn folds() {
        let delta = Event::TextDelta {
            after: Seq(2),
            text: "hi".to_owned(),
        };
        let cases: Vec<(Vec<Event>, &str)> = vec![
            (
                vec![entry(2)],
                "entry: a entry event at seq 2 came before any snapshot\ncurrent - at 0\n",
            ),
            (
                vec![snapshot("a", &[1, 2], 2), entry(3), delta.clone(), entry(4)],
                "snapshot: ok\nentry: ok\ntext_delta: ok\nentry: ok\na: [1 2 3 4]\ncurrent a at 4\n",
            ),
            (
                vec![snapshot("a", &[1], 1), entry(3), entry(2), entry(2)],
                "snapshot: ok\nentry: session a: got entry at seq 3 after seq 1 (gap or duplicate)\nentry: ok\nentry: session a: got entry at seq 2 after seq 2 (gap or duplicate)\na: [1 2]\ncurrent a at 2\n",
            ),
            (
                vec![snapshot("a", &[1, 3], 3)],
                "snapshot: session a: a snapshot must run from seq 1 to its end_seq without gaps (seq 3)\ncurrent - at 0\n",
            ),
            (
                vec![snapshot("a", &[1, 2], 5)],
                "snapshot: session a: a snapshot must run from seq 1 to its end_seq without gaps (seq 5)\ncurrent - at 0\n",
            ),
            (
                vec![snapshot("a", &[1, 2, 3], 3), snapshot("a", &[1, 2], 2)],
                "snapshot: ok\nsnapshot: session a: the snapshot disagrees with the entries already seen at seq 3\na: [1 2 3]\ncurrent a at 3\n",
            ),
            (
                vec![snapshot("a", &[1, 2], 2), rotated("b"), entry(2), snapshot("b", &[1, 2, 3], 3)],
                "snapshot: ok\nsession_rotated: ok\nentry: ok\nsnapshot: session b: the snapshot disagrees with the entries already seen at seq 1\na: [1 2]\nb: [1 2]\ncurrent b at 2\n",
            ),
            (
                vec![snapshot("a", &[3, 4], 4), entry(5)],
                "snapshot: ok\nentry: ok\na: [3 4 5]\ncurrent a at 5\n",
            ),
            (
                vec![snapshot("a", &[1, 2, 3], 3), snapshot("a", &[3, 4], 4)],
                "snapshot: ok\nsnapshot: ok\na: [1 2 3 4]\ncurrent a at 4\n",
            ),
            (
                vec![snapshot("a", &[1, 2], 2), snapshot("a", &[5, 6], 6)],
                "snapshot: ok\nsnapshot: ok\na: [5 6]\ncurrent a at 6\n",
            ),
            (
                vec![snapshot("a", &[3, 4, 5], 5), snapshot("a", &[4], 4)],
                "snapshot: ok\nsnapshot: session a: the snapshot disagrees with the entries already seen at seq 5\na: [3 4 5]\ncurrent a at 5\n",
            ),
            (
                vec![snapshot("a", &[0, 1], 1)],
                "snapshot: session a: a snapshot must run from seq 1 to its end_seq without gaps (seq 0)\ncurrent - at 0\n",
            ),
            (
                vec![snapshot("a", &[], 0), rotated("b"), snapshot("a", &[1, 2], 2)],
                "snapshot: ok\nsession_rotated: ok\nsnapshot: ok\na: [1 2]\nb: [1]\ncurrent a at 2\n",
            ),
        ];
        for (events, want) in cases {
            assert_eq!(check(&events), want, "{events:?}");
        }
    }

    #[test]
    fn pages_back_join_a_tail_first_view_without_a_gap() {
        let mut view = LogView::new();
        view.apply(&snapshot("a", &[5, 6], 6)).unwrap();
        let a = sid("a");
        let page = |seqs: &[u64]| -> Vec<Committed> {
            seqs.iter()
                .map(|&n| Committed::new(Seq(n), if n == 1 { start(1) } else { ext(n) }))
                .collect()
        };
        assert!(matches!(
            view.prepend(&a, &page(&[2, 3])),
            Err(ViewError::OutOfOrder { .. })
        ));
        assert!(matches!(
            view.prepend(&a, &page(&[2, 4])),
            Err(ViewError::BadSnapshot { .. })
        ));
        assert_eq!(view.first_seq(&a), Some(Seq(5)));
        view.prepend(&a, &page(&[3, 4])).unwrap();
        view.prepend(&a, &page(&[1, 2])).unwrap();
        let seqs: Vec<u64> = view.entries(&a).iter().map(|c| c.seq.get()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert!(view.prepend(&sid("b"), &page(&[1])).is_err());
    }
}
