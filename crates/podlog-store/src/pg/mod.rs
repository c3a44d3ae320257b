//! The store on PostgreSQL: [`PgStore`], the same sessions and entries as
//! the SQLite [`Store`](crate::Store), for pods spread over many hosts.
//!
//! # Contract
//!
//! * **One store per schema.** [`PgStore::open`] connects to the URL given
//!   (`postgres://user@host:port/db`, with `?options=-csearch_path%3D<schema>`
//!   to pick a schema other than `public`) and keeps everything in the
//!   connection's current schema, which must exist. It migrates that schema
//!   to [`SCHEMA_VERSION`] (see [`migrate`]) and refuses one written by a
//!   newer podlog before anything is written, with the SQLite store's
//!   [`StoreError::TooNew`].
//! * **Same rows, same reads.** Entries are redacted and rendered by the
//!   functions the SQLite store uses (large strings out of line, secrets
//!   replaced before the row), stored as `json` text that reads back byte
//!   for byte, and read back through the same checks: a row that does not
//!   decode, or a gap in seq, is an error naming its session and seq (see
//!   [`read`]).
//! * **Disk is the gate; one writer per session, across hosts.** Appends go
//!   through a [`PgSessionWriter`], which holds the session's advisory lock
//!   on the store's write connection and publishes an entry only after its
//!   transaction committed (see [`writer`]); appends of several sessions
//!   that arrive together share a transaction (see [`link`]).
//! * **Following.** Every commit that adds an entry sends a notification
//!   carrying `<session>:<seq>` only; [`PgStore::listen`] receives them
//!   (see [`listen`]).
//! * **Connections.** Every connection is named `podlog pid=<pid>
//!   host=<host>` (`application_name`), so a lock holder can be named from
//!   `pg_stat_activity`, and runs with `synchronous_commit` on
//!   ([`Synchronous::Full`], the default) or off ([`Synchronous::Normal`]:
//!   the last commits may be lost if the server crashes) and a
//!   `lock_timeout` of [`StoreOptions::busy_timeout`]. Reads and session
//!   creation share a small pool; each writer and each listener has a
//!   connection of its own. A read whose pooled connection turns out to be
//!   closed (the server ended it, restarted or failed over) runs once more
//!   on a new connection; a write is never run twice, and fails instead.
//!   Connections are made without TLS.
//! * **Redaction** follows the `redaction` row of `settings` (on when
//!   absent). The key lives in a file on the host, not in the database (so
//!   a copy of the database alone cannot confirm a guessed secret): by
//!   default `postgres.redaction-key` in podlog's data folder, with user
//!   patterns from `postgres.redact.toml` beside it; hosts that write one
//!   database should share that file for markers to match across hosts.

mod announce;
mod client;
mod indexer;
mod listen;
pub mod migrate;
mod read;
pub mod retention;
pub mod search;
mod writer;

mod lifecycle;
mod link;
#[cfg(test)]
mod parity_tests;
mod settings;
mod shares;

mod jsonl;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use client::PgClient;
use podlog_entry::{Committed, EntryRef, LogEntry, Seq, SessionId};
use podlog_redact::Redactor;
use podlog_sink::SessionLogSink;
use postgres::{Client, Config, NoTls, Row};

use crate::payloads::Rendered;
use crate::redaction::{prepare, redact_title};
use crate::{
    stored_id, NewSession, Origin, Result, SessionInfo, StoreError, StoreOptions, Synchronous,
};

pub use listen::{Notice, PgListener};
pub use migrate::SCHEMA_VERSION;
pub use writer::PgSessionWriter;

/// Adds a context to a PostgreSQL result.
pub(crate) trait PgContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, postgres::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Postgres {
            context: context(),
            source,
        })
    }
}

/// The most read connections kept open between reads.
const POOL: usize = 8;

/// A podlog store in one schema of a PostgreSQL database. Share it between
/// threads behind an `Arc`. See the module docs.
pub struct PgStore {
    config: Config,
    /// Server, database and schema, for messages (never the password).
    location: String,
    /// The schema the store lives in.
    schema: String,
    /// The notification channel of this store's commits.
    channel: String,
    options: StoreOptions,
    pool: Mutex<Vec<PgClient>>,
    /// The redactor in force, `None` when redaction is switched off; see
    /// [`settings`].
    redactor: Mutex<Option<Arc<Redactor>>>,
    /// Where the redaction key and user patterns are: `<key_base>.redaction-key`
    /// and `<key_base>.redact.toml`.
    key_base: PathBuf,
    /// Indexes committed appends for search (see [`indexer`]).
    indexer: indexer::Indexer,
    /// The connection session writers lock and append through (see
    /// [`link`]); declared after `indexer`, so it closes last.
    link: link::WriteLink,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Which session columns every read selects, in [`session_from_row`]'s
/// order.
const SESSION_COLUMNS: &str =
    "id, origin, parent_id, parent_seq, created_at, updated_at, last_seq, entry_count, title, \
     redactions, stored_bytes";

/// The host name, where the system makes it cheap to read.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// This process's `application_name`: `podlog pid=<pid> host=<host>`. The
/// pid comes first because the server cuts names at 63 bytes, and a cut
/// host name still names the host where a cut pid names no process.
pub(crate) fn application_name() -> String {
    let mut name = format!("podlog pid={}", std::process::id());
    if let Some(host) = host_name() {
        name.push_str(" host=");
        name.push_str(&host);
    }
    name
}

/// `postgres://user@host:port/db`: where `config` points, without the
/// password.
fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() { "" } else { "@" };
    format!("postgres://{user}{at}{host}:{port}/{db}")
}

/// The notification channel of the store in `schema`: `podlog` for the
/// `public` schema, `podlog.<schema>` for another, so stores in one
/// database do not wake each other's followers. Channel names are at most
/// 63 bytes.
fn channel_of(schema: &str) -> Option<String> {
    let channel = if schema == "public" {
        "podlog".to_owned()
    } else {
        format!("podlog.{schema}")
    };
    (channel.len() <= 63).then_some(channel)
}

/// A 64-bit advisory lock key: the first 8 bytes of the BLAKE3 hash of
/// `parts`, each ended by a NUL byte.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(b"\0");
    }
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

/// A stored counter or time, which the schema keeps at 0 or more; a
/// negative one is a row edited behind podlog's back.
fn unsigned(value: i64, column: &str, session: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::CorruptSession {
        session: stored_id(session),
        problem: format!("{column} is {value}"),
    })
}

/// A number for a `bigint` column; one beyond it is refused, not cut.
fn signed(value: u64, what: &str, session: &SessionId, kind: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Rejected {
        session: session.clone(),
        kind: kind.to_owned(),
        reason: format!("{what} {value} is beyond what the database stores"),
    })
}

/// Reads a session row selected with [`SESSION_COLUMNS`]: an unknown
/// origin or a negative counter is [`StoreError::CorruptSession`] naming
/// the session, never read as something else.
fn session_from_row(row: &Row) -> Result<SessionInfo> {
    let id: String = row.try_get(0).context(|| "reading a session row".into())?;
    let ctx = || format!("reading session {}", stored_id(&id));
    let origin: String = row.try_get(1).context(ctx)?;
    let parent_id: Option<String> = row.try_get(2).context(ctx)?;
    let parent_seq: Option<i64> = row.try_get(3).context(ctx)?;
    let number = |i: usize, column: &str| -> Result<u64> {
        let value: i64 = row.try_get(i).context(ctx)?;
        unsigned(value, column, &id)
    };
    let Some(origin) = Origin::parse(&origin) else {
        return Err(StoreError::CorruptSession {
            session: stored_id(&id),
            problem: format!("unknown origin {origin:?}"),
        });
    };
    let parent = match (parent_id, parent_seq) {
        (Some(p), Some(s)) => Some(EntryRef {
            session_id: stored_id(&p),
            seq: Seq(unsigned(s, "parent_seq", &id)?),
        }),
        _ => None,
    };
    Ok(SessionInfo {
        id: stored_id(&id),
        origin,
        parent,
        created_at: number(4, "created_at")?,
        updated_at: number(5, "updated_at")?,
        last_seq: Seq(number(6, "last_seq")?),
        entry_count: number(7, "entry_count")?,
        title: row.try_get(8).context(ctx)?,
        redactions: number(9, "redactions")?,
        stored_bytes: number(10, "stored_bytes")?,
    })
}

impl PgStore {
    /// Opens the store at `url` (see the module docs for the URL), with the
    /// redaction key in podlog's data folder, and migrates it.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let base = crate::default_path()?.with_file_name("postgres");
        Self::open_with_key(url, options, &base)
    }

    /// [`PgStore::open`] with the redaction key at `<key_base>.redaction-key`
    /// and user patterns at `<key_base>.redact.toml`.
    pub fn open_with_key(url: &str, options: &StoreOptions, key_base: &Path) -> Result<Self> {
        let mut config: Config = url
            .parse()
            .context(|| "reading the PostgreSQL URL".to_owned())?;
        config.application_name(&application_name());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.busy_timeout);
        }
        // The same settings for the write connection, which speaks to the
        // server through the asynchronous client (`pg/link.rs`).
        let mut link_config: tokio_postgres::Config = url
            .parse()
            .context(|| "reading the PostgreSQL URL".to_owned())?;
        link_config.application_name(application_name());
        if link_config.get_connect_timeout().is_none() {
            link_config.connect_timeout(options.busy_timeout);
        }
        let server = describe(&config);
        if options.busy_timeout.is_zero() {
            return Err(StoreError::Open {
                path: server.into(),
                reason: "busy timeout must not be zero".to_owned(),
            });
        }
        let mut client = connect(&config, options, &server)?;
        let row = client
            .query_one(
                "SELECT current_schema(), current_setting('server_encoding')",
                &[],
            )
            .context(|| format!("reading the schema of {server}"))?;
        let schema: Option<String> = row
            .try_get(0)
            .context(|| format!("reading the schema of {server}"))?;
        let encoding: String = row
            .try_get(1)
            .context(|| format!("reading the encoding of {server}"))?;
        let Some(schema) = schema else {
            return Err(StoreError::Open {
                path: server.into(),
                reason: "no schema of the search_path exists; create it first".to_owned(),
            });
        };
        let location = format!("{server} schema {schema}");
        if !encoding.eq_ignore_ascii_case("UTF8") {
            return Err(StoreError::Open {
                path: location.into(),
                reason: format!("the database's encoding is {encoding}; podlog needs UTF8"),
            });
        }
        let Some(channel) = channel_of(&schema) else {
            return Err(StoreError::Open {
                path: location.into(),
                reason: "the schema name is too long for a notification channel \
                         (56 bytes at most)"
                    .to_owned(),
            });
        };
        migrate::migrate(&mut client, &schema, &location)?;
        let setting = client
            .query_opt(
                "SELECT value FROM settings WHERE name = $1",
                &[&crate::redaction::SETTING],
            )
            .context(|| format!("reading the redaction setting of {location}"))?;
        let on = match setting {
            Some(row) => {
                let value: String = row
                    .try_get(0)
                    .context(|| format!("reading the redaction setting of {location}"))?;
                value != "off"
            }
            None => true,
        };
        let redactor = if on {
            Some(Arc::new(crate::redaction::build(key_base)?))
        } else {
            None
        };
        let indexer = indexer::Indexer::new(indexer::Target {
            config: config.clone(),
            options: options.clone(),
            location: location.clone(),
        });
        let link = link::WriteLink::new(link::LinkTarget {
            config: link_config,
            options: options.clone(),
            location: location.clone(),
            channel: channel.clone(),
        });
        Ok(Self {
            config,
            location,
            schema,
            channel,
            options: options.clone(),
            pool: Mutex::new(vec![client]),
            redactor: Mutex::new(redactor),
            key_base: key_base.to_owned(),
            indexer,
            link,
        })
    }

    /// Server, database and schema: `postgres://user@host:port/db schema s`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Has the indexer index `session`'s entries up to `seq`, committed by
    /// its writer unindexed (see [`indexer`]).
    pub(crate) fn index_later(&self, session: &str, seq: i64) {
        self.indexer.committed(session, seq);
    }

    /// The redaction key is `<key_base>.redaction-key`, the user patterns
    /// `<key_base>.redact.toml`.
    pub fn key_base(&self) -> &Path {
        &self.key_base
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The channel commits are announced on (see [`listen`]).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The redactor in force, `None` when redaction is switched off.
    pub fn redactor(&self) -> Option<Arc<Redactor>> {
        self.redactor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Milliseconds from the store's clock.
    pub fn now(&self) -> u64 {
        self.options.clock.now_millis()
    }

    /// A new connection with podlog's settings.
    pub(crate) fn connect(&self) -> Result<PgClient> {
        connect(&self.config, &self.options, &self.location)
    }

    /// Runs `f` on a pooled connection (opening one if none is free). A
    /// connection that closed is not put back. For writes: `f` runs once.
    fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut client = self.take_client()?;
        let out = f(&mut client);
        self.put_back(client);
        out
    }

    /// [`PgStore::with_client`] for a read, which changes nothing and so
    /// may run twice: when it fails because its pooled connection had
    /// closed (the server ended it, restarted or failed over while it sat
    /// in the pool, which the client learns only by using it), it runs
    /// once more on a new connection.
    fn read_with<T>(&self, f: impl Fn(&mut Client) -> Result<T>) -> Result<T> {
        let mut client = self.take_client()?;
        let mut out = f(&mut client);
        if out.is_err() && client.is_closed() {
            client = self.connect()?;
            out = f(&mut client);
        }
        self.put_back(client);
        out
    }

    fn take_client(&self) -> Result<PgClient> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.connect(),
        }
    }

    fn put_back(&self, client: PgClient) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL && !client.is_closed() {
            pool.push(client);
        }
    }

    /// The server processes of the pooled connections.
    #[cfg(test)]
    pub(crate) fn pooled_backends(&self) -> Vec<i32> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.iter_mut()
            .filter_map(|c| c.query_one("SELECT pg_backend_pid()", &[]).ok())
            .map(|row| row.get(0))
            .collect()
    }

    /// Creates a session and writes its `SessionStart` as seq 1, in one
    /// transaction that also announces `<id>:1`. Returns the new id and the
    /// committed `SessionStart`, for seeding the session's sink.
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
        let kind = start.kind().to_owned();
        let redactor = self.redactor();
        let prepared =
            prepare(redactor.as_deref(), start).map_err(|reason| StoreError::Rejected {
                session: id.clone(),
                kind: kind.clone(),
                reason,
            })?;
        let (title, title_redactions) = redact_title(redactor.as_deref(), new.title);
        let now = signed(now, "time", &id, &kind)?;
        let redactions = signed(
            prepared.redactions.total() + title_redactions,
            "redaction count",
            &id,
            &kind,
        )?;
        let bytes = signed(prepared.rendered.stored_bytes(), "size", &id, &kind)?;
        let row = EntryRow::new(&id, Seq::FIRST, &prepared.entry, &prepared.rendered)?;
        self.with_client(|client| {
            let ctx = || format!("creating session {id}");
            let mut tx = client.transaction().context(ctx)?;
            tx.execute(
                "INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, \
                 entry_count, title, redactions, stored_bytes) \
                 VALUES ($1, 'new', $2, $2, 1, 1, $3, $4, $5)",
                &[&id.as_str(), &now, &title, &redactions, &bytes],
            )
            .context(ctx)?;
            row.insert(&mut tx).context(ctx)?;
            notify(&mut tx, &self.channel, &id, Seq::FIRST).context(ctx)?;
            tx.commit().context(ctx)
        })?;
        Ok((
            id.clone(),
            prepared.rendered.committed(Seq::FIRST, &prepared.entry),
        ))
    }

    /// The session row `id`. Fails with [`StoreError::UnknownSession`] if
    /// there is none, and with [`StoreError::CorruptSession`] if it names an
    /// unknown origin.
    pub fn session(&self, id: &SessionId) -> Result<SessionInfo> {
        self.read_with(|client| read_session(client, id))
    }

    /// Every session, newest first, from the session rows' counters (no
    /// entry is read). As with [`crate::Store::sessions`], a corrupt row is
    /// listed in its place as the error a read of it fails with; the outer
    /// `Err` is the listing itself failing.
    pub fn sessions(&self) -> Result<Vec<Result<SessionInfo>>> {
        self.read_with(|client| {
            let rows = client
                .query(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions_now \
                         ORDER BY created_at DESC, id DESC"
                    ),
                    &[],
                )
                .context(|| "listing sessions".to_owned())?;
            Ok(rows.iter().map(session_from_row).collect())
        })
    }

    /// Loads `session` into a fresh sink (entries in the form the mirror
    /// carries), for restoring a pod before any subscriber exists.
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
}

/// Opens one connection to `config` and gives it podlog's settings.
fn connect(config: &Config, options: &StoreOptions, location: &str) -> Result<PgClient> {
    let mut client = PgClient::new(
        config
            .connect(NoTls)
            .context(|| format!("connecting to {location}"))?,
    );
    let sync = match options.synchronous {
        Synchronous::Full => "on",
        Synchronous::Normal => "off",
    };
    let lock_timeout = format!("{}ms", options.busy_timeout.as_millis().max(1));
    client
        .execute(
            "SELECT set_config('synchronous_commit', $1, false), \
             set_config('lock_timeout', $2, false)",
            &[&sync, &lock_timeout],
        )
        .context(|| format!("setting up a connection to {location}"))?;
    Ok(client)
}

/// The session row `id`, read on `client`.
fn read_session(client: &mut Client, id: &SessionId) -> Result<SessionInfo> {
    let row = client
        .query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions_now WHERE id = $1"),
            &[&id.as_str()],
        )
        .context(|| format!("reading session {id}"))?
        .ok_or_else(|| StoreError::UnknownSession(id.to_string()))?;
    session_from_row(&row)
}

/// Inserts a payload; one already stored (same hash, so same text) stays.
const INSERT_PAYLOAD: &str = "INSERT INTO payloads (hash, size, text) VALUES ($1, $2, $3) \
     ON CONFLICT (hash) DO NOTHING";

/// Inserts an entry row; `body` and `payloads` are bound as text and kept
/// as written.
const INSERT_ENTRY: &str = "INSERT INTO entries (session_id, seq, ts, kind, body, payloads) \
     VALUES ($1, $2, $3, $4, $5::text::json, $6::text::json)";

/// An entry row ready to insert: its values already checked to fit the
/// columns.
pub(crate) struct EntryRow<'a> {
    session: &'a SessionId,
    seq: i64,
    ts: i64,
    kind: &'a str,
    body: &'a str,
    refs: Option<String>,
    payloads: Vec<(&'a str, i64, &'a str)>,
}

impl<'a> EntryRow<'a> {
    pub(crate) fn new(
        session: &'a SessionId,
        seq: Seq,
        entry: &'a LogEntry,
        rendered: &'a Rendered,
    ) -> Result<Self> {
        let kind = entry.kind();
        let mut payloads = Vec::with_capacity(rendered.refs.len());
        for (r, text) in rendered.refs.iter().zip(&rendered.texts) {
            payloads.push((
                r.hash.as_str(),
                signed(r.size, "payload size", session, kind)?,
                text.as_str(),
            ));
        }
        Ok(EntryRow {
            session,
            seq: signed(seq.get(), "seq", session, kind)?,
            ts: signed(entry.ts(), "ts", session, kind)?,
            kind,
            body: &rendered.body,
            refs: rendered.refs_json(),
            payloads,
        })
    }

    /// Writes the payloads, then the entry row (so no committed entry names
    /// a payload that is not stored). The caller holds a transaction.
    pub(crate) fn insert(
        &self,
        tx: &mut postgres::Transaction<'_>,
    ) -> std::result::Result<(), postgres::Error> {
        for (hash, size, text) in &self.payloads {
            tx.execute(INSERT_PAYLOAD, &[hash, size, text])?;
        }
        tx.execute(
            INSERT_ENTRY,
            &[
                &self.session.as_str(),
                &self.seq,
                &self.ts,
                &self.kind,
                &self.body,
                &self.refs,
            ],
        )?;
        Ok(())
    }
}

/// Announces `<session>:<seq>` on `channel`, inside the caller's
/// transaction: the server delivers it at commit, and never if the
/// transaction rolls back.
fn notify(
    tx: &mut postgres::Transaction<'_>,
    channel: &str,
    session: &SessionId,
    seq: Seq,
) -> std::result::Result<(), postgres::Error> {
    let payload = format!("{session}:{seq}");
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
