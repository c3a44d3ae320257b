//! Second processes for the tests that need one: a writer to kill with
//! SIGKILL, or a pod in another process to be refused by or to take a lock
//! from. The child is this test binary started again to run only the test
//! that asked for it (`--exact TEST --nocapture --test-threads=1`), with
//! its role in the environment; that test calls [`play_if_child`] first,
//! which plays the role and returns `true` in the child, `false` in the
//! parent. The child works through the library crates, as `podlog` does,
//! so the shipped binary carries no test-only commands.
//!
//! Roles:
//!
//! * [`Role::AppendLoop`]: appends entries to one session (a new one, or
//!   `session`) through the real store and sink, printing `session ID`, then
//!   `published SEQ` once each entry is published, until killed or stdout
//!   closes.
//! * [`Role::Hold`]: restores a pod on `session` the way `podlog serve` does
//!   (taking the session's write lock, loading its entries, closing a run
//!   the log leaves open) with the scripted driver, prints `holding SESSION
//!   as pid PID at seq SEQ`, then plays one scripted run per line read from
//!   stdin, printing `run ended at seq SEQ` after each. When stdin closes it
//!   shuts the pod down and the test passes (exit 0). If another live
//!   process writes the session it prints the refusal, which names that
//!   process, on stderr and exits 1.
//!
//! Each line the child prints stands on a line of its own: the harness may
//! have begun a line (`test NAME ... `) before the test body runs, so the
//! first line starts with a newline, and the parent looks for its lines by
//! their prefix.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{AssistantContent, Clock, LogEntry, SessionId, SystemClock, SystemItem};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_protocol::Event;
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store, StoreOptions, Synchronous};
use tokio::sync::broadcast::error::RecvError;

/// Which role the child plays: `append-loop` or `hold`.
const ROLE: &str = "PODLOG_IT_CHILD";
const DB: &str = "PODLOG_IT_CHILD_DB";
const SESSION: &str = "PODLOG_IT_CHILD_SESSION";
const SYNCHRONOUS: &str = "PODLOG_IT_CHILD_SYNCHRONOUS";
const DELTA_MS: &str = "PODLOG_IT_CHILD_DELTA_MS";

/// What a child does.
pub enum Role<'a> {
    /// Append until killed, at `synchronous`, to `session` or a new one.
    AppendLoop {
        synchronous: Synchronous,
        session: Option<&'a SessionId>,
    },
    /// Write `session` as a pod, pausing `delta_ms` before each streamed
    /// text delta.
    Hold {
        session: &'a SessionId,
        delta_ms: u64,
    },
}

/// This test binary, set to run only the test `test` (its path without the
/// crate, e.g. `crash::sigkill_at_random_moments_loses_nothing_published`)
/// as a child playing `role` on the database `db`. The caller chooses the
/// stdio and spawns it.
pub fn command(test: &str, db: &Path, role: &Role<'_>) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(DB, db)
        .env_remove(SESSION);
    match role {
        Role::AppendLoop {
            synchronous,
            session,
        } => {
            let sync = match synchronous {
                Synchronous::Full => "full",
                Synchronous::Normal => "normal",
            };
            cmd.env(ROLE, "append-loop").env(SYNCHRONOUS, sync);
            if let Some(id) = session {
                cmd.env(SESSION, id.as_str());
            }
        }
        Role::Hold { session, delta_ms } => {
            cmd.env(ROLE, "hold")
                .env(SESSION, session.as_str())
                .env(DELTA_MS, delta_ms.to_string());
        }
    }
    cmd
}

/// In a child started by [`command`], plays its role and returns `true`
/// (or exits 1, see the module docs); in any other process returns `false`
/// at once.
pub fn play_if_child() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    let db = PathBuf::from(std::env::var_os(DB).expect("the child's database"));
    let session = std::env::var(SESSION)
        .ok()
        .map(|s| SessionId::new(s).expect("a session id"));
    let result = match role.as_str() {
        "append-loop" => {
            let synchronous = match std::env::var(SYNCHRONOUS).as_deref() {
                Ok("normal") => Synchronous::Normal,
                _ => Synchronous::Full,
            };
            append_loop(&db, synchronous, session)
        }
        "hold" => {
            let delta_ms = std::env::var(DELTA_MS)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            hold(&db, &session.expect("hold needs a session"), delta_ms)
        }
        other => Err(format!("no child role {other:?}")),
    };
    if let Err(e) = result {
        eprintln!("\n{e}");
        std::process::exit(1);
    }
    true
}

/// Writes `line` on a line of its own and flushes it to the parent.
fn say(out: &mut impl Write, line: &str) -> Result<(), String> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing output: {e}"))
}

/// The entry written at step `n`: a mix of kinds and sizes, so that a kill
/// can land inside a large write as well as a small one.
fn entry(n: u64, clock: &SystemClock) -> LogEntry {
    let ts = clock.now_millis();
    match n % 4 {
        0 => LogEntry::ToolResult {
            ts,
            call_id: format!("call-{n}"),
            output: "x".repeat(200 + (n as usize * 997) % 8000),
            is_error: false,
        },
        1 => LogEntry::AssistantItem {
            ts,
            item: AssistantContent::Text {
                text: format!("answer {n}"),
            },
        },
        2 => LogEntry::SystemItem {
            ts,
            item: SystemItem::Notification {
                message: format!("note {n}"),
                body: format!("[Notification] note {n}"),
            },
        },
        _ => LogEntry::TurnEnd { ts, turn_count: n },
    }
}

/// [`Role::AppendLoop`]: returns only on an error (stdout closed included).
fn append_loop(
    db: &Path,
    synchronous: Synchronous,
    session: Option<SessionId>,
) -> Result<(), String> {
    let options = StoreOptions {
        synchronous,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(db, options).map_err(|e| e.to_string())?);
    let (id, sink) = match session {
        Some(id) => {
            let sink = store.load_sink(&id).map_err(|e| e.to_string())?;
            (id, sink)
        }
        None => {
            let (id, start) = store
                .create_session(NewSession {
                    title: Some("append loop".to_owned()),
                    ..NewSession::default()
                })
                .map_err(|e| e.to_string())?;
            let sink = SessionLogSink::with_initial([start]).map_err(|e| e.to_string())?;
            (id, sink)
        }
    };
    let mut writer = store.session_writer(&id).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    say(&mut out, &format!("\nsession {id}"))?;
    let clock = SystemClock;
    for n in 0.. {
        let seq = writer
            .append(entry(n, &clock), &sink)
            .map_err(|e| e.to_string())?;
        say(&mut out, &format!("published {seq}"))?;
    }
    Ok(())
}

/// [`Role::Hold`].
fn hold(db: &Path, session: &SessionId, delta_ms: u64) -> Result<(), String> {
    let store = Arc::new(Store::open(db, StoreOptions::default()).map_err(|e| e.to_string())?);
    // Carry on with the script where the session left it.
    let runs_so_far = store
        .entries(session)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|c| matches!(c.entry.as_ref(), LogEntry::UserInput { .. }))
        .count();
    let driver = ScriptedDriver::demo()
        .starting_at(runs_so_far)
        .with_delta_delay(Duration::from_millis(delta_ms));
    let pod = Pod::restore(store, session, Box::new(driver)).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    say(
        &mut out,
        &format!(
            "\nholding {session} as pid {} at seq {}",
            std::process::id(),
            pod.end_seq()
        ),
    )?;
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (snapshot, mut rx) = pod.subscribe().unwrap();
        let mut seen = snapshot.watermark();
        pod.submit_input(text).map_err(|e| e.to_string())?;
        let end = 'run: loop {
            let events = match rx.blocking_recv() {
                Ok(event) => vec![event],
                Err(RecvError::Lagged(_)) => {
                    // Runs never span sessions: resume within this one.
                    let (missed, fresh) = pod.resume(session, seen).unwrap();
                    rx = fresh;
                    missed
                }
                Err(RecvError::Closed) => return Err("the pod closed during a run".to_owned()),
            };
            for event in events {
                seen = event.watermark();
                if matches!(
                    *event,
                    Event::RunCompleted { .. } | Event::RunErrored { .. }
                ) {
                    break 'run seen;
                }
            }
        };
        say(&mut out, &format!("run ended at seq {end}"))?;
    }
    pod.shutdown();
    Ok(())
}

/// A [`Role::AppendLoop`] child writing a new session of the database, as
/// another process does, with its output read on a thread. Killed when
/// dropped.
pub struct Appender {
    child: crate::server_cli::Guard,
    lines: crate::server_cli::Lines,
    session: SessionId,
}

impl Appender {
    /// Starts the child for `test` (see [`command`]) on `db`, at
    /// `synchronous=NORMAL`, and waits until it names its session.
    pub fn start(test: &str, db: &Path) -> Self {
        let mut child = command(
            test,
            db,
            &Role::AppendLoop {
                synchronous: Synchronous::Normal,
                session: None,
            },
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the writing process");
        let stdout = child.stdout.take().expect("the writer's stdout");
        let mut lines = crate::server_cli::Lines::of(stdout);
        let named = lines.until("the writer's session", Duration::from_secs(20), |l| {
            l.starts_with("session ")
        });
        let session = SessionId::new(&named["session ".len()..]).expect("a session id");
        Appender {
            child: crate::server_cli::Guard(child),
            lines,
            session,
        }
    }

    /// The session it writes.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Waits until it has published seq `seq` or later; returns that seq.
    pub fn published(&mut self, seq: u64) -> u64 {
        let published = |line: &str| {
            line.strip_prefix("published ")
                .and_then(|s| s.parse::<u64>().ok())
        };
        let line = self.lines.until(
            &format!("seq {seq} published"),
            Duration::from_secs(20),
            |l| published(l).is_some_and(|n| n >= seq),
        );
        published(&line).expect("a published seq")
    }

    /// Kills it and waits for it to exit.
    pub fn stop(self) {
        drop(self.child);
    }
}
