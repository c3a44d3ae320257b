//! The store boundary: [`Store`], [`SessionWriter`], [`ChangeWatch`] and
//! [`SessionLock`], the types the pod, the server and the CLI hold, over
//! either backend.
//!
//! # Contract
//!
//! * **One API, two backends.** A [`Store`] is a SQLite file
//!   ([`SqliteStore`], the embedded default) or a PostgreSQL database
//!   ([`PgStore`]), chosen by [`Location::parse`]: a `postgres://` or
//!   `postgresql://` URL means PostgreSQL, anything else a path. Every
//!   method keeps the backend's contract, which is the same on both: commit
//!   then publish, gap-free seqs, one writer per session across processes,
//!   history never rewritten, a newer schema refused before anything is
//!   written.
//! * **What only one backend does.** Operations that exist for one
//!   backend's storage only (SQLite's checkpoint, VACUUM and space
//!   accounting), and those not yet ported to PostgreSQL, fail on the other
//!   with [`StoreError::Unsupported`] naming the operation and the
//!   backend; nothing is written.
//! * **Blocking.** Every method blocks on the database. On PostgreSQL a
//!   connection also owns a small runtime of its own, so a [`Store`], a
//!   [`SessionWriter`] or a [`ChangeWatch`] must be used and dropped off
//!   the async workers (`spawn_blocking`), as the SQLite store already
//!   must be used.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{Committed, LogEntry, Message, PayloadHash, Seq, SessionId};
use podlog_redact::Redactor;
use podlog_sink::SessionLogSink;

use crate::pg::{PgListener, PgSessionWriter, PgStore};
use crate::{
    lock, watch, AppendReport, LockHolder, NewSession, Payload, Problem, Result, RetentionOptions,
    RetentionReport, SearchPage, SearchQuery, Selection, SessionInfo, ShareCheck, ShareInfo,
    ShareToken, SpaceUsage, SqliteSessionWriter, SqliteStore, StoreError, StoreOptions, Transfer,
};

/// Where a store lives: a SQLite file or a PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else
    /// is the path of a SQLite file.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `url` with the password of its user info, if any, replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The backend behind a [`Store`].
#[derive(Debug)]
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

/// A podlog store on either backend; see the module docs.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$s` bound to whichever backend `$store` has.
macro_rules! each {
    ($store:expr, $s:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($s) => $body,
            Backend::Postgres($s) => $body,
        }
    };
}

/// Runs `$body` on SQLite; on PostgreSQL fails with
/// [`StoreError::Unsupported`] naming `$what`.
macro_rules! sqlite_only {
    ($store:expr, $what:literal, $s:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($s) => $body,
            Backend::Postgres(_) => Err(StoreError::Unsupported {
                operation: $what,
                backend: "PostgreSQL",
            }),
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        Ok(Store::sqlite(SqliteStore::open(path, options)?))
    }

    /// Opens the store at `location`, running its migrations.
    pub fn open_location(location: &Location, options: StoreOptions) -> Result<Self> {
        match location {
            Location::Sqlite(path) => Store::open(path, options),
            Location::Postgres(url) => Ok(Store::postgres(PgStore::open(url, &options)?)),
        }
    }

    /// A store over an open SQLite store.
    pub fn sqlite(store: SqliteStore) -> Self {
        Store {
            backend: Backend::Sqlite(Arc::new(store)),
        }
    }

    /// A store over an open PostgreSQL store.
    pub fn postgres(store: PgStore) -> Self {
        Store {
            backend: Backend::Postgres(Arc::new(store)),
        }
    }

    /// The backend, for what only one of them does.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The SQLite store, if this is one.
    pub fn as_sqlite(&self) -> Option<&Arc<SqliteStore>> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if this is one.
    pub fn as_postgres(&self) -> Option<&Arc<PgStore>> {
        match &self.backend {
            Backend::Postgres(s) => Some(s),
            Backend::Sqlite(_) => None,
        }
    }

    /// The database file, on SQLite.
    pub fn path(&self) -> Option<&Path> {
        self.as_sqlite().map(|s| s.path())
    }

    /// Where the store lives, for messages: the path, or the server,
    /// database and schema (never a password).
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path().display().to_string(),
            Backend::Postgres(s) => without_password(s.location()),
        }
    }

    /// What the names of the files that go with the database derive from
    /// (the redaction key and user patterns, [`crate::redaction::key_path`]
    /// and [`crate::redaction::config_path`]; a server's token): the
    /// database file, or for PostgreSQL `postgres` in podlog's data folder.
    pub fn file_base(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.path(),
            Backend::Postgres(s) => s.key_base(),
        }
    }

    pub fn options(&self) -> &StoreOptions {
        each!(self, s => s.options())
    }

    pub fn now(&self) -> u64 {
        each!(self, s => s.now())
    }

    pub fn redactor(&self) -> Option<Arc<Redactor>> {
        each!(self, s => s.redactor())
    }

    pub fn create_session(&self, new: NewSession) -> Result<(SessionId, Committed)> {
        each!(self, s => s.create_session(new))
    }

    pub fn session(&self, id: &SessionId) -> Result<SessionInfo> {
        each!(self, s => s.session(id))
    }

    pub fn sessions(&self) -> Result<Vec<Result<SessionInfo>>> {
        each!(self, s => s.sessions())
    }

    pub fn resolve(&self, text: &str) -> Result<SessionId> {
        each!(self, s => s.resolve(text))
    }

    pub fn entries(&self, session: &SessionId) -> Result<Vec<Committed>> {
        each!(self, s => s.entries(session))
    }

    pub fn entries_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        each!(self, s => s.entries_after(session, after, limit))
    }

    pub fn previews_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        each!(self, s => s.previews_after(session, after, limit))
    }

    pub fn previews_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        each!(self, s => s.previews_before(session, before, limit))
    }

    pub fn entries_before(
        &self,
        session: &SessionId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>> {
        each!(self, s => s.entries_before(session, before, limit))
    }

    pub fn open_run(&self, session: &SessionId) -> Result<Option<Seq>> {
        each!(self, s => s.open_run(session))
    }

    pub fn load_sink(&self, session: &SessionId) -> Result<SessionLogSink> {
        each!(self, s => s.load_sink(session))
    }

    pub fn payload(&self, hash: &PayloadHash) -> Result<Option<Payload>> {
        each!(self, s => s.payload(hash))
    }

    pub fn lock_holder(&self, session: &SessionId) -> Result<Option<LockHolder>> {
        each!(self, s => s.lock_holder(session))
    }

    /// Takes the session's cross-process write lock without writing (for
    /// work that must keep a pod out meanwhile). On PostgreSQL the lock is
    /// a writer's advisory lock.
    pub fn lock_session(&self, session: &SessionId) -> Result<SessionLock> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(SessionLock::Sqlite(s.lock_session(session)?)),
            Backend::Postgres(s) => Ok(SessionLock::Postgres(Box::new(s.session_writer(session)?))),
        }
    }

    /// The session's writer, holding its cross-process lock; fails with
    /// [`StoreError::SessionLocked`] naming the holder while another holds it.
    pub fn session_writer(&self, session: &SessionId) -> Result<SessionWriter> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(SessionWriter::Sqlite(s.session_writer(session)?)),
            Backend::Postgres(s) => Ok(SessionWriter::Postgres(Box::new(
                s.session_writer(session)?,
            ))),
        }
    }

    /// A cheap way to learn that another connection or process committed.
    pub fn change_watch(&self) -> Result<ChangeWatch> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(ChangeWatch::Sqlite(s.change_watch()?)),
            Backend::Postgres(s) => Ok(ChangeWatch::Postgres {
                listener: Box::new(s.listen()?),
                said: Instant::now(),
            }),
        }
    }

    pub fn last_seqs(&self, sessions: &[SessionId]) -> Result<Vec<(SessionId, Seq)>> {
        each!(self, s => s.last_seqs(sessions))
    }

    pub fn compact(
        &self,
        session: &SessionId,
        summary: Vec<Message>,
    ) -> Result<(SessionId, Committed)> {
        each!(self, s => s.compact(session, summary))
    }

    pub fn fork(&self, session: &SessionId, at: Seq) -> Result<(SessionId, Committed)> {
        each!(self, s => s.fork(session, at))
    }

    pub fn ancestors(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        each!(self, s => s.ancestors(session))
    }

    pub fn descendants(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
        each!(self, s => s.descendants(session))
    }

    pub fn export_sessions(
        &self,
        session: &SessionId,
        with_ancestors: bool,
    ) -> Result<Vec<SessionInfo>> {
        each!(self, s => s.export_sessions(session, with_ancestors))
    }

    pub fn export(
        &self,
        session: &SessionId,
        with_ancestors: bool,
        out: &mut impl Write,
        progress: impl FnMut(u64),
    ) -> Result<Transfer> {
        each!(self, s => s.export(session, with_ancestors, out, progress))
    }

    pub fn import(&self, input: impl BufRead, progress: impl FnMut(u64)) -> Result<Transfer> {
        each!(self, s => s.import(input, progress))
    }

    pub fn verify(&self, session: Option<&SessionId>) -> Result<Vec<Problem>> {
        each!(self, s => s.verify(session))
    }

    pub fn verify_scope(&self, session: Option<&SessionId>) -> Result<(u64, u64)> {
        each!(self, s => s.verify_scope(session))
    }

    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        each!(self, s => s.search(query))
    }

    pub fn search_index_bytes(&self) -> Result<u64> {
        each!(self, s => s.search_index_bytes())
    }

    pub fn rebuild_search_index(&self) -> Result<()> {
        each!(self, s => s.rebuild_search_index())
    }

    pub fn retain(
        &self,
        selection: &Selection,
        options: &RetentionOptions,
    ) -> Result<RetentionReport> {
        each!(self, s => s.retain(selection, options))
    }

    pub fn space_usage(&self) -> Result<SpaceUsage> {
        each!(self, s => s.space_usage())
    }

    pub fn reclaim_space(&self) -> Result<SpaceUsage> {
        sqlite_only!(self, "reclaiming space", s => s.reclaim_space())
    }

    pub fn vacuum_to_incremental(&self) -> Result<SpaceUsage> {
        sqlite_only!(self, "VACUUM", s => s.vacuum_to_incremental())
    }

    pub fn auto_vacuum(&self) -> Result<crate::AutoVacuum> {
        sqlite_only!(self, "auto-vacuum", s => s.auto_vacuum())
    }

    /// Writes the SQLite WAL back into the database file; nothing to do on
    /// PostgreSQL.
    pub fn checkpoint(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpoint(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// How many payloads the database holds, and their bytes in all.
    pub fn payload_totals(&self) -> Result<(u64, u64)> {
        each!(self, s => s.payload_totals())
    }

    pub fn redaction_enabled(&self) -> bool {
        each!(self, s => s.redaction_enabled())
    }

    pub fn set_redaction(&self, on: bool) -> Result<()> {
        each!(self, s => s.set_redaction(on))
    }

    pub fn create_share(
        &self,
        session: &str,
        expires: Option<Duration>,
    ) -> Result<(ShareInfo, ShareToken)> {
        each!(self, s => s.create_share(session, expires))
    }

    pub fn list_shares(&self) -> Result<Vec<ShareInfo>> {
        each!(self, s => s.list_shares())
    }

    pub fn share(&self, id: &str) -> Result<ShareInfo> {
        each!(self, s => s.share(id))
    }

    pub fn revoke_share(&self, id: &str) -> Result<ShareInfo> {
        each!(self, s => s.revoke_share(id))
    }

    pub fn check_share(&self, token: &str) -> Result<ShareCheck> {
        each!(self, s => s.check_share(token))
    }

    pub fn active_shares(&self, ids: &[String]) -> Result<Vec<String>> {
        each!(self, s => s.active_shares(ids))
    }

    pub fn session_references_payload(&self, session: &SessionId, hash: &str) -> Result<bool> {
        each!(self, s => s.session_references_payload(session, hash))
    }
}

/// One session's write handle on either backend: it holds the session's
/// cross-process lock for as long as it lives (see each backend's writer).
#[derive(Debug)]
pub enum SessionWriter {
    Sqlite(SqliteSessionWriter),
    Postgres(Box<PgSessionWriter>),
}

macro_rules! each_writer {
    ($writer:expr, $w:ident => $body:expr) => {
        match $writer {
            SessionWriter::Sqlite($w) => $body,
            SessionWriter::Postgres($w) => $body,
        }
    };
}

impl SessionWriter {
    pub fn session(&self) -> &SessionId {
        each_writer!(self, w => w.session())
    }

    /// The seq of the session's last committed entry.
    pub fn last_seq(&self) -> Seq {
        each_writer!(self, w => w.last_seq())
    }

    pub fn redactions(&self) -> u64 {
        each_writer!(self, w => w.redactions())
    }

    pub fn stored_bytes(&self) -> u64 {
        each_writer!(self, w => w.stored_bytes())
    }

    /// Whether the session's write lock is gone from under this writer, so
    /// that every append fails: on PostgreSQL, when the connection holding
    /// it was ended or lost. Never on SQLite, whose lock lives as long as
    /// the writer.
    pub fn is_lost(&self) -> bool {
        match self {
            SessionWriter::Sqlite(_) => false,
            SessionWriter::Postgres(w) => w.is_lost(),
        }
    }

    /// A handle that tells, without waiting and without this writer,
    /// what [`SessionWriter::is_lost`] tells.
    pub fn lock_watch(&self) -> crate::LockWatch {
        match self {
            SessionWriter::Sqlite(_) => crate::LockWatch::held(),
            SessionWriter::Postgres(w) => w.lock_watch(),
        }
    }

    /// Commits `entry` at the next seq, then publishes it to `sink`.
    pub fn append(&mut self, entry: LogEntry, sink: &SessionLogSink) -> Result<Seq> {
        each_writer!(self, w => w.append(entry, sink))
    }

    /// [`SessionWriter::append`], returning the committed entry as
    /// published.
    pub fn append_published(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Committed> {
        each_writer!(self, w => w.append_published(entry, sink))
    }

    /// [`SessionWriter::append_published`], with the secrets redacted and
    /// the session's counters before and after.
    pub fn append_reported(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<AppendReport> {
        each_writer!(self, w => w.append_reported(entry, sink))
    }
}

/// A session's write lock held without a writer ([`Store::lock_session`]).
#[derive(Debug)]
pub enum SessionLock {
    Sqlite(lock::SessionLock),
    Postgres(Box<PgSessionWriter>),
}

impl SessionLock {
    pub fn session(&self) -> &SessionId {
        match self {
            SessionLock::Sqlite(l) => l.session(),
            SessionLock::Postgres(w) => w.session(),
        }
    }
}

/// Learns cheaply that commits happened elsewhere: SQLite's
/// `PRAGMA data_version`, PostgreSQL's `LISTEN`.
#[derive(Debug)]
pub enum ChangeWatch {
    Sqlite(watch::ChangeWatch),
    Postgres {
        listener: Box<PgListener>,
        /// When [`ChangeWatch::changed`] last said true.
        said: Instant,
    },
}

/// On PostgreSQL, how long [`ChangeWatch::changed`] may say false at most:
/// a writer announces its commits after them, so a writer that dies in
/// between leaves a commit unannounced, which a follower then finds by
/// looking again on its own.
pub const PG_RECHECK: Duration = Duration::from_secs(1);

impl ChangeWatch {
    /// True when another connection may have committed since the last call
    /// (on PostgreSQL: a commit was announced, every announcement waiting
    /// is taken, or [`PG_RECHECK`] has passed since the last true). Never
    /// waits.
    pub fn changed(&mut self) -> Result<bool> {
        match self {
            ChangeWatch::Sqlite(w) => w.changed(),
            ChangeWatch::Postgres { listener, said } => {
                let mut any = false;
                while listener.wait(Duration::ZERO)?.is_some() {
                    any = true;
                }
                if any || said.elapsed() >= PG_RECHECK {
                    *said = Instant::now();
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }
}
