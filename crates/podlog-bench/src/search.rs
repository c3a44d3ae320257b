//! Rows S1 and S2: full-text search (schema 5).
//!
//! * **S1**: [`SearchCorpus`] bulk-inserts a large history (one
//!   transaction, through the entry table so the index triggers run as on
//!   append) of sessions written a few at a time, with the entries of
//!   [`Corpus`] (inputs, answers, tool calls and outputs, notifications)
//!   and a word of a large vocabulary added to each input and answer, drawn
//!   so that a few words are common and most rare; one word is planted in
//!   a handful of entries. [`SearchCorpus::measure`] times
//!   `Store::search` (limit 20) for each [`SHAPES`] query with and without
//!   a session filter.
//! * **S2**: P1's durable append with the index against the same store
//!   with the index's triggers dropped (see [`PodlogAppend`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::{AssistantContent, LogEntry, SessionId};
use podlog_store::{SearchQuery, Store, Synchronous};
use rusqlite::params;

use crate::append::{open_store, PodlogAppend};
use crate::corpus::{Corpus, SplitMix};
use crate::error::{self, BenchError, Result};

/// The word planted in a few entries of the corpus.
pub const RARE_WORD: &str = "zanzibarquokka";

/// The query shapes of S1: (name, FTS5 query).
pub const SHAPES: [(&str, &str); 5] = [
    ("rare term", RARE_WORD),
    ("common term", "test"),
    ("phrase", "\"cargo test\""),
    ("prefix", "fail*"),
    ("two terms", "parse AND input"),
];

/// A large history to search.
pub struct SearchCorpus {
    store: Arc<Store>,
    /// A session from the middle of the history, for the filtered queries.
    middle: SessionId,
    entries: usize,
    /// How long the bulk insert took, index included.
    pub build: Duration,
}

/// A pronounceable word for rank `k` of the vocabulary.
fn word(mut k: u64) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut w = String::from("w");
    loop {
        w.push(C[(k % C.len() as u64) as usize] as char);
        k /= C.len() as u64;
        w.push(V[(k % V.len() as u64) as usize] as char);
        k /= V.len() as u64;
        if k == 0 {
            return w;
        }
    }
}

impl SearchCorpus {
    /// Writes `entries` entries in sessions of `per_session`, `concurrent`
    /// sessions written at a time (their entries interleaved), into a new
    /// store at `dir/name`.
    pub fn build(
        dir: &Path,
        name: &str,
        entries: usize,
        per_session: usize,
        concurrent: usize,
    ) -> Result<Self> {
        let row = "S1";
        let store = open_store(row, dir, name, Synchronous::Normal)?;
        let path = dir.join(name);
        let sqlite = |source: rusqlite::Error| BenchError::Sqlite {
            row,
            path: path.clone(),
            source: Box::new(source),
        };
        let started = Instant::now();
        let mut conn = rusqlite::Connection::open(&path).map_err(sqlite)?;
        let tx = conn.transaction().map_err(sqlite)?;
        let mut corpus = Corpus::new(7);
        let mut rng = SplitMix(11);
        let vocabulary = 50_000f64;
        let sessions = entries.div_ceil(per_session).max(1);
        let plant_every = (entries / 8).max(1);
        let mut middle = None;
        let mut written = 0usize;
        {
            let mut add_session = tx
                .prepare(
                    "INSERT INTO sessions (id, origin, created_at, updated_at, last_seq, entry_count) \
                     VALUES (?1, 'new', ?2, ?2, ?3, ?3)",
                )
                .map_err(sqlite)?;
            let mut add_entry = tx
                .prepare(
                    "INSERT INTO entries (session_id, seq, ts, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sqlite)?;
            let start = LogEntry::SessionStart {
                ts: 1_700_000_000_000,
                system_prompt: Some("You are a careful coding assistant.".to_owned()),
                config: Default::default(),
                history: vec![],
                forked_from: None,
                compacted_from: None,
            };
            for group in (0..sessions).step_by(concurrent.max(1)) {
                let ids: Vec<String> = (group..(group + concurrent).min(sessions))
                    .map(|s| format!("search-{s:06}"))
                    .collect();
                let sizes: Vec<usize> = (group..(group + concurrent).min(sessions))
                    .map(|s| per_session.min(entries - (s * per_session).min(entries)))
                    .collect();
                for (id, size) in ids.iter().zip(&sizes) {
                    add_session
                        .execute(params![id, 1_700_000_000_000u64, *size as u64 + 1])
                        .map_err(sqlite)?;
                    add_entry
                        .execute(params![id, 1, start.ts(), start.kind(), start.to_json()])
                        .map_err(sqlite)?;
                }
                if middle.is_none() && group >= sessions / 2 {
                    middle = Some(ids[0].clone());
                }
                let longest = sizes.iter().copied().max().unwrap_or(0);
                for seq in 0..longest {
                    for (id, size) in ids.iter().zip(&sizes) {
                        if seq >= *size {
                            continue;
                        }
                        let mut entry = corpus.next().expect("endless");
                        // A word of the vocabulary, log-uniform in rank:
                        // a few common, most rare.
                        let rank = (rng.unit() * vocabulary.ln()).exp() as u64;
                        match &mut entry {
                            LogEntry::UserInput { text, .. }
                            | LogEntry::AssistantItem {
                                item: AssistantContent::Text { text },
                                ..
                            } => {
                                text.push_str(" about ");
                                text.push_str(&word(rank));
                            }
                            _ => {}
                        }
                        if written % plant_every == plant_every / 2 {
                            entry = LogEntry::UserInput {
                                ts: entry.ts(),
                                text: format!("what became of {RARE_WORD} in the build?"),
                                attachments: vec![],
                            };
                        }
                        add_entry
                            .execute(params![
                                id,
                                seq as u64 + 2,
                                entry.ts(),
                                entry.kind(),
                                entry.to_json()
                            ])
                            .map_err(sqlite)?;
                        written += 1;
                    }
                }
            }
        }
        tx.commit().map_err(sqlite)?;
        let build = started.elapsed();
        let middle = middle.unwrap_or_else(|| "search-000000".to_owned());
        Ok(Self {
            store,
            middle: SessionId::new(middle).expect("valid id"),
            entries: written,
            build,
        })
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the corpus is empty.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Runs every shape `runs` times, without and with the session filter,
    /// and returns per (shape, filtered) the latencies in milliseconds.
    /// Checks that each query found what it must.
    pub fn measure(&self, runs: usize) -> Result<Vec<(String, Vec<f64>)>> {
        let mut out = Vec::new();
        for (name, text) in SHAPES {
            for filtered in [false, true] {
                let query = SearchQuery {
                    text: text.to_owned(),
                    session: filtered.then(|| self.middle.clone()),
                    limit: 20,
                    ..SearchQuery::default()
                };
                let mut times = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let t = Instant::now();
                    let page = self.store.search(&query).map_err(error::store("S1"))?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                    if !filtered && page.hits.is_empty() {
                        return Err(BenchError::Check {
                            row: "S1",
                            problem: format!("query {text:?} found nothing"),
                        });
                    }
                }
                let label = if filtered {
                    format!("{name}, one session")
                } else {
                    name.to_owned()
                };
                out.push((label, times));
            }
        }
        Ok(out)
    }
}

/// S2's two sides: P1's append at `sync` into a store with the search
/// index, and into one whose index triggers are dropped.
pub fn indexed_and_unindexed(
    dir: &Path,
    sync: Synchronous,
) -> Result<(PodlogAppend, PodlogAppend)> {
    let level = match sync {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    let name = |side: &str| format!("s2-{side}-{level}.db");
    let with = PodlogAppend::open("S2", dir, &name("index"), sync)?;
    let without = PodlogAppend::open("S2", dir, &name("noindex"), sync)?;
    let path = dir.join(name("noindex"));
    let conn = rusqlite::Connection::open(&path).map_err(|source| BenchError::Sqlite {
        row: "S2",
        path: path.clone(),
        source: Box::new(source),
    })?;
    conn.execute_batch(
        "DROP TRIGGER search_after_insert; DROP TRIGGER search_before_delete; \
         DROP TRIGGER search_before_update; DROP TRIGGER search_after_update;",
    )
    .map_err(|source| BenchError::Sqlite {
        row: "S2",
        path,
        source: Box::new(source),
    })?;
    Ok((with, without))
}
