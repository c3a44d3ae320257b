//! [`Pod`]: one agent conversation, live. It owns the store handle, the
//! session it writes (and that session's write lock), the session's
//! [`SessionLogSink`], the pod's event channel, and the run loop that awaits its driver.
//!
//! Every write goes through one pod mutex: the store transaction, then the
//! publish to the sink, then the committed [`Event`] on the event channel.
//! [`Pod::subscribe`] and [`Pod::resume`] take their snapshot and their
//! receiver under the same mutex, so a subscriber sees each committed entry
//! exactly once (see the crate docs for the whole contract).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use futures_util::FutureExt;
use podlog_entry::{
    Clock, Committed, Conversation, LogEntry, Message, RunErrorKind, Seq, SessionId, SystemItem,
};
use podlog_sink::{SessionLogSink, Snapshot};
use podlog_store::redact::stream::StreamRedactor;
use podlog_store::redact::Redactions;
use podlog_store::{AppendReport, LockWatch, NewSession, SessionWriter, Store};
use tokio::sync::{broadcast, mpsc, watch};

use crate::driver::{on_blocking_pool, AgentDriver, DriverError, RunContext, RunHost};
use crate::error::PodError;
use crate::live::{self, MIRROR_WINDOW};
use podlog_protocol::{Event, SharedEvent};

/// How many events a receiver may fall behind before it lags (the pod's
/// channel carries text deltas too, so it is larger than the sink's).
pub const EVENT_CAPACITY: usize = 1024;

/// The message of the `RunErrored` that closes a run found open on restore.
pub const INTERRUPTED_ON_RESTORE: &str = "the pod stopped during this run";

/// The output of the error `ToolResult` that closes a tool call left without
/// a result when its run ended.
pub const CALL_LEFT_OPEN: &str = "the run ended before this tool call returned";

/// The default of [`Pod::set_size_warning`]: a `SystemItem` warns each time
/// a session's stored size passes a multiple of 256 MiB.
pub const DEFAULT_SIZE_WARNING: u64 = 256 * 1024 * 1024;

/// Opens `session` for writing (its write lock and last seq): the one place
/// the pod asks for it.
fn open_writer(store: &Arc<Store>, session: &SessionId) -> Result<SessionWriter, PodError> {
    store.session_writer(session).map_err(PodError::from)
}

/// What a pod is doing, as [`Pod::status`] and [`Pod::watch_status`] give
/// it: published after every change, and read without the pod mutex, so
/// reading it never waits for a commit (or for the disk a commit waits on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStatus {
    /// The session the pod writes.
    pub session_id: SessionId,
    /// The seq of that session's last committed entry.
    pub end_seq: Seq,
    /// A run, compaction or fork is in progress.
    pub busy: bool,
    /// Shutdown has begun.
    pub closed: bool,
    /// The session's write lock went with the store's database connection
    /// (PostgreSQL: the server ended it, or it was lost): every commit
    /// fails until the session is restored, by this process or another
    /// (`take_over`). Published as soon as the lock is found gone: by the
    /// first commit that fails for it, or, while the pod is idle, within
    /// about a second ([`podlog_store::LockWatch`]), to [`Pod::status`] and
    /// [`Pod::watch_status`] alike. Cleared when the pod moves to a new
    /// session with a lock of its own.
    pub lock_lost: bool,
}

/// What the pod mutex guards.
struct State {
    /// The session the pod writes.
    session: SessionId,
    /// Its writer (holding its write lock); `None` once shut down.
    writer: Option<SessionWriter>,
    /// The event channel; `None` once shut down, which closes every
    /// receiver after the events already sent.
    events: Option<broadcast::Sender<SharedEvent>>,
    /// The streamed text held back until it can be redacted whole (see
    /// `podlog_redact::stream`); released before the next commit.
    deltas: StreamRedactor,
}

/// The part of a pod its run loop shares.
pub(crate) struct Core {
    store: Arc<Store>,
    sink: SessionLogSink,
    state: Mutex<State>,
    /// A run, compaction or fork is in progress.
    busy: AtomicBool,
    /// Shutdown has begun: the driver's commits fail from now on.
    stopping: AtomicBool,
    /// See [`Pod::set_size_warning`]; 0: never.
    size_warning: AtomicU64,
    /// The published [`PodStatus`]. Changed only after the state it
    /// describes, so a reader may see it a moment late, never ahead.
    status: watch::Sender<PodStatus>,
    /// Whether the current writer's lock is gone, told without the pod
    /// mutex (which a commit may hold). Replaced with the writer, before
    /// the status says so.
    lock_watch: Mutex<LockWatch>,
    /// Signalled after `lock_watch` is replaced.
    lock_replaced: tokio::sync::Notify,
    /// The driver; `None` while a run has it.
    driver: Mutex<Option<Box<dyn AgentDriver>>>,
}

/// Releases the busy flag when dropped.
struct BusyGuard<'a>(&'a Core);

impl BusyGuard<'_> {
    /// Leaves the flag set: whoever the run was handed to clears it.
    fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.set_busy(false);
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section changes `State` by whole-field assignments
        // after the fallible work is done, so a poisoned lock still guards a
        // consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current session, from the published status: never waits for
    /// the pod mutex.
    pub(crate) fn session_id(&self) -> SessionId {
        self.status.borrow().session_id.clone()
    }

    /// Sets the busy flag and publishes it. The status is updated from the
    /// flag's value inside the watch's lock, so concurrent changes leave it
    /// at the flag's last value.
    fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
        self.publish_busy();
    }

    fn publish_busy(&self) {
        self.status
            .send_modify(|s| s.busy = self.busy.load(Ordering::Acquire));
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.store.options().clock.as_ref()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Publishes [`PodStatus::lock_lost`] as soon as the current writer's
    /// lock is found gone ([`LockWatch::lost`]), while the pod is idle too,
    /// so that [`Pod::watch_status`] tells it without a commit. Never
    /// completes: it runs beside the run loop, and ends with it.
    async fn watch_lock(&self) {
        loop {
            let replaced = self.lock_replaced.notified();
            let mut replaced = std::pin::pin!(replaced);
            // Registered before the watch is read, so that a writer
            // replaced in between still wakes it.
            replaced.as_mut().enable();
            let watch = self
                .lock_watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let lost = std::pin::pin!(watch.lost());
            if let futures_util::future::Either::Left((_, replaced)) =
                futures_util::future::select(lost, replaced).await
            {
                let current = self
                    .lock_watch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_lost();
                if current && !self.is_stopping() {
                    self.status
                        .send_if_modified(|s| !std::mem::replace(&mut s.lock_lost, true));
                }
                // Nothing more to tell until the pod has another writer.
                replaced.await;
            }
        }
    }

    /// The tool calls of the open run that have no result yet. From the
    /// mirror when it holds the run's `UserInput` (the window is a suffix of
    /// the session, so its last `UserInput` is the session's), else from the
    /// run's entries in the store.
    fn open_calls(&self) -> Result<Vec<String>, PodError> {
        let snapshot = self.sink.snapshot();
        let holds_run = snapshot.first_seq() == Seq::FIRST
            || snapshot
                .entries
                .iter()
                .any(|c| matches!(*c.entry, LogEntry::UserInput { .. }));
        if holds_run {
            let entries = snapshot.entries.iter().map(|c| &*c.entry);
            return Ok(Conversation::from_entries(entries).pending_calls);
        }
        let session = self.session_id();
        let Some(input) = self.store.open_run(&session)? else {
            return Ok(Vec::new());
        };
        let run = self
            .store
            .previews_after(&session, Seq(input.get() - 1), usize::MAX)?;
        Ok(Conversation::from_entries(run.iter().map(|c| &*c.entry)).pending_calls)
    }

    /// The snapshot event of `session` (see [`live::snapshot_event`]).
    fn snapshot_event(
        &self,
        session: SessionId,
        snapshot: &Snapshot,
        tail: Option<usize>,
    ) -> Result<SharedEvent, PodError> {
        live::snapshot_event(&self.store, session, snapshot, tail)
    }

    /// The whole conversation, every payload in place: folded from the
    /// mirror when it holds every entry whole, read from the store when it
    /// holds lean ones.
    pub(crate) fn conversation(&self) -> Result<Conversation, PodError> {
        let session = self.session_id();
        let snapshot = self.sink.snapshot();
        if snapshot.first_seq() == Seq::FIRST
            && snapshot.entries.iter().all(|c| c.payloads.is_none())
        {
            return Ok(Conversation::from_entries(
                snapshot.entries.iter().map(|c| &*c.entry),
            ));
        }
        let entries = self.store.entries(&session)?;
        Ok(Conversation::from_entries(
            entries.iter().map(|c| &*c.entry),
        ))
    }

    fn try_busy(&self, session: impl FnOnce() -> SessionId) -> Result<BusyGuard<'_>, PodError> {
        if self.is_stopping() {
            return Err(PodError::Closed { session: session() });
        }
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| PodError::Busy { session: session() })?;
        self.publish_busy();
        Ok(BusyGuard(self))
    }

    /// Commit-then-publish under the pod mutex. `from_driver`: refuse once
    /// shutdown has begun (the pod's own closing entries still go through
    /// until the pod is closed).
    pub(crate) fn commit(&self, entry: LogEntry, from_driver: bool) -> Result<Seq, PodError> {
        self.commit_inner(entry, from_driver, false)
    }

    /// [`Core::commit`]; with `ends_run`, the busy flag is cleared in the
    /// same critical section (whether the commit succeeds or not), before
    /// the event goes out, so a client that sees the end of a run can start
    /// the next one at once.
    fn commit_inner(
        &self,
        entry: LogEntry,
        from_driver: bool,
        ends_run: bool,
    ) -> Result<Seq, PodError> {
        let mut state = self.lock();
        if ends_run {
            // Cleared before the event goes out, so a client that sees the
            // end of the run can start the next one at once; published with
            // the closing entry's seq below, so that the status never says
            // idle before the run's last entry is in the mirror.
            self.busy.store(false, Ordering::Release);
        }
        let result = self.append_and_send(&mut state, entry, from_driver);
        let result = result.map(|report| {
            let seq = report.committed.seq;
            // Notices about this append follow it at once, under the same
            // mutex; a failure to write one fails only the notice.
            let last = self.notify(&mut state, &report).unwrap_or(seq);
            (seq, last)
        });
        match &result {
            Ok((_, last)) => self.status.send_modify(|s| {
                s.end_seq = *last;
                s.busy = self.busy.load(Ordering::Acquire);
            }),
            Err(_) if ends_run => self.publish_busy(),
            Err(_) => {}
        }
        result.map(|(seq, _)| seq)
    }

    /// Commits the `SystemItem`s an append calls for: the first redaction
    /// of the session (how many secrets of which kinds, never the secrets),
    /// and each multiple of the size threshold its stored size passed.
    /// Returns the seq of the last one written.
    fn notify(&self, state: &mut State, report: &AppendReport) -> Option<Seq> {
        let mut notices = Vec::new();
        if report.redactions_before == 0 && !report.redactions.is_empty() {
            notices.push(redaction_notice(report.committed.seq, &report.redactions));
        }
        let threshold = self.size_warning.load(Ordering::Relaxed);
        if threshold > 0 && report.stored_after / threshold > report.stored_before / threshold {
            notices.push(size_notice(report.stored_after, threshold));
        }
        let mut last = None;
        for item in notices {
            let entry = LogEntry::SystemItem {
                ts: self.clock().now_millis(),
                item,
            };
            match self.append_and_send(state, entry, false) {
                Ok(r) => last = Some(r.committed.seq),
                Err(e) => tracing::warn!("could not commit a notice: {e}"),
            }
        }
        last
    }

    /// The commit itself, under the pod mutex: the store transaction, the
    /// publish to the sink, the event.
    fn append_and_send(
        &self,
        state: &mut State,
        entry: LogEntry,
        from_driver: bool,
    ) -> Result<AppendReport, PodError> {
        let open = state.events.is_some() && !(from_driver && self.is_stopping());
        let writer = match state.writer.as_mut() {
            Some(writer) if open => writer,
            _ => {
                return Err(PodError::Closed {
                    session: state.session.clone(),
                })
            }
        };
        // Invariant 1: the store commits, then publishes to the sink; on any
        // error it returns before publishing, and no event is sent.
        // Streamed text held back (see `Core::stream`) goes out before the
        // entry, so the deltas a client saw add up to the whole text.
        if let (Some(redactor), Some(tx)) = (self.store.redactor(), &state.events) {
            let mut found = Redactions::default();
            if let Some(text) = state.deltas.flush(&redactor, &mut found) {
                let after = self.sink.end_seq();
                let delta = Event::TextDelta { after, text };
                let _ = tx.send(SharedEvent::new(state.session.clone(), delta));
            }
        }
        let report = match writer.append_reported(entry, &self.sink) {
            Ok(report) => report,
            Err(e) => {
                if writer.is_lost() {
                    self.status.send_modify(|s| s.lock_lost = true);
                }
                return Err(e.into());
            }
        };
        if let Some(tx) = &state.events {
            // Clients get what the mirror holds: the lean, redacted entry.
            // An error only means no receiver exists right now.
            let event = Event::from_committed(&report.committed);
            let _ = tx.send(SharedEvent::new(state.session.clone(), event));
        }
        Ok(report)
    }

    /// Sends an ephemeral event stamped with the last committed seq.
    ///
    /// Streamed text is redacted like committed text: a `TextDelta` goes
    /// through the pod's [`StreamRedactor`], which sends text up to white
    /// space only (holding back the word being written, so a secret split
    /// across deltas is still seen whole); another ephemeral event or a
    /// commit first releases what is held. With redaction off, deltas pass
    /// as they come.
    pub(crate) fn stream(&self, mut event: Event, from_driver: bool) -> Result<(), PodError> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(tx) = &state.events else {
            return Err(PodError::Closed {
                session: state.session.clone(),
            });
        };
        if from_driver && self.is_stopping() {
            return Err(PodError::Closed {
                session: state.session.clone(),
            });
        }
        let after = self.sink.end_seq();
        let send = |event: Event| {
            let _ = tx.send(SharedEvent::new(state.session.clone(), event));
        };
        if let Some(redactor) = self.store.redactor() {
            let mut found = Redactions::default();
            let released = match &event {
                Event::TextDelta { text, .. } => {
                    match state.deltas.push(&redactor, text, &mut found) {
                        Some(text) => text,
                        None => return Ok(()),
                    }
                }
                _ => match state.deltas.flush(&redactor, &mut found) {
                    Some(text) => {
                        send(Event::TextDelta { after, text });
                        String::new()
                    }
                    None => String::new(),
                },
            };
            if let Event::TextDelta { text, .. } = &mut event {
                *text = released;
            }
        }
        event.stamp(after);
        send(event);
        Ok(())
    }

    /// The snapshot, the current session and a fresh receiver, taken under
    /// the pod mutex so they split the event stream cleanly.
    fn split(&self) -> (SessionId, Snapshot, broadcast::Receiver<SharedEvent>) {
        let state = self.lock();
        let snapshot = self.sink.snapshot();
        let rx = match &state.events {
            Some(tx) => tx.subscribe(),
            None => closed_receiver(),
        };
        (state.session.clone(), snapshot, rx)
    }

    /// Runs a store operation that starts a new session (compact, fork),
    /// then moves the pod to it: lock it, reset the sink, tell subscribers.
    fn rotate(
        &self,
        op: impl FnOnce(&Store, &SessionId) -> Result<(SessionId, Committed), PodError>,
    ) -> Result<SessionId, PodError> {
        let mut state = self.lock();
        if state.events.is_none() {
            return Err(PodError::Closed {
                session: state.session.clone(),
            });
        }
        let (id, start) = op(&self.store, &state.session)?;
        let new_writer = open_writer(&self.store, &id)?;
        let redacted = new_writer.redactions();
        self.sink
            .reset_with_initial(start.clone())
            .map_err(|source| PodError::Mirror {
                session: id.clone(),
                seq: Seq::FIRST,
                source,
            })?;
        state.session = id.clone();
        state.deltas.clear();
        // Replacing the writer releases the old session's lock.
        *self
            .lock_watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = new_writer.lock_watch();
        state.writer = Some(new_writer);
        self.status.send_modify(|s| {
            s.session_id = id.clone();
            s.end_seq = Seq::FIRST;
            s.lock_lost = false;
        });
        self.lock_replaced.notify_waiters();
        if let Some(tx) = &state.events {
            let rotated = Event::SessionRotated {
                session_id: id.clone(),
                seq: Seq::FIRST,
                entry: (*start.entry).clone(),
                payloads: start.payloads.clone(),
            };
            let _ = tx.send(SharedEvent::new(id.clone(), rotated));
        }
        if redacted > 0 {
            // A compaction's summary held secrets: the new session's first
            // redaction is its start.
            self.start_notice(&mut state, redacted);
        }
        Ok(id)
    }

    /// Commits the notice of a session whose `SessionStart` (or title) had
    /// `redacted` secrets replaced: appends after it are then never the
    /// session's first redaction.
    fn start_notice(&self, state: &mut State, redacted: u64) {
        let entry = LogEntry::SystemItem {
            ts: self.clock().now_millis(),
            item: start_redaction_notice(redacted),
        };
        match self.append_and_send(state, entry, false) {
            Ok(r) => self.status.send_modify(|s| s.end_seq = r.committed.seq),
            Err(e) => tracing::warn!("could not commit a notice: {e}"),
        }
    }

    /// Closes the open run: an error `ToolResult` for each tool call left
    /// without a result, then `RunErrored` of `kind` (attempted even if a
    /// `ToolResult` failed). `ends_run`: clear the busy flag with the
    /// `RunErrored` commit.
    fn close_run(
        &self,
        kind: RunErrorKind,
        message: &str,
        ends_run: bool,
    ) -> Result<Seq, PodError> {
        let mut first_error = None;
        let open_calls = match self.open_calls() {
            Ok(calls) => calls,
            Err(e) => {
                // The run is closed all the same; a call left without its
                // result reads as open until the next restore closes it.
                first_error = Some(e);
                Vec::new()
            }
        };
        for call_id in open_calls {
            let result = self.commit(
                LogEntry::ToolResult {
                    ts: self.clock().now_millis(),
                    call_id,
                    output: CALL_LEFT_OPEN.to_owned(),
                    is_error: true,
                },
                false,
            );
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let closed = self.commit_inner(
            LogEntry::RunErrored {
                ts: self.clock().now_millis(),
                kind,
                message: message.to_owned(),
            },
            false,
            ends_run,
        );
        match first_error {
            Some(e) => Err(e),
            None => closed,
        }
    }

    /// Runs `f` on the blocking pool (see [`on_blocking_pool`]).
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Core) -> Result<T, PodError> + Send + 'static,
    ) -> Result<T, PodError> {
        on_blocking_pool(self, f).await
    }

    /// One run, on the pod's run loop: the driver's work, then the entry
    /// that closes the run. A failure to commit that entry leaves the run
    /// open on disk, and the next restore closes it.
    async fn run(self: &Arc<Self>, text: String, input_seq: Seq) {
        let _ = self
            .blocking(move |core| core.stream(Event::RunStarted { after: input_seq }, true))
            .await;
        let mut ctx = RunContext {
            host: self.clone(),
            input_seq,
            turn_count: 0,
        };
        // The driver is taken out for the run (no lock is held across its
        // awaits) and put back after it; compaction, which also uses it, is
        // refused while a run is in progress.
        let taken = self
            .driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let outcome = match taken {
            Some(mut driver) => {
                let outcome = AssertUnwindSafe(driver.run(&text, &mut ctx))
                    .catch_unwind()
                    .await;
                *self.driver.lock().unwrap_or_else(PoisonError::into_inner) = Some(driver);
                outcome
            }
            None => Ok(Err(DriverError::internal("the pod's driver is missing"))),
        };
        let turn_count = ctx.turn_count;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Some(DriverError::internal(format!(
                    "the driver panicked: {what}"
                )))
            }
        };
        // Either way the closing commit clears the busy flag.
        let _ = self
            .blocking(move |core| match error {
                None => core.commit_inner(
                    LogEntry::RunCompleted {
                        ts: core.clock().now_millis(),
                        turn_count,
                    },
                    false,
                    true,
                ),
                Some(error) => core.close_run(error.kind, &error.message, true),
            })
            .await;
    }
}

impl RunHost for Core {
    fn commit_from_driver(&self, entry: LogEntry) -> Result<Seq, PodError> {
        self.commit(entry, true)
    }

    fn stream_from_driver(&self, event: Event) -> Result<(), PodError> {
        self.stream(event, true)
    }

    fn conversation(&self) -> Result<Conversation, PodError> {
        Core::conversation(self)
    }

    fn session_id(&self) -> SessionId {
        Core::session_id(self)
    }

    fn clock(&self) -> &dyn Clock {
        Core::clock(self)
    }

    fn is_stopping(&self) -> bool {
        Core::is_stopping(self)
    }
}

/// A receiver whose channel is closed: `recv` reports `Closed` at once.
fn closed_receiver() -> broadcast::Receiver<SharedEvent> {
    let (_, rx) = broadcast::channel(1);
    rx
}

/// A run handed to the run loop.
struct Run {
    text: String,
    input_seq: Seq,
}

/// Set when the pod's run loop has ended (returned, or was dropped with its
/// runtime), for a shutdown to wait on.
#[derive(Default)]
struct LoopDone {
    done: Mutex<bool>,
    ended: Condvar,
}

impl LoopDone {
    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            done = self
                .ended
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks the run loop ended when dropped: moved into the loop's future, so
/// it fires whether the loop returns or its runtime drops it.
struct LoopGuard(Arc<LoopDone>);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        *self.0.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.ended.notify_all();
    }
}

/// Where the run loop runs.
enum LoopHome {
    /// A task of the runtime the pod was created in.
    Task(tokio::task::Id),
    /// A thread of the pod's own, with a small runtime.
    Thread(JoinHandle<()>),
    /// Nowhere: no thread could be started; inputs fail with `Closed`.
    None,
}

/// What a shutdown takes out of the pod: the run channel, where the loop
/// runs, and its end signal.
struct Ending {
    runs: Option<mpsc::UnboundedSender<Run>>,
    home: LoopHome,
    done: Arc<LoopDone>,
}

struct Shared {
    core: Arc<Core>,
    /// Feeds the run loop; `None` once shut down.
    runs: Mutex<Option<mpsc::UnboundedSender<Run>>>,
    home: Mutex<LoopHome>,
    done: Arc<LoopDone>,
}

impl Shared {
    fn shutdown(&self) {
        finish_shutdown(&self.core, self.begin_shutdown());
    }

    /// Marks the pod stopping and takes the run channel and the loop's
    /// whereabouts out.
    fn begin_shutdown(&self) -> Ending {
        self.core.stopping.store(true, Ordering::Release);
        self.core.status.send_modify(|s| s.closed = true);
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let home = std::mem::replace(
            &mut *self.home.lock().unwrap_or_else(PoisonError::into_inner),
            LoopHome::None,
        );
        Ending {
            runs,
            home,
            done: self.done.clone(),
        }
    }
}

/// The rest of a shutdown: close the run channel (ending the run loop after
/// the run in flight), wait for the loop to end, then release the writer
/// and close the event channel.
fn finish_shutdown(core: &Core, ending: Ending) {
    drop(ending.runs);
    // A driver that shuts its own pod down cannot wait for itself.
    let own_loop = match &ending.home {
        LoopHome::Task(id) => tokio::task::try_id() == Some(*id),
        LoopHome::Thread(handle) => handle.thread().id() == std::thread::current().id(),
        LoopHome::None => true,
    };
    if !own_loop {
        ending.done.wait();
        if let LoopHome::Thread(handle) = ending.home {
            let _ = handle.join();
        }
    }
    let mut state = core.lock();
    state.writer = None;
    state.events = None;
}

impl Drop for Shared {
    fn drop(&mut self) {
        let ending = self.begin_shutdown();
        // The run in flight may be inside a commit that waits for the disk
        // or for another connection's lock. On an async runtime's worker,
        // waiting for it would stall every task of that worker (and, on a
        // one-thread runtime, the run itself): finish on a thread of its
        // own instead. Elsewhere, finish here, so that dropping the last
        // clone releases the session's lock before it returns.
        if !matches!(ending.home, LoopHome::None) && tokio::runtime::Handle::try_current().is_ok() {
            let core = self.core.clone();
            let spawned = std::thread::Builder::new()
                .name("podlog-pod-shutdown".to_owned())
                .spawn(move || finish_shutdown(&core, ending));
            // If no thread can be had, the run loop still ends on its own
            // once its channel is gone, and the last reference to the pod's
            // core then releases the writer.
            drop(spawned);
            return;
        }
        finish_shutdown(&self.core, ending);
    }
}

/// A live agent conversation. Cheap to clone (the clones share one pod);
/// `Send + Sync`. Dropping the last clone shuts it down. See the crate docs
/// for the contract.
#[derive(Clone)]
pub struct Pod {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("session", &self.session_id())
            .field("end_seq", &self.shared.core.sink.end_seq())
            .field("busy", &self.is_busy())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Pod {
    /// Creates a session (its `SessionStart` committed as seq 1), takes its
    /// write lock, and starts a pod on it.
    pub fn create(
        store: Arc<Store>,
        new: NewSession,
        driver: Box<dyn AgentDriver>,
    ) -> Result<Pod, PodError> {
        let (id, start) = store.create_session(new)?;
        let writer = open_writer(&store, &id)?;
        let redacted = writer.redactions();
        let sink = SessionLogSink::windowed(MIRROR_WINDOW, start, []).map_err(|source| {
            PodError::Mirror {
                session: id.clone(),
                seq: Seq::FIRST,
                source,
            }
        })?;
        let pod = Self::start(store, id, writer, sink, driver);
        if redacted > 0 {
            let core = pod.core();
            core.start_notice(&mut core.lock(), redacted);
        }
        Ok(pod)
    }

    /// Reopens `session` for writing: takes its write lock (failing with
    /// [`PodError::SessionLocked`], naming the holder, if another live
    /// process has it), loads the mirror before anyone can subscribe, and
    /// closes a run the log leaves open (see the crate docs).
    ///
    /// Tail-first: the mirror gets the session's `SessionStart` and its last
    /// [`MIRROR_WINDOW`] entries, lean (large strings as previews), so the
    /// time and memory a restore takes do not grow with the session.
    pub fn restore(
        store: Arc<Store>,
        session: &SessionId,
        driver: Box<dyn AgentDriver>,
    ) -> Result<Pod, PodError> {
        let writer = open_writer(&store, session)?;
        let sink = live::load_tail(&store, session, writer.last_seq())?;
        let open = store.open_run(session)?;
        let pod = Self::start(store, session.clone(), writer, sink, driver);
        if open.is_some() {
            pod.shared
                .core
                .close_run(RunErrorKind::Interrupted, INTERRUPTED_ON_RESTORE, false)?;
        }
        Ok(pod)
    }

    fn start(
        store: Arc<Store>,
        session: SessionId,
        writer: SessionWriter,
        sink: SessionLogSink,
        driver: Box<dyn AgentDriver>,
    ) -> Pod {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        let end_seq = sink.end_seq();
        let lock_watch = Mutex::new(writer.lock_watch());
        let core = Arc::new(Core {
            store,
            sink,
            state: Mutex::new(State {
                session: session.clone(),
                writer: Some(writer),
                events: Some(tx),
                deltas: StreamRedactor::default(),
            }),
            busy: AtomicBool::new(false),
            size_warning: AtomicU64::new(DEFAULT_SIZE_WARNING),
            stopping: AtomicBool::new(false),
            status: watch::Sender::new(PodStatus {
                session_id: session.clone(),
                end_seq,
                busy: false,
                closed: false,
                lock_lost: false,
            }),
            lock_watch,
            lock_replaced: tokio::sync::Notify::new(),
            driver: Mutex::new(Some(driver)),
        });
        let (runs, mut inbox) = mpsc::unbounded_channel::<Run>();
        let done = Arc::new(LoopDone::default());
        let guard = LoopGuard(done.clone());
        let loop_core = core.clone();
        let run_loop = async move {
            let _guard = guard;
            let runs = async {
                while let Some(run) = inbox.recv().await {
                    loop_core.run(run.text, run.input_seq).await;
                }
            };
            // The lock is watched for as long as runs are taken.
            let lock = loop_core.watch_lock();
            futures_util::future::select(std::pin::pin!(runs), std::pin::pin!(lock)).await;
        };
        let home = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => LoopHome::Task(runtime.spawn(run_loop).id()),
            Err(_) => {
                let thread = std::thread::Builder::new()
                    .name("podlog-pod".to_owned())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => runtime.block_on(run_loop),
                            // Dropping the loop closes its channel: inputs
                            // then fail with `Closed`.
                            Err(_) => drop(run_loop),
                        }
                    });
                match thread {
                    Ok(handle) => LoopHome::Thread(handle),
                    Err(_) => LoopHome::None,
                }
            }
        };
        // Without a loop (the system refused a thread), inputs fail with
        // `Closed` and everything else works.
        let runs = (!matches!(home, LoopHome::None)).then_some(runs);
        Pod {
            shared: Arc::new(Shared {
                core,
                runs: Mutex::new(runs),
                home: Mutex::new(home),
                done,
            }),
        }
    }

    fn core(&self) -> &Core {
        &self.shared.core
    }

    /// Sets the size threshold of the pod's warnings: when an append makes
    /// the session's stored size (`sessions.stored_bytes`) pass a multiple
    /// of `bytes`, the pod commits a `SystemItem` saying so, right after the
    /// entry. Each multiple warns once, and since the test is on the sizes
    /// before and after one append, nothing has to be remembered across
    /// restarts. 0 switches the warnings off; [`DEFAULT_SIZE_WARNING`] by
    /// default.
    pub fn set_size_warning(&self, bytes: u64) {
        self.core().size_warning.store(bytes, Ordering::Relaxed);
    }

    /// The session the pod writes now (it changes on compact and fork).
    /// Never waits for a commit.
    pub fn session_id(&self) -> SessionId {
        self.core().session_id()
    }

    /// The pod's session, end seq, busy and closed flags at once, and
    /// whether its session's lock is gone, also while it is idle (see
    /// [`PodStatus::lock_lost`]). Never waits for a commit: safe to call
    /// from an async task.
    pub fn status(&self) -> PodStatus {
        let core = self.core();
        let mut status = core.status.borrow().clone();
        if !status.closed
            && core
                .lock_watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_lost()
        {
            status.lock_lost = true;
        }
        status
    }

    /// A receiver of the pod's status, which changes after every commit,
    /// rotation, run start and end, when the session's lock is found gone
    /// (see [`PodStatus::lock_lost`]), and at shutdown.
    pub fn watch_status(&self) -> watch::Receiver<PodStatus> {
        self.core().status.subscribe()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.core().store
    }

    /// The pod's sink (the mirror of the current session). The same sink
    /// across rotations.
    pub fn sink(&self) -> SessionLogSink {
        self.core().sink.clone()
    }

    /// The current session's conversation, every payload whole: what a
    /// driver builds its model request from. Read from the store once the
    /// mirror holds lean entries or has dropped old ones, so call it off the
    /// async workers.
    pub fn conversation(&self) -> Result<Conversation, PodError> {
        self.core().conversation()
    }

    /// The seq of the last committed entry of the current session.
    pub fn end_seq(&self) -> Seq {
        self.core().sink.end_seq()
    }

    /// Whether a run, compaction or fork is in progress, as the status has
    /// it: a run counts as over once its closing entry is committed and
    /// published (so `end_seq` then includes it).
    pub fn is_busy(&self) -> bool {
        self.core().status.borrow().busy
    }

    /// Whether [`Pod::shutdown`] has begun.
    pub fn is_closed(&self) -> bool {
        self.core().is_stopping()
    }

    /// Commits `entry` to the current session: the store transaction, then
    /// the publish to the sink, then its event to subscribers, under the pod
    /// mutex. A failed store commit publishes nothing and sends nothing.
    /// Fails with [`PodError::Closed`] after shutdown.
    pub fn commit(&self, entry: LogEntry) -> Result<Seq, PodError> {
        self.core().commit(entry, false)
    }

    /// Sends an ephemeral event (`TextDelta`, `ToolCallStart`, `RunStarted`)
    /// stamped with the current watermark. Returns `false`, sending nothing,
    /// for an event that is not ephemeral (committed events come only from
    /// commits) or after shutdown.
    pub fn stream(&self, event: Event) -> bool {
        event.is_ephemeral() && self.core().stream(event, false).is_ok()
    }

    /// The current session's snapshot (the first event a client gets) and a
    /// receiver of every later event, split cleanly: each committed entry is
    /// in the snapshot or arrives on the receiver, never both, never neither.
    ///
    /// The whole session: entries older than the mirror's window are read
    /// from the store (call it off the async workers). Fails with
    /// [`PodError::Store`] if they cannot be read.
    pub fn subscribe(&self) -> Result<(SharedEvent, broadcast::Receiver<SharedEvent>), PodError> {
        let (session, snapshot, rx) = self.core().split();
        Ok((self.core().snapshot_event(session, &snapshot, None)?, rx))
    }

    /// [`Pod::subscribe`], tail-first: the snapshot holds only the last `n`
    /// committed entries (at least one; all of them if the session has
    /// fewer), so attaching costs the same however long the session is. A
    /// client pages back with the store's `entries_before` from the first
    /// seq it got. The split with the receiver is as clean as `subscribe`'s.
    pub fn subscribe_tail(
        &self,
        n: usize,
    ) -> Result<(SharedEvent, broadcast::Receiver<SharedEvent>), PodError> {
        let (session, snapshot, rx) = self.core().split();
        Ok((self.core().snapshot_event(session, &snapshot, Some(n))?, rx))
    }

    /// For a client that reconnects or a receiver that lagged, having seen
    /// `session` up to seq `after`: if `session` is the current session and
    /// `after <= end_seq`, the committed events after `after`; otherwise
    /// `[SessionRotated, Snapshot]` of the current session. Plus a fresh
    /// receiver for what follows, split cleanly like [`Pod::subscribe`].
    pub fn resume(
        &self,
        session: &SessionId,
        after: Seq,
    ) -> Result<(Vec<SharedEvent>, broadcast::Receiver<SharedEvent>), PodError> {
        self.resume_tail(session, after, None)
    }

    /// [`Pod::resume`] for a client that attached tail-first: when it has to
    /// start over on the current session, the snapshot holds only that
    /// session's last `tail` entries (all of them with `None`).
    pub fn resume_tail(
        &self,
        session: &SessionId,
        after: Seq,
        tail: Option<usize>,
    ) -> Result<(Vec<SharedEvent>, broadcast::Receiver<SharedEvent>), PodError> {
        let core = self.core();
        let (current, snapshot, rx) = core.split();
        let events = live::resume_events(&core.store, &current, &snapshot, session, after, tail)?;
        Ok((events, rx))
    }

    /// Commits `text` as a `UserInput` and hands the run to the driver
    /// thread. `Ok` means the input is on disk and the run is under way; the
    /// run's entries and its closing `RunCompleted` / `RunErrored` follow as
    /// events. Fails with [`PodError::Busy`] while a run, compaction or fork
    /// is in progress, [`PodError::Closed`] after shutdown, and
    /// [`PodError::Store`] if the input could not be committed (then no run
    /// starts).
    pub fn submit_input(&self, text: String) -> Result<(), PodError> {
        let core = self.core();
        let busy = core.try_busy(|| core.session_id())?;
        // Held until the run is queued, so shutdown cannot close the channel
        // between the commit of the input and the hand-over.
        let runs = self
            .shared
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(runs) = runs.as_ref() else {
            return Err(PodError::Closed {
                session: core.session_id(),
            });
        };
        let input_seq = core.commit(
            LogEntry::UserInput {
                ts: core.clock().now_millis(),
                text: text.clone(),
                attachments: vec![],
            },
            false,
        )?;
        if runs.send(Run { text, input_seq }).is_err() {
            // The run loop is gone (its runtime shut down): close the
            // run so that no client waits on it.
            core.close_run(RunErrorKind::Internal, "the pod's run loop stopped", false)?;
            return Err(PodError::Closed {
                session: core.session_id(),
            });
        }
        // The run loop clears the busy flag when the run is over.
        busy.hand_over();
        Ok(())
    }

    /// Continues in a new session that starts from `summary` (`None`: the
    /// driver summarises the conversation): the store's compaction, then the
    /// sink's reset, then `SessionRotated` to subscribers. Returns the new
    /// session, which the pod writes from now on (its lock taken, the old
    /// one's released). [`PodError::Busy`] during a run. If the new
    /// session cannot be locked the pod stays on the old one and the new
    /// session is left on disk as its store operation wrote it.
    pub fn compact(&self, summary: Option<Vec<Message>>) -> Result<SessionId, PodError> {
        let core = self.core();
        let _busy = core.try_busy(|| core.session_id())?;
        let summary = match summary {
            Some(summary) => summary,
            None => {
                let conversation = core.conversation()?;
                let mut driver = core.driver.lock().unwrap_or_else(PoisonError::into_inner);
                // The busy flag keeps runs out, so the driver is at home.
                let Some(driver) = driver.as_mut() else {
                    return Err(PodError::Busy {
                        session: core.session_id(),
                    });
                };
                driver
                    .summarise(&conversation)
                    .map_err(|e| PodError::Summarise {
                        session: core.session_id(),
                        message: e.message,
                    })?
            }
        };
        core.rotate(|store, session| Ok(store.compact(session, summary)?))
    }

    /// Branches the current session at `at` and continues in the branch:
    /// the store's fork, then the sink's reset, then `SessionRotated` to
    /// subscribers. Returns the new session. [`PodError::Busy`] during a
    /// run; the store refuses a cut that does not exist or that separates a
    /// tool call from its result.
    pub fn fork(&self, at: Seq) -> Result<SessionId, PodError> {
        let core = self.core();
        let _busy = core.try_busy(|| core.session_id())?;
        core.rotate(|store, session| Ok(store.fork(session, at)?))
    }

    /// Stops the pod: the driver's next commit or stream fails, so a run in
    /// progress ends after its in-flight commit (closed with `RunErrored` of
    /// kind `interrupted`); waits for the run loop; then releases the
    /// session's write lock and closes the event channel (receivers get what
    /// was sent, then `Closed`). Later writes fail with [`PodError::Closed`];
    /// `subscribe` and `resume` still give the final state. Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}

/// The notice of a session's first redaction: counts and kinds only.
fn redaction_notice(seq: Seq, found: &Redactions) -> SystemItem {
    let n = found.total();
    let secrets = if n == 1 { "secret" } else { "secrets" };
    SystemItem::Notification {
        message: format!("{n} {secrets} redacted ({found})"),
        body: format!(
            "[Notification] Entry {seq} held {n} {secrets} ({found}); each was replaced by a \
             [REDACTED:kind:hash] marker before it was written. Later redactions in this session \
             are counted in `podlog sessions` without a notice."
        ),
    }
}

/// The notice of secrets redacted in a session's start: its prompt, its
/// history (a compaction's summary) or its title.
fn start_redaction_notice(n: u64) -> SystemItem {
    let secrets = if n == 1 { "secret" } else { "secrets" };
    SystemItem::Notification {
        message: format!("{n} {secrets} redacted in the session's start"),
        body: format!(
            "[Notification] The session's start (its prompt, history or title) held {n} \
             {secrets}; each was replaced by a [REDACTED:kind:hash] marker before it was \
             written. Later redactions in this session are counted in `podlog sessions` without \
             a notice."
        ),
    }
}

/// The notice of a session's stored size passing a multiple of `threshold`.
fn size_notice(stored: u64, threshold: u64) -> SystemItem {
    let passed = stored / threshold * threshold;
    SystemItem::Notification {
        message: format!("session size passed {}", human_bytes(passed)),
        body: format!(
            "[Notification] This session now stores {} (entries and their payloads), past {}. \
             Consider compacting it or starting a new one.",
            human_bytes(stored),
            human_bytes(passed)
        ),
    }
}

/// `512 B`, `1.5 KiB`, `256.0 MiB`, ...
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
