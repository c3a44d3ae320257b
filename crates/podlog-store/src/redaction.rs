//! Write-time redaction in the store: the switch, the key, the user
//! patterns, and the one step every write path takes before it renders an
//! entry.
//!
//! # Contract
//!
//! * **Before the row.** Every path that writes an entry (an append in the
//!   caller's thread before it queues, a new session's, a compaction's and a
//!   fork's `SessionStart`, each imported line) redacts every JSON string
//!   value of the entry with [`podlog_redact::Redactor`] before it is
//!   rendered: the redacted entry is what is written (payloads included:
//!   they are strings of the entry before the split), published to the
//!   mirror, and sent to clients. Nothing of the secret reaches a row, the
//!   WAL, the mirror or an event.
//! * **The switch** is the `redaction` row of `settings` (`on` when absent),
//!   read when the store opens and changed with [`SqliteStore::set_redaction`]
//!   (`podlog redaction on|off`), which also applies to the store that
//!   changes it at once. Another process that has the database open keeps
//!   its setting until it opens it again.
//! * **The key** is 32 random bytes, as 64 hex digits, in
//!   `<database>.redaction-key` (mode 0600), created on first use. It is
//!   kept out of the database so that a copy of the database alone cannot
//!   be used to confirm a guessed secret against its marker; losing it only
//!   means new markers no longer match old ones.
//! * **User patterns** are read from `<database>.redact.toml` when it
//!   exists (see [`podlog_redact::parse_config`]); a file that does not
//!   parse or a pattern that does not compile fails the open with an error
//!   naming the file and the pattern.
//! * **Counts.** Each entry's redactions go to `sessions.redactions` in the
//!   transaction that writes it, with its size to `sessions.stored_bytes`
//!   (see `migrations/0005_redaction.sql`).
//! * **Titles** (kept in the session row, not in an entry) are redacted
//!   and counted too, when a session is created or imported.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use podlog_entry::LogEntry;
use podlog_redact::{Redactions, Redactor, KEY_BYTES};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Context;
use crate::payloads::{render_json, Rendered};
use crate::{Result, SqliteStore, StoreError};

/// The `settings` row of the switch.
pub(crate) const SETTING: &str = "redaction";

/// An entry ready for its row: redacted, rendered, and what was replaced.
pub(crate) struct Prepared {
    /// The entry as written: redacted when something was replaced.
    pub entry: LogEntry,
    pub rendered: Rendered,
    pub redactions: Redactions,
}

impl Rendered {
    /// What the row adds to `sessions.stored_bytes`: the body's length plus
    /// the size of every payload it references.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.body.len() as u64 + self.refs.iter().map(|r| r.size).sum::<u64>()
    }
}

/// The key file of the database at `db`.
pub fn key_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".redaction-key");
    PathBuf::from(name)
}

/// The user pattern file of the database at `db`.
pub fn config_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".redact.toml");
    PathBuf::from(name)
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: format!("redaction key: {reason}"),
    }
}

/// Reads the key at `path`, creating it (0600, 32 random bytes) if missing.
/// A new key is written to a private temporary file and linked into place,
/// so a process racing to create it reads either no file or a whole one.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES]> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_key(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(key_error(path, e)),
    }
    let key: [u8; KEY_BYTES] = crate::shares::random_bytes()?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(hex.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(key_error(&tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
            parse_key(path, &text)
        }
        Err(e) => Err(key_error(path, e)),
    }
}

fn parse_key(path: &Path, text: &str) -> Result<[u8; KEY_BYTES]> {
    let text = text.trim();
    let bad = || key_error(path, "the file must hold 64 hexadecimal digits");
    if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// Whether the switch of the database on `conn` is on.
pub(crate) fn enabled(conn: &Connection) -> rusqlite::Result<bool> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE name = ?1",
            [SETTING],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.as_deref() != Some("off"))
}

/// The redactor of the database at `db`: its key and user patterns.
pub(crate) fn build(db: &Path) -> Result<Redactor> {
    let key = load_or_create_key(&key_path(db))?;
    let config = config_path(db);
    let patterns = if config.exists() {
        podlog_redact::load_config(&config).map_err(|e| StoreError::Open {
            path: config.clone(),
            reason: e.to_string(),
        })?
    } else {
        Vec::new()
    };
    Redactor::with_patterns(key, &patterns).map_err(|e| StoreError::Open {
        path: config,
        reason: e.to_string(),
    })
}

/// A session's `title` with its secrets replaced, and how many were: a
/// title is stored in the session row, not in an entry, but is shown as
/// widely.
pub(crate) fn redact_title(
    redactor: Option<&Redactor>,
    title: Option<String>,
) -> (Option<String>, u64) {
    let (Some(redactor), Some(text)) = (redactor, title.as_deref()) else {
        return (title, 0);
    };
    let mut found = Redactions::default();
    match redactor.redact(text, &mut found) {
        Some(redacted) => (Some(redacted), found.total()),
        None => (title, 0),
    }
}

impl SqliteStore {
    /// The redactor in force, `None` when redaction is switched off.
    pub fn redactor(&self) -> Option<Arc<Redactor>> {
        self.redactor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether redaction is on for this store.
    pub fn redaction_enabled(&self) -> bool {
        self.redactor().is_some()
    }

    /// Switches redaction on or off for the database (the `settings` row),
    /// and for this store at once. Switching on creates the key if needed.
    pub fn set_redaction(&self, on: bool) -> Result<()> {
        let redactor = if on {
            Some(Arc::new(build(&self.path)?))
        } else {
            None
        };
        let conn = self.writer();
        conn.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![SETTING, if on { "on" } else { "off" }],
        )
        .context(|| "changing the redaction setting".to_owned())?;
        *self.redactor.lock().unwrap_or_else(PoisonError::into_inner) = redactor;
        Ok(())
    }

    /// Redacts `entry` (when redaction is on) and renders it for its row.
    /// Fails only if the redacted JSON no longer decodes as an entry (a
    /// secret in a field that must hold one of a few words), with the reason;
    /// the entry is then not written at all rather than written verbatim.
    pub(crate) fn prepare(&self, entry: LogEntry) -> std::result::Result<Prepared, String> {
        prepare(self.redactor().as_deref(), entry)
    }
}

/// [`SqliteStore::prepare`] with the redactor given: the one step every backend's
/// write path takes (redact, then render), so the PostgreSQL store writes
/// the same rows as the SQLite one.
pub(crate) fn prepare(
    redactor: Option<&Redactor>,
    entry: LogEntry,
) -> std::result::Result<Prepared, String> {
    let body = entry.to_json();
    let redacted = redactor.and_then(|r| r.redact_json(&body));
    let Some((body, redactions)) = redacted else {
        return Ok(Prepared {
            entry,
            rendered: render_json(body),
            redactions: Redactions::default(),
        });
    };
    let entry = LogEntry::from_json(&body)
        .map_err(|e| format!("after redacting {redactions}, the entry no longer decodes: {e}"))?;
    Ok(Prepared {
        entry,
        rendered: render_json(body),
        redactions,
    })
}

#[cfg(test)]
#[path = "redaction_tests.rs"]
mod tests;
