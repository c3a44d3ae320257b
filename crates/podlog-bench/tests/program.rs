//! The `podlog-bench` program as it runs: guards against the quick mode
//! losing its second process. Row P8 measures the server's memory per
//! client only if the clients run elsewhere, so the program must start
//! itself again with `--fanout-clients SPEC` and report back; rows H1 and
//! H2 measure the server's own memory, so it starts itself again with
//! `--serve-restored SPEC` to serve. These tests run those child roles, end
//! to end, at a tiny size, and check the program's exit codes. No test
//! looks at how fast anything is.

use std::path::PathBuf;
use std::process::Command;

use podlog_bench::fanout::{measure_fanout, ClientLauncher, FanoutSpec};
use podlog_bench::huge::{HugeFixture, HugeSpec};
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
    let unknown = run(&["--only", "P1,Q7"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}
