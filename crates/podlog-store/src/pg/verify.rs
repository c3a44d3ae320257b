//! [`PgStore::verify`] and [`PgStore::verify_scope`]: the SQLite store's
//! verification ([`crate::verify`]) on PostgreSQL, returning the same
//! [`Problem`]s in the same words for the same rows.
//!
//! # Contract
//!
//! * Verification reads only, in one `REPEATABLE READ READ ONLY`
//!   transaction: it sees one consistent state of the store, never writes,
//!   and runs while pods go on writing. It does not stop at the first
//!   problem and does not trust the rows (they may have been edited by
//!   hand, with the schema's constraints dropped): a row that cannot be
//!   read becomes a problem, not an error. Each check runs in a savepoint
//!   of its own, so one that the server refuses is reported and the others
//!   still run. `Err` is kept for a store that cannot be reached and for an
//!   unknown session.
//! * Checks, for the whole store: entries stored under a session id that
//!   has no session row; `payload_refs` lists exactly the payload
//!   references of `entries.payloads` (retention relies on it).
//! * Checks, for each session (or the one asked for), as on SQLite: the
//!   row's origin and parent (the parent `(session, seq)` exists); seqs from
//!   1 without a gap; `last_seq`, `entry_count` and `stored_bytes` against
//!   the rows; a `SessionStart` at seq 1 and nowhere else, agreeing with the
//!   row, its `forked_from` / `compacted_from` naming existing entries;
//!   every body decodes and its `kind` and `ts` columns agree with it; every
//!   payload reference resolves, and every payload's text matches its hash
//!   and size (a corrupt payload is reported at each entry referencing it).
//! * The entry rows are read by [`Walk`], which applies the checks of the
//!   SQLite row reader (`rows.rs`) in the same order and reports each
//!   problem as the same [`RowError`]; export reads through it too.
//! * **Not checked here** (no PostgreSQL counterpart yet): SQLite's
//!   `PRAGMA integrity_check` (the server keeps its own pages and
//!   constraints; `amcheck` would be the counterpart) and the full-text
//!   search index.

use std::collections::{HashMap, VecDeque};

use podlog_entry::payload::inline;
use podlog_entry::{LogEntry, PayloadRef, Seq, SessionId};
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Row, Transaction};

use super::{PgContext, PgStore};
use crate::rows::RowError;
use crate::verify::{
    column_problems, counter_problems, missing_message, origin_problem, payload_problem,
    payload_ref_message, start_problems, stored_bytes_problem, RawSession,
};
use crate::{stored_id, Problem, Result, StoreError};

/// How many rows [`Walk`] reads per query.
const PAGE: i64 = 512;

/// One entry row as stored, columns read as leniently as they allow.
struct RawRow {
    seq: i64,
    ts: Option<i64>,
    kind: Option<String>,
    body: String,
    payloads: Option<String>,
}

/// One row that decoded, in its place, read whole.
pub(crate) struct WalkedRow {
    pub seq: Seq,
    /// The whole entry's JSON: the body as stored, or, for a lean row, with
    /// its payloads put back (as the SQLite reader puts them back).
    pub body: String,
    pub entry: LogEntry,
    pub ts_column: Option<i64>,
    pub kind_column: Option<String>,
}

/// The rows of one session, read in pages of [`PAGE`] by seq inside the
/// caller's transaction, each checked as `rows.rs` checks a SQLite row:
/// problems come as [`RowError`]s, in row order, and a problem never hides
/// a row after it (a gap is reported before the row that follows it, a
/// misplaced `SessionStart` before its row, which then comes too; a row
/// whose body does not decode, or whose seq is below 1, is replaced by its
/// error).
pub(crate) struct Walk {
    session: String,
    /// The seq the next row should have.
    want: Seq,
    /// The seq the next page starts after.
    cursor: i64,
    ready: VecDeque<std::result::Result<WalkedRow, RowError>>,
    exhausted: bool,
    count: u64,
    last: Seq,
}

impl Walk {
    /// A walk over every row of `session` (its stored id text).
    pub(crate) fn new(session: &str) -> Self {
        Walk {
            session: session.to_owned(),
            want: Seq::FIRST,
            cursor: i64::MIN,
            ready: VecDeque::new(),
            exhausted: false,
            count: 0,
            last: Seq::ZERO,
        }
    }

    /// The next row or problem; `Ok(None)` after the last row. `Err` is
    /// the server failing, after which nothing follows.
    pub(crate) fn next(
        &mut self,
        client: &mut impl GenericClient,
    ) -> Result<Option<std::result::Result<WalkedRow, RowError>>> {
        while self.needs_fetch() {
            self.fetch(client)?;
        }
        Ok(self.ready.pop_front())
    }

    /// Whether [`Walk::next`] would query before it can answer.
    fn needs_fetch(&self) -> bool {
        self.ready.is_empty() && !self.exhausted
    }

    /// The next row of a sound session: the first problem is the
    /// [`StoreError`] a SQLite read of the same rows fails with.
    pub(crate) fn next_checked(
        &mut self,
        client: &mut impl GenericClient,
    ) -> Result<Option<WalkedRow>> {
        match self.next(client)? {
            None => Ok(None),
            Some(Ok(row)) => Ok(Some(row)),
            Some(Err(e)) => Err(e.into_store_error(&self.session)),
        }
    }

    /// How many rows were read so far, whatever was wrong with them.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The seq of the last row read (`Seq::ZERO` before the first one).
    pub(crate) fn last(&self) -> Seq {
        self.last
    }

    /// Reads the next page and checks its rows.
    fn fetch(&mut self, client: &mut impl GenericClient) -> Result<()> {
        let ctx = || {
            format!(
                "reading the entries of session {}",
                stored_id(&self.session)
            )
        };
        let rows = client
            .query(
                "SELECT seq, ts, kind, body::text, payloads::text FROM entries \
                 WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&self.session, &self.cursor, &PAGE],
            )
            .context(ctx)?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok(RawRow {
                    seq: row.try_get(0)?,
                    ts: row.try_get(1)?,
                    kind: row.try_get(2)?,
                    body: row.try_get(3)?,
                    payloads: row.try_get(4)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            .context(ctx)?;
        if (rows.len() as u64) < PAGE as u64 {
            self.exhausted = true;
        }
        let texts = payload_texts(client, &rows).context(ctx)?;
        for row in rows {
            self.cursor = row.seq;
            self.check(row, &texts);
        }
        Ok(())
    }

    /// Checks one row, queueing its problems and then the row itself.
    fn check(&mut self, row: RawRow, texts: &HashMap<String, String>) {
        self.count += 1;
        let Some(seq) = u64::try_from(row.seq).ok().filter(|s| *s >= 1).map(Seq) else {
            self.ready.push_back(Err(RowError::SeqBelowOne(row.seq)));
            return;
        };
        self.last = seq;
        let want = std::mem::replace(&mut self.want, seq.next());
        if seq > want {
            self.ready.push_back(Err(RowError::Missing {
                first: want,
                last: Seq(seq.get() - 1),
            }));
        }
        let entry = match LogEntry::from_json(&row.body) {
            Ok(entry) => entry,
            Err(error) => {
                self.ready
                    .push_back(Err(RowError::Undecodable { seq, error }));
                return;
            }
        };
        if entry.is_session_start() != (seq == Seq::FIRST) {
            self.ready.push_back(Err(if seq == Seq::FIRST {
                RowError::NoSessionStart {
                    kind: entry.kind().to_owned(),
                }
            } else {
                RowError::LateSessionStart { seq }
            }));
        }
        self.ready.push_back(whole(seq, row, entry, texts));
    }
}

/// The row at `seq`, whose body decoded to `entry`, with its payloads put
/// back from `texts`.
fn whole(
    seq: Seq,
    row: RawRow,
    entry: LogEntry,
    texts: &HashMap<String, String>,
) -> std::result::Result<WalkedRow, RowError> {
    let bad = |reason: String| RowError::BadPayloadRefs { seq, reason };
    let refs: Vec<PayloadRef> = match row.payloads.as_deref() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| bad(e.to_string()))?,
    };
    let mut walked = WalkedRow {
        seq,
        body: row.body,
        entry,
        ts_column: row.ts,
        kind_column: row.kind,
    };
    if refs.is_empty() {
        return Ok(walked);
    }
    let mut value: serde_json::Value =
        serde_json::from_str(&walked.body).map_err(|e| bad(e.to_string()))?;
    for r in refs {
        let Some(text) = texts.get(r.hash.as_str()) else {
            return Err(RowError::MissingPayload {
                seq,
                path: r.path,
                hash: r.hash.to_string(),
            });
        };
        inline(&mut value, &r.path, text.clone()).map_err(|e| bad(e.to_string()))?;
    }
    walked.body = value.to_string();
    walked.entry =
        LogEntry::from_json(&walked.body).map_err(|error| RowError::Undecodable { seq, error })?;
    Ok(walked)
}

/// The texts of the payloads `rows` reference, by hash. References that do
/// not parse are left for [`whole`] to report; a payload not stored is
/// simply absent.
fn payload_texts(
    client: &mut impl GenericClient,
    rows: &[RawRow],
) -> std::result::Result<HashMap<String, String>, postgres::Error> {
    let mut hashes: Vec<String> = rows
        .iter()
        .filter_map(|r| r.payloads.as_deref())
        .filter_map(|text| serde_json::from_str::<Vec<PayloadRef>>(text).ok())
        .flatten()
        .map(|r| r.hash.as_str().to_owned())
        .collect();
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    hashes.sort();
    hashes.dedup();
    client
        .query(
            "SELECT hash, text FROM payloads WHERE hash = ANY($1)",
            &[&hashes],
        )?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Collects the problems of one verification, inside its transaction.
struct Report<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    problems: Vec<Problem>,
    /// Payloads whose text does not match their hash or size, and why.
    bad_payloads: Vec<(String, String)>,
}

/// The references of `entries.payloads` that are JSON arrays (anything
/// else is reported by the row reader), one row per reference.
const REFS: &str = "entries AS e \
     CROSS JOIN LATERAL json_array_elements(\
       CASE WHEN json_typeof(e.payloads) = 'array' THEN e.payloads ELSE '[]'::json END) AS r";

impl Report<'_, '_> {
    fn push(&mut self, session: Option<&str>, seq: Option<i64>, message: impl Into<String>) {
        self.problems.push(Problem {
            session: session.map(stored_id),
            seq: seq.and_then(|s| u64::try_from(s).ok()).map(Seq),
            message: message.into(),
        });
    }

    /// Runs one query in a savepoint, so that its failure leaves the
    /// transaction usable for the checks after it.
    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let mut savepoint = self.tx.transaction()?;
        match savepoint.query(sql, params) {
            Ok(rows) => {
                savepoint.commit()?;
                Ok(rows)
            }
            Err(e) => {
                // Dropping the savepoint rolls it back.
                Err(e)
            }
        }
    }

    /// Hashes every payload the session `only` references (every payload,
    /// when `None`), and keeps those whose text does not match their hash
    /// or size.
    fn payloads(&mut self, only: Option<&str>) {
        let sql = format!(
            "SELECT hash, size, text FROM payloads \
             WHERE $1::text IS NULL OR hash IN ( \
               SELECT (r.value ->> 'hash') COLLATE \"C\" FROM {REFS} WHERE e.session_id = $1) \
             ORDER BY hash"
        );
        let rows = self.query(&sql, &[&only]).and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        r.try_get::<_, i64>(1)?,
                        r.try_get::<_, String>(2)?,
                    ))
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
        });
        match rows {
            Ok(rows) => {
                self.bad_payloads = rows
                    .into_iter()
                    .filter_map(|(hash, size, text)| {
                        payload_problem(&hash, size, text.as_bytes()).map(|why| (hash, why))
                    })
                    .collect();
            }
            Err(e) => self.push(None, None, format!("cannot read the payloads: {e}")),
        }
    }

    /// Reports each corrupt payload at every entry of `session` that
    /// references it.
    fn corrupt_payloads(&mut self, session: &str) {
        let sql = format!(
            "SELECT e.session_id, e.seq, r.value ->> 'path' FROM {REFS} \
             WHERE r.value ->> 'hash' = $1 AND e.session_id = $2 \
             ORDER BY e.session_id, e.seq"
        );
        for (hash, why) in self.bad_payloads.clone() {
            let users = self.query(&sql, &[&hash, &session]).and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<_, String>(0)?,
                            r.try_get::<_, i64>(1)?,
                            r.try_get::<_, Option<String>>(2)?,
                        ))
                    })
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            });
            match users {
                Ok(users) => {
                    for (session, seq, path) in users {
                        let path = path.unwrap_or_else(|| "(no path)".to_owned());
                        self.push(
                            Some(&session),
                            Some(seq),
                            format!("payload {hash} (the string at {path}) is corrupt: {why}"),
                        );
                    }
                }
                Err(e) => self.push(
                    Some(session),
                    None,
                    format!("payload {hash} is corrupt ({why}); cannot find its entries: {e}"),
                ),
            }
        }
    }

    fn orphans(&mut self) {
        let rows = self
            .query(
                "SELECT session_id, count(*) FROM entries \
                 WHERE session_id NOT IN (SELECT id FROM sessions) \
                 GROUP BY session_id ORDER BY session_id",
                &[],
            )
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?)))
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            });
        match rows {
            Ok(rows) => {
                for (session, count) in rows {
                    self.push(
                        Some(&session),
                        None,
                        format!("{count} entries stored for a session that has no session row"),
                    );
                }
            }
            Err(e) => self.push(None, None, format!("cannot look for orphan entries: {e}")),
        }
    }

    /// `payload_refs` against `entries.payloads`, both ways.
    fn payload_refs(&mut self) {
        let sql = format!(
            "WITH named (hash, session_id, seq) AS ( \
               SELECT (r.value ->> 'hash') COLLATE \"C\", e.session_id, e.seq FROM {REFS}) \
             SELECT 'missing', m.* FROM (SELECT * FROM named EXCEPT SELECT * FROM payload_refs) AS m \
             UNION ALL \
             SELECT 'stale', s.* FROM (SELECT * FROM payload_refs EXCEPT SELECT * FROM named) AS s \
             ORDER BY 3, 4, 2"
        );
        let rows = self.query(&sql, &[]).and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        r.try_get::<_, Option<String>>(1)?,
                        r.try_get::<_, String>(2)?,
                        r.try_get::<_, i64>(3)?,
                    ))
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
        });
        match rows {
            Ok(rows) => {
                for (what, hash, session, seq) in rows {
                    let hash = hash.unwrap_or_else(|| "(none)".to_owned());
                    self.push(Some(&session), Some(seq), payload_ref_message(&what, &hash));
                }
            }
            Err(e) => self.push(None, None, format!("cannot check payload_refs: {e}")),
        }
    }

    /// Why `(session, seq)` does not name an entry, or `None` if it does.
    fn missing(&mut self, session: &str, seq: i64) -> Option<String> {
        let found = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM entries WHERE session_id = $1 AND seq = $2), \
                        EXISTS (SELECT 1 FROM sessions WHERE id = $1)",
                &[&session, &seq],
            )
            .and_then(|rows| match rows.first() {
                Some(r) => Ok((r.try_get::<_, bool>(0)?, r.try_get::<_, bool>(1)?)),
                None => Ok((false, false)),
            });
        match found {
            Ok((entry, row)) => missing_message(entry, row, session, seq),
            Err(e) => Some(format!("cannot look it up: {e}")),
        }
    }

    fn check_row(&mut self, row: &RawSession) {
        let id = Some(row.id.as_str());
        let has_parent = match (&row.parent_id, row.parent_seq) {
            (Some(parent), Some(seq)) => {
                if let Some(why) = self.missing(parent, seq) {
                    self.push(
                        id,
                        None,
                        format!("parent {parent}@{seq} does not exist: {why}"),
                    );
                }
                true
            }
            (None, None) => false,
            _ => {
                self.push(
                    id,
                    None,
                    "parent_id and parent_seq must both be set or both be null",
                );
                true
            }
        };
        if let Some(problem) = origin_problem(&row.origin, has_parent) {
            self.push(id, None, problem);
        }
    }

    /// Reads the session's rows with [`Walk`], reporting every problem it
    /// yields, then checks the kind and ts columns, the counters and the
    /// references of each `SessionStart`.
    fn check_entries(&mut self, row: &RawSession) {
        let id = Some(row.id.as_str());
        let mut walk = Walk::new(&row.id);
        let mut starts = Vec::new();
        loop {
            // Each page is read in a savepoint (see `Report::query`).
            while walk.needs_fetch() {
                let fetched = self
                    .tx
                    .transaction()
                    .context(|| "reading entries".to_owned())
                    .and_then(|mut savepoint| {
                        walk.fetch(&mut savepoint)?;
                        savepoint.commit().context(|| "reading entries".to_owned())
                    });
                if let Err(e) = fetched {
                    self.push(id, None, format!("cannot read its entries: {e}"));
                    return;
                }
            }
            let stored = match walk.ready.pop_front() {
                None => break,
                Some(Ok(stored)) => stored,
                Some(Err(problem)) => {
                    let seq = problem.seq().and_then(|s| i64::try_from(s.get()).ok());
                    self.push(id, seq, problem.to_string());
                    continue;
                }
            };
            let seq = i64::try_from(stored.seq.get()).unwrap_or(i64::MAX);
            for problem in column_problems(
                stored.kind_column.as_deref(),
                stored.ts_column,
                &stored.entry,
            ) {
                self.push(id, Some(seq), problem);
            }
            if stored.entry.is_session_start() {
                starts.push((seq, stored.entry));
            }
        }
        for (seq, problem) in
            counter_problems(row.last_seq, row.entry_count, walk.count(), walk.last())
        {
            self.push(id, seq, problem);
        }
        self.check_stored_bytes(row);
        for (seq, start) in starts {
            self.check_start(row, seq, &start);
        }
    }

    /// `stored_bytes` is what the appends added: each row's body bytes and
    /// the sizes its payload references name.
    fn check_stored_bytes(&mut self, row: &RawSession) {
        let id = Some(row.id.as_str());
        let sql = format!(
            "SELECT (coalesce(sum(octet_length(e.body::text)), 0) \
                     + coalesce(sum((SELECT sum((r.value ->> 'size')::bigint) FROM {REFS_OF_E})), 0) \
                    )::bigint \
             FROM entries AS e WHERE e.session_id = $1",
            REFS_OF_E = "json_array_elements(CASE WHEN json_typeof(e.payloads) = 'array' \
                         THEN e.payloads ELSE '[]'::json END) AS r"
        );
        let stored = self
            .query(&sql, &[&row.id])
            .and_then(|rows| match rows.first() {
                Some(r) => r.try_get::<_, i64>(0),
                None => Ok(0),
            });
        match stored {
            Ok(bytes) => {
                if let Some(problem) = stored_bytes_problem(row.stored_bytes, bytes) {
                    self.push(id, None, problem);
                }
            }
            Err(e) => self.push(id, None, format!("cannot sum its stored bytes: {e}")),
        }
    }

    /// The references of a `SessionStart` exist, and the one at seq 1 agrees
    /// with its session row ([`start_problems`]).
    fn check_start(&mut self, row: &RawSession, seq: i64, start: &LogEntry) {
        let problems = start_problems(row, seq, start, |session, at| self.missing(session, at));
        for problem in problems {
            self.push(Some(row.id.as_str()), Some(seq), problem);
        }
    }
}

/// The session rows to verify: all of them, or `only`.
fn session_rows(
    report: &mut Report<'_, '_>,
    only: Option<&SessionId>,
) -> std::result::Result<Vec<RawSession>, postgres::Error> {
    report
        .query(
            "SELECT id, origin, parent_id, parent_seq, last_seq, entry_count, stored_bytes \
             FROM sessions_now WHERE $1::text IS NULL OR id = $1 ORDER BY created_at, id",
            &[&only.map(SessionId::as_str)],
        )?
        .iter()
        .map(|r| {
            Ok(RawSession {
                id: r.try_get(0)?,
                origin: r.try_get(1)?,
                parent_id: r.try_get(2)?,
                parent_seq: r.try_get(3)?,
                last_seq: r.try_get(4)?,
                entry_count: r.try_get(5)?,
                stored_bytes: r.try_get(6)?,
            })
        })
        .collect()
}

impl PgStore {
    /// Checks every session (or only `session`) and returns every problem
    /// found, in session then seq order; empty when all is well. See the
    /// module docs for what is checked. Fails only when the store cannot be
    /// read at all, or `session` does not exist.
    pub fn verify(&self, session: Option<&SessionId>) -> Result<Vec<Problem>> {
        if let Some(session) = session {
            // Only whether it exists: what is wrong with its row is a
            // problem to report, not a reason to stop.
            match self.session(session) {
                Ok(_) | Err(StoreError::CorruptSession { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.read_with(|client| {
            let ctx = || "verifying the database".to_owned();
            // One read transaction: one consistent state for every check.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .context(ctx)?;
            let mut report = Report {
                tx: &mut tx,
                problems: Vec::new(),
                bad_payloads: Vec::new(),
            };
            report.payloads(session.map(SessionId::as_str));
            if session.is_none() {
                report.orphans();
                report.payload_refs();
            }
            match session_rows(&mut report, session) {
                Ok(rows) => {
                    for row in &rows {
                        report.check_row(row);
                        report.check_entries(row);
                        report.corrupt_payloads(&row.id);
                    }
                }
                Err(e) => report.push(None, None, format!("cannot read the session rows: {e}")),
            }
            let problems = report.problems;
            // Nothing was written; ending the read transaction cannot lose
            // anything, so its outcome does not matter.
            let _ = tx.rollback();
            Ok(problems)
        })
        .map(|mut problems| {
            if session.is_none() {
                problems.extend(self.search_index_problem());
            }
            problems
        })
    }

    /// The search index holds exactly one row per searchable entry (see
    /// `pg/search.rs`); a mismatch is rows edited behind the triggers' back.
    fn search_index_problem(&self) -> Option<Problem> {
        let message = match self.search_index_mismatches() {
            Ok((0, 0)) => return None,
            Ok((missing, stray)) => format!(
                "search index: {stray} indexed rows name no searchable entry and {missing} \
                 searchable entries are not indexed (Store::rebuild_search_index rebuilds it)"
            ),
            Err(e) => format!("cannot check the search index: {e}"),
        };
        Some(Problem {
            session: None,
            seq: None,
            message,
        })
    }

    /// How many sessions and entries a verification of `session` (or of all
    /// sessions) covers, from the session rows' counters.
    pub fn verify_scope(&self, session: Option<&SessionId>) -> Result<(u64, u64)> {
        let only = session.map(SessionId::as_str);
        let (sessions, entries): (i64, i64) = self.read_with(|client| {
            let ctx = || "counting sessions".to_owned();
            let row = client
                .query_one(
                    "SELECT count(*), coalesce(sum(entry_count), 0)::bigint FROM sessions_now \
                     WHERE $1::text IS NULL OR id = $1",
                    &[&only],
                )
                .context(ctx)?;
            Ok((row.try_get(0).context(ctx)?, row.try_get(1).context(ctx)?))
        })?;
        // The schema keeps both at 0 or more.
        Ok((
            u64::try_from(sessions).unwrap_or(0),
            u64::try_from(entries).unwrap_or(0),
        ))
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
