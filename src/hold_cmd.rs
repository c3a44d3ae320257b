//! `podlog hold SESSION` (hidden): opens a session for writing the way a pod
//! does and keeps it open, for the tests of one writer per session.
//!
//! It restores a pod on SESSION (taking the session's write lock, loading
//! its entries, closing a run the log leaves open) with the scripted driver,
//! prints `holding SESSION as pid PID at seq SEQ`, then plays one scripted
//! run per line read from stdin, printing `run ended at seq SEQ` after each.
//! When stdin closes it shuts the pod down and exits 0. If another live
//! process writes the session it exits 1 with a message naming that process.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::LogEntry;
use podlog_pod::{Pod, ScriptedDriver};
use podlog_protocol::Event;
use podlog_store::Store;
use tokio::sync::broadcast::error::RecvError;

/// Arguments of `podlog hold`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// The session id, or an unambiguous prefix of it.
    session: String,
    /// Pause before each streamed text delta, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delta_ms: u64,
}

/// Runs `podlog hold` on `store`.
pub fn run(args: HoldArgs, store: Store) -> Result<ExitCode, String> {
    let store = Arc::new(store);
    let id = store.resolve(&args.session).map_err(|e| e.to_string())?;
    // Carry on with the script where the session left it.
    let runs_so_far = store
        .entries(&id)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|c| matches!(c.entry.as_ref(), LogEntry::UserInput { .. }))
        .count();
    let driver = ScriptedDriver::demo()
        .starting_at(runs_so_far)
        .with_delta_delay(Duration::from_millis(args.delta_ms));
    let pod = Pod::restore(store, &id, Box::new(driver)).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: String| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing output: {e}"))
    };
    say(
        &mut out,
        format!(
            "holding {id} as pid {} at seq {}",
            std::process::id(),
            pod.end_seq()
        ),
    )?;
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (snapshot, mut rx) = pod.subscribe();
        let mut seen = snapshot.watermark();
        pod.submit_input(text).map_err(|e| e.to_string())?;
        let end = 'run: loop {
            let events = match rx.blocking_recv() {
                Ok(event) => vec![event],
                Err(RecvError::Lagged(_)) => {
                    // Runs never span sessions: resume within this one.
                    let (missed, fresh) = pod.resume(&id, seen);
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
        say(&mut out, format!("run ended at seq {end}"))?;
    }
    pod.shutdown();
    Ok(ExitCode::SUCCESS)
}
