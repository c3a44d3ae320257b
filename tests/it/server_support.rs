//! Helpers of the server tests: a store and pod in a temp dir, a server
//! started in-process, a seeded random source, clients that rebuild the log
//! from the event stream (disconnecting and resuming at random), and the
//! comparison of a client's log with the store's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{Seq, SessionId, StepClock};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_protocol::client::{Client, Endpoint};
use podlog_protocol::LogView;
use podlog_server::{HttpOptions, PodRegistry, Server, ServerConfig};
use podlog_store::{NewSession, SequentialIds, Store, StoreOptions, Synchronous};
use tokio::sync::watch;

/// A database in a temp dir, opened with deterministic ids and clock.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub store: Arc<Store>,
}

impl Bench {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("podlog.db");
        let store = Arc::new(open_store(&db));
        Self { dir, db, store }
    }
}

/// Opens `db` with sequential ids and a step clock. `Normal` sync keeps the
/// many commits of these tests fast; durability is not what they test.
pub fn open_store(db: &std::path::Path) -> Store {
    Store::open(
        db,
        StoreOptions {
            synchronous: Synchronous::Normal,
            clock: Arc::new(StepClock::new(1_700_000_000_000, 7)),
            ids: Arc::new(SequentialIds::new(format!(
                "t{}",
                std::process::id() % 1000
            ))),
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

/// A pod on a new session, driven by the demo script with no delay.
pub fn scripted_pod(store: &Arc<Store>) -> Pod {
    Pod::create(
        store.clone(),
        NewSession {
            title: Some("server test".to_owned()),
            system_prompt: Some("Be brief.".to_owned()),
            ..NewSession::default()
        },
        Box::new(ScriptedDriver::demo()),
    )
    .expect("create pod")
}

/// Starts a server on an ephemeral loopback port serving `pod` as `p`.
pub async fn serve_tcp(store: &Arc<Store>, pod: &Pod) -> (Server, Client) {
    serve(store, pod, tcp_config()).await
}

pub fn tcp_config() -> ServerConfig {
    ServerConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..ServerConfig::default()
    }
}

/// Starts a server with `config`, serving `pod` as `p`, and a client of it
/// (TCP if configured, else the Unix socket).
pub async fn serve(store: &Arc<Store>, pod: &Pod, config: ServerConfig) -> (Server, Client) {
    let pods = PodRegistry::new();
    pods.insert("p", pod.clone()).expect("pod name");
    let server = Server::start(config, store.clone(), pods)
        .await
        .expect("start server");
    let endpoint = match (server.local_addr(), server.unix_path()) {
        (Some(addr), _) => Endpoint::Tcp(addr.to_string()),
        (None, Some(path)) => Endpoint::Unix(path.to_owned()),
        (None, None) => panic!("server with no listener"),
    };
    (server, Client::new(endpoint, None))
}

/// Short heartbeats and drain, for tests.
pub fn quick_http() -> HttpOptions {
    HttpOptions {
        heartbeat: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    }
}

/// xorshift64*: a small seeded random source, so a failing run can be
/// replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `true` with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Where the pod ended: the session and its last seq, once the test's
/// writer is done.
pub type Target = Option<(SessionId, Seq)>;

/// How a watching client behaves.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Chance, in percent per message, of dropping the connection.
    pub disconnect_percent: u64,
    /// Resume with `?after=` instead of `Last-Event-ID` half of the time.
    pub use_query_sometimes: bool,
}

/// What one watching client saw.
pub struct Watched {
    pub view: LogView,
    pub connections: u64,
    pub resumes: u64,
}

/// Watches pod `p`, disconnecting and resuming at random, until its view
/// reaches `target`. Every event goes through [`LogView::apply`], which
/// fails on a gap or duplicate.
pub async fn watch_pod(
    client: Client,
    mut rng: Rng,
    behaviour: Behaviour,
    mut target: watch::Receiver<Target>,
) -> Result<Watched, String> {
    let mut view = LogView::new();
    let mut last_id: Option<String> = None;
    let mut connections = 0;
    let mut resumes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let mut stream = match &last_id {
            Some(id) if behaviour.use_query_sometimes && rng.percent(50) => {
                client
                    .events_at(&format!("/pods/p/events?after={id}"), None)
                    .await
            }
            id => client.events("p", id.as_deref()).await,
        }
        .map_err(|e| format!("connect: {e}"))?;
        connections += 1;
        if last_id.is_some() {
            resumes += 1;
        }
        loop {
            if reached(&view, &target.borrow()) {
                return Ok(Watched {
                    view,
                    connections,
                    resumes,
                });
            }
            let message = tokio::select! {
                m = stream.next() => m,
                changed = target.changed() => {
                    if changed.is_err() {
                        return Err("the test's writer went away".to_owned());
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "timed out at {:?}/{} waiting for {:?}",
                        view.current(), view.last_seq(), *target.borrow()
                    ))
                }
            };
            let message = match message {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            };
            let Some(event) = message.pod_event() else {
                continue;
            };
            let event = event.map_err(|e| e.to_string())?;
            view.apply(&event).map_err(|e| e.to_string())?;
            if rng.percent(behaviour.disconnect_percent) {
                break;
            }
        }
        last_id = stream.last_id().map(str::to_owned);
        drop(stream);
        if rng.percent(50) {
            tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
        }
    }
}

fn reached(view: &LogView, target: &Target) -> bool {
    match target {
        Some((session, seq)) => view.current() == Some(session) && view.last_seq() == *seq,
        None => false,
    }
}

/// Checks a client's view against the store: every session it saw is a
/// prefix of the stored session, and the session it ended on is whole.
pub fn check_view(store: &Store, view: &LogView, last: &SessionId) -> Result<(), String> {
    let mut saw_last = false;
    for (session, entries) in view.sessions() {
        let stored = store.entries(session).map_err(|e| e.to_string())?;
        if entries.len() > stored.len() {
            return Err(format!(
                "session {session}: the client has {} entries, the store {}",
                entries.len(),
                stored.len()
            ));
        }
        for (a, b) in entries.iter().zip(stored.iter()) {
            if a != b {
                return Err(format!(
                    "session {session} seq {}: the client's entry differs from the store's",
                    a.seq
                ));
            }
        }
        if session == last {
            saw_last = true;
            if entries.len() != stored.len() {
                return Err(format!(
                    "session {session}: the client ended with {} entries, the store has {}",
                    entries.len(),
                    stored.len()
                ));
            }
        }
    }
    if saw_last {
        Ok(())
    } else {
        Err(format!("the client never saw the final session {last}"))
    }
}

/// Waits until the pod has no run in progress.
pub async fn wait_idle(pod: &Pod) {
    for _ in 0..2000 {
        if !pod.is_busy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("pod still busy after 10 s");
}

/// Commits `entry` to `pod` on the blocking pool, as a handler would.
pub async fn commit(pod: &Pod, entry: podlog_entry::LogEntry) -> Seq {
    let pod = pod.clone();
    tokio::task::spawn_blocking(move || pod.commit(entry))
        .await
        .unwrap()
        .unwrap()
}
