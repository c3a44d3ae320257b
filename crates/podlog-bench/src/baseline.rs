//! The baselines podlog is measured against, written here with no podlog
//! code around them and fed the same entry bodies (see [`crate::corpus`]).
//!
//! * [`JsonlAppend`]: what a peer without a database does, one JSON line per
//!   entry appended to a file, with `fdatasync` after each line (durable) or
//!   without (fast, loses the tail on power loss).
//! * [`RawSqliteAppend`]: hand-written rusqlite, one `INSERT` per
//!   `BEGIN IMMEDIATE` transaction, the same pragmas as podlog's writer (WAL,
//!   `foreign_keys`, the chosen `synchronous`, a busy timeout) and the same
//!   entry table, but no session row, no seq lookup, no counters, no sink.
//!   For reference it can also run podlog's statements (the guarded counter
//!   update and the insert) without podlog's code
//!   ([`RawShape::InsertWithCounters`]),
//!   which splits podlog's cost into its SQL and the rest.
//! * [`SeedSink`]: the mirror the project grew from, a `Mutex<Vec<LogEntry>>`
//!   whose whole contents are cloned for every subscriber, with its
//!   broadcast channel.
//! * [`raw_restore`]: `SELECT body ... ORDER BY seq` and `serde_json::from_str`
//!   per row into a `Vec<LogEntry>`.
//!
//! Every timed function takes its entries already generated, so timing
//! covers only serialisation and I/O, the same work podlog's side does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use podlog_entry::LogEntry;
use podlog_sink::is_live_relevant;
use podlog_store::Synchronous;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use tokio::sync::broadcast;

use crate::error::{self, BenchError, Result};

/// Appends entries as JSON lines to one file.
pub struct JsonlAppend {
    row: &'static str,
    path: PathBuf,
    file: File,
    fdatasync: bool,
    lines: u64,
}

impl JsonlAppend {
    /// Creates (mode 0600) or opens for appending `dir/name`. With
    /// `fdatasync`, every line is flushed to the disk before the next.
    /// `row` names the table row in error messages.
    pub fn open(row: &'static str, dir: &Path, name: &str, fdatasync: bool) -> Result<Self> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(error::io(row, "opening", &path))?;
        Ok(Self {
            row,
            path,
            file,
            fdatasync,
            lines: 0,
        })
    }

    /// Writes one line per entry (`write`, then `fdatasync` if asked) and
    /// returns the time taken.
    pub fn run(&mut self, entries: &[LogEntry]) -> Result<Duration> {
        let start = Instant::now();
        for entry in entries {
            let mut line = entry.to_json();
            line.push('\n');
            self.file
                .write_all(line.as_bytes())
                .map_err(error::io(self.row, "writing", &self.path))?;
            if self.fdatasync {
                self.file
                    .sync_data()
                    .map_err(error::io(self.row, "flushing", &self.path))?;
            }
        }
        let elapsed = start.elapsed();
        self.lines += entries.len() as u64;
        Ok(elapsed)
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

/// The table of the raw SQLite baseline: the shape of podlog's `entries`.
const RAW_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS entries (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    body       TEXT    NOT NULL CHECK (json_valid(body)),
    PRIMARY KEY (session_id, seq)
) STRICT;";

/// The tables of the raw baseline with session counters: podlog's shape
/// (a session row with its counters, entries referencing it).
const RAW_COUNTERS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT    NOT NULL PRIMARY KEY,
    updated_at  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    entry_count INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO sessions (id, updated_at, last_seq, entry_count) VALUES ('raw', 0, 0, 0);
CREATE TABLE IF NOT EXISTS entries (
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    body       TEXT    NOT NULL CHECK (json_valid(body)),
    PRIMARY KEY (session_id, seq)
) STRICT;";

/// What each raw transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawShape {
    /// One `INSERT` of the entry row, its seq counted in memory: the least a
    /// SQLite log can do.
    Insert,
    /// podlog's statements without podlog's code: move the session row's
    /// counters from `seq - 1` to `seq` (an `UPDATE` guarded by the expected
    /// `last_seq`, the seq counted in memory as a session writer does), then
    /// `INSERT` the entry (checked against its session row by the foreign
    /// key).
    InsertWithCounters,
}

/// Appends entries with plain rusqlite, one transaction per entry.
pub struct RawSqliteAppend {
    row: &'static str,
    path: PathBuf,
    conn: Connection,
    shape: RawShape,
    next_seq: u64,
}

impl RawSqliteAppend {
    /// Creates or opens the database `dir/name` with podlog's writer pragmas
    /// at the given `synchronous` level, for transactions of `shape`. `row`
    /// names the table row in error messages.
    pub fn open(
        row: &'static str,
        dir: &Path,
        name: &str,
        synchronous: Synchronous,
        shape: RawShape,
    ) -> Result<Self> {
        let path = dir.join(name);
        // Created 0600 first, as podlog creates its database.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(error::io(row, "creating", &path))?;
        let conn = Connection::open(&path).map_err(error::sqlite(row, &path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(error::sqlite(row, &path))?;
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
             PRAGMA synchronous = {sync}; {}",
            match shape {
                RawShape::Insert => RAW_SCHEMA,
                RawShape::InsertWithCounters => RAW_COUNTERS_SCHEMA,
            }
        ))
        .map_err(error::sqlite(row, &path))?;
        let last: u64 = conn
            .query_row("SELECT coalesce(max(seq), 0) FROM entries", [], |r| {
                r.get(0)
            })
            .map_err(error::sqlite(row, &path))?;
        Ok(Self {
            row,
            path,
            conn,
            shape,
            next_seq: last + 1,
        })
    }

    /// Inserts each entry in its own `BEGIN IMMEDIATE` transaction and
    /// returns the time taken.
    pub fn run(&mut self, entries: &[LogEntry]) -> Result<Duration> {
        let fail = error::sqlite(self.row, &self.path);
        let start = Instant::now();
        for entry in entries {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&fail)?;
            let seq = self.next_seq;
            if self.shape == RawShape::InsertWithCounters {
                let moved = tx
                    .prepare_cached(
                        "UPDATE sessions SET last_seq = ?2, entry_count = entry_count + 1, \
                         updated_at = max(updated_at, ?3) WHERE id = ?1 AND last_seq = ?4",
                    )
                    .and_then(|mut s| s.execute(params!["raw", seq, entry.ts(), seq - 1]))
                    .map_err(&fail)?;
                if moved != 1 {
                    return Err(BenchError::Check {
                        row: self.row,
                        problem: format!("the raw session row is not at seq {}", seq - 1),
                    });
                }
            }
            tx.prepare_cached(
                "INSERT INTO entries (session_id, seq, ts, kind, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    "raw",
                    seq,
                    entry.ts(),
                    entry.kind(),
                    entry.to_json()
                ])
            })
            .map_err(&fail)?;
            tx.commit().map_err(&fail)?;
            self.next_seq = seq + 1;
        }
        Ok(start.elapsed())
    }

    /// Rows inserted so far (across runs on the same file).
    pub fn rows(&self) -> u64 {
        self.next_seq - 1
    }
}

/// The seed's sink: the whole mirror behind one mutex, cloned for every
/// subscriber while publishers wait.
pub struct SeedSink {
    mirror: Mutex<Vec<LogEntry>>,
    tx: broadcast::Sender<LogEntry>,
}

impl SeedSink {
    /// A sink seeded with `entries`, as the seed's `with_initial`.
    pub fn with_initial(entries: Vec<LogEntry>) -> Self {
        let (tx, _) = broadcast::channel(podlog_sink::BROADCAST_CAPACITY);
        Self {
            mirror: Mutex::new(entries),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LogEntry>> {
        // The baseline must keep measuring after a panicking thread; the
        // vector is consistent after any single push.
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes `entry` and broadcasts it if live-relevant, under the lock.
    pub fn publish(&self, entry: LogEntry) {
        let mut mirror = self.lock();
        mirror.push(entry.clone());
        if is_live_relevant(&entry) {
            let _ = self.tx.send(entry);
        }
    }

    /// Clones the whole mirror and subscribes, under the lock.
    pub fn subscribe_with_snapshot(&self) -> (Vec<LogEntry>, broadcast::Receiver<LogEntry>) {
        let mirror = self.lock();
        (mirror.clone(), self.tx.subscribe())
    }

    /// Number of mirrored entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the mirror is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens `path` read-only with the pragmas of podlog's read connections.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(error::sqlite("P6", path))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(error::sqlite("P6", path))?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(error::sqlite("P6", path))?;
    Ok(conn)
}

/// Reads every entry of `session` from podlog's `entries` table in seq
/// order, decoding each body with `serde_json::from_str`: a restore with no
/// checks and no mirror.
pub fn raw_restore(conn: &Connection, path: &Path, session: &str) -> Result<Vec<LogEntry>> {
    let fail = error::sqlite("P6", path);
    let mut stmt = conn
        .prepare_cached("SELECT body FROM entries WHERE session_id = ?1 ORDER BY seq")
        .map_err(&fail)?;
    let mut rows = stmt.query([session]).map_err(&fail)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(&fail)? {
        // Rows come in seq order from 1, so the position names the seq.
        let seq = out.len() as u64 + 1;
        let decode = |reason: String| BenchError::Decode {
            row: "P6",
            seq,
            reason,
        };
        let text = row
            .get_ref(0)
            .map_err(&fail)?
            .as_str()
            .map_err(|e| decode(e.to_string()))?;
        let entry: LogEntry = serde_json::from_str(text).map_err(|e| decode(e.to_string()))?;
        out.push(entry);
    }
    Ok(out)
}
