//! [`PgSessionWriter`]: the one way to append to a session on PostgreSQL.
//!
//! # Contract
//!
//! * [`PgStore::session_writer`] takes the session's advisory lock with
//!   `pg_try_advisory_lock` (never waiting) on the store's write connection
//!   (`pg/link.rs`), which every writer of the store shares. The key is the
//!   first 8 bytes of the BLAKE3 hash of the store's schema and the session
//!   id, so stores in different schemas of one database do not lock each
//!   other's sessions. While another writer, on any host or in this
//!   process, holds the lock, it fails at once with
//!   [`StoreError::SessionLocked`] naming the holder (pid and host from its
//!   connection's `application_name`, since when from the connection's
//!   start), the SQLite store's error. It fails with
//!   [`StoreError::UnknownSession`] for a session that does not exist.
//! * The lock lives as long as the writer and the write connection:
//!   dropping the writer releases it, and the server releases it when the
//!   connection dies (the process is killed, the host is lost, the backend
//!   is terminated). A writer whose connection closed appends nothing
//!   more: every append fails with [`StoreError::LockLost`], and another
//!   writer may take the session (in this process, on a new connection).
//! * [`PgSessionWriter::append`] commits one statement: the payloads and
//!   the entry row are inserted at the writer's next seq, and nothing else.
//!   Appends of the store's sessions that arrive together share one
//!   transaction (group commit, see `pg/link.rs`); each row is still
//!   guarded on its own, and commits or fails on its own. The commit is
//!   announced (`<session>:<seq>` with `pg_notify`) by a statement sent
//!   on the same connection, right behind it or within milliseconds, which
//!   notifies only rows that are in the table once the commit is done (see
//!   `pg/link.rs` and `pg/announce.rs`). Only
//!   after the commit returned Ok is the entry published to the sink passed
//!   in and handed to the store's indexer, which indexes it for search from
//!   a thread of its own (see `pg/indexer.rs`); a failed append (at any
//!   step, `COMMIT` included) rolls back, announces nothing and publishes
//!   nothing.
//! * The session row's counters are not written by an append: the entry
//!   row carries its share of them, and the row takes them in when the
//!   writer opens the session, when it is dropped, and in between from the
//!   store's indexer, off the append's transaction, once the session has
//!   gone [`super::indexer::FOLD_EVERY`] seqs past the last time
//!   (`pg/indexer.rs`); readers add the entries past the row
//!   (`migrations/postgres/0004_session_tail.sql`), so every read sees
//!   exact counters.
//! * The insert is guarded by the seq the writer expects (`last_seq` kept
//!   in memory, as the SQLite writer keeps it): the entry before it must
//!   exist and its own seq must be free, so an entry put there, or one
//!   taken away, behind the lock's back fails the append with
//!   [`StoreError::StaleWriter`] and writes nothing. After any failed
//!   append the writer reads the counters again before its next one.
//! * A commit whose connection is lost while `COMMIT` is under way may or
//!   may not have committed; it fails, publishes nothing, and the next
//!   writer reads the truth from the entries.

use std::sync::Arc;

use podlog_entry::{Committed, LogEntry, Seq, SessionId};
use podlog_sink::SessionLogSink;
use postgres::Client;

use super::link::{AppendRow, Conn, Outcome};
use super::{lock_key, read_session, signed, EntryRow, PgContext, PgStore};
use crate::lock::LockHolder;
use crate::redaction::prepare;
use crate::writer::AppendReport;
use crate::{Result, SessionInfo, StoreError};

/// The append of an entry without payloads, the common one, as one
/// statement and so one transaction (and one round trip to the server).
/// The entry row is inserted at seq `$2` only if seq `$2 - 1` exists (so
/// seqs stay gap-free), and the primary key refuses it if `$2` is taken
/// (so an entry another writer put there is never overwritten): either way
/// nothing is written. It carries the three numbers the session's counters
/// need (`migrations/postgres/0004_session_tail.sql`). Written when it
/// counts one row. A plain `INSERT`, which the server runs with less work
/// than the same insert inside a `WITH` that returns its row
/// (`docs/performance.md`, PG1). The commit is announced after it
/// (`pg/announce.rs`).
const APPEND_PLAIN: &str = "\
     INSERT INTO entries (session_id, seq, ts, kind, body, payloads, \
                          redactions, stored_bytes, appended_at) \
     SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::text::json, \
            $6::text::json, $8::bigint, $9::bigint, $7::bigint \
     WHERE EXISTS (SELECT 1 FROM entries \
                   WHERE session_id = $1::text AND seq = $2::bigint - 1)";

/// The append of an entry with payloads (`$10` hashes, `$11` sizes, `$12`
/// texts): each payload stored once, then the entry row, guarded as in
/// [`APPEND_PLAIN`], all in one statement; the payloads are written only
/// with the entry. Returns the seq when the row was written.
const APPEND_WITH_PAYLOADS: &str = "\
     WITH prev AS ( \
       SELECT 1 FROM entries WHERE session_id = $1::text AND seq = $2::bigint - 1), \
     stored AS ( \
       INSERT INTO payloads (hash, size, text) \
       SELECT p.hash, p.size, p.text \
       FROM unnest($10::text[], $11::bigint[], $12::text[]) AS p (hash, size, text) \
       WHERE EXISTS (SELECT 1 FROM prev) \
       ON CONFLICT (hash) DO NOTHING), \
     entry AS ( \
       INSERT INTO entries (session_id, seq, ts, kind, body, payloads, \
                            redactions, stored_bytes, appended_at) \
       SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::text::json, \
              $6::text::json, $8::bigint, $9::bigint, $7::bigint \
       WHERE EXISTS (SELECT 1 FROM prev) \
       RETURNING seq) \
     SELECT entry.seq FROM entry";

/// The appends, indexed by [`statement_of`]: an entry without payloads
/// and one with them.
pub(crate) const APPENDS: [&str; 2] = [APPEND_PLAIN, APPEND_WITH_PAYLOADS];

/// Whether `APPENDS[statement]` counts its row rather than returning it.
pub(crate) fn counts_its_row(statement: usize) -> bool {
    statement == 0
}

/// Several entries of [`APPENDS`]' first kind (no payloads), of
/// different sessions, in one statement: the rows' columns as arrays, in
/// the order of that statement's parameters. Each row is guarded as a lone
/// append is (its seq's predecessor must exist, the primary key refuses a
/// taken seq); returns the `(session, seq)` of every row written. One
/// statement instead of one per row: a group commit of eight rows took
/// half the time (`docs/performance.md`, PG2). The guard's `OFFSET 0`
/// keeps it a subquery probed per row: as a join, a plan made while
/// `entries` was small (the connection's prepared statement keeps it)
/// hashes the whole table at every append.
pub(crate) const APPEND_MANY: &str = "\
     INSERT INTO entries (session_id, seq, ts, kind, body, payloads, \
                          redactions, stored_bytes, appended_at) \
     SELECT r.session_id, r.seq, r.ts, r.kind, r.body::json, r.payloads::json, \
            r.redactions, r.stored_bytes, r.appended_at \
     FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) \
          AS r (session_id, seq, ts, kind, body, payloads, appended_at, redactions, \
                stored_bytes) \
     WHERE EXISTS (SELECT 1 FROM entries AS e \
                   WHERE e.session_id = r.session_id AND e.seq = r.seq - 1 OFFSET 0) \
     RETURNING session_id, seq";

/// Which of [`APPENDS`] appends an entry, with or without payloads.
fn statement_of(payloads: bool) -> usize {
    usize::from(payloads)
}

/// Brings the session row `$1` up to date with its tail and sets `tail` to
/// `$2`: at a writer's open (true: its appends go past `last_seq`) and
/// close (false), both under the session's lock. Returns the row.
const FOLD: &str = "UPDATE sessions AS s SET last_seq = n.last_seq, \
       entry_count = n.entry_count, updated_at = n.updated_at, redactions = n.redactions, \
       stored_bytes = n.stored_bytes, tail = $2 \
     FROM sessions_now AS n WHERE s.id = $1 AND n.id = s.id \
     RETURNING s.id, s.origin, s.parent_id, s.parent_seq, s.created_at, s.updated_at, \
       s.last_seq, s.entry_count, s.title, s.redactions, s.stored_bytes";

/// Who holds the advisory lock `key` in this database: the holder's
/// `application_name`, client host and connection start.
const HOLDER: &str = "SELECT a.application_name, \
       coalesce(a.client_hostname, host(a.client_addr)), \
       (extract(epoch FROM a.backend_start) * 1000)::bigint \
     FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted \
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
       AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 \
     LIMIT 1";

/// The write handle of one session on PostgreSQL: its lock, held on the
/// store's write connection, and its last seq. See the module docs.
pub struct PgSessionWriter {
    store: Arc<PgStore>,
    session: SessionId,
    key: i64,
    /// The generation of the write connection that holds the lock.
    generation: u64,
    /// The server process of that connection.
    backend_pid: i32,
    last_seq: Seq,
    redactions: u64,
    stored_bytes: u64,
    /// A failed append may have left the counters elsewhere: read them
    /// again before the next append.
    reread: bool,
}

impl std::fmt::Debug for PgSessionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSessionWriter")
            .field("session", &self.session)
            .field("backend_pid", &self.backend_pid)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// The holder named by an `application_name` of the form `podlog pid=<pid>
/// host=<host>` (see [`super::application_name`]); for a connection that is
/// not podlog's, the client's host, if the server knows it.
fn holder_from(app: &str, client_host: Option<String>, since: Option<i64>) -> LockHolder {
    let mut holder = LockHolder {
        since: since.and_then(|s| u64::try_from(s).ok()),
        ..LockHolder::default()
    };
    let mut words = app.split_whitespace();
    if words.next() == Some("podlog") {
        for word in words {
            if let Some(pid) = word.strip_prefix("pid=") {
                holder.pid = pid.parse().ok();
            } else if let Some(host) = word.strip_prefix("host=") {
                holder.host = Some(host.to_owned());
            }
        }
    }
    if holder.host.is_none() {
        holder.host = client_host;
    }
    holder
}

/// Who holds advisory lock `key`, asked on `client`. `None` when no one does
/// (any more).
fn lock_holder(
    client: &mut Client,
    key: i64,
) -> std::result::Result<Option<LockHolder>, postgres::Error> {
    // pg_locks shows a bigint key as its high and low 32 bits, unsigned.
    let bits = key as u64;
    let (high, low) = ((bits >> 32) as i64, (bits & 0xffff_ffff) as i64);
    let Some(row) = client.query_opt(HOLDER, &[&high, &low])? else {
        return Ok(None);
    };
    let app: Option<String> = row.try_get(0)?;
    Ok(Some(holder_from(
        app.as_deref().unwrap_or(""),
        row.try_get(1)?,
        row.try_get(2)?,
    )))
}

impl PgStore {
    /// How appends were grouped into transactions since the store opened
    /// (see `pg/link.rs`).
    pub fn commit_stats(&self) -> crate::commit::CommitStats {
        self.link.commit_stats()
    }

    /// The advisory lock key of `session` in this store.
    pub(crate) fn session_key(&self, session: &SessionId) -> i64 {
        lock_key(&["podlog session", &self.schema, session.as_str()])
    }

    /// Who holds the write lock of `session`, if anyone, without taking it.
    pub fn lock_holder(&self, session: &SessionId) -> Result<Option<LockHolder>> {
        let key = self.session_key(session);
        self.read_with(|client| {
            lock_holder(client, key).context(|| format!("finding the writer of session {session}"))
        })
    }

    /// Opens `session` for appending: takes its advisory lock on the
    /// store's write connection (failing at once with
    /// [`StoreError::SessionLocked`] if another writer has it) and reads its
    /// counters. See [`super::writer`].
    pub fn session_writer(self: &Arc<Self>, session: &SessionId) -> Result<PgSessionWriter> {
        let key = self.session_key(session);
        // A connection that died since its last use is only found out by
        // using it: then open the session again on a new one.
        match self.open_on_link(session, key) {
            Err(StoreError::Postgres { .. }) if self.link.current().is_none() => {
                self.open_on_link(session, key)
            }
            other => other,
        }
    }

    fn open_on_link(self: &Arc<Self>, session: &SessionId, key: i64) -> Result<PgSessionWriter> {
        let (generation, backend_pid) = {
            let mut guard = self.link.connection()?;
            let conn = guard.as_mut().expect("connection() leaves a connection");
            match lock_session(conn, session, key) {
                Ok(true) => (conn.generation, conn.backend_pid),
                Ok(false) => {
                    drop(guard);
                    let holder = self.lock_holder(session)?;
                    return Err(StoreError::SessionLocked {
                        session: session.clone(),
                        holder: holder.unwrap_or_default(),
                    });
                }
                Err(e) => {
                    if conn.is_closed() || connection_ended(&e) {
                        // Its locks went with it; the next open connects
                        // anew.
                        *guard = None;
                    }
                    return Err(e);
                }
            }
        };
        // Under the lock, on a pooled connection: a wait for the session
        // row (a fork or retention holding it) must not hold up the other
        // sessions' appends on the write connection.
        match self.with_client(|client| fold_at_open(client, session)) {
            Ok(info) => Ok(PgSessionWriter {
                store: self.clone(),
                session: session.clone(),
                key,
                generation,
                backend_pid,
                last_seq: info.last_seq,
                redactions: info.redactions,
                stored_bytes: info.stored_bytes,
                reread: false,
            }),
            Err(e) => {
                self.unlock(session.as_str(), key, generation);
                Err(e)
            }
        }
    }

    /// Lets go of `session`'s lock, taken on the write connection of
    /// `generation` (nothing to do if that connection is gone: the lock
    /// went with it).
    fn unlock(&self, session: &str, key: i64, generation: u64) {
        if let Some(conn) = self.link.current().as_mut() {
            if conn.generation == generation {
                if !conn.is_closed() {
                    let _ = conn.query("SELECT pg_advisory_unlock($1)", &[&key]);
                }
                conn.unmark_held(session);
            }
        }
    }
}

/// Whether `error` says the connection itself is over: the server ended it
/// (SQLSTATE class 57, operator intervention), it broke (class 08), or it
/// failed below SQL (no SQLSTATE at all).
fn connection_ended(error: &StoreError) -> bool {
    match error {
        StoreError::Postgres { source, .. } => source
            .code()
            .is_none_or(|c| c.code().starts_with("57") || c.code().starts_with("08")),
        _ => false,
    }
}

/// Takes `session`'s lock on `conn`, never waiting, and marks it held
/// there; false when another writer holds it (a writer of this process
/// included: advisory locks are reentrant on one connection, so the
/// connection's own list says).
fn lock_session(conn: &mut Conn, session: &SessionId, key: i64) -> Result<bool> {
    let ctx = || format!("opening session {session} for writing");
    if conn.holds(session.as_str()) {
        // Held here, if the connection still lives (a dead one is only
        // found out by using it; the caller then connects again).
        conn.query("SELECT 1", &[]).context(ctx)?;
        return Ok(false);
    }
    let locked: bool = conn
        .query("SELECT pg_try_advisory_lock($1)", &[&key])
        .context(ctx)?
        .first()
        .map(|r| r.try_get(0))
        .transpose()
        .context(ctx)?
        .unwrap_or(false);
    if locked {
        conn.mark_held(session.as_str());
    }
    Ok(locked)
}

/// A writer's first steps under the lock: the row takes in any tail a
/// writer that died left, and is marked as having one from now on; the
/// session's search progress row is set. Returns the row.
fn fold_at_open(client: &mut Client, session: &SessionId) -> Result<SessionInfo> {
    let ctx = || format!("opening session {session} for writing");
    let row = client
        .query_opt(FOLD, &[&session.as_str(), &true])
        .context(ctx)?
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
    let info = super::session_from_row(&row)?;
    // The write connection's entries are indexed for search after their
    // commit (migrations/postgres/0003_search_deferred.sql): from the mark
    // of the session's progress row, which starts at its end now unless a
    // writer that died left one further back.
    let end = signed(info.last_seq.get(), "seq", session, "SessionStart")?;
    client
        .execute(
            "INSERT INTO search_progress (session_id, indexed_seq) VALUES ($1, $2) \
             ON CONFLICT (session_id) DO NOTHING",
            &[&session.as_str(), &end],
        )
        .context(ctx)?;
    Ok(info)
}

impl PgSessionWriter {
    /// The session this writer appends to.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The seq of the session's last committed entry.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Secrets redacted in the session so far.
    pub fn redactions(&self) -> u64 {
        self.redactions
    }

    /// The session's stored size in bytes (`sessions.stored_bytes`).
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// The store written to.
    pub fn store(&self) -> &Arc<PgStore> {
        &self.store
    }

    /// The server process whose connection holds the session's lock (as
    /// `pg_stat_activity.pid` shows it).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Whether the writer's connection, and with it the session's lock, is
    /// gone.
    pub fn is_lost(&self) -> bool {
        !self.store.link.is_live(self.generation)
    }

    /// A handle that tells, without waiting, what [`Self::is_lost`] tells.
    pub fn lock_watch(&self) -> crate::LockWatch {
        self.store.link.lock_watch(self.generation)
    }

    /// Commits `entry` as the session's next entry, then publishes it to
    /// `sink` (the session's mirror) and returns its seq. Fails, publishing
    /// nothing, if `entry` is a `SessionStart` (only seq 1 holds one) or if
    /// the transaction fails.
    pub fn append(&mut self, entry: LogEntry, sink: &SessionLogSink) -> Result<Seq> {
        self.append_published(entry, sink).map(|c| c.seq)
    }

    /// [`PgSessionWriter::append`], returning the entry as it was published
    /// (lean when strings were cut out).
    pub fn append_published(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<Committed> {
        self.append_reported(entry, sink).map(|r| r.committed)
    }

    /// [`PgSessionWriter::append_published`], with what the append changed:
    /// the secrets redacted in the entry and the session's counters before
    /// and after it.
    pub fn append_reported(
        &mut self,
        entry: LogEntry,
        sink: &SessionLogSink,
    ) -> Result<AppendReport> {
        if self.is_lost() {
            return Err(StoreError::LockLost {
                session: self.session.clone(),
            });
        }
        crate::commit::refuse_session_start(&self.session, &entry)?;
        let kind = entry.kind().to_owned();
        let prepared = prepare(self.store.redactor().as_deref(), entry).map_err(|reason| {
            StoreError::Rejected {
                session: self.session.clone(),
                kind: kind.clone(),
                reason,
            }
        })?;
        if self.reread {
            let info = self.store.read_with(|c| read_session(c, &self.session))?;
            self.last_seq = info.last_seq;
            self.redactions = info.redactions;
            self.stored_bytes = info.stored_bytes;
            self.reread = false;
        }
        let seq = self.last_seq.next();
        let redactions = prepared.redactions.total();
        let bytes = prepared.rendered.stored_bytes();
        if let Err(e) = self.commit(seq, &prepared) {
            self.reread = true;
            return Err(e);
        }
        // Committed: now, and only now, the entry may be seen.
        let committed = prepared.rendered.committed(seq, &prepared.entry);
        let report = AppendReport {
            committed: committed.clone(),
            redactions: prepared.redactions,
            redactions_before: self.redactions,
            stored_before: self.stored_bytes,
            stored_after: self.stored_bytes + bytes,
        };
        self.last_seq = seq;
        self.redactions += redactions;
        self.stored_bytes = report.stored_after;
        sink.publish(committed).map_err(|source| {
            // The seq is taken on disk; the sink passed in is not this
            // session's mirror.
            self.reread = true;
            StoreError::Publish {
                session: self.session.clone(),
                seq,
                source,
            }
        })?;
        Ok(report)
    }

    /// The row of `prepared` at `seq`, for the write connection.
    pub(super) fn row(&self, seq: Seq, prepared: &crate::redaction::Prepared) -> Result<AppendRow> {
        let session = &self.session;
        let kind = prepared.entry.kind();
        let row = EntryRow::new(session, seq, &prepared.entry, &prepared.rendered)?;
        let now = signed(self.store.now(), "time", session, kind)?;
        let redactions = signed(
            prepared.redactions.total(),
            "redaction count",
            session,
            kind,
        )?;
        let bytes = signed(prepared.rendered.stored_bytes(), "size", session, kind)?;
        let with_payloads = !row.payloads.is_empty();
        Ok(AppendRow {
            statement: statement_of(with_payloads),
            generation: self.generation,
            session: session.as_str().to_owned(),
            seq: row.seq,
            ts: row.ts,
            kind: row.kind.to_owned(),
            body: row.body.to_owned(),
            refs: row.refs.clone(),
            now,
            redactions,
            bytes,
            hashes: row.payloads.iter().map(|p| p.0.to_owned()).collect(),
            sizes: row.payloads.iter().map(|p| p.1).collect(),
            texts: row.payloads.iter().map(|p| p.2.to_owned()).collect(),
        })
    }

    /// The append's transaction, alone or in a group commit; see the
    /// module docs.
    fn commit(&mut self, seq: Seq, prepared: &crate::redaction::Prepared) -> Result<()> {
        let row = self.row(seq, prepared)?;
        let row_seq = row.seq;
        let outcome = self.store.link.append(row);
        let session = &self.session;
        let kind = prepared.entry.kind();
        match outcome {
            Outcome::Written => {
                // Committed, and announced after the commit (see
                // `pg/announce.rs`); indexed for search from the store's
                // thread, so that the append returns now.
                self.store.index_later(session.as_str(), row_seq);
                Ok(())
            }
            // Nothing was written: the seq before this one is not there
            // (or the session is gone). Say which.
            Outcome::NotWritten => match self.store.read_with(|c| read_session(c, session)) {
                Ok(_) => Err(StoreError::StaleWriter {
                    session: session.clone(),
                    seq,
                }),
                Err(e) => Err(e),
            },
            Outcome::Taken => Err(StoreError::StaleWriter {
                session: session.clone(),
                seq,
            }),
            Outcome::Lost => Err(StoreError::LockLost {
                session: session.clone(),
            }),
            Outcome::Failed { source, closed } => {
                let lost = if closed {
                    " (the connection is closed, and the session's write lock with it)"
                } else {
                    ""
                };
                Err(StoreError::Postgres {
                    context: format!("appending {kind} to session {session}{lost}"),
                    source,
                })
            }
            Outcome::Panicked(message) => Err(StoreError::Panicked {
                session: session.clone(),
                seq,
                committed: false,
                message,
            }),
        }
    }
}

impl Drop for PgSessionWriter {
    fn drop(&mut self) {
        // Index what is left of the session and delete its search progress
        // row, fold the row, then let go of the lock, so that a writer
        // opened right after this one returns finds it free. All on the
        // write connection: these steps are only right while the lock is
        // held, and a statement there fails once the lock is gone (a
        // pooled connection would go on). A failure here cannot be
        // reported: a row left behind is caught up by the next search, and
        // the lock goes with the connection. Off any async runtime: the
        // connection blocks on a runtime of its own.
        let store = self.store.clone();
        let (session, key, generation) =
            (self.session.as_str().to_owned(), self.key, self.generation);
        super::client::off_runtime(move || {
            let mut guard = store.link.current();
            let Some(conn) = guard.as_mut() else { return };
            if conn.generation != generation {
                return;
            }
            if !conn.is_closed() {
                let _ = conn.query(
                    "SELECT set_config('synchronous_commit', 'off', true), search_release($1)",
                    &[&session],
                );
                let _ = conn.query(FOLD, &[&session, &false]);
                let _ = conn.query("SELECT pg_advisory_unlock($1)", &[&key]);
            }
            conn.unmark_held(&session);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_read_from_its_application_name() {
        let h = holder_from("podlog pid=42 host=box", Some("10.0.0.1".into()), Some(5));
        assert_eq!(
            h,
            LockHolder {
                pid: Some(42),
                host: Some("box".into()),
                since: Some(5)
            }
        );
        let other = holder_from("psql", Some("10.0.0.1".into()), None);
        assert_eq!(other.pid, None);
        assert_eq!(other.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(other.to_string(), "another process on 10.0.0.1");
    }
}
