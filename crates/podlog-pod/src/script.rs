//! A deterministic scripted agent conversation.
//!
//! A [`Script`] is a list of runs: a user input and what the "model" does in
//! answer (reasoning, text, tool calls with their results). [`Script::run`]
//! turns one run into the log entries a real agent loop would commit, in the
//! order it would commit them: the user input; per model turn its assistant
//! items, its usage and a `TurnEnd`, with tool results after the calls; and a
//! closing `RunCompleted`. Timestamps come from the injected clock, so a
//! script always yields the same entries for the same clock.

use podlog_entry::{AssistantContent, Clock, LogEntry, SystemItem};
use serde_json::{json, Value};

/// One thing the scripted model does within a turn.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Reasoning text.
    Think(String),
    /// Text for the user.
    Say(String),
    /// A tool call and the result the tool gives; ends the model turn.
    Call {
        name: String,
        arguments: Value,
        output: String,
        is_error: bool,
    },
    /// A notification from the runtime.
    Notify(String),
}

/// One user input and the scripted answer to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedRun {
    pub user: String,
    pub steps: Vec<Step>,
}

/// A scripted conversation: runs played in order, cycling when exhausted.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub model: String,
    pub runs: Vec<ScriptedRun>,
}

fn call(name: &str, arguments: Value, output: &str) -> Step {
    Step::Call {
        name: name.to_owned(),
        arguments,
        output: output.to_owned(),
        is_error: false,
    }
}

impl Script {
    /// A small coding-assistant conversation: reading files, running tests,
    /// a failing tool call, a fix, and a notification.
    pub fn demo() -> Self {
        Self {
            model: "demo-model-1".to_owned(),
            runs: vec![
                ScriptedRun {
                    user: "What does this project do? Start with the README.".to_owned(),
                    steps: vec![
                        Step::Think("The README should say; read it first.".to_owned()),
                        call("read_file", json!({"path": "README.md"}), "# podlog\nA durable, live-streamed session log for LLM agent pods."),
                        Step::Say("podlog keeps an agent's conversation as a durable log in SQLite and streams it live to UI clients.".to_owned()),
                    ],
                },
                ScriptedRun {
                    user: "Run the tests and tell me if anything fails.".to_owned(),
                    steps: vec![
                        call("run_command", json!({"cmd": "cargo test --workspace"}), "test result: FAILED. 41 passed; 1 failed"),
                        Step::Think("One failure; look at its output before guessing.".to_owned()),
                        Step::Call {
                            name: "read_file".to_owned(),
                            arguments: json!({"path": "target/test-output.txt"}),
                            output: "no such file: target/test-output.txt".to_owned(),
                            is_error: true,
                        },
                        call("run_command", json!({"cmd": "cargo test --workspace -- --nocapture failing_case"}), "assertion failed: left == right (left: 3, right: 4)"),
                        Step::Say("One test fails: `failing_case` expects 4 entries and sees 3. The fixture is missing its TurnEnd.".to_owned()),
                    ],
                },
                ScriptedRun {
                    user: "Fix the fixture and rerun.".to_owned(),
                    steps: vec![
                        call("edit_file", json!({"path": "fixtures/case.jsonl", "append": "{\"type\":\"turn_end\"}"}), "edited fixtures/case.jsonl (+1 line)"),
                        call("run_command", json!({"cmd": "cargo test --workspace"}), "test result: ok. 42 passed; 0 failed"),
                        Step::Notify("all tests pass".to_owned()),
                        Step::Say("Fixed: the fixture now ends its turn, and all 42 tests pass.".to_owned()),
                    ],
                },
            ],
        }
    }

    /// The entries run `index` (modulo the number of runs) commits, with
    /// tool-call ids made unique by `call_prefix`.
    pub fn run(&self, index: usize, call_prefix: &str, clock: &dyn Clock) -> Vec<LogEntry> {
        let run = &self.runs[index % self.runs.len().max(1)];
        let mut out = vec![LogEntry::UserInput {
            ts: clock.now_millis(),
            text: run.user.clone(),
            attachments: vec![],
        }];
        let mut turn = 0u64;
        let mut in_turn = false;
        let mut calls = 0usize;
        let end_turn = |out: &mut Vec<LogEntry>, turn: &mut u64, clock: &dyn Clock| {
            *turn += 1;
            let words: usize = out
                .iter()
                .rev()
                .take_while(|e| !matches!(e, LogEntry::TurnEnd { .. } | LogEntry::UserInput { .. }))
                .map(|e| e.summary().split_whitespace().count())
                .sum();
            out.push(LogEntry::LlmUsage {
                ts: clock.now_millis(),
                model: self.model.clone(),
                input_tokens: 800 + 150 * *turn,
                output_tokens: 12 + 2 * words as u64,
                cached_tokens: 600 + 100 * (*turn - 1),
            });
            out.push(LogEntry::TurnEnd {
                ts: clock.now_millis(),
                turn_count: *turn,
            });
        };
        for step in &run.steps {
            match step {
                Step::Think(text) => {
                    in_turn = true;
                    out.push(LogEntry::AssistantItem {
                        ts: clock.now_millis(),
                        item: AssistantContent::Reasoning { text: text.clone() },
                    });
                }
                Step::Say(text) => {
                    in_turn = true;
                    out.push(LogEntry::AssistantItem {
                        ts: clock.now_millis(),
                        item: AssistantContent::Text { text: text.clone() },
                    });
                }
                Step::Call {
                    name,
                    arguments,
                    output,
                    is_error,
                } => {
                    calls += 1;
                    let id = format!("{call_prefix}-{calls}");
                    out.push(LogEntry::AssistantItem {
                        ts: clock.now_millis(),
                        item: AssistantContent::ToolCall {
                            id: id.clone(),
                            name: name.clone(),
                            arguments: arguments.clone(),
                        },
                    });
                    end_turn(&mut out, &mut turn, clock);
                    in_turn = false;
                    out.push(LogEntry::ToolResult {
                        ts: clock.now_millis(),
                        call_id: id,
                        output: output.clone(),
                        is_error: *is_error,
                    });
                }
                Step::Notify(message) => out.push(LogEntry::SystemItem {
                    ts: clock.now_millis(),
                    item: SystemItem::Notification {
                        message: message.clone(),
                        body: format!("[Notification] {message}"),
                    },
                }),
            }
        }
        if in_turn || turn == 0 {
            end_turn(&mut out, &mut turn, clock);
        }
        out.push(LogEntry::RunCompleted {
            ts: clock.now_millis(),
            turn_count: turn,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlog_entry::{Conversation, StepClock};

    #[test]
    fn every_run_closes_its_calls_and_ends_with_run_completed() {
        let script = Script::demo();
        let clock = StepClock::new(0, 1);
        for i in 0..script.runs.len() {
            let entries = script.run(i, &format!("r{i}"), &clock);
            assert!(matches!(entries[0], LogEntry::UserInput { .. }));
            assert!(matches!(
                entries.last(),
                Some(LogEntry::RunCompleted { .. })
            ));
            let conversation = Conversation::from_entries(&entries);
            assert!(conversation.pending_calls.is_empty(), "run {i}");
            let turns = entries
                .iter()
                .filter(|e| matches!(e, LogEntry::TurnEnd { .. }))
                .count();
            let usages = entries
                .iter()
                .filter(|e| matches!(e, LogEntry::LlmUsage { .. }))
                .count();
            assert_eq!(turns, usages);
        }
    }

    #[test]
    fn the_same_clock_gives_the_same_entries() {
        let script = Script::demo();
        let a = script.run(1, "c", &StepClock::new(5, 10));
        let b = script.run(1, "c", &StepClock::new(5, 10));
        assert_eq!(a, b);
    }
}
