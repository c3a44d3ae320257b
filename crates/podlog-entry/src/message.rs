//! Conversation messages: what a `SessionStart` carries as `history`, and
//! what [`Conversation`](crate::Conversation) folds a run of entries into.
//! Plain data with a JSON form; the fold itself lives in `conversation.rs`.

use serde::{Deserialize, Serialize};

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
