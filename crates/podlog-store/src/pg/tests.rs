//! The PostgreSQL store against the real server (`PODLOG_TEST_PG`, by
//! default `postgres://root@127.0.0.1:5432/test`). Each test works in a
//! schema of its own, made and dropped by [`Schema`], so tests run in
//! parallel. A server that cannot be reached fails the test: nothing is
//! skipped for want of a database.
//!
//! Failures guarded against: a migration run twice or half, a newer schema
//! written to; an entry that reads back other than it was written (bytes,
//! payloads, secrets); a gap or a duplicate seq under concurrent writers;
//! two writers on one session; a lock that outlives its connection; an
//! entry announced or published that did not commit; a row that does not
//! decode read as something else.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{LogEntry, Seq, SessionId, StepClock, SystemItem};
use podlog_sink::SessionLogSink;
use postgres::{Client, NoTls};

use super::*;
use crate::payloads::tests::{output, result};
use crate::{SequentialIds, Store, StoreOptions};

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The server's URL.
pub(crate) fn server_url() -> String {
    std::env::var("PODLOG_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

pub(crate) fn options() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    }
}

/// A schema of the test's own, dropped (with everything in it) when the
/// test ends, and a folder for the redaction key.
pub(crate) struct Schema {
    pub(crate) admin: Client,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) keys: tempfile::TempDir,
}

impl Schema {
    pub(crate) fn new() -> Self {
        let server = server_url();
        let mut admin = Client::connect(&server, NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {server} cannot be reached ({e}): the PostgreSQL store's tests \
                 need a server; start one (`.ci/run` does) or point PODLOG_TEST_PG at one"
            )
        });
        let name = format!("podlog_t_{}", uuid::Uuid::now_v7().simple());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-csearch_path%3D{name}");
        Schema {
            admin,
            name,
            url,
            keys: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn try_open(&self) -> Result<PgStore> {
        PgStore::open_with_key(&self.url, &options(), &self.keys.path().join("pg"))
    }

    pub(crate) fn open(&self) -> Arc<PgStore> {
        Arc::new(self.try_open().unwrap())
    }

    /// Runs `sql` (with `{s}` standing for the schema) as the admin.
    pub(crate) fn sql(&mut self, sql: &str) {
        let sql = sql.replace("{s}", &self.name);
        self.admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The one number `sql` selects (with `{s}` for the schema).
    pub(crate) fn number(&mut self, sql: &str) -> i64 {
        let sql = sql.replace("{s}", &self.name);
        self.admin
            .query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Ends the server process `pid` from the server side, as a lost
    /// connection, and waits (up to 30 s) until it is gone.
    pub(crate) fn terminate(&mut self, pid: i32) {
        self.sql(&format!("SELECT pg_terminate_backend({pid})"));
        let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.number(&gone) != 0 {
            assert!(
                Instant::now() < deadline,
                "server process {pid} outlived 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

pub(crate) fn note(n: u64) -> LogEntry {
    LogEntry::SystemItem {
        ts: n,
        item: SystemItem::Notification {
            message: format!("note {n}"),
            body: format!("[Notification] note {n}"),
        },
    }
}

pub(crate) fn turn_end(n: u64) -> LogEntry {
    LogEntry::TurnEnd {
        ts: n,
        turn_count: n,
    }
}

/// A new session: its writer and its sink.
pub(crate) fn session(store: &Arc<PgStore>) -> (PgSessionWriter, SessionLogSink) {
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    (store.session_writer(&id).unwrap(), sink)
}

fn seqs(entries: &[Committed]) -> Vec<u64> {
    entries.iter().map(|c| c.seq.get()).collect()
}

#[test]
fn an_empty_schema_is_migrated_and_reopening_changes_nothing() {
    let mut s = Schema::new();
    let store = s.open();
    assert_eq!(SCHEMA_VERSION, migrate::migrations().len() as i64);
    assert_eq!(
        s.number("SELECT version FROM {s}.podlog_schema_version"),
        SCHEMA_VERSION
    );
    let (id, _) = store.create_session(NewSession::default()).unwrap();
    drop(store);
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = '{s}'";
    let before = s.number(tables);
    assert_eq!(
        before, 9,
        "eight tables (search since version 2, search_progress since 3) and the version table"
    );
    let store = s.open();
    assert_eq!(s.number(tables), before);
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.podlog_schema_version"),
        1
    );
    assert_eq!(store.session(&id).unwrap().last_seq, Seq(1));
    assert_eq!(store.schema(), s.name);
    assert_eq!(store.channel(), format!("podlog.{}", s.name));
}

#[test]
fn concurrent_openers_migrate_once() {
    let mut s = Schema::new();
    // A key file each: threads of one process racing to create the same
    // key file collide on its temporary name (redaction.rs names it by pid).
    let (url, keys) = (s.url.clone(), s.keys.path().to_owned());
    let opened: Vec<Result<PgStore>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (url, key) = (&url, keys.join(format!("pg{i}")));
                scope.spawn(move || PgStore::open_with_key(url, &options(), &key))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in opened {
        store.unwrap();
    }
    assert_eq!(
        s.number("SELECT version FROM {s}.podlog_schema_version"),
        SCHEMA_VERSION
    );
}

#[test]
fn a_newer_schema_is_refused_before_anything_is_written() {
    let mut s = Schema::new();
    s.sql(
        "CREATE TABLE {s}.podlog_schema_version (one boolean PRIMARY KEY DEFAULT true, \
         version bigint NOT NULL); INSERT INTO {s}.podlog_schema_version (version) VALUES (99)",
    );
    let err = s.try_open().unwrap_err();
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, SCHEMA_VERSION)),
        other => panic!("expected TooNew, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema {}", s.name))
            && message.contains("newer than")
            && message.contains("nothing was changed"),
        "{message}"
    );
    assert!(!message.contains("password"), "{message}");
    assert_eq!(
        s.number("SELECT count(*) FROM pg_tables WHERE schemaname = '{s}'"),
        1,
        "no table was created"
    );
    assert_eq!(
        s.number("SELECT version FROM {s}.podlog_schema_version"),
        99
    );
}

#[test]
fn a_missing_schema_is_named() {
    let s = Schema::new();
    let url = s.url.replace(&s.name, "podlog_no_such_schema");
    let err = PgStore::open_with_key(&url, &options(), &s.keys.path().join("pg")).unwrap_err();
    assert!(
        err.to_string()
            .contains("no schema of the search_path exists"),
        "{err}"
    );
}

#[test]
fn entries_read_back_as_appended_with_payloads_and_secrets() {
    let mut s = Schema::new();
    let store = s.open();
    let (id, start) = store
        .create_session(NewSession {
            title: Some("deploy with ghp_FAKEfake0000000000000000000000000000".into()),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start.clone()]).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    let big = result(3, output(3, 3 * THRESHOLD));
    let secret = result(
        4,
        "GITHUB_TOKEN=ghp_FAKEfake0000000000000000000000000000\n".to_owned(),
    );
    let plain = [turn_end(2), big.clone(), note(5)];
    assert_eq!(w.append(turn_end(2), &sink).unwrap(), Seq(2));
    let lean = w.append_published(big.clone(), &sink).unwrap();
    assert_eq!(lean.seq, Seq(3));
    assert_eq!(lean.payload_refs().len(), 1, "the output went out of line");
    let report = w.append_reported(secret.clone(), &sink).unwrap();
    assert_eq!(report.committed.seq, Seq(4));
    assert!(report.redactions.total() >= 1);
    assert_eq!(w.append(note(5), &sink).unwrap(), Seq(5));

    let read = store.entries(&id).unwrap();
    assert_eq!(seqs(&read), [1, 2, 3, 4, 5]);
    assert_eq!(read[0], start);
    assert_eq!(*read[1].entry, plain[0]);
    assert_eq!(*read[2].entry, plain[1], "the payload is put back");
    assert_eq!(read[3].entry, report.committed.entry, "stored redacted");
    assert_ne!(*read[3].entry, secret);
    assert!(!read[3].entry.to_json().contains("ghp_FAKE"));
    assert_eq!(*read[4].entry, plain[2]);
    // The mirror's form: what the sink holds.
    assert_eq!(
        store.previews_after(&id, Seq::ZERO, usize::MAX).unwrap(),
        sink.snapshot()
            .after(Seq::ZERO)
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(seqs(&store.entries_after(&id, Seq(2), 2).unwrap()), [3, 4]);
    assert!(store.entries_after(&id, Seq(5), 10).unwrap().is_empty());

    // Bodies are the text written, byte for byte.
    let mut bodies = Vec::new();
    for row in s
        .admin
        .query(
            &format!(
                "SELECT body::text FROM {}.entries WHERE session_id = $1 ORDER BY seq",
                s.name
            ),
            &[&id.as_str()],
        )
        .unwrap()
    {
        bodies.push(row.get::<_, String>(0));
    }
    assert_eq!(bodies[1], turn_end(2).to_json());
    assert_eq!(bodies[4], note(5).to_json());
    assert_eq!(bodies[2], lean.entry.to_json(), "the lean body");
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.payloads"),
        1,
        "one payload row"
    );
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.payload_refs WHERE seq = 3"),
        1,
        "kept by the trigger"
    );
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.entries WHERE body::text LIKE '%ghp_FAKE%'"),
        0
    );

    let info = store.session(&id).unwrap();
    assert_eq!((info.last_seq, info.entry_count), (Seq(5), 5));
    assert!(info.redactions >= 2, "the title's and the entry's");
    assert!(!info.title.unwrap().contains("ghp_FAKE"));
    assert_eq!(info.stored_bytes, w.stored_bytes());
    let listed = store.sessions().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].as_ref().unwrap().id, id);
    assert!(matches!(
        store.session(&SessionId::new("nope").unwrap()),
        Err(StoreError::UnknownSession(_))
    ));
}

/// The same entries, ids and clock give the same reads and counters on
/// both backends.
#[test]
fn reads_match_the_sqlite_store() {
    let s = Schema::new();
    let pg = s.open();
    let dir = tempfile::tempdir().unwrap();
    let lite = Arc::new(Store::open(dir.path().join("podlog.db"), options()).unwrap());
    let entries = [
        turn_end(2),
        result(3, output(3, 2 * THRESHOLD)),
        LogEntry::UserInput {
            ts: 4,
            text: "go on".into(),
            attachments: vec![],
        },
        note(5),
        result(6, output(6, THRESHOLD + 1)),
    ];
    let (pg_id, pg_start) = pg.create_session(NewSession::default()).unwrap();
    let (lite_id, lite_start) = lite.create_session(NewSession::default()).unwrap();
    assert_eq!((&pg_id, &pg_start), (&lite_id, &lite_start));
    let (pg_sink, lite_sink) = (
        SessionLogSink::with_initial([pg_start]).unwrap(),
        SessionLogSink::with_initial([lite_start]).unwrap(),
    );
    let mut pg_w = pg.session_writer(&pg_id).unwrap();
    let mut lite_w = lite.session_writer(&lite_id).unwrap();
    for entry in entries {
        assert_eq!(
            pg_w.append_published(entry.clone(), &pg_sink).unwrap(),
            lite_w.append_published(entry, &lite_sink).unwrap()
        );
    }
    assert_eq!(pg.entries(&pg_id).unwrap(), lite.entries(&lite_id).unwrap());
    assert_eq!(
        pg.previews_after(&pg_id, Seq(1), 2).unwrap(),
        lite.previews_after(&lite_id, Seq(1), 2).unwrap()
    );
    for (before, limit) in [
        (Seq(0), 3),
        (Seq(1), 3),
        (Seq(4), 2),
        (Seq(7), 3),
        (Seq(9), 100),
    ] {
        assert_eq!(
            pg.entries_before(&pg_id, before, limit).unwrap(),
            lite.entries_before(&lite_id, before, limit).unwrap(),
            "entries before {before}, {limit} of them"
        );
        assert_eq!(
            pg.previews_before(&pg_id, before, limit).unwrap(),
            lite.previews_before(&lite_id, before, limit).unwrap(),
            "previews before {before}, {limit} of them"
        );
    }
    assert_eq!(pg.open_run(&pg_id).unwrap(), Some(Seq(4)));
    assert_eq!(
        pg.open_run(&pg_id).unwrap(),
        lite.open_run(&lite_id).unwrap()
    );
    let hash = pg.previews_after(&pg_id, Seq(2), 1).unwrap()[0].payload_refs()[0]
        .hash
        .clone();
    let payload = pg.payload(&hash).unwrap().unwrap();
    assert_eq!(Some(payload.clone()), lite.payload(&hash).unwrap());
    assert_eq!(payload.text, output(3, 2 * THRESHOLD));
    let other = crate::payloads::hash("not stored");
    assert_eq!(pg.payload(&other).unwrap(), None);
    for text in ["s-0001", "s-", "s-9", "x"] {
        assert_eq!(
            pg.resolve(text).map_err(|e| e.to_string()),
            lite.resolve(text).map_err(|e| e.to_string()),
            "resolving {text:?}"
        );
    }
    pg.create_session(NewSession::default()).unwrap();
    lite.create_session(NewSession::default()).unwrap();
    assert_eq!(
        pg.resolve("s-").map_err(|e| e.to_string()),
        lite.resolve("s-").map_err(|e| e.to_string()),
        "an ambiguous prefix"
    );
    assert!(pg.resolve("s-").is_err());
    let listed = |r: Vec<Result<SessionInfo>>| -> Vec<SessionInfo> {
        r.into_iter().map(|s| s.unwrap()).collect()
    };
    assert_eq!(
        listed(pg.sessions().unwrap()),
        listed(lite.sessions().unwrap())
    );
    let (p, l) = (pg.session(&pg_id).unwrap(), lite.session(&lite_id).unwrap());
    assert_eq!(
        (p.last_seq, p.entry_count, p.stored_bytes, p.redactions),
        (l.last_seq, l.entry_count, l.stored_bytes, l.redactions)
    );
}

#[test]
fn two_writers_on_two_sessions_are_gap_free_and_a_second_writer_is_refused() {
    let s = Schema::new();
    let store = s.open();
    let (a, b) = (session(&store), session(&store));
    let ids = [a.0.session().clone(), b.0.session().clone()];
    // A second writer on a held session is refused, naming the holder.
    let refused = store.session_writer(&ids[0]).unwrap_err();
    match &refused {
        StoreError::SessionLocked { session, holder } => {
            assert_eq!(session, &ids[0]);
            assert_eq!(holder.pid, Some(std::process::id()));
            assert_eq!(holder.host, super::host_name());
            assert!(holder.since.is_some());
        }
        other => panic!("expected SessionLocked, got {other:?}"),
    }
    assert!(
        refused
            .to_string()
            .contains(&format!("is being written by pid {}", std::process::id())),
        "{refused}"
    );
    assert_eq!(
        store.lock_holder(&ids[1]).unwrap().and_then(|h| h.pid),
        Some(std::process::id())
    );
    std::thread::scope(|scope| {
        for (mut w, sink) in [a, b] {
            scope.spawn(move || {
                for n in 0..50 {
                    w.append(turn_end(n), &sink).unwrap();
                }
                assert_eq!(w.last_seq(), Seq(51));
                assert_eq!(sink.end_seq(), Seq(51));
            });
        }
    });
    for id in &ids {
        let read = store.entries(id).unwrap();
        assert_eq!(seqs(&read), (1..=51).collect::<Vec<_>>());
        assert_eq!(store.session(id).unwrap().entry_count, 51);
    }
    assert_eq!(store.lock_holder(&ids[0]).unwrap(), None, "writers dropped");
}

#[test]
fn an_idle_writer_learns_its_lock_is_gone_without_a_commit() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let watch = w.lock_watch();
    // The link's looks at the idle connection leave it as it was.
    std::thread::sleep(super::announce::LOOK_EVERY * 2);
    assert!(!w.is_lost() && !watch.is_lost());
    w.append(turn_end(2), &sink).unwrap();
    // Someone waits for the loss on a runtime of its own.
    let heard = watch.lost_on_a_thread();
    assert!(
        heard.recv_timeout(Duration::from_millis(300)).is_err(),
        "lost() completed while the lock was held"
    );

    s.terminate(w.backend_pid());
    // Nothing is sent on the connection: the link's thread finds it gone.
    let deadline = Instant::now() + super::announce::LOOK_EVERY * 5;
    while !watch.is_lost() {
        assert!(
            Instant::now() < deadline,
            "an idle writer never learnt that its connection was ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    heard
        .recv_timeout(Duration::from_secs(5))
        .expect("lost() never completed once the lock was gone");
    assert!(w.is_lost());
    let err = w.append(turn_end(3), &sink).unwrap_err();
    assert!(matches!(err, StoreError::LockLost { .. }), "{err:?}");
    assert_eq!(sink.end_seq(), Seq(2), "nothing published");
    // A new writer connects again and holds the lock.
    let next = store.session_writer(w.session()).unwrap();
    assert!(!next.lock_watch().is_lost());
    assert!(watch.is_lost(), "the old writer's lock stays gone");
}

#[test]
fn a_lock_goes_with_its_writer_or_its_connection() {
    let mut s = Schema::new();
    let store = s.open();
    let (w, sink) = session(&store);
    let id = w.session().clone();
    drop(w);
    let mut w = store.session_writer(&id).expect("released on drop");
    w.append(turn_end(2), &sink).unwrap();

    // The server ends the writer's connection: the lock goes with it.
    let pid = w.backend_pid();
    let ended: bool = s
        .admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ended);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = loop {
        match store.session_writer(&id) {
            Ok(next) => break next,
            Err(StoreError::SessionLocked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the lock outlived its connection: {e}"),
        }
    };
    let failed = w.append(turn_end(3), &sink).unwrap_err();
    assert!(
        matches!(
            failed,
            StoreError::Postgres { .. } | StoreError::LockLost { .. }
        ),
        "{failed:?}"
    );
    assert!(w.is_lost());
    let again = w.append(turn_end(3), &sink).unwrap_err();
    assert!(matches!(again, StoreError::LockLost { .. }), "{again:?}");
    assert!(again.to_string().contains("open a new writer"), "{again}");
    assert_eq!(sink.end_seq(), Seq(2), "nothing published");
    assert_eq!(next.append(turn_end(3), &sink).unwrap(), Seq(3));
    assert_eq!(seqs(&store.entries(&id).unwrap()), [1, 2, 3]);
}

#[test]
fn a_listener_hears_commits_and_not_failed_appends() {
    let mut s = Schema::new();
    let store = s.open();
    let mut listener = store.listen().unwrap();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    let notice = |seq| {
        Some(Notice {
            session: id.clone(),
            seq: Seq(seq),
        })
    };
    let wait = Duration::from_secs(5);
    assert_eq!(listener.wait(wait).unwrap(), notice(1), "the SessionStart");
    w.append(turn_end(2), &sink).unwrap();
    assert_eq!(listener.wait(wait).unwrap(), notice(2));

    // Refused by a CHECK at the insert: rolled back, nothing announced.
    s.sql("ALTER TABLE {s}.entries ADD CONSTRAINT small_ts CHECK (ts < 1000) NOT VALID");
    let err = w.append(turn_end(5000), &sink).unwrap_err();
    assert!(err.to_string().contains("small_ts"), "{err}");
    assert_eq!(sink.end_seq(), Seq(2));
    assert_eq!(listener.wait(Duration::from_millis(300)).unwrap(), None);
    s.sql("ALTER TABLE {s}.entries DROP CONSTRAINT small_ts");

    w.append(turn_end(3), &sink).unwrap();
    let heard: Vec<Notice> = listener
        .iter(Duration::from_millis(300))
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(heard, [notice(3).unwrap()]);
    assert_eq!(seqs(&store.entries(&id).unwrap()), [1, 2, 3]);
}

/// A failure at `COMMIT` itself (a deferred constraint trigger), after the
/// entry was inserted and announced inside the transaction: nothing is
/// published, announced or kept, and the writer goes on at the same seq.
#[test]
fn a_failed_commit_publishes_and_announces_nothing() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    let mut listener = store.listen().unwrap();
    let (_, mut rx) = sink.subscribe_with_snapshot();
    s.sql(
        "CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$; \
         CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON {s}.entries \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.refuse()",
    );
    let err = w.append(note(2), &sink).unwrap_err();
    assert!(err.to_string().contains("refused at commit"), "{err}");
    assert_eq!(sink.end_seq(), Seq(1));
    assert!(rx.try_recv().is_err(), "no subscriber saw it");
    assert_eq!(listener.wait(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(store.session(&id).unwrap().last_seq, Seq(1));
    assert_eq!(s.number("SELECT count(*) FROM {s}.entries"), 1);

    s.sql("DROP TRIGGER refuse ON {s}.entries");
    assert_eq!(w.append(note(2), &sink).unwrap(), Seq(2));
    assert_eq!(rx.try_recv().unwrap().seq, Seq(2));
    assert_eq!(
        listener.wait(Duration::from_secs(5)).unwrap(),
        Some(Notice {
            session: id,
            seq: Seq(2)
        })
    );
}

/// An entry put at the writer's next seq behind the lock's back, or the
/// writer's previous entry gone, fails the append as stale and writes
/// nothing.
#[test]
fn an_entry_moved_behind_the_lock_fails_the_append_as_stale() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let body = turn_end(9).to_json();
    s.sql(&format!(
        "INSERT INTO {{s}}.entries (session_id, seq, ts, kind, body) \
         SELECT id, 2, 9, 'turn_end', '{body}' FROM {{s}}.sessions"
    ));
    let err = w.append(turn_end(2), &sink).unwrap_err();
    assert!(
        matches!(err, StoreError::StaleWriter { seq: Seq(2), .. }),
        "{err:?}"
    );
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.entries WHERE ts = 2"),
        0,
        "nothing written"
    );
    assert_eq!(sink.end_seq(), Seq(1));
    // The writer reads the session again and appends after the stranger.
    let sink = SessionLogSink::with_initial(store.entries(w.session()).unwrap()).unwrap();
    assert_eq!(w.append(turn_end(3), &sink).unwrap(), Seq(3));
    s.sql("DELETE FROM {s}.entries WHERE seq = 3");
    let err = w.append(turn_end(4), &sink).unwrap_err();
    assert!(
        matches!(err, StoreError::StaleWriter { seq: Seq(4), .. }),
        "{err:?}"
    );
    assert_eq!(
        s.number("SELECT count(*) FROM {s}.entries WHERE seq = 4"),
        0,
        "no gap left"
    );
}

/// `entries` has no CHECK constraints since schema 9, yet a row written
/// by hand with a seq below 1 or a negative counter is still refused, with
/// the old constraint's SQLSTATE and name, and so is an UPDATE to one; a
/// writer's appends go on.
#[test]
fn entry_rules_hold_without_check_constraints() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    assert_eq!(
        s.number(
            "SELECT count(*) FROM pg_constraint \
             WHERE conrelid = '{s}.entries'::regclass AND contype = 'c'"
        ),
        0
    );
    let body = turn_end(9).to_json();
    // seq, payloads, redactions, stored_bytes, appended_at
    let by_hand = |values: [&str; 5]| {
        let [seq, payloads, redactions, bytes, appended_at] = values;
        format!(
            "INSERT INTO {{s}}.entries (session_id, seq, ts, kind, body, payloads, \
               redactions, stored_bytes, appended_at) \
             SELECT id, {seq}, 9, 'turn_end', '{body}', {payloads}, {redactions}, {bytes}, \
               {appended_at} \
             FROM {{s}}.sessions"
        )
    };
    let refused = |s: &mut Schema, sql: &str| {
        let sql = sql.replace("{s}", &s.name);
        let err = s.admin.batch_execute(&sql).unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(
            db.code(),
            &postgres::error::SqlState::CHECK_VIOLATION,
            "{sql}: {db}"
        );
        db.constraint().unwrap_or_default().to_owned()
    };
    assert_eq!(
        refused(&mut s, &by_hand(["0", "NULL", "NULL", "NULL", "NULL"])),
        "entries_seq_check"
    );
    assert_eq!(
        refused(&mut s, &by_hand(["5", "NULL", "-1", "NULL", "NULL"])),
        "entries_redactions_check"
    );
    // A row with payloads is checked whatever its `appended_at`.
    assert_eq!(
        refused(&mut s, &by_hand(["7", "'[]'", "0", "-1", "1"])),
        "entries_stored_bytes_check"
    );
    assert_eq!(
        refused(
            &mut s,
            "UPDATE {s}.entries SET redactions = -2 WHERE seq = 1"
        ),
        "entries_redactions_check"
    );
    assert_eq!(s.number("SELECT count(*) FROM {s}.entries"), 1);
    assert_eq!(w.append(turn_end(2), &sink).unwrap(), Seq(2));
    assert_eq!(w.append(turn_end(3), &sink).unwrap(), Seq(3));
    assert!(store.verify(None).unwrap().is_empty());
}

/// The session row takes in its writer's appends from the store's indexer,
/// off the appends' transactions, once they went 64 seqs past its last
/// fold, and when the writer closes; in between, and after a writer died,
/// every read adds the entries past the row's `last_seq`.
#[test]
fn a_sessions_counters_include_the_appends_past_its_row() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    let row = "SELECT last_seq FROM {s}.sessions";
    for n in 2..=63 {
        w.append(note(n), &sink).unwrap();
    }
    // Time for the indexer to catch up (it rests 50 ms between batches).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.number(row),
        1,
        "an append leaves the row alone, and 62 seqs are not a fold"
    );
    for n in 64..=70 {
        w.append(note(n), &sink).unwrap();
    }
    let waited = Instant::now();
    while s.number(row) < 64 && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let folded = s.number(row);
    assert!(
        (64..=70).contains(&folded),
        "folded by the indexer past seq 64: {folded}"
    );
    let expect = |info: &SessionInfo| {
        assert_eq!(info.last_seq, Seq(70));
        assert_eq!(info.entry_count, 70);
        assert_eq!(info.stored_bytes, w.stored_bytes());
    };
    let seen = store.session(&id).unwrap();
    expect(&seen);
    expect(store.sessions().unwrap()[0].as_ref().unwrap());
    assert_eq!(
        store.last_seqs(std::slice::from_ref(&id)).unwrap(),
        [(id.clone(), Seq(70))]
    );
    assert!(store.verify(None).unwrap().is_empty());
    // A writer that dies leaves the tail; the next one folds it at open.
    s.terminate(w.backend_pid());
    drop(w);
    assert_eq!(s.number(row), folded);
    assert_eq!(store.session(&id).unwrap().last_seq, Seq(70));
    let w = store.session_writer(&id).unwrap();
    assert_eq!(w.last_seq(), Seq(70));
    assert_eq!(s.number(row), 70, "folded at open");
    drop(w);
    assert_eq!(s.number("SELECT count(*) FROM {s}.sessions WHERE tail"), 0);
    assert_eq!(
        store.session(&id).unwrap(),
        seen,
        "the folded row is what reads saw"
    );
}

/// The indexer's fold runs without the session's lock, so it folds only a
/// session open for writing, and only forward.
#[test]
fn the_indexers_fold_touches_only_open_sessions_and_only_forward() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    for n in 2..=10 {
        w.append(note(n), &sink).unwrap();
    }
    let fold = |s: &mut Schema| -> i64 {
        let sql = format!("SET search_path = {}; ", s.name);
        s.admin.batch_execute(&sql).unwrap();
        let n = s
            .admin
            .query_one(super::indexer::FOLD_TAIL, &[&vec![id.as_str()]])
            .unwrap()
            .get(1);
        s.admin.batch_execute("RESET search_path").unwrap();
        n
    };
    let row = "SELECT last_seq FROM {s}.sessions";
    assert_eq!(fold(&mut s), 1);
    assert_eq!(s.number(row), 10);
    assert_eq!(fold(&mut s), 0, "nothing past the row");
    // Behind the row: a fold from an older snapshot would not move it back.
    s.sql("UPDATE {s}.sessions SET last_seq = 12, entry_count = 12");
    assert_eq!(fold(&mut s), 0);
    assert_eq!(s.number(row), 12);
    s.sql("UPDATE {s}.sessions SET last_seq = 10, entry_count = 10");
    w.append(note(11), &sink).unwrap();
    drop(w);
    assert_eq!(s.number("SELECT count(*) FROM {s}.sessions WHERE tail"), 0);
    s.sql("UPDATE {s}.sessions SET last_seq = 9");
    assert_eq!(fold(&mut s), 0, "a closed session's row is its writer's");
    assert_eq!(s.number(row), 9);
}

#[test]
fn rows_that_do_not_decode_or_leave_a_gap_are_errors_naming_session_and_seq() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    for n in 2..=4 {
        w.append(turn_end(n), &sink).unwrap();
    }
    s.sql("UPDATE {s}.entries SET body = '[1, 2]' WHERE seq = 3");
    let err = store.entries(&id).unwrap_err();
    assert!(
        matches!(err, StoreError::Decode { seq: Seq(3), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("session {id} seq 3:")),
        "{err}"
    );
    assert_eq!(
        seqs(&store.entries_after(&id, Seq::ZERO, 2).unwrap()),
        [1, 2]
    );

    s.sql("DELETE FROM {s}.entries WHERE seq = 3");
    let err = store.entries(&id).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("session {id} seq 3: entry missing (the next stored entry is seq 4)")
    );
}

/// Pooled connections ended by the server while idle (a restart, a
/// failover, an administrator) cost a read nothing: it runs again on a new
/// connection. A write on one fails cleanly, and the next one works.
#[test]
fn reads_survive_their_pooled_connection_ending() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut w, sink) = session(&store);
    let id = w.session().clone();
    w.append(turn_end(2), &sink).unwrap();
    let end = |s: &mut Schema, store: &PgStore| {
        let pids = store.pooled_backends();
        assert!(!pids.is_empty());
        for pid in pids {
            let ended: bool = s
                .admin
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap()
                .get(0);
            assert!(ended);
        }
    };
    end(&mut s, &store);
    assert_eq!(store.session(&id).unwrap().last_seq, Seq(2));
    end(&mut s, &store);
    assert_eq!(seqs(&store.entries(&id).unwrap()), [1, 2]);
    end(&mut s, &store);
    assert_eq!(store.resolve("s-0").unwrap(), id);
    end(&mut s, &store);
    let err = store.create_session(NewSession::default()).unwrap_err();
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
    let (again, _) = store.create_session(NewSession::default()).unwrap();
    assert_eq!(store.session(&again).unwrap().last_seq, Seq(1));
}

const CHILD_URL: &str = "PODLOG_PG_TEST_CHILD_URL";
const CHILD_KEYS: &str = "PODLOG_PG_TEST_CHILD_KEYS";
const LOCKED: &str = "child holds the session lock";

/// Run as a child process (this same test, with [`CHILD_URL`] set): takes
/// the writer of `s-0001`, appends seq 2, says so on stdout, then waits to
/// be killed.
fn write_in_child(url: &str, keys: &str) {
    let store =
        Arc::new(PgStore::open_with_key(url, &options(), std::path::Path::new(keys)).unwrap());
    let id = SessionId::new("s-0001").unwrap();
    let sink = store.load_sink(&id).unwrap();
    let mut w = store.session_writer(&id).unwrap();
    assert_eq!(w.append(turn_end(2), &sink).unwrap(), Seq(2));
    let mut out = std::io::stdout().lock();
    // On a line of its own: the test harness may have begun a line already.
    writeln!(out, "\n{LOCKED}").unwrap();
    out.flush().unwrap();
    // Never released on purpose: the parent kills this process. The bound
    // keeps a stray child from living on if the parent died first.
    std::thread::sleep(Duration::from_secs(120));
}

/// One writer per session across processes: a writer in another process
/// is named as the holder, and its SIGKILL frees the session for another
/// writer, which goes on after the last entry the dead one committed.
#[test]
fn a_writer_in_another_process_is_refused_and_freed_by_kill_9() {
    if let (Ok(url), Ok(keys)) = (std::env::var(CHILD_URL), std::env::var(CHILD_KEYS)) {
        write_in_child(&url, &keys);
        return;
    }
    let s = Schema::new();
    let store = s.open();
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pg::tests::a_writer_in_another_process_is_refused_and_freed_by_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &s.url)
        .env(CHILD_KEYS, s.keys.path().join("pg"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said_locked = lines.any(|l| l.is_ok_and(|l| l.trim() == LOCKED));
    assert!(said_locked, "the child took the session");

    match store.session_writer(&id) {
        Err(StoreError::SessionLocked { session, holder }) => {
            assert_eq!(session, id);
            assert_eq!(holder.pid, Some(child.id()), "the holder is the child");
            assert_eq!(holder.host, super::host_name());
        }
        other => panic!("expected SessionLocked, got {other:?}"),
    }

    // SIGKILL: the child cannot let go; the server drops its connection,
    // and the lock with it.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut w = loop {
        match store.session_writer(&id) {
            Ok(w) => break w,
            Err(StoreError::SessionLocked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the dead writer's lock was not freed: {e}"),
        }
    };
    assert_eq!(w.last_seq(), Seq(2), "the child's commit is kept");
    let sink = store.load_sink(&id).unwrap();
    assert_eq!(
        sink.snapshot().after(Seq::ZERO).into_iter().next(),
        Some(start)
    );
    assert_eq!(w.append(turn_end(3), &sink).unwrap(), Seq(3));
    assert_eq!(seqs(&store.entries(&id).unwrap()), [1, 2, 3]);
}

#[test]
fn a_store_a_writer_and_a_listener_can_be_dropped_inside_an_async_runtime() {
    // The server drops pods, and with them writers and stores, on its
    // runtime's threads; a postgres client closing there must not panic.
    let schema = Schema::new();
    let store = schema.open();
    let (writer, _sink) = session(&store);
    let id = writer.session().clone();
    let listener = store.listen().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        drop(writer);
        drop(listener);
        drop(store);
    });
    // The lock is let go on a thread of its own: soon, not at once.
    let store = schema.open();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.session_writer(&id) {
            Ok(_) => break,
            Err(StoreError::SessionLocked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the dropped writer's lock was never let go: {e}"),
        }
    }
}

#[test]
fn a_change_watch_sees_announced_commits_and_looks_again_on_its_own() {
    let schema = Schema::new();
    let store = crate::Store::postgres(schema.try_open().unwrap());
    let mut watch = store.change_watch().unwrap();
    assert!(!watch.changed().unwrap(), "nothing committed yet");
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut writer = store.session_writer(&id).unwrap();
    writer.append(note(2), &sink).unwrap();
    // The append is announced after its commit: seen within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !watch.changed().unwrap() {
        assert!(Instant::now() < deadline, "the commit was never announced");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!watch.changed().unwrap(), "each announcement is taken once");
    // A commit nobody announced (a writer that died between its commit and
    // its notice) is found by the watch's own look, within PG_RECHECK.
    std::thread::sleep(crate::store::PG_RECHECK);
    assert!(watch.changed().unwrap());
    assert!(!watch.changed().unwrap());
}

/// The seqs of `id` heard on `listener` until `last` is (or nothing comes
/// for ten seconds).
fn heard_until(listener: &mut PgListener, id: &SessionId, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        match listener.wait(Duration::from_secs(10)).unwrap() {
            Some(notice) if notice.session == *id => seqs.push(notice.seq.get()),
            Some(_) => {}
            None => break,
        }
    }
    seqs
}

#[test]
fn quick_appends_share_notices_in_order_up_to_the_last_even_when_the_store_goes_at_once() {
    let schema = Schema::new();
    let mut listener = schema.open().listen().unwrap();
    let (id, took) = {
        let store = schema.open();
        let (mut writer, sink) = session(&store);
        let start = Instant::now();
        for n in 2..=101 {
            writer.append(note(n), &sink).unwrap();
        }
        let id = writer.session().clone();
        // What is pending is announced as the store goes.
        drop(writer);
        drop(store);
        (id, start.elapsed())
    };
    let seqs = heard_until(&mut listener, &id, 101);
    assert_eq!(
        seqs.last(),
        Some(&101),
        "the last commit was heard: {seqs:?}"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    // One announcement behind the first append, then at most one per
    // ANNOUNCE_EVERY, and the last one as the store went.
    let announced = seqs.iter().filter(|&&seq| seq >= 2).count() as u128;
    let most = took.as_micros() / super::announce::ANNOUNCE_EVERY.as_micros() + 2;
    assert!(
        announced <= most,
        "{announced} announcements of 100 appends in {took:?}: {seqs:?}"
    );
}

#[test]
fn the_last_commit_of_a_burst_is_heard_with_no_commit_after_it() {
    let schema = Schema::new();
    let store = schema.open();
    let mut listener = store.listen().unwrap();
    let (mut writer, sink) = session(&store);
    for n in 2..=31 {
        writer.append(note(n), &sink).unwrap();
    }
    // The writer and its store stay open and quiet.
    let seqs = heard_until(&mut listener, writer.session(), 31);
    assert_eq!(seqs.last(), Some(&31), "{seqs:?}");
    assert_eq!(seqs.first(), Some(&1), "the SessionStart: {seqs:?}");
}

#[test]
fn sessions_appending_at_once_share_transactions_and_stay_gap_free() {
    let s = Schema::new();
    let store = s.open();
    let writers: Vec<_> = (0..6).map(|_| session(&store)).collect();
    let ids: Vec<SessionId> = writers.iter().map(|(w, _)| w.session().clone()).collect();
    let before = store.commit_stats();
    let start = std::sync::Barrier::new(writers.len());
    std::thread::scope(|scope| {
        for (mut w, sink) in writers {
            let start = &start;
            scope.spawn(move || {
                start.wait();
                for n in 0..60 {
                    w.append(turn_end(n), &sink).unwrap();
                }
                assert_eq!(sink.end_seq(), Seq(61));
            });
        }
    });
    let stats = store.commit_stats();
    let (transactions, entries) = (
        stats.transactions - before.transactions,
        stats.entries - before.entries,
    );
    assert_eq!(entries, 6 * 60, "every append counted once");
    assert!(
        transactions < entries,
        "no transaction held more than one session's entry: {transactions} for {entries}"
    );
    for id in &ids {
        assert_eq!(
            seqs(&store.entries(id).unwrap()),
            (1..=61).collect::<Vec<_>>()
        );
        assert_eq!(store.session(id).unwrap().entry_count, 61);
    }
    assert!(store.verify(None).unwrap().is_empty());
}

/// The transactions and entries `store` committed since `before`.
fn commits_since(store: &PgStore, before: crate::commit::CommitStats) -> (u64, u64) {
    let now = store.commit_stats();
    (
        now.transactions - before.transactions,
        now.entries - before.entries,
    )
}

#[test]
fn a_stale_row_in_a_group_commit_fails_alone_and_the_others_commit() {
    use super::link::Outcome;
    let s = Schema::new();
    let store = s.open();
    let (a, _sink_a) = session(&store);
    let (mut b, sink_b) = session(&store);
    b.append(turn_end(2), &sink_b).unwrap();
    let prepared = |n| crate::redaction::prepare(None, turn_end(n)).unwrap();
    // a's next seq, and b's seq 2 again: its predecessor exists, but the
    // seq is taken, which aborts the batch's transaction on the server.
    let fresh = a.row(Seq(2), &prepared(7)).unwrap();
    let taken = b.row(Seq(2), &prepared(8)).unwrap();
    let gap = b.row(Seq(9), &prepared(9)).unwrap();
    let before = store.commit_stats();
    let outcomes = store.link.commit_rows(&[&taken, &fresh, &gap]);
    assert!(
        matches!(
            outcomes.as_slice(),
            [Outcome::Taken, Outcome::Written, Outcome::NotWritten]
        ),
        "{outcomes:?}"
    );
    assert_eq!(
        commits_since(&store, before),
        (1, 1),
        "only the fresh row committed, in a transaction of its own"
    );
    assert_eq!(seqs(&store.entries(a.session()).unwrap()), [1, 2]);
    let b_entries = store.entries(b.session()).unwrap();
    assert_eq!(seqs(&b_entries), [1, 2]);
    assert_eq!(
        *b_entries[1].entry,
        turn_end(2),
        "the taken seq kept its entry"
    );
    // Rows of a writer whose connection is gone are refused unwritten.
    let old = a.row(Seq(3), &prepared(10)).unwrap();
    let mut s = s;
    s.terminate(a.backend_pid());
    let lost = store.link.commit_rows(&[&old]);
    assert!(
        matches!(lost.as_slice(), [Outcome::Failed { .. } | Outcome::Lost]),
        "{lost:?}"
    );
    assert_eq!(seqs(&store.entries(a.session()).unwrap()), [1, 2]);
}

#[test]
fn a_mixed_group_commit_guards_each_row_and_commits_once() {
    use super::link::Outcome;
    let s = Schema::new();
    let store = s.open();
    let (a, _sink_a) = session(&store);
    let (b, _sink_b) = session(&store);
    let (c, _sink_c) = session(&store);
    let (mut d, sink_d) = session(&store);
    for n in 2..64 {
        d.append(turn_end(n), &sink_d).unwrap();
    }
    let prepared = |entry| crate::redaction::prepare(None, entry).unwrap();
    let big = result(3, output(3, 2 * THRESHOLD));
    // Three plain rows of different sessions, one with a gap before it
    // (one statement for them), a row with a payload and a second row of a
    // session (their own statements), all in one transaction.
    let rows = [
        a.row(Seq(2), &prepared(turn_end(2))).unwrap(),
        b.row(Seq(5), &prepared(turn_end(5))).unwrap(),
        c.row(Seq(2), &prepared(big.clone())).unwrap(),
        d.row(Seq(64), &prepared(note(64))).unwrap(),
        b.row(Seq(2), &prepared(note(2))).unwrap(),
    ];
    let mut listener = store.listen().unwrap();
    // Whatever the appends above left pending is announced by now, or
    // goes out first, right behind this batch.
    std::thread::sleep(2 * super::announce::ANNOUNCE_EVERY);
    let before = store.commit_stats();
    let outcomes = store.link.commit_rows(&rows.iter().collect::<Vec<_>>());
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                Outcome::Written,
                Outcome::NotWritten,
                Outcome::Written,
                Outcome::Written,
                Outcome::Written
            ]
        ),
        "{outcomes:?}"
    );
    assert_eq!(
        commits_since(&store, before),
        (1, 4),
        "every row written shares one transaction"
    );
    // The batch's notices: the rows written, in the batch's order, and not
    // the one that was refused (d's earlier appends may still be heard).
    let heard: Vec<(SessionId, u64)> = listener
        .iter(Duration::from_millis(500))
        .map(|n| n.map(|n| (n.session, n.seq.get())))
        .collect::<Result<Vec<_>>>()
        .unwrap()
        .into_iter()
        .filter(|(session, seq)| session != d.session() || *seq == 64)
        .collect();
    let written = |w: &PgSessionWriter, seq| (w.session().clone(), seq);
    assert_eq!(
        heard,
        [
            written(&a, 2),
            written(&c, 2),
            written(&d, 64),
            written(&b, 2)
        ]
    );
    let read = |w: &PgSessionWriter| store.entries(w.session()).unwrap();
    assert_eq!(seqs(&read(&a)), [1, 2]);
    assert_eq!(*read(&a)[1].entry, turn_end(2));
    assert_eq!(seqs(&read(&b)), [1, 2], "the row after a gap wrote nothing");
    assert_eq!(*read(&b)[1].entry, note(2));
    assert_eq!(
        *read(&c)[1].entry,
        big,
        "the payload is stored and put back"
    );
    assert_eq!(*read(&d)[63].entry, note(64));
    assert_eq!(read(&d).len(), 64);
    let info = store.session(d.session()).unwrap();
    assert_eq!((info.last_seq, info.entry_count), (Seq(64), 64));
    for w in [&a, &b, &c] {
        let info = store.session(w.session()).unwrap();
        assert_eq!(info.entry_count, 2, "{}", w.session());
    }
    let problems = store.verify(None).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_writer_opening_behind_a_row_lock_does_not_hold_up_other_sessions_appends() {
    let mut s = Schema::new();
    let store = s.open();
    let (mut a, sink_a) = session(&store);
    let (b, start_b) = store.create_session(NewSession::default()).unwrap();
    // Another connection holds b's session row, as a fork of b does.
    let mut holder = Client::connect(&s.url, NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.execute(
        "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
        &[&b.as_str()],
    )
    .unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE sessions AS s%'";
    std::thread::scope(|scope| {
        let opening = scope.spawn(|| store.session_writer(&b));
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.number(waiting) == 0 {
            assert!(Instant::now() < deadline, "b's writer never waited");
            std::thread::sleep(Duration::from_millis(5));
        }
        // b's writer waits for the row; a's appends go on meanwhile.
        for n in 2..5 {
            a.append(turn_end(n), &sink_a).unwrap();
        }
        assert!(
            !opening.is_finished(),
            "b's writer gave up before a's appends were done"
        );
        held.commit().unwrap();
        let mut writer = opening
            .join()
            .unwrap()
            .expect("b opens once the row is free");
        let sink = SessionLogSink::with_initial([start_b]).unwrap();
        assert_eq!(writer.append(turn_end(2), &sink).unwrap(), Seq(2));
    });
    assert_eq!(seqs(&store.entries(a.session()).unwrap()), [1, 2, 3, 4]);
}
