//! Export and import as JSON Lines on PostgreSQL: [`PgStore::export_sessions`],
//! [`PgStore::export`] and [`PgStore::import`], with the format, checks and
//! errors of the SQLite store's (see [`crate::jsonl`] and
//! `docs/export-format.md`).
//!
//! # Contract
//!
//! * **The same bytes.** Header and entry lines are written by the
//!   functions the SQLite export uses, from bodies that read back as they
//!   were written (`json` keeps its text) with payloads put back the same
//!   way: the same sessions export to the same bytes from either store.
//! * **Export** reads in one `REPEATABLE READ READ ONLY` transaction (one
//!   consistent state while pods write), the parent chain root first when
//!   asked, and fails like the SQLite export, naming session and seq, on a
//!   row that does not decode, a gap, a misplaced `SessionStart`, a missing
//!   payload or entries that end before the session's `last_seq`.
//! * **Import** parses and checks every line with the SQLite store's code
//!   ([`crate::jsonl`]), so it refuses the same files with the same
//!   [`StoreError::Import`] messages, redacts as an append does and stores
//!   large strings out of line. The whole file is one transaction: imported
//!   entirely or not at all (a failure rolls everything back). The
//!   transaction takes a transaction-level advisory lock of the store, so
//!   two imports into one store run one after the other (the second waits
//!   up to [`StoreOptions::busy_timeout`](crate::StoreOptions), the
//!   connection's `lock_timeout`, as a SQLite import waits for the write
//!   lock, and refuses a session id the first brought in); appends to
//!   other sessions are not held up. Each imported session is announced
//!   once on the store's channel, as `<session>:<last_seq>`, at commit.
//! * **Connections.** Each runs once, on one connection: a pooled
//!   connection found closed before anything is read or written (the
//!   server ended it, restarted or failed over) is replaced first; one lost
//!   midway fails the call (an export may have written part of its
//!   output, an import rolls back).

use std::io::{BufRead, Write};

use podlog_entry::{EntryRef, LogEntry, Seq, SessionId};
use postgres::{Client, GenericClient, IsolationLevel, Transaction};
use serde_json::Value;

use super::verify::Walk;
use super::{lock_key, session_from_row, EntryRow, PgContext, PgStore, SESSION_COLUMNS};
use crate::jsonl::{
    chain_with, import_lines, write_entry, write_error, write_header, Counters, Header,
    ImportTarget, Transfer,
};
use crate::payloads::Rendered;
use crate::rows::check_end;
use crate::{Result, SessionInfo, StoreError};

/// Session `id`, read on `client`.
fn session_on(client: &mut impl GenericClient, id: &SessionId) -> Result<SessionInfo> {
    let row = client
        .query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions_now WHERE id = $1"),
            &[&id.as_str()],
        )
        .context(|| format!("reading session {id}"))?
        .ok_or_else(|| StoreError::UnknownSession(id.to_string()))?;
    session_from_row(&row)
}

impl PgStore {
    /// Replaces `client` with a new connection if it turns out closed
    /// (one round trip): for calls that must not run twice, before they
    /// start.
    fn ensure_open(&self, client: &mut Client) -> Result<()> {
        if client.is_valid(self.options.busy_timeout).is_err() {
            *client = self.connect()?.into_inner();
        }
        Ok(())
    }

    /// The sessions [`PgStore::export`] would write for `session`, in file
    /// order, from their rows (no entry is read).
    pub fn export_sessions(
        &self,
        session: &SessionId,
        with_ancestors: bool,
    ) -> Result<Vec<SessionInfo>> {
        self.read_with(|client| chain_with(session, with_ancestors, |id| session_on(client, id)))
    }

    /// Writes `session` (after its ancestors, root first, if
    /// `with_ancestors`) to `out` as JSON Lines, calling `progress` with the
    /// number of entries written so far after each one. See the module docs.
    pub fn export(
        &self,
        session: &SessionId,
        with_ancestors: bool,
        out: &mut impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<Transfer> {
        // Run once: a retry after a lost connection would write twice.
        self.with_client(|client| {
            self.ensure_open(client)?;
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .context(|| format!("exporting session {session}"))?;
            let chain = chain_with(session, with_ancestors, |id| session_on(&mut tx, id))?;
            let mut done = Transfer::default();
            for info in &chain {
                let id = &info.id;
                write_header(out, info)?;
                let id_json = Value::from(id.as_str()).to_string();
                let mut walk = Walk::new(id.as_str());
                while let Some(row) = walk.next_checked(&mut tx)? {
                    write_entry(out, &id_json, row.seq, &row.body)?;
                    done.entries += 1;
                    progress(done.entries);
                }
                check_end(id.as_str(), walk.last(), info.last_seq, info.last_seq)?;
                done.sessions.push(id.clone());
            }
            out.flush().map_err(write_error)?;
            // Read only: how the transaction ends changes nothing.
            let _ = tx.rollback();
            Ok(done)
        })
    }

    /// Imports every session of the JSON Lines in `input`, in one
    /// transaction, calling `progress` with the number of bytes read so far
    /// after each line. See the module docs; a malformed line fails with
    /// [`StoreError::Import`] and leaves the store unchanged.
    pub fn import(&self, input: impl BufRead, progress: impl FnMut(u64)) -> Result<Transfer> {
        let redactor = self.redactor();
        let key = lock_key(&["podlog import", &self.schema]);
        self.with_client(|client| {
            self.ensure_open(client)?;
            let ctx = || "starting the import".to_owned();
            let mut tx = client.transaction().context(ctx)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                .context(ctx)?;
            let mut target = PgTarget {
                tx: &mut tx,
                channel: &self.channel,
            };
            // On an error `tx` is dropped, which rolls the import back.
            let done = import_lines(&mut target, redactor, input, progress)?;
            tx.commit().context(|| "committing the import".to_owned())?;
            Ok(done)
        })
    }
}

/// The PostgreSQL store's import target: the import's transaction.
struct PgTarget<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    channel: &'t str,
}

/// A number for a `bigint` column of a header at `line`; one beyond it is
/// refused, not cut.
fn header_number(line: u64, id: &SessionId, name: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Import {
        line,
        reason: format!("session {id}: {name} {value} is beyond what the database stores"),
    })
}

impl ImportTarget for PgTarget<'_, '_> {
    fn session_exists(&mut self, line: u64, id: &SessionId) -> Result<bool> {
        let ctx = || format!("importing line {line}");
        self.tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1)",
                &[&id.as_str()],
            )
            .and_then(|row| row.try_get(0))
            .context(ctx)
    }

    fn entry_exists(&mut self, line: u64, at: &EntryRef) -> Result<bool> {
        let Ok(seq) = i64::try_from(at.seq.get()) else {
            // Beyond any stored seq.
            return Ok(false);
        };
        let ctx = || format!("importing line {line}");
        self.tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM entries WHERE session_id = $1 AND seq = $2)",
                &[&at.session_id.as_str(), &seq],
            )
            .and_then(|row| row.try_get(0))
            .context(ctx)
    }

    fn insert_session(&mut self, line: u64, h: &Header<'_>) -> Result<()> {
        let parent_seq = h
            .parent
            .map(|p| header_number(line, h.id, "parent_seq", p.seq.get()))
            .transpose()?;
        let created_at = header_number(line, h.id, "created_at", h.created_at)?;
        let updated_at = header_number(line, h.id, "updated_at", h.updated_at)?;
        self.tx
            .execute(
                "INSERT INTO sessions (id, parent_id, parent_seq, origin, created_at, updated_at, \
                 last_seq, entry_count, title) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7)",
                &[
                    &h.id.as_str(),
                    &h.parent.map(|p| p.session_id.as_str()),
                    &parent_seq,
                    &h.origin.as_str(),
                    &created_at,
                    &updated_at,
                    &h.title,
                ],
            )
            .context(|| format!("importing line {line}"))?;
        Ok(())
    }

    fn insert_entry(
        &mut self,
        line: u64,
        session: &SessionId,
        seq: Seq,
        entry: &LogEntry,
        rendered: &Rendered,
    ) -> Result<()> {
        EntryRow::new(session, seq, entry, rendered)?
            .insert(self.tx)
            .context(|| format!("importing line {line}"))
    }

    fn finish_session(&mut self, session: &SessionId, c: &Counters) -> Result<()> {
        let ctx = || format!("importing session {session}");
        let number = |what: &str, value: u64| {
            i64::try_from(value).map_err(|_| StoreError::CorruptSession {
                session: session.clone(),
                problem: format!("{what} {value} is beyond what the database stores"),
            })
        };
        let entries = number("entry count", c.entries)?;
        let redactions = number("redaction count", c.redactions)?;
        let bytes = number("stored size", c.stored_bytes)?;
        self.tx
            .execute(
                "UPDATE sessions SET last_seq = $2, entry_count = $2, redactions = $3, \
                 stored_bytes = $4 WHERE id = $1",
                &[&session.as_str(), &entries, &redactions, &bytes],
            )
            .context(ctx)?;
        // Followers learn of the new session at commit, as of an append.
        let notice = format!("{session}:{}", c.entries);
        self.tx
            .execute("SELECT pg_notify($1, $2)", &[&self.channel, &notice])
            .context(ctx)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "jsonl_tests.rs"]
pub(crate) mod tests;
