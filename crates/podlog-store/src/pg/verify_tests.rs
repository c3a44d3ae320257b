//! Verification on PostgreSQL, checked against the SQLite store's: the same
//! sessions (imported into both from one export) edited behind podlog's
//! back with the same SQL must be reported with the same problems, in the
//! same words, and a sound store with none. Guards against a PostgreSQL
//! verify that misses a gap, trusts a counter, a payload or a payload
//! reference, or stops at the first problem.

use podlog_entry::SessionId;

use super::super::jsonl::tests::{export_all, lines, source, Backend};
use crate::StoreError;

/// Problems only SQLite's verify looks for (see the module docs of
/// `pg/verify.rs`).
fn sqlite_only(line: &&str) -> bool {
    line.starts_with("database: integrity check") || line.starts_with("database: search index")
}

/// Imports the source sessions into both stores, runs `sql` on both, and
/// returns what PostgreSQL's verify reports, one problem a line, after
/// checking that SQLite's reports the same (for the whole store and for
/// each session alone).
fn check(sql: &str) -> String {
    let file = export_all(&source());
    let [mut sqlite, mut pg] = Backend::both();
    for b in [&mut sqlite, &mut pg] {
        b.import(&file).unwrap();
        b.corrupt(sql);
    }
    let on_pg = lines(&pg.verify(None).unwrap());
    let on_sqlite = lines(&sqlite.verify(None).unwrap());
    let on_sqlite: Vec<&str> = on_sqlite.lines().filter(|l| !sqlite_only(l)).collect();
    assert_eq!(on_pg, on_sqlite.join("\n"), "{sql}");
    for s in pg.sessions() {
        assert_eq!(
            lines(&pg.verify(Some(&s.id)).unwrap()),
            lines(&sqlite.verify(Some(&s.id)).unwrap()),
            "{sql}: session {}",
            s.id
        );
    }
    on_pg.replace(BIG, "<big>")
}

/// The hash of the large string of [`source`], out of line in s-0001 seq 4
/// and s-0002 seq 1 and 2; `<big>` in the expectations.
const BIG: &str = "abd7c391591f010fd363339a1a31e3e075720c6317eafa3bbbced42a1dc3cdc4";

fn id(text: &str) -> SessionId {
    SessionId::new(text).unwrap()
}

#[test]
fn a_sound_store_has_no_problems_and_an_unknown_session_is_an_error() {
    assert_eq!(check("SELECT 1"), "");
    let [sqlite, pg] = Backend::both();
    for b in [&sqlite, &pg] {
        let e = b.verify(Some(&id("nope"))).unwrap_err();
        assert!(
            matches!(e, StoreError::UnknownSession(_)),
            "{}: {e}",
            b.name()
        );
        assert_eq!(
            b.verify(None).unwrap(),
            vec![],
            "{}: an empty store",
            b.name()
        );
    }
}

#[test]
fn a_gap_is_reported_with_the_counters_it_breaks() {
    assert_eq!(
        check("DELETE FROM entries WHERE session_id = 's-0001' AND seq = 3"),
        "session s-0001 seq 3: entry missing (the next stored entry is seq 4)\n\
         session s-0001: entry_count counter is 6 but 5 entries are stored\n\
         session s-0001: stored_bytes counter is 9313 but its entries hold 9192 bytes"
    );
}

#[test]
fn counters_that_disagree_with_the_rows() {
    assert_eq!(
        check(
            "UPDATE sessions SET last_seq = 8, entry_count = 40, stored_bytes = 7 \
             WHERE id = 's-0001'"
        ),
        "session s-0001: last_seq counter is 8 but the last stored entry is seq 6\n\
         session s-0001: entry_count counter is 40 but 6 entries are stored\n\
         session s-0001: stored_bytes counter is 7 but its entries hold 9313 bytes"
    );
}

#[test]
fn a_payload_whose_text_does_not_match_its_hash() {
    assert_eq!(
        check("UPDATE payloads SET text = 'tampered'"),
        "session s-0001 seq 4: payload <big> (the string at $.output) is corrupt: \
         its text hashes to ad5aa819e308010edbe8184da4cd808875e9908e28be001c2ce45a36001517e0\n\
         session s-0002 seq 1: payload <big> (the string at $.history[2].output) is corrupt: \
         its text hashes to ad5aa819e308010edbe8184da4cd808875e9908e28be001c2ce45a36001517e0\n\
         session s-0002 seq 2: payload <big> (the string at $.output) is corrupt: \
         its text hashes to ad5aa819e308010edbe8184da4cd808875e9908e28be001c2ce45a36001517e0"
    );
}

#[test]
fn a_dangling_payload_reference() {
    assert_eq!(
        check("DELETE FROM payloads"),
        "session s-0001 seq 4: payload <big> (the string at $.output) is missing\n\
         session s-0002 seq 1: payload <big> (the string at $.history[2].output) is missing\n\
         session s-0002 seq 2: payload <big> (the string at $.output) is missing"
    );
}

#[test]
fn payload_refs_missing_and_stale() {
    assert_eq!(
        check(
            "DELETE FROM payload_refs WHERE session_id = 's-0001'; \
             INSERT INTO payload_refs (hash, session_id, seq) \
             VALUES ('0000000000000000000000000000000000000000000000000000000000000000', 's-0003', 1)"
        ),
        "session s-0001 seq 4: payload_refs lacks its reference to payload <big>\n\
         session s-0003 seq 1: payload_refs lists payload \
         0000000000000000000000000000000000000000000000000000000000000000, \
         which the entry does not reference"
    );
}

#[test]
fn a_parent_seq_past_the_parents_end() {
    assert_eq!(
        check("UPDATE sessions SET parent_seq = 99 WHERE id = 's-0002'"),
        "session s-0002: parent s-0001@99 does not exist: session s-0001 has no seq 99\n\
         session s-0002 seq 1: the session row says forked from s-0001@99 \
         but its SessionStart says forked from s-0001@4"
    );
}

#[test]
fn bodies_that_do_not_decode_or_misplace_the_session_start() {
    assert_eq!(
        check(
            "UPDATE entries SET body = '{\"type\":\"turn_end\",\"ts\":1,\"turn_count\":1}' \
             WHERE session_id = 's-0001' AND seq = 1; \
             UPDATE entries SET body = '{\"type\":\"user_input\"}' \
             WHERE session_id = 's-0001' AND seq = 2; \
             UPDATE entries SET kind = 'x', ts = 0 WHERE session_id = 's-0002' AND seq = 2"
        ),
        "session s-0001 seq 1: seq 1 holds a turn_end instead of a SessionStart\n\
         session s-0001 seq 1: kind column says session_start but the body's type is turn_end\n\
         session s-0001 seq 1: ts column is 1700000000000 but the body's ts is 1\n\
         session s-0001 seq 2: body does not decode: malformed user_input entry: missing field `ts`\n\
         session s-0001: stored_bytes counter is 9313 but its entries hold 9069 bytes\n\
         session s-0002 seq 2: kind column says x but the body's type is tool_result\n\
         session s-0002 seq 2: ts column is 0 but the body's ts is 7"
    );
}

#[test]
fn the_scope_is_read_from_the_counters() {
    let file = export_all(&source());
    let [sqlite, pg] = Backend::both();
    for b in [&sqlite, &pg] {
        b.import(&file).unwrap();
        assert_eq!(b.verify_scope(None).unwrap(), (3, 9), "{}", b.name());
        assert_eq!(
            b.verify_scope(Some(&id("s-0001"))).unwrap(),
            (1, 6),
            "{}",
            b.name()
        );
        assert_eq!(
            b.verify_scope(Some(&id("nope"))).unwrap(),
            (0, 0),
            "{}",
            b.name()
        );
    }
}

#[test]
fn entries_of_a_session_that_has_no_row() {
    let file = export_all(&source());
    let [mut sqlite, mut pg] = Backend::both();
    let insert = "INSERT INTO entries (session_id, seq, ts, kind, body) \
                  VALUES ('ghost', 1, 1, 'turn_end', '{\"type\":\"turn_end\",\"ts\":1,\"turn_count\":1}')";
    for b in [&mut sqlite, &mut pg] {
        b.import(&file).unwrap();
    }
    sqlite.corrupt(insert);
    // The foreign key is a trigger on PostgreSQL: the admin edits as a
    // replica would, with triggers off.
    pg.corrupt(&format!("SET session_replication_role = replica; {insert}"));
    let on_pg = lines(&pg.verify(None).unwrap());
    assert_eq!(
        on_pg,
        "session ghost: 1 entries stored for a session that has no session row"
    );
    let on_sqlite = lines(&sqlite.verify(None).unwrap());
    let on_sqlite: Vec<&str> = on_sqlite.lines().filter(|l| !sqlite_only(l)).collect();
    assert_eq!(on_pg, on_sqlite.join("\n"));
}

#[test]
fn payload_references_that_are_not_a_list_are_reported_not_fatal() {
    let file = export_all(&source());
    let [_, mut pg] = Backend::both();
    pg.import(&file).unwrap();
    // The payload_refs triggers would refuse it: edit as a replica would.
    pg.corrupt(
        "SET session_replication_role = replica; \
         UPDATE entries SET payloads = '{\"hash\":1}' WHERE session_id = 's-0001' AND seq = 4",
    );
    assert_eq!(
        lines(&pg.verify(None).unwrap()).replace(BIG, "<big>"),
        "session s-0001 seq 4: payload_refs lists payload <big>, which the entry does not \
         reference\n\
         session s-0001 seq 4: payload references are malformed: invalid type: map, \
         expected a sequence at line 1 column 0\n\
         session s-0001: stored_bytes counter is 9313 but its entries hold 1109 bytes"
    );
}
