//! The demo pod: a scripted conversation that keeps going at a human pace,
//! so a new user has something to watch as soon as the server starts.
//!
//! [`open_demo_pod`] restores the newest session titled [`DEMO_TITLE`] (its
//! open run, if the last server died mid-run, is closed by the restore) or,
//! when there is none or another process writes it, creates one. [`feed`]
//! then plays the user's side: it submits the script's next user input,
//! waits for the run to end (the [`ScriptedDriver`] streams text deltas with
//! a pause before each, announces and commits tool calls, commits usage and
//! turn ends), pauses, and every few runs compacts the session, until told
//! to stop or the pod closes.

use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{LogEntry, RequestConfig};
use podlog_pod::script::Script;
use podlog_pod::{Pod, PodError, ScriptedDriver};
use podlog_store::{NewSession, Store};
use tokio::sync::watch;

/// The title of demo sessions.
pub const DEMO_TITLE: &str = "podlog demo";

/// The pace of the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Pause before each text delta (a few words).
    pub delta_delay: Duration,
    /// Pause between the end of a run and the next user input.
    pub pause_between_runs: Duration,
    /// Compact after this many runs (0: never).
    pub compact_every: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            delta_delay: Duration::from_millis(120),
            pause_between_runs: Duration::from_secs(3),
            compact_every: 4,
        }
    }
}

/// Restores the newest demo session of `store`, or creates one, with a
/// [`ScriptedDriver`] at `options`' pace. Returns the pod and the index of
/// the script run it answers next.
pub fn open_demo_pod(store: Arc<Store>, options: &DemoOptions) -> Result<(Pod, usize), PodError> {
    let script = Script::demo();
    // A session row that does not read fails the demo, naming it.
    let newest = store
        .sessions()?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|s| s.title.as_deref() == Some(DEMO_TITLE));
    if let Some(info) = newest {
        let next = store
            .entries(&info.id)?
            .iter()
            .filter(|c| matches!(*c.entry, LogEntry::UserInput { .. }))
            .count();
        let driver = ScriptedDriver::new(script.clone())
            .with_delta_delay(options.delta_delay)
            .starting_at(next);
        match Pod::restore(store.clone(), &info.id, Box::new(driver)) {
            Ok(pod) => return Ok((pod, next)),
            Err(PodError::SessionLocked { session, holder }) => {
                tracing::info!(session = %session, holder = %holder, "the newest demo session is in use; starting a new one");
            }
            Err(e) => return Err(e),
        }
    }
    let driver = ScriptedDriver::new(script.clone()).with_delta_delay(options.delta_delay);
    let pod = Pod::create(
        store,
        NewSession {
            title: Some(DEMO_TITLE.to_owned()),
            system_prompt: Some("You are a careful coding assistant.".to_owned()),
            config: RequestConfig {
                model: script.model.clone(),
                ..RequestConfig::default()
            },
            history: vec![],
        },
        Box::new(driver),
    )?;
    Ok((pod, 0))
}

/// Plays the user's side of the demo on `pod`, starting with script run
/// `next`, until `stop` turns true or the pod closes.
pub async fn feed(pod: Pod, next: usize, options: DemoOptions, mut stop: watch::Receiver<bool>) {
    let script = Script::demo();
    let mut run = next;
    let mut since_compaction = 0usize;
    loop {
        if *stop.borrow() || pod.is_closed() {
            return;
        }
        let text = script.runs[run % script.runs.len()].user.clone();
        let submit = {
            let pod = pod.clone();
            tokio::task::spawn_blocking(move || pod.submit_input(text)).await
        };
        match submit {
            Ok(Ok(())) => {
                run += 1;
                since_compaction += 1;
            }
            Ok(Err(PodError::Busy { .. })) => {}
            Ok(Err(PodError::Closed { .. })) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "demo input failed");
            }
        }
        // Wait for the run to end.
        while pod.is_busy() {
            if pause(&mut stop, Duration::from_millis(50)).await {
                return;
            }
        }
        if pause(&mut stop, options.pause_between_runs).await {
            return;
        }
        if options.compact_every > 0 && since_compaction >= options.compact_every {
            let compacted = {
                let pod = pod.clone();
                tokio::task::spawn_blocking(move || pod.compact(None)).await
            };
            match compacted {
                Ok(Ok(session)) => {
                    tracing::info!(session = %session, "demo compacted");
                    since_compaction = 0;
                }
                Ok(Err(PodError::Closed { .. })) | Err(_) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "demo compaction failed"),
            }
            if pause(&mut stop, options.pause_between_runs).await {
                return;
            }
        }
    }
}

/// Sleeps `d`; `true` if `stop` turned true meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}
