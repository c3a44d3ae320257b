//! Redacting text that arrives in pieces: the assistant's streamed deltas,
//! which are sent to clients and never written.
//!
//! A secret split across two deltas (`ghp_Ab` then `cD…`) is in neither
//! piece whole, so redacting each piece alone would miss it. A
//! [`StreamRedactor`] holds back the text after the last white space (the
//! word still being written) and releases, redacted, only text up to white
//! space: no built-in secret but a PEM block holds white space, so none is
//! ever cut. The released text is redacted together with what was already
//! released of its line, so a detector that needs context
//! (`aws_secret_access_key = …`, `Authorization: Bearer …`) sees it.
//! An open PEM block (`-----BEGIN … PRIVATE KEY-----` with no END yet) is
//! held whole. Anything held past [`MAX_HOLD`] bytes is released as it is
//! (redacted, but a secret longer than that could be cut).
//!
//! The limits: a user pattern that spans white space, or context more than
//! [`LINE_CONTEXT`] bytes before its secret on one line, is only caught in
//! the committed item, which follows the deltas with the whole text and is
//! redacted as one string, so what is written never depends on the cuts.

use crate::{Redactions, Redactor};

/// The most text ever held back.
pub const MAX_HOLD: usize = 16 * 1024;

/// How much of the current line's released text is kept as context.
pub const LINE_CONTEXT: usize = 1024;

/// The held-back tail of one stream of text. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct StreamRedactor {
    /// Received, not yet released.
    held: String,
    /// Released text of the current line (its last [`LINE_CONTEXT`] bytes).
    line: String,
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
        Some(self.release(redactor, &out, found))
    }

    /// Releases everything held, redacted (`None`: nothing was held), and
    /// starts afresh.
    pub fn flush(&mut self, redactor: &Redactor, found: &mut Redactions) -> Option<String> {
        if self.held.is_empty() {
            self.line.clear();
            return None;
        }
        let out = std::mem::take(&mut self.held);
        let text = self.release(redactor, &out, found);
        self.line.clear();
        Some(text)
    }

    /// Drops what is held and the line's context.
    pub fn clear(&mut self) {
        self.held.clear();
        self.line.clear();
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// `out` redacted after the line's context; the context moves on.
    fn release(&mut self, redactor: &Redactor, out: &str, found: &mut Redactions) -> String {
        let from = self.line.len();
        self.line.push_str(out);
        let text = redactor.redact_after(&self.line, from, found);
        if let Some(newline) = self.line.rfind('\n') {
            self.line.drain(..=newline);
        }
        if self.line.len() > LINE_CONTEXT {
            let mut start = self.line.len() - LINE_CONTEXT;
            while !self.line.is_char_boundary(start) {
                start += 1;
            }
            self.line.drain(..start);
        }
        text
    }
}

/// How much of `held` may be released: up to its last white space, but
/// never into an open PEM block.
fn release_point(held: &str) -> usize {
    if held.len() >= MAX_HOLD {
        return held.len();
    }
    let mut cut = match held.char_indices().rev().find(|(_, c)| c.is_whitespace()) {
        Some((i, c)) => i + c.len_utf8(),
        None => 0,
    };
    if let Some(begin) = held[..cut].rfind("-----BEGIN") {
        // Open until its END line is whole: `-----END`, its label and the
        // closing dashes (white space inside the label is a cut point).
        let block = &held[begin..cut];
        let closed = block
            .find("-----END")
            .is_some_and(|end| block[end + "-----END".len()..].contains("-----"));
        if !closed {
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
        assert!(!out.contains(&TOKEN[..10]), "no start of it: {out}");
        assert!(!out.contains(&TOKEN[10..]), "no tail of it either: {out}");
        assert_eq!(found.count("github_token"), 1);
        assert!(out.starts_with("push with [REDACTED:github_token:"));
        assert!(out.ends_with(" now\nok"));
    }

    #[test]
    fn words_are_released_at_white_space_and_the_last_one_is_held() {
        let r = redactor();
        let mut s = StreamRedactor::default();
        let mut found = Redactions::default();
        assert_eq!(s.push(&r, "Hello", &mut found), None);
        assert_eq!(s.push(&r, " wor", &mut found).as_deref(), Some("Hello "));
        assert_eq!(s.held(), "wor".len());
        assert_eq!(s.push(&r, "ld\n", &mut found).as_deref(), Some("world\n"));
        assert_eq!(s.push(&r, "tail", &mut found), None);
        s.clear();
        assert_eq!(s.flush(&r, &mut found), None);
        assert!(found.is_empty());
    }

    #[test]
    fn a_secret_whose_context_was_released_earlier_is_still_caught() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let (out, found) = feed(&[
            "aws_secret_access_key",
            " = ",
            &secret[..9],
            &secret[9..],
            "\n",
        ]);
        assert_eq!(found.count("aws_secret_access_key"), 1, "{out}");
        assert!(!out.contains(&secret[..9]), "{out}");
        assert!(out.starts_with("aws_secret_access_key = [REDACTED:aws_secret_access_key:"));
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
