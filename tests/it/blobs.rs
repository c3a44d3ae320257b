//! Payloads over HTTP: `GET /blobs/{hash}` with its validators, byte ranges
//! and caching headers, lean entry pages with their references and their
//! `ETag`s, and `podlog tail` showing a payload's size or, with `--full`,
//! the payload itself. Guards against a blob or page cached for good that
//! could still change (a page that reaches the session's end), a token-guarded
//! answer that shared caches may keep, a `Range` answered with the wrong
//! bytes, and a tail that prints the 512-byte preview as if it were all.

use std::time::Duration;

use hyper::body::Bytes;
use hyper::Method;
use podlog_entry::{LogEntry, PayloadHash, Seq};
use podlog_protocol::client::{Answer, Client};
use podlog_server::auth::{Token, TokenSource};
use serde_json::{json, Value};

use crate::server_cli::podlog_tail;
use crate::server_support::{commit, scripted_pod, serve, serve_tcp, tcp_config, wait_idle, Bench};

/// The size of the test's payload: 97.5 KiB.
const SIZE: usize = 99_840;
const PUBLIC: &str = "public, max-age=31536000, immutable";
const PRIVATE: &str = "private, max-age=31536000, immutable";

/// A tool output of exactly [`SIZE`] bytes, many lines, a two-byte
/// character near the start (so `bytes=0-9` cuts it), and a marker at its
/// very end.
fn big_output() -> String {
    let mut text = String::from("payload é start\n");
    let mut i = 0;
    while text.len() < SIZE {
        text.push_str(&format!("line {i:06} of a long tool output\n"));
        i += 1;
    }
    let end = "END-OF-OUTPUT";
    text.truncate(SIZE - end.len());
    text.push_str(end);
    assert_eq!(text.len(), SIZE);
    text
}

fn tool_result(output: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts: 1_700_000_000_000,
        call_id: "call-big".to_owned(),
        output: output.to_owned(),
        is_error: false,
    }
}

async fn get(client: &Client, path: &str, headers: &[(&str, &str)]) -> Answer {
    client
        .request(Method::GET, path, headers, Bytes::new())
        .await
        .unwrap()
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).map(|v| v.to_str().unwrap())
}

fn error_of(answer: &Answer) -> String {
    answer.json().unwrap()["error"].as_str().unwrap().to_owned()
}

/// The hash of the one payload of the entry at `seq`, read from its page,
/// after checking the page carries the lean entry and its reference.
async fn payload_of(client: &Client, session: &str, seq: Seq, output: &str) -> PayloadHash {
    let after = seq.get() - 1;
    let page = client
        .get_json(&format!(
            "/sessions/{session}/entries?after={after}&limit=1"
        ))
        .await
        .unwrap();
    let e = &page["entries"][0];
    assert_eq!(e["seq"], json!(seq));
    let preview = e["entry"]["output"].as_str().unwrap();
    assert!(preview.len() <= 512 && preview.len() > 500, "a preview");
    assert!(output.starts_with(preview));
    let refs = e["payloads"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0]["path"], "$.output");
    assert_eq!(refs[0]["size"], json!(SIZE));
    PayloadHash::new(refs[0]["hash"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_served_whole_by_range_and_revalidated_with_its_etag() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let output = big_output();
    let seq = commit(&pod, tool_result(&output)).await;
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    let session = pod.session_id();
    let hash = payload_of(&client, session.as_str(), seq, &output).await;
    let path = format!("/blobs/{hash}");
    let etag = format!("\"{hash}\"");

    // Whole.
    let whole = get(&client, &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, output.as_bytes());
    assert_eq!(
        header(&whole, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&whole, "etag"), Some(etag.as_str()));
    assert_eq!(header(&whole, "cache-control"), Some(PUBLIC));
    assert_eq!(header(&whole, "accept-ranges"), Some("bytes"));
    assert_eq!(client.blob(&hash).await.unwrap(), output);

    // Revalidated: the tag itself, weak, in a list, or any.
    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {etag}");
    for tag in [etag.as_str(), &weak, &listed, "*"] {
        let answer = get(&client, &path, &[("if-none-match", tag)]).await;
        assert_eq!(answer.status, 304, "{tag}");
        assert!(answer.body.is_empty(), "{tag}");
        assert_eq!(header(&answer, "etag"), Some(etag.as_str()));
        assert_eq!(header(&answer, "cache-control"), Some(PUBLIC));
    }
    let other = get(&client, &path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body.len(), SIZE);
    // A validator that matches wins over a range.
    let both = [("if-none-match", etag.as_str()), ("range", "bytes=0-9")];
    assert_eq!(get(&client, &path, &both).await.status, 304);

    // Single ranges, in bytes (the first cuts `é` in two).
    let bytes = output.as_bytes();
    let last = SIZE - 1;
    for (range, want, content_range) in [
        ("bytes=0-9", &bytes[..10], format!("bytes 0-9/{SIZE}")),
        (
            "bytes=-5",
            &bytes[SIZE - 5..],
            format!("bytes {}-{last}/{SIZE}", SIZE - 5),
        ),
        ("bytes=10-", &bytes[10..], format!("bytes 10-{last}/{SIZE}")),
        (
            "bytes=5-999999",
            &bytes[5..],
            format!("bytes 5-{last}/{SIZE}"),
        ),
    ] {
        let answer = get(&client, &path, &[("range", range)]).await;
        assert_eq!(answer.status, 206, "{range}");
        assert_eq!(answer.body, want, "{range}");
        assert_eq!(
            header(&answer, "content-range"),
            Some(content_range.as_str())
        );
        assert_eq!(header(&answer, "etag"), Some(etag.as_str()));
        assert_eq!(header(&answer, "cache-control"), Some(PUBLIC));
        assert_eq!(
            header(&answer, "content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    assert_eq!(&bytes[..10], "payload é".as_bytes());

    // Past the end: 416 with the size.
    let beyond = format!("bytes={SIZE}-");
    let answer = get(&client, &path, &[("range", beyond.as_str())]).await;
    assert_eq!(answer.status, 416);
    assert_eq!(
        header(&answer, "content-range"),
        Some(format!("bytes */{SIZE}").as_str())
    );
    assert!(error_of(&answer).contains("not satisfiable"));

    // Several ranges, a malformed one, or a stale If-Range: the whole.
    for headers in [
        &[("range", "bytes=0-1,5-6")][..],
        &[("range", "bytes=9-0")],
        &[("range", "lines=1-2")],
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    ] {
        let answer = get(&client, &path, headers).await;
        assert_eq!(answer.status, 200, "{headers:?}");
        assert_eq!(answer.body, bytes, "{headers:?}");
    }
    let strong = [("range", "bytes=0-9"), ("if-range", etag.as_str())];
    assert_eq!(get(&client, &path, &strong).await.status, 206);

    // Malformed and unknown hashes.
    let upper = hash.as_str().to_uppercase();
    for bad in ["xyz", upper.as_str(), &hash.as_str()[1..]] {
        let answer = get(&client, &format!("/blobs/{bad}"), &[]).await;
        assert_eq!(answer.status, 400, "{bad}");
        let message = error_of(&answer);
        assert!(
            message.contains("invalid payload hash") && message.contains("64 lowercase"),
            "{message}"
        );
    }
    let unknown = get(&client, &format!("/blobs/{}", "0".repeat(64)), &[]).await;
    assert_eq!(unknown.status, 404);
    assert!(error_of(&unknown).contains("unknown payload"));

    // A payload changed behind podlog's back is refused, not served.
    let conn = rusqlite::Connection::open(&bench.db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = conn
        .execute(
            "UPDATE payloads SET text = 'tampered' WHERE hash = ?1",
            [hash.as_str()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let corrupt = get(&client, &path, &[]).await;
    assert_eq!(corrupt.status, 500);
    let message = error_of(&corrupt);
    assert!(
        message.contains("corrupt") && message.contains(hash.as_str()),
        "{message}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_short_of_the_end_are_immutable_and_the_page_at_the_end_is_not() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    client
        .post_json("/pods/p/input", &json!({"text": "hi"}))
        .await
        .unwrap();
    wait_idle(&pod).await;
    let session = pod.session_id();
    let last = pod.end_seq().get();
    assert!(last > 8, "a session of several pages ({last})");
    let path = |query: &str| format!("/sessions/{session}/entries?{query}");
    let seqs = |answer: &Answer| -> Vec<u64> {
        let page: Value = answer.json().unwrap();
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };

    // Immutable: a full page short of the end, forward and back.
    let first_page = path("after=0&limit=3");
    let page = get(&client, &first_page, &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(seqs(&page), [1, 2, 3]);
    let etag = format!("W/\"{session}:1-3:v1\"");
    assert_eq!(header(&page, "etag"), Some(etag.as_str()));
    assert_eq!(header(&page, "cache-control"), Some(PUBLIC));
    let again = get(&client, &first_page, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(header(&again, "etag"), Some(etag.as_str()));
    assert_eq!(header(&again, "cache-control"), Some(PUBLIC));
    let back = get(&client, &path(&format!("before={last}&limit=3")), &[]).await;
    let back_tag = format!("W/\"{session}:{}-{}:v1\"", last - 3, last - 1);
    assert_eq!(header(&back, "etag"), Some(back_tag.as_str()));
    assert_eq!(seqs(&back), [last - 3, last - 2, last - 1]);

    // Not immutable: every page that reaches the end, full or not, and a
    // page named by a prefix of the session's id.
    let prefix = &session.as_str()[..session.as_str().len() - 1];
    for query in [
        format!("after={}&limit=10", last - 2),
        format!("after={}&limit=3", last - 3),
        format!("before={}&limit=3", last + 1),
        format!("before={}&limit=3", last + 50),
    ] {
        let answer = get(&client, &path(&query), &[("if-none-match", "*")]).await;
        assert_eq!(answer.status, 200, "{query}");
        assert_eq!(seqs(&answer).last(), Some(&last), "{query}");
        assert_eq!(header(&answer, "etag"), None, "{query}");
        assert_eq!(
            header(&answer, "cache-control"),
            Some("no-cache"),
            "{query}"
        );
    }
    let by_prefix = get(
        &client,
        &format!("/sessions/{prefix}/entries?after=0&limit=3"),
        &[],
    )
    .await;
    assert_eq!(seqs(&by_prefix), [1, 2, 3]);
    assert_eq!(header(&by_prefix, "etag"), None);

    // The session grows; the immutable page is still the same.
    commit(&pod, tool_result("one more")).await;
    let grown = get(&client, &first_page, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(grown.status, 304);
    let fresh = get(&client, &first_page, &[]).await;
    assert_eq!(seqs(&fresh), [1, 2, 3]);
    assert_eq!(header(&fresh, "etag"), Some(etag.as_str()));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_token_blobs_and_pages_are_private_to_the_client() {
    const TOKEN: &str = "blob-token";
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let output = big_output();
    let seq = commit(&pod, tool_result(&output)).await;
    let mut config = tcp_config();
    config.token = TokenSource::Given(Token::new(TOKEN).unwrap());
    let (server, anonymous) = serve(&bench.store, &pod, config).await;
    let client = Client::new(anonymous.endpoint().clone(), Some(TOKEN.to_owned()));
    let session = pod.session_id();
    let hash = payload_of(&client, session.as_str(), seq, &output).await;
    let path = format!("/blobs/{hash}");

    let refused = get(&anonymous, &path, &[]).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.len() < 1000, "no payload in a refusal");

    let whole = get(&client, &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(header(&whole, "cache-control"), Some(PRIVATE));
    let etag = format!("\"{hash}\"");
    let cached = get(&client, &path, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(cached.status, 304);
    assert_eq!(header(&cached, "cache-control"), Some(PRIVATE));
    let part = get(&client, &path, &[("range", "bytes=0-9")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(header(&part, "cache-control"), Some(PRIVATE));

    let page = get(
        &client,
        &format!("/sessions/{session}/entries?after=0&limit=1"),
        &[],
    )
    .await;
    assert!(header(&page, "etag").is_some());
    assert_eq!(header(&page, "cache-control"), Some(PRIVATE));
    server.shutdown().await.unwrap();
}

/// Runs `podlog tail p --url URL ARGS...` until a line satisfies `until`,
/// then stops it; returns every line it printed.
fn tail_until(url: &str, args: &[&str], what: &str, until: impl Fn(&str) -> bool) -> Vec<String> {
    let (tail, mut out) = podlog_tail(url, "p", args);
    out.until(what, Duration::from_secs(30), until);
    drop(tail);
    out.seen
}

#[test]
fn tail_shows_a_payloads_size_and_with_full_the_payload_itself() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let output = big_output();
    pod.commit(tool_result(&output)).unwrap();
    let (server, _client) = runtime.block_on(serve_tcp(&bench.store, &pod));
    let url = format!("http://{}", server.local_addr().unwrap());

    // By default: the preview and the payload's size.
    let lean = tail_until(&url, &[], "the tool result", |l| l.contains("tool_result"));
    let line = lean.last().unwrap();
    assert!(
        line.contains("result of call-big: payload é start"),
        "{line}"
    );
    assert!(line.ends_with("… [+97.5 KiB]"), "{line}");
    assert!(!lean.join("\n").contains("END-OF-OUTPUT"), "{lean:#?}");

    // --full: the entry's line, then the whole payload.
    let full = tail_until(&url, &["--full"], "the payload's end", |l| {
        l.ends_with("END-OF-OUTPUT")
    });
    let printed = full.join("\n");
    assert!(printed.contains(&output), "the whole payload is printed");
    let line = full.iter().find(|l| l.contains("tool_result")).unwrap();
    assert!(!line.contains("[+"), "{line}");
    assert!(
        full.iter().any(|l| l.trim() == "── $.output (97.5 KiB)"),
        "{:#?}",
        &full[..4.min(full.len())]
    );
    runtime.block_on(server.shutdown()).unwrap();
}
