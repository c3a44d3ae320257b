//! The `podlog` binary on PostgreSQL: a whole SQLite database moved over
//! with `export --all | import`, then read, verified, searched and trimmed
//! there. Guards against a command that works on one backend only, and an
//! export or import that changes a byte on the way between them.

use std::path::Path;

use crate::lifecycle_cli::{demo, first_seq_of, new_session, ok};
use crate::pg_support::PgSchema;
use crate::support::{podlog, TempDb};

/// The (session, seq) of each hit `podlog search` prints.
fn hits(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_whole_sqlite_database_moves_to_postgresql_and_reads_back_the_same() {
    let db = TempDb::new();
    let root = demo(&db.path);
    let show = ok(podlog(&db.path, &["show", &root])).stdout;
    let at = first_seq_of(&show, "tool_result").to_string();
    let fork = new_session(&ok(podlog(&db.path, &["fork", &root, "--at", &at])));
    let compacted = new_session(&ok(podlog(&db.path, &["compact", &fork])));
    let exported = ok(podlog(&db.path, &["export", "--all"])).stdout;
    let file = db.dir.path().join("all.jsonl");
    std::fs::write(&file, &exported).unwrap();

    let pg = PgSchema::new();
    let url = Path::new(&pg.url);
    // The server trusts loopback, so any password works: it must never be
    // printed.
    let (scheme, rest) = pg.url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    let with_password = format!("{scheme}://{user}:hunter2secret@{host}");
    let imported = ok(podlog(
        Path::new(&with_password),
        &["import", file.to_str().unwrap()],
    ));
    assert!(
        imported.stdout.starts_with("imported 3 sessions"),
        "{}",
        imported.stdout
    );
    assert!(
        imported
            .stderr
            .contains(&format!("podlog: database {scheme}://{user}:***@{host}")),
        "the database is named: {}",
        imported.stderr
    );
    assert!(!imported.stderr.contains("hunter2secret"));
    let verified = ok(podlog(&db.path, &["verify"])).stdout;
    assert_eq!(ok(podlog(url, &["verify"])).stdout, verified);
    for args in [&["tree"][..], &["show", &root], &["show", &compacted]] {
        assert_eq!(
            ok(podlog(url, args)).stdout,
            ok(podlog(&db.path, args)).stdout,
            "podlog {args:?}"
        );
    }
    assert_eq!(
        ok(podlog(url, &["export", "--all"])).stdout,
        exported,
        "the export from PostgreSQL is the export from SQLite, byte for byte"
    );
    let on_sqlite = hits(&ok(podlog(&db.path, &["search", "test"])).stdout);
    assert!(!on_sqlite.is_empty());
    assert_eq!(
        hits(&ok(podlog(url, &["search", "test"])).stdout),
        on_sqlite
    );

    // Trimming: a session whose descendants stay is kept; its leaf goes.
    let refused = podlog(url, &["rm", &fork]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    let removed = ok(podlog(url, &["rm", &compacted]));
    assert!(
        removed.stdout.contains("deleted 1 session"),
        "{}",
        removed.stdout
    );
    let sessions = ok(podlog(url, &["sessions"])).stdout;
    assert_eq!(
        sessions.lines().count(),
        3,
        "a header and two sessions: {sessions}"
    );
    assert!(!sessions.contains(&compacted));
    assert!(ok(podlog(url, &["verify"]))
        .stdout
        .starts_with("ok: 2 sessions"));
}
