//! The podlog entry model: [`LogEntry`] and its payload types, the
//! [`SessionId`] and [`Seq`] that place an entry in the log, and the stable
//! JSON form every other crate stores and sends.
//!
//! This crate does no I/O. Everything here is plain data with a documented
//! JSON form (see [`entry`]); the snapshot tests in this crate pin that form.

pub mod config;
pub mod conversation;
pub mod display;
pub mod entry;
pub mod ids;
pub mod message;

pub use config::{RequestConfig, ToolSpec};
pub use conversation::Conversation;
pub use display::iso8601;
pub use entry::{DecodeError, LogEntry, RunErrorKind, SystemItem, UnknownEntry, KNOWN_KINDS};
pub use ids::{
    now_millis, Clock, EntryRef, InvalidSessionId, Seq, SessionId, StepClock, SystemClock,
};
pub use message::{AssistantContent, Attachment, Message};

/// A committed entry with its position in the session.
///
/// Cheap to clone: the entry is behind an `Arc`, so the mirror, every
/// snapshot and every subscriber share one copy.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub seq: Seq,
    pub entry: std::sync::Arc<LogEntry>,
}

impl Committed {
    /// Wraps `entry` at `seq`.
    pub fn new(seq: Seq, entry: LogEntry) -> Self {
        Self {
            seq,
            entry: std::sync::Arc::new(entry),
        }
    }
}

#[cfg(test)]
mod tests;
