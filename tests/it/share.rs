//! Read-only share links end to end: a share token reads its session (info,
//! entries, events, payloads) on a listener that otherwise needs the
//! server's token, and nothing else; an expired or revoked token is `401`;
//! revoking, even from another process, ends an open stream at once; and
//! `podlog share`, `--list` and `--revoke` through the real binary. Guards
//! against a link that writes, lists or reads other sessions, a revocation
//! that waits for the client to reconnect, and a token kept in clear.

use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::Method;
use podlog_entry::{LogEntry, Seq};
use podlog_protocol::client::{Answer, Client, ClientError};
use podlog_protocol::Event;
use podlog_server::auth::{Token, TokenSource};
use podlog_store::{ShareCheck, ShareState, Store};
use serde_json::{json, Value};

use crate::server_support::{commit, open_store, scripted_pod, serve, tcp_config, Bench};
use crate::support::{podlog, Run, TempDb};

const SERVER_TOKEN: &str = "the-servers-own-token";

/// A tool output long enough to be stored as a payload, marked with `tag`.
fn big(tag: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts: 1_700_000_000_000,
        call_id: format!("call-{tag}"),
        output: format!("{tag}\n").repeat(4000),
        is_error: false,
    }
}

async fn send(client: &Client, method: Method, path: &str, body: &str) -> Answer {
    client
        .request(method, path, &[], Bytes::from(body.to_owned()))
        .await
        .unwrap()
}

async fn get(client: &Client, path: &str) -> Answer {
    send(client, Method::GET, path, "").await
}

fn error_of(answer: &Answer) -> String {
    answer.json().unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The hash of the payload of the entry at `seq` of `session`.
async fn payload_hash(client: &Client, session: &str, seq: Seq) -> String {
    let page: Value = client
        .get_json(&format!(
            "/sessions/{session}/entries?after={}&limit=1",
            seq.get() - 1
        ))
        .await
        .unwrap();
    page["entries"][0]["payloads"][0]["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn share(store: &std::sync::Arc<Store>, session: &str, expires: Option<Duration>) -> String {
    let store = store.clone();
    let session = session.to_owned();
    tokio::task::spawn_blocking(move || store.create_share(&session, expires))
        .await
        .unwrap()
        .unwrap()
        .1
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_token_reads_its_session_and_nothing_else_behind_a_token() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let other_pod = scripted_pod(&bench.store);
    let seq = commit(&pod, big("mine")).await;
    let other_seq = commit(&other_pod, big("theirs")).await;
    let mine = pod.session_id().to_string();
    let theirs = other_pod.session_id().to_string();
    let mut config = tcp_config();
    config.token = TokenSource::Given(Token::new(SERVER_TOKEN).unwrap());
    let (server, anonymous) = serve(&bench.store, &pod, config).await;
    let admin = Client::new(anonymous.endpoint().clone(), Some(SERVER_TOKEN.to_owned()));
    let my_blob = payload_hash(&admin, &mine, seq).await;
    let their_blob = payload_hash(&admin, &theirs, other_seq).await;
    let token = share(&bench.store, &mine, Some(Duration::from_secs(3600))).await;
    let shared = Client::new(anonymous.endpoint().clone(), Some(token.clone()));

    // Reads of its own session, by header and by query alike.
    let info = get(&shared, &format!("/sessions/{mine}")).await;
    assert_eq!(info.status, 200, "{}", error_of(&info));
    assert_eq!(info.json().unwrap()["id"], json!(mine));
    let page = get(
        &shared,
        &format!("/sessions/{mine}/entries?after=0&limit=2"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", error_of(&page));
    assert_eq!(page.json().unwrap()["entries"][0]["seq"], json!(1));
    assert!(
        !page.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public"),
        "an answer given for a share is never public"
    );
    let cached = get(
        &shared,
        &format!("/sessions/{mine}/entries?after=0&limit=1"),
    )
    .await;
    assert_eq!(cached.status, 200);
    assert_eq!(
        cached.headers["cache-control"].to_str().unwrap(),
        "private, max-age=31536000, immutable"
    );
    let by_query = get(
        &anonymous,
        &format!("/sessions/{mine}/entries?share={token}&limit=1"),
    )
    .await;
    assert_eq!(by_query.status, 200, "{}", error_of(&by_query));
    let blob = get(&shared, &format!("/blobs/{my_blob}")).await;
    assert_eq!(blob.status, 200, "{}", error_of(&blob));
    assert!(String::from_utf8_lossy(&blob.body).starts_with("mine\n"));
    assert!(blob.headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("private"));
    let by_query = get(&anonymous, &format!("/blobs/{my_blob}?share={token}")).await;
    assert_eq!(by_query.status, 200, "{}", error_of(&by_query));
    for client_path in [
        (&shared, format!("/sessions/{mine}/events?tail=3")),
        (
            &anonymous,
            format!("/sessions/{mine}/events?share={token}&tail=3"),
        ),
    ] {
        let (client, path) = client_path;
        let mut stream = client.events_at(&path, None).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        match first.pod_event().unwrap().unwrap() {
            Event::Snapshot {
                session_id,
                end_seq,
                ..
            } => {
                assert_eq!(session_id.as_str(), mine);
                assert_eq!(end_seq, seq);
            }
            other => panic!("not a snapshot: {other:?}"),
        }
    }

    // Everything else is forbidden.
    let prefix = &mine[..mine.len() - 2];
    for path in [
        format!("/sessions/{theirs}"),
        format!("/sessions/{theirs}/entries"),
        format!("/sessions/{theirs}/events"),
        format!("/sessions/{prefix}"),
        format!("/blobs/{their_blob}"),
        "/sessions".to_owned(),
        "/pods".to_owned(),
        "/pods/p".to_owned(),
        "/pods/p/events".to_owned(),
    ] {
        let refused = get(&shared, &path).await;
        assert_eq!(refused.status, 403, "GET {path}");
        assert!(!error_of(&refused).is_empty());
        let path = if path.contains('?') {
            format!("{path}&share={token}")
        } else {
            format!("{path}?share={token}")
        };
        assert_eq!(get(&anonymous, &path).await.status, 403, "GET {path}");
    }
    for (path, body) in [
        ("/pods/p/input", r#"{"text": "hello"}"#),
        ("/pods/p/compact", "{}"),
        ("/pods/p/fork", r#"{"at": 1}"#),
    ] {
        assert_eq!(
            send(&shared, Method::POST, path, body).await.status,
            403,
            "POST {path}"
        );
        let path = format!("{path}?share={token}");
        assert_eq!(
            send(&anonymous, Method::POST, &path, body).await.status,
            403,
            "POST {path}"
        );
    }
    assert_eq!(pod.end_seq(), seq, "nothing was written");

    // The viewer's files are code, not data: they load without any token,
    // so a page opened from a share link works behind a token.
    for path in ["/", "/assets/app.js", "/assets/api.js"] {
        assert_eq!(get(&anonymous, path).await.status, 200, "{path}");
    }
    // The bearer rule stays for everything else.
    assert_eq!(get(&anonymous, "/sessions").await.status, 401);
    assert_eq!(
        get(&anonymous, &format!("/sessions/{mine}")).await.status,
        401
    );
    let unknown = get(&anonymous, &format!("/sessions/{mine}?share=not-a-share")).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(get(&admin, "/sessions").await.status, 200);
    assert_eq!(
        get(&admin, &format!("/sessions/{theirs}/entries?share={token}"))
            .await
            .status,
        200,
        "the server's token grants everything, whatever share rides along"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_are_refused_on_every_listener() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let mine = pod.session_id().to_string();
    // The store's clock moves on every reading, so a share that expires
    // "now" has expired by the time it is checked.
    let expired = share(&bench.store, &mine, Some(Duration::ZERO)).await;
    let revoked = share(&bench.store, &mine, None).await;
    let id = match bench.store.check_share(&revoked).unwrap() {
        ShareCheck::Active(info) => info.id,
        other => panic!("{other:?}"),
    };
    bench.store.revoke_share(&id).unwrap();

    let mut guarded = tcp_config();
    guarded.token = TokenSource::Given(Token::new(SERVER_TOKEN).unwrap());
    for config in [guarded, tcp_config()] {
        let (server, anonymous) = serve(&bench.store, &pod, config).await;
        for (token, state) in [(&expired, "expired"), (&revoked, "revoked")] {
            let by_header = Client::new(anonymous.endpoint().clone(), Some(token.clone()));
            for path in [
                format!("/sessions/{mine}"),
                format!("/sessions/{mine}/events"),
            ] {
                let answer = get(&by_header, &path).await;
                assert_eq!(answer.status, 401, "{state} {path}");
                assert!(error_of(&answer).contains(state), "{}", error_of(&answer));
                let answer = get(&anonymous, &format!("{path}?share={token}")).await;
                assert_eq!(answer.status, 401, "{state} {path}");
            }
        }
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_share_from_another_process_ends_its_open_stream_at_once() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let mine = pod.session_id().to_string();
    let (server, client) = serve(&bench.store, &pod, tcp_config()).await;
    let doomed = share(&bench.store, &mine, None).await;
    let kept = share(&bench.store, &mine, None).await;
    let open = |token: String| {
        let client = client.clone();
        let path = format!("/sessions/{mine}/events?share={token}");
        async move {
            let mut stream = client.events_at(&path, None).await.unwrap();
            let first = stream.next().await.unwrap().unwrap();
            assert_eq!(first.event, "snapshot");
            stream
        }
    };
    let mut doomed_stream = open(doomed.clone()).await;
    let mut kept_stream = open(kept.clone()).await;
    let id = match bench.store.check_share(&doomed).unwrap() {
        ShareCheck::Active(info) => info.id,
        other => panic!("{other:?}"),
    };

    // Another store on the same file stands for `podlog share --revoke`.
    let db = bench.db.clone();
    let revoked_at = Instant::now();
    tokio::task::spawn_blocking(move || open_store(&db).revoke_share(&id).unwrap())
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        let mut control = None;
        while let Some(message) = doomed_stream.next().await.unwrap() {
            if message.is_control() {
                control = Some(message.event.clone());
            }
        }
        control
    })
    .await
    .expect("the revoked share's stream ends within 2 s");
    assert_eq!(ended.as_deref(), Some("revoked"));
    assert!(revoked_at.elapsed() < Duration::from_secs(2));
    match client
        .events_at(&format!("/sessions/{mine}/events?share={doomed}"), None)
        .await
    {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, 401),
        other => panic!("reconnecting with a revoked share: {other:?}"),
    }

    // The other share's stream goes on.
    let seq = commit(
        &pod,
        LogEntry::TurnEnd {
            ts: 1,
            turn_count: 1,
        },
    )
    .await;
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = kept_stream.next().await.unwrap().expect("still open");
            if let Some(event) = message.pod_event() {
                return event.unwrap();
            }
        }
    })
    .await
    .expect("the other share still streams");
    assert_eq!(next.watermark(), seq);
    // A loopback listener serves immutable pages publicly, but not to a
    // share.
    let page = get(
        &client,
        &format!("/sessions/{mine}/entries?after=0&limit=1&share={kept}"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", error_of(&page));
    assert_eq!(
        page.headers["cache-control"].to_str().unwrap(),
        "private, max-age=31536000, immutable"
    );
    let public = get(
        &client,
        &format!("/sessions/{mine}/entries?after=0&limit=1"),
    )
    .await;
    assert_eq!(
        public.headers["cache-control"].to_str().unwrap(),
        "public, max-age=31536000, immutable"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_with_a_share_ends_when_the_share_expires() {
    // The system clock: expiry is a matter of time passing, not of writes.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        Store::open(
            dir.path().join("podlog.db"),
            podlog_store::StoreOptions {
                synchronous: podlog_store::Synchronous::Normal,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let pod = scripted_pod(&store);
    let mine = pod.session_id().to_string();
    let (server, client) = serve(&store, &pod, tcp_config()).await;
    let token = share(&store, &mine, Some(Duration::from_millis(600))).await;
    let opened = Instant::now();
    let mut stream = client
        .events_at(&format!("/sessions/{mine}/events?share={token}"), None)
        .await
        .unwrap();
    let mut last = None;
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(message) = stream.next().await.unwrap() {
            last = Some(message.event.clone());
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its share");
    assert_eq!(last.as_deref(), Some("revoked"));
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "ended before the share expired: {:?}",
        opened.elapsed()
    );
    let again = get(&client, &format!("/sessions/{mine}?share={token}")).await;
    assert_eq!(again.status, 401);
    assert!(error_of(&again).contains("expired"), "{}", error_of(&again));
    server.shutdown().await.unwrap();
}

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

fn failed(run: Run, needle: &str) {
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "want {needle:?} in {}",
        run.stderr
    );
}

#[test]
fn podlog_share_prints_a_link_lists_and_revokes_it() {
    let db = TempDb::new();
    let demo = ok(podlog(&db.path, &["demo", "--runs", "1"]));
    let session = demo
        .stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("session "))
        .unwrap()
        .to_owned();

    let made = ok(podlog(
        &db.path,
        &[
            "share",
            &session[..8],
            "--expires",
            "30m",
            "--url",
            "http://host:9/",
        ],
    ));
    let mut lines = made.stdout.lines();
    let url = lines.next().unwrap();
    let rest = url
        .strip_prefix("http://host:9/?share=")
        .unwrap_or_else(|| panic!("{url}"));
    let (token, fragment) = rest.split_once('#').unwrap();
    assert_eq!(fragment, format!("session={session}"));
    assert_eq!(token.len(), 43);
    let note = lines.next().unwrap();
    let id = note
        .strip_prefix("share ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(note.contains(&format!("of session {session}")), "{note}");

    let store = Store::open(&db.path, Default::default()).unwrap();
    let info = match store.check_share(token).unwrap() {
        ShareCheck::Active(info) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!(info.id, id);
    assert_eq!(info.session_id.as_str(), session);
    let lasts = info.expires_at.unwrap() - info.created_at;
    assert_eq!(lasts, 30 * 60 * 1000);
    let stored = crate::support::sqlite3(&db.path, "SELECT token_hash FROM shares;").stdout;
    assert!(!stored.contains(token), "the token is not stored");

    // The default is a day; `never` never expires.
    ok(podlog(&db.path, &["share", &session]));
    ok(podlog(&db.path, &["share", &session, "--expires", "never"]));
    let list = ok(podlog(&db.path, &["share", "--list"])).stdout;
    assert!(list.starts_with("ID"), "{list}");
    assert_eq!(list.lines().count(), 4, "{list}");
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(&session) && row.ends_with("active"), "{row}");
    assert!(list.lines().any(|l| l.contains("  never  ")), "{list}");

    let revoked = ok(podlog(&db.path, &["share", "--revoke", &id])).stdout;
    assert_eq!(
        revoked,
        format!("revoked share {id} of session {session}\n")
    );
    assert!(matches!(
        store.check_share(token).unwrap(),
        ShareCheck::Inactive(_, ShareState::Revoked)
    ));
    let list = ok(podlog(&db.path, &["share", "--list"])).stdout;
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.ends_with("revoked"), "{row}");
    let again = ok(podlog(&db.path, &["share", "--revoke", &id])).stdout;
    assert!(again.contains("already revoked"), "{again}");

    failed(
        podlog(&db.path, &["share", "nosuchsession"]),
        "unknown session nosuchsession",
    );
    failed(
        podlog(&db.path, &["share", &session, "--expires", "5x"]),
        "bad duration \"5x\"",
    );
    failed(
        podlog(&db.path, &["share", "--revoke", "feedfeedfeedfeed"]),
        "unknown share feedfeedfeedfeed",
    );
    let neither = podlog(&db.path, &["share"]);
    assert_eq!(neither.code, 2, "{}", neither.stderr);
    let both = podlog(&db.path, &["share", "--list", "--revoke", &id]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}
