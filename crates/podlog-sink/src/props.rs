//! Property test of the sink against a model: random interleavings of
//! publishes (live and mirror-only), rotations, silent replacements,
//! subscriptions, resubscriptions and reads. After every step each
//! subscriber's view (snapshot, then what its receiver delivered, following
//! rotations) must equal the model's session from its attach point, with no
//! gap and no duplicate.

use proptest::prelude::*;

use super::*;
use podlog_entry::{RequestConfig, SystemItem};

#[derive(Clone, Debug)]
enum Op {
    Publish { live: bool },
    Rotate,
    ReplaceSilent { len: u8 },
    Subscribe,
    Read { who: u8 },
    Resubscribe { who: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(|live| Op::Publish { live }),
        1 => Just(Op::Rotate),
        1 => (1u8..6).prop_map(|len| Op::ReplaceSilent { len }),
        2 => Just(Op::Subscribe),
        3 => any::<u8>().prop_map(|who| Op::Read { who }),
        1 => any::<u8>().prop_map(|who| Op::Resubscribe { who }),
    ]
}

fn start() -> LogEntry {
    LogEntry::SessionStart {
        ts: 0,
        system_prompt: None,
        config: RequestConfig::default(),
        history: vec![],
        forked_from: None,
        compacted_from: None,
    }
}

fn entry(live: bool, n: u64) -> LogEntry {
    if live {
        LogEntry::SystemItem {
            ts: n,
            item: SystemItem::Notification {
                message: n.to_string(),
                body: String::new(),
            },
        }
    } else {
        LogEntry::TurnEnd {
            ts: n,
            turn_count: n,
        }
    }
}

/// A subscriber: what it saw of the current generation, in seq order.
struct Sub {
    rx: broadcast::Receiver<Committed>,
    generation: u64,
    seen: Vec<Committed>,
    /// The last seq it knows of (snapshot end or last delivered).
    last: Seq,
}

impl Sub {
    fn drain(&mut self) {
        while let Ok(c) = self.rx.try_recv() {
            if c.entry.is_session_start() {
                self.generation += 1;
                self.seen.clear();
            }
            self.last = c.seq;
            self.seen.push(c);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn every_subscriber_sees_the_committed_sequence(ops in proptest::collection::vec(op(), 1..120)) {
        let sink = SessionLogSink::new();
        sink.publish(Committed::new(Seq(1), start())).unwrap();
        let mut model: Vec<Committed> = sink.snapshot().entries.iter().cloned().collect();
        let mut subs: Vec<Sub> = Vec::new();
        let mut n = 0u64;
        for op in ops {
            n += 1;
            match op {
                Op::Publish { live } => {
                    let c = Committed::new(Seq(model.len() as u64 + 1), entry(live, n));
                    sink.publish(c.clone()).unwrap();
                    model.push(c);
                }
                Op::Rotate => {
                    let c = Committed::new(Seq(1), start());
                    sink.reset_with_initial(c.clone()).unwrap();
                    model = vec![c];
                }
                Op::ReplaceSilent { len } => {
                    let mut seed = vec![Committed::new(Seq(1), start())];
                    for i in 1..u64::from(len) {
                        seed.push(Committed::new(Seq(i + 1), entry(i % 2 == 0, n)));
                    }
                    sink.replace_silent(seed.clone()).unwrap();
                    model = seed;
                    // Silent: receivers are not told, so subscribers of the
                    // old mirror must resubscribe; drop them as a pod's
                    // restore would (it runs before anyone subscribes).
                    subs.clear();
                }
                Op::Subscribe => {
                    let (snapshot, rx) = sink.subscribe_with_snapshot();
                    let seen: Vec<Committed> = snapshot.entries.iter().cloned().collect();
                    prop_assert_eq!(&seen, &model);
                    subs.push(Sub { rx, generation: snapshot.generation, last: snapshot.end_seq(), seen });
                }
                Op::Read { who } => {
                    if !subs.is_empty() {
                        let i = usize::from(who) % subs.len();
                        subs[i].drain();
                    }
                }
                Op::Resubscribe { who } => {
                    if !subs.is_empty() {
                        let i = usize::from(who) % subs.len();
                        let sub = &mut subs[i];
                        sub.drain();
                        let (catch_up, rx) = sink.resubscribe_after(sub.generation, sub.last);
                        sub.rx = rx;
                        match catch_up {
                            CatchUp::Missed(missed) => {
                                for c in missed {
                                    sub.last = c.seq;
                                    sub.seen.push(c);
                                }
                            }
                            CatchUp::Rotated(snapshot) => {
                                sub.generation = snapshot.generation;
                                sub.last = snapshot.end_seq();
                                sub.seen = snapshot.entries.iter().cloned().collect();
                            }
                            CatchUp::Dropped(_) => {
                                prop_assert!(false, "an unwindowed sink drops nothing");
                            }
                        }
                    }
                }
            }
            // Each subscriber holds the current session from seq 1 (its
            // snapshot, or the rotation's SessionStart), every live-relevant
            // entry after that, nothing twice, and nothing the model lacks.
            for sub in &mut subs {
                sub.drain();
                let seqs: Vec<u64> = sub.seen.iter().map(|c| c.seq.get()).collect();
                prop_assert_eq!(seqs.first().copied(), Some(1));
                prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?}", seqs);
                for c in &sub.seen {
                    let m = &model[c.seq.get() as usize - 1];
                    prop_assert!(Arc::ptr_eq(&m.entry, &c.entry), "seq {} differs", c.seq);
                }
                for c in model.iter().filter(|c| is_live_relevant(&c.entry)) {
                    prop_assert!(seqs.contains(&c.seq.get()), "live seq {} missing from {:?}", c.seq, seqs);
                }
            }
        }
    }
}
