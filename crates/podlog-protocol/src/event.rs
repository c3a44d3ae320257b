//! The wire protocol: [`Event`], what a pod sends to its clients.
//!
//! # JSON form
//!
//! Every event is one JSON object whose `"type"` names the variant in
//! snake_case (`snapshot`, `session_rotated`, `user_message`, `text_delta`,
//! ...); the other fields are the variant's. Entries inside events
//! (`Snapshot.entries[].entry`, `SessionRotated.entry`, `Entry.entry`) use
//! the entry's own JSON form (see `podlog_entry::entry`).
//!
//! # Three families
//!
//! * **The start of a view**: [`Event::Snapshot`] (every committed entry of
//!   the session up to `end_seq`) and [`Event::SessionRotated`] (the pod
//!   moved to a new session after a compaction or fork; what follows is that
//!   session's, from seq 2).
//! * **Committed entries**: one event per committed entry, each with the
//!   entry's `seq` and `ts`. Common kinds have a typed event (`UserMessage`,
//!   `AssistantItem`, `ToolResult`, `TurnEnd`, `RunCompleted`, `RunErrored`,
//!   `Usage`, `SystemItem`); every other kind (config changes, extensions,
//!   kinds of a newer version) comes as [`Event::Entry`] with the whole
//!   entry. [`Event::to_committed`] turns any of them back into the exact
//!   entry the store holds.
//! * **Ephemeral events** (`TextDelta`, `ToolCallStart`, `RunStarted`): the
//!   streaming lane, never stored. Each carries `after`, the last committed
//!   seq when it was sent; a client that reconnects gets committed entries
//!   again but never past ephemeral events.
//!
//! [`Event::watermark`] gives the seq a client has seen once it has the
//! event: with the session it views, the [`crate::EventId`] to resume from.

use std::sync::Arc;

use podlog_entry::{
    AssistantContent, Attachment, Committed, LogEntry, PayloadRef, RunErrorKind, Seq, SessionId,
};
use serde::{Deserialize, Serialize};

/// One committed entry inside a [`Event::Snapshot`]. The entry is shared
/// with the pod's mirror; it serialises as the entry's own JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    pub seq: Seq,
    pub entry: Arc<LogEntry>,
    /// Present when `entry` is lean: where its large strings were cut, and
    /// the payloads that hold them whole (fetched from `GET /blobs/{hash}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Arc<[PayloadRef]>>,
}

impl From<&Committed> for WireEntry {
    fn from(c: &Committed) -> Self {
        WireEntry {
            seq: c.seq,
            entry: c.entry.clone(),
            payloads: c.payloads.clone(),
        }
    }
}

impl From<&WireEntry> for Committed {
    fn from(w: &WireEntry) -> Self {
        Committed {
            seq: w.seq,
            entry: w.entry.clone(),
            payloads: w.payloads.clone(),
        }
    }
}

/// What a pod sends to a client. See the module docs for the JSON form and
/// the three families of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The session's committed entries from seq 1 to `end_seq`: the first
    /// event a subscriber gets.
    Snapshot {
        session_id: SessionId,
        entries: Vec<WireEntry>,
        end_seq: Seq,
    },
    /// The pod now writes `session_id`, whose `SessionStart` is `entry` (at
    /// seq 1). A client drops its view of the old session and starts the new
    /// one with this entry.
    SessionRotated {
        session_id: SessionId,
        seq: Seq,
        entry: LogEntry,
        /// Present when `entry` is lean (see [`WireEntry::payloads`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payloads: Option<Arc<[PayloadRef]>>,
    },
    /// A committed `UserInput`.
    UserMessage {
        seq: Seq,
        ts: u64,
        text: String,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// A committed `AssistantItem`: text, a tool call or reasoning.
    AssistantItem {
        seq: Seq,
        ts: u64,
        item: AssistantContent,
    },
    /// A committed `ToolResult`.
    ToolResult {
        seq: Seq,
        ts: u64,
        call_id: String,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
    /// A committed `TurnEnd`.
    TurnEnd { seq: Seq, ts: u64, turn_count: u64 },
    /// A committed `RunCompleted`.
    RunCompleted { seq: Seq, ts: u64, turn_count: u64 },
    /// A committed `RunErrored`.
    RunErrored {
        seq: Seq,
        ts: u64,
        kind: RunErrorKind,
        message: String,
    },
    /// A committed `LlmUsage`.
    Usage {
        seq: Seq,
        ts: u64,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        #[serde(default)]
        cached_tokens: u64,
    },
    /// A committed `SystemItem`.
    SystemItem {
        seq: Seq,
        ts: u64,
        item: podlog_entry::SystemItem,
    },
    /// Any other committed entry (`config_changed`, `extension`, a
    /// `session_start` outside a rotation, kinds of a newer version), and
    /// every lean entry, whatever its kind: one whose large strings are
    /// previews, with the `payloads` that hold them whole.
    Entry {
        seq: Seq,
        entry: LogEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payloads: Option<Arc<[PayloadRef]>>,
    },
    /// A piece of assistant text being generated; the committed
    /// `AssistantItem` that follows carries the whole text.
    TextDelta { after: Seq, text: String },
    /// The model started a tool call; the committed `AssistantItem` with the
    /// call follows.
    ToolCallStart {
        after: Seq,
        call_id: String,
        name: String,
    },
    /// The driver started working on the user input committed at `after`.
    RunStarted { after: Seq },
}

impl Event {
    /// The event of a committed entry: a typed event for the common kinds,
    /// [`Event::Entry`] for the rest and for every lean entry.
    pub fn from_committed(c: &Committed) -> Event {
        let seq = c.seq;
        if c.payloads.is_some() {
            return Event::Entry {
                seq,
                entry: (*c.entry).clone(),
                payloads: c.payloads.clone(),
            };
        }
        match &*c.entry {
            LogEntry::UserInput {
                ts,
                text,
                attachments,
            } => Event::UserMessage {
                seq,
                ts: *ts,
                text: text.clone(),
                attachments: attachments.clone(),
            },
            LogEntry::AssistantItem { ts, item } => Event::AssistantItem {
                seq,
                ts: *ts,
                item: item.clone(),
            },
            LogEntry::ToolResult {
                ts,
                call_id,
                output,
                is_error,
            } => Event::ToolResult {
                seq,
                ts: *ts,
                call_id: call_id.clone(),
                output: output.clone(),
                is_error: *is_error,
            },
            LogEntry::TurnEnd { ts, turn_count } => Event::TurnEnd {
                seq,
                ts: *ts,
                turn_count: *turn_count,
            },
            LogEntry::RunCompleted { ts, turn_count } => Event::RunCompleted {
                seq,
                ts: *ts,
                turn_count: *turn_count,
            },
            LogEntry::RunErrored { ts, kind, message } => Event::RunErrored {
                seq,
                ts: *ts,
                kind: kind.clone(),
                message: message.clone(),
            },
            LogEntry::LlmUsage {
                ts,
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
            } => Event::Usage {
                seq,
                ts: *ts,
                model: model.clone(),
                input_tokens: *input_tokens,
                output_tokens: *output_tokens,
                cached_tokens: *cached_tokens,
            },
            LogEntry::SystemItem { ts, item } => Event::SystemItem {
                seq,
                ts: *ts,
                item: item.clone(),
            },
            other @ (LogEntry::SessionStart { .. }
            | LogEntry::ConfigChanged { .. }
            | LogEntry::Extension { .. }
            | LogEntry::Unknown(_)) => Event::Entry {
                seq,
                entry: other.clone(),
                payloads: None,
            },
        }
    }

    /// The committed entry this event carries, exactly as the store holds
    /// it; `None` for `Snapshot`, `SessionRotated` and ephemeral events.
    pub fn to_committed(&self) -> Option<Committed> {
        let (seq, entry) = match self {
            Event::UserMessage {
                seq,
                ts,
                text,
                attachments,
            } => (
                *seq,
                LogEntry::UserInput {
                    ts: *ts,
                    text: text.clone(),
                    attachments: attachments.clone(),
                },
            ),
            Event::AssistantItem { seq, ts, item } => (
                *seq,
                LogEntry::AssistantItem {
                    ts: *ts,
                    item: item.clone(),
                },
            ),
            Event::ToolResult {
                seq,
                ts,
                call_id,
                output,
                is_error,
            } => (
                *seq,
                LogEntry::ToolResult {
                    ts: *ts,
                    call_id: call_id.clone(),
                    output: output.clone(),
                    is_error: *is_error,
                },
            ),
            Event::TurnEnd {
                seq,
                ts,
                turn_count,
            } => (
                *seq,
                LogEntry::TurnEnd {
                    ts: *ts,
                    turn_count: *turn_count,
                },
            ),
            Event::RunCompleted {
                seq,
                ts,
                turn_count,
            } => (
                *seq,
                LogEntry::RunCompleted {
                    ts: *ts,
                    turn_count: *turn_count,
                },
            ),
            Event::RunErrored {
                seq,
                ts,
                kind,
                message,
            } => (
                *seq,
                LogEntry::RunErrored {
                    ts: *ts,
                    kind: kind.clone(),
                    message: message.clone(),
                },
            ),
            Event::Usage {
                seq,
                ts,
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
            } => (
                *seq,
                LogEntry::LlmUsage {
                    ts: *ts,
                    model: model.clone(),
                    input_tokens: *input_tokens,
                    output_tokens: *output_tokens,
                    cached_tokens: *cached_tokens,
                },
            ),
            Event::SystemItem { seq, ts, item } => (
                *seq,
                LogEntry::SystemItem {
                    ts: *ts,
                    item: item.clone(),
                },
            ),
            Event::Entry {
                seq,
                entry,
                payloads,
            } => {
                return Some(Committed {
                    seq: *seq,
                    entry: Arc::new(entry.clone()),
                    payloads: payloads.clone(),
                })
            }
            Event::Snapshot { .. }
            | Event::SessionRotated { .. }
            | Event::TextDelta { .. }
            | Event::ToolCallStart { .. }
            | Event::RunStarted { .. } => return None,
        };
        Some(Committed::new(seq, entry))
    }

    /// The last committed seq a client has seen once it has this event:
    /// `seq` for committed events (1 for `SessionRotated`), `after` for
    /// ephemeral ones, `end_seq` for a `Snapshot`.
    pub fn watermark(&self) -> Seq {
        match self {
            Event::Snapshot { end_seq, .. } => *end_seq,
            Event::SessionRotated { seq, .. }
            | Event::UserMessage { seq, .. }
            | Event::AssistantItem { seq, .. }
            | Event::ToolResult { seq, .. }
            | Event::TurnEnd { seq, .. }
            | Event::RunCompleted { seq, .. }
            | Event::RunErrored { seq, .. }
            | Event::Usage { seq, .. }
            | Event::SystemItem { seq, .. }
            | Event::Entry { seq, .. } => *seq,
            Event::TextDelta { after, .. }
            | Event::ToolCallStart { after, .. }
            | Event::RunStarted { after } => *after,
        }
    }

    /// Whether this event carries one committed entry (and so a new seq).
    /// `Snapshot` and `SessionRotated` start a view and are not counted here.
    pub fn is_committed(&self) -> bool {
        !matches!(
            self,
            Event::Snapshot { .. }
                | Event::SessionRotated { .. }
                | Event::TextDelta { .. }
                | Event::ToolCallStart { .. }
                | Event::RunStarted { .. }
        )
    }

    /// Whether this event is on the streaming lane (never stored).
    pub fn is_ephemeral(&self) -> bool {
        matches!(
            self,
            Event::TextDelta { .. } | Event::ToolCallStart { .. } | Event::RunStarted { .. }
        )
    }

    /// The `"type"` of this event in its JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Snapshot { .. } => "snapshot",
            Event::SessionRotated { .. } => "session_rotated",
            Event::UserMessage { .. } => "user_message",
            Event::AssistantItem { .. } => "assistant_item",
            Event::ToolResult { .. } => "tool_result",
            Event::TurnEnd { .. } => "turn_end",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunErrored { .. } => "run_errored",
            Event::Usage { .. } => "usage",
            Event::SystemItem { .. } => "system_item",
            Event::Entry { .. } => "entry",
            Event::TextDelta { .. } => "text_delta",
            Event::ToolCallStart { .. } => "tool_call_start",
            Event::RunStarted { .. } => "run_started",
        }
    }

    /// Sets the watermark of an ephemeral event to `seq` (the pod does, as
    /// it sends the event); other events are left as they are.
    pub fn stamp(&mut self, seq: Seq) {
        match self {
            Event::TextDelta { after, .. }
            | Event::ToolCallStart { after, .. }
            | Event::RunStarted { after } => *after = seq,
            _ => {}
        }
    }
}
