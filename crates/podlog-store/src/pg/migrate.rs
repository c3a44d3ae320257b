//! The PostgreSQL schema's versions: the embedded migrations under
//! `migrations/postgres/` and the runner that applies them.
//!
//! # Contract
//!
//! * The version is the one row of `podlog_schema_version` in the store's
//!   schema (0 when the table does not exist). It is read before anything
//!   is written: a version newer than [`SCHEMA_VERSION`] fails the open with
//!   [`StoreError::TooNew`], the SQLite store's error and wording, and the
//!   schema is left untouched.
//! * Each migration runs in one transaction together with its version bump
//!   (the first one also creates the version table), so a failed migration
//!   leaves the schema at the version before it and the error names the
//!   migration.
//! * Concurrent openers are serialized by `pg_advisory_xact_lock` on a key
//!   fixed per schema, taken first in each migration's transaction; the
//!   version is read again under it, so a migration another opener applied
//!   meanwhile is skipped, not run twice.

use postgres::Client;

use super::{lock_key, PgContext};
use crate::{Result, StoreError};

/// Every migration, in order: (version, file name, SQL).
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "0002_search.sql",
        include_str!("../../../../migrations/postgres/0002_search.sql"),
    ),
    (
        3,
        "0003_search_deferred.sql",
        include_str!("../../../../migrations/postgres/0003_search_deferred.sql"),
    ),
    (
        4,
        "0004_session_tail.sql",
        include_str!("../../../../migrations/postgres/0004_session_tail.sql"),
    ),
    (
        5,
        "0005_search_words.sql",
        include_str!("../../../../migrations/postgres/0005_search_words.sql"),
    ),
    (
        6,
        "0006_search_catch_up_by_index.sql",
        include_str!("../../../../migrations/postgres/0006_search_catch_up_by_index.sql"),
    ),
    (
        7,
        "0007_one_insert_trigger.sql",
        include_str!("../../../../migrations/postgres/0007_one_insert_trigger.sql"),
    ),
    (
        8,
        "0008_tool_call_arguments_as_written.sql",
        include_str!("../../../../migrations/postgres/0008_tool_call_arguments_as_written.sql"),
    ),
    (
        9,
        "0009_lean_writer_insert.sql",
        include_str!("../../../../migrations/postgres/0009_lean_writer_insert.sql"),
    ),
];

/// The schema version this build writes and reads: the last migration's.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The embedded migrations: (version, file name, SQL).
pub fn migrations() -> &'static [(u32, &'static str, &'static str)] {
    MIGRATIONS
}

/// Whether the version table exists in the current schema, and the version
/// it holds (0 when it does not).
fn read_version(
    client: &mut impl postgres::GenericClient,
) -> std::result::Result<(bool, i64), postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename = 'podlog_schema_version')",
            &[],
        )?
        .try_get(0)?;
    if !exists {
        return Ok((false, 0));
    }
    let version: Option<i64> = client
        .query_opt("SELECT version FROM podlog_schema_version", &[])?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok((true, version.unwrap_or(0)))
}

fn too_new(location: &str, found: i64) -> StoreError {
    StoreError::TooNew {
        path: location.into(),
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Brings the store in `schema` (described as `location` in errors) to
/// [`SCHEMA_VERSION`]; see the module docs.
pub(crate) fn migrate(client: &mut Client, schema: &str, location: &str) -> Result<()> {
    let (_, found) =
        read_version(client).context(|| format!("reading the schema version of {location}"))?;
    if found > SCHEMA_VERSION {
        return Err(too_new(location, found));
    }
    let key = lock_key(&["podlog migrate", schema]);
    for &(version, name, sql) in MIGRATIONS {
        let fail = |source| StoreError::PgMigration {
            location: location.to_owned(),
            version,
            name,
            source,
        };
        let mut tx = client.transaction().map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .map_err(fail)?;
        // Read again under the lock: another opener may have migrated
        // while this one waited.
        let (exists, current) = read_version(&mut tx).map_err(fail)?;
        if current > SCHEMA_VERSION {
            return Err(too_new(location, current));
        }
        if current >= i64::from(version) {
            continue;
        }
        if !exists {
            tx.batch_execute(
                "CREATE TABLE podlog_schema_version (\
                   one boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one), \
                   version bigint NOT NULL CHECK (version >= 0)); \
                 INSERT INTO podlog_schema_version (version) VALUES (0)",
            )
            .map_err(fail)?;
        }
        tx.batch_execute(sql).map_err(fail)?;
        tx.execute(
            "UPDATE podlog_schema_version SET version = $1",
            &[&i64::from(version)],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is the folder's content: a migration added to
    /// `migrations/postgres/` but not here would never run.
    #[test]
    fn every_file_of_the_folder_is_embedded_in_order() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS.iter().map(|m| m.1.to_owned()).collect();
        assert_eq!(files, embedded);
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1, "{name}");
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert_eq!(*sql, std::fs::read_to_string(dir.join(name)).unwrap());
        }
    }
}
