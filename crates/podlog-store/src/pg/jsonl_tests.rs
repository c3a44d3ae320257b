//! Export and import, written once and run against both stores: a SQLite
//! [`Store`] in a temporary folder and a [`PgStore`] in a schema of its
//! own (see [`Backend`]). They guard against the two backends drifting
//! apart: an export of the same sessions that differs by a byte, an import
//! that one store accepts and the other refuses (or refuses in other
//! words), an import that half-writes a bad file, counters set otherwise,
//! secrets brought in unredacted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{AssistantContent, LogEntry, Message, Seq, SessionId, StepClock};
use podlog_sink::SessionLogSink;

use super::super::tests::{options, Schema};
use super::super::PgStore;
use crate::{
    NewSession, Problem, Result, SequentialIds, SessionInfo, Store, StoreError, StoreOptions,
    Transfer,
};

/// A store of either backend, so that each check is written once.
pub(crate) enum Backend {
    Sqlite {
        store: Arc<Store>,
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Pg {
        store: Arc<PgStore>,
        schema: Box<Schema>,
    },
}

impl Backend {
    /// An empty SQLite store, with the PostgreSQL tests' clock and ids.
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podlog.db");
        let store = Arc::new(Store::open(&path, options()).unwrap());
        Backend::Sqlite {
            store,
            path,
            _dir: dir,
        }
    }

    /// An empty PostgreSQL store whose redaction key is `key_of`'s (so both
    /// redact a secret to the same marker).
    pub(crate) fn pg_with_key_of(key_of: &Backend) -> Self {
        let schema = Schema::new();
        std::fs::copy(
            key_of.key_file(),
            schema.keys.path().join("pg.redaction-key"),
        )
        .unwrap();
        let store = schema.open();
        Backend::Pg {
            store,
            schema: Box::new(schema),
        }
    }

    /// A SQLite store and a PostgreSQL store with the same redaction key.
    pub(crate) fn both() -> [Backend; 2] {
        let sqlite = Backend::sqlite();
        let pg = Backend::pg_with_key_of(&sqlite);
        [sqlite, pg]
    }

    fn key_file(&self) -> PathBuf {
        match self {
            Backend::Sqlite { path, .. } => crate::redaction::key_path(path),
            Backend::Pg { schema, .. } => schema.keys.path().join("pg.redaction-key"),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Pg { .. } => "postgres",
        }
    }

    pub(crate) fn import(&self, bytes: &[u8]) -> Result<Transfer> {
        match self {
            Backend::Sqlite { store, .. } => store.import(bytes, |_| {}),
            Backend::Pg { store, .. } => store.import(bytes, |_| {}),
        }
    }

    pub(crate) fn export(&self, id: &SessionId, with_ancestors: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut counted = 0;
        let done = match self {
            Backend::Sqlite { store, .. } => {
                store.export(id, with_ancestors, &mut out, |n| counted = n)
            }
            Backend::Pg { store, .. } => {
                store.export(id, with_ancestors, &mut out, |n| counted = n)
            }
        }?;
        assert_eq!(
            done.entries,
            counted,
            "{}: progress ends at the total",
            self.name()
        );
        Ok(out)
    }

    pub(crate) fn export_sessions(
        &self,
        id: &SessionId,
        with_ancestors: bool,
    ) -> Result<Vec<SessionInfo>> {
        match self {
            Backend::Sqlite { store, .. } => store.export_sessions(id, with_ancestors),
            Backend::Pg { store, .. } => store.export_sessions(id, with_ancestors),
        }
    }

    /// Every session row, by id.
    pub(crate) fn sessions(&self) -> Vec<SessionInfo> {
        let listed = match self {
            Backend::Sqlite { store, .. } => store.sessions(),
            Backend::Pg { store, .. } => store.sessions(),
        };
        let mut all: Vec<SessionInfo> = listed.unwrap().into_iter().collect::<Result<_>>().unwrap();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    pub(crate) fn verify(&self, only: Option<&SessionId>) -> Result<Vec<Problem>> {
        match self {
            Backend::Sqlite { store, .. } => store.verify(only),
            Backend::Pg { store, .. } => store.verify(only),
        }
    }

    pub(crate) fn verify_scope(&self, only: Option<&SessionId>) -> Result<(u64, u64)> {
        match self {
            Backend::Sqlite { store, .. } => store.verify_scope(only),
            Backend::Pg { store, .. } => store.verify_scope(only),
        }
    }

    /// Edits the tables behind podlog's back: on SQLite with foreign keys
    /// and CHECK constraints off, on PostgreSQL as the admin in the store's
    /// schema.
    pub(crate) fn corrupt(&mut self, sql: &str) {
        match self {
            Backend::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(
                    "PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;",
                )
                .unwrap();
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Backend::Pg { schema, .. } => schema.sql(&format!("SET search_path TO {{s}}; {sql}")),
        }
    }
}

/// Every problem, one a line.
pub(crate) fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn id(text: &str) -> SessionId {
    SessionId::new(text).unwrap()
}

/// A SQLite store with s-0001 (new: a payload out of line, a secret, an
/// unknown newer kind), s-0002 (forked from s-0001@4, then one more entry)
/// and s-0003 (compacted from s-0002@5).
pub(crate) fn source() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = Arc::new(
        Store::open(
            &path,
            StoreOptions {
                clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
                ids: Arc::new(SequentialIds::new("s")),
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let (s1, start) = store
        .create_session(NewSession {
            title: Some("tabs\tand \"quotes\"".into()),
            system_prompt: Some("be brief".into()),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let big = format!("{}\u{e9}", "x".repeat(THRESHOLD + 10));
    let entries = [
        LogEntry::UserInput {
            ts: 2,
            text: "token ghp_FAKEfake0000000000000000000000000000 \u{1f600}".into(),
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
            output: big.clone(),
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
    drop(w);
    let (s2, start) = store.fork(&s1, Seq(4)).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = store.session_writer(&s2).unwrap();
    // The same large string again: stored once.
    w.append(
        LogEntry::ToolResult {
            ts: 7,
            call_id: "c2".into(),
            output: big,
            is_error: true,
        },
        &sink,
    )
    .unwrap();
    drop(w);
    store
        .compact(
            &s2,
            vec![Message::System {
                text: "summary".into(),
            }],
        )
        .unwrap();
    Backend::Sqlite {
        store,
        path,
        _dir: dir,
    }
}

/// The whole store as one file: every session, parents first, without
/// ancestors.
pub(crate) fn export_all(b: &Backend) -> Vec<u8> {
    let mut sessions = b.sessions();
    sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut out = Vec::new();
    for s in sessions {
        out.extend(b.export(&s.id, false).unwrap());
    }
    out
}

/// What importing `file` into `b` does, in words: refused (and nothing
/// left behind), or imported, its export, verification and counters.
fn round_trip(b: &Backend, bytes: &[u8]) -> String {
    match b.import(bytes) {
        Err(e) => {
            assert_eq!(
                b.sessions(),
                vec![],
                "{}: a refused import leaves nothing",
                b.name()
            );
            assert_eq!(b.verify_scope(None).unwrap(), (0, 0));
            format!("refused: {e}")
        }
        Ok(done) => {
            let mut out = Vec::new();
            for id in &done.sessions {
                out.extend(b.export(id, false).unwrap());
            }
            let mut text = format!(
                "imported {:?}, {} entries; export {}\n",
                done.sessions,
                done.entries,
                if out == bytes {
                    "reproduces the file"
                } else {
                    "differs from the file"
                }
            );
            for s in b.sessions() {
                writeln!(text, "{s:?}").ok();
            }
            writeln!(text, "verify: {:?}", lines(&b.verify(None).unwrap())).ok();
            text
        }
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the fixtures are in {}", dir.display());
    files
}

#[test]
fn every_fixture_imports_exports_and_fails_alike_on_both_stores() {
    for file in fixtures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&file).unwrap();
        let [sqlite, pg] = Backend::both();
        let on_sqlite = round_trip(&sqlite, &bytes);
        let on_pg = round_trip(&pg, &bytes);
        assert_eq!(on_sqlite, on_pg, "{name}: the stores disagree");
        if name.starts_with("malformed") {
            assert!(on_pg.starts_with("refused: line "), "{name}: {on_pg}");
        } else {
            assert!(
                on_pg.contains("export reproduces the file") && on_pg.ends_with("verify: \"\"\n"),
                "{name}: {on_pg}"
            );
            // Import never merges, with the same words on both.
            let again = (sqlite.import(&bytes), pg.import(&bytes));
            let (Err(a), Err(b)) = again else {
                panic!("{name}: a second import was accepted")
            };
            assert_eq!(a.to_string(), b.to_string(), "{name}");
            assert!(a.to_string().contains("already exists"), "{a}");
        }
    }
}

#[test]
fn sqlite_to_postgres_and_back_is_byte_for_byte_and_verifies_clean() {
    let src = source();
    let file = export_all(&src);
    let pg = Backend::pg_with_key_of(&src);
    let copy = Backend::sqlite();
    let done = pg.import(&file).unwrap();
    assert_eq!(done, copy.import(&file).unwrap());
    assert_eq!(done.entries, 6 + 2 + 1);
    assert_eq!(export_all(&pg), file, "postgres export of the import");
    assert_eq!(export_all(&copy), file, "sqlite export of the import");
    // Each session with its ancestors, and the listing of what is written.
    for s in src.sessions() {
        assert_eq!(
            pg.export(&s.id, true).unwrap(),
            src.export(&s.id, true).unwrap(),
            "{} with ancestors",
            s.id
        );
        assert_eq!(
            pg.export_sessions(&s.id, true).unwrap(),
            copy.export_sessions(&s.id, true).unwrap()
        );
    }
    // Counters set from the rows: as the source wrote them, but the
    // redactions (the secret came in already redacted).
    let strip = |mut s: SessionInfo| {
        s.redactions = 0;
        s
    };
    assert_eq!(
        pg.sessions().into_iter().map(strip).collect::<Vec<_>>(),
        src.sessions().into_iter().map(strip).collect::<Vec<_>>()
    );
    assert_eq!(pg.sessions(), copy.sessions());
    assert_eq!(
        pg.verify_scope(None).unwrap(),
        src.verify_scope(None).unwrap()
    );
    assert_eq!(
        pg.verify_scope(Some(&id("s-0002"))).unwrap(),
        (1, 2),
        "s-0002: its SessionStart (the history up to the cut) and one more"
    );
    for b in [&src, &pg, &copy] {
        assert_eq!(lines(&b.verify(None).unwrap()), "", "{}", b.name());
    }
    // The large string went out of line once, on PostgreSQL as on SQLite.
    let Backend::Pg { mut schema, .. } = pg else {
        unreachable!()
    };
    assert_eq!(schema.number("SELECT count(*) FROM {s}.payloads"), 1);
    // s-0001 seq 4, s-0002's SessionStart (the history holds it) and seq 2.
    assert_eq!(schema.number("SELECT count(*) FROM {s}.payload_refs"), 3);
}

#[test]
fn an_import_redacts_secrets_and_counts_them_alike() {
    let secret = "ghp_FAKEfake0000000000000000000000000000";
    let file = format!(
        "{}\n{}\n{}\n",
        r#"{"type":"podlog.session","format_version":1,"id":"r-1","origin":"new","parent_id":null,"parent_seq":null,"created_at":1,"updated_at":2,"last_seq":2,"title":"key TITLE"}"#
            .replace("TITLE", secret),
        r#"{"session_id":"r-1","seq":1,"entry":{"type":"session_start","ts":1,"system_prompt":null,"config":{"model":"m","temperature":null,"max_output_tokens":null,"tools":[]},"history":[],"forked_from":null,"compacted_from":null}}"#,
        r#"{"session_id":"r-1","seq":2,"entry":{"type":"user_input","ts":2,"text":"use SECRET","attachments":[]}}"#
            .replace("SECRET", secret),
    );
    let [sqlite, pg] = Backend::both();
    let mut exports = Vec::new();
    for b in [&sqlite, &pg] {
        b.import(file.as_bytes()).unwrap();
        let [s] = &b.sessions()[..] else {
            panic!("one session")
        };
        assert_eq!(s.redactions, 2, "{}: the title's and the entry's", b.name());
        let out = String::from_utf8(b.export(&s.id, false).unwrap()).unwrap();
        assert!(!out.contains(secret), "{}: {out}", b.name());
        exports.push(out);
        assert_eq!(lines(&b.verify(None).unwrap()), "", "{}", b.name());
    }
    assert_eq!(exports[0], exports[1]);
}

#[test]
fn a_bad_line_late_in_the_file_leaves_nothing_behind() {
    let src = source();
    let mut file = export_all(&src);
    // A good file, then a session whose entries stop short.
    file.extend_from_slice(
        br#"{"type":"podlog.session","format_version":1,"id":"late","origin":"new","parent_id":null,"parent_seq":null,"created_at":1,"updated_at":2,"last_seq":2,"title":null}"#,
    );
    file.push(b'\n');
    let [sqlite, pg] = Backend::both();
    let a = sqlite.import(&file[..]).unwrap_err().to_string();
    let b = pg.import(&file[..]).unwrap_err().to_string();
    assert_eq!(a, b);
    assert!(
        b.contains("the header says last_seq 2 but the file holds 0"),
        "{b}"
    );
    for b in [&sqlite, &pg] {
        assert_eq!(b.sessions(), vec![], "{}", b.name());
    }
    if let Backend::Pg { mut schema, .. } = pg {
        for table in ["entries", "payloads", "payload_refs"] {
            let n = schema.number(&format!("SELECT count(*) FROM {{s}}.{table}"));
            assert_eq!(n, 0, "{table}");
        }
    }
}

#[test]
fn unknown_sessions_and_corrupt_rows_fail_an_export_alike() {
    let src = source();
    let file = export_all(&src);
    let [mut sqlite, mut pg] = Backend::both();
    for b in [&mut sqlite, &mut pg] {
        b.import(&file).unwrap();
        let missing = b.export(&id("nope"), false).unwrap_err();
        assert!(
            matches!(&missing, StoreError::UnknownSession(s) if s == "nope"),
            "{}: {missing}",
            b.name()
        );
    }
    let mut outcomes = Vec::new();
    for (sql, session) in [
        // A gap.
        (
            "DELETE FROM entries WHERE session_id = 's-0001' AND seq = 3",
            "s-0001",
        ),
        // Entries that end before last_seq.
        (
            "UPDATE sessions SET last_seq = 9 WHERE id = 's-0002'",
            "s-0002",
        ),
        // A payload gone.
        ("DELETE FROM payloads", "s-0002"),
    ] {
        let mut pair = Vec::new();
        for b in [&mut sqlite, &mut pg] {
            b.corrupt(sql);
            pair.push(b.export(&id(session), false).unwrap_err().to_string());
        }
        assert_eq!(pair[0], pair[1], "{sql}");
        outcomes.push(pair.remove(1));
    }
    assert_eq!(
        outcomes.join("\n"),
        "session s-0001 seq 3: entry missing (the next stored entry is seq 4)\n\
         session s-0002 seq 3: the session row's last_seq is 9 but the entries end at seq 2\n\
         session s-0002 seq 1: payload \
         abd7c391591f010fd363339a1a31e3e075720c6317eafa3bbbced42a1dc3cdc4 \
         (the string at $.history[2].output) is missing"
    );
}

#[test]
fn export_and_import_run_on_a_new_connection_when_the_pooled_one_ended() {
    let src = source();
    let file = export_all(&src);
    let pg = Backend::pg_with_key_of(&src);
    let Backend::Pg { store, mut schema } = pg else {
        unreachable!()
    };
    let mut end_pooled = || {
        let pids = store.pooled_backends();
        assert!(!pids.is_empty());
        for pid in pids {
            let ended: bool = schema
                .admin
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap()
                .get(0);
            assert!(ended);
        }
    };
    end_pooled();
    store.import(&file[..], |_| {}).unwrap();
    end_pooled();
    let mut out = Vec::new();
    store.export(&id("s-0003"), true, &mut out, |_| {}).unwrap();
    assert_eq!(out, src.export(&id("s-0003"), true).unwrap());
}

#[test]
fn two_imports_of_one_file_at_once_admit_one_and_refuse_the_other_in_words() {
    let src = source();
    let file = export_all(&src);
    let pg = Backend::pg_with_key_of(&src);
    let Backend::Pg { store, .. } = &pg else {
        unreachable!()
    };
    let barrier = std::sync::Barrier::new(2);
    let outcomes: Vec<Result<Transfer>> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    store.import(&file[..], |_| {})
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let (ok, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "{refused:?}");
    let Some(Err(e)) = refused.into_iter().next() else {
        unreachable!()
    };
    assert!(
        matches!(&e, StoreError::Import { line: 1, reason } if reason.contains("already exists")),
        "{e:?}"
    );
    assert_eq!(export_all(&pg), file);
}

#[test]
fn a_long_session_is_read_page_by_page_without_losing_a_gap() {
    let mut schema = Schema::new();
    let store = schema.open();
    let (mut w, sink) = super::super::tests::session(&store);
    let session = w.session().clone();
    for n in 2..=1100 {
        w.append(super::super::tests::note(n), &sink).unwrap();
    }
    drop(w);
    let mut out = Vec::new();
    let done = store.export(&session, false, &mut out, |_| {}).unwrap();
    assert_eq!(done.entries, 1100);
    let copy = Backend::sqlite();
    copy.import(&out[..]).unwrap();
    assert_eq!(copy.export(&session, false).unwrap(), out);
    assert_eq!(store.verify(None).unwrap(), vec![]);
    // One gap inside the first page (of 512 rows, ending at seq 513), one
    // just before the second page's first row.
    schema.sql(
        "DELETE FROM {s}.entries WHERE session_id = 's-0001' AND seq IN (300, 514, 515); \
         UPDATE {s}.sessions SET entry_count = 1097, \
           stored_bytes = (SELECT sum(octet_length(body::text)) FROM {s}.entries)",
    );
    assert_eq!(
        lines(&store.verify(None).unwrap()),
        "session s-0001 seq 300: entry missing (the next stored entry is seq 301)\n\
         session s-0001 seq 514: entries 514 to 515 missing"
    );
    let e = store
        .export(&session, false, &mut Vec::new(), |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "session s-0001 seq 300: entry missing (the next stored entry is seq 301)"
    );
}
