//! Search on PostgreSQL, checked against the SQLite store: the same
//! scenario is written to both and every query must answer alike (the same
//! hits in the same order, the same words marked, the same refusals), and
//! like the expected text written here. Then what only PostgreSQL has: the
//! query translation, snippets, a failed append, deletes.
//!
//! Failures guarded against: a kind indexed that should not be (or the
//! reverse); a payload indexed by its preview; a page that repeats or skips
//! a hit; a filter ignored; a malformed query that is not `BadSearch`, or
//! that reaches the database as syntax; a failed append or a deleted session
//! that leaves hits behind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{AssistantContent, LogEntry, Seq, SessionId, SystemItem};
use podlog_sink::SessionLogSink;

use super::*;
use crate::payloads::tests::output;
use crate::pg::tests::{options, turn_end, Schema};
use crate::pg::{PgSessionWriter, PgStore};
use crate::search::MAX_LIMIT;
use crate::{NewSession, SqliteSessionWriter, SqliteStore};

/// A store either backend: sessions made, entries appended, searches run.
trait Backend {
    fn create(&mut self, new: NewSession) -> SessionId;
    fn add(&mut self, id: &SessionId, entry: LogEntry) -> Result<Seq>;
    fn search(&self, q: &SearchQuery) -> Result<SearchPage>;
}

struct Lite {
    writers: HashMap<SessionId, (SqliteSessionWriter, SessionLogSink)>,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl Lite {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Lite {
            writers: HashMap::new(),
            store: Arc::new(SqliteStore::open(dir.path().join("podlog.db"), options()).unwrap()),
            _dir: dir,
        }
    }
}

impl Backend for Lite {
    fn create(&mut self, new: NewSession) -> SessionId {
        let (id, start) = self.store.create_session(new).unwrap();
        let writer = self.store.session_writer(&id).unwrap();
        let sink = SessionLogSink::with_initial([start]).unwrap();
        self.writers.insert(id.clone(), (writer, sink));
        id
    }
    fn add(&mut self, id: &SessionId, entry: LogEntry) -> Result<Seq> {
        let (w, sink) = self.writers.get_mut(id).unwrap();
        w.append(entry, sink)
    }
    fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        self.store.search(q)
    }
}

pub(crate) struct Pg {
    writers: HashMap<SessionId, (PgSessionWriter, SessionLogSink)>,
    pub(crate) store: Arc<PgStore>,
    pub(crate) schema: Schema,
}

impl Pg {
    pub(crate) fn new() -> Self {
        let schema = Schema::new();
        Pg {
            writers: HashMap::new(),
            store: schema.open(),
            schema,
        }
    }
}

impl Backend for Pg {
    fn create(&mut self, new: NewSession) -> SessionId {
        let (id, start) = self.store.create_session(new).unwrap();
        let writer = self.store.session_writer(&id).unwrap();
        let sink = SessionLogSink::with_initial([start]).unwrap();
        self.writers.insert(id.clone(), (writer, sink));
        id
    }
    fn add(&mut self, id: &SessionId, entry: LogEntry) -> Result<Seq> {
        let (w, sink) = self.writers.get_mut(id).unwrap();
        w.append(entry, sink)
    }
    fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        self.store.search(q)
    }
}

fn user(ts: u64, text: &str) -> LogEntry {
    LogEntry::UserInput {
        ts,
        text: text.to_owned(),
        attachments: vec![],
    }
}

fn said(ts: u64, item: AssistantContent) -> LogEntry {
    LogEntry::AssistantItem { ts, item }
}

fn out(ts: u64, text: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts,
        call_id: format!("c{ts}"),
        output: text.to_owned(),
        is_error: false,
    }
}

/// The scenario: two sessions with an entry of every searchable kind, a
/// few that are not searched, and a tool output stored out of line whose
/// last word lies far beyond its preview.
fn fill(b: &mut dyn Backend) -> (SessionId, SessionId) {
    let a = b.create(NewSession {
        system_prompt: Some("indiaword is in the prompt".into()),
        title: Some("juliettitle".into()),
        ..NewSession::default()
    });
    let entries = [
        user(2, "alpha migration please"),
        said(
            3,
            AssistantContent::Text {
                text: "bravo running the migration".into(),
            },
        ),
        said(
            4,
            AssistantContent::Reasoning {
                text: "charlie thinks".into(),
            },
        ),
        said(
            5,
            AssistantContent::ToolCall {
                id: "c5".into(),
                name: "shell_exec".into(),
                arguments: serde_json::json!({"cmd": "echo deltaword\nsecond line"}),
            },
        ),
        out(6, "foxtrot migrated ok"),
        LogEntry::SystemItem {
            ts: 7,
            item: SystemItem::Notification {
                message: "golf".into(),
                body: "hotel migration".into(),
            },
        },
        turn_end(8),
        LogEntry::LlmUsage {
            ts: 9,
            model: "limamodel".into(),
            input_tokens: 1,
            output_tokens: 2,
            cached_tokens: 0,
        },
        out(10, &format!("{} zuluword", output(10, 2 * THRESHOLD))),
    ];
    for e in entries {
        b.add(&a, e).unwrap();
    }
    let second = b.create(NewSession::default());
    b.add(&second, user(11, "migration in session b")).unwrap();
    b.add(&second, out(12, "kilo")).unwrap();
    (a, second)
}

/// A page as text: one hit a line (`session:seq kind [marked words]`), then
/// the cursor; or the error's variant.
fn render(r: Result<SearchPage>) -> String {
    match r {
        Err(StoreError::BadSearch { .. }) => "BadSearch".to_owned(),
        Err(e) => format!("other error: {e}"),
        Ok(page) => {
            let mut s = String::new();
            for h in &page.hits {
                let marked: BTreeSet<String> = h
                    .snippet_parts()
                    .into_iter()
                    .filter(|p| p.1)
                    .flat_map(|p| {
                        words_of(&p.0)
                            .into_iter()
                            .map(|w| w.to_lowercase())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let marked: Vec<String> = marked.into_iter().collect();
                s.push_str(&format!(
                    "{}:{} {} [{}] ",
                    h.session,
                    h.seq,
                    h.kind,
                    marked.join(",")
                ));
            }
            if page.next.is_some() {
                s.push_str("+more");
            }
            s.trim_end().to_owned()
        }
    }
}

fn q(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_owned(),
        ..SearchQuery::default()
    }
}

/// Every query of the scenario, each as `query => result` on a line.
fn check(b: &dyn Backend, a: &SessionId, second: &SessionId) -> String {
    let mut cases: Vec<(String, SearchQuery)> = [
        "alpha",
        "bravo",
        "charlie",
        "shell",
        "exec",
        "deltaword",
        "second",
        "foxtrot",
        "golf",
        "hotel",
        "indiaword",
        "juliettitle",
        "limamodel",
        "zuluword",
        "migration",
        "MIGRATION",
        "migrat*",
        "\"running the migration\"",
        "\"the running\"",
        "\"shell_exec\"",
        "shell_exec",
        "alpha OR kilo",
        "migration NOT hotel",
        "migration AND NOT hotel",
        "(alpha OR bravo) migration",
        "alpha OR bravo migration",
        "migration kilo",
        "migration AND (foxtrot OR kilo OR alpha)",
        "\"unterminated",
        "(alpha",
        "alpha)",
        "alpha AND",
        "NOT alpha",
        "alpha NOT",
        "OR",
        "*",
        "alpha.beta",
        "\"...\"",
        "alpha \"...\"",
        "alpha AND \"...\"",
        "\"...\" NOT alpha",
        "\"...\" OR alpha",
        "alpha NOT \"...\"",
        "NEAR",
        "alpha NEAR",
        "alpha:x",
        "alpha*",
        "alph *",
        "\"alpha migration\"*",
        "(alpha)",
        "((alpha OR kilo) AND (migration OR kilo))",
        "alpha AND bravo OR kilo",
        "kilo OR alpha AND migration",
        "migration NOT hotel NOT alpha",
        "   ",
        "",
    ]
    .into_iter()
    .map(|t| (format!("{t:?}"), q(t)))
    .collect();
    let mut plain = q("migrated ok");
    plain.plain = true;
    cases.push(("plain \"migrated ok\"".into(), plain));
    let mut plain = q("shell_exec (NOT");
    plain.plain = true;
    cases.push(("plain \"shell_exec (NOT\"".into(), plain));
    let mut only = q("migration");
    only.session = Some(second.clone());
    cases.push(("migration in the second session".into(), only));
    let mut only = q("migration");
    only.session = Some(a.clone());
    only.limit = 2;
    cases.push(("migration in the first session, 2".into(), only));
    let mut kind = q("migrat*");
    kind.kind = Some("tool_result".into());
    cases.push(("migrat* in tool results".into(), kind));
    let mut kind = q("migration");
    kind.kind = Some("turn_end".into());
    cases.push(("migration in turn ends".into(), kind));
    let mut since = q("migration");
    since.since = Some(7);
    cases.push(("migration since 7".into(), since));
    let mut limit = q("migration");
    limit.limit = MAX_LIMIT + 1;
    cases.push(("migration, too many".into(), limit));
    cases
        .into_iter()
        .map(|(name, query)| format!("{name} => {}\n", render(b.search(&query))))
        .collect()
}

/// What both backends answer. `indiaword` is in the session's system
/// prompt, `juliettitle` its title, `limamodel` a usage entry: none is
/// searched. `zuluword` ends a tool output stored out of line. FTS5 joins
/// phrases only by implicit AND and has no `AND NOT`.
const EXPECTED: &str = r#"
"alpha" => s-0001:2 user_input [alpha]
"bravo" => s-0001:3 assistant_item [bravo]
"charlie" => s-0001:4 assistant_item [charlie]
"shell" => s-0001:5 assistant_item [shell]
"exec" => s-0001:5 assistant_item [exec]
"deltaword" => s-0001:5 assistant_item [deltaword]
"second" => s-0001:5 assistant_item [second]
"foxtrot" => s-0001:6 tool_result [foxtrot]
"golf" => s-0001:7 system_item [golf]
"hotel" => s-0001:7 system_item [hotel]
"indiaword" => 
"juliettitle" => 
"limamodel" => 
"zuluword" => s-0001:10 tool_result [zuluword]
"migration" => s-0002:2 user_input [migration] s-0001:7 system_item [migration] s-0001:3 assistant_item [migration] s-0001:2 user_input [migration]
"MIGRATION" => s-0002:2 user_input [migration] s-0001:7 system_item [migration] s-0001:3 assistant_item [migration] s-0001:2 user_input [migration]
"migrat*" => s-0002:2 user_input [migration] s-0001:7 system_item [migration] s-0001:6 tool_result [migrated] s-0001:3 assistant_item [migration] s-0001:2 user_input [migration]
"\"running the migration\"" => s-0001:3 assistant_item [migration,running,the]
"\"the running\"" => 
"\"shell_exec\"" => s-0001:5 assistant_item [exec,shell]
"shell_exec" => s-0001:5 assistant_item [exec,shell]
"alpha OR kilo" => s-0002:3 tool_result [kilo] s-0001:2 user_input [alpha]
"migration NOT hotel" => s-0002:2 user_input [migration] s-0001:3 assistant_item [migration] s-0001:2 user_input [migration]
"migration AND NOT hotel" => BadSearch
"(alpha OR bravo) migration" => BadSearch
"alpha OR bravo migration" => s-0001:3 assistant_item [bravo,migration] s-0001:2 user_input [alpha]
"migration kilo" => 
"migration AND (foxtrot OR kilo OR alpha)" => s-0001:2 user_input [alpha,migration]
"\"unterminated" => BadSearch
"(alpha" => BadSearch
"alpha)" => BadSearch
"alpha AND" => BadSearch
"NOT alpha" => BadSearch
"alpha NOT" => BadSearch
"OR" => BadSearch
"*" => BadSearch
"alpha.beta" => BadSearch
"\"...\"" => 
"alpha \"...\"" => s-0001:2 user_input [alpha]
"alpha AND \"...\"" => 
"\"...\" NOT alpha" => 
"\"...\" OR alpha" => s-0001:2 user_input [alpha]
"alpha NOT \"...\"" => s-0001:2 user_input [alpha]
"NEAR" => 
"alpha NEAR" => 
"alpha:x" => BadSearch
"alpha*" => s-0001:2 user_input [alpha]
"alph *" => s-0001:2 user_input [alpha]
"\"alpha migration\"*" => s-0001:2 user_input [alpha,migration]
"(alpha)" => s-0001:2 user_input [alpha]
"((alpha OR kilo) AND (migration OR kilo))" => s-0002:3 tool_result [kilo] s-0001:2 user_input [alpha,migration]
"alpha AND bravo OR kilo" => s-0002:3 tool_result [kilo]
"kilo OR alpha AND migration" => s-0002:3 tool_result [kilo] s-0001:2 user_input [alpha,migration]
"migration NOT hotel NOT alpha" => s-0002:2 user_input [migration] s-0001:3 assistant_item [migration]
"   " => BadSearch
"" => BadSearch
plain "migrated ok" => s-0001:6 tool_result [migrated,ok]
plain "shell_exec (NOT" => 
migration in the second session => s-0002:2 user_input [migration]
migration in the first session, 2 => s-0001:7 system_item [migration] s-0001:3 assistant_item [migration] +more
migrat* in tool results => s-0001:6 tool_result [migrated]
migration in turn ends => BadSearch
migration since 7 => s-0002:2 user_input [migration] s-0001:7 system_item [migration]
migration, too many => BadSearch
"#;

#[test]
fn every_query_answers_as_on_sqlite() {
    let mut lite = Lite::new();
    let mut pg = Pg::new();
    let (a, second) = fill(&mut lite);
    assert_eq!((a.clone(), second.clone()), fill(&mut pg));
    let on_lite = check(&lite, &a, &second);
    let on_pg = check(&pg, &a, &second);
    assert_eq!(on_pg, on_lite, "PostgreSQL (left) and SQLite (right)");
    assert_eq!(on_pg, EXPECTED.trim_start());
}

/// Each query as the `tsquery` text it becomes, or the reason it is
/// refused.
fn translate(query: &str) -> String {
    match parse(query) {
        Ok(node) => tsquery(&node).unwrap_or_else(|| "(matches nothing)".to_owned()),
        Err(reason) => format!("refused: {reason}"),
    }
}

#[test]
fn queries_become_tsqueries_of_quoted_words_only() {
    let cases = [
        "alpha",
        "Alpha Beta",
        "\"running the migration\"",
        "migrat*",
        "\"src/main.rs\"",
        "\"quick bro\"*",
        "snake_case",
        "a OR b c",
        "a b OR c",
        "a AND b NOT c",
        "(a OR b) AND c",
        "a NOT (b OR c)",
        "\"it's & | ! <-> :*\"",
        "\"a \"\"quoted\"\" word\"",
        "\"...\"",
        "\"...\" OR a",
        "x NOT \"...\"",
        "café ñandú",
        "'; DROP TABLE entries; --",
        "a & b",
        "a:*",
        "NEAR(a b, 5)",
        "near",
        "NEAR",
        "a AND NOT b",
        "NOT a",
        "(a",
        "a)",
        "()",
        "\"open",
        "^a",
        "a + b",
        "{text}: a",
        "and or not",
    ];
    let got: String = cases
        .iter()
        .map(|q| format!("{q} => {}\n", translate(q)))
        .collect();
    insta::assert_snapshot!(got);
}

/// A malformed query is `BadSearch` naming the query and the problem, from
/// the parser, before any SQL runs; NEAR is refused by name.
#[test]
fn malformed_queries_are_bad_search_naming_query_and_problem() {
    let pg = Pg::new();
    for (text, problem) in [
        ("NEAR(alpha bravo)", "NEAR(...) is not supported"),
        ("\"open", "unterminated string"),
        ("(alpha", "a parenthesis is not closed"),
        ("alpha AND", "syntax error at the end of the query"),
        ("alpha; DROP", "syntax error near \";\""),
        ("a:b", "not supported on PostgreSQL"),
        ("", "the query is empty"),
    ] {
        match pg.store.search(&q(text)) {
            Err(StoreError::BadSearch { query, reason }) => {
                assert_eq!(query, text);
                assert!(reason.contains(problem), "{text:?}: {reason}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let mut kind = q("alpha");
    kind.kind = Some("session_start".into());
    let err = pg.store.search(&kind).unwrap_err().to_string();
    assert!(err.contains("\"session_start\" is not searchable"), "{err}");
}

#[test]
fn snippets_mark_the_densest_run_of_matches() {
    let long: String = (0..100).map(|i| format!("w{i} ")).collect();
    let text = format!("{long}the deploy failed: deploy.sh exited 2 {long}deploy");
    // Many matches: the window is found in one pass, not one per match.
    let many = "word ".repeat(200_000);
    let started = std::time::Instant::now();
    let s = snippet(&many, &parse("word").unwrap());
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    assert!(s.starts_with('\u{2}') && s.ends_with('…'), "{s}");
    let cases = [
        ("deploy", text.as_str()),
        ("\"deploy failed\"", text.as_str()),
        ("w1*", "w1 x w10 y w2"),
        (
            "b",
            "a b a a a a a a a a a a a a a a a a a a a a a a a a b b b b a b",
        ),
        ("\"a b\" OR \"b c\"", "x a b c y a b"),
        ("alpha OR zzz", "alpha beta"),
        ("alpha NOT beta", "alpha gamma"),
        ("nothing", "no match here"),
    ];
    let got: String = cases
        .iter()
        .map(|(query, text)| {
            let node = parse(query).unwrap();
            let s = snippet(text, &node)
                .replace(MARK_START, "[")
                .replace(MARK_END, "]");
            format!("{query} => {s}\n")
        })
        .collect();
    insta::assert_snapshot!(got);
}

/// Every hit once, newest first, however the pages are cut, with filters.
#[test]
fn paging_visits_every_hit_once_newest_first() {
    let mut pg = Pg::new();
    let a = pg.create(NewSession::default());
    let b = pg.create(NewSession::default());
    let mut all = Vec::new();
    for i in 0..30u64 {
        let (id, text) = if i % 3 == 0 {
            (&b, format!("common word {i}"))
        } else {
            (&a, format!("common thing {i}"))
        };
        let seq = pg.add(id, user(100 + i, &text)).unwrap();
        all.push((id.clone(), seq));
    }
    all.reverse();
    for limit in [1, 7, 30, 31] {
        let mut seen = Vec::new();
        let mut query = q("common");
        query.limit = limit;
        loop {
            let page = pg.store.search(&query).unwrap();
            assert!(page.hits.len() <= limit as usize);
            seen.extend(page.hits.iter().map(|h| (h.session.clone(), h.seq)));
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, all, "pages of {limit}");
    }
    let mut query = q("common");
    query.session = Some(b.clone());
    query.since = Some(110);
    query.limit = 2;
    let page = pg.store.search(&query).unwrap();
    let seqs: Vec<u64> = page.hits.iter().map(|h| h.seq.get()).collect();
    assert_eq!(seqs, [11, 10]);
    query.cursor = page.next;
    let seqs: Vec<u64> = pg
        .store
        .search(&query)
        .unwrap()
        .hits
        .iter()
        .map(|h| h.seq.get())
        .collect();
    assert_eq!(seqs, [9, 8], "ts 118, 115, 112, 109 ... stop at since 110");
}

/// An append that fails at COMMIT leaves no search row behind; deleting a
/// session's entries takes its search rows with them.
#[test]
fn a_failed_append_indexes_nothing_and_a_deleted_session_leaves_no_hits() {
    let mut pg = Pg::new();
    let a = pg.create(NewSession::default());
    let b = pg.create(NewSession::default());
    pg.add(&a, user(2, "kept words")).unwrap();
    pg.add(&b, user(2, "doomed words")).unwrap();
    pg.schema.sql(
        "CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$; \
         CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON {s}.entries \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.refuse()",
    );
    assert!(pg.add(&a, user(3, "phantom words")).is_err());
    pg.schema.sql("DROP TRIGGER refuse ON {s}.entries");
    assert!(pg.store.search(&q("phantom")).unwrap().hits.is_empty());
    assert_eq!(pg.schema.number("SELECT count(*) FROM {s}.search"), 2);
    assert_eq!(pg.store.search(&q("words")).unwrap().hits.len(), 2);

    let deleted = pg.schema.admin.execute(
        &format!(
            "DELETE FROM {}.entries WHERE session_id = $1",
            pg.schema.name
        ),
        &[&b.as_str()],
    );
    assert_eq!(deleted.map_err(|e| format!("{e:?}")), Ok(2));
    let hits = pg.store.search(&q("words")).unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].session, a);
    assert!(pg.store.search(&q("doomed")).unwrap().hits.is_empty());
    assert_eq!(pg.schema.number("SELECT count(*) FROM {s}.search"), 1);
}

/// Entries written before the index existed are indexed by the migration,
/// payloads whole; a NUL character in a body does not fail the index.
#[test]
fn the_migration_indexes_entries_already_there() {
    let mut s = Schema::new();
    let (_, _, v1) = crate::pg::migrate::migrations()[0];
    s.sql(&format!(
        "SET search_path = {{s}}; {v1}; \
         CREATE TABLE podlog_schema_version (one boolean NOT NULL PRIMARY KEY DEFAULT true \
           CHECK (one), version bigint NOT NULL); \
         INSERT INTO podlog_schema_version (version) VALUES (1); \
         INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, entry_count) \
           VALUES ('old', 'new', 1, 1, 3, 3); \
         INSERT INTO payloads (hash, size, text) VALUES (repeat('b', 64), 20, \
           'far beyond the cut: oldpayloadword'); \
         INSERT INTO entries (session_id, seq, ts, kind, body, payloads) VALUES \
           ('old', 1, 1, 'session_start', '{{\"type\":\"session_start\",\"ts\":1}}', NULL), \
           ('old', 2, 2, 'tool_result', \
            '{{\"type\":\"tool_result\",\"ts\":2,\"call_id\":\"c\",\"output\":\"preview\",\"is_error\":false}}', \
            '[{{\"path\":\"$.output\",\"hash\":\"{b}\",\"size\":20}}]'), \
           ('old', 3, 3, 'user_input', \
            '{{\"type\":\"user_input\",\"ts\":3,\"text\":\"nul\\u0000between \\\\u0000kept\"}}', NULL); \
         RESET search_path",
        b = "b".repeat(64)
    ));
    let store = s.open();
    let found = |text: &str| -> Vec<u64> {
        store
            .search(&q(text))
            .unwrap()
            .hits
            .iter()
            .map(|h| h.seq.get())
            .collect()
    };
    assert_eq!(found("oldpayloadword"), [2]);
    assert!(found("preview").is_empty(), "the preview is not the text");
    assert_eq!(found("between"), [3]);
    assert_eq!(found("u0000kept"), [3], "an escaped backslash stays");
}

/// A text past what a `tsvector` holds (1 MiB of distinct words and
/// positions) is indexed up to its first 500,000 bytes instead of failing the append;
/// a string cut out of a tool call's arguments is indexed whole, under its
/// path in the arguments.
#[test]
fn huge_texts_and_nested_payloads_are_indexed_without_failing_the_append() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    // About 1.6 MB of distinct words ("x0a1b2..."): far over the limit.
    let mut huge = String::from("firstword ");
    let mut n = 0u64;
    while huge.len() < 1_600_000 {
        huge.push_str(&format!("x{n:x} "));
        n += 1;
    }
    huge.push_str("lastword");
    pg.add(&id, out(2, &huge)).unwrap();
    let mut content = output(3, 2 * THRESHOLD);
    content.push_str(" nestedword");
    pg.add(
        &id,
        said(
            3,
            AssistantContent::ToolCall {
                id: "c3".into(),
                name: "write_file".into(),
                arguments: serde_json::json!({"files": [{"path": "a.txt", "content": content}]}),
            },
        ),
    )
    .unwrap();
    let seqs = |text: &str| -> Vec<u64> {
        pg.store
            .search(&q(text))
            .unwrap()
            .hits
            .iter()
            .map(|h| h.seq.get())
            .collect()
    };
    assert!(pg.store.search_index_bytes().unwrap() > 500_000);
    assert_eq!(seqs("firstword"), [2]);
    assert_eq!(seqs("x10"), [2]);
    assert!(seqs("lastword").is_empty(), "past the first 500,000 bytes");
    assert_eq!(seqs("nestedword"), [3]);
    assert_eq!(seqs("\"write file\" nestedword"), [3]);
    let hit = &pg.store.search(&q("nestedword")).unwrap().hits[0];
    assert!(
        hit.snippet.contains("\u{2}nestedword\u{3}"),
        "{}",
        hit.snippet
    );
}

/// Rows edited behind the triggers' back are counted, and a rebuild puts
/// the index back in step with the entries.
#[test]
fn an_index_out_of_step_is_counted_and_rebuilt() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    pg.add(&id, user(2, "first words")).unwrap();
    pg.add(&id, user(3, "second words")).unwrap();
    assert_eq!(pg.store.search_index_mismatches().unwrap(), (0, 0));
    pg.schema.sql(
        "DELETE FROM {s}.search WHERE seq = 2; \
         INSERT INTO {s}.search (session_id, seq, ts, kind, words) \
         VALUES ('nowhere', 1, 1, 'user_input', 'ghost')",
    );
    assert_eq!(pg.store.search_index_mismatches().unwrap(), (1, 1));
    assert_eq!(pg.store.search(&q("ghost")).unwrap().hits.len(), 0);
    assert_eq!(pg.store.search(&q("first")).unwrap().hits.len(), 0);
    pg.store.rebuild_search_index().unwrap();
    assert_eq!(pg.store.search_index_mismatches().unwrap(), (0, 0));
    let seqs: Vec<u64> = pg
        .store
        .search(&q("words"))
        .unwrap()
        .hits
        .iter()
        .map(|h| h.seq.get())
        .collect();
    assert_eq!(seqs, [3, 2]);
}

/// Queries made at random from words, phrases and operators (a fixed
/// seed, so a failure repeats) answer alike on both backends: the same
/// hits, the same words marked, the same refusals, and never a panic.
#[test]
fn random_queries_answer_as_on_sqlite() {
    let mut lite = Lite::new();
    let mut pg = Pg::new();
    fill(&mut lite);
    fill(&mut pg);
    let parts = [
        "alpha",
        "migration",
        "kilo",
        "bravo",
        "hotel",
        "\"running the\"",
        "\"the migration\"",
        "\"...\"",
        "migrat*",
        "shell_exec",
        "AND",
        "OR",
        "NOT",
        "(",
        ")",
        "*",
        "NEAR",
        "\"alpha",
        "ok",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| -> usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut differ = Vec::new();
    let (mut refused, mut found) = (0, 0);
    for _ in 0..2000 {
        let len = 1 + next(6);
        let text: Vec<&str> = (0..len).map(|_| parts[next(parts.len())]).collect();
        let query = q(&text.join(" "));
        let (a, b) = (render(pg.search(&query)), render(lite.search(&query)));
        if a == "BadSearch" {
            refused += 1;
        } else if !a.is_empty() {
            found += 1;
        }
        if a != b {
            differ.push(format!("{:?}: PostgreSQL {a:?}, SQLite {b:?}", query.text));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Both kinds of answer are well represented.
    assert!(
        refused > 200 && found > 200,
        "{refused} refused, {found} found"
    );
}

/// An entry is found from the commit that writes it, not before: a search
/// while its transaction is open does not see its index row.
#[test]
fn a_search_is_never_ahead_of_the_commit() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    let schema = pg.schema.name.clone();
    let mut tx = pg.schema.admin.transaction().unwrap();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.entries (session_id, seq, ts, kind, body) \
             VALUES ($1, 2, 2, 'user_input', $2::text::json)"
        ),
        &[&id.as_str(), &user(2, "pendingword").to_json()],
    )
    .unwrap();
    let rows: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {schema}.search"), &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "indexed inside the transaction");
    assert!(pg.store.search(&q("pendingword")).unwrap().hits.is_empty());
    tx.commit().unwrap();
    let hits = pg.store.search(&q("pendingword")).unwrap().hits;
    assert_eq!((hits.len(), hits[0].seq.get()), (1, 2));
}

#[test]
fn verify_reports_search_rows_edited_behind_the_triggers_until_rebuilt() {
    let mut pg = Pg::new();
    let a = pg.create(NewSession::default());
    pg.add(&a, user(2, "first words")).unwrap();
    pg.add(&a, user(3, "second words")).unwrap();
    assert!(pg.store.verify(None).unwrap().is_empty());
    pg.schema
        .sql("DELETE FROM {s}.search WHERE seq = 2; UPDATE {s}.search SET seq = 99 WHERE seq = 3");
    let problems: Vec<String> = pg
        .store
        .verify(None)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "database: search index: 1 indexed rows name no searchable entry and 2 searchable \
          entries are not indexed (Store::rebuild_search_index rebuilds it)"
        ]
    );
    pg.store.rebuild_search_index().unwrap();
    assert!(pg.store.verify(None).unwrap().is_empty());
    assert_eq!(pg.store.search(&q("words")).unwrap().hits.len(), 2);
}

/// Waits (polling, up to 30 s) until `sql` counts `want`.
fn wait_for(schema: &mut Schema, sql: &str, want: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = schema.number(sql);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got}, want {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A writer's appends commit without their search rows; the indexer
/// indexes them soon after, with no search to prompt it, and moves the
/// session's mark; closing the writer deletes the session's progress row.
#[test]
fn a_writers_entries_are_indexed_after_their_commit_by_the_indexer() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    assert_eq!(
        pg.schema
            .number("SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'"),
        1,
        "the mark starts at the session's end"
    );
    pg.add(&id, user(2, "alphaword")).unwrap();
    pg.add(&id, out(3, "bravoword")).unwrap();
    wait_for(
        &mut pg.schema,
        "SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'",
        3,
    );
    assert_eq!(
        pg.schema
            .number("SELECT count(*) FROM {s}.search WHERE words @@ 'bravoword'::tsquery"),
        1
    );
    pg.writers.clear();
    assert_eq!(
        pg.schema.number("SELECT count(*) FROM {s}.search_progress"),
        0,
        "a writer that closes deletes its progress row"
    );
    assert_eq!(pg.store.search(&q("alphaword")).unwrap().hits.len(), 1);
}

/// Entries committed by a writer whose connection died before they were
/// indexed are found by the next search, counted by no verify, and the
/// next writer of the session keeps the older mark.
#[test]
fn entries_a_dead_writer_left_unindexed_are_found_and_caught_up() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    pg.add(&id, user(2, "charlieword")).unwrap();
    pg.add(&id, user(3, "deltaword")).unwrap();
    wait_for(
        &mut pg.schema,
        "SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'",
        3,
    );
    // The writer dies (its connection is ended), and its last entries are
    // made unindexed again, as if it had died before the indexer ran.
    let (writer, _sink) = pg.writers.remove(&id).unwrap();
    pg.schema.terminate(writer.backend_pid());
    drop(writer);
    pg.schema
        .sql("DELETE FROM {s}.search; UPDATE {s}.search_progress SET indexed_seq = 1");
    assert_eq!(
        pg.schema
            .number("SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'"),
        1,
        "a dead writer's row stays"
    );
    let second = pg.store.session_writer(&id).unwrap();
    assert_eq!(
        pg.schema
            .number("SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'"),
        1,
        "the next writer keeps the older mark"
    );
    assert_eq!(pg.store.search(&q("deltaword")).unwrap().hits.len(), 1);
    assert_eq!(pg.store.search(&q("charlieword")).unwrap().hits.len(), 1);
    assert_eq!(
        pg.schema
            .number("SELECT indexed_seq FROM {s}.search_progress WHERE session_id = 's-0001'"),
        3,
        "the search caught the session up"
    );
    assert_eq!(pg.store.search_index_mismatches().unwrap(), (0, 0));
    assert!(pg.store.verify(None).unwrap().is_empty());
    drop(second);
    assert_eq!(
        pg.schema.number("SELECT count(*) FROM {s}.search_progress"),
        0
    );
}

/// Entries written by anything but a session writer (here, import) are
/// indexed in their own transaction, as before schema 3.
#[test]
fn entries_written_without_a_writer_are_indexed_in_their_transaction() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    pg.add(&id, user(2, "echoword")).unwrap();
    pg.writers.clear();
    let mut export = Vec::new();
    pg.store.export(&id, false, &mut export, |_| {}).unwrap();
    let other = Pg::new();
    other.store.import(export.as_slice(), |_| {}).unwrap();
    let mut other_schema = other.schema;
    assert_eq!(
        other_schema.number("SELECT count(*) FROM {s}.search WHERE words @@ 'echoword'::tsquery"),
        1
    );
    assert_eq!(
        other_schema.number("SELECT count(*) FROM {s}.search_progress"),
        0
    );
}

/// Schema 5 computes words with one `replace` per punctuation character
/// instead of schema 2's regular expression; every lexeme and position must
/// stay the same, or entries indexed before and after would answer phrase
/// queries differently.
#[test]
fn the_words_of_schema_5_are_those_of_schema_2() {
    let mut pg = Pg::new();
    let texts = [
        "src/main.rs:12:5 -> fn main() { println!(\"hi\"); }",
        "snake_case and kebab-case, a--b...c;;;d",
        "mail me@example.com or see https://example.com/a?b=c&d=e#f",
        "1.5e-7 + 2,000.50 = v1.2.3-beta (\\n\\t \\\\ \\\" 'quoted')",
        "tabs\there\nnewlines\r\nand   spaces",
        "naïve café — “curly” … émoji 🎉 日本語のテキスト",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "",
        "word",
    ];
    for text in texts {
        let same: bool = pg
            .schema
            .admin
            .query_one(
                &format!(
                    "SELECT {0}.search_words($1) = to_tsvector('simple'::regconfig, \
                       regexp_replace($1, '[!-/:-@[-`{{-~]+', ' ', 'g'))",
                    pg.schema.name
                ),
                &[&text],
            )
            .unwrap()
            .get(0);
        assert!(same, "{text:?}");
    }
}

/// Schema 7's one insert trigger: a row with `appended_at` (a session
/// writer's append) is left to the catch-up, any other row is indexed in
/// its own statement, and the payloads of either are referenced at once.
#[test]
fn the_insert_trigger_indexes_all_but_writer_rows_and_references_payloads() {
    let mut pg = Pg::new();
    let id = pg.create(NewSession::default());
    pg.add(&id, user(2, "foxtrotword")).unwrap();
    pg.add(&id, out(3, &output(3, 2 * THRESHOLD))).unwrap();
    pg.add(&id, turn_end(4)).unwrap();
    let copy = |to: &str, appended_at: &str| {
        format!(
            "INSERT INTO {{s}}.entries (session_id, seq, ts, kind, body, payloads, \
               redactions, stored_bytes, appended_at) \
             SELECT '{to}', seq, ts, kind, body, payloads, redactions, stored_bytes, \
               {appended_at} \
             FROM {{s}}.entries WHERE session_id = 's-0001' AND seq > 1"
        )
    };
    let counts = |schema: &mut Schema, session: &str| {
        [
            schema.number(&format!(
                "SELECT count(*) FROM {{s}}.search WHERE session_id = '{session}'"
            )),
            schema.number(&format!(
                "SELECT count(*) FROM {{s}}.payload_refs WHERE session_id = '{session}'"
            )),
        ]
    };
    // Checked inside the inserting transaction: the indexer cannot have
    // indexed these rows, which belong to no writer.
    pg.schema.sql(&format!(
        "BEGIN; {}; {}",
        copy("writer-like", "appended_at"),
        copy("written-by-hand", "NULL")
    ));
    assert_eq!(
        counts(&mut pg.schema, "writer-like"),
        [0, 1],
        "a writer's rows: payloads referenced, words left to the catch-up"
    );
    assert_eq!(
        counts(&mut pg.schema, "written-by-hand"),
        [2, 1],
        "any other row: both searchable entries indexed, payloads referenced"
    );
    assert_eq!(
        pg.schema.number(
            "SELECT count(*) FROM {s}.search \
             WHERE session_id = 'written-by-hand' AND words @@ 'foxtrotword'::tsquery"
        ),
        1
    );
    pg.schema.sql("ROLLBACK");
    assert_eq!(counts(&mut pg.schema, "written-by-hand"), [0, 0]);
}

/// A tool call's arguments are read as they were written, on both
/// backends: their members in their order, no space added, so that a
/// phrase across two members matches alike and snippets read alike (as
/// `jsonb`, PostgreSQL orders members by length and adds spaces). Also
/// with a member stored out of line.
#[test]
fn tool_call_arguments_read_as_written_on_both_backends() {
    let mut lite = Lite::new();
    let mut pg = Pg::new();
    let long = format!("{} tangoword", output(4, 2 * THRESHOLD));
    let calls = [
        serde_json::json!({"path": "src/kiloword.rs", "n": 1.5, "nested": {"zz": 1, "a": [true, null]}}),
        serde_json::json!({"content": long, "path": "notes/limaword.md", "mode": "w"}),
    ];
    let mut answers = Vec::new();
    for b in [&mut lite as &mut dyn Backend, &mut pg] {
        let id = b.create(NewSession::default());
        for (n, arguments) in calls.iter().enumerate() {
            b.add(
                &id,
                said(
                    2 + n as u64,
                    AssistantContent::ToolCall {
                        id: format!("c{n}"),
                        name: "write_file".into(),
                        arguments: arguments.clone(),
                    },
                ),
            )
            .unwrap();
        }
        let mut seen = Vec::new();
        for query in [
            "\"kiloword rs n 1 5\"",
            "\"md mode w\"",
            "\"tangoword path\"",
        ] {
            seen.push(format!("{query} => {}", render(b.search(&q(query)))));
        }
        // The snippet shows the arguments as written. (Where a snippet
        // starts and ends is each backend's own.)
        let hit = &b.search(&q("kiloword")).unwrap().hits[0];
        let text: String = hit.snippet_parts().into_iter().map(|(t, _)| t).collect();
        seen.push(format!(
            "as written: {}",
            text.contains("{\"path\":\"src/kiloword.rs\",\"n\":1.5,\"nested\":{\"zz\":1")
        ));
        answers.push(seen);
    }
    assert_eq!(
        answers[1], answers[0],
        "PostgreSQL (left) and SQLite (right)"
    );
    assert_eq!(
        answers[0],
        [
            "\"kiloword rs n 1 5\" => s-0001:2 assistant_item [1,5,kiloword,n,rs]",
            "\"md mode w\" => s-0001:3 assistant_item [md,mode,w]",
            "\"tangoword path\" => s-0001:3 assistant_item [path,tangoword]",
            "as written: true",
        ]
    );
}

/// A tool call indexed at schema version 7 (its arguments read as `jsonb`)
/// is indexed again by the migration to version 8, as written.
#[test]
fn the_migration_to_version_8_indexes_tool_calls_again_as_written() {
    let mut s = Schema::new();
    let upto7: String = crate::pg::migrate::migrations()[..7]
        .iter()
        .map(|(_, _, sql)| format!("{sql};\n"))
        .collect();
    s.sql(&format!(
        "SET search_path = {{s}}; {upto7} \
         CREATE TABLE podlog_schema_version (one boolean NOT NULL PRIMARY KEY DEFAULT true \
           CHECK (one), version bigint NOT NULL); \
         INSERT INTO podlog_schema_version (version) VALUES (7); \
         INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, entry_count) \
           VALUES ('old', 'new', 1, 1, 2, 2); \
         INSERT INTO entries (session_id, seq, ts, kind, body) VALUES \
           ('old', 1, 1, 'session_start', '{{\"type\":\"session_start\",\"ts\":1}}'), \
           ('old', 2, 2, 'assistant_item', \
            '{{\"type\":\"assistant_item\",\"ts\":2,\"item\":{{\"kind\":\"tool_call\",\
              \"id\":\"c\",\"name\":\"read\",\"arguments\":{{\"path\":\"src/kiloword.rs\",\"n\":1}}}}}}'); \
         RESET search_path"
    ));
    let phrase = "\"kiloword rs n 1\"";
    assert_eq!(
        s.number(
            "SELECT count(*) FROM {s}.search \
             WHERE words @@ phraseto_tsquery('simple', 'kiloword rs n 1')"
        ),
        0,
        "version 7 reads the arguments as jsonb: n comes first"
    );
    let store = s.open();
    let hits = store.search(&q(phrase)).unwrap().hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].seq, Seq(2));
    assert_eq!(store.search_index_mismatches().unwrap(), (0, 0));
}
