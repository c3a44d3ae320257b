//! The first CLI: `podlog demo` writes a conversation, `sessions` and `show`
//! read it back, and the stock `sqlite3` shell reads it through the views.
//! Guards against a CLI that writes what it cannot read back, a database the
//! shell cannot open, and errors that do not say which file is at fault.

use crate::support::{podlog, sqlite3, TempDb};

fn timeline_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect()
}

#[test]
fn demo_writes_a_session_that_sessions_and_show_read_back() {
    let db = TempDb::new();
    let demo = podlog(&db.path, &["demo"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    assert!(
        demo.stderr
            .contains(&format!("podlog: database {}", db.path.display())),
        "every command names its database: {}",
        demo.stderr
    );
    let id = demo
        .stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("session "))
        .expect("demo names its session")
        .to_owned();
    let printed = timeline_lines(&demo.stdout);
    assert!(
        printed.len() > 30,
        "a realistic conversation: {}",
        demo.stdout
    );
    for kind in [
        "session_start",
        "user_input",
        "assistant_item",
        "tool_result",
        "turn_end",
        "run_completed",
        "llm_usage",
        "system_item",
    ] {
        assert!(demo.stdout.contains(kind), "demo has a {kind}");
    }

    let list = podlog(&db.path, &["sessions"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the session is listed");
    assert!(row.contains(&format!(" {} ", printed.len())), "{row}");
    assert!(row.contains("demo conversation"), "{row}");

    let prefix = &id[..13];
    let show = podlog(&db.path, &["show", prefix]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(
        timeline_lines(&show.stdout),
        printed,
        "show prints what demo committed"
    );
}

#[test]
fn the_sqlite3_shell_reads_the_demo_through_the_views() {
    let db = TempDb::new();
    let demo = podlog(&db.path, &["demo", "--runs", "2"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    let n = timeline_lines(&demo.stdout).len();

    let count = sqlite3(&db.path, "SELECT count(*) FROM timeline;");
    assert_eq!(count.code, 0, "{}", count.stderr);
    assert_eq!(count.stdout.trim(), n.to_string());

    let list = sqlite3(
        &db.path,
        "SELECT origin, last_seq, entry_count, title FROM session_list;",
    );
    assert_eq!(list.stdout.trim(), format!("new|{n}|{n}|demo conversation"));

    let first = sqlite3(
        &db.path,
        "SELECT seq, kind, summary FROM timeline WHERE seq <= 2 ORDER BY seq;",
    );
    assert_eq!(
        first.stdout,
        "1|session_start|new session, model demo-model-1, 0 history messages\n\
         2|user_input|What does this project do? Start with the README.\n"
    );
    let usage = sqlite3(
        &db.path,
        "SELECT model, calls > 0, input_tokens > 0 FROM usage;",
    );
    assert_eq!(usage.stdout.trim(), "demo-model-1|1|1");
    let json = sqlite3(
        &db.path,
        "SELECT json_extract(body, '$.item.name') FROM entries \
         WHERE kind = 'assistant_item' AND json_extract(body, '$.item.kind') = 'tool_call' \
         ORDER BY seq LIMIT 1;",
    );
    assert_eq!(json.stdout.trim(), "read_file");
}

#[test]
fn podlog_db_in_the_environment_picks_the_file() {
    let db = TempDb::new();
    let run: crate::support::Run = std::process::Command::new(env!("CARGO_BIN_EXE_podlog"))
        .arg("sessions")
        .env("PODLOG_DB", &db.path)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&db.path.display().to_string()));
    assert!(run.stdout.contains("no sessions yet"));
    assert!(db.path.exists());
}

#[test]
fn errors_name_the_file_or_session_and_exit_1() {
    let db = TempDb::new();
    let created = podlog(&db.path, &["sessions"]);
    assert_eq!(created.code, 0);
    let bump = std::process::Command::new("sqlite3")
        .arg(&db.path)
        .arg("PRAGMA user_version = 42;")
        .status()
        .expect("sqlite3 shell");
    assert!(bump.success());
    let refused = podlog(&db.path, &["sessions"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("has schema version 42, newer than"),
        "{}",
        refused.stderr
    );

    let other = TempDb::new();
    let unknown = podlog(&other.path, &["show", "nope"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("podlog: error: unknown session nope"),
        "{}",
        unknown.stderr
    );

    let missing = other.dir.path().join("missing/podlog.db");
    let run = podlog(&missing, &["sessions"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("missing\" does not exist")
            || run.stderr.contains("missing does not exist"),
        "{}",
        run.stderr
    );

    let usage = podlog(&other.path, &["frobnicate"]);
    assert_eq!(usage.code, 2, "bad arguments exit 2");
}
