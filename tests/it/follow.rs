//! Following a session that another process writes, through
//! `GET /sessions/{id}/events`: the stream carries every committed entry
//! once, in order, resumes by event id after a disconnect, and ends equal to
//! the store.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podlog_entry::{Seq, SessionId};
use podlog_protocol::client::{Client, EventStream};
use podlog_protocol::{Event, LogView};
use podlog_store::{Store, Synchronous};

use crate::child::{self, Role};
use crate::server_support::{scripted_pod, serve_tcp, Bench};

/// Applies events from `stream` to `view` until it holds seq `until`.
async fn read_until(stream: &mut EventStream, view: &mut LogView, until: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while view.last_seq().get() < until {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("the stream stalled at seq {}", view.last_seq()))
            .unwrap()
            .expect("the stream ended");
        let Some(event) = message.pod_event() else {
            continue;
        };
        let event = event.unwrap();
        assert!(
            !matches!(
                event,
                Event::TextDelta { .. } | Event::ToolCallStart { .. } | Event::RunStarted { .. }
            ),
            "a followed session has no ephemeral events: {event:?}"
        );
        view.apply(&event).unwrap();
    }
}

/// The follow's view equals the store's session, lean as the wire carries it.
fn assert_same(store: &Store, view: &LogView, session: &SessionId) {
    let stored = store
        .previews_after(session, Seq::ZERO, usize::MAX)
        .unwrap();
    assert_eq!(view.current(), Some(session));
    let held = view.current_entries();
    assert_eq!(held.len(), stored.len(), "entries held");
    for (a, b) in held.iter().zip(&stored) {
        assert_eq!(a, b, "seq {}", b.seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_another_process_writes_streams_live_and_resumes_by_id() {
    if child::play_if_child() {
        return;
    }
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;

    let mut writer = child::command(
        "follow::a_session_another_process_writes_streams_live_and_resumes_by_id",
        &bench.db,
        &Role::AppendLoop {
            synchronous: Synchronous::Normal,
            session: None,
        },
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("start the writer");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = writer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut session = None;
    let mut published = 0u64;
    // Reads the writer's lines until it has published seq `seq`.
    let mut wait_published = |seq: u64, session: &mut Option<SessionId>| {
        while published < seq {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("the writer goes on");
            if let Some(id) = line.strip_prefix("session ") {
                *session = Some(SessionId::new(id).unwrap());
            } else if let Some(seq) = line.strip_prefix("published ") {
                published = seq.parse().unwrap();
            }
        }
        published
    };
    wait_published(20, &mut session);
    let id = session.clone().expect("the writer named its session");
    let client: &Client = &client;
    let path = format!("/sessions/{id}/events");

    // Attach while the other process writes: tail-first, then live.
    let mut stream = client.events_at(&path, None).await.unwrap();
    let mut view = LogView::new();
    let target = wait_published(200, &mut session);
    read_until(&mut stream, &mut view, target).await;
    let last_id = stream.last_id().unwrap().to_owned();
    assert_eq!(last_id, format!("{id}:{}", view.last_seq()));
    drop(stream);

    // Resume by id after a disconnect: what was missed, nothing twice.
    let target = wait_published(target + 300, &mut session);
    let mut stream = client.events_at(&path, Some(&last_id)).await.unwrap();
    read_until(&mut stream, &mut view, target).await;

    writer.kill().unwrap();
    writer.wait().unwrap();
    reader.join().unwrap();
    let end = bench.store.session(&id).unwrap().last_seq.get();
    read_until(&mut stream, &mut view, end).await;
    // The view held only a tail at first; page back to seq 1 and compare.
    while let Some(first) = view.first_seq(&id).filter(|s| s.get() > 1) {
        let page = bench.store.previews_before(&id, first, 100).unwrap();
        view.prepend(&id, &page).unwrap();
    }
    assert_same(&bench.store, &view, &id);
    drop(stream);

    let unknown = client.events_at("/sessions/nope/events", None).await;
    let message = unknown.unwrap_err().to_string();
    assert!(
        message.contains("404") && message.contains("nope"),
        "{message}"
    );
    server.shutdown().await.unwrap();
}

/// `podlog tail SESSION` follows a session that no pod of the server
/// writes: here another connection on the same file, as another process.
#[test]
fn tail_follows_a_session_by_its_id() {
    use podlog_entry::{LogEntry, SystemItem};
    use podlog_sink::SessionLogSink;
    use podlog_store::NewSession;
    use std::process::Command;

    use crate::server_cli::{Guard, Lines};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, _client) = runtime.block_on(serve_tcp(&bench.store, &pod));
    let url = format!("http://{}", server.local_addr().unwrap());

    // Default options: ids of its own kind, as another process would have.
    let other =
        std::sync::Arc::new(Store::open(&bench.db, podlog_store::StoreOptions::default()).unwrap());
    let (id, start) = other.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut writer = other.session_writer(&id).unwrap();
    let note = |text: String| LogEntry::SystemItem {
        ts: 1,
        item: SystemItem::Notification {
            message: text.clone(),
            body: text,
        },
    };
    writer.append(note("written before".into()), &sink).unwrap();

    let mut tail = Guard(
        Command::new(env!("CARGO_BIN_EXE_podlog"))
            .args(["tail", id.as_str(), "--url", &url])
            .env_remove("PODLOG_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run podlog tail"),
    );
    let mut out = Lines::of(tail.0.stdout.take().expect("stdout"));
    out.until("the entry written before", Duration::from_secs(30), |l| {
        l.contains("written before")
    });
    writer.append(note("written live".into()), &sink).unwrap();
    out.until("the entry written live", Duration::from_secs(10), |l| {
        l.contains("written live")
    });
    drop(tail);
    runtime.block_on(server.shutdown()).unwrap();
}
