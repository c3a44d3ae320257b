//! The server end to end, with real HTTP clients over TCP and a Unix socket:
//! clients that attach at random moments during a scripted run with
//! compactions and forks, and drop and resume at random, each rebuild
//! exactly the store's log (no gap, no duplicate); a slow client lags and
//! catches up on the same connection; a server restart in the middle is
//! bridged by resuming with the last event id. Guards against a resume that
//! re-sends or skips entries, a lag that drops a client's place, and a
//! shutdown that loses what clients were told.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{Committed, LogEntry, Seq};
use podlog_pod::Pod;
use podlog_protocol::client::Client;
use podlog_protocol::{Event, LogView};
use podlog_server::{ServerConfig, ServerError};
use serde_json::json;
use tokio::sync::watch;

use crate::server_support::{
    check_view, open_store, quick_http, scripted_pod, serve, serve_tcp, tcp_config, wait_idle,
    watch_pod, Behaviour, Bench, Rng, Target,
};

/// The test's writer: user inputs, compactions and forks through the HTTP
/// API, in an order drawn from `rng`.
async fn drive(client: &Client, pod: &Pod, rng: &mut Rng, steps: usize) -> (u64, u64) {
    let (mut compactions, mut forks) = (0, 0);
    for step in 0..steps {
        wait_idle(pod).await;
        let roll = rng.below(10);
        if step > 0 && roll == 0 {
            let answer = client.post_json("/pods/p/compact", &json!({})).await;
            answer.expect("compact");
            compactions += 1;
        } else if step > 0 && roll == 1 {
            let end = pod.end_seq().get();
            let at = 1 + rng.below(end);
            // A cut between a tool call and its result is refused (400);
            // any other cut makes a new session.
            match client.post_json("/pods/p/fork", &json!({ "at": at })).await {
                Ok(_) => forks += 1,
                Err(podlog_protocol::client::ClientError::Status { status, message }) => {
                    assert_eq!(status.as_u16(), 400, "fork at {at}: {message}");
                    assert!(message.contains("cannot cut"), "{message}");
                }
                Err(e) => panic!("fork at {at}: {e}"),
            }
        } else {
            let body = json!({ "text": format!("step {step}") });
            client
                .post_json("/pods/p/input", &body)
                .await
                .expect("input");
        }
        if rng.percent(50) {
            tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        }
    }
    wait_idle(pod).await;
    (compactions, forks)
}

/// One random run: a writer and `clients` watchers that attach at random
/// moments and drop and resume at random.
async fn random_run(seed: u64, clients: usize, steps: usize) -> (u64, u64, u64) {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let (target_tx, target_rx) = watch::channel::<Target>(None);
    let mut rng = Rng::new(seed);
    let mut watchers = Vec::new();
    for i in 0..clients {
        let client = client.clone();
        let mut crng = Rng::new(seed * 1000 + i as u64);
        let target = target_rx.clone();
        let delay = Duration::from_millis(crng.below(120));
        let behaviour = Behaviour {
            disconnect_percent: [0, 2, 5, 15][i % 4],
            use_query_sometimes: i % 2 == 1,
        };
        watchers.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            watch_pod(client, crng, behaviour, target).await
        }));
    }
    let (compactions, forks) = drive(&client, &pod, &mut rng, steps).await;
    let last = pod.session_id();
    target_tx.send_replace(Some((last.clone(), pod.end_seq())));
    let mut resumes = 0;
    for (i, w) in watchers.into_iter().enumerate() {
        let watched = w
            .await
            .expect("watcher task")
            .unwrap_or_else(|e| panic!("seed {seed} client {i}: {e}"));
        check_view(&bench.store, &watched.view, &last)
            .unwrap_or_else(|e| panic!("seed {seed} client {i}: {e}"));
        assert!(watched.connections >= 1);
        resumes += watched.resumes;
    }
    server.shutdown().await.expect("shutdown");
    (compactions, forks, resumes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_attaching_and_resuming_at_random_rebuild_exactly_the_stored_log() {
    let (mut compactions, mut forks, mut resumes) = (0, 0, 0);
    for seed in 1..=24 {
        let (c, f, r) = random_run(seed, 6, 14).await;
        compactions += c;
        forks += f;
        resumes += r;
    }
    // The runs must have exercised what they claim to.
    assert!(compactions > 0, "no compaction in any run");
    assert!(forks > 0, "no fork in any run");
    assert!(resumes > 20, "only {resumes} resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_server_is_private_serves_the_same_log_and_is_removed_on_shutdown() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let socket = bench.dir.path().join("podlog.sock");
    let config = ServerConfig {
        unix: Some(socket.clone()),
        http: quick_http(),
        ..ServerConfig::default()
    };
    let (server, client) = serve(&bench.store, &pod, config.clone()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    // A second server on the same live path is refused, and the first keeps
    // its socket.
    let pods = podlog_server::PodRegistry::new();
    let second = podlog_server::Server::start(config.clone(), bench.store.clone(), pods).await;
    assert!(
        matches!(second, Err(ServerError::SocketInUse(_))),
        "{second:?}"
    );

    let (tx, rx) = watch::channel::<Target>(None);
    let behaviour = Behaviour {
        disconnect_percent: 5,
        use_query_sometimes: true,
    };
    let watcher = tokio::spawn(watch_pod(client.clone(), Rng::new(7), behaviour, rx));
    let mut rng = Rng::new(11);
    drive(&client, &pod, &mut rng, 6).await;
    tx.send_replace(Some((pod.session_id(), pod.end_seq())));
    let watched = watcher.await.unwrap().unwrap();
    check_view(&bench.store, &watched.view, &pod.session_id()).unwrap();

    // Heartbeats keep an idle stream visibly alive.
    let mut stream = client.events("p", None).await.unwrap();
    stream.next().await.unwrap().expect("snapshot");
    let idle = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
    assert!(idle.is_err(), "no event expected on an idle pod");
    assert!(
        stream.heartbeats() >= 2,
        "{} heartbeats",
        stream.heartbeats()
    );
    drop(stream);

    server.shutdown().await.unwrap();
    assert!(!socket.exists(), "the socket file outlived the server");

    // A stale socket file (its server gone) is replaced, not refused.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    assert!(socket.exists());
    let pod2 = Pod::restore(
        bench.store.clone(),
        &pod.session_id(),
        Box::new(podlog_pod::ScriptedDriver::demo()),
    );
    // The first pod was shut down with the server, so its lock is free.
    let pod2 = pod2.expect("restore after shutdown");
    let (server, client) = serve(&bench.store, &pod2, config).await;
    let pods = client.get_json("/pods").await.unwrap();
    assert_eq!(pods["pods"][0]["session_id"], json!(pod2.session_id()));
    server.shutdown().await.unwrap();

    // A path that is not a socket is never replaced.
    std::fs::write(&socket, "precious").unwrap();
    let pods = podlog_server::PodRegistry::new();
    let refused = podlog_server::Server::start(
        ServerConfig {
            unix: Some(socket.clone()),
            ..ServerConfig::default()
        },
        bench.store.clone(),
        pods,
    )
    .await;
    assert!(
        matches!(refused, Err(ServerError::NotASocket(_))),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_lags_and_catches_up_on_the_same_connection() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let mut slow = client.events("p", None).await.unwrap();
    let mut view = LogView::new();
    let first = slow.next().await.unwrap().unwrap();
    view.apply(&first.pod_event().unwrap().unwrap()).unwrap();

    // While the slow client reads nothing, commit far more than the pod's
    // channel holds, with bodies large enough to fill the socket buffers,
    // and stream text deltas in between. (Below the out-of-line threshold:
    // a lean entry carries only a preview, and would not fill them.)
    let body = "x".repeat(podlog_entry::payload::THRESHOLD - 64);
    let writer = {
        let pod = pod.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..3000u64 {
                pod.commit(LogEntry::Extension {
                    ts: i,
                    name: "filler".to_owned(),
                    data: json!({ "i": i, "pad": body }),
                })
                .expect("commit");
                if i % 3 == 0 {
                    pod.stream(podlog_protocol::Event::TextDelta {
                        after: Seq::ZERO,
                        text: format!("delta {i} "),
                    });
                }
            }
        })
    };
    writer.await.unwrap();
    let end = pod.end_seq();

    // Now read: the stream caught up and carries on with no gap or
    // duplicate, on the same connection.
    let connections_before = server.stats().connections;
    let mut deltas = 0;
    while view.last_seq() < end {
        let message = tokio::time::timeout(Duration::from_secs(20), slow.next())
            .await
            .expect("the slow client's stream stalled")
            .unwrap()
            .expect("the stream ended");
        let event = message.pod_event().expect("no control message").unwrap();
        if matches!(event, podlog_protocol::Event::TextDelta { .. }) {
            deltas += 1;
        }
        view.apply(&event).unwrap();
    }
    let stats = server.stats();
    assert!(
        stats.lag_catch_ups >= 1,
        "the client never lagged: {stats:?}"
    );
    assert_eq!(stats.connections, connections_before);
    assert!(deltas < 1000, "every delta arrived: the client did not lag");
    check_view(&bench.store, &view, &pod.session_id()).unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_in_the_middle_is_bridged_by_the_last_event_id() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let addr = server.local_addr().unwrap();
    let mut view = LogView::new();
    let mut stream = client.events("p", None).await.unwrap();
    let mut rng = Rng::new(3);
    drive(&client, &pod, &mut rng, 3).await;
    let session = pod.session_id();

    // Shut the server down while the client is attached: it gets every
    // committed event, then `shutdown`, then the end of the stream.
    let shutdown = tokio::spawn(server.shutdown());
    let mut got_shutdown = false;
    while let Some(message) = stream.next().await.unwrap() {
        match message.pod_event() {
            Some(event) => view.apply(&event.unwrap()).unwrap(),
            None => {
                assert_eq!(message.event, "shutdown");
                got_shutdown = true;
            }
        }
    }
    shutdown.await.unwrap().unwrap();
    assert!(got_shutdown, "the stream ended without a shutdown message");
    assert_eq!(
        view.last_seq(),
        bench.store.session(&session).unwrap().last_seq
    );
    let last_id = stream.last_id().unwrap().to_owned();
    assert_eq!(last_id, format!("{session}:{}", view.last_seq()));
    drop(stream);
    drop(pod);

    // A new server process on the same database (a fresh store handle),
    // the pod restored, the same address.
    let store = Arc::new(open_store(&bench.db));
    let pod = Pod::restore(
        store.clone(),
        &session,
        Box::new(podlog_pod::ScriptedDriver::demo().starting_at(3)),
    )
    .unwrap();
    let config = ServerConfig {
        listen: Some(addr),
        ..tcp_config()
    };
    let (server, _) = serve(&store, &pod, config).await;
    let mut stream = client.events("p", Some(&last_id)).await.unwrap();
    drive(&client, &pod, &mut rng, 3).await;
    let end = pod.end_seq();
    while view.last_seq() < end {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        view.apply(&message.pod_event().unwrap().unwrap()).unwrap();
    }
    check_view(&store, &view, &pod.session_id()).unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_sessions_and_entries_are_paged_by_seq() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let mut rng = Rng::new(5);
    drive(&client, &pod, &mut rng, 2).await;
    let session = pod.session_id();
    let stored = bench.store.entries(&session).unwrap();

    let mut after = 0u64;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = client
            .get_json(&format!(
                "/sessions/{session}/entries?after={after}&limit=7"
            ))
            .await
            .unwrap();
        pages += 1;
        for e in page["entries"].as_array().unwrap() {
            got.push((e["seq"].as_u64().unwrap(), e["entry"].clone()));
        }
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(pages, stored.len().div_ceil(7));
    let want: Vec<_> = stored
        .iter()
        .map(|c| (c.seq.get(), serde_json::to_value(&*c.entry).unwrap()))
        .collect();
    assert_eq!(got, want);

    // Back from the end, as a client holding the tail does.
    let mut before = stored.len() as u64 + 1;
    let mut back = Vec::new();
    loop {
        let page = client
            .get_json(&format!(
                "/sessions/{session}/entries?before={before}&limit=5"
            ))
            .await
            .unwrap();
        let mut entries: Vec<_> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["entry"].clone()))
            .collect();
        assert!(entries.len() <= 5 && !entries.is_empty());
        assert_eq!(entries.last().unwrap().0, before - 1, "the page ends below");
        entries.extend(back);
        back = entries;
        match page["prev_before"].as_u64() {
            Some(prev) => before = prev,
            None => break,
        }
    }
    assert_eq!(back, want);
    let nothing = client
        .get_json(&format!("/sessions/{session}/entries?before=1"))
        .await
        .unwrap();
    assert_eq!(nothing["entries"], json!([]));
    let both = client
        .get_json(&format!("/sessions/{session}/entries?before=3&after=1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(both.contains("400") && both.contains("not both"), "{both}");

    let sessions = client.get_json("/sessions").await.unwrap();
    let first = &sessions["sessions"][0];
    assert_eq!(first["id"], json!(session));
    assert_eq!(first["last_seq"], json!(stored.len()));
    let prefix = &session.as_str()[..session.as_str().len() - 1];
    let one = client.get_json(&format!("/sessions/{prefix}")).await;
    // A prefix resolves when it is unambiguous.
    assert_eq!(one.unwrap()["id"], json!(session));
    let pods = client.get_json("/pods/p").await.unwrap();
    assert_eq!(pods["end_seq"], json!(stored.len()));
    assert_eq!(pods["busy"], json!(false));
    assert_eq!(pods["lock_lost"], json!(false));
    server.shutdown().await.unwrap();
}

/// Ids of committed events are their seq, ids of ephemeral events their
/// `after`; the SSE event name is the event's type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_id_of_every_message_names_the_session_and_watermark() {
    {
        let bench = Bench::new();
        let pod = scripted_pod(&bench.store);
        let (server, client) = serve_tcp(&bench.store, &pod).await;
        let mut stream = client.events("p", None).await.unwrap();
        client
            .post_json("/pods/p/input", &json!({"text": "hi"}))
            .await
            .unwrap();
        let session = pod.session_id();
        let mut kinds = std::collections::BTreeSet::new();
        loop {
            let m = stream.next().await.unwrap().unwrap();
            let event = m.pod_event().unwrap().unwrap();
            assert_eq!(m.event, event.kind());
            assert_eq!(
                m.id.as_deref(),
                Some(format!("{session}:{}", event.watermark()).as_str())
            );
            kinds.insert(m.event.clone());
            if m.event == "run_completed" {
                break;
            }
        }
        for kind in [
            "snapshot",
            "user_message",
            "run_started",
            "tool_call_start",
            "assistant_item",
            "usage",
            "turn_end",
            "tool_result",
            "text_delta",
        ] {
            assert!(kinds.contains(kind), "no {kind} event in {kinds:?}");
        }
        server.shutdown().await.unwrap();
    }
}

/// A tail-first attach gets only the last entries, follows live, and pages
/// back to a view that is exactly the store's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_first_attach_follows_live_and_pages_back_to_the_whole_session() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    for run in 0..2 {
        let body = json!({ "text": format!("run {run}") });
        client.post_json("/pods/p/input", &body).await.unwrap();
        wait_idle(&pod).await;
    }
    let session = pod.session_id();
    let end = pod.end_seq().get();
    assert!(end > 10, "a session longer than the tail ({end})");

    let mut stream = client
        .events_at("/pods/p/events?tail=4", None)
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let snapshot = first.pod_event().unwrap().unwrap();
    let Event::Snapshot {
        entries, end_seq, ..
    } = &snapshot
    else {
        panic!("{snapshot:?}")
    };
    let seqs: Vec<u64> = entries.iter().map(|w| w.seq.get()).collect();
    assert_eq!(seqs, (end - 3..=end).collect::<Vec<_>>());
    assert_eq!(end_seq.get(), end);
    let mut view = LogView::new();
    view.apply(&snapshot).unwrap();

    // Live events continue the tail.
    let body = json!({ "text": "more" });
    client.post_json("/pods/p/input", &body).await.unwrap();
    wait_idle(&pod).await;
    let now = pod.end_seq();
    while view.last_seq() < now {
        let message = stream.next().await.unwrap().unwrap();
        view.apply(&message.pod_event().unwrap().unwrap()).unwrap();
    }

    // Paging back from the first seq held reaches seq 1.
    while let Some(first) = view.first_seq(&session).filter(|s| s.get() > 1) {
        let page = client
            .get_json(&format!(
                "/sessions/{session}/entries?before={first}&limit=3"
            ))
            .await
            .unwrap();
        let page: Vec<Committed> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                Committed::new(
                    Seq(e["seq"].as_u64().unwrap()),
                    serde_json::from_value(e["entry"].clone()).unwrap(),
                )
            })
            .collect();
        view.prepend(&session, &page).unwrap();
    }
    check_view(&bench.store, &view, &session).unwrap();

    let zero = client.events_at("/pods/p/events?tail=0", None).await;
    let message = zero.unwrap_err().to_string();
    assert!(
        message.contains("400") && message.contains("tail=0"),
        "{message}"
    );
    let word = client.events_at("/pods/p/events?tail=most", None).await;
    let message = word.unwrap_err().to_string();
    assert!(
        message.contains("400") && message.contains("\"most\""),
        "{message}"
    );
    drop(stream);
    server.shutdown().await.unwrap();
}

/// The first event of a fresh attach to pod `p` at `path`: the snapshot's
/// seqs and end.
async fn first_snapshot(client: &podlog_protocol::client::Client, path: &str) -> (Vec<u64>, u64) {
    let mut stream = client.events_at(path, None).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    match first.pod_event().unwrap().unwrap() {
        Event::Snapshot {
            entries, end_seq, ..
        } => (entries.iter().map(|w| w.seq.get()).collect(), end_seq.get()),
        other => panic!("{other:?}"),
    }
}

/// With no `tail`, an attach starts tail-first, so its cost does not grow
/// with the session; `tail=all` asks for the whole session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_attach_is_tail_first_and_tail_all_is_the_whole_session() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let extra = podlog_server::DEFAULT_TAIL as u64 + 50;
    for n in 0..extra {
        pod.commit(LogEntry::TurnEnd {
            ts: n,
            turn_count: n,
        })
        .unwrap();
    }
    let end = pod.end_seq().get();
    let (seqs, end_seq) = first_snapshot(&client, "/pods/p/events").await;
    assert_eq!(end_seq, end);
    let tail = podlog_server::DEFAULT_TAIL as u64;
    assert_eq!(seqs, (end - tail + 1..=end).collect::<Vec<_>>());
    let (seqs, end_seq) = first_snapshot(&client, "/pods/p/events?tail=all").await;
    assert_eq!(end_seq, end);
    assert_eq!(seqs, (1..=end).collect::<Vec<_>>());
    server.shutdown().await.unwrap();
}
