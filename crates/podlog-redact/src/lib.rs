//! Write-time secret redaction: finds secrets in text and replaces each with
//! a marker `[REDACTED:<kind>:<8 hex>]`.
//!
//! # Contract
//!
//! * **Markers link, never reveal.** The 8 hexadecimal digits are the start
//!   of the BLAKE3 *keyed* hash of the secret's text, under a 32-byte key
//!   the caller keeps (podlog keeps one per database, in a 0600 file beside
//!   it). Two mentions of one secret get the same marker, so a reader can
//!   tell "the token the user pasted is the one the tool printed"; without
//!   the key nobody can confirm a guess against a marker.
//! * **Built-in detectors** (see [`BUILTIN_KINDS`]) each have a kind name,
//!   which is what the marker and the counts show. Where a detector needs
//!   context to be sure (an AWS secret key after `aws_secret_access_key=`, an
//!   Azure key after `AccountKey=`, the password of `scheme://user:pass@host`)
//!   only the secret itself is replaced, so the text stays readable.
//! * **One secret, one detector.** Detectors run in a fixed priority order
//!   (the order of [`BUILTIN_KINDS`], then user patterns); a match that
//!   overlaps one already taken is dropped. So an Anthropic key (`sk-ant-…`)
//!   is an `anthropic_key`, never an `openai_key`, and a JWT inside a URL is
//!   replaced once.
//! * **Idempotent.** A marker is never redacted again: redacting redacted
//!   text changes nothing (importing an exported log does not stack
//!   markers).
//! * **User patterns** come from a TOML file of `[[pattern]]` tables with a
//!   `name` (the kind, `[a-z0-9_]`) and a `regex`; when the regex has a group
//!   named `secret`, only that group is replaced. A pattern that does not
//!   compile is [`ConfigError::InvalidRegex`], naming it.
//! * **Fast path.** [`Redactor::may_contain`] is one scan of a
//!   literal-prefix regex (`AKIA`, `ghp_`, `eyJ`, `-----BEGIN`, `://…:…@`,
//!   …); text without any of them costs that scan and nothing more. With user
//!   patterns a text also goes through their `RegexSet`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;

/// Length in bytes of the key the markers' hashes are keyed with.
pub const KEY_BYTES: usize = 32;

/// What every marker starts with.
pub const MARKER_PREFIX: &str = "[REDACTED:";

/// The built-in detectors' kinds, in priority order.
pub const BUILTIN_KINDS: [&str; 15] = [
    "pem_private_key",
    "jwt",
    "anthropic_key",
    "openai_key",
    "github_token",
    "gitlab_token",
    "slack_webhook",
    "slack_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "google_api_key",
    "azure_storage_key",
    "url_password",
    "authorization_header",
    // A PEM block cut before its END line (a `head` of a key file).
    "pem_private_key",
];

/// An extra test a match must pass, for detectors whose shape alone also
/// fits ordinary words.
#[derive(Clone, Copy, Debug)]
enum Check {
    None,
    /// The secret mixes upper case, lower case and digits, as generated keys
    /// do and hyphenated identifiers (`sk-loading-spinner-…`) do not.
    Random,
    /// Not a placeholder such as `${DB_PASSWORD}`, `$PASS`, `<password>`,
    /// `%s` or `****`.
    NotPlaceholder,
}

impl Check {
    fn passes(self, secret: &str) -> bool {
        match self {
            Check::None => true,
            Check::Random => {
                secret.bytes().any(|b| b.is_ascii_digit())
                    && secret.bytes().any(|b| b.is_ascii_uppercase())
                    && secret.bytes().any(|b| b.is_ascii_lowercase())
            }
            Check::NotPlaceholder => {
                let first = secret.as_bytes()[0];
                !matches!(first, b'$' | b'%' | b'<' | b'{' | b'(')
                    && !secret.bytes().all(|b| b == b'*' || b == b'x' || b == b'X')
            }
        }
    }
}

/// One detector: its kind, its regex, which group is the secret.
#[derive(Clone, Debug)]
struct Detector {
    kind: String,
    regex: Regex,
    /// The capture group holding the secret (0: the whole match).
    group: usize,
    check: Check,
}

/// A built-in detector's source: kind, regex, secret group, check, and the
/// prefix regex the fast path scans for: a literal (which the regex engine
/// finds with a SIMD scan) and, where it is short, the characters that must
/// follow it. Every detector match contains a prefilter match, also in the
/// JSON-escaped form of its text: no prefilter needs a character JSON
/// escapes (white space, quotes, backslashes, control characters).
struct Builtin {
    kind: &'static str,
    regex: &'static str,
    group: usize,
    check: Check,
    prefilter: &'static str,
}

const PEM_LABEL: &str = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?";

/// Stand-ins for the PEM regexes, which are built from [`PEM_LABEL`].
const PEM_COMPLETE: &str = "(pem complete)";
const PEM_TRUNCATED: &str = "(pem truncated)";

fn builtins() -> Vec<Builtin> {
    vec![
        Builtin {
            kind: "pem_private_key",
            regex: PEM_COMPLETE,
            group: 0,
            check: Check::None,
            prefilter: "-----BEGIN",
        },
        Builtin {
            kind: "jwt",
            regex: r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
            group: 0,
            check: Check::None,
            prefilter: r"eyJ[A-Za-z0-9_-]{8,}\.",
        },
        Builtin {
            kind: "anthropic_key",
            regex: r"\bsk-ant-[A-Za-z0-9_-]{20,}",
            group: 0,
            check: Check::None,
            prefilter: "sk-[A-Za-z0-9_-]{20}",
        },
        Builtin {
            kind: "openai_key",
            regex: r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
            group: 0,
            check: Check::Random,
            prefilter: "sk-[A-Za-z0-9_-]{20}",
        },
        Builtin {
            kind: "github_token",
            regex: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
            group: 0,
            check: Check::None,
            prefilter: "gh[pousr]_[A-Za-z0-9]{36}|github_pat_",
        },
        Builtin {
            kind: "gitlab_token",
            regex: r"\bglpat-[A-Za-z0-9_-]{20,}",
            group: 0,
            check: Check::None,
            prefilter: "glpat-",
        },
        Builtin {
            kind: "slack_webhook",
            regex: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,}",
            group: 0,
            check: Check::None,
            prefilter: r"hooks\.slack\.com",
        },
        Builtin {
            kind: "slack_token",
            regex: r"\bxox[bpars]-[A-Za-z0-9-]{10,}",
            group: 0,
            check: Check::None,
            prefilter: "xox[bpars]-[A-Za-z0-9-]{10}",
        },
        Builtin {
            kind: "aws_access_key_id",
            regex: r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            group: 0,
            check: Check::None,
            prefilter: "(?:AKIA|ASIA)[A-Z0-9]{16}",
        },
        Builtin {
            kind: "aws_secret_access_key",
            regex: r#"(?i:aws_secret_access_key|secret_?access_?key)["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+]|$)"#,
            group: 1,
            check: Check::None,
            prefilter: "(?i:secret_?access_?key)",
        },
        Builtin {
            kind: "google_api_key",
            regex: r"\bAIza[0-9A-Za-z_-]{35}",
            group: 0,
            check: Check::None,
            prefilter: "AIza[0-9A-Za-z_-]{35}",
        },
        Builtin {
            kind: "azure_storage_key",
            regex: r"(?i:AccountKey|SharedAccessKey)=([A-Za-z0-9/+]{40,}={0,2})",
            group: 1,
            check: Check::None,
            prefilter: "(?i:accountkey=|sharedaccesskey=)",
        },
        Builtin {
            kind: "url_password",
            regex: r#"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]"'<>]+:([^\s/?#@"'<>]+)@"#,
            group: 1,
            check: Check::NotPlaceholder,
            prefilter: r"://[^\s/@]*:[^\s/@]*@",
        },
        Builtin {
            kind: "authorization_header",
            regex: r"(?i:authorization:\s*(?:bearer|token|basic)\s+)([A-Za-z0-9._~+/=-]{16,})",
            group: 1,
            check: Check::None,
            prefilter: "(?i:authorization:)",
        },
        Builtin {
            kind: "pem_private_key",
            regex: PEM_TRUNCATED,
            group: 0,
            check: Check::None,
            prefilter: "-----BEGIN",
        },
    ]
}

fn pem_complete() -> String {
    format!(r"-----BEGIN {PEM_LABEL}-----[\s\S]*?-----END {PEM_LABEL}-----")
}

/// A PEM block without its END line: the BEGIN line, header lines and
/// base64 lines, up to the first line that is neither.
fn pem_truncated() -> String {
    format!(r"-----BEGIN {PEM_LABEL}-----(?:\r?\n[A-Za-z0-9+/=:, -]+)*")
}

/// A pattern from the user's configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPattern {
    /// The kind its markers and counts show: `[a-z0-9_]`, 1 to 40 of them.
    pub name: String,
    /// The regex (Rust `regex` syntax). A group named `secret` narrows what
    /// is replaced to that group.
    pub regex: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    pattern: Vec<UserPattern>,
}

/// A redaction configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the redaction config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the redaction config {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("redaction pattern {name:?} has an invalid regex: {message}")]
    InvalidRegex { name: String, message: String },
    #[error("redaction pattern name {name:?} is not valid: {reason}")]
    BadName { name: String, reason: String },
}

/// Parses a configuration file's text; `origin` names it in errors.
pub fn parse_config(text: &str, origin: &str) -> Result<Vec<UserPattern>, ConfigError> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    Ok(file.pattern)
}

/// Reads and parses the configuration file at `path`.
pub fn load_config(path: &Path) -> Result<Vec<UserPattern>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_config(&text, &path.display().to_string())
}

/// How many secrets of each kind a redaction replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactions {
    counts: BTreeMap<String, u64>,
}

impl Redactions {
    /// Counts one secret of `kind`.
    pub fn add(&mut self, kind: &str) {
        *self.counts.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Redactions) {
        for (kind, n) in &other.counts {
            *self.counts.entry(kind.clone()).or_default() += n;
        }
    }

    /// Secrets replaced, of every kind.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The secrets replaced of `kind`.
    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// Each kind and its count, by kind name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(k, n)| (k.as_str(), *n))
    }
}

impl fmt::Display for Redactions {
    /// `2 github_token, 1 jwt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {kind}")?;
        }
        Ok(())
    }
}

/// Finds and replaces secrets. Build it once and share it: building compiles
/// every regex.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; KEY_BYTES],
    detectors: Vec<Detector>,
    /// The built-in detectors' literal prefixes, as one regex.
    prefilter: Regex,
    /// The user patterns, when there are any.
    user: Option<RegexSet>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Redactor")
            .field(
                "kinds",
                &self.detectors.iter().map(|d| &d.kind).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The built-in detectors only, with markers keyed by `key`.
    pub fn new(key: [u8; KEY_BYTES]) -> Self {
        Self::with_patterns(key, &[]).expect("the built-in patterns compile")
    }

    /// The built-in detectors, then `patterns`, in that priority order.
    pub fn with_patterns(
        key: [u8; KEY_BYTES],
        patterns: &[UserPattern],
    ) -> Result<Self, ConfigError> {
        let mut detectors = Vec::new();
        let mut prefixes = Vec::new();
        for b in builtins() {
            let source = match b.regex {
                PEM_COMPLETE => pem_complete(),
                PEM_TRUNCATED => pem_truncated(),
                regex => regex.to_owned(),
            };
            let regex = Regex::new(&source).map_err(|e| ConfigError::InvalidRegex {
                name: b.kind.to_owned(),
                message: e.to_string(),
            })?;
            detectors.push(Detector {
                kind: b.kind.to_owned(),
                regex,
                group: b.group,
                check: b.check,
            });
            if !prefixes.contains(&b.prefilter) {
                prefixes.push(b.prefilter);
            }
        }
        let prefilter = Regex::new(&prefixes.join("|")).expect("the prefilter compiles");
        let mut sources = Vec::new();
        for p in patterns {
            check_name(&p.name)?;
            let regex = Regex::new(&p.regex).map_err(|e| ConfigError::InvalidRegex {
                name: p.name.clone(),
                message: e.to_string(),
            })?;
            let group = regex
                .capture_names()
                .position(|n| n == Some("secret"))
                .unwrap_or(0);
            detectors.push(Detector {
                kind: p.name.clone(),
                regex,
                group,
                check: Check::None,
            });
            sources.push(p.regex.clone());
        }
        let user = if sources.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&sources).map_err(|e| ConfigError::InvalidRegex {
                    name: "(the set of user patterns)".to_owned(),
                    message: e.to_string(),
                })?,
            )
        };
        Ok(Self {
            key,
            detectors,
            prefilter,
            user,
        })
    }

    /// Whether user patterns are configured.
    pub fn has_user_patterns(&self) -> bool {
        self.user.is_some()
    }

    /// The marker for `secret` of `kind`.
    pub fn marker(&self, kind: &str, secret: &str) -> String {
        let hash = blake3::keyed_hash(&self.key, secret.as_bytes());
        let hex = hash.to_hex();
        format!("{MARKER_PREFIX}{kind}:{}]", &hex.as_str()[..8])
    }

    /// False when `text` cannot hold any secret a detector finds: the fast
    /// path. True means "look closer", not "there is a secret".
    pub fn may_contain(&self, text: &str) -> bool {
        self.prefilter.is_match(text) || self.user.as_ref().is_some_and(|u| u.is_match(text))
    }

    /// `text` with every secret replaced by its marker, counting each in
    /// `found`; `None` when nothing was replaced.
    pub fn redact(&self, text: &str, found: &mut Redactions) -> Option<String> {
        let spans = self.find(text);
        if spans.is_empty() {
            return None;
        }
        Some(self.replace(text, 0, &spans, found))
    }

    /// `text[from..]` with its secrets replaced, where `text[..from]` is
    /// context already sent (what a detector such as
    /// `aws_secret_access_key = …` needs to see); secrets inside the context
    /// are not counted again. A secret that starts in the context and ends
    /// after `from` has its part after `from` replaced.
    pub fn redact_after(&self, text: &str, from: usize, found: &mut Redactions) -> String {
        let spans = self.find(text);
        self.replace(text, from, &spans, found)
    }

    /// Writes `text[from..]` with `spans` replaced by markers.
    fn replace(
        &self,
        text: &str,
        from: usize,
        spans: &[(usize, usize, usize)],
        found: &mut Redactions,
    ) -> String {
        let mut out = String::with_capacity(text.len() - from);
        let mut at = from;
        for &(start, end, i) in spans {
            if end <= from {
                continue;
            }
            let kind = &self.detectors[i].kind;
            out.push_str(&text[at..start.max(from)]);
            out.push_str(&self.marker(kind, &text[start..end]));
            found.add(kind);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// The secrets in `text`: (start, end, detector), by start.
    fn find(&self, text: &str) -> Vec<(usize, usize, usize)> {
        if !self.may_contain(text) {
            return Vec::new();
        }
        // (start, end, detector) of every secret taken, in no order.
        let mut taken: Vec<(usize, usize, usize)> = Vec::new();
        for (i, d) in self.detectors.iter().enumerate() {
            let mut take = |start: usize, end: usize| {
                let secret = &text[start..end];
                if secret.is_empty()
                    || secret.starts_with(MARKER_PREFIX)
                    || !d.check.passes(secret)
                    || taken.iter().any(|&(s, e, _)| start < e && s < end)
                {
                    return;
                }
                taken.push((start, end, i));
            };
            if d.group == 0 {
                for m in d.regex.find_iter(text) {
                    take(m.start(), m.end());
                }
            } else {
                for caps in d.regex.captures_iter(text) {
                    if let Some(m) = caps.get(d.group) {
                        take(m.start(), m.end());
                    }
                }
            }
        }
        taken.sort_unstable();
        taken
    }

    /// Redacts every string value in `value` (object keys are left as they
    /// are), counting in `found`. True when something was replaced.
    pub fn redact_value(&self, value: &mut Value, found: &mut Redactions) -> bool {
        match value {
            Value::String(text) => match self.redact(text, found) {
                Some(redacted) => {
                    *text = redacted;
                    true
                }
                None => false,
            },
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.redact_value(item, found);
                }
                changed
            }
            Value::Object(map) => {
                let mut changed = false;
                for (_, item) in map.iter_mut() {
                    changed |= self.redact_value(item, found);
                }
                changed
            }
            _ => false,
        }
    }

    /// Redacts every string value of the JSON document `json`. `None` when
    /// nothing was replaced (or `json` is not JSON); otherwise the document
    /// again, compact, members in their order, and what was replaced.
    ///
    /// Fast path: the built-in prefixes are looked for in `json` as it is
    /// (none of them holds a character JSON escapes, so a string holding one
    /// shows it in the document too); a document without any is not parsed.
    /// User patterns may match escaped characters, so with user patterns
    /// every document is parsed and its strings checked one by one.
    pub fn redact_json(&self, json: &str) -> Option<(String, Redactions)> {
        if self.user.is_none() && !self.prefilter.is_match(json) {
            return None;
        }
        let mut value: Value = serde_json::from_str(json).ok()?;
        let mut found = Redactions::default();
        if !self.redact_value(&mut value, &mut found) {
            return None;
        }
        Some((value.to_string(), found))
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            name: name.to_owned(),
            reason: "use 1 to 40 of a-z, 0-9 and _".to_owned(),
        })
    }
}

pub mod stream;

#[cfg(test)]
mod tests;
