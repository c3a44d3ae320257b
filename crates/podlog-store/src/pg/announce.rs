//! [`Announcer`]: when the write link announces its commits, and the
//! link's thread, which announces what no later commit carried and looks
//! at the idle connection.
//!
//! # Contract
//!
//! * **At most one announcement per [`ANNOUNCE_EVERY`].** An announcement
//!   ([`super::link::ANNOUNCE`]) is a transaction of its own on the
//!   server, which costs the write connection about as much as a third of
//!   an append; announcing every commit of a stream of quick appends made
//!   PG1 about 0.15x slower (`docs/performance.md`). A commit that comes
//!   [`ANNOUNCE_EVERY`] or more after the last announcement is announced
//!   right behind it, with what is pending; a commit sooner than that
//!   leaves its rows pending.
//! * **Pending rows are coalesced per session.** A notice names the
//!   highest seq committed in its session by then; followers read every
//!   entry after the last seq they hold (`entries_after`), so the entries
//!   before it need no notice of their own.
//! * **Nothing stays pending.** A thread of the link's own sends what is
//!   still pending on the link's connection once twice [`ANNOUNCE_EVERY`]
//!   has passed since the last announcement, so the last commit of a burst
//!   is heard within that time with no later commit to carry it. In a
//!   stream of appends a commit carries the rows first, after
//!   [`ANNOUNCE_EVERY`], and the thread stays off the connection (taking
//!   it between two commits cost PG1 about 0.05x). The thread starts with
//!   the link's first connection and ends with the link, sending what is
//!   pending first (waited for, except inside an async runtime).
//! * **A connection that went while idle is found.** The connection is
//!   only read while someone uses it, so a connection the server ended
//!   (`pg_terminate_backend`, a restart, a broken network) would otherwise
//!   look open until the next commit, and the pod would say it holds its
//!   session's lock. While nothing is pending the thread looks at the
//!   connection every [`LOOK_EVERY`]: it reads what arrived without
//!   waiting and sends nothing, and skips the look if a commit holds the
//!   connection (which reads it anyway).
//! * **Only what committed, in commit order.** A row becomes pending only
//!   once its commit returned Ok, and the announcement sent behind a
//!   commit still names only rows the server finds in the table. Every
//!   decision (send or defer) and every send happen while the link's
//!   connection is held, so a session's notices keep their seqs' order.
//! * **Best effort.** Pending rows of a connection that is lost, or of a
//!   process that dies, go unannounced; followers find such commits by
//!   looking again on their own (`Store::change_watch`, `PG_RECHECK`).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::link::Conn;

/// The least time between two announcements of one link.
pub(crate) const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);

/// How long after the last announcement the thread sends what is pending.
const THREAD_AFTER: Duration = ANNOUNCE_EVERY.saturating_mul(2);

/// How often the thread looks at the idle connection.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A committed row to announce: its session and seq.
pub(crate) type Committed = (String, i64);

/// The link's connection, shared with the announcer's thread.
pub(crate) type SharedConn = Arc<Mutex<Option<Conn>>>;

/// Rows committed and not announced yet, one per session (its highest
/// seq), in the order their sessions first became pending.
#[derive(Default)]
struct Pending {
    rows: Vec<Committed>,
    at: HashMap<String, usize>,
}

impl Pending {
    fn add(&mut self, (session, seq): Committed) {
        match self.at.get(&session) {
            Some(&i) => self.rows[i].1 = self.rows[i].1.max(seq),
            None => {
                self.at.insert(session.clone(), self.rows.len());
                self.rows.push((session, seq));
            }
        }
    }

    fn take(&mut self) -> Vec<Committed> {
        self.at.clear();
        std::mem::take(&mut self.rows)
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[derive(Default)]
struct State {
    pending: Pending,
    /// When the last announcement was sent.
    last: Option<Instant>,
    /// The link is going: send what is pending now, then end.
    closing: bool,
    /// The connection, kept for the last send once the link is gone.
    keep: Option<SharedConn>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The link's announcer; see the module docs.
#[derive(Default)]
pub(crate) struct Announcer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Announcer {
    /// Called with the link's connection held, before a commit: when an
    /// announcement is due, the pending rows (perhaps none), to be sent
    /// right behind the commit with the commit's own; otherwise `None`.
    pub(crate) fn take_due(&self) -> Option<Vec<Committed>> {
        let mut state = self.inner.state();
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < ANNOUNCE_EVERY)
        {
            return None;
        }
        state.last = Some(now);
        Some(state.pending.take())
    }

    /// Called with the link's connection held, after a commit: `rows`
    /// committed and were not announced; the thread sends them when due.
    pub(crate) fn defer(&self, rows: Vec<Committed>, conn: &SharedConn) {
        if rows.is_empty() {
            return;
        }
        let was_empty = {
            let mut state = self.inner.state();
            let was_empty = state.pending.is_empty();
            for row in rows {
                state.pending.add(row);
            }
            was_empty
        };
        self.start(conn);
        // With rows pending already, the thread waits for them to be due
        // and needs no wake-up at every commit.
        if was_empty {
            self.inner.wake.notify_one();
        }
    }

    /// Starts the thread, if it is not running, on `conn`.
    pub(crate) fn start(&self, conn: &SharedConn) {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if thread.is_none() {
            let inner = self.inner.clone();
            let conn = Arc::downgrade(conn);
            // Without a thread pending rows wait for the next commit due
            // to announce, or go unannounced, and a connection that went
            // is found at its next use, as the contract allows.
            *thread = std::thread::Builder::new()
                .name("podlog-pg-link".to_owned())
                .spawn(move || run(&inner, &conn))
                .ok();
        }
    }

    /// The link is going: the thread, if any, sends what is pending on
    /// `conn` and ends; waited for unless inside an async runtime.
    pub(crate) fn close(&self, conn: &SharedConn) {
        let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        {
            let mut state = self.inner.state();
            state.closing = true;
            state.keep = Some(conn.clone());
        }
        self.inner.wake.notify_one();
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits until pending rows are due, then sends them; looks
/// at the connection while nothing is pending.
fn run(inner: &Inner, conn: &Weak<Mutex<Option<Conn>>>) {
    loop {
        let keep = {
            let mut state = inner.state();
            loop {
                if state.pending.is_empty() {
                    if state.closing {
                        let keep = state.keep.take();
                        drop(state);
                        drop(keep);
                        return;
                    }
                    let (next, waited) = inner
                        .wake
                        .wait_timeout(state, LOOK_EVERY)
                        .unwrap_or_else(PoisonError::into_inner);
                    state = next;
                    if waited.timed_out() && state.pending.is_empty() && !state.closing {
                        drop(state);
                        if !look(conn) {
                            return;
                        }
                        state = inner.state();
                    }
                    continue;
                }
                let due = state.last.map(|last| last + THREAD_AFTER);
                match due {
                    Some(due) if !state.closing && Instant::now() < due => {
                        let wait = due.saturating_duration_since(Instant::now());
                        state = inner
                            .wake
                            .wait_timeout(state, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    _ => break,
                }
            }
            state.keep.clone()
        };
        let Some(shared) = keep.or_else(|| conn.upgrade()) else {
            return;
        };
        {
            // The connection first, as a committing leader takes it.
            let held = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let rows = {
                let mut state = inner.state();
                state.last = Some(Instant::now());
                state.pending.take()
            };
            if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
                if !rows.is_empty() {
                    c.announce(&rows);
                }
            }
        }
        drop(shared);
    }
}

/// Looks at the link's connection unless someone is using it; false once
/// the link is gone.
fn look(conn: &Weak<Mutex<Option<Conn>>>) -> bool {
    let Some(shared) = conn.upgrade() else {
        return false;
    };
    if let Ok(held) = shared.try_lock() {
        if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
            c.look();
        }
    }
    true
}
