//! Redacting text that arrives in pieces: the assistant's streamed deltas,
//! which are sent to clients and never written.
//!
//! A secret split across two deltas (`ghp_Ab` then `cD…`) is in neither
//! piece whole, so redacting each piece alone would miss it. A
//! [`StreamRedactor`] holds back the unfinished line and releases, redacted,
//! only whole lines: every built-in secret but a PEM block fits on one line,
//! and so does the context some detectors need (`aws_secret_access_key =`).
//! Two bounds keep the stream moving:
//!
//! * a line longer than [`LINE_HOLD`] bytes (prose) is released up to its
//!   last white space, so a token is still never cut, but a context and its
//!   secret on a long line may be released apart (the committed item that
//!   follows is redacted whole either way);
//! * an open PEM block (`-----BEGIN … PRIVATE KEY-----` with no END yet) is
//!   held whole, and anything held past [`MAX_HOLD`] bytes is released.
//!
//! The committed item that follows the deltas carries the whole text and is
//! redacted as one string, so what is written never depends on how the text
//! was cut.

use crate::{Redactions, Redactor};

/// The longest unfinished line held back whole.
pub const LINE_HOLD: usize = 256;

/// The most text ever held back.
pub const MAX_HOLD: usize = 16 * 1024;

/// The held-back tail of one stream of text. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct StreamRedactor {
    held: String,
}

impl StreamRedactor {
    /// Takes `piece` and returns what may be sent now, redacted (`None`:
    /// nothing yet), counting what was replaced in `found`.
    pub fn push(
        &mut self,
        redactor: &Redactor,
        piece: &str,
        found: &mut Redactions,
    ) -> Option<String> {
        self.held.push_str(piece);
        let cut = release_point(&self.held);
        if cut == 0 {
            return None;
        }
        let rest = self.held.split_off(cut);
        let out = std::mem::replace(&mut self.held, rest);
        Some(redactor.redact(&out, found).unwrap_or(out))
    }

    /// Releases everything held, redacted (`None`: nothing was held).
    pub fn flush(&mut self, redactor: &Redactor, found: &mut Redactions) -> Option<String> {
        if self.held.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.held);
        Some(redactor.redact(&out, found).unwrap_or(out))
    }

    /// Drops what is held: the committed item that ends the stream carries
    /// the whole text.
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// How much of `held` may be released: whole lines, or up to the last white
/// space of an overlong line, but never into an open PEM block.
fn release_point(held: &str) -> usize {
    if held.len() >= MAX_HOLD {
        return held.len();
    }
    let mut cut = held.rfind('\n').map_or(0, |i| i + 1);
    if held.len() - cut > LINE_HOLD {
        if let Some(space) = held[cut..].rfind(char::is_whitespace) {
            let space = cut + space;
            let width = held[space..].chars().next().map_or(1, char::len_utf8);
            cut = space + width;
        }
    }
    if let Some(begin) = held[..cut].rfind("-----BEGIN") {
        if !held[begin..cut].contains("-----END") {
            cut = begin;
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_FAKEfake0000000000000000000000000000";

    fn redactor() -> Redactor {
        Redactor::new([7; 32])
    }

    /// Feeds `pieces` and returns everything released, with a flush at the end.
    fn feed(pieces: &[&str]) -> (String, Redactions) {
        let r = redactor();
        let mut s = StreamRedactor::default();
        let mut found = Redactions::default();
        let mut out = String::new();
        for p in pieces {
            if let Some(t) = s.push(&r, p, &mut found) {
                out.push_str(&t);
            }
        }
        if let Some(t) = s.flush(&r, &mut found) {
            out.push_str(&t);
        }
        (out, found)
    }

    #[test]
    fn a_token_split_across_deltas_is_still_redacted() {
        let (a, b) = TOKEN.split_at(10);
        let (out, found) = feed(&["push with ", a, b, " now\nok"]);
        assert!(!out.contains(TOKEN), "{out}");
        assert!(!out.contains(&TOKEN[4..]), "no tail of it either: {out}");
        assert_eq!(found.count("github_token"), 1);
        assert!(out.starts_with("push with [REDACTED:github_token:"));
        assert!(out.ends_with(" now\nok"));
    }

    #[test]
    fn whole_lines_are_released_at_once_and_the_open_line_is_held() {
        let r = redactor();
        let mut s = StreamRedactor::default();
        let mut found = Redactions::default();
        assert_eq!(
            s.push(&r, "first line\nsecond", &mut found).as_deref(),
            Some("first line\n")
        );
        assert_eq!(s.held(), "second".len());
        assert_eq!(s.push(&r, " part", &mut found), None);
        s.clear();
        assert_eq!(s.flush(&r, &mut found), None);
    }

    #[test]
    fn a_long_line_is_released_at_white_space_without_cutting_a_token() {
        let prose = "word ".repeat(80);
        let (a, b) = TOKEN.split_at(20);
        let r = redactor();
        let mut s = StreamRedactor::default();
        let mut found = Redactions::default();
        let first = s.push(&r, &format!("{prose}{a}"), &mut found).unwrap();
        assert_eq!(
            first, prose,
            "released up to the last space, the token's start held"
        );
        assert_eq!(s.push(&r, &format!("{b} and more"), &mut found), None);
        let rest = s.flush(&r, &mut found).unwrap();
        assert!(rest.starts_with("[REDACTED:github_token:"), "{rest}");
        assert!(rest.ends_with("] and more"), "{rest}");
        assert_eq!(found.total(), 1);
    }

    #[test]
    fn an_open_pem_block_is_held_until_its_end() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEFAKEfakeFAKEfake\nQUJDRA==\n-----END RSA PRIVATE KEY-----\n";
        let pieces: Vec<String> = key
            .as_bytes()
            .chunks(7)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let mut all = vec!["here:\n"];
        all.extend(pieces.iter().map(String::as_str));
        let (out, found) = feed(&all);
        assert_eq!(found.count("pem_private_key"), 1, "{out}");
        assert!(!out.contains("MIIEFAKE"), "{out}");
    }

    #[test]
    fn more_than_the_most_held_is_released() {
        let r = redactor();
        let mut s = StreamRedactor::default();
        let mut found = Redactions::default();
        let blob = "x".repeat(MAX_HOLD);
        assert_eq!(
            s.push(&r, &blob, &mut found).map(|t| t.len()),
            Some(MAX_HOLD)
        );
        assert_eq!(s.held(), 0);
    }
}
