//! Redaction in the store: what reaches the disk, the mirror and the
//! counters; the switch; the key; the user pattern file.

use std::os::unix::fs::PermissionsExt;

use podlog_entry::{Message, SessionId, StepClock, SystemItem};
use podlog_sink::SessionLogSink;

use super::*;
use crate::{NewSession, SequentialIds, StoreOptions};

fn options() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    }
}

fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(path, options()).unwrap())
}

const TOKEN: &str = "ghp_FAKEfake0000000000000000000000000000";
const PASSWORD: &str = "FAKEpassw0rdFAKE";
const AWS_ID: &str = "AKIAFAKEFAKE00000000";

fn with_secrets(n: u64) -> LogEntry {
    LogEntry::ToolResult {
        ts: n,
        call_id: format!("call-{n}"),
        output: format!(
            "$ git remote -v\norigin https://bot:{PASSWORD}@git.example.com/r.git\nGITHUB_TOKEN={TOKEN}\n"
        ),
        is_error: false,
    }
}

/// A tool output over the payload threshold with a secret deep inside, so
/// it is redacted before it goes out of line.
fn large_with_secret(n: u64) -> LogEntry {
    LogEntry::ToolResult {
        ts: n,
        call_id: format!("big-{n}"),
        output: format!(
            "{}\nAWS_ACCESS_KEY_ID={AWS_ID}\n",
            "log line\n".repeat(2000)
        ),
        is_error: false,
    }
}

/// Every byte of the database and its WAL.
fn disk_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(more) = std::fs::read(&wal) {
        bytes.extend(more);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The session's stored size computed from its rows, as the migration does.
fn stored_from_rows(store: &SqliteStore, id: &SessionId) -> u64 {
    store
        .with_reader(|c| {
            c.query_row(
                "SELECT coalesce(sum(length(CAST(e.body AS BLOB)) + coalesce((SELECT \
                 sum(json_extract(r.value, '$.size')) FROM json_each(e.payloads) AS r), 0)), 0) \
                 FROM entries AS e WHERE e.session_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .context(|| "sum".to_owned())
        })
        .unwrap()
}

#[test]
fn secrets_never_reach_the_disk_the_mirror_or_the_result_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let (id, start) = store
        .create_session(NewSession {
            system_prompt: Some(format!("deploy with {TOKEN}")),
            title: Some(format!("rotate {AWS_ID}")),
            ..NewSession::default()
        })
        .unwrap();
    let marker = store
        .redactor()
        .unwrap()
        .marker("aws_access_key_id", AWS_ID);
    let title = store.session(&id).unwrap().title.unwrap();
    assert_eq!(title, format!("rotate {marker}"));
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    let first = w.append_reported(with_secrets(1), &sink).unwrap();
    assert_eq!(first.redactions.count("github_token"), 1);
    assert_eq!(first.redactions.count("url_password"), 1);
    assert_eq!(
        first.redactions_before, 2,
        "the SessionStart's token, the title's key"
    );
    let big = w.append_reported(large_with_secret(2), &sink).unwrap();
    assert_eq!(big.redactions.count("aws_access_key_id"), 1);
    assert!(big.committed.payloads.is_some(), "went out of line");
    assert_eq!(big.stored_before, first.stored_after);
    let plain = w.append_reported(with_secrets(3), &sink).unwrap();
    assert_eq!(w.redactions(), 7);

    for c in [&first.committed, &big.committed, &plain.committed] {
        let json = c.entry.to_json();
        for secret in [TOKEN, PASSWORD, AWS_ID] {
            assert!(!json.contains(secret), "{json}");
        }
    }
    assert!(first
        .committed
        .entry
        .to_json()
        .contains("[REDACTED:github_token:"));
    for c in sink.snapshot().entries.iter() {
        assert!(!c.entry.to_json().contains(TOKEN));
    }
    let whole = store.entries(&id).unwrap();
    let all: String = whole.iter().map(|c| c.entry.to_json()).collect();
    assert!(all.contains("AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id:"));
    assert!(!all.contains(AWS_ID));

    let info = store.session(&id).unwrap();
    assert_eq!(info.redactions, 7);
    assert_eq!(info.stored_bytes, stored_from_rows(&store, &id));
    assert_eq!(info.stored_bytes, plain.stored_after);
    assert!(
        info.stored_bytes > 18_000,
        "the payload counts: {}",
        info.stored_bytes
    );

    let bytes = disk_bytes(&path);
    assert!(
        contains(&bytes, "[REDACTED:github_token:"),
        "the scan sees the rows"
    );
    for secret in [TOKEN, PASSWORD, AWS_ID] {
        assert!(!contains(&bytes, secret), "{secret} is on disk");
    }
    drop(w);
    drop(store);
    let bytes = disk_bytes(&path);
    assert!(!contains(&bytes, TOKEN));
}

#[test]
fn switched_off_entries_are_stored_verbatim_and_the_switch_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    assert!(store.redaction_enabled(), "on by default");
    store.set_redaction(false).unwrap();
    assert!(!store.redaction_enabled());
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    let r = w.append_reported(with_secrets(1), &sink).unwrap();
    assert!(r.redactions.is_empty());
    assert!(r.committed.entry.to_json().contains(TOKEN));
    drop(w);
    drop(store);

    let store = open(&path);
    assert!(!store.redaction_enabled(), "the setting is in the database");
    assert!(store.entries(&id).unwrap()[1]
        .entry
        .to_json()
        .contains(TOKEN));
    assert_eq!(store.session(&id).unwrap().redactions, 0);
    store.set_redaction(true).unwrap();
    let sink = store.load_sink(&id).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    let r = w.append_reported(with_secrets(2), &sink).unwrap();
    assert_eq!(r.redactions.total(), 2);
    drop(w);
    drop(store);
    assert!(open(&path).redaction_enabled());
}

#[test]
fn the_key_is_a_private_file_beside_the_database_and_keeps_markers_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let marker = |store: &SqliteStore| store.redactor().unwrap().marker("github_token", TOKEN);
    let first = marker(&open(&path));
    let key = key_path(&path);
    assert_eq!(key, dir.path().join("podlog.db.redaction-key"));
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64);
    assert_eq!(marker(&open(&path)), first, "the same key after reopening");

    let other = dir.path().join("other.db");
    assert_ne!(
        marker(&open(&other)),
        first,
        "each database has its own key"
    );

    std::fs::write(&key, "not a key").unwrap();
    let err = SqliteStore::open(&path, options()).unwrap_err().to_string();
    assert!(
        err.contains("redaction-key") && err.contains("64 hexadecimal"),
        "{err}"
    );
}

#[test]
fn user_patterns_come_from_the_file_beside_the_database_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let config = config_path(&path);
    assert_eq!(config, dir.path().join("podlog.db.redact.toml"));
    std::fs::write(
        &config,
        "[[pattern]]\nname = \"ticket_secret\"\nregex = \"TKT-[0-9]{6}\"\n",
    )
    .unwrap();
    let store = open(&path);
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    let r = w.append_reported(note("TKT-123456"), &sink).unwrap();
    assert_eq!(r.redactions.count("ticket_secret"), 2, "message and body");
    drop(w);
    drop(store);

    std::fs::write(
        &config,
        "[[pattern]]\nname = \"broken_one\"\nregex = \"[unclosed\"\n",
    )
    .unwrap();
    let err = SqliteStore::open(&path, options()).unwrap_err().to_string();
    assert!(
        err.contains("broken_one") && err.contains("redact.toml"),
        "{err}"
    );
}

fn note(text: &str) -> LogEntry {
    LogEntry::SystemItem {
        ts: 1,
        item: SystemItem::Notification {
            message: text.to_owned(),
            body: text.to_owned(),
        },
    }
}

#[test]
fn compaction_summaries_and_imports_are_redacted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let (id, _) = store.create_session(NewSession::default()).unwrap();
    let (compacted, start) = store
        .compact(
            &id,
            vec![Message::System {
                text: format!("the token was {TOKEN}"),
            }],
        )
        .unwrap();
    assert!(!start.entry.to_json().contains(TOKEN));
    let info = store.session(&compacted).unwrap();
    assert_eq!(info.redactions, 1);
    assert_eq!(info.stored_bytes, stored_from_rows(&store, &compacted));

    // An export of a store with redaction off, imported into one with it on.
    let plain_path = dir.path().join("plain.db");
    let plain = open(&plain_path);
    plain.set_redaction(false).unwrap();
    let (pid, start) = plain.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = plain.session_writer(&pid).unwrap();
    w.append(with_secrets(1), &sink).unwrap();
    w.append(note("nothing secret"), &sink).unwrap();
    drop(w);
    let mut file = Vec::new();
    plain.export(&pid, false, &mut file, |_| {}).unwrap();
    assert!(String::from_utf8_lossy(&file).contains(TOKEN));
    let target = open(&dir.path().join("target.db"));
    target.import(&file[..], |_| {}).unwrap();
    let entries = target.entries(&pid).unwrap();
    assert!(!entries[1].entry.to_json().contains(TOKEN));
    assert!(!entries[1].entry.to_json().contains(PASSWORD));
    let info = target.session(&pid).unwrap();
    assert_eq!(info.redactions, 2);
    assert_eq!(info.stored_bytes, stored_from_rows(&target, &pid));
    assert_eq!(
        info.stored_bytes,
        plain.session(&pid).unwrap().stored_bytes - TOKEN.len() as u64 - PASSWORD.len() as u64
            + 2 * "[REDACTED:github_token:01234567]".len() as u64
            - "github_token".len() as u64
            + "url_password".len() as u64,
        "the same rows, each secret replaced by its marker"
    );
}
