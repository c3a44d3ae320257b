//! Row P8: SSE fan-out. One pod served over HTTP by `podlog-server`, many
//! clients attached to its event stream, live events committed at a fixed
//! rate; measured: whether every event reached every client in order, the
//! end-to-end latency from the commit call to the client having parsed the
//! event, and the server's resident memory per idle client.
//!
//! # Method
//!
//! The server side ([`measure_fanout`]) runs in this process: a store
//! (`synchronous=FULL`), a pod whose session holds a short history, and the
//! server on a loopback port, on a two-worker tokio runtime. The clients run
//! in another process when the caller can start one
//! ([`ClientLauncher::Command`], which the `podlog-bench` program and the
//! `fanout` bench use, each starting itself again), so the server's memory
//! is measured alone; [`ClientLauncher::InProcess`] runs them on a thread of
//! this process instead (for tests: the memory figure then includes the
//! clients').
//!
//! 1. The heap is trimmed and the resident set read; the clients attach
//!    (at most 64 at a time), each reading the `GET /pods/{pod}/events`
//!    snapshot; once all have it, the resident set is read again. The
//!    difference over the number of clients is the server's memory per idle
//!    client (sockets' kernel buffers are not resident memory and are not
//!    counted).
//! 2. `events` entries are committed through `Pod::commit` at `rate` per
//!    second, each carrying its index and the monotonic clock
//!    (`CLOCK_MONOTONIC`, shared by every process of the machine) read just
//!    before the commit, so the latency includes the durable commit.
//! 3. Each client checks that it got every index, in order, once, and
//!    records each event's latency; the run reports the deliveries, the
//!    clients that got everything, and the latency percentiles. The server
//!    process's CPU time (`getrusage`) from the first commit until every
//!    client is done, over the events, is its CPU cost per event.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use podlog_entry::{LogEntry, RequestConfig};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_server::{PodRegistry, Server, ServerConfig};
use podlog_store::{NewSession, Synchronous};
use serde::{Deserialize, Serialize};

use crate::append::open_store;
use crate::corpus::Corpus;
use crate::error::{self, BenchError, Result};
use crate::memory::{HeapGauge, Mallinfo};
use crate::sse_client::SseStream;
use crate::stats::percentile;

/// The pod name the server rows serve.
pub const POD: &str = "bench";

/// The monotonic clock in nanoseconds: the same clock in every process of
/// the machine, unlike `Instant`, which cannot leave its process.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user and system) this process has used so far, in
/// nanoseconds (`getrusage`), or `None`.
pub fn process_cpu_ns() -> Option<u64> {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into
    // the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Some(ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// Bytes resident in this process (Linux `/proc/self/statm`), or `None`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Returns freed heap memory to the system (glibc), so that what is
/// allocated next shows in the resident set instead of reusing pages that
/// were already resident.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the clients do: handed to the client process as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSpec {
    /// The server.
    pub addr: SocketAddr,
    /// The event stream's path.
    pub path: String,
    /// How many clients attach.
    pub clients: usize,
    /// How many bench events each client waits for.
    pub events: usize,
    /// The most the clients run, attach included, in milliseconds.
    pub deadline_ms: u64,
}

/// What the clients saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    pub clients: usize,
    /// Clients that got their snapshot.
    pub attached: usize,
    /// Clients that got every event, in order, once.
    pub complete: usize,
    /// Bench events received, over all clients.
    pub deliveries: u64,
    /// Events received out of order or twice.
    pub out_of_order: u64,
    pub latency_p50_ns: u64,
    pub latency_p99_ns: u64,
    pub latency_max_ns: u64,
    /// The first few client errors.
    pub errors: Vec<String>,
}

/// One client's run.
struct Outcome {
    received: usize,
    out_of_order: u64,
    latencies: Vec<u64>,
    error: Option<String>,
}

/// The number after `"key":` in `text`.
fn field_u64(text: &str, key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let at = text.find(&pattern)? + pattern.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn one_client(
    spec: Arc<ClientSpec>,
    attach: Arc<tokio::sync::Semaphore>,
    attached: tokio::sync::mpsc::UnboundedSender<std::result::Result<(), String>>,
    deadline: tokio::time::Instant,
) -> Outcome {
    let mut outcome = Outcome {
        received: 0,
        out_of_order: 0,
        latencies: Vec::with_capacity(spec.events),
        error: None,
    };
    let opened = async {
        let _permit = attach.acquire().await.map_err(|e| e.to_string())?;
        let mut stream = SseStream::open(spec.addr, &spec.path, None)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        match stream.next_frame().await {
            Ok(Some(f)) if f.event == "snapshot" => Ok(stream),
            Ok(Some(f)) => Err(format!("first event is {:?}, not a snapshot", f.event)),
            Ok(None) => Err("the stream ended before the snapshot".to_owned()),
            Err(e) => Err(format!("reading the snapshot: {e}")),
        }
    };
    let mut stream = match tokio::time::timeout_at(deadline, opened).await {
        Ok(Ok(stream)) => {
            let _ = attached.send(Ok(()));
            stream
        }
        Ok(Err(e)) => {
            let _ = attached.send(Err(e.clone()));
            outcome.error = Some(e);
            return outcome;
        }
        Err(_) => {
            let e = "no snapshot before the deadline".to_owned();
            let _ = attached.send(Err(e.clone()));
            outcome.error = Some(e);
            return outcome;
        }
    };
    let mut next = 0u64;
    while outcome.received < spec.events {
        let frame = match tokio::time::timeout_at(deadline, stream.next_frame()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                outcome.error = Some(format!("the stream ended after {next} events"));
                break;
            }
            Ok(Err(e)) => {
                outcome.error = Some(format!("reading: {e}"));
                break;
            }
            Err(_) => {
                outcome.error = Some(format!("only {next} events before the deadline"));
                break;
            }
        };
        let (Some(sent), Some(i)) = (
            field_u64(&frame.data, "sent_ns"),
            field_u64(&frame.data, "bench_i"),
        ) else {
            continue;
        };
        outcome.latencies.push(now_ns().saturating_sub(sent));
        outcome.received += 1;
        if i != next {
            outcome.out_of_order += 1;
        }
        next = i + 1;
    }
    outcome
}

/// Runs the clients of `spec` to the end; `ready` hears how many attached,
/// once every client attached or failed to.
pub fn run_clients(spec: &ClientSpec, ready: &mut dyn FnMut(usize)) -> ClientReport {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ready(0);
            return ClientReport {
                clients: spec.clients,
                errors: vec![format!("cannot start the client runtime: {e}")],
                ..ClientReport::default()
            };
        }
    };
    runtime.block_on(async {
        let spec = Arc::new(spec.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(spec.deadline_ms);
        let attach = Arc::new(tokio::sync::Semaphore::new(64));
        let (attached_tx, mut attached_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..spec.clients {
            tasks.spawn(one_client(
                spec.clone(),
                attach.clone(),
                attached_tx.clone(),
                deadline,
            ));
        }
        drop(attached_tx);
        let mut report = ClientReport {
            clients: spec.clients,
            ..ClientReport::default()
        };
        // Every client reports once whether it attached.
        for _ in 0..spec.clients {
            match attached_rx.recv().await {
                Some(Ok(())) => report.attached += 1,
                Some(Err(_)) => {}
                None => break,
            }
        }
        ready(report.attached);
        let mut latencies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let outcome = match joined {
                Ok(outcome) => outcome,
                Err(e) => Outcome {
                    received: 0,
                    out_of_order: 0,
                    latencies: Vec::new(),
                    error: Some(format!("client task failed: {e}")),
                },
            };
            report.deliveries += outcome.received as u64;
            report.out_of_order += outcome.out_of_order;
            if outcome.received == spec.events && outcome.out_of_order == 0 {
                report.complete += 1;
            }
            if let Some(e) = outcome.error {
                if report.errors.len() < 5 {
                    report.errors.push(e);
                }
            }
            latencies.extend(outcome.latencies);
        }
        let ns: Vec<f64> = latencies.iter().map(|&n| n as f64).collect();
        if !ns.is_empty() {
            report.latency_p50_ns = percentile(&ns, 50.0) as u64;
            report.latency_p99_ns = percentile(&ns, 99.0) as u64;
            report.latency_max_ns = percentile(&ns, 100.0) as u64;
        }
        report
    })
}

/// The client process's side: `spec` is a [`ClientSpec`] as JSON. Writes
/// `ready N` when the clients attached, then the [`ClientReport`] as one
/// JSON line.
pub fn client_main(spec: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let spec: ClientSpec = serde_json::from_str(spec).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad spec: {e}"))
    })?;
    let mut ready_result = Ok(());
    let report = run_clients(&spec, &mut |n| {
        ready_result = writeln!(out, "ready {n}").and_then(|()| out.flush());
    });
    ready_result?;
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    out.flush()
}

/// Where the clients run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientLauncher {
    /// On a thread of this process.
    InProcess,
    /// In a process started as `program args... SPEC`, which runs
    /// [`client_main`] with the spec and its stdout.
    Command { program: PathBuf, args: Vec<String> },
}

/// Clients under way.
enum Running {
    Thread {
        ready: mpsc::Receiver<usize>,
        report: mpsc::Receiver<ClientReport>,
    },
    Process {
        child: Child,
        lines: mpsc::Receiver<String>,
    },
}

impl ClientLauncher {
    fn start(&self, spec: &ClientSpec) -> Result<Running> {
        match self {
            ClientLauncher::InProcess => {
                let (ready_tx, ready) = mpsc::channel();
                let (report_tx, report) = mpsc::channel();
                let spec = spec.clone();
                std::thread::Builder::new()
                    .name("bench-clients".to_owned())
                    .spawn(move || {
                        let r = run_clients(&spec, &mut |n| {
                            let _ = ready_tx.send(n);
                        });
                        let _ = report_tx.send(r);
                    })
                    .map_err(|e| check("cannot start the client thread", e))?;
                Ok(Running::Thread { ready, report })
            }
            ClientLauncher::Command { program, args } => {
                let spec = serde_json::to_string(spec)
                    .map_err(|e| check("cannot encode the client spec", e))?;
                let mut child = Command::new(program)
                    .args(args)
                    .arg(spec)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(error::io("P8", "starting the clients", program))?;
                let (tx, lines) = mpsc::channel();
                let Some(stdout) = child.stdout.take() else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(check("the client process has no stdout", "none"));
                };
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                Ok(Running::Process { child, lines })
            }
        }
    }
}

fn check(problem: &str, detail: impl std::fmt::Display) -> BenchError {
    BenchError::Check {
        row: "P8",
        problem: format!("{problem}: {detail}"),
    }
}

impl Running {
    /// How many clients attached; waits at most `timeout`.
    fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
        match self {
            Running::Thread { ready, .. } => ready
                .recv_timeout(timeout)
                .map_err(|e| check("the clients did not attach", e)),
            Running::Process { lines, .. } => {
                let line = lines
                    .recv_timeout(timeout)
                    .map_err(|e| check("the client process did not attach", e))?;
                line.strip_prefix("ready ")
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| check("the client process said", format!("{line:?}")))
            }
        }
    }

    /// The clients' report; waits at most `timeout`.
    fn finish(self, timeout: Duration) -> Result<ClientReport> {
        match self {
            Running::Thread { report, .. } => report
                .recv_timeout(timeout)
                .map_err(|e| check("the clients did not finish", e)),
            Running::Process { mut child, lines } => {
                let line = lines.recv_timeout(timeout);
                if line.is_err() {
                    let _ = child.kill();
                }
                let status = child.wait();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                let line = line.map_err(|e| {
                    check(
                        "the client process gave no report",
                        format!("{e}; {status:?}; stderr: {}", stderr.trim()),
                    )
                })?;
                serde_json::from_str(&line)
                    .map_err(|e| check("the client report does not decode", format!("{e}: {line}")))
            }
        }
    }

    fn abort(self) {
        if let Running::Process { mut child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The shape of a fan-out run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanoutSpec {
    pub clients: usize,
    /// Live events committed.
    pub events: usize,
    /// Events per second.
    pub rate: u32,
    /// Entries in the session before the clients attach.
    pub history: usize,
}

/// What a fan-out run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FanoutResult {
    pub spec: FanoutSpec,
    pub report: ClientReport,
    /// Deliveries a complete run makes: clients x events.
    pub expected: u64,
    /// Server resident memory per attached idle client, in bytes.
    pub rss_per_client: Option<f64>,
    /// Server heap in use per attached idle client (glibc), in bytes.
    pub heap_per_client: Option<f64>,
    /// CPU time of the server process (its commits included) per live
    /// event, in nanoseconds, while the events were committed and sent.
    pub cpu_per_event_ns: Option<f64>,
}

/// Serves a pod to `spec.clients` clients started by `launcher` and commits
/// `spec.events` live events at `spec.rate` per second (see the module
/// docs). Files go in `dir/name`.
pub fn measure_fanout(
    dir: &Path,
    name: &str,
    spec: &FanoutSpec,
    launcher: &ClientLauncher,
) -> Result<FanoutResult> {
    let store = open_store("P8", dir, name, Synchronous::Full)?;
    let pod = Pod::create(
        store.clone(),
        NewSession {
            title: Some("fan-out benchmark".to_owned()),
            system_prompt: Some("You are a careful coding assistant.".to_owned()),
            config: RequestConfig::default(),
            history: vec![],
        },
        Box::new(ScriptedDriver::demo()),
    )
    .map_err(|e| check("cannot create the pod", e))?;
    for entry in Corpus::new(8).take(spec.history.saturating_sub(1)) {
        pod.commit(entry)
            .map_err(|e| check("cannot commit the history", e))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| check("cannot start the server runtime", e))?;
    let pods = PodRegistry::new();
    pods.insert(POD, pod.clone())
        .map_err(|e| check("cannot register the pod", e))?;
    let config = ServerConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ServerConfig::default()
    };
    let server = runtime
        .block_on(Server::start(config, store, pods))
        .map_err(|e| check("cannot start the server", e))?;
    let result = drive(&server, &pod, spec, launcher);
    let stopped = runtime.block_on(server.shutdown());
    drop(runtime);
    let result = result?;
    stopped.map_err(|e| check("the server did not shut down cleanly", e))?;
    Ok(result)
}

fn drive(
    server: &Server,
    pod: &Pod,
    spec: &FanoutSpec,
    launcher: &ClientLauncher,
) -> Result<FanoutResult> {
    let addr = server
        .local_addr()
        .ok_or_else(|| check("the server has no TCP address", "none"))?;
    let run_time = Duration::from_secs_f64(spec.events as f64 / f64::from(spec.rate.max(1)));
    let client_spec = ClientSpec {
        addr,
        path: format!("/pods/{POD}/events"),
        clients: spec.clients,
        events: spec.events,
        deadline_ms: (Duration::from_secs(60) + run_time * 2).as_millis() as u64,
    };
    trim_heap();
    let rss_before = resident_bytes();
    let heap_before = Mallinfo.live_bytes();
    let mut running = launcher.start(&client_spec)?;
    let attached = match running.wait_ready(Duration::from_secs(90)) {
        Ok(n) => n,
        Err(e) => {
            running.abort();
            return Err(e);
        }
    };
    // Let the attach's transient buffers go before reading memory.
    std::thread::sleep(Duration::from_millis(200));
    let per_client = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if attached > 0 => Some(a.saturating_sub(b) as f64 / attached as f64),
        _ => None,
    };
    let rss_per_client = per_client(rss_before, resident_bytes());
    let heap_per_client = per_client(heap_before, Mallinfo.live_bytes());

    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let cpu_before = process_cpu_ns();
    let start = Instant::now();
    for i in 0..spec.events {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let entry = LogEntry::Extension {
            ts: podlog_entry::now_millis(),
            name: "bench".to_owned(),
            data: serde_json::json!({ "bench_i": i, "sent_ns": now_ns() }),
        };
        if let Err(e) = pod.commit(entry) {
            running.abort();
            return Err(check("a live commit failed", e));
        }
    }
    let report = running.finish(run_time + Duration::from_secs(90))?;
    let cpu_per_event_ns = match (cpu_before, process_cpu_ns()) {
        (Some(b), Some(a)) if spec.events > 0 => {
            Some(a.saturating_sub(b) as f64 / spec.events as f64)
        }
        _ => None,
    };
    Ok(FanoutResult {
        cpu_per_event_ns,
        expected: (spec.clients * spec.events) as u64,
        spec: spec.clone(),
        report,
        rss_per_client,
        heap_per_client,
    })
}
