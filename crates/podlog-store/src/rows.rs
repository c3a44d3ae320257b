//! [`SessionRows`]: the one reader of a session's entry rows. Reads and
//! restore ([`SqliteStore::entries_after`](crate::SqliteStore::entries_after)), fork and
//! compaction (reading the parent up to the cut), export and verify all go
//! through it, so they agree on what a sound session is and say what is
//! wrong in the same words.
//!
//! # Contract
//!
//! * Rows come in seq order, limited to a [`Span`]. A span that starts at
//!   the beginning of the session also meets the rows stored with a seq
//!   below 1, which only an edit behind podlog's back can make.
//! * Every row is checked: its seq follows the previous one without a gap
//!   (the first one follows the span's start), its body is UTF-8 text that
//!   decodes with [`LogEntry::from_json`] (an unknown newer kind decodes), and
//!   it holds a `SessionStart` exactly when its seq is 1.
//! * [`SessionRows::next_row`] yields each problem as a [`RowError`], in row
//!   order, and a problem never hides a row after it: a gap is reported
//!   before the row that follows it, a misplaced `SessionStart` before its
//!   row, which is then yielded too; a row whose body does not decode, or
//!   whose seq is below 1, is replaced by its error. So a caller that wants
//!   every problem (verify) keeps reading, and one that needs a sound session
//!   stops at the first: [`SessionRows::next_checked`] does, and turns the
//!   problem into the [`StoreError`] naming session and seq (`Corrupt` or
//!   `Decode`).
//! * SQLite failing while stepping through the rows is
//!   [`RowError::Sqlite`]; no row follows it.

use std::borrow::Cow;
use std::fmt;

use podlog_entry::payload::inline;
use podlog_entry::{DecodeError, LogEntry, PayloadRef, Seq};
use rusqlite::fallible_streaming_iterator::FallibleStreamingIterator;
use rusqlite::types::{Type, ValueRef};
use rusqlite::{params, Connection, Row, Rows};

use crate::error::Context;
use crate::payloads::payload_text;
use crate::{stored_id, Result, StoreError};

/// Which form of a lean row (one with payload references) a reader gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// The whole entry: every payload read and put back in place.
    Full,
    /// The entry as stored, with previews, and its references: what the
    /// mirror and the wire carry. Reads no payload.
    Preview,
}

/// Which rows of a session to read: those after a seq, up to a seq, at most
/// so many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    after: Seq,
    upto: Option<Seq>,
    limit: Option<usize>,
}

impl Span {
    /// Every row of the session.
    pub(crate) const ALL: Span = Span {
        after: Seq::ZERO,
        upto: None,
        limit: None,
    };

    /// Up to `limit` rows with a seq greater than `after`.
    pub(crate) fn after(after: Seq, limit: usize) -> Self {
        Span {
            after,
            upto: None,
            limit: Some(limit),
        }
    }

    /// Up to `limit` (at least 1) rows just below seq `before`: the page
    /// that ends at `before - 1`, read backwards from a position a client
    /// holds. Empty when `before` is 1 or less.
    pub(crate) fn before(before: Seq, limit: usize) -> Self {
        let limit = limit.max(1);
        let upto = before.get().saturating_sub(1);
        let first = upto
            .saturating_sub(u64::try_from(limit).unwrap_or(u64::MAX) - 1)
            .max(1);
        Span {
            after: Seq(first - 1),
            upto: Some(Seq(upto)),
            limit: Some(limit),
        }
    }

    /// The rows from the start up to and including seq `upto`.
    pub(crate) fn upto(upto: Seq) -> Self {
        Span {
            upto: Some(upto),
            ..Span::ALL
        }
    }

    /// The bounds and limit as SQL parameters: the lowest and highest seq
    /// wanted, and the `LIMIT` (-1 for none).
    fn sql_params(self) -> (i64, i64, i64) {
        let seq = |s: Seq| i64::try_from(s.get()).unwrap_or(i64::MAX);
        let low = if self.after == Seq::ZERO {
            i64::MIN
        } else {
            seq(self.after.next())
        };
        let high = self.upto.map_or(i64::MAX, seq);
        let limit = self
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        (low, high, limit)
    }
}

/// One stored row that decoded, in its place.
#[derive(Debug)]
pub(crate) struct StoredRow<'r> {
    pub seq: Seq,
    /// The body exactly as stored, or, read in [`Form::Full`], the whole
    /// entry's JSON with its payloads put back.
    pub body: Cow<'r, str>,
    /// The body decoded (the whole entry in [`Form::Full`]).
    pub entry: LogEntry,
    /// The payload references of a lean row read in [`Form::Preview`];
    /// empty otherwise.
    pub payloads: Vec<PayloadRef>,
    /// The `ts` column, if it is a whole number. It is not checked against
    /// the body; verify does that.
    pub ts_column: Option<i64>,
    /// The `kind` column, if it is text. Not checked against the body either.
    pub kind_column: Option<&'r str>,
}

/// What is wrong with a session's rows at one place.
#[derive(Debug)]
pub(crate) enum RowError {
    /// Seqs `first` to `last` are not stored, though `last + 1` is.
    Missing { first: Seq, last: Seq },
    /// A row is stored with this seq, below 1.
    SeqBelowOne(i64),
    /// The body is not text.
    NotText { seq: Seq, found: Type },
    /// The body is text but not UTF-8.
    NotUtf8 {
        seq: Seq,
        error: std::str::Utf8Error,
    },
    /// The body does not decode.
    Undecodable { seq: Seq, error: DecodeError },
    /// The `payloads` column does not read as a list of references, or one
    /// of them does not name a string of the body.
    BadPayloadRefs { seq: Seq, reason: String },
    /// A reference names a payload the database does not hold.
    MissingPayload {
        seq: Seq,
        path: String,
        hash: String,
    },
    /// Seq 1 holds an entry of this kind, not a `SessionStart`.
    NoSessionStart { kind: String },
    /// A `SessionStart` at a seq after 1.
    LateSessionStart { seq: Seq },
    /// SQLite failed stepping through the rows; no row follows.
    Sqlite(rusqlite::Error),
}

impl RowError {
    /// The seq the problem is at, when there is one.
    pub(crate) fn seq(&self) -> Option<Seq> {
        match self {
            RowError::Missing { first, .. } => Some(*first),
            RowError::NotText { seq, .. }
            | RowError::NotUtf8 { seq, .. }
            | RowError::Undecodable { seq, .. }
            | RowError::BadPayloadRefs { seq, .. }
            | RowError::MissingPayload { seq, .. }
            | RowError::LateSessionStart { seq } => Some(*seq),
            RowError::NoSessionStart { .. } => Some(Seq::FIRST),
            RowError::SeqBelowOne(_) | RowError::Sqlite(_) => None,
        }
    }

    /// The error a read of session `session` (its stored id text) fails
    /// with: `Decode` for a body, `Corrupt` for a seq out of place,
    /// `CorruptSession` for a seq below 1, `Sqlite` for SQLite.
    pub(crate) fn into_store_error(self, session: &str) -> StoreError {
        let session_id = stored_id(session);
        let problem = self.to_string();
        match self {
            RowError::Sqlite(source) => StoreError::Sqlite {
                context: format!("reading the entries of session {session_id}"),
                source,
            },
            RowError::SeqBelowOne(_) => StoreError::CorruptSession {
                session: session_id,
                problem,
            },
            RowError::Undecodable { seq, error } => StoreError::Decode {
                session: session_id,
                seq,
                reason: error.to_string(),
            },
            RowError::NotText { seq, .. } | RowError::NotUtf8 { seq, .. } => StoreError::Decode {
                session: session_id,
                seq,
                reason: problem,
            },
            RowError::Missing { .. }
            | RowError::BadPayloadRefs { .. }
            | RowError::MissingPayload { .. }
            | RowError::NoSessionStart { .. }
            | RowError::LateSessionStart { .. } => StoreError::Corrupt {
                seq: self.seq().unwrap_or(Seq::ZERO),
                session: session_id,
                problem,
            },
        }
    }
}

/// The problem in words, without its session and seq.
impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::Missing { first, last } if first == last => write!(
                f,
                "entry missing (the next stored entry is seq {})",
                last.next()
            ),
            RowError::Missing { first, last } => write!(f, "entries {first} to {last} missing"),
            RowError::SeqBelowOne(seq) => write!(f, "an entry has seq {seq}; seqs start at 1"),
            RowError::NotText { found, .. } => write!(f, "body is {found:?}, not JSON text"),
            RowError::NotUtf8 { error, .. } => write!(f, "body is not UTF-8: {error}"),
            RowError::Undecodable { error, .. } => write!(f, "body does not decode: {error}"),
            RowError::BadPayloadRefs { reason, .. } => {
                write!(f, "payload references are malformed: {reason}")
            }
            RowError::MissingPayload { path, hash, .. } => {
                write!(f, "payload {hash} (the string at {path}) is missing")
            }
            RowError::NoSessionStart { kind } => {
                write!(f, "seq 1 holds a {kind} instead of a SessionStart")
            }
            RowError::LateSessionStart { .. } => {
                f.write_str("a SessionStart after seq 1 (only seq 1 may hold one)")
            }
            RowError::Sqlite(e) => write!(f, "cannot read its entries: {e}"),
        }
    }
}

/// The query every reader runs; the columns are read by index below.
const SELECT_ROWS: &str = "SELECT seq, ts, kind, body, payloads FROM entries \
     WHERE session_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4";

/// Runs `read` over the rows of session `session` (its id as stored) in
/// `span`, on `conn`, in `form`, and returns what `read` returns.
pub(crate) fn read_rows<T>(
    conn: &Connection,
    session: &str,
    span: Span,
    form: Form,
    read: impl FnOnce(&mut SessionRows<'_>) -> Result<T>,
) -> Result<T> {
    let ctx = || format!("reading the entries of session {}", stored_id(session));
    let mut stmt = conn.prepare_cached(SELECT_ROWS).context(ctx)?;
    let (low, high, limit) = span.sql_params();
    let rows = stmt
        .query(params![session, low, high, limit])
        .context(ctx)?;
    let mut rows = SessionRows {
        session,
        conn,
        form,
        rows,
        want: span.after.next(),
        pending: None,
        held: None,
        count: 0,
        last: Seq::ZERO,
    };
    read(&mut rows)
}

/// The rows of one session being read; see the module docs. Made by
/// [`read_rows`].
pub(crate) struct SessionRows<'s> {
    session: &'s str,
    conn: &'s Connection,
    form: Form,
    rows: Rows<'s>,
    /// The seq the next row should have.
    want: Seq,
    /// The seq of the row under the cursor when a gap before it was
    /// reported and the row itself is still to come.
    pending: Option<Seq>,
    /// The row under the cursor, decoded, when a misplaced `SessionStart`
    /// was reported and the row itself is still to come.
    held: Option<(Seq, LogEntry)>,
    count: u64,
    last: Seq,
}

impl SessionRows<'_> {
    /// The next row, or the next problem; `None` after the last row. See
    /// the module docs for the order.
    pub(crate) fn next_row(&mut self) -> Option<Result<StoredRow<'_>, RowError>> {
        if let Some((seq, entry)) = self.held.take() {
            let (conn, form) = (self.conn, self.form);
            let row = self.rows.get()?;
            return Some(
                body(row, seq).and_then(|text| stored_row(conn, form, row, seq, text, entry)),
            );
        }
        let seq = match self.pending.take() {
            Some(seq) => seq,
            None => {
                let row = match self.rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => return None,
                    Err(e) => return Some(Err(RowError::Sqlite(e))),
                };
                self.count += 1;
                let seq = match row.get::<_, i64>(0) {
                    Ok(seq) => seq,
                    Err(e) => return Some(Err(RowError::Sqlite(e))),
                };
                let Some(seq) = u64::try_from(seq).ok().filter(|s| *s >= 1).map(Seq) else {
                    return Some(Err(RowError::SeqBelowOne(seq)));
                };
                self.last = seq;
                let want = std::mem::replace(&mut self.want, seq.next());
                if seq > want {
                    self.pending = Some(seq);
                    return Some(Err(RowError::Missing {
                        first: want,
                        last: Seq(seq.get() - 1),
                    }));
                }
                seq
            }
        };
        let row = self.rows.get()?;
        let text = match body(row, seq) {
            Ok(text) => text,
            Err(e) => return Some(Err(e)),
        };
        let entry = match LogEntry::from_json(text) {
            Ok(entry) => entry,
            Err(error) => return Some(Err(RowError::Undecodable { seq, error })),
        };
        if entry.is_session_start() != (seq == Seq::FIRST) {
            let error = if seq == Seq::FIRST {
                RowError::NoSessionStart {
                    kind: entry.kind().to_owned(),
                }
            } else {
                RowError::LateSessionStart { seq }
            };
            self.held = Some((seq, entry));
            return Some(Err(error));
        }
        Some(stored_row(self.conn, self.form, row, seq, text, entry))
    }

    /// The next row of a sound session: `Ok(None)` after the last one, and
    /// the first problem as the [`StoreError`] naming session and seq.
    pub(crate) fn next_checked(&mut self) -> Result<Option<StoredRow<'_>>> {
        let session = self.session;
        match self.next_row() {
            None => Ok(None),
            Some(Ok(row)) => Ok(Some(row)),
            Some(Err(e)) => Err(e.into_store_error(session)),
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

    /// Fails unless the rows read end at `end`: the session's last seq, or
    /// the cut of a fork or compaction. `last_seq` is the session row's
    /// counter, named in the error. A session whose last entries are
    /// missing, or whose counter is behind its rows, must not pass for a
    /// sound one.
    pub(crate) fn check_end(&self, end: Seq, last_seq: Seq) -> Result<()> {
        if self.last == end {
            return Ok(());
        }
        Err(StoreError::Corrupt {
            session: stored_id(self.session),
            seq: self.last.next(),
            problem: format!(
                "the session row's last_seq is {last_seq} but the entries end at seq {}",
                self.last
            ),
        })
    }
}

/// The body of `row` as text.
fn body<'r>(row: &'r Row<'_>, seq: Seq) -> Result<&'r str, RowError> {
    match row.get_ref(3).map_err(RowError::Sqlite)? {
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|error| RowError::NotUtf8 { seq, error })
        }
        other => Err(RowError::NotText {
            seq,
            found: other.data_type(),
        }),
    }
}

/// `row`, at `seq`, whose body `text` decoded to `entry`, in `form`: a lean
/// row read in full has its payloads put back from `conn`.
fn stored_row<'r>(
    conn: &Connection,
    form: Form,
    row: &'r Row<'_>,
    seq: Seq,
    text: &'r str,
    entry: LogEntry,
) -> Result<StoredRow<'r>, RowError> {
    let refs = payload_refs(row, seq)?;
    let mut stored = StoredRow {
        seq,
        body: Cow::Borrowed(text),
        entry,
        payloads: Vec::new(),
        ts_column: row.get(1).ok(),
        kind_column: row.get_ref(2).ok().and_then(|v| v.as_str().ok()),
    };
    if refs.is_empty() {
        return Ok(stored);
    }
    match form {
        Form::Preview => stored.payloads = refs,
        Form::Full => {
            let (body, entry) = put_back(conn, seq, text, refs)?;
            stored.body = Cow::Owned(body);
            stored.entry = entry;
        }
    }
    Ok(stored)
}

/// The references in the `payloads` column of `row` (none when NULL).
fn payload_refs(row: &Row<'_>, seq: Seq) -> Result<Vec<PayloadRef>, RowError> {
    let bad = |reason: String| RowError::BadPayloadRefs { seq, reason };
    match row.get_ref(4).map_err(RowError::Sqlite)? {
        ValueRef::Null => Ok(Vec::new()),
        ValueRef::Text(bytes) => serde_json::from_slice(bytes).map_err(|e| bad(e.to_string())),
        other => Err(bad(format!("{:?}, not JSON text", other.data_type()))),
    }
}

/// The whole JSON and entry of the lean body `text`: each payload `refs`
/// names read from `conn` and put back at its path.
fn put_back(
    conn: &Connection,
    seq: Seq,
    text: &str,
    refs: Vec<PayloadRef>,
) -> Result<(String, LogEntry), RowError> {
    let bad = |reason: String| RowError::BadPayloadRefs { seq, reason };
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    for r in refs {
        let payload = payload_text(conn, r.hash.as_str()).map_err(RowError::Sqlite)?;
        let Some(payload) = payload else {
            return Err(RowError::MissingPayload {
                seq,
                path: r.path,
                hash: r.hash.to_string(),
            });
        };
        inline(&mut value, &r.path, payload).map_err(|e| bad(e.to_string()))?;
    }
    let body = value.to_string();
    let entry = LogEntry::from_json(&body).map_err(|error| RowError::Undecodable { seq, error })?;
    Ok((body, entry))
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
