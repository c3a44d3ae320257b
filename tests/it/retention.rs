//! `podlog gc` and `podlog rm` end to end: which sessions go and which stay
//! and why (age, title, descendants, a pod holding one in another process),
//! dry runs, archives that `podlog import` reads back into the same
//! entries, payloads and shares, the space given back, an upgraded
//! database, and a gc killed with SIGKILL at random moments.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{LogEntry, Seq, SessionId, StepClock};
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store, StoreOptions};

use crate::child::{self, Role};
use crate::support::{podlog, sqlite3, Rng, Run, TempDb};

/// November 2023: sessions written with this clock are years old.
const LONG_AGO: u64 = 1_700_000_000_000;

/// A store on `db` whose clock reads `LONG_AGO` and on: what it writes is
/// old for any `--older-than` below two years.
fn old_store(db: &Path) -> Arc<Store> {
    let options = StoreOptions {
        clock: Arc::new(StepClock::new(LONG_AGO, 1000)),
        ..StoreOptions::default()
    };
    Arc::new(Store::open(db, options).expect("open the database"))
}

/// A store on `db` with the system clock: what it writes is recent.
fn new_store(db: &Path) -> Arc<Store> {
    Arc::new(Store::open(db, StoreOptions::default()).expect("open the database"))
}

/// A tool output of `len` bytes, different for each `n`.
fn output(n: u64, len: usize) -> String {
    let line = format!("line of output {n}: the quick brown fox jumps over the lazy dog\n");
    line.repeat(len / line.len() + 1)[..len].to_owned()
}

/// A session of `store` titled `title` with one tool result per output.
fn add_session(store: &Arc<Store>, title: Option<&str>, outputs: &[String]) -> SessionId {
    let (id, start) = store
        .create_session(NewSession {
            title: title.map(str::to_owned),
            ..NewSession::default()
        })
        .unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut writer = store.session_writer(&id).unwrap();
    for (i, text) in outputs.iter().enumerate() {
        let entry = LogEntry::ToolResult {
            ts: store.now(),
            call_id: format!("call-{i}"),
            output: text.clone(),
            is_error: false,
        };
        writer.append(entry, &sink).unwrap();
    }
    id
}

/// The session's export, as `podlog export` writes it.
fn export(store: &Store, id: &SessionId) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.export(id, false, &mut bytes, |_| {}).unwrap();
    bytes
}

fn session_ids(db: &Path) -> Vec<String> {
    let run = sqlite3(db, "SELECT id FROM sessions ORDER BY id;");
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.lines().map(str::to_owned).collect()
}

/// Every table retention touches, dumped by the shell.
fn dump(db: &Path) -> String {
    let run = sqlite3(
        db,
        "SELECT * FROM sessions ORDER BY id; SELECT session_id, seq, body FROM entries \
         ORDER BY session_id, seq; SELECT hash, size FROM payloads ORDER BY hash; \
         SELECT * FROM payload_refs ORDER BY hash, session_id, seq; SELECT * FROM shares ORDER BY id;",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

fn ok(run: &Run) -> &str {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    &run.stdout
}

fn assert_verifies(db: &Path) {
    let run = podlog(db, &["verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn gc_deletes_old_sessions_keeps_recent_and_titled_and_a_dry_run_changes_nothing() {
    let db = TempDb::new();
    let old = old_store(&db.path);
    let old_plain = add_session(&old, None, &["a".to_owned(), "b".to_owned()]);
    let old_titled = add_session(&old, Some("keep me"), &["c".to_owned()]);
    drop(old);
    let recent = add_session(&new_store(&db.path), None, &["d".to_owned()]);

    let before = dump(&db.path);
    let dry = podlog(
        &db.path,
        &["gc", "--older-than", "30d", "--keep-titled", "--dry-run"],
    );
    let text = ok(&dry);
    assert!(
        text.contains(&format!("would delete {old_plain}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("kept {old_titled}: has a title (--keep-titled)")),
        "{text}"
    );
    assert!(text.contains("would delete 1 session, 3 entries"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(
        !text.contains(recent.as_str()),
        "a recent session is not even considered: {text}"
    );
    assert_eq!(dump(&db.path), before, "the dry run changed nothing");

    let run = podlog(&db.path, &["gc", "--older-than", "30d", "--keep-titled"]);
    let text = ok(&run);
    assert!(text.contains(&format!("deleted {old_plain}")), "{text}");
    assert!(text.contains("deleted 1 session, 3 entries"), "{text}");
    let mut left = vec![old_titled.to_string(), recent.to_string()];
    left.sort();
    assert_eq!(session_ids(&db.path), left);

    // A limit longer than the old sessions' age keeps them.
    let run = podlog(&db.path, &["gc", "--older-than", "36500d"]);
    assert!(ok(&run).contains("deleted 0 sessions"), "{}", run.stdout);
    let run = podlog(&db.path, &["gc", "--older-than", "30d"]);
    assert!(
        ok(&run).contains(&format!("deleted {old_titled}")),
        "{}",
        run.stdout
    );
    assert_eq!(session_ids(&db.path), [recent.to_string()]);
    assert_verifies(&db.path);
}

#[test]
fn bad_durations_and_unknown_sessions_are_clear_errors() {
    let db = TempDb::new();
    add_session(&new_store(&db.path), None, &[]);
    add_session(&new_store(&db.path), None, &[]);
    for (args, message) in [
        (
            &["gc", "--older-than", "30"][..],
            "bad duration \"30\": want a whole number and a unit (m, h, d)",
        ),
        (&["gc", "--older-than", "2w"], "bad duration \"2w\""),
        (&["gc", "--older-than", "0d"], "must be more than zero"),
        (
            &["rm", "no-such-session"],
            "unknown session no-such-session",
        ),
        // Both ids are UUIDv7s of this minute: they share a prefix.
        (&["rm", "0"], "session prefix \"0\" is ambiguous"),
    ] {
        let run = podlog(&db.path, args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert_eq!(session_ids(&db.path).len(), 2);
}

#[test]
fn rm_deletes_one_session_by_prefix_whatever_its_age_and_refuses_one_with_descendants() {
    let db = TempDb::new();
    let store = new_store(&db.path);
    let parent = add_session(&store, None, &["x".to_owned()]);
    let (child, _) = store.fork(&parent, Seq(1)).unwrap();
    drop(store);
    let prefix = &parent.as_str()[..30];
    assert!(!child.as_str().starts_with(prefix));

    let run = podlog(&db.path, &["rm", prefix]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "session {parent} was not deleted: has descendants that stay: {child}"
        )),
        "{}",
        run.stderr
    );
    let dry = podlog(&db.path, &["rm", prefix, "--with-descendants", "--dry-run"]);
    assert!(
        ok(&dry).contains(&format!("would delete {child}")),
        "{}",
        dry.stdout
    );
    assert_eq!(session_ids(&db.path).len(), 2);

    let run = podlog(&db.path, &["rm", prefix, "--with-descendants"]);
    let text = ok(&run);
    assert!(text.contains(&format!("deleted {parent}")), "{text}");
    assert!(
        text.contains(&format!("deleted {child}")) && text.contains("descendant of"),
        "{text}"
    );
    assert!(session_ids(&db.path).is_empty());
    assert_verifies(&db.path);
}

#[test]
fn descendants_keep_an_old_session_unless_they_go_with_it() {
    let db = TempDb::new();
    let root = add_session(&old_store(&db.path), None, &["x".to_owned()]);
    let store = new_store(&db.path);
    let (fork, _) = store.fork(&root, Seq(1)).unwrap();
    let (compaction, _) = store.compact(&fork, vec![]).unwrap();
    drop(store);

    let run = podlog(&db.path, &["gc", "--older-than", "30d"]);
    let text = ok(&run);
    assert!(
        text.contains(&format!("kept {root}: has descendants that stay: {fork}")),
        "{text}"
    );
    assert_eq!(session_ids(&db.path).len(), 3);

    let run = podlog(
        &db.path,
        &["gc", "--older-than", "30d", "--with-descendants"],
    );
    let text = ok(&run);
    for id in [&root, &fork, &compaction] {
        assert!(text.contains(&format!("deleted {id}")), "{id}: {text}");
    }
    assert!(text.contains("deleted 3 sessions"), "{text}");
    assert!(session_ids(&db.path).is_empty());
    assert_verifies(&db.path);
}

/// The test whose child holds a session as a pod.
const HOLD_TEST: &str = "retention::a_session_a_pod_holds_in_another_process_is_never_deleted";

struct Holder {
    child: Child,
    _stdin: ChildStdin,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pod in another process holding `session`, once it says so, and its pid.
fn hold(db: &Path, session: &SessionId) -> (Holder, u32) {
    let mut child = child::command(
        HOLD_TEST,
        db,
        &Role::Hold {
            session,
            delta_ms: 0,
        },
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("spawn the holder");
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let pid = child.id();
    let holder = Holder {
        child,
        _stdin: stdin,
    };
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the holder ended before it held the session"
        );
        if line.starts_with("holding ") {
            return (holder, pid);
        }
    }
}

#[test]
fn a_session_a_pod_holds_in_another_process_is_never_deleted() {
    if child::play_if_child() {
        return;
    }
    let db = TempDb::new();
    let old = old_store(&db.path);
    let held = add_session(&old, None, &["a".to_owned()]);
    let free = add_session(&old, None, &["b".to_owned()]);
    drop(old);
    let (holder, pid) = hold(&db.path, &held);

    let dry = podlog(&db.path, &["gc", "--older-than", "30d", "--dry-run"]);
    assert!(
        ok(&dry).contains(&format!("kept {held}: session {held} is held by pid {pid}")),
        "{}",
        dry.stdout
    );
    let run = podlog(&db.path, &["gc", "--older-than", "30d"]);
    let text = ok(&run);
    assert!(
        text.contains(&format!("kept {held}: session {held} is held by pid {pid}")),
        "{text}"
    );
    assert!(text.contains(&format!("deleted {free}")), "{text}");
    let rm = podlog(&db.path, &["rm", held.as_str()]);
    assert_eq!(rm.code, 1);
    assert!(
        rm.stderr.contains(&format!("is held by pid {pid}")),
        "{}",
        rm.stderr
    );
    assert_eq!(session_ids(&db.path), [held.to_string()]);

    // Once the pod is gone, so is the session.
    drop(holder);
    let run = podlog(&db.path, &["rm", held.as_str()]);
    assert!(
        ok(&run).contains(&format!("deleted {held}")),
        "{}",
        run.stdout
    );
    assert_verifies(&db.path);
}

#[test]
fn archives_import_into_a_fresh_database_as_the_same_sessions() {
    let db = TempDb::new();
    let old = old_store(&db.path);
    let root = add_session(&old, Some("root"), &[output(1, 50_000), "small".to_owned()]);
    let (fork, _) = old.fork(&root, Seq(2)).unwrap();
    let exports: Vec<(SessionId, Vec<u8>)> = [&root, &fork]
        .into_iter()
        .map(|id| (id.clone(), export(&old, id)))
        .collect();
    drop(old);
    let archive = db.dir.path().join("archive");
    let run = podlog(
        &db.path,
        &[
            "gc",
            "--older-than",
            "1d",
            "--archive",
            archive.to_str().unwrap(),
        ],
    );
    let text = ok(&run);
    assert!(text.contains("deleted 2 sessions"), "{text}");
    assert!(
        text.contains(&format!(
            "(archived to {})",
            archive.join(format!("{root}.jsonl")).display()
        )),
        "{text}"
    );
    assert!(session_ids(&db.path).is_empty());

    let fresh = db.dir.path().join("fresh.db");
    for (id, bytes) in &exports {
        let file = archive.join(format!("{id}.jsonl"));
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{id}");
        let import = podlog(&fresh, &["import", file.to_str().unwrap()]);
        assert!(
            ok(&import).contains("imported 1 session"),
            "{}",
            import.stdout
        );
    }
    let store = new_store(&fresh);
    for (id, bytes) in &exports {
        assert_eq!(&export(&store, id), bytes, "{id} reads back the same");
    }
    assert_eq!(
        store.entries(&root).unwrap().len(),
        3,
        "the payload came back whole"
    );
}

#[test]
fn payloads_shared_with_a_kept_session_stay_and_shares_go_with_their_session() {
    let db = TempDb::new();
    let shared = output(1, 30_000);
    let unshared = output(2, 30_000);
    let old = add_session(
        &old_store(&db.path),
        None,
        &[shared.clone(), unshared.clone()],
    );
    let kept = add_session(&new_store(&db.path), None, std::slice::from_ref(&shared));
    ok(&podlog(&db.path, &["share", old.as_str()]));
    ok(&podlog(&db.path, &["share", kept.as_str()]));
    let run = podlog(&db.path, &["gc", "--older-than", "1d"]);
    let text = ok(&run);
    assert!(
        text.contains("deleted 1 session, 3 entries, 1 payload, 1 share"),
        "{text}"
    );
    let hashes = sqlite3(&db.path, "SELECT hash FROM payloads;").stdout;
    assert_eq!(
        hashes.trim(),
        podlog_store::payloads::hash(&shared).as_str()
    );
    let shares = sqlite3(&db.path, "SELECT session_id FROM shares;").stdout;
    assert_eq!(shares.trim(), kept.as_str());
    let store = new_store(&db.path);
    match store.entries(&kept).unwrap()[1].entry.as_ref() {
        LogEntry::ToolResult { output, .. } => assert_eq!(output, &shared),
        other => panic!("{other:?}"),
    }
    assert_verifies(&db.path);
}

#[test]
fn gc_reports_the_bytes_it_reclaims_and_the_file_shrinks() {
    let db = TempDb::new();
    let old = old_store(&db.path);
    for n in 0..10 {
        add_session(&old, None, &[output(n, 300_000), format!("note {n}")]);
    }
    drop(old);
    add_session(&new_store(&db.path), None, &["small".to_owned()]);
    let before = std::fs::metadata(&db.path).unwrap().len();
    assert!(before > 3_000_000, "{before}");
    let run = podlog(&db.path, &["gc", "--older-than", "30d"]);
    let text = ok(&run);
    assert!(
        text.contains("deleted 10 sessions, 30 entries, 10 payloads"),
        "{text}"
    );
    assert!(text.contains("2.9 MiB of entries and payloads"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("database: "))
        .unwrap_or_else(|| panic!("{text}"));
    let after = std::fs::metadata(&db.path).unwrap().len();
    assert!(after + 2_900_000 < before, "{before} -> {after}");
    assert!(
        line.contains(&format!(" MiB, {} bytes;", before - after)),
        "{line} ({before} -> {after})"
    );
    assert_eq!(
        sqlite3(&db.path, "PRAGMA freelist_count;").stdout.trim(),
        "0"
    );
}

fn load_dump(dump: &Path, db: &Path) {
    let status = Command::new("sqlite3")
        .arg(db)
        .stdin(std::fs::File::open(dump).expect("open dump"))
        .status()
        .expect("the sqlite3 shell must be installed");
    assert!(status.success(), "loading {}", dump.display());
}

#[test]
fn an_upgraded_database_knows_its_payload_references_and_can_be_vacuumed_once() {
    let db = TempDb::new();
    let v4 = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema/v4.sql");
    load_dump(&v4, &db.path);
    drop(new_store(&db.path));
    let refs = sqlite3(
        &db.path,
        "SELECT count(*) FROM payload_refs; \
         SELECT count(*) FROM (SELECT DISTINCT json_extract(r.value, '$.hash'), e.session_id, e.seq \
           FROM entries AS e, json_each(e.payloads) AS r WHERE e.payloads IS NOT NULL \
           EXCEPT SELECT hash, session_id, seq FROM payload_refs);",
    );
    let counts: Vec<&str> = refs.stdout.lines().collect();
    assert!(counts[0].parse::<u64>().unwrap() > 0, "{}", refs.stdout);
    assert_eq!(counts[1], "0", "every reference was filled in");
    assert_eq!(sqlite3(&db.path, "PRAGMA auto_vacuum;").stdout.trim(), "0");

    // The fixture's sessions are recent: remove its one family by name.
    let sessions = session_ids(&db.path);
    let root = sqlite3(&db.path, "SELECT id FROM sessions WHERE parent_id IS NULL;").stdout;
    let run = podlog(&db.path, &["rm", root.trim(), "--with-descendants"]);
    let text = ok(&run);
    assert!(
        text.contains(&format!("deleted {} sessions", sessions.len())),
        "{text}"
    );
    assert!(text.contains("made without auto-vacuum"), "{text}");
    assert!(text.contains("podlog gc --vacuum"), "{text}");
    assert_verifies(&db.path);

    let run = podlog(&db.path, &["gc", "--older-than", "1d", "--vacuum"]);
    assert!(
        ok(&run).contains("rewrote the database with incremental auto-vacuum"),
        "{}",
        run.stdout
    );
    assert_eq!(sqlite3(&db.path, "PRAGMA auto_vacuum;").stdout.trim(), "2");
    assert_verifies(&db.path);
    let again = podlog(&db.path, &["gc", "--older-than", "1d", "--vacuum"]);
    assert!(
        ok(&again).contains("already has auto-vacuum on: nothing to rewrite"),
        "{}",
        again.stdout
    );
}

/// This file's crash test, as the harness names it.
const CRASH_TEST: &str =
    "retention::a_gc_killed_at_random_moments_leaves_every_session_whole_or_archived";

/// The shell says every payload an entry names is stored, no payload is
/// left that nothing references, and no entry or child outlives its
/// session.
fn assert_no_dangling(db: &Path) {
    let run = sqlite3(
        db,
        "SELECT count(*) FROM payload_refs WHERE hash NOT IN (SELECT hash FROM payloads); \
         SELECT count(*) FROM payloads WHERE hash NOT IN (SELECT hash FROM payload_refs); \
         SELECT count(*) FROM entries WHERE session_id NOT IN (SELECT id FROM sessions); \
         SELECT count(*) FROM sessions WHERE parent_id IS NOT NULL \
           AND parent_id NOT IN (SELECT id FROM sessions); \
         SELECT count(*) FROM shares WHERE session_id NOT IN (SELECT id FROM sessions);",
    );
    assert_eq!(run.stdout, "0\n0\n0\n0\n0\n", "{}", run.stderr);
}

#[test]
fn a_gc_killed_at_random_moments_leaves_every_session_whole_or_archived() {
    let seed = std::env::var("PODLOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15_u64);
    let mut rng = Rng(seed);
    let db = TempDb::new();
    let archive: PathBuf = db.dir.path().join("archive");
    // Old sessions in families of three (a root, a fork, a fork of the
    // fork), each with a payload of its own and one shared with a kept
    // session; the kept sessions are recent.
    let old = old_store(&db.path);
    let mut exports: HashMap<SessionId, Vec<u8>> = HashMap::new();
    let mut shared = Vec::new();
    for family in 0..12u64 {
        let common = output(1000 + family, 9_000);
        shared.push(common.clone());
        let root = add_session(&old, None, &[output(family * 10, 20_000), common.clone()]);
        let (fork, _) = old.fork(&root, Seq(2)).unwrap();
        let (grandchild, _) = old.fork(&fork, Seq(1)).unwrap();
        old.create_share(root.as_str(), None).unwrap();
        for id in [root, fork, grandchild] {
            exports.insert(id.clone(), export(&old, &id));
        }
    }
    drop(old);
    let recent = new_store(&db.path);
    let kept: Vec<SessionId> = shared
        .iter()
        .map(|text| add_session(&recent, None, std::slice::from_ref(text)))
        .collect();
    let kept_exports: Vec<Vec<u8>> = kept.iter().map(|id| export(&recent, id)).collect();
    drop(recent);

    let gc = || {
        Command::new(env!("CARGO_BIN_EXE_podlog"))
            .arg("--db")
            .arg(&db.path)
            .args(["gc", "--older-than", "30d", "--archive"])
            .arg(&archive)
            .env_remove("PODLOG_DB")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn podlog gc")
    };
    let mut kills = 0;
    let mut gone_while_killing = 0;
    for _ in 0..30 {
        let mut child = gc();
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        let killed = child.kill().is_ok();
        child.wait().unwrap();
        kills += u32::from(killed);

        assert_no_dangling(&db.path);
        assert_verifies(&db.path);
        let store = new_store(&db.path);
        for (id, bytes) in &exports {
            match store.session(id) {
                Ok(_) => assert_eq!(&export(&store, id), bytes, "{id} is whole"),
                Err(podlog_store::StoreError::UnknownSession(_)) => {
                    let file = archive.join(format!("{id}.jsonl"));
                    let archived = std::fs::read(&file)
                        .unwrap_or_else(|e| panic!("{id} is gone without its archive: {e}"));
                    assert_eq!(&archived, bytes, "{id}'s archive is complete");
                }
                Err(e) => panic!("{id}: {e}"),
            }
        }
        for (id, bytes) in kept.iter().zip(&kept_exports) {
            assert_eq!(&export(&store, id), bytes, "kept {id} is untouched");
        }
        gone_while_killing = exports
            .keys()
            .filter(|id| store.session(id).is_err())
            .count();
        if gone_while_killing == exports.len() {
            break;
        }
    }
    // One run to the end finishes the job.
    let status = gc().wait().unwrap();
    assert!(status.success());
    let store = new_store(&db.path);
    let left: Vec<String> = store
        .sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.unwrap().id.to_string())
        .collect();
    let mut expected: Vec<String> = kept.iter().map(ToString::to_string).collect();
    expected.sort();
    let mut left = left;
    left.sort();
    assert_eq!(left, expected);
    assert_no_dangling(&db.path);
    assert!(kills > 0);
    eprintln!(
        "{kills} kills, {gone_while_killing} of {} sessions gone by then, seed {seed:#x} ({CRASH_TEST})",
        exports.len()
    );
}

#[test]
fn a_session_an_open_pod_of_this_process_holds_is_kept_until_the_pod_closes() {
    let db = TempDb::new();
    let old = old_store(&db.path);
    let held = add_session(&old, None, &["a".to_owned()]);
    drop(old);
    let store = new_store(&db.path);
    let pod = podlog_pod::Pod::restore(
        store.clone(),
        &held,
        Box::new(podlog_pod::ScriptedDriver::demo()),
    )
    .expect("restore a pod on the old session");
    let cutoff = podlog_store::Selection::UntouchedBefore(store.now() - 86_400_000);
    let options = podlog_store::RetentionOptions::default();
    let report = store.retain(&cutoff, &options).unwrap();
    assert_eq!(report.sessions(), 0);
    match &report.kept[0].because {
        podlog_store::KeptBecause::Held { session, holder } => {
            assert_eq!(session, &held);
            assert_eq!(holder.pid, Some(std::process::id()));
        }
        other => panic!("kept for {other:?}"),
    }
    pod.shutdown();
    drop(pod);
    let report = store.retain(&cutoff, &options).unwrap();
    assert_eq!(report.sessions(), 1, "{report:?}");
}
