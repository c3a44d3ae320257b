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

    /// The entries seen of `session`, from seq 1.
    pub fn entries(&self, session: &SessionId) -> &[Committed] {
        self.sessions.get(session).map_or(&[], Vec::as_slice)
    }

    /// The entries of the current session, from seq 1.
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
                let mut want = Seq::FIRST;
                for w in entries {
                    if w.seq != want {
                        return Err(ViewError::BadSnapshot {
                            session: session_id.clone(),
                            seq: w.seq,
                        });
                    }
                    want = want.next();
                }
                let last = entries.last().map_or(Seq::ZERO, |w| w.seq);
                if last != *end_seq {
                    return Err(ViewError::BadSnapshot {
                        session: session_id.clone(),
                        seq: *end_seq,
                    });
                }
                if let Some(old) = self.sessions.get(session_id) {
                    for (a, b) in old.iter().zip(entries.iter()) {
                        if a.seq != b.seq || a.entry != b.entry {
                            return Err(ViewError::Disagrees {
                                session: session_id.clone(),
                                seq: a.seq,
                            });
                        }
                    }
                    // A snapshot never takes back entries already seen.
                    if old.len() > entries.len() {
                        return Err(ViewError::Disagrees {
                            session: session_id.clone(),
                            seq: end_seq.next(),
                        });
                    }
                }
                let new = entries
                    .iter()
                    .map(|w| Committed {
                        seq: w.seq,
                        entry: w.entry.clone(),
                    })
                    .collect();
                self.sessions.insert(session_id.clone(), new);
                self.current = Some(session_id.clone());
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
            } => {
                let start = Committed::new(*seq, entry.clone());
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
                vec![snapshot("a", &[], 0), rotated("b"), snapshot("a", &[1, 2], 2)],
                "snapshot: ok\nsession_rotated: ok\nsnapshot: ok\na: [1 2]\nb: [1]\ncurrent a at 2\n",
            ),
        ];
        for (events, want) in cases {
            assert_eq!(check(&events), want, "{events:?}");
        }
    }
}
