//! Noticing commits made by other connections, in this process or another:
//! [`ChangeWatch`], and [`SqliteStore::last_seqs`] to see which sessions moved.
//!
//! `PRAGMA data_version` on a connection changes whenever another
//! connection commits to the database file, whatever process it belongs
//! to. A watch keeps one read connection of its own and compares the value
//! between calls: one cheap query, no file read, so polling it every few
//! milliseconds costs next to nothing while nothing happens.

use podlog_entry::{Seq, SessionId};
use rusqlite::Connection;

use crate::error::Context;
use crate::{schema, stored_id, Result, SqliteStore};

/// Tells whether any other connection committed since the last look.
pub struct ChangeWatch {
    conn: Connection,
    last: i64,
}

impl std::fmt::Debug for ChangeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeWatch")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    // Prepared once per connection: a poll is then one step of a cached
    // statement.
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

impl ChangeWatch {
    /// Whether another connection committed since the watch was made or
    /// last asked.
    pub fn changed(&mut self) -> Result<bool> {
        let now = data_version(&self.conn).context(|| "reading PRAGMA data_version".to_owned())?;
        let changed = now != self.last;
        self.last = now;
        Ok(changed)
    }
}

impl SqliteStore {
    /// A watch of commits by every connection but its own (this store's
    /// writer included), on a read connection of its own.
    pub fn change_watch(&self) -> Result<ChangeWatch> {
        let conn = schema::connect(self.path(), self.options(), false)?;
        let last = data_version(&conn).context(|| "reading PRAGMA data_version".to_owned())?;
        Ok(ChangeWatch { conn, last })
    }

    /// The `last_seq` of each of `sessions` that exists, in one query.
    pub fn last_seqs(&self, sessions: &[SessionId]) -> Result<Vec<(SessionId, Seq)>> {
        let ids =
            serde_json::to_string(&sessions.iter().map(SessionId::as_str).collect::<Vec<_>>())
                .expect("a list of strings serialises");
        self.with_reader(|conn| {
            let ctx = || "reading the sessions' last seqs".to_owned();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, last_seq FROM sessions \
                     WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .context(ctx)?;
            let rows = stmt
                .query_map([ids], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
                .context(ctx)?;
            rows.map(|row| row.map(|(id, seq)| (stored_id(&id), Seq(seq))))
                .collect::<rusqlite::Result<Vec<_>>>()
                .context(ctx)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use podlog_sink::SessionLogSink;

    use crate::{NewSession, SqliteStore, StoreOptions};

    #[test]
    fn a_watch_sees_commits_of_other_connections_and_processes_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let store = Arc::new(SqliteStore::open(&path, StoreOptions::default()).unwrap());
        let mut watch = store.change_watch().unwrap();
        assert!(!watch.changed().unwrap(), "nothing committed yet");
        // Another store on the same file stands for another process.
        let other = Arc::new(SqliteStore::open(&path, StoreOptions::default()).unwrap());
        let (id, start) = other.create_session(NewSession::default()).unwrap();
        assert!(watch.changed().unwrap());
        assert!(!watch.changed().unwrap(), "each commit is seen once");
        let sink = SessionLogSink::with_initial([start]).unwrap();
        let mut writer = store.session_writer(&id).unwrap();
        writer
            .append(
                podlog_entry::LogEntry::TurnEnd {
                    ts: 1,
                    turn_count: 1,
                },
                &sink,
            )
            .unwrap();
        assert!(
            watch.changed().unwrap(),
            "this store's own writer counts too"
        );
        let unknown = podlog_entry::SessionId::new("nope").unwrap();
        assert_eq!(
            store.last_seqs(&[id.clone(), unknown]).unwrap(),
            [(id, podlog_entry::Seq(2))]
        );
    }
}
