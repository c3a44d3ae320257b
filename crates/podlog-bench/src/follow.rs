//! F1 and F2: following sessions other connections write
//! (`podlog_pod::Followers`, behind `GET /sessions/{id}/events`).
//!
//! * F1, latency: a writer on a store connection of its own (what another
//!   process has: `PRAGMA data_version` sees both the same) commits entries
//!   at a steady pace; a follower of the session, on the server's store,
//!   receives each as an event. The latency of an entry is from its
//!   `append` returning (committed and flushed) to the follower's receiver
//!   getting its event.
//! * F2, idle cost: the CPU time the whole process uses over a window while
//!   it follows many sessions, each with a subscriber, and nothing is
//!   committed, as a share of one core (`getrusage`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{LogEntry, Seq, SystemItem};
use podlog_pod::{Followers, PodError};
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store, StoreOptions, Synchronous};
use tokio::sync::broadcast::error::RecvError;

use crate::error::{self, BenchError, Result};

fn options() -> StoreOptions {
    StoreOptions {
        synchronous: Synchronous::Normal,
        ..StoreOptions::default()
    }
}

fn pod_error(row: &'static str) -> impl Fn(PodError) -> BenchError {
    move |e| BenchError::Check {
        row,
        problem: e.to_string(),
    }
}

fn note(n: usize) -> LogEntry {
    LogEntry::SystemItem {
        ts: n as u64,
        item: SystemItem::Notification {
            message: format!("step {n}"),
            body: format!("the writer's step {n}"),
        },
    }
}

/// F1: the latency of each of `commits` entries, committed every `pace`
/// by another connection, to a follower's event.
pub fn measure_follow_latency(dir: &Path, commits: usize, pace: Duration) -> Result<Vec<Duration>> {
    const ROW: &str = "F1";
    let path = dir.join("follow-latency.db");
    let server = Arc::new(Store::open(&path, options()).map_err(error::store(ROW))?);
    let writer_store = Arc::new(Store::open(&path, options()).map_err(error::store(ROW))?);
    let (id, start) = writer_store
        .create_session(NewSession::default())
        .map_err(error::store(ROW))?;
    let followers = Followers::new(server.clone());
    let follow = followers.follow(&id).map_err(pod_error(ROW))?;
    let (_, mut rx) = follow.subscribe_tail(Some(1)).map_err(pod_error(ROW))?;
    let receiver = std::thread::spawn(move || {
        let mut got: HashMap<Seq, Instant> = HashMap::new();
        while got.len() < commits {
            match rx.blocking_recv() {
                Ok(event) => {
                    got.insert(event.watermark(), Instant::now());
                }
                Err(RecvError::Lagged(n)) => return Err(format!("the follower lagged by {n}")),
                Err(RecvError::Closed) => return Err("the follow closed".to_owned()),
            }
        }
        Ok(got)
    });
    let sink = SessionLogSink::with_initial([start]).map_err(error::sink(ROW))?;
    let mut writer = writer_store
        .session_writer(&id)
        .map_err(error::store(ROW))?;
    let mut committed = Vec::with_capacity(commits);
    for n in 0..commits {
        let seq = writer.append(note(n), &sink).map_err(error::store(ROW))?;
        committed.push((seq, Instant::now()));
        std::thread::sleep(pace);
    }
    let got = receiver
        .join()
        .map_err(|_| BenchError::Check {
            row: ROW,
            problem: "the receiver panicked".to_owned(),
        })?
        .map_err(|problem| BenchError::Check { row: ROW, problem })?;
    committed
        .into_iter()
        .map(|(seq, at)| match got.get(&seq) {
            Some(seen) => Ok(seen.saturating_duration_since(at)),
            None => Err(BenchError::Check {
                row: ROW,
                problem: format!("seq {seq} never reached the follower"),
            }),
        })
        .collect()
}

/// CPU time (user and system) of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes the struct it is given and reads nothing.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// F2: the share of one core (in %) the process uses over `window` while
/// it follows `sessions` sessions, each with a subscriber, and nothing is
/// committed.
pub fn measure_idle_follow_cpu(dir: &Path, sessions: usize, window: Duration) -> Result<f64> {
    const ROW: &str = "F2";
    let path = dir.join("follow-idle.db");
    let store = Arc::new(Store::open(&path, options()).map_err(error::store(ROW))?);
    let followers = Followers::new(store.clone());
    let mut held = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let (id, _) = store
            .create_session(NewSession::default())
            .map_err(error::store(ROW))?;
        let follow = followers.follow(&id).map_err(pod_error(ROW))?;
        let (_, rx) = follow.subscribe_tail(Some(1)).map_err(pod_error(ROW))?;
        held.push((follow, rx));
    }
    if followers.followed() != sessions {
        return Err(BenchError::Check {
            row: ROW,
            problem: format!("{} sessions followed, not {sessions}", followers.followed()),
        });
    }
    // Let the watcher see the creations, then measure it idle.
    std::thread::sleep(Duration::from_millis(200));
    let (cpu, wall) = (process_cpu(), Instant::now());
    std::thread::sleep(window);
    let used = process_cpu().saturating_sub(cpu);
    let share = 100.0 * used.as_secs_f64() / wall.elapsed().as_secs_f64();
    drop(held);
    Ok(share)
}
