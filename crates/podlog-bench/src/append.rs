//! podlog's side of the append rows: P1 (durable append, one session), P2
//! (append at `synchronous=NORMAL`) and P3 (eight sessions appending at once
//! through one store).
//!
//! Each fixture owns one database file in the directory it is given, and one
//! session per writer with its sink, so every append goes the whole way:
//! the session's `SessionWriter` commits the entry, then publishes it to the
//! session's mirror. Timed runs take their entries already generated.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use podlog_entry::{LogEntry, RequestConfig, StepClock};
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, SequentialIds, SessionWriter, Store, StoreOptions, Synchronous};

use crate::corpus::Corpus;
use crate::error::{self, BenchError, Result};

/// Opens a store at `dir/name` with deterministic ids and clock.
pub fn open_store(
    row: &'static str,
    dir: &Path,
    name: &str,
    synchronous: Synchronous,
) -> Result<Arc<Store>> {
    let options = StoreOptions {
        synchronous,
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1)),
        ids: Arc::new(SequentialIds::new("bench")),
        ..StoreOptions::default()
    };
    Store::open(dir.join(name), options)
        .map(Arc::new)
        .map_err(error::store(row))
}

/// Creates a session: its writer, and a sink seeded with its `SessionStart`.
pub fn new_session(
    row: &'static str,
    store: &Arc<Store>,
) -> Result<(SessionWriter, SessionLogSink)> {
    let (id, start) = store
        .create_session(NewSession {
            title: Some("benchmark".to_owned()),
            system_prompt: Some("You are a careful coding assistant.".to_owned()),
            config: RequestConfig {
                model: "demo-model-1".to_owned(),
                ..RequestConfig::default()
            },
            history: vec![],
        })
        .map_err(error::store(row))?;
    let sink = SessionLogSink::with_initial([start]).map_err(error::sink(row))?;
    let writer = store.session_writer(&id).map_err(error::store(row))?;
    Ok((writer, sink))
}

/// One session appended to from one thread (P1 at `Full`, P2 at `Normal`).
pub struct PodlogAppend {
    row: &'static str,
    store: Arc<Store>,
    writer: SessionWriter,
    sink: SessionLogSink,
}

impl PodlogAppend {
    /// A fresh store at `dir/name` with one session.
    pub fn open(
        row: &'static str,
        dir: &Path,
        name: &str,
        synchronous: Synchronous,
    ) -> Result<Self> {
        Self::with_store(row, open_store(row, dir, name, synchronous)?)
    }

    /// One new session of `store`, which may be on either backend.
    pub fn with_store(row: &'static str, store: Arc<Store>) -> Result<Self> {
        let (writer, sink) = new_session(row, &store)?;
        Ok(Self {
            row,
            store,
            writer,
            sink,
        })
    }

    /// Appends `entries` one transaction each and returns the time taken.
    /// Checks afterwards that every entry reached the mirror.
    pub fn run(&mut self, entries: Vec<LogEntry>) -> Result<Duration> {
        let n = entries.len();
        let before = self.sink.len();
        let start = Instant::now();
        for entry in entries {
            self.writer
                .append(entry, &self.sink)
                .map_err(error::store(self.row))?;
        }
        let elapsed = start.elapsed();
        check_published(self.row, &self.sink, before + n)?;
        Ok(elapsed)
    }

    /// The session's mirror.
    pub fn sink(&self) -> &SessionLogSink {
        &self.sink
    }

    /// The store appended to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Runs each of `jobs` on a thread of its own, all starting together
/// (after a barrier), and returns the time from that start until the last
/// one finished; fails with the first job's error, or if a `what` thread
/// panicked.
pub fn run_together<F>(row: &'static str, what: &str, jobs: Vec<F>) -> Result<Duration>
where
    F: FnOnce() -> Result<()> + Send,
{
    let barrier = Barrier::new(jobs.len() + 1);
    let (elapsed, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    job()
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<()>> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Check {
                        row,
                        problem: format!("a {what} thread panicked"),
                    })
                })
            })
            .collect();
        (start.elapsed(), results)
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(elapsed)
}

/// Several sessions of one store, each appended to by its own thread at the
/// same time (P3).
pub struct GroupAppend {
    row: &'static str,
    store: Arc<Store>,
    sessions: Vec<(SessionWriter, SessionLogSink)>,
    corpora: Vec<Corpus>,
}

impl GroupAppend {
    /// A fresh store at `dir/name` with `writers` sessions.
    pub fn open(
        row: &'static str,
        dir: &Path,
        name: &str,
        synchronous: Synchronous,
        writers: usize,
    ) -> Result<Self> {
        Self::with_store(row, open_store(row, dir, name, synchronous)?, writers)
    }

    /// `writers` new sessions of `store`, which may be on either backend.
    pub fn with_store(row: &'static str, store: Arc<Store>, writers: usize) -> Result<Self> {
        let sessions = (0..writers)
            .map(|_| new_session(row, &store))
            .collect::<Result<Vec<_>>>()?;
        let corpora = (0..writers as u64).map(|i| Corpus::new(100 + i)).collect();
        Ok(Self {
            row,
            store,
            sessions,
            corpora,
        })
    }

    /// How the store grouped appends into transactions since it opened.
    pub fn commit_stats(&self) -> podlog_store::commit::CommitStats {
        match (self.store.as_sqlite(), self.store.as_postgres()) {
            (Some(s), _) => s.commit_stats(),
            (_, Some(p)) => p.commit_stats(),
            _ => Default::default(),
        }
    }

    /// The store appended to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How many sessions append at once.
    pub fn writers(&self) -> usize {
        self.sessions.len()
    }

    /// Every writer appends `per_writer` entries to its session, all
    /// starting together; returns the time from the start until the last
    /// writer finished. Checks afterwards that every entry reached its
    /// session's mirror.
    pub fn run(&mut self, per_writer: usize) -> Result<Duration> {
        let batches: Vec<Vec<LogEntry>> = self
            .corpora
            .iter_mut()
            .map(|c| c.take_vec(per_writer))
            .collect();
        let before: Vec<usize> = self.sessions.iter().map(|(_, s)| s.len()).collect();
        let row = self.row;
        let jobs = self
            .sessions
            .iter_mut()
            .zip(batches)
            .map(|((writer, sink), batch)| {
                move || {
                    for entry in batch {
                        writer.append(entry, sink).map_err(error::store(row))?;
                    }
                    Ok(())
                }
            })
            .collect();
        let elapsed = run_together(row, "writer", jobs)?;
        for ((_, sink), before) in self.sessions.iter().zip(before) {
            check_published(self.row, sink, before + per_writer)?;
        }
        Ok(elapsed)
    }
}

fn check_published(row: &'static str, sink: &SessionLogSink, want: usize) -> Result<()> {
    if sink.len() == want {
        Ok(())
    } else {
        Err(BenchError::Check {
            row,
            problem: format!(
                "the mirror holds {} entries after the run, want {want}",
                sink.len()
            ),
        })
    }
}

/// Entries per second for `n` entries in `elapsed` (infinite for a zero
/// duration, which the caller reports as it is).
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}
