//! The lifecycle CLI end to end: `demo`, `fork`, `compact`, `tree`,
//! `verify`, `export` and `import` through the real binary. Guards against
//! a round trip that changes what `show` prints, a verifier that misses a row
//! edited with the `sqlite3` shell or exits 0 on it, an import that
//! half-writes a bad file or does not say which line is bad, and progress
//! bars that leak into piped output.

use std::path::Path;

use crate::support::{podlog, sqlite3, Run, TempDb};

/// `sqlite3 DB SQL` with write access: a user editing rows behind podlog's
/// back.
fn sqlite3_write(db: &Path, sql: &str) {
    let run: Run = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell must be installed (apt-get install sqlite3)")
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
}

pub(crate) fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// Runs `podlog demo` and returns the new session's id.
pub(crate) fn demo(db: &Path) -> String {
    let run = ok(podlog(db, &["demo", "--runs", "2"]));
    run.stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("session "))
        .expect("demo names its session")
        .to_owned()
}

/// The id after "into session " in a fork or compact report.
pub(crate) fn new_session(run: &Run) -> String {
    run.stdout
        .split("into session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no new session in {:?}", run.stdout))
        .to_owned()
}

/// The seq of the first entry of `kind` in `podlog show` output.
pub(crate) fn first_seq_of(show: &str, kind: &str) -> u64 {
    show.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(kind))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {kind} in {show}"))
}

fn entry_count(show: &str) -> u64 {
    show.lines().skip(1).count() as u64
}

#[test]
fn fork_compact_tree_verify_export_and_import_round_trip() {
    let db = TempDb::new();
    let root = demo(&db.path);
    let root_show = ok(podlog(&db.path, &["show", &root])).stdout;
    let root_entries = entry_count(&root_show);
    let at = first_seq_of(&root_show, "tool_result");

    let fork = new_session(&ok(podlog(
        &db.path,
        &["fork", &root, "--at", &at.to_string()],
    )));
    let compact_run = ok(podlog(&db.path, &["compact", &fork]));
    assert!(
        compact_run
            .stdout
            .starts_with(&format!("compacted {fork} at seq 1 into session ")),
        "{}",
        compact_run.stdout
    );
    let compacted = new_session(&compact_run);
    let summarised = new_session(&ok(podlog(
        &db.path,
        &[
            "compact",
            &root,
            "--summary",
            "The user asked what podlog is.",
        ],
    )));

    let summary = ok(podlog(&db.path, &["show", &compacted])).stdout;
    assert!(
        summary.contains("compacted from ") && summary.contains("1 history messages"),
        "the mechanical summary is one message: {summary}"
    );

    let tree = ok(podlog(&db.path, &["tree"])).stdout;
    assert_eq!(
        tree,
        format!(
            "{root}  new, {root_entries} entries  demo conversation\n\
             ├── {fork}  fork at seq {at}, 1 entry  demo conversation\n\
             │   └── {compacted}  compaction at seq 1, 1 entry  demo conversation\n\
             └── {summarised}  compaction at seq {root_entries}, 1 entry  demo conversation\n"
        )
    );

    let verified = ok(podlog(&db.path, &["verify"]));
    assert_eq!(
        verified.stdout,
        format!("ok: 4 sessions, {} entries verified\n", root_entries + 3)
    );

    let file = db.dir.path().join("export.jsonl");
    let file_arg = file.to_str().unwrap();
    let exported = ok(podlog(
        &db.path,
        &["export", &compacted, "--with-ancestors", "-o", file_arg],
    ));
    assert!(
        exported.stderr.contains(&format!(
            "exported 3 sessions ({} entries) to {file_arg}",
            root_entries + 2
        )),
        "{}",
        exported.stderr
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let fresh = TempDb::new();
    let imported = ok(podlog(&fresh.path, &["import", file_arg]));
    assert_eq!(
        imported.stdout,
        format!(
            "imported 3 sessions ({} entries) from {file_arg}:\n  {root}\n  {fork}\n  {compacted}\n",
            root_entries + 2
        )
    );
    assert_eq!(
        ok(podlog(&fresh.path, &["verify"])).stdout,
        format!("ok: 3 sessions, {} entries verified\n", root_entries + 2)
    );
    for session in [&root, &fork, &compacted] {
        assert_eq!(
            ok(podlog(&fresh.path, &["show", session])).stdout,
            ok(podlog(&db.path, &["show", session])).stdout,
            "show {session} prints the same after the round trip"
        );
    }
    let again = ok(podlog(
        &fresh.path,
        &["export", &compacted, "--with-ancestors"],
    ));
    assert_eq!(
        again.stdout,
        std::fs::read_to_string(&file).unwrap(),
        "exporting the import gives the same file"
    );

    // The whole database, each session after its parent, moves in one
    // import and reads back the same.
    let all = ok(podlog(&db.path, &["export", "--all"]));
    assert!(
        all.stderr.contains(&format!(
            "exported 4 sessions ({} entries) to stdout",
            root_entries + 3
        )),
        "{}",
        all.stderr
    );
    let all_file = db.dir.path().join("all.jsonl");
    std::fs::write(&all_file, &all.stdout).unwrap();
    let moved = TempDb::new();
    ok(podlog(&moved.path, &["import", all_file.to_str().unwrap()]));
    assert_eq!(
        ok(podlog(&moved.path, &["verify"])).stdout,
        format!("ok: 4 sessions, {} entries verified\n", root_entries + 3)
    );
    assert_eq!(ok(podlog(&moved.path, &["tree"])).stdout, tree);
    assert_eq!(
        ok(podlog(&moved.path, &["export", "--all"])).stdout,
        all.stdout
    );
    let both = podlog(&db.path, &["export", &root, "--all"]);
    assert_ne!(both.code, 0, "a session and --all together are refused");
}

#[test]
fn piped_exports_are_pure_json_lines_with_no_progress_bar() {
    let db = TempDb::new();
    let root = demo(&db.path);
    let run = ok(podlog(&db.path, &["export", &root]));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len() as u64,
        1 + entry_count(&ok(podlog(&db.path, &["show", &root])).stdout)
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
    }
    assert!(!run.stderr.contains("exporting ["), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no terminal escapes: {:?}",
        run.stderr
    );
}

#[test]
fn verify_reports_rows_edited_with_the_sqlite3_shell_and_exits_1() {
    let db = TempDb::new();
    let root = demo(&db.path);
    let other = demo(&db.path);
    sqlite3_write(
        &db.path,
        &format!(
            "UPDATE entries SET kind = 'turn_end' WHERE session_id = '{root}' AND seq = 3; \
             PRAGMA ignore_check_constraints = ON; \
             UPDATE entries SET body = '{{}}' WHERE session_id = '{root}' AND seq = 5;"
        ),
    );
    let run = podlog(&db.path, &["verify"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // The edit shrank seq 5's body, so the session's stored size is off by
    // the bytes it lost.
    let lost = sqlite3(
        &db.path,
        &format!(
            "SELECT s.stored_bytes - (SELECT sum(length(CAST(body AS BLOB))) FROM entries \
             WHERE session_id = s.id) FROM sessions AS s WHERE s.id = '{root}';"
        ),
    );
    let lost: i64 = lost.stdout.trim().parse().unwrap();
    assert!(lost > 0, "{lost}");
    let stored: i64 = sqlite3(
        &db.path,
        &format!("SELECT stored_bytes FROM sessions WHERE id = '{root}';"),
    )
    .stdout
    .trim()
    .parse()
    .unwrap();
    assert_eq!(
        run.stdout,
        format!(
            "session {root} seq 3: kind column says turn_end but the body's type is assistant_item\n\
             session {root} seq 5: body does not decode: entry has no \"type\" field\n\
             session {root}: stored_bytes counter is {stored} but its entries hold {} bytes\n\
             3 problems found in 2 sessions\n",
            stored - lost
        )
    );
    let one = podlog(&db.path, &["verify", &root[..20]]);
    assert_eq!(one.code, 1);
    assert!(
        one.stdout.ends_with("3 problems found in 1 session\n"),
        "{}",
        one.stdout
    );
    let clean = ok(podlog(&db.path, &["verify", &other]));
    assert!(
        clean.stdout.starts_with("ok: 1 session, "),
        "{}",
        clean.stdout
    );
}

#[test]
fn an_unknown_origin_is_named_by_every_command_and_hides_no_other_session() {
    let db = TempDb::new();
    let good = demo(&db.path);
    let bad = demo(&db.path);
    sqlite3_write(
        &db.path,
        &format!(
            "PRAGMA ignore_check_constraints = ON; \
             UPDATE sessions SET origin = 'merge' WHERE id = '{bad}';"
        ),
    );
    let named = format!("session {bad}: unknown origin \"merge\"");

    let sessions = ok(podlog(&db.path, &["sessions"]));
    assert!(
        sessions.stdout.contains(&format!("! {named}\n")),
        "{}",
        sessions.stdout
    );
    assert!(sessions.stdout.contains(&good), "{}", sessions.stdout);
    assert!(
        sessions
            .stdout
            .ends_with("(1 session row does not read; `podlog verify` tells more)\n"),
        "{}",
        sessions.stdout
    );
    let tree = ok(podlog(&db.path, &["tree"]));
    assert!(tree.stdout.starts_with(&good), "{}", tree.stdout);
    assert!(
        tree.stdout.ends_with(&format!("{named}\n")),
        "{}",
        tree.stdout
    );

    for args in [&["show", bad.as_str()][..], &["export", bad.as_str()]] {
        let refused = podlog(&db.path, args);
        assert_eq!(refused.code, 1, "{args:?}: {}", refused.stdout);
        assert!(
            refused.stderr.contains(&named),
            "{args:?}: {}",
            refused.stderr
        );
    }
    ok(podlog(&db.path, &["show", &good]));

    let verify = podlog(&db.path, &["verify", &bad]);
    assert_eq!(verify.code, 1, "{}", verify.stderr);
    assert_eq!(
        verify.stdout,
        format!("{named}\n1 problem found in 1 session\n")
    );
}

#[test]
fn an_import_with_a_bad_line_3_names_it_and_changes_nothing() {
    let src = TempDb::new();
    let root = demo(&src.path);
    let file = src.dir.path().join("bad.jsonl");
    let text = ok(podlog(&src.path, &["export", &root])).stdout;
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"session_id\": \"oops\"";
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let db = TempDb::new();
    demo(&db.path);
    let before = (
        ok(podlog(&db.path, &["sessions"])).stdout,
        ok(podlog(&db.path, &["verify"])).stdout,
    );
    let run = podlog(&db.path, &["import", file.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "podlog: error: importing {}: line 3: not JSON: ",
            file.display()
        )) && run.stderr.contains("(nothing was imported)"),
        "{}",
        run.stderr
    );
    let after = (
        ok(podlog(&db.path, &["sessions"])).stdout,
        ok(podlog(&db.path, &["verify"])).stdout,
    );
    assert_eq!(after, before, "the database is unchanged");
}
