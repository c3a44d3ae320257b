//! Guards against SQL injection by construction: every SQL statement in the
//! library and binary sources is either a literal with bound `?N` parameters,
//! or a `format!` whose interpolations all name build-time constants from
//! the short list below (a column list, a `PRAGMA` value chosen from an
//! enum, a migration number). A `format!` that builds SQL from anything
//! else, user values included, fails this test.

use std::path::{Path, PathBuf};

/// Interpolations allowed in SQL text, and why each is safe.
const CONSTANT_INTERPOLATIONS: &[(&str, &str)] = &[
    ("SESSION_COLUMNS", "a const column list"),
    ("sync", "FULL or NORMAL, from the Synchronous enum"),
    ("version", "a migration number embedded at build time"),
    ("SHARE_COLUMNS", "a const column list (PostgreSQL shares)"),
    ("REFS", "a const join of entries and payload references"),
    ("REFS_OF_E", "a const join of an entry and its references"),
];

/// A positional `{}` is allowed only here: the raw-SQLite benchmark
/// baseline appends one of its const schema strings.
const POSITIONAL_ALLOWED_IN: &str = "podlog-bench/src/baseline.rs";

const SQL_STARTS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "PRAGMA", "CREATE", "DROP", "WITH", "BEGIN", "ALTER",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .contains("tests")
        {
            out.push(path);
        }
    }
}

/// The string literals passed first to `format!(` in `source`.
fn format_literals(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    while let Some(at) = rest.find("format!(") {
        let after = &rest[at + 8..];
        let trimmed = after.trim_start();
        if let Some(body) = trimmed.strip_prefix('"') {
            let mut literal = String::new();
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            if n != '\n' {
                                literal.push('\\');
                                literal.push(n);
                            }
                        }
                    }
                    '"' => break,
                    c => literal.push(c),
                }
            }
            let line = source[..offset + at].lines().count() + 1;
            out.push((line, literal));
        }
        offset += at + 8;
        rest = &rest[at + 8..];
    }
    out
}

fn interpolations(literal: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' {
            if chars.peek() == Some(&'{') {
                chars.next();
                continue;
            }
            let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
            names.push(inner.split(':').next().unwrap_or("").to_owned());
        }
    }
    names
}

#[test]
fn sql_is_never_built_from_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 10, "found the sources");
    let allowed: Vec<&str> = CONSTANT_INTERPOLATIONS.iter().map(|(n, _)| *n).collect();
    let mut sql_formats = 0;
    let mut offending = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for (line, literal) in format_literals(&source) {
            let text = literal.trim_start();
            if !SQL_STARTS.iter().any(|k| text.starts_with(k)) {
                continue;
            }
            sql_formats += 1;
            for name in interpolations(&literal) {
                let positional_ok =
                    name.is_empty() && file.to_string_lossy().ends_with(POSITIONAL_ALLOWED_IN);
                if !allowed.contains(&name.as_str()) && !positional_ok {
                    offending.push(format!("{}:{line}: {{{name}}} in {text:?}", file.display()));
                }
            }
        }
    }
    assert!(
        sql_formats > 0,
        "the audit sees the formatted SQL that exists"
    );
    assert!(
        offending.is_empty(),
        "SQL built from non-constant values:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_audit_catches_a_value_in_sql() {
    let bad = r#"let q = format!("SELECT body FROM entries WHERE session_id = '{session}'");"#;
    let found = format_literals(bad);
    assert_eq!(found.len(), 1);
    assert_eq!(interpolations(&found[0].1), ["session"]);
}
