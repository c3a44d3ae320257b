//! Full-text search on PostgreSQL: [`PgStore::search`], the SQLite
//! [`SqliteStore::search`](crate::SqliteStore::search) over the index of
//! `migrations/postgres/0002_search.sql` (and `0003_search_deferred.sql`).
//!
//! # Contract
//!
//! * **Same call, same answers.** It takes the same [`SearchQuery`] and
//!   returns the same [`SearchPage`]: the same kinds are searched, out-of-line
//!   strings whole, hits newest first, at most `limit` (0 means 20, more
//!   than [`MAX_LIMIT`] is refused), filtered by session, kind and time,
//!   paged by the cursor [`SearchPage::next`]; every hit once when paged to
//!   the end. An empty query, an unknown kind and a malformed query are
//!   [`StoreError::BadSearch`] naming the query and the problem, never
//!   another error and never a panic.
//! * **Never stale, never ahead.** The index is written by a trigger in the
//!   transaction that writes an entry, except for a session writer's
//!   appends, which the store's indexer indexes soon after their commit
//!   (`migrations/postgres/0003_search_deferred.sql`). A search first
//!   indexes whatever committed entries are still unindexed, then reads in
//!   one statement: it sees every entry committed before it started, and
//!   none that is not committed.
//! * **Queries** use FTS5's syntax as SQLite parses it (see
//!   [`SearchQuery::text`]), and what SQLite refuses is refused here too:
//!   words, `"phrases"`, `prefix*` (also after a phrase), `AND`, `OR`,
//!   `NOT` (binary: `a NOT b`; FTS5 refuses `NOT b` and `a AND NOT b`),
//!   parentheses; adjacent phrases are all required (but a parenthesis
//!   needs an operator beside it). `NEAR(...)`, column filters, `^` and `+`
//!   are refused as [`StoreError::BadSearch`]. A query is translated
//!   here into a `tsquery` in which every word is a quoted lexeme, and
//!   bound as a parameter: no user text ever becomes SQL or a `tsquery`
//!   operator. Words are split as the index splits them (ASCII punctuation
//!   ends a word), so `"src/main.rs"` is the phrase `src main rs`.
//! * **Snippets** are cut here from the entry's text: about
//!   [`SNIPPET_WORDS`] words around the densest run of matches, each match
//!   between [`MARK_START`] and [`MARK_END`], `…` where text was left out,
//!   so [`crate::search::snippet_parts`] reads them.
//! * **Differences from SQLite**, from PostgreSQL's text search: diacritics
//!   are not folded; only the first 500,000 bytes of an entry's text are
//!   indexed; positions past 16,383 words (or a word's 256th occurrence)
//!   are not told apart, so a phrase far into a long text may not match.
//!   See the migration's header.
//! * **Snippets are not `ts_headline`'s**: it splits text with
//!   PostgreSQL's parser, which keeps a path, a host name or an e-mail
//!   address as one token where the index has its words, so it would leave
//!   matches unmarked.

use podlog_entry::Seq;
use postgres::error::SqlState;

use super::{unsigned, PgContext, PgStore};
use crate::search::{SearchHit, SearchPage, SearchQuery, MARK_END, MARK_START};
use crate::{stored_id, Result, StoreError};

/// About how many words a snippet shows (FTS5's `snippet()` is given 24).
pub const SNIPPET_WORDS: usize = 24;

fn bad(query: &str, reason: impl Into<String>) -> StoreError {
    StoreError::BadSearch {
        query: query.to_owned(),
        reason: reason.into(),
    }
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// Words in a row (one word is a phrase of one), the last one a prefix
    /// if `prefix`. No words: a phrase of punctuation only, which matches
    /// nothing.
    Phrase {
        words: Vec<String>,
        prefix: bool,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    /// The left side without the right one.
    Not(Box<Node>, Box<Node>),
}

/// Whether `c` ends a word: white space and ASCII punctuation, as the
/// index's `search_words` splits.
fn separates(c: char) -> bool {
    c.is_whitespace() || (c.is_ascii() && !c.is_ascii_alphanumeric())
}

/// The words of `text`, as byte ranges.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (separates(c), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

fn words_of(text: &str) -> Vec<String> {
    word_spans(text)
        .into_iter()
        .map(|(a, b)| text[a..b].to_owned())
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A bareword or a quoted string.
    Text(String),
    Star,
    Open,
    Close,
    And,
    Or,
    Not,
}

/// Whether `c` may be part of an FTS5 bareword.
fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '\u{1a}' || !c.is_ascii()
}

fn lex(query: &str) -> std::result::Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = query.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => {
                        if chars.peek().map(|p| p.1) == Some('"') {
                            chars.next();
                            text.push('"');
                        } else {
                            break;
                        }
                    }
                    Some((_, c)) => text.push(c),
                    None => return Err(format!("unterminated string starting at byte {i}")),
                }
            }
            tokens.push(Token::Text(text));
        } else if bare(c) {
            let mut text = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if !bare(c) {
                    break;
                }
                text.push(c);
                chars.next();
            }
            tokens.push(match text.as_str() {
                "AND" => Token::And,
                "OR" => Token::Or,
                "NOT" => Token::Not,
                "NEAR" if chars.peek().map(|p| p.1) == Some('(') => {
                    return Err("NEAR(...) is not supported on PostgreSQL; \
                                use a phrase (\"a b\") or AND"
                        .to_owned())
                }
                _ => Token::Text(text),
            });
        } else {
            chars.next();
            tokens.push(match c {
                '*' => Token::Star,
                '(' => Token::Open,
                ')' => Token::Close,
                ':' | '^' | '+' | '{' | '}' => {
                    return Err(format!(
                        "{c:?} is not supported on PostgreSQL (column filters, ^ and + \
                         are FTS5 features)"
                    ))
                }
                _ => return Err(format!("syntax error near {:?}", c.to_string())),
            });
        }
    }
    Ok(tokens)
}

/// A recursive-descent parser of FTS5's grammar (`fts5parse.y`): OR binds
/// loosest, then AND, then NOT; a run of adjacent phrases (all required)
/// and a parenthesised query bind tightest. As in FTS5, NOT is binary
/// (`a NOT b`; `NOT b` and `a AND NOT b` are refused) and a parenthesis
/// never stands next to a phrase without an operator between them.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn near(&self) -> String {
        match self.peek() {
            None => "syntax error at the end of the query".to_owned(),
            Some(t) => format!(
                "syntax error near {:?}",
                match t {
                    Token::Text(text) => text.as_str(),
                    Token::Star => "*",
                    Token::Open => "(",
                    Token::Close => ")",
                    Token::And => "AND",
                    Token::Or => "OR",
                    Token::Not => "NOT",
                }
            ),
        }
    }

    /// A phrase: the text token at the cursor and the `*` after it.
    fn phrase(&mut self) -> Node {
        let text = match self.peek() {
            Some(Token::Text(text)) => text.clone(),
            _ => String::new(),
        };
        self.at += 1;
        let prefix = self.peek() == Some(&Token::Star);
        if prefix {
            self.at += 1;
        }
        Node::Phrase {
            words: words_of(&text),
            prefix,
        }
    }

    fn or(&mut self) -> std::result::Result<Node, String> {
        let mut node = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            node = Node::Or(Box::new(node), Box::new(self.and()?));
        }
        Ok(node)
    }

    fn and(&mut self) -> std::result::Result<Node, String> {
        let mut node = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            node = Node::And(Box::new(node), Box::new(self.not()?));
        }
        Ok(node)
    }

    fn not(&mut self) -> std::result::Result<Node, String> {
        let mut node = self.primary()?;
        while self.peek() == Some(&Token::Not) {
            self.at += 1;
            node = Node::Not(Box::new(node), Box::new(self.primary()?));
        }
        Ok(node)
    }

    fn primary(&mut self) -> std::result::Result<Node, String> {
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let node = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(match self.peek() {
                        None => "a parenthesis is not closed".to_owned(),
                        Some(_) => self.near(),
                    });
                }
                self.at += 1;
                Ok(node)
            }
            Some(Token::Text(_)) => {
                // Adjacent phrases are all required (FTS5's implicit AND,
                // which joins phrases only, never a parenthesis).
                // A phrase without words ("...") is left out of the run,
                // as FTS5 leaves it out, unless the run is only that.
                let mut node = self.phrase();
                while let Some(Token::Text(_)) = self.peek() {
                    let next = self.phrase();
                    node = match (void(&node), void(&next)) {
                        (_, true) => node,
                        (true, false) => next,
                        (false, false) => Node::And(Box::new(node), Box::new(next)),
                    };
                }
                Ok(node)
            }
            _ => Err(self.near()),
        }
    }
}

/// Whether `node` is a phrase without words.
fn void(node: &Node) -> bool {
    matches!(node, Node::Phrase { words, .. } if words.is_empty())
}

/// Parses a query of podlog's FTS5 syntax (see the module docs); `Err` is
/// the problem, in words.
pub(crate) fn parse(query: &str) -> std::result::Result<Node, String> {
    let tokens = lex(query)?;
    if tokens.is_empty() {
        return Err("the query is empty".to_owned());
    }
    let mut parser = Parser { tokens, at: 0 };
    let node = parser.or()?;
    if parser.at < parser.tokens.len() {
        return Err(parser.near());
    }
    Ok(node)
}

/// `word` as a quoted `tsquery` lexeme. Words hold no ASCII punctuation
/// (see [`separates`]), so nothing needs escaping; quotes and backslashes
/// are escaped all the same.
fn lexeme(word: &str) -> String {
    format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''"))
}

/// `node` as `tsquery` text, `None` when it matches nothing: a phrase
/// without words matches nothing, so it voids an AND and drops out of an
/// OR or the right side of a NOT, as in FTS5. (In a run of adjacent
/// phrases FTS5 ignores it: the parser leaves it out there.)
pub(crate) fn tsquery(node: &Node) -> Option<String> {
    match node {
        Node::Phrase { words, prefix } => {
            if words.is_empty() {
                return None;
            }
            let last = words.len() - 1;
            let parts: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if *prefix && i == last {
                        format!("{}:*", lexeme(w))
                    } else {
                        lexeme(w)
                    }
                })
                .collect();
            Some(format!("({})", parts.join(" <-> ")))
        }
        Node::And(a, b) => Some(format!("({} & {})", tsquery(a)?, tsquery(b)?)),
        Node::Or(a, b) => match (tsquery(a), tsquery(b)) {
            (Some(a), Some(b)) => Some(format!("({a} | {b})")),
            (a, b) => a.or(b),
        },
        Node::Not(a, b) => {
            let a = tsquery(a)?;
            Some(match tsquery(b) {
                Some(b) => format!("({a} & !{b})"),
                None => a,
            })
        }
    }
}

/// Whether `word` (lower-cased) is the query word `want` (lower-cased),
/// or starts with it when it is a prefix.
fn same_word(word: &str, want: &str, prefix: bool) -> bool {
    if prefix {
        word.starts_with(want)
    } else {
        word == want
    }
}

/// Whether `node` matches a text of `words` (lower-cased), and if so the
/// word ranges (`start..end`) to mark: each instance of a phrase that
/// counts towards the match (both sides of an AND, the sides of an OR that
/// match, the left of a NOT), as FTS5's `snippet()` marks them. `None` for
/// no match.
fn matched(node: &Node, words: &[String]) -> Option<Vec<(usize, usize)>> {
    match node {
        Node::Phrase {
            words: want,
            prefix,
        } => {
            let n = want.len();
            if n == 0 || n > words.len() {
                return None;
            }
            let want: Vec<String> = want.iter().map(|w| w.to_lowercase()).collect();
            let mut at = Vec::new();
            for start in 0..=words.len() - n {
                let hit =
                    (0..n).all(|k| same_word(&words[start + k], &want[k], *prefix && k == n - 1));
                if hit {
                    at.push((start, start + n));
                }
            }
            (!at.is_empty()).then_some(at)
        }
        Node::And(a, b) => {
            let mut at = matched(a, words)?;
            at.extend(matched(b, words)?);
            Some(at)
        }
        Node::Or(a, b) => match (matched(a, words), matched(b, words)) {
            (None, None) => None,
            (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
        },
        Node::Not(a, b) => match matched(b, words) {
            Some(_) => None,
            None => matched(a, words),
        },
    }
}

/// About [`SNIPPET_WORDS`] words of `text` around its densest run of the
/// phrase instances `node` matches (see [`matched`]), each instance (or
/// overlapping instances together) between [`MARK_START`] and
/// [`MARK_END`], with `…` where text was left out.
pub(crate) fn snippet(text: &str, node: &Node) -> String {
    let spans = word_spans(text);
    if spans.is_empty() {
        return String::new();
    }
    let words: Vec<String> = spans
        .iter()
        .map(|&(a, b)| text[a..b].to_lowercase())
        .collect();
    let mut found = matched(node, &words).unwrap_or_default();
    found.sort_unstable();
    // Overlapping instances are one mark.
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(found.len());
    for (a, b) in found {
        match ranges.last_mut() {
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => ranges.push((a, b)),
        }
    }
    let n = spans.len();
    let width = SNIPPET_WORDS.min(n);
    let start = match ranges.first() {
        None => 0,
        Some(&(first, _)) => {
            // The window of `width` words holding the most marks, the
            // earliest of equals, in one pass (`j` runs ahead of `i` to the
            // first mark past the window starting at mark `i`: a text may
            // hold many), then centred on the marks it holds.
            let (mut best, mut best_count, mut best_last) = (first, 0, first);
            let mut j = 0;
            for (i, &(a, _)) in ranges.iter().enumerate() {
                while j < ranges.len() && ranges[j].0 < a + width {
                    j += 1;
                }
                if j - i > best_count {
                    let last = ranges[j - 1].1.min(a + width) - 1;
                    (best, best_count, best_last) = (a, j - i, last);
                }
            }
            let slack = width - (best_last - best + 1);
            best.saturating_sub(slack / 2).min(n - width)
        }
    };
    let end = start + width;
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = spans[start].0;
    let mut next = ranges
        .iter()
        .position(|r| r.1 > start)
        .unwrap_or(ranges.len());
    for (i, &(a, b)) in spans.iter().enumerate().take(end).skip(start) {
        out.push_str(&text[at..a]);
        let range = ranges.get(next).filter(|r| r.0 <= i);
        if range.is_some_and(|r| r.0 == i || i == start) {
            out.push(MARK_START);
        }
        out.push_str(&text[a..b]);
        if let Some(&(_, stop)) = range {
            if stop == i + 1 || i + 1 == end {
                out.push(MARK_END);
            }
            if stop == i + 1 {
                next += 1;
            }
        }
        at = b;
    }
    if end < n {
        out.push('…');
    }
    out
}

/// One page: the newest `$6` index rows matching the `tsquery` `$1` within
/// the filters and below the cursor `$5`, each with its entry's text (for
/// the snippet), in one statement and so one snapshot. Only the indexed
/// part of a text can hold a match, so no more of it is sent.
const SEARCH: &str = "SELECT h.id, h.session_id, h.seq, h.ts, h.kind, \
       left(search_text(e.kind, e.body, e.payloads), 500000) \
     FROM (SELECT id, session_id, seq, ts, kind FROM search \
           WHERE words @@ to_tsquery('simple'::regconfig, $1::text) \
             AND ($2::text IS NULL OR session_id = $2::text) \
             AND ($3::text IS NULL OR kind = $3::text) \
             AND ($4::bigint IS NULL OR ts >= $4::bigint) \
             AND ($5::bigint IS NULL OR id < $5::bigint) \
           ORDER BY id DESC LIMIT $6) AS h \
     JOIN entries AS e ON e.session_id = h.session_id AND e.seq = h.seq \
     ORDER BY h.id DESC";

/// Indexes every entry a writer committed unindexed (`search_catch_up`,
/// `migrations/postgres/0003_search_deferred.sql`), in a transaction that
/// does not wait for its flush: the index is derived from entries already
/// durable, and a lost catch-up is done again by the next one. Idempotent.
fn catch_up(client: &mut postgres::Client) -> std::result::Result<(), postgres::Error> {
    client
        .execute(
            "SELECT set_config('synchronous_commit', 'off', true), search_catch_up(NULL, NULL)",
            &[],
        )
        .map(|_| ())
}

impl PgStore {
    /// One page of the entries matching `query`, newest first. See the
    /// module docs.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let (fts, limit) = crate::search::checked(query)?;
        let node = parse(&fts).map_err(|reason| bad(&query.text, reason))?;
        let Some(tsq) = tsquery(&node) else {
            return Ok(SearchPage {
                hits: Vec::new(),
                next: None,
            });
        };
        let since = query.since.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let session = query.session.as_ref().map(|s| s.as_str());
        let fetch = i64::from(limit) + 1;
        let ctx = || format!("searching for {:?}", query.text);
        let rows = self.read_with(|client| {
            // Entries that writers committed unindexed are indexed first
            // (0003_search_deferred.sql): a search sees every commit made
            // before it, as on SQLite. Usually nothing is left, the
            // indexer having done it; the catch-up is idempotent, so the
            // statement may run again with the read.
            catch_up(client).context(|| {
                format!(
                    "indexing recent entries before searching for {:?}",
                    query.text
                )
            })?;
            client
                .query(
                    SEARCH,
                    &[&tsq, &session, &query.kind, &since, &query.cursor, &fetch],
                )
                .map_err(|e| match e.code() {
                    Some(code) if *code == SqlState::SYNTAX_ERROR => {
                        bad(&query.text, e.to_string())
                    }
                    _ => StoreError::Postgres {
                        context: ctx(),
                        source: e,
                    },
                })
        })?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0).context(ctx)?;
            let session: String = row.try_get(1).context(ctx)?;
            let seq: i64 = row.try_get(2).context(ctx)?;
            let ts: i64 = row.try_get(3).context(ctx)?;
            let text: Option<String> = row.try_get(5).context(ctx)?;
            hits.push((
                id,
                SearchHit {
                    seq: Seq(unsigned(seq, "seq", &session)?),
                    ts: unsigned(ts, "ts", &session)?,
                    kind: row.try_get(4).context(ctx)?,
                    snippet: snippet(text.as_deref().unwrap_or(""), &node),
                    session: stored_id(&session),
                },
            ));
        }
        let more = hits.len() > limit as usize;
        hits.truncate(limit as usize);
        Ok(SearchPage {
            next: if more { hits.last().map(|h| h.0) } else { None },
            hits: hits.into_iter().map(|h| h.1).collect(),
        })
    }
}

impl PgStore {
    /// Bytes the search index takes, once caught up with the entries: the
    /// `search` table with its indexes (the GIN index of words included),
    /// for reporting how much of the
    /// store the index is. Unlike SQLite's figure it counts pages, free
    /// space in them included.
    pub fn search_index_bytes(&self) -> Result<u64> {
        self.read_with(|client| {
            let ctx = || "measuring the search index".to_owned();
            catch_up(client).context(ctx)?;
            let bytes: i64 = client
                .query_one(
                    "SELECT coalesce(pg_total_relation_size(to_regclass('search')), 0)",
                    &[],
                )
                .and_then(|row| row.try_get(0))
                .context(ctx)?;
            Ok(u64::try_from(bytes).unwrap_or_default())
        })
    }

    /// How far the index, once caught up, is out of step with the entries,
    /// for `verify`: searchable entries without a search row (other than those a writer
    /// committed above its session's progress mark, which the next
    /// catch-up indexes), and search rows whose entry is gone or not
    /// searchable. Both are 0 unless rows were edited behind the triggers'
    /// back; [`PgStore::rebuild_search_index`] repairs them.
    pub fn search_index_mismatches(&self) -> Result<(u64, u64)> {
        self.read_with(|client| {
            let ctx = || "comparing the search index with the entries".to_owned();
            catch_up(client).context(ctx)?;
            let row = client
                .query_one(
                    "SELECT \
                       (SELECT count(*) FROM entries AS e \
                        WHERE e.kind IN ('user_input', 'assistant_item', 'tool_result', \
                                         'system_item') \
                          AND NOT EXISTS (SELECT 1 FROM search AS s \
                            WHERE s.session_id = e.session_id AND s.seq = e.seq) \
                          AND NOT EXISTS (SELECT 1 FROM search_progress AS g \
                            WHERE g.session_id = e.session_id AND e.seq > g.indexed_seq)), \
                       (SELECT count(*) FROM search AS s \
                        WHERE NOT EXISTS (SELECT 1 FROM entries AS e \
                          WHERE e.session_id = s.session_id AND e.seq = s.seq \
                            AND e.kind = s.kind))",
                    &[],
                )
                .context(ctx)?;
            let missing: i64 = row.try_get(0).context(ctx)?;
            let stray: i64 = row.try_get(1).context(ctx)?;
            Ok((
                u64::try_from(missing).unwrap_or_default(),
                u64::try_from(stray).unwrap_or_default(),
            ))
        })
    }

    /// Rebuilds the search index from the entries, in one transaction: the
    /// rows it holds are replaced by one per searchable entry (numbered
    /// by ts, session and seq, as the migration numbers them). Searches
    /// meanwhile see the old index; appends wait for the rebuild, and one
    /// that outwaits its lock timeout fails, publishing nothing: on a large
    /// store run it when pods are quiet (it computes every entry's words, a
    /// few tens of microseconds each).
    pub fn rebuild_search_index(&self) -> Result<()> {
        self.with_client(|client| {
            let ctx = || "rebuilding the search index".to_owned();
            let mut tx = client.transaction().context(ctx)?;
            tx.batch_execute(
                "LOCK TABLE entries IN SHARE MODE; \
                 DELETE FROM search; \
                 INSERT INTO search (session_id, seq, ts, kind, words) \
                 SELECT session_id, seq, ts, kind, \
                   search_words(search_text(kind, body, payloads)) \
                 FROM entries \
                 WHERE kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item') \
                 ORDER BY ts, session_id, seq; \
                 UPDATE search_progress AS g SET indexed_seq = coalesce( \
                   (SELECT max(e.seq) FROM entries AS e WHERE e.session_id = g.session_id), \
                   g.indexed_seq)",
            )
            .context(ctx)?;
            tx.commit().context(ctx)
        })
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
pub(crate) mod tests;
