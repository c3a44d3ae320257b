//! The pod side of podlog: [`Pod`] runs one agent conversation on top of the
//! store and the sink, and streams it to clients as [`Event`](podlog_protocol::Event)s.
//!
//! A pod owns the store handle, the session it writes (holding that
//! session's cross-process write lock), the session's `SessionLogSink` (the
//! in-memory mirror), an event channel for its clients, and a run loop that
//! awaits the embedding application's [`AgentDriver`] (the model loop, an
//! async trait). The run loop is a task of the tokio runtime the pod was
//! created in, so pods cost no OS thread each; a pod created outside any
//! runtime runs its loop on a small runtime of its own thread.
//! [`ScriptedDriver`] plays a deterministic [`script::Script`] for the demo
//! and the tests.
//!
//! # Contract
//!
//! **Writes.** Every entry is committed the same way, under one pod mutex:
//! the store transaction, then the publish to the sink, then the entry's
//! [`Event`](podlog_protocol::Event) on the event channel. A failed store commit returns the error
//! and publishes nothing: no mirror change, no event (invariant 1, disk is
//! the gate). One process writes a session at a time: `Pod::create`,
//! `Pod::restore`, `compact` and `fork` take the session's write lock, and
//! `restore` fails with [`PodError::SessionLocked`] naming the live process
//! that holds it. A lock whose holder died is free again.
//!
//! **Notices and redaction.** After an append, still under the mutex, the
//! pod commits a `SystemItem` notice when it was the session's first
//! redaction (counts and kinds only) and when the session's stored size
//! passed a multiple of [`Pod::set_size_warning`]'s threshold. The store
//! redacts every entry before it is written; the pod redacts streamed
//! `TextDelta`s itself, holding back the word being written so a secret
//! split across deltas is seen whole (`podlog_redact::stream`).
//!
//! **What a subscriber gets.** [`Pod::subscribe`] returns an
//! `Event::Snapshot` (the current session's committed entries, seq 1 to
//! `end_seq`) and a receiver, taken under the pod mutex. The receiver then
//! yields, in commit order: one event per committed entry (seq `end_seq + 1`,
//! `+ 2`, ... with no gap and no duplicate), the ephemeral events of the
//! streaming lane (`TextDelta`, `ToolCallStart`, `RunStarted`) in the order
//! they were sent, each stamped with the last committed seq (`after`), and
//! `Event::SessionRotated` when the pod moves to a new session.
//! `podlog_protocol::LogView` applies these events and checks the seqs, so
//! a client ends up with exactly the log the store holds.
//!
//! **On rotation.** `compact` and `fork` run the store operation (a new
//! session row and its `SessionStart`, one transaction), take the new
//! session's lock and release the old one, reset the sink to the new
//! `SessionStart`, and send `SessionRotated { session_id, seq: 1, entry }`.
//! Committed events after it belong to the new session, from seq 2. Both
//! fail with [`PodError::Busy`] while a run is in progress, so a run never
//! spans two sessions.
//!
//! **On lag.** The channel holds [`pod::EVENT_CAPACITY`] events. A receiver
//! that falls further behind gets `RecvError::Lagged`; it calls
//! [`Pod::resume`] with its session and the last watermark it saw
//! (`Event::watermark`) and gets exactly the committed events it missed
//! (from the mirror) and a fresh receiver, split cleanly; or, if the pod has
//! moved to another session since, `SessionRotated` and a `Snapshot` of the
//! current session. Ephemeral events missed during a lag are not replayed:
//! the committed entries that follow carry their content. A client
//! reconnecting over the network (SSE `Last-Event-ID`) does the same.
//!
//! **Runs.** [`Pod::submit_input`] commits a `UserInput` and hands the run to
//! the run loop; it fails with [`PodError::Busy`] while a run,
//! compaction or fork is in progress. The pod closes every run it starts
//! with a committed `RunCompleted` or `RunErrored` (a driver error or panic
//! becomes kind provider, tool or internal), after giving any tool call of
//! the run left without a result an error `ToolResult`. A log that ends
//! inside a run (the process died) is closed the same way by
//! [`Pod::restore`], with kind `interrupted` and the message "the pod
//! stopped during this run", before anyone can subscribe.
//!
//! **On shutdown.** [`Pod::shutdown`] (or dropping the last clone) makes the
//! driver's next commit fail, so a run in progress stops after its in-flight
//! commit and is closed with `RunErrored` of kind `interrupted`; it waits
//! for the run loop to end, releases the write lock and closes the event
//! channel. Receivers get every event sent before, then `RecvError::Closed`.
//! Later writes fail with [`PodError::Closed`]; `subscribe` and `resume`
//! still answer with the final state and an already closed receiver.
//!
//! **Status without waiting.** [`Pod::status`] (session, end seq, busy,
//! closed, lock lost) and [`Pod::watch_status`] read a `watch` channel the pod updates
//! after each change, never the mutex a commit holds: an async task may
//! call them while a commit waits for the disk or for another connection's
//! lock. Every other method that writes or subscribes may wait for a
//! commit: call it from a blocking thread (`spawn_blocking`). Dropping the
//! last clone inside a tokio runtime does not wait for the run loop on the
//! worker: the rest of the shutdown finishes on a thread of its own.
//!
//! **No poisoning.** A panic in another thread while it held a pod lock does
//! not make the pod unusable: every critical section leaves the state
//! consistent, and a poisoned lock is taken over as it is.

pub mod driver;
pub mod error;
pub mod follow;
mod live;
pub mod pod;
pub mod script;
pub mod scripted;
pub mod takeover;

pub use async_trait::async_trait;
pub use driver::{AgentDriver, DriverError, RunContext};
pub use error::PodError;
pub use follow::{Follow, Followers};
pub use live::MIRROR_WINDOW;
pub use pod::{human_bytes, Pod, PodStatus, DEFAULT_SIZE_WARNING};
pub use scripted::ScriptedDriver;
pub use takeover::take_over;

#[cfg(test)]
mod tests;
