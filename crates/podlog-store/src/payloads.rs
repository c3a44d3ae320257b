//! Large strings out of line: how an entry is rendered for its row, and
//! how payloads are written and read.
//!
//! # Contract
//!
//! * An entry whose JSON holds strings of [`THRESHOLD`] bytes or more is
//!   stored lean (see [`podlog_entry::payload`]): the body keeps a preview of
//!   each, `entries.payloads` lists the references, and each whole string is
//!   a row of `payloads`, keyed by the BLAKE3 hash of its text.
//! * A payload is written (`INSERT OR IGNORE`: identical strings are stored
//!   once) in the same transaction as the entry that references it, before
//!   the entry row: no committed entry ever names a payload that is not on
//!   disk.
//! * Payload rows are never updated or deleted by an append: a hash names one
//!   text forever, which is what lets `GET /blobs/{hash}` be cached for good.

use podlog_entry::payload::{split, PREVIEW_BYTES, THRESHOLD};
use podlog_entry::{Committed, LogEntry, PayloadHash, PayloadRef, Seq, SessionId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Context;
use crate::{Result, SqliteStore};

/// An entry as its row stores it: the body, and the payloads cut out of it.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    /// `entries.body`: the entry's JSON, lean when `refs` is not empty.
    pub body: String,
    /// Where strings were cut, in document order.
    pub refs: Vec<PayloadRef>,
    /// The whole strings, one per reference.
    pub texts: Vec<String>,
    /// The lean entry, when strings were cut.
    pub lean: Option<LogEntry>,
}

/// The BLAKE3 hash of `text`.
pub fn hash(text: &str) -> PayloadHash {
    PayloadHash::new(blake3::hash(text.as_bytes()).to_hex().to_string())
        .expect("BLAKE3 hex is 64 lowercase hexadecimal digits")
}

/// Renders the entry whose JSON is `body` for its row (after redaction, see
/// [`crate::redaction`]). A body below [`THRESHOLD`] as a whole cannot hold
/// a string that long and is stored as it is; a body with no string to cut is stored as it is, byte for byte; a lean body keeps the
/// order of its members, so putting the payloads back gives `body` again
/// (for compact JSON, as podlog writes and exports it).
pub(crate) fn render_json(body: String) -> Rendered {
    if body.len() < THRESHOLD {
        return whole(body);
    }
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&body) else {
        return whole(body);
    };
    let cuts = split(&mut value, THRESHOLD, PREVIEW_BYTES);
    if cuts.is_empty() {
        return whole(body);
    }
    let lean_body = value.to_string();
    // A lean entry is an entry of the same kind with shorter strings; one
    // that would not decode (it cannot happen for the kinds podlog knows)
    // is stored whole rather than lost.
    let Ok(lean) = LogEntry::from_json(&lean_body) else {
        return whole(body);
    };
    let mut refs = Vec::with_capacity(cuts.len());
    let mut texts = Vec::with_capacity(cuts.len());
    for cut in cuts {
        refs.push(PayloadRef {
            path: cut.path,
            hash: hash(&cut.text),
            size: cut.text.len() as u64,
        });
        texts.push(cut.text);
    }
    Rendered {
        body: lean_body,
        refs,
        texts,
        lean: Some(lean),
    }
}

fn whole(body: String) -> Rendered {
    Rendered {
        body,
        refs: Vec::new(),
        texts: Vec::new(),
        lean: None,
    }
}

impl Rendered {
    /// `entries.payloads`: the references as JSON, NULL for a whole body.
    pub(crate) fn refs_json(&self) -> Option<String> {
        (!self.refs.is_empty())
            .then(|| serde_json::to_string(&self.refs).expect("references serialise"))
    }

    /// What the mirror and the wire carry for this entry: the lean entry
    /// and its references, or `entry` itself when nothing was cut.
    pub(crate) fn committed(&self, seq: Seq, entry: &LogEntry) -> Committed {
        match &self.lean {
            Some(lean) => Committed::with_payloads(seq, lean.clone(), self.refs.clone()),
            None => Committed::new(seq, entry.clone()),
        }
    }
}

/// Writes the payloads of `rendered`, then its entry row. The caller holds
/// a write transaction.
pub(crate) fn insert_rendered(
    conn: &Connection,
    session: &SessionId,
    seq: Seq,
    entry: &LogEntry,
    rendered: &Rendered,
) -> rusqlite::Result<()> {
    for (r, text) in rendered.refs.iter().zip(&rendered.texts) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO payloads (hash, size, text) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![r.hash.as_str(), r.size, text])?;
    }
    conn.prepare_cached(
        "INSERT INTO entries (session_id, seq, ts, kind, body, payloads) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        session.as_str(),
        seq.get(),
        entry.ts(),
        entry.kind(),
        rendered.body,
        rendered.refs_json()
    ])?;
    Ok(())
}

/// The text of payload `hash` on `conn`, if there is one.
pub(crate) fn payload_text(conn: &Connection, hash: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT text FROM payloads WHERE hash = ?1")?
        .query_row([hash], |r| r.get(0))
        .optional()
}

/// A stored payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub hash: PayloadHash,
    /// The whole text.
    pub text: String,
}

impl SqliteStore {
    /// The payload named `hash`, or `None` if the database holds none. The
    /// text is checked against its hash: a payload changed behind podlog's
    /// back is [`crate::StoreError::CorruptPayload`], never served as if it
    /// were the one its hash names.
    pub fn payload(&self, hash: &PayloadHash) -> Result<Option<Payload>> {
        let text = self.with_reader(|conn| {
            payload_text(conn, hash.as_str()).context(|| format!("reading payload {hash}"))
        })?;
        let Some(text) = text else { return Ok(None) };
        let found = self::hash(&text);
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

    /// How many payloads the database holds, and their total size in bytes.
    pub fn payload_totals(&self) -> Result<(u64, u64)> {
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM payloads",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context(|| "counting payloads".to_owned())
        })
    }
}

#[cfg(test)]
#[path = "payloads_tests.rs"]
pub(crate) mod tests;
