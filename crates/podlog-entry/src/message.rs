//! Conversation messages: what a `SessionStart` carries as `history`, and
//! [`Conversation`], which folds a run of entries into those messages.
//!
//! The fold is the one definition of "the conversation up to here" that fork
//! and compaction share: user inputs become user messages, consecutive
//! assistant items become one assistant message, tool results become tool
//! messages, and every other kind (usage, turn ends, notifications, ...)
//! carries no conversation content and is left out.

use serde::{Deserialize, Serialize};

use crate::config::RequestConfig;
use crate::entry::LogEntry;

/// One message of a conversation, tagged by `"role"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions from the runtime (for example a compaction summary).
    System { text: String },
    /// What the user said.
    User {
        text: String,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// One answer of the model, in order.
    Assistant { content: Vec<AssistantContent> },
    /// The result of one tool call.
    Tool {
        call_id: String,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
}

/// One item of an assistant answer, tagged by `"kind"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssistantContent {
    /// Text shown to the user.
    Text { text: String },
    /// A call of tool `name` with JSON `arguments`, answered by the
    /// `ToolResult` whose `call_id` is `id`.
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
    },
    /// The model's reasoning, where the provider exposes it.
    Reasoning { text: String },
}

/// A file the user attached to an input, by reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The name shown to the user.
    pub name: String,
    /// The MIME type, for example `image/png`.
    pub media_type: String,
    /// Where the content lives (a `file:` path, a URL, or a `data:` URI).
    pub uri: String,
}

/// The conversation so far, folded entry by entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversation {
    /// The system prompt in force.
    pub system_prompt: Option<String>,
    /// The request configuration in force.
    pub config: RequestConfig,
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// Tool calls made and not yet answered, by call id, in call order.
    pub pending_calls: Vec<String>,
}

impl Conversation {
    /// Folds `entries`, which start with a `SessionStart`, into a
    /// conversation.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a LogEntry>) -> Self {
        let mut conversation = Conversation::default();
        for entry in entries {
            conversation.push(entry);
        }
        conversation
    }

    /// Adds one entry to the fold.
    pub fn push(&mut self, entry: &LogEntry) {
        match entry {
            LogEntry::SessionStart {
                system_prompt,
                config,
                history,
                ..
            } => {
                *self = Conversation {
                    system_prompt: system_prompt.clone(),
                    config: config.clone(),
                    messages: history.clone(),
                    pending_calls: Vec::new(),
                };
                for message in history {
                    self.track_calls(message);
                }
            }
            LogEntry::UserInput {
                text, attachments, ..
            } => self.messages.push(Message::User {
                text: text.clone(),
                attachments: attachments.clone(),
            }),
            LogEntry::AssistantItem { item, .. } => {
                if let AssistantContent::ToolCall { id, .. } = item {
                    self.pending_calls.push(id.clone());
                }
                match self.messages.last_mut() {
                    Some(Message::Assistant { content }) => content.push(item.clone()),
                    _ => self.messages.push(Message::Assistant {
                        content: vec![item.clone()],
                    }),
                }
            }
            LogEntry::ToolResult {
                call_id,
                output,
                is_error,
                ..
            } => {
                self.pending_calls.retain(|id| id != call_id);
                self.messages.push(Message::Tool {
                    call_id: call_id.clone(),
                    output: output.clone(),
                    is_error: *is_error,
                });
            }
            LogEntry::ConfigChanged { config, .. } => self.config = config.clone(),
            LogEntry::TurnEnd { .. }
            | LogEntry::RunCompleted { .. }
            | LogEntry::RunErrored { .. }
            | LogEntry::LlmUsage { .. }
            | LogEntry::SystemItem { .. }
            | LogEntry::Extension { .. }
            | LogEntry::Unknown(_) => {}
        }
    }

    fn track_calls(&mut self, message: &Message) {
        match message {
            Message::Assistant { content } => {
                for item in content {
                    if let AssistantContent::ToolCall { id, .. } = item {
                        self.pending_calls.push(id.clone());
                    }
                }
            }
            Message::Tool { call_id, .. } => self.pending_calls.retain(|id| id != call_id),
            Message::System { .. } | Message::User { .. } => {}
        }
    }
}
