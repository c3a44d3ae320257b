//! Unit tests of the pod, on file databases in temp dirs: commit-then-publish
//! (a failed store commit publishes nothing and sends no event), the
//! snapshot/live split under concurrent commits, resume within a session and
//! across a compaction, restore of an interrupted run, the session lock, the
//! busy and closed states, and how runs are opened, streamed and closed.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use podlog_entry::{
    AssistantContent, Committed, Conversation, LogEntry, Message, RunErrorKind, Seq, SessionId,
    StepClock, SystemItem,
};
use podlog_store::{NewSession, Origin, SequentialIds, Store, StoreError, StoreOptions};
use serde_json::json;
use tokio::sync::broadcast::{self, error::TryRecvError};

use podlog_protocol::{Event, LogView, SharedEvent, ViewError, WireEntry};

use super::*;
use crate::pod::{human_bytes, CALL_LEFT_OPEN, INTERRUPTED_ON_RESTORE};
use crate::script::Script;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<Store>,
}

fn options() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = Arc::new(Store::open(&path, options()).unwrap());
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

fn scripted() -> Box<dyn AgentDriver> {
    Box::new(ScriptedDriver::demo())
}

fn pod(f: &Fixture, driver: Box<dyn AgentDriver>) -> Pod {
    Pod::create(f.store.clone(), NewSession::default(), driver).unwrap()
}

fn ext(n: u64) -> LogEntry {
    LogEntry::Extension {
        ts: n,
        name: "test".to_owned(),
        data: json!({ "n": n }),
    }
}

fn note(text: &str) -> LogEntry {
    LogEntry::SystemItem {
        ts: 7,
        item: SystemItem::Notification {
            message: text.to_owned(),
            body: format!("[Notification] {text}"),
        },
    }
}

/// The events of `shared`, unshared.
fn plain(shared: Vec<SharedEvent>) -> Vec<Event> {
    shared.iter().map(|e| e.event().clone()).collect()
}

/// The next event, or the receive error; panics after 10 s of silence.
fn recv(rx: &mut broadcast::Receiver<SharedEvent>) -> Result<Event, TryRecvError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Err(TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no event for 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.map(|e| e.event().clone()),
        }
    }
}

/// Applies events to `replica` until one satisfies `done`, resuming after a
/// lag the way a client does. Returns the events applied.
fn follow(
    pod: &Pod,
    rx: &mut broadcast::Receiver<SharedEvent>,
    replica: &mut LogView,
    done: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let batch = match recv(rx) {
            Ok(event) => vec![event],
            Err(TryRecvError::Lagged(_)) => {
                let session = replica.current().cloned().unwrap();
                let (missed, fresh) = pod.resume(&session, replica.last_seq()).unwrap();
                *rx = fresh;
                plain(missed)
            }
            Err(e) => panic!("receiver failed: {e}"),
        };
        for event in batch {
            replica.apply(&event).unwrap();
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    }
}

fn ends_run(event: &Event) -> bool {
    matches!(event, Event::RunCompleted { .. } | Event::RunErrored { .. })
}

/// Subscribes, submits `text`, and follows the run to its end.
fn run_input(pod: &Pod, text: &str) -> (LogView, Vec<Event>) {
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).unwrap();
    pod.submit_input(text.to_owned()).unwrap();
    let events = follow(pod, &mut rx, &mut replica, ends_run);
    (replica, events)
}

fn stored(store: &Store, session: &SessionId) -> Vec<(Seq, LogEntry)> {
    store
        .entries(session)
        .unwrap()
        .into_iter()
        .map(|c| (c.seq, (*c.entry).clone()))
        .collect()
}

fn held(replica: &LogView) -> Vec<(Seq, LogEntry)> {
    replica
        .current_entries()
        .iter()
        .map(|c| (c.seq, (*c.entry).clone()))
        .collect()
}

#[test]
fn events_round_trip_through_json_with_a_type_tag() {
    let events = vec![
        Event::TextDelta {
            after: Seq(3),
            text: "hel".to_owned(),
        },
        Event::SystemItem {
            seq: Seq(4),
            ts: 9,
            item: SystemItem::Notification {
                message: "m".to_owned(),
                body: "b".to_owned(),
            },
        },
        Event::SessionRotated {
            session_id: SessionId::new("s-2").unwrap(),
            seq: Seq::FIRST,
            entry: LogEntry::SessionStart {
                ts: 1,
                system_prompt: None,
                config: Default::default(),
                history: vec![],
                forked_from: None,
                compacted_from: None,
            },
            payloads: None,
        },
        Event::Snapshot {
            session_id: SessionId::new("s-1").unwrap(),
            entries: vec![WireEntry {
                seq: Seq(1),
                entry: Arc::new(ext(1)),
                payloads: None,
            }],
            end_seq: Seq(1),
        },
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.kind());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn every_committed_kind_turns_into_an_event_and_back_unchanged() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).unwrap();
    let unknown = LogEntry::from_json(r#"{"type":"future_kind","ts":5,"x":[1,2]}"#).unwrap();
    let entries = Script::demo().run(1, "c", &StepClock::new(10, 1));
    let mut all = entries.clone();
    all.push(ext(3));
    all.push(unknown);
    all.push(LogEntry::ConfigChanged {
        ts: 4,
        config: Default::default(),
    });
    for entry in all {
        let seq = pod.commit(entry.clone()).unwrap();
        let event = recv(&mut rx).unwrap();
        assert!(event.is_committed(), "{event:?}");
        assert_eq!(event.watermark(), seq);
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_committed().unwrap().entry.as_ref(), &entry);
        replica.apply(&back).unwrap();
    }
    assert_eq!(held(&replica), stored(&f.store, &pod.session_id()));
}

#[test]
fn a_failed_store_commit_publishes_nothing_and_sends_no_event() {
    let f = fixture();
    let pod = pod(&f, scripted());
    pod.commit(ext(1)).unwrap();
    let (_, mut rx) = pod.subscribe().unwrap();
    let (_, mut sink_rx) = pod.sink().subscribe_with_snapshot();
    let raw = rusqlite::Connection::open(&f.path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.kind = 'system_item' \
         BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
    )
    .unwrap();
    let err = pod.commit(note("lost")).unwrap_err();
    assert!(matches!(err, PodError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("refused by test trigger"), "{err}");
    assert_eq!(pod.end_seq(), Seq(2));
    assert_eq!(pod.sink().len(), 2);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(sink_rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(stored(&f.store, &pod.session_id()).len(), 2);

    raw.execute_batch("DROP TRIGGER refuse").unwrap();
    assert_eq!(pod.commit(note("kept")).unwrap(), Seq(3));
    let event = rx.try_recv().unwrap();
    assert_eq!(event.watermark(), Seq(3));
    assert!(matches!(*event, Event::SystemItem { .. }));
}

#[test]
fn subscribers_split_cleanly_under_concurrent_commits() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 150;
    const READERS: u64 = 6;
    let f = fixture();
    let pod = pod(&f, scripted());
    let total = 1 + WRITERS * PER_WRITER;
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for r in 0..READERS {
            let pod = pod.clone();
            readers.push(scope.spawn(move || {
                // Subscribe at a different point of the write stream each.
                let at = Seq(r * total / READERS);
                while pod.end_seq() < at {
                    std::thread::yield_now();
                }
                let (snapshot, mut rx) = pod.subscribe().unwrap();
                let mut replica = LogView::new();
                replica.apply(&snapshot).unwrap();
                if replica.last_seq() < Seq(total) {
                    follow(&pod, &mut rx, &mut replica, |e| {
                        e.watermark() == Seq(total) && e.is_committed()
                    });
                }
                replica
            }));
        }
        for w in 0..WRITERS {
            let pod = pod.clone();
            scope.spawn(move || {
                for i in 0..PER_WRITER {
                    pod.commit(ext(w * 1000 + i)).unwrap();
                    if i % 16 == 0 {
                        pod.stream(Event::TextDelta {
                            after: Seq::ZERO,
                            text: format!("{w}/{i}"),
                        });
                    }
                }
            });
        }
        let mut want = None;
        for reader in readers {
            let replica = reader.join().unwrap();
            let want = want.get_or_insert_with(|| stored(&f.store, &pod.session_id()));
            assert_eq!(want.len() as u64, total);
            assert_eq!(&held(&replica), want);
        }
    });
}

#[test]
fn resume_in_the_same_session_returns_exactly_the_missed_events() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let session = pod.session_id();
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).unwrap();
    for n in 0..3 {
        pod.commit(ext(n)).unwrap();
    }
    // The client sees two of the three, then disconnects.
    for _ in 0..2 {
        replica.apply(&recv(&mut rx).unwrap()).unwrap();
    }
    drop(rx);
    for n in 3..6 {
        pod.commit(ext(n)).unwrap();
    }
    let (missed, mut rx) = pod.resume(&session, replica.last_seq()).unwrap();
    let missed = plain(missed);
    let want: Vec<Event> = f.store.entries(&session).unwrap()[3..]
        .iter()
        .map(Event::from_committed)
        .collect();
    assert_eq!(missed, want);
    assert_eq!(missed.first().map(Event::watermark), Some(Seq(4)));
    for event in &missed {
        replica.apply(event).unwrap();
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    pod.commit(ext(6)).unwrap();
    replica.apply(&recv(&mut rx).unwrap()).unwrap();
    assert_eq!(held(&replica), stored(&f.store, &session));

    // Nothing missed: no event, and the receiver goes on from there.
    let (missed, _) = pod.resume(&session, pod.end_seq()).unwrap();
    assert!(missed.is_empty());
    // A seq the session never reached: start over from a snapshot.
    let events = plain(pod.resume(&session, Seq(999)).unwrap().0);
    assert!(matches!(
        events.as_slice(),
        [Event::SessionRotated { .. }, Event::Snapshot { .. }]
    ));
}

#[test]
fn resume_with_a_session_from_before_a_compaction_returns_rotation_and_snapshot() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let old = pod.session_id();
    run_input(&pod, "first");
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut live = LogView::new();
    live.apply(&snapshot).unwrap();
    let summary = vec![Message::System {
        text: "the first run read the README".to_owned(),
    }];
    let new = pod.compact(Some(summary.clone())).unwrap();
    assert_ne!(new, old);
    assert_eq!(pod.session_id(), new);
    pod.commit(ext(1)).unwrap();

    // A live subscriber sees the rotation, then the new session's entries.
    let rotated = recv(&mut rx).unwrap();
    assert!(
        matches!(&rotated, Event::SessionRotated { session_id, seq: Seq(1), .. } if *session_id == new)
    );
    live.apply(&rotated).unwrap();
    live.apply(&recv(&mut rx).unwrap()).unwrap();
    assert_eq!(held(&live), stored(&f.store, &new));

    // A client that last saw the old session starts over on the new one.
    let events = plain(pod.resume(&old, Seq(3)).unwrap().0);
    let [Event::SessionRotated {
        session_id, entry, ..
    }, Event::Snapshot {
        session_id: snap_id,
        end_seq,
        ..
    }] = events.as_slice()
    else {
        panic!("want rotation and snapshot, got {events:?}");
    };
    assert_eq!((session_id, snap_id, *end_seq), (&new, &new, Seq(2)));
    let LogEntry::SessionStart {
        history,
        compacted_from,
        ..
    } = entry
    else {
        panic!("rotation without a SessionStart: {entry:?}");
    };
    assert_eq!(history, &summary);
    assert_eq!(compacted_from.as_ref().map(|r| &r.session_id), Some(&old));
    let mut replica = LogView::new();
    for event in &events {
        replica.apply(event).unwrap();
    }
    assert_eq!(held(&replica), stored(&f.store, &new));
    assert_eq!(f.store.session(&new).unwrap().origin, Origin::Compaction);

    // The pod holds the new session's lock and let go of the old one's.
    assert!(f.store.lock_session(&old).is_ok());
    assert!(matches!(
        f.store.lock_session(&new),
        Err(StoreError::SessionLocked { .. })
    ));
}

#[test]
fn compaction_without_a_summary_asks_the_driver() {
    let f = fixture();
    let pod = pod(&f, scripted());
    run_input(&pod, "first");
    let old = pod.session_id();
    let conversation = Conversation::from_entries(
        f.store
            .entries(&old)
            .unwrap()
            .iter()
            .map(|c| c.entry.as_ref()),
    );
    let want = ScriptedDriver::demo().summarise(&conversation).unwrap();
    let new = pod.compact(None).unwrap();
    let entries = f.store.entries(&new).unwrap();
    let LogEntry::SessionStart { history, .. } = entries[0].entry.as_ref() else {
        panic!("no SessionStart");
    };
    assert_eq!(history, &want);
    let Message::System { text } = &want[0] else {
        panic!("want a system message");
    };
    assert!(
        text.contains("User requests, in order:\n1. first\n"),
        "{text}"
    );
}

#[test]
fn fork_moves_the_pod_to_the_branch_and_a_bad_cut_changes_nothing() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let (replica, _) = run_input(&pod, "first");
    let parent = pod.session_id();
    let call_seq = replica
        .current_entries()
        .iter()
        .find(|c| {
            matches!(
                c.entry.as_ref(),
                LogEntry::AssistantItem {
                    item: AssistantContent::ToolCall { .. },
                    ..
                }
            )
        })
        .map(|c| c.seq)
        .unwrap();
    let (_, mut rx) = pod.subscribe().unwrap();
    let err = pod.fork(call_seq).unwrap_err();
    assert!(
        err.to_string().contains(&format!("seq {call_seq}")),
        "{err}"
    );
    assert_eq!(pod.session_id(), parent);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    let branch = pod.fork(Seq(2)).unwrap();
    assert_eq!(pod.session_id(), branch);
    assert!(
        matches!(recv(&mut rx).unwrap(), Event::SessionRotated { session_id, .. } if session_id == branch)
    );
    let (replica, _) = run_input(&pod, "second");
    assert_eq!(held(&replica), stored(&f.store, &branch));
    let entries = stored(&f.store, &branch);
    let LogEntry::SessionStart {
        forked_from,
        history,
        ..
    } = &entries[0].1
    else {
        panic!("no SessionStart");
    };
    assert_eq!(forked_from.as_ref().map(|r| r.seq), Some(Seq(2)));
    assert_eq!(
        history.len(),
        1,
        "only the user input at seq 2: {history:?}"
    );
}

/// What the gated driver does once released.
enum Gate {
    Finish,
    Fail(DriverError),
    Panic,
}

/// A driver that commits a tool call, then waits for the test to say how
/// the run ends.
struct Gated {
    gate: mpsc::Receiver<Gate>,
}

#[async_trait::async_trait]
impl AgentDriver for Gated {
    async fn run(&mut self, _input: &str, ctx: &mut RunContext) -> Result<(), DriverError> {
        let id = format!("g-{}", ctx.input_seq());
        ctx.tool_call_start(&id, "wait").await?;
        let ts = ctx.now();
        ctx.commit(LogEntry::AssistantItem {
            ts,
            item: AssistantContent::ToolCall {
                id: id.clone(),
                name: "wait".to_owned(),
                arguments: json!({}),
            },
        })
        .await?;
        match self.gate.recv() {
            Ok(Gate::Finish) => {
                let ts = ctx.now();
                ctx.commit(LogEntry::ToolResult {
                    ts,
                    call_id: id,
                    output: "done".to_owned(),
                    is_error: false,
                })
                .await?;
                let ts = ctx.now();
                ctx.commit(LogEntry::TurnEnd { ts, turn_count: 1 }).await?;
                let ts = ctx.now();
                ctx.commit(LogEntry::TurnEnd { ts, turn_count: 2 }).await?;
                Ok(())
            }
            Ok(Gate::Fail(error)) => Err(error),
            Ok(Gate::Panic) => panic!("driver bug"),
            Err(_) => Err(DriverError::internal("gate dropped")),
        }
    }

    fn summarise(&mut self, _: &Conversation) -> Result<Vec<Message>, DriverError> {
        Ok(vec![Message::System {
            text: "gated".to_owned(),
        }])
    }
}

fn gated(f: &Fixture) -> (Pod, mpsc::Sender<Gate>) {
    let (tx, gate) = mpsc::channel();
    (pod(f, Box::new(Gated { gate })), tx)
}

/// Waits until the pod has committed the gated driver's tool call.
fn wait_for_call(rx: &mut broadcast::Receiver<SharedEvent>) {
    while !matches!(recv(rx).unwrap(), Event::AssistantItem { .. }) {}
}

#[test]
fn busy_while_a_run_is_in_progress_and_free_once_it_ended() {
    let f = fixture();
    let (pod, gate) = gated(&f);
    let (_, mut rx) = pod.subscribe().unwrap();
    pod.submit_input("one".to_owned()).unwrap();
    wait_for_call(&mut rx);
    assert!(pod.is_busy());
    assert!(matches!(
        pod.submit_input("two".to_owned()),
        Err(PodError::Busy { .. })
    ));
    assert!(matches!(pod.compact(None), Err(PodError::Busy { .. })));
    assert!(matches!(pod.fork(Seq(1)), Err(PodError::Busy { .. })));
    gate.send(Gate::Finish).unwrap();
    let end = loop {
        let event = recv(&mut rx).unwrap();
        if ends_run(&event) {
            break event;
        }
    };
    assert!(
        matches!(end, Event::RunCompleted { turn_count: 2, .. }),
        "{end:?}"
    );
    // Free as soon as the end of the run is visible.
    pod.submit_input("three".to_owned()).unwrap();
    gate.send(Gate::Finish).unwrap();
    while !ends_run(&recv(&mut rx).unwrap()) {}
    let inputs: Vec<Seq> = stored(&f.store, &pod.session_id())
        .iter()
        .filter(|(_, e)| matches!(e, LogEntry::UserInput { .. }))
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(inputs, [Seq(2), Seq(8)]);
}

#[test]
fn a_driver_error_or_panic_is_committed_as_run_errored_with_its_calls_closed() {
    let f = fixture();
    let (pod, gate) = gated(&f);
    let cases = [
        (
            Gate::Fail(DriverError::tool("the sandbox died")),
            RunErrorKind::Tool,
            "the sandbox died".to_owned(),
        ),
        (
            Gate::Fail(DriverError::provider("rate limited")),
            RunErrorKind::Provider,
            "rate limited".to_owned(),
        ),
        (
            Gate::Panic,
            RunErrorKind::Internal,
            "the driver panicked: driver bug".to_owned(),
        ),
    ];
    for (how, want_kind, want_message) in cases {
        let (snapshot, mut rx) = pod.subscribe().unwrap();
        let mut replica = LogView::new();
        replica.apply(&snapshot).unwrap();
        let input_seq = replica.last_seq().next();
        pod.submit_input("go".to_owned()).unwrap();
        gate.send(how).unwrap();
        let events = follow(&pod, &mut rx, &mut replica, ends_run);
        let [.., Event::ToolResult {
            call_id,
            output,
            is_error: true,
            ..
        }, Event::RunErrored { kind, message, .. }] = events.as_slice()
        else {
            panic!("want a closing tool result and RunErrored, got {events:?}");
        };
        assert_eq!(call_id, &format!("g-{input_seq}"));
        assert_eq!(output, CALL_LEFT_OPEN);
        assert_eq!((kind, message), (&want_kind, &want_message));
        assert_eq!(held(&replica), stored(&f.store, &pod.session_id()));
    }
    assert!(!pod.is_busy());
}

#[test]
fn restore_closes_an_interrupted_run_before_anyone_subscribes() {
    let f = fixture();
    let (id, start) = f.store.create_session(NewSession::default()).unwrap();
    let sink = podlog_sink::SessionLogSink::with_initial([start]).unwrap();
    let entries = Script::demo().run(0, "c", &StepClock::new(1, 1));
    // The process died right after the tool call of the first run.
    let mut writer = f.store.session_writer(&id).unwrap();
    for entry in entries.iter().take(3) {
        writer.append(entry.clone(), &sink).unwrap();
    }
    drop((writer, sink));
    let pod = Pod::restore(f.store.clone(), &id, scripted()).unwrap();
    let (snapshot, _) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).unwrap();
    let log = held(&replica);
    assert_eq!(log, stored(&f.store, &id));
    assert_eq!(log.len(), 6);
    assert!(matches!(
        &log[4].1,
        LogEntry::ToolResult { call_id, is_error: true, output, .. }
            if call_id == "c-1" && output == CALL_LEFT_OPEN
    ));
    assert!(matches!(
        &log[5].1,
        LogEntry::RunErrored { kind: RunErrorKind::Interrupted, message, .. }
            if message == INTERRUPTED_ON_RESTORE
    ));
    // The pod goes on, and a second restore of the closed log adds nothing.
    let (replica, _) = run_input(&pod, "again");
    assert_eq!(held(&replica), stored(&f.store, &id));
    let len = replica.current_entries().len();
    drop(pod);
    let pod = Pod::restore(f.store.clone(), &id, scripted()).unwrap();
    assert_eq!(pod.end_seq(), Seq(len as u64));
}

#[test]
fn restore_is_refused_while_another_pod_writes_the_session() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let id = pod.session_id();
    let other = Arc::new(Store::open(&f.path, options()).unwrap());
    let err = Pod::restore(other.clone(), &id, scripted()).unwrap_err();
    let PodError::SessionLocked { session, holder } = &err else {
        panic!("want SessionLocked, got {err:?}");
    };
    assert_eq!(session, &id);
    assert_eq!(holder.pid, Some(std::process::id()));
    assert!(
        err.to_string()
            .contains(&format!("being written by pid {}", std::process::id())),
        "{err}"
    );
    pod.shutdown();
    let restored = Pod::restore(other, &id, scripted()).unwrap();
    assert_eq!(restored.session_id(), id);
}

#[test]
fn shutdown_stops_a_run_after_its_in_flight_commit_and_closes_everything() {
    let f = fixture();
    let (pod, gate) = gated(&f);
    let id = pod.session_id();
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut replica = LogView::new();
    replica.apply(&snapshot).unwrap();
    pod.submit_input("long".to_owned()).unwrap();
    follow(&pod, &mut rx, &mut replica, |e| {
        matches!(e, Event::AssistantItem { .. })
    });
    let stopper = {
        let pod = pod.clone();
        std::thread::spawn(move || pod.shutdown())
    };
    while !pod.is_closed() {
        std::thread::yield_now();
    }
    // The driver's next commit fails: the run ends there.
    gate.send(Gate::Finish).unwrap();
    stopper.join().unwrap();
    let mut tail = Vec::new();
    loop {
        match recv(&mut rx) {
            Ok(event) => {
                replica.apply(&event).unwrap();
                tail.push(event);
            }
            Err(TryRecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        matches!(tail.last(), Some(Event::RunErrored { kind: RunErrorKind::Interrupted, message, .. }) if message == driver::INTERRUPTED_BY_SHUTDOWN),
        "{tail:?}"
    );
    assert_eq!(held(&replica), stored(&f.store, &id));
    assert!(!tail
        .iter()
        .any(|e| matches!(e, Event::ToolResult { output, .. } if output == "done")));

    assert!(matches!(
        pod.submit_input("x".to_owned()),
        Err(PodError::Closed { .. })
    ));
    assert!(matches!(pod.commit(ext(1)), Err(PodError::Closed { .. })));
    assert!(matches!(pod.compact(None), Err(PodError::Closed { .. })));
    assert!(!pod.stream(Event::RunStarted { after: Seq::ZERO }));
    // Read-only views still answer, with a closed receiver.
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    assert_eq!(snapshot.watermark(), replica.last_seq());
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    // The session is free for another writer.
    assert!(f.store.lock_session(&id).is_ok());
}

#[test]
fn the_scripted_driver_streams_before_it_commits() {
    let f = fixture();
    let pod = pod(&f, Box::new(ScriptedDriver::demo().with_words_per_delta(2)));
    for run in 0..3 {
        let (replica, events) = run_input(&pod, "go");
        assert_eq!(held(&replica), stored(&f.store, &pod.session_id()));
        assert!(
            matches!(
                events.as_slice(),
                [Event::UserMessage { .. }, Event::RunStarted { .. }, ..]
            ),
            "run {run}"
        );
        let mut deltas = String::new();
        let mut started: Option<String> = None;
        let mut texts = 0;
        for event in &events {
            match event {
                Event::TextDelta { after, text } => {
                    assert_eq!(*after, event.watermark());
                    deltas.push_str(text);
                }
                Event::ToolCallStart { call_id, .. } => started = Some(call_id.clone()),
                Event::AssistantItem {
                    item: AssistantContent::Text { text },
                    ..
                } => {
                    assert_eq!(&deltas, text, "run {run}");
                    assert!(text.split(' ').count() > 2);
                    deltas.clear();
                    texts += 1;
                }
                Event::AssistantItem {
                    item: AssistantContent::ToolCall { id, .. },
                    ..
                } => {
                    assert_eq!(started.take().as_ref(), Some(id), "run {run}");
                    assert!(id.starts_with(&format!("call-{}-", pod.session_id())));
                }
                _ => {}
            }
        }
        assert_eq!(texts, 1, "run {run}");
        let turns = events
            .iter()
            .filter(|e| matches!(e, Event::TurnEnd { .. }))
            .count() as u64;
        assert!(
            matches!(events.last(), Some(Event::RunCompleted { turn_count, .. }) if *turn_count == turns)
        );
    }
}

#[test]
fn ephemeral_events_carry_the_watermark_and_committed_ones_cannot_be_streamed() {
    let f = fixture();
    let pod = pod(&f, scripted());
    pod.commit(ext(1)).unwrap();
    let (_, mut rx) = pod.subscribe().unwrap();
    assert!(pod.stream(Event::TextDelta {
        after: Seq(77),
        text: "x ".to_owned(),
    }));
    assert_eq!(rx.try_recv().unwrap().watermark(), Seq(2));
    assert!(!pod.stream(Event::TurnEnd {
        seq: Seq(3),
        ts: 0,
        turn_count: 1,
    }));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(pod.end_seq(), Seq(2));
}

#[test]
fn a_view_refuses_a_gap_or_a_duplicate() {
    let mut replica = LogView::new();
    let event = |seq| Event::from_committed(&podlog_entry::Committed::new(Seq(seq), ext(seq)));
    assert!(matches!(
        replica.apply(&event(2)),
        Err(ViewError::NoSession { .. })
    ));
    replica
        .apply(&Event::Snapshot {
            session_id: SessionId::new("s").unwrap(),
            entries: vec![WireEntry {
                seq: Seq(1),
                entry: Arc::new(ext(1)),
                payloads: None,
            }],
            end_seq: Seq(1),
        })
        .unwrap();
    assert!(matches!(
        replica.apply(&event(3)),
        Err(ViewError::OutOfOrder {
            last: Seq(1),
            got: Seq(3),
            ..
        })
    ));
    replica.apply(&event(2)).unwrap();
    assert!(matches!(
        replica.apply(&event(2)),
        Err(ViewError::OutOfOrder { .. })
    ));
    assert_eq!(replica.last_seq(), Seq(2));
}

#[test]
fn a_pod_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + Clone + 'static>(_: &T) -> bool {
        true
    }
    let f = fixture();
    let pod = pod(&f, scripted());
    assert!(shared(&pod));
    let other = pod.clone();
    let seq = std::thread::spawn(move || other.commit(ext(1)).unwrap())
        .join()
        .unwrap();
    assert_eq!((seq, pod.end_seq()), (Seq(2), Seq(2)));
}

/// A driver that streams a delta, then lets the test take SQLite's write
/// lock from another connection before it commits, and reports how that
/// commit went before it returns.
struct LockedOut {
    ready: mpsc::Sender<()>,
    lock_taken: mpsc::Receiver<()>,
    committed: mpsc::Sender<Result<Seq, String>>,
    released: mpsc::Receiver<()>,
}

#[async_trait::async_trait]
impl AgentDriver for LockedOut {
    async fn run(&mut self, _input: &str, ctx: &mut RunContext) -> Result<(), DriverError> {
        ctx.text_delta("an answer that never ").await?;
        let _ = self.ready.send(());
        let _ = self.lock_taken.recv();
        let result = ctx
            .commit(LogEntry::AssistantItem {
                ts: ctx.now(),
                item: AssistantContent::Text {
                    text: "an answer that never lands".to_owned(),
                },
            })
            .await;
        let _ = self
            .committed
            .send(result.as_ref().map(|s| *s).map_err(ToString::to_string));
        let _ = self.released.recv();
        result?;
        Ok(())
    }

    fn summarise(&mut self, _: &Conversation) -> Result<Vec<Message>, DriverError> {
        Ok(vec![])
    }
}

#[test]
fn a_commit_that_outwaits_the_busy_timeout_closes_the_run_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = Arc::new(
        Store::open(
            &path,
            StoreOptions {
                busy_timeout: Duration::from_millis(200),
                ..options()
            },
        )
        .unwrap(),
    );
    let (ready, ready_rx) = mpsc::channel();
    let (lock_taken_tx, lock_taken) = mpsc::channel();
    let (committed, committed_rx) = mpsc::channel();
    let (released_tx, released) = mpsc::channel();
    let driver = LockedOut {
        ready,
        lock_taken,
        committed,
        released,
    };
    let pod = Pod::create(store.clone(), NewSession::default(), Box::new(driver)).unwrap();
    let (snapshot, mut rx) = pod.subscribe().unwrap();
    let mut view = LogView::new();
    view.apply(&snapshot).unwrap();
    pod.submit_input("hello".to_owned()).unwrap();

    ready_rx.recv().unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    lock_taken_tx.send(()).unwrap();
    let failed = committed_rx.recv().unwrap().unwrap_err();
    assert!(failed.contains("database is locked"), "{failed}");
    // Nothing of the failed commit reached the mirror or the clients, and
    // the pod's status still reads at once.
    assert_eq!(pod.end_seq(), Seq(2));
    assert_eq!(pod.status().end_seq, Seq(2));
    other.execute_batch("COMMIT").unwrap();
    released_tx.send(()).unwrap();

    let events = follow(&pod, &mut rx, &mut view, ends_run);
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        ["user_message", "run_started", "text_delta", "run_errored"]
    );
    let Some(Event::RunErrored { kind, message, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(*kind, RunErrorKind::Internal);
    assert!(
        message.contains("database is locked") && message.contains(pod.session_id().as_str()),
        "{message}"
    );
    assert_eq!(held(&view), stored(&store, &pod.session_id()));
    assert!(!pod.status().busy);
}

/// The threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn pods_created_in_a_runtime_run_their_drivers_as_tasks_not_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture();
    rt.block_on(async {
        let before = threads();
        let pods: Vec<Pod> = (0..32)
            .map(|_| {
                let driver = ScriptedDriver::demo().with_delta_delay(Duration::from_millis(1));
                pod(&f, Box::new(driver))
            })
            .collect();
        let after = threads();
        assert!(
            after < before + 4,
            "32 pods started {} threads",
            after - before
        );
        // All of them run at once, awaiting their pauses on two workers.
        for p in &pods {
            let p = p.clone();
            tokio::task::spawn_blocking(move || p.submit_input("go".to_owned()))
                .await
                .unwrap()
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while pods.iter().any(Pod::is_busy) {
            assert!(Instant::now() < deadline, "runs did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for p in &pods {
            let log = stored(&f.store, &p.session_id());
            assert!(
                matches!(log.last(), Some((_, LogEntry::RunCompleted { .. }))),
                "{:?}",
                log.last()
            );
        }
    });
}

#[test]
fn a_tail_first_client_gets_tails_on_attach_and_when_it_starts_over() {
    let f = fixture();
    let pod = pod(&f, scripted());
    for n in 2..=9 {
        pod.commit(ext(n)).unwrap();
    }
    let seqs = |e: &Event| match e {
        Event::Snapshot {
            entries, end_seq, ..
        } => {
            let seqs: Vec<u64> = entries.iter().map(|w| w.seq.get()).collect();
            format!("{seqs:?} to {end_seq}")
        }
        other => other.kind().to_owned(),
    };
    let (snapshot, _) = pod.subscribe_tail(3).unwrap();
    assert_eq!(seqs(&snapshot), "[7, 8, 9] to 9");
    let (whole, _) = pod.subscribe_tail(100).unwrap();
    assert_eq!(seqs(&whole), "[1, 2, 3, 4, 5, 6, 7, 8, 9] to 9");
    // Still in the session: exactly what was missed, whatever the tail.
    let (missed, _) = pod.resume_tail(&pod.session_id(), Seq(8), Some(3)).unwrap();
    assert_eq!(
        plain(missed).iter().map(seqs).collect::<Vec<_>>(),
        ["entry"]
    );
    // Another session: start over, tail-first.
    let gone = SessionId::new("gone").unwrap();
    let (events, _) = pod.resume_tail(&gone, Seq(2), Some(2)).unwrap();
    let shown: Vec<String> = plain(events).iter().map(seqs).collect();
    assert_eq!(shown, ["session_rotated", "[8, 9] to 9"]);
}

#[test]
fn the_status_turns_idle_only_with_the_runs_closing_entry() {
    let f = fixture();
    let pod = pod(
        &f,
        Box::new(ScriptedDriver::demo().with_delta_delay(Duration::from_millis(1))),
    );
    for run in 0..3 {
        pod.submit_input(format!("run {run}")).unwrap();
        // Busy from the input until the closing entry is committed, and
        // idle only with that entry's seq.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = pod.status();
            if !status.busy {
                break status;
            }
            assert!(Instant::now() < deadline, "the run did not end");
            std::thread::yield_now();
        };
        let log = stored(&f.store, &status.session_id);
        let (last_seq, last) = log.last().unwrap();
        assert_eq!(status.end_seq, *last_seq, "run {run}");
        assert!(
            matches!(last, LogEntry::RunCompleted { .. }),
            "run {run}: {last:?}"
        );
    }
}

/// A store that commits without waiting for the disk, for tests that
/// write many thousands of entries.
fn fast_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let options = StoreOptions {
        synchronous: podlog_store::Synchronous::Normal,
        ..options()
    };
    let store = Arc::new(Store::open(&path, options).unwrap());
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

/// Writes `entries` to a new session with a writer of its own (as another
/// process would), and returns the session.
fn written(store: &Arc<Store>, entries: impl IntoIterator<Item = LogEntry>) -> SessionId {
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = podlog_sink::SessionLogSink::with_initial([start]).unwrap();
    let mut writer = store.session_writer(&id).unwrap();
    for entry in entries {
        writer.append(entry, &sink).unwrap();
    }
    id
}

#[test]
fn a_session_far_larger_than_the_window_restores_with_every_entry_reachable() {
    let f = fast_fixture();
    let total = 3 * crate::MIRROR_WINDOW as u64 + 17;
    let big = "build output line\n".repeat(1000);
    let id = written(
        &f.store,
        (2..=total).map(|n| {
            if n.is_multiple_of(500) {
                LogEntry::ToolResult {
                    ts: n,
                    call_id: format!("c{n}"),
                    output: format!("{n}: {big}"),
                    is_error: false,
                }
            } else {
                ext(n)
            }
        }),
    );
    let pod = Pod::restore(f.store.clone(), &id, scripted()).unwrap();
    let mirrored = pod.sink().len();
    assert!(
        (crate::MIRROR_WINDOW..=crate::MIRROR_WINDOW + podlog_sink::entries::CHUNK)
            .contains(&mirrored),
        "the mirror holds {mirrored} of {total} entries"
    );
    assert!(
        pod.sink()
            .snapshot()
            .entries
            .iter()
            .all(|c| c.payloads.is_some() == c.seq.get().is_multiple_of(500)),
        "the mirror holds large outputs lean"
    );
    let stored = f.store.previews_after(&id, Seq::ZERO, usize::MAX).unwrap();
    assert_eq!(stored.len() as u64, total);
    let as_wire =
        |entries: &[Committed]| -> Vec<WireEntry> { entries.iter().map(WireEntry::from).collect() };

    // The whole snapshot: every entry by seq, the oldest from the store.
    let (snapshot, _) = pod.subscribe().unwrap();
    let Event::Snapshot {
        entries, end_seq, ..
    } = snapshot.event()
    else {
        panic!("{:?}", snapshot.event())
    };
    assert_eq!(*end_seq, Seq(total));
    assert_eq!(*entries, as_wire(&stored));

    // Resumes from anywhere: before the window, at its edge, inside it.
    let first = pod.sink().snapshot().first_seq().get();
    for after in [0, 1, 2, 777, first - 2, first - 1, first, total - 3, total] {
        let (missed, _) = pod.resume(&id, Seq(after)).unwrap();
        let got: Vec<Committed> = missed.iter().filter_map(|e| e.to_committed()).collect();
        assert_eq!(got, stored[after as usize..], "after {after}");
    }
    // Tails of any length, across the window's edge.
    for n in [1, 50, crate::MIRROR_WINDOW + 300, total as usize + 5] {
        let (tail, _) = pod.subscribe_tail(n).unwrap();
        let Event::Snapshot { entries, .. } = tail.event() else {
            panic!()
        };
        let want = &stored[stored.len().saturating_sub(n)..];
        assert_eq!(*entries, as_wire(want), "tail {n}");
    }
    // A client that must start over gets the session's start from the
    // mirror, though the window moved past it.
    let gone = SessionId::new("gone").unwrap();
    let (events, _) = pod.resume_tail(&gone, Seq(2), Some(2)).unwrap();
    let Event::SessionRotated { seq, entry, .. } = events[0].event() else {
        panic!("{:?}", events[0].event())
    };
    assert_eq!((*seq, entry), (Seq::FIRST, &*stored[0].entry));

    // The driver's conversation is whole: outputs come back from the store.
    let conversation = pod.conversation().unwrap();
    let outputs: Vec<usize> = conversation
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { output, .. } => Some(output.len()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len() as u64, total / 500);
    assert!(outputs.iter().all(|&len| len > big.len()));

    // And it goes on writing where the session ends.
    assert_eq!(pod.commit(ext(0)).unwrap(), Seq(total + 1));
}

#[test]
fn restore_closes_a_run_that_began_before_the_window() {
    let f = fast_fixture();
    let mut entries = vec![
        LogEntry::UserInput {
            ts: 1,
            text: "a long run".into(),
            attachments: vec![],
        },
        LogEntry::AssistantItem {
            ts: 2,
            item: AssistantContent::ToolCall {
                id: "long-call".into(),
                name: "watch".into(),
                arguments: json!({}),
            },
        },
    ];
    entries.extend((0..crate::MIRROR_WINDOW as u64 + 600).map(ext));
    let id = written(&f.store, entries);
    let pod = Pod::restore(f.store.clone(), &id, scripted()).unwrap();
    assert!(
        pod.sink().snapshot().first_seq() > Seq(3),
        "the input is out of the window"
    );
    let log = stored(&f.store, &id);
    let closing: Vec<&LogEntry> = log.iter().rev().take(2).map(|(_, e)| e).collect();
    assert!(
        matches!(closing[1], LogEntry::ToolResult { call_id, is_error: true, .. } if call_id == "long-call"),
        "{closing:?}"
    );
    assert!(
        matches!(
            closing[0],
            LogEntry::RunErrored {
                kind: RunErrorKind::Interrupted,
                ..
            }
        ),
        "{closing:?}"
    );
}

const TOKEN: &str = "ghp_FAKEfake0000000000000000000000000000";

fn secret_note(n: u64) -> LogEntry {
    note(&format!("push {n} with {TOKEN}"))
}

/// The `SystemItem` notices committed in `session`, by message.
fn notices(store: &Store, session: &SessionId) -> Vec<(Seq, String)> {
    stored(store, session)
        .into_iter()
        .filter_map(|(seq, e)| match e {
            LogEntry::SystemItem {
                item: SystemItem::Notification { message, .. },
                ..
            } => Some((seq, message)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_redaction_of_a_session_is_noticed_once_right_after_the_entry() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let (_, mut rx) = pod.subscribe().unwrap();
    let seq = pod.commit(secret_note(1)).unwrap();
    assert_eq!(seq, Seq(2), "the entry's seq, not the notice's");
    assert_eq!(pod.end_seq(), Seq(3), "the notice follows at once");
    let first = recv(&mut rx).unwrap();
    assert!(!serde_json::to_string(&first).unwrap().contains(TOKEN));
    match recv(&mut rx).unwrap() {
        Event::SystemItem {
            seq,
            item: SystemItem::Notification { message, body },
            ..
        } => {
            assert_eq!(seq, Seq(3));
            assert_eq!(message, "2 secrets redacted (2 github_token)");
            assert!(body.contains("Entry 2 held 2 secrets"), "{body}");
            assert!(!body.contains(TOKEN));
        }
        other => panic!("expected the notice, got {other:?}"),
    }
    pod.commit(secret_note(2)).unwrap();
    pod.commit(ext(3)).unwrap();
    let session = pod.session_id();
    let found = notices(&f.store, &session);
    let redacted: Vec<_> = found
        .iter()
        .filter(|(_, m)| m.contains("redacted"))
        .collect();
    assert_eq!(redacted.len(), 1, "{found:?}");
    assert_eq!(f.store.session(&session).unwrap().redactions, 4);
    drop(pod);
    // Restored, the pod reads the count: still no second notice.
    let pod = Pod::restore(f.store.clone(), &session, scripted()).unwrap();
    pod.commit(secret_note(4)).unwrap();
    let found = notices(&f.store, &session);
    assert_eq!(
        found.iter().filter(|(_, m)| m.contains("redacted")).count(),
        1
    );
}

#[test]
fn a_size_warning_is_committed_once_per_multiple_crossed() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let start = f.store.session(&pod.session_id()).unwrap().stored_bytes;
    let threshold = 4096;
    pod.set_size_warning(threshold);
    let pad = |n: u64| LogEntry::Extension {
        ts: n,
        name: "pad".to_owned(),
        data: json!({ "pad": "p".repeat(1000) }),
    };
    let mut commits = 0;
    while f.store.session(&pod.session_id()).unwrap().stored_bytes < 3 * threshold + 10 {
        pod.commit(pad(commits)).unwrap();
        commits += 1;
    }
    let session = pod.session_id();
    let warnings: Vec<_> = notices(&f.store, &session)
        .into_iter()
        .filter(|(_, m)| m.starts_with("session size passed"))
        .map(|(_, m)| m)
        .collect();
    let expected: Vec<String> = (start / threshold + 1..=3)
        .map(|k| format!("session size passed {}", human_bytes(k * threshold)))
        .collect();
    assert_eq!(warnings, expected, "after {commits} commits");
    // Restored, a crossing already warned is not warned again.
    drop(pod);
    let pod = Pod::restore(f.store.clone(), &session, scripted()).unwrap();
    pod.set_size_warning(threshold);
    pod.commit(LogEntry::Extension {
        ts: 0,
        name: "tiny".to_owned(),
        data: json!(1),
    })
    .unwrap();
    let again = notices(&f.store, &session)
        .into_iter()
        .filter(|(_, m)| m.starts_with("session size passed"))
        .count();
    assert_eq!(again, expected.len());
    // Switched off, no warning whatever the size.
    pod.set_size_warning(0);
    for i in 0..6 {
        pod.commit(pad(i)).unwrap();
    }
    let off = notices(&f.store, &session)
        .into_iter()
        .filter(|(_, m)| m.starts_with("session size passed"))
        .count();
    assert_eq!(off, expected.len());
}

#[test]
fn streamed_deltas_never_carry_a_secret_even_split_in_two() {
    let f = fixture();
    let pod = pod(&f, scripted());
    let (_, mut rx) = pod.subscribe().unwrap();
    let (a, b) = TOKEN.split_at(15);
    for piece in ["use ", a, b, " to push"] {
        assert!(pod.stream(Event::TextDelta {
            after: Seq::ZERO,
            text: piece.to_owned(),
        }));
    }
    // The word being written is held back until the next commit.
    pod.commit(note("done")).unwrap();
    let mut streamed = String::new();
    loop {
        match recv(&mut rx).unwrap() {
            Event::TextDelta { text, .. } => streamed.push_str(&text),
            Event::SystemItem { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!streamed.contains(a) && !streamed.contains(b), "{streamed}");
    assert!(
        streamed.starts_with("use [REDACTED:github_token:") && streamed.ends_with("] to push"),
        "{streamed}"
    );

    // Switched off, deltas pass as they come.
    f.store.set_redaction(false).unwrap();
    assert!(pod.stream(Event::TextDelta {
        after: Seq::ZERO,
        text: TOKEN.to_owned(),
    }));
    match recv(&mut rx).unwrap() {
        Event::TextDelta { text, .. } => assert_eq!(text, TOKEN),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn secrets_in_a_sessions_start_are_noticed_at_once_and_only_then() {
    let f = fixture();
    let pod = Pod::create(
        f.store.clone(),
        NewSession {
            system_prompt: Some(format!("push with {TOKEN}")),
            ..NewSession::default()
        },
        scripted(),
    )
    .unwrap();
    assert_eq!(pod.end_seq(), Seq(2), "the notice follows the start");
    let session = pod.session_id();
    assert_eq!(
        notices(&f.store, &session),
        vec![(
            Seq(2),
            "1 secret redacted in the session's start".to_owned()
        )]
    );
    pod.commit(secret_note(1)).unwrap();
    let redacted: Vec<_> = notices(&f.store, &session)
        .into_iter()
        .filter(|(_, m)| m.contains("secret redacted") || m.contains("secrets redacted"))
        .collect();
    assert_eq!(redacted.len(), 1, "not the first any more: {redacted:?}");

    // A compaction whose summary holds a secret: the same, in the new session.
    let compacted = pod
        .compact(Some(vec![Message::System {
            text: format!("the token was {TOKEN}"),
        }]))
        .unwrap();
    assert_eq!(pod.end_seq(), Seq(2));
    let found = notices(&f.store, &compacted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].1.contains("redacted in the session's start"));
}
