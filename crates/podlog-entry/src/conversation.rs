//! [`Conversation`]: folds a run of entries into the conversation they
//! hold, and makes a summary of it without a model.
//!
//! The fold is the one definition of "the conversation up to here" that fork
//! and compaction share: user inputs become user messages, consecutive
//! assistant items become one assistant message, tool results become tool
//! messages, and every other kind (usage, turn ends, notifications, ...)
//! carries no conversation content and is left out.

use crate::config::RequestConfig;
use crate::entry::LogEntry;
use crate::message::{AssistantContent, Message};

/// How many characters of each user request a mechanical summary keeps.
pub const SUMMARY_REQUEST_CHARS: usize = 200;

/// How many characters of each earlier summary a mechanical summary carries.
pub const SUMMARY_CARRIED_CHARS: usize = 2000;

/// `text` cut to `max` characters, with `…` marking a cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
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

    /// A summary made without a model, for compacting a conversation when no
    /// summary is given: one system message listing every user request in
    /// order (each cut to [`SUMMARY_REQUEST_CHARS`] characters), how many tool
    /// calls were made, and the last assistant text in full. Summaries the
    /// conversation started from (an earlier compaction) are carried over,
    /// each cut to [`SUMMARY_CARRIED_CHARS`] characters, so a chain of
    /// compactions keeps its oldest requests without growing without bound.
    /// Deterministic: the same conversation always gives the same text.
    pub fn mechanical_summary(&self) -> Message {
        let mut requests = Vec::new();
        let mut earlier = Vec::new();
        let mut calls = 0usize;
        let mut last_answer = None;
        for message in &self.messages {
            match message {
                Message::User { text, .. } => requests.push(text.as_str()),
                Message::System { text } => earlier.push(text.as_str()),
                Message::Assistant { content } => {
                    let texts: Vec<&str> = content
                        .iter()
                        .filter_map(|c| match c {
                            AssistantContent::Text { text } => Some(text.as_str()),
                            AssistantContent::ToolCall { .. }
                            | AssistantContent::Reasoning { .. } => None,
                        })
                        .collect();
                    calls += content
                        .iter()
                        .filter(|c| matches!(c, AssistantContent::ToolCall { .. }))
                        .count();
                    if !texts.is_empty() {
                        last_answer = Some(texts.join("\n"));
                    }
                }
                Message::Tool { .. } => {}
            }
        }
        let mut text = String::from(
            "Summary of the conversation so far (made mechanically: the user's requests and \
             the last answer).\n",
        );
        for summary in earlier {
            text.push_str("\nEarlier summary:\n");
            text.push_str(&cut(summary, SUMMARY_CARRIED_CHARS));
            text.push('\n');
        }
        if requests.is_empty() {
            text.push_str("\nThe user has made no request yet.\n");
        } else {
            text.push_str("\nUser requests, in order:\n");
            for (n, request) in requests.iter().enumerate() {
                let one_line = request.split_whitespace().collect::<Vec<_>>().join(" ");
                text.push_str(&format!(
                    "{}. {}\n",
                    n + 1,
                    cut(&one_line, SUMMARY_REQUEST_CHARS)
                ));
            }
        }
        if calls > 0 {
            text.push_str(&format!("\nTool calls made: {calls}.\n"));
        }
        if let Some(answer) = last_answer {
            text.push_str("\nLast assistant answer:\n");
            text.push_str(&answer);
            text.push('\n');
        }
        Message::System { text }
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

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
