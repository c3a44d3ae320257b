//! Session lock tests. They guard against two writers interleaving one
//! session's history, against a crashed or killed writer blocking its session
//! forever, and against lock files other users can read.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use podlog_entry::{SessionId, StepClock};

use crate::{SequentialIds, SqliteStore, StoreError, StoreOptions};

fn open(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        path,
        StoreOptions {
            clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
            ids: Arc::new(SequentialIds::new("s")),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn id(text: &str) -> SessionId {
    SessionId::new(text).unwrap()
}

#[test]
fn a_second_lock_is_refused_naming_the_holder_and_drop_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let other = open(&path);
    let s1 = id("s-0001");

    let before = now_millis();
    let held = store.lock_session(&s1).unwrap();
    let after = now_millis();
    assert_eq!(held.session(), &s1);
    for refused_by in [&store, &other] {
        match refused_by.lock_session(&s1) {
            Err(StoreError::SessionLocked { session, holder }) => {
                assert_eq!(session, s1);
                assert_eq!(holder.pid, Some(std::process::id()));
                let since = holder.since.expect("since");
                assert!((before..=after).contains(&since), "{since}");
            }
            other => panic!("expected SessionLocked, got {other:?}"),
        }
    }
    let message = other.lock_session(&s1).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "session s-0001 is being written by pid {} ",
            std::process::id()
        )),
        "{message}"
    );
    let since = match other.lock_session(&s1) {
        Err(StoreError::SessionLocked { holder, .. }) => holder.since.expect("since"),
        other => panic!("expected SessionLocked, got {other:?}"),
    };
    assert!(
        message.ends_with(&format!("since {}", podlog_entry::iso8601(since))),
        "{message}"
    );

    // Another session is independent.
    let s2 = other.lock_session(&id("s-0002")).unwrap();

    drop(held);
    let again = other.lock_session(&s1).unwrap();
    assert!(matches!(
        store.lock_session(&s1),
        Err(StoreError::SessionLocked { .. })
    ));
    drop((again, s2));
}

#[test]
fn lock_files_are_private_and_named_safely_from_any_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let odd = id("../a/b");
    let lock = store.lock_session(&odd).unwrap();

    let folder = dir.path().join("podlog.db.locks");
    assert_eq!(lock.path(), folder.join("2e2e2f612f62.lock"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(lock.path()), 0o600);
    let written = std::fs::read_to_string(lock.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(json["pid"], std::process::id());
    let since = json["since"].as_u64().expect("since");
    assert!(since.abs_diff(now_millis()) < 60_000, "{since}");

    let lock_path = lock.path().to_owned();
    drop(lock);
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        "",
        "a released lock leaves no holder description behind"
    );
}

#[test]
fn an_unreadable_description_still_refuses_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let s1 = id("s-0001");
    let lock = store.lock_session(&s1).unwrap();
    std::fs::write(lock.path(), "not json").unwrap();
    let err = store.lock_session(&s1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "session s-0001 is being written by another process"
    );
}

const CHILD_DB: &str = "PODLOG_LOCK_TEST_CHILD_DB";
const LOCKED: &str = "child holds the session lock";

/// Run as a child process (this same test, with [`CHILD_DB`] set): takes the
/// lock, says so on stdout, then waits to be killed.
fn hold_lock_in_child(db: &str) {
    let store = open(std::path::Path::new(db));
    let _lock = store.lock_session(&id("s-0001")).unwrap();
    let mut out = std::io::stdout().lock();
    // On a line of its own: the test harness may have begun a line already.
    writeln!(out, "\n{LOCKED}").unwrap();
    out.flush().unwrap();
    // Never released on purpose: the parent kills this process. The bound
    // keeps a stray child from living on if the parent died first.
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn a_lock_held_by_another_process_is_refused_and_freed_by_kill_9() {
    if let Ok(db) = std::env::var(CHILD_DB) {
        hold_lock_in_child(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = open(&path);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock::tests::a_lock_held_by_another_process_is_refused_and_freed_by_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said_locked = lines.any(|l| l.is_ok_and(|l| l.trim() == LOCKED));
    assert!(said_locked, "the child took the lock");

    let s1 = id("s-0001");
    match store.lock_session(&s1) {
        Err(StoreError::SessionLocked { session, holder }) => {
            assert_eq!(session, s1);
            assert_eq!(holder.pid, Some(child.id()), "the holder is the child");
        }
        other => panic!("expected SessionLocked, got {other:?}"),
    }

    // SIGKILL: the child cannot clean up; the kernel releases its lock.
    child.kill().unwrap();
    child.wait().unwrap();
    let lock = store.lock_session(&s1).unwrap();
    let holder = std::fs::read_to_string(lock.path()).unwrap();
    assert!(
        holder.contains(&format!("\"pid\":{}", std::process::id())),
        "{holder}"
    );
}

/// Milliseconds since the Unix epoch, by the system clock.
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl crate::lock::LockWatch {
    /// Waits for [`Self::lost`] on a thread and a runtime of its own: the
    /// receiver hears once it completes.
    pub(crate) fn lost_on_a_thread(&self) -> std::sync::mpsc::Receiver<()> {
        let (told, heard) = std::sync::mpsc::channel();
        let waiter = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(waiter.lost());
            let _ = told.send(());
        });
        heard
    }
}

/// A watch's `lost()` completes when, and only when, the connection of its
/// generation stops being the live one, waking whoever waits for it; a
/// lock that cannot go (SQLite's) never completes it.
#[test]
fn a_lock_watch_completes_lost_once_its_connection_ends() {
    use futures_util::FutureExt;

    use crate::lock::{LiveGeneration, LockWatch};

    let live = Arc::new(LiveGeneration::default());
    live.set(3);
    let watch = LockWatch::postgres(live.clone(), 3);
    assert!(!watch.is_lost());
    assert!(watch.lost().now_or_never().is_none());
    live.end(2);
    assert!(!watch.is_lost(), "another connection's end changes nothing");

    let heard = watch.lost_on_a_thread();
    assert!(heard
        .recv_timeout(std::time::Duration::from_millis(100))
        .is_err());
    live.end(3);
    heard
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the waiter was never woken");
    assert!(watch.is_lost());
    live.set(4);
    assert!(
        watch.is_lost(),
        "a new connection does not bring the lock back"
    );
    assert!(watch.lost().now_or_never().is_some());

    assert!(!LockWatch::held().is_lost());
    assert!(LockWatch::held().lost().now_or_never().is_none());
}
