//! Retention on PostgreSQL: the same gc run on a SQLite store and a
//! PostgreSQL store must report, keep, delete and archive alike; then what
//! the rules say about held sessions and descendants, on PostgreSQL.
//!
//! Failures guarded against: a session deleted while a writer holds it; a
//! parent deleted under a descendant that stays; a payload another session
//! still references deleted; a dry run that writes; search hits or payload
//! references left behind by a deleted session; an archive that differs
//! from the other backend's.

use std::collections::HashMap;
use std::sync::Arc;

use podlog_entry::payload::THRESHOLD;
use podlog_entry::SessionId;
use podlog_sink::SessionLogSink;

use super::*;
use crate::payloads::tests::{output, result};
use crate::pg::search::tests::Pg;
use crate::pg::tests::options;
use crate::retention::{Kept, RetentionOptions, RetentionReport, Selection};
use crate::search::SearchQuery;
use crate::{NewSession, SqliteStore};

/// Sessions untouched before this are old.
const CUTOFF: u64 = 1_800_000_000_000;
const OLD: u64 = CUTOFF - 1;
const RECENT: u64 = CUTOFF + 1;

/// What a retention test does to either backend.
trait Backend {
    /// A session with `title` and one tool result per text of `outputs`,
    /// last touched at `updated_at`; its writer is closed.
    fn session(&mut self, title: Option<&str>, outputs: &[String], updated_at: u64) -> SessionId;
    fn retain(&self, selection: &Selection, options: &RetentionOptions) -> Result<RetentionReport>;
    fn ids(&self) -> Vec<String>;
    fn hits(&self, word: &str) -> usize;
    fn payloads(&self) -> i64;
}

struct Lite {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl Backend for Lite {
    fn session(&mut self, title: Option<&str>, outputs: &[String], updated_at: u64) -> SessionId {
        let (id, start) = self
            .store
            .create_session(NewSession {
                title: title.map(str::to_owned),
                ..NewSession::default()
            })
            .unwrap();
        let sink = SessionLogSink::with_initial([start]).unwrap();
        let mut w = self.store.session_writer(&id).unwrap();
        for (i, text) in outputs.iter().enumerate() {
            w.append(result(i as u64 + 2, text.clone()), &sink).unwrap();
        }
        self.store
            .writer()
            .execute(
                "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
                rusqlite::params![id.as_str(), updated_at],
            )
            .unwrap();
        id
    }
    fn retain(&self, selection: &Selection, options: &RetentionOptions) -> Result<RetentionReport> {
        self.store.retain(selection, options)
    }
    fn ids(&self) -> Vec<String> {
        listed(self.store.sessions().unwrap())
    }
    fn hits(&self, word: &str) -> usize {
        self.store.search(&query(word)).unwrap().hits.len()
    }
    fn payloads(&self) -> i64 {
        self.store
            .writer()
            .query_row("SELECT count(*) FROM payloads", [], |r| r.get(0))
            .unwrap()
    }
}

impl Backend for Pg {
    fn session(&mut self, title: Option<&str>, outputs: &[String], updated_at: u64) -> SessionId {
        let (id, start) = self
            .store
            .create_session(NewSession {
                title: title.map(str::to_owned),
                ..NewSession::default()
            })
            .unwrap();
        let sink = SessionLogSink::with_initial([start]).unwrap();
        let mut w = self.store.session_writer(&id).unwrap();
        for (i, text) in outputs.iter().enumerate() {
            w.append(result(i as u64 + 2, text.clone()), &sink).unwrap();
        }
        drop(w);
        touch(self, &id, updated_at);
        id
    }
    fn retain(&self, selection: &Selection, options: &RetentionOptions) -> Result<RetentionReport> {
        self.store.retain(selection, options)
    }
    fn ids(&self) -> Vec<String> {
        listed(self.store.sessions().unwrap())
    }
    fn hits(&self, word: &str) -> usize {
        self.store.search(&query(word)).unwrap().hits.len()
    }
    fn payloads(&self) -> i64 {
        let schema = &self.schema.name;
        let mut client =
            postgres::Client::connect(&crate::pg::tests::server_url(), postgres::NoTls).unwrap();
        client
            .query_one(&format!("SELECT count(*) FROM {schema}.payloads"), &[])
            .unwrap()
            .get(0)
    }
}

fn touch(pg: &mut Pg, id: &SessionId, updated_at: u64) {
    let sql = format!(
        "UPDATE {}.sessions SET updated_at = $2 WHERE id = $1",
        pg.schema.name
    );
    pg.schema
        .admin
        .execute(
            &sql,
            &[
                &id.as_str() as &(dyn postgres::types::ToSql + Sync),
                &(updated_at as i64),
            ],
        )
        .unwrap();
}

fn listed(rows: Vec<Result<SessionInfo>>) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .into_iter()
        .map(|s| s.unwrap().id.to_string())
        .collect();
    ids.sort();
    ids
}

fn query(word: &str) -> SearchQuery {
    SearchQuery {
        text: word.to_owned(),
        ..SearchQuery::default()
    }
}

/// A report as text: each unit's sessions and counts, each kept session
/// and why (a holder named only as held: its pid and time differ).
fn render(report: &RetentionReport) -> String {
    let mut s = format!(
        "dry run {}: {} sessions, {} entries, {} bytes, {} payloads\n",
        report.dry_run,
        report.sessions(),
        report.entries(),
        report.bytes(),
        report.payloads()
    );
    for r in &report.removed {
        let ids: Vec<&str> = r.sessions.iter().map(|s| s.id.as_str()).collect();
        s.push_str(&format!(
            "removed {}: {} entries ({} bytes), {} shares, {} payloads ({} bytes), {} archives\n",
            ids.join("+"),
            r.entries,
            r.entry_bytes,
            r.shares,
            r.payloads,
            r.payload_bytes,
            r.archives.len()
        ));
    }
    for Kept { session, because } in &report.kept {
        let why = match because {
            KeptBecause::Held { session, .. } => format!("{session} is held"),
            other => other.to_string(),
        };
        s.push_str(&format!("kept {}: {why}\n", session.id));
    }
    s
}

/// The scenario: `s-0001` old, with a payload of its own and one it shares
/// with `s-0002` (recent); `s-0003` old and titled; `s-0004` old, small.
/// A dry run, then a gc that keeps titled sessions and archives, then an
/// `rm` of the titled one.
fn check(b: &mut dyn Backend, archive: &std::path::Path) -> String {
    let shared = format!("sharedword {}", output(1, 2 * THRESHOLD));
    let own = format!("ownword {}", output(2, 3 * THRESHOLD));
    b.session(None, &[shared.clone(), own, "alphaword".into()], OLD);
    b.session(None, &[shared, "bravoword".into()], RECENT);
    b.session(Some("kept"), &["charlieword".into()], OLD);
    b.session(None, &[], OLD);
    let mut out = String::new();
    let state = |b: &dyn Backend| {
        format!(
            "sessions {:?}, payloads {}, hits: sharedword {} ownword {} alphaword {} \
             charlieword {}\n",
            b.ids(),
            b.payloads(),
            b.hits("sharedword"),
            b.hits("ownword"),
            b.hits("alphaword"),
            b.hits("charlieword")
        )
    };
    out.push_str(&state(b));
    let gc = Selection::UntouchedBefore(CUTOFF);
    let dry = RetentionOptions {
        dry_run: true,
        keep_titled: true,
        ..RetentionOptions::default()
    };
    out.push_str(&render(&b.retain(&gc, &dry).unwrap()));
    out.push_str(&state(b));
    let real = RetentionOptions {
        keep_titled: true,
        archive: Some(archive.to_owned()),
        ..RetentionOptions::default()
    };
    out.push_str(&render(&b.retain(&gc, &real).unwrap()));
    out.push_str(&state(b));
    let rm = Selection::Session(SessionId::new("s-0003").unwrap());
    out.push_str(&render(
        &b.retain(&rm, &RetentionOptions::default()).unwrap(),
    ));
    out.push_str(&state(b));
    out
}

/// What both backends report and keep: the dry run changes nothing; the
/// gc deletes `s-0001` and `s-0004` with their search rows and the payload
/// only `s-0001` referenced, keeps the one `s-0002` shares and the titled
/// `s-0003`, which `rm` then deletes.
const EXPECTED: &str = r#"
sessions ["s-0001", "s-0002", "s-0003", "s-0004"], payloads 2, hits: sharedword 2 ownword 1 alphaword 1 charlieword 1
dry run true: 2 sessions, 5 entries, 26484 bytes, 1 payloads
removed s-0001: 4 entries (1698 bytes), 0 shares, 1 payloads (24584 bytes), 0 archives
removed s-0004: 1 entries (202 bytes), 0 shares, 0 payloads (0 bytes), 0 archives
kept s-0003: has a title (--keep-titled)
sessions ["s-0001", "s-0002", "s-0003", "s-0004"], payloads 2, hits: sharedword 2 ownword 1 alphaword 1 charlieword 1
dry run false: 2 sessions, 5 entries, 26484 bytes, 1 payloads
removed s-0001: 4 entries (1698 bytes), 0 shares, 1 payloads (24584 bytes), 1 archives
removed s-0004: 1 entries (202 bytes), 0 shares, 0 payloads (0 bytes), 1 archives
kept s-0003: has a title (--keep-titled)
sessions ["s-0002", "s-0003"], payloads 1, hits: sharedword 1 ownword 0 alphaword 0 charlieword 1
dry run false: 1 sessions, 2 entries, 290 bytes, 0 payloads
removed s-0003: 2 entries (290 bytes), 0 shares, 0 payloads (0 bytes), 0 archives
sessions ["s-0002"], payloads 1, hits: sharedword 1 ownword 0 alphaword 0 charlieword 0
"#;

#[test]
fn a_gc_reports_deletes_and_archives_as_on_sqlite() {
    let lite_dir = tempfile::tempdir().unwrap();
    let mut lite = Lite {
        store: Arc::new(SqliteStore::open(lite_dir.path().join("podlog.db"), options()).unwrap()),
        _dir: tempfile::tempdir().unwrap(),
    };
    let mut pg = Pg::new();
    let (lite_archive, pg_archive) = (lite_dir.path().join("a"), lite_dir.path().join("b"));
    let on_lite = check(&mut lite, &lite_archive);
    let on_pg = check(&mut pg, &pg_archive);
    assert_eq!(on_pg, on_lite, "PostgreSQL (left) and SQLite (right)");
    assert_eq!(on_pg, EXPECTED.trim_start());
    let read = |dir: &std::path::Path| -> HashMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (read(&lite_archive), read(&pg_archive));
    let mut names: Vec<&String> = b.keys().collect();
    names.sort();
    assert_eq!(names, ["s-0001.jsonl", "s-0004.jsonl"]);
    for name in names {
        let parse = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(parse(&b[name]), parse(&a[name]), "{name}");
    }
    // Imported back, the archive is the session as it was.
    let back = SqliteStore::open(lite_dir.path().join("back.db"), options()).unwrap();
    back.import(
        &mut std::io::Cursor::new(b["s-0001.jsonl"].as_bytes()),
        |_| {},
    )
    .unwrap();
    assert_eq!(back.search(&query("ownword")).unwrap().hits.len(), 1);
}

/// A session a writer holds stays, and so does its parent (its descendant
/// stays); once the writer is gone both go, children first.
#[test]
fn a_held_session_and_its_ancestors_are_kept() {
    let mut pg = Pg::new();
    let parent = pg.session(None, &["parentword".into()], OLD);
    let child = SessionId::new("s-child").unwrap();
    pg.schema.sql(&format!(
        "INSERT INTO {{s}}.sessions (id, parent_id, parent_seq, origin, created_at, \
           updated_at, last_seq, entry_count) \
         SELECT 's-child', id, 1, 'fork', created_at, {OLD}, 1, 1 FROM {{s}}.sessions \
         WHERE id = '{parent}'; \
         INSERT INTO {{s}}.entries (session_id, seq, ts, kind, body) \
         SELECT 's-child', 1, ts, kind, body FROM {{s}}.entries \
         WHERE session_id = '{parent}' AND seq = 1"
    ));
    let (id, start) = (child.clone(), pg.store.session(&child).unwrap());
    assert_eq!(start.last_seq.get(), 1);
    let writer = pg.store.session_writer(&id).unwrap();
    let gc = Selection::UntouchedBefore(CUTOFF);
    let dry = RetentionOptions {
        dry_run: true,
        ..RetentionOptions::default()
    };
    for options in [dry, RetentionOptions::default()] {
        let report = pg.store.retain(&gc, &options).unwrap();
        assert_eq!(
            render(&report),
            format!(
                "dry run {}: 0 sessions, 0 entries, 0 bytes, 0 payloads\n\
                 kept s-0001: has descendants that stay: s-child (--with-descendants deletes \
                 them too)\n\
                 kept s-child: s-child is held\n",
                options.dry_run
            )
        );
        let KeptBecause::Held { holder, .. } = &report.kept[1].because else {
            panic!("{report:?}");
        };
        assert_eq!(holder.pid, Some(std::process::id()));
    }
    let with = RetentionOptions {
        with_descendants: true,
        ..RetentionOptions::default()
    };
    let report = pg.store.retain(&gc, &with).unwrap();
    assert_eq!(
        render(&report),
        "dry run false: 0 sessions, 0 entries, 0 bytes, 0 payloads\n\
         kept s-0001: s-child is held\n\
         kept s-child: s-child is held\n"
    );
    drop(writer);
    let dry = RetentionOptions {
        dry_run: true,
        ..RetentionOptions::default()
    };
    let report = pg.store.retain(&gc, &dry).unwrap();
    assert_eq!(report.removed.len(), 2, "{report:?}");
    assert_eq!(report.removed[0].sessions[0].id, child, "the child first");
    // With descendants: the family in one unit, one transaction.
    let report = pg.store.retain(&gc, &with).unwrap();
    let unit: Vec<&str> = report.removed[0]
        .sessions
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!((report.removed.len(), unit), (1, vec!["s-0001", "s-child"]));
    assert_eq!(report.entries(), 3);
    assert!(listed(pg.store.sessions().unwrap()).is_empty());
    assert_eq!(pg.hits("parentword"), 0);
    assert_eq!(pg.schema.number("SELECT count(*) FROM {s}.search"), 0);
    assert_eq!(pg.schema.number("SELECT count(*) FROM {s}.payload_refs"), 0);
    // The lock of a deleted session was let go: a writer of a new session
    // under the same id is not refused by a leftover lock.
    assert!(pg.store.lock_holder(&child).unwrap().is_none());
}

/// The space the store's tables take grows with what is written.
#[test]
fn space_usage_counts_the_store_tables() {
    let mut pg = Pg::new();
    let before = pg.store.space_usage().unwrap();
    pg.session(None, &[output(1, 40 * THRESHOLD)], OLD);
    let after = pg.store.space_usage().unwrap();
    assert!(after.file_bytes > before.file_bytes, "{before:?} {after:?}");
    assert_eq!(after.page_size, 8192);
    assert_eq!(after.pages * after.page_size, after.file_bytes);
}

/// While retention holds a unit's locks (from before its archive until its
/// delete commits), no writer can open its sessions, and another retention
/// run keeps them; once it lets go, a writer opens.
#[test]
fn no_writer_opens_a_session_retention_holds() {
    let mut pg = Pg::new();
    let id = pg.session(None, &[], OLD);
    let info = pg.store.session(&id).unwrap();
    let mut client = pg.store.connect().unwrap();
    pg.store
        .lock_unit(&mut client, std::slice::from_ref(&info))
        .unwrap();
    let err = pg.store.session_writer(&id).unwrap_err();
    assert!(matches!(err, StoreError::SessionLocked { .. }), "{err:?}");
    let report = pg
        .store
        .retain(
            &Selection::Session(id.clone()),
            &RetentionOptions::default(),
        )
        .unwrap();
    assert_eq!(
        render(&report),
        "dry run false: 0 sessions, 0 entries, 0 bytes, 0 payloads\n\
         kept s-0001: s-0001 is held\n"
    );
    client
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .unwrap();
    drop(pg.store.session_writer(&id).unwrap());
    let report = pg
        .store
        .retain(&Selection::Session(id), &RetentionOptions::default())
        .unwrap();
    assert_eq!(report.sessions(), 1);
}
