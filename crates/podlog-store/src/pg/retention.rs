//! Retention on PostgreSQL: [`PgStore::retain`], the SQLite
//! [`SqliteStore::retain`](crate::SqliteStore::retain) with the same rules, the same
//! selection and the same report, and [`PgStore::space_usage`].
//!
//! # Contract
//!
//! * **Same rules.** Which sessions go, in which units and order, and why
//!   the others stay, is decided by the SQLite store's own code
//!   (`SqliteStore::retain_with`): whole sessions only, never one whose
//!   descendants stay unless [`RetentionOptions::with_descendants`], titled
//!   ones kept with [`RetentionOptions::keep_titled`], a failed unit
//!   reported as [`KeptBecause::Failed`] while the run goes on.
//! * **Never a session a pod holds.** A unit's sessions are locked with
//!   `pg_try_advisory_lock` on their writers' keys, on a connection of the
//!   run's own, from before the unit is archived until its delete has
//!   committed (then released). A session whose lock a writer holds, on any
//!   host, keeps its whole unit ([`KeptBecause::Held`], naming the holder);
//!   no writer can open a session of the unit meanwhile. The delete
//!   transaction locks the unit's session rows and checks again that none
//!   moved and that no session outside the unit names one inside it as
//!   parent.
//! * **One transaction per unit**: its shares, its entries (children's
//!   first; their search rows and payload references go with them, by the
//!   triggers on `entries`), its session rows, and the payloads no
//!   remaining entry references. A crash leaves each session whole or gone.
//! * **Archive before delete**, as on SQLite: `DIR/<id>.jsonl` in the
//!   export format (the session alone), written through a temporary name,
//!   flushed, renamed and read back by the SQLite store's archive code;
//!   a failed archive deletes nothing of its unit.
//! * **Dry run**: no lock taken, nothing written; the same units and
//!   counts.
//! * **Space.** PostgreSQL gives deleted rows' space back by itself
//!   (autovacuum makes it reusable; the files shrink only by a `VACUUM
//!   FULL`, which podlog never runs), so there is no `reclaim_space`:
//!   [`PgStore::space_usage`] reports the bytes the store's tables and
//!   indexes take now.

use std::collections::HashSet;
use std::io::Write;

use podlog_entry::{Seq, SessionId};
use postgres::Client;

use super::{read_session, PgContext, PgStore};
use crate::jsonl::header_line;
use crate::retention::{KeptBecause, Removed, RetentionOptions, RetentionReport, Selection};
use crate::{Result, SessionInfo, SpaceUsage, SqliteStore, StoreError};

/// How many entries an archive reads at a time.
const ARCHIVE_PAGE: usize = 1000;

/// A count from the database, which is never negative.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

impl PgStore {
    /// Deletes the sessions `selection` names, by the rules of `options`
    /// (see the module docs), and reports what went and what stayed. `Err`
    /// is the run itself failing (the session list cannot be read, or an
    /// unknown session for [`Selection::Session`]).
    pub fn retain(
        &self,
        selection: &Selection,
        options: &RetentionOptions,
    ) -> Result<RetentionReport> {
        if let Selection::Session(id) = selection {
            self.session(id)?;
        }
        let rows = self.sessions()?;
        // The connection that holds the locks of the unit being deleted,
        // opened for the first unit that needs one.
        let mut locker: Option<Client> = None;
        Ok(SqliteStore::retain_with(
            selection,
            options,
            rows,
            |unit, gone| self.remove_unit(&mut locker, unit, options, gone),
        ))
    }

    /// Archives and deletes one unit, or in a dry run measures it; see
    /// [`SqliteStore::retain_with`].
    fn remove_unit(
        &self,
        locker: &mut Option<Client>,
        unit: &[SessionInfo],
        options: &RetentionOptions,
        gone: &HashSet<SessionId>,
    ) -> std::result::Result<Removed, KeptBecause> {
        let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
        if options.dry_run {
            for s in unit {
                if let Some(holder) = self.lock_holder(&s.id).map_err(failed)? {
                    return Err(KeptBecause::Held {
                        session: s.id.clone(),
                        holder,
                    });
                }
            }
            return self
                .read_with(|client| {
                    Ok(unchanged(client, unit).and_then(|()| measure(client, unit, gone)))
                })
                .map_err(failed)?;
        }
        if locker.as_ref().is_none_or(Client::is_closed) {
            *locker = Some(self.connect().map_err(failed)?.into_inner());
        }
        let Some(client) = locker.as_mut() else {
            return Err(KeptBecause::Failed("no connection".to_owned()));
        };
        let out = self.remove_locked(client, unit, options);
        // Let go of every lock of the unit, whatever happened; a
        // connection that cannot is closed, and that releases them.
        if client
            .execute("SELECT pg_advisory_unlock_all()", &[])
            .is_err()
        {
            *locker = None;
        }
        out
    }

    /// [`PgStore::remove_unit`] once the unit's locks are taken on `client`
    /// (it takes them first).
    fn remove_locked(
        &self,
        client: &mut Client,
        unit: &[SessionInfo],
        options: &RetentionOptions,
    ) -> std::result::Result<Removed, KeptBecause> {
        let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
        self.lock_unit(client, unit)?;
        unchanged(client, unit)?;
        let mut removed = measure(client, unit, &HashSet::new())?;
        if let Some(dir) = &options.archive {
            for s in unit {
                let path = SqliteStore::write_archive_with(dir, s, |out| self.export_alone(s, out))
                    .map_err(failed)?;
                removed.archives.push(path);
            }
        }
        delete_unit(client, unit, &mut removed)?;
        Ok(removed)
    }

    /// Takes the write lock of every session of `unit` on `client`
    /// (session-level advisory locks, held until the connection lets go of
    /// them), without waiting: a session another writer holds is
    /// [`KeptBecause::Held`], naming the holder.
    fn lock_unit(
        &self,
        client: &mut Client,
        unit: &[SessionInfo],
    ) -> std::result::Result<(), KeptBecause> {
        let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
        for s in unit {
            let key = self.session_key(&s.id);
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .and_then(|row| row.try_get(0))
                .context(|| format!("locking session {}", s.id))
                .map_err(failed)?;
            if !locked {
                let holder = self.lock_holder(&s.id).map_err(failed)?;
                return Err(KeptBecause::Held {
                    session: s.id.clone(),
                    holder: holder.unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Writes session `info` alone in the export format to `out`: its
    /// header line, then one line per entry, whole, in seq order. Returns
    /// the entries written. The caller holds the session's lock, so the
    /// entries read page by page are one history.
    fn export_alone(&self, info: &SessionInfo, out: &mut dyn Write) -> Result<u64> {
        let io = |e: std::io::Error| StoreError::Io {
            context: "writing the export".to_owned(),
            source: e,
        };
        writeln!(out, "{}", header_line(info)).map_err(io)?;
        let id_json = serde_json::Value::from(info.id.as_str()).to_string();
        let mut after = Seq::ZERO;
        let mut written = 0u64;
        loop {
            let page = self.entries_after(&info.id, after, ARCHIVE_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for c in &page {
                writeln!(
                    out,
                    "{{\"session_id\":{id_json},\"seq\":{},\"entry\":{}}}",
                    c.seq,
                    c.entry.to_json()
                )
                .map_err(io)?;
                written += 1;
            }
        }
        out.flush().map_err(io)?;
        Ok(written)
    }

    /// The space the store's tables take now, indexes and TOAST included
    /// (`pg_total_relation_size` of every table in the store's schema),
    /// in the SQLite report's shape: `file_bytes` is that total, `pages` it
    /// in blocks of `page_size`, `free_pages` 0 (PostgreSQL keeps free space
    /// inside its pages for reuse; see the module docs).
    pub fn space_usage(&self) -> Result<SpaceUsage> {
        self.read_with(|client| {
            let ctx = || format!("measuring {}", self.location);
            let row = client
                .query_one(
                    "SELECT current_setting('block_size')::bigint, \
                       coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                     FROM pg_class AS c \
                     WHERE c.relnamespace = current_schema()::regnamespace \
                       AND c.relkind IN ('r', 'p', 'm')",
                    &[],
                )
                .context(ctx)?;
            let block: i64 = row.try_get(0).context(ctx)?;
            let bytes: i64 = row.try_get(1).context(ctx)?;
            let (block, bytes) = (count(block).max(1), count(bytes));
            Ok(SpaceUsage {
                page_size: block,
                pages: bytes.div_ceil(block),
                free_pages: 0,
                file_bytes: bytes,
            })
        })
    }
}

/// Checks that each session of `unit` is still as it was listed.
fn unchanged(client: &mut Client, unit: &[SessionInfo]) -> std::result::Result<(), KeptBecause> {
    for s in unit {
        match read_session(client, &s.id) {
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
            Err(e) => return Err(KeptBecause::Failed(e.to_string())),
        }
    }
    Ok(())
}

fn ids(unit: &[SessionInfo]) -> Vec<&str> {
    unit.iter().map(|s| s.id.as_str()).collect()
}

/// What deleting `unit` frees: its entries, their bytes (bodies and
/// payload references, as on SQLite), its shares, and the payloads nothing
/// outside it and `gone` references.
fn measure(
    client: &mut Client,
    unit: &[SessionInfo],
    gone: &HashSet<SessionId>,
) -> std::result::Result<Removed, KeptBecause> {
    let ids = ids(unit);
    let mut ignored = ids.clone();
    ignored.extend(gone.iter().map(SessionId::as_str));
    let mut run = || -> std::result::Result<Removed, postgres::Error> {
        let row = client.query_one(
            "SELECT count(*), coalesce(sum(octet_length(body::text) \
               + coalesce(octet_length(payloads::text), 0)), 0)::bigint \
             FROM entries WHERE session_id = ANY($1)",
            &[&ids],
        )?;
        let (entries, entry_bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let shares: i64 = client
            .query_one(
                "SELECT count(*) FROM shares WHERE session_id = ANY($1)",
                &[&ids],
            )?
            .try_get(0)?;
        let row = client.query_one(
            "SELECT count(*), coalesce(sum(p.size), 0)::bigint FROM payloads AS p \
             WHERE p.hash IN ( \
               SELECT r ->> 'hash' FROM entries AS e, json_array_elements(e.payloads) AS r \
               WHERE e.session_id = ANY($1) AND e.payloads IS NOT NULL) \
             AND NOT EXISTS (SELECT 1 FROM payload_refs AS x \
               WHERE x.hash = p.hash AND NOT (x.session_id = ANY($2)))",
            &[&ids, &ignored],
        )?;
        let (payloads, payload_bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        Ok(Removed {
            sessions: unit.to_vec(),
            entries: count(entries),
            entry_bytes: count(entry_bytes),
            shares: count(shares),
            payloads: count(payloads),
            payload_bytes: count(payload_bytes),
            archives: Vec::new(),
        })
    };
    run()
        .context(|| format!("measuring session {}", unit[0].id))
        .map_err(|e| KeptBecause::Failed(e.to_string()))
}

/// Deletes `unit` in one transaction on `client` (which holds the unit's
/// locks): locks its session rows and checks that none moved and that no
/// session outside it descends from it, then deletes its shares, its
/// entries and session rows (children first) and the payloads no remaining
/// entry references. Sets the counts of `removed` to what was deleted.
fn delete_unit(
    client: &mut Client,
    unit: &[SessionInfo],
    removed: &mut Removed,
) -> std::result::Result<(), KeptBecause> {
    let ctx = || format!("deleting session {}", unit[0].id);
    let failed = |e: StoreError| KeptBecause::Failed(e.to_string());
    let ids = ids(unit);
    let mut tx = client.transaction().context(ctx).map_err(failed)?;
    for s in unit {
        let row = tx
            .query_opt(
                "SELECT n.updated_at, n.last_seq, n.entry_count FROM sessions AS s, sessions_now AS n \
                 WHERE s.id = $1 AND n.id = s.id FOR UPDATE OF s",
                &[&s.id.as_str()],
            )
            .context(ctx)
            .map_err(failed)?;
        let now = row
            .map(
                |r| -> std::result::Result<(i64, i64, i64), postgres::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                },
            )
            .transpose()
            .context(ctx)
            .map_err(failed)?;
        let was = (s.updated_at, s.last_seq.get(), s.entry_count);
        if now.map(|(u, l, c)| (count(u), count(l), count(c))) != Some(was) {
            return Err(KeptBecause::Changed(format!(
                "session {} changed while it was archived",
                s.id
            )));
        }
    }
    let outside: Vec<String> = tx
        .query(
            "SELECT id FROM sessions WHERE parent_id = ANY($1) AND NOT (id = ANY($1)) \
             ORDER BY id",
            &[&ids],
        )
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
        .context(ctx)
        .map_err(failed)?;
    if !outside.is_empty() {
        return Err(KeptBecause::Changed(format!(
            "new descendants appeared: {}",
            outside.join(", ")
        )));
    }
    let mut run = || -> std::result::Result<(u64, u64, u64, u64), postgres::Error> {
        let hashes: Vec<String> = tx
            .query(
                "SELECT DISTINCT r ->> 'hash' \
                 FROM entries AS e, json_array_elements(e.payloads) AS r \
                 WHERE e.session_id = ANY($1) AND e.payloads IS NOT NULL",
                &[&ids],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let shares = tx.execute("DELETE FROM shares WHERE session_id = ANY($1)", &[&ids])?;
        let mut entries = 0u64;
        // Children before parents: the unit lists each after its parent.
        for s in unit.iter().rev() {
            entries += tx.execute(
                "DELETE FROM entries WHERE session_id = $1",
                &[&s.id.as_str()],
            )?;
            tx.execute("DELETE FROM sessions WHERE id = $1", &[&s.id.as_str()])?;
        }
        let (mut payloads, mut payload_bytes) = (0u64, 0u64);
        for hash in &hashes {
            let size = tx.query_opt(
                "DELETE FROM payloads WHERE hash = $1 \
                 AND NOT EXISTS (SELECT 1 FROM payload_refs WHERE hash = $1) \
                 RETURNING size",
                &[hash],
            )?;
            if let Some(row) = size {
                let size: i64 = row.try_get(0)?;
                payloads += 1;
                payload_bytes += count(size);
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

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
