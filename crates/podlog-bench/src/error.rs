//! [`BenchError`]: why a measurement could not be taken. A measurement that
//! fails is reported with the row and file concerned; it never yields a
//! made-up figure.

use std::path::PathBuf;

use podlog_sink::SinkError;
use podlog_store::StoreError;

/// A measurement could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// podlog's store failed.
    #[error("{row}: {source}")]
    Store {
        row: &'static str,
        source: Box<StoreError>,
    },
    /// A sink refused an entry while a mirror was being built.
    #[error("{row}: building the mirror: {source}")]
    Sink {
        row: &'static str,
        source: SinkError,
    },
    /// A baseline's own SQLite database failed.
    #[error("{row}: baseline database {path}: {source}")]
    Sqlite {
        row: &'static str,
        path: PathBuf,
        source: Box<rusqlite::Error>,
    },
    /// A baseline's own PostgreSQL connection, or the setup of a row's
    /// schema, failed.
    #[error("{row}: {what}: {}", pg_detail(source))]
    Postgres {
        row: &'static str,
        what: String,
        source: Box<postgres::Error>,
    },
    /// A file could not be created, written or flushed.
    #[error("{row}: {what} {path}: {source}")]
    Io {
        row: &'static str,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored row did not decode in the raw restore baseline.
    #[error("{row}: raw restore: seq {seq} does not decode: {reason}")]
    Decode {
        row: &'static str,
        seq: u64,
        reason: String,
    },
    /// A measurement's own check failed: it did not do the work it timed.
    #[error("{row}: {problem}")]
    Check { row: &'static str, problem: String },
}

/// Result of a measurement.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Attaches a row name to store errors.
pub(crate) fn store(row: &'static str) -> impl Fn(StoreError) -> BenchError {
    move |source| BenchError::Store {
        row,
        source: Box::new(source),
    }
}

/// Attaches a row name to sink errors.
pub(crate) fn sink(row: &'static str) -> impl Fn(SinkError) -> BenchError {
    move |source| BenchError::Sink { row, source }
}

/// Attaches a row name and file to SQLite errors.
pub(crate) fn sqlite<'a>(
    row: &'static str,
    path: &'a std::path::Path,
) -> impl Fn(rusqlite::Error) -> BenchError + 'a {
    move |source| BenchError::Sqlite {
        row,
        path: path.to_owned(),
        source: Box::new(source),
    }
}

/// Attaches a row name, an action and a file to I/O errors.
pub(crate) fn io<'a>(
    row: &'static str,
    what: &'static str,
    path: &'a std::path::Path,
) -> impl Fn(std::io::Error) -> BenchError + 'a {
    move |source| BenchError::Io {
        row,
        what,
        path: path.to_owned(),
        source,
    }
}

/// Attaches a row name and an action to PostgreSQL errors.
pub(crate) fn postgres(
    row: &'static str,
    what: impl Fn() -> String,
) -> impl Fn(postgres::Error) -> BenchError {
    move |source| BenchError::Postgres {
        row,
        what: what(),
        source: Box::new(source),
    }
}

/// A PostgreSQL error with the server's message, which its `Display`
/// leaves out.
fn pg_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}
