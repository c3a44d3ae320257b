//! The redactor's unit tests: markers and their keyed hashes, which
//! detector wins an overlap, context detectors and URL passwords replacing
//! only the secret, the fast path, JSON strings, user patterns and their
//! errors; `corpus` runs the detectors over the files in
//! `fixtures/redaction/`.

use super::*;

const KEY: [u8; KEY_BYTES] = [42; KEY_BYTES];

fn redactor() -> Redactor {
    Redactor::new(KEY)
}

/// Redacts `text` and returns the output and the kinds found.
fn run(text: &str) -> (String, Redactions) {
    let mut found = Redactions::default();
    let out = redactor()
        .redact(text, &mut found)
        .unwrap_or_else(|| text.to_owned());
    (out, found)
}

fn github() -> String {
    format!("ghp_FAKEfake{}", "0".repeat(28))
}

#[test]
fn a_marker_names_the_kind_and_eight_hex_digits_of_a_keyed_hash() {
    let token = github();
    let (out, found) = run(&format!("token {token} here"));
    let expected = blake3::keyed_hash(&KEY, token.as_bytes()).to_hex();
    assert_eq!(
        out,
        format!("token [REDACTED:github_token:{}] here", &expected[..8])
    );
    assert_eq!(found.count("github_token"), 1);
    assert_eq!(found.total(), 1);
}

#[test]
fn one_secret_gets_one_marker_everywhere_and_another_key_another_marker() {
    let token = github();
    let (out, found) = run(&format!("{token} and again {token}"));
    let markers: Vec<&str> = out.split(" and again ").collect();
    assert_eq!(markers[0], markers[1]);
    assert_eq!(found.count("github_token"), 2);
    let other = Redactor::new([1; KEY_BYTES]).marker("github_token", &token);
    assert_ne!(other, markers[0], "the marker depends on the key");
    assert_ne!(
        redactor().marker("github_token", &format!("{token}1")),
        markers[0]
    );
}

#[test]
fn anthropic_keys_are_anthropic_not_openai() {
    let key = "sk-ant-api03-FAKEfake0000000000000000000000000000";
    let (out, found) = run(key);
    assert_eq!(found.count("anthropic_key"), 1, "{out}");
    assert_eq!(found.count("openai_key"), 0);
    let (_, found) = run("sk-proj-FAKEfake00000000000000000000000000000");
    assert_eq!(found.count("openai_key"), 1);
}

#[test]
fn only_the_password_of_a_url_is_replaced() {
    let (out, found) = run("git clone https://deploy:FAKEpassw0rd@git.example.com/repo.git");
    assert_eq!(found.count("url_password"), 1);
    assert!(out.starts_with("git clone https://deploy:[REDACTED:url_password:"));
    assert!(out.ends_with("]@git.example.com/repo.git"));
    assert!(!out.contains("FAKEpassw0rd"));
}

#[test]
fn context_detectors_replace_only_the_secret() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let (out, found) = run(&format!("aws_secret_access_key = {secret}\n"));
    assert_eq!(found.count("aws_secret_access_key"), 1);
    assert!(
        out.starts_with("aws_secret_access_key = [REDACTED:"),
        "{out}"
    );
    assert!(out.ends_with("]\n"));
    // The same 40 characters without the context are not a secret.
    let (_, found) = run(&format!("path {secret}"));
    assert!(found.is_empty());
}

#[test]
fn placeholders_and_hyphenated_words_are_not_secrets() {
    for text in [
        "postgres://app:${DB_PASSWORD}@db:5432/app",
        "https://user@example.com/path",
        "the task-sk-list and sk-loading-spinner-container-large classes",
        "mailto:someone@example.com",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    ] {
        let (out, found) = run(text);
        assert!(found.is_empty(), "{text:?} gave {out:?}");
    }
}

#[test]
fn markers_are_never_redacted_again() {
    let (once, found) = run(&format!(
        "https://u:FAKEpassw0rd@h/ {} Authorization: Bearer FAKEfakeFAKEfake00000000",
        github()
    ));
    assert_eq!(found.total(), 3, "{once}");
    let (twice, found) = run(&once);
    assert_eq!(twice, once);
    assert!(found.is_empty(), "{found}");
}

#[test]
fn a_pem_block_is_replaced_whole_and_a_cut_one_up_to_its_last_line() {
    let block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAFAKE\nFAKEfakeFAKE==\n-----END OPENSSH PRIVATE KEY-----";
    let (out, found) = run(&format!("key:\n{block}\ndone"));
    assert_eq!(found.count("pem_private_key"), 1);
    assert!(out.starts_with("key:\n[REDACTED:pem_private_key:"));
    assert!(out.ends_with("]\ndone"));
    let cut = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFAKEfake\nAwEHoUQDQgAE\n$ echo done";
    let (out, found) = run(cut);
    assert_eq!(found.count("pem_private_key"), 1, "{out}");
    assert!(!out.contains("MHcCAQEEIFAKEfake"));
    assert!(out.ends_with("\n$ echo done"), "{out}");
}

#[test]
fn text_without_any_prefix_takes_the_fast_path() {
    let r = redactor();
    assert!(!r.may_contain("cargo build --release && ./target/release/podlog sessions"));
    assert!(r.may_contain(&format!("export GITHUB_TOKEN={}", github())));
    // A prefix alone, or in an ordinary word, is not even a candidate.
    assert!(!r.may_contain("export GITHUB_TOKEN=ghp_"));
    assert!(!r.may_contain("make task-sk-list; see the authorization docs"));
    assert!(r.may_contain("see https://a:b@c"));
    let mut found = Redactions::default();
    assert_eq!(r.redact("plain text", &mut found), None);
}

#[test]
fn json_strings_are_redacted_wherever_they_are_and_keys_and_order_kept() {
    let token = github();
    let doc = format!(
        r#"{{"type":"tool_result","output":"{token}","nested":{{"list":["a","x {token}"]}},"n":1}}"#
    );
    let (out, found) = redactor().redact_json(&doc).unwrap();
    assert_eq!(found.count("github_token"), 2);
    assert!(!out.contains(&token));
    assert!(out.starts_with(r#"{"type":"tool_result","output":"[REDACTED:github_token:"#));
    assert!(out.ends_with(r#"]"]},"n":1}"#), "{out}");
    // A PEM block's newlines are escaped in the document; its string is
    // still found and redacted.
    let pem =
        serde_json::to_string("-----BEGIN PRIVATE KEY-----\nMIIFAKE\n-----END PRIVATE KEY-----")
            .unwrap();
    let (out, found) = redactor().redact_json(&format!("[{pem}]")).unwrap();
    assert_eq!(found.count("pem_private_key"), 1, "{out}");
    assert_eq!(redactor().redact_json(r#"{"text":"nothing here"}"#), None);
}

#[test]
fn user_patterns_add_kinds_and_may_narrow_to_a_group() {
    let patterns = parse_config(
        r#"
[[pattern]]
name = "internal_ticket_secret"
regex = "TKT-[0-9]{6}"

[[pattern]]
name = "db_pin"
regex = "pin=(?P<secret>[0-9]{4})"
"#,
        "test",
    )
    .unwrap();
    let r = Redactor::with_patterns(KEY, &patterns).unwrap();
    assert!(r.has_user_patterns());
    let mut found = Redactions::default();
    let out = r
        .redact("see TKT-123456 with pin=4321.", &mut found)
        .unwrap();
    assert_eq!(found.to_string(), "1 db_pin, 1 internal_ticket_secret");
    assert!(out.starts_with("see [REDACTED:internal_ticket_secret:"));
    assert!(out.contains(" with pin=[REDACTED:db_pin:"), "{out}");
    // With user patterns a document is always looked into.
    let (doc, _) = r.redact_json(r#"{"a":"TKT-000001"}"#).unwrap();
    assert!(!doc.contains("TKT-000001"));
}

#[test]
fn an_invalid_user_regex_is_an_error_naming_the_pattern() {
    let patterns = parse_config(
        "[[pattern]]\nname = \"broken\"\nregex = \"(unclosed\"\n",
        "t",
    )
    .unwrap();
    let err = Redactor::with_patterns(KEY, &patterns).unwrap_err();
    assert!(matches!(&err, ConfigError::InvalidRegex { name, .. } if name == "broken"));
    assert!(err.to_string().contains("\"broken\""), "{err}");
    let bad = [UserPattern {
        name: "Has Space".to_owned(),
        regex: "x".to_owned(),
    }];
    let err = Redactor::with_patterns(KEY, &bad).unwrap_err();
    assert!(err.to_string().contains("Has Space"), "{err}");
    let err = parse_config("[[pattern]]\nname = \"x\"\n", "cfg.toml").unwrap_err();
    assert!(err.to_string().contains("cfg.toml"), "{err}");
    let err = load_config(Path::new("/nonexistent/redact.toml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/redact.toml"),
        "{err}"
    );
}

#[test]
fn the_debug_form_never_shows_the_key() {
    let text = format!("{:?}", redactor());
    assert!(!text.contains("42"), "{text}");
    assert!(text.contains("github_token"));
}

#[test]
fn every_kind_has_a_detector_and_counts_print_by_kind() {
    let r = redactor();
    for kind in BUILTIN_KINDS {
        assert!(r.detectors.iter().any(|d| d.kind == kind), "{kind}");
    }
    let mut a = Redactions::default();
    a.add("jwt");
    let mut b = Redactions::default();
    b.add("jwt");
    b.add("aws_access_key_id");
    a.merge(&b);
    assert_eq!(a.to_string(), "1 aws_access_key_id, 2 jwt");
}

mod corpus;
