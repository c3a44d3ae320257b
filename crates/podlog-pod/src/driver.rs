//! Agent drivers: the model loop an embedding application plugs into a pod
//! ([`AgentDriver`]), and the [`RunContext`] it commits and streams through.
//! `scripted.rs` holds [`ScriptedDriver`](crate::ScriptedDriver), a
//! deterministic driver for demos and tests.
//!
//! # How a run goes
//!
//! `Pod::submit_input` commits the user's `UserInput` and hands the run to
//! the pod's run loop, which awaits [`AgentDriver::run`] with a
//! [`RunContext`]. The run is a future on a tokio runtime: the runtime the
//! pod was created in (no OS thread per pod), or, for a pod created outside
//! any runtime, a small runtime on a thread of the pod's own. The driver
//! awaits its model client and tools and, as things happen:
//!
//! * streams what is not worth keeping with [`RunContext::text_delta`] and
//!   [`RunContext::tool_call_start`] (ephemeral events, sent to connected
//!   clients only);
//! * commits what is: assistant items, tool results, usage, `TurnEnd` after
//!   each model round trip, notifications, with [`RunContext::commit`]. Each
//!   commit is on disk before its future completes and before any client
//!   sees it. The commit itself runs on the runtime's blocking pool, so a
//!   slow disk or another connection's lock never holds a runtime worker.
//!
//! The pod opens and closes the run itself: it commits the `UserInput`
//! before the driver starts, and when `run` returns it commits
//! `RunCompleted` (on `Ok`, with the `turn_count` of the last `TurnEnd` the
//! driver committed) or `RunErrored` (on `Err`, with the error's kind and
//! message; a panic becomes kind `internal`). Tool calls of the run left
//! without a result are first closed with an error `ToolResult`, so the
//! conversation stays valid for the next run. A run is therefore never lost:
//! every `UserInput` is followed by `RunCompleted` or `RunErrored`, unless
//! the process dies, and then `Pod::restore` closes it.
//!
//! # Implementing a driver
//!
//! ```
//! use podlog_entry::{AssistantContent, Conversation, LogEntry, Message};
//! use podlog_pod::{async_trait, AgentDriver, DriverError, RunContext};
//!
//! /// Answers every input with its text reversed.
//! struct Echo;
//!
//! #[async_trait]
//! impl AgentDriver for Echo {
//!     async fn run(&mut self, input: &str, ctx: &mut RunContext) -> Result<(), DriverError> {
//!         // A real driver awaits its model client here.
//!         let answer: String = input.chars().rev().collect();
//!         ctx.text_delta(&answer).await?; // shown while "generating"
//!         let ts = ctx.now();
//!         let item = AssistantContent::Text { text: answer };
//!         ctx.commit(LogEntry::AssistantItem { ts, item }).await?;
//!         let ts = ctx.now();
//!         ctx.commit(LogEntry::TurnEnd { ts, turn_count: 1 }).await?;
//!         Ok(())
//!     }
//!
//!     fn summarise(&mut self, conversation: &Conversation) -> Result<Vec<Message>, DriverError> {
//!         Ok(vec![Message::System {
//!             text: format!("{} messages so far", conversation.messages.len()),
//!         }])
//!     }
//! }
//! ```
//!
//! Rules for a driver:
//!
//! * Build the model request from [`RunContext::conversation`]: it is the
//!   session's conversation up to now, the user's input included.
//! * Return as soon as `commit` or `stream` fails with `PodError::Closed`
//!   (the `?` operator does it: the error converts to a [`DriverError`] of
//!   kind `interrupted`): the pod is shutting down, and `Pod::shutdown` waits
//!   for the run to return. Long waits (model calls, tools) should check
//!   [`RunContext::is_stopping`] when they can.
//! * Never block the thread inside `run` (no `std::thread::sleep`, no
//!   blocking I/O): it is a runtime worker. Await, or use
//!   `tokio::task::spawn_blocking` for blocking work.
//! * Do not commit `UserInput`, `RunCompleted`, `RunErrored` or a
//!   `SessionStart`: the pod does (`commit` refuses them).
//! * Map failures to a kind: [`DriverError::provider`] for the model
//!   provider, [`DriverError::tool`] for a tool the run cannot recover from,
//!   [`DriverError::internal`] for the rest. A tool that fails in a way the
//!   model can react to is not a driver error: commit its `ToolResult` with
//!   `is_error: true` and carry on.

use std::sync::Arc;

use podlog_entry::{Clock, Conversation, LogEntry, Message, RunErrorKind, Seq, SessionId};
use podlog_protocol::Event;

use crate::error::PodError;

/// The message of the `RunErrored` that closes a run stopped by
/// `Pod::shutdown`.
pub const INTERRUPTED_BY_SHUTDOWN: &str = "the pod shut down during this run";

/// The embedding application's model loop, awaited by the pod's run loop.
/// An async trait (implement it with [`macro@crate::async_trait`]); see the
/// module docs for how to implement one.
#[async_trait::async_trait]
pub trait AgentDriver: Send + 'static {
    /// Answers the user input `input` (already committed as a `UserInput`):
    /// calls the model, runs tools, and commits and streams through `ctx`.
    /// Completes when the run is over; the pod then commits `RunCompleted`
    /// (`Ok`) or `RunErrored` (`Err`).
    async fn run(&mut self, input: &str, ctx: &mut RunContext) -> Result<(), DriverError>;

    /// Summarises `conversation` into the messages a compacted session
    /// starts from (`Pod::compact(None)`). Called on the caller's thread,
    /// never during a run.
    fn summarise(&mut self, conversation: &Conversation) -> Result<Vec<Message>, DriverError>;
}

/// Why a run failed: becomes the committed `RunErrored`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub kind: RunErrorKind,
    pub message: String,
}

impl DriverError {
    /// An error of `kind`.
    pub fn new(kind: RunErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// The model provider failed (network, rate limit, bad response).
    pub fn provider(message: impl Into<String>) -> Self {
        Self::new(RunErrorKind::Provider, message)
    }
    /// A tool failed in a way the run cannot recover from.
    pub fn tool(message: impl Into<String>) -> Self {
        Self::new(RunErrorKind::Tool, message)
    }
    /// A bug or resource failure in the driver or the runtime.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(RunErrorKind::Internal, message)
    }
}

impl From<PodError> for DriverError {
    fn from(error: PodError) -> Self {
        match error {
            PodError::Closed { .. } => {
                DriverError::new(RunErrorKind::Interrupted, INTERRUPTED_BY_SHUTDOWN)
            }
            other => DriverError::internal(other.to_string()),
        }
    }
}

/// What a run needs of its pod: the pod implements it, so this file does not
/// depend on the pod's (no import cycle between the two).
pub(crate) trait RunHost: Send + Sync + 'static {
    /// Commit-then-publish, as the driver (refused once stopping).
    fn commit_from_driver(&self, entry: LogEntry) -> Result<Seq, PodError>;
    /// Sends an ephemeral event, as the driver.
    fn stream_from_driver(&self, event: Event) -> Result<(), PodError>;
    fn conversation(&self) -> Result<Conversation, PodError>;
    fn session_id(&self) -> SessionId;
    fn clock(&self) -> &dyn Clock;
    fn is_stopping(&self) -> bool;
}

/// Runs `f` on the blocking pool, so that whatever it waits for (the pod
/// mutex, a commit's disk flush, another connection's lock) never holds a
/// runtime worker. A panic in `f` is raised again here.
pub(crate) async fn on_blocking_pool<H: ?Sized + RunHost, T: Send + 'static>(
    host: &Arc<H>,
    f: impl FnOnce(&H) -> Result<T, PodError> + Send + 'static,
) -> Result<T, PodError> {
    let worker = host.clone();
    match tokio::task::spawn_blocking(move || f(&worker)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(PodError::Closed {
            session: host.session_id(),
        }),
    }
}

/// What a driver gets for one run: commit entries, stream ephemeral events,
/// read the conversation. Lent for the length of [`AgentDriver::run`].
pub struct RunContext {
    pub(crate) host: Arc<dyn RunHost>,
    pub(crate) input_seq: Seq,
    pub(crate) turn_count: u64,
}

impl RunContext {
    /// Commits `entry` to the session (store transaction, then mirror, then
    /// the event to clients) and returns its seq. Fails with
    /// `PodError::Closed` once the pod is shutting down, with
    /// `PodError::Rejected` for the entries the pod commits itself
    /// (`UserInput`, `RunCompleted`, `RunErrored`, `SessionStart`), and with
    /// `PodError::Store` when the store fails (nothing is published then).
    /// The commit runs on the blocking pool; the future completes once the
    /// entry is on disk and published.
    pub async fn commit(&mut self, entry: LogEntry) -> Result<Seq, PodError> {
        if matches!(
            entry,
            LogEntry::UserInput { .. }
                | LogEntry::RunCompleted { .. }
                | LogEntry::RunErrored { .. }
                | LogEntry::SessionStart { .. }
        ) {
            return Err(PodError::Rejected {
                session: self.session_id(),
                kind: entry.kind().to_owned(),
                reason: "the pod commits the entries that open and close a run".to_owned(),
            });
        }
        let turn = match &entry {
            LogEntry::TurnEnd { turn_count, .. } => Some(*turn_count),
            _ => None,
        };
        let seq = on_blocking_pool(&self.host, move |host| host.commit_from_driver(entry)).await?;
        if let Some(turn) = turn {
            self.turn_count = turn;
        }
        Ok(seq)
    }

    /// Sends an ephemeral event (`TextDelta`, `ToolCallStart`, `RunStarted`)
    /// to connected clients, stamped with the last committed seq. Fails with
    /// `PodError::Closed` once the pod is shutting down, and with
    /// `PodError::Rejected` for an event that is not ephemeral.
    pub async fn stream(&mut self, event: Event) -> Result<(), PodError> {
        if !event.is_ephemeral() {
            return Err(PodError::Rejected {
                session: self.session_id(),
                kind: event.kind().to_owned(),
                reason: "only ephemeral events are streamed; commit entries instead".to_owned(),
            });
        }
        // Sending takes the pod mutex, which a commit holds while it waits
        // for the disk: never on a runtime worker.
        on_blocking_pool(&self.host, move |host| host.stream_from_driver(event)).await
    }

    /// Streams a piece of assistant text being generated.
    pub async fn text_delta(&mut self, text: &str) -> Result<(), PodError> {
        self.stream(Event::TextDelta {
            after: Seq::ZERO,
            text: text.to_owned(),
        })
        .await
    }

    /// Streams the start of a tool call.
    pub async fn tool_call_start(&mut self, call_id: &str, name: &str) -> Result<(), PodError> {
        self.stream(Event::ToolCallStart {
            after: Seq::ZERO,
            call_id: call_id.to_owned(),
            name: name.to_owned(),
        })
        .await
    }

    /// The session's conversation so far, this run's input and commits
    /// included, every payload whole. Read on the blocking pool: once the
    /// mirror holds lean entries (large strings as previews) it comes from
    /// the store. Fails with `PodError::Store` if the store cannot read it.
    pub async fn conversation(&self) -> Result<Conversation, PodError> {
        on_blocking_pool(&self.host, |host| host.conversation()).await
    }

    /// The session the run writes to.
    pub fn session_id(&self) -> SessionId {
        self.host.session_id()
    }

    /// The seq of the `UserInput` that started this run.
    pub fn input_seq(&self) -> Seq {
        self.input_seq
    }

    /// The `turn_count` of the last `TurnEnd` committed in this run (0
    /// before the first).
    pub fn turn_count(&self) -> u64 {
        self.turn_count
    }

    /// The store's clock, for entry timestamps.
    pub fn clock(&self) -> &dyn Clock {
        self.host.clock()
    }

    /// Milliseconds from the store's clock.
    pub fn now(&self) -> u64 {
        self.host.clock().now_millis()
    }

    /// Whether the pod is shutting down: the driver should return soon.
    pub fn is_stopping(&self) -> bool {
        self.host.is_stopping()
    }
}
