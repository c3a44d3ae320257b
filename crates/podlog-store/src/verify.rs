//! [`SqliteStore::verify`]: checks a database (or one session of it) against every
//! invariant podlog relies on, and reports each [`Problem`] it finds.
//!
//! # Contract
//!
//! * Verification reads only, on a read connection inside one read
//!   transaction: it sees one consistent state of the database, never writes,
//!   and runs while a pod goes on writing.
//! * It does not stop at the first problem, and it does not trust the rows:
//!   it is meant for databases edited behind podlog's back (the `sqlite3`
//!   shell with `PRAGMA ignore_check_constraints`, a disk that flipped bits).
//!   A row that cannot even be read becomes a problem, not an error; `Err` is
//!   kept for a database that cannot be opened or an unknown session.
//! * Checks, for the whole database:
//!   - `PRAGMA integrity_check` (b-trees, indexes, `NOT NULL`, `STRICT`
//!     types), one problem per line it reports. On a read-only connection
//!     SQLite skips `CHECK` constraints; the checks below cover every one of
//!     the schema's (`json_valid(body)`, `seq >= 1`, the origin and parent
//!     rules, the counters);
//!   - entries stored under a session id that has no session row;
//!   - the search index holds exactly the searchable entries (by rowid).
//!   - `payload_refs` lists exactly the payload references of
//!     `entries.payloads` (retention relies on it).
//! * The entry rows are read by the reader every other read uses
//!   (`rows.rs`), which reports each gap, undecodable body and misplaced
//!   `SessionStart` and reads on, so verify and a failed read name a
//!   problem in the same words.
//! * Checks, for each session (or the one asked for):
//!   - the row itself: a known `origin`, and a parent exactly when the origin
//!     is `fork` or `compaction`;
//!   - seq continuity: seqs 1 to the last stored one, no gap;
//!   - the counters: `last_seq` is the last stored seq, `entry_count` the
//!     number of stored entries, and `stored_bytes` the bytes of their
//!     bodies plus the sizes of the payloads they reference;
//!   - a `SessionStart` at seq 1 and nowhere else;
//!   - every body decodes ([`LogEntry::from_json`]; entries of newer kinds
//!     decode as unknown and pass), and the `kind` and `ts` columns agree
//!     with the body;
//!   - every payload an entry references is stored (the row reader puts each
//!     back at its path, and reports one that is missing or a path that
//!     names no string), and every payload's text matches its hash and size:
//!     a corrupt payload is reported at each entry that references it;
//!   - every `forked_from` / `compacted_from` of a `SessionStart`, and the
//!     session row's `parent_id` / `parent_seq`, name an existing
//!     `(session, seq)`, and the `SessionStart` at seq 1 says what the row
//!     says (a fork from the row's parent at its cut, a compaction likewise,
//!     neither for a new session).

use std::fmt;

use podlog_entry::{EntryRef, LogEntry, Seq, SessionId};
use rusqlite::{params, Connection};

use crate::error::Context;
use crate::rows::{read_rows, Form, RowError, Span};
use crate::{stored_id, Result, SqliteStore, StoreError};

/// One broken invariant, with the session and seq it concerns where there is
/// one. Displays as `session S seq N: message`, `session S: message` or
/// `database: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub session: Option<SessionId>,
    pub seq: Option<Seq>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.session, self.seq) {
            (Some(session), Some(seq)) => write!(f, "session {session} seq {seq}: ")?,
            (Some(session), None) => write!(f, "session {session}: ")?,
            (None, Some(seq)) => write!(f, "seq {seq}: ")?,
            (None, None) => f.write_str("database: ")?,
        }
        f.write_str(&self.message)
    }
}

/// A session row as stored, before any interpretation.
pub(crate) struct RawSession {
    pub(crate) id: String,
    pub(crate) origin: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) parent_seq: Option<i64>,
    pub(crate) last_seq: i64,
    pub(crate) entry_count: i64,
    pub(crate) stored_bytes: i64,
}

/// Collects the problems of one verification.
struct Report<'c> {
    conn: &'c Connection,
    problems: Vec<Problem>,
    /// Payloads whose text does not match their hash or size, and why.
    bad_payloads: Vec<(String, String)>,
}

impl Report<'_> {
    fn push(&mut self, session: Option<&str>, seq: Option<i64>, message: impl Into<String>) {
        self.problems.push(Problem {
            session: session.map(stored_id),
            seq: seq.and_then(|s| u64::try_from(s).ok()).map(Seq),
            message: message.into(),
        });
    }

    fn integrity(&mut self) {
        let mut lines = Vec::new();
        // FTS5 keeps its index's structure per connection and the integrity
        // check reads that copy as it is: a query first makes it reread the
        // structure if another connection changed it since (a read
        // connection from the pool would otherwise report blobs a merge or
        // a rebuild removed as corruption).
        let _ = self.conn.query_row(
            "SELECT rowid FROM search WHERE search MATCH 'a' LIMIT 1",
            [],
            |_| Ok(()),
        );
        let run = self
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut stmt| {
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    lines.push(row.get::<_, String>(0)?);
                }
                Ok(())
            });
        // SQLite heads its report with "*** in database main ***" lines.
        let lines = lines.iter().flat_map(|l| l.lines());
        for line in lines.filter(|l| *l != "ok" && !l.starts_with("*** in database")) {
            self.push(None, None, format!("integrity check: {line}"));
        }
        if let Err(e) = run {
            self.push(None, None, format!("integrity check could not finish: {e}"));
        }
    }

    /// Hashes every payload the session `only` references (every payload,
    /// when `None`), once, and keeps those whose text does not match their
    /// hash or size, for [`Report::corrupt_payloads`] to report at each
    /// entry that references them.
    fn payloads(&mut self, only: Option<&str>) {
        let found = self.conn.prepare(
            "SELECT hash, size, text FROM payloads              WHERE ?1 IS NULL OR hash IN (                SELECT json_extract(r.value, '$.hash')                FROM entries AS e, json_each(e.payloads) AS r                WHERE e.session_id = ?1)              ORDER BY hash",
        );
        let mut bad = Vec::new();
        let read = found.and_then(|mut stmt| {
            let mut rows = stmt.query([only])?;
            while let Some(row) = rows.next()? {
                let hash: String = row.get(0)?;
                let size: i64 = row.get(1)?;
                let text = match row.get_ref(2)? {
                    rusqlite::types::ValueRef::Text(bytes) => bytes,
                    other => {
                        bad.push((hash, format!("is {:?}, not text", other.data_type())));
                        continue;
                    }
                };
                if let Some(why) = payload_problem(&hash, size, text) {
                    bad.push((hash, why));
                }
            }
            Ok(())
        });
        if let Err(e) = read {
            self.push(None, None, format!("cannot read the payloads: {e}"));
        }
        self.bad_payloads = bad;
    }

    /// Reports each corrupt payload found by [`Report::payloads`] at every
    /// entry of `session` that references it.
    fn corrupt_payloads(&mut self, session: &str) {
        for (hash, why) in self.bad_payloads.clone() {
            let users = self
                .conn
                .prepare(
                    "SELECT e.session_id, e.seq, json_extract(r.value, '$.path')                      FROM entries AS e, json_each(e.payloads) AS r                      WHERE json_extract(r.value, '$.hash') = ?1                        AND (?2 IS NULL OR e.session_id = ?2)                      ORDER BY e.session_id, e.seq",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![hash, session], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                });
            match users {
                Ok(users) => {
                    for (session, seq, path) in users {
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
            .conn
            .prepare(
                "SELECT session_id, count(*) FROM entries \
                 WHERE session_id NOT IN (SELECT id FROM sessions) \
                 GROUP BY session_id ORDER BY session_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
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

    /// The search index holds exactly the searchable entries at or below
    /// `search_indexed.upto` (its content, `search_source`), by rowid; the
    /// ones above it are pending (see `crate::search`). A mismatch is what a
    /// `VACUUM` that renumbered the rowids without a rebuild leaves, or an
    /// index edited by hand.
    fn search_index(&mut self) {
        let counts = self.conn.query_row(
            "SELECT (SELECT count(*) FROM search_docsize AS d \
                     WHERE NOT EXISTS (SELECT 1 FROM search_source AS s WHERE s.entry_rowid = d.id)), \
                    (SELECT count(*) FROM search_source AS s \
                     WHERE NOT EXISTS (SELECT 1 FROM search_docsize AS d WHERE d.id = s.entry_rowid))",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        );
        match counts {
            Ok((0, 0)) => {}
            Ok((stray, missing)) => {
                self.push(
                    None,
                    None,
                    format!(
                    "search index: {stray} indexed rows name no searchable entry and {missing} \
                     searchable entries are not indexed (after a VACUUM the index must be \
                     rebuilt: {})",
                    crate::search::REBUILD.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
                )
            }
            Err(e) => self.push(None, None, format!("cannot check the search index: {e}")),
        }
    }

    /// `payload_refs` against `entries.payloads`: retention deletes a
    /// payload when this table lists no other reference to it, so a
    /// reference missing here would let it delete a payload still in use.
    fn payload_refs(&mut self) {
        let rows = self
            .conn
            .prepare(
                "WITH named (hash, session_id, seq) AS ( \
                   SELECT json_extract(r.value, '$.hash'), e.session_id, e.seq \
                   FROM entries AS e, json_each(e.payloads) AS r \
                   WHERE e.payloads IS NOT NULL) \
                 SELECT 'missing', * FROM (SELECT * FROM named EXCEPT SELECT * FROM payload_refs) \
                 UNION ALL \
                 SELECT 'stale', * FROM (SELECT * FROM payload_refs EXCEPT SELECT * FROM named) \
                 ORDER BY 3, 4, 2",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
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
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM entries WHERE session_id = ?1 AND seq = ?2), EXISTS (SELECT 1 FROM sessions WHERE id = ?1)")
            .and_then(|mut stmt| {
                stmt.query_row(params![session, seq], |r| {
                    Ok((r.get::<_, bool>(0)?, r.get::<_, bool>(1)?))
                })
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

    /// Reads the session's rows with the one row reader, reporting every
    /// problem it yields, then checks the kind and ts columns, the counters
    /// and the references of each `SessionStart`.
    fn check_entries(&mut self, row: &RawSession) {
        let id = Some(row.id.as_str());
        let conn = self.conn;
        let read = read_rows(conn, &row.id, Span::ALL, Form::Full, |rows| {
            let mut starts = Vec::new();
            while let Some(item) = rows.next_row() {
                let stored = match item {
                    Ok(stored) => stored,
                    Err(RowError::Sqlite(e)) => {
                        self.push(id, None, format!("cannot read its entries: {e}"));
                        return Ok(None);
                    }
                    Err(problem) => {
                        let seq = problem.seq().and_then(|s| i64::try_from(s.get()).ok());
                        self.push(id, seq, problem.to_string());
                        continue;
                    }
                };
                let (seq, entry) = (stored.seq.get(), &stored.entry);
                let seq = i64::try_from(seq).unwrap_or(i64::MAX);
                for problem in column_problems(stored.kind_column, stored.ts_column, entry) {
                    self.push(id, Some(seq), problem);
                }
                if entry.is_session_start() {
                    starts.push((seq, stored.entry));
                }
            }
            Ok(Some((rows.count(), rows.last(), starts)))
        });
        let (count, last, starts) = match read {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(e) => {
                self.push(id, None, format!("cannot read its entries: {e}"));
                return;
            }
        };
        for (seq, problem) in counter_problems(row.last_seq, row.entry_count, count, last) {
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
        let stored = self.conn.query_row(
            "SELECT coalesce(sum(length(CAST(e.body AS BLOB))), 0) \
                    + coalesce(sum((SELECT sum(json_extract(r.value, '$.size')) \
                                    FROM json_each(e.payloads) AS r)), 0) \
             FROM entries AS e WHERE e.session_id = ?1",
            [&row.id],
            |r| r.get::<_, i64>(0),
        );
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

// The pure checks below are shared with the PostgreSQL store's verify
// (`pg/verify.rs`), so both report a problem in the same words.

/// What is wrong with the `SessionStart` at `seq` of the session `row`: a
/// `forked_from` or `compacted_from` naming an entry that does not exist
/// (`missing` says why, or `None` when it exists), and at seq 1 a start
/// that disagrees with the session row.
pub(crate) fn start_problems(
    row: &RawSession,
    seq: i64,
    start: &LogEntry,
    mut missing: impl FnMut(&str, i64) -> Option<String>,
) -> Vec<String> {
    let LogEntry::SessionStart {
        forked_from,
        compacted_from,
        ..
    } = start
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (field, reference) in [
        ("forked_from", forked_from),
        ("compacted_from", compacted_from),
    ] {
        if let Some(r) = reference {
            let target_seq = i64::try_from(r.seq.get()).unwrap_or(i64::MAX);
            if let Some(why) = missing(r.session_id.as_str(), target_seq) {
                problems.push(format!(
                    "{field} points at {r}, which does not exist: {why}"
                ));
            }
        }
    }
    if seq == 1 {
        problems.extend(start_disagrees_with_row(
            &row.origin,
            row.parent_id.as_deref(),
            row.parent_seq,
            start,
        ));
    }
    problems
}

/// Why a payload stored under `hash` with `size` is not the payload its
/// hash names, or `None` when its `text` matches both.
pub(crate) fn payload_problem(hash: &str, size: i64, text: &[u8]) -> Option<String> {
    let actual = blake3::hash(text).to_hex().to_string();
    if actual != hash {
        Some(format!("its text hashes to {actual}"))
    } else if usize::try_from(size).ok() != Some(text.len()) {
        Some(format!(
            "its size says {size} bytes but it holds {}",
            text.len()
        ))
    } else {
        None
    }
}

/// A row of `payload_refs` that is `"missing"` (named by the entry, not
/// listed) or `"stale"` (listed, not named), in words.
pub(crate) fn payload_ref_message(what: &str, hash: &str) -> String {
    if what == "missing" {
        format!("payload_refs lacks its reference to payload {hash}")
    } else {
        format!("payload_refs lists payload {hash}, which the entry does not reference")
    }
}

/// Why `(session, seq)` names no entry, given whether the entry and the
/// session exist; `None` when the entry does.
pub(crate) fn missing_message(
    entry_exists: bool,
    session_exists: bool,
    session: &str,
    seq: i64,
) -> Option<String> {
    match (entry_exists, session_exists) {
        (true, _) => None,
        (false, true) => Some(format!("session {session} has no seq {seq}")),
        (false, false) => Some(format!("there is no session {session}")),
    }
}

/// What is wrong with a session row's `origin` given whether it has a
/// parent, if anything.
pub(crate) fn origin_problem(origin: &str, has_parent: bool) -> Option<String> {
    match (origin, has_parent) {
        ("new", false) | ("fork" | "compaction", true) => None,
        ("new", true) => Some("a new session has a parent".to_owned()),
        ("fork" | "compaction", false) => Some(format!("a {origin} has no parent")),
        (other, _) => Some(format!("unknown origin {other:?}")),
    }
}

/// Where the `kind` and `ts` columns of a row disagree with its decoded
/// body `entry`.
pub(crate) fn column_problems(
    kind_column: Option<&str>,
    ts_column: Option<i64>,
    entry: &LogEntry,
) -> Vec<String> {
    let mut problems = Vec::new();
    if kind_column != Some(entry.kind()) {
        problems.push(format!(
            "kind column says {} but the body's type is {}",
            kind_column.unwrap_or("(not text)"),
            entry.kind()
        ));
    }
    if ts_column.and_then(|t| u64::try_from(t).ok()) != Some(entry.ts()) {
        problems.push(format!(
            "ts column is {} but the body's ts is {}",
            ts_column.map_or_else(|| "not a number".to_owned(), |t| t.to_string()),
            entry.ts()
        ));
    }
    problems
}

/// The session row's `last_seq` and `entry_count` against the `count`
/// rows read, the last of them at seq `last`: each problem with the seq it
/// is at, if any.
pub(crate) fn counter_problems(
    last_seq: i64,
    entry_count: i64,
    count: u64,
    last: Seq,
) -> Vec<(Option<i64>, String)> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let last = i64::try_from(last.get()).unwrap_or(i64::MAX);
    let mut problems = Vec::new();
    if count == 0 {
        problems.push((
            Some(1),
            "no entries: the SessionStart at seq 1 is missing".to_owned(),
        ));
    }
    if last_seq != last {
        problems.push((
            None,
            format!("last_seq counter is {last_seq} but the last stored entry is seq {last}"),
        ));
    }
    if entry_count != count {
        problems.push((
            None,
            format!("entry_count counter is {entry_count} but {count} entries are stored"),
        ));
    }
    problems
}

/// The session row's `stored_bytes` against the `bytes` its entries hold.
pub(crate) fn stored_bytes_problem(counter: i64, bytes: i64) -> Option<String> {
    (counter != bytes)
        .then(|| format!("stored_bytes counter is {counter} but its entries hold {bytes} bytes"))
}

/// How a session came to be, in words, from its row or its `SessionStart`.
fn describe(origin: &str, parent: Option<String>) -> String {
    match parent {
        None => "a new session".to_owned(),
        Some(parent) if origin == "fork" => format!("forked from {parent}"),
        Some(parent) if origin == "compaction" => format!("compacted from {parent}"),
        Some(parent) => format!("{origin} from {parent}"),
    }
}

/// Whether a session row (`origin`, `parent_id`, `parent_seq`) and its
/// `SessionStart` tell the same story; `Some(why)` when they do not. Shared by
/// verification and import.
pub(crate) fn start_disagrees_with_row(
    origin: &str,
    parent_id: Option<&str>,
    parent_seq: Option<i64>,
    start: &LogEntry,
) -> Option<String> {
    let LogEntry::SessionStart {
        forked_from,
        compacted_from,
        ..
    } = start
    else {
        return Some(format!(
            "seq 1 holds a {} instead of a SessionStart",
            start.kind()
        ));
    };
    let row_parent = match (parent_id, parent_seq) {
        (Some(p), Some(s)) => Some(format!("{p}@{s}")),
        _ => None,
    };
    let (start_origin, start_parent): (&str, Option<&EntryRef>) =
        match (forked_from, compacted_from) {
            (None, None) => ("new", None),
            (Some(f), None) => ("fork", Some(f)),
            (None, Some(c)) => ("compaction", Some(c)),
            (Some(_), Some(_)) => {
                return Some("the SessionStart has both forked_from and compacted_from".to_owned())
            }
        };
    let start_parent = start_parent.map(ToString::to_string);
    let row_origin = if row_parent.is_none() { "new" } else { origin };
    if row_origin == start_origin && row_parent == start_parent {
        return None;
    }
    Some(format!(
        "the session row says {} but its SessionStart says {}",
        describe(origin, row_parent),
        describe(start_origin, start_parent)
    ))
}

/// The session rows to verify: all of them, or `only`.
fn session_rows(conn: &Connection, only: Option<&SessionId>) -> rusqlite::Result<Vec<RawSession>> {
    let sql = "SELECT id, origin, parent_id, parent_seq, last_seq, entry_count, stored_bytes \
               FROM sessions \
               WHERE ?1 IS NULL OR id = ?1 ORDER BY created_at, id";
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([only.map(SessionId::as_str)], |r| {
        Ok(RawSession {
            id: r.get(0)?,
            origin: r.get(1)?,
            parent_id: r.get(2)?,
            parent_seq: r.get(3)?,
            last_seq: r.get(4)?,
            entry_count: r.get(5)?,
            stored_bytes: r.get(6)?,
        })
    })?;
    rows.collect()
}

impl SqliteStore {
    /// Checks every session (or only `session`) and the database file, and
    /// returns every problem found, in session then seq order; empty when all
    /// is well. See the module docs for what is checked. Fails only when the
    /// database cannot be read at all, or `session` does not exist.
    pub fn verify(&self, session: Option<&SessionId>) -> Result<Vec<Problem>> {
        if let Some(session) = session {
            // Only whether it exists: what is wrong with its row is a
            // problem to report, not a reason to stop.
            match self.session(session) {
                Ok(_) | Err(StoreError::CorruptSession { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.with_reader(|conn| {
            let ctx = || "verifying the database".to_owned();
            // One read transaction: one consistent state for every check.
            let tx = conn.unchecked_transaction().context(ctx)?;
            let mut report = Report {
                conn: &tx,
                problems: Vec::new(),
                bad_payloads: Vec::new(),
            };
            report.integrity();
            report.payloads(session.map(SessionId::as_str));
            if session.is_none() {
                report.orphans();
                report.search_index();
                report.payload_refs();
            }
            match session_rows(&tx, session) {
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
    }

    /// How many sessions and entries a verification of `session` (or of all
    /// sessions) covers, from the session rows' counters.
    pub fn verify_scope(&self, session: Option<&SessionId>) -> Result<(u64, u64)> {
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT count(*), coalesce(sum(entry_count), 0) FROM sessions \
                 WHERE ?1 IS NULL OR id = ?1",
                [session.map(SessionId::as_str)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context(|| "counting sessions".to_owned())
        })
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
