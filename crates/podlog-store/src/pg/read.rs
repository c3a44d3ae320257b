//! Reading from PostgreSQL: entries ([`PgStore::entries`],
//! [`PgStore::entries_after`], [`PgStore::entries_before`] and their
//! preview forms), payloads by hash, a session by id prefix, a session's
//! open run.
//!
//! # Contract
//!
//! * Each read answers as the SQLite store's read of the same name does,
//!   from the same rows, with the same errors.
//! * Rows come in seq order and are checked as the SQLite reader
//!   (`rows.rs`) checks them, failing with the same [`RowError`] turned into
//!   the same [`StoreError`](crate::StoreError): a gap in seq, a body that does not decode (an
//!   unknown newer kind decodes), a `SessionStart` anywhere but seq 1, a
//!   malformed payload reference or a missing payload is an error naming the
//!   session and seq. Nothing is skipped.
//! * Bodies are read as the text that was written (`body::text` of a `json`
//!   column), so what the SQLite store would return for the same rows is
//!   what this returns.
//! * A lean row read whole has its payloads put back, read in one query for
//!   the whole page; read as a preview it keeps its references and no
//!   payload is read.

use std::collections::HashMap;

use podlog_entry::payload::inline;
use podlog_entry::{Committed, LogEntry, PayloadHash, PayloadRef, Seq, SessionId};

use super::{PgContext, PgStore};
use crate::rows::{Form, RowError};
use crate::{stored_id, Payload, Result};

/// One stored row as read: seq, body text, payload references as text.
pub(crate) struct RawRow {
    pub(crate) seq: i64,
    pub(crate) body: String,
    pub(crate) payloads: Option<String>,
}

impl PgStore {
    /// The one session whose id is `text` or starts with it; fails with
    /// [`crate::StoreError::UnknownSession`] for none and
    /// [`crate::StoreError::AmbiguousSession`] for several.
    pub fn resolve(&self, text: &str) -> Result<SessionId> {
        let ctx = || format!("looking up session {text:?}");
        let ids: Vec<String> = self.read_with(|client| {
            let exact = client
                .query_opt("SELECT id FROM sessions WHERE id = $1", &[&text])
                .context(ctx)?;
            if let Some(row) = exact {
                return Ok(vec![row.try_get(0).context(ctx)?]);
            }
            client
                .query(
                    "SELECT id FROM sessions WHERE starts_with(id, $1) ORDER BY id LIMIT 6",
                    &[&text],
                )
                .context(ctx)?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<std::result::Result<_, _>>()
                .context(ctx)
        })?;
        match ids.as_slice() {
            [] => Err(crate::StoreError::UnknownSession(text.to_owned())),
            [one] => Ok(stored_id(one)),
            many => Err(crate::StoreError::AmbiguousSession {
                prefix: text.to_owned(),
                matches: many.join(", "),
            }),
        }
    }

    /// The last seq of each of `sessions` that exists, in no particular
    /// order: what a follower compares with what it has served.
    pub fn last_seqs(&self, sessions: &[SessionId]) -> Result<Vec<(SessionId, Seq)>> {
        let ctx = || "reading the sessions' last seqs".to_owned();
        let ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        self.read_with(|client| {
            client
                .query(
                    "SELECT id, last_seq FROM sessions_now WHERE id = ANY($1)",
                    &[&ids],
                )
                .context(ctx)?
                .iter()
                .map(|row| {
                    let id: String = row.try_get(0).context(ctx)?;
                    let seq: i64 = row.try_get(1).context(ctx)?;
                    Ok((stored_id(&id), Seq(u64::try_from(seq).unwrap_or(0))))
                })
                .collect()
        })
    }

    /// The seq of the `UserInput` of the run `session` leaves open (no
    /// `RunCompleted` or `RunErrored` after it), from the `kind` column.
    pub fn open_run(&self, session: &SessionId) -> Result<Option<Seq>> {
        let ctx = || format!("finding the open run of session {session}");
        let last = self.read_with(|client| {
            let Some(row) = client
                .query_opt(
                    "SELECT seq, kind FROM entries WHERE session_id = $1 \
                     AND kind IN ('user_input', 'run_completed', 'run_errored') \
                     ORDER BY seq DESC LIMIT 1",
                    &[&session.as_str()],
                )
                .context(ctx)?
            else {
                return Ok(None);
            };
            let seq: i64 = row.try_get(0).context(ctx)?;
            let kind: String = row.try_get(1).context(ctx)?;
            Ok(Some((seq, kind)))
        })?;
        Ok(match last {
            Some((seq, kind)) if kind == "user_input" => u64::try_from(seq).ok().map(Seq),
            _ => None,
        })
    }

    /// The payload named `hash`, or `None` if the store holds none. The text
    /// is checked against its hash: a payload changed behind podlog's back
    /// is [`crate::StoreError::CorruptPayload`].
    pub fn payload(&self, hash: &PayloadHash) -> Result<Option<Payload>> {
        let text: Option<String> = self.read_with(|client| {
            let ctx = || format!("reading payload {hash}");
            client
                .query_opt(
                    "SELECT text FROM payloads WHERE hash = $1",
                    &[&hash.as_str()],
                )
                .context(ctx)?
                .map(|row| row.try_get(0))
                .transpose()
                .context(ctx)
        })?;
        let Some(text) = text else { return Ok(None) };
        let found = crate::payloads::hash(&text);
        if &found != hash {
            return Err(crate::StoreError::CorruptPayload {
                hash: hash.clone(),
                problem: format!("its text hashes to {found}"),
            });
        }
        Ok(Some(Payload {
            hash: hash.clone(),
            text,
        }))
    }

    /// How many payloads the database holds, and their bytes in all.
    pub fn payload_totals(&self) -> Result<(u64, u64)> {
        self.read_with(|client| {
            let ctx = || "counting payloads".to_owned();
            let row = client
                .query_one(
                    "SELECT count(*), coalesce(sum(size), 0)::bigint FROM payloads",
                    &[],
                )
                .context(ctx)?;
            let count: i64 = row.try_get(0).context(ctx)?;
            let bytes: i64 = row.try_get(1).context(ctx)?;
            Ok((count.unsigned_abs(), bytes.unsigned_abs()))
        })
    }

    /// Every entry of `session`, in seq order, whole (payloads put back).
    /// Fails on the first row that does not decode, on any gap in seq and on
    /// a missing payload, naming the session and seq; with
    /// [`crate::StoreError::UnknownSession`] when there is no such session.
    pub fn entries(&self, session: &SessionId) -> Result<Vec<Committed>> {
        let entries = self.entries_after(session, Seq::ZERO, usize::MAX)?;
        if entries.is_empty() {
            self.session(session)?;
        }
        Ok(entries)
    }

    /// Up to `limit` entries of `session` with seq greater than `after`, in
    /// seq order, whole, each checked as the module docs say.
    pub fn entries_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        self.read_after(session, after, limit, Form::Full)
    }

    /// [`PgStore::entries_after`] in the form the mirror and the wire carry:
    /// large strings as previews, with their payload references.
    pub fn previews_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        self.read_after(session, after, limit, Form::Preview)
    }

    /// Up to `limit` entries of `session` just below seq `before`, in seq
    /// order (the page that ends at `before - 1`), whole and checked like
    /// [`PgStore::entries_after`]. Empty when `before` is 1 or less.
    pub fn entries_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        let (after, upto, limit) = page_before(before, limit);
        self.read_range(session, after, Some(upto), limit, Form::Full)
    }

    /// [`PgStore::entries_before`] in the form of [`PgStore::previews_after`].
    pub fn previews_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        let (after, upto, limit) = page_before(before, limit);
        self.read_range(session, after, Some(upto), limit, Form::Preview)
    }

    fn read_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
        form: Form,
    ) -> Result<Vec<Committed>> {
        self.read_range(session, after, None, limit, form)
    }

    /// Up to `limit` rows of `session` with `after < seq <= upto`.
    fn read_range(
        &self,
        session: &SessionId,
        after: Seq,
        upto: Option<Seq>,
        limit: usize,
        form: Form,
    ) -> Result<Vec<Committed>> {
        let ctx = || format!("reading the entries of session {session}");
        // Seqs are bigint: an `after` beyond them has nothing after it.
        let Ok(low) = i64::try_from(after.get()) else {
            return Ok(Vec::new());
        };
        let high = upto.map_or(i64::MAX, |s| i64::try_from(s.get()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).ok();
        let (rows, texts) = self.read_with(|client| {
            let rows = client
                .query(
                    "SELECT seq, body::text, payloads::text FROM entries \
                     WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                    &[&session.as_str(), &low, &high, &limit],
                )
                .context(ctx)?;
            let rows = rows
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
            let texts = match form {
                Form::Preview => HashMap::new(),
                Form::Full => payload_texts(client, &rows).context(ctx)?,
            };
            Ok((rows, texts))
        })?;
        let mut want = after.next();
        rows.into_iter()
            .map(|row| {
                check_row(&mut want, row, form, &texts)
                    .map_err(|e| e.into_store_error(session.as_str()))
            })
            .collect()
    }
}

/// The page of at most `limit` (at least 1) seqs that ends at `before - 1`:
/// the seq before it, its last seq and its length. Empty for `before` 1 or
/// less.
fn page_before(before: Seq, limit: usize) -> (Seq, Seq, usize) {
    let upto = before.get().saturating_sub(1);
    if upto == 0 {
        return (Seq::ZERO, Seq::ZERO, 0);
    }
    let limit = limit.max(1);
    let first = upto
        .saturating_sub(u64::try_from(limit).unwrap_or(u64::MAX) - 1)
        .max(1);
    (Seq(first - 1), Seq(upto), limit)
}

/// The texts of the payloads the lean rows among `rows` reference, by
/// hash. A reference that does not parse is left for [`check_row`] to
/// report; a payload that is not stored is simply absent.
pub(crate) fn payload_texts(
    client: &mut impl postgres::GenericClient,
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

/// Checks one row against the seq it should have (`want`, moved past it)
/// and decodes it in `form`, with the SQLite reader's rules and errors.
pub(crate) fn check_row(
    want: &mut Seq,
    row: RawRow,
    form: Form,
    texts: &HashMap<String, String>,
) -> std::result::Result<Committed, RowError> {
    let Some(seq) = u64::try_from(row.seq).ok().filter(|s| *s >= 1).map(Seq) else {
        return Err(RowError::SeqBelowOne(row.seq));
    };
    if seq > *want {
        return Err(RowError::Missing {
            first: *want,
            last: Seq(seq.get() - 1),
        });
    }
    *want = seq.next();
    let entry =
        LogEntry::from_json(&row.body).map_err(|error| RowError::Undecodable { seq, error })?;
    if entry.is_session_start() != (seq == Seq::FIRST) {
        return Err(if seq == Seq::FIRST {
            RowError::NoSessionStart {
                kind: entry.kind().to_owned(),
            }
        } else {
            RowError::LateSessionStart { seq }
        });
    }
    let bad = |reason: String| RowError::BadPayloadRefs { seq, reason };
    let refs: Vec<PayloadRef> = match row.payloads.as_deref() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| bad(e.to_string()))?,
    };
    if refs.is_empty() {
        return Ok(Committed::new(seq, entry));
    }
    if form == Form::Preview {
        return Ok(Committed::with_payloads(seq, entry, refs));
    }
    let mut value: serde_json::Value =
        serde_json::from_str(&row.body).map_err(|e| bad(e.to_string()))?;
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
    let entry = LogEntry::from_json(&value.to_string())
        .map_err(|error| RowError::Undecodable { seq, error })?;
    Ok(Committed::new(seq, entry))
}
