//! Write-time redaction end to end: a secret committed through a served pod
//! never reaches the database file, the WAL, the HTTP answers or the event
//! stream, and is counted; `podlog redaction` switches it and `podlog
//! sessions` shows the counts and sizes.

use std::path::Path;
use std::time::Duration;

use podlog_entry::{LogEntry, SystemItem};
use podlog_protocol::Event;
use serde_json::Value;

use crate::server_support::{commit, scripted_pod, serve_tcp, Bench};
use crate::support::{podlog, TempDb};

const TOKEN: &str = "ghp_FAKEfake0000000000000000000000000000";
const PASSWORD: &str = "FAKEpassw0rdFAKE";
const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWtlLXVzZXIifQ.RkFLRWZha2VGQUtFZmFrZUZBS0VmYWtl";

fn tool_output() -> LogEntry {
    LogEntry::ToolResult {
        ts: 1,
        call_id: "c1".to_owned(),
        output: format!(
            "$ git push https://bot:{PASSWORD}@git.example.com/r.git\nGITHUB_TOKEN={TOKEN}\n\
             kubectl token: {JWT}\n{}",
            // Large enough to go out of line as a payload.
            "padding line\n".repeat(1000)
        ),
        is_error: false,
    }
}

fn on_disk(db: &Path, secret: &str) -> bool {
    let mut bytes = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", db.display())) {
        bytes.extend(wal);
    }
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_never_reaches_disk_http_or_the_event_stream_and_is_counted() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let mut stream = client.events("p", None).await.unwrap();
    let (a, b) = TOKEN.split_at(12);
    for piece in ["the token is ", a, b, " ok "] {
        assert!(pod.stream(Event::TextDelta {
            after: podlog_entry::Seq::ZERO,
            text: piece.to_owned(),
        }));
    }
    let seq = commit(&pod, tool_output()).await;

    // Everything the stream carried up to the notice that follows the entry.
    let mut raw = String::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended");
        raw.push_str(&message.data);
        if let Ok(Event::SystemItem {
            item: SystemItem::Notification { message, .. },
            ..
        }) = message.pod_event().expect("a pod event")
        {
            assert_eq!(
                message,
                "3 secrets redacted (1 github_token, 1 jwt, 1 url_password)"
            );
            break;
        }
    }
    assert!(raw.contains("[REDACTED:github_token:"), "{raw}");

    let session = pod.session_id();
    let sessions = client.get_json("/sessions").await.unwrap();
    let row = sessions
        .as_array()
        .or_else(|| sessions["sessions"].as_array())
        .expect("a list of sessions")
        .iter()
        .find(|s| s["id"] == session.as_str())
        .cloned()
        .expect("the pod's session is listed");
    assert_eq!(row["redactions"], 3);
    assert!(row["stored_bytes"].as_u64().unwrap() > 13_000, "{row}");
    let entries = client
        .get_json(&format!("/sessions/{session}/entries"))
        .await
        .unwrap();
    let payload_hash = find_hash(&entries).expect("the output went out of line");
    let blob = client
        .get_json(&format!("/sessions/{session}"))
        .await
        .unwrap();
    let whole = client
        .blob(&podlog_entry::PayloadHash::new(payload_hash).unwrap())
        .await
        .unwrap();
    for text in [&raw, &entries.to_string(), &blob.to_string(), &whole] {
        for secret in [TOKEN, PASSWORD, JWT, a] {
            assert!(!text.contains(secret), "{secret} was served: {text:.300}");
        }
    }
    assert!(whole.contains("GITHUB_TOKEN=[REDACTED:github_token:"));
    assert_eq!(bench.store.session(&session).unwrap().redactions, 3);
    assert!(seq.get() >= 2);
    for secret in [TOKEN, PASSWORD, JWT] {
        assert!(!on_disk(&bench.db, secret), "{secret} on disk");
    }
    server.shutdown().await.unwrap();
}

/// The first payload hash in a JSON answer.
fn find_hash(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(h)), Some(_)) = (map.get("hash"), map.get("size")) {
                return Some(h.clone());
            }
            map.values().find_map(find_hash)
        }
        Value::Array(items) => items.iter().find_map(find_hash),
        _ => None,
    }
}

#[test]
fn the_cli_switches_redaction_and_lists_counts_and_sizes() {
    let db = TempDb::new();
    let status = podlog(&db.path, &["redaction", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.starts_with("redaction: on\n"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("podlog.db.redaction-key"));
    let demo = podlog(&db.path, &["demo", "--runs", "1"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    let list = podlog(&db.path, &["sessions"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let header = list.stdout.lines().next().unwrap();
    assert!(
        header.contains("  ENTRIES       SIZE  REDACTED  UPDATED"),
        "{header}"
    );
    let row = list.stdout.lines().nth(1).unwrap();
    assert!(
        row.contains(" KiB ") || row.contains(" B "),
        "a human size: {row}"
    );

    let off = podlog(&db.path, &["redaction", "off"]);
    assert_eq!(off.code, 0, "{}", off.stderr);
    assert!(off.stdout.contains("redaction is off"));
    let status = podlog(&db.path, &["redaction", "status"]);
    assert!(
        status.stdout.starts_with("redaction: off\n"),
        "{}",
        status.stdout
    );
    let on = podlog(&db.path, &["redaction", "on"]);
    assert_eq!(on.code, 0, "{}", on.stderr);
    let bad = podlog(&db.path, &["redaction", "sideways"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    std::fs::write(
        db.dir.path().join("podlog.db.redact.toml"),
        "[[pattern]]\nname = \"bad_pattern\"\nregex = \"(\"\n",
    )
    .unwrap();
    let refused = podlog(&db.path, &["sessions"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("bad_pattern"), "{}", refused.stderr);
}

#[test]
fn serve_refuses_a_size_warning_it_cannot_read_naming_it() {
    let db = TempDb::new();
    let bad = podlog(&db.path, &["serve", "--size-warning", "12parsecs"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("\"12parsecs\""), "{}", bad.stderr);
    assert!(bad.stderr.contains("KiB, MiB or GiB"), "{}", bad.stderr);
}
