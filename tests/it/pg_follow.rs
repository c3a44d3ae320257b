//! Cross-host follow on PostgreSQL: two `podlog serve` processes on one
//! schema, A writing the demo session and B with no pod of its own. Guards
//! against a server that cannot stream a session another host writes, that
//! streams it late or with other event ids than the writer's server, and a
//! client that moves from one server to the other by `Last-Event-ID` and
//! loses or repeats an entry on the way.

use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{Seq, SessionId};
use podlog_store::Store;

use crate::pg_support::{runtime, PgSchema, Read, Served, Taken};

/// The last seq of `session` once the demo has compacted it (a session
/// that continues it exists, so it takes no more entries), else `None`.
async fn final_seq(store: &std::sync::Arc<Store>, session: &SessionId) -> Option<u64> {
    let store = store.clone();
    let session = session.clone();
    tokio::task::spawn_blocking(move || {
        let moved = !store.descendants(&session).ok()?.is_empty();
        moved.then(|| store.session(&session).ok().map(|s| s.last_seq.get()))?
    })
    .await
    .ok()?
}

/// Reads until the view holds the session's final seq.
async fn read_to_end(
    taken: &mut Taken,
    stream: &mut podlog_protocol::client::EventStream,
    store: &std::sync::Arc<Store>,
    session: &SessionId,
) {
    let mut end = None;
    let mut polls = 0u32;
    loop {
        if end.is_none() {
            end = final_seq(store, session).await;
        }
        if let Some(end) = end {
            if taken.view.last_seq().get() >= end {
                assert_eq!(taken.view.last_seq().get(), end);
                return;
            }
        }
        polls += 1;
        assert!(
            polls < 600,
            "session {session} did not end within a minute; at seq {}",
            taken.view.last_seq()
        );
        let read = taken
            .read(stream, Duration::from_millis(100), |t| {
                end.is_some_and(|e| t.view.last_seq().get() >= e)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            read,
            Read::Ended,
            "the stream ended at seq {}",
            taken.view.last_seq()
        );
    }
}

/// Two serve processes on one schema: A writes a demo session, B serves
/// the same database and nothing of its own.
struct Two {
    schema: PgSchema,
    a: Served,
    b: Served,
    session: SessionId,
    store: Arc<Store>,
    /// The session's event stream, from its start.
    path: String,
}

impl Two {
    fn start() -> Self {
        let schema = PgSchema::new();
        let a = Served::start(&schema.url, &["--demo", "--demo-pace-ms", "10"]);
        let b = Served::start(&schema.url, &[]);
        let session = a.demo_session.clone().expect("demo session");
        let store = schema.store();
        let path = format!("/sessions/{session}/events?tail=all");
        Two {
            schema,
            a,
            b,
            session,
            store,
            path,
        }
    }
}

#[test]
fn a_second_server_streams_another_hosts_session_live_with_the_same_ids() {
    let Two {
        schema: _schema,
        a,
        b,
        session,
        store,
        path,
    } = Two::start();

    // One client on B from the start, one on A: both read the whole
    // session live while A writes it.
    let (from_b, from_a) = runtime().block_on(async {
        tokio::join!(
            async {
                let mut stream = b.client().events_at(&path, None).await.unwrap();
                let mut taken = Taken::default();
                read_to_end(&mut taken, &mut stream, &store, &session).await;
                taken
            },
            async {
                let mut stream = a.client().events_at(&path, None).await.unwrap();
                let mut taken = Taken::default();
                read_to_end(&mut taken, &mut stream, &store, &session).await;
                taken
            }
        )
    });
    let end = store.session(&session).unwrap().last_seq.get();
    assert!(end > 10, "a session of {end} entries proves little");
    let all: Vec<u64> = (1..=end).collect();
    assert_eq!(from_b.seq_list(), all, "B: every entry once, in order");
    assert_eq!(from_a.seq_list(), all, "A: every entry once, in order");
    // Live events carry `SESSION:SEQ`, the same on both servers (a
    // snapshot's entries share the snapshot's id).
    let live = |t: &Taken| -> Vec<(u64, String)> {
        let snapshot_end = t.seqs.first().map(|(_, id)| id.clone());
        t.seqs
            .iter()
            .filter(|(_, id)| Some(id) != snapshot_end.as_ref())
            .cloned()
            .collect()
    };
    let live_b = live(&from_b);
    assert!(!live_b.is_empty(), "B streamed nothing live");
    for (seq, id) in &live_b {
        assert_eq!(id, &format!("{session}:{seq}"));
    }
    for (seq, id) in live(&from_a) {
        assert_eq!(id, format!("{session}:{seq}"));
    }
    let stored = store
        .previews_after(&session, Seq::ZERO, usize::MAX)
        .unwrap();
    assert_eq!(from_b.view.entries(&session), &stored[..], "B's entries");
    assert_eq!(from_a.view.entries(&session), &stored[..], "A's entries");
}

#[test]
fn a_client_moves_from_the_writers_server_to_another_by_last_event_id() {
    let Two {
        schema: _schema,
        a,
        b,
        session,
        store,
        path,
    } = Two::start();

    // Part of the stream from A, while A writes.
    let mut taken = Taken::default();
    let runtime = runtime();
    let moved = runtime.block_on(async {
        let mut stream = a.client().events_at(&path, None).await.unwrap();
        taken
            .read(&mut stream, Duration::from_secs(30), |t| {
                t.view.last_seq().get() >= 12
            })
            .await
            .unwrap();
        let last_id = stream.last_id().expect("an event id").to_owned();
        assert_eq!(last_id, format!("{session}:{}", taken.view.last_seq()));
        drop(stream);
        let moved_at = taken.view.last_seq().get();

        // The rest from B, resuming by id.
        let mut stream = b.client().events_at(&path, Some(&last_id)).await.unwrap();
        read_to_end(&mut taken, &mut stream, &store, &session).await;
        drop(stream);
        moved_at
    });
    let moved_at = moved;
    let end = store.session(&session).unwrap().last_seq.get();
    assert!(end > moved_at, "the move happened after the session ended");
    assert_eq!(
        taken.seq_list(),
        (1..=end).collect::<Vec<_>>(),
        "nothing lost, nothing repeated across the move at seq {moved_at}"
    );
    let stored = store
        .previews_after(&session, Seq::ZERO, usize::MAX)
        .unwrap();
    assert_eq!(taken.view.entries(&session), &stored[..]);
}
