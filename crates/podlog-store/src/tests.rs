//! SqliteStore tests on a file database in a temp dir (WAL and locking behave
//! differently in memory): round trips, commit-then-publish under failure,
//! refusal of newer and foreign files, and decoding errors that name the row.

use std::os::unix::fs::PermissionsExt;

use podlog_entry::{StepClock, SystemItem};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<SqliteStore>,
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
    let store = Arc::new(SqliteStore::open(&path, options()).unwrap());
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

fn note(n: u64) -> LogEntry {
    LogEntry::SystemItem {
        ts: n,
        item: SystemItem::Notification {
            message: format!("note {n}"),
            body: format!("[Notification] note {n}"),
        },
    }
}

fn turn_end(n: u64) -> LogEntry {
    LogEntry::TurnEnd {
        ts: n,
        turn_count: n,
    }
}

/// A session with a SessionStart and `n` more entries: its writer and its
/// sink.
fn session_with(store: &Arc<SqliteStore>, n: u64) -> (SqliteSessionWriter, SessionLogSink) {
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    for i in 0..n {
        w.append(turn_end(i), &sink).unwrap();
    }
    (w, sink)
}

#[test]
fn appends_get_gap_free_seqs_and_reach_the_sink_after_commit() {
    let f = fixture();
    let (mut w, sink) = session_with(&f.store, 0);
    let id = w.session().clone();
    let (snapshot, mut rx) = sink.subscribe_with_snapshot();
    assert_eq!(snapshot.end_seq(), Seq(1));
    assert_eq!(w.append(turn_end(1), &sink).unwrap(), Seq(2));
    assert_eq!(w.append(note(2), &sink).unwrap(), Seq(3));
    let live = rx.try_recv().unwrap();
    assert_eq!(
        live.seq,
        Seq(3),
        "only the live-relevant SystemItem is sent"
    );
    assert_eq!(sink.len(), 3);
    let info = f.store.session(&id).unwrap();
    assert_eq!((info.last_seq, info.entry_count), (Seq(3), 3));
}

#[test]
fn reopening_returns_exactly_what_was_appended() {
    let f = fixture();
    let (mut w, sink) = session_with(&f.store, 20);
    let id = w.session().clone();
    w.append(note(99), &sink).unwrap();
    let before: Vec<Committed> = sink.snapshot().entries.iter().cloned().collect();
    drop(f.store);
    let store = SqliteStore::open(&f.path, options()).unwrap();
    let after = store.entries(&id).unwrap();
    assert_eq!(after, before);
    let restored = store.load_sink(&id).unwrap();
    assert_eq!(restored.end_seq(), Seq(22));
}

fn expect_failed_append_publishes_nothing(f: &Fixture, break_it: &str, fix_it: &str) -> String {
    let (mut w, sink) = session_with(&f.store, 3);
    let id = w.session().clone();
    let (before, mut rx) = sink.subscribe_with_snapshot();
    f.store.writer().execute_batch(break_it).unwrap();
    let err = w.append(note(7), &sink).unwrap_err();
    assert_eq!(sink.len(), before.len(), "mirror unchanged");
    assert!(rx.try_recv().is_err(), "nothing broadcast");
    f.store.writer().execute_batch(fix_it).unwrap();
    let info = f.store.session(&id).unwrap();
    assert_eq!(
        info.last_seq,
        Seq(4),
        "counters unchanged by the failed commit"
    );
    assert_eq!(f.store.entries(&id).unwrap().len(), 4);
    // The next append takes the next seq: the failure left no gap.
    assert_eq!(w.append(note(8), &sink).unwrap(), Seq(5));
    assert_eq!(rx.try_recv().unwrap().seq, Seq(5));
    err.to_string()
}

#[test]
fn a_failed_commit_on_a_read_only_database_publishes_nothing() {
    let f = fixture();
    let msg = expect_failed_append_publishes_nothing(
        &f,
        "PRAGMA query_only = ON",
        "PRAGMA query_only = OFF",
    );
    assert!(
        msg.starts_with("appending system_item to session s-0001: "),
        "{msg}"
    );
    assert!(msg.contains("readonly"), "{msg}");
}

#[test]
fn a_failed_commit_on_a_rejecting_trigger_publishes_nothing() {
    let f = fixture();
    let msg = expect_failed_append_publishes_nothing(
        &f,
        "CREATE TRIGGER refuse BEFORE INSERT ON entries \
         BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
        "DROP TRIGGER refuse",
    );
    assert!(msg.contains("refused by test trigger"), "{msg}");
}

#[test]
fn a_full_database_fails_clearly_and_recovers_when_there_is_room() {
    let f = fixture();
    let (mut w, sink) = session_with(&f.store, 1);
    let pages: i64 = f
        .store
        .writer()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    f.store
        .writer()
        .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
        .unwrap();
    let big = LogEntry::ToolResult {
        ts: 1,
        call_id: "c".into(),
        output: "x".repeat(64 * 1024),
        is_error: false,
    };
    let err = w.append(big.clone(), &sink).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(sink.len(), 2);
    f.store
        .writer()
        .execute_batch("PRAGMA max_page_count = 1073741823")
        .unwrap();
    assert_eq!(w.append(big, &sink).unwrap(), Seq(3));
}

#[test]
fn a_session_start_cannot_be_appended_and_unknown_sessions_are_named() {
    let f = fixture();
    let (mut w, sink) = session_with(&f.store, 0);
    let start = sink.snapshot().entries[0].entry.as_ref().clone();
    let err = w.append(start, &sink).unwrap_err();
    assert!(err.to_string().contains("only ever seq 1"), "{err}");
    let ghost = SessionId::new("ghost").unwrap();
    let err = f.store.session_writer(&ghost).unwrap_err();
    assert_eq!(err.to_string(), "unknown session ghost");
    assert_eq!(sink.len(), 1);
    // The refused SessionStart took no seq.
    assert_eq!(w.append(note(1), &sink).unwrap(), Seq(2));
}

#[test]
fn a_newer_database_is_refused_with_both_versions() {
    let f = fixture();
    drop(f.store);
    let conn = Connection::open(&f.path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = SqliteStore::open(&f.path, options()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{msg}");
    assert!(msg.contains("schema version 99"), "{msg}");
    assert!(
        msg.contains(&format!("the {SCHEMA_VERSION} this podlog supports")),
        "{msg}"
    );
}

#[test]
fn migrations_set_user_version_and_reopening_is_a_no_op() {
    let f = fixture();
    let id = session_with(&f.store, 2).0.session().clone();
    let version: i64 = f
        .store
        .writer()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION as usize, schema::migrations().len());
    drop(f.store);
    let store = SqliteStore::open(&f.path, options()).unwrap();
    assert_eq!(store.entries(&id).unwrap().len(), 3);
}

#[test]
fn files_that_are_not_databases_or_cannot_be_made_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database, just some text long enough").unwrap();
    let err = SqliteStore::open(&text, options()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a SQLite database (is it the right file?)",
            text.display()
        )
    );
    let missing = dir.path().join("no/such/dir/podlog.db");
    let err = SqliteStore::open(&missing, options()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn the_database_file_is_private() {
    let f = fixture();
    session_with(&f.store, 1);
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", f.path.display()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

#[test]
fn rows_that_do_not_decode_are_errors_naming_session_and_seq() {
    let f = fixture();
    let id = session_with(&f.store, 3).0.session().clone();
    let raw = Connection::open(&f.path).unwrap();
    raw.execute(
        "UPDATE entries SET body = '{\"type\":\"turn_end\",\"ts\":1}' WHERE session_id = ?1 AND seq = 3",
        [id.as_str()],
    )
    .unwrap();
    let err = f.store.entries(&id).unwrap_err();
    assert_eq!(
        err.to_string(),
        "session s-0001 seq 3: stored entry does not decode: malformed turn_end entry: missing field `turn_count`"
    );
    raw.execute(
        "DELETE FROM entries WHERE session_id = ?1 AND seq = 3",
        [id.as_str()],
    )
    .unwrap();
    let err = f.store.entries(&id).unwrap_err();
    assert_eq!(
        err.to_string(),
        "session s-0001 seq 3: entry missing (the next stored entry is seq 4)"
    );
}

#[test]
fn entries_of_a_newer_kind_survive_a_round_trip_through_the_store() {
    let f = fixture();
    let (mut w, sink) = session_with(&f.store, 0);
    let id = w.session().clone();
    let text = r#"{"type":"plan_updated","ts":5,"steps":["a"]}"#;
    w.append(LogEntry::from_json(text).unwrap(), &sink).unwrap();
    let back = f.store.entries(&id).unwrap();
    assert_eq!(back[1].entry.to_json(), text);
}

#[test]
fn sessions_are_listed_from_their_counters_and_resolved_by_prefix() {
    let f = fixture();
    let a = session_with(&f.store, 2).0.session().clone();
    let b = session_with(&f.store, 5).0.session().clone();
    let list: Vec<SessionInfo> = f
        .store
        .sessions()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let summary: Vec<(String, u64, u64)> = list
        .iter()
        .map(|s| (s.id.to_string(), s.last_seq.get(), s.entry_count))
        .collect();
    assert_eq!(
        summary,
        [("s-0002".to_owned(), 6, 6), ("s-0001".to_owned(), 3, 3)]
    );
    assert_eq!(f.store.resolve("s-0001").unwrap(), a);
    assert_eq!(f.store.resolve("s-0002").unwrap(), b);
    let err = f.store.resolve("s-000").unwrap_err();
    assert!(err.to_string().contains("ambiguous"), "{err}");
    assert_eq!(
        f.store.resolve("zzz").unwrap_err().to_string(),
        "unknown session zzz"
    );
}

/// "ok", or the error's message.
fn shown<T>(result: Result<T>) -> String {
    result.map_or_else(|e| e.to_string(), |_| "ok".to_owned())
}

#[test]
fn an_unknown_origin_fails_reads_of_its_session_and_is_listed_in_its_place() {
    let f = fixture();
    let a = session_with(&f.store, 1).0.session().clone();
    let (b, _) = f.store.fork(&a, Seq(2)).unwrap();
    session_with(&f.store, 0);
    let raw = Connection::open(&f.path).unwrap();
    let merge = "UPDATE sessions SET origin = 'merge' WHERE id = 's-0002'";
    let refused = raw.execute(merge, []).unwrap_err().to_string();
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
    // What the sqlite3 shell can do with CHECKs switched off.
    raw.execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    raw.execute(merge, []).unwrap();

    let err = f.store.session(&b).unwrap_err();
    assert!(matches!(err, StoreError::CorruptSession { .. }), "{err:?}");
    let named = "session s-0002: unknown origin \"merge\"";
    let reads = [
        ("session", shown(f.store.session(&b))),
        ("ancestors", shown(f.store.ancestors(&b))),
        ("descendants of its parent", shown(f.store.descendants(&a))),
        (
            "export",
            shown(f.store.export(&b, false, &mut Vec::new(), |_| {})),
        ),
        (
            "export of its parent",
            shown(f.store.export(&a, false, &mut Vec::new(), |_| {})),
        ),
    ];
    let want = [named, named, named, named, "ok"];
    for ((what, got), want) in reads.iter().zip(want) {
        assert_eq!(got, want, "{what}");
    }

    let listed: Vec<String> = f
        .store
        .sessions()
        .unwrap()
        .iter()
        .map(|s| match s {
            Ok(info) => format!("{} {}", info.id, info.origin.as_str()),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(listed, ["s-0003 new", named, "s-0001 new"]);
}

#[test]
fn paged_reads_return_the_requested_range() {
    let f = fixture();
    let id = session_with(&f.store, 9).0.session().clone();
    let page = f.store.entries_after(&id, Seq(4), 3).unwrap();
    let seqs: Vec<u64> = page.iter().map(|c| c.seq.get()).collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert!(f.store.entries_after(&id, Seq(10), 3).unwrap().is_empty());
}

#[test]
fn schema() {
    let f = fixture();
    let rows: Vec<String> = f
        .store
        .writer()
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name",
        )
        .unwrap()
        .query_map([], |r| {
            Ok(format!(
                "-- {} {}\n{};\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    insta::assert_snapshot!(rows.join("\n"));
}

fn user(text: &str) -> LogEntry {
    LogEntry::UserInput {
        ts: 1,
        text: text.to_owned(),
        attachments: vec![],
    }
}

fn call(id: &str) -> LogEntry {
    LogEntry::AssistantItem {
        ts: 1,
        item: podlog_entry::AssistantContent::ToolCall {
            id: id.to_owned(),
            name: "read_file".to_owned(),
            arguments: serde_json::json!({"path": "a"}),
        },
    }
}

fn result(id: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts: 1,
        call_id: id.to_owned(),
        output: format!("output of {id}"),
        is_error: false,
    }
}

/// seq 1 start, 2 user "one", 3 call c1, 4 result c1, 5 turn end,
/// 6 user "two", 7 call c2, 8 result c2.
fn conversation(store: &Arc<SqliteStore>) -> (SessionId, SessionLogSink) {
    let (id, start) = store
        .create_session(NewSession {
            system_prompt: Some("be brief".to_owned()),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    for e in [
        user("one"),
        call("c1"),
        result("c1"),
        turn_end(1),
        user("two"),
        call("c2"),
        result("c2"),
    ] {
        w.append(e, &sink).unwrap();
    }
    (id, sink)
}

#[test]
fn compaction_starts_a_session_from_the_summary_and_leaves_the_parent_alone() {
    let f = fixture();
    let (parent, _) = conversation(&f.store);
    let before = f.store.entries(&parent).unwrap();
    let summary = vec![Message::System {
        text: "the user asked twice".to_owned(),
    }];
    let (child, start) = f.store.compact(&parent, summary.clone()).unwrap();
    assert_eq!(start.seq, Seq(1));
    match &*start.entry {
        LogEntry::SessionStart {
            compacted_from,
            forked_from,
            history,
            system_prompt,
            ..
        } => {
            assert_eq!(
                compacted_from,
                &Some(EntryRef {
                    session_id: parent.clone(),
                    seq: Seq(8)
                })
            );
            assert_eq!(forked_from, &None);
            assert_eq!(history, &summary);
            assert_eq!(system_prompt.as_deref(), Some("be brief"));
        }
        other => panic!("expected a SessionStart, got {other:?}"),
    }
    let info = f.store.session(&child).unwrap();
    assert_eq!(info.origin, Origin::Compaction);
    assert_eq!(
        info.parent,
        Some(EntryRef {
            session_id: parent.clone(),
            seq: Seq(8)
        })
    );
    assert_eq!((info.last_seq, info.entry_count), (Seq(1), 1));
    assert_eq!(f.store.entries(&child).unwrap(), vec![start]);
    assert_eq!(
        f.store.entries(&parent).unwrap(),
        before,
        "parent untouched"
    );
}

#[test]
fn fork_carries_the_conversation_up_to_the_cut_and_nothing_after() {
    let f = fixture();
    let (parent, _) = conversation(&f.store);
    let (child, start) = f.store.fork(&parent, Seq(5)).unwrap();
    let LogEntry::SessionStart {
        history,
        forked_from,
        ..
    } = &*start.entry
    else {
        panic!("expected a SessionStart");
    };
    assert_eq!(forked_from.as_ref().map(|r| r.seq), Some(Seq(5)));
    let text = serde_json::to_string(history).unwrap();
    assert!(
        text.contains("one") && text.contains("output of c1"),
        "{text}"
    );
    assert!(
        !text.contains("two") && !text.contains("c2"),
        "nothing after the cut: {text}"
    );
    assert_eq!(history.len(), 3, "user, assistant call, tool result");
    let info = f.store.session(&child).unwrap();
    assert_eq!(info.origin, Origin::Fork);
    // The fork goes on independently of its parent.
    let sink = f.store.load_sink(&child).unwrap();
    let mut w = f.store.session_writer(&child).unwrap();
    assert_eq!(w.append(user("three"), &sink).unwrap(), Seq(2));
    assert_eq!(f.store.session(&parent).unwrap().last_seq, Seq(8));
}

#[test]
fn cuts_outside_the_log_or_between_a_call_and_its_result_are_refused() {
    let f = fixture();
    let (parent, _) = conversation(&f.store);
    let sessions_before = f.store.sessions().unwrap().len();
    let cases = [Seq(0), Seq(3), Seq(7), Seq(9)];
    let messages: Vec<String> = cases
        .iter()
        .map(|&at| f.store.fork(&parent, at).unwrap_err().to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "cannot cut session s-0001 at seq 0: the session has seqs 1 to 8",
            "cannot cut session s-0001 at seq 3: seq 3 cuts tool call c1 from its result; fork at or after the result, or before the call",
            "cannot cut session s-0001 at seq 7: seq 7 cuts tool call c2 from its result; fork at or after the result, or before the call",
            "cannot cut session s-0001 at seq 9: the session has seqs 1 to 8",
        ]
    );
    assert_eq!(
        f.store.sessions().unwrap().len(),
        sessions_before,
        "nothing written"
    );
    for ok in [1, 2, 4, 5, 6, 8] {
        f.store.fork(&parent, Seq(ok)).unwrap();
    }
    let ghost = SessionId::new("ghost").unwrap();
    assert_eq!(
        f.store.fork(&ghost, Seq(1)).unwrap_err().to_string(),
        "unknown session ghost"
    );
}

/// Fork (at `at`, or compaction when `None`) of the 8-entry conversation
/// after `sql` edited its rows behind podlog's back: the error, or "ok".
fn derive_from_broken_parent(sql: &str, at: Option<u64>) -> String {
    let f = fixture();
    let (parent, _) = conversation(&f.store);
    let raw = Connection::open(&f.path).unwrap();
    raw.execute_batch(&format!("PRAGMA ignore_check_constraints = ON; {sql}"))
        .unwrap();
    let sessions_before = f.store.sessions().unwrap().len();
    let result = match at {
        Some(at) => f.store.fork(&parent, Seq(at)),
        None => f.store.compact(&parent, vec![]),
    };
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            assert_eq!(f.store.sessions().unwrap().len(), sessions_before);
            e.to_string()
        }
    }
}

#[test]
fn fork_and_compaction_refuse_a_parent_whose_rows_are_broken_before_the_cut() {
    let cases = [
        ("DELETE FROM entries WHERE seq = 8", Some(6), "ok"),
        (
            "DELETE FROM entries WHERE seq = 8",
            None,
            "session s-0001 seq 8: the session row's last_seq is 8 but the entries end at seq 7",
        ),
        (
            "DELETE FROM entries WHERE seq = 3",
            Some(5),
            "session s-0001 seq 3: entry missing (the next stored entry is seq 4)",
        ),
        (
            "UPDATE entries SET body = '{\"type\":\"user_input\",\"ts\":2}' WHERE seq = 2",
            Some(5),
            "session s-0001 seq 2: stored entry does not decode: malformed user_input entry: \
             missing field `text`",
        ),
        (
            "UPDATE entries SET body = (SELECT body FROM entries WHERE seq = 1) WHERE seq = 4",
            None,
            "session s-0001 seq 4: a SessionStart after seq 1 (only seq 1 may hold one)",
        ),
    ];
    for (sql, at, want) in cases {
        assert_eq!(derive_from_broken_parent(sql, at), want, "{sql} at {at:?}");
    }
}

#[test]
fn lineage_walks_session_rows_both_ways() {
    let f = fixture();
    let (root, _) = conversation(&f.store);
    let (a, _) = f.store.fork(&root, Seq(4)).unwrap();
    let (b, _) = f.store.compact(&root, vec![]).unwrap();
    let (a1, _) = f.store.compact(&a, vec![]).unwrap();
    let (a1x, _) = f.store.fork(&a1, Seq(1)).unwrap();
    let ids = |v: Vec<SessionInfo>| v.into_iter().map(|s| s.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(f.store.ancestors(&a1x).unwrap()),
        [a1.to_string(), a.to_string(), root.to_string()]
    );
    assert!(f.store.ancestors(&root).unwrap().is_empty());
    assert_eq!(
        ids(f.store.descendants(&root).unwrap()),
        [
            a.to_string(),
            a1.to_string(),
            a1x.to_string(),
            b.to_string()
        ]
    );
    assert!(f.store.descendants(&b).unwrap().is_empty());
    assert!(f
        .store
        .descendants(&SessionId::new("nope").unwrap())
        .is_err());
}

/// Holds the write connection until one append per writer is queued behind
/// it, then lets them go: the next leader commits all of them in one
/// transaction. Gives each writer back with its append's result.
fn append_as_one_batch(
    store: &Arc<SqliteStore>,
    work: Vec<(SqliteSessionWriter, LogEntry, SessionLogSink)>,
) -> Vec<(SqliteSessionWriter, Result<Seq>)> {
    let n = work.len();
    let guard = store.writer();
    let handles: Vec<_> = work
        .into_iter()
        .map(|(mut w, entry, sink)| {
            std::thread::spawn(move || {
                let result = w.append(entry, &sink);
                (w, result)
            })
        })
        .collect();
    while store.queued() < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(guard);
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn concurrent_appends_share_one_transaction() {
    let f = fixture();
    let store = f.store.clone();
    let mut sessions: Vec<(SqliteSessionWriter, SessionLogSink)> =
        (0..4).map(|_| session_with(&store, 0)).collect();
    let before = store.commit_stats();
    for round in 0..3 {
        let work = sessions
            .drain(..)
            .map(|(w, sink)| (w, note(round), sink))
            .collect();
        let results = append_as_one_batch(&store, work);
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        sessions = results
            .into_iter()
            .map(|(w, _)| {
                let sink = store.load_sink(w.session()).unwrap();
                (w, sink)
            })
            .collect();
    }
    let after = store.commit_stats();
    assert_eq!(after.transactions - before.transactions, 3);
    assert_eq!(after.entries - before.entries, 12);
    for (w, _) in &sessions {
        let info = store.session(w.session()).unwrap();
        assert_eq!((info.last_seq, info.entry_count), (Seq(4), 4));
        assert_eq!(w.last_seq(), Seq(4));
        assert_eq!(store.entries(w.session()).unwrap().len(), 4);
    }
}

#[test]
fn a_failed_group_fails_every_entry_and_publishes_none() {
    let f = fixture();
    let store = f.store.clone();
    let sessions: Vec<(SqliteSessionWriter, SessionLogSink)> =
        (0..4).map(|_| session_with(&store, 1)).collect();
    let receivers: Vec<_> = sessions
        .iter()
        .map(|(_, s)| s.subscribe_with_snapshot().1)
        .collect();
    let sinks: Vec<SessionLogSink> = sessions.iter().map(|(_, s)| s.clone()).collect();
    store
        .writer()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON entries \
             WHEN NEW.body LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned entry'); END",
        )
        .unwrap();
    let poison = LogEntry::SystemItem {
        ts: 1,
        item: SystemItem::Notification {
            message: "poison".into(),
            body: "poison".into(),
        },
    };
    let work = sessions
        .into_iter()
        .enumerate()
        .map(|(i, (w, sink))| (w, if i == 1 { poison.clone() } else { note(1) }, sink))
        .collect();
    let results = append_as_one_batch(&store, work);
    for (_, r) in &results {
        let m = r.as_ref().unwrap_err().to_string();
        assert!(m.contains("poisoned entry"), "{m}");
    }
    for ((sink, mut rx), (w, _)) in sinks.iter().zip(receivers).zip(&results) {
        assert_eq!(sink.len(), 2, "nothing published");
        assert!(rx.try_recv().is_err(), "nothing broadcast");
        assert_eq!(store.session(w.session()).unwrap().last_seq, Seq(2));
    }
    store.writer().execute_batch("DROP TRIGGER poison").unwrap();
    for ((mut w, _), sink) in results.into_iter().zip(&sinks) {
        assert_eq!(
            w.append(note(2), sink).unwrap(),
            Seq(3),
            "no gap after the failure"
        );
    }
}

#[test]
fn a_writer_out_of_step_fails_alone_and_recovers() {
    let f = fixture();
    let store = f.store.clone();
    let sessions: Vec<(SqliteSessionWriter, SessionLogSink)> =
        (0..3).map(|_| session_with(&store, 1)).collect();
    // An entry written behind the lock's back, as a hand edit would.
    let bumped = sessions[1].0.session().clone();
    store
        .writer()
        .execute_batch(&format!(
            "INSERT INTO entries (session_id, seq, ts, kind, body) VALUES ('{bumped}', 3, 1, \
             'turn_end', '{{\"type\":\"turn_end\",\"ts\":1,\"turn_count\":9}}'); \
             UPDATE sessions SET last_seq = 3, entry_count = 3 WHERE id = '{bumped}';"
        ))
        .unwrap();
    let work = sessions
        .into_iter()
        .map(|(w, sink)| (w, note(1), sink))
        .collect();
    let results = append_as_one_batch(&store, work);
    let outcomes: Vec<String> = results
        .iter()
        .map(|(_, r)| match r {
            Ok(seq) => format!("ok {seq}"),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok 3".to_owned(),
            format!(
                "cannot append seq 3 to session {bumped}: its last_seq on disk is not 2; \
                 it was written without the session's lock"
            ),
            "ok 3".to_owned(),
        ]
    );
    // The writer reads the counter again and carries on after it.
    let (mut w, _) = results.into_iter().nth(1).unwrap();
    let sink = store.load_sink(&bumped).unwrap();
    assert_eq!(w.append(note(2), &sink).unwrap(), Seq(4));
}

/// A panic at `fault` inside a batch of three writers: every caller gets an
/// error saying whether its entry was written, and the store stays usable.
fn check_panic(fault: crate::commit::Fault) -> Vec<String> {
    let f = fixture();
    let store = f.store.clone();
    let sessions: Vec<(SqliteSessionWriter, SessionLogSink)> =
        (0..3).map(|_| session_with(&store, 1)).collect();
    let sinks: Vec<SessionLogSink> = sessions.iter().map(|(_, s)| s.clone()).collect();
    store.inject(fault);
    let work = sessions
        .into_iter()
        .map(|(w, sink)| (w, note(1), sink))
        .collect();
    let results = append_as_one_batch(&store, work);
    let mut out: Vec<String> = results
        .iter()
        .map(|(w, r)| {
            let e = r.as_ref().unwrap_err().to_string();
            e.replace(w.session().as_str(), "S")
        })
        .collect();
    out.dedup();
    // Nothing was published, whatever reached the disk.
    for sink in &sinks {
        assert_eq!(sink.len(), 2);
    }
    // The store is usable: every writer appends again, and its seq follows
    // what is on disk.
    for ((mut w, _), sink) in results.into_iter().zip(&sinks) {
        let on_disk = store.session(w.session()).unwrap().last_seq;
        let fresh = store.load_sink(w.session()).unwrap();
        let seq = w.append(note(2), &fresh).unwrap();
        assert_eq!(seq, on_disk.next());
        out.push(format!("then seq {seq}, mirror at {}", sink.end_seq()));
    }
    out.dedup();
    out
}

#[test]
fn a_panic_in_a_batch_fails_its_callers_and_leaves_the_store_usable() {
    use crate::commit::Fault;
    assert_eq!(
        check_panic(Fault::BeforeCommit),
        [
            "appending seq 3 to session S failed: the commit panicked (injected fault \
             BeforeCommit); nothing was written",
            "then seq 3, mirror at 2",
        ]
    );
    assert_eq!(
        check_panic(Fault::AfterCommit),
        [
            "appending seq 3 to session S failed: the commit panicked (injected fault \
             AfterCommit); the entry is on disk but was not published",
            "then seq 4, mirror at 2",
        ]
    );
}

#[test]
fn every_published_entry_is_already_visible_to_other_connections() {
    let f = fixture();
    let store = f.store.clone();
    let sessions: Vec<(SqliteSessionWriter, SessionLogSink)> =
        (0..4).map(|_| session_with(&store, 0)).collect();
    // A watcher per session: every entry it receives live must already be
    // readable from a separate connection, i.e. committed.
    let watchers: Vec<_> = sessions
        .iter()
        .map(|(w, sink)| {
            let (_, mut rx) = sink.subscribe_with_snapshot();
            let path = f.path.clone();
            let id = w.session().clone();
            std::thread::spawn(move || {
                let conn =
                    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .unwrap();
                let mut seen = 0;
                while seen < 200 {
                    let c = rx.blocking_recv().unwrap();
                    let on_disk: i64 = conn
                        .query_row(
                            "SELECT count(*) FROM entries WHERE session_id = ?1 AND seq = ?2",
                            params![id.as_str(), c.seq.get()],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(
                        on_disk, 1,
                        "seq {} published before it was committed",
                        c.seq
                    );
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = sessions
        .into_iter()
        .map(|(mut w, sink)| {
            std::thread::spawn(move || {
                for n in 0..200 {
                    w.append(note(n), &sink).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for w in watchers {
        assert_eq!(w.join().unwrap(), 200);
    }
    let stats = store.commit_stats();
    assert!(stats.entries >= 800 && stats.transactions <= stats.entries);
}

#[test]
fn pages_before_a_seq_end_just_below_it() {
    let f = fixture();
    // seq 1 (SessionStart) and 9 more.
    let id = session_with(&f.store, 9).0.session().clone();
    let check = |before: u64, limit: usize| -> String {
        let page = f.store.entries_before(&id, Seq(before), limit).unwrap();
        let seqs: Vec<String> = page.iter().map(|c| c.seq.to_string()).collect();
        seqs.join(" ")
    };
    let cases = [
        (11, 3, "8 9 10"),
        (5, 3, "2 3 4"),
        (4, 3, "1 2 3"),
        (3, 3, "1 2"),
        (2, 1, "1"),
        (1, 3, ""),
        (0, 3, ""),
        (11, 100, "1 2 3 4 5 6 7 8 9 10"),
        (20, 3, ""),
    ];
    for (before, limit, want) in cases {
        assert_eq!(check(before, limit), want, "before {before} limit {limit}");
    }
}
