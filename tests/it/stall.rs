//! Guards against one held SQLite write lock stalling the whole server.
//!
//! Another connection (a user's `sqlite3` shell, a backup tool) holds the
//! database's write lock for seconds while a pod is committing. The pod's
//! commit waits in SQLite's busy timeout, holding the pod's commit lock;
//! nothing an async worker does may wait for that lock. So, meanwhile, on a
//! runtime with two workers (as on a 2-core machine): `GET /pods`, `GET
//! /pods/{pod}`, `GET /sessions` and another pod's event stream answer at
//! once, and dropping a pod whose driver is stuck in such a commit returns
//! at once. When the lock is released the commit completes, and what the
//! client saw is exactly what the store holds.
//!
//! The bound asserted is the target, p99 at most 50 ms, met with a wide
//! margin even while the rest of the suite shares the two cores (p99 about
//! 5 ms here); the stall it guards against lasts the whole 3 s.
//! `docs/reliability.md` reports the latencies measured.

use std::time::{Duration, Instant};

use hyper::Method;
use podlog_pod::{Pod, ScriptedDriver};
use podlog_protocol::client::Client;
use podlog_protocol::{Event, LogView};
use podlog_server::{PodRegistry, Server};
use podlog_store::NewSession;

use crate::server_support::{check_view, scripted_pod, tcp_config, wait_idle, Bench};

/// How long the other connection holds the write lock.
const HOLD: Duration = Duration::from_secs(3);

/// Holds SQLite's write lock on `db` from a connection of its own until
/// `release` is dropped or sent to.
fn hold_write_lock(
    db: &std::path::Path,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let conn = rusqlite::Connection::open(db).expect("open a second connection");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = wait.recv();
        conn.execute_batch("COMMIT")
            .expect("release the write lock");
    });
    (release, holder)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn a_held_write_lock_stalls_only_the_commit_that_waits_for_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bench = Bench::new();
    let busy = scripted_pod(&bench.store);
    let idle = scripted_pod(&bench.store);
    let pods = PodRegistry::new();
    pods.insert("busy", busy.clone()).unwrap();
    pods.insert("idle", idle.clone()).unwrap();
    let server = rt
        .block_on(Server::start(tcp_config(), bench.store.clone(), pods))
        .expect("start server");
    let client = Client::new(
        podlog_protocol::client::Endpoint::Tcp(server.local_addr().unwrap().to_string()),
        None,
    );
    // A third pod, mid-run when the lock is taken: its driver's next commit
    // waits for the lock, and the last clone of the pod is then dropped on a
    // runtime worker.
    let doomed = Pod::create(
        bench.store.clone(),
        NewSession::default(),
        Box::new(ScriptedDriver::demo().with_delta_delay(Duration::from_millis(20))),
    )
    .expect("create pod");
    let doomed_id = doomed.session_id();
    doomed
        .submit_input("keep going".to_owned())
        .expect("submit");

    rt.block_on(async {
        let mut watched = client.events("busy", None).await.expect("attach");
        let mut view = LogView::new();
        let first = watched.next().await.unwrap().unwrap();
        view.apply(&first.pod_event().unwrap().unwrap()).unwrap();

        let (release, holder) = hold_write_lock(&bench.db);
        let held_at = Instant::now();
        // The input's commit now waits for the lock, inside the pod.
        let input = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .post_json("/pods/busy/input", &serde_json::json!({"text": "hi"}))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut latencies = Vec::new();
        let mut dropped_in = None;
        let mut doomed = Some(doomed);
        while held_at.elapsed() < HOLD - Duration::from_millis(300) {
            for path in ["/pods", "/pods/busy", "/sessions"] {
                let started = Instant::now();
                let answer = client
                    .request(Method::GET, path, &[], Vec::new())
                    .await
                    .expect("request");
                latencies.push(started.elapsed());
                assert!(answer.status.is_success(), "{path}: {}", answer.status);
            }
            let started = Instant::now();
            let mut stream = client.events("idle", None).await.expect("attach idle");
            let snapshot = stream.next().await.unwrap().unwrap();
            latencies.push(started.elapsed());
            assert_eq!(snapshot.event, "snapshot");
            // Dropping the last clone of a pod whose driver waits for the
            // lock, on a runtime worker.
            if let Some(pod) = doomed.take() {
                let started = Instant::now();
                drop(pod);
                dropped_in = Some(started.elapsed());
            }
        }
        let still_held = held_at.elapsed() < HOLD;
        drop(release);
        holder.join().unwrap();

        latencies.sort();
        let (p50, p99, max) = (
            percentile(&latencies, 50),
            percentile(&latencies, 99),
            latencies[latencies.len() - 1],
        );
        eprintln!(
            "while the write lock was held: {} requests, p50 {p50:?}, p99 {p99:?}, max {max:?}; \
             dropping a stuck pod took {dropped_in:?}",
            latencies.len()
        );
        assert!(still_held, "the lock was held throughout the measurements");
        assert!(
            latencies.len() >= 20,
            "only {} requests answered",
            latencies.len()
        );
        assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
        assert!(max < Duration::from_secs(1), "max {max:?}");
        assert!(
            dropped_in.unwrap() < Duration::from_millis(250),
            "dropping the pod took {dropped_in:?}"
        );

        // Released: the input's commit completes, the run goes on, and the
        // client's view is exactly the store's.
        let answer = input.await.unwrap().expect("the input was accepted");
        assert_eq!(answer["session_id"], busy.session_id().as_str());
        wait_idle(&busy).await;
        let end = busy.end_seq();
        while view.last_seq() < end {
            let message = watched.next().await.unwrap().unwrap();
            let event = message.pod_event().unwrap().unwrap();
            view.apply(&event).unwrap();
            if let Event::RunErrored { message, .. } = &event {
                panic!("the run failed: {message}");
            }
        }
        check_view(&bench.store, &view, &busy.session_id()).unwrap();

        // The dropped pod finished its shutdown once the lock was free: its
        // run, interrupted, is closed, and its session lock released.
        let deadline = Instant::now() + Duration::from_secs(10);
        let writer = loop {
            match bench.store.session_writer(&doomed_id) {
                Ok(writer) => break writer,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("the dropped pod kept its lock: {e}"),
            }
        };
        drop(writer);
        let entries = bench.store.entries(&doomed_id).unwrap();
        let last = entries.last().unwrap();
        assert!(
            matches!(
                &*last.entry,
                podlog_entry::LogEntry::RunErrored {
                    kind: podlog_entry::RunErrorKind::Interrupted,
                    ..
                }
            ),
            "{:?}",
            last.entry
        );
    });
    rt.block_on(server.shutdown()).unwrap();
}
