//! Guards against one bad row taking more than its own session down. Rows
//! are corrupted behind podlog's back with the `sqlite3` shell: a body that
//! does not decode, a gap in seq, a fork reference to an entry that does not
//! exist, a session row with an unknown origin. Restore must refuse the broken sessions naming session and seq,
//! `podlog verify` must list each problem and exit 1, and a server must keep
//! serving the healthy pod while it answers for the broken sessions with a
//! clear error.

use hyper::Method;
use podlog_entry::{Seq, SessionId, StepClock};
use podlog_pod::script::Script;
use podlog_pod::{Pod, ScriptedDriver};
use podlog_sink::SessionLogSink;
use podlog_store::{NewSession, Store};
use std::sync::Arc;

use crate::server_support::{scripted_pod, serve_tcp, Bench};
use crate::support::podlog;

fn scripted_session(store: &Arc<Store>, runs: usize) -> SessionId {
    let (id, start) = store.create_session(NewSession::default()).unwrap();
    let sink = SessionLogSink::with_initial([start]).unwrap();
    let mut writer = store.session_writer(&id).unwrap();
    let clock = StepClock::new(1_700_000_000_000, 3);
    for run in 0..runs {
        for entry in Script::demo().run(run, &format!("{id}-{run}"), &clock) {
            writer.append(entry, &sink).unwrap();
        }
    }
    id
}

fn shell_write(db: &std::path::Path, sql: &str) {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_named_and_the_server_keeps_serving_the_rest() {
    let bench = Bench::new();
    let store = bench.store.clone();
    let healthy = scripted_pod(&store);
    let undecodable = scripted_session(&store, 1);
    let gap = scripted_session(&store, 1);
    let parent = scripted_session(&store, 1);
    let (forked, _) = store.fork(&parent, Seq(7)).unwrap();
    let misnamed = scripted_session(&store, 1);

    shell_write(
        &bench.db,
        &format!(
            "UPDATE entries SET body = '{{\"type\":\"turn_end\",\"ts\":1}}' \
             WHERE session_id = '{undecodable}' AND seq = 5;\
             DELETE FROM entries WHERE session_id = '{gap}' AND seq = 4;\
             UPDATE entries SET body = json_set(body, '$.forked_from.seq', 999) \
             WHERE session_id = '{forked}' AND seq = 1;\
             PRAGMA ignore_check_constraints = ON;\
             UPDATE sessions SET origin = 'merge' WHERE id = '{misnamed}';"
        ),
    );

    // Restore refuses the broken sessions, naming session and seq.
    let driver = || Box::new(ScriptedDriver::demo());
    let err = Pod::restore(store.clone(), &undecodable, driver()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("session {undecodable} seq 5")),
        "{err}"
    );
    let err = Pod::restore(store.clone(), &gap, driver()).unwrap_err();
    assert!(
        err.to_string().contains(&format!("session {gap} seq 4")),
        "{err}"
    );

    // verify lists every problem with its session and seq, and exits 1.
    let verify = podlog(&bench.db, &["verify"]);
    assert_eq!(verify.code, 1, "{}{}", verify.stdout, verify.stderr);
    let report = format!("{}{}", verify.stdout, verify.stderr);
    for needle in [
        format!("session {undecodable} seq 5"),
        format!("session {gap} seq 4"),
        format!("session {forked} seq 1"),
        format!("session {misnamed}: unknown origin \"merge\""),
    ] {
        assert!(report.contains(&needle), "{needle} in:\n{report}");
    }
    assert!(
        !report.contains(&healthy.session_id().to_string()),
        "{report}"
    );

    // A server serves the healthy pod, and answers for the broken sessions
    // with a clear error instead of falling over.
    let (server, client) = serve_tcp(&store, &healthy).await;
    for (id, seq) in [(&undecodable, 5), (&gap, 4)] {
        let answer = client
            .request(
                Method::GET,
                &format!("/sessions/{id}/entries?after=0&limit=100"),
                &[],
                "",
            )
            .await
            .unwrap();
        assert!(answer.status.is_server_error(), "{}", answer.status);
        let message = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&format!("session {id} seq {seq}")),
            "{message}"
        );
    }
    let answer = client
        .request(Method::GET, &format!("/sessions/{misnamed}"), &[], "")
        .await
        .unwrap();
    assert!(answer.status.is_server_error(), "{}", answer.status);
    let message = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
    assert_eq!(
        message,
        format!("session {misnamed}: unknown origin \"merge\"")
    );
    // The listing names the row that does not read and keeps the others.
    let listing = client.get_json("/sessions").await.unwrap();
    assert_eq!(
        listing["unreadable"],
        serde_json::json!([format!("session {misnamed}: unknown origin \"merge\"")])
    );
    let listed: Vec<&str> = listing["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    let healthy_id = healthy.session_id().to_string();
    assert!(listed.contains(&healthy_id.as_str()), "{listing}");
    assert!(listed.contains(&gap.as_str()), "{listing}");
    assert!(!listed.contains(&misnamed.as_str()), "{listing}");
    let entries = client
        .get_json(&format!(
            "/sessions/{}/entries?after=0&limit=100",
            healthy.session_id()
        ))
        .await
        .unwrap();
    assert!(entries.to_string().contains("session_start"), "{entries}");
    let mut stream = client.events("p", None).await.unwrap();
    let first = stream.next().await.unwrap().expect("a snapshot");
    assert!(first.pod_event().is_some(), "the healthy pod streams");
    healthy.submit_input("still there?".to_owned()).unwrap();
    server.shutdown().await.unwrap();
    healthy.shutdown();
}
