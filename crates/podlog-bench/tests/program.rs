//! The `podlog-bench` program as it runs: guards against the quick mode
//! losing its second process. Row P8 measures the server's memory per
//! client only if the clients run elsewhere, so the program must start
//! itself again with `--fanout-clients SPEC` and report back; rows H1 and
//! H2 measure the server's own memory, so it starts itself again with
//! `--serve-restored SPEC` to serve; row PG3's follower must be another
//! process, so it starts itself again with `--pg-follow SPEC`. These tests
//! run those child roles, end to end, at a tiny size, and check the
//! program's exit codes. No test
//! looks at how fast anything is.

use std::path::PathBuf;
use std::process::Command;

use podlog_bench::fanout::{measure_fanout, ClientLauncher, FanoutSpec};
use podlog_bench::huge::{HugeFixture, HugeSpec};
use podlog_bench::pg::{measure_follow, open_store, BenchSchema, FollowerLauncher};
use podlog_bench::restored::{measure_restored, ServerLauncher};

const PROGRAM: &str = env!("CARGO_BIN_EXE_podlog-bench");

#[test]
fn p8_clients_run_in_the_program_started_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    // What the program itself starts for its clients (see `src/main.rs`).
    let launcher = ClientLauncher::Command {
        program: PathBuf::from(PROGRAM),
        args: vec!["--fanout-clients".to_owned()],
    };
    let spec = FanoutSpec {
        clients: 4,
        events: 5,
        rate: 200,
        history: 5,
    };
    let run = measure_fanout(dir.path(), "p8.db", &spec, &launcher).expect("a fan-out run");
    assert_eq!(run.report.attached, 4, "{:?}", run.report);
    assert_eq!(run.report.complete, 4, "{:?}", run.report);
    assert_eq!(run.report.out_of_order, 0, "{:?}", run.report);
    assert_eq!(run.report.deliveries, run.expected);
    assert_eq!(run.expected, 20);
}

#[test]
fn the_h1_server_runs_in_the_program_started_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = HugeFixture::build(
        dir.path(),
        "huge.db",
        &HugeSpec {
            entries: 200,
            output_bytes: 2 << 20,
            seed: 3,
        },
    )
    .expect("the long session");
    // What the program itself starts for its server (see `src/main.rs`).
    let launcher = ServerLauncher::Command {
        program: PathBuf::from(PROGRAM),
        args: vec!["--serve-restored".to_owned()],
    };
    let run =
        measure_restored(&fixture.path(), fixture.session(), 10, &launcher).expect("a server run");
    assert!(run.separate_process);
    assert_eq!(run.ready.end_seq, 200);
    let rss = run.ready.rss_bytes.expect("VmRSS");
    assert!(
        rss > 0 && run.ready.hwm_bytes >= Some(rss),
        "{:?}",
        run.ready
    );
    assert!(run.done.hwm_bytes >= run.ready.hwm_bytes, "{run:?}");
    assert_ne!(run.ready.addr.port(), 0);
    assert_eq!(run.first.event, "snapshot");
    assert_eq!(run.first.id_seq(), Some(200));
    assert_eq!(run.tail_entries, 10);
    assert!(run.tail.bytes < run.first.bytes, "{run:?}");
    assert!(run.first.wire_bytes > run.first.bytes, "{run:?}");
}

/// The PostgreSQL server of the tests: `PODLOG_TEST_PG`, else the
/// project's loopback server. A test fails when it does not answer.
fn test_pg_url() -> String {
    std::env::var("PODLOG_TEST_PG")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

#[test]
fn the_pg3_follower_runs_in_the_program_started_again() {
    let url = test_pg_url();
    let schema = BenchSchema::create("PG3", &url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let store = open_store("PG3", &schema, podlog_store::Synchronous::Full).expect("a store");
    // What the program itself starts for its follower (see `src/main.rs`).
    let launcher = FollowerLauncher::Command {
        program: PathBuf::from(PROGRAM),
        args: vec!["--pg-follow".to_owned()],
    };
    let entries = podlog_bench::corpus::Corpus::new(5).take_vec(20);
    let (latencies, apart) = measure_follow(
        &store,
        schema.url(),
        entries,
        std::time::Duration::from_millis(2),
        &launcher,
    )
    .expect("a follow run");
    assert!(apart);
    assert_eq!(latencies.len(), 20);
    assert!(
        latencies.iter().all(|l| l.is_finite() && *l >= 0.0),
        "{latencies:?}"
    );
    drop(store);
    schema.drop_now().expect("the schema dropped");
}

#[test]
fn the_pg_rows_are_skipped_without_a_postgresql_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(PROGRAM)
        .args(["--only", "PG1,PG3", "--db"])
        .arg(dir.path().join("podlog.db"))
        .output()
        .expect("run podlog-bench");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PG1, PG2, PG3: skipped: they need a PostgreSQL server"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.lines().any(|l| l.starts_with("PG")), "{stdout}");
}

#[test]
fn bad_arguments_exit_2_and_a_bad_client_spec_exits_1() {
    let run = |args: &[&str]| {
        Command::new(PROGRAM)
            .args(args)
            .env_remove("PODLOG_DB")
            .output()
            .expect("run podlog-bench")
    };
    let zero = run(&["--repeats", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");

    let bad = run(&["--fanout-clients", "not json"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("podlog-bench: error: benchmark clients: bad spec"),
        "{stderr}"
    );

    let bad = run(&["--serve-restored", "{}"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("podlog-bench: error: benchmark server: H1: bad spec"),
        "{stderr}"
    );
    let bad = run(&["--pg-follow", "{}"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("podlog-bench: error: benchmark follower: PG3: follower: bad spec"),
        "{stderr}"
    );
    let unknown = run(&["--only", "P1,Q7"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}
