//! The SQLite store behind podlog: one file holding every session and its
//! entries, with commit-then-publish appends.
//!
//! # Contract
//!
//! * **Disk is the gate.** [`SqliteSessionWriter::append`] inserts the entry at its
//!   seq and updates the session's counters in one `BEGIN IMMEDIATE`
//!   transaction. Only after `COMMIT` returned Ok does it publish the entry to
//!   the session's [`SessionLogSink`]; a failed write returns the error and
//!   publishes nothing. The write connection stays locked until the publish
//!   is done, so entries reach the sink in seq order.
//! * **Sequence numbers, not clocks.** `seq` is `last_seq + 1` of the session
//!   row, which only the session's [`SqliteSessionWriter`] (holding its
//!   cross-process lock) moves, inside the write transaction: gap-free,
//!   starting at 1 with the session's `SessionStart`.
//! * **Nothing silently dropped.** Reads decode every row; a row that does not
//!   decode, or a gap in seq, is an error naming its session and seq. A
//!   session row with an unknown origin is an error naming the session, never
//!   read as another origin.
//! * **Versioned schema.** Opening runs the embedded migrations (see
//!   [`schema`]) and refuses a database from a newer podlog.
//! * **Files are private.** The database is created with mode 0600 (and SQLite
//!   gives its `-wal` and `-shm` files the same mode).
//! * **Secrets never reach a row.** With redaction on (the default, a
//!   setting in the database), every entry and title is redacted before it
//!   is rendered, in every write path; see [`redaction`].
//!
//! One write connection serves every session of the store; reads run on
//! their own connections, which WAL lets proceed while a write is under way.

pub mod commit;
pub mod error;
pub mod jsonl;
pub mod lifecycle;
pub mod lock;
pub mod payloads;
pub mod pg;
pub mod redaction;
pub mod retention;
mod rows;
pub mod schema;
pub mod search;
pub mod shares;
pub mod store;
pub mod verify;
pub mod watch;
pub mod writer;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use podlog_entry::{
    Clock, Committed, EntryRef, LogEntry, Message, RequestConfig, Seq, SessionId, SystemClock,
};
use podlog_sink::SessionLogSink;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use error::Context;
pub use error::StoreError;
pub use jsonl::Transfer;
pub use lock::{LockHolder, LockWatch};
use payloads::insert_rendered;
pub use payloads::Payload;
pub use podlog_redact as redact;
pub use retention::{
    AutoVacuum, Kept, KeptBecause, Removed, RetentionOptions, RetentionReport, Selection,
    SpaceUsage,
};
use rows::{read_rows, Form, Span};
pub use schema::SCHEMA_VERSION;
pub use search::{SearchHit, SearchPage, SearchQuery};
pub use shares::{ShareCheck, ShareInfo, ShareState, ShareToken};
pub use store::{Backend, ChangeWatch, Location, SessionLock, SessionWriter, Store};
pub use verify::Problem;
pub use writer::{AppendReport, SqliteSessionWriter};

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard a commit waits for the disk.
///
/// * `Full` (the default): a committed entry survives power loss. Every
///   commit waits for the WAL to reach the disk.
/// * `Normal`: a committed entry survives a crash of the process, but the last
///   commits before a power loss or kernel crash may be lost. Much faster on
///   disks with slow flushes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

/// Where new session ids come from.
pub trait IdSource: Send + Sync {
    /// A fresh id, never returned before.
    fn next_id(&self) -> SessionId;
}

/// Time-ordered random ids (UUID version 7): they sort by creation time and
/// never collide across processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdSource for UuidV7Ids {
    fn next_id(&self) -> SessionId {
        SessionId::new(uuid::Uuid::now_v7().to_string()).expect("a UUID is a valid session id")
    }
}

/// `prefix-0001`, `prefix-0002`, ...: deterministic ids for tests and
/// fixtures.
#[derive(Debug)]
pub struct SequentialIds {
    prefix: String,
    next: AtomicU64,
}

impl SequentialIds {
    /// Ids `{prefix}-0001` and on.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: AtomicU64::new(1),
        }
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self) -> SessionId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        SessionId::new(format!("{}-{n:04}", self.prefix))
            .unwrap_or_else(|_| SessionId::new(format!("s-{n:04}")).expect("valid id"))
    }
}

/// How to open a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// See [`Synchronous`]; `Full` by default.
    pub synchronous: Synchronous,
    /// How long a connection waits for another's lock before failing with
    /// "database is locked". Never zero; 5 s by default.
    pub busy_timeout: Duration,
    /// Timestamps for rows and the entries the store writes itself.
    pub clock: Arc<dyn Clock>,
    /// Ids for new sessions.
    pub ids: Arc<dyn IdSource>,
    /// Told how far a long migration has come: (done, total), for example
    /// entries indexed for search when upgrading to schema 5. Called on the
    /// opening thread, inside the migration's transaction.
    pub progress: Option<Progress>,
}

/// A progress callback: (done, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            progress: None,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

/// podlog's default database: `podlog.db` in the platform's data folder
/// (`$XDG_DATA_HOME/podlog`, by default `~/.local/share/podlog`), whose
/// `podlog` folder is created 0700 if it is missing. The one place the
/// `podlog` program and the benchmark program find it.
pub fn default_path() -> Result<PathBuf> {
    let Some(data) = dirs::data_dir() else {
        return Err(StoreError::Open {
            path: PathBuf::from("podlog.db"),
            reason: "cannot find a data folder: set HOME or XDG_DATA_HOME".to_owned(),
        });
    };
    let dir = data.join("podlog");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| StoreError::Open {
            path: dir.clone(),
            reason: format!("cannot create the folder: {e}"),
        })?;
    Ok(dir.join("podlog.db"))
}

/// How a session came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Started afresh.
    New,
    /// Branched from a prefix of its parent.
    Fork,
    /// Continues its parent from a summary.
    Compaction,
}

impl Origin {
    /// The text stored in `sessions.origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::New => "new",
            Origin::Fork => "fork",
            Origin::Compaction => "compaction",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "new" => Some(Origin::New),
            "fork" => Some(Origin::Fork),
            "compaction" => Some(Origin::Compaction),
            _ => None,
        }
    }
}

/// A session row: where it comes from and its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub origin: Origin,
    /// The parent session and its seq at the cut (fork and compaction).
    pub parent: Option<EntryRef>,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_seq: Seq,
    pub entry_count: u64,
    pub title: Option<String>,
    /// Secrets replaced in the session's entries (see [`redaction`]).
    pub redactions: u64,
    /// Bytes of the session's rows: each entry's body plus the sizes of the
    /// payloads it references (see `migrations/0005_redaction.sql`).
    pub stored_bytes: u64,
}

/// What a new session starts with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewSession {
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub config: RequestConfig,
    pub history: Vec<Message>,
}

/// A podlog database. Share it between threads behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    options: StoreOptions,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    group: commit::Group,
    /// The redactor in force; `None` when redaction is switched off.
    redactor: Mutex<Option<Arc<podlog_redact::Redactor>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

pub(crate) const SESSION_COLUMNS: &str =
    "id, origin, parent_id, parent_seq, created_at, updated_at, last_seq, entry_count, title, \
     redactions, stored_bytes";

/// Reads a session row selected with [`SESSION_COLUMNS`]. The outer `Err` is
/// SQLite failing to read the row; the inner one is a row that reads but
/// breaks an invariant the store relies on: an origin other than `new`,
/// `fork` or `compaction` (the schema's CHECK refuses one, but the `sqlite3`
/// shell can switch CHECKs off) is [`StoreError::CorruptSession`] naming the
/// session and the origin text, never taken for another origin.
pub(crate) fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SessionInfo>> {
    let id: String = row.get(0)?;
    let origin: String = row.get(1)?;
    let parent_id: Option<String> = row.get(2)?;
    let parent_seq: Option<u64> = row.get(3)?;
    let Some(origin) = Origin::parse(&origin) else {
        return Ok(Err(StoreError::CorruptSession {
            session: stored_id(&id),
            problem: format!("unknown origin {origin:?}"),
        }));
    };
    let info = SessionInfo {
        id: stored_id(&id),
        origin,
        parent: match (parent_id, parent_seq) {
            (Some(p), Some(s)) => Some(EntryRef {
                session_id: stored_id(&p),
                seq: Seq(s),
            }),
            _ => None,
        },
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        last_seq: Seq(row.get(6)?),
        entry_count: row.get(7)?,
        title: row.get(8)?,
        redactions: row.get(9)?,
        stored_bytes: row.get(10)?,
    };
    Ok(Ok(info))
}

/// The [`SessionId`] of an id as stored. Ids came through `SessionId::new`
/// on the way in; a row edited by hand to an invalid id still reads, as
/// [`lenient_id`] of its text.
pub(crate) fn stored_id(text: &str) -> SessionId {
    SessionId::new(text).unwrap_or_else(|_| lenient_id(text))
}

/// An id for a row whose text is not a valid [`SessionId`]: the text with
/// white space and control characters escaped, so it still prints.
fn lenient_id(text: &str) -> SessionId {
    let escaped: String = text
        .escape_default()
        .collect::<String>()
        .replace(' ', "\\x20");
    SessionId::new(if escaped.is_empty() {
        "\\0".to_owned()
    } else {
        escaped
    })
    .unwrap_or_else(|_| SessionId::new("invalid-id").expect("valid id"))
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Close the read connections first, so that the write connection is
        // the last one: closing it checkpoints the WAL and removes the
        // `-wal` and `-shm` files, leaving one plain database file behind.
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl SqliteStore {
    /// Opens (or creates, mode 0600) the database at `path`, applies the
    /// settings of `options`, and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if options.busy_timeout.is_zero() {
            return Err(StoreError::Open {
                path,
                reason: "busy timeout must not be zero".to_owned(),
            });
        }
        let mut writer = schema::connect(&path, &options, true)?;
        schema::migrate(&mut writer, &path, options.progress.as_ref())?;
        let on =
            redaction::enabled(&writer).context(|| "reading the redaction setting".to_owned())?;
        let redactor = if on {
            Some(Arc::new(redaction::build(&path)?))
        } else {
            None
        };
        Ok(Self {
            path,
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            group: commit::Group::default(),
            redactor: Mutex::new(redactor),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Milliseconds from the store's clock.
    pub fn now(&self) -> u64 {
        self.options.clock.now_millis()
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while the connection was held leaves at worst an open
        // transaction, which rusqlite's `Transaction` rolled back on unwind.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a read connection from the pool (opening one if none is
    /// free). Reads see the last committed state and never block the writer.
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::connect(&self.path, &self.options, false)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    /// Creates a session and writes its `SessionStart` as seq 1, in one
    /// transaction. Returns the new id and the committed `SessionStart`, for
    /// seeding the session's sink.
    pub fn create_session(&self, new: NewSession) -> Result<(SessionId, Committed)> {
        let id = self.options.ids.next_id();
        let now = self.now();
        let start = LogEntry::SessionStart {
            ts: now,
            system_prompt: new.system_prompt,
            config: new.config,
            history: new.history,
            forked_from: None,
            compacted_from: None,
        };
        let prepared = self.prepare(start).map_err(|reason| StoreError::Rejected {
            session: id.clone(),
            kind: "session_start".to_owned(),
            reason,
        })?;
        let (title, title_redactions) =
            redaction::redact_title(self.redactor().as_deref(), new.title);
        let mut conn = self.writer();
        let ctx = || format!("creating session {id}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(ctx)?;
        tx.execute(
            "INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, entry_count, title, \
             redactions, stored_bytes) VALUES (?1, 'new', ?2, ?2, 1, 1, ?3, ?4, ?5)",
            params![
                id.as_str(),
                now,
                title,
                prepared.redactions.total() + title_redactions,
                prepared.rendered.stored_bytes()
            ],
        )
        .context(ctx)?;
        let (start, rendered) = (&prepared.entry, &prepared.rendered);
        insert_rendered(&tx, &id, Seq::FIRST, start, rendered).context(ctx)?;
        tx.commit().context(ctx)?;
        Ok((id, rendered.committed(Seq::FIRST, start)))
    }

    /// The session row `id`. Fails with [`StoreError::UnknownSession`] if
    /// there is none, and with [`StoreError::CorruptSession`] if it names an
    /// unknown origin.
    pub fn session(&self, id: &SessionId) -> Result<SessionInfo> {
        self.with_reader(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id.as_str()], session_from_row).optional())
            .context(|| format!("reading session {id}"))?
            .ok_or_else(|| StoreError::UnknownSession(id.to_string()))?
        })
    }

    /// Every session, newest first, from the session rows' counters (no
    /// entry is read).
    ///
    /// One row that reads but is corrupt (an unknown origin, written behind
    /// podlog's back) does not take the listing down: it is listed, in its
    /// place, as the [`StoreError::CorruptSession`] that a read of that
    /// session fails with, so a caller shows it or refuses it (collecting
    /// into a `Result<Vec<_>>` does the latter) but cannot miss it. The
    /// outer `Err` is the listing itself failing.
    pub fn sessions(&self) -> Result<Vec<Result<SessionInfo>>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY created_at DESC, id DESC"
                ))
                .context(|| "listing sessions".to_owned())?;
            let rows = stmt
                .query_map([], session_from_row)
                .context(|| "listing sessions".to_owned())?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context(|| "listing sessions".to_owned())
        })
    }

    /// The one session whose id is `text` or starts with it.
    pub fn resolve(&self, text: &str) -> Result<SessionId> {
        self.with_reader(|conn| {
            let ctx = || format!("looking up session {text:?}");
            let exact: Option<String> = conn
                .query_row("SELECT id FROM sessions WHERE id = ?1", [text], |r| {
                    r.get(0)
                })
                .optional()
                .context(ctx)?;
            if let Some(id) = exact {
                return Ok(SessionId::new(id).unwrap_or_else(|e| lenient_id(&e.0)));
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM sessions WHERE substr(id, 1, length(?1)) = ?1 \
                     ORDER BY id LIMIT 6",
                )
                .context(ctx)?;
            let ids = stmt
                .query_map([text], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context(ctx)?;
            match ids.as_slice() {
                [] => Err(StoreError::UnknownSession(text.to_owned())),
                [one] => Ok(SessionId::new(one.clone()).unwrap_or_else(|_| lenient_id(one))),
                many => Err(StoreError::AmbiguousSession {
                    prefix: text.to_owned(),
                    matches: many.join(", "),
                }),
            }
        })
    }

    /// Every entry of `session`, in seq order, whole (payloads put back).
    /// Fails on the first row that does not decode, on any gap in seq and on
    /// a missing payload, naming the session and seq.
    pub fn entries(&self, session: &SessionId) -> Result<Vec<Committed>> {
        let entries = self.entries_after(session, Seq::ZERO, usize::MAX)?;
        if entries.is_empty() {
            // Distinguish "no such session" from an empty one.
            self.session(session)?;
        }
        Ok(entries)
    }

    /// Up to `limit` entries of `session` with seq greater than `after`, in
    /// seq order, whole, each checked and decoded by the one reader of entry
    /// rows (`rows.rs`): a gap, a body that does not decode, a misplaced
    /// `SessionStart` or a missing payload fails the read with an error
    /// naming session and seq.
    pub fn entries_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        self.read_span(session, Span::after(after, limit), Form::Full)
    }

    /// [`SqliteStore::entries_after`] in the form the mirror and the wire carry:
    /// large strings as previews, with their payload references. Reads no
    /// payload, so its cost does not grow with the payloads' size.
    pub fn previews_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        self.read_span(session, Span::after(after, limit), Form::Preview)
    }

    /// [`SqliteStore::entries_before`] in the form of [`SqliteStore::previews_after`].
    pub fn previews_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        if before.get() <= 1 {
            return Ok(Vec::new());
        }
        self.read_span(session, Span::before(before, limit), Form::Preview)
    }

    fn read_span(&self, session: &SessionId, span: Span, form: Form) -> Result<Vec<Committed>> {
        self.with_reader(|conn| {
            read_rows(conn, session.as_str(), span, form, |rows| {
                let mut out = Vec::new();
                while let Some(row) = rows.next_checked()? {
                    out.push(Committed::with_payloads(row.seq, row.entry, row.payloads));
                }
                Ok(out)
            })
        })
    }

    /// Up to `limit` entries of `session` just below seq `before`, in seq
    /// order (the page that ends at `before - 1`), checked and decoded like
    /// [`SqliteStore::entries_after`]: how a client that holds the tail of a
    /// session pages back. Empty when `before` is 1 or less.
    pub fn entries_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        if before.get() <= 1 {
            return Ok(Vec::new());
        }
        self.read_span(session, Span::before(before, limit), Form::Full)
    }

    /// The seq of the `UserInput` of the run `session` leaves open (no
    /// `RunCompleted` or `RunErrored` after it), from the `kind` column: a
    /// backward scan that stops at the last run marker, however long the
    /// session.
    pub fn open_run(&self, session: &SessionId) -> Result<Option<Seq>> {
        self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT seq, kind FROM entries WHERE session_id = ?1 \
                 AND kind IN ('user_input', 'run_completed', 'run_errored') \
                 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([session.as_str()], |r| {
                    Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
            })
            .context(|| format!("finding the open run of session {session}"))
        })
        .map(|last| match last {
            Some((seq, kind)) if kind == "user_input" => Some(Seq(seq)),
            _ => None,
        })
    }

    /// Loads `session` into a fresh sink, for restoring a pod before any
    /// subscriber exists.
    pub fn load_sink(&self, session: &SessionId) -> Result<SessionLogSink> {
        let entries = self.previews_after(session, Seq::ZERO, usize::MAX)?;
        if entries.is_empty() {
            self.session(session)?;
        }
        let last = entries.last().map_or(Seq::ZERO, |c| c.seq);
        SessionLogSink::with_initial(entries).map_err(|source| StoreError::Publish {
            session: session.clone(),
            seq: last,
            source,
        })
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: folds the WAL into the main
    /// file, for a clean shutdown or before copying the file.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.writer();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context(|| format!("checkpointing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests;
