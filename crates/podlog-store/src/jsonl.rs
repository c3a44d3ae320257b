//! Export and import of sessions as JSON Lines: [`SqliteStore::export`] and
//! [`SqliteStore::import`]. The format is specified in `docs/export-format.md`;
//! in short, each session is a header line followed by one line per entry,
//! in seq order:
//!
//! ```text
//! {"type":"podlog.session","format_version":1,"id":"s-1","origin":"new","parent_id":null,"parent_seq":null,"created_at":1700000000000,"updated_at":1700000004000,"last_seq":2,"title":"demo"}
//! {"session_id":"s-1","seq":1,"entry":{"type":"session_start","ts":1700000000000,...}}
//! {"session_id":"s-1","seq":2,"entry":{"type":"user_input","ts":1700000001000,...}}
//! ```
//!
//! # Export contract
//!
//! * One read transaction: the file shows one consistent state of the
//!   session, even while a pod goes on writing it.
//! * With ancestors, the parent chain comes first (root first, the session
//!   last), each ancestor whole, so an import meets every parent before the
//!   sessions that refer to it.
//! * Each entry's `"entry"` is its stored body, byte for byte (line breaks
//!   between JSON tokens, which podlog never writes, become spaces). Every
//!   body is decoded on the way out: a row that does not decode, or a gap in
//!   seq, fails the export with its session and seq rather than produce a
//!   file that import would refuse.
//!
//! # Import contract
//!
//! * One write transaction for the whole file: it is imported entirely or
//!   not at all. The first malformed line fails the import with
//!   [`StoreError::Import`] naming its line number ("line 17: ..."), and the
//!   database is left as it was.
//!   The transaction holds the write lock from the first line to the
//!   commit: other writers to the database wait meanwhile (up to their busy
//!   timeout).
//! * Checked on the way in: each session's entries follow its header with
//!   seqs 1, 2, 3... up to the header's `last_seq` (a file cut short is
//!   refused); a `SessionStart` at seq 1 and nowhere else; every body decodes
//!   (an unknown newer kind passes, kept as written); the `SessionStart`
//!   agrees with the header's origin and parent; the parent `(session, seq)`
//!   exists in the database or earlier in the file.
//! * Sessions keep their ids, times and titles; each body is stored exactly
//!   as it appears in the file, and the session's counters are set from the
//!   rows. An id already in the database is refused: import never merges.
//! * **Redacted like an append.** With redaction on (see
//!   [`crate::redaction`]), an entry holding a secret is stored redacted,
//!   not as written, and counted in its session's `redactions`: an import is
//!   a write like any other, and a log exported from a store with redaction
//!   off (or from before it existed) must not bring its secrets in. An
//!   entry without one is stored byte for byte.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{BufRead, Write};

use podlog_entry::{EntryRef, LogEntry, Seq, SessionId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Deserializer};
use serde_json::error::Category;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::Context;
use crate::payloads::{insert_rendered, render_json};
use crate::rows::{read_rows, Form, Span};
use crate::verify::start_disagrees_with_row;
use crate::{session_from_row, Origin, Result, SessionInfo, SqliteStore, StoreError, SESSION_COLUMNS};

/// The export format this version writes, and the newest it reads.
pub const EXPORT_FORMAT_VERSION: u64 = 1;

/// The `"type"` of a session header line.
pub const SESSION_HEADER_TYPE: &str = "podlog.session";

/// What an export wrote or an import added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The sessions, in file order.
    pub sessions: Vec<SessionId>,
    /// The entries, all sessions together.
    pub entries: u64,
}

/// Reads session `id` on `conn`.
fn session_on(conn: &Connection, id: &SessionId) -> Result<SessionInfo> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id.as_str()], session_from_row).optional())
    .context(|| format!("reading session {id}"))?
    .ok_or_else(|| StoreError::UnknownSession(id.to_string()))?
}

/// `session` and, if asked, its ancestors, root first, read on `conn`.
fn chain_on(
    conn: &Connection,
    session: &SessionId,
    with_ancestors: bool,
) -> Result<Vec<SessionInfo>> {
    let mut chain = vec![session_on(conn, session)?];
    let mut seen = HashSet::from([session.clone()]);
    while let Some(parent) = chain
        .last()
        .and_then(|s| s.parent.clone())
        .filter(|_| with_ancestors)
    {
        if !seen.insert(parent.session_id.clone()) {
            return Err(StoreError::Corrupt {
                session: session.clone(),
                seq: parent.seq,
                problem: format!(
                    "the parent chain loops back to session {}",
                    parent.session_id
                ),
            });
        }
        chain.push(session_on(conn, &parent.session_id)?);
    }
    chain.reverse();
    Ok(chain)
}

/// The header line of `info`.
pub(crate) fn header_line(info: &SessionInfo) -> String {
    let parent = info.parent.as_ref();
    serde_json::json!({
        "type": SESSION_HEADER_TYPE,
        "format_version": EXPORT_FORMAT_VERSION,
        "id": info.id,
        "origin": info.origin.as_str(),
        "parent_id": parent.map(|p| &p.session_id),
        "parent_seq": parent.map(|p| p.seq),
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "last_seq": info.last_seq,
        "title": info.title,
    })
    .to_string()
}

fn write_error(e: std::io::Error) -> StoreError {
    StoreError::Io {
        context: "writing the export".to_owned(),
        source: e,
    }
}

impl SqliteStore {
    /// The sessions [`SqliteStore::export`] would write for `session`, in file
    /// order, from their rows (no entry is read). The sum of their
    /// `entry_count` is the total its `progress` counts up to.
    pub fn export_sessions(
        &self,
        session: &SessionId,
        with_ancestors: bool,
    ) -> Result<Vec<SessionInfo>> {
        self.with_reader(|conn| chain_on(conn, session, with_ancestors))
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
        self.with_reader(|conn| {
            let tx = conn
                .unchecked_transaction()
                .context(|| format!("exporting session {session}"))?;
            let chain = chain_on(&tx, session, with_ancestors)?;
            let mut done = Transfer::default();
            for info in &chain {
                let id = &info.id;
                out.write_all(header_line(info).as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(write_error)?;
                let id_json = Value::from(id.as_str()).to_string();
                read_rows(&tx, id.as_str(), Span::ALL, Form::Full, |rows| {
                    while let Some(row) = rows.next_checked()? {
                        let seq = row.seq;
                        let body = if row.body.contains(['\n', '\r']) {
                            Cow::Owned(row.body.replace(['\n', '\r'], " "))
                        } else {
                            Cow::Borrowed(&*row.body)
                        };
                        writeln!(
                            out,
                            "{{\"session_id\":{id_json},\"seq\":{seq},\"entry\":{body}}}"
                        )
                        .map_err(write_error)?;
                        done.entries += 1;
                        progress(done.entries);
                    }
                    rows.check_end(info.last_seq, info.last_seq)
                })?;
                done.sessions.push(id.clone());
            }
            out.flush().map_err(write_error)?;
            Ok(done)
        })
    }

    /// Imports every session of the JSON Lines in `input`, in one
    /// transaction, calling `progress` with the number of bytes read so far
    /// after each line. See the module docs; a malformed line fails with
    /// [`StoreError::Import`] and leaves the database unchanged.
    pub fn import(
        &self,
        mut input: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> Result<Transfer> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(|| "starting the import".to_owned())?;
        let mut import = Import {
            conn: &tx,
            redactor: self.redactor(),
            current: None,
            in_file: HashSet::new(),
            done: Transfer::default(),
        };
        let mut buf = Vec::new();
        let mut line: u64 = 0;
        let mut bytes: u64 = 0;
        loop {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .map_err(|source| StoreError::Io {
                    context: format!("reading line {} of the import", line + 1),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line += 1;
            bytes += n as u64;
            let text = std::str::from_utf8(&buf)
                .map_err(|e| import_error(line, format!("not UTF-8 text: {e}")))?
                .trim_end_matches(['\n', '\r']);
            if !text.trim().is_empty() {
                import.line(line, text)?;
            }
            progress(bytes);
        }
        import.finish_session()?;
        if import.done.sessions.is_empty() {
            return Err(import_error(
                line.max(1),
                "the file holds no session (a podlog export starts with a \
                 {\"type\":\"podlog.session\",...} line)",
            ));
        }
        let done = import.done;
        tx.commit().context(|| "committing the import".to_owned())?;
        Ok(done)
    }
}

fn import_error(line: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Import {
        line,
        reason: reason.into(),
    }
}

/// One line of an import, parsed once: the text of its `"entry"` member
/// exactly as written (serde_json's `RawValue` keeps it unparsed, so the
/// body is stored byte for byte), and every other member as JSON.
#[derive(Deserialize)]
struct Line<'a> {
    /// Absent when the line has no `"entry"` member; an `"entry": null` is
    /// kept (as the text `null`), to be refused as not an object.
    #[serde(borrow, default, deserialize_with = "present")]
    entry: Option<&'a RawValue>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl<'a> Line<'a> {
    /// Parses line number `line`, whose text is `text`.
    fn parse(line: u64, text: &'a str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            // Valid JSON, so far, of the wrong shape: not an object, or an
            // object with two `"entry"` members.
            Category::Data if !text.trim_start().starts_with('{') => {
                import_error(line, "not a JSON object")
            }
            Category::Data => import_error(line, e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                import_error(line, format!("not JSON: {e}"))
            }
        })
    }
}

/// Deserialises a member that is present, `null` included.
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The session whose entries are being read.
struct Current {
    id: SessionId,
    header_line: u64,
    origin: Origin,
    parent: Option<EntryRef>,
    last_seq: Seq,
    next: Seq,
    /// Secrets redacted in its entries so far.
    redactions: u64,
    /// Its `stored_bytes` so far.
    stored_bytes: u64,
}

/// The state of one import, inside its transaction.
struct Import<'c> {
    conn: &'c Connection,
    redactor: Option<std::sync::Arc<podlog_redact::Redactor>>,
    current: Option<Current>,
    in_file: HashSet<SessionId>,
    done: Transfer,
}

impl Import<'_> {
    fn line(&mut self, line: u64, text: &str) -> Result<()> {
        let Line { entry, rest } = Line::parse(line, text)?;
        match rest.get("type") {
            Some(Value::String(t)) if t == SESSION_HEADER_TYPE => self.header(line, &rest),
            Some(other) => Err(import_error(
                line,
                format!(
                    "unknown line type {other} (want {SESSION_HEADER_TYPE:?} or an entry line)"
                ),
            )),
            None => match entry {
                Some(entry) => self.entry(line, entry, &rest),
                None => Err(import_error(
                    line,
                    "neither a session header ({\"type\":\"podlog.session\",...}) nor an entry \
                     line ({\"session_id\",\"seq\",\"entry\"})",
                )),
            },
        }
    }

    fn header(&mut self, line: u64, object: &Map<String, Value>) -> Result<()> {
        self.finish_session()?;
        let field = |name: &str| object.get(name).unwrap_or(&Value::Null);
        let need_u64 = |name: &str| {
            field(name).as_u64().ok_or_else(|| {
                import_error(
                    line,
                    format!("session header: {name} must be a whole number"),
                )
            })
        };
        let version = need_u64("format_version")?;
        if version > EXPORT_FORMAT_VERSION {
            return Err(import_error(
                line,
                format!(
                    "export format version {version} is newer than the \
                     {EXPORT_FORMAT_VERSION} this podlog reads; upgrade podlog to import it"
                ),
            ));
        }
        let id = match field("id") {
            Value::String(id) => {
                SessionId::new(id.as_str()).map_err(|e| import_error(line, e.to_string()))?
            }
            _ => return Err(import_error(line, "session header: id must be a string")),
        };
        let origin = field("origin")
            .as_str()
            .and_then(Origin::parse)
            .ok_or_else(|| {
                import_error(
                    line,
                    format!("session {id}: origin must be \"new\", \"fork\" or \"compaction\""),
                )
            })?;
        let parent = match (field("parent_id"), field("parent_seq")) {
            (Value::Null, Value::Null) => None,
            (Value::String(p), seq) => {
                let seq = seq.as_u64().filter(|s| *s >= 1).ok_or_else(|| {
                    import_error(
                        line,
                        format!("session {id}: parent_seq must be a seq (1 or more)"),
                    )
                })?;
                let session_id = SessionId::new(p.as_str())
                    .map_err(|e| import_error(line, format!("session {id}: parent_id: {e}")))?;
                Some(EntryRef {
                    session_id,
                    seq: Seq(seq),
                })
            }
            _ => {
                return Err(import_error(
                    line,
                    format!(
                        "session {id}: parent_id and parent_seq must both be set or both be null"
                    ),
                ))
            }
        };
        if (origin == Origin::New) != parent.is_none() {
            return Err(import_error(
                line,
                format!(
                    "session {id}: a {} session {} a parent",
                    origin.as_str(),
                    if parent.is_some() {
                        "cannot have"
                    } else {
                        "needs"
                    }
                ),
            ));
        }
        let created_at = need_u64("created_at")?;
        let updated_at = need_u64("updated_at")?;
        let last_seq = need_u64("last_seq")?;
        if last_seq == 0 {
            return Err(import_error(
                line,
                format!(
                    "session {id}: last_seq must be 1 or more (every session has its SessionStart)"
                ),
            ));
        }
        let title = match field("title") {
            Value::Null => None,
            Value::String(t) => Some(t.clone()),
            _ => {
                return Err(import_error(
                    line,
                    format!("session {id}: title must be a string or null"),
                ))
            }
        };
        let (title, title_redactions) =
            crate::redaction::redact_title(self.redactor.as_deref(), title);
        if !self.in_file.insert(id.clone()) {
            return Err(import_error(
                line,
                format!("session {id} appears twice in the file"),
            ));
        }
        let ctx = || format!("importing line {line}");
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)",
                [id.as_str()],
                |r| r.get(0),
            )
            .context(ctx)?;
        if exists {
            return Err(import_error(
                line,
                format!("session {id} already exists in the database; import never merges into an existing session"),
            ));
        }
        if let Some(p) = &parent {
            let found: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM entries WHERE session_id = ?1 AND seq = ?2)",
                    params![p.session_id.as_str(), p.seq.get()],
                    |r| r.get(0),
                )
                .context(ctx)?;
            if !found {
                return Err(import_error(
                    line,
                    format!(
                        "session {id}: its parent {p} is neither in the database nor earlier in the \
                         file (export with --with-ancestors puts ancestors first)"
                    ),
                ));
            }
        }
        self.conn
            .execute(
                "INSERT INTO sessions (id, parent_id, parent_seq, origin, created_at, updated_at, \
                 last_seq, entry_count, title) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7)",
                params![
                    id.as_str(),
                    parent.as_ref().map(|p| p.session_id.as_str()),
                    parent.as_ref().map(|p| p.seq.get()),
                    origin.as_str(),
                    created_at,
                    updated_at,
                    title
                ],
            )
            .context(ctx)?;
        self.current = Some(Current {
            id,
            header_line: line,
            origin,
            parent,
            last_seq: Seq(last_seq),
            next: Seq::FIRST,
            redactions: title_redactions,
            stored_bytes: 0,
        });
        Ok(())
    }

    fn entry(&mut self, line: u64, entry: &RawValue, object: &Map<String, Value>) -> Result<()> {
        let Some(current) = &mut self.current else {
            return Err(import_error(
                line,
                "an entry line before any session header",
            ));
        };
        let id = &current.id;
        let session = object.get("session_id").and_then(Value::as_str);
        if session != Some(id.as_str()) {
            return Err(import_error(
                line,
                format!(
                    "entry of session {} inside session {id} (each session's entries follow its header)",
                    session.map_or_else(|| "(no session_id)".to_owned(), |s| format!("{s:?}"))
                ),
            ));
        }
        let seq = object
            .get("seq")
            .and_then(Value::as_u64)
            .map(Seq)
            .ok_or_else(|| {
                import_error(line, format!("session {id}: seq must be a whole number"))
            })?;
        if seq != current.next {
            return Err(import_error(
                line,
                format!(
                    "session {id}: expected seq {}, found seq {seq}",
                    current.next
                ),
            ));
        }
        if seq > current.last_seq {
            return Err(import_error(
                line,
                format!(
                    "session {id}: seq {seq} is past the last_seq {} its header (line {}) announces",
                    current.last_seq, current.header_line
                ),
            ));
        }
        let mut body = Cow::Borrowed(entry.get());
        let mut redacted = 0;
        if let Some((text, found)) = self.redactor.as_ref().and_then(|r| r.redact_json(&body)) {
            body = Cow::Owned(text);
            redacted = found.total();
        }
        if !body.starts_with('{') {
            return Err(import_error(
                line,
                format!("session {id} seq {seq}: entry must be a JSON object"),
            ));
        }
        let entry = LogEntry::from_json(&body)
            .map_err(|e| import_error(line, format!("session {id} seq {seq}: {e}")))?;
        if seq == Seq::FIRST {
            let parent_id = current.parent.as_ref().map(|p| p.session_id.as_str());
            let parent_seq = current
                .parent
                .as_ref()
                .map(|p| i64::try_from(p.seq.get()).unwrap_or(i64::MAX));
            if let Some(why) =
                start_disagrees_with_row(current.origin.as_str(), parent_id, parent_seq, &entry)
            {
                return Err(import_error(line, format!("session {id} seq 1: {why}")));
            }
        } else if entry.is_session_start() {
            return Err(import_error(
                line,
                format!(
                    "session {id} seq {seq}: a SessionStart after seq 1 (only seq 1 may hold one)"
                ),
            ));
        }
        // Large strings go out of line here as in an append, so an import
        // stores each repeated payload once.
        let rendered = render_json(body.into_owned());
        insert_rendered(self.conn, id, seq, &entry, &rendered)
            .context(|| format!("importing line {line}"))?;
        current.redactions += redacted;
        current.stored_bytes += rendered.stored_bytes();
        current.next = seq.next();
        Ok(())
    }

    /// Closes the session being read: all its entries arrived; set its
    /// counters.
    fn finish_session(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let count = current.next.get() - 1;
        if Seq(count) != current.last_seq {
            return Err(import_error(
                current.header_line,
                format!(
                    "session {}: the header says last_seq {} but the file holds {count} of its \
                     entries (is the file cut short?)",
                    current.id, current.last_seq
                ),
            ));
        }
        self.conn
            .execute(
                "UPDATE sessions SET last_seq = ?2, entry_count = ?2, redactions = ?3, \
                 stored_bytes = ?4 WHERE id = ?1",
                params![
                    current.id.as_str(),
                    count,
                    current.redactions,
                    current.stored_bytes
                ],
            )
            .context(|| format!("importing session {}", current.id))?;
        self.done.entries += count;
        self.done.sessions.push(current.id);
        Ok(())
    }
}

#[cfg(test)]
#[path = "jsonl_tests.rs"]
mod tests;
