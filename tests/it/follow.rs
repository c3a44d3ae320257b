//! Following a session that another process writes, through
//! `GET /sessions/{id}/events`: the stream carries every committed entry
//! once, in order, resumes by event id after a disconnect, and ends equal to
//! the store.

use std::time::{Duration, Instant};

use podlog_entry::{Seq, SessionId};
use podlog_protocol::client::{Client, EventStream};
use podlog_protocol::{Event, LogView};
use podlog_store::Store;

use crate::child;
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

    let mut writer = child::Appender::start(
        "follow::a_session_another_process_writes_streams_live_and_resumes_by_id",
        &bench.db,
    );
    writer.published(20);
    let id = writer.session().clone();
    let client: &Client = &client;
    let path = format!("/sessions/{id}/events");

    // Attach while the other process writes: tail-first, then live.
    let mut stream = client.events_at(&path, None).await.unwrap();
    let mut view = LogView::new();
    let target = writer.published(200);
    read_until(&mut stream, &mut view, target).await;
    let last_id = stream.last_id().unwrap().to_owned();
    assert_eq!(last_id, format!("{id}:{}", view.last_seq()));
    drop(stream);

    // Resume by id after a disconnect: what was missed, nothing twice.
    let target = writer.published(target + 300);
    let mut stream = client.events_at(&path, Some(&last_id)).await.unwrap();
    read_until(&mut stream, &mut view, target).await;

    writer.stop();
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

    use crate::server_cli::podlog_tail;

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

    let (tail, mut out) = podlog_tail(&url, id.as_str(), &[]);
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
