//! Rows H1 and H2: a server restoring the long session of [`crate::huge`]:
//! its resident memory once it serves the session, and what a client's
//! first attach costs.
//!
//! # Method
//!
//! The server runs in a process of its own when the caller can start one
//! ([`ServerLauncher::Command`]: the `podlog-bench` program starts itself
//! again with the hidden `--serve-restored SPEC`), set up as `podlog serve`
//! sets up its pods: it opens the database with the default options, restores
//! a pod on the session with `Pod::restore` (on the blocking pool of a
//! multi-thread runtime with a worker per core, so the pod's run loop is a
//! task of that runtime), starts `podlog-server` on a loopback port, and
//! only then reads its resident set (`VmRSS`) and its peak (`VmHWM`) from
//! `/proc/self/status`, before any client attaches (H1). It also reads the
//! resident set after `malloc_trim`, which hands freed heap back to the
//! system: what the server holds, against what it happens to keep.
//!
//! Then this process attaches as a client (H2): `GET /pods/{pod}/events`
//! with no parameter, counting the bytes of the first SSE message, which
//! must be the snapshot ending at the session's last seq (the client scans
//! it as it arrives and never holds it); then `?tail=N`, whose snapshot is
//! parsed and must hold the last `N` entries. When both are done the server
//! reads its peak again (what the attaches cost it) and shuts down.
//!
//! [`ServerLauncher::InProcess`] runs the server on a thread of this process
//! instead (for tests): the memory figures are then this whole process's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use podlog_entry::SessionId;
use podlog_pod::{Pod, ScriptedDriver};
use podlog_server::{PodRegistry, Server, ServerConfig};
use podlog_store::{Store, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::error::{self, BenchError, Result};
use crate::fanout::{trim_heap, POD};
use crate::sse_client::{FirstFrame, SseStream};

/// The most of a tail-first snapshot the client keeps to check it.
const TAIL_KEEP: usize = 64 << 20;

/// How long a restore may take before the server counts as stuck.
const READY_TIMEOUT: Duration = Duration::from_secs(1_800);

/// How long one attach may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(600);

/// What the server process serves: handed to it as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeSpec {
    /// The database.
    pub db: PathBuf,
    /// The session to restore.
    pub session: String,
}

/// The server, restored and serving, before any client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerReady {
    pub addr: SocketAddr,
    /// How long `Pod::restore` took.
    pub restore_ms: f64,
    /// The restored session's last seq.
    pub end_seq: u64,
    /// `VmRSS` then, in bytes (`None` without `/proc/self/status`).
    pub rss_bytes: Option<u64>,
    /// `VmHWM` then: the most the process had resident so far.
    pub hwm_bytes: Option<u64>,
    /// `VmRSS` once `malloc_trim` returned freed heap.
    pub trimmed_rss_bytes: Option<u64>,
}

/// The server after the clients were done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerDone {
    pub rss_bytes: Option<u64>,
    pub hwm_bytes: Option<u64>,
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`) in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

fn check(problem: impl Into<String>) -> BenchError {
    BenchError::Check {
        row: "H1",
        problem: problem.into(),
    }
}

/// The server's side: restores and serves the session of `spec`, tells
/// `ready` where and how big it is, waits for `wait` to return (the
/// clients are done), and returns its memory then.
pub fn serve_restored(
    spec: &ServeSpec,
    ready: &mut dyn FnMut(&ServerReady) -> std::io::Result<()>,
    wait: &mut dyn FnMut(),
) -> Result<ServerDone> {
    let session = SessionId::new(spec.session.as_str()).map_err(|e| check(e.to_string()))?;
    // As `podlog serve`: a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| check(format!("cannot start the server runtime: {e}")))?;
    let store =
        Arc::new(Store::open(&spec.db, StoreOptions::default()).map_err(error::store("H1"))?);
    let start = Instant::now();
    let restored = {
        let store = store.clone();
        runtime.block_on(runtime.spawn_blocking(move || {
            Pod::restore(store, &session, Box::new(ScriptedDriver::demo()))
        }))
    };
    let pod = restored
        .map_err(|e| check(format!("the restore did not finish: {e}")))?
        .map_err(|e| check(format!("cannot restore the pod: {e}")))?;
    let restore_ms = start.elapsed().as_secs_f64() * 1e3;
    let pods = PodRegistry::new();
    pods.insert(POD, pod.clone()).map_err(check)?;
    let config = ServerConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ServerConfig::default()
    };
    let server = runtime
        .block_on(Server::start(config, store, pods))
        .map_err(|e| check(format!("cannot start the server: {e}")))?;
    let served = match server.local_addr() {
        Some(addr) => {
            let rss_bytes = proc_status_bytes("VmRSS");
            let hwm_bytes = proc_status_bytes("VmHWM");
            trim_heap();
            let report = ServerReady {
                addr,
                restore_ms,
                end_seq: pod.end_seq().get(),
                rss_bytes,
                hwm_bytes,
                trimmed_rss_bytes: proc_status_bytes("VmRSS"),
            };
            match ready(&report) {
                Ok(()) => {
                    wait();
                    Ok(ServerDone {
                        rss_bytes: proc_status_bytes("VmRSS"),
                        hwm_bytes: proc_status_bytes("VmHWM"),
                    })
                }
                Err(e) => Err(check(format!("cannot report the server ready: {e}"))),
            }
        }
        None => Err(check("the server has no TCP address")),
    };
    let stopped = runtime.block_on(server.shutdown());
    pod.shutdown();
    drop(pod);
    drop(runtime);
    let done = served?;
    stopped.map_err(|e| check(format!("the server did not shut down cleanly: {e}")))?;
    Ok(done)
}

/// The server process's side: `spec` is a [`ServeSpec`] as JSON. Writes
/// `ready JSON` (a [`ServerReady`]) once serving, waits for `input` to end,
/// then writes `done JSON` (a [`ServerDone`]).
pub fn server_main(spec: &str, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    let spec: ServeSpec =
        serde_json::from_str(spec).map_err(|e| check(format!("bad spec: {e}")))?;
    let done = serve_restored(
        &spec,
        &mut |ready| {
            let line = serde_json::to_string(ready).map_err(std::io::Error::other)?;
            writeln!(out, "ready {line}").and_then(|()| out.flush())
        },
        &mut || {
            let mut line = String::new();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        },
    )?;
    let line = serde_json::to_string(&done).map_err(|e| check(e.to_string()))?;
    writeln!(out, "done {line}")
        .and_then(|()| out.flush())
        .map_err(|e| check(format!("cannot report the server done: {e}")))
}

/// Where the server of rows H1 and H2 runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerLauncher {
    /// On a thread of this process.
    InProcess,
    /// In a process started as `program args... SPEC`, which runs
    /// [`server_main`] with the spec, its stdin and its stdout.
    Command { program: PathBuf, args: Vec<String> },
}

/// What rows H1 and H2 measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoredResult {
    pub ready: ServerReady,
    pub done: ServerDone,
    /// The first message of a default attach (its data not kept).
    pub first: FirstFrame,
    /// The first message of a `?tail=N` attach.
    pub tail: FirstFrame,
    /// Entries in the tail-first snapshot.
    pub tail_entries: usize,
    /// Whether the server ran in a process of its own.
    pub separate_process: bool,
}

/// A server under way.
enum Running {
    Thread {
        ready: mpsc::Receiver<ServerReady>,
        release: mpsc::Sender<()>,
        done: mpsc::Receiver<Result<ServerDone>>,
    },
    Process {
        child: Child,
        stdin: Option<ChildStdin>,
        lines: mpsc::Receiver<String>,
    },
}

impl Running {
    fn start(launcher: &ServerLauncher, spec: &ServeSpec) -> Result<Self> {
        match launcher {
            ServerLauncher::InProcess => {
                let (ready_tx, ready) = mpsc::channel();
                let (release, release_rx) = mpsc::channel::<()>();
                let (done_tx, done) = mpsc::channel();
                let spec = spec.clone();
                std::thread::Builder::new()
                    .name("bench-server".to_owned())
                    .spawn(move || {
                        let result = serve_restored(
                            &spec,
                            &mut |r| {
                                let _ = ready_tx.send(r.clone());
                                Ok(())
                            },
                            &mut || {
                                let _ = release_rx.recv();
                            },
                        );
                        let _ = done_tx.send(result);
                    })
                    .map_err(|e| check(format!("cannot start the server thread: {e}")))?;
                Ok(Running::Thread {
                    ready,
                    release,
                    done,
                })
            }
            ServerLauncher::Command { program, args } => {
                let spec = serde_json::to_string(spec).map_err(|e| check(e.to_string()))?;
                let mut child = Command::new(program)
                    .args(args)
                    .arg(spec)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(error::io("H1", "starting the server", program))?;
                let stdin = child.stdin.take();
                let Some(stdout) = child.stdout.take() else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(check("the server process has no stdout"));
                };
                let (tx, lines) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                Ok(Running::Process {
                    child,
                    stdin,
                    lines,
                })
            }
        }
    }

    /// The server's report once it serves; waits at most `timeout`.
    fn ready(&mut self, timeout: Duration) -> Result<ServerReady> {
        match self {
            Running::Thread { ready, done, .. } => match ready.recv_timeout(timeout) {
                Ok(r) => Ok(r),
                Err(mpsc::RecvTimeoutError::Disconnected) => match done.recv() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(check("the server thread ended before serving")),
                },
                Err(e) => Err(check(format!("the server did not start: {e}"))),
            },
            Running::Process { child, lines, .. } => {
                let line = match lines.recv_timeout(timeout) {
                    Ok(line) => line,
                    Err(e) => {
                        if matches!(e, mpsc::RecvTimeoutError::Timeout) {
                            let _ = child.kill();
                        }
                        return Err(check(format!(
                            "the server process did not start: {e}; {}",
                            exit_report(child)
                        )));
                    }
                };
                let json = line
                    .strip_prefix("ready ")
                    .ok_or_else(|| check(format!("the server process said {line:?}")))?;
                serde_json::from_str(json)
                    .map_err(|e| check(format!("the server's report does not decode: {e}: {json}")))
            }
        }
    }

    /// Tells the server the clients are done and returns its last report;
    /// waits at most `timeout`.
    fn finish(self, timeout: Duration) -> Result<ServerDone> {
        match self {
            Running::Thread { release, done, .. } => {
                let _ = release.send(());
                done.recv_timeout(timeout)
                    .map_err(|e| check(format!("the server thread did not finish: {e}")))?
            }
            Running::Process {
                mut child,
                stdin,
                lines,
            } => {
                drop(stdin);
                let line = lines.recv_timeout(timeout);
                if line.is_err() {
                    let _ = child.kill();
                }
                let report = exit_report(&mut child);
                let line = line.map_err(|e| {
                    check(format!("the server process gave no report: {e}; {report}"))
                })?;
                let json = line
                    .strip_prefix("done ")
                    .ok_or_else(|| check(format!("the server process said {line:?}")))?;
                serde_json::from_str(json)
                    .map_err(|e| check(format!("the server's report does not decode: {e}: {json}")))
            }
        }
    }

    fn abort(self) {
        match self {
            Running::Thread { release, .. } => {
                let _ = release.send(());
            }
            Running::Process { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// How a server process ended, and what it said on stderr.
fn exit_report(child: &mut Child) -> String {
    let status = child.wait();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    format!("{status:?}; stderr: {}", stderr.trim())
}

/// Serves session `session` of the database at `db` with a server started
/// by `launcher`, and attaches to it twice: by default, and with
/// `?tail=tail` (see the module docs).
pub fn measure_restored(
    db: &Path,
    session: &SessionId,
    tail: usize,
    launcher: &ServerLauncher,
) -> Result<RestoredResult> {
    let spec = ServeSpec {
        db: db.to_owned(),
        session: session.to_string(),
    };
    let mut server = Running::start(launcher, &spec)?;
    let ready = match server.ready(READY_TIMEOUT) {
        Ok(ready) => ready,
        Err(e) => {
            server.abort();
            return Err(e);
        }
    };
    let attached = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| check(format!("cannot start the client runtime: {e}")))
        .and_then(|rt| rt.block_on(attach(ready.addr, ready.end_seq, tail)));
    let done = server.finish(Duration::from_secs(120));
    let (first, tail_frame, tail_entries) = attached?;
    Ok(RestoredResult {
        ready,
        done: done?,
        first,
        tail: tail_frame,
        tail_entries,
        separate_process: matches!(launcher, ServerLauncher::Command { .. }),
    })
}

fn h2(problem: impl Into<String>) -> BenchError {
    BenchError::Check {
        row: "H2",
        problem: problem.into(),
    }
}

/// The default attach and the tail-first one.
async fn attach(
    addr: SocketAddr,
    end_seq: u64,
    tail: usize,
) -> Result<(FirstFrame, FirstFrame, usize)> {
    let path = format!("/pods/{POD}/events");
    let first = first_frame(addr, &path, 0).await?;
    let tail_path = format!("{path}?tail={tail}");
    let tail_frame = first_frame(addr, &tail_path, TAIL_KEEP).await?;
    for (frame, path) in [(&first, &path), (&tail_frame, &tail_path)] {
        if frame.event != "snapshot" || frame.id_seq() != Some(end_seq) {
            return Err(h2(format!(
                "GET {path}: the first event is {:?} with id {:?}, want the snapshot ending at \
                 seq {end_seq}",
                frame.event, frame.id
            )));
        }
    }
    let data = tail_frame.data.as_deref().ok_or_else(|| {
        h2(format!(
            "GET {tail_path}: the snapshot is over {} MiB",
            TAIL_KEEP >> 20
        ))
    })?;
    let snapshot: serde_json::Value = serde_json::from_str(data).map_err(|e| {
        h2(format!(
            "GET {tail_path}: the snapshot does not decode: {e}"
        ))
    })?;
    let seqs: Vec<u64> = snapshot["entries"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default();
    let want = (tail as u64).min(end_seq);
    let expected: Vec<u64> = (end_seq + 1 - want..=end_seq).collect();
    if seqs != expected {
        return Err(h2(format!(
            "GET {tail_path}: the snapshot holds {} entries from seq {:?}, want the last {want} \
             (seq {} to {end_seq})",
            seqs.len(),
            seqs.first(),
            end_seq + 1 - want
        )));
    }
    Ok((first, tail_frame, seqs.len()))
}

async fn first_frame(addr: SocketAddr, path: &str, keep: usize) -> Result<FirstFrame> {
    let io = |e: std::io::Error| h2(format!("GET {path}: {e}"));
    let measured = async {
        let stream = SseStream::open(addr, path, None).await?;
        stream.measure_first_frame(keep).await
    };
    tokio::time::timeout(ATTACH_TIMEOUT, measured)
        .await
        .map_err(|_| {
            h2(format!(
                "GET {path}: no first event within {} s",
                ATTACH_TIMEOUT.as_secs()
            ))
        })?
        .map_err(io)
}
