//! Retention: [`SqliteStore::retain`] deletes whole sessions, never part of one,
//! and [`SqliteStore::reclaim_space`] gives the pages they held back to the file
//! system. `podlog gc` and `podlog rm` drive them.
//!
//! # Contract
//!
//! * **Whole sessions.** A session is deleted with all its entries, its
//!   shares and the payloads no remaining entry references, in one write
//!   transaction; a family (a session and its descendants, with
//!   [`RetentionOptions::with_descendants`]) in one transaction too. No
//!   entry row is ever changed: history is removed, never rewritten. A
//!   crash at any moment leaves each session wholly present or wholly gone.
//! * **Never a session a pod holds.** Each session of a unit is locked with
//!   [`SqliteStore::lock_session`] from before its archive is written until its
//!   delete is committed; a session whose lock another writer holds (in this
//!   process or another) is kept and reported with its holder, and so is
//!   every session of its family.
//! * **Never an orphan.** A session is deleted only with, or after, every
//!   session whose parent chain leads to it: without `with_descendants` one
//!   with a descendant that stays is kept ([`KeptBecause::KeptDescendants`]);
//!   with it, the descendants go in the same transaction. Selected sessions
//!   are visited deepest first, so a chain of old sessions goes in one run.
//!   The delete transaction checks again that no session outside the unit
//!   names one inside it as parent (a fork made meanwhile), and that no row
//!   moved since it was planned.
//! * **Archive before delete.** With [`RetentionOptions::archive`], each
//!   session is exported (`jsonl.rs`'s format, the session alone) to
//!   `DIR/<id>.jsonl`, written to a temporary name, flushed to disk, renamed
//!   and the folder flushed, then read back: every line parses, the header
//!   names the session, seqs run 1 to its `last_seq`, the entry count is
//!   the row's, and the file's BLAKE3 hash is that of the bytes the export
//!   wrote. Only then is the unit deleted; a failed archive deletes nothing
//!   of its unit. Files are created 0600, the folder (if made) 0700.
//! * **Dry run.** [`RetentionOptions::dry_run`] reports what would go,
//!   taking no lock ([`SqliteStore::lock_holder`] looks without creating a file)
//!   and writing nothing.
//! * **Payloads.** A payload is deleted when the last entry referencing it
//!   is; `payload_refs` (schema 5, kept by triggers on `entries`) finds the
//!   other references of a payload with one index lookup, where reading
//!   `entries.payloads` would read every entry that has payloads (0.4 s per
//!   payload on a database of a million entries).
//! * **Space.** Databases created by this version use incremental
//!   auto-vacuum (`schema.rs`); [`SqliteStore::reclaim_space`] runs `PRAGMA
//!   incremental_vacuum` and a truncating checkpoint, so the file shrinks.
//!   An older database (auto-vacuum off) keeps its size: the freed pages
//!   are reused by later writes, and [`SqliteStore::vacuum_to_incremental`]
//!   rewrites it once into incremental mode.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use podlog_entry::{Seq, SessionId};
use rusqlite::TransactionBehavior;
use serde_json::Value;

use crate::error::Context;
use crate::jsonl::SESSION_HEADER_TYPE;
use crate::lock::{LockHolder, SessionLock};
use crate::{Result, SessionInfo, SqliteStore, StoreError};

/// An archive that could not be written or reads back wrong: an
/// [`StoreError::Io`] naming the file.
fn archive_error(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        context: format!("archive {}", path.display()),
        source: std::io::Error::other(reason.to_string()),
    }
}

/// Which sessions a retention run considers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every session whose `updated_at` is before this time (milliseconds
    /// since the Unix epoch): `podlog gc --older-than`.
    UntouchedBefore(u64),
    /// This one session, whatever its age or title: `podlog rm`.
    Session(SessionId),
}

/// How a retention run goes about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Report only: take no lock, write nothing.
    pub dry_run: bool,
    /// Archive each session to `DIR/<id>.jsonl` before deleting it.
    pub archive: Option<PathBuf>,
    /// Keep sessions that have a title (and, with `with_descendants`, the
    /// families that hold one).
    pub keep_titled: bool,
    /// Delete a selected session together with its descendants, however
    /// recent, rather than keep it while they stay.
    pub with_descendants: bool,
}

/// Why a selected session was kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeptBecause {
    /// A writer holds the lock of `session` (the session itself or one of
    /// the family deleted with it).
    Held {
        session: SessionId,
        holder: LockHolder,
    },
    /// These descendants stay (they are recent, titled, or themselves kept).
    KeptDescendants(Vec<SessionId>),
    /// It has a title, and titled sessions are kept.
    Titled,
    /// These descendants, which would go with it, have a title.
    TitledDescendants(Vec<SessionId>),
    /// It changed between planning and deleting (a new entry, a new fork).
    Changed(String),
    /// Archiving or deleting it failed; nothing of its unit was deleted.
    Failed(String),
}

impl std::fmt::Display for KeptBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |ids: &[SessionId]| {
            ids.iter()
                .map(SessionId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            KeptBecause::Held { session, holder } => {
                write!(f, "session {session} is held by {holder}")
            }
            KeptBecause::KeptDescendants(ids) => write!(
                f,
                "has descendants that stay: {} (--with-descendants deletes them too)",
                list(ids)
            ),
            KeptBecause::Titled => f.write_str("has a title (--keep-titled)"),
            KeptBecause::TitledDescendants(ids) => {
                write!(f, "has titled descendants (--keep-titled): {}", list(ids))
            }
            KeptBecause::Changed(why) => write!(f, "changed while retention ran: {why}"),
            KeptBecause::Failed(why) => write!(f, "failed, nothing deleted: {why}"),
        }
    }
}

/// A selected session that stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub session: SessionInfo,
    pub because: KeptBecause,
}

/// One unit deleted (or, in a dry run, that would be): a session, or a
/// session and its descendants, in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The sessions, the selected one first, then its descendants.
    pub sessions: Vec<SessionInfo>,
    /// Entry rows deleted.
    pub entries: u64,
    /// Bytes of those rows' bodies and payload references.
    pub entry_bytes: u64,
    /// Share rows deleted.
    pub shares: u64,
    /// Payloads deleted (referenced by no remaining entry).
    pub payloads: u64,
    /// Their text, in bytes.
    pub payload_bytes: u64,
    /// The archive files written, one per session.
    pub archives: Vec<PathBuf>,
}

/// What a retention run did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Units deleted, in the order they went.
    pub removed: Vec<Removed>,
    /// Selected sessions that stay, and why.
    pub kept: Vec<Kept>,
}

impl RetentionReport {
    /// Sessions deleted.
    pub fn sessions(&self) -> u64 {
        self.removed.iter().map(|r| r.sessions.len() as u64).sum()
    }

    /// Entry rows deleted.
    pub fn entries(&self) -> u64 {
        self.removed.iter().map(|r| r.entries).sum()
    }

    /// Bytes of entry rows and payloads deleted.
    pub fn bytes(&self) -> u64 {
        self.removed
            .iter()
            .map(|r| r.entry_bytes + r.payload_bytes)
            .sum()
    }

    /// Payloads deleted.
    pub fn payloads(&self) -> u64 {
        self.removed.iter().map(|r| r.payloads).sum()
    }

    /// Whether a unit failed (as opposed to being kept by a rule).
    pub fn failed(&self) -> bool {
        self.kept
            .iter()
            .any(|k| matches!(k.because, KeptBecause::Failed(_)))
    }
}

/// SQLite's auto-vacuum mode of the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoVacuum {
    /// Freed pages stay in the file, reused by later writes.
    None,
    /// The file shrinks at every commit.
    Full,
    /// The file shrinks when `PRAGMA incremental_vacuum` runs.
    Incremental,
}

/// The size of the database: its pages and its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceUsage {
    pub page_size: u64,
    /// Pages in the database, free ones included.
    pub pages: u64,
    /// Pages on the free list: inside the file, holding nothing.
    pub free_pages: u64,
    /// Bytes of the database file and its write-ahead log together.
    pub file_bytes: u64,
}

impl SqliteStore {
    /// The database's auto-vacuum mode.
    pub fn auto_vacuum(&self) -> Result<AutoVacuum> {
        let mode: i64 = self
            .writer()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .context(|| "reading the auto-vacuum mode".to_owned())?;
        Ok(match mode {
            1 => AutoVacuum::Full,
            2 => AutoVacuum::Incremental,
            _ => AutoVacuum::None,
        })
    }

    /// The database's pages and the size of its files now.
    pub fn space_usage(&self) -> Result<SpaceUsage> {
        let conn = self.writer();
        let ctx = || "measuring the database".to_owned();
        let pragma =
            |name: &str| -> Result<u64> { conn.query_row(name, [], |r| r.get(0)).context(ctx) };
        let page_size = pragma("PRAGMA page_size")?;
        let pages = pragma("PRAGMA page_count")?;
        let free_pages = pragma("PRAGMA freelist_count")?;
        drop(conn);
        let mut wal = self.path().as_os_str().to_owned();
        wal.push("-wal");
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        Ok(SpaceUsage {
            page_size,
            pages,
            free_pages,
            file_bytes: size(self.path()) + size(Path::new(&wal)),
        })
    }

    /// Gives the database's free pages back to the file system where its
    /// auto-vacuum mode allows (`PRAGMA incremental_vacuum`), then folds the
    /// write-ahead log into the file and truncates it. Returns the space
    /// used afterwards. On a database without auto-vacuum the free pages
    /// stay in the file for later writes (see
    /// [`SqliteStore::vacuum_to_incremental`]).
    pub fn reclaim_space(&self) -> Result<SpaceUsage> {
        if self.auto_vacuum()? == AutoVacuum::Incremental {
            let ctx = || "vacuuming freed pages".to_owned();
            let mut free = u64::MAX;
            loop {
                // A few thousand pages per write transaction, letting go of
                // the write connection in between: pods' commits wait for
                // one step, never for the whole vacuum.
                let conn = self.writer();
                let left: u64 = conn
                    .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                    .context(ctx)?;
                if left == 0 || left >= free {
                    break;
                }
                free = left;
                let mut stmt = conn
                    .prepare("PRAGMA incremental_vacuum(4096)")
                    .context(ctx)?;
                let mut rows = stmt.query([]).context(ctx)?;
                while rows.next().context(ctx)?.is_some() {}
            }
        }
        // A reader in another process may keep the checkpoint from
        // finishing; the file then shrinks at a later checkpoint.
        self.checkpoint()?;
        self.space_usage()
    }

    /// Rewrites the whole database once (`VACUUM`) with incremental
    /// auto-vacuum, for a database created before podlog set it. It needs
    /// free disk space as large as the database and holds the write lock
    /// for as long as the copy takes (every pod's commits wait), so it runs
    /// only when asked (`podlog gc --vacuum`).
    ///
    /// `VACUUM` may renumber the rowids of `entries` (its key is
    /// `(session_id, seq)`, not an `INTEGER PRIMARY KEY`), and the search
    /// index is keyed by them: it is rebuilt at once, before the writer is
    /// given back, so no append lands between the two. (`VACUUM` cannot
    /// share a transaction with the rebuild: a crash between them leaves an
    /// index that `podlog verify` reports and that running this again
    /// repairs.) This is the only place podlog runs a full `VACUUM`.
    pub fn vacuum_to_incremental(&self) -> Result<SpaceUsage> {
        {
            let conn = self.writer();
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
                .context(|| format!("vacuuming {}", self.path().display()))?;
            crate::search::rebuild(&conn)?;
        }
        self.checkpoint()?;
        self.space_usage()
    }

    /// Deletes the sessions `selection` names, by the rules of `options`
    /// (see the module docs), and reports what went and what stayed. `Err`
    /// is the run itself failing (the session list cannot be read, or an
    /// unknown session for [`Selection::Session`]); a unit that fails is
    /// reported as [`KeptBecause::Failed`] and the run goes on.
    pub fn retain(
        &self,
        selection: &Selection,
        options: &RetentionOptions,
    ) -> Result<RetentionReport> {
        if let Selection::Session(id) = selection {
            self.session(id)?;
        }
        let rows = self.sessions()?;
        Ok(Self::retain_with(selection, options, rows, |unit, gone| {
            self.remove_unit(unit, options, gone)
        }))
    }

    /// The rules of [`SqliteStore::retain`], apart from any database: picks the
    /// units of `rows` (every session row, as listed) that `selection` and
    /// `options` let go, in the order they go, hands each to `remove`
    /// (which archives and deletes it, or in a dry run measures it, and
    /// says why it stayed otherwise) with the sessions removed before it,
    /// and reports. Each backend's `retain` is this with its own `remove`.
    pub(crate) fn retain_with(
        selection: &Selection,
        options: &RetentionOptions,
        rows: Vec<Result<SessionInfo>>,
        mut remove: impl FnMut(
            &[SessionInfo],
            &HashSet<SessionId>,
        ) -> std::result::Result<Removed, KeptBecause>,
    ) -> RetentionReport {
        let sessions: HashMap<SessionId, SessionInfo> = rows
            .into_iter()
            .filter_map(std::result::Result::ok)
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut children: HashMap<&SessionId, Vec<&SessionId>> = HashMap::new();
        for s in sessions.values() {
            if let Some(p) = &s.parent {
                children.entry(&p.session_id).or_default().push(&s.id);
            }
        }
        for list in children.values_mut() {
            list.sort();
        }
        let mut report = RetentionReport {
            dry_run: options.dry_run,
            ..RetentionReport::default()
        };
        let mut selected: Vec<&SessionInfo> = Vec::new();
        for s in sessions.values() {
            let chosen = match selection {
                Selection::UntouchedBefore(cutoff) => s.updated_at < *cutoff,
                Selection::Session(id) => &s.id == id,
            };
            if !chosen {
                continue;
            }
            if options.keep_titled && s.title.is_some() {
                report.kept.push(Kept {
                    session: s.clone(),
                    because: KeptBecause::Titled,
                });
            } else {
                selected.push(s);
            }
        }
        let depth = |s: &SessionInfo| {
            let mut d = 0usize;
            let mut at = s.parent.as_ref();
            while let Some(p) = at {
                d += 1;
                // A parent loop (edited by hand) ends the walk.
                if d > sessions.len() {
                    break;
                }
                at = sessions.get(&p.session_id).and_then(|s| s.parent.as_ref());
            }
            d
        };
        // Without descendants, deepest first: a child goes before its parent
        // looks at what stays below it. With them, shallowest first: a
        // family takes its selected descendants along.
        selected.sort_by(|a, b| {
            let (da, db) = (depth(a), depth(b));
            let order = if options.with_descendants {
                da.cmp(&db)
            } else {
                db.cmp(&da)
            };
            order.then_with(|| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
        });
        let mut gone: HashSet<SessionId> = HashSet::new();
        for s in selected {
            if gone.contains(&s.id) {
                continue;
            }
            let unit: Vec<SessionInfo> = if options.with_descendants {
                let mut family = vec![s.clone()];
                let mut queue: VecDeque<&SessionId> = VecDeque::from([&s.id]);
                let mut seen: HashSet<&SessionId> = HashSet::from([&s.id]);
                while let Some(id) = queue.pop_front() {
                    for child in children.get(id).into_iter().flatten() {
                        if seen.insert(child) && !gone.contains(*child) {
                            family.push(sessions[*child].clone());
                            queue.push_back(child);
                        }
                    }
                }
                let titled: Vec<SessionId> = family[1..]
                    .iter()
                    .filter(|d| options.keep_titled && d.title.is_some())
                    .map(|d| d.id.clone())
                    .collect();
                if !titled.is_empty() {
                    report.kept.push(Kept {
                        session: s.clone(),
                        because: KeptBecause::TitledDescendants(titled),
                    });
                    continue;
                }
                family
            } else {
                let staying: Vec<SessionId> = children
                    .get(&s.id)
                    .into_iter()
                    .flatten()
                    .filter(|c| !gone.contains(**c))
                    .map(|c| (*c).clone())
                    .collect();
                if !staying.is_empty() {
                    report.kept.push(Kept {
                        session: s.clone(),
                        because: KeptBecause::KeptDescendants(staying),
                    });
                    continue;
                }
                vec![s.clone()]
            };
            match remove(&unit, &gone) {
                Ok(removed) => {
                    gone.extend(removed.sessions.iter().map(|r| r.id.clone()));
                    report.removed.push(removed);
                }
                Err(because) => report.kept.push(Kept {
                    session: s.clone(),
                    because,
                }),
            }
        }
        report.kept.sort_by(|a, b| a.session.id.cmp(&b.session.id));
        report
    }

    /// Archives and deletes one unit (the sessions of `unit`, the selected
    /// one first, each after its parent), or in a dry run measures it.
    /// `gone` are the sessions deleted before it in this run (in a dry
    /// run, those that would be): payloads only they and the unit
    /// reference count as freed.
    fn remove_unit(
        &self,
        unit: &[SessionInfo],
        options: &RetentionOptions,
        gone: &HashSet<SessionId>,
    ) -> std::result::Result<Removed, KeptBecause> {
        let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
        // Held for the rest of this function: no pod may start writing a
        // session between its archive and its delete.
        let mut locks: Vec<SessionLock> = Vec::new();
        for s in unit {
            if options.dry_run {
                if let Some(holder) = self.lock_holder(&s.id).map_err(failed)? {
                    return Err(KeptBecause::Held {
                        session: s.id.clone(),
                        holder,
                    });
                }
                continue;
            }
            match self.lock_session(&s.id) {
                Ok(lock) => locks.push(lock),
                Err(StoreError::SessionLocked { session, holder }) => {
                    return Err(KeptBecause::Held { session, holder })
                }
                Err(e) => return Err(failed(e)),
            }
        }
        // Under the locks no one appends; check nothing moved since the
        // plan was made from the rows.
        for s in unit {
            match self.session(&s.id) {
                Ok(now) if now == *s => {}
                Ok(_) => {
                    return Err(KeptBecause::Changed(format!(
                        "session {} was written meanwhile",
                        s.id
                    )))
                }
                Err(StoreError::UnknownSession(_)) => {
                    return Err(KeptBecause::Changed(format!(
                        "session {} was deleted meanwhile",
                        s.id
                    )))
                }
                Err(e) => return Err(failed(e)),
            }
        }
        // Only a dry run still has the sessions it counts as gone.
        let no_one = HashSet::new();
        let gone = if options.dry_run { gone } else { &no_one };
        let mut removed = self.measure_unit(unit, gone).map_err(failed)?;
        if options.dry_run {
            return Ok(removed);
        }
        if let Some(dir) = &options.archive {
            for s in unit {
                let path = self.write_archive(dir, s).map_err(failed)?;
                removed.archives.push(path);
            }
        }
        self.delete_unit(unit, &mut removed)?;
        drop(locks);
        Ok(removed)
    }

    /// What deleting `unit` frees, read on a read connection: its entries,
    /// their bytes, and the payloads nothing outside it and `gone`
    /// references.
    fn measure_unit(&self, unit: &[SessionInfo], gone: &HashSet<SessionId>) -> Result<Removed> {
        let ids = ids_json(unit);
        let mut ignored: Vec<&str> = unit.iter().map(|s| s.id.as_str()).collect();
        ignored.extend(gone.iter().map(SessionId::as_str));
        let ignored = Value::from(ignored).to_string();
        self.with_reader(|conn| {
            let ctx = || format!("measuring session {}", unit[0].id);
            let (entries, entry_bytes): (u64, u64) = conn
                .query_row(
                    "SELECT count(*), coalesce(sum(length(CAST(body AS BLOB)) \
                       + coalesce(length(CAST(payloads AS BLOB)), 0)), 0) \
                     FROM entries WHERE session_id IN (SELECT value FROM json_each(?1))",
                    [&ids],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .context(ctx)?;
            let shares: u64 = conn
                .query_row(
                    "SELECT count(*) FROM shares \
                     WHERE session_id IN (SELECT value FROM json_each(?1))",
                    [&ids],
                    |r| r.get(0),
                )
                .context(ctx)?;
            let (payloads, payload_bytes): (u64, u64) = conn
                .query_row(
                    "SELECT count(*), coalesce(sum(p.size), 0) FROM payloads AS p \
                     WHERE p.hash IN ( \
                       SELECT json_extract(j.value, '$.hash') \
                       FROM entries AS e, json_each(e.payloads) AS j \
                       WHERE e.session_id IN (SELECT value FROM json_each(?1)) \
                         AND e.payloads IS NOT NULL) \
                     AND NOT EXISTS (SELECT 1 FROM payload_refs AS x \
                       WHERE x.hash = p.hash \
                         AND x.session_id NOT IN (SELECT value FROM json_each(?2)))",
                    [&ids, &ignored],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .context(ctx)?;
            Ok(Removed {
                sessions: unit.to_vec(),
                entries,
                entry_bytes,
                shares,
                payloads,
                payload_bytes,
                archives: Vec::new(),
            })
        })
    }

    /// Deletes `unit` in one write transaction: checks that no row moved and
    /// that no session outside it descends from it, then deletes its shares,
    /// its entries, its session rows (children first) and the payloads no
    /// remaining entry references. Sets the counts of `removed` to what was
    /// deleted.
    fn delete_unit(
        &self,
        unit: &[SessionInfo],
        removed: &mut Removed,
    ) -> std::result::Result<(), KeptBecause> {
        let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
        let ids = ids_json(unit);
        let ctx = || format!("deleting session {}", unit[0].id);
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(ctx)
            .map_err(failed)?;
        let outside: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM sessions \
                 WHERE parent_id IN (SELECT value FROM json_each(?1)) \
                   AND id NOT IN (SELECT value FROM json_each(?1)) \
                 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map([&ids], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .context(ctx)
            .map_err(failed)?;
        if !outside.is_empty() {
            return Err(KeptBecause::Changed(format!(
                "new descendants appeared: {}",
                outside.join(", ")
            )));
        }
        let mut hashes: Vec<String> = Vec::new();
        for s in unit {
            let row: Option<(u64, u64, u64)> = tx
                .query_row(
                    "SELECT updated_at, last_seq, entry_count FROM sessions WHERE id = ?1",
                    [s.id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .context(ctx)
                .map_err(failed)?;
            if row != Some((s.updated_at, s.last_seq.get(), s.entry_count)) {
                return Err(KeptBecause::Changed(format!(
                    "session {} changed while it was archived",
                    s.id
                )));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT json_extract(j.value, '$.hash') \
                     FROM entries AS e, json_each(e.payloads) AS j \
                     WHERE e.session_id = ?1 AND e.payloads IS NOT NULL",
                )
                .context(ctx)
                .map_err(failed)?;
            let found = stmt
                .query_map([s.id.as_str()], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context(ctx)
                .map_err(failed)?;
            hashes.extend(found);
        }
        hashes.sort();
        hashes.dedup();
        let run = || -> rusqlite::Result<(u64, u64, u64, u64)> {
            let shares = tx.execute(
                "DELETE FROM shares WHERE session_id IN (SELECT value FROM json_each(?1))",
                [&ids],
            )? as u64;
            let mut entries = 0u64;
            // Children before parents: the unit lists each after its parent.
            for s in unit.iter().rev() {
                entries += tx
                    .prepare_cached("DELETE FROM entries WHERE session_id = ?1")?
                    .execute([s.id.as_str()])? as u64;
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute([s.id.as_str()])?;
            }
            let (mut payloads, mut payload_bytes) = (0u64, 0u64);
            for hash in &hashes {
                let size: Option<u64> = tx
                    .prepare_cached(
                        "DELETE FROM payloads WHERE hash = ?1 \
                         AND NOT EXISTS (SELECT 1 FROM payload_refs WHERE hash = ?1) \
                         RETURNING size",
                    )?
                    .query_row([hash], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                if let Some(size) = size {
                    payloads += 1;
                    payload_bytes += size;
                }
            }
            Ok((shares, entries, payloads, payload_bytes))
        };
        let (shares, entries, payloads, payload_bytes) = run().context(ctx).map_err(failed)?;
        tx.commit().context(ctx).map_err(failed)?;
        removed.shares = shares;
        removed.entries = entries;
        removed.payloads = payloads;
        removed.payload_bytes = payload_bytes;
        Ok(())
    }

    /// Writes session `info` to `dir/<id>.jsonl` and reads it back (see the
    /// module docs). The caller holds the session's lock.
    pub(crate) fn write_archive(&self, dir: &Path, info: &SessionInfo) -> Result<PathBuf> {
        Self::write_archive_with(dir, info, |out| {
            self.export(&info.id, false, &mut { out }, |_| {})
                .map(|t| t.entries)
        })
    }

    /// [`SqliteStore::write_archive`] with the export `export` (which writes the
    /// session alone in the export format to the writer it is given and
    /// returns the entries written), for any backend.
    pub(crate) fn write_archive_with(
        dir: &Path,
        info: &SessionInfo,
        export: impl FnOnce(&mut dyn Write) -> Result<u64>,
    ) -> Result<PathBuf> {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(archive_error(dir, format!("cannot create the folder: {e}"))),
        }
        let name = archive_file_name(&info.id);
        let path = dir.join(&name);
        let partial = dir.join(format!(".{name}.partial"));
        let io = |p: &Path, what: &str| {
            let p = p.to_owned();
            let what = what.to_owned();
            move |e: std::io::Error| archive_error(&p, format!("{what}: {e}"))
        };
        // A partial file left by a run that was killed is ours to replace.
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io(&partial, "cannot remove an old partial archive")(e)),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io(&partial, "cannot create"))?;
        let mut out = Hashing {
            inner: BufWriter::new(file),
            hasher: blake3::Hasher::new(),
        };
        let written = export(&mut out)?;
        let hash = out.hasher.finalize();
        let file = out
            .inner
            .into_inner()
            .map_err(|e| io(&partial, "cannot write")(e.into_error()))?;
        file.sync_all().map_err(io(&partial, "cannot flush"))?;
        drop(file);
        if written != info.entry_count {
            return Err(archive_error(
                &partial,
                format!(
                    "the export holds {} entries, the session row counts {}",
                    written, info.entry_count
                ),
            ));
        }
        std::fs::rename(&partial, &path).map_err(io(&path, "cannot rename into place"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir, "cannot flush the folder"))?;
        check_archive(&path, info, &hash)?;
        Ok(path)
    }
}

/// The unit's ids as a JSON array, bound as one parameter and read back with
/// `json_each`.
fn ids_json(unit: &[SessionInfo]) -> String {
    Value::from(
        unit.iter()
            .map(|s| Value::from(s.id.as_str()))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// The archive file name of `id`: `<id>.jsonl`, with every byte other than
/// ASCII letters, digits, `-` and `_` (and `.` after the first byte)
/// written `%XX`, so an id holding `/` or starting with `.` stays one plain
/// file in the folder.
pub fn archive_file_name(id: &SessionId) -> String {
    let mut name = String::new();
    for (i, b) in id.as_str().bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".jsonl");
    name
}

/// Reads the archive at `path` back: its bytes must hash to `hash` (what
/// the export wrote), and its lines must be one header naming `info`'s
/// session and its entries, seq 1 to `last_seq`, each a JSON object of that
/// session.
fn check_archive(path: &Path, info: &SessionInfo, hash: &blake3::Hash) -> Result<()> {
    let bad = |reason: String| archive_error(path, format!("reads back wrong: {reason}"));
    let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut hasher = blake3::Hasher::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut last = Seq::ZERO;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        number += 1;
        let value: Value = serde_json::from_slice(&line)
            .map_err(|e| bad(format!("line {number} is not JSON: {e}")))?;
        if number == 1 {
            let header_ok = value.get("type").and_then(Value::as_str) == Some(SESSION_HEADER_TYPE)
                && value.get("id").and_then(Value::as_str) == Some(info.id.as_str())
                && value.get("last_seq").and_then(Value::as_u64) == Some(info.last_seq.get());
            if !header_ok {
                return Err(bad(format!(
                    "line 1 is not the header of session {} at last_seq {}",
                    info.id, info.last_seq
                )));
            }
            continue;
        }
        let session = value.get("session_id").and_then(Value::as_str);
        let seq = value.get("seq").and_then(Value::as_u64);
        if session != Some(info.id.as_str())
            || seq != Some(last.get() + 1)
            || !value.get("entry").is_some_and(Value::is_object)
        {
            return Err(bad(format!(
                "line {number} is not entry seq {} of session {}",
                last.get() + 1,
                info.id
            )));
        }
        last = last.next();
    }
    if number == 0 {
        return Err(bad("the file is empty".to_owned()));
    }
    if number - 1 != info.entry_count || last != info.last_seq {
        return Err(bad(format!(
            "it holds {} entries up to seq {last}, the session {} up to seq {}",
            number - 1,
            info.entry_count,
            info.last_seq
        )));
    }
    if &hasher.finalize() != hash {
        return Err(bad("its bytes differ from those written".to_owned()));
    }
    Ok(())
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
