//! Tests of the conversation fold: which entries become which messages, the
//! tool calls left open at a cut, and the mechanical summary's text.

use serde_json::json;

use crate::tests::one_of_each;
use crate::*;

#[test]
fn conversation_folds_entries_into_messages() {
    let entries = one_of_each();
    let conversation = Conversation::from_entries(&entries);
    assert_eq!(
        conversation.system_prompt.as_deref(),
        Some("You are terse.")
    );
    assert_eq!(
        conversation.config.temperature, None,
        "ConfigChanged applies"
    );
    assert!(conversation.pending_calls.is_empty());
    // 4 history messages + user input + assistant tool call + tool result.
    assert_eq!(conversation.messages.len(), 7);
    let open = Conversation::from_entries(&entries[..3]);
    assert_eq!(open.pending_calls, vec!["c1".to_owned()]);
}

#[test]
fn consecutive_assistant_items_form_one_message() {
    let entries = vec![
        LogEntry::SessionStart {
            ts: 0,
            system_prompt: None,
            config: RequestConfig::default(),
            history: vec![],
            forked_from: None,
            compacted_from: None,
        },
        LogEntry::AssistantItem {
            ts: 1,
            item: AssistantContent::Reasoning {
                text: "think".into(),
            },
        },
        LogEntry::AssistantItem {
            ts: 2,
            item: AssistantContent::Text {
                text: "answer".into(),
            },
        },
        LogEntry::TurnEnd {
            ts: 3,
            turn_count: 1,
        },
        LogEntry::AssistantItem {
            ts: 4,
            item: AssistantContent::Text {
                text: "more".into(),
            },
        },
    ];
    let conversation = Conversation::from_entries(&entries);
    assert_eq!(conversation.messages.len(), 1);
    match &conversation.messages[0] {
        Message::Assistant { content } => assert_eq!(content.len(), 3),
        other => panic!("expected one assistant message, got {other:?}"),
    }
}

#[test]
fn a_mechanical_summary_lists_requests_calls_and_the_last_answer() {
    let summary =
        |entries: &[LogEntry]| match Conversation::from_entries(entries).mechanical_summary() {
            Message::System { text } => text,
            other => panic!("a system message, got {other:?}"),
        };
    let start = |history: Vec<Message>| LogEntry::SessionStart {
        ts: 0,
        system_prompt: None,
        config: RequestConfig::default(),
        history,
        forked_from: None,
        compacted_from: None,
    };
    assert_eq!(
        summary(&[start(vec![])]),
        "Summary of the conversation so far (made mechanically: the user's requests and the \
         last answer).\n\nThe user has made no request yet.\n"
    );
    let long = "x".repeat(250);
    let entries = vec![
        start(vec![Message::System {
            text: "Earlier: asked for tests.".into(),
        }]),
        LogEntry::UserInput {
            ts: 1,
            text: "Read the\n  README".into(),
            attachments: vec![],
        },
        LogEntry::AssistantItem {
            ts: 2,
            item: AssistantContent::Text {
                text: "Reading it.".into(),
            },
        },
        LogEntry::AssistantItem {
            ts: 3,
            item: AssistantContent::ToolCall {
                id: "c1".into(),
                name: "read".into(),
                arguments: json!({}),
            },
        },
        LogEntry::ToolResult {
            ts: 4,
            call_id: "c1".into(),
            output: "# podlog".into(),
            is_error: false,
        },
        LogEntry::UserInput {
            ts: 5,
            text: long.clone(),
            attachments: vec![],
        },
        LogEntry::AssistantItem {
            ts: 6,
            item: AssistantContent::Reasoning {
                text: "hidden".into(),
            },
        },
        LogEntry::AssistantItem {
            ts: 7,
            item: AssistantContent::Text {
                text: "It is a session log.".into(),
            },
        },
    ];
    assert_eq!(
        summary(&entries),
        format!(
            "Summary of the conversation so far (made mechanically: the user's requests and \
             the last answer).\n\nEarlier summary:\nEarlier: asked for tests.\n\n\
             User requests, in order:\n1. Read the README\n2. {}…\n\nTool calls made: 1.\n\n\
             Last assistant answer:\nIt is a session log.\n",
            &long[..200]
        )
    );
}
