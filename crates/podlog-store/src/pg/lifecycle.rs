//! Compaction, fork and lineage on PostgreSQL: [`PgStore::compact`],
//! [`PgStore::fork`], [`PgStore::ancestors`] and [`PgStore::descendants`],
//! with the SQLite store's signatures, results and errors (see the SQLite
//! `lifecycle.rs` for which cuts are allowed and why).
//!
//! # Contract
//!
//! * **One transaction, history kept.** A compaction or fork adds, in one
//!   transaction, a new session row naming its parent and the parent's seq
//!   at the cut (its title copied from the parent), and that session's
//!   `SessionStart` as seq 1, and announces `<new id>:1` on the store's
//!   channel (delivered only at commit). The parent's rows are never
//!   changed.
//! * **The cut is read under a lock.** The parent's row is read `FOR SHARE`
//!   first: an append to the parent (an `UPDATE` of that row) waits until
//!   the transaction ends, as it would wait for SQLite's `BEGIN
//!   IMMEDIATE`, so a compaction's cut is the parent's last seq at its
//!   commit. A fork at `N` reads the parent's rows `1..=N` only, which can
//!   no longer change: it contains nothing the parent wrote after `N`.
//! * **Same checks, same errors.** An unknown parent is
//!   [`StoreError::UnknownSession`]; a cut outside `1..=last_seq`, or one
//!   that separates a tool call from its result, is [`StoreError::BadCut`]
//!   naming the session and seq, worded as on SQLite. The rows up to the
//!   cut are checked as every read checks them (gap, undecodable body,
//!   misplaced `SessionStart`, missing payload) and must end at the cut.
//! * **Same `SessionStart`.** It is built by the SQLite store's builders
//!   (`lifecycle::compaction_start`, `lifecycle::fork_start`) from the
//!   parent's entries read whole, stamped with the store clock's now, and
//!   redacted and rendered by the one `prepare` step (a fork's history was
//!   redacted when written; a compaction's summary is new text).
//! * **Lineage** walks session rows only (`sessions.parent_id`), never
//!   entries: ancestors parent first and root last; descendants parents
//!   before children, siblings by creation time then id, compared byte by
//!   byte as SQLite compares text. An unknown session is
//!   [`StoreError::UnknownSession`].

use std::sync::Arc;

use podlog_entry::{Committed, EntryRef, LogEntry, Message, Seq, SessionId};
use postgres::Transaction;

use super::read::{check_row, payload_texts, RawRow};
use super::{notify, session_from_row, signed, EntryRow, PgContext, PgStore, SESSION_COLUMNS};
use crate::lifecycle::{compaction_start, fork_start};
use crate::redaction::prepare;
use crate::rows::{check_end, Form};
use crate::{Origin, Result, SessionInfo, StoreError};

impl PgStore {
    /// Continues `session` in a new session that starts from `summary`.
    /// Returns the new session's id and its committed `SessionStart`.
    pub fn compact(
        &self,
        session: &SessionId,
        summary: Vec<Message>,
    ) -> Result<(SessionId, Committed)> {
        self.derive(session, None, |entries, cut| {
            Ok(compaction_start(entries, cut, summary))
        })
    }

    /// Branches `session` at `at`: a new session whose history is the
    /// conversation up to and including `at`. The cuts refused are the
    /// SQLite store's (see its `lifecycle` module).
    pub fn fork(&self, session: &SessionId, at: Seq) -> Result<(SessionId, Committed)> {
        self.derive(session, Some(at), fork_start)
    }

    /// The shared transaction of compact (`at` = None: the last seq) and
    /// fork; see the module docs.
    fn derive(
        &self,
        parent: &SessionId,
        at: Option<Seq>,
        start: impl FnOnce(&[LogEntry], EntryRef) -> std::result::Result<LogEntry, String>,
    ) -> Result<(SessionId, Committed)> {
        let origin = if at.is_some() {
            Origin::Fork
        } else {
            Origin::Compaction
        };
        let id = self.options.ids.next_id();
        let now = self.now();
        let redactor = self.redactor();
        let ctx = || format!("{} of session {parent}", origin.as_str());
        // The closure runs once: a write is never retried.
        self.with_client(|client| {
            let mut tx = client.transaction().context(ctx)?;
            let last: Option<i64> = tx
                .query_opt(
                    "SELECT n.last_seq FROM sessions AS s, sessions_now AS n \
                     WHERE s.id = $1 AND n.id = s.id FOR SHARE OF s",
                    &[&parent.as_str()],
                )
                .context(ctx)?
                .map(|row| row.try_get(0))
                .transpose()
                .context(ctx)?;
            let last = last.ok_or_else(|| StoreError::UnknownSession(parent.to_string()))?;
            let last = Seq(super::unsigned(last, "last_seq", parent.as_str())?);
            let cut = at.unwrap_or(last);
            if cut == Seq::ZERO || cut > last {
                return Err(StoreError::BadCut {
                    session: parent.clone(),
                    seq: cut,
                    reason: format!("the session has seqs 1 to {last}"),
                });
            }
            let entries = read_upto(&mut tx, parent, cut, last)?;
            let cut_ref = EntryRef {
                session_id: parent.clone(),
                seq: cut,
            };
            let mut entry = start(&entries, cut_ref).map_err(|reason| StoreError::BadCut {
                session: parent.clone(),
                seq: cut,
                reason,
            })?;
            entry.set_ts(now);
            let kind = entry.kind().to_owned();
            let prepared =
                prepare(redactor.as_deref(), entry).map_err(|reason| StoreError::Rejected {
                    session: id.clone(),
                    kind: kind.clone(),
                    reason,
                })?;
            let when = signed(now, "time", &id, &kind)?;
            let cut_at = signed(cut.get(), "seq", &id, &kind)?;
            let redactions = signed(prepared.redactions.total(), "redaction count", &id, &kind)?;
            let bytes = signed(prepared.rendered.stored_bytes(), "size", &id, &kind)?;
            let row = EntryRow::new(&id, Seq::FIRST, &prepared.entry, &prepared.rendered)?;
            tx.execute(
                "INSERT INTO sessions (id, parent_id, parent_seq, origin, created_at, \
                 updated_at, last_seq, entry_count, title, redactions, stored_bytes) \
                 SELECT $1, id, $2, $3, $4, $4, 1, 1, title, $6, $7 FROM sessions WHERE id = $5",
                &[
                    &id.as_str(),
                    &cut_at,
                    &origin.as_str(),
                    &when,
                    &parent.as_str(),
                    &redactions,
                    &bytes,
                ],
            )
            .context(ctx)?;
            row.insert(&mut tx).context(ctx)?;
            notify(&mut tx, &self.channel, &id, Seq::FIRST).context(ctx)?;
            tx.commit().context(ctx)?;
            Ok((
                id.clone(),
                prepared.rendered.committed(Seq::FIRST, &prepared.entry),
            ))
        })
    }

    /// The chain of sessions `session` descends from: its parent first, the
    /// root last. Empty for a session started afresh.
    pub fn ancestors(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        self.lineage(
            session,
            "WITH RECURSIVE up(id, depth) AS ( \
               SELECT parent_id, 1 FROM sessions WHERE id = $1 AND parent_id IS NOT NULL \
               UNION ALL \
               SELECT s.parent_id, up.depth + 1 FROM sessions s JOIN up ON s.id = up.id \
               WHERE s.parent_id IS NOT NULL AND up.depth < 100000) \
             SELECT {cols} FROM up JOIN sessions_now AS sessions USING (id) ORDER BY up.depth",
        )
    }

    /// Every session that descends from `session` (forks and compactions,
    /// and theirs), parents before children, siblings by creation time.
    pub fn descendants(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        // The path orders as SQLite's `printf('%020d/%s', created_at, id)`
        // chain does: byte by byte (COLLATE "C").
        self.lineage(
            session,
            "WITH RECURSIVE down(id, path) AS ( \
               SELECT id, (lpad(created_at::text, 20, '0') || '/' || id)::text COLLATE \"C\" \
               FROM sessions WHERE parent_id = $1 \
               UNION ALL \
               SELECT s.id, (down.path || '|' || lpad(s.created_at::text, 20, '0') || '/' \
                 || s.id)::text COLLATE \"C\" \
               FROM sessions s JOIN down ON s.parent_id = down.id) \
             SELECT {cols} FROM down JOIN sessions_now AS sessions USING (id) ORDER BY down.path",
        )
    }

    fn lineage(&self, session: &SessionId, sql: &str) -> Result<Vec<SessionInfo>> {
        // Fails with UnknownSession for an id that does not exist.
        self.session(session)?;
        let sql = sql.replace("{cols}", &qualified_columns());
        let rows = self.read_with(|client| {
            client
                .query(&sql, &[&session.as_str()])
                .context(|| format!("walking the lineage of session {session}"))
        })?;
        // A corrupt row in the lineage fails the walk, naming it.
        rows.iter().map(session_from_row).collect()
    }
}

/// The entries of `session` from seq 1 to `cut`, whole, read in `tx` and
/// checked as every read checks them; they must end at `cut` (`last` is
/// the session row's `last_seq`, named in the error if they do not).
fn read_upto(
    tx: &mut Transaction<'_>,
    session: &SessionId,
    cut: Seq,
    last: Seq,
) -> Result<Vec<LogEntry>> {
    let ctx = || format!("reading the entries of session {session} up to seq {cut}");
    let upto = signed(cut.get(), "seq", session, "session_start")?;
    let rows = tx
        .query(
            "SELECT seq, body::text, payloads::text FROM entries \
             WHERE session_id = $1 AND seq <= $2 ORDER BY seq",
            &[&session.as_str(), &upto],
        )
        .context(ctx)?
        .iter()
        .map(|row| {
            Ok(RawRow {
                seq: row.try_get(0)?,
                body: row.try_get(1)?,
                payloads: row.try_get(2)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, postgres::Error>>()
        .context(ctx)?;
    let texts = payload_texts(tx, &rows).context(ctx)?;
    let mut want = Seq::FIRST;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let committed = check_row(&mut want, row, Form::Full, &texts)
            .map_err(|e| e.into_store_error(session.as_str()))?;
        // Just made, so not shared: unwrapping copies nothing.
        entries.push(Arc::try_unwrap(committed.entry).unwrap_or_else(|e| (*e).clone()));
    }
    check_end(session.as_str(), Seq(want.get() - 1), cut, last)?;
    Ok(entries)
}

/// The session columns, qualified for a join.
fn qualified_columns() -> String {
    SESSION_COLUMNS
        .split(", ")
        .map(|c| format!("sessions.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
