//! Guards against documentation that lies and views that break under load:
//! every query of `docs/inspect.md` is run, as written there, by the stock
//! `sqlite3 -readonly` shell against a database that a live writer keeps
//! appending to, and each answer is checked against what the store holds.
//! The writer must never see "database is locked" while the shell reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::{AssistantContent, LogEntry, Message, Seq, StepClock, SystemItem};
use podlog_pod::script::Script;
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store, StoreOptions};

use crate::support::{Run, TempDb};

/// The numbered queries of docs/inspect.md: (number, title, SQL).
fn documented_queries() -> Vec<(usize, String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inspect.md"))
        .expect("docs/inspect.md");
    let mut out = Vec::new();
    let mut title: Option<(usize, String)> = None;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("### ") {
            let (n, t) = rest.split_once(". ").expect("### N. title");
            title = Some((n.parse().expect("query number"), t.to_owned()));
        } else if line == "```sql" {
            let sql: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            if let Some((n, t)) = title.take() {
                out.push((n, t, sql.join("\n")));
            }
        }
    }
    out
}

fn shell(db: &std::path::Path, session: &str, sql: &str) -> Vec<Vec<String>> {
    let run: Run = std::process::Command::new("sqlite3")
        .arg("-readonly")
        .arg("-cmd")
        .arg(format!(".parameter set :session \"'{session}'\""))
        .arg("-separator")
        .arg("\t")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell must be installed")
        .into();
    assert_eq!(run.code, 0, "{sql}\n{}", run.stderr);
    assert!(run.stderr.is_empty(), "{sql}\n{}", run.stderr);
    run.stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_documented_queries_answer_correctly_while_a_pod_writes() {
    let db = TempDb::new();
    let options = StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 7)),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&db.path, options).unwrap());
    let script = Script::demo();
    let clock = StepClock::new(1_700_000_000_000, 5);

    // A: three scripted runs. B: a fork of A. C: a compaction of A with an
    // unfinished run. L: the live session the writer keeps appending to.
    let (a, start) = store
        .create_session(NewSession {
            title: Some("main".into()),
            ..NewSession::default()
        })
        .unwrap();
    let sink_a = SessionLogSink::with_initial([start]).unwrap();
    let mut writer_a = store.session_writer(&a).unwrap();
    for run in 0..3 {
        for entry in script.run(run, &format!("r{run}"), &clock) {
            writer_a.append(entry, &sink_a).unwrap();
        }
    }
    // A build log large enough to go out of line, twice: stored once.
    let log = "compiling podlog v0.1.0\n".repeat(64 * 1024 / 24);
    for ts in [1_700_000_050_000, 1_700_000_060_000] {
        let entry = LogEntry::Extension {
            ts,
            name: "build-log".into(),
            data: serde_json::json!({ "log": log }),
        };
        writer_a.append(entry, &sink_a).unwrap();
    }
    drop(writer_a);
    let (b, _) = store.fork(&a, Seq(11)).unwrap();
    let (c, start_c) = store
        .compact(
            &a,
            vec![Message::System {
                text: "summary".into(),
            }],
        )
        .unwrap();
    let sink_c = SessionLogSink::with_initial([start_c]).unwrap();
    store
        .session_writer(&c)
        .unwrap()
        .append(
            LogEntry::UserInput {
                ts: 1_700_000_100_000,
                text: "left hanging".into(),
                attachments: vec![],
            },
            &sink_c,
        )
        .unwrap();
    let (l, start_l) = store.create_session(NewSession::default()).unwrap();
    let sink_l = SessionLogSink::with_initial([start_l]).unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let mut writer_l = store.session_writer(&l).unwrap();
        let running = running.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let entry = LogEntry::SystemItem {
                    ts: 1_700_000_000_000 + n,
                    item: SystemItem::Notification {
                        message: format!("tick {n}"),
                        body: String::new(),
                    },
                };
                // Any error here, "database is locked" included, fails the test.
                writer_l.append(entry, &sink_l).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };

    let entries_a = store.entries(&a).unwrap();
    let queries = documented_queries();
    assert_eq!(
        queries.iter().map(|q| q.0).collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>(),
        "docs/inspect.md numbers its thirteen queries"
    );
    for (n, title, sql) in &queries {
        let rows = shell(&db.path, a.as_str(), sql);
        let what = format!("query {n} ({title})");
        match n {
            1 => {
                let mut ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
                ids.sort();
                let mut want = vec![a.as_str(), b.as_str(), c.as_str(), l.as_str()];
                want.sort();
                assert_eq!(ids, want, "{what}");
            }
            2 => {
                let seqs: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
                let last = entries_a.len() as u64;
                assert_eq!(seqs, (last - 19..=last).rev().collect::<Vec<_>>(), "{what}");
                for r in &rows {
                    let seq: usize = r[0].parse().unwrap();
                    assert_eq!(r[2], entries_a[seq - 1].entry.kind(), "{what}");
                    // The view cuts at 120 characters; the summary marks
                    // its own cut with an ellipsis.
                    let summary = entries_a[seq - 1].entry.summary();
                    match summary.strip_suffix('…') {
                        Some(cut) => assert!(r[3].starts_with(cut), "{what}: {r:?}"),
                        None => assert_eq!(r[3], summary, "{what}"),
                    }
                }
            }
            3 => {
                let usage: Vec<(u64, u64)> = entries_a
                    .iter()
                    .filter_map(|c| match &*c.entry {
                        LogEntry::LlmUsage { input_tokens, .. } => Some((1, *input_tokens)),
                        _ => None,
                    })
                    .collect();
                let calls: u64 = usage.iter().map(|u| u.0).sum();
                let input: u64 = usage.iter().map(|u| u.1).sum();
                assert_eq!(
                    rows,
                    [vec![
                        script.model.clone(),
                        calls.to_string(),
                        input.to_string(),
                        rows[0][3].clone(),
                        rows[0][4].clone()
                    ]],
                    "{what}"
                );
            }
            4 => {
                let want: Vec<String> = entries_a
                    .iter()
                    .filter(|c| matches!(&*c.entry, LogEntry::ToolResult { is_error: true, .. }))
                    .map(|c| c.seq.to_string())
                    .collect();
                assert!(!want.is_empty());
                let got: Vec<String> = rows.iter().map(|r| r[1].clone()).collect();
                assert_eq!(got, want, "{what}");
                assert!(rows.iter().all(|r| r[3] == "tool"), "{what}");
            }
            5 => {
                let tree: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
                assert_eq!(tree.len(), 4, "{what}");
                assert!(
                    tree.contains(&format!("  {b} (fork at 11)").as_str()),
                    "{what}: {tree:?}"
                );
                let cut = entries_a.len();
                assert!(
                    tree.contains(&format!("  {c} (compaction at {cut})").as_str()),
                    "{what}: {tree:?}"
                );
                let pos = |id: &str| {
                    tree.iter()
                        .position(|t| t.trim_start().starts_with(id))
                        .unwrap()
                };
                assert!(pos(a.as_str()) < pos(b.as_str()) && pos(a.as_str()) < pos(c.as_str()));
            }
            6 => {
                let want: Vec<String> = script.runs.iter().map(|r| r.user.clone()).collect();
                let got: Vec<String> = rows.iter().map(|r| r[1].clone()).collect();
                assert_eq!(got, want, "{what}");
            }
            7 => {
                let mut counts = std::collections::BTreeMap::<String, u64>::new();
                for c in &entries_a {
                    if let LogEntry::AssistantItem {
                        item: AssistantContent::ToolCall { name, .. },
                        ..
                    } = &*c.entry
                    {
                        *counts.entry(name.clone()).or_default() += 1;
                    }
                }
                let mut got = std::collections::BTreeMap::new();
                for r in &rows {
                    got.insert(r[0].clone(), r[1].parse::<u64>().unwrap());
                }
                assert_eq!(got, counts, "{what}");
            }
            8 => {
                let calls = entries_a
                    .iter()
                    .filter(|c| {
                        matches!(
                            &*c.entry,
                            LogEntry::AssistantItem {
                                item: AssistantContent::ToolCall { .. },
                                ..
                            }
                        )
                    })
                    .count();
                assert_eq!(rows.len(), calls, "{what}");
                assert!(
                    rows.iter().all(|r| !r[2].is_empty()),
                    "every call has its result"
                );
                assert_eq!(rows.iter().filter(|r| r[3] == "1").count(), 1, "{what}");
            }
            9 => {
                assert_eq!(
                    rows,
                    [vec![
                        c.to_string(),
                        "2".to_owned(),
                        "left hanging".to_owned()
                    ]],
                    "{what}"
                );
            }
            10 => {
                assert_eq!(rows.len(), 4, "{what}");
                let counts: Vec<u64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
                assert!(
                    counts.windows(2).all(|w| w[0] >= w[1]),
                    "{what}: {counts:?}"
                );
                for r in &rows {
                    let id = store.resolve(&r[0]).unwrap();
                    let now = store.session(&id).unwrap().entry_count;
                    assert!(r[1].parse::<u64>().unwrap() <= now, "{what}");
                }
            }
            11 => {
                let got: Vec<(String, String)> =
                    rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
                let want: Vec<(String, String)> = entries_a
                    .iter()
                    .map(|c| (c.seq.to_string(), c.entry.to_json()))
                    .collect();
                assert_eq!(got, want, "{what}");
                assert!(rows
                    .iter()
                    .any(|r| r[1].contains(&log.replace('\n', "\\n"))));
            }
            12 => {
                let lean = store.previews_after(&a, Seq::ZERO, usize::MAX).unwrap();
                let refs: Vec<_> = lean.iter().flat_map(|c| c.payload_refs()).collect();
                assert_eq!(refs.len(), 2, "{what}");
                assert_eq!(
                    rows,
                    [vec![
                        refs[0].hash.to_string(),
                        log.len().to_string(),
                        "2".to_owned()
                    ]],
                    "{what}"
                );
            }
            13 => check_search_query(&store, &rows, &what),
            other => panic!("unexpected query number {other}"),
        }
    }
    let health = shell(&db.path, a.as_str(), "PRAGMA integrity_check;");
    assert_eq!(health, [vec!["ok".to_owned()]]);

    running.store(false, Ordering::Relaxed);
    let written = writer.join().expect("the writer never failed");
    assert!(written > 0);
    assert_eq!(store.session(&l).unwrap().last_seq, Seq(written + 1));

    // Query 13 again with hits on both sides of the index: the writer's
    // notifications have moved A's entries into it by now, and these wait
    // for the next batch.
    let sink_l = SessionLogSink::with_initial(store.entries(&l).unwrap()).unwrap();
    let mut writer_l = store.session_writer(&l).unwrap();
    let reader =
        rusqlite::Connection::open_with_flags(&db.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let pending = |seq: Seq| -> bool {
        reader
            .query_row(
                "SELECT count(*) FROM search_pending_text WHERE entry_rowid = \
                 (SELECT rowid FROM entries WHERE session_id = ?1 AND seq = ?2)",
                rusqlite::params![l.as_str(), seq.get() as i64],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    };
    let mut newest = Vec::new();
    while newest.len() < 2 {
        let entry = LogEntry::UserInput {
            ts: 1_700_000_200_000,
            text: "testing what is pending".into(),
            attachments: vec![],
        };
        let seq = writer_l.append(entry, &sink_l).unwrap();
        // The append that completes a batch moves everything: start over.
        if pending(seq) {
            newest.push(seq);
        } else {
            newest.clear();
        }
    }
    let (_, _, sql) = &queries[12];
    let rows = shell(&db.path, a.as_str(), sql);
    check_search_query(&store, &rows, "query 13 with pending entries");
    let from_l: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == l.as_str()).collect();
    assert_eq!(from_l.len(), 2, "{rows:?}");
    assert!(from_l.iter().all(|r| pending(Seq(r[1].parse().unwrap()))));
    assert!(
        rows.iter().any(|r| r[0] == a.as_str()),
        "hits from the index too: {rows:?}"
    );
}

/// Query 13's rows are what `Store::search` answers for `test*`.
fn check_search_query(store: &Store, rows: &[Vec<String>], what: &str) {
    let page = store
        .search(&podlog_store::SearchQuery {
            text: "test*".to_owned(),
            limit: 20,
            ..Default::default()
        })
        .unwrap();
    assert!(page.hits.len() >= 3, "{what}");
    let want: Vec<Vec<String>> = page
        .hits
        .iter()
        .map(|h| vec![h.session.to_string(), h.seq.to_string(), h.kind.clone()])
        .collect();
    let got: Vec<Vec<String>> = rows.iter().map(|r| r[..3].to_vec()).collect();
    assert_eq!(got, want, "{what}");
    for r in rows {
        assert!(r[3].to_lowercase().contains("[test"), "{what}: {r:?}");
    }
}
