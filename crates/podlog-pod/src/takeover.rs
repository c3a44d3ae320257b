//! [`take_over`]: [`Pod::restore`] for failover, retried while the session
//! is still locked, for at most a given time.
//!
//! When a pod's host dies, its write lock does not go at the same instant:
//! on PostgreSQL the server ends the dead client's backend, and with it the
//! session's advisory lock, a moment later (at once on loopback, after TCP
//! keepalive or a timeout across a network whose peer vanished); a SQLite
//! lock goes with the process. A pod restoring the session meanwhile is
//! refused with [`PodError::SessionLocked`]. `take_over` tries again every
//! `poll` until `wait` has passed, then returns the last refusal, which
//! names the holder: a holder that is alive keeps its session. Any other
//! error is returned at once. Blocking: call it off the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::SessionId;
use podlog_store::Store;

use crate::{AgentDriver, Pod, PodError};

/// How often [`take_over`] tries again.
pub const TAKE_OVER_POLL: Duration = Duration::from_millis(20);

/// [`Pod::restore`] of `session`, retried while another process holds it,
/// for at most `wait`. `driver` makes the driver of each attempt (a refused
/// restore consumes its driver).
pub fn take_over(
    store: &Arc<Store>,
    session: &SessionId,
    wait: Duration,
    mut driver: impl FnMut() -> Box<dyn AgentDriver>,
) -> Result<Pod, PodError> {
    let deadline = Instant::now() + wait;
    loop {
        match Pod::restore(store.clone(), session, driver()) {
            Err(PodError::SessionLocked { .. }) if Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(TAKE_OVER_POLL.min(left));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use podlog_store::{NewSession, StoreOptions};

    use super::*;
    use crate::ScriptedDriver;

    fn driver() -> Box<dyn AgentDriver> {
        Box::new(ScriptedDriver::demo())
    }

    /// A holder that lets go within the wait is waited for; one that does
    /// not is named in the refusal, once the wait is over.
    #[test]
    fn a_take_over_waits_for_a_holder_that_goes_and_names_one_that_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(dir.path().join("podlog.db"), StoreOptions::default()).unwrap());
        let (id, _) = store.create_session(NewSession::default()).unwrap();

        let held = store.session_writer(&id).unwrap();
        let start = Instant::now();
        let err = take_over(&store, &id, Duration::from_millis(150), driver).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(150));
        assert!(
            matches!(&err, PodError::SessionLocked { holder, .. } if holder.pid == Some(std::process::id())),
            "{err:?}"
        );

        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let held = store.session_writer(&id);
        assert!(held.is_err(), "still held by the thread's writer");
        let pod = take_over(&store, &id, Duration::from_secs(10), driver).unwrap();
        assert_eq!(pod.session_id(), id);
        release.join().unwrap();
    }
}
