//! The PostgreSQL side of the benchmark suite: rows PG1 (durable append
//! against a raw client `INSERT` per transaction), PG2 (eight sessions
//! appending at once) and PG3 (commit to a follower in another process).
//! Each row runs in a schema of its own ([`BenchSchema`]), created fresh
//! and dropped with everything in it when the row ends, so runs never see
//! each other's tables and the database is left as it was found.
//!
//! The baseline of PG1 ([`RawPgAppend`]) is written with no podlog code: a
//! plain `postgres::Client` at `synchronous_commit=on`, one `INSERT` per
//! autocommit transaction into a table shaped like podlog's `entries`. The
//! follower of PG3 ([`follow`]) does what a serve node does to follow a
//! session: `Store::change_watch` (a `LISTEN`), checked every
//! [`podlog_pod::follow::POLL`], then `last_seqs` and `entries_after` when
//! it fired; it stamps each entry with the wall clock when it read it, so
//! that it can run in another process ([`follower_main`]).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podlog_entry::{LogEntry, Seq, SessionId, StepClock};
use podlog_store::{Location, SequentialIds, Store, StoreOptions, Synchronous};
use postgres::{Client, NoTls, Statement};
use serde::{Deserialize, Serialize};

use crate::error::{self, BenchError, Result};

/// A fresh schema `podlog_bench_<random>` in the database of a URL; the
/// URL that makes it a connection's `search_path`. Dropped with everything
/// in it by [`BenchSchema::drop_now`], or on drop (errors then ignored).
pub struct BenchSchema {
    row: &'static str,
    admin: Option<Client>,
    name: String,
    url: String,
}

impl BenchSchema {
    /// Connects to `base` and creates the schema.
    pub fn create(row: &'static str, base: &str) -> Result<Self> {
        let shown = podlog_store::store::without_password(base);
        let mut admin = Client::connect(base, NoTls)
            .map_err(error::postgres(row, || format!("connecting to {shown}")))?;
        // A name of lowercase hex digits only: an identifier cannot be a
        // bound parameter, so it is made safe to splice in.
        let random = RandomState::new().hash_one((std::process::id(), SystemTime::now()));
        let name = format!("podlog_bench_{random:016x}");
        let generated_schema = &name;
        admin
            .batch_execute(&format!("CREATE SCHEMA {generated_schema}"))
            .map_err(error::postgres(row, || format!("creating schema {name}")))?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        Ok(Self {
            row,
            admin: Some(admin),
            name,
            url,
        })
    }

    /// The URL whose connections work in this schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the schema and everything in it.
    pub fn drop_now(mut self) -> Result<()> {
        self.drop_schema()
    }

    fn drop_schema(&mut self) -> Result<()> {
        let Some(mut admin) = self.admin.take() else {
            return Ok(());
        };
        let name = &self.name;
        let generated_schema = name;
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {generated_schema} CASCADE"))
            .map_err(error::postgres(self.row, || {
                format!("dropping schema {name}")
            }))
    }
}

impl Drop for BenchSchema {
    fn drop(&mut self) {
        let _ = self.drop_schema();
    }
}

/// A podlog store in `schema`, at `synchronous`, with deterministic ids.
pub fn open_store(
    row: &'static str,
    schema: &BenchSchema,
    synchronous: Synchronous,
) -> Result<Arc<Store>> {
    let options = StoreOptions {
        synchronous,
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1)),
        ids: Arc::new(SequentialIds::new("bench")),
        ..StoreOptions::default()
    };
    Store::open_location(&Location::Postgres(schema.url().to_owned()), options)
        .map(Arc::new)
        .map_err(error::store(row))
}

/// Lets `store` finish what it defers past a commit (the search index's
/// catch-up, `migrations/postgres/0003_search_deferred.sql`), outside any
/// timed run, before the next side of a row starts: no side pays for
/// another's deferred work. A search does the same catch-up before it
/// looks.
pub fn settle(row: &'static str, store: &Store) -> Result<()> {
    store
        .search_index_bytes()
        .map(|_| ())
        .map_err(error::store(row))
}

/// What [`RawPgAppend`] sends per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawPgShape {
    /// One `INSERT`, autocommit: PG1's baseline.
    Insert,
    /// The `INSERT` and a `pg_notify` of `<session>:<seq>` in one
    /// statement, so in the same transaction, as podlog's append notifies.
    InsertNotify,
    /// The `INSERT` (autocommit, durable), then the `pg_notify` in a
    /// transaction of its own at `synchronous_commit=off`: a commit that
    /// announces after it returned, without waiting for a second flush.
    InsertThenNotify,
}

/// PG1's baseline: a plain client inserting each entry in a transaction
/// of its own (autocommit), at `synchronous_commit=on`, into a table with
/// the columns and key of podlog's `entries` (shared by the baselines of
/// one schema, each with a session of its own).
pub struct RawPgAppend {
    row: &'static str,
    client: Client,
    shape: RawPgShape,
    insert: Statement,
    notify: Option<Statement>,
    session: String,
    next_seq: i64,
}

impl RawPgAppend {
    /// Creates the table `raw_entries` in `schema` (the connection's
    /// `search_path`).
    pub fn open(
        row: &'static str,
        schema: &BenchSchema,
        session: &str,
        shape: RawPgShape,
    ) -> Result<Self> {
        let mut client = Client::connect(schema.url(), NoTls)
            .map_err(error::postgres(row, || "baseline: connecting".to_owned()))?;
        client
            .batch_execute(
                "SET synchronous_commit = on; \
                 CREATE TABLE IF NOT EXISTS raw_entries ( \
                   session_id text COLLATE \"C\" NOT NULL, \
                   seq bigint NOT NULL, \
                   ts bigint NOT NULL, \
                   kind text NOT NULL, \
                   body json NOT NULL, \
                   PRIMARY KEY (session_id, seq))",
            )
            .map_err(error::postgres(row, || {
                "baseline: creating its table".to_owned()
            }))?;
        let insert_sql = match shape {
            RawPgShape::Insert | RawPgShape::InsertThenNotify => {
                "INSERT INTO raw_entries (session_id, seq, ts, kind, body) \
                 VALUES ($1, $2, $3, $4, $5::text::json)"
            }
            RawPgShape::InsertNotify => {
                "WITH entry AS ( \
                   INSERT INTO raw_entries (session_id, seq, ts, kind, body) \
                   VALUES ($1, $2, $3, $4, $5::text::json) RETURNING seq) \
                 SELECT pg_notify('podlog_bench_raw', $1 || ':' || entry.seq) FROM entry"
            }
        };
        let insert = client
            .prepare(insert_sql)
            .map_err(error::postgres(row, || {
                "baseline: preparing its INSERT".to_owned()
            }))?;
        let notify = match shape {
            RawPgShape::InsertThenNotify => Some(
                client
                    .prepare("SELECT pg_notify('podlog_bench_raw', $1 || ':' || $2::bigint)")
                    .map_err(error::postgres(row, || {
                        "baseline: preparing its NOTIFY".to_owned()
                    }))?,
            ),
            _ => None,
        };
        Ok(Self {
            row,
            client,
            shape,
            insert,
            notify,
            session: session.to_owned(),
            next_seq: 1,
        })
    }

    /// Inserts `entries`, one autocommit transaction each (serialising
    /// them is part of the timed work); returns the time taken. Checks
    /// afterwards that every row is there.
    pub fn run(&mut self, entries: &[LogEntry]) -> Result<Duration> {
        let row = self.row;
        let start = Instant::now();
        for entry in entries {
            let body = entry.to_json();
            let ts = entry.ts() as i64;
            let inserted = self
                .client
                .execute(
                    &self.insert,
                    &[&self.session, &self.next_seq, &ts, &entry.kind(), &body],
                )
                .map_err(error::postgres(row, || "baseline: INSERT".to_owned()))?;
            if let Some(notify) = &self.notify {
                let mut txn = self
                    .client
                    .transaction()
                    .map_err(error::postgres(row, || "baseline: BEGIN".to_owned()))?;
                txn.batch_execute("SET LOCAL synchronous_commit = off")
                    .and_then(|()| txn.execute(notify, &[&self.session, &self.next_seq]))
                    .map_err(error::postgres(row, || "baseline: NOTIFY".to_owned()))?;
                txn.commit()
                    .map_err(error::postgres(row, || "baseline: COMMIT".to_owned()))?;
            }
            if inserted != 1 {
                return Err(BenchError::Check {
                    row,
                    problem: format!(
                        "the baseline's INSERT ({:?}) wrote {inserted} rows",
                        self.shape
                    ),
                });
            }
            self.next_seq += 1;
        }
        let elapsed = start.elapsed();
        let stored: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM raw_entries WHERE session_id = $1",
                &[&self.session],
            )
            .and_then(|r| r.try_get(0))
            .map_err(error::postgres(row, || {
                "baseline: counting rows".to_owned()
            }))?;
        if stored != self.next_seq - 1 {
            return Err(BenchError::Check {
                row,
                problem: format!(
                    "the baseline's table holds {stored} rows, want {}",
                    self.next_seq - 1
                ),
            });
        }
        Ok(elapsed)
    }
}

/// PG2's references: `clients` raw clients of one shape, each its own
/// connection and session (named after `round`, which must differ between
/// calls on one schema), inserting `per_client` entries at once; returns
/// the time from the common start until the last one finished.
pub fn raw_group(
    row: &'static str,
    schema: &BenchSchema,
    round: usize,
    shape: RawPgShape,
    clients: usize,
    batches: Vec<Vec<LogEntry>>,
) -> Result<Duration> {
    let mut raws = (0..clients)
        .map(|i| RawPgAppend::open(row, schema, &format!("group-{round}-{shape:?}-{i}"), shape))
        .collect::<Result<Vec<_>>>()?;
    let jobs = raws
        .iter_mut()
        .zip(&batches)
        .map(|(raw, batch)| move || raw.run(batch).map(|_| ()))
        .collect();
    crate::append::run_together(row, "raw client", jobs)
}

/// What the follower of PG3 follows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FollowSpec {
    /// The store's URL (with its schema).
    pub url: String,
    /// The session followed.
    pub session: String,
    /// The seq the session is at when following starts.
    pub after: u64,
    /// How many entries to wait for.
    pub entries: usize,
    /// How long to wait for them at most, in milliseconds.
    pub timeout_ms: u64,
}

/// One entry as the follower got it: its seq and the wall-clock time the
/// follower read it, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    pub at_ns: u128,
}

/// The wall clock, in nanoseconds since the Unix epoch: comparable across
/// processes on one host, unlike `Instant`.
pub fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Follows `spec`'s session as a serve node does and returns each entry
/// with the time it was read; `ready` is called once the `LISTEN` is in
/// place, so that the writer knows when to start. Fails if the entries
/// did not all arrive, in order, within the timeout.
pub fn follow(spec: &FollowSpec, ready: impl FnOnce() -> Result<()>) -> Result<Vec<Received>> {
    const ROW: &str = "PG3";
    const BATCH: usize = 1_000;
    let session = SessionId::new(spec.session.clone()).map_err(|e| BenchError::Check {
        row: ROW,
        problem: format!("follower: bad session id: {e}"),
    })?;
    let store = Store::open_location(
        &Location::Postgres(spec.url.clone()),
        StoreOptions::default(),
    )
    .map_err(error::store(ROW))?;
    let mut watch = store.change_watch().map_err(error::store(ROW))?;
    ready()?;
    let deadline = Instant::now() + Duration::from_millis(spec.timeout_ms);
    let mut last = Seq(spec.after);
    let mut got = Vec::with_capacity(spec.entries);
    while got.len() < spec.entries {
        if Instant::now() > deadline {
            return Err(BenchError::Check {
                row: ROW,
                problem: format!(
                    "follower: {} of {} entries within {} ms",
                    got.len(),
                    spec.entries,
                    spec.timeout_ms
                ),
            });
        }
        if watch.changed().map_err(error::store(ROW))? {
            let moved = store
                .last_seqs(std::slice::from_ref(&session))
                .map_err(error::store(ROW))?
                .into_iter()
                .any(|(_, seq)| seq > last);
            if moved {
                loop {
                    let entries = store
                        .entries_after(&session, last, BATCH)
                        .map_err(error::store(ROW))?;
                    let at_ns = wall_ns();
                    for c in &entries {
                        if c.seq.0 != last.0 + 1 {
                            return Err(BenchError::Check {
                                row: ROW,
                                problem: format!("follower: seq {} after {}", c.seq.0, last.0),
                            });
                        }
                        got.push(Received {
                            seq: c.seq.0,
                            at_ns,
                        });
                        last = c.seq;
                    }
                    if entries.len() < BATCH {
                        break;
                    }
                }
            }
        }
        std::thread::sleep(podlog_pod::follow::POLL);
    }
    drop(watch);
    drop(store);
    Ok(got)
}

/// The follower process of PG3: follows as `spec` (JSON) says, writes
/// `ready` on `out` once listening, then, at the end, the JSON list of
/// [`Received`].
pub fn follower_main(spec: &str, out: &mut impl Write) -> Result<()> {
    let spec: FollowSpec = serde_json::from_str(spec).map_err(|e| BenchError::Check {
        row: "PG3",
        problem: format!("follower: bad spec: {e}"),
    })?;
    let stdout = PathBuf::from("<stdout>");
    let got = follow(&spec, || {
        writeln!(out, "ready")
            .and_then(|()| out.flush())
            .map_err(error::io("PG3", "writing to", &stdout))
    })?;
    let json = serde_json::to_string(&got).map_err(|e| BenchError::Check {
        row: "PG3",
        problem: format!("follower: encoding its report: {e}"),
    })?;
    writeln!(out, "{json}")
        .and_then(|()| out.flush())
        .map_err(error::io("PG3", "writing to", &stdout))
}

/// Where PG3's follower runs.
#[derive(Clone, Debug)]
pub enum FollowerLauncher {
    /// A thread of this process (for tests: the figure then says so).
    InProcess,
    /// `program args... SPEC`, which runs [`follower_main`].
    Command { program: PathBuf, args: Vec<String> },
}

/// A follower started: wait for it to be listening with
/// [`Follower::ready`], then collect what it got with [`Follower::finish`].
pub enum Follower {
    Thread {
        ready: std::sync::mpsc::Receiver<()>,
        handle: std::thread::JoinHandle<Result<Vec<Received>>>,
    },
    Process {
        child: std::process::Child,
        out: BufReader<std::process::ChildStdout>,
    },
}

fn check(problem: String) -> BenchError {
    BenchError::Check {
        row: "PG3",
        problem,
    }
}

impl Follower {
    /// Starts a follower as `launcher` says.
    pub fn start(launcher: &FollowerLauncher, spec: &FollowSpec) -> Result<Self> {
        match launcher {
            FollowerLauncher::InProcess => {
                let (tell, ready) = std::sync::mpsc::channel();
                let spec = spec.clone();
                let handle = std::thread::spawn(move || {
                    follow(&spec, || {
                        tell.send(())
                            .map_err(|_| check("the measuring thread went away".to_owned()))
                    })
                });
                Ok(Follower::Thread { ready, handle })
            }
            FollowerLauncher::Command { program, args } => {
                let json = serde_json::to_string(spec)
                    .map_err(|e| check(format!("encoding the follower's spec: {e}")))?;
                let mut child = Command::new(program)
                    .args(args)
                    .arg(json)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(error::io("PG3", "starting the follower", program))?;
                let Some(stdout) = child.stdout.take() else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(check("the follower has no stdout".to_owned()));
                };
                Ok(Follower::Process {
                    child,
                    out: BufReader::new(stdout),
                })
            }
        }
    }

    /// Waits until the follower listens.
    pub fn ready(&mut self) -> Result<()> {
        match self {
            Follower::Thread { ready, .. } => ready
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| check("the follower thread did not start listening".to_owned())),
            Follower::Process { out, .. } => {
                let mut line = String::new();
                out.read_line(&mut line).map_err(error::io(
                    "PG3",
                    "reading from",
                    &PathBuf::from("the follower"),
                ))?;
                if line.trim() == "ready" {
                    Ok(())
                } else {
                    Err(check(format!(
                        "the follower said {:?} instead of ready",
                        line.trim()
                    )))
                }
            }
        }
    }

    /// Waits for the follower to end and returns what it got.
    pub fn finish(self) -> Result<Vec<Received>> {
        match self {
            Follower::Thread { handle, .. } => handle
                .join()
                .unwrap_or_else(|_| Err(check("the follower thread panicked".to_owned()))),
            Follower::Process { mut child, mut out } => {
                let mut line = String::new();
                let read = out.read_line(&mut line);
                let status = child.wait().map_err(error::io(
                    "PG3",
                    "waiting for",
                    &PathBuf::from("the follower"),
                ))?;
                read.map_err(error::io(
                    "PG3",
                    "reading from",
                    &PathBuf::from("the follower"),
                ))?;
                if !status.success() {
                    return Err(check(format!("the follower failed ({status})")));
                }
                serde_json::from_str(line.trim())
                    .map_err(|e| check(format!("the follower's report does not decode: {e}")))
            }
        }
    }

    /// Whether the follower runs in another process.
    pub fn is_process(&self) -> bool {
        matches!(self, Follower::Process { .. })
    }
}

/// PG3: the parent side. Creates a session in `store`, starts a follower,
/// appends `n` entries one every `pace`, each stamped with the wall clock
/// when its commit returned, and returns the commit-to-follower latencies
/// in milliseconds (in seq order) and whether the follower was another
/// process.
pub fn measure_follow(
    store: &Arc<Store>,
    url: &str,
    entries: Vec<LogEntry>,
    pace: Duration,
    launcher: &FollowerLauncher,
) -> Result<(Vec<f64>, bool)> {
    const ROW: &str = "PG3";
    let (mut writer, sink) = crate::append::new_session(ROW, store)?;
    let after = writer.last_seq();
    let n = entries.len();
    let spec = FollowSpec {
        url: url.to_owned(),
        session: writer.session().as_str().to_owned(),
        after: after.0,
        entries: n,
        timeout_ms: 60_000 + (pace.as_millis() as u64) * n as u64,
    };
    let mut follower = Follower::start(launcher, &spec)?;
    let apart = follower.is_process();
    follower.ready()?;
    let mut committed = Vec::with_capacity(n);
    let mut next = Instant::now();
    for entry in entries {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += pace;
        let seq = writer.append(entry, &sink).map_err(error::store(ROW))?;
        committed.push((seq.0, wall_ns()));
    }
    let got = follower.finish()?;
    if got.len() != n {
        return Err(check(format!(
            "the follower got {} of {n} entries",
            got.len()
        )));
    }
    let mut latencies = Vec::with_capacity(n);
    for ((seq, at), r) in committed.iter().zip(&got) {
        if *seq != r.seq {
            return Err(check(format!(
                "the follower got seq {} where seq {seq} was committed",
                r.seq
            )));
        }
        // A follower may read an entry a hair before its writer's clock
        // reads the commit's return: count that as no delay.
        latencies.push(r.at_ns.saturating_sub(*at) as f64 / 1e6);
    }
    Ok((latencies, apart))
}
