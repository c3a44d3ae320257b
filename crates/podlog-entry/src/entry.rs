//! [`LogEntry`]: one step of an agent conversation, and its JSON form.
//!
//! # JSON form (stable)
//!
//! Every entry is one JSON object whose `"type"` names its kind in
//! snake_case and whose `"ts"` is milliseconds since the Unix epoch. The other
//! fields are those of the variant, always written (an absent optional is
//! `null`, an empty list `[]`); when read, optional fields and lists may be
//! missing. The snapshot `snapshots/*__every_kind_json.snap` in this crate is
//! the contract: a change to it is a format change.
//!
//! | `type` | fields |
//! |---|---|
//! | `session_start` | `system_prompt`, `config`, `history`, `forked_from`, `compacted_from` |
//! | `user_input` | `text`, `attachments` |
//! | `assistant_item` | `item`: `{"kind":"text","text"}`, `{"kind":"tool_call","id","name","arguments"}` or `{"kind":"reasoning","text"}` |
//! | `tool_result` | `call_id`, `output`, `is_error` |
//! | `turn_end` | `turn_count` |
//! | `run_completed` | `turn_count` |
//! | `run_errored` | `kind` (`interrupted`, `provider`, `tool`, `internal` or any other text), `message` |
//! | `llm_usage` | `model`, `input_tokens`, `output_tokens`, `cached_tokens` |
//! | `system_item` | `item`: `{"kind":"notification","message","body"}` or a kind of a newer version |
//! | `config_changed` | `config` |
//! | `extension` | `name`, `data` (any JSON) |
//!
//! # Entries from newer versions
//!
//! An object whose `"type"` this version does not know decodes to
//! [`LogEntry::Unknown`], which keeps the whole object and writes it back
//! unchanged. A known `"type"` with a malformed body is an error, never an
//! `Unknown`: podlog does not silently reinterpret data it should understand.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::RequestConfig;
use crate::ids::EntryRef;
use crate::message::{AssistantContent, Attachment, Message};

/// One committed step of a session. See the module docs for the JSON form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case")]
pub enum LogEntry {
    /// The first entry of every session (seq 1), and only there.
    SessionStart {
        ts: u64,
        #[serde(default)]
        system_prompt: Option<String>,
        #[serde(default)]
        config: RequestConfig,
        /// The conversation the session starts with: empty for a new
        /// session, the summary after a compaction, the parent's
        /// conversation up to the cut after a fork.
        #[serde(default)]
        history: Vec<Message>,
        #[serde(default)]
        forked_from: Option<EntryRef>,
        #[serde(default)]
        compacted_from: Option<EntryRef>,
    },
    /// What the user typed, with any files they attached.
    UserInput {
        ts: u64,
        text: String,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// One item of the model's answer: text, a tool call or reasoning.
    AssistantItem { ts: u64, item: AssistantContent },
    /// The outcome of a tool call, matched to it by `call_id`.
    ToolResult {
        ts: u64,
        call_id: String,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
    /// One model round trip finished; `turn_count` counts them within the run.
    TurnEnd { ts: u64, turn_count: u64 },
    /// The run started by the last user input finished normally.
    RunCompleted { ts: u64, turn_count: u64 },
    /// The run started by the last user input ended with an error.
    RunErrored {
        ts: u64,
        kind: RunErrorKind,
        message: String,
    },
    /// Tokens one model call used.
    LlmUsage {
        ts: u64,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        #[serde(default)]
        cached_tokens: u64,
    },
    /// A message from the runtime to the user, outside the conversation.
    SystemItem { ts: u64, item: SystemItem },
    /// The request configuration in force from here on.
    ConfigChanged { ts: u64, config: RequestConfig },
    /// Data of an embedding application's own, kept in order with the rest.
    Extension {
        ts: u64,
        name: String,
        data: serde_json::Value,
    },
    /// An entry of a kind this version does not know, kept as it was.
    #[serde(skip)]
    Unknown(UnknownEntry),
}

/// An entry of a kind written by a newer version: the whole JSON object,
/// passed through unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownEntry {
    kind: String,
    ts: u64,
    object: serde_json::Map<String, serde_json::Value>,
}

impl UnknownEntry {
    /// The `"type"` the newer version gave it.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The JSON object, as read.
    pub fn object(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.object
    }
}

/// Why a run ended with an error. Kinds this version does not know are kept
/// as their text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunErrorKind {
    /// The run was cut short: the pod stopped, or the user cancelled.
    Interrupted,
    /// The model provider failed (network, rate limit, bad response).
    Provider,
    /// A tool failed in a way the run could not recover from.
    Tool,
    /// A bug or resource failure inside the runtime.
    Internal,
    #[serde(untagged)]
    Other(String),
}

/// A runtime message shown to the user. Kinds of a newer version are kept as
/// their JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemItem {
    /// A short `message` for a status line and a `body` for the transcript.
    Notification { message: String, body: String },
    #[serde(untagged)]
    Other(serde_json::Map<String, serde_json::Value>),
}

/// The `"type"` of every kind this version knows, in declaration order.
pub const KNOWN_KINDS: [&str; 11] = [
    "session_start",
    "user_input",
    "assistant_item",
    "tool_result",
    "turn_end",
    "run_completed",
    "run_errored",
    "llm_usage",
    "system_item",
    "config_changed",
    "extension",
];

impl LogEntry {
    /// The `"type"` of this entry, as written in its JSON and in the
    /// `entries.kind` column.
    pub fn kind(&self) -> &str {
        match self {
            LogEntry::SessionStart { .. } => "session_start",
            LogEntry::UserInput { .. } => "user_input",
            LogEntry::AssistantItem { .. } => "assistant_item",
            LogEntry::ToolResult { .. } => "tool_result",
            LogEntry::TurnEnd { .. } => "turn_end",
            LogEntry::RunCompleted { .. } => "run_completed",
            LogEntry::RunErrored { .. } => "run_errored",
            LogEntry::LlmUsage { .. } => "llm_usage",
            LogEntry::SystemItem { .. } => "system_item",
            LogEntry::ConfigChanged { .. } => "config_changed",
            LogEntry::Extension { .. } => "extension",
            LogEntry::Unknown(u) => &u.kind,
        }
    }

    /// Milliseconds since the Unix epoch when the entry was made (0 for an
    /// unknown kind without a numeric `"ts"`).
    pub fn ts(&self) -> u64 {
        match self {
            LogEntry::SessionStart { ts, .. }
            | LogEntry::UserInput { ts, .. }
            | LogEntry::AssistantItem { ts, .. }
            | LogEntry::ToolResult { ts, .. }
            | LogEntry::TurnEnd { ts, .. }
            | LogEntry::RunCompleted { ts, .. }
            | LogEntry::RunErrored { ts, .. }
            | LogEntry::LlmUsage { ts, .. }
            | LogEntry::SystemItem { ts, .. }
            | LogEntry::ConfigChanged { ts, .. }
            | LogEntry::Extension { ts, .. } => *ts,
            LogEntry::Unknown(u) => u.ts,
        }
    }

    /// Sets the timestamp of an entry of a known kind; an entry of an
    /// unknown kind is kept exactly as it was written.
    pub fn set_ts(&mut self, now: u64) {
        match self {
            LogEntry::SessionStart { ts, .. }
            | LogEntry::UserInput { ts, .. }
            | LogEntry::AssistantItem { ts, .. }
            | LogEntry::ToolResult { ts, .. }
            | LogEntry::TurnEnd { ts, .. }
            | LogEntry::RunCompleted { ts, .. }
            | LogEntry::RunErrored { ts, .. }
            | LogEntry::LlmUsage { ts, .. }
            | LogEntry::SystemItem { ts, .. }
            | LogEntry::ConfigChanged { ts, .. }
            | LogEntry::Extension { ts, .. } => *ts = now,
            LogEntry::Unknown(_) => {}
        }
    }

    /// Whether this is a `SessionStart`.
    pub fn is_session_start(&self) -> bool {
        matches!(self, LogEntry::SessionStart { .. })
    }

    /// Whether this entry ends a run (`RunCompleted` or `RunErrored`).
    pub fn ends_run(&self) -> bool {
        matches!(
            self,
            LogEntry::RunCompleted { .. } | LogEntry::RunErrored { .. }
        )
    }

    /// The JSON text of this entry.
    pub fn to_json(&self) -> String {
        // Cannot fail: every map key is a string, and serde_json writes a
        // non-finite float as `null` instead of failing.
        serde_json::to_string(self).expect("a LogEntry always serialises to JSON")
    }

    /// Decodes one entry from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))
    }
}

/// A JSON text that is not a valid entry: the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl Serialize for LogEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            LogEntry::Unknown(u) => u.object.serialize(serializer),
            known => LogEntry::serialize(known, serializer),
        }
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let kind = match object.get("type") {
            Some(serde_json::Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "entry \"type\" must be a string, found {other}"
                )))
            }
            None => return Err(D::Error::custom("entry has no \"type\" field")),
        };
        if KNOWN_KINDS.contains(&kind.as_str()) {
            LogEntry::deserialize(serde_json::Value::Object(object))
                .map_err(|e| D::Error::custom(format!("malformed {kind} entry: {e}")))
        } else {
            let ts = object
                .get("ts")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            Ok(LogEntry::Unknown(UnknownEntry { kind, ts, object }))
        }
    }
}
