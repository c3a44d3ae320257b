//! Search: what is indexed, paging, filters, malformed queries, payloads,
//! rollback, deletes, VACUUM, the migration's backfill, and the batches in
//! which pending entries are indexed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{AssistantContent, LogEntry, StepClock, SystemItem};
use podlog_sink::SessionLogSink;

use super::*;
use crate::commit::Fault;
use crate::{NewSession, SequentialIds, SqliteSessionWriter, StoreOptions};

fn options() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(StepClock::new(1_700_000_000_000, 1000)),
        ids: Arc::new(SequentialIds::new("s")),
        ..StoreOptions::default()
    }
}

struct Session {
    writer: SqliteSessionWriter,
    sink: SessionLogSink,
}

impl Session {
    fn new(store: &Arc<SqliteStore>) -> Self {
        let (id, start) = store.create_session(NewSession::default()).unwrap();
        Self {
            sink: SessionLogSink::with_initial([start]).unwrap(),
            writer: store.session_writer(&id).unwrap(),
        }
    }
    fn id(&self) -> SessionId {
        self.writer.session().clone()
    }
    fn add(&mut self, entry: LogEntry) -> Seq {
        self.writer.append(entry, &self.sink).unwrap()
    }
}

fn user(ts: u64, text: &str) -> LogEntry {
    LogEntry::UserInput {
        ts,
        text: text.to_owned(),
        attachments: vec![],
    }
}

fn output(ts: u64, text: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts,
        call_id: "c1".to_owned(),
        output: text.to_owned(),
        is_error: false,
    }
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_owned(),
        ..SearchQuery::default()
    }
}

fn hits(store: &SqliteStore, q: &SearchQuery) -> Vec<(String, u64, String)> {
    store
        .search(q)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.session.to_string(), h.seq.get(), h.kind))
        .collect()
}

fn open(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir.path().join("podlog.db"), options()).unwrap())
}

#[test]
fn pending_entries_are_tokenized_like_the_index() {
    let tokenize = |sql: &str| {
        let start = sql.find("tokenize = ").expect("a tokenize clause");
        let rest = &sql[start..];
        rest[..rest.find(')').unwrap()].trim().to_owned()
    };
    let migration = crate::schema::migrations()
        .iter()
        .find(|m| m.0 == 5)
        .unwrap()
        .2;
    assert_eq!(
        tokenize(LOAD_PENDING),
        tokenize(&migration[migration.find("CREATE VIRTUAL TABLE search").unwrap()..])
    );
}

/// How many searchable entries wait for the next batch.
fn pending(store: &SqliteStore) -> i64 {
    store
        .writer()
        .query_row("SELECT count(*) FROM search_pending_text", [], |r| r.get(0))
        .unwrap()
}

/// How many entries the index itself holds.
fn indexed(store: &SqliteStore) -> i64 {
    store
        .writer()
        .query_row("SELECT count(*) FROM search_docsize", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn entries_are_found_while_pending_and_after_their_batch_moves_them_into_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut a = Session::new(&store);
    let mut b = Session::new(&store);
    let mut want = Vec::new();
    let mut q = query("batchword");
    q.limit = 1000;
    // Entries wait until the rowid reaches the last batch's plus 64, then
    // all are indexed at once. Each step, every hit is found once, newest
    // first, whichever side it is on.
    for i in 0..150u64 {
        let s = if i % 2 == 0 { &mut a } else { &mut b };
        let seq = s.add(user(i, &format!("batchword number{i}")));
        want.insert(0, (s.id().to_string(), seq.get(), "user_input".to_owned()));
        let n = i as i64 + 1;
        // Rowids 1 and 2 are the sessions' starts, which are not searchable.
        let rowid = n + 2;
        let upto = rowid / 64 * 64;
        let waiting = if upto == 0 { n } else { rowid - upto };
        assert_eq!(pending(&store), waiting, "after {n} entries");
        assert_eq!(indexed(&store), n - waiting, "after {n} entries");
        if i % 7 == 0 || waiting <= 1 || waiting == 63 {
            assert_eq!(hits(&store, &q), want, "after {n} entries");
            let mut one = query(&format!("number{i}"));
            one.session = Some(s.id());
            assert_eq!(hits(&store, &one), want[..1], "after {n} entries");
        }
    }
    // Pages cross from the pending entries into the index: 24 pending.
    let mut paged = Vec::new();
    q.limit = 5;
    loop {
        let page = store.search(&q).unwrap();
        paged.extend(
            page.hits
                .iter()
                .map(|h| (h.session.to_string(), h.seq.get(), h.kind.clone())),
        );
        match page.next {
            Some(next) => q.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, want);
    // Snippets are marked the same way on both sides.
    let page = store.search(&query("number149 OR number0")).unwrap();
    let snippets: Vec<_> = page.hits.iter().map(|h| h.snippet.clone()).collect();
    assert_eq!(
        snippets,
        [
            "batchword \u{2}number149\u{3}",
            "batchword \u{2}number0\u{3}"
        ]
    );
    integrity(&store);
    assert!(store.verify(None).unwrap().is_empty());

    // Deleting a session takes its entries out of the index, and out of
    // what is pending.
    let a_id = a.id();
    drop(a);
    {
        let conn = store.writer();
        conn.execute("DELETE FROM entries WHERE session_id = ?1", [a_id.as_str()])
            .unwrap();
        conn.execute("DELETE FROM sessions WHERE id = ?1", [a_id.as_str()])
            .unwrap();
    }
    assert_eq!(pending(&store), 12);
    assert_eq!(indexed(&store), 63);
    integrity(&store);
    assert!(store.verify(None).unwrap().is_empty());
    let only_b: Vec<_> = want
        .iter()
        .filter(|h| h.0 == b.id().as_str())
        .cloned()
        .collect();
    q.limit = 1000;
    q.cursor = None;
    assert_eq!(hits(&store, &q), only_b);

    // The shell's way to move them now, and a rebuild, keep every hit.
    store
        .writer()
        .execute_batch("INSERT INTO search_flush (flush) VALUES (1)")
        .unwrap();
    assert_eq!((pending(&store), indexed(&store)), (0, 75));
    assert_eq!(hits(&store, &q), only_b);
    b.add(user(200, "batchword again"));
    assert_eq!(pending(&store), 1);
    store.rebuild_search_index().unwrap();
    assert_eq!((pending(&store), indexed(&store)), (0, 76));
    assert_eq!(hits(&store, &q).len(), 76);
    integrity(&store);
    assert!(store.verify(None).unwrap().is_empty());

    // With the newest rows deleted, SQLite gives their rowids again, below
    // the last batch's: such an entry is indexed at once.
    let b_id = b.id();
    drop(b);
    {
        let conn = store.writer();
        conn.execute("DELETE FROM entries WHERE session_id = ?1", [b_id.as_str()])
            .unwrap();
        conn.execute("DELETE FROM sessions WHERE id = ?1", [b_id.as_str()])
            .unwrap();
    }
    assert_eq!((pending(&store), indexed(&store)), (0, 0));
    let mut c = Session::new(&store);
    let seq = c.add(user(300, "batchword reused"));
    assert_eq!((pending(&store), indexed(&store)), (0, 1));
    assert_eq!(
        hits(&store, &q),
        [(c.id().to_string(), seq.get(), "user_input".to_owned())]
    );
    integrity(&store);
    assert!(store.verify(None).unwrap().is_empty());
}

#[test]
fn every_searchable_kind_is_indexed_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    s.add(user(1, "alpha from the user"));
    s.add(LogEntry::AssistantItem {
        ts: 2,
        item: AssistantContent::Text {
            text: "bravo in the answer".to_owned(),
        },
    });
    s.add(LogEntry::AssistantItem {
        ts: 3,
        item: AssistantContent::Reasoning {
            text: "charlie while thinking".to_owned(),
        },
    });
    s.add(LogEntry::AssistantItem {
        ts: 4,
        item: AssistantContent::ToolCall {
            id: "c1".to_owned(),
            name: "grep_files".to_owned(),
            arguments: serde_json::json!({"pattern": "delta\nepsilon"}),
        },
    });
    s.add(output(5, "foxtrot in the output"));
    s.add(LogEntry::SystemItem {
        ts: 6,
        item: SystemItem::Notification {
            message: "golf message".to_owned(),
            body: "hotel body".to_owned(),
        },
    });
    s.add(LogEntry::LlmUsage {
        ts: 7,
        model: "india-model".to_owned(),
        input_tokens: 1,
        output_tokens: 1,
        cached_tokens: 0,
    });
    s.add(LogEntry::RunErrored {
        ts: 8,
        kind: podlog_entry::RunErrorKind::Tool,
        message: "juliett failed".to_owned(),
    });
    let id = s.id().to_string();
    for (word, seq, kind) in [
        ("alpha", 2, "user_input"),
        ("bravo", 3, "assistant_item"),
        ("charlie", 4, "assistant_item"),
        ("grep_files", 5, "assistant_item"),
        ("delta", 5, "assistant_item"),
        ("epsilon", 5, "assistant_item"),
        ("foxtrot", 6, "tool_result"),
        ("golf", 7, "system_item"),
        ("hotel", 7, "system_item"),
    ] {
        assert_eq!(
            hits(&store, &query(word)),
            [(id.clone(), seq, kind.to_owned())],
            "{word}"
        );
    }
    for word in ["india", "juliett"] {
        assert_eq!(hits(&store, &query(word)), [], "{word} is not indexed");
    }
    let page = store.search(&query("foxtrot")).unwrap();
    assert_eq!(
        page.hits[0].snippet,
        format!("{MARK_START}foxtrot{MARK_END} in the output")
    );
    assert_eq!(
        page.hits[0].snippet_parts(),
        [
            ("foxtrot".to_owned(), true),
            (" in the output".to_owned(), false)
        ]
    );
    assert_eq!(page.hits[0].ts, 5);
    assert_eq!(page.next, None);
}

#[test]
fn pages_run_newest_first_through_every_hit_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut a = Session::new(&store);
    let mut b = Session::new(&store);
    let mut expected = Vec::new();
    for i in 0..53u64 {
        let (s, text) = if i % 3 == 0 {
            (&mut b, format!("common word {i}"))
        } else {
            (&mut a, format!("common other {i}"))
        };
        let seq = s.add(user(i, &text));
        expected.push((s.id().to_string(), seq.get(), "user_input".to_owned()));
        s.add(output(i, "unrelated"));
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut q = query("common");
    q.limit = 10;
    let mut pages = 0;
    loop {
        let page = store.search(&q).unwrap();
        pages += 1;
        assert!(page.hits.len() <= 10);
        seen.extend(
            page.hits
                .iter()
                .map(|h| (h.session.to_string(), h.seq.get(), h.kind.clone())),
        );
        match page.next {
            Some(next) => q.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 6);
    assert_eq!(seen, expected);

    // Filters: one session, one kind, a time.
    let mut q = query("common");
    q.session = Some(b.id());
    q.limit = 100;
    let only_b: Vec<_> = expected
        .iter()
        .filter(|h| h.0 == b.id().as_str())
        .cloned()
        .collect();
    assert_eq!(only_b.len(), 18);
    assert_eq!(hits(&store, &q), only_b);
    q.kind = Some("tool_result".to_owned());
    assert_eq!(hits(&store, &q), []);
    let mut q = query("unrelated");
    q.kind = Some("tool_result".to_owned());
    q.limit = 1000;
    assert_eq!(hits(&store, &q).len(), 53);
    q.since = Some(50);
    assert_eq!(hits(&store, &q).len(), 3);
    // Paging with a session filter.
    let mut q = query("common");
    q.session = Some(a.id());
    q.limit = 7;
    let mut seen = Vec::new();
    loop {
        let page = store.search(&q).unwrap();
        seen.extend(page.hits.iter().map(|h| h.seq.get()));
        match page.next {
            Some(next) => q.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 35);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
}

#[test]
fn query_shapes_phrases_prefixes_and_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    s.add(user(1, "the build failed with exit code 101"));
    s.add(user(2, "failed build, then exit"));
    s.add(user(3, "C++ \"quoted\" AND things"));
    let seqs = |q: &SearchQuery| -> Vec<u64> { hits(&store, q).into_iter().map(|h| h.1).collect() };
    assert_eq!(seqs(&query("\"build failed\"")), [2]);
    assert_eq!(seqs(&query("fail*")), [3, 2]);
    assert_eq!(seqs(&query("build NOT exit")), Vec::<u64>::new());
    assert_eq!(seqs(&query("NEAR(build code, 5)")), [2]);
    let mut plain = query("C++ \"quoted AND");
    plain.plain = true;
    assert_eq!(seqs(&plain), [4]);
    assert_eq!(plain_query("a \"b"), "\"a\" \"\"\"b\"");
}

#[test]
fn malformed_queries_and_filters_are_errors_naming_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    s.add(user(1, "some text"));
    for text in [
        "\"unbalanced",
        "AND",
        "foo NEAR(",
        "nosuchcolumn: foo",
        "",
        "   ",
        "(a",
    ] {
        match store.search(&query(text)) {
            Err(StoreError::BadSearch { query, reason }) => {
                assert_eq!(query, text);
                assert!(!reason.is_empty());
                let message = StoreError::BadSearch {
                    query: query.clone(),
                    reason,
                }
                .to_string();
                assert!(message.starts_with("bad search query"), "{message}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let mut q = query("text");
    q.kind = Some("turn_end".to_owned());
    assert!(matches!(
        store.search(&q),
        Err(StoreError::BadSearch { .. })
    ));
    let mut q = query("text");
    q.limit = MAX_LIMIT + 1;
    assert!(matches!(
        store.search(&q),
        Err(StoreError::BadSearch { .. })
    ));
    // SqliteStore still usable.
    assert_eq!(hits(&store, &query("text")).len(), 1);
}

#[test]
fn a_term_beyond_the_preview_of_an_out_of_line_output_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    let big = format!("{} needleinpayload tail", "filler ".repeat(THRESHOLD / 4));
    let seq = s.add(output(1, &big));
    let refs: String = store
        .writer()
        .query_row(
            "SELECT payloads FROM entries WHERE session_id = ?1 AND seq = ?2",
            rusqlite::params![s.id().as_str(), seq.get()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(refs.contains("$.output"), "stored out of line: {refs}");
    let page = store.search(&query("needleinpayload")).unwrap();
    assert_eq!(page.hits.len(), 1);
    assert!(
        page.hits[0]
            .snippet
            .contains(&format!("{MARK_START}needleinpayload{MARK_END}")),
        "{}",
        page.hits[0].snippet
    );
}

#[test]
fn a_rolled_back_append_is_not_indexed_and_a_committed_one_is_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    store.inject(Fault::BeforeCommit);
    let err = s
        .writer
        .append(user(1, "rolledbackword"), &s.sink)
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
    assert_eq!(hits(&store, &query("rolledbackword")), []);
    let seq = s.add(user(2, "committedword"));
    assert_eq!(
        hits(&store, &query("committedword")),
        [(s.id().to_string(), seq.get(), "user_input".to_owned())]
    );
}

fn integrity(store: &SqliteStore) {
    store
        .writer()
        .execute_batch("INSERT INTO search (search, rank) VALUES ('integrity-check', 1)")
        .unwrap();
}

#[test]
fn deleting_a_session_removes_its_hits_and_vacuum_then_rebuild_keeps_them_right() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut a = Session::new(&store);
    let mut b = Session::new(&store);
    let big = format!("{} deepword", "x ".repeat(THRESHOLD));
    for i in 0..20 {
        a.add(user(i, "shared gone"));
        b.add(user(i, "shared kept"));
    }
    a.add(output(99, &big));
    b.add(output(99, &big));
    let b_id = b.id();
    let a_id = a.id();
    drop(a);
    {
        let conn = store.writer();
        conn.execute("DELETE FROM entries WHERE session_id = ?1", [a_id.as_str()])
            .unwrap();
        conn.execute("DELETE FROM sessions WHERE id = ?1", [a_id.as_str()])
            .unwrap();
    }
    integrity(&store);
    assert_eq!(hits(&store, &query("gone")), []);
    let mut q = query("shared OR deepword");
    q.limit = 100;
    let before = hits(&store, &q);
    assert_eq!(before.len(), 21);
    assert!(before.iter().all(|h| h.0 == b_id.as_str()));
    store.writer().execute_batch("VACUUM").unwrap();
    store.rebuild_search_index().unwrap();
    integrity(&store);
    assert_eq!(hits(&store, &q), before);
}

#[test]
fn upgrading_indexes_existing_entries_in_chunks_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for &(version, _, sql) in crate::schema::migrations() {
            if version >= 5 {
                break;
            }
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, entry_count)
             VALUES ('old', 'new', 1, 1, 12001, 12001);
             INSERT INTO entries (session_id, seq, ts, kind, body)
             VALUES ('old', 1, 1, 'session_start', '{\"type\":\"session_start\",\"ts\":1}');
             WITH RECURSIVE n (i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 12001)
             INSERT INTO entries (session_id, seq, ts, kind, body)
             SELECT 'old', i, i, 'user_input',
                    json_object('type', 'user_input', 'ts', i, 'text', 'old word' || i)
             FROM n;",
        )
        .unwrap();
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            progress: Some(Arc::new(move |done, total| {
                counted.fetch_add(1, Ordering::Relaxed);
                seen.lock().unwrap().push((done, total));
            })),
            ..options()
        },
    )
    .unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [(0, 12001), (5000, 12001), (10000, 12001), (12001, 12001)]
    );
    let mut q = query("word12001 OR word2");
    q.limit = 10;
    assert_eq!(
        hits(&store, &q),
        [
            ("old".to_owned(), 12001, "user_input".to_owned()),
            ("old".to_owned(), 2, "user_input".to_owned())
        ]
    );
    let mut q = query("old");
    q.limit = 1000;
    let mut total = 0;
    loop {
        let page = store.search(&q).unwrap();
        total += page.hits.len();
        match page.next {
            Some(n) => q.cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(total, 12000);
    integrity(&store);
    drop(store);
    // Opening again migrates nothing and reports nothing.
    let before = count.load(Ordering::Relaxed);
    drop(SqliteStore::open(&path, options()).unwrap());
    assert_eq!(count.load(Ordering::Relaxed), before);
}

#[test]
fn since_takes_iso_times_and_times_ago() {
    let now = 1_700_000_000_000;
    assert_eq!(parse_since("2023-11-14", now), Ok(1_699_920_000_000));
    assert_eq!(
        parse_since("2023-11-14T22:13:20Z", now),
        Ok(1_700_000_000_000)
    );
    assert_eq!(
        parse_since("2023-11-14T22:13:20.123Z", now),
        Ok(1_700_000_000_123)
    );
    assert_eq!(parse_since("2023-11-14T22:13", now), Ok(1_699_999_980_000));
    assert_eq!(parse_since("2000-02-29", now), Ok(951_782_400_000));
    assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400_000));
    assert_eq!(parse_since("12h", now), Ok(now - 12 * 3_600_000));
    assert_eq!(parse_since("30m", now), Ok(now - 30 * 60_000));
    assert_eq!(parse_since("1700000000000", now), Ok(now));
    for bad in [
        "",
        "yesterday",
        "7x",
        "2023-13-01",
        "2023-11-14T25:00",
        "d",
        "2023-1-1",
    ] {
        let err = parse_since(bad, now).unwrap_err();
        assert!(err.starts_with("bad time"), "{bad:?}: {err}");
    }
}

#[test]
fn imported_and_forked_sessions_are_indexed_by_the_same_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    let big = format!("{} importedpayloadword", "y ".repeat(THRESHOLD));
    s.add(user(1, "importedword in the input"));
    s.add(output(2, &big));
    let id = s.id();
    drop(s);
    let mut jsonl = Vec::new();
    store.export(&id, false, &mut jsonl, |_| {}).unwrap();

    let other_dir = tempfile::tempdir().unwrap();
    let other = Arc::new(
        SqliteStore::open(
            other_dir.path().join("other.db"),
            StoreOptions {
                ids: Arc::new(SequentialIds::new("o")),
                ..options()
            },
        )
        .unwrap(),
    );
    other.import(&jsonl[..], |_| {}).unwrap();
    for word in ["importedword", "importedpayloadword"] {
        assert_eq!(hits(&other, &query(word)).len(), 1, "{word}");
    }
    // A fork starts with the parent's history in its SessionStart, which
    // is not indexed: a word is found where it was said, once.
    let (fork, _) = other.fork(&id, Seq(2)).unwrap();
    assert_eq!(
        hits(&other, &query("importedword")),
        [(id.to_string(), 2, "user_input".to_owned())]
    );
    let sink = SessionLogSink::with_initial(other.entries(&fork).unwrap()).unwrap();
    let mut writer = other.session_writer(&fork).unwrap();
    let seq = writer.append(user(3, "forkedword"), &sink).unwrap();
    assert_eq!(
        hits(&other, &query("forkedword")),
        [(fork.to_string(), seq.get(), "user_input".to_owned())]
    );
    integrity(&other);
}

#[test]
fn verify_reports_an_index_out_of_step_with_the_entries_until_it_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut s = Session::new(&store);
    for i in 0..3 {
        s.add(user(i, "some words"));
    }
    store
        .writer()
        .execute_batch("INSERT INTO search_flush (flush) VALUES (1)")
        .unwrap();
    for i in 3..5 {
        s.add(user(i, "some words"));
    }
    assert_eq!((pending(&store), indexed(&store)), (2, 3));
    assert!(store.verify(None).unwrap().is_empty());
    // What a renumbering VACUUM does to the index: entries keyed by rowids
    // the index does not know, below the rowid it believes indexed.
    store
        .writer()
        .execute_batch(
            "CREATE TEMP TABLE moved AS SELECT rowid AS r, * FROM entries; \
             DROP TRIGGER search_before_delete; DROP TRIGGER search_after_insert; \
             DELETE FROM entries; \
             INSERT INTO entries (rowid, session_id, seq, ts, kind, body, payloads) \
             SELECT r + 100, session_id, seq, ts, kind, body, payloads FROM moved; \
             UPDATE search_indexed SET upto = 200;",
        )
        .unwrap();
    let problems: Vec<String> = store
        .verify(None)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "database: search index: 3 indexed rows name no searchable entry and 5 searchable \
             entries are not indexed (after a VACUUM the index must be rebuilt: UPDATE \
             search_indexed SET upto = coalesce((SELECT max(rowid) FROM entries), 0); INSERT \
             INTO search (search) VALUES ('rebuild');)"
        ]
    );
    store.rebuild_search_index().unwrap();
    integrity(&store);
    // Verified on the read connection that saw the index before.
    let after = store.verify(None).unwrap();
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(hits(&store, &query("words")).len(), 5);
    assert_eq!(pending(&store), 0);
}
