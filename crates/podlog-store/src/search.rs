//! Full-text search over session history (schema 5, written in batches
//! since schema 8: `migrations/0005_search.sql`, `0008_search_batches.sql`).
//!
//! # Contract
//!
//! * **Never stale, never ahead.** Every searchable entry at or below the
//!   rowid `search_indexed.upto` is in the FTS5 index `search`, every one
//!   above it is pending (at most 63); the append whose rowid reaches
//!   `upto + 64` indexes the pending entries in its transaction, so FTS5's
//!   fixed cost per transaction is paid once per batch and other appends
//!   write nothing for the index. [`SqliteStore::search`] reads the index and the pending entries
//!   in one read transaction (the pending ones through a temporary FTS5
//!   table on the reading connection, with the same tokenizer), so an
//!   entry is found from the commit that appends it and not before, and a
//!   failed append adds nothing. Deleting entry rows removes them from the
//!   index in the same statement.
//! * **What is indexed**: user input, assistant text and reasoning, tool
//!   call names and arguments, tool outputs, system notifications (message
//!   and body). Strings stored out of line are indexed whole.
//! * **Rowids.** The index is keyed by the `entries` rowid, which grows
//!   with time, so hits come newest first by `ORDER BY rowid DESC` and a
//!   page's cursor is the last hit's rowid. A full `VACUUM` may renumber
//!   rowids (the table has no INTEGER PRIMARY KEY): run
//!   [`SqliteStore::rebuild_search_index`] after one.
//! * **Queries** are FTS5 query syntax ([`SearchQuery::text`]), or with
//!   [`SearchQuery::plain`] words matched as they are. A query FTS5 refuses
//!   is [`StoreError::BadSearch`] naming the query and SQLite's reason.

use podlog_entry::{Seq, SessionId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Context, StoreError};
use crate::{stored_id, Result, SqliteStore};

/// Starts a match in [`SearchHit::snippet`].
pub const MARK_START: char = '\u{2}';
/// Ends a match in [`SearchHit::snippet`].
pub const MARK_END: char = '\u{3}';

/// The entry kinds the index covers.
pub const SEARCHABLE_KINDS: [&str; 4] =
    ["user_input", "assistant_item", "tool_result", "system_item"];

/// The most hits one page may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// How many entries the migration indexes per step, between progress reports.
const BACKFILL_CHUNK: i64 = 5000;

/// What to search for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// An FTS5 query (`error`, `"exact phrase"`, `comp*`, `a NOT b`,
    /// `NEAR(a b, 5)`), or words when `plain` is set.
    pub text: String,
    /// Match `text` as words, each quoted, all required: no operator or
    /// syntax error is possible.
    pub plain: bool,
    /// Only this session.
    pub session: Option<SessionId>,
    /// Only entries of this kind (one of [`SEARCHABLE_KINDS`]).
    pub kind: Option<String>,
    /// Only entries at or after this time (milliseconds since the epoch).
    pub since: Option<u64>,
    /// Hits per page: 1 to [`MAX_LIMIT`]; 0 means 20.
    pub limit: u32,
    /// Where the previous page ended ([`SearchPage::next`]).
    pub cursor: Option<i64>,
}

/// One matching entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub session: SessionId,
    pub seq: Seq,
    /// Milliseconds since the epoch.
    pub ts: u64,
    pub kind: String,
    /// A few words around the best match, each match between [`MARK_START`]
    /// and [`MARK_END`].
    pub snippet: String,
}

impl SearchHit {
    /// The snippet as (text, is a match) parts, in order.
    pub fn snippet_parts(&self) -> Vec<(String, bool)> {
        snippet_parts(&self.snippet)
    }
}

/// Splits a snippet at [`MARK_START`] and [`MARK_END`].
pub fn snippet_parts(snippet: &str) -> Vec<(String, bool)> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_match = false;
    for c in snippet.chars() {
        let toggle = (c == MARK_START && !in_match) || (c == MARK_END && in_match);
        if toggle {
            if !current.is_empty() {
                parts.push((std::mem::take(&mut current), in_match));
            }
            in_match = !in_match;
        } else if c != MARK_START && c != MARK_END {
            current.push(c);
        }
    }
    if !current.is_empty() {
        parts.push((current, in_match));
    }
    parts
}

/// A page of hits, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// The cursor of the next page; `None` when this page is the last.
    pub next: Option<i64>,
}

/// `words` as an FTS5 query that matches each word as it is written: every
/// white-space separated word becomes a quoted string (quotes doubled), all
/// required.
pub fn plain_query(words: &str) -> String {
    words
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bad(query: &str, reason: impl Into<String>) -> StoreError {
    StoreError::BadSearch {
        query: query.to_owned(),
        reason: reason.into(),
    }
}

/// A failure of the search statement: SQLITE_ERROR there is the query
/// (FTS5's syntax errors, an unknown column filter); anything else is the
/// database.
fn classify(query: &str, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == rusqlite::ErrorCode::Unknown => {
            bad(query, msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => StoreError::Sqlite {
            context: format!("searching for {query:?}"),
            source: e,
        },
    }
}

/// Parses a `since` bound into milliseconds since the epoch: an ISO-8601
/// date or time in UTC (`2026-11-30`, `2026-11-30T08:15`,
/// `2026-11-30T08:15:00Z`, `2026-11-30T08:15:00.250Z`), a time before
/// `now_ms` (a whole number and a unit: `90s`, `30m`, `12h`, `7d`, `2w`), or
/// milliseconds since the epoch as a plain number.
pub fn parse_since(text: &str, now_ms: u64) -> std::result::Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "bad time {text:?}: want an ISO date or time in UTC (2026-11-30, \
             2026-11-30T08:15:00Z) or a time ago (90s, 30m, 12h, 7d, 2w)"
        )
    };
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let number = &text[..text.len() - 1];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = number.parse().map_err(|_| bad())?;
            let unit_ms: u64 = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                _ => return Err(bad()),
            };
            return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
        }
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    parse_iso(text).ok_or_else(bad)
}

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) and `HH:MM`,
/// `HH:MM:SS` or `HH:MM:SS.fff`, optionally ending in `Z`.
fn parse_iso(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.find(['T', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let mut d = date.split('-');
    let year = num(d.next()?, 4)?;
    let month = num(d.next()?, 2)?;
    let day = num(d.next()?, 2)?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = 0i64;
    if let Some(time) = time {
        let (hms, frac) = match time.split_once('.') {
            Some((hms, frac)) => (hms, Some(frac)),
            None => (time, None),
        };
        let mut t = hms.split(':');
        let h = num(t.next()?, 2)?;
        let m = num(t.next()?, 2)?;
        let s = match t.next() {
            Some(s) => num(s, 2)?,
            None => 0,
        };
        if t.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        ms = (h * 3600 + m * 60 + s) * 1000;
        if let Some(frac) = frac {
            if frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            ms += format!("{frac:0<3}").parse::<i64>().ok()?;
        }
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400_000 + ms).ok()
}

/// The query's FTS5 text (its words quoted when `plain`) and its page size,
/// after the checks every backend makes: a query that is not empty, a
/// searchable kind, a limit within [`MAX_LIMIT`] (0 means 20).
pub(crate) fn checked(query: &SearchQuery) -> Result<(String, u32)> {
    let fts = if query.plain {
        plain_query(&query.text)
    } else {
        query.text.clone()
    };
    if fts.trim().is_empty() {
        return Err(bad(&query.text, "the query is empty"));
    }
    if let Some(kind) = &query.kind {
        if !SEARCHABLE_KINDS.contains(&kind.as_str()) {
            return Err(bad(
                &query.text,
                format!(
                    "kind {kind:?} is not searchable (searchable kinds: {})",
                    SEARCHABLE_KINDS.join(", ")
                ),
            ));
        }
    }
    if query.limit > MAX_LIMIT {
        return Err(bad(
            &query.text,
            format!("limit {} is above the maximum of {MAX_LIMIT}", query.limit),
        ));
    }
    Ok((fts, if query.limit == 0 { 20 } else { query.limit }))
}

impl SqliteStore {
    /// One page of the entries matching `query`, newest first.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let (fts, limit) = checked(query)?;
        let since = query.since.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        self.with_reader(|conn| {
            let ctx = || format!("searching for {:?}", query.text);
            let tx = conn.unchecked_transaction().context(ctx)?;
            // A session's entries lie between its first and last rowid:
            // bounding the index scan by them lets a session filter stop
            // early even for a word common elsewhere.
            let (lo, hi) = match &query.session {
                Some(id) => {
                    let bounds: (Option<i64>, Option<i64>) = tx
                        .query_row(
                            "SELECT min(rowid), max(rowid) FROM entries WHERE session_id = ?1",
                            [id.as_str()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .context(ctx)?;
                    match bounds {
                        (Some(lo), Some(hi)) => (lo, hi),
                        _ => {
                            return Ok(SearchPage {
                                hits: Vec::new(),
                                next: None,
                            })
                        }
                    }
                }
                None => (i64::MIN, i64::MAX),
            };
            let hi = match query.cursor {
                Some(c) => hi.min(c.saturating_sub(1)),
                None => hi,
            };
            let filter = Filter {
                fts: &fts,
                query,
                lo,
                hi,
                since,
                limit,
            };
            let mut hits = run(&tx, INDEX, &filter)?;
            if load_pending(&tx).context(ctx)? {
                hits.extend(run(&tx, PENDING, &filter)?);
                hits.sort_by_key(|h| std::cmp::Reverse(h.0));
            }
            tx.finish().context(ctx)?;
            Ok(page(hits, limit))
        })
    }

    /// Bytes the search index holds: its segments and per-entry sizes (the
    /// records of the FTS5 shadow tables, without B-tree overhead). For
    /// reporting how much of the database the index is.
    pub fn search_index_bytes(&self) -> Result<u64> {
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT (SELECT coalesce(sum(length(block)), 0) FROM search_data)                       + (SELECT coalesce(sum(length(sz)), 0) FROM search_docsize)                       + (SELECT count(*) * 8 FROM search_docsize)",
                [],
                |r| r.get(0),
            )
            .context(|| "measuring the search index".to_owned())
        })
    }

    /// Rebuilds the search index from the entries. Needed after a full
    /// `VACUUM`, which may renumber the rowids the index is keyed by.
    pub fn rebuild_search_index(&self) -> Result<()> {
        rebuild(&self.writer())
    }
}

/// Rebuilds the search index from the entries, on the writer `conn`: every
/// searchable entry is indexed, none left pending. `upto` moves to the
/// newest rowid first, since after a `VACUUM` the entries above it may be
/// others than before.
pub(crate) fn rebuild(conn: &Connection) -> Result<()> {
    conn.execute_batch(REBUILD)
        .context(|| "rebuilding the search index".to_owned())
}

/// [`rebuild`]'s SQL, which `podlog verify` also suggests.
pub const REBUILD: &str = "\
    UPDATE search_indexed SET upto = coalesce((SELECT max(rowid) FROM entries), 0); \
    INSERT INTO search (search) VALUES ('rebuild');";

/// This connection's temporary FTS5 table of pending entries, filled in the
/// caller's read transaction. Its tokenizer must be the index's
/// (`migrations/0005_search.sql`), so that both split words alike (a test
/// compares them). It lives in `temp`, so a read-only connection can write
/// it and nothing reaches the database file.
const LOAD_PENDING: &str = "\
    CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_recent \
        USING fts5 (text, tokenize = 'unicode61 remove_diacritics 2'); \
    DELETE FROM temp.search_recent; \
    INSERT INTO temp.search_recent (rowid, text) \
        SELECT entry_rowid, text FROM search_pending_text;";

/// Fills the temporary table of pending entries ([`LOAD_PENDING`]); false
/// when none is pending.
fn load_pending(conn: &Connection) -> rusqlite::Result<bool> {
    let pending: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM entries \
                        WHERE rowid > (SELECT upto FROM search_indexed))",
        [],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(false);
    }
    conn.execute_batch(LOAD_PENDING)?;
    Ok(true)
}

/// One search statement over the FTS5 table `$table`: FTS5 walks its
/// doclists in rowid order, newest first, within the bounds; the entry row
/// is looked up by rowid for the filters, and snippet() runs only for the
/// rows returned.
macro_rules! search_sql {
    ($table:literal) => {
        concat!(
            "SELECT ",
            $table,
            ".rowid, e.session_id, e.seq, e.ts, e.kind, ",
            "snippet(",
            $table,
            ", 0, char(2), char(3), '…', 24) ",
            "FROM ",
            $table,
            " CROSS JOIN entries AS e ON e.rowid = ",
            $table,
            ".rowid ",
            "WHERE ",
            $table,
            " MATCH ?1 AND ",
            $table,
            ".rowid BETWEEN ?2 AND ?3 ",
            "AND (?4 IS NULL OR e.session_id = ?4) ",
            "AND (?5 IS NULL OR e.kind = ?5) ",
            "AND (?6 IS NULL OR e.ts >= ?6) ",
            "ORDER BY ",
            $table,
            ".rowid DESC LIMIT ?7"
        )
    };
}

/// Searches the index.
const INDEX: &str = search_sql!("search");
/// Searches the pending entries ([`LOAD_PENDING`]).
const PENDING: &str = search_sql!("search_recent");

/// What one search asks of a table: the FTS5 query, the filters and the
/// rowid bounds.
struct Filter<'a> {
    fts: &'a str,
    query: &'a SearchQuery,
    lo: i64,
    hi: i64,
    since: Option<i64>,
    limit: u32,
}

/// The first `limit` of `hits` (newest first), and the cursor of the next
/// page when there were more.
fn page(hits: Vec<(i64, SearchHit)>, limit: u32) -> SearchPage {
    let more = hits.len() > limit as usize;
    let mut out = Vec::with_capacity(limit as usize);
    let mut last = None;
    for (rowid, hit) in hits.into_iter().take(limit as usize) {
        last = Some(rowid);
        out.push(hit);
    }
    SearchPage {
        hits: out,
        next: if more { last } else { None },
    }
}

/// Up to `limit + 1` hits of one table (`sql` is [`INDEX`] or
/// [`PENDING`]), newest first, with their rowids.
fn run(conn: &Connection, sql: &str, f: &Filter<'_>) -> Result<Vec<(i64, SearchHit)>> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| classify(&f.query.text, e))?;
    stmt.query_map(
        params![
            f.fts,
            f.lo,
            f.hi,
            f.query.session.as_ref().map(SessionId::as_str),
            f.query.kind,
            f.since,
            i64::from(f.limit) + 1
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                SearchHit {
                    session: stored_id(&r.get::<_, String>(1)?),
                    seq: Seq(r.get(2)?),
                    ts: r.get(3)?,
                    kind: r.get(4)?,
                    snippet: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                },
            ))
        },
    )
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(|e| classify(&f.query.text, e))
}

/// Indexes the entries already in the database, in chunks, inside the
/// migration's transaction, reporting (entries done, entries in all).
pub(crate) fn backfill(
    conn: &Connection,
    progress: Option<&crate::Progress>,
) -> rusqlite::Result<()> {
    let total: i64 = conn.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);
    if total == 0 {
        return Ok(());
    }
    let report = |done: u64| {
        if let Some(p) = progress {
            p(done, total);
        }
    };
    report(0);
    let mut lo = i64::MIN;
    let mut done = 0u64;
    loop {
        let hi: Option<i64> = conn
            .query_row(
                "SELECT rowid FROM entries WHERE rowid > ?1 ORDER BY rowid LIMIT 1 OFFSET ?2",
                params![lo, BACKFILL_CHUNK - 1],
                |r| r.get(0),
            )
            .optional()?;
        let upper = hi.unwrap_or(i64::MAX);
        conn.execute(
            "INSERT INTO search (rowid, text) \
             SELECT entry_rowid, text FROM search_source \
             WHERE entry_rowid > ?1 AND entry_rowid <= ?2",
            params![lo, upper],
        )?;
        match hi {
            Some(hi) => {
                done = (done + BACKFILL_CHUNK as u64).min(total);
                report(done);
                lo = hi;
            }
            None => {
                report(total);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
