//! Opening connections and migrating the schema.
//!
//! Every connection gets the same settings: WAL journal, a busy timeout,
//! `foreign_keys=ON` and the chosen `synchronous` level. The schema version is
//! `PRAGMA user_version`; each migration runs in one `BEGIN IMMEDIATE`
//! transaction together with its version bump, so a failed or interrupted
//! migration leaves the database at the version before it. A database whose
//! version is newer than [`SCHEMA_VERSION`] is refused before anything is
//! written.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::StoreError;
use crate::{StoreOptions, Synchronous};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema version this build writes and reads: the last migration's.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The embedded migrations: (version, file name, SQL).
pub fn migrations() -> &'static [(u32, &'static str, &'static str)] {
    MIGRATIONS
}

fn open_error(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Creates the database file with mode 0600 if it does not exist, so that no
/// other user can read the log. SQLite gives its `-wal` and `-shm` files the
/// same mode as the database.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(open_error(
                path,
                format!("folder {} does not exist", parent.display()),
            ));
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_error(path, e)),
    }
}

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_owned(),
        },
        Some(rusqlite::ErrorCode::CannotOpen) => open_error(path, why_cannot_open(path)),
        Some(rusqlite::ErrorCode::ReadOnly) => {
            open_error(path, "the file or its folder is read-only")
        }
        Some(rusqlite::ErrorCode::PermissionDenied) => open_error(path, "permission denied"),
        _ => open_error(path, e),
    }
}

/// SQLite says only "unable to open database file": ask the file system
/// why, so the message says read-only, permission denied, or missing.
fn why_cannot_open(path: &Path) -> String {
    let probe = OpenOptions::new().read(true).write(true).open(path);
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match probe {
        Err(e) if e.raw_os_error() == Some(30) => "the file system is read-only".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "permission denied".to_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
        Err(e) => e.to_string(),
        // The file itself opens: SQLite also needs to create its -wal and
        // -shm files beside it.
        Ok(_) => format!(
            "the file opens, but SQLite cannot create its -wal and -shm files in {} \
             (read-only or permission denied)",
            folder.display()
        ),
    }
}

/// Opens one connection with podlog's settings. `write` connections may
/// create the file; read connections never do.
pub(crate) fn connect(
    path: &Path,
    options: &StoreOptions,
    write: bool,
) -> Result<Connection, StoreError> {
    let flags = if write {
        create_private(path)?;
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| classify(path, e))?;
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    let setup = if write {
        format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync};")
    } else {
        "PRAGMA foreign_keys = ON;".to_owned()
    };
    // The first statement that reads the file is where a non-database shows.
    conn.execute_batch(&setup).map_err(|e| classify(path, e))?;
    Ok(conn)
}

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, e))
}

/// Switches the database to WAL, which changes the file: done only after
/// the version check, so a refused database is left untouched.
fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(open_error(
            path,
            format!("cannot switch to WAL journal mode (got {mode})"),
        ))
    }
}

/// Gives a database that holds no table yet incremental auto-vacuum, so
/// that the pages retention frees (`podlog gc`, `podlog rm`) can be given
/// back to the file system with `PRAGMA incremental_vacuum`, without
/// rewriting the file. SQLite fixes the auto-vacuum mode when the first
/// table is created, so this must run before the first migration and before
/// the switch to WAL; on a database that has tables it changes nothing (see
/// `retention.rs` for databases created before this).
fn enable_incremental_vacuum(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if tables == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .map_err(|e| classify(path, e))?;
    }
    Ok(())
}

/// Refuses a database newer than this build, gives a new one incremental
/// auto-vacuum, switches it to WAL, and brings it to [`SCHEMA_VERSION`],
/// one transaction per migration.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    progress: Option<&crate::Progress>,
) -> Result<(), StoreError> {
    let found = user_version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    enable_incremental_vacuum(conn, path)?;
    enable_wal(conn, path)?;
    for &(version, name, sql) in MIGRATIONS {
        let fail = |source| StoreError::Migration {
            path: path.to_owned(),
            version,
            name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify(path, e))?;
        // Read again under the write lock: another process may have migrated
        // while this one waited.
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        if current >= i64::from(version) {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        // Work a migration's SQL leaves to the program, in its transaction.
        if version == 5 {
            crate::search::backfill(&tx, progress).map_err(fail)?;
        }
        // PRAGMA takes no bound parameters; `version` is a build-time constant.
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}
