//! podlog's wire protocol, for servers and clients alike: what a pod sends
//! ([`Event`]), how a client names a position in it ([`EventId`]), how events
//! are framed as Server-Sent Events and parsed back ([`sse`]), and one fold
//! of events into the log a client holds ([`LogView`]).
//!
//! This crate does no I/O of its own and links neither the store nor SQLite:
//! a Rust client of a podlog server depends on it alone. With the `client`
//! feature it also provides [`client`], an HTTP + SSE client over TCP or a
//! Unix socket (the one `podlog tail` uses).
//!
//! # The contract a client can check
//!
//! A client that applies, in order, the events of a stream (a `Snapshot`
//! first, or the events after the position it resumed from) to a
//! [`LogView`] holds exactly the committed log of the pod's session: every
//! committed event carries the next seq, and [`LogView::apply`] refuses a
//! gap, a duplicate, or a snapshot that takes back what the view already
//! holds. The full wire format is in `docs/protocol.md`.

#[cfg(feature = "client")]
pub mod client;
pub mod event;
pub mod id;
pub mod shared;
pub mod sse;
pub mod view;

pub use event::{Event, WireEntry};
pub use id::EventId;
pub use shared::SharedEvent;
pub use view::{LogView, ViewError};
