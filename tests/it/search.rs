//! Full-text search end to end: `GET /search` pages through every hit
//! newest first with its cursor, filters by session, kind and time, finds a
//! word inside an out-of-line payload, refuses malformed queries and
//! parameters with 400 and share tokens with 403; an entry is searchable as
//! soon as its commit returned (from this process and another), and not
//! before; `podlog search` prints the same hits with visible markers, pages
//! with `--cursor`, fails with one line on a bad query, and `podlog show
//! --at` opens the timeline at a hit. Guards against an index that lags or
//! leads the log, pages that skip or repeat, and a query error that becomes
//! a 500 or a panic.

use std::collections::HashSet;

use hyper::body::Bytes;
use hyper::Method;
use podlog_entry::LogEntry;
use podlog_protocol::client::{Answer, Client};
use podlog_server::auth::{Token, TokenSource};
use serde_json::Value;

use crate::server_support::{commit, scripted_pod, serve, serve_tcp, tcp_config, Bench};
use crate::support::{podlog, TempDb};

fn output(ts: u64, text: String) -> LogEntry {
    LogEntry::ToolResult {
        ts,
        call_id: "call-x".to_owned(),
        output: text,
        is_error: false,
    }
}

fn input(ts: u64, text: &str) -> LogEntry {
    LogEntry::UserInput {
        ts,
        text: text.to_owned(),
        attachments: vec![],
    }
}

async fn get(client: &Client, path: &str) -> Answer {
    client
        .request(Method::GET, path, &[], Bytes::new())
        .await
        .unwrap()
}

async fn ok(client: &Client, path: &str) -> Value {
    let answer = get(client, path).await;
    assert_eq!(
        answer.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().unwrap()
}

/// Every hit of `path` (which has a query string), page by page.
async fn all_pages(client: &Client, path: &str) -> (Vec<(String, u64)>, usize) {
    let mut hits = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let page = ok(client, &url).await;
        pages += 1;
        for hit in page["hits"].as_array().unwrap() {
            hits.push((
                hit["session_id"].as_str().unwrap().to_owned(),
                hit["seq"].as_u64().unwrap(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["next"].is_null());
                break;
            }
        }
        assert!(pages < 1000, "paging does not end");
    }
    (hits, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_http_pages_filters_finds_payload_words_and_refuses_bad_queries() {
    let bench = Bench::new();
    let a = scripted_pod(&bench.store);
    let b = scripted_pod(&bench.store);
    let (id_a, id_b) = (a.session_id().to_string(), b.session_id().to_string());
    let mut expected = Vec::new();
    for i in 0..47u64 {
        let (pod, id) = if i % 4 == 0 { (&b, &id_b) } else { (&a, &id_a) };
        let seq = commit(pod, input(1_000 + i, &format!("pagedword number {i}"))).await;
        expected.push((id.clone(), seq.get()));
        commit(pod, output(1_000 + i, format!("other text {i}"))).await;
    }
    expected.reverse();
    // A word far past the 512-byte preview of an out-of-line output.
    let big = format!(
        "{}\nburiedpayloadword at the end\n",
        "filler line\n".repeat(2000)
    );
    let big_seq = commit(&a, output(5_000, big)).await;
    let (server, client) = serve_tcp(&bench.store, &a).await;

    let (hits, pages) = all_pages(&client, "/search?q=pagedword&limit=5").await;
    assert_eq!(pages, 10);
    assert_eq!(hits, expected, "newest first, every hit once");
    let unique: HashSet<_> = hits.iter().collect();
    assert_eq!(unique.len(), hits.len());

    // The page's shape.
    let page = ok(&client, "/search?q=%22number%2046%22").await;
    let hit = &page["hits"][0];
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    assert_eq!(hit["kind"], "user_input");
    assert_eq!(hit["ts"], 1_046);
    assert_eq!(hit["time"], "1970-01-01T00:00:01.046Z");
    assert_eq!(
        hit["snippet"],
        serde_json::json!([
            {"text": "pagedword ", "match": false},
            {"text": "number 46", "match": true},
        ])
    );
    assert!(page["next"].is_null());

    // Filters.
    let (only_b, _) = all_pages(&client, &format!("/search?q=pagedword&session={id_b}")).await;
    let want_b: Vec<_> = expected.iter().filter(|h| h.0 == id_b).cloned().collect();
    assert_eq!(only_b.len(), 12);
    assert_eq!(only_b, want_b);
    let kinds = ok(&client, "/search?q=text&kind=tool_result&limit=1000").await;
    assert_eq!(kinds["hits"].as_array().unwrap().len(), 47);
    let none = ok(&client, "/search?q=pagedword&kind=tool_result").await;
    assert_eq!(none["hits"].as_array().unwrap().len(), 0);
    let since = ok(&client, "/search?q=pagedword&since=1040&limit=1000").await;
    assert_eq!(since["hits"].as_array().unwrap().len(), 7);
    let plain = ok(&client, "/search?q=%22number%20AND&plain=true").await;
    assert_eq!(plain["hits"].as_array().unwrap().len(), 0);

    // The payload word, with the match in its snippet.
    let buried = ok(&client, "/search?q=buriedpayloadword").await;
    assert_eq!(buried["hits"].as_array().unwrap().len(), 1);
    assert_eq!(buried["hits"][0]["seq"], big_seq.get());
    assert!(buried["hits"][0]["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["match"] == true && p["text"] == "buriedpayloadword"));

    // Malformed queries and parameters: 400 naming what was wrong.
    for (path, says) in [
        (
            "/search?q=%22unbalanced",
            "bad search query \"\\\"unbalanced\"",
        ),
        ("/search?q=AND", "bad search query \"AND\""),
        ("/search?q=foo%20NEAR(", "bad search query \"foo NEAR(\""),
        ("/search?q=nosuch:word", "bad search query"),
        ("/search", "missing search query"),
        ("/search?q=%20", "missing search query"),
        ("/search?q=x&limit=0", "limit 0 out of range"),
        ("/search?q=x&limit=1001", "limit 1001 out of range"),
        ("/search?q=x&limit=many", "bad query"),
        ("/search?q=x&cursor=abc", "bad cursor \"abc\""),
        (
            "/search?q=x&kind=turn_end",
            "kind \"turn_end\" is not searchable",
        ),
        ("/search?q=x&since=yesterday", "bad `since`"),
        ("/search?q=x&plain=maybe", "bad query"),
        ("/search?q=x&colour=red", "bad query"),
    ] {
        let answer = get(&client, path).await;
        assert_eq!(answer.status, 400, "{path}");
        let error = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{path}: {error}");
    }
    let unknown = get(&client, "/search?q=x&session=no-such-session").await;
    assert_eq!(unknown.status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_is_searchable_once_its_commit_returned_and_not_before() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let id = pod.session_id().to_string();
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    for i in 0..20u64 {
        let word = format!("freshword{i}");
        let before = ok(&client, &format!("/search?q={word}")).await;
        assert_eq!(before["hits"].as_array().unwrap().len(), 0, "{word}");
        let seq = commit(&pod, input(i, &format!("say {word}"))).await;
        let after = ok(&client, &format!("/search?q={word}")).await;
        let hits = after["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{word}");
        assert_eq!(hits[0]["session_id"], id.as_str());
        assert_eq!(hits[0]["seq"], seq.get());
    }
    // Another process sees it too, as soon as the commit returned.
    let seq = commit(&pod, input(99, "crossprocessword")).await;
    let db = bench.db.clone();
    let run = tokio::task::spawn_blocking(move || podlog(&db, &["search", "crossprocessword"]))
        .await
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.starts_with(&format!("{id}  {:>5}", seq.get())),
        "{}",
        run.stdout
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_token_cannot_search_and_the_servers_token_can() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    commit(&pod, input(1, "sharedword")).await;
    let mine = pod.session_id().to_string();
    let mut config = tcp_config();
    config.token = TokenSource::Given(Token::new("the-servers-own-token").unwrap());
    let (server, anonymous) = serve(&bench.store, &pod, config).await;
    let store = bench.store.clone();
    let token = tokio::task::spawn_blocking(move || store.create_share(&mine, None))
        .await
        .unwrap()
        .unwrap()
        .1
        .expose()
        .to_owned();
    let shared = Client::new(anonymous.endpoint().clone(), Some(token.clone()));
    for (client, path) in [
        (
            &shared,
            format!("/search?q=sharedword&session={}", pod.session_id()),
        ),
        (&anonymous, format!("/search?q=sharedword&share={token}")),
    ] {
        let refused = get(client, &path).await;
        assert_eq!(refused.status, 403, "{path}");
    }
    assert_eq!(get(&anonymous, "/search?q=sharedword").await.status, 401);
    let admin = Client::new(
        anonymous.endpoint().clone(),
        Some("the-servers-own-token".to_owned()),
    );
    let page = ok(&admin, "/search?q=sharedword").await;
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    server.shutdown().await.unwrap();
}

/// The lines of `podlog search` output as (session, seq, rest).
fn hit_lines(stdout: &str) -> Vec<(String, u64, String)> {
    stdout
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let session = parts.next().unwrap().to_owned();
            let seq = parts.next().unwrap().parse().unwrap();
            (session, seq, l.to_owned())
        })
        .collect()
}

#[test]
fn podlog_search_prints_hits_pages_and_show_at_opens_the_timeline_there() {
    let db = TempDb::new();
    let demo = podlog(&db.path, &["demo", "--runs", "3"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    let all = podlog(&db.path, &["search", "file OR test*", "--limit", "1000"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let hits = hit_lines(&all.stdout);
    assert!(hits.len() >= 4, "{}", all.stdout);
    assert!(
        hits.windows(2).all(|w| w[0].1 > w[1].1),
        "newest first: {}",
        all.stdout
    );
    for (_, _, line) in &hits {
        assert!(line.contains("**"), "matches are marked: {line}");
        assert!(
            !line.contains('\u{2}') && !line.contains("\x1b["),
            "{line:?}"
        );
    }

    // Page by page with --cursor: the same hits, once each.
    let mut paged = Vec::new();
    let mut args: Vec<String> = vec![
        "search".into(),
        "file OR test*".into(),
        "--limit".into(),
        "3".into(),
    ];
    loop {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = podlog(&db.path, &argv);
        assert_eq!(run.code, 0, "{}", run.stderr);
        paged.extend(hit_lines(&run.stdout));
        let next = run
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("podlog: more hits: add --cursor "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned);
        match next {
            Some(cursor) => {
                args.truncate(4);
                args.extend(["--cursor".to_owned(), cursor]);
            }
            None => break,
        }
    }
    assert_eq!(paged, hits);

    // Filters.
    let kind = podlog(
        &db.path,
        &[
            "search",
            "file OR test*",
            "--kind",
            "tool_result",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(kind.code, 0, "{}", kind.stderr);
    let kinds = hit_lines(&kind.stdout);
    assert!(!kinds.is_empty() && kinds.len() < hits.len());
    assert!(kinds.iter().all(|h| h.2.contains(" tool_result ")));
    let session = &hits[0].0;
    for since in ["7d", "2000-01-01", "2000-01-01T00:00:00Z"] {
        let run = podlog(
            &db.path,
            &[
                "search",
                "file OR test*",
                "--since",
                since,
                "--session",
                &session[..8],
                "--limit",
                "1000",
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(hit_lines(&run.stdout), hits, "--since {since}");
    }
    let future = podlog(&db.path, &["search", "file", "--since", "2999-01-01"]);
    assert_eq!(future.code, 0);
    assert_eq!(future.stdout, "");
    assert!(
        future.stderr.contains("no entries match"),
        "{}",
        future.stderr
    );

    // Errors: one line, exit 1.
    for (args, says) in [
        (
            vec!["search", "\"unbalanced"],
            "bad search query \"\\\"unbalanced\"",
        ),
        (vec!["search", "AND"], "bad search query \"AND\""),
        (
            vec!["search", "foo NEAR("],
            "bad search query \"foo NEAR(\"",
        ),
        (
            vec!["search", "x", "--since", "soon"],
            "--since: bad time \"soon\"",
        ),
        (
            vec!["search", "x", "--kind", "llm_usage"],
            "kind \"llm_usage\" is not searchable",
        ),
        (
            vec!["search", "x", "--session", "nope"],
            "unknown session nope",
        ),
        (
            vec!["search", "x", "--limit", "0"],
            "--limit must be at least 1",
        ),
    ] {
        let run = podlog(&db.path, &args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(run.stdout, "");
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("podlog: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        assert!(errors[0].contains(says), "{args:?}: {}", run.stderr);
    }

    // show --at: from three entries before the hit, the hit marked.
    let (session, seq, _) = &hits[1];
    let show = podlog(&db.path, &["show", session, "--at", &seq.to_string()]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let lines: Vec<&str> = show.stdout.lines().skip(1).collect();
    let first: u64 = lines[0][2..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, seq.saturating_sub(3).max(1));
    let marked: Vec<&&str> = lines.iter().filter(|l| l.starts_with("> ")).collect();
    assert_eq!(marked.len(), 1, "{}", show.stdout);
    assert!(
        marked[0][2..].trim_start().starts_with(&format!("{seq} ")),
        "{}",
        show.stdout
    );
    let past = podlog(&db.path, &["show", session, "--at", "9999"]);
    assert_eq!(past.code, 1);
    assert!(past.stderr.contains("has no seq 9999"), "{}", past.stderr);
}

#[test]
fn opening_an_older_database_says_it_is_indexing_when_stderr_is_not_a_terminal() {
    let db = TempDb::new();
    let dump = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema/v4.sql");
    let status = std::process::Command::new("sqlite3")
        .arg(&db.path)
        .stdin(std::fs::File::open(dump).unwrap())
        .status()
        .expect("the sqlite3 shell must be installed");
    assert!(status.success());
    let run = podlog(&db.path, &["search", "quokkafinch"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("podlog: indexing 44 entries for search\n")
            && run
                .stderr
                .contains("podlog: indexed 44 entries for search\n"),
        "{}",
        run.stderr
    );
    assert_eq!(hit_lines(&run.stdout).len(), 2, "{}", run.stdout);
    let again = podlog(&db.path, &["search", "quokkafinch"]);
    assert!(!again.stderr.contains("indexing"), "{}", again.stderr);
}
