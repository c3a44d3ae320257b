//! `podlog serve --demo` and `podlog tail` as a user runs them: two
//! processes, signals, and a server restart in the middle. Guards against a
//! server that does not stop cleanly on SIGTERM (exit 0, socket removed,
//! database checkpointed), a tail that gives up on a restart or prints an
//! entry twice or skips one across it, and a tail that fails on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::TempDb;

/// Lines of a child's output, read on a thread.
pub(crate) struct Lines {
    rx: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Lines {
    pub(crate) fn of(stream: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `want`; fails after `timeout`.
    pub(crate) fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything read so far plus what arrives until the stream closes.
    fn rest(mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// `podlog tail TARGET --url URL ARGS...` (a pod, or a session to follow),
/// killed when the guard is dropped, and its output.
pub(crate) fn podlog_tail(url: &str, target: &str, args: &[&str]) -> (Guard, Lines) {
    let mut tail = Guard(
        Command::new(env!("CARGO_BIN_EXE_podlog"))
            .args(["tail", target, "--url", url])
            .args(args)
            .env_remove("PODLOG_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run podlog tail"),
    );
    let out = Lines::of(tail.0.stdout.take().expect("stdout"));
    (tail, out)
}

/// A child process killed when dropped, so a failing test leaves no server
/// or tail running.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn serve(db: &Path, listen: &str) -> (Guard, Lines) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podlog"))
        .args(["--db"])
        .arg(db)
        .args([
            "--synchronous",
            "normal",
            "serve",
            "--demo",
            "--listen",
            listen,
        ])
        .args(["--demo-pace-ms", "3"])
        .env("PODLOG_LOG", "info")
        .env_remove("PODLOG_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podlog serve");
    let stderr: ChildStderr = child.stderr.take().expect("stderr");
    (Guard(child), Lines::of(stderr))
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

fn wait(child: &mut Child, what: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leading seq of a timeline line printed by `tail`, if it is one.
fn seq_of(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

/// Checks tail's output: within each session section, entry lines run
/// 1, 2, 3, ... (a streamed line whose text was never committed, cut by the
/// restart, is followed by its seq again and is skipped).
fn check_consecutive(lines: &[String]) -> (usize, usize) {
    let mut sections = 0;
    let mut checked = 0;
    let mut last: Option<u64> = None;
    // Where the section's entries start: seq 1, or where a tail-first
    // snapshot's header says.
    let mut start = 1;
    let numbered: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("── session") || seq_of(l).is_some())
        .collect();
    for (i, line) in numbered.iter().enumerate() {
        if line.starts_with("── session") {
            sections += 1;
            last = None;
            start = line
                .split_once("from seq ")
                .and_then(|(_, rest)| rest.split(';').next()?.parse().ok())
                .unwrap_or(1);
            continue;
        }
        let seq = seq_of(line).unwrap_or(0);
        let next_same = numbered
            .get(i + 1)
            .and_then(|l| seq_of(l))
            .is_some_and(|n| n == seq);
        if line.contains("(streaming)") && next_same {
            continue;
        }
        match last {
            None if line.contains("(streaming)") || sections == 0 => {}
            None => assert_eq!(seq, start, "a section starts at seq {start}: {line}"),
            Some(prev) => assert_eq!(seq, prev + 1, "after seq {prev}: {line}"),
        }
        last = Some(seq);
        checked += 1;
    }
    (sections, checked)
}

#[test]
fn tail_follows_the_demo_across_a_server_restart_and_both_stop_cleanly_on_signals() {
    let db = TempDb::new();
    let (mut server, mut server_log) = serve(&db.path, "127.0.0.1:0");
    let line = server_log.until("the address", Duration::from_secs(20), |l| {
        l.starts_with("podlog: serving http://")
    });
    let url = line.trim_start_matches("podlog: serving ").to_owned();
    let addr = url.trim_start_matches("http://").to_owned();

    let mut tail = Guard(
        Command::new(env!("CARGO_BIN_EXE_podlog"))
            .args(["tail", "demo", "--url", &url, "--tail", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podlog tail"),
    );
    let stdout: ChildStdout = tail.stdout.take().expect("stdout");
    let mut out = Lines::of(stdout);
    let mut tail_err = Lines::of(tail.stderr.take().expect("stderr"));
    out.until("the snapshot", Duration::from_secs(20), |l| {
        l.starts_with("── session")
    });
    out.until("a finished run", Duration::from_secs(20), |l| {
        l.contains("run_completed")
    });

    // SIGTERM: the server stops in order and exits 0.
    signal(&server, "TERM");
    assert_eq!(wait(&mut server, "podlog serve"), 0);
    let log = server_log.rest().join("\n");
    assert!(log.contains("database checkpointed"), "{log}");
    assert!(log.contains("connection"), "one line per connection: {log}");
    tail_err.until("the reconnect notice", Duration::from_secs(10), |l| {
        l.contains("reconnecting from")
    });

    // The same database and address again: the demo session is restored
    // and tail carries on where it was.
    let (mut server, server_log) = serve(&db.path, &addr);
    tail_err.until("the reconnection", Duration::from_secs(20), |l| {
        l.contains("reconnected")
    });
    let before = out.seen.len();
    out.until("a run after the restart", Duration::from_secs(30), |l| {
        l.contains("run_completed")
    });
    assert!(out.seen.len() > before);

    // Ctrl-C ends tail with status 0.
    signal(&tail, "INT");
    assert_eq!(wait(&mut tail, "podlog tail"), 0);
    let printed = out.rest();
    let (sections, checked) = check_consecutive(&printed);
    assert!(sections >= 1 && checked > 20, "{}", printed.join("\n"));

    signal(&server, "TERM");
    assert_eq!(wait(&mut server, "podlog serve"), 0);
    drop(server_log);
}
