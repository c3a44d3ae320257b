//! Guards against a migration that breaks on upgrade or loses data: every
//! database from an earlier schema version, kept as an SQL dump under
//! `fixtures/schema/`, must open with the current podlog, reach the current
//! schema version, and keep every session and entry exactly (checked entry by
//! entry), and a database from a newer version must be refused untouched.
//! Upgraded data is searchable, payloads included (schema 5).

use std::path::Path;

use podlog_store::{Store, StoreOptions, SCHEMA_VERSION};

use crate::support::{sqlite3, TempDb};

/// Loads an SQL dump into a new database file with the stock shell.
fn load_dump(dump: &Path, db: &Path) {
    let status = std::process::Command::new("sqlite3")
        .arg(db)
        .stdin(std::fs::File::open(dump).expect("open dump"))
        .status()
        .expect("the sqlite3 shell must be installed");
    assert!(status.success(), "loading {}", dump.display());
}

/// `(session_id, seq, kind, body)` of every entry, read with the shell.
fn raw_entries(db: &Path) -> Vec<(String, u64, String, String)> {
    read_entries(db, "entries")
}

/// The same from `table`: `entries` for the rows as stored, `entries_full`
/// (schema 3 on) for the entries with their payloads put back.
fn read_entries(db: &Path, table: &str) -> Vec<(String, u64, String, String)> {
    let run: crate::support::Run = std::process::Command::new("sqlite3")
        .args(["-readonly", "-json"])
        .arg(db)
        .arg(format!(
            "SELECT session_id, seq, kind, body FROM {table} ORDER BY session_id, seq;"
        ))
        .output()
        .expect("the sqlite3 shell must be installed")
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).expect("json rows");
    rows.iter()
        .map(|r| {
            (
                r["session_id"].as_str().unwrap().to_owned(),
                r["seq"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_owned(),
                r["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `(session_id, seq) -> body` of every entry with its payloads put back,
/// read with the shell through the `entries_full` view (schema 3 and on).
fn whole_bodies(db: &Path) -> std::collections::HashMap<(String, u64), String> {
    read_entries(db, "entries_full")
        .into_iter()
        .map(|(session, seq, _, body)| ((session, seq), body))
        .collect()
}

fn dumps() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/schema exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    found.sort();
    found
}

#[test]
fn every_earlier_schema_version_upgrades_with_all_its_data() {
    let dumps = dumps();
    // One dump per earlier version: 1 .. SCHEMA_VERSION - 1.
    let versions: Vec<String> = dumps
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = (1..SCHEMA_VERSION).map(|v| format!("v{v}")).collect();
    assert_eq!(
        versions, expected,
        "keep a dump of every earlier schema version"
    );

    for dump in &dumps {
        let db = TempDb::new();
        load_dump(dump, &db.path);
        let dumped_version: i64 = dump.file_stem().unwrap().to_string_lossy()[1..]
            .parse()
            .unwrap();
        let before = raw_entries(&db.path);
        assert!(
            before.len() > 10,
            "{} holds a real conversation",
            dump.display()
        );
        let sessions_before = sqlite3(
            &db.path,
            "SELECT id, origin, last_seq, entry_count FROM sessions ORDER BY id;",
        )
        .stdout;

        let store = Store::open(&db.path, StoreOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", dump.display()));
        let version = sqlite3(&db.path, "PRAGMA user_version;").stdout;
        assert_eq!(version.trim(), SCHEMA_VERSION.to_string());

        // Entry by entry: same rows, and every body decodes and re-encodes to
        // the same JSON (with its payloads put back, for a row stored lean).
        let whole = whole_bodies(&db.path);
        let mut checked = 0;
        for info in store.sessions().unwrap().into_iter().map(Result::unwrap) {
            let entries = store.entries(&info.id).unwrap();
            assert_eq!(entries.len() as u64, info.entry_count);
            for c in entries {
                let row = before
                    .iter()
                    .find(|r| r.0 == info.id.as_str() && r.1 == c.seq.get())
                    .unwrap_or_else(|| panic!("{}@{} was not in the dump", info.id, c.seq));
                assert_eq!(row.2, c.entry.kind());
                let key = (row.0.clone(), row.1);
                // As JSON: a dump may hold bodies with spaces between tokens.
                let stored: serde_json::Value = serde_json::from_str(&whole[&key]).unwrap();
                let read: serde_json::Value = serde_json::from_str(&c.entry.to_json()).unwrap();
                assert_eq!(stored, read, "{}@{}", info.id, c.seq);
                checked += 1;
            }
        }
        assert_eq!(checked, before.len(), "every entry survived");
        // Rows stored whole (all those written before payloads went out of
        // line) read the same in the form the mirror and the wire carry.
        for info in store.sessions().unwrap().into_iter().map(Result::unwrap) {
            let lean = store
                .previews_after(&info.id, podlog_entry::Seq::ZERO, usize::MAX)
                .unwrap();
            let full = store.entries(&info.id).unwrap();
            assert_eq!(lean.len(), full.len());
            for (l, f) in lean.iter().zip(&full) {
                let stored_whole = before.iter().any(|r| {
                    r.0 == info.id.as_str()
                        && r.1 == l.seq.get()
                        && whole[&(r.0.clone(), r.1)] == r.3
                });
                if stored_whole {
                    assert!(l.payloads.is_none());
                    assert_eq!(l, f);
                } else {
                    assert_eq!(l.seq, f.seq);
                }
            }
            // Schema 7 filled in each session's stored size from its rows:
            // body bytes plus the sizes of the payloads they reference.
            let body_bytes = sqlite3(
                &db.path,
                "SELECT session_id || ' ' || sum(length(CAST(body AS BLOB))) FROM entries \
                 GROUP BY session_id;",
            )
            .stdout;
            let body_bytes: u64 = body_bytes
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{} ", info.id)))
                .and_then(|n| n.parse().ok())
                .unwrap();
            let computed: u64 = body_bytes
                + lean
                    .iter()
                    .flat_map(|c| c.payloads.iter().flat_map(|refs| refs.iter()))
                    .map(|r| r.size)
                    .sum::<u64>();
            assert!(computed > 0);
            assert_eq!(info.stored_bytes, computed, "{}", info.id);
            assert_eq!(info.redactions, 0, "nothing was redacted before");
        }
        assert!(store.verify(None).unwrap().is_empty());
        assert_eq!(raw_entries(&db.path), before, "no row changed");
        let sessions_after = sqlite3(
            &db.path,
            "SELECT id, origin, last_seq, entry_count FROM sessions ORDER BY id;",
        )
        .stdout;
        assert_eq!(sessions_after, sessions_before);
        check_search(&store, &db.path, dumped_version, &before);
        // The new views work on the upgraded data.
        let lineage = sqlite3(&db.path, "SELECT count(*) FROM lineage;");
        assert_eq!(
            lineage.stdout.trim(),
            sessions_before.lines().count().to_string()
        );
    }
}

#[test]
fn a_database_from_a_newer_version_is_refused_and_left_untouched() {
    let db = TempDb::new();
    load_dump(&dumps()[0], &db.path);
    let newer = SCHEMA_VERSION + 1;
    let bump = sqlite3(&db.path, "SELECT 1;");
    assert_eq!(bump.code, 0);
    let status = std::process::Command::new("sqlite3")
        .arg(&db.path)
        .arg(format!("PRAGMA user_version = {newer};"))
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(&db.path).unwrap();
    let err = Store::open(&db.path, StoreOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "database {} has schema version {newer}, newer than the {SCHEMA_VERSION} this podlog \
             supports; upgrade podlog to open it (nothing was changed)",
            db.path.display()
        )
    );
    assert_eq!(std::fs::read(&db.path).unwrap(), before, "file untouched");
}

/// The upgrade indexed every searchable entry: FTS5's own check against
/// the content agrees, a word of the demo is found in each session that
/// has it, through the store and the stock shell, and in the dump with
/// payloads a word only past a payload's preview is found.
fn check_search(store: &Store, db: &Path, version: i64, rows: &[(String, u64, String, String)]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("INSERT INTO search (search, rank) VALUES ('integrity-check', 1)")
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
    drop(conn);
    let hits = |text: &str| -> Vec<(String, u64)> {
        let page = store
            .search(&podlog_store::SearchQuery {
                text: text.to_owned(),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        page.hits
            .iter()
            .map(|h| (h.session.to_string(), h.seq.get()))
            .collect()
    };
    // Every user input of the dump is found by its own words.
    let inputs: Vec<&(String, u64, String, String)> =
        rows.iter().filter(|r| r.2 == "user_input").collect();
    assert!(!inputs.is_empty(), "v{version} has user input");
    for (session, seq, _, body) in inputs {
        let text = serde_json::from_str::<serde_json::Value>(body).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let found = hits(&podlog_store::search::plain_query(&text));
        assert!(
            found.contains(&(session.clone(), *seq)),
            "v{version}: {session}@{seq} {text:?} not found: {found:?}"
        );
    }
    let shell = sqlite3(
        db,
        "SELECT count(*) FROM search WHERE search MATCH 'file' AND rowid > 0;",
    );
    assert_eq!(shell.code, 0, "{}", shell.stderr);
    assert!(
        shell.stdout.trim().parse::<u64>().unwrap() > 0,
        "v{version}"
    );
    if version >= 4 {
        // A word on the payload's last line, past the preview; each dump
        // names its own.
        let word = match version {
            4 => "quokkafinch",
            5 => "wallabyheron",
            6 => "numbatkestrel",
            _ => "dingoplover",
        };
        let found = hits(word);
        assert_eq!(
            found.len(),
            2,
            "v{version}: both outputs holding the payload"
        );
        assert!(
            !rows.iter().any(|r| r.3.contains(word)),
            "only in the payload"
        );
    }
}
