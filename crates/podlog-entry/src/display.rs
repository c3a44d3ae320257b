//! Human-readable forms: [`iso8601`] for timestamps and
//! [`LogEntry::summary`] for a one-line description of an entry, the same
//! text the `timeline` view of the database shows.

use crate::entry::{LogEntry, RunErrorKind, SystemItem};
use crate::message::AssistantContent;

/// `ms` (milliseconds since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        flat
    }
}

impl LogEntry {
    /// A one-line description of the entry, at most 120 characters.
    pub fn summary(&self) -> String {
        let text = match self {
            LogEntry::SessionStart {
                config,
                history,
                forked_from,
                compacted_from,
                ..
            } => {
                let origin = match (compacted_from, forked_from) {
                    (Some(r), _) => format!("compacted from {r}"),
                    (None, Some(r)) => format!("forked from {r}"),
                    (None, None) => "new session".to_owned(),
                };
                format!(
                    "{origin}, model {}, {} history messages",
                    config.model,
                    history.len()
                )
            }
            LogEntry::UserInput {
                text, attachments, ..
            } => {
                if attachments.is_empty() {
                    text.clone()
                } else {
                    format!("{text} [+{} attachments]", attachments.len())
                }
            }
            LogEntry::AssistantItem { item, .. } => match item {
                AssistantContent::Text { text } => format!("text: {text}"),
                AssistantContent::Reasoning { text } => format!("reasoning: {text}"),
                AssistantContent::ToolCall {
                    name, arguments, ..
                } => format!("call {name} {arguments}"),
            },
            LogEntry::ToolResult {
                call_id,
                output,
                is_error,
                ..
            } => {
                let what = if *is_error { "error from" } else { "result of" };
                format!("{what} {call_id}: {output}")
            }
            LogEntry::TurnEnd { turn_count, .. } => format!("turn {turn_count} ended"),
            LogEntry::RunCompleted { turn_count, .. } => {
                format!("run completed after {turn_count} turns")
            }
            LogEntry::RunErrored { kind, message, .. } => {
                let kind = match kind {
                    RunErrorKind::Interrupted => "interrupted",
                    RunErrorKind::Provider => "provider",
                    RunErrorKind::Tool => "tool",
                    RunErrorKind::Internal => "internal",
                    RunErrorKind::Other(other) => other,
                };
                format!("{kind}: {message}")
            }
            LogEntry::LlmUsage {
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                ..
            } => format!("{model} in={input_tokens} out={output_tokens} cached={cached_tokens}"),
            LogEntry::SystemItem { item, .. } => match item {
                SystemItem::Notification { message, .. } => message.clone(),
                SystemItem::Other(object) => object
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("system item")
                    .to_owned(),
            },
            LogEntry::ConfigChanged { config, .. } => format!("model {}", config.model),
            LogEntry::Extension { name, data, .. } => format!("{name} {data}"),
            LogEntry::Unknown(_) => "entry of a newer version".to_owned(),
        };
        one_line(&text, 120)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn summaries_are_one_line_and_bounded() {
        let entry = LogEntry::UserInput {
            ts: 0,
            text: format!("line one\nline two {}", "x".repeat(200)),
            attachments: vec![],
        };
        let s = entry.summary();
        assert!(!s.contains('\n'));
        assert_eq!(s.chars().count(), 120);
        assert!(s.starts_with("line one line two"));
        assert!(s.ends_with('…'));
    }
}
