//! Export and import tests. They guard against a round trip that changes a
//! byte of a body or a counter, against entries of a newer kind being lost on
//! the way, and against an import that half-writes a file with a bad line.

use std::sync::Arc;

use podlog_entry::{AssistantContent, LogEntry, Message, Seq, SessionId, StepClock};
use podlog_sink::SessionLogSink;

use super::Line;
use crate::error::Context;
use crate::{NewSession, SequentialIds, SqliteStore, StoreError, StoreOptions};

struct Db {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

fn empty_db(prefix: &str) -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path().join("podlog.db"),
        StoreOptions {
            clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
            ids: Arc::new(SequentialIds::new(prefix)),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    Db {
        _dir: dir,
        store: Arc::new(store),
    }
}

fn id(text: &str) -> SessionId {
    SessionId::new(text).unwrap()
}

/// s-0001: new, 6 entries (one of an unknown newer kind); s-0002: forked
/// from s-0001@4, then 2 more entries; s-0003: compacted from s-0002@3;
/// s-0004: an unrelated new session.
fn source() -> Db {
    let db = empty_db("s");
    let store = &db.store;
    let (s1, start) = store
        .create_session(NewSession {
            title: Some("tabs\tand \"quotes\" {braces}".into()),
            system_prompt: Some("be brief".into()),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let entries = [
        LogEntry::UserInput {
            ts: 2,
            text: "multi\nline \u{e9}\u{1f600} input".into(),
            attachments: vec![],
        },
        LogEntry::AssistantItem {
            ts: 3,
            item: AssistantContent::ToolCall {
                id: "c1".into(),
                name: "read".into(),
                arguments: serde_json::json!({"path": "a\"}b", "n": 1.5}),
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
        LogEntry::from_json(r#"{"type":"hologram","ts":6,"frames":[1,2],"z":{"k":null}}"#).unwrap(),
    ];
    let mut w = store.session_writer(&s1).unwrap();
    for entry in entries {
        w.append(entry, &sink).unwrap();
    }
    let (s2, start) = store.fork(&s1, Seq(4)).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&s2).unwrap();
    for n in 0..2 {
        w.append(
            LogEntry::TurnEnd {
                ts: 10 + n,
                turn_count: n,
            },
            &sink,
        )
        .unwrap();
    }
    store
        .compact(
            &s2,
            vec![Message::System {
                text: "summary".into(),
            }],
        )
        .unwrap();
    store.create_session(NewSession::default()).unwrap();
    db
}

fn export(store: &SqliteStore, session: &str, with_ancestors: bool) -> String {
    let mut out = Vec::new();
    store
        .export(&id(session), with_ancestors, &mut out, |_| {})
        .unwrap();
    String::from_utf8(out).unwrap()
}

type Rows = (Vec<String>, Vec<(String, u64, u64, String, String)>);

/// Every row of both tables, as stored.
fn rows(store: &SqliteStore) -> Rows {
    store
        .with_reader(|conn| read_rows(conn).context(|| "reading rows".to_owned()))
        .unwrap()
}

fn read_rows(conn: &rusqlite::Connection) -> rusqlite::Result<Rows> {
    {
        {
            let mut s = conn.prepare(
                "SELECT id || '|' || origin || '|' || coalesce(parent_id, '-') || '|' || \
                 coalesce(parent_seq, '-') || '|' || created_at || '|' || updated_at || '|' || \
                 last_seq || '|' || entry_count || '|' || coalesce(title, '-') \
                 FROM sessions ORDER BY id",
            )?;
            let sessions = s
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let mut e = conn.prepare(
                "SELECT session_id, seq, ts, kind, body FROM entries ORDER BY session_id, seq",
            )?;
            let entries = e
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((sessions, entries))
        }
    }
}

#[test]
fn export_then_import_reproduces_sessions_and_bodies_byte_for_byte() {
    let src = source();
    let text = export(&src.store, "s-0003", true);
    let dst = empty_db("other");
    let mut read_so_far = Vec::new();
    let done = dst
        .store
        .import(text.as_bytes(), |n| read_so_far.push(n))
        .unwrap();
    assert_eq!(
        done.sessions,
        vec![id("s-0001"), id("s-0002"), id("s-0003")]
    );
    assert_eq!(done.entries, 6 + 3 + 1);
    assert_eq!(read_so_far.last(), Some(&(text.len() as u64)));
    assert_eq!(read_so_far.len(), text.lines().count());

    let (src_sessions, src_entries) = rows(&src.store);
    let (dst_sessions, dst_entries) = rows(&dst.store);
    assert_eq!(
        dst_sessions[..],
        src_sessions[..3],
        "s-0004 was not exported"
    );
    let src_entries: Vec<_> = src_entries
        .into_iter()
        .filter(|e| e.0 != "s-0004")
        .collect();
    assert_eq!(dst_entries, src_entries);
    assert!(
        dst_entries.iter().any(|e| e.3 == "hologram"),
        "the unknown kind came through"
    );
    assert_eq!(dst.store.verify(None).unwrap(), vec![]);
    assert_eq!(
        export(&dst.store, "s-0003", true),
        text,
        "exporting the import gives the same file"
    );
    for s in ["s-0001", "s-0002", "s-0003"] {
        assert_eq!(
            dst.store.session(&id(s)).unwrap(),
            src.store.session(&id(s)).unwrap()
        );
    }
}

#[test]
fn the_export_format_is_one_header_then_one_line_per_entry() {
    let src = source();
    let text = export(&src.store, "s-0002", false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 3);
    assert_eq!(
        lines[0],
        r#"{"type":"podlog.session","format_version":1,"id":"s-0002","origin":"fork","parent_id":"s-0001","parent_seq":4,"created_at":1700000006000,"updated_at":1700000008000,"last_seq":3,"title":"tabs\tand \"quotes\" {braces}"}"#
    );
    assert_eq!(
        lines[2],
        r#"{"session_id":"s-0002","seq":2,"entry":{"type":"turn_end","ts":10,"turn_count":0}}"#
    );
    let with = export(&src.store, "s-0002", true);
    assert!(with.starts_with(r#"{"type":"podlog.session","format_version":1,"id":"s-0001""#));
    assert!(with.ends_with(&text), "the session itself comes last");
    let mut counted = Vec::new();
    src.store
        .export(&id("s-0002"), true, &mut Vec::new(), |n| counted.push(n))
        .unwrap();
    assert_eq!(counted, (1..=9).collect::<Vec<u64>>());
    let planned: u64 = src
        .store
        .export_sessions(&id("s-0002"), true)
        .unwrap()
        .iter()
        .map(|s| s.entry_count)
        .sum();
    assert_eq!(planned, 9);
}

/// Imports `text` into a database that already holds s-0004's twin
/// (`s-0001` of its own), and returns the error, checking nothing changed.
fn refused(text: &str) -> String {
    let dst = empty_db("s");
    dst.store.create_session(NewSession::default()).unwrap();
    let before = rows(&dst.store);
    let err = dst.store.import(text.as_bytes(), |_| {}).unwrap_err();
    assert!(
        matches!(err, StoreError::Import { .. }),
        "an import error: {err:?}"
    );
    assert_eq!(rows(&dst.store), before, "nothing half-written");
    err.to_string()
}

/// The export of s-0002 with its ancestors (s-0001 in lines 1 to 7, s-0002
/// in lines 8 to 11), with `edit` applied to its lines.
fn edited(edit: impl FnOnce(&mut Vec<String>)) -> String {
    let src = source();
    let mut text = export(&src.store, "s-0002", true);
    text = text.replace("\"id\":\"s-0001\"", "\"id\":\"x-1\"");
    text = text.replace("\"session_id\":\"s-0001\"", "\"session_id\":\"x-1\"");
    text = text.replace("\"parent_id\":\"s-0001\"", "\"parent_id\":\"x-1\"");
    text = text.replace(
        "\"forked_from\":{\"session_id\":\"s-0001\"",
        "\"forked_from\":{\"session_id\":\"x-1\"",
    );
    text = text.replace("\"s-0002\"", "\"x-2\"");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    lines.join("\n") + "\n"
}

#[test]
fn the_edited_base_file_imports() {
    let dst = empty_db("s");
    dst.store.create_session(NewSession::default()).unwrap();
    let done = dst.store.import(edited(|_| {}).as_bytes(), |_| {}).unwrap();
    assert_eq!(done.sessions, vec![id("x-1"), id("x-2")]);
    assert_eq!(dst.store.verify(None).unwrap(), vec![]);
}

/// A change to the lines of an export.
type Edit = dyn FnOnce(&mut Vec<String>);

#[test]
fn malformed_files_are_refused_whole_naming_the_line() {
    let cases: Vec<(Box<Edit>, &str)> = vec![
        (
            Box::new(|l| l[2] = "{\"session_id\":\"x-1\",\"seq\":3,".into()),
            "line 3: not JSON: EOF while parsing a value at line 1 column 28",
        ),
        (
            Box::new(|l| l[2] = "[1, 2]".into()),
            "line 3: not a JSON object",
        ),
        (
            Box::new(|l| {
                l.remove(0);
            }),
            "line 1: an entry line before any session header",
        ),
        (
            Box::new(|l| {
                l.remove(3);
            }),
            "line 4: session x-1: expected seq 3, found seq 4",
        ),
        (
            Box::new(|l| {
                l.remove(1);
            }),
            "line 2: session x-1: expected seq 1, found seq 2",
        ),
        (
            Box::new(|l| {
                l[1] = l[1].replace("\"type\":\"session_start\"", "\"type\":\"user_input\"")
            }),
            "line 2: session x-1 seq 1: malformed user_input entry: missing field `text`",
        ),
        (
            Box::new(|l| l[2] = l[2].replace("\"text\":", "\"txet\":")),
            "line 3: session x-1 seq 2: malformed user_input entry: missing field `text`",
        ),
        (
            Box::new(|l| {
                let start = l[1].replace("\"seq\":1", "\"seq\":3");
                l[3] = start;
            }),
            "line 4: session x-1 seq 3: a SessionStart after seq 1 (only seq 1 may hold one)",
        ),
        (
            Box::new(|l| {
                l.drain(0..7);
            }),
            "line 1: session x-2: its parent x-1@4 is neither in the database nor earlier in \
             the file (export with --with-ancestors puts ancestors first)",
        ),
        (
            Box::new(|l| l[7] = l[7].replace("\"parent_seq\":4", "\"parent_seq\":40")),
            "line 8: session x-2: its parent x-1@40 is neither in the database nor earlier in \
             the file (export with --with-ancestors puts ancestors first)",
        ),
        (
            Box::new(|l| l[8] = l[8].replace("\"seq\":4}", "\"seq\":5}")),
            "line 9: session x-2 seq 1: the session row says forked from x-1@4 but its \
             SessionStart says forked from x-1@5",
        ),
        (
            Box::new(|l| {
                l.truncate(6);
            }),
            "line 1: session x-1: the header says last_seq 6 but the file holds 5 of its \
             entries (is the file cut short?)",
        ),
        (
            Box::new(|l| {
                l.swap(5, 8);
            }),
            "line 6: entry of session \"x-2\" inside session x-1 (each session's entries \
             follow its header)",
        ),
        (
            Box::new(|l| l[0] = l[0].replace("\"x-1\"", "\"s-0001\"")),
            "line 1: session s-0001 already exists in the database; import never merges into \
             an existing session",
        ),
        (
            Box::new(|l| {
                let again = l[0..7].to_vec();
                l.extend(again);
            }),
            "line 12: session x-1 appears twice in the file",
        ),
        (
            Box::new(|l| l[0] = l[0].replace("\"format_version\":1", "\"format_version\":2")),
            "line 1: export format version 2 is newer than the 1 this podlog reads; upgrade \
             podlog to import it",
        ),
        (
            Box::new(|l| l.insert(3, "{\"type\":\"podlog.comment\"}".into())),
            "line 4: unknown line type \"podlog.comment\" (want \"podlog.session\" or an entry \
             line)",
        ),
        (
            Box::new(|l| l[7] = l[7].replace("\"origin\":\"fork\"", "\"origin\":\"new\"")),
            "line 8: session x-2: a new session cannot have a parent",
        ),
        (
            Box::new(|l| l[2] = r#"{"session_id":"x-1","seq":2,"entry":null}"#.into()),
            "line 3: session x-1 seq 2: entry must be a JSON object",
        ),
        (
            Box::new(|l| l[2] = l[2].replacen("\"entry\":", "\"entry\":{},\"entry\":", 1)),
            "line 3: duplicate field `entry` at line 1 column",
        ),
        (Box::new(|l| l.clear()), "line 1: the file holds no session"),
    ];
    for (edit, want) in cases {
        let got = refused(&edited(edit));
        assert!(got.starts_with(want), "want {want}\n got {got}");
    }
    assert_eq!(
        refused("{\"type\":\"podlog.session\"}\n"),
        "line 1: session header: format_version must be a whole number"
    );
}

#[test]
fn importing_the_same_file_twice_is_refused_the_second_time() {
    let src = source();
    let text = export(&src.store, "s-0001", false);
    let dst = empty_db("other");
    dst.store.import(text.as_bytes(), |_| {}).unwrap();
    let before = rows(&dst.store);
    let err = dst.store.import(text.as_bytes(), |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("session s-0001 already exists"),
        "{err}"
    );
    assert_eq!(rows(&dst.store), before);
}

#[test]
fn blank_lines_and_crlf_are_accepted_and_bodies_kept_as_written() {
    let src = source();
    let text = export(&src.store, "s-0001", false).replace('\n', "\r\n\r\n");
    // A hand-written entry: keys in another order, spaces, a body that is
    // valid JSON but not podlog's own spelling of it.
    let text = text.replace(
        r#"{"session_id":"s-0001","seq":5,"entry":{"type":"turn_end","ts":5,"turn_count":1}}"#,
        r#"{ "entry" : { "turn_count": 1, "type": "turn_end", "ts": 5 } , "seq": 5, "session_id": "s-0001" }"#,
    );
    let dst = empty_db("other");
    dst.store.import(text.as_bytes(), |_| {}).unwrap();
    let (_, entries) = rows(&dst.store);
    assert_eq!(
        entries[4].4,
        r#"{ "turn_count": 1, "type": "turn_end", "ts": 5 }"#
    );
    assert_eq!(dst.store.verify(None).unwrap(), vec![]);
}

/// What import reads from one line (taken as line 7): the text of its
/// `"entry"` member exactly as written, or why the line is refused.
fn entry_text(text: &str) -> String {
    match Line::parse(7, text) {
        Ok(Line {
            entry: Some(raw), ..
        }) => raw.get().to_owned(),
        Ok(Line { entry: None, rest }) => format!("no entry, {} other members", rest.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_entry_member_is_read_exactly_as_written() {
    let cases = [
        (r#"{"entry":{"a":1}}"#, r#"{"a":1}"#),
        (r#"{ "seq" : 1 , "entry" : [1, "]}"] }"#, r#"[1, "]}"]"#),
        (r#"{"x":"\"entry\":","entry":"\\"}"#, r#""\\""#),
        (r#"{"\u0065ntry":true}"#, "true"),
        ("{\"entry\" :\t{ \"b\" : \"}\" }\r\n}", r#"{ "b" : "}" }"#),
        (r#"{"entry":null}"#, "null"),
        (r#"{"other":null,"seq":2}"#, "no entry, 2 other members"),
        (
            r#"{"entry":1,"entry":{"b":"}"}}"#,
            "line 7: duplicate field `entry` at line 1 column 18",
        ),
        ("[]", "line 7: not a JSON object"),
        (" 17", "line 7: not a JSON object"),
        (
            r#"{"entry":{"a":1}"#,
            "line 7: not JSON: EOF while parsing an object at line 1 column 16",
        ),
        (
            r#"{"entry":{"a":1}} x"#,
            "line 7: not JSON: trailing characters at line 1 column 19",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(entry_text(text), want, "{text}");
    }
}
