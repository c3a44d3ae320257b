//! Verification tests: a database edited behind podlog's back (as with the
//! `sqlite3` shell, constraints switched off) must have every broken
//! invariant reported with its session and seq, all of them, and a sound one
//! none. Guards against a verifier that stops at the first problem, trusts
//! the counters, or needs the write lock.

use std::sync::Arc;

use podlog_entry::{AssistantContent, LogEntry, Message, Seq, SessionId, StepClock};
use podlog_sink::SessionLogSink;

use crate::error::Context;
use crate::{NewSession, SequentialIds, SqliteStore, StoreError, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<SqliteStore>,
}

/// s-0001: a new session of 6 entries (the last of an unknown newer kind);
/// s-0002: forked from s-0001@4; s-0003: compacted from s-0001@6.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
            ids: Arc::new(SequentialIds::new("s")),
            busy_timeout: std::time::Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let store = Arc::new(store);
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let entries = [
        LogEntry::UserInput {
            ts: 2,
            text: "hello".into(),
            attachments: vec![],
        },
        LogEntry::AssistantItem {
            ts: 3,
            item: AssistantContent::ToolCall {
                id: "c1".into(),
                name: "read".into(),
                arguments: serde_json::json!({}),
            },
        },
        LogEntry::ToolResult {
            ts: 4,
            call_id: "c1".into(),
            output: "ok".into(),
            is_error: false,
        },
        LogEntry::TurnEnd {
            ts: 5,
            turn_count: 1,
        },
        LogEntry::from_json(r#"{"type":"hologram","ts":6,"frames":[1,2]}"#).unwrap(),
    ];
    let mut w = store.session_writer(&id).unwrap();
    for entry in entries {
        w.append(entry, &sink).unwrap();
    }
    drop(w);
    store.fork(&id, Seq(4)).unwrap();
    store
        .compact(
            &id,
            vec![Message::System {
                text: "summary".into(),
            }],
        )
        .unwrap();
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

/// Edits the database as a user with the `sqlite3` shell could, with
/// foreign keys and CHECK constraints off, then returns what verification
/// reports, one problem a line.
fn check(sql: &str) -> String {
    let f = fixture();
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    let problems = f.store.verify(None).unwrap();
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_sound_database_has_no_problems() {
    let f = fixture();
    assert_eq!(f.store.verify(None).unwrap(), vec![]);
    for id in ["s-0001", "s-0002", "s-0003"] {
        let id = SessionId::new(id).unwrap();
        assert_eq!(f.store.verify(Some(&id)).unwrap(), vec![]);
    }
    assert_eq!(
        f.store.verify_scope(None).unwrap(),
        (3, 8),
        "6 + 1 + 1 entries"
    );
    assert_eq!(
        f.store
            .verify_scope(Some(&SessionId::new("s-0001").unwrap()))
            .unwrap(),
        (1, 6)
    );
}

#[test]
fn an_unknown_session_is_an_error_not_a_problem() {
    let f = fixture();
    let err = f
        .store
        .verify(Some(&SessionId::new("s-0042").unwrap()))
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownSession(ref s) if s == "s-0042"));
}

#[test]
fn gaps_and_counters() {
    assert_eq!(
        check("DELETE FROM entries WHERE session_id = 's-0001' AND seq = 3;"),
        "session s-0001 seq 3: entry missing (the next stored entry is seq 4)\n\
         session s-0001: entry_count counter is 6 but 5 entries are stored\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 419 bytes"
    );
    assert_eq!(
        check("DELETE FROM entries WHERE session_id = 's-0001' AND seq IN (2, 3, 4);"),
        "session s-0001 seq 2: entries 2 to 4 missing\n\
         session s-0001: entry_count counter is 6 but 3 entries are stored\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 284 bytes\n\
         session s-0002: parent s-0001@4 does not exist: session s-0001 has no seq 4\n\
         session s-0002 seq 1: forked_from points at s-0001@4, which does not exist: \
         session s-0001 has no seq 4"
    );
    assert_eq!(
        check("UPDATE sessions SET stored_bytes = 7 WHERE id = 's-0002';"),
        "session s-0002: stored_bytes counter is 7 but its entries hold 431 bytes"
    );
    assert_eq!(
        check("UPDATE sessions SET last_seq = 9, entry_count = 1 WHERE id = 's-0002';"),
        "session s-0002: last_seq counter is 9 but the last stored entry is seq 1"
    );
    assert_eq!(
        check("DELETE FROM entries WHERE session_id = 's-0003';"),
        "session s-0003 seq 1: no entries: the SessionStart at seq 1 is missing\n\
         session s-0003: last_seq counter is 1 but the last stored entry is seq 0\n\
         session s-0003: entry_count counter is 1 but 0 entries are stored\n\
         session s-0003: stored_bytes counter is 263 but its entries hold 0 bytes"
    );
}

#[test]
fn bodies_kinds_and_times() {
    assert_eq!(
        check(
            "UPDATE entries SET body = '{\"type\":\"user_input\",\"ts\":2}' \
             WHERE session_id = 's-0001' AND seq = 2;"
        ),
        "session s-0001 seq 2: body does not decode: malformed user_input entry: \
         missing field `text`\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 486 bytes"
    );
    assert_eq!(
        check("UPDATE entries SET kind = 'turn_end' WHERE session_id = 's-0001' AND seq = 2;"),
        "session s-0001 seq 2: kind column says turn_end but the body's type is user_input"
    );
    assert_eq!(
        check("UPDATE entries SET ts = 77 WHERE session_id = 's-0001' AND seq = 6;"),
        "session s-0001 seq 6: ts column is 77 but the body's ts is 6"
    );
    assert_eq!(
        check("UPDATE entries SET body = 'not json' WHERE session_id = 's-0001' AND seq = 5;"),
        "session s-0001 seq 5: body does not decode: expected ident at line 1 column 2\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 485 bytes"
    );
}

#[test]
fn session_starts_only_at_seq_1() {
    assert_eq!(
        check(
            "UPDATE entries SET kind = 'user_input', \
               body = '{\"type\":\"user_input\",\"ts\":1700000006000,\"text\":\"hi\"}' \
             WHERE session_id = 's-0002' AND seq = 1;"
        ),
        "session s-0002 seq 1: seq 1 holds a user_input instead of a SessionStart\n\
         session s-0002: stored_bytes counter is 431 but its entries hold 52 bytes"
    );
    assert_eq!(
        check(
            "UPDATE entries SET kind = 'session_start', ts = 1700000000000, \
               body = (SELECT body FROM entries WHERE session_id = 's-0001' AND seq = 1) \
             WHERE session_id = 's-0001' AND seq = 5;"
        ),
        "session s-0001 seq 5: a SessionStart after seq 1 (only seq 1 may hold one)\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 679 bytes"
    );
}

#[test]
fn references_to_nowhere_and_disagreeing_starts() {
    assert_eq!(
        check(
            "UPDATE entries SET body = json_set(body, '$.forked_from.seq', 99) \
             WHERE session_id = 's-0002' AND seq = 1;"
        ),
        "session s-0002: stored_bytes counter is 431 but its entries hold 432 bytes\n\
         session s-0002 seq 1: forked_from points at s-0001@99, which does not exist: \
         session s-0001 has no seq 99\n\
         session s-0002 seq 1: the session row says forked from s-0001@4 but its \
         SessionStart says forked from s-0001@99"
    );
    assert_eq!(
        check("UPDATE sessions SET parent_id = 's-0404' WHERE id = 's-0003';"),
        "session s-0003: parent s-0404@6 does not exist: there is no session s-0404\n\
         session s-0003 seq 1: the session row says compacted from s-0404@6 but its \
         SessionStart says compacted from s-0001@6"
    );
    assert_eq!(
        check("UPDATE sessions SET origin = 'merge' WHERE id = 's-0002';"),
        "session s-0002: unknown origin \"merge\"\n\
         session s-0002 seq 1: the session row says merge from s-0001@4 but its \
         SessionStart says forked from s-0001@4"
    );
    assert_eq!(
        check("UPDATE sessions SET parent_id = NULL WHERE id = 's-0002';"),
        "session s-0002: parent_id and parent_seq must both be set or both be null\n\
         session s-0002 seq 1: the session row says a new session but its SessionStart \
         says forked from s-0001@4"
    );
}

#[test]
fn an_unknown_origin_is_a_problem_when_verifying_only_that_session() {
    let f = fixture();
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    // The schema's CHECK on origin has to be switched off, as the sqlite3
    // shell can.
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON; \
         UPDATE sessions SET origin = 'merge' WHERE id = 's-0003';",
    )
    .unwrap();
    drop(conn);
    let id = SessionId::new("s-0003").unwrap();
    assert!(matches!(
        f.store.session(&id),
        Err(StoreError::CorruptSession { .. })
    ));
    let report: Vec<String> = f
        .store
        .verify(Some(&id))
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        report,
        [
            "session s-0003: unknown origin \"merge\"",
            "session s-0003 seq 1: the session row says merge from s-0001@6 but its \
             SessionStart says compacted from s-0001@6"
        ]
    );
}

#[test]
fn orphans_and_many_problems_at_once() {
    let report = check(
        "INSERT INTO entries (session_id, seq, ts, kind, body) \
           VALUES ('ghost', 1, 0, 'turn_end', '{\"type\":\"turn_end\",\"ts\":0,\"turn_count\":1}'); \
         DELETE FROM entries WHERE session_id = 's-0001' AND seq = 6; \
         UPDATE entries SET kind = 'x' WHERE session_id = 's-0002' AND seq = 1; \
         UPDATE sessions SET entry_count = 5 WHERE id = 's-0003';",
    );
    assert_eq!(
        report,
        "session ghost: 1 entries stored for a session that has no session row\n\
         session s-0001: last_seq counter is 6 but the last stored entry is seq 5\n\
         session s-0001: entry_count counter is 6 but 5 entries are stored\n\
         session s-0001: stored_bytes counter is 518 but its entries hold 477 bytes\n\
         session s-0002 seq 1: kind column says x but the body's type is session_start\n\
         session s-0003: parent s-0001@6 does not exist: session s-0001 has no seq 6\n\
         session s-0003: entry_count counter is 5 but 1 entries are stored\n\
         session s-0003 seq 1: compacted_from points at s-0001@6, which does not exist: \
         session s-0001 has no seq 6"
    );
}

#[test]
fn verification_reads_while_another_process_holds_the_write_lock() {
    let f = fixture();
    let writer = rusqlite::Connection::open(&f.path).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE;").unwrap();
    writer
        .execute(
            "UPDATE sessions SET title = 'being edited' WHERE id = 's-0001'",
            [],
        )
        .unwrap();
    // The busy timeout is 200 ms: a verifier that wanted to write would fail.
    assert_eq!(f.store.verify(None).unwrap(), vec![]);
    writer.execute_batch("COMMIT;").unwrap();
}

#[test]
fn a_damaged_page_is_reported_by_the_integrity_check() {
    let f = fixture();
    let root: u64 = f
        .store
        .with_reader(|conn| {
            conn.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'sessions_by_parent'",
                [],
                |r| r.get(0),
            )
            .context(|| "finding the index".to_owned())
        })
        .unwrap();
    f.store.checkpoint().unwrap();
    let page_size = 4096;
    let mut bytes = std::fs::read(&f.path).unwrap();
    let page = usize::try_from((root - 1) * page_size).unwrap();
    // Scribble over the whole index page.
    for b in &mut bytes[page..page + 4096] {
        *b = 0x5a;
    }
    std::fs::write(&f.path, bytes).unwrap();
    let report = f
        .store
        .verify(None)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        report
            .iter()
            .all(|p| p.starts_with("database: integrity check")),
        "{report:#?}"
    );
    assert!(
        report.contains(&format!(
            "database: integrity check: Tree {root} page {root}: btreeInitPage() returns error \
             code 11"
        )),
        "{report:#?}"
    );
}
