//! podlog's side of the mirror rows: P4 (the cost of
//! `subscribe_with_snapshot` as the log grows) and P5 (publish latency while
//! subscribers attach).
//!
//! Mirrors of any length are built from a pool of distinct `Arc`-shared
//! entries, so a million-entry mirror does not need a million bodies in
//! memory: what P4 and P5 measure (the mirror's structure, its lock and the
//! broadcast) does not depend on the bodies.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{Committed, LogEntry, RequestConfig, Seq};
use podlog_sink::SessionLogSink;

use crate::baseline::SeedSink;
use crate::error::{self, BenchError, Result};

/// The `SessionStart` every built mirror opens with.
pub fn session_start() -> LogEntry {
    LogEntry::SessionStart {
        ts: 1_700_000_000_000,
        system_prompt: Some("You are a careful coding assistant.".to_owned()),
        config: RequestConfig {
            model: "demo-model-1".to_owned(),
            ..RequestConfig::default()
        },
        history: vec![],
        forked_from: None,
        compacted_from: None,
    }
}

/// The entries of a `len`-entry session: a `SessionStart`, then the pool's
/// entries in turn (sharing their `Arc`s).
pub fn committed_entries(
    pool: &[Arc<LogEntry>],
    len: usize,
) -> impl Iterator<Item = Committed> + '_ {
    let start = Arc::new(session_start());
    (1..=len as u64).map(move |seq| Committed {
        seq: Seq(seq),
        entry: if seq == 1 || pool.is_empty() {
            start.clone()
        } else {
            pool[(seq as usize - 2) % pool.len()].clone()
        },
        payloads: None,
    })
}

/// A sink whose mirror holds a `len`-entry session.
pub fn build_mirror(pool: &[Arc<LogEntry>], len: usize) -> Result<SessionLogSink> {
    SessionLogSink::with_initial(committed_entries(pool, len)).map_err(error::sink("P4"))
}

/// The seed's sink holding a `len`-entry session, every entry its own deep
/// copy as the seed's `Vec<LogEntry>` holds them.
pub fn build_seed_mirror(pool: &[Arc<LogEntry>], len: usize) -> SeedSink {
    SeedSink::with_initial(
        committed_entries(pool, len)
            .map(|c| LogEntry::clone(&c.entry))
            .collect(),
    )
}

/// Times `samples` calls of `subscribe_with_snapshot`, one by one, in
/// nanoseconds. Each snapshot and receiver is dropped after its timing.
pub fn subscribe_latencies(sink: &SessionLogSink, samples: usize) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            let pair = sink.subscribe_with_snapshot();
            let elapsed = start.elapsed();
            black_box(&pair);
            drop(pair);
            nanos(elapsed)
        })
        .collect()
}

/// [`subscribe_latencies`] for the seed's sink.
pub fn seed_subscribe_latencies(sink: &SeedSink, samples: usize) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            let pair = sink.subscribe_with_snapshot();
            let elapsed = start.elapsed();
            black_box(&pair);
            drop(pair);
            nanos(elapsed)
        })
        .collect()
}

/// Nanoseconds in `d`, as a float.
pub fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// What attaches while [`PublishUnderAttach::run`] publishes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attach {
    /// Nothing.
    None,
    /// One thread attaching back to back, as fast as it can.
    Loop,
    /// One thread attaching at this many per second.
    Paced(f64),
}

/// One run of [`PublishUnderAttach::run`].
#[derive(Clone, Debug, PartialEq)]
pub struct PublishRun {
    /// Each `publish` call's latency, in nanoseconds.
    pub latencies: Vec<f64>,
    /// `subscribe_with_snapshot` calls made meanwhile.
    pub attaches: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

impl PublishRun {
    /// Attaches per second during the run.
    pub fn attach_rate(&self) -> f64 {
        self.attaches as f64 / self.elapsed.as_secs_f64()
    }
}

/// Publishes to a long mirror with `subscribers` receivers attached, and
/// optionally a thread that keeps attaching new ones (P5).
pub struct PublishUnderAttach {
    sink: SessionLogSink,
    pool: Vec<Arc<LogEntry>>,
    subscribers: usize,
    next: usize,
}

impl PublishUnderAttach {
    /// A sink with a `len`-entry mirror built from `pool`; `subscribers`
    /// receivers are attached during each run.
    pub fn new(pool: Vec<Arc<LogEntry>>, len: usize, subscribers: usize) -> Result<Self> {
        if pool.is_empty() {
            return Err(BenchError::Check {
                row: "P5",
                problem: "the entry pool is empty".to_owned(),
            });
        }
        let sink = build_mirror(&pool, len)?;
        Ok(Self {
            sink,
            pool,
            subscribers,
            next: 0,
        })
    }

    /// Publishes `publishes` entries and returns each `publish` call's
    /// latency and how many attaches ran meanwhile.
    ///
    /// Throughout the run `subscribers` receivers are attached and never
    /// read (they lag, as a slow client does). With [`Attach::Loop`] or
    /// [`Attach::Paced`], another thread keeps calling
    /// `subscribe_with_snapshot`, each time keeping the new receiver and
    /// dropping the oldest, so there are always `subscribers` of them while
    /// attaches run back to back (or at the given rate); with
    /// [`Attach::None`], the same number of receivers sit attached and
    /// nothing attaches.
    pub fn run(&mut self, publishes: usize, attach: Attach) -> Result<PublishRun> {
        let attaching = attach != Attach::None;
        let pace = match attach {
            Attach::Paced(per_second) if per_second > 0.0 => {
                Some(Duration::from_secs_f64(1.0 / per_second))
            }
            _ => None,
        };
        let sink = &self.sink;
        let subscribers = self.subscribers;
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        let mut held: VecDeque<_> = (0..subscribers)
            .map(|_| sink.subscribe_with_snapshot())
            .collect();
        let entries: Vec<Committed> = {
            let first = sink.end_seq().next().get();
            (0..publishes as u64)
                .map(|i| Committed {
                    seq: Seq(first + i),
                    entry: self.pool[(self.next + i as usize) % self.pool.len()].clone(),
                    payloads: None,
                })
                .collect()
        };
        self.next += publishes;
        let run_start = Instant::now();
        let (latencies, attaches) = std::thread::scope(|scope| {
            let attacher = attaching.then(|| {
                let held = std::mem::take(&mut held);
                let (stop, started) = (&stop, &started);
                scope.spawn(move || {
                    let mut held = held;
                    let mut attaches = 0u64;
                    let begin = Instant::now();
                    loop {
                        if let Some(pace) = pace {
                            // Spin to the next due time: sleeping is far
                            // coarser than the pace.
                            let due = begin + pace * attaches as u32;
                            while Instant::now() < due && !stop.load(Ordering::Relaxed) {
                                std::hint::spin_loop();
                            }
                        }
                        held.push_back(sink.subscribe_with_snapshot());
                        if held.len() > subscribers {
                            held.pop_front();
                        }
                        attaches += 1;
                        started.store(true, Ordering::Release);
                        if stop.load(Ordering::Relaxed) {
                            break attaches;
                        }
                    }
                })
            });
            // Publishing starts once attaching is under way.
            while attaching
                && !started.load(Ordering::Acquire)
                && !attacher.as_ref().is_some_and(|h| h.is_finished())
            {
                std::thread::yield_now();
            }
            let mut latencies = Vec::with_capacity(entries.len());
            let mut result = Ok(());
            for committed in entries {
                let start = Instant::now();
                let published = sink.publish(committed);
                latencies.push(nanos(start.elapsed()));
                if let Err(source) = published {
                    result = Err(BenchError::Sink { row: "P5", source });
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            let attaches = attacher.map(|h| h.join().unwrap_or(0));
            (result.map(|()| latencies), attaches)
        });
        let elapsed = run_start.elapsed();
        drop(held);
        let attaches = attaches.unwrap_or(0);
        if attaching && attaches == 0 {
            return Err(BenchError::Check {
                row: "P5",
                problem: "no subscriber attached during the run".to_owned(),
            });
        }
        Ok(PublishRun {
            latencies: latencies?,
            attaches,
            elapsed,
        })
    }

    /// The sink published to.
    pub fn sink(&self) -> &SessionLogSink {
        &self.sink
    }
}
