//! Guards against the classic crash failures of a log: a partly written
//! entry after a crash, a "published" entry that is not on disk, a gap in
//! seq, a database that no longer opens. A child process (this test binary
//! started again, see `child.rs`) appends through the real store and sink
//! and prints each seq once it is published; the test
//! kills it with SIGKILL at random moments, 25 times with synchronous=FULL and
//! 25 times with NORMAL, and after each kill reopens the database and checks
//! that every printed seq is on disk, seqs are gap-free, every row decodes,
//! `integrity_check` is ok, and the session restores and goes on.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use podlog_entry::{Seq, SessionId};
use podlog_store::{Store, StoreOptions, Synchronous};

use crate::child::{self, Role};
use crate::support::{sqlite3, Rng, TempDb};

/// This file's test, as the harness names it: what the child runs.
const TEST: &str = "crash::sigkill_at_random_moments_loses_nothing_published";

/// Runs an append-loop child on `db` and kills it after `after` from its
/// first published entry. Returns the session id and the seqs it printed.
fn run_and_kill(
    db: &std::path::Path,
    synchronous: Synchronous,
    session: Option<&SessionId>,
    after: Duration,
) -> (SessionId, Vec<u64>) {
    let role = Role::AppendLoop {
        synchronous,
        session,
    };
    let mut child = child::command(TEST, db, &role)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the append-loop child");
    let stdout = child.stdout.take().unwrap();
    let (named, named_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut id = None;
        let mut seqs = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(s) = line.strip_prefix("session ") {
                id = Some(SessionId::new(s).unwrap());
                let _ = named.send(());
            } else if let Some(s) = line.strip_prefix("published ") {
                seqs.push(s.parse::<u64>().unwrap());
            }
        }
        (id, seqs)
    });
    // Wait until the child has its session open and says which (it appends
    // right after), then kill it at a random moment while it appends.
    let _ = named_rx.recv_timeout(Duration::from_secs(10));
    std::thread::sleep(after);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let (id, seqs) = reader.join().unwrap();
    (
        id.or_else(|| session.cloned())
            .expect("the child named its session"),
        seqs,
    )
}

fn check_after_kill(db: &std::path::Path, id: &SessionId, printed: &[u64]) -> u64 {
    let store = Store::open(db, StoreOptions::default()).expect("the database reopens");
    let info = store.session(id).expect("the session is there");
    let entries = store.entries(id).expect("every row decodes, no gap");
    assert_eq!(entries.len() as u64, info.last_seq.get());
    assert_eq!(
        info.entry_count,
        info.last_seq.get(),
        "counters match the rows"
    );
    for (i, c) in entries.iter().enumerate() {
        assert_eq!(c.seq, Seq(i as u64 + 1));
    }
    if let Some(&max) = printed.iter().max() {
        assert!(
            max <= info.last_seq.get(),
            "seq {max} was published but the disk ends at {}",
            info.last_seq
        );
    }
    // Restore works.
    let sink = store.load_sink(id).expect("restore");
    assert_eq!(sink.end_seq(), info.last_seq);
    let check = sqlite3(db, "PRAGMA integrity_check;");
    assert_eq!(check.stdout.trim(), "ok", "{}", check.stderr);
    info.last_seq.get()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_published() {
    if child::play_if_child() {
        return;
    }
    let seed = std::env::var("PODLOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2545_F491_4F6C_DD1D_u64);
    let mut rng = Rng(seed);
    let mut kills = 0;
    let mut published = 0;
    for (sync, synchronous) in [("full", Synchronous::Full), ("normal", Synchronous::Normal)] {
        let db = TempDb::new();
        let mut session: Option<SessionId> = None;
        // A new session holds its SessionStart at seq 1 before any append.
        let mut last = 1;
        for _ in 0..25 {
            let after = Duration::from_millis(rng.below(40));
            let (id, printed) = run_and_kill(&db.path, synchronous, session.as_ref(), after);
            kills += 1;
            published += printed.len();
            if let Some(&first) = printed.first() {
                assert_eq!(
                    first,
                    last + 1,
                    "the restored session goes on from its last seq"
                );
            }
            last = check_after_kill(&db.path, &id, &printed);
            session = Some(id);
        }
        assert!(
            last > 25,
            "{sync}: the child got work done between kills ({last} entries)"
        );
    }
    assert_eq!(kills, 50);
    eprintln!("{kills} kills, {published} published entries checked, seed {seed:#x}");
}
