//! Bad requests against a live server: every malformed request gets a JSON
//! error with the right status, the store is unchanged, and a client
//! attached meanwhile keeps receiving; a busy pod answers 409; a public
//! address is refused without a token and a token file is made 0600.
//! Guards against a server that one bad client can crash, wedge or make
//! write, and against a listener open to the network without a token.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use hyper::Method;
use podlog_pod::{Pod, ScriptedDriver};
use podlog_protocol::client::{Client, Endpoint};
use podlog_server::{PodRegistry, Server, ServerConfig, ServerError, TokenOrigin, TokenSource};
use podlog_store::{NewSession, Store};
use serde_json::json;

use crate::server_support::{scripted_pod, serve, serve_tcp, tcp_config, wait_idle, Bench};

/// Everything the store holds, as text: sessions with their counters and
/// every entry.
fn store_dump(store: &Store) -> String {
    let mut out = String::new();
    for s in store.sessions().unwrap().into_iter().map(Result::unwrap) {
        out.push_str(&format!("{s:?}\n"));
        for c in store.entries(&s.id).unwrap() {
            out.push_str(&format!("  {} {}\n", c.seq, c.entry.to_json()));
        }
    }
    out
}

/// One malformed request and what it must get.
struct Case {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    message: &'static str,
}

fn case(method: Method, path: &str, body: &str, status: u16, message: &'static str) -> Case {
    Case {
        method,
        path: path.to_owned(),
        headers: vec![],
        body: body.as_bytes().to_vec(),
        status,
        message,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors_and_change_nothing() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    client
        .post_json("/pods/p/input", &json!({"text": "hello"}))
        .await
        .unwrap();
    wait_idle(&pod).await;
    let session = pod.session_id();

    // A client attached before the bad requests.
    let mut watcher = client.events("p", None).await.unwrap();
    watcher.next().await.unwrap().expect("snapshot");
    let before = store_dump(&bench.store);

    let s = session.as_str();
    let mut cases = vec![
        case(
            Method::POST,
            "/pods/p/input",
            "{",
            400,
            "malformed JSON body",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            "[1, 2]",
            400,
            "malformed JSON body",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            r#"{"text": 5}"#,
            400,
            "invalid type",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            r#"{}"#,
            400,
            "missing field `text`",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            "",
            400,
            "missing field `text`",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            r#"{"text": "x", "extra": 1}"#,
            400,
            "unknown field `extra`",
        ),
        case(
            Method::POST,
            "/pods/p/input",
            "\u{0}\u{1}binary",
            400,
            "malformed JSON body",
        ),
        case(
            Method::POST,
            "/pods/nope/input",
            r#"{"text": "x"}"#,
            404,
            "unknown pod \"nope\"",
        ),
        case(
            Method::POST,
            "/pods/p/fork",
            r#"{"at": "x"}"#,
            400,
            "invalid type",
        ),
        case(
            Method::POST,
            "/pods/p/fork",
            r#"{"at": -1}"#,
            400,
            "invalid value",
        ),
        case(
            Method::POST,
            "/pods/p/fork",
            r#"{"at": 99999}"#,
            400,
            "cannot cut session",
        ),
        case(
            Method::POST,
            "/pods/p/fork",
            r#"{"at": 0}"#,
            400,
            "cannot cut session",
        ),
        case(
            Method::POST,
            "/pods/p/compact",
            r#"{"summary": "no"}"#,
            400,
            "invalid type",
        ),
        case(
            Method::POST,
            "/pods/p/compact",
            r#"{"summary": [{"role": "robot"}]}"#,
            400,
            "unknown variant",
        ),
        case(Method::GET, "/pods/nope", "", 404, "unknown pod"),
        case(Method::GET, "/pods/nope/events", "", 404, "unknown pod"),
        case(
            Method::GET,
            "/pods/p/events?after=garbage",
            "",
            400,
            "?after: invalid event id",
        ),
        case(
            Method::GET,
            "/pods/p/events?after=s:1&x=2",
            "",
            400,
            "bad query",
        ),
        case(
            Method::GET,
            "/sessions/nope",
            "",
            404,
            "unknown session nope",
        ),
        case(
            Method::GET,
            "/sessions/nope/entries",
            "",
            404,
            "unknown session nope",
        ),
        case(
            Method::GET,
            &format!("/sessions/{s}/entries?after=abc"),
            "",
            400,
            "bad query",
        ),
        case(
            Method::GET,
            &format!("/sessions/{s}/entries?limit=0"),
            "",
            400,
            "limit 0 out of range",
        ),
        case(
            Method::GET,
            &format!("/sessions/{s}/entries?limit=100000"),
            "",
            400,
            "limit 100000 out of range",
        ),
        case(
            Method::GET,
            &format!("/sessions/{s}/entries?after=-3"),
            "",
            400,
            "bad query",
        ),
        case(Method::GET, "/nope", "", 404, "no such route"),
        case(Method::DELETE, "/pods", "", 405, "method not allowed"),
        case(Method::GET, "/pods/p/input", "", 405, "method not allowed"),
    ];
    for id in ["garbage", "s-1", ":4", "a:b:c", "x:18446744073709551616"] {
        cases.push(Case {
            method: Method::GET,
            path: "/pods/p/events".to_owned(),
            headers: vec![("last-event-id", id.to_owned())],
            body: vec![],
            status: 400,
            message: "Last-Event-ID: invalid event id",
        });
    }
    // Over the 1 MiB body limit, with and without a Content-Length that
    // says so up front.
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(2 << 20));
    cases.push(case(
        Method::POST,
        "/pods/p/input",
        &big,
        413,
        "over the limit of 1048576 bytes",
    ));

    for c in &cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = client
            .request(c.method.clone(), &c.path, &headers, c.body.clone())
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", c.method, c.path));
        let what = format!("{} {} {:?}", c.method, c.path, c.headers);
        assert_eq!(
            answer.status.as_u16(),
            c.status,
            "{what}: {:?}",
            answer.body
        );
        let body = answer
            .json()
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(
            message.contains(c.message),
            "{what}: {message:?} lacks {:?}",
            c.message
        );
    }

    // Garbage that is not HTTP at all, and a connection cut mid-request.
    let addr = server.local_addr().unwrap();
    let garbage = tokio::task::spawn_blocking(move || {
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        let mut cut = std::net::TcpStream::connect(addr).unwrap();
        cut.write_all(
            b"POST /pods/p/input HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te",
        )
        .unwrap();
        drop(cut);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");

    // Nothing was written, and everyone else is still served: the attached
    // client sees the next run, and new requests work.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store_dump(&bench.store), before);
    client
        .post_json("/pods/p/input", &json!({"text": "still there?"}))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("the attached client stalled")
            .unwrap()
            .unwrap();
        if m.event == "run_completed" {
            break;
        }
    }
    assert_eq!(
        client.get_json("/pods").await.unwrap()["pods"][0]["name"],
        json!("p")
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pod_answers_409_to_input_compact_and_fork() {
    let bench = Bench::new();
    let slow = ScriptedDriver::demo().with_delta_delay(Duration::from_millis(40));
    let pod = Pod::create(bench.store.clone(), NewSession::default(), Box::new(slow)).unwrap();
    let (server, client) = serve_tcp(&bench.store, &pod).await;
    client
        .post_json("/pods/p/input", &json!({"text": "go"}))
        .await
        .unwrap();
    assert!(pod.is_busy());
    for (path, body) in [
        ("/pods/p/input", json!({"text": "again"})),
        ("/pods/p/compact", json!({})),
        ("/pods/p/fork", json!({"at": 1})),
    ] {
        let answer = client
            .request(Method::POST, path, &[], body.to_string())
            .await
            .unwrap();
        assert_eq!(answer.status.as_u16(), 409, "{path}");
        let message = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
        assert!(message.contains("is busy"), "{path}: {message}");
    }
    wait_idle(&pod).await;
    let answer = client
        .post_json("/pods/p/compact", &json!({}))
        .await
        .unwrap();
    assert_eq!(answer["session_id"], json!(pod.session_id()));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_needs_a_token_and_a_generated_token_file_is_private() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let public: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();

    let refused = Server::start(
        ServerConfig {
            listen: Some(public),
            ..ServerConfig::default()
        },
        bench.store.clone(),
        PodRegistry::new(),
    )
    .await;
    match refused {
        Err(e @ ServerError::TokenRequired(_)) => {
            assert!(e.to_string().contains("not a loopback address"), "{e}")
        }
        other => panic!("served a public address without a token: {other:?}"),
    }

    let token_file = podlog_server::auth::default_token_file(&bench.db);
    let config = ServerConfig {
        listen: Some(public),
        token: TokenSource::File(token_file.clone()),
        ..ServerConfig::default()
    };
    let (server, _) = serve(&bench.store, &pod, config).await;
    assert_eq!(
        server.token_origin(),
        &TokenOrigin::Generated(token_file.clone())
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode {mode:o}");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);

    // Only loopback traffic: the listener is on every address, the client
    // talks to 127.0.0.1.
    let port = server.local_addr().unwrap().port();
    let endpoint = Endpoint::Tcp(format!("127.0.0.1:{port}"));
    for (who, token) in [("no token", None), ("a wrong token", Some("0".repeat(64)))] {
        let client = Client::new(endpoint.clone(), token);
        for path in ["/pods", "/pods/p/events", "/sessions", "/nope"] {
            let answer = client
                .request(Method::GET, path, &[], Vec::new())
                .await
                .unwrap();
            assert_eq!(answer.status.as_u16(), 401, "{who} {path}");
            let message = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
            assert!(message.contains("bearer token"), "{message}");
        }
        let answer = client
            .request(Method::POST, "/pods/p/input", &[], r#"{"text":"x"}"#)
            .await
            .unwrap();
        assert_eq!(answer.status.as_u16(), 401, "{who} input");
    }
    assert_eq!(
        pod.end_seq().get(),
        1,
        "an unauthorised input was committed"
    );
    let client = Client::new(endpoint.clone(), Some(token.clone()));
    let pods = client.get_json("/pods").await.unwrap();
    assert_eq!(pods["pods"][0]["name"], json!("p"));
    let mut stream = client.events("p", None).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().event, "snapshot");
    drop(stream);
    server.shutdown().await.unwrap();

    // The next start reads the same file; a file others can read is refused.
    let pod = Pod::restore(
        bench.store.clone(),
        &pod.session_id(),
        Box::new(ScriptedDriver::demo()),
    )
    .unwrap();
    let config = ServerConfig {
        listen: Some(public),
        token: TokenSource::File(token_file.clone()),
        ..ServerConfig::default()
    };
    let (server, _) = serve(&bench.store, &pod, config.clone()).await;
    assert_eq!(
        server.token_origin(),
        &TokenOrigin::Read(token_file.clone())
    );
    server.shutdown().await.unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Server::start(config, bench.store.clone(), PodRegistry::new()).await;
    assert!(
        matches!(&refused, Err(ServerError::TokenFile { reason, .. }) if reason.contains("chmod 600")),
        "{refused:?}"
    );

    // A loopback listener with a token requires it too.
    let loopback = ServerConfig {
        token: TokenSource::Given(podlog_server::Token::new("s3cret").unwrap()),
        ..tcp_config()
    };
    let (server, client) = serve(&bench.store, &pod, loopback).await;
    let answer = client
        .request(Method::GET, "/pods", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 401);
    let authed = Client::new(client.endpoint().clone(), Some("s3cret".to_owned()));
    assert!(authed.get_json("/pods").await.is_ok());
    server.shutdown().await.unwrap();
}

/// A request refused before its body is read (no token, no such route, over
/// the limit) must still reach the client as an answer, not as a connection
/// reset: the server reads the body before it answers. Repeated, because a
/// server that answers early loses the race only some of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_large_bodies_reach_the_client() {
    let bench = Bench::new();
    let pod = scripted_pod(&bench.store);
    let mut config = tcp_config();
    config.token = TokenSource::Given(podlog_server::Token::new("large-body-token").unwrap());
    let (server, _) = serve(&bench.store, &pod, config).await;
    let endpoint = Endpoint::Tcp(server.local_addr().unwrap().to_string());
    let anonymous = Client::new(endpoint.clone(), None);
    let holder = Client::new(endpoint.clone(), Some("large-body-token".to_owned()));
    let before = store_dump(&bench.store);
    let sizes = [64 << 10, (1 << 20) - 64, (1 << 20) + 1, 3 << 20];
    for round in 0..5 {
        for size in sizes {
            let body = vec![b'a'; size];
            // The token is checked first, then the size, then the route.
            let over = |status| if size > 1 << 20 { 413 } else { status };
            let cases = [
                (&anonymous, Method::POST, "/pods/p/input", 401),
                (&anonymous, Method::PUT, "/sessions", 401),
                (&holder, Method::DELETE, "/pods/p", over(405)),
                (&holder, Method::POST, "/no/such/route", over(404)),
                (&holder, Method::POST, "/pods/p/input", over(400)),
            ];
            for (client, method, path, status) in cases {
                let what = format!("round {round}: {method} {path} with {size} bytes");
                let answer = client
                    .request(method, path, &[], body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(answer.status.as_u16(), status, "{what}");
                let json = answer.json().unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    json["error"].as_str().is_some_and(|m| m.len() > 5),
                    "{what}: {json}"
                );
            }
        }
    }
    // Far beyond what is drained, the connection is closed instead; the
    // server goes on serving.
    let huge = vec![b'a'; 64 << 20];
    let _ = holder
        .request(Method::POST, "/pods/p/input", &[], huge)
        .await;
    let pods = holder.get_json("/pods").await.unwrap();
    assert!(pods.to_string().contains("\"p\""), "{pods}");
    assert_eq!(store_dump(&bench.store), before);
    server.shutdown().await.unwrap();
    pod.shutdown();
}
