//! The `podlog-bench` program as it runs: guards against the quick mode
//! losing its second process. Row P8 measures the server's memory per
//! client only if the clients run elsewhere, so the program must start
//! itself again with `--fanout-clients SPEC` and report back; these tests
//! run that child role, end to end, at a tiny size, and check the
//! program's exit codes. No test looks at how fast anything is.

use std::path::PathBuf;
use std::process::Command;

use podlog_bench::fanout::{measure_fanout, ClientLauncher, FanoutSpec};

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
}
