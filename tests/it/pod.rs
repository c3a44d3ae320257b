//! The pod end to end. Guards against what peers' users keep reporting:
//! clients that connect mid-session and miss or duplicate entries,
//! especially across compactions and forks; histories lost or changed when a
//! pod restarts; runs left hanging after a crash; and two processes writing
//! one session and interleaving their histories.
//!
//! A pod driven by the scripted driver goes through many turns, compactions
//! and forks while subscribers connect at pseudo-random points on their own
//! threads; each subscriber's log, rebuilt from the snapshot and the events
//! (following rotations), must equal what the store holds for each session
//! it saw. The pod is then shut down, restored from disk through a new store
//! handle, and goes on the same way. A second process (this test binary
//! started again as a holder, see `child.rs`) must be refused a session a
//! pod writes, and a holder killed with SIGKILL must leave the session free
//! and its run closed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{Committed, LogEntry, RunErrorKind, Seq, SessionId, StepClock};
use podlog_pod::{Pod, PodError, ScriptedDriver};
use podlog_protocol::{Event, LogView, SharedEvent};
use podlog_store::{NewSession, SequentialIds, Store, StoreOptions};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::child::{self, Role};
use crate::support::{Run, TempDb};

fn open(db: &TempDb, clock_start: u64, id_prefix: &str) -> Arc<Store> {
    let options = StoreOptions {
        clock: Arc::new(StepClock::new(clock_start, 1000)),
        ids: Arc::new(SequentialIds::new(id_prefix)),
        ..StoreOptions::default()
    };
    Arc::new(Store::open(&db.path, options).expect("open the store"))
}

/// A small deterministic pseudo-random sequence (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The next event, or the receive error; panics after 30 s of silence, so
/// a bug fails the test instead of hanging it.
fn recv(rx: &mut broadcast::Receiver<SharedEvent>) -> Result<SharedEvent, TryRecvError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.try_recv() {
            Err(TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no event for 30 s");
                std::thread::sleep(Duration::from_micros(200));
            }
            other => return other,
        }
    }
}

/// One client's view over the pod's life: every session it followed, with
/// the log it rebuilt for each, until the pod closed.
type Views = Vec<(SessionId, Vec<Committed>)>;

/// Follows `pod` from a fresh subscription until its event channel closes,
/// resuming after a lag, and returns the log rebuilt for each session.
fn follow_to_close(pod: &Pod) -> Views {
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).expect("snapshot applies");
    let mut views = Views::new();
    let finish = |replica: &LogView, views: &mut Views| {
        if let Some(id) = replica.current() {
            views.push((id.clone(), replica.current_entries().to_vec()));
        }
    };
    loop {
        let events = match recv(&mut rx) {
            Ok(event) => vec![event],
            Err(TryRecvError::Lagged(_)) => {
                let session = replica.current().cloned().expect("a session");
                let (missed, fresh) = pod.resume(&session, replica.last_seq()).unwrap();
                rx = fresh;
                missed
            }
            Err(TryRecvError::Closed) => {
                finish(&replica, &mut views);
                return views;
            }
            Err(TryRecvError::Empty) => unreachable!("recv waits"),
        };
        for event in events {
            if matches!(*event, Event::SessionRotated { .. }) {
                finish(&replica, &mut views);
            }
            replica
                .apply(&event)
                .unwrap_or_else(|e| panic!("{e} applying {event:?}"));
        }
    }
}

/// Submits one input and waits for the end of its run; checks the pod's
/// own view of the run against the store.
fn turn(pod: &Pod, text: &str) -> Event {
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).expect("snapshot applies");
    pod.submit_input(text.to_owned()).expect("submit");
    loop {
        let event = recv(&mut rx).expect("a run's events fit the channel");
        replica.apply(&event).expect("event applies");
        if matches!(
            *event,
            Event::RunCompleted { .. } | Event::RunErrored { .. }
        ) {
            let stored = pod.store().entries(&pod.session_id()).expect("entries");
            assert_eq!(replica.current_entries(), stored.as_slice());
            return event.event().clone();
        }
    }
}

/// A fork point of the current session that cuts no tool call from its
/// result: its SessionStart or the end of one of its runs.
fn fork_point(pod: &Pod, rng: &mut Lcg) -> Seq {
    let entries = pod.store().entries(&pod.session_id()).expect("entries");
    let cuts: Vec<Seq> = entries
        .iter()
        .filter(|c| c.entry.is_session_start() || c.entry.ends_run())
        .map(|c| c.seq)
        .collect();
    cuts[rng.below(cuts.len() as u64) as usize]
}

/// Plays `turns` turns on `pod` with a compaction or fork now and then,
/// while `clients` subscribers connect at pseudo-random turns (some of them
/// mid-run), then shuts the pod down. Returns every client's views and the
/// number of rotations.
fn play(pod: &Pod, turns: u64, clients: u64, rng: &mut Lcg) -> (Vec<Views>, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let mut rotations = 0;
    let views = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let start = rng.below(turns);
                let pause = Duration::from_micros(rng.below(3000));
                let (pod, done) = (pod.clone(), done.clone());
                scope.spawn(move || {
                    while done.load(Ordering::Acquire) < start {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    std::thread::sleep(pause);
                    follow_to_close(&pod)
                })
            })
            .collect();
        for t in 0..turns {
            let end = turn(pod, &format!("request {t}"));
            assert!(matches!(end, Event::RunCompleted { .. }), "{end:?}");
            done.fetch_add(1, Ordering::Release);
            match rng.below(5) {
                0 => {
                    pod.compact(None).expect("compact");
                    rotations += 1;
                }
                1 => {
                    let at = fork_point(pod, rng);
                    pod.fork(at).expect("fork");
                    rotations += 1;
                }
                _ => {}
            }
        }
        // Stop in the middle of one more run: shutdown closes it.
        pod.submit_input("one more".to_owned()).expect("submit");
        pod.shutdown();
        handles
            .into_iter()
            .map(|h| h.join().expect("subscriber thread"))
            .collect()
    });
    (views, rotations)
}

/// Every session a client followed holds, in the store, exactly the log the
/// client rebuilt.
fn check_views(store: &Store, all: &[Views], last: &SessionId) {
    for (client, views) in all.iter().enumerate() {
        assert!(!views.is_empty(), "client {client} saw nothing");
        for (session, log) in views {
            let stored = store.entries(session).expect("entries");
            assert_eq!(log, &stored, "client {client}, session {session}");
        }
        assert_eq!(&views.last().expect("a view").0, last, "client {client}");
    }
}

#[test]
fn subscribers_rebuild_the_stored_log_across_compactions_forks_and_a_restore() {
    let db = TempDb::new();
    let mut rng = Lcg(7);
    let store = open(&db, 1_700_000_000_000, "p");
    let pod = Pod::create(
        store.clone(),
        NewSession {
            title: Some("pod test".to_owned()),
            ..NewSession::default()
        },
        Box::new(ScriptedDriver::demo().with_delta_delay(Duration::from_micros(200))),
    )
    .expect("create");
    let first = pod.session_id();
    let (views, rotations) = play(&pod, 14, 6, &mut rng);
    let last = pod.session_id();
    check_views(&store, &views, &last);
    assert!(rotations >= 2, "the sequence should rotate: {rotations}");
    assert!(
        views.iter().any(|v| v.len() >= 2),
        "some client should follow a rotation"
    );
    assert_eq!(
        store.ancestors(&last).expect("lineage").len() as u64,
        rotations
    );
    assert!(store
        .descendants(&first)
        .expect("lineage")
        .iter()
        .any(|s| s.id == last));
    let before = store.entries(&last).expect("entries");
    let Some(LogEntry::RunErrored { kind, message, .. }) = before.last().map(|c| c.entry.as_ref())
    else {
        panic!("the run in flight at shutdown was not closed: {before:?}");
    };
    assert_eq!(
        (kind, message.as_str()),
        (
            &RunErrorKind::Interrupted,
            "the pod shut down during this run"
        )
    );
    drop(pod);
    drop(store);

    // Restore from disk, through a new handle, and go on.
    let store = open(&db, 1_800_000_000_000, "q");
    let pod = Pod::restore(
        store.clone(),
        &last,
        Box::new(ScriptedDriver::demo().starting_at(15)),
    )
    .expect("restore");
    assert_eq!(pod.session_id(), last);
    let (snapshot, _) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).expect("snapshot applies");
    assert_eq!(
        replica.current_entries(),
        before.as_slice(),
        "restore changed the log"
    );
    let (views, _) = play(&pod, 8, 4, &mut rng);
    let last_b = pod.session_id();
    check_views(&store, &views, &last_b);
    let after = store.entries(&last).expect("entries");
    assert_eq!(&after[..before.len()], before.as_slice());
}

/// The test that plays the holder in its child process.
const HOLDER_TEST: &str = "pod::a_second_process_is_refused_and_a_killed_holder_frees_the_session";

/// A holder process: this test binary started again, writing `session` as a
/// pod (see `child.rs`).
fn holder_command(db: &TempDb, session: &SessionId, delta_ms: u64) -> Command {
    child::command(HOLDER_TEST, &db.path, &Role::Hold { session, delta_ms })
}

/// A running holder.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn spawn(db: &TempDb, session: &SessionId, delta_ms: u64) -> Holder {
        let mut child = holder_command(db, session, delta_ms)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the holder");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Holder {
            child,
            stdin,
            stdout,
        }
    }

    /// The holder's next line that starts with `prefix`, skipping the test
    /// harness's own lines; empty if the holder's stdout closed first.
    fn line(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("read holder") == 0 {
                return line;
            }
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_process_is_refused_and_a_killed_holder_frees_the_session() {
    if child::play_if_child() {
        return;
    }
    let db = TempDb::new();
    let store = open(&db, 1_700_000_000_000, "w");
    let pod = Pod::create(
        store.clone(),
        NewSession::default(),
        Box::new(ScriptedDriver::demo()),
    )
    .expect("create");
    turn(&pod, "first");
    let id = pod.session_id();
    let before = store.entries(&id).expect("entries");

    // This process writes the session: another process is refused, naming
    // this one, and writes nothing.
    let refused = holder_command(&db, &id, 0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let refused_pid = refused.id();
    let run = Run::from(refused.wait_with_output().expect("run the holder"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        !run.stdout.contains("holding"),
        "the refused process held the session: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "session {id} is being written by pid {}",
            std::process::id()
        )),
        "{}",
        run.stderr
    );
    // The child is the re-executed test binary itself, a process of its
    // own: the refusal names the holder (this process), not the refused.
    assert!(
        !run.stderr.contains(&format!("by pid {refused_pid} ")),
        "{}",
        run.stderr
    );
    assert_eq!(store.entries(&id).expect("entries"), before);
    pod.shutdown();

    // Now the other process writes it: this one is refused, naming it.
    let mut holder = Holder::spawn(&db, &id, 150);
    let hello = holder.line("holding ");
    assert!(
        hello.starts_with(&format!("holding {id} as pid {} ", holder.child.id())),
        "{hello}"
    );
    let err = Pod::restore(store.clone(), &id, Box::new(ScriptedDriver::demo()))
        .expect_err("the session is held");
    let PodError::SessionLocked {
        session,
        holder: who,
    } = &err
    else {
        panic!("want SessionLocked, got {err}");
    };
    assert_eq!((session, who.pid), (&id, Some(holder.child.id())));

    // The holder commits a run of its own; kill it while it streams the
    // run's last text, after its tool result is committed.
    writeln!(holder.stdin, "from the other process").expect("write holder");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = store.entries(&id).expect("entries");
        let tail = &entries[before.len()..];
        if tail
            .iter()
            .any(|c| matches!(c.entry.as_ref(), LogEntry::ToolResult { .. }))
        {
            assert!(
                !tail.iter().any(|c| c.entry.ends_run()),
                "the run ended too soon"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the holder wrote nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    holder.child.kill().expect("SIGKILL the holder");
    holder.child.wait().expect("reap the holder");

    // A dead holder blocks nothing; restore closes the run it left open.
    let pod = Pod::restore(
        store.clone(),
        &id,
        Box::new(ScriptedDriver::demo().starting_at(2)),
    )
    .expect("restore after the holder died");
    let entries = store.entries(&id).expect("entries");
    let Some(LogEntry::RunErrored { kind, message, .. }) = entries.last().map(|c| c.entry.as_ref())
    else {
        panic!("the interrupted run was not closed: {entries:?}");
    };
    assert_eq!(
        (kind, message.as_str()),
        (
            &RunErrorKind::Interrupted,
            "the pod stopped during this run"
        )
    );
    let inputs: Vec<&str> = entries
        .iter()
        .filter_map(|c| match c.entry.as_ref() {
            LogEntry::UserInput { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(inputs, ["first", "from the other process"]);
    let end = turn(&pod, "and on");
    assert!(matches!(end, Event::RunCompleted { .. }), "{end:?}");
}
