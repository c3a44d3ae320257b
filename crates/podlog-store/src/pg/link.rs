//! [`WriteLink`]: the one connection through which a store's session
//! writers take their locks and append, with group commit across sessions.
//!
//! # Contract
//!
//! * **One connection per store for writing.** Every session writer of a
//!   [`super::PgStore`] takes its session's advisory lock on the link's
//!   connection and appends through it, so the lock and the appends live
//!   and die together: when the server ends that connection (or it is
//!   lost), every lock it held goes, and no append of those writers can
//!   reach the database afterwards. Advisory locks are reentrant on one
//!   connection, so the link refuses a second writer of a session in this
//!   process itself, with the error another process would get.
//! * **Generations.** Each connection the link opens has a generation. A
//!   writer remembers the one it took its lock on; once the link's
//!   connection is closed or replaced, that writer's appends fail with
//!   [`StoreError::LockLost`] and write nothing, and a writer opened
//!   afterwards connects again (a new generation, holding no locks).
//! * **Group commit.** An append queues its row. The first append that
//!   finds no commit under way leads: it takes every queued row (at most
//!   [`MAX_BATCH`]) and commits them in one transaction, each row guarded
//!   as a lone append is (by the seq before it, and refused by the primary
//!   key if its seq is taken). Plain rows of different sessions go in one
//!   statement; a row with payloads, or a second row of a session, goes
//!   by the statement a lone append uses; all sent pipelined (`BEGIN`, the
//!   statements, `COMMIT`, one round trip; one statement alone needs
//!   neither). One row alone is one statement in its own transaction, as
//!   before. While a batch commits, new rows queue;
//!   the leader hands the lead to the first of them before it replies to
//!   its own batch, so no writer leads more than one batch. A batch with
//!   any failed statement commits nothing (the server rolls it back), and
//!   its rows are committed again one transaction each, so a stale row
//!   fails alone. A batch shares one WAL flush: eight sessions writing at
//!   once cost about one flush per round, not eight.
//! * **Announced right behind the commit, at most every few
//!   milliseconds.** When an announcement is due (see
//!   [`super::announce`]), the requests of a commit are followed, in the
//!   same write to the socket, by [`ANNOUNCE`], which the server runs once
//!   the commit is done and which notifies the rows that are in the table
//!   then, so a notice names only committed entries. Only the commit's
//!   answers are waited for; the announcement's is read (and dropped) by
//!   the connection's next use. No thread hand-off and no extra round trip
//!   per append: the server runs the announcement while the writer
//!   publishes its entry. A commit that comes sooner leaves its rows to the
//!   next announcement, which the announcer's thread sends if no commit
//!   does.
//! * **Off async workers.** The connection runs on a small runtime of the
//!   link's own, driven while a caller blocks on it, as
//!   `postgres::Client` does; callers keep it off async workers.

use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Instant;

use futures_util::future::join_all;
use postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::announce::{Announcer, Committed, SharedConn};
use super::PgContext;
use crate::commit::Pace;
use crate::lock::LiveGeneration;
use crate::{Result, StoreError, StoreOptions, Synchronous};

/// The most rows one group commit takes.
pub(crate) const MAX_BATCH: usize = 64;

/// How the link connects.
pub(crate) struct LinkTarget {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) options: StoreOptions,
    pub(crate) location: String,
    /// The store's notification channel (see `pg/listen.rs`).
    pub(crate) channel: String,
}

/// Announces the commits of the rows `$2` (sessions) and `$3` (seqs) on
/// the channel `$1`: a notice `<session>:<seq>` for each of them that is
/// in `entries`, in their order, so that only what committed is announced
/// (a row whose statement failed, or whose batch rolled back, is not
/// there). Sent on the write connection, right behind a commit or by the
/// announcer's thread, as a
/// transaction of its own at `synchronous_commit=off`: it writes nothing
/// to wait for, and a transaction that notifies holds a lock on the
/// cluster's notification queue until its commit is done, so a notice
/// inside the append's durable transaction would make every process's
/// commits wait for each other's flushes (`docs/performance.md`, PG2).
/// The `OFFSET 0` keeps the probe a per-row index lookup (see
/// [`super::writer::APPEND_MANY`]).
pub(crate) const ANNOUNCE: &str = "\
     SELECT set_config('synchronous_commit', 'off', true), \
            pg_notify($1::text, n.session_id || ':' || n.seq) \
     FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS n (session_id, seq, i) \
     WHERE EXISTS (SELECT 1 FROM entries AS e \
                   WHERE e.session_id = n.session_id AND e.seq = n.seq OFFSET 0) \
     ORDER BY n.i";

/// One entry row to append, owned so that another writer's thread can
/// commit it: the values of `APPENDS[statement]` (see `pg/writer.rs`).
pub(crate) struct AppendRow {
    pub(crate) statement: usize,
    pub(crate) generation: u64,
    pub(crate) session: String,
    pub(crate) seq: i64,
    pub(crate) ts: i64,
    pub(crate) kind: String,
    pub(crate) body: String,
    pub(crate) refs: Option<String>,
    pub(crate) now: i64,
    pub(crate) redactions: i64,
    pub(crate) bytes: i64,
    pub(crate) hashes: Vec<String>,
    pub(crate) sizes: Vec<i64>,
    pub(crate) texts: Vec<String>,
}

impl AppendRow {
    /// The statement's parameters: nine, or twelve with payloads.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.session,
            &self.seq,
            &self.ts,
            &self.kind,
            &self.body,
            &self.refs,
            &self.now,
            &self.redactions,
            &self.bytes,
        ];
        if !self.hashes.is_empty() {
            params.extend([
                &self.hashes as &(dyn ToSql + Sync),
                &self.sizes,
                &self.texts,
            ]);
        }
        params
    }
}

/// Rows of [`super::writer::APPEND_MANY`], as its parameters' arrays.
#[derive(Default)]
struct Columns {
    sessions: Vec<String>,
    seqs: Vec<i64>,
    ts: Vec<i64>,
    kinds: Vec<String>,
    bodies: Vec<String>,
    refs: Vec<Option<String>>,
    now: Vec<i64>,
    redactions: Vec<i64>,
    bytes: Vec<i64>,
}

impl Columns {
    fn of<'a>(rows: impl Iterator<Item = &'a AppendRow>) -> Self {
        let mut columns = Columns::default();
        for row in rows {
            columns.sessions.push(row.session.clone());
            columns.seqs.push(row.seq);
            columns.ts.push(row.ts);
            columns.kinds.push(row.kind.clone());
            columns.bodies.push(row.body.clone());
            columns.refs.push(row.refs.clone());
            columns.now.push(row.now);
            columns.redactions.push(row.redactions);
            columns.bytes.push(row.bytes);
        }
        columns
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.sessions,
            &self.seqs,
            &self.ts,
            &self.kinds,
            &self.bodies,
            &self.refs,
            &self.now,
            &self.redactions,
            &self.bytes,
        ]
    }
}

/// What became of one row.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Committed.
    Written,
    /// Nothing written: the seq before it is missing (or the session).
    NotWritten,
    /// Nothing written: its seq is taken.
    Taken,
    /// The link's connection that held the writer's lock is gone.
    Lost,
    /// The statement or its commit failed; `closed` when the connection is
    /// gone with it (a commit in flight may or may not have committed).
    Failed {
        source: postgres::Error,
        closed: bool,
    },
    /// The commit panicked; the connection was dropped, rolling back what it
    /// had not committed.
    Panicked(String),
}

/// The I/O half of a write connection.
type Io = std::pin::Pin<
    Box<tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>>,
>;

enum Reply {
    Done(Outcome),
    /// The batch before is done and this row is first in line: lead.
    Lead,
}

struct Job {
    row: AppendRow,
    reply: Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Job>,
    leading: bool,
    /// A leader waits for more rows to queue (see [`Pace`]).
    gathering: bool,
    pace: Pace<String>,
}

/// An open connection of the link.
pub(crate) struct Conn {
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
    /// The connection's I/O, driven inline while a caller waits on the
    /// runtime (as `postgres::Client` drives its own): a spawned task
    /// would cost scheduler hops on every round trip. `None` once it
    /// ended, which closes the client's channel, so that every request
    /// fails from then on instead of waiting.
    io: Mutex<Option<Io>>,
    /// `APPENDS`, prepared on `client`.
    appends: Vec<Statement>,
    /// `APPEND_MANY`, prepared on `client`.
    append_many: Option<Statement>,
    /// [`ANNOUNCE`], prepared on `client`.
    announce: Option<Statement>,
    /// The store's notification channel.
    channel: String,
    pub(crate) generation: u64,
    pub(crate) backend_pid: i32,
    /// The sessions whose advisory lock this connection holds.
    held: HashSet<String>,
    /// The link's [`WriteLink::live`]: this connection's generation while
    /// it is open, set to 0 once it is found closed or dropped.
    live: Arc<LiveGeneration>,
}

impl Conn {
    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a Conn holds its client until dropped")
    }

    /// Runs `f` on the connection's runtime, driving the connection's I/O
    /// meanwhile.
    pub(crate) fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        let mut f = std::pin::pin!(f);
        let runtime = self
            .runtime
            .as_ref()
            .expect("a Conn holds its runtime until dropped");
        let done = runtime.block_on(std::future::poll_fn(|cx| {
            while let Some(connection) = io.as_mut() {
                match connection.as_mut().poll_message(cx) {
                    // Notices and notifications: a write connection
                    // listens to nothing.
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(_)) | None) => *io = None,
                    Poll::Pending => break,
                }
            }
            f.as_mut().poll(cx)
        }));
        if io.is_none() {
            self.gone();
        }
        done
    }

    /// Reads what the server sent since the connection was last used,
    /// without waiting: a connection the server ended (or that broke) is
    /// found closed, with no request sent.
    pub(crate) fn look(&self) {
        // The yield lets the runtime take the socket's readiness from the
        // system once before the connection is read.
        self.run(tokio::task::yield_now());
    }

    /// This connection is closed or going: it is not the live one.
    fn gone(&self) {
        self.live.end(self.generation);
    }

    /// Runs `f`, the commit of `rows`, on the connection's runtime. With
    /// `earlier` (rows committed before, to announce now), sends right
    /// behind its requests the statement that announces those of
    /// `earlier` and then `rows` that are in the table then ([`ANNOUNCE`]).
    /// Only `f` is waited for: the server runs the announcement after the
    /// commit, while this thread hands the outcome back, and its answer is
    /// read and dropped by whichever call uses the connection next.
    fn run_announced<T>(
        &self,
        earlier: Option<&[Committed]>,
        rows: &[&AppendRow],
        f: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(earlier) = earlier else {
            return self.run(f);
        };
        let (sessions, seqs): (Vec<&str>, Vec<i64>) = earlier
            .iter()
            .map(|(session, seq)| (session.as_str(), *seq))
            .chain(rows.iter().map(|r| (r.session.as_str(), r.seq)))
            .unzip();
        let params: [&(dyn ToSql + Sync); 3] = [&self.channel, &sessions, &seqs];
        let client = self.client();
        self.run(async {
            let mut f = std::pin::pin!(f);
            // The first poll sends every request of `f` (prepared
            // statements, BEGIN and COMMIT go out without a round trip).
            if let Poll::Ready(done) = futures_util::poll!(f.as_mut()) {
                return done;
            }
            if let Some(announce) = &self.announce {
                let mut sent = std::pin::pin!(client.query(announce, &params));
                let _ = futures_util::poll!(sent.as_mut());
            }
            f.await
        })
    }

    /// Announces `rows`, committed earlier ([`ANNOUNCE`]), waiting for
    /// the server's answer; a failure is dropped (see
    /// [`super::announce`]).
    pub(crate) fn announce(&self, rows: &[Committed]) {
        let Some(announce) = &self.announce else {
            return;
        };
        let (sessions, seqs): (Vec<&str>, Vec<i64>) = rows
            .iter()
            .map(|(session, seq)| (session.as_str(), *seq))
            .unzip();
        let params: [&(dyn ToSql + Sync); 3] = [&self.channel, &sessions, &seqs];
        let _ = self.run(self.client().query(announce, &params));
    }

    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    /// Runs `sql` with `params`, returning its rows.
    pub(crate) fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<tokio_postgres::Row>, postgres::Error> {
        let client = self.client();
        self.run(client.query(sql, params))
    }

    /// Whether this connection holds `session`'s lock.
    pub(crate) fn holds(&self, session: &str) -> bool {
        self.held.contains(session)
    }

    pub(crate) fn mark_held(&mut self, session: &str) {
        self.held.insert(session.to_owned());
    }

    pub(crate) fn unmark_held(&mut self, session: &str) {
        self.held.remove(session);
    }

    /// Commits `rows`, one outcome each in order, and counts the
    /// transactions that wrote rows in `stats`. With `earlier` (rows to
    /// announce now, see [`super::announce`]), the first commit is
    /// announced right behind it, with `earlier`. Returns with the
    /// outcomes the rows that committed and were not announced, `earlier`
    /// among them if nothing was sent.
    fn commit(
        &self,
        rows: &[&AppendRow],
        stats: &Stats,
        mut earlier: Option<Vec<Committed>>,
    ) -> (Vec<Outcome>, Vec<Committed>) {
        let mut unannounced = Vec::new();
        let mut note = |row: &AppendRow, outcome: &Outcome, announced: bool| {
            if !announced && matches!(outcome, Outcome::Written) {
                unannounced.push((row.session.clone(), row.seq));
            }
        };
        // A row of an earlier connection lost its lock with it.
        let live = |row: &AppendRow| row.generation == self.generation && !self.is_closed();
        if rows.len() > 1 && rows.iter().all(|row| live(row)) {
            // Announced behind the batch, committed or not.
            let sent = earlier.take();
            if let Some(all) = self.commit_together(rows, sent.as_deref()) {
                stats.count(&all);
                for (row, outcome) in rows.iter().zip(&all) {
                    note(row, outcome, sent.is_some());
                }
                return (all, unannounced);
            }
        }
        // Alone, or nothing of the batch committed: one transaction each.
        let outcomes = rows
            .iter()
            .map(|row| {
                if !live(row) {
                    return Outcome::Lost;
                }
                let sent = earlier.take();
                let outcome = self.commit_one(row, sent.as_deref());
                stats.count(std::slice::from_ref(&outcome));
                note(row, &outcome, sent.is_some());
                outcome
            })
            .collect();
        if let Some(earlier) = earlier {
            unannounced.splice(0..0, earlier);
        }
        (outcomes, unannounced)
    }

    /// One row, in a transaction of its own.
    fn commit_one(&self, row: &AppendRow, earlier: Option<&[Committed]>) -> Outcome {
        let params = row.params();
        let result = self.run_announced(earlier, &[row], self.send_row(row, &params));
        self.outcome(result)
    }

    /// Runs `row`'s statement with `params` (its [`AppendRow::params`]):
    /// whether it wrote the row. Its request goes out at the first poll.
    async fn send_row(
        &self,
        row: &AppendRow,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<bool, postgres::Error> {
        let client = self.client();
        let statement = &self.appends[row.statement];
        if super::writer::counts_its_row(row.statement) {
            client.execute(statement, params).await.map(|n| n == 1)
        } else {
            client
                .query_opt(statement, params)
                .await
                .map(|r| r.is_some())
        }
    }

    /// All of `rows` in one transaction, pipelined; `None` when any
    /// statement or the commit failed, so that nothing of it committed (a
    /// transaction with a failed statement ends in a rollback), except when
    /// the connection is gone, where each row gets that failure. The rows
    /// that are plain appends (no payloads) of different sessions
    /// go in one statement ([`super::writer::APPEND_MANY`]); the others
    /// each by their own. When that one statement holds every row, it is
    /// sent alone, as a transaction of its own.
    fn commit_together(
        &self,
        rows: &[&AppendRow],
        earlier: Option<&[Committed]>,
    ) -> Option<Vec<Outcome>> {
        let client = self.client();
        let mut sessions = HashSet::new();
        let (many, each): (Vec<usize>, Vec<usize>) = (0..rows.len())
            .partition(|&i| rows[i].statement == 0 && sessions.insert(rows[i].session.as_str()));
        let (many, each) = if many.len() > 1 {
            (many, each)
        } else {
            (Vec::new(), (0..rows.len()).collect())
        };
        let columns = Columns::of(many.iter().map(|&i| rows[i]));
        let many_params = columns.params();
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            each.iter().map(|&i| rows[i].params()).collect();
        let (begin, written, results, commit) = self.run_announced(earlier, rows, async {
            // Polled together, the requests go out in this order without
            // waiting for each other's answers.
            // A statement alone is a transaction of its own.
            let alone = each.is_empty();
            let begin = async {
                match alone {
                    true => Ok(()),
                    false => client.batch_execute("BEGIN").await,
                }
            };
            let written = async {
                match (&self.append_many, many.is_empty()) {
                    (Some(statement), false) => client.query(statement, &many_params).await,
                    _ => Ok(Vec::new()),
                }
            };
            let statements = join_all(
                each.iter()
                    .zip(&params)
                    .map(|(&i, params)| self.send_row(rows[i], params)),
            );
            let commit = async {
                match alone {
                    true => Ok(()),
                    false => client.batch_execute("COMMIT").await,
                }
            };
            futures_util::join!(begin, written, statements, commit)
        });
        let failed = begin.is_err()
            || commit.is_err()
            || written.is_err()
            || results.iter().any(|r| r.is_err());
        if !failed {
            let mut outcomes: Vec<Option<Outcome>> = rows.iter().map(|_| None).collect();
            let written = written.unwrap_or_default();
            for &i in &many {
                outcomes[i] = Some(match returned(&written, rows[i]) {
                    Ok(true) => Outcome::Written,
                    Ok(false) => Outcome::NotWritten,
                    // Committed or not, its writer reads the truth again.
                    Err(source) => Outcome::Failed {
                        source,
                        closed: false,
                    },
                });
            }
            for (&i, result) in each.iter().zip(results) {
                outcomes[i] = Some(self.outcome(result));
            }
            return Some(
                outcomes
                    .into_iter()
                    .map(|o| o.expect("every row of a batch has an outcome"))
                    .collect(),
            );
        }
        if !self.is_closed() {
            return None;
        }
        // The connection is gone: whether the commit happened is unknown.
        let error = commit
            .err()
            .or_else(|| written.err())
            .or_else(|| results.into_iter().find_map(|r| r.err()))
            .or(begin.err())
            .expect("a failed batch has an error");
        let message = error.to_string();
        let mut outcomes = vec![Outcome::Failed {
            source: error,
            closed: true,
        }];
        // Each row needs an error of its own: ask the closed client again,
        // which fails at once with the same cause.
        for row in &rows[1..] {
            let again = self.run(self.send_row(row, &row.params()));
            outcomes.push(match again {
                Err(source) => Outcome::Failed {
                    source,
                    closed: true,
                },
                Ok(_) => Outcome::Panicked(format!(
                    "a closed connection answered after failing with: {message}"
                )),
            });
        }
        Some(outcomes)
    }

    fn outcome(&self, result: std::result::Result<bool, postgres::Error>) -> Outcome {
        match result {
            Ok(true) => Outcome::Written,
            Ok(false) => Outcome::NotWritten,
            // The only unique key the statement can break: the entry's.
            Err(source) if source.code() == Some(&SqlState::UNIQUE_VIOLATION) => Outcome::Taken,
            Err(source) => Outcome::Failed {
                source,
                closed: self.is_closed(),
            },
        }
    }
}

/// Whether `row` is among the `(session, seq)` rows `APPEND_MANY` returned.
fn returned(
    written: &[tokio_postgres::Row],
    row: &AppendRow,
) -> std::result::Result<bool, postgres::Error> {
    for returned in written {
        let session: &str = returned.try_get(0)?;
        let seq: i64 = returned.try_get(1)?;
        if session == row.session && seq == row.seq {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.gone();
        // Dropping the runtime closes the socket; the server then lets go
        // of every lock the connection held. Inside an async runtime that
        // has to happen on a thread of its own.
        let client = self.client.take();
        let io = self
            .io
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let runtime = self.runtime.take();
        super::client::off_runtime(move || {
            drop(client);
            drop(io);
            drop(runtime);
        });
    }
}

/// Counts of the transactions that committed rows, and of those rows.
#[derive(Default)]
struct Stats {
    transactions: AtomicU64,
    entries: AtomicU64,
}

impl Stats {
    /// Counts one transaction's outcomes, if it wrote anything.
    fn count(&self, outcomes: &[Outcome]) {
        let written = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Written))
            .count() as u64;
        if written > 0 {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            self.entries.fetch_add(written, Ordering::Relaxed);
        }
    }
}

/// The link; see the module docs.
pub(crate) struct WriteLink {
    stats: Stats,
    target: LinkTarget,
    conn: SharedConn,
    /// The generation of the open connection, 0 when there is none or it
    /// was found closed: read without taking the connection's lock.
    live: Arc<LiveGeneration>,
    /// When commits are announced (see [`super::announce`]), and the
    /// thread that also looks at the connection while it is idle.
    announcer: Announcer,
    queue: Mutex<Queue>,
    /// Signalled when the rows a gathering leader waits for have queued.
    arrived: Condvar,
    /// The generation of the last connection opened.
    opened: Mutex<u64>,
}

impl WriteLink {
    pub(crate) fn new(target: LinkTarget) -> Self {
        WriteLink {
            stats: Stats::default(),
            target,
            conn: Arc::new(Mutex::new(None)),
            live: Arc::default(),
            announcer: Announcer::default(),
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            opened: Mutex::new(0),
        }
    }

    /// The connection, opening one when there is none or it closed (a
    /// new generation, holding no locks).
    pub(crate) fn connection(&self) -> Result<MutexGuard<'_, Option<Conn>>> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = None;
            *conn = Some(self.connect()?);
        }
        Ok(conn)
    }

    /// How appends were grouped into transactions since the store opened.
    pub(crate) fn commit_stats(&self) -> crate::commit::CommitStats {
        crate::commit::CommitStats {
            transactions: self.stats.transactions.load(Ordering::Relaxed),
            entries: self.stats.entries.load(Ordering::Relaxed),
        }
    }

    /// The current connection as it is (`None` if it is gone).
    pub(crate) fn current(&self) -> MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the connection of `generation` is still the link's and
    /// open, as far as anyone has looked: the connection is read whenever
    /// it is used, and at least every [`super::announce::LOOK_EVERY`] by
    /// the link's thread while it is idle. Never waits.
    pub(crate) fn is_live(&self, generation: u64) -> bool {
        generation != 0 && self.live.get() == generation
    }

    /// A handle that tells, without waiting, whether the connection of
    /// `generation` is gone (see [`Self::is_live`]).
    pub(crate) fn lock_watch(&self, generation: u64) -> crate::lock::LockWatch {
        crate::lock::LockWatch::postgres(self.live.clone(), generation)
    }

    fn connect(&self) -> Result<Conn> {
        let location = &self.target.location;
        let ctx = || format!("connecting to {location} for writing");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                context: format!("starting the connection to {location}"),
                source,
            })?;
        let (client, connection) = runtime
            .block_on(self.target.config.connect(NoTls))
            .context(ctx)?;

        let generation = {
            let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
            *opened += 1;
            *opened
        };
        let mut conn = Conn {
            runtime: Some(runtime),
            client: Some(client),
            io: Mutex::new(Some(Box::pin(connection))),
            appends: Vec::new(),
            append_many: None,
            announce: None,
            channel: self.target.channel.clone(),
            generation,
            backend_pid: 0,
            held: HashSet::new(),
            live: self.live.clone(),
        };
        let sync = match self.target.options.synchronous {
            Synchronous::Full => "on",
            Synchronous::Normal => "off",
        };
        let lock_timeout = format!("{}ms", self.target.options.busy_timeout.as_millis().max(1));
        // Generic plans: the server otherwise plans a prepared statement
        // that reads `unnest` of its array parameters (APPEND_MANY,
        // ANNOUNCE) afresh at every execution, since a plan for arrays of
        // unknown length looks dearer than one for the arrays at hand, and
        // planning them cost more than running them (PG1 measured 0.46x
        // with custom plans, 0.69x without; docs/performance.md). Every
        // statement of this connection looks rows up by key, which a
        // generic plan does as well.
        let rows = conn
            .query(
                "SELECT set_config('synchronous_commit', $1, false), \
                 set_config('lock_timeout', $2, false), \
                 set_config('plan_cache_mode', 'force_generic_plan', false), \
                 pg_backend_pid()",
                &[&sync, &lock_timeout],
            )
            .context(ctx)?;
        conn.backend_pid = rows
            .first()
            .map(|r| r.try_get(3))
            .transpose()
            .context(ctx)?
            .unwrap_or_default();
        let client = conn.client();
        let mut appends = Vec::with_capacity(super::writer::APPENDS.len());
        for sql in super::writer::APPENDS {
            appends.push(conn.run(client.prepare(sql)).context(ctx)?);
        }
        let append_many = conn
            .run(client.prepare(super::writer::APPEND_MANY))
            .context(ctx)?;
        let announce = conn.run(client.prepare(ANNOUNCE)).context(ctx)?;
        conn.appends = appends;
        conn.append_many = Some(append_many);
        conn.announce = Some(announce);
        self.live.set(generation);
        self.announcer.start(&self.conn);
        Ok(conn)
    }

    /// Commits `row` (alone or with other sessions' rows), returning what
    /// became of it; see the module docs.
    pub(crate) fn append(&self, row: AppendRow) -> Outcome {
        let (reply, answers) = channel();
        let lead = {
            let mut queue = self.queue();
            queue.pending.push_back(Job { row, reply });
            if queue.gathering && queue.pending.len() >= queue.pace.expected() {
                self.arrived.notify_one();
            }
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead {
            match answers.recv() {
                Ok(Reply::Done(outcome)) => return outcome,
                Ok(Reply::Lead) => {}
                Err(_) => return Outcome::Panicked("the group commit ended".to_owned()),
            }
        }
        self.lead();
        match answers.recv() {
            Ok(Reply::Done(outcome)) => outcome,
            _ => Outcome::Panicked("the group commit ended without an answer".to_owned()),
        }
    }

    /// Commits `rows` on the current connection (see [`Conn::commit`]),
    /// announcing them now or later (see [`super::announce`]).
    pub(super) fn commit_rows(&self, rows: &[&AppendRow]) -> Vec<Outcome> {
        let conn = self.current();
        let Some(conn) = conn.as_ref() else {
            return rows.iter().map(|_| Outcome::Lost).collect();
        };
        let (outcomes, unannounced) = conn.commit(rows, &self.stats, self.announcer.take_due());
        self.announcer.defer(unannounced, &self.conn);
        outcomes
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits the rows queued now (this leader's first), hands the lead on
    /// to the next queued row, if any, then answers each row of the batch.
    fn lead(&self) {
        let batch: Vec<Job> = {
            let mut queue = crate::commit::gather(
                &self.queue,
                &self.arrived,
                |q: &Queue| q.pending.len() >= q.pace.expected().min(MAX_BATCH),
                |q: &Queue| q.pace.gather_time(),
                |q: &mut Queue, on| q.gathering = on,
            );
            let n = queue.pending.len().min(MAX_BATCH);
            queue.pending.drain(..n).collect()
        };
        let started = Instant::now();
        let rows: Vec<&AppendRow> = batch.iter().map(|j| &j.row).collect();
        let outcomes =
            catch_unwind(AssertUnwindSafe(|| self.commit_rows(&rows))).unwrap_or_else(|panic| {
                // Whatever the connection was doing, it goes: its open
                // transaction rolls back, and its writers lose their locks.
                *self.current() = None;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                rows.iter()
                    .map(|_| Outcome::Panicked(message.clone()))
                    .collect()
            });
        {
            let mut queue = self.queue();
            queue
                .pace
                .record(rows.iter().map(|r| r.session.clone()), started.elapsed());
            match queue.pending.front() {
                Some(next) => {
                    if next.reply.send(Reply::Lead).is_err() {
                        // Its writer is gone (it cannot be: it waits);
                        // nobody leads, so the next append will.
                        queue.leading = false;
                    }
                }
                None => queue.leading = false,
            }
        }
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let _ = job.reply.send(Reply::Done(outcome));
        }
    }
}

impl Drop for WriteLink {
    fn drop(&mut self) {
        // What is pending is announced before the connection closes.
        self.announcer.close(&self.conn);
    }
}
