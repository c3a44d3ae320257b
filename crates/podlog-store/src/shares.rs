//! Read-only share links: [`SqliteStore::create_share`], [`SqliteStore::list_shares`],
//! [`SqliteStore::revoke_share`] and [`SqliteStore::check_share`].
//!
//! # Contract
//!
//! * **Scope.** A share names one session, and only that one: a compaction
//!   or fork of it made later is a new session with its own id, and is not
//!   readable with the share's token (share it again to hand it on).
//! * **The token is never stored.** It is 32 bytes from the system's random
//!   source, URL-safe base64 without padding (43 characters), returned once
//!   by [`SqliteStore::create_share`]. The table keeps its BLAKE3 hash; a check
//!   hashes the token presented, finds the row by that hash, and compares
//!   the two hashes with [`blake3::Hash`]'s constant-time equality. Finding
//!   the row by its index can take a time that depends on the hash, which
//!   tells an attacker nothing about any token.
//! * **Expiry and revocation are final.** A share whose `expires_at` is at
//!   or before the store clock's now, or whose `revoked_at` is set, checks
//!   as inactive. Revoking keeps the row, so a listing says what became of
//!   the link; revoking twice is not an error and keeps the first time.

use std::io::Read;
use std::time::Duration;

use podlog_entry::SessionId;
use rusqlite::{params, OptionalExtension};

use crate::error::Context;
use crate::{stored_id, Result, SqliteStore, StoreError};

/// A share as stored (never its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareInfo {
    /// The share's id: 16 hexadecimal digits, not secret.
    pub id: String,
    /// The one session the share's token may read.
    pub session_id: SessionId,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// When the token stops working; `None`: never.
    pub expires_at: Option<u64>,
    /// When the share was revoked.
    pub revoked_at: Option<u64>,
}

/// Where a share is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareState {
    Active,
    Expired,
    Revoked,
}

impl ShareState {
    /// `active`, `expired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareState::Active => "active",
            ShareState::Expired => "expired",
            ShareState::Revoked => "revoked",
        }
    }
}

impl ShareInfo {
    /// The share's state at `now` (milliseconds). Revoked wins over expired.
    pub fn state(&self, now: u64) -> ShareState {
        if self.revoked_at.is_some() {
            ShareState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            ShareState::Expired
        } else {
            ShareState::Active
        }
    }
}

/// What a presented token turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareCheck {
    /// No share has this token.
    Unknown,
    /// The share of this token, revoked or expired.
    Inactive(ShareInfo, ShareState),
    /// The share of this token, in force.
    Active(ShareInfo),
}

/// A share's secret token, as handed to whoever gets the link. Its `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareToken(String);

impl ShareToken {
    /// The token's text, to put in a URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareToken(<hidden>)")
    }
}

fn share_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ShareInfo> {
    Ok(ShareInfo {
        id: row.get(0)?,
        session_id: stored_id(&row.get::<_, String>(1)?),
        created_at: row.get(2)?,
        expires_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

/// `n` bytes from the system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| StoreError::Io {
            context: "reading the system's random source /dev/urandom".to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// URL-safe base64 without padding (RFC 4648 §5).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The hash stored for `token`: BLAKE3 of its text.
pub(crate) fn token_hash(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

impl SqliteStore {
    /// Creates a share of `session` (its id or an unambiguous prefix) that
    /// expires `expires` from now (`None`: never). Returns the share and
    /// its token, which is not stored and cannot be shown again.
    pub fn create_share(
        &self,
        session: &str,
        expires: Option<Duration>,
    ) -> Result<(ShareInfo, ShareToken)> {
        let session = self.resolve(session)?;
        let token = ShareToken(base64_url(&random_bytes::<32>()?));
        let id: String = random_bytes::<8>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = self.now();
        let expires_at =
            expires.map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        let hash = token_hash(token.expose()).to_hex().to_string();
        let conn = self.writer();
        conn.execute(
            "INSERT INTO shares (id, session_id, token_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, session.as_str(), hash, now, expires_at],
        )
        .context(|| format!("creating a share of session {session}"))?;
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
        self.with_reader(|conn| {
            let ctx = || "listing shares".to_owned();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, session_id, created_at, expires_at, revoked_at FROM shares \
                     ORDER BY created_at DESC, id",
                )
                .context(ctx)?;
            let rows = stmt.query_map([], share_from_row).context(ctx)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context(ctx)
        })
    }

    /// The share `id`.
    pub fn share(&self, id: &str) -> Result<ShareInfo> {
        self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT id, session_id, created_at, expires_at, revoked_at FROM shares \
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row([id], share_from_row).optional())
            .context(|| format!("reading share {id}"))?
            .ok_or_else(|| StoreError::UnknownShare(id.to_owned()))
        })
    }

    /// Revokes the share `id` now: its token stops working at once. A
    /// share revoked before keeps its first revocation time. Fails with
    /// [`StoreError::UnknownShare`] if there is no such share.
    pub fn revoke_share(&self, id: &str) -> Result<ShareInfo> {
        let now = self.now();
        let changed = self
            .writer()
            .execute(
                "UPDATE shares SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .context(|| format!("revoking share {id}"))?;
        let info = self.share(id)?;
        debug_assert!(changed <= 1);
        Ok(info)
    }

    /// What `token` is: the share it belongs to and whether that share is in
    /// force now, or [`ShareCheck::Unknown`]. Hashes the token, finds the
    /// row by the hash, and compares the hashes in constant time.
    pub fn check_share(&self, token: &str) -> Result<ShareCheck> {
        let presented = token_hash(token);
        let found = self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT id, session_id, created_at, expires_at, revoked_at, token_hash \
                 FROM shares WHERE token_hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([presented.to_hex().as_str()], |row| {
                    Ok((share_from_row(row)?, row.get::<_, String>(5)?))
                })
                .optional()
            })
            .context(|| "looking up a share token".to_owned())
        })?;
        let Some((info, stored)) = found else {
            return Ok(ShareCheck::Unknown);
        };
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

    /// The ids among `ids` of shares that are in force now, in one query:
    /// how a server notices, for its open streams, that a share was revoked
    /// or expired.
    pub fn active_shares(&self, ids: &[String]) -> Result<Vec<String>> {
        let list = serde_json::to_string(ids).expect("a list of strings serialises");
        let now = self.now();
        self.with_reader(|conn| {
            let ctx = || "reading which shares are in force".to_owned();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM shares WHERE id IN (SELECT value FROM json_each(?1)) \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
                )
                .context(ctx)?;
            let rows = stmt
                .query_map(params![list, now], |r| r.get::<_, String>(0))
                .context(ctx)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context(ctx)
        })
    }

    /// Whether an entry of `session` references the payload `hash`: the
    /// payloads a share of `session` may read.
    pub fn session_references_payload(&self, session: &SessionId, hash: &str) -> Result<bool> {
        self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM entries AS e, json_each(e.payloads) AS r \
                 WHERE e.session_id = ?1 AND e.payloads IS NOT NULL \
                 AND json_extract(r.value, '$.hash') = ?2)",
            )
            .and_then(|mut s| s.query_row(params![session.as_str(), hash], |r| r.get(0)))
            .context(|| format!("looking for payload {hash} in session {session}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use podlog_entry::Clock;

    use super::*;
    use crate::{NewSession, SequentialIds, StoreOptions};

    /// A clock the test moves by hand.
    struct HandClock(AtomicU64);

    impl Clock for HandClock {
        fn now_millis(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        store: SqliteStore,
        clock: Arc<HandClock>,
        session: SessionId,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shares.db");
        let clock = Arc::new(HandClock(AtomicU64::new(1_700_000_000_000)));
        let store = SqliteStore::open(
            &path,
            StoreOptions {
                clock: clock.clone(),
                ids: Arc::new(SequentialIds::new("s")),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let (session, _) = store.create_session(NewSession::default()).unwrap();
        Fixture {
            _dir: dir,
            path,
            store,
            clock,
            session,
        }
    }

    fn sql(path: &std::path::Path, query: &str) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn.prepare(query).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows
    }

    #[test]
    fn only_the_tokens_hash_is_stored_and_the_token_checks_as_its_share() {
        let f = fixture();
        let (info, token) = f.store.create_share("s-00", None).unwrap();
        assert_eq!(info.session_id, f.session, "a prefix names the session");
        assert_eq!(info.expires_at, None);
        assert_eq!(info.id.len(), 16);
        assert_eq!(token.expose().len(), 43);
        assert!(token
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(!format!("{token:?}").contains(token.expose()));

        let stored = sql(&f.path, "SELECT token_hash FROM shares");
        assert_eq!(
            stored,
            [blake3::hash(token.expose().as_bytes()).to_hex().to_string()]
        );
        // The token's text is nowhere in the file.
        drop(f.store.checkpoint());
        let bytes = std::fs::read(&f.path).unwrap();
        let needle = token.expose().as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));

        assert_eq!(
            f.store.check_share(token.expose()).unwrap(),
            ShareCheck::Active(info.clone())
        );
        let (_, other) = f.store.create_share(f.session.as_str(), None).unwrap();
        assert_ne!(other, token, "every share gets its own token");
        assert_eq!(f.store.check_share("nope").unwrap(), ShareCheck::Unknown);
        let mut near = token.expose().to_owned();
        near.pop();
        near.push('A');
        if near == token.expose() {
            near.pop();
            near.push('B');
        }
        assert_eq!(f.store.check_share(&near).unwrap(), ShareCheck::Unknown);
        assert_eq!(f.store.list_shares().unwrap().len(), 2);
    }

    #[test]
    fn a_share_expires_at_its_time_and_not_before() {
        let f = fixture();
        let (info, token) = f
            .store
            .create_share(f.session.as_str(), Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(info.expires_at, Some(info.created_at + 60_000));
        f.clock.0.fetch_add(59_999, Ordering::SeqCst);
        assert!(matches!(
            f.store.check_share(token.expose()).unwrap(),
            ShareCheck::Active(_)
        ));
        assert_eq!(
            f.store
                .active_shares(std::slice::from_ref(&info.id))
                .unwrap(),
            vec![info.id.clone()]
        );
        f.clock.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            f.store.check_share(token.expose()).unwrap(),
            ShareCheck::Inactive(info.clone(), ShareState::Expired)
        );
        assert!(f
            .store
            .active_shares(std::slice::from_ref(&info.id))
            .unwrap()
            .is_empty());
        assert_eq!(info.state(f.store.now()), ShareState::Expired);
    }

    #[test]
    fn a_revoked_share_stays_revoked_and_unknown_ids_are_named() {
        let f = fixture();
        let (info, token) = f.store.create_share(f.session.as_str(), None).unwrap();
        let (kept, _) = f.store.create_share(f.session.as_str(), None).unwrap();
        f.clock.0.fetch_add(5, Ordering::SeqCst);
        let revoked = f.store.revoke_share(&info.id).unwrap();
        assert_eq!(revoked.revoked_at, Some(info.created_at + 5));
        f.clock.0.fetch_add(5, Ordering::SeqCst);
        assert_eq!(
            f.store.revoke_share(&info.id).unwrap(),
            revoked,
            "first time kept"
        );
        assert_eq!(
            f.store.check_share(token.expose()).unwrap(),
            ShareCheck::Inactive(revoked, ShareState::Revoked)
        );
        assert_eq!(
            f.store
                .active_shares(&[info.id.clone(), kept.id.clone(), "x".into()])
                .unwrap(),
            vec![kept.id.clone()]
        );
        let err = f.store.revoke_share("0123").unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownShare(ref id) if id == "0123"),
            "{err}"
        );
        assert!(err.to_string().contains("unknown share 0123"), "{err}");
        let err = f.store.create_share("zzz", None).unwrap_err();
        assert!(matches!(err, StoreError::UnknownSession(_)), "{err}");
    }

    #[test]
    fn the_check_compares_hashes_with_blake3s_constant_time_equality() {
        // `check_share` compares `blake3::Hash` values, whose `==` is the
        // constant-time one; this pins that the stored text round-trips to
        // such a value and that a row whose hash differs is refused.
        let f = fixture();
        let (info, token) = f.store.create_share(f.session.as_str(), None).unwrap();
        let hash = token_hash(token.expose());
        let stored = sql(&f.path, "SELECT token_hash FROM shares");
        assert_eq!(blake3::Hash::from_hex(stored[0].as_bytes()).unwrap(), hash);
        let source = include_str!("shares.rs");
        let check = &source[source.find("pub fn check_share").unwrap()..];
        let check = &check[..check.find("pub fn active_shares").unwrap()];
        assert!(
            check.contains("stored == presented"),
            "compares blake3::Hash values"
        );
        assert!(!check.contains("to_hex() =="), "never compares hex strings");
        // A row changed behind podlog's back to another hash no longer
        // matches the token it was found by.
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        conn.execute(
            "UPDATE shares SET token_hash = ?1 WHERE id = ?2",
            rusqlite::params![blake3::hash(b"other").to_hex().as_str(), info.id],
        )
        .unwrap();
        assert_eq!(
            f.store.check_share(token.expose()).unwrap(),
            ShareCheck::Unknown
        );
    }

    #[test]
    fn base64_url_matches_the_rfc_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_url(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_url(&[0u8; 32]).len(), 43);
    }
}
