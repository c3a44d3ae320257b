//! Unit tests of the pod: commit-then-publish, the snapshot/live split under
//! concurrent commits, resume, rotation, restore of an interrupted run, and
//! the busy and closed states.

use super::*;
use podlog_entry::{LogEntry, Seq, SessionId, SystemItem};

#[test]
fn events_round_trip_through_json_with_a_type_tag() {
    let events = vec![
        Event::TextDelta {
            after: Seq(3),
            text: "hel".to_owned(),
        },
        Event::SystemItem {
            seq: Seq(4),
            ts: 9,
            item: SystemItem::Notification {
                message: "m".to_owned(),
                body: "b".to_owned(),
            },
        },
        Event::SessionRotated {
            session_id: SessionId::new("s-2").unwrap(),
            seq: Seq::FIRST,
            entry: LogEntry::SessionStart {
                ts: 1,
                system_prompt: None,
                config: Default::default(),
                history: vec![],
                forked_from: None,
                compacted_from: None,
            },
        },
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.kind());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
