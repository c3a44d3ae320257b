//! Payloads out of line: dedup, the lean and the whole form of an entry,
//! the same transaction as the entry, export/import, fork, verify.

use std::sync::Arc;

use podlog_entry::payload::{PREVIEW_BYTES, THRESHOLD};
use podlog_entry::{Committed, LogEntry, Message, PayloadHash, Seq, StepClock};
use podlog_sink::SessionLogSink;

use crate::commit::Fault;
use crate::{NewSession, SequentialIds, SqliteSessionWriter, SqliteStore, StoreError, StoreOptions};

fn open(dir: &tempfile::TempDir, name: &str) -> Arc<SqliteStore> {
    let options = StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    };
    Arc::new(SqliteStore::open(dir.path().join(name), options).unwrap())
}

/// A tool output of `len` bytes, different for each `n`.
pub(crate) fn output(n: u64, len: usize) -> String {
    let line = format!("line of output {n}: the quick brown fox jumps over the lazy dog\n");
    line.repeat(len / line.len() + 1)[..len].to_owned()
}

/// A tool result of `text`, stamped `n`.
pub(crate) fn result(n: u64, text: String) -> LogEntry {
    LogEntry::ToolResult {
        ts: n,
        call_id: format!("call-{n}"),
        output: text,
        is_error: false,
    }
}

struct Session {
    writer: SqliteSessionWriter,
    sink: SessionLogSink,
}

fn session(store: &Arc<SqliteStore>) -> Session {
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    Session {
        writer: store.session_writer(&id).unwrap(),
        sink: SessionLogSink::with_initial([start]).unwrap(),
    }
}

/// Appends four results: two identical 100 KiB outputs, a distinct one and
/// a small one. Returns the entries as appended.
fn append_four(s: &mut Session) -> Vec<LogEntry> {
    let big = output(1, 100 * 1024);
    let entries = vec![
        result(2, big.clone()),
        result(3, output(3, 100 * 1024)),
        result(4, big),
        result(5, "small".to_owned()),
    ];
    for e in &entries {
        s.writer.append(e.clone(), &s.sink).unwrap();
    }
    entries
}

#[test]
fn identical_large_strings_are_stored_once_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    let appended = append_four(&mut s);
    let id = s.writer.session().clone();

    assert_eq!(
        store.payload_totals().unwrap(),
        (2, 2 * 100 * 1024),
        "two distinct outputs, each stored once"
    );
    let full = store.entries(&id).unwrap();
    let got: Vec<LogEntry> = full[1..].iter().map(|c| (*c.entry).clone()).collect();
    assert_eq!(got, appended, "full reads give back every entry whole");
    assert!(full.iter().all(|c| c.payloads.is_none()));

    let lean = store.previews_after(&id, Seq::FIRST, 10).unwrap();
    assert_eq!(lean.len(), 4);
    for c in &lean[..3] {
        let LogEntry::ToolResult { output, .. } = &*c.entry else {
            panic!("{:?}", c.entry)
        };
        assert_eq!(
            output.len(),
            PREVIEW_BYTES,
            "the lean entry keeps a preview"
        );
        let [r] = c.payload_refs() else {
            panic!("{:?}", c.payloads)
        };
        assert_eq!(r.path, "$.output");
        assert_eq!(r.size, 100 * 1024);
        let payload = store.payload(&r.hash).unwrap().expect("stored");
        assert!(payload.text.starts_with(output.as_str()));
    }
    assert_eq!(
        lean[0].payload_refs()[0].hash,
        lean[2].payload_refs()[0].hash
    );
    assert!(lean[3].payloads.is_none(), "a small entry stays whole");
    assert_eq!(
        store.previews_before(&id, Seq(4), 2).unwrap(),
        lean[..2].to_vec()
    );

    // The sink got what the mirror and the wire carry: the lean entries.
    let mirrored: Vec<Committed> = s.sink.snapshot().entries.iter().skip(1).cloned().collect();
    assert_eq!(mirrored, lean);
}

#[test]
fn the_sql_view_inlines_payloads_as_the_full_read_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    append_four(&mut s);
    let id = s.writer.session().clone();
    let full = store.entries(&id).unwrap();
    let conn = store.writer();
    for c in &full {
        let body: String = conn
            .query_row(
                "SELECT body FROM entries_full WHERE session_id = ?1 AND seq = ?2",
                rusqlite::params![id.as_str(), c.seq.get()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(body, c.entry.to_json(), "seq {}", c.seq);
    }
}

#[test]
fn a_payload_is_rolled_back_with_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    store.inject(Fault::BeforeCommit);
    let err = s
        .writer
        .append(result(2, output(2, THRESHOLD * 2)), &s.sink)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Panicked {
                committed: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.payload_totals().unwrap(), (0, 0));
    // The next append stores it with its entry.
    s.writer
        .append(result(2, output(2, THRESHOLD * 2)), &s.sink)
        .unwrap();
    assert_eq!(store.payload_totals().unwrap().0, 1);
}

#[test]
fn strings_below_the_threshold_stay_inline() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    s.writer
        .append(result(2, output(2, THRESHOLD - 1)), &s.sink)
        .unwrap();
    s.writer
        .append(result(3, output(3, THRESHOLD)), &s.sink)
        .unwrap();
    let lean = store
        .previews_after(s.writer.session(), Seq::FIRST, 10)
        .unwrap();
    assert!(lean[0].payloads.is_none());
    assert!(lean[1].payloads.is_some());
    assert_eq!(store.payload_totals().unwrap(), (1, THRESHOLD as u64));
}

#[test]
fn export_inlines_and_import_stores_each_payload_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    let appended = append_four(&mut s);
    let mut first = Vec::new();
    store
        .export(s.writer.session(), false, &mut first, |_| {})
        .unwrap();
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.contains(&serde_json::to_string(&output(3, 100 * 1024)).unwrap()),
        "the export holds the whole output"
    );

    let copy = open(&dir, "b.db");
    copy.import(first.as_slice(), |_| {}).unwrap();
    assert_eq!(copy.payload_totals().unwrap(), (2, 2 * 100 * 1024));
    let id = s.writer.session().clone();
    let got: Vec<LogEntry> = copy.entries(&id).unwrap()[1..]
        .iter()
        .map(|c| (*c.entry).clone())
        .collect();
    assert_eq!(got, appended);
    let mut second = Vec::new();
    copy.export(&id, false, &mut second, |_| {}).unwrap();
    assert_eq!(
        String::from_utf8(second).unwrap(),
        text,
        "an export of an import is byte-identical"
    );
    assert!(copy.verify(None).unwrap().is_empty());
}

#[test]
fn a_fork_reads_its_parent_whole_and_shares_its_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    append_four(&mut s);
    let parent = s.writer.session().clone();
    let (child, start) = store.fork(&parent, Seq(5)).unwrap();
    assert!(start.payloads.is_some(), "the copied history is lean");
    assert_eq!(
        store.payload_totals().unwrap().0,
        2,
        "the fork stores no payload again"
    );
    let whole = store.entries(&child).unwrap();
    let LogEntry::SessionStart { history, .. } = &*whole[0].entry else {
        panic!()
    };
    let outputs: Vec<usize> = history
        .iter()
        .filter_map(|m| match m {
            Message::Tool { output, .. } => Some(output.len()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, [100 * 1024, 100 * 1024, 100 * 1024, 5]);
}

#[test]
fn verify_names_missing_and_corrupt_payloads_and_the_rest_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db");
    let mut s = session(&store);
    append_four(&mut s);
    let id = s.writer.session().clone();
    let lean = store.previews_after(&id, Seq::FIRST, 10).unwrap();
    let shared = lean[0].payload_refs()[0].hash.clone();
    let other = lean[1].payload_refs()[0].hash.clone();
    {
        let conn = store.writer();
        conn.execute("DELETE FROM payloads WHERE hash = ?1", [other.as_str()])
            .unwrap();
        conn.execute(
            "UPDATE payloads SET text = 'tampered' || text WHERE hash = ?1",
            [shared.as_str()],
        )
        .unwrap();
    }
    let problems: Vec<String> = store
        .verify(None)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let corrupt = |seq: u64| {
        problems.iter().any(|p| {
            p.starts_with(&format!("session {id} seq {seq}: payload {shared}"))
                && p.contains("is corrupt: its text hashes to")
        })
    };
    assert!(corrupt(2) && corrupt(4), "{problems:#?}");
    assert!(
        problems.contains(&format!(
            "session {id} seq 3: payload {other} (the string at $.output) is missing"
        )),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");

    // A whole read names the entry; the lean reads (the mirror, the wire)
    // still serve the session, previews and all.
    let err = store.entries(&id).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { seq: Seq(3), .. }),
        "{err}"
    );
    assert_eq!(store.previews_after(&id, Seq::ZERO, 10).unwrap().len(), 5);
    assert_eq!(store.load_sink(&id).unwrap().snapshot().len(), 5);
    // A payload read refuses the tampered text.
    assert!(matches!(
        store.payload(&shared),
        Err(StoreError::CorruptPayload { .. })
    ));
    let unknown = PayloadHash::new("0".repeat(64)).unwrap();
    assert_eq!(store.payload(&unknown).unwrap(), None);
}
