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
pub mod payload;

pub use config::{RequestConfig, ToolSpec};
pub use conversation::Conversation;
pub use display::iso8601;
pub use entry::{DecodeError, LogEntry, RunErrorKind, SystemItem, UnknownEntry, KNOWN_KINDS};
pub use ids::{
    now_millis, Clock, EntryRef, InvalidSessionId, Seq, SessionId, StepClock, SystemClock,
};
pub use message::{AssistantContent, Attachment, Message};
pub use payload::{PayloadHash, PayloadRef};

/// A committed entry with its position in the session.
///
/// Cheap to clone: the entry is behind an `Arc`, so the mirror, every
/// snapshot and every subscriber share one copy.
///
/// When `payloads` is `Some`, `entry` is *lean*: each string the references
/// name is only its preview, and the whole string is the payload named by
/// the reference (see [`payload`]). The store hands out lean entries to the
/// mirror and the wire, full ones to readers that ask for them.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub seq: Seq,
    pub entry: std::sync::Arc<LogEntry>,
    pub payloads: Option<std::sync::Arc<[PayloadRef]>>,
}

impl Committed {
    /// Wraps the full `entry` at `seq`.
    pub fn new(seq: Seq, entry: LogEntry) -> Self {
        Self {
            seq,
            entry: std::sync::Arc::new(entry),
            payloads: None,
        }
    }

    /// Wraps `entry` at `seq`, lean when `payloads` is not empty.
    pub fn with_payloads(seq: Seq, entry: LogEntry, payloads: Vec<PayloadRef>) -> Self {
        Self {
            seq,
            entry: std::sync::Arc::new(entry),
            payloads: (!payloads.is_empty()).then(|| payloads.into()),
        }
    }

    /// The references of a lean entry (empty for a full one).
    pub fn payload_refs(&self) -> &[PayloadRef] {
        self.payloads.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests;
