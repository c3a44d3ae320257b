//! Tests of the sink contract: the seed's six cases, seq checking, poisoning,
//! and a multi-threaded stress run of the snapshot/live split.

use super::*;
use podlog_entry::{RequestConfig, SystemItem};
use std::sync::atomic::{AtomicBool, Ordering};

fn session_start() -> LogEntry {
    LogEntry::SessionStart {
        ts: 0,
        system_prompt: None,
        config: RequestConfig::default(),
        history: vec![],
        forked_from: None,
        compacted_from: None,
    }
}

fn turn_end(n: u64) -> LogEntry {
    LogEntry::TurnEnd {
        ts: 0,
        turn_count: n,
    }
}

fn notification_entry(text: &str) -> LogEntry {
    LogEntry::SystemItem {
        ts: 0,
        item: SystemItem::Notification {
            message: text.to_owned(),
            body: format!("[Notification] {text}"),
        },
    }
}

/// Publishes `entry` at the mirror's next seq.
fn push(sink: &SessionLogSink, entry: LogEntry) -> Seq {
    let seq = sink.end_seq().next();
    sink.publish(Committed::new(seq, entry)).unwrap();
    seq
}

fn seeded(entries: Vec<LogEntry>) -> Vec<Committed> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| Committed::new(Seq(i as u64 + 1), e))
        .collect()
}

#[test]
fn publish_then_subscribe_returns_history_in_snapshot() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    push(&sink, turn_end(1));
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot.end_seq(), Seq(2));
    assert!(matches!(
        *snapshot.entries[0].entry,
        LogEntry::SessionStart { .. }
    ));
    assert!(matches!(
        *snapshot.entries[1].entry,
        LogEntry::TurnEnd { turn_count: 1, .. }
    ));
    assert!(rx.try_recv().is_err());
}

#[test]
fn subscribe_then_publish_delivers_only_live_relevant_entries() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    assert_eq!(snapshot.len(), 1);
    // TurnEnd is mirror-only: no live broadcast.
    push(&sink, turn_end(1));
    assert!(rx.try_recv().is_err(), "TurnEnd must not be broadcast live");
    // SystemItem is live-relevant, and arrives with its seq.
    push(&sink, notification_entry("hi"));
    match rx.try_recv() {
        Ok(c) => {
            assert!(matches!(*c.entry, LogEntry::SystemItem { .. }));
            assert_eq!(c.seq, Seq(3));
        }
        other => panic!("expected SystemItem, got {other:?}"),
    }
    // The mirror grew with both entries (snapshot completeness).
    let (after_snapshot, _) = sink.subscribe_with_snapshot();
    assert_eq!(after_snapshot.len(), 3);
}

#[test]
fn snapshot_and_live_never_overlap() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    push(&sink, notification_entry("post-snapshot"));
    assert_eq!(snapshot.len(), 1);
    match rx.try_recv() {
        Ok(c) if matches!(*c.entry, LogEntry::SystemItem { .. }) => {}
        other => panic!("unexpected: {other:?}"),
    }
    assert!(rx.try_recv().is_err());
}

#[test]
fn reset_with_initial_clears_and_broadcasts() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    push(&sink, turn_end(1));
    let (pre_snapshot, mut rx) = sink.subscribe_with_snapshot();
    sink.reset_with_initial(Committed::new(Seq(1), session_start()))
        .unwrap();
    match rx.try_recv() {
        Ok(c) if matches!(*c.entry, LogEntry::SessionStart { .. }) => {}
        other => panic!("expected SessionStart broadcast, got {other:?}"),
    }
    let (post_snapshot, _) = sink.subscribe_with_snapshot();
    assert_eq!(post_snapshot.len(), 1);
    assert!(matches!(
        *post_snapshot.entries[0].entry,
        LogEntry::SessionStart { .. }
    ));
    assert_eq!(post_snapshot.generation, pre_snapshot.generation + 1);
    // The old snapshot is untouched by the reset.
    assert_eq!(pre_snapshot.len(), 2);
}

#[test]
fn replace_silent_does_not_broadcast() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    let (_pre_snapshot, mut rx) = sink.subscribe_with_snapshot();
    sink.replace_silent(seeded(vec![session_start(), turn_end(1)]))
        .unwrap();
    // No broadcast fired.
    assert!(rx.try_recv().is_err());
    let (post_snapshot, _) = sink.subscribe_with_snapshot();
    assert_eq!(post_snapshot.len(), 2);
}

#[test]
fn with_initial_seeds_the_mirror() {
    let sink = SessionLogSink::with_initial(seeded(vec![session_start(), turn_end(1)])).unwrap();
    let (snapshot, _) = sink.subscribe_with_snapshot();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot.end_seq(), Seq(2));
}

#[test]
fn out_of_order_publish_is_refused_and_changes_nothing() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    let (_, mut rx) = sink.subscribe_with_snapshot();
    for bad in [Seq(1), Seq(3), Seq(0)] {
        let err = sink
            .publish(Committed::new(bad, notification_entry("x")))
            .unwrap_err();
        assert_eq!(
            err,
            SinkError::OutOfOrder {
                last: Seq(1),
                got: bad
            }
        );
    }
    assert_eq!(sink.len(), 1);
    assert!(rx.try_recv().is_err());
}

#[test]
fn seeds_with_gaps_and_resets_without_session_start_are_refused() {
    let gap = vec![
        Committed::new(Seq(1), session_start()),
        Committed::new(Seq(3), turn_end(1)),
    ];
    let err = SessionLogSink::with_initial(gap).unwrap_err();
    assert_eq!(err.to_string(), "mirror seed has seq 3 at index 1; want 2");
    let sink = SessionLogSink::new();
    let err = sink
        .reset_with_initial(Committed::new(Seq(1), turn_end(1)))
        .unwrap_err();
    assert!(err.to_string().contains("got turn_end at seq 1"), "{err}");
    assert!(sink.is_empty());
}

#[test]
fn snapshot_shares_memory_with_the_mirror() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    for n in 0..1000 {
        push(&sink, turn_end(n));
    }
    let a = sink.snapshot();
    let b = sink.snapshot();
    // Same Arc behind every entry: nothing was copied.
    assert!(Arc::ptr_eq(&a.entries[500].entry, &b.entries[500].entry));
    push(&sink, turn_end(9999));
    assert_eq!(a.len(), 1001, "a snapshot does not see later commits");
    assert_eq!(sink.len(), 1002);
}

#[test]
fn a_poisoned_lock_does_not_panic_later_callers() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    let inner = sink.clone();
    let joined = std::thread::spawn(move || {
        let _guard = inner.inner.state.lock().unwrap();
        panic!("poison the sink lock");
    })
    .join();
    assert!(joined.is_err());
    assert!(sink.inner.state.is_poisoned());
    push(&sink, notification_entry("after poison"));
    let (snapshot, _) = sink.subscribe_with_snapshot();
    assert_eq!(snapshot.len(), 2);
}

#[test]
fn resubscribe_after_returns_what_was_missed() {
    let sink = SessionLogSink::new();
    push(&sink, session_start());
    push(&sink, turn_end(1));
    let (snap, _rx) = sink.subscribe_with_snapshot();
    push(&sink, notification_entry("a"));
    push(&sink, turn_end(2));
    let (catch_up, mut rx) = sink.resubscribe_after(snap.generation, Seq(2));
    match catch_up {
        CatchUp::Missed(missed) => {
            let seqs: Vec<u64> = missed.iter().map(|c| c.seq.get()).collect();
            assert_eq!(seqs, [3, 4]);
        }
        CatchUp::Rotated(_) => panic!("no rotation happened"),
        CatchUp::Dropped(_) => panic!("an unwindowed sink drops nothing"),
    }
    assert!(rx.try_recv().is_err());
    sink.reset_with_initial(Committed::new(Seq(1), session_start()))
        .unwrap();
    let (catch_up, _) = sink.resubscribe_after(snap.generation, Seq(4));
    assert!(matches!(catch_up, CatchUp::Rotated(s) if s.len() == 1));
}

/// A small deterministic generator, so that a failing stress run can be
/// repeated from its seed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one subscriber saw: its snapshot, then every live entry (with
/// catch-ups after a lag merged in), until the closing marker.
struct Seen {
    snapshot: Snapshot,
    live: Vec<Committed>,
    lagged: usize,
    /// Whether it drained up to the closing marker (or stopped early).
    closed: bool,
}

fn is_closing(c: &Committed, closing: &str) -> bool {
    matches!(&*c.entry, LogEntry::SystemItem { item: SystemItem::Notification { message, .. }, .. } if message == closing)
}

fn subscribe_and_drain(sink: &SessionLogSink, closing: &str, budget: usize) -> Seen {
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    let mut live: Vec<Committed> = Vec::new();
    let mut lagged = 0;
    if snapshot.entries.iter().any(|c| is_closing(c, closing)) {
        // Attached after the run ended: everything is in the snapshot.
        return Seen {
            snapshot,
            live,
            lagged,
            closed: true,
        };
    }
    let mut last = snapshot.end_seq();
    let mut closed = false;
    while live.len() < budget {
        match rx.blocking_recv() {
            Ok(c) => {
                last = c.seq;
                let done = is_closing(&c, closing);
                live.push(c);
                if done {
                    closed = true;
                    break;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                lagged += 1;
                let (catch_up, new_rx) = sink.resubscribe_after(snapshot.generation, last);
                rx = new_rx;
                let CatchUp::Missed(missed) = catch_up else {
                    panic!("no rotation happens in this run");
                };
                let mut done = false;
                for c in missed {
                    last = c.seq;
                    if is_live_relevant(&c.entry) {
                        done = is_closing(&c, closing);
                        live.push(c);
                        if done {
                            break;
                        }
                    }
                }
                if done {
                    closed = true;
                    break;
                }
            }
            Err(broadcast::error::RecvError::Closed) => panic!("sender dropped"),
        }
    }
    Seen {
        snapshot,
        live,
        lagged,
        closed,
    }
}

#[test]
fn stress_snapshot_plus_live_is_the_committed_sequence() {
    const PUBLISHERS: usize = 4;
    const SUBSCRIBERS: usize = 6;
    const PER_PUBLISHER: usize = 5_000;
    let seed = std::env::var("PODLOG_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15u64);

    let sink = SessionLogSink::new();
    push(&sink, session_start());
    // Stands in for the store's single writer: seq assignment and publish
    // happen under one lock, as they do after a commit.
    let writer = Arc::new(Mutex::new(()));
    let running = Arc::new(AtomicBool::new(true));

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let sink = sink.clone();
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut rng = XorShift(seed ^ (p as u64 + 1));
                for i in 0..PER_PUBLISHER {
                    let entry = if rng.next().is_multiple_of(3) {
                        turn_end(i as u64)
                    } else {
                        notification_entry(&format!("p{p}-{i}"))
                    };
                    let _w = writer.lock().unwrap();
                    push(&sink, entry);
                    drop(_w);
                    if rng.next().is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();

    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|s| {
            let sink = sink.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                let mut rng = XorShift(seed.rotate_left(s as u32 + 7) | 1);
                let mut seen = Vec::new();
                // Attach at random moments, several times, while publishers run.
                // Attach at random moments, read a random number of live
                // entries, drop the receiver, and attach again.
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_micros(rng.next() % 500));
                    let budget = (rng.next() % 2000) as usize + 1;
                    seen.push(subscribe_and_drain(&sink, "closing", budget));
                }
                // A last attachment that must see the closing marker.
                seen.push(subscribe_and_drain(&sink, "closing", usize::MAX));
                seen
            })
        })
        .collect();

    for p in publishers {
        p.join().unwrap();
    }
    // Subscribers drain until this marker, whatever moment they attached at.
    for _ in 0..8 {
        let _w = writer.lock().unwrap();
        push(&sink, notification_entry("closing"));
    }
    running.store(false, Ordering::Relaxed);
    let all: Vec<Vec<Seen>> = subscribers.into_iter().map(|s| s.join().unwrap()).collect();

    let final_snapshot = sink.snapshot();
    let committed: Vec<Committed> = final_snapshot.entries.iter().cloned().collect();
    assert_eq!(committed.len(), 1 + PUBLISHERS * PER_PUBLISHER + 8);
    for (i, c) in committed.iter().enumerate() {
        assert_eq!(c.seq, Seq(i as u64 + 1), "the mirror has no gap");
    }

    let mut checked = 0;
    let mut lags = 0;
    for seen in all.iter().flatten() {
        let k = seen.snapshot.len();
        // The snapshot is exactly the committed prefix up to its end.
        assert_eq!(seen.snapshot.end_seq(), Seq(k as u64));
        for (a, b) in seen.snapshot.entries.iter().zip(&committed) {
            assert!(Arc::ptr_eq(&a.entry, &b.entry) && a.seq == b.seq);
        }
        // Live is exactly the live-relevant committed entries after it, up to
        // the first closing marker: nothing missing, nothing twice.
        let expected: Vec<Seq> = committed[k..]
            .iter()
            .filter(|c| is_live_relevant(&c.entry))
            .map(|c| c.seq)
            .take(seen.live.len())
            .collect();
        let got: Vec<Seq> = seen.live.iter().map(|c| c.seq).collect();
        assert_eq!(got, expected, "subscriber with snapshot end {k}");
        if seen
            .snapshot
            .entries
            .iter()
            .any(|c| is_closing(c, "closing"))
        {
            assert!(got.is_empty());
        } else if seen.closed {
            let first_closing = committed[k..]
                .iter()
                .find(|c| is_closing(c, "closing"))
                .map(|c| c.seq);
            assert_eq!(got.last().copied(), first_closing);
        }
        checked += 1;
        lags += seen.lagged;
    }
    assert!(
        checked >= 2 * SUBSCRIBERS,
        "subscribers attached repeatedly"
    );
    eprintln!("checked {checked} subscriptions, {lags} lag catch-ups, seed {seed:#x}");
}
