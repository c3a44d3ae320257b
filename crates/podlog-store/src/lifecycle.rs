//! Compaction, fork and lineage: how sessions beget sessions.
//!
//! Both [`SqliteStore::compact`] and [`SqliteStore::fork`] add, in one `BEGIN IMMEDIATE`
//! transaction, a new session row that names its parent and the parent's seq
//! at the cut, and that session's `SessionStart` (seq 1). The parent's rows
//! are never touched: history is not rewritten. The parent is read up to
//! the cut by the one row reader (`rows.rs`), inside that transaction: a gap,
//! a row that does not decode, a misplaced `SessionStart`, or rows that end
//! before the cut refuse the operation with an error naming session and seq.
//!
//! * **Compaction** continues a session from a summary. The cut is the
//!   parent's last seq; the new `SessionStart` carries `compacted_from`, the
//!   summary messages as `history`, and the system prompt and request
//!   configuration in force at the cut. Nothing else is copied, so a chain of
//!   compactions grows by one summary per link, never by the whole past.
//! * **Fork** branches from any committed seq `N` of the parent. The new
//!   `SessionStart` carries `forked_from`, and as `history` the conversation
//!   up to and including `N` (the parent's starting history, then the
//!   messages of its entries up to `N`), and nothing after `N`.
//!
//! # Which fork cuts are allowed
//!
//! A cut at `N` is allowed when `1 <= N <= last_seq` and every tool call made
//! at or before `N` has its result at or before `N`. A cut between a tool call
//! and its result is refused: the new session would start with a call the
//! model expects an answer to and no way to give it one, and providers reject
//! such a conversation. Fork at the result (or before the call) instead.
//!
//! # Lineage
//!
//! `sessions.parent_id` (indexed) links each fork and compaction to its
//! parent, so [`SqliteStore::ancestors`] and [`SqliteStore::descendants`] walk session
//! rows only, never entries.

use podlog_entry::{Committed, Conversation, EntryRef, LogEntry, Message, Seq, SessionId};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::error::Context;
use crate::payloads::insert_rendered;
use crate::rows::{read_rows, Form, Span};
use crate::{session_from_row, Origin, Result, SessionInfo, SqliteStore, StoreError, SESSION_COLUMNS};

impl SqliteStore {
    /// Continues `session` in a new session that starts from `summary`.
    /// Returns the new session's id and its committed `SessionStart`.
    pub fn compact(
        &self,
        session: &SessionId,
        summary: Vec<Message>,
    ) -> Result<(SessionId, Committed)> {
        self.derive(session, None, |entries, cut| {
            let conversation = Conversation::from_entries(entries);
            Ok(LogEntry::SessionStart {
                ts: 0,
                system_prompt: conversation.system_prompt,
                config: conversation.config,
                history: summary,
                forked_from: None,
                compacted_from: Some(cut),
            })
        })
    }

    /// Branches `session` at `at`: a new session whose history is the
    /// conversation up to and including `at`. See the module docs for the
    /// cuts that are refused.
    pub fn fork(&self, session: &SessionId, at: Seq) -> Result<(SessionId, Committed)> {
        self.derive(session, Some(at), |entries, cut| {
            let conversation = Conversation::from_entries(entries);
            if let Some(call) = conversation.pending_calls.first() {
                return Err(format!(
                    "seq {at} cuts tool call {call} from its result; fork at or after the result, \
                     or before the call"
                ));
            }
            Ok(LogEntry::SessionStart {
                ts: 0,
                system_prompt: conversation.system_prompt,
                config: conversation.config,
                history: conversation.messages,
                forked_from: Some(cut),
                compacted_from: None,
            })
        })
    }

    /// The shared transaction of compact (`at` = None: the last seq) and
    /// fork: read the parent up to the cut, build the new `SessionStart`,
    /// insert the session row and its seq 1.
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
        let mut conn = self.writer();
        let ctx = || format!("{} of session {parent}", origin.as_str());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(ctx)?;
        let last: Option<u64> = tx
            .query_row(
                "SELECT last_seq FROM sessions WHERE id = ?1",
                [parent.as_str()],
                |r| r.get(0),
            )
            .optional()
            .context(ctx)?;
        let last = Seq(last.ok_or_else(|| StoreError::UnknownSession(parent.to_string()))?);
        let cut = at.unwrap_or(last);
        if cut == Seq::ZERO || cut > last {
            return Err(StoreError::BadCut {
                session: parent.clone(),
                seq: cut,
                reason: format!("the session has seqs 1 to {last}"),
            });
        }
        let entries = read_rows(&tx, parent.as_str(), Span::upto(cut), Form::Full, |rows| {
            let mut entries = Vec::new();
            while let Some(row) = rows.next_checked()? {
                entries.push(row.entry);
            }
            rows.check_end(cut, last)?;
            Ok(entries)
        })?;
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
        // The history a fork copies was redacted when it was written; a
        // compaction's summary is new text, and redacted here.
        let prepared = self.prepare(entry).map_err(|reason| StoreError::Rejected {
            session: id.clone(),
            kind: "session_start".to_owned(),
            reason,
        })?;
        let (entry, rendered) = (prepared.entry, prepared.rendered);
        tx.execute(
            "INSERT INTO sessions (id, parent_id, parent_seq, origin, created_at, updated_at, \
             last_seq, entry_count, title, redactions, stored_bytes) \
             SELECT ?1, id, ?2, ?3, ?4, ?4, 1, 1, title, ?6, ?7 FROM sessions WHERE id = ?5",
            params![
                id.as_str(),
                cut.get(),
                origin.as_str(),
                now,
                parent.as_str(),
                prepared.redactions.total(),
                rendered.stored_bytes()
            ],
        )
        .context(ctx)?;
        insert_rendered(&tx, &id, Seq::FIRST, &entry, &rendered).context(ctx)?;
        tx.commit().context(ctx)?;
        Ok((id, rendered.committed(Seq::FIRST, &entry)))
    }

    /// The chain of sessions `session` descends from: its parent first, the
    /// root last. Empty for a session started afresh.
    pub fn ancestors(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        self.lineage(
            session,
            "WITH RECURSIVE up(id, depth) AS ( \
               SELECT parent_id, 1 FROM sessions WHERE id = ?1 AND parent_id IS NOT NULL \
               UNION ALL \
               SELECT s.parent_id, up.depth + 1 FROM sessions s JOIN up ON s.id = up.id \
               WHERE s.parent_id IS NOT NULL AND up.depth < 100000) \
             SELECT {cols} FROM up JOIN sessions USING (id) ORDER BY up.depth",
        )
    }

    /// Every session that descends from `session` (forks and compactions,
    /// and theirs), parents before children, siblings by creation time.
    pub fn descendants(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        self.lineage(
            session,
            "WITH RECURSIVE down(id, path) AS ( \
               SELECT id, printf('%020d/%s', created_at, id) FROM sessions WHERE parent_id = ?1 \
               UNION ALL \
               SELECT s.id, down.path || '|' || printf('%020d/%s', s.created_at, s.id) \
               FROM sessions s JOIN down ON s.parent_id = down.id) \
             SELECT {cols} FROM down JOIN sessions USING (id) ORDER BY down.path",
        )
    }

    fn lineage(&self, session: &SessionId, sql: &str) -> Result<Vec<SessionInfo>> {
        // Fails with UnknownSession for an id that does not exist.
        self.session(session)?;
        let sql = sql.replace("{cols}", &qualified_columns());
        self.with_reader(|conn| {
            let ctx = || format!("walking the lineage of session {session}");
            let mut stmt = conn.prepare_cached(&sql).context(ctx)?;
            let rows = stmt
                .query_map([session.as_str()], session_from_row)
                .context(ctx)?;
            // A corrupt row in the lineage fails the walk, naming it.
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context(ctx)?
                .into_iter()
                .collect()
        })
    }
}

/// The session columns, qualified for a join.
fn qualified_columns() -> String {
    SESSION_COLUMNS
        .split(", ")
        .map(|c| format!("sessions.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
