//! `podlog append-loop` (hidden): appends entries to one session through the
//! real store and sink, printing `published SEQ` once each entry is
//! published, until killed or `--count` entries are written. The crash tests
//! kill it with SIGKILL at random moments and then check the database.

use std::io::Write;

use podlog_entry::{AssistantContent, Clock, LogEntry, SystemClock, SystemItem};
use podlog_store::{NewSession, Store};

/// The entry written at step `n`: a mix of kinds and sizes, so that a kill
/// can land inside a large write as well as a small one.
fn entry(n: u64, clock: &SystemClock) -> LogEntry {
    let ts = clock.now_millis();
    match n % 4 {
        0 => LogEntry::ToolResult {
            ts,
            call_id: format!("call-{n}"),
            output: "x".repeat(200 + (n as usize * 997) % 8000),
            is_error: false,
        },
        1 => LogEntry::AssistantItem {
            ts,
            item: AssistantContent::Text {
                text: format!("answer {n}"),
            },
        },
        2 => LogEntry::SystemItem {
            ts,
            item: SystemItem::Notification {
                message: format!("note {n}"),
                body: format!("[Notification] note {n}"),
            },
        },
        _ => LogEntry::TurnEnd { ts, turn_count: n },
    }
}

/// Runs the loop; returns the closing line.
pub fn append_loop(
    store: Store,
    session: Option<String>,
    count: Option<u64>,
) -> Result<String, String> {
    let store = std::sync::Arc::new(store);
    let (id, sink) = match session {
        Some(text) => {
            let id = store.resolve(&text).map_err(|e| e.to_string())?;
            let sink = store.load_sink(&id).map_err(|e| e.to_string())?;
            (id, sink)
        }
        None => {
            let (id, start) = store
                .create_session(NewSession {
                    title: Some("append loop".to_owned()),
                    ..NewSession::default()
                })
                .map_err(|e| e.to_string())?;
            let sink =
                podlog_sink::SessionLogSink::with_initial([start]).map_err(|e| e.to_string())?;
            (id, sink)
        }
    };
    let mut writer = store.session_writer(&id).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "session {id}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let clock = SystemClock;
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        let seq = writer
            .append(entry(n, &clock), &sink)
            .map_err(|e| e.to_string())?;
        writeln!(out, "published {seq}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(format!("appended {n} entries to session {id}\n"))
}
