//! Guards against "database is locked" and against a broken snapshot/live
//! split under load: 100,000 entries appended by four writer threads (group
//! commit across four sessions) while reader threads, the stock `sqlite3`
//! shell in a loop, and subscribers attaching at random moments all run.
//! No append may fail; every subscriber's snapshot plus live stream must be
//! exactly the session's committed sequence from its attach point on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{Committed, LogEntry, Seq, SessionId, SystemItem};
use podlog_sink::{CatchUp, SessionLogSink};
use podlog_store::{NewSession, Store, StoreOptions, Synchronous};

use crate::support::TempDb;

const WRITERS: usize = 4;
const PER_WRITER: u64 = 25_000;

fn note(n: u64) -> LogEntry {
    LogEntry::SystemItem {
        ts: n,
        item: SystemItem::Notification {
            message: format!("n{n}"),
            body: String::new(),
        },
    }
}

/// Attaches to `sink`, follows it for up to `budget` entries (catching up by
/// seq when it lags), and returns (snapshot end, live seqs, lags).
fn follow(sink: &SessionLogSink, budget: usize, stop: &AtomicBool) -> (Seq, Vec<Seq>, usize) {
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    let start = snapshot.end_seq();
    let mut last = start;
    let mut live = Vec::new();
    let mut lags = 0;
    while live.len() < budget && !stop.load(Ordering::Relaxed) {
        match rx.try_recv() {
            Ok(c) => {
                last = c.seq;
                live.push(c.seq);
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                lags += 1;
                let (catch_up, new_rx) = sink.resubscribe_after(snapshot.generation, last);
                rx = new_rx;
                let CatchUp::Missed(missed) = catch_up else {
                    panic!("no rotation in this run")
                };
                for c in missed {
                    last = c.seq;
                    live.push(c.seq);
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    (start, live, lags)
}

#[test]
fn a_hundred_thousand_entries_with_readers_shell_and_subscribers() {
    let db = TempDb::new();
    let store = Arc::new(
        Store::open(
            &db.path,
            StoreOptions {
                synchronous: Synchronous::Normal,
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let sessions: Vec<(SessionId, SessionLogSink)> = (0..WRITERS)
        .map(|_| {
            let (id, start) = store.create_session(NewSession::default()).unwrap();
            (id, SessionLogSink::with_initial([start]).unwrap())
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = sessions
        .iter()
        .map(|(id, sink)| {
            let mut writer = store.session_writer(id).unwrap();
            let sink = sink.clone();
            std::thread::spawn(move || {
                for n in 0..PER_WRITER {
                    // Any failure, "database is locked" included, fails the test.
                    writer.append(note(n), &sink).unwrap();
                }
            })
        })
        .collect();

    let readers: Vec<_> = sessions
        .iter()
        .map(|(id, _)| {
            let (store, id, stop) = (store.clone(), id.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let info = store.session(&id).unwrap();
                    let tail = store
                        .entries_after(&id, Seq(info.last_seq.get().saturating_sub(50)), 50)
                        .unwrap();
                    assert!(tail.len() <= 50);
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let shell = {
        let (path, stop) = (db.path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("sqlite3")
                    .arg("-readonly")
                    .arg(&path)
                    .arg(
                        "SELECT count(*) FROM timeline; SELECT sum(entry_count) FROM session_list;",
                    )
                    .output()
                    .expect("the sqlite3 shell must be installed");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    out.stderr.is_empty(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };

    let subscribers: Vec<_> = (0..6)
        .map(|i| {
            let (sink, stop) = (sessions[i % WRITERS].1.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut budget = 500 + i * 900;
                while !stop.load(Ordering::Relaxed) {
                    seen.push(follow(&sink, budget, &stop));
                    budget = budget * 7 % 5000 + 100;
                }
                seen
            })
        })
        .collect();

    for w in writers {
        w.join().expect("no append failed");
    }
    stop.store(true, Ordering::Relaxed);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let shell_runs = shell.join().unwrap();
    assert!(reads > 0 && shell_runs > 0);

    let mut checked = 0;
    for (i, s) in subscribers.into_iter().enumerate() {
        let (id, _) = &sessions[i % WRITERS];
        let committed: Vec<Committed> = store.entries(id).unwrap();
        assert_eq!(committed.len() as u64, PER_WRITER + 1);
        for (start, live, _) in s.join().unwrap() {
            let want: Vec<Seq> = committed[start.get() as usize..]
                .iter()
                .map(|c| c.seq)
                .take(live.len())
                .collect();
            assert_eq!(live, want, "subscriber of {id} attached after seq {start}");
            checked += 1;
        }
    }
    assert!(checked >= 6);
    let stats = store.as_sqlite().expect("a SQLite store").commit_stats();
    assert_eq!(stats.entries, WRITERS as u64 * PER_WRITER);
    eprintln!(
        "{} entries in {} transactions, {reads} store reads, {shell_runs} shell runs, {checked} subscriptions checked",
        stats.entries, stats.transactions
    );
}
