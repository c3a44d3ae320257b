//! Snapshot tests over the session logs in `fixtures/logs/`: for each file,
//! what import yields, what a pod restored from it yields (an interrupted
//! run is closed), what `podlog show` prints, what compaction and fork make
//! of it, and what `podlog verify` reports. A malformed file must be refused
//! whole by import with its line number; the same lines written straight
//! into the tables, behind podlog's back, must be caught by verify.
//!
//! Clocks and ids are deterministic, so the snapshots need no redaction.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use podlog_entry::{Message, Seq, SessionId, StepClock};
use podlog_pod::{Pod, ScriptedDriver};
use podlog_store::{SequentialIds, Store, StoreOptions};

use crate::support::{podlog, TempDb};

fn options() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(StepClock::new(1_800_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("new")),
        ..StoreOptions::default()
    }
}

fn pretty(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    serde_json::to_string_pretty(&value).expect("pretty")
}

/// Writes the file's lines straight into the tables, checking nothing: what
/// a database edited behind podlog's back would hold.
fn load_raw(db: &Path, file: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // Not even JSON: nothing a table could hold.
        };
        if v["type"] == "podlog.session" {
            conn.execute(
                "INSERT INTO sessions (id, parent_id, parent_seq, origin, created_at, updated_at, \
                 last_seq, entry_count, title) VALUES (?1, NULL, NULL, 'new', ?2, ?3, ?4, ?4, ?5)",
                rusqlite::params![
                    v["id"].as_str(),
                    v["created_at"].as_i64(),
                    v["updated_at"].as_i64(),
                    v["last_seq"].as_i64(),
                    v["title"].as_str()
                ],
            )
            .unwrap();
            // Keep a parent reference even when the parent is not there.
            if let Some(parent) = v["parent_id"].as_str() {
                conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
                conn.execute(
                    "UPDATE sessions SET parent_id = ?2, parent_seq = ?3, origin = ?4 WHERE id = ?1",
                    rusqlite::params![v["id"].as_str(), parent, v["parent_seq"].as_i64(), v["origin"].as_str()],
                )
                .unwrap();
            }
        } else {
            let entry = &v["entry"];
            conn.execute(
                "INSERT INTO entries (session_id, seq, ts, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    v["session_id"].as_str(),
                    v["seq"].as_i64(),
                    entry["ts"].as_i64().unwrap_or(0),
                    entry["type"].as_str().unwrap_or("?"),
                    entry.to_string()
                ],
            )
            .unwrap();
        }
    }
}

fn verify_report(store: &Store) -> String {
    match store.verify(None) {
        Ok(problems) if problems.is_empty() => "ok\n".to_owned(),
        Ok(problems) => problems.iter().map(|p| format!("{p}\n")).collect(),
        Err(e) => format!("verify failed: {e}\n"),
    }
}

fn check(path: &Path) -> String {
    let db = TempDb::new();
    let store = Arc::new(Store::open(&db.path, options()).unwrap());
    let mut out = String::new();
    let file = std::fs::File::open(path).unwrap();
    let imported = store.import(std::io::BufReader::new(file), |_| {});
    out.push_str("== import ==\n");
    let transfer = match imported {
        Ok(t) => {
            let ids: Vec<String> = t.sessions.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "{} sessions, {} entries: {}",
                ids.len(),
                t.entries,
                ids.join(", ")
            );
            t
        }
        Err(e) => {
            let _ = writeln!(out, "refused: {e}");
            assert!(
                store.sessions().unwrap().is_empty(),
                "a refused import writes nothing"
            );
            drop(store);
            let raw = TempDb::new();
            drop(Store::open(&raw.path, options()).unwrap());
            load_raw(&raw.path, path);
            let store = Store::open(&raw.path, options()).unwrap();
            out.push_str("\n== verify, with the same lines written behind podlog's back ==\n");
            out.push_str(&verify_report(&store));
            return out;
        }
    };

    out.push_str("\n== verify ==\n");
    out.push_str(&verify_report(&store));

    for id in &transfer.sessions {
        let show = podlog(&db.path, &["show", id.as_str()]);
        assert_eq!(show.code, 0, "{}", show.stderr);
        let _ = write!(out, "\n== podlog show {id} ==\n{}", show.stdout);
    }

    // Restore the last session into a pod: a run left open is closed.
    let last: SessionId = transfer.sessions.last().cloned().expect("a session");
    let before = store.session(&last).unwrap().last_seq;
    let pod = Pod::restore(store.clone(), &last, Box::new(ScriptedDriver::demo())).unwrap();
    let after = store.session(&last).unwrap().last_seq;
    let _ = writeln!(
        out,
        "\n== restore {last} ==\nmirror ends at seq {}",
        pod.sink().end_seq()
    );
    for c in store.entries_after(&last, before, 10).unwrap() {
        let _ = writeln!(out, "appended on restore: {} {}", c.seq, c.entry.to_json());
    }
    assert_eq!(pod.sink().end_seq(), after);
    pod.shutdown();
    drop(pod);

    // Compaction of the last session, and forks of it at a few cuts.
    let (compacted, start) = store
        .compact(
            &last,
            vec![Message::System {
                text: "summary of the fixture".to_owned(),
            }],
        )
        .unwrap();
    let _ = writeln!(
        out,
        "\n== compact {last} -> {compacted} ==\n{}",
        pretty(&start.entry.to_json())
    );
    let cuts = [Seq(1), Seq(after.get() / 2), after];
    for at in cuts {
        match store.fork(&last, at) {
            Ok((forked, start)) => {
                let history = match &*start.entry {
                    podlog_entry::LogEntry::SessionStart { history, .. } => history.len(),
                    _ => unreachable!("a fork starts with a SessionStart"),
                };
                let _ = writeln!(
                    out,
                    "\n== fork {last} at {at} -> {forked}: {history} history messages =="
                );
            }
            Err(e) => {
                let _ = writeln!(out, "\n== fork {last} at {at} ==\nrefused: {e}");
            }
        }
    }
    out.push_str("\n== verify after compact and fork ==\n");
    out.push_str(&verify_report(&store));
    out
}

#[test]
fn fixture_logs() {
    insta::glob!("../../fixtures", "logs/*.jsonl", |path| {
        insta::assert_snapshot!(check(path));
    });
}
