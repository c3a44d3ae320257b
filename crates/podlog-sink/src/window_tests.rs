//! A windowed sink: bounded memory, the `SessionStart` kept, snapshots and
//! catch-ups that say exactly what they hold.

use podlog_entry::{Committed, LogEntry, Seq, SystemItem};
use proptest::prelude::*;

use crate::entries::CHUNK;
use crate::{CatchUp, SessionLogSink, SinkError};

fn start() -> Committed {
    Committed::new(
        Seq::FIRST,
        LogEntry::SessionStart {
            ts: 1,
            system_prompt: None,
            config: Default::default(),
            history: vec![],
            forked_from: None,
            compacted_from: None,
        },
    )
}

fn entry(seq: u64) -> Committed {
    let entry = if seq.is_multiple_of(7) {
        LogEntry::SystemItem {
            ts: seq,
            item: SystemItem::Notification {
                message: format!("n{seq}"),
                body: String::new(),
            },
        }
    } else {
        LogEntry::TurnEnd {
            ts: seq,
            turn_count: seq,
        }
    };
    Committed::new(Seq(seq), entry)
}

#[test]
fn a_windowed_mirror_keeps_its_window_and_the_session_start() {
    let window = 300;
    let sink = SessionLogSink::windowed(window, start(), []).unwrap();
    let early = sink.snapshot();
    for seq in 2..=5000 {
        sink.publish(entry(seq)).unwrap();
        let len = sink.len();
        assert!(len <= window + CHUNK, "seq {seq}: {len} entries mirrored");
        assert!(len >= window.min(seq as usize), "seq {seq}: {len}");
    }
    let snapshot = sink.snapshot();
    assert_eq!(snapshot.end_seq(), Seq(5000));
    assert_eq!(snapshot.first_seq().get(), 5000 - snapshot.len() as u64 + 1);
    assert_eq!(snapshot.session_start, Some(start()));
    assert!(snapshot.holds_after(Seq(4999 - window as u64)));
    assert!(!snapshot.holds_after(Seq(1)));
    let after: Vec<u64> = snapshot
        .after(Seq(4990))
        .iter()
        .map(|c| c.seq.get())
        .collect();
    assert_eq!(after, (4991..=5000).collect::<Vec<_>>());
    // A snapshot taken before keeps what it held.
    assert_eq!(early.len(), 1);
    assert_eq!(early.entries[0], start());
}

#[test]
fn a_receiver_that_fell_behind_the_window_is_told_so() {
    let sink = SessionLogSink::windowed(CHUNK, start(), []).unwrap();
    let (snap, _rx) = sink.subscribe_with_snapshot();
    for seq in 2..=(4 * CHUNK as u64) {
        sink.publish(entry(seq)).unwrap();
    }
    let (catch_up, _) = sink.resubscribe_after(snap.generation, Seq(10));
    let CatchUp::Dropped(snapshot) = catch_up else {
        panic!("{catch_up:?}")
    };
    assert!(snapshot.first_seq() > Seq(11));
    let near = snapshot.end_seq().get() - 5;
    let (catch_up, _) = sink.resubscribe_after(snap.generation, Seq(near));
    let CatchUp::Missed(missed) = catch_up else {
        panic!("{catch_up:?}")
    };
    assert_eq!(missed.len(), 5);
}

#[test]
fn a_windowed_seed_is_checked() {
    let tail: Vec<Committed> = (100..=120).map(entry).collect();
    let sink = SessionLogSink::windowed(50, start(), tail.clone()).unwrap();
    let snapshot = sink.snapshot();
    assert_eq!(snapshot.first_seq(), Seq(100));
    assert_eq!(snapshot.end_seq(), Seq(120));
    assert_eq!(snapshot.session_start, Some(start()));
    sink.publish(entry(121)).unwrap();
    assert!(matches!(
        sink.publish(entry(123)),
        Err(SinkError::OutOfOrder { .. })
    ));

    // A tail from seq 2 is the whole session, its start included.
    let whole = SessionLogSink::windowed(50, start(), (2..=5).map(entry)).unwrap();
    assert_eq!(whole.snapshot().first_seq(), Seq::FIRST);
    assert_eq!(whole.len(), 5);

    let mut gap = tail;
    gap.remove(3);
    assert!(matches!(
        SessionLogSink::windowed(50, start(), gap),
        Err(SinkError::NotContiguous { index: 3, .. })
    ));
    assert!(matches!(
        SessionLogSink::windowed(50, entry(1), []),
        Err(SinkError::NotASessionStart { .. })
    ));
    assert!(matches!(
        SessionLogSink::windowed(0, start(), []),
        Err(SinkError::EmptyWindow)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Subscribers that read at random moments and resubscribe at random
    /// moments, completing from "the store" (every published entry) when
    /// the window moved past them, end with the whole session, in order,
    /// nothing twice.
    #[test]
    fn catch_ups_from_a_window_plus_the_store_miss_nothing(
        window in 1usize..600,
        steps in proptest::collection::vec((0u8..4, 1u16..400), 1..40),
    ) {
        let sink = SessionLogSink::windowed(window, start(), []).unwrap();
        let mut store = vec![start()];
        let (snapshot, rx) = sink.subscribe_with_snapshot();
        let mut seen: Vec<Committed> = snapshot.entries.iter().cloned().collect();
        let mut last = snapshot.end_seq();
        let mut rx = rx;
        let generation = snapshot.generation;
        for (op, n) in steps {
            match op {
                0 | 1 => {
                    for _ in 0..n {
                        let c = entry(store.len() as u64 + 1);
                        sink.publish(c.clone()).unwrap();
                        store.push(c);
                    }
                }
                _ => {
                    while rx.try_recv().is_ok() {}
                    let (catch_up, new_rx) = sink.resubscribe_after(generation, last);
                    rx = new_rx;
                    let missed: Vec<Committed> = match catch_up {
                        CatchUp::Missed(m) => m.iter().cloned().collect(),
                        CatchUp::Dropped(s) => {
                            prop_assert!(!s.holds_after(last));
                            let from_store = &store[last.get() as usize..s.first_seq().get() as usize - 1];
                            from_store.iter().cloned().chain(s.entries.iter().cloned()).collect()
                        }
                        CatchUp::Rotated(_) => {
                            prop_assert!(false, "no rotation happened");
                            unreachable!()
                        }
                    };
                    for c in missed {
                        last = c.seq;
                        seen.push(c);
                    }
                }
            }
            prop_assert!(sink.len() <= window.max(1) + CHUNK);
        }
        while rx.try_recv().is_ok() {}
        let (catch_up, _) = sink.resubscribe_after(generation, last);
        match catch_up {
            CatchUp::Missed(m) => seen.extend(m.iter().cloned()),
            CatchUp::Dropped(s) => {
                seen.extend(store[last.get() as usize..s.first_seq().get() as usize - 1].iter().cloned());
                seen.extend(s.entries.iter().cloned());
            }
            CatchUp::Rotated(_) => prop_assert!(false, "no rotation happened"),
        }
        prop_assert_eq!(seen, store);
    }
}
