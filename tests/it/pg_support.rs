//! The PostgreSQL harness of the whole-system tests: a schema of the test's
//! own on the server named by `PODLOG_TEST_PG` (by default
//! `postgres://root@127.0.0.1:5432/test`), a URL that selects it through
//! `search_path`, and the schema dropped, with everything in it, when the
//! test ends. A server that cannot be reached fails the test: nothing is
//! skipped for want of a database. Also `podlog serve --db URL` as a child
//! process, with the address and demo session it announces on stderr.

use std::process::{ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::SessionId;
use podlog_protocol::client::{Client, Endpoint};
use podlog_store::{Location, Store, StoreOptions};
use postgres::NoTls;

use crate::server_cli::{Guard, Lines};

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The server's URL.
pub fn server_url() -> String {
    std::env::var("PODLOG_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema of the test's own, dropped when this goes.
pub struct PgSchema {
    pub admin: postgres::Client,
    pub name: String,
    /// The URL of the schema: the server's with `search_path` set to it.
    pub url: String,
}

impl PgSchema {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = server_url();
        let mut admin = postgres::Client::connect(&server, NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {server} cannot be reached ({e}): these tests need a server; \
                 start one (`.ci/run` does) or point PODLOG_TEST_PG at one"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "podlog_it_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        );
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap_or_else(|e| panic!("creating schema {name}: {e}"));
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-csearch_path%3D{name}");
        Self { admin, name, url }
    }

    /// Opens the schema as a `Store`, with the default options.
    pub fn store(&self) -> Arc<Store> {
        Arc::new(
            Store::open_location(&Location::parse(&self.url), StoreOptions::default())
                .unwrap_or_else(|e| panic!("opening {}: {e}", self.url)),
        )
    }

    /// The backend pid of the connection that holds `session`'s write lock
    /// in this schema, if one does.
    pub fn writer_backend(&mut self, session: &SessionId) -> Option<i32> {
        // The key PgSessionWriter takes: BLAKE3 of its parts, each ended by
        // NUL, first 8 bytes big-endian; pg_locks shows it as two halves.
        let mut hasher = blake3::Hasher::new();
        for part in ["podlog session", &self.name, session.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        let bits = u64::from_be_bytes(first);
        let (high, low) = ((bits >> 32) as i64, (bits & 0xffff_ffff) as i64);
        self.admin
            .query_opt(
                "SELECT l.pid FROM pg_locks AS l \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
                &[&high, &low],
            )
            .expect("reading pg_locks")
            .map(|row| row.get(0))
    }

    /// The one number `sql` selects, with `{s}` standing for the schema.
    pub fn number(&mut self, sql: &str) -> i64 {
        let sql = sql.replace("{s}", &self.name);
        self.admin
            .query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Ends backend `pid` from the server side, as a failing network or an
    /// administrator would.
    pub fn terminate(&mut self, pid: i32) -> bool {
        self.admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .expect("pg_terminate_backend")
            .get(0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// A `podlog serve --db URL` child process on an ephemeral loopback port,
/// killed when dropped.
pub struct Served {
    pub child: Guard,
    /// Kept so that the child's log keeps being read (a closed pipe would
    /// fail its writes).
    _stderr: Lines,
    pub addr: String,
    /// The demo pod's session, with `--demo`.
    pub demo_session: Option<SessionId>,
}

impl Served {
    /// Starts `podlog --db URL serve --listen 127.0.0.1:0 ARGS...` and waits
    /// until it says where it serves.
    pub fn start(url: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podlog"))
            .args(["--db", url, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("PODLOG_LOG", "info")
            .env_remove("PODLOG_DB")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podlog serve");
        let stderr: ChildStderr = child.stderr.take().expect("stderr");
        let mut lines = Lines::of(stderr);
        let mut demo_session = None;
        let demo = args.contains(&"--demo");
        let addr = loop {
            let line = lines.until("podlog serve's address", Duration::from_secs(30), |l| {
                l.starts_with("podlog: serving http://")
                    || l.starts_with("podlog: pod demo writes session ")
            });
            if let Some(id) = line.strip_prefix("podlog: pod demo writes session ") {
                demo_session = Some(SessionId::new(id.trim()).expect("session id"));
            } else if let Some(addr) = line.strip_prefix("podlog: serving http://") {
                break addr.trim().to_owned();
            }
        };
        assert_eq!(demo, demo_session.is_some(), "{:?}", lines.seen);
        Self {
            child: Guard(child),
            _stderr: lines,
            addr,
            demo_session,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Tcp(self.addr.clone()), None)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL");
        let _ = self.child.0.wait();
    }
}

/// A runtime for the clients: PostgreSQL's blocking client (the test's
/// store, the schema's admin) is used outside it, or on its blocking pool.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// How [`Taken::read`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Done,
    Ended,
    TimedOut,
}

/// What a client took from event streams of one session: every committed
/// seq in the order it arrived (a snapshot's entries included) with the
/// event id it came under, folded into a [`LogView`] that fails on a gap or
/// a duplicate.
#[derive(Default)]
pub struct Taken {
    pub view: podlog_protocol::LogView,
    /// `(seq, event id)` of each committed entry, snapshots' included.
    pub seqs: Vec<(u64, String)>,
}

impl Taken {
    /// Reads `stream` until `done(self)`, the stream ends or `timeout`
    /// passes; fails on an event the view refuses.
    pub async fn read(
        &mut self,
        stream: &mut podlog_protocol::client::EventStream,
        timeout: Duration,
        mut done: impl FnMut(&Taken) -> bool,
    ) -> Result<Read, String> {
        use podlog_protocol::Event;
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            // Ask `done` again now and then even if nothing arrives.
            let step = tokio::time::Instant::now() + Duration::from_millis(100);
            let message = match tokio::time::timeout_at(step.min(deadline), stream.next()).await {
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(Read::TimedOut),
                Err(_) => continue,
                Ok(Err(e)) => return Err(format!("reading the stream: {e}")),
                Ok(Ok(None)) => return Ok(Read::Ended),
                Ok(Ok(Some(message))) => message,
            };
            let id = message.id.clone().unwrap_or_default();
            let Some(event) = message.pod_event() else {
                return Ok(Read::Ended);
            };
            let event = event.map_err(|e| e.to_string())?;
            self.view
                .apply(&event)
                .map_err(|e| format!("event {id}: {e}"))?;
            match &event {
                Event::Snapshot { entries, .. } => {
                    for entry in entries {
                        self.seqs.push((entry.seq.get(), id.clone()));
                    }
                }
                e if e.is_committed() => self.seqs.push((e.watermark().get(), id)),
                Event::SessionRotated { seq, .. } => self.seqs.push((seq.get(), id)),
                _ => {}
            }
        }
        Ok(Read::Done)
    }

    /// The seqs taken, in order.
    pub fn seq_list(&self) -> Vec<u64> {
        self.seqs.iter().map(|(s, _)| *s).collect()
    }
}
