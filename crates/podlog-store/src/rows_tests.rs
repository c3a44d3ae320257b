//! Tests of the one row reader, as data: a session's rows edited behind
//! podlog's back (constraints off), then what the reader yields row by row
//! and what a caller that stops at the first problem fails with. Guards
//! against a reader that skips a row, stops where verify must go on, lets a
//! misplaced `SessionStart` hide its row, or names the wrong seq.

use std::sync::Arc;

use podlog_entry::{LogEntry, Seq, StepClock};
use podlog_sink::SessionLogSink;

use super::{read_rows, Form, Span};
use crate::{NewSession, SequentialIds, SqliteStore, StoreOptions};

/// Session s-0001: its `SessionStart` and turn ends at seqs 2 to 6. After
/// `sql` is run on it (foreign keys and CHECK constraints off), what the
/// reader yields for `span`, one item a line (`seq kind` for a row, `! seq
/// N: problem` for a problem), then what a sound read fails with.
fn check(sql: &str, span: Span) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podlog.db");
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
            ids: Arc::new(SequentialIds::new("s")),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let store = Arc::new(store);
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut writer = store.session_writer(&id).unwrap();
    for n in 2..=6 {
        let entry = LogEntry::TurnEnd {
            ts: n,
            turn_count: n,
        };
        writer.append(entry, &sink).unwrap();
    }
    drop(writer);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    store
        .with_reader(|conn| {
            let mut out = Vec::new();
            read_rows(conn, id.as_str(), span, Form::Full, |rows| {
                while let Some(item) = rows.next_row() {
                    out.push(match item {
                        Ok(row) => format!("{} {}", row.seq, row.entry.kind()),
                        Err(e) => match e.seq() {
                            Some(seq) => format!("! seq {seq}: {e}"),
                            None => format!("! {e}"),
                        },
                    });
                }
                out.push(format!("read {}, last {}", rows.count(), rows.last()));
                Ok(())
            })?;
            let sound = read_rows(conn, id.as_str(), span, Form::Full, |rows| {
                while rows.next_checked()?.is_some() {}
                Ok(())
            });
            out.push(match sound {
                Ok(()) => "sound".to_owned(),
                Err(e) => format!("fails: {e}"),
            });
            Ok(out.join("\n"))
        })
        .unwrap()
}

#[test]
fn a_sound_session_reads_whole_or_in_spans() {
    let cases = [
        (
            Span::ALL,
            "1 session_start\n2 turn_end\n3 turn_end\n4 turn_end\n5 turn_end\n6 turn_end\n\
             read 6, last 6\nsound",
        ),
        (
            Span::after(Seq(2), 3),
            "3 turn_end\n4 turn_end\n5 turn_end\nread 3, last 5\nsound",
        ),
        (Span::after(Seq(6), 3), "read 0, last 0\nsound"),
        (
            Span::upto(Seq(2)),
            "1 session_start\n2 turn_end\nread 2, last 2\nsound",
        ),
    ];
    for (span, want) in cases {
        assert_eq!(check("", span), want, "{span:?}");
    }
}

#[test]
fn every_problem_is_yielded_and_no_row_is_hidden() {
    let at = |seq: u64, set: &str| {
        format!("UPDATE entries SET {set} WHERE session_id = 's-0001' AND seq = {seq};")
    };
    let start_body = "(SELECT body FROM entries WHERE session_id = 's-0001' AND seq = 1)";
    let cases = [
        (
            "DELETE FROM entries WHERE seq = 3;".to_owned(),
            Span::ALL,
            "1 session_start\n2 turn_end\n! seq 3: entry missing (the next stored entry is seq 4)\n\
             4 turn_end\n5 turn_end\n6 turn_end\nread 5, last 6\n\
             fails: session s-0001 seq 3: entry missing (the next stored entry is seq 4)",
        ),
        (
            "DELETE FROM entries WHERE seq IN (2, 3, 4);".to_owned(),
            Span::ALL,
            "1 session_start\n! seq 2: entries 2 to 4 missing\n5 turn_end\n6 turn_end\n\
             read 3, last 6\nfails: session s-0001 seq 2: entries 2 to 4 missing",
        ),
        (
            "DELETE FROM entries WHERE seq = 3;".to_owned(),
            Span::after(Seq(2), 2),
            "! seq 3: entry missing (the next stored entry is seq 4)\n4 turn_end\n5 turn_end\n\
             read 2, last 5\n\
             fails: session s-0001 seq 3: entry missing (the next stored entry is seq 4)",
        ),
        (
            "DELETE FROM entries WHERE seq = 1;".to_owned(),
            Span::upto(Seq(2)),
            "! seq 1: entry missing (the next stored entry is seq 2)\n2 turn_end\n\
             read 1, last 2\n\
             fails: session s-0001 seq 1: entry missing (the next stored entry is seq 2)",
        ),
        (
            at(4, "body = '{\"type\":\"turn_end\",\"ts\":4}'"),
            Span::ALL,
            "1 session_start\n2 turn_end\n3 turn_end\n\
             ! seq 4: body does not decode: malformed turn_end entry: missing field `turn_count`\n\
             5 turn_end\n6 turn_end\nread 6, last 6\n\
             fails: session s-0001 seq 4: stored entry does not decode: malformed turn_end \
             entry: missing field `turn_count`",
        ),
        (
            at(2, "body = CAST(x'7b22ff' AS TEXT)"),
            Span::upto(Seq(2)),
            "1 session_start\n\
             ! seq 2: body is not UTF-8: invalid utf-8 sequence of 1 bytes from index 2\n\
             read 2, last 2\n\
             fails: session s-0001 seq 2: stored entry does not decode: body is not UTF-8: \
             invalid utf-8 sequence of 1 bytes from index 2",
        ),
        (
            at(1, "body = '{\"type\":\"turn_end\",\"ts\":1,\"turn_count\":0}'"),
            Span::upto(Seq(2)),
            "! seq 1: seq 1 holds a turn_end instead of a SessionStart\n1 turn_end\n2 turn_end\n\
             read 2, last 2\n\
             fails: session s-0001 seq 1: seq 1 holds a turn_end instead of a SessionStart",
        ),
        (
            at(5, &format!("body = {start_body}")),
            Span::after(Seq(3), 10),
            "4 turn_end\n! seq 5: a SessionStart after seq 1 (only seq 1 may hold one)\n\
             5 session_start\n6 turn_end\nread 3, last 6\n\
             fails: session s-0001 seq 5: a SessionStart after seq 1 (only seq 1 may hold one)",
        ),
        (
            "UPDATE entries SET seq = -2 WHERE seq = 6; \
             UPDATE entries SET seq = 0 WHERE seq = 5;"
                .to_owned(),
            Span::ALL,
            "! an entry has seq -2; seqs start at 1\n! an entry has seq 0; seqs start at 1\n\
             1 session_start\n2 turn_end\n3 turn_end\n4 turn_end\nread 6, last 4\n\
             fails: session s-0001: an entry has seq -2; seqs start at 1",
        ),
        (
            "UPDATE entries SET seq = 0 WHERE seq = 5;".to_owned(),
            Span::after(Seq(2), 10),
            "3 turn_end\n4 turn_end\n! seq 5: entry missing (the next stored entry is seq 6)\n\
             6 turn_end\nread 3, last 6\n\
             fails: session s-0001 seq 5: entry missing (the next stored entry is seq 6)",
        ),
    ];
    for (sql, span, want) in cases {
        assert_eq!(check(&sql, span), want, "{sql} {span:?}");
    }
}

#[test]
fn check_end_holds_the_rows_to_the_session_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("podlog.db"), StoreOptions::default()).unwrap();
    let (id, _) = store.create_session(NewSession::default()).unwrap();
    let end = |end: u64, last_seq: u64| {
        store
            .with_reader(|conn| {
                read_rows(conn, id.as_str(), Span::ALL, Form::Full, |rows| {
                    while rows.next_checked()?.is_some() {}
                    rows.check_end(Seq(end), Seq(last_seq))
                })
            })
            .map_or_else(
                |e| e.to_string().replace(id.as_str(), "S"),
                |()| "ok".to_owned(),
            )
    };
    assert_eq!(end(1, 1), "ok");
    assert_eq!(end(1, 3), "ok", "a cut at the rows' end");
    assert_eq!(
        end(3, 3),
        "session S seq 2: the session row's last_seq is 3 but the entries end at seq 1"
    );
    assert_eq!(
        end(0, 0),
        "session S seq 2: the session row's last_seq is 0 but the entries end at seq 1"
    );
}
