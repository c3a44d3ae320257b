//! Tests of the JSON form: a round trip of every kind, the snapshot that pins
//! the format, and the handling of unknown and malformed entries.

use serde_json::json;

use crate::*;

/// One entry of every kind this version knows, with every field set.
pub(crate) fn one_of_each() -> Vec<LogEntry> {
    let config = RequestConfig {
        model: "claude-sonnet".to_owned(),
        temperature: Some(0.5),
        max_output_tokens: Some(4096),
        tools: vec![ToolSpec {
            name: "read_file".to_owned(),
            description: "Read a file".to_owned(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
    };
    let sid = SessionId::new("s-parent").unwrap();
    vec![
        LogEntry::SessionStart {
            ts: 1_700_000_000_000,
            system_prompt: Some("You are terse.".to_owned()),
            config: config.clone(),
            history: vec![
                Message::System {
                    text: "Summary: the user asked for a file.".to_owned(),
                },
                Message::User {
                    text: "hi".to_owned(),
                    attachments: vec![],
                },
                Message::Assistant {
                    content: vec![AssistantContent::Text {
                        text: "hello".to_owned(),
                    }],
                },
                Message::Tool {
                    call_id: "c0".to_owned(),
                    output: "ok".to_owned(),
                    is_error: false,
                },
            ],
            forked_from: Some(EntryRef {
                session_id: sid.clone(),
                seq: Seq(7),
            }),
            compacted_from: None,
        },
        LogEntry::UserInput {
            ts: 1_700_000_000_001,
            text: "Read Cargo.toml".to_owned(),
            attachments: vec![Attachment {
                name: "shot.png".to_owned(),
                media_type: "image/png".to_owned(),
                uri: "file:///tmp/shot.png".to_owned(),
            }],
        },
        LogEntry::AssistantItem {
            ts: 1_700_000_000_002,
            item: AssistantContent::ToolCall {
                id: "c1".to_owned(),
                name: "read_file".to_owned(),
                arguments: json!({"path": "Cargo.toml"}),
            },
        },
        LogEntry::ToolResult {
            ts: 1_700_000_000_003,
            call_id: "c1".to_owned(),
            output: "[package]".to_owned(),
            is_error: false,
        },
        LogEntry::TurnEnd {
            ts: 1_700_000_000_004,
            turn_count: 1,
        },
        LogEntry::RunCompleted {
            ts: 1_700_000_000_005,
            turn_count: 2,
        },
        LogEntry::RunErrored {
            ts: 1_700_000_000_006,
            kind: RunErrorKind::Interrupted,
            message: "pod restarted during the run".to_owned(),
        },
        LogEntry::LlmUsage {
            ts: 1_700_000_000_007,
            model: "claude-sonnet".to_owned(),
            input_tokens: 1200,
            output_tokens: 80,
            cached_tokens: 1000,
        },
        LogEntry::SystemItem {
            ts: 1_700_000_000_008,
            item: SystemItem::Notification {
                message: "compacted".to_owned(),
                body: "[Notification] compacted".to_owned(),
            },
        },
        LogEntry::ConfigChanged {
            ts: 1_700_000_000_009,
            config: RequestConfig {
                temperature: None,
                ..config
            },
        },
        LogEntry::Extension {
            ts: 1_700_000_000_010,
            name: "ide.selection".to_owned(),
            data: json!({"file": "src/main.rs", "lines": [3, 9]}),
        },
    ]
}

#[test]
fn every_known_kind_is_covered_once() {
    let kinds: Vec<&str> = one_of_each()
        .iter()
        .map(|e| e.kind().to_owned())
        .map(|k| KNOWN_KINDS.iter().copied().find(|x| *x == k).unwrap())
        .collect();
    assert_eq!(kinds, KNOWN_KINDS);
}

#[test]
fn every_kind_round_trips_through_json() {
    for entry in one_of_each() {
        let text = entry.to_json();
        let back = LogEntry::from_json(&text).unwrap();
        assert_eq!(back, entry, "{text}");
        assert_eq!(back.to_json(), text);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], entry.kind());
        assert_eq!(value["ts"], entry.ts());
    }
}

#[test]
fn every_kind_json() {
    let lines: Vec<String> = one_of_each().iter().map(LogEntry::to_json).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn optional_fields_may_be_missing() {
    let entry = LogEntry::from_json(r#"{"type":"session_start","ts":5}"#).unwrap();
    assert_eq!(
        entry,
        LogEntry::SessionStart {
            ts: 5,
            system_prompt: None,
            config: RequestConfig::default(),
            history: vec![],
            forked_from: None,
            compacted_from: None,
        }
    );
}

#[test]
fn unknown_kind_is_kept_and_written_back_unchanged() {
    let text = r#"{"type":"plan_updated","ts":42,"steps":["a","b"],"nested":{"x":1.5}}"#;
    let entry = LogEntry::from_json(text).unwrap();
    assert_eq!(entry.kind(), "plan_updated");
    assert_eq!(entry.ts(), 42);
    assert!(matches!(entry, LogEntry::Unknown(_)));
    assert_eq!(entry.to_json(), text);
}

#[test]
fn unknown_inner_kinds_are_kept() {
    let text = r#"{"type":"system_item","ts":1,"item":{"kind":"banner","colour":"red"}}"#;
    let entry = LogEntry::from_json(text).unwrap();
    assert_eq!(entry.to_json(), text);
    let text = r#"{"type":"run_errored","ts":1,"kind":"quota","message":"out of credit"}"#;
    let entry = LogEntry::from_json(text).unwrap();
    assert!(matches!(
        &entry,
        LogEntry::RunErrored { kind: RunErrorKind::Other(k), .. } if k == "quota"
    ));
    assert_eq!(entry.to_json(), text);
}

fn decode_error(text: &str) -> String {
    match LogEntry::from_json(text) {
        Ok(entry) => format!("decoded as {entry:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_entries_are_errors_that_say_why() {
    let cases = [
        r#"{"type":"turn_end","ts":1}"#,
        r#"{"type":"turn_end","ts":1,"turn_count":"two"}"#,
        r#"{"ts":1}"#,
        r#"{"type":7,"ts":1}"#,
        r#"[1,2]"#,
        r#"{"type":"user_input","ts":1,"text":"unterminated"#,
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|c| format!("{c}\n  => {}", decode_error(c)))
        .collect();
    insta::assert_snapshot!(out.join("\n"));
}

#[test]
fn session_id_rejects_blank_and_spaced_ids() {
    assert!(SessionId::new("").is_err());
    assert!(SessionId::new("a b").is_err());
    assert!(SessionId::new("a\nb").is_err());
    assert!(SessionId::new("x".repeat(129)).is_err());
    assert_eq!(SessionId::new("s-1").unwrap().as_str(), "s-1");
}
