//! Read-only share links on PostgreSQL: [`PgStore::create_share`],
//! [`PgStore::list_shares`], [`PgStore::share`], [`PgStore::revoke_share`],
//! [`PgStore::check_share`], [`PgStore::active_shares`] and
//! [`PgStore::session_references_payload`], with the SQLite store's
//! signatures, results and errors.
//!
//! # Contract
//!
//! * **Same scheme.** Ids, tokens and their hashes are made by the SQLite
//!   module's `shares::new_share`: the token (32 random bytes, URL-safe
//!   base64) is returned once and never stored; the `shares` row keeps its
//!   BLAKE3 hash. A check hashes the token presented, finds the row by that
//!   hash, and compares the two as [`blake3::Hash`] values (constant-time
//!   equality), so a row whose stored hash is not the presented one is
//!   [`ShareCheck::Unknown`].
//! * **Same states.** Revoked wins over expired; a share whose `expires_at`
//!   is at or before the store clock's now is expired; revoking keeps the
//!   row and the first revocation time. An unknown share id is
//!   [`StoreError::UnknownShare`]; an unknown session (or an ambiguous
//!   prefix) is the error [`PgStore::resolve`] gives.
//! * **Stored times** are `bigint` milliseconds; one below 0 (a row edited
//!   behind podlog's back) is [`StoreError::CorruptSession`] naming the
//!   share's session, never read as another time.
//! * [`PgStore::session_references_payload`] asks `payload_refs`, which the
//!   schema's triggers keep exact for every entry written or deleted, by
//!   its key: no entry body is read.

use std::time::Duration;

use podlog_entry::SessionId;
use postgres::Row;

use super::{signed, unsigned, PgContext, PgStore};
use crate::shares::{
    new_share, token_hash, NewShare, ShareCheck, ShareInfo, ShareState, ShareToken,
};
use crate::{stored_id, Result, StoreError};

/// The columns [`share_from_row`] reads, in its order.
const SHARE_COLUMNS: &str = "id, session_id, created_at, expires_at, revoked_at";

/// Reads a share row selected with [`SHARE_COLUMNS`].
fn share_from_row(row: &Row) -> Result<ShareInfo> {
    let ctx = || "reading a share row".to_owned();
    let id: String = row.try_get(0).context(ctx)?;
    let session: String = row.try_get(1).context(ctx)?;
    let time = |i: usize, column: &str| -> Result<Option<u64>> {
        let value: Option<i64> = row.try_get(i).context(ctx)?;
        value
            .map(|v| unsigned(v, &format!("share {id}: {column}"), &session))
            .transpose()
    };
    let created: i64 = row.try_get(2).context(ctx)?;
    Ok(ShareInfo {
        created_at: unsigned(created, &format!("share {id}: created_at"), &session)?,
        expires_at: time(3, "expires_at")?,
        revoked_at: time(4, "revoked_at")?,
        session_id: stored_id(&session),
        id,
    })
}

/// A time for a `bigint` column of a share of `session`.
fn share_time(value: u64, what: &str, session: &SessionId) -> Result<i64> {
    signed(value, what, session, "share")
}

impl PgStore {
    /// Creates a share of `session` (its id or an unambiguous prefix) that
    /// expires `expires` from now (`None`: never). Returns the share and
    /// its token, which is not stored and cannot be shown again.
    pub fn create_share(
        &self,
        session: &str,
        expires: Option<Duration>,
    ) -> Result<(ShareInfo, ShareToken)> {
        let session = self.resolve(session)?;
        let now = self.now();
        let NewShare {
            id,
            token,
            hash,
            expires_at,
        } = new_share(now, expires)?;
        let created = share_time(now, "time", &session)?;
        let expires = expires_at
            .map(|at| share_time(at, "expiry", &session))
            .transpose()?;
        self.with_client(|client| {
            client
                .execute(
                    "INSERT INTO shares (id, session_id, token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&id, &session.as_str(), &hash, &created, &expires],
                )
                .context(|| format!("creating a share of session {session}"))
        })?;
        Ok((
            ShareInfo {
                id,
                session_id: session,
                created_at: now,
                expires_at,
                revoked_at: None,
            },
            token,
        ))
    }

    /// Every share, newest first.
    pub fn list_shares(&self) -> Result<Vec<ShareInfo>> {
        let rows = self.read_with(|client| {
            client
                .query(
                    &format!("SELECT {SHARE_COLUMNS} FROM shares ORDER BY created_at DESC, id"),
                    &[],
                )
                .context(|| "listing shares".to_owned())
        })?;
        rows.iter().map(share_from_row).collect()
    }

    /// The share `id`. Fails with [`StoreError::UnknownShare`] if there is
    /// none.
    pub fn share(&self, id: &str) -> Result<ShareInfo> {
        let row = self.read_with(|client| {
            client
                .query_opt(
                    &format!("SELECT {SHARE_COLUMNS} FROM shares WHERE id = $1"),
                    &[&id],
                )
                .context(|| format!("reading share {id}"))
        })?;
        match row {
            Some(row) => share_from_row(&row),
            None => Err(StoreError::UnknownShare(id.to_owned())),
        }
    }

    /// Revokes the share `id` now: its token stops working at once. A
    /// share revoked before keeps its first revocation time. Fails with
    /// [`StoreError::UnknownShare`] if there is no such share.
    pub fn revoke_share(&self, id: &str) -> Result<ShareInfo> {
        let now = self.now();
        let Ok(now) = i64::try_from(now) else {
            return Err(StoreError::Rejected {
                session: self.share(id)?.session_id,
                kind: "share".to_owned(),
                reason: format!("time {now} is beyond what the database stores"),
            });
        };
        self.with_client(|client| {
            client
                .execute(
                    "UPDATE shares SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &now],
                )
                .context(|| format!("revoking share {id}"))
        })?;
        self.share(id)
    }

    /// What `token` is: the share it belongs to and whether that share is in
    /// force now, or [`ShareCheck::Unknown`]. Hashes the token, finds the
    /// row by the hash, and compares the hashes in constant time.
    pub fn check_share(&self, token: &str) -> Result<ShareCheck> {
        let presented = token_hash(token);
        let hex = presented.to_hex();
        let row = self.read_with(|client| {
            client
                .query_opt(
                    &format!(
                        "SELECT {SHARE_COLUMNS}, token_hash FROM shares WHERE token_hash = $1"
                    ),
                    &[&hex.as_str()],
                )
                .context(|| "looking up a share token".to_owned())
        })?;
        let Some(row) = row else {
            return Ok(ShareCheck::Unknown);
        };
        let info = share_from_row(&row)?;
        let stored: String = row
            .try_get(5)
            .context(|| format!("reading share {}", info.id))?;
        // `blake3::Hash`'s `==` takes the same time wherever they differ.
        match blake3::Hash::from_hex(stored.as_bytes()) {
            Ok(stored) if stored == presented => {}
            _ => return Ok(ShareCheck::Unknown),
        }
        Ok(match info.state(self.now()) {
            ShareState::Active => ShareCheck::Active(info),
            state => ShareCheck::Inactive(info, state),
        })
    }

    /// The ids among `ids` of shares that are in force now, in one query
    /// (in id order): how a server notices, for its open streams, that a
    /// share was revoked or expired.
    pub fn active_shares(&self, ids: &[String]) -> Result<Vec<String>> {
        // A now beyond the column's range: every expiry is before it.
        let now = i64::try_from(self.now()).unwrap_or(i64::MAX);
        self.read_with(|client| {
            let ctx = || "reading which shares are in force".to_owned();
            client
                .query(
                    "SELECT id FROM shares WHERE id = ANY($1) \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                     ORDER BY id",
                    &[&ids, &now],
                )
                .context(ctx)?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<std::result::Result<Vec<String>, _>>()
                .context(ctx)
        })
    }

    /// Whether an entry of `session` references the payload `hash`: the
    /// payloads a share of `session` may read.
    pub fn session_references_payload(&self, session: &SessionId, hash: &str) -> Result<bool> {
        self.read_with(|client| {
            let ctx = || format!("looking for payload {hash} in session {session}");
            client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM payload_refs \
                     WHERE hash = $1 AND session_id = $2)",
                    &[&hash, &session.as_str()],
                )
                .context(ctx)?
                .try_get(0)
                .context(ctx)
        })
    }
}
