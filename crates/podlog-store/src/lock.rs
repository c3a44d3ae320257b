//! One writer per session, across processes: [`SqliteStore::lock_session`] and the
//! [`SessionLock`] it returns.
//!
//! # Contract
//!
//! * A process that writes to a session holds its [`SessionLock`] for as long
//!   as it writes. While one is held, every other [`SqliteStore::lock_session`] for
//!   the same session and database fails at once (it never waits) with
//!   [`StoreError::SessionLocked`], whose message names the holder: its pid,
//!   its host and since when it holds the lock. This holds between processes
//!   and within one process (two `SqliteStore`s, or the same `SqliteStore` twice).
//! * The lock is an advisory `flock` on a file, taken through
//!   [`std::fs::File::try_lock`]. The kernel releases it when the holder
//!   drops its [`SessionLock`], exits, crashes or is killed (`kill -9`
//!   included), so a dead holder never blocks a session.
//! * Readers take no lock: a read-only attach is always allowed.
//! * A lock is on a session id, whether or not the session exists yet, so a
//!   process may lock an id before it writes the session's first entry.
//!
//! # Files
//!
//! Lock files live in a folder next to the database named after it with
//! `.locks` appended (`podlog.db.locks/`), created 0700. Each session's file
//! is named by the hex encoding of its id plus `.lock` (ids may hold `/` or
//! `..`), created 0600. The holder writes its description as one JSON object
//! (`{"pid":1234,"host":"box","since":1700000000000}`) into the file after
//! taking the lock, and empties the file when it lets go. Lock files are not
//! removed: removing a file others may have open would let two processes
//! lock two different files of the same name. They hold a few bytes each.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use podlog_entry::{iso8601, SessionId};

use crate::{Result, SqliteStore, StoreError};

/// Who holds a session's write lock, as the holder wrote it into the lock
/// file. Every field is `None` when the description cannot be read (the
/// holder has only just taken the lock, or the file was edited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: Option<u32>,
    /// The host the holder runs on.
    pub host: Option<String>,
    /// When the holder took the lock, in milliseconds since the Unix epoch.
    pub since: Option<u64>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => f.write_str("another process")?,
        }
        if let Some(host) = &self.host {
            write!(f, " on {host}")?;
        }
        if let Some(since) = self.since {
            write!(f, " since {}", iso8601(since))?;
        }
        Ok(())
    }
}

impl LockHolder {
    fn to_json(&self) -> String {
        serde_json::json!({ "pid": self.pid, "host": self.host, "since": self.since }).to_string()
    }

    /// The description in `text`, or `None` if it is not (yet) a whole JSON
    /// object.
    fn from_json(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        value.as_object()?;
        Some(LockHolder {
            pid: value
                .get("pid")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            host: value
                .get("host")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            since: value.get("since").and_then(serde_json::Value::as_u64),
        })
    }
}

/// The write lock of one session, held until dropped (or until the process
/// ends). See the module docs.
#[derive(Debug)]
pub struct SessionLock {
    session: SessionId,
    path: PathBuf,
    file: File,
}

impl SessionLock {
    /// The locked session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        // Empty the description while still holding the lock, so no later
        // reader mistakes it for a live holder; closing the file (right after
        // this) releases the lock. Failures here cannot be reported and change
        // nothing about the release.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The lock folder of the database at `db`: `<db file name>.locks` beside it.
fn lock_dir(db: &Path) -> Result<PathBuf> {
    let name = db.file_name().ok_or_else(|| StoreError::Lock {
        path: db.to_owned(),
        reason: "the database path has no file name".to_owned(),
    })?;
    let mut dir_name = name.to_owned();
    dir_name.push(".locks");
    Ok(db.with_file_name(dir_name))
}

/// The lock file name of `session`: its id in lowercase hex, so any id maps
/// to a plain file name.
fn lock_file_name(session: &SessionId) -> String {
    let mut name: String = session
        .as_str()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    name.push_str(".lock");
    name
}

/// The host name, where the system makes it cheap to read.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Reads the holder's description from `file`. A holder that has just taken
/// the lock may not have written it (whole) yet: wait briefly for it.
fn read_holder(file: &mut File) -> LockHolder {
    for attempt in 0..20 {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if let Some(holder) = read.ok().and_then(|_| LockHolder::from_json(&text)) {
            return holder;
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    LockHolder::default()
}

impl SqliteStore {
    /// Who holds the write lock of `session`, if anyone, without taking it
    /// for longer than a look and without creating any file: a session
    /// whose lock file does not exist has never been locked, so no one
    /// holds it. For reports that must change nothing (`podlog gc
    /// --dry-run`). The look takes a shared lock for an instant: a writer
    /// taking the lock in that instant is refused as if the session were
    /// held, and may try again.
    pub fn lock_holder(&self, session: &SessionId) -> Result<Option<LockHolder>> {
        let path = lock_dir(self.path())?.join(lock_file_name(session));
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Lock {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(read_holder(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Lock {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Takes the write lock of `session` for this process, or fails at once
    /// with [`StoreError::SessionLocked`] naming the process that holds it.
    /// The lock lasts until the returned [`SessionLock`] is dropped or the
    /// process ends. See the module docs.
    pub fn lock_session(&self, session: &SessionId) -> Result<SessionLock> {
        let dir = lock_dir(self.path())?;
        let lock_error = |path: &Path, e: std::io::Error| StoreError::Lock {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(lock_error(&dir, e)),
        }
        let path = dir.join(lock_file_name(session));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| lock_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::SessionLocked {
                    session: session.clone(),
                    holder: read_holder(&mut file),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(&path, e)),
        }
        // Wall-clock time, not the store's clock: the description is for
        // people, and taking a lock must not move an injected clock that
        // stamps entries.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok());
        let me = LockHolder {
            pid: Some(std::process::id()),
            host: host_name(),
            since,
        };
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.to_json().as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| lock_error(&path, e))?;
        Ok(SessionLock {
            session: session.clone(),
            path,
            file,
        })
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;

/// The generation of a store's live write connection (0: none), and a
/// wake for whoever waits for it to change ([`LockWatch::lost`]).
#[derive(Debug, Default)]
pub(crate) struct LiveGeneration {
    generation: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

impl LiveGeneration {
    /// The live connection's generation, 0 when there is none.
    pub(crate) fn get(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The connection of `generation` is the live one now.
    pub(crate) fn set(&self, generation: u64) {
        self.generation
            .store(generation, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The connection of `generation` is closed or going: if it was the
    /// live one, none is now.
    pub(crate) fn end(&self, generation: u64) {
        use std::sync::atomic::Ordering;
        if self
            .generation
            .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.changed.notify_waiters();
        }
    }
}

/// Whether a session writer's lock is gone, told without waiting and
/// without the writer (a pod keeps one beside its writer, which a commit
/// may be holding). On SQLite a writer's lock lives as long as the writer:
/// never gone. On PostgreSQL it goes with the connection it was taken on;
/// the connection is looked at whenever it is used, and every second while
/// it is idle (`pg/announce.rs`), so a connection the server ended is seen
/// within about a second, commit or not.
#[derive(Clone, Debug, Default)]
pub struct LockWatch(Option<(std::sync::Arc<LiveGeneration>, u64)>);

impl LockWatch {
    /// A watch that never reports the lock gone (SQLite's).
    pub fn held() -> Self {
        LockWatch(None)
    }

    /// The lock of the connection of `generation`, gone once `live` no
    /// longer holds it.
    pub(crate) fn postgres(live: std::sync::Arc<LiveGeneration>, generation: u64) -> Self {
        LockWatch(Some((live, generation)))
    }

    /// Whether the lock is gone.
    pub fn is_lost(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(live, generation)| live.get() != *generation)
    }

    /// Completes once the lock is gone, as soon as [`Self::is_lost`] would
    /// say so; never for a lock that cannot go (SQLite's). Waits without a
    /// thread of its own, on any async runtime.
    pub async fn lost(&self) {
        let Some((live, _)) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            // Registered before the look, so that a change between the
            // two still wakes it.
            let changed = live.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.is_lost() {
                return;
            }
            changed.await;
        }
    }
}
