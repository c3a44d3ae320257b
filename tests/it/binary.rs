//! The shipped `podlog` binary is the product only. Guards against
//! benchmark code (the `podlog-bench` crate, criterion) creeping back into
//! what `podlog` links, against `libc` becoming a direct dependency of it,
//! and against benchmark or test-only commands (`bench`, `append-loop`,
//! `hold`) returning to its command line, shown or hidden. Also checks
//! that `serve --help` documents the demo's pace as the demo runs it.

use std::process::Command;
use std::time::Duration;

use podlog_server::demo::DemoOptions;

/// Crates that must not be in `podlog`'s normal dependency graph.
const FORBIDDEN: [&str; 2] = ["podlog-bench", "criterion"];

/// `podlog --ARGS`, with no database from the environment.
fn podlog(args: &[&str]) -> crate::support::Run {
    Command::new(env!("CARGO_BIN_EXE_podlog"))
        .args(args)
        .env_remove("PODLOG_DB")
        .output()
        .expect("run podlog")
        .into()
}

#[test]
fn the_binary_links_no_bench_code() {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "podlog",
            "-e",
            "normal",
            "--prefix",
            "depth",
        ])
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each line is `DEPTH NAME vVERSION ...`, e.g. `1clap v4.5.0`.
    let crates: Vec<(usize, &str)> = stdout
        .lines()
        .filter_map(|line| {
            let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let depth = line[..digits].parse().ok()?;
            let name = line[digits..].split_whitespace().next()?;
            Some((depth, name))
        })
        .collect();
    assert!(
        crates.first() == Some(&(0, "podlog")),
        "unexpected cargo tree output: {stdout}"
    );
    assert!(
        crates.iter().any(|&(_, name)| name == "podlog-server"),
        "the tree lists podlog's dependencies: {stdout}"
    );
    for (depth, name) in &crates {
        assert!(
            !FORBIDDEN.contains(name),
            "podlog links {name} (depth {depth}): benchmark code belongs in `cargo run -p podlog-bench` only\n{stdout}"
        );
        assert!(
            !(*depth == 1 && *name == "libc"),
            "libc is a direct dependency of podlog\n{stdout}"
        );
    }
}

#[test]
fn the_command_line_has_no_bench_or_test_only_commands() {
    let help = podlog(&["--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    let commands: Vec<&str> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        commands.contains(&"serve") && commands.contains(&"demo"),
        "the help lists the commands: {}",
        help.stdout
    );
    for gone in ["bench", "append-loop", "hold"] {
        assert!(
            !commands.contains(&gone),
            "`podlog {gone}` is listed: {}",
            help.stdout
        );
        // Not hidden either: the command line refuses it as unknown.
        let run = podlog(&[gone, "--help"]);
        assert_eq!(run.code, 2, "`podlog {gone}` exists: {}", run.stdout);
        assert!(
            run.stderr
                .contains(&format!("unrecognized subcommand '{gone}'")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn serve_help_documents_the_demo_pace_it_uses() {
    let help = podlog(&["serve", "--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert!(
        help.stdout.contains("--demo-pace-ms <MS>"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("default 120;"), "{}", help.stdout);
    let demo = DemoOptions::default();
    assert_eq!(demo.delta_delay, Duration::from_millis(120));
    assert_eq!(demo.pause_between_runs, demo.delta_delay * 25);

    // Only with --demo, and never a pace of 0 (a writer flat out).
    let alone = podlog(&["serve", "--demo-pace-ms", "10"]);
    assert_eq!(alone.code, 2, "{}", alone.stderr);
    let zero = podlog(&["serve", "--demo", "--demo-pace-ms", "0"]);
    assert_eq!(zero.code, 2, "{}", zero.stderr);
}
