//! Failover on PostgreSQL: the pod process of "host A" (`podlog serve
//! --demo`) is killed with SIGKILL in the middle of a run; a pod in another
//! process (this test's) takes the session over with `Pod::restore` as soon
//! as PostgreSQL has let go of A's connection and its advisory lock, closes
//! the interrupted run with a `RunErrored`, and writes on; a client that was
//! reading from A resumes against another server (`podlog serve` without a
//! pod, "host B") by `Last-Event-ID`, and a client on B all along, sees the
//! whole session: nothing lost, nothing repeated. Guards against a lock that
//! outlives its dead holder, a restore that gives up at once while the server
//! has not yet noticed the dead client, an interrupted run left open, and a
//! client that loses or repeats entries across the move.
//!
//! Then the pod's database connection lost (ended by the server with
//! `pg_terminate_backend`): the pod stops writing. Each commit fails with
//! `StoreError::LockLost`, whose message names the session and says the
//! write lock went with the connection (the pod does not reconnect and
//! re-take the lock by itself: another writer may have the session by
//! then); nothing uncommitted reaches its event channel; a run cut off
//! stays open on disk until the next restore, by whichever pod takes the
//! session over, closes it.
//!
//! The failover test prints a transcript of what happened, in order (shown by
//! `cargo test -- --nocapture failover`, and with a failure), and writes it
//! to `failover-transcript.txt` under Cargo's target temp folder when it
//! fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podlog_entry::{LogEntry, Seq};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_store::Store;

use crate::pg_support::{runtime, PgSchema, Read, Served, Taken};

/// What happened, in order, with the time since the test began.
struct Transcript {
    start: Instant,
    lines: Mutex<Vec<String>>,
}

impl Transcript {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            lines: Mutex::new(Vec::new()),
        }
    }

    fn note(&self, line: impl AsRef<str>) {
        let line = format!(
            "[{:>6} ms] {}",
            self.start.elapsed().as_millis(),
            line.as_ref()
        );
        eprintln!("failover: {line}");
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("failover-transcript.txt");
            let text = self.lines.lock().map(|l| l.join("\n")).unwrap_or_default();
            let _ = std::fs::write(&path, text + "\n");
            eprintln!("failover: transcript saved to {}", path.display());
        }
    }
}

/// Takes `session` over with [`podlog_pod::take_over`]: `Pod::restore`,
/// retried while PostgreSQL has not yet ended the dead client's backend
/// (which holds the session's advisory lock), for at most `wait`.
fn take_over(
    store: &Arc<Store>,
    session: &podlog_entry::SessionId,
    next_run: usize,
    wait: Duration,
    transcript: &Transcript,
) -> Pod {
    let start = Instant::now();
    let mut attempts = 0u32;
    let pod = podlog_pod::take_over(store, session, wait, || {
        attempts += 1;
        Box::new(
            ScriptedDriver::demo()
                .with_delta_delay(Duration::from_millis(5))
                .starting_at(next_run),
        )
    })
    .unwrap_or_else(|e| panic!("taking {session} over, {attempts} attempts: {e}"));
    transcript.note(format!(
        "B: Pod::restore took the session over in {} ms, at attempt {attempts}",
        start.elapsed().as_millis()
    ));
    pod
}

#[test]
fn a_killed_pod_host_is_taken_over_and_clients_resume_on_another_server() {
    let transcript = Transcript::new();
    let mut schema = PgSchema::new();
    let mut a = Served::start(&schema.url, &["--demo", "--demo-pace-ms", "100"]);
    let b = Served::start(&schema.url, &[]);
    let session = a.demo_session.clone().expect("demo session");
    transcript.note(format!(
        "A (pid {}) serves the demo pod writing {session}; B (pid {}) serves no pod",
        a.child.id(),
        b.child.id()
    ));
    let store = schema.store();
    let path = format!("/sessions/{session}/events?tail=all");
    let runtime = runtime();

    // A client on B all along; it reads until `target` (set at the end).
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = {
        let client = b.client();
        let path = path.clone();
        let target = target.clone();
        runtime.spawn(async move {
            let mut stream = client
                .events_at(&path, None)
                .await
                .map_err(|e| e.to_string())?;
            let mut taken = Taken::default();
            let read = taken
                .read(&mut stream, Duration::from_secs(90), |t| {
                    t.view.last_seq().get() >= target.load(Ordering::SeqCst)
                })
                .await?;
            if read != Read::Done {
                return Err(format!(
                    "B's stream: {read:?} at seq {}",
                    taken.view.last_seq()
                ));
            }
            Ok::<_, String>(taken)
        })
    };

    // A client on A reads until the second run has begun, and A is killed
    // right then: the run's first text is still being streamed.
    let mut taken = Taken::default();
    let last_id = runtime.block_on(async {
        let mut stream = a.client().events_at(&path, None).await.unwrap();
        let read = taken
            .read(&mut stream, Duration::from_secs(60), |t| {
                let inputs = t
                    .view
                    .entries(&session)
                    .iter()
                    .filter(|c| matches!(*c.entry, LogEntry::UserInput { .. }))
                    .count();
                inputs >= 2
                    && matches!(
                        t.view.entries(&session).last().map(|c| &*c.entry),
                        Some(LogEntry::UserInput { .. })
                    )
            })
            .await
            .unwrap();
        assert_eq!(read, Read::Done, "at seq {}", taken.view.last_seq());
        stream.last_id().expect("an event id").to_owned()
    });
    a.kill9();
    let killed_at = store.session(&session).unwrap().last_seq;
    let in_rows: i64 = schema.number(&format!(
        "SELECT coalesce(max(seq), 0) FROM {{s}}.entries WHERE session_id = '{session}'"
    ));
    transcript.note(format!("(max seq in rows right after the kill: {in_rows})"));
    transcript.note(format!(
        "A killed with SIGKILL at seq {killed_at}; the client on A had read to {last_id}"
    ));
    let open = store.open_run(&session).unwrap();
    transcript.note(format!("the log leaves a run open from seq {open:?}"));
    assert!(open.is_some(), "A was killed between runs");
    match store.lock_holder(&session).unwrap() {
        Some(holder) => transcript.note(format!("the session lock is still held by {holder}")),
        None => transcript.note("the session lock is already free"),
    }

    // Host B's pod takes over: retried while PostgreSQL still holds A's lock.
    let next_run = taken
        .view
        .entries(&session)
        .iter()
        .filter(|c| matches!(*c.entry, LogEntry::UserInput { .. }))
        .count();
    let pod = take_over(
        &store,
        &session,
        next_run,
        Duration::from_secs(15),
        &transcript,
    );
    // What A's server process had been sent before A died, it may still
    // have committed (never published by A): the restore starts after it.
    let restored_end = pod.end_seq();
    let after = store
        .entries_after(&session, killed_at, usize::MAX)
        .unwrap();
    let kinds: Vec<String> = after
        .iter()
        .map(|c| format!("{} {}", c.seq, c.entry.kind()))
        .collect();
    transcript.note(format!("after the kill the log gained: {kinds:?}"));
    assert_eq!(after.last().map(|c| c.seq), Some(restored_end));
    assert!(
        matches!(
            after.last().map(|c| &*c.entry),
            Some(LogEntry::RunErrored { .. })
        ),
        "the restore closed the interrupted run: {kinds:?}"
    );
    assert_eq!(store.open_run(&session).unwrap(), None);

    // And writes on: one more run.
    pod.submit_input("carry on after the failover".to_owned())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run_end = loop {
        // The run is over once the store has closed it and the pod has
        // published its last entry.
        let stored = store.session(&session).unwrap().last_seq;
        if stored > restored_end
            && store.open_run(&session).unwrap().is_none()
            && pod.end_seq() == stored
        {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "the run after the failover did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The driver may still commit after the run's end (a notice): stop the
    // pod, after its commit in flight, so that the session's end is final
    // before the clients are checked against it.
    pod.shutdown();
    let end = store.session(&session).unwrap().last_seq;
    assert!(end >= run_end);
    transcript.note(format!("B's pod ran one more turn, to seq {end}"));

    // The client that read from A resumes against B by Last-Event-ID.
    runtime.block_on(async {
        let mut stream = b.client().events_at(&path, Some(&last_id)).await.unwrap();
        let read = taken
            .read(&mut stream, Duration::from_secs(30), |t| {
                t.view.last_seq() >= end
            })
            .await
            .unwrap();
        assert_eq!(read, Read::Done, "at seq {}", taken.view.last_seq());
    });
    transcript.note(format!(
        "the client resumed on B after {last_id} and read to seq {}",
        taken.view.last_seq()
    ));
    target.store(end.get(), Ordering::SeqCst);
    let watched = runtime
        .block_on(watcher)
        .expect("watcher task")
        .unwrap_or_else(|e| panic!("{e}"));
    transcript.note(format!(
        "the client on B all along read to seq {}",
        watched.view.last_seq()
    ));

    let all: Vec<u64> = (1..=end.get()).collect();
    assert_eq!(
        taken.seq_list(),
        all,
        "the moved client: nothing lost or repeated"
    );
    assert_eq!(
        watched.seq_list(),
        all,
        "B's client: nothing lost or repeated"
    );
    let stored = store
        .previews_after(&session, Seq::ZERO, usize::MAX)
        .unwrap();
    assert_eq!(taken.view.entries(&session), &stored[..]);
    assert_eq!(watched.view.entries(&session), &stored[..]);
    let errored = taken
        .view
        .entries(&session)
        .iter()
        .filter(|c| matches!(*c.entry, LogEntry::RunErrored { .. }))
        .count();
    assert_eq!(errored, 1, "one interrupted run, closed once");
    pod.shutdown();
    drop(pod);
    assert_eq!(store.verify(Some(&session)).unwrap(), vec![]);
    transcript.note(format!(
        "both clients hold seqs 1..={end}, equal to the store; verify finds no problem"
    ));
}

/// Drains `events`: every event sent so far.
fn drain(
    events: &mut tokio::sync::broadcast::Receiver<podlog_protocol::SharedEvent>,
) -> Vec<podlog_protocol::Event> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event.event().clone());
    }
    out
}

/// Waits until `session` has no open run and ends after `after`.
fn run_ended(store: &Store, session: &podlog_entry::SessionId, after: Seq) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.session(session).unwrap().last_seq <= after
        || store.open_run(session).unwrap().is_some()
    {
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pod's database connection is ended from the server side
/// (`pg_terminate_backend`), between runs and then in the middle of one.
/// The pod stops writing: each commit fails with an error that says the
/// session's lock was lost, nothing it did not commit reaches its event
/// channel, and another pod can take the session over at once and close
/// the run the lost one left open.
#[test]
fn a_pod_whose_connection_is_ended_stops_writing_and_publishes_nothing_uncommitted() {
    use podlog_store::NewSession;

    let mut schema = PgSchema::new();
    let store = schema.store();
    let pod = Pod::create(
        store.clone(),
        NewSession {
            title: Some("connection lost".to_owned()),
            ..NewSession::default()
        },
        Box::new(ScriptedDriver::demo().with_delta_delay(Duration::from_millis(20))),
    )
    .unwrap();
    let session = pod.session_id();
    let (_snapshot, mut events) = pod.subscribe().unwrap();
    let status = pod.watch_status();
    pod.submit_input("first".to_owned()).unwrap();
    run_ended(&store, &session, Seq(2));
    let before = store.session(&session).unwrap().last_seq;

    // Ended between runs: the next commit fails, and so does every one after.
    let backend = schema.writer_backend(&session).expect("the pod's writer");
    assert!(schema.terminate(backend));
    let deadline = Instant::now() + Duration::from_secs(10);
    while schema.writer_backend(&session).is_some() {
        assert!(
            Instant::now() < deadline,
            "the lock outlived its connection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let note = |text: &str| LogEntry::SystemItem {
        ts: 1,
        item: podlog_entry::SystemItem::Notification {
            message: text.to_owned(),
            body: text.to_owned(),
        },
    };
    // The idle pod's status says so with no commit: the link's thread
    // looks at the idle connection every second.
    while !status.borrow().lock_lost {
        assert!(
            Instant::now() < deadline,
            "the status never said lock_lost while the pod was idle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = pod.commit(note("after the end")).unwrap_err().to_string();
    assert!(pod.status().lock_lost, "the failed commit says so: {first}");
    let second = pod.commit(note("again")).unwrap_err().to_string();
    assert!(first.contains(session.as_str()), "{first}");
    assert!(
        second.contains("write lock") && second.contains(session.as_str()),
        "{second}"
    );
    let input = pod
        .submit_input("second".to_owned())
        .unwrap_err()
        .to_string();
    assert!(input.contains("write lock"), "{input}");
    assert_eq!(store.session(&session).unwrap().last_seq, before);
    assert_eq!(pod.end_seq(), before);

    // Whatever the pod sent is in the store, as sent.
    let stored = store
        .previews_after(&session, Seq::ZERO, usize::MAX)
        .unwrap();
    for event in drain(&mut events) {
        if let Some(committed) = event.to_committed() {
            let at = (committed.seq.get() - 1) as usize;
            assert_eq!(stored.get(at), Some(&committed), "published but not stored");
        }
    }

    // Another pod takes the session over at once.
    let next = Pod::restore(
        store.clone(),
        &session,
        Box::new(
            ScriptedDriver::demo()
                .with_delta_delay(Duration::from_millis(30))
                .starting_at(1),
        ),
    )
    .unwrap();
    assert_eq!(next.end_seq(), before, "no run was left open");
    assert!(!next.status().lock_lost);
    drop(pod);

    // Ended in the middle of a run: the run stops, its entries so far are
    // the store's, and the restore after it closes the run.
    let (_snapshot, mut events) = next.subscribe().unwrap();
    next.submit_input("second".to_owned()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &podlog_protocol::Event| matches!(e, podlog_protocol::Event::TextDelta { .. }))
    {
        assert!(Instant::now() < deadline, "the run streamed nothing");
        seen.extend(drain(&mut events));
        std::thread::sleep(Duration::from_millis(5));
    }
    let backend = schema
        .writer_backend(&session)
        .expect("the new pod's writer");
    assert!(schema.terminate(backend));
    let deadline = Instant::now() + Duration::from_secs(30);
    while next.status().busy {
        assert!(
            Instant::now() < deadline,
            "the run went on without its lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(next.status().lock_lost, "the run's failed commit says so");
    seen.extend(drain(&mut events));
    let open = store.open_run(&session).unwrap();
    let kinds: Vec<String> = store
        .entries(&session)
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.seq, c.entry.kind()))
        .collect();
    assert!(
        open.is_some(),
        "a run closed without its lock: {kinds:?}; seen {seen:?}"
    );
    let stored = store
        .previews_after(&session, Seq::ZERO, usize::MAX)
        .unwrap();
    for event in &seen {
        if let Some(committed) = event.to_committed() {
            let at = (committed.seq.get() - 1) as usize;
            assert_eq!(stored.get(at), Some(&committed), "published but not stored");
        }
    }
    assert_eq!(next.end_seq(), stored.last().unwrap().seq);
    let lost_end = next.end_seq();
    drop(next);
    let last = Pod::restore(
        store.clone(),
        &session,
        Box::new(ScriptedDriver::demo().starting_at(2)),
    )
    .unwrap();
    let closed = store.entries_after(&session, lost_end, usize::MAX).unwrap();
    assert!(
        matches!(
            closed.last().map(|c| &*c.entry),
            Some(LogEntry::RunErrored { .. })
        ),
        "{closed:?}"
    );
    drop(last);
    assert_eq!(store.verify(Some(&session)).unwrap(), vec![]);
}
