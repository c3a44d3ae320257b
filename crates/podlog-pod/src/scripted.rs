//! [`ScriptedDriver`]: an [`AgentDriver`] that plays a deterministic
//! [`Script`] instead of calling a model, for the demo and the tests. It
//! streams and commits what a real driver would, in the same order, so the
//! pod, the store and the clients cannot tell it from one.

use std::time::Duration;

use podlog_entry::{AssistantContent, Clock, Conversation, LogEntry, Message, RunErrorKind};

use crate::driver::{AgentDriver, DriverError, RunContext, INTERRUPTED_BY_SHUTDOWN};
use crate::script::Script;

/// A clock stuck at zero: the script's entries are stamped again at commit.
struct Unstamped;

impl Clock for Unstamped {
    fn now_millis(&self) -> u64 {
        0
    }
}

/// Sets the timestamp of a known entry kind.
fn restamp(entry: &mut LogEntry, now: u64) {
    entry.set_ts(now);
}

/// Splits `text` into pieces of `words` words each (white space kept), whose
/// concatenation is `text`.
pub fn text_pieces(text: &str, words: usize) -> Vec<&str> {
    let words = words.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            count += 1;
            if count == words {
                let end = i + c.len_utf8();
                pieces.push(&text[start..end]);
                start = end;
                count = 0;
            }
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A driver that plays a [`Script`]: run `n` of the pod answers with the
/// script's run `n` (cycling), whatever the user typed.
///
/// Each `Say` text is streamed as `TextDelta`s of a few words (with an
/// optional pause before each, for a human pace in demos) before its
/// `AssistantItem` is committed; each tool call is announced with a
/// `ToolCallStart` before it is committed. Entries are stamped with the
/// store's clock at commit, so a deterministic clock gives deterministic
/// logs. Tool-call ids are `call-{session}-{input seq}-{n}`: unique across
/// sessions, forks and restores.
#[derive(Clone, Debug)]
pub struct ScriptedDriver {
    script: Script,
    next_run: usize,
    delta_delay: Duration,
    words_per_delta: usize,
}

impl ScriptedDriver {
    /// Plays `script` from its first run, with no pause between deltas.
    pub fn new(script: Script) -> Self {
        Self {
            script,
            next_run: 0,
            delta_delay: Duration::ZERO,
            words_per_delta: 3,
        }
    }

    /// Plays [`Script::demo`].
    pub fn demo() -> Self {
        Self::new(Script::demo())
    }

    /// Pauses `delay` before each text delta (zero in tests).
    pub fn with_delta_delay(mut self, delay: Duration) -> Self {
        self.delta_delay = delay;
        self
    }

    /// Starts with the script's run `index` (for example after a restore).
    pub fn starting_at(mut self, index: usize) -> Self {
        self.next_run = index;
        self
    }

    /// Streams text deltas of `words` words each (at least 1).
    pub fn with_words_per_delta(mut self, words: usize) -> Self {
        self.words_per_delta = words.max(1);
        self
    }

    /// The script run the next input is answered with.
    pub fn next_run(&self) -> usize {
        self.next_run
    }
}

#[async_trait::async_trait]
impl AgentDriver for ScriptedDriver {
    async fn run(&mut self, _input: &str, ctx: &mut RunContext) -> Result<(), DriverError> {
        let index = self.next_run;
        self.next_run += 1;
        let prefix = format!("call-{}-{}", ctx.session_id(), ctx.input_seq());
        let entries = self.script.run(index, &prefix, &Unstamped);
        for mut entry in entries {
            match &entry {
                // The pod commits the entries that open and close the run.
                LogEntry::UserInput { .. } | LogEntry::RunCompleted { .. } => continue,
                LogEntry::AssistantItem {
                    item: AssistantContent::Text { text },
                    ..
                } => {
                    for piece in text_pieces(text, self.words_per_delta) {
                        if !self.delta_delay.is_zero() {
                            if ctx.is_stopping() {
                                return Err(DriverError::new(
                                    RunErrorKind::Interrupted,
                                    INTERRUPTED_BY_SHUTDOWN,
                                ));
                            }
                            tokio::time::sleep(self.delta_delay).await;
                        }
                        ctx.text_delta(piece).await?;
                    }
                }
                LogEntry::AssistantItem {
                    item: AssistantContent::ToolCall { id, name, .. },
                    ..
                } => ctx.tool_call_start(id, name).await?,
                _ => {}
            }
            restamp(&mut entry, ctx.now());
            ctx.commit(entry).await?;
        }
        Ok(())
    }

    /// The conversation's mechanical summary
    /// ([`Conversation::mechanical_summary`]): deterministic, so compactions
    /// are reproducible, and bounded along a chain of compactions.
    fn summarise(&mut self, conversation: &Conversation) -> Result<Vec<Message>, DriverError> {
        Ok(vec![conversation.mechanical_summary()])
    }
}
