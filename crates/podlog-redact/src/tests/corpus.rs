//! The corpora of `fixtures/redaction/`: realistic fake secrets that every
//! detector must catch, and ordinary text that must come out unchanged.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/redaction")
        .join(name)
}

#[derive(Deserialize)]
struct Manifest {
    file: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    name: String,
    kinds: Vec<String>,
    secrets: Vec<String>,
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(corpus("secrets/manifest.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

#[test]
fn each_secret_file_yields_exactly_its_kinds_and_no_secret_survives() {
    let r = Redactor::new(KEY);
    let manifest = manifest();
    assert!(manifest.file.len() >= 10);
    for f in &manifest.file {
        let text = std::fs::read_to_string(corpus("secrets").join(&f.name)).unwrap();
        let mut found = Redactions::default();
        let out = r.redact(&text, &mut found).unwrap_or_else(|| text.clone());
        let kinds: BTreeSet<&str> = found.iter().map(|(k, _)| k).collect();
        let expected: BTreeSet<&str> = f.kinds.iter().map(String::as_str).collect();
        assert_eq!(kinds, expected, "{}:\n{out}", f.name);
        assert!(!f.secrets.is_empty(), "{}", f.name);
        for secret in &f.secrets {
            assert!(
                text.contains(secret.as_str()),
                "{}: {secret} is in the file",
                f.name
            );
            assert!(
                !out.contains(secret.as_str()),
                "{}: {secret} survived:\n{out}",
                f.name
            );
        }
        // As a JSON string (how an entry holds it), the same.
        let doc = serde_json::json!({ "output": text }).to_string();
        let (json, again) = r.redact_json(&doc).expect("a secret file is redacted");
        assert_eq!(again, found, "{}", f.name);
        for secret in &f.secrets {
            assert!(
                !json.contains(secret.as_str()),
                "{}: {secret} in JSON",
                f.name
            );
        }
    }
}

#[test]
fn every_builtin_detector_catches_its_own_in_the_corpus() {
    let covered: BTreeSet<String> = manifest().file.into_iter().flat_map(|f| f.kinds).collect();
    for kind in BUILTIN_KINDS {
        assert!(covered.contains(kind), "no corpus file yields {kind}");
    }
}

#[test]
fn the_clean_corpus_yields_nothing() {
    let r = Redactor::new(KEY);
    let mut files = 0;
    for entry in std::fs::read_dir(corpus("clean")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut found = Redactions::default();
        let out = r.redact(&text, &mut found);
        assert_eq!(out, None, "{}: {found}", path.display());
        files += 1;
    }
    assert!(files >= 6, "{files} clean files");
}

mod streamed {
    use proptest::prelude::*;

    use super::*;
    use crate::stream::StreamRedactor;

    fn secret_files() -> Vec<(String, Vec<String>)> {
        manifest()
            .file
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(corpus("secrets").join(&f.name)).unwrap();
                (text, f.secrets)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// However a corpus file is cut into deltas, the streamed output is
        /// what redacting it whole gives: no secret survives a cut.
        #[test]
        fn any_chunking_of_a_secret_file_streams_as_it_redacts_whole(
            file in 0usize..11,
            cuts in proptest::collection::vec(0usize..4096, 0..40),
        ) {
            let files = secret_files();
            let (text, secrets) = &files[file % files.len()];
            let r = Redactor::new(KEY);
            let mut bounds: Vec<usize> = cuts
                .into_iter()
                .map(|c| c % (text.len() + 1))
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            bounds.push(0);
            bounds.push(text.len());
            bounds.sort_unstable();
            bounds.dedup();
            let mut stream = StreamRedactor::default();
            let mut found = Redactions::default();
            let mut out = String::new();
            for w in bounds.windows(2) {
                if let Some(t) = stream.push(&r, &text[w[0]..w[1]], &mut found) {
                    out.push_str(&t);
                }
            }
            if let Some(t) = stream.flush(&r, &mut found) {
                out.push_str(&t);
            }
            let mut whole_found = Redactions::default();
            let whole = r.redact(text, &mut whole_found).unwrap();
            prop_assert_eq!(&out, &whole);
            prop_assert_eq!(found, whole_found);
            for secret in secrets {
                prop_assert!(!out.contains(secret.as_str()));
            }
        }
    }
}

mod arbitrary {
    use proptest::prelude::*;

    use super::*;
    use crate::stream::StreamRedactor;

    const TOKEN: &str = "glpat-FAKEfake000000000000";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any text (any Unicode), with a token set apart by spaces
        /// somewhere in it, cut anywhere: nothing panics, and the token never
        /// comes out, whole or streamed.
        #[test]
        fn a_token_in_any_text_cut_anywhere_never_comes_out(
            before in any::<String>(),
            after in any::<String>(),
            cuts in proptest::collection::vec(0usize..512, 0..24),
        ) {
            let text = format!("{before} {TOKEN} {after}");
            let r = Redactor::new(KEY);
            let mut found = Redactions::default();
            let whole = r.redact(&text, &mut found).unwrap_or_else(|| text.clone());
            prop_assert!(!whole.contains(TOKEN));
            let json = serde_json::json!({ "text": text }).to_string();
            let (doc, _) = r.redact_json(&json).expect("the token is found in JSON");
            prop_assert!(!doc.contains(TOKEN));
            let mut bounds: Vec<usize> = cuts
                .into_iter()
                .map(|c| c % (text.len() + 1))
                .filter(|&c| text.is_char_boundary(c))
                .chain([0, text.len()])
                .collect();
            bounds.sort_unstable();
            bounds.dedup();
            let mut stream = StreamRedactor::default();
            let mut out = String::new();
            let mut streamed = Redactions::default();
            for w in bounds.windows(2) {
                if let Some(t) = stream.push(&r, &text[w[0]..w[1]], &mut streamed) {
                    out.push_str(&t);
                }
            }
            if let Some(t) = stream.flush(&r, &mut streamed) {
                out.push_str(&t);
            }
            prop_assert!(!out.contains(TOKEN), "{:?}", out);
            prop_assert!(streamed.count("gitlab_token") >= 1);
        }
    }
}
