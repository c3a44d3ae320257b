//! `podlog search QUERY`: entries matching a full-text query, newest first.
//!
//! One line per hit: session, seq, time, kind and a snippet with each match
//! in bold on a terminal, or between `**` otherwise. `QUERY` is FTS5 query
//! syntax (`word`, `"a phrase"`, `pre*`, `a NOT b`, `NEAR(a b, 5)`);
//! `--plain` matches the words as written instead. A query SQLite cannot
//! parse fails with its reason and exit code 1. When more hits remain, a
//! line on stderr gives the `--cursor` of the next page. `podlog show
//! SESSION --at SEQ` opens the timeline at a hit.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use podlog_entry::iso8601;
use podlog_store::search::{parse_since, snippet_parts};
use podlog_store::{SearchQuery, Store};

/// Arguments of `podlog search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for, in FTS5 query syntax: words, "a phrase", prefix*,
    /// AND / OR / NOT, NEAR(a b, 5).
    query: String,
    /// Match the words as written, ignoring FTS5 operators and quotes.
    #[arg(long)]
    plain: bool,
    /// Only this session (its id, or an unambiguous prefix of it).
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Only entries of this kind: user_input, assistant_item, tool_result
    /// or system_item.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only entries at or after this time: an ISO date or time in UTC
    /// (2026-11-30, 2026-11-30T08:15:00Z) or a time ago (30m, 12h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// How many hits to print (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: u32,
    /// Continue after the page that printed this cursor.
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<i64>,
}

/// Runs `podlog search`.
pub fn run(store: &Store, args: SearchArgs, out: &mut impl Write) -> Result<ExitCode, String> {
    if args.limit == 0 {
        return Err("--limit must be at least 1".to_owned());
    }
    let session = match &args.session {
        Some(s) => Some(store.resolve(s).map_err(|e| e.to_string())?),
        None => None,
    };
    let since = match &args.since {
        Some(s) => Some(parse_since(s, store.now()).map_err(|e| format!("--since: {e}"))?),
        None => None,
    };
    let page = store
        .search(&SearchQuery {
            text: args.query.clone(),
            plain: args.plain,
            session,
            kind: args.kind.clone(),
            since,
            limit: args.limit,
            cursor: args.cursor,
        })
        .map_err(|e| e.to_string())?;
    let bold = std::io::stdout().is_terminal();
    let mut text = String::new();
    for hit in &page.hits {
        let _ = write!(
            text,
            "{}  {:>5}  {}  {:<14}  ",
            hit.session,
            hit.seq,
            iso8601(hit.ts),
            hit.kind
        );
        for (part, matched) in snippet_parts(&hit.snippet) {
            let part = one_line(&part);
            match (matched, bold) {
                (true, true) => {
                    let _ = write!(text, "\x1b[1m{part}\x1b[0m");
                }
                (true, false) => {
                    let _ = write!(text, "**{part}**");
                }
                (false, _) => text.push_str(&part),
            }
        }
        text.push('\n');
    }
    if page.hits.is_empty() {
        eprintln!("podlog: no entries match {:?}", args.query);
    }
    if let Some(next) = page.next {
        eprintln!("podlog: more hits: add --cursor {next} for the next page");
    }
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("writing output: {e}")),
    }
}

/// The snippet part with line breaks, tabs and other control characters
/// as spaces, so a hit stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Draws the progress of a long migration (indexing for search) on stderr:
/// a bar on a terminal, else a line when it starts and one when it ends.
pub fn migration_progress() -> podlog_store::Progress {
    let terminal = std::io::stderr().is_terminal();
    std::sync::Arc::new(move |done: u64, total: u64| {
        if terminal {
            let width: u64 = 30;
            let filled = (done * width)
                .checked_div(total)
                .map_or(width, |f| f.min(width)) as usize;
            eprint!(
                "\rpodlog: indexing for search [{}{}] {done}/{total} entries",
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
            if done >= total {
                eprintln!();
            }
        } else if done == 0 {
            eprintln!("podlog: indexing {total} entries for search");
        } else if done >= total {
            eprintln!("podlog: indexed {total} entries for search");
        }
    })
}
