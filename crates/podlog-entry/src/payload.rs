//! Large strings kept out of line: [`PayloadRef`], [`PayloadHash`] and the
//! two operations on an entry's JSON that move them out ([`split`]) and put
//! them back ([`inline`]).
//!
//! An entry whose JSON holds a string of [`THRESHOLD`] bytes or more (a tool
//! output, an attachment's `data:` URI, a long answer, a large extension
//! value) is stored and sent *lean*: each such string is replaced by its
//! first [`PREVIEW_BYTES`] bytes (cut at a character boundary), and a
//! [`PayloadRef`] says where it was, how long it is and which payload holds
//! it. A lean entry is still a valid entry of the same kind; only those
//! strings are shortened.
//!
//! A reference's `path` is an SQLite JSON path (`$.output`,
//! `$.history[3].content[0].text`, `$.data."a key"`), so the stock `sqlite3`
//! shell can put payloads back with `json_set`. Strings under an object key
//! that such a path cannot name (one holding a `"`) stay inline.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Strings this long (in UTF-8 bytes) or longer are kept out of line.
///
/// 8 KiB: below it a string costs less to store twice than to hash and look
/// up, and an ordinary entry (a message, a short tool output, a usage
/// record) stays a single row.
pub const THRESHOLD: usize = 8 * 1024;

/// How many bytes of a payload a lean entry keeps as its preview.
pub const PREVIEW_BYTES: usize = 512;

/// The content hash naming a payload: 64 lowercase hexadecimal digits of its
/// BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PayloadHash(String);

/// A text that is not 64 lowercase hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload hash {0:?}: want 64 lowercase hexadecimal digits")]
pub struct InvalidPayloadHash(pub String);

impl PayloadHash {
    /// Checks `text` is 64 lowercase hexadecimal digits.
    pub fn new(text: impl Into<String>) -> Result<Self, InvalidPayloadHash> {
        let text = text.into();
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() == 64 && text.bytes().all(hex) {
            Ok(Self(text))
        } else {
            Err(InvalidPayloadHash(text))
        }
    }

    /// The 64 hexadecimal digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PayloadHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PayloadHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PayloadHash::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Where a lean entry's string was cut, and the payload that holds it whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The SQLite JSON path of the string within the entry's JSON.
    pub path: String,
    /// The payload holding the whole string.
    pub hash: PayloadHash,
    /// The whole string's length in UTF-8 bytes.
    pub size: u64,
}

/// One string taken out of an entry by [`split`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The SQLite JSON path it was at.
    pub path: String,
    /// The whole string.
    pub text: String,
}

/// The first `max` bytes of `text`, shortened to a character boundary.
pub fn preview(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Replaces every string of `threshold` bytes or more in `value` by its
/// preview of `preview_bytes`, and returns the strings taken, in document
/// order. Strings under a key no SQLite path can name stay as they are.
pub fn split(value: &mut Value, threshold: usize, preview_bytes: usize) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut path = String::from("$");
    walk(value, &mut path, threshold, preview_bytes, &mut cuts);
    cuts
}

fn walk(
    value: &mut Value,
    path: &mut String,
    threshold: usize,
    preview_bytes: usize,
    cuts: &mut Vec<Cut>,
) {
    match value {
        Value::String(text) if text.len() >= threshold => {
            let short = preview(text, preview_bytes).to_owned();
            cuts.push(Cut {
                path: path.clone(),
                text: std::mem::replace(text, short),
            });
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, threshold, preview_bytes, cuts);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let Some(label) = label(key) else { continue };
                let len = path.len();
                path.push('.');
                path.push_str(&label);
                walk(item, path, threshold, preview_bytes, cuts);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// How an object key reads in an SQLite JSON path: bare when it is a plain
/// identifier, quoted otherwise, `None` when it holds a `"` (which SQLite's
/// path syntax cannot quote).
fn label(key: &str) -> Option<String> {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        Some(key.to_owned())
    } else if key.contains('"') {
        None
    } else {
        Some(format!("\"{key}\""))
    }
}

/// A path that does not lead to a string in the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload path {0} does not name a string of the entry")]
pub struct BadPath(pub String);

/// Puts `text` back at `path` (as written by [`split`]) in `value`.
pub fn inline(value: &mut Value, path: &str, text: String) -> Result<(), BadPath> {
    let bad = || BadPath(path.to_owned());
    let mut rest = path.strip_prefix('$').ok_or_else(bad)?;
    let mut at = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or_else(bad)?;
            let index: usize = after[..close].parse().map_err(|_| bad())?;
            at = at.get_mut(index).ok_or_else(bad)?;
            rest = &after[close + 1..];
        } else if let Some(after) = rest.strip_prefix(".\"") {
            let close = after.find('"').ok_or_else(bad)?;
            at = at.get_mut(&after[..close]).ok_or_else(bad)?;
            rest = &after[close + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            at = at.get_mut(&after[..end]).ok_or_else(bad)?;
            rest = &after[end..];
        } else {
            return Err(bad());
        }
    }
    match at {
        Value::String(old) => {
            *old = text;
            Ok(())
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_then_inline_gives_back_the_value() {
        let big = "x".repeat(20);
        let original = json!({
            "type": "extension",
            "output": big,
            "small": "keep",
            "list": [1, big, {"deep": big}],
            "odd key.with dots": big,
            "bad\"key": big,
        });
        let mut lean = original.clone();
        let cuts = split(&mut lean, 10, 4);
        let paths: Vec<&str> = cuts.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.output",
                "$.list[1]",
                "$.list[2].deep",
                "$.\"odd key.with dots\""
            ]
        );
        assert_eq!(lean["output"], "xxxx");
        assert_eq!(
            lean["bad\"key"],
            big.as_str(),
            "unnameable keys stay inline"
        );
        for cut in cuts {
            inline(&mut lean, &cut.path, cut.text).unwrap();
        }
        assert_eq!(lean, original);
    }

    #[test]
    fn preview_cuts_at_a_character_boundary() {
        assert_eq!(preview("héllo", 2), "h");
        assert_eq!(preview("héllo", 3), "hé");
        assert_eq!(preview("hi", 10), "hi");
    }

    #[test]
    fn bad_paths_and_hashes_are_refused() {
        let mut v = json!({"a": [1, "s"], "n": 3});
        assert!(inline(&mut v, "$.a[1]", "t".into()).is_ok());
        for path in ["$.n", "$.missing", "$.a[7]", "a", "$.a[x]", "$.\"open"] {
            assert_eq!(inline(&mut v, path, "t".into()), Err(BadPath(path.into())));
        }
        assert!(PayloadHash::new("a".repeat(64)).is_ok());
        for text in ["A".repeat(64), "a".repeat(63), "g".repeat(64)] {
            assert!(PayloadHash::new(text).is_err());
        }
    }
}
