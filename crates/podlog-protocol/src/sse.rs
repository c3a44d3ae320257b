//! Server-Sent Events, both ways: [`frame`] renders one message the way a
//! podlog server sends it, and [`SseParser`] parses a `text/event-stream`
//! incrementally, the way a client reads it.
//!
//! # Framing
//!
//! Each pod [`Event`] is one message: `id:` is the [`EventId`] of the
//! client's position once it has the event (`{session}:{watermark}`),
//! `event:` is the event's `"type"`, and `data:` is the event's JSON on one
//! line. Comment lines (`:`) are heartbeats. Three control messages end a
//! stream and carry no `id:` (so a client's last id stays the last real
//! one): `shutdown` (the server is stopping; reconnect later),
//! `reconnect` (reconnect now) and `revoked` (the share link the stream
//! was opened with was revoked or expired: do not reconnect with it);
//! their data is `{"type", "reason"}`.
//!
//! [`EventId`]: crate::EventId

use crate::event::Event;

/// The `event:` names of the control messages that end a stream.
pub const CONTROL_EVENTS: [&str; 3] = ["shutdown", "reconnect", "revoked"];

/// One SSE message as text: optional `id:`, `event:`, then `data`, one
/// `data:` line per line of it, and the blank line that ends the message.
pub fn frame(id: Option<&str>, event: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The control message `kind` (`shutdown` or `reconnect`) with `reason`.
pub fn control_frame(kind: &str, reason: &str) -> String {
    let data = serde_json::json!({ "type": kind, "reason": reason }).to_string();
    frame(None, kind, &data)
}

/// One SSE message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    /// The `event:` name (`message` when absent).
    pub event: String,
    pub data: String,
}

/// A message whose data is not the event its name says.
#[derive(Debug, thiserror::Error)]
#[error("malformed {event} event: {source}")]
pub struct MalformedEvent {
    pub event: String,
    pub source: serde_json::Error,
}

impl SseMessage {
    /// The pod event this message carries; `None` for the control messages
    /// (`shutdown`, `reconnect`) that end a stream.
    pub fn pod_event(&self) -> Option<Result<Event, MalformedEvent>> {
        if self.is_control() {
            return None;
        }
        Some(
            serde_json::from_str(&self.data).map_err(|source| MalformedEvent {
                event: self.event.clone(),
                source,
            }),
        )
    }

    /// Whether this is a control message that ends the stream.
    pub fn is_control(&self) -> bool {
        CONTROL_EVENTS.contains(&self.event.as_str())
    }
}

/// What the SSE parser found in the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Message(SseMessage),
    Comment(String),
}

/// An incremental parser of the `text/event-stream` format: feed it bytes as
/// they arrive, in pieces of any size.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds `bytes`; returns the messages and comments completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseItem> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + len;
            let mut line = &self.buf[start..end];
            start = end + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(SseItem::Message(SseMessage {
                        id: self.id.take(),
                        event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                        data,
                    }));
                }
                self.id = None;
                self.event = None;
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                out.push(SseItem::Comment(comment.trim_start().to_owned()));
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.id = Some(value.to_owned()),
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        self.buf.drain(..start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&str]) -> String {
        let mut parser = SseParser::default();
        let mut out = String::new();
        for chunk in chunks {
            for item in parser.push(chunk.as_bytes()) {
                match item {
                    SseItem::Message(m) => out.push_str(&format!(
                        "[{}|{}|{}]",
                        m.id.as_deref().unwrap_or("-"),
                        m.event,
                        m.data
                    )),
                    SseItem::Comment(c) => out.push_str(&format!("(:{c})")),
                }
            }
        }
        out
    }

    #[test]
    fn sse_parsing() {
        let cases: [(&[&str], &str); 7] = [
            (&["id: a:1\nevent: x\ndata: {}\n\n"], "[a:1|x|{}]"),
            (&["id: a:1\nev", "ent: x\ndata: {}\n", "\n"], "[a:1|x|{}]"),
            (&["data: one\ndata: two\n\n"], "[-|message|one\ntwo]"),
            (&[": heartbeat\n\n"], "(:heartbeat)"),
            (&["event: x\r\ndata:y\r\n\r\n"], "[-|x|y]"),
            (&["id: 1\n\nid: 2\ndata: d\n\n"], "[2|message|d]"),
            (
                &["data: a\n\ndata: b\n\n", "data: c\n\n"],
                "[-|message|a][-|message|b][-|message|c]",
            ),
        ];
        for (chunks, want) in cases {
            assert_eq!(check(chunks), want, "{chunks:?}");
        }
    }

    #[test]
    fn frames_parse_back_to_what_was_framed() {
        let cases = [
            (Some("s:1"), "snapshot", "{\"a\":1}"),
            (None, "shutdown", "x"),
            (Some("s:2"), "text_delta", "two\nlines"),
            (Some("s:3"), "entry", ""),
        ];
        for (id, event, data) in cases {
            let text = frame(id, event, data);
            // Byte by byte, the way a slow network delivers it.
            let mut parser = SseParser::default();
            let mut items = Vec::new();
            for b in text.as_bytes() {
                items.extend(parser.push(std::slice::from_ref(b)));
            }
            assert_eq!(
                items,
                vec![SseItem::Message(SseMessage {
                    id: id.map(str::to_owned),
                    event: event.to_owned(),
                    data: data.to_owned(),
                })],
                "{text:?}"
            );
        }
        let control = control_frame("reconnect", "the pod was closed");
        let mut parser = SseParser::default();
        let items = parser.push(control.as_bytes());
        let [SseItem::Message(m)] = items.as_slice() else {
            panic!("{control:?}: {items:?}");
        };
        assert!(
            m.is_control() && m.pod_event().is_none() && m.id.is_none(),
            "{m:?}"
        );
    }
}
