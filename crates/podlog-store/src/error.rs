//! [`StoreError`]: every way a store operation can fail, with the file,
//! session and seq it concerns.

use std::path::PathBuf;

use podlog_entry::{Seq, SessionId};

/// A store operation failed. Messages are lowercase and name the file,
/// session and seq concerned, so they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file or its folder could not be created or opened.
    #[error("cannot open database {path}: {reason}")]
    Open { path: PathBuf, reason: String },

    /// The file exists but is not a SQLite database.
    #[error("{path} is not a SQLite database (is it the right file?)")]
    NotADatabase { path: PathBuf },

    /// The database was written by a newer podlog.
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this podlog \
         supports; upgrade podlog to open it (nothing was changed)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A migration failed; the database stays at the version before it.
    #[error("migrating {path} to schema version {version} ({name}) failed: {source}")]
    Migration {
        path: PathBuf,
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },

    /// The operation does not exist on this backend (or is not ported to
    /// it yet); nothing was done.
    #[error("{operation} is not available on {backend} stores")]
    Unsupported {
        operation: &'static str,
        backend: &'static str,
    },

    /// No session with that id (or id prefix).
    #[error("unknown session {0}")]
    UnknownSession(String),

    /// No share with that id.
    #[error("unknown share {0} (`podlog share --list` lists them)")]
    UnknownShare(String),

    /// An id prefix matches more than one session.
    #[error("session prefix {prefix:?} is ambiguous: it matches {matches}")]
    AmbiguousSession { prefix: String, matches: String },

    /// A stored row does not decode. Never skipped: the caller decides.
    #[error("session {session} seq {seq}: stored entry does not decode: {reason}")]
    Decode {
        session: SessionId,
        seq: Seq,
        reason: String,
    },

    /// A stored row breaks an invariant the schema cannot express (a gap in
    /// seq, a SessionStart that is not at seq 1, ...).
    #[error("session {session} seq {seq}: {problem}")]
    Corrupt {
        session: SessionId,
        seq: Seq,
        problem: String,
    },

    /// A payload whose text does not match its hash: changed behind
    /// podlog's back.
    #[error("payload {hash} is corrupt: {problem}")]
    CorruptPayload {
        hash: podlog_entry::PayloadHash,
        problem: String,
    },

    /// A session breaks an invariant that no one seq of it carries: its
    /// row names an unknown origin, or an entry is stored with a seq below 1.
    #[error("session {session}: {problem}")]
    CorruptSession { session: SessionId, problem: String },

    /// The entry cannot be appended where it was asked to go.
    #[error("cannot append {kind} to session {session}: {reason}")]
    Rejected {
        session: SessionId,
        kind: String,
        reason: String,
    },

    /// A fork or compaction cut that is not allowed (see `lifecycle`).
    #[error("cannot cut session {session} at seq {seq}: {reason}")]
    BadCut {
        session: SessionId,
        seq: Seq,
        reason: String,
    },

    /// Another process (or another lock in this one) is writing the session.
    #[error("session {session} is being written by {holder}")]
    SessionLocked {
        session: SessionId,
        holder: crate::lock::LockHolder,
    },

    /// A session's lock file or its folder could not be made or locked.
    #[error("cannot lock {path}: {reason}")]
    Lock { path: PathBuf, reason: String },

    /// A search that cannot run: the FTS5 query is malformed (SQLite's
    /// reason says where), or a filter is out of range.
    #[error("bad search query {query:?}: {reason}")]
    BadSearch { query: String, reason: String },

    /// A line of an import is malformed or breaks an invariant; nothing of
    /// the file was imported.
    #[error("line {line}: {reason}")]
    Import { line: u64, reason: String },

    /// Reading an import or writing an export failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// SQLite failed; `context` says what the store was doing.
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        source: rusqlite::Error,
    },

    /// PostgreSQL failed; `context` says what the store was doing.
    #[error("{context}: {}", pg_message(source))]
    Postgres {
        context: String,
        source: postgres::Error,
    },

    /// A PostgreSQL migration failed; the schema stays at the version
    /// before it. `location` names the server, database and schema.
    #[error(
        "migrating {location} to schema version {version} ({name}) failed: {}",
        pg_message(source)
    )]
    PgMigration {
        location: String,
        version: u32,
        name: &'static str,
        source: postgres::Error,
    },

    /// The database connection of a session's writer is gone, and the
    /// session's write lock (held by that connection) with it: the writer
    /// appends nothing more. Another writer, in this process or another,
    /// may now take the session.
    #[error(
        "session {session}: the writer's database connection is closed, and the session's \
         write lock with it; open a new writer to go on"
    )]
    LockLost { session: SessionId },

    /// The session row's `last_seq` is not the one its writer holds: the
    /// row was changed without the session's write lock. Nothing was
    /// written; the writer reads the counter again before its next append.
    #[error(
        "cannot append seq {seq} to session {session}: its last_seq on disk is not {}; \
         it was written without the session's lock",
        seq.get().saturating_sub(1)
    )]
    StaleWriter { session: SessionId, seq: Seq },

    /// The commit holding the entry panicked. With `committed` false the
    /// entry was rolled back; with `committed` true it is on disk at `seq`
    /// but was not published, so the session's mirror lacks it.
    #[error(
        "appending seq {seq} to session {session} failed: the commit panicked ({message}); {}",
        if *committed { "the entry is on disk but was not published" } else { "nothing was written" }
    )]
    Panicked {
        session: SessionId,
        seq: Seq,
        committed: bool,
        message: String,
    },

    /// The entry is committed at (session, seq) but the sink refused it: the
    /// sink passed in is not this session's mirror. Nothing is lost on disk.
    #[error("session {session} seq {seq} committed but not published: {source}")]
    Publish {
        session: SessionId,
        seq: Seq,
        source: podlog_sink::SinkError,
    },
}

impl StoreError {
    /// Whether the failure is the disk or database being full.
    pub fn is_disk_full(&self) -> bool {
        self.sqlite_code() == Some(rusqlite::ErrorCode::DiskFull)
    }

    /// Whether the failure is another connection holding a lock too long.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            StoreError::Sqlite { source, .. } | StoreError::Migration { source, .. } => {
                source.sqlite_error_code()
            }
            _ => None,
        }
    }
}

/// What a PostgreSQL error says, on one line: the server's message (with
/// its detail and hint) for an error the server reported, the client's
/// error and its causes otherwise. (`postgres::Error` alone shows only
/// "db error" for the former.)
pub(crate) fn pg_message(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.ends_with(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = e.source();
    }
    text
}

/// Adds a context to a rusqlite result.
pub(crate) trait Context<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            context: context(),
            source,
        })
    }
}
