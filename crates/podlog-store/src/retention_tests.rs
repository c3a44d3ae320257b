//! Retention: which sessions go and which stay (age, title, descendants,
//! locks), what goes with them (entries, shares, payloads no one else
//! references), archives, dry runs, and the space given back.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use podlog_entry::{LogEntry, Seq, SessionId, StepClock};
use podlog_sink::SessionLogSink;

use super::*;
use crate::payloads::tests::{output, result};
use crate::{NewSession, SequentialIds, StoreOptions};

/// Sessions "untouched" before this are old in these tests.
const CUTOFF: u64 = 1_800_000_000_000;
const OLD: u64 = CUTOFF - 1;
const RECENT: u64 = CUTOFF + 1;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    };
    let store = Arc::new(SqliteStore::open(dir.path().join("podlog.db"), options).unwrap());
    Fixture { dir, store }
}

/// A session with `title`, its SessionStart and one result per text of
/// `outputs`, last touched at `updated_at`.
fn session(f: &Fixture, title: Option<&str>, outputs: &[String], updated_at: u64) -> SessionId {
    let (id, start) = f
        .store
        .create_session(NewSession {
            title: title.map(str::to_owned),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut w = f.store.session_writer(&id).unwrap();
    for (i, text) in outputs.iter().enumerate() {
        w.append(result(i as u64 + 2, text.clone()), &sink).unwrap();
    }
    touch(f, &id, updated_at);
    id
}

fn touch(f: &Fixture, id: &SessionId, updated_at: u64) {
    f.store
        .writer()
        .execute(
            "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
            rusqlite::params![id.as_str(), updated_at],
        )
        .unwrap();
}

fn fork(f: &Fixture, parent: &SessionId, updated_at: u64) -> SessionId {
    let (id, _) = f.store.fork(parent, Seq(1)).unwrap();
    touch(f, &id, updated_at);
    id
}

fn gc() -> Selection {
    Selection::UntouchedBefore(CUTOFF)
}

fn ids(f: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = f
        .store
        .sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.unwrap().id.to_string())
        .collect();
    ids.sort();
    ids
}

fn count(f: &Fixture, sql: &str) -> u64 {
    f.store.writer().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Everything retention may touch, as text, to compare before and after.
fn state(f: &Fixture) -> String {
    let conn = f.store.writer();
    let mut text = String::new();
    for sql in [
        "SELECT id || '|' || updated_at || '|' || last_seq FROM sessions ORDER BY id",
        "SELECT session_id || '|' || seq || '|' || body FROM entries ORDER BY session_id, seq",
        "SELECT hash FROM payloads ORDER BY hash",
        "SELECT hash || '|' || session_id || '|' || seq FROM payload_refs ORDER BY 1",
        "SELECT id || '|' || session_id FROM shares ORDER BY id",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        for row in rows {
            text.push_str(&row.unwrap());
            text.push('\n');
        }
        text.push_str("--\n");
    }
    text
}

fn assert_verifies(f: &Fixture) {
    let problems = f.store.verify(None).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

fn kept_reason<'a>(report: &'a RetentionReport, id: &SessionId) -> &'a KeptBecause {
    &report
        .kept
        .iter()
        .find(|k| &k.session.id == id)
        .unwrap_or_else(|| panic!("{id} is not reported as kept: {report:?}"))
        .because
}

#[test]
fn new_databases_use_incremental_auto_vacuum() {
    let f = fixture();
    assert_eq!(f.store.auto_vacuum().unwrap(), AutoVacuum::Incremental);
}

#[test]
fn only_sessions_untouched_since_the_cutoff_go_with_all_their_entries() {
    let f = fixture();
    let old = session(&f, None, &["a".to_owned(), "b".to_owned()], OLD);
    let recent = session(&f, None, &["c".to_owned()], RECENT);
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(report.sessions(), 1);
    assert_eq!(report.entries(), 3);
    assert!(report.bytes() > 0);
    assert_eq!(report.removed[0].sessions[0].id, old);
    assert_eq!(ids(&f), [recent.to_string()]);
    assert_eq!(
        count(
            &f,
            "SELECT count(*) FROM entries WHERE session_id = 's-0001'"
        ),
        0
    );
    assert!(matches!(
        f.store.session(&old),
        Err(StoreError::UnknownSession(_))
    ));
    assert_eq!(f.store.entries(&recent).unwrap().len(), 2);
    assert_verifies(&f);
}

#[test]
fn a_dry_run_reports_the_same_and_changes_nothing() {
    let f = fixture();
    let shared = output(1, 20_000);
    let old = session(&f, None, &[shared.clone(), output(2, 20_000)], OLD);
    let recent = session(&f, None, &[shared], RECENT);
    // A fork has never been locked: it has no lock file yet.
    fork(&f, &recent, OLD);
    f.store.create_share(old.as_str(), None).unwrap();
    let locks = f.dir.path().join("podlog.db.locks");
    let lock_files = || std::fs::read_dir(&locks).unwrap().count();
    let lock_files_before = lock_files();
    let archive = f.dir.path().join("archive");
    let options = RetentionOptions {
        dry_run: true,
        archive: Some(archive.clone()),
        ..RetentionOptions::default()
    };
    let before = state(&f);
    let dry = f.store.retain(&gc(), &options).unwrap();
    assert!(dry.dry_run);
    assert_eq!(state(&f), before, "a dry run changes nothing");
    assert!(!archive.exists(), "a dry run writes no archive");
    assert_eq!(
        lock_files(),
        lock_files_before,
        "a dry run creates no lock file"
    );
    let real = f
        .store
        .retain(
            &gc(),
            &RetentionOptions {
                dry_run: false,
                ..options
            },
        )
        .unwrap();
    assert_eq!(dry.sessions(), 2);
    assert_eq!(real.sessions(), 2);
    assert_eq!(
        (
            dry.entries(),
            dry.payloads(),
            dry.bytes(),
            dry.removed[0].shares
        ),
        (
            real.entries(),
            real.payloads(),
            real.bytes(),
            real.removed[0].shares
        ),
        "the dry run measured what the real run deleted"
    );
    assert_eq!(real.payloads(), 1, "only the unshared payload goes");
}

#[test]
fn titled_sessions_stay_with_keep_titled() {
    let f = fixture();
    let titled = session(&f, Some("keep me"), &[], OLD);
    let plain = session(&f, None, &[], OLD);
    let keep = RetentionOptions {
        keep_titled: true,
        ..RetentionOptions::default()
    };
    let report = f.store.retain(&gc(), &keep).unwrap();
    assert_eq!(kept_reason(&report, &titled), &KeptBecause::Titled);
    assert_eq!(ids(&f), [titled.to_string()]);
    assert!(report
        .removed
        .iter()
        .all(|r| r.sessions.iter().all(|s| s.id == plain)));
    // Without the option the title protects nothing.
    f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert!(ids(&f).is_empty());
}

#[test]
fn a_session_an_open_writer_holds_stays_and_the_report_names_the_holder() {
    let f = fixture();
    let held = session(&f, None, &[], OLD);
    let free = session(&f, None, &[], OLD);
    let writer = f.store.session_writer(&held).unwrap();
    for dry_run in [true, false] {
        let options = RetentionOptions {
            dry_run,
            ..RetentionOptions::default()
        };
        let report = f.store.retain(&gc(), &options).unwrap();
        match kept_reason(&report, &held) {
            KeptBecause::Held { session, holder } => {
                assert_eq!(session, &held);
                assert_eq!(holder.pid, Some(std::process::id()));
            }
            other => panic!("kept for {other:?}"),
        }
        assert_eq!(
            report.sessions(),
            1,
            "the free one goes (dry run: {dry_run})"
        );
        assert!(kept_reason(&report, &held)
            .to_string()
            .contains(&format!("pid {}", std::process::id())));
    }
    assert_eq!(ids(&f), [held.to_string()]);
    assert!(matches!(
        f.store.session(&free),
        Err(StoreError::UnknownSession(_))
    ));
    drop(writer);
    f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert!(ids(&f).is_empty(), "once let go, it goes");
}

#[test]
fn a_session_with_a_recent_fork_stays_unless_descendants_go_too() {
    let f = fixture();
    let root = session(&f, None, &["x".to_owned()], OLD);
    let old_child = fork(&f, &root, OLD);
    let recent_grandchild = fork(&f, &old_child, RECENT);
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(report.sessions(), 0);
    assert_eq!(
        kept_reason(&report, &old_child),
        &KeptBecause::KeptDescendants(vec![recent_grandchild.clone()])
    );
    assert_eq!(
        kept_reason(&report, &root),
        &KeptBecause::KeptDescendants(vec![old_child.clone()])
    );
    assert_eq!(ids(&f).len(), 3);

    let with = RetentionOptions {
        with_descendants: true,
        ..RetentionOptions::default()
    };
    let report = f.store.retain(&gc(), &with).unwrap();
    assert_eq!(report.removed.len(), 1, "one family, one unit");
    let gone: Vec<&SessionId> = report.removed[0].sessions.iter().map(|s| &s.id).collect();
    assert_eq!(gone, [&root, &old_child, &recent_grandchild]);
    assert!(ids(&f).is_empty());
    assert_verifies(&f);
}

#[test]
fn a_chain_of_old_sessions_goes_in_one_run_children_first() {
    let f = fixture();
    let root = session(&f, None, &[], OLD);
    let child = fork(&f, &root, OLD);
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    let order: Vec<&SessionId> = report.removed.iter().map(|r| &r.sessions[0].id).collect();
    assert_eq!(order, [&child, &root]);
    assert!(ids(&f).is_empty());
}

#[test]
fn a_held_descendant_keeps_its_whole_family() {
    let f = fixture();
    let root = session(&f, None, &[], OLD);
    let child = fork(&f, &root, RECENT);
    let _lock = f.store.lock_session(&child).unwrap();
    let with = RetentionOptions {
        with_descendants: true,
        ..RetentionOptions::default()
    };
    let report = f.store.retain(&gc(), &with).unwrap();
    assert_eq!(report.sessions(), 0);
    assert!(matches!(
        kept_reason(&report, &root),
        KeptBecause::Held { session, .. } if session == &child
    ));
    assert_eq!(ids(&f).len(), 2);
    // Nor does it hold the root's lock any more.
    drop(f.store.lock_session(&root).unwrap());
}

#[test]
fn a_payload_shared_with_a_kept_session_stays_and_an_unshared_one_goes() {
    let f = fixture();
    let shared = output(1, 30_000);
    let unshared = output(2, 40_000);
    let old = session(
        &f,
        None,
        &[shared.clone(), unshared.clone(), unshared.clone()],
        OLD,
    );
    let kept = session(&f, None, std::slice::from_ref(&shared), RECENT);
    assert_eq!(count(&f, "SELECT count(*) FROM payloads"), 2);
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(report.sessions(), 1);
    assert_eq!(report.payloads(), 1);
    assert_eq!(report.removed[0].payload_bytes, 40_000);
    let left = f.store.payload(&crate::payloads::hash(&shared)).unwrap();
    assert!(left.is_some(), "the shared payload stays");
    let gone = f.store.payload(&crate::payloads::hash(&unshared)).unwrap();
    assert!(gone.is_none(), "the unshared payload goes");
    let whole = f.store.entries(&kept).unwrap();
    assert!(matches!(
        whole[1].entry.as_ref(),
        LogEntry::ToolResult { output, .. } if output == &shared
    ));
    assert_eq!(
        count(
            &f,
            "SELECT count(*) FROM payload_refs WHERE session_id = 's-0001'"
        ),
        0
    );
    assert!(old.as_str() == "s-0001");
    assert_verifies(&f);
}

#[test]
fn payload_refs_list_every_reference_of_every_entry() {
    let f = fixture();
    let a = output(1, 10_000);
    session(&f, None, &[a.clone(), a.clone(), output(2, 9_000)], RECENT);
    // The same string twice in one entry is one reference row.
    let expected = count(
        &f,
        "SELECT count(*) FROM (SELECT DISTINCT json_extract(r.value, '$.hash'), e.session_id, e.seq \
         FROM entries AS e, json_each(e.payloads) AS r WHERE e.payloads IS NOT NULL)",
    );
    assert_eq!(expected, 3);
    assert_eq!(count(&f, "SELECT count(*) FROM payload_refs"), expected);
    let missing = count(
        &f,
        "SELECT count(*) FROM (SELECT json_extract(r.value, '$.hash'), e.session_id, e.seq \
         FROM entries AS e, json_each(e.payloads) AS r WHERE e.payloads IS NOT NULL \
         EXCEPT SELECT hash, session_id, seq FROM payload_refs)",
    );
    assert_eq!(missing, 0);
}

#[test]
fn shares_of_a_deleted_session_go_with_it() {
    let f = fixture();
    let old = session(&f, None, &[], OLD);
    let kept = session(&f, None, &[], RECENT);
    f.store.create_share(old.as_str(), None).unwrap();
    f.store.create_share(old.as_str(), None).unwrap();
    f.store.create_share(kept.as_str(), None).unwrap();
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(report.removed[0].shares, 2);
    assert_eq!(count(&f, "SELECT count(*) FROM shares"), 1);
    assert_eq!(
        count(
            &f,
            "SELECT count(*) FROM shares WHERE session_id = 's-0002'"
        ),
        1
    );
}

#[test]
fn archives_are_private_complete_and_import_to_the_same_entries() {
    let f = fixture();
    let root = session(
        &f,
        Some("root"),
        &[output(1, 30_000), "small".to_owned()],
        OLD,
    );
    let child = fork(&f, &root, OLD);
    let before_root = f.store.entries(&root).unwrap();
    let before_child = f.store.entries(&child).unwrap();
    let dir = f.dir.path().join("archive");
    let report = f
        .store
        .retain(
            &Selection::Session(root.clone()),
            &RetentionOptions {
                archive: Some(dir.clone()),
                with_descendants: true,
                ..RetentionOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.sessions(), 2);
    assert_eq!(
        report.removed[0].archives,
        [dir.join("s-0001.jsonl"), dir.join("s-0002.jsonl")]
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for path in &report.removed[0].archives {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let fresh = SqliteStore::open(f.dir.path().join("fresh.db"), StoreOptions::default()).unwrap();
    for path in &report.removed[0].archives {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        fresh.import(file, |_| {}).unwrap();
    }
    assert_eq!(fresh.entries(&root).unwrap(), before_root);
    assert_eq!(fresh.entries(&child).unwrap(), before_child);
    assert_eq!(fresh.session(&root).unwrap().title.as_deref(), Some("root"));
}

#[test]
fn a_failed_archive_deletes_nothing_of_its_unit() {
    let f = fixture();
    let old = session(&f, None, &["a".to_owned()], OLD);
    let not_a_dir = f.dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let before = state(&f);
    let report = f
        .store
        .retain(
            &gc(),
            &RetentionOptions {
                archive: Some(not_a_dir),
                ..RetentionOptions::default()
            },
        )
        .unwrap();
    assert!(report.failed());
    assert!(matches!(
        kept_reason(&report, &old),
        KeptBecause::Failed(why) if why.contains("archive")
    ));
    assert_eq!(state(&f), before);
    // The session's lock was let go.
    drop(f.store.lock_session(&old).unwrap());
}

#[test]
fn an_archive_that_reads_back_wrong_is_refused() {
    let f = fixture();
    let id = session(&f, None, &["a".to_owned(), "b".to_owned()], OLD);
    let info = f.store.session(&id).unwrap();
    let path = f.store.write_archive(f.dir.path(), &info).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let hash = blake3::hash(text.as_bytes());
    check_archive(&path, &info, &hash).unwrap();
    // One line short.
    let short: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &short).unwrap();
    let err = check_archive(&path, &info, &blake3::hash(short.as_bytes())).unwrap_err();
    assert!(err.to_string().contains("holds 1 entries"), "{err}");
    // Same lines, other bytes.
    let changed = text.replacen("\"b\"", "\"c\"", 1);
    std::fs::write(&path, &changed).unwrap();
    let err = check_archive(&path, &info, &hash).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
    // Not JSON.
    std::fs::write(&path, "{\"type\":\n").unwrap();
    let err = check_archive(&path, &info, &hash).unwrap_err();
    assert!(err.to_string().contains("line 1 is not JSON"), "{err}");
}

#[test]
fn archive_names_are_plain_files_for_any_id() {
    let name = |s: &str| archive_file_name(&SessionId::new(s).unwrap());
    assert_eq!(name("0190a-b_c.d"), "0190a-b_c.d.jsonl");
    assert_eq!(name("../x/y"), "%2E.%2Fx%2Fy.jsonl");
    assert_eq!(name("é"), "%C3%A9.jsonl");
}

#[test]
fn removing_one_session_ignores_age_and_refuses_one_with_descendants() {
    let f = fixture();
    let parent = session(&f, None, &[], RECENT);
    let child = fork(&f, &parent, RECENT);
    let one = Selection::Session(parent.clone());
    let report = f.store.retain(&one, &RetentionOptions::default()).unwrap();
    assert_eq!(
        kept_reason(&report, &parent),
        &KeptBecause::KeptDescendants(vec![child.clone()])
    );
    let report = f
        .store
        .retain(
            &Selection::Session(child.clone()),
            &RetentionOptions::default(),
        )
        .unwrap();
    assert_eq!(report.sessions(), 1);
    let report = f.store.retain(&one, &RetentionOptions::default()).unwrap();
    assert_eq!(report.sessions(), 1);
    assert!(ids(&f).is_empty());
    let unknown = f
        .store
        .retain(&one, &RetentionOptions::default())
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownSession(_)),
        "{unknown}"
    );
}

#[test]
fn the_file_shrinks_after_reclaiming_the_space_of_deleted_sessions() {
    let f = fixture();
    for n in 0..20 {
        session(&f, None, &[output(n, 200_000)], OLD);
    }
    let kept = session(&f, None, &["small".to_owned()], RECENT);
    f.store.checkpoint().unwrap();
    let before = f.store.space_usage().unwrap();
    let report = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(report.sessions(), 20);
    assert!(report.bytes() >= 20 * 200_000);
    let after = f.store.reclaim_space().unwrap();
    assert_eq!(after.free_pages, 0);
    assert!(
        after.file_bytes + 20 * 150_000 < before.file_bytes,
        "{before:?} -> {after:?}"
    );
    assert!(after.pages * after.page_size + 20 * 150_000 < before.pages * before.page_size);
    assert_eq!(f.store.entries(&kept).unwrap().len(), 2);
    assert_verifies(&f);
}

/// A store on a database made before podlog set auto-vacuum: it had a
/// table before podlog first opened it.
fn old_database() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE legacy (x)")
        .unwrap();
    let store = Arc::new(SqliteStore::open(&path, StoreOptions::default()).unwrap());
    Fixture { dir, store }
}

#[test]
fn vacuuming_an_old_database_switches_it_to_incremental() {
    let Fixture { dir: _dir, store } = old_database();
    assert_eq!(store.auto_vacuum().unwrap(), AutoVacuum::None);
    store.vacuum_to_incremental().unwrap();
    assert_eq!(store.auto_vacuum().unwrap(), AutoVacuum::Incremental);
}

/// A full `VACUUM` may give the entries new rowids, and the search index
/// is keyed by them: after one, the index must still name the right
/// entries (verify compares them) and a search must find what it found.
#[test]
fn vacuuming_an_old_database_keeps_its_search_index_true() {
    let f = old_database();
    let gone = session(&f, None, &[output(1, 200), output(2, 200)], OLD);
    let kept = session(&f, None, &["a wombatlantern was seen".to_owned()], RECENT);
    f.store
        .retain(&Selection::Session(gone), &RetentionOptions::default())
        .unwrap();
    f.store.vacuum_to_incremental().unwrap();
    assert_verifies(&f);
    let page = f
        .store
        .search(&crate::SearchQuery {
            text: "wombatlantern".to_owned(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let found: Vec<(SessionId, Seq)> = page
        .hits
        .iter()
        .map(|h| (h.session.clone(), h.seq))
        .collect();
    assert_eq!(found, [(kept, Seq(2))]);
}

#[test]
fn verify_reports_payload_refs_that_disagree_with_the_entries() {
    let f = fixture();
    let id = session(&f, None, &[output(1, 10_000)], RECENT);
    assert_verifies(&f);
    f.store
        .writer()
        .execute_batch(
            "DELETE FROM payload_refs; \
             INSERT INTO payload_refs VALUES ('feed', 's-0001', 1);",
        )
        .unwrap();
    let problems: Vec<String> = f
        .store
        .verify(None)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let hash = crate::payloads::hash(&output(1, 10_000));
    assert_eq!(
        problems,
        [
            format!("session {id} seq 1: payload_refs lists payload feed, which the entry does not reference"),
            format!("session {id} seq 2: payload_refs lacks its reference to payload {hash}"),
        ]
    );
}

#[test]
fn a_dry_run_counts_a_payload_shared_only_by_sessions_that_would_go() {
    let f = fixture();
    let shared = output(1, 30_000);
    session(&f, None, std::slice::from_ref(&shared), OLD);
    session(&f, None, std::slice::from_ref(&shared), OLD);
    let dry = f
        .store
        .retain(
            &gc(),
            &RetentionOptions {
                dry_run: true,
                ..RetentionOptions::default()
            },
        )
        .unwrap();
    let real = f.store.retain(&gc(), &RetentionOptions::default()).unwrap();
    assert_eq!(real.payloads(), 1);
    assert_eq!(dry.payloads(), real.payloads());
    assert_eq!(dry.bytes(), real.bytes());
}
