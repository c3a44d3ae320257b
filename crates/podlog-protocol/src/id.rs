//! [`EventId`]: a position in a pod's event stream, `SESSION:SEQ`, as sent in
//! every event's SSE `id:` and given back in `Last-Event-ID` to resume.

use podlog_entry::{Seq, SessionId};

/// A position a client has seen: `SESSION:SEQ`, the session it views and the
/// last committed seq it holds of it (an event's [`watermark`]).
///
/// [`watermark`]: crate::Event::watermark
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    pub session: SessionId,
    pub seq: Seq,
}

impl EventId {
    /// The position `seq` of `session`.
    pub fn new(session: SessionId, seq: Seq) -> Self {
        Self { session, seq }
    }

    /// Parses `SESSION:SEQ` (the session id may itself hold `:`; the seq is
    /// after the last one). The error says what is wrong, for a `400`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid event id {text:?}: {why}; want SESSION:SEQ as sent in an event's `id:`"
            )
        };
        let (session, seq) = text.rsplit_once(':').ok_or_else(|| bad("no `:`"))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| bad("the part after the last `:` is not a seq number"))?;
        let session = SessionId::new(session).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            session,
            seq: Seq(seq),
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.session, self.seq)
    }
}

impl std::str::FromStr for EventId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> String {
        match EventId::parse(text) {
            Ok(id) => {
                assert_eq!(id.to_string(), text, "round trip");
                format!("ok {} {}", id.session, id.seq)
            }
            Err(e) => e,
        }
    }

    #[test]
    fn event_ids() {
        let cases = [
            ("s-0001:12", "ok s-0001 12"),
            ("a:b:0", "ok a:b 0"),
            (
                "s-0001",
                "invalid event id \"s-0001\": no `:`; want SESSION:SEQ as sent in an event's `id:`",
            ),
            (
                "s-0001:x",
                "invalid event id \"s-0001:x\": the part after the last `:` is not a seq number; want SESSION:SEQ as sent in an event's `id:`",
            ),
            (
                "s-0001:-1",
                "invalid event id \"s-0001:-1\": the part after the last `:` is not a seq number; want SESSION:SEQ as sent in an event's `id:`",
            ),
            (
                ":3",
                "invalid event id \":3\": invalid session id \"\": want 1 to 128 characters with no white space; want SESSION:SEQ as sent in an event's `id:`",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(check(input), want, "{input}");
        }
    }
}
