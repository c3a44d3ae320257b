//! Guards against a full disk or a bad file losing data or crashing the
//! program: appends on a filesystem that fills up fail with a clear error,
//! publish nothing, keep every entry committed before, and succeed again
//! once there is room; opening a read-only file, a file in a missing folder,
//! a file the user may not read, or a file that is not a database fails with
//! an error that says which and where.
//!
//! The full and read-only disks are real: small tmpfs filesystems mounted
//! for the test (this needs root, as CI and the development machines run),
//! so the errors come from the kernel, not from a simulation.

use std::path::{Path, PathBuf};
use std::process::Command;

use podlog_entry::{LogEntry, Seq};
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store, StoreOptions};

use crate::support::{podlog, TempDb};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mount)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a small tmpfs failed: these tests need root (as CI has)"
        );
        Self { _dir: dir, mount }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.mount)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn big_result(n: u64) -> LogEntry {
    LogEntry::ToolResult {
        ts: n,
        call_id: format!("call-{n}"),
        // Varied text, so that nothing compresses it away.
        output: (0..4000)
            .map(|i| char::from(b'a' + ((i * 7 + n) % 26) as u8))
            .collect(),
        is_error: false,
    }
}

#[test]
fn a_full_disk_fails_clearly_loses_nothing_and_recovers() {
    let disk = SmallDisk::new("1m");
    let path = disk.mount.join("podlog.db");
    let store = std::sync::Arc::new(Store::open(&path, StoreOptions::default()).unwrap());
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let (_, mut rx) = sink.subscribe_with_snapshot();
    let mut writer = store.session_writer(&id).unwrap();

    let mut last = Seq(1);
    let err = loop {
        match writer.append(big_result(last.get()), &sink) {
            Ok(seq) => last = seq,
            Err(e) => break e,
        }
        assert!(last.get() < 10_000, "the disk never filled");
    };
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(
        err.to_string().contains(id.as_str()),
        "names the session: {err}"
    );
    assert!(last.get() > 5, "some entries fit before the disk filled");
    assert_eq!(sink.end_seq(), last, "the failed entry was not published");
    assert!(rx.try_recv().is_err(), "nothing broadcast");
    // A second failure is as clean as the first.
    assert!(writer
        .append(big_result(0), &sink)
        .unwrap_err()
        .is_disk_full());

    // Everything committed before is there, as published.
    let on_disk = store.entries(&id).unwrap();
    assert_eq!(on_disk.len() as u64, last.get());
    let published: Vec<_> = sink.snapshot().entries.iter().cloned().collect();
    assert_eq!(on_disk, published);

    // Room again: appends go on from the next seq, with no gap.
    disk.remount("size=8m");
    let next = writer.append(big_result(99), &sink).unwrap();
    assert_eq!(next, last.next());
    drop((writer, store));
    let reopened = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(reopened.entries(&id).unwrap().len() as u64, next.get());
}

#[test]
fn a_read_only_filesystem_is_named_on_open_and_on_append() {
    let disk = SmallDisk::new("4m");
    let path = disk.mount.join("podlog.db");
    let demo = podlog(&path, &["demo", "--runs", "1"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    disk.remount("ro");
    let run = podlog(&path, &["sessions"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&path.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("read-only"), "{}", run.stderr);
}

fn as_nobody(db: &Path, args: &[&str]) -> crate::support::Run {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_podlog"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("PODLOG_DB")
        .output()
        .expect("setpriv")
        .into()
}

#[test]
fn open_failures_say_which_file_and_why() {
    let db = TempDb::new();
    // A world-traversable folder, so that only the file's own mode stops
    // another user.
    std::fs::set_permissions(
        db.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let made = podlog(&db.path, &["demo", "--runs", "1"]);
    assert_eq!(made.code, 0);
    let denied = as_nobody(&db.path, &["sessions"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied
            .stderr
            .contains(&format!("cannot open database {}", db.path.display())),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains("permission denied") || denied.stderr.contains("cannot be opened"),
        "{}",
        denied.stderr
    );

    let missing = db.dir.path().join("nowhere/podlog.db");
    let run = podlog(&missing, &["sessions"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);

    let text = db.dir.path().join("notes.db");
    std::fs::write(
        &text,
        "just some notes, long enough to fill a SQLite header and more\n".repeat(4),
    )
    .unwrap();
    let run = podlog(&text, &["sessions"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains(&format!("{} is not a SQLite database", text.display())),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&text).unwrap().len(),
        "just some notes, long enough to fill a SQLite header and more\n".len() * 4,
        "the foreign file is left as it was"
    );
}
