//! [`SharedEvent`]: one [`Event`] as a pod sends it to all its clients,
//! shared, with its SSE frame rendered once.
//!
//! A pod's event channel carries `SharedEvent`s: cloning one is a reference
//! count, and [`SharedEvent::sse_frame`] serialises the event the first time
//! any client asks and hands every later client the same bytes. So the cost
//! of encoding an event does not grow with the number of clients.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use podlog_entry::SessionId;

use crate::event::Event;
use crate::id::EventId;
use crate::sse;

/// An event and the session it belongs to (for `Snapshot` and
/// `SessionRotated`, the session they start), shared. Dereferences to the
/// [`Event`].
#[derive(Clone)]
pub struct SharedEvent(Arc<Inner>);

struct Inner {
    session: SessionId,
    event: Event,
    frame: OnceLock<Result<Bytes, String>>,
}

impl SharedEvent {
    /// `event` of `session`.
    pub fn new(session: SessionId, event: Event) -> Self {
        SharedEvent(Arc::new(Inner {
            session,
            event,
            frame: OnceLock::new(),
        }))
    }

    /// The session the event belongs to.
    pub fn session(&self) -> &SessionId {
        &self.0.session
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.0.event
    }

    /// The position a client is at once it has this event: the session and
    /// the event's watermark, the SSE `id:`.
    pub fn id(&self) -> EventId {
        EventId::new(self.0.session.clone(), self.0.event.watermark())
    }

    /// The event as one SSE message (see [`crate::sse`]), rendered on the
    /// first call and shared by every later one. `Err` holds why the event
    /// could not be encoded (never expected: every event is plain JSON).
    pub fn sse_frame(&self) -> Result<Bytes, String> {
        self.0
            .frame
            .get_or_init(|| {
                let data = serde_json::to_string(&self.0.event).map_err(|e| e.to_string())?;
                let id = self.id().to_string();
                Ok(Bytes::from(sse::frame(
                    Some(&id),
                    self.0.event.kind(),
                    &data,
                )))
            })
            .clone()
    }
}

impl std::ops::Deref for SharedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.0.event
    }
}

impl std::fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEvent")
            .field("session", &self.0.session)
            .field("event", &self.0.event)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SharedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.0.session == other.0.session && self.0.event == other.0.event
    }
}

#[cfg(test)]
mod tests {
    use podlog_entry::Seq;

    use super::*;
    use crate::sse::{SseItem, SseParser};

    #[test]
    fn a_frame_is_rendered_once_and_parses_back_to_the_event() {
        let session = SessionId::new("s-1").unwrap();
        let event = Event::TextDelta {
            after: Seq(4),
            text: "two\nlines".to_owned(),
        };
        let shared = SharedEvent::new(session, event.clone());
        let first = shared.sse_frame().unwrap();
        let again = shared.clone().sse_frame().unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "one rendering, shared");
        let mut parser = SseParser::default();
        let items = parser.push(&first);
        let [SseItem::Message(m)] = items.as_slice() else {
            panic!("{items:?}");
        };
        assert_eq!(m.id.as_deref(), Some("s-1:4"));
        assert_eq!(m.event, "text_delta");
        assert_eq!(m.pod_event().unwrap().unwrap(), event);
        assert_eq!(*shared, event);
    }
}
