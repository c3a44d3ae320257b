//! Conditional and partial requests (RFC 9110): what the routes that serve
//! content which never changes (`GET /blobs/{hash}`, a full page of
//! entries) need to answer `If-None-Match`, `Range` and `If-Range`.
//!
//! # Contract
//!
//! * [`none_match`]: whether `If-None-Match` names the response's entity tag,
//!   by weak comparison (`W/"x"` matches `"x"`), in any of the request's
//!   `If-None-Match` fields, or `*`. A field that does not parse matches
//!   nothing past the point where it stops parsing.
//! * [`byte_range`]: the one byte range a `Range` header asks for. Only a
//!   single `bytes=` range is served as a part; no header, another unit, a
//!   malformed header, several ranges or several `Range` fields ask for the
//!   whole (RFC 9110 allows a server to ignore `Range`). A range that starts
//!   at or past the end (or a suffix of 0 bytes) is unsatisfiable.
//! * [`if_range_allows`]: `Range` is honoured only when `If-Range` is absent
//!   or is exactly (strongly) the response's entity tag; a date never
//!   matches, as these responses carry no `Last-Modified`.

use axum::http::header::{IF_NONE_MATCH, IF_RANGE, RANGE};
use axum::http::HeaderMap;

/// `Cache-Control` of a response that never changes, by a listener that
/// needs no token: any cache may keep it for a year.
pub(crate) const IMMUTABLE_PUBLIC: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of a response that never changes, by a listener that
/// requires a bearer token: only the client's own cache may keep it.
pub(crate) const IMMUTABLE_PRIVATE: &str = "private, max-age=31536000, immutable";

/// The `Cache-Control` of an immutable response, private when a token
/// guards it.
pub(crate) fn immutable(token_required: bool) -> &'static str {
    if token_required {
        IMMUTABLE_PRIVATE
    } else {
        IMMUTABLE_PUBLIC
    }
}

/// Whether the request's `If-None-Match` matches `etag` (a whole entity
/// tag, quotes included, strong or weak) by weak comparison.
pub(crate) fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let want = opaque(etag);
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|field| field_matches(field.as_bytes(), want))
}

/// The quoted part of an entity tag: `"x"` for both `"x"` and `W/"x"`.
fn opaque(etag: &str) -> &[u8] {
    let bytes = etag.as_bytes();
    bytes.strip_prefix(b"W/").unwrap_or(bytes)
}

/// Whether one `If-None-Match` field (`*` or `#entity-tag`) names `want`.
fn field_matches(field: &[u8], want: &[u8]) -> bool {
    let mut rest = trim(field);
    if rest == b"*" {
        return true;
    }
    loop {
        rest = trim_start(rest);
        while let Some(after) = rest.strip_prefix(b",") {
            rest = trim_start(after);
        }
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(inner) = tag_start.strip_prefix(b"\"") else {
            return false;
        };
        let Some(close) = inner.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &tag_start[..close + 2];
        if tag == want {
            return true;
        }
        rest = &inner[close + 1..];
        let after = trim_start(rest);
        if !(after.is_empty() || after.starts_with(b",")) {
            return false;
        }
        rest = after;
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = trim_start(bytes);
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// What a request asks of a representation of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// All of it: `200`.
    Whole,
    /// Bytes `start..=end` (`end < size`): `206`.
    Part { start: u64, end: u64 },
    /// A range that selects nothing: `416`.
    Unsatisfiable,
}

/// The range the request's `Range` header asks of a representation of
/// `size` bytes (see the module's contract).
pub(crate) fn byte_range(headers: &HeaderMap, size: u64) -> ByteRange {
    let mut fields = headers.get_all(RANGE).iter();
    match (fields.next(), fields.next()) {
        (Some(field), None) => parse_range(field.as_bytes(), size),
        _ => ByteRange::Whole,
    }
}

/// One `Range` field: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
pub(crate) fn parse_range(field: &[u8], size: u64) -> ByteRange {
    let field = trim(field);
    let Some(eq) = field.iter().position(|&b| b == b'=') else {
        return ByteRange::Whole;
    };
    let (unit, spec) = (&field[..eq], trim(&field[eq + 1..]));
    if !unit.eq_ignore_ascii_case(b"bytes") || spec.contains(&b',') {
        return ByteRange::Whole;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    // Each side is empty or all digits; anything else is malformed.
    let (Some(first), Some(last)) = (optional_number(first), optional_number(last)) else {
        return ByteRange::Whole;
    };
    match (first, last) {
        // bytes=-n: the last n bytes.
        (None, Some(n)) => {
            if n == 0 || size == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (Some(start), Some(end)) if end < start => ByteRange::Whole,
        // bytes=a- and bytes=a-b.
        (Some(start), last) => {
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            let end = last.map_or(size - 1, |end| end.min(size - 1));
            ByteRange::Part { start, end }
        }
        (None, None) => ByteRange::Whole,
    }
}

/// One side of a range: `Some(None)` when empty, `Some(Some(n))` for
/// digits, `None` for anything else.
fn optional_number(text: &[u8]) -> Option<Option<u64>> {
    if text.is_empty() {
        Some(None)
    } else {
        number(text).map(Some)
    }
}

/// A run of ASCII digits as a number (saturating: a position past any
/// representation is as good as `u64::MAX`); `None` when empty or not all
/// digits.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Whether `Range` may be honoured: no `If-Range`, or one that is exactly
/// `etag` (a strong entity tag).
pub(crate) fn if_range_allows(headers: &HeaderMap, etag: &str) -> bool {
    let mut fields = headers.get_all(IF_RANGE).iter();
    match (fields.next(), fields.next()) {
        (None, _) => true,
        (Some(field), None) => !etag.starts_with("W/") && trim(field.as_bytes()) == etag.as_bytes(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: axum::http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn if_none_match_lists_stars_and_weak_tags() {
        let etag = "\"abc\"";
        for (fields, want) in [
            (&["\"abc\""][..], true),
            (&["W/\"abc\""], true),
            (&["*"], true),
            (&[" * "], true),
            (&["\"x\", \"abc\""], true),
            (&["\"x\",W/\"abc\" , \"y\""], true),
            (&[",, \"abc\""], true),
            (&["\"x\"", "\"abc\""], true),
            (&["\"a,b\", \"abc\""], true),
            (&["\"abcd\""], false),
            (&["\"ab\""], false),
            (&["abc"], false),
            (&["\"x\" \"abc\""], false),
            (&["\"abc"], false),
            (&["w/\"abc\""], false),
            (&["*, \"x\""], false),
            (&[""], false),
            (&[], false),
        ] {
            let got = none_match(&headers(IF_NONE_MATCH, fields), etag);
            assert_eq!(got, want, "{fields:?}");
        }
        // Weak comparison works from our side too.
        let weak = headers(IF_NONE_MATCH, &["\"p\""]);
        assert!(none_match(&weak, "W/\"p\""));
    }

    #[test]
    fn single_byte_ranges_are_parts_and_the_rest_are_whole() {
        use ByteRange::*;
        let size = 100;
        for (field, want) in [
            ("bytes=0-9", Part { start: 0, end: 9 }),
            ("bytes=10-", Part { start: 10, end: 99 }),
            ("bytes=-5", Part { start: 95, end: 99 }),
            ("bytes=-500", Part { start: 0, end: 99 }),
            ("bytes=90-500", Part { start: 90, end: 99 }),
            ("bytes=99-99", Part { start: 99, end: 99 }),
            ("BYTES=1-1", Part { start: 1, end: 1 }),
            (" bytes= 2-3 ", Part { start: 2, end: 3 }),
            (
                "bytes=0-99999999999999999999999",
                Part { start: 0, end: 99 },
            ),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-200", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Whole),
            ("bytes=0-1, 200-300", Whole),
            ("bytes=9-0", Whole),
            ("bytes=-", Whole),
            ("bytes=", Whole),
            ("bytes=a-b", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=1-+2", Whole),
            ("bytes=1--2", Whole),
            ("bytes 0-9", Whole),
            ("items=0-9", Whole),
            ("", Whole),
        ] {
            assert_eq!(parse_range(field.as_bytes(), size), want, "{field:?}");
        }
        assert_eq!(parse_range(b"bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), Unsatisfiable);
        assert_eq!(byte_range(&HeaderMap::new(), size), Whole);
        let two = headers(RANGE, &["bytes=0-1", "bytes=2-3"]);
        assert_eq!(byte_range(&two, size), Whole);
        let one = headers(RANGE, &["bytes=2-3"]);
        assert_eq!(byte_range(&one, size), Part { start: 2, end: 3 });
    }

    #[test]
    fn if_range_needs_the_strong_tag_itself() {
        let etag = "\"abc\"";
        assert!(if_range_allows(&HeaderMap::new(), etag));
        assert!(if_range_allows(&headers(IF_RANGE, &["\"abc\""]), etag));
        for value in ["W/\"abc\"", "\"x\"", "Sat, 01 Jan 2000 00:00:00 GMT"] {
            assert!(
                !if_range_allows(&headers(IF_RANGE, &[value]), etag),
                "{value}"
            );
        }
        assert!(!if_range_allows(
            &headers(IF_RANGE, &["\"abc\""]),
            "W/\"abc\""
        ));
    }
}
