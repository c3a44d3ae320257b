//! Rows S1 and S2 of the quick mode: search latency over a large history,
//! and the durable append with the search index against without it. See
//! [`crate::search`] for the methods.

use std::path::Path;

use super::{count, rate, run_rotated, Corpus, Figure, Row, Scale, Selection, Sides, Target, Unit};
use crate::error::Result;
use crate::search::{indexed_and_unindexed, SearchCorpus};
use crate::stats::{median, percentile};
use podlog_store::Synchronous;

/// The S rows of `selected`, in the table's order.
pub(super) fn rows(
    dir: &Path,
    scale: &Scale,
    repeats: usize,
    selected: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if selected.has("S1") {
        progress(&format!(
            "S1: writing a {}-entry history to search (one transaction)",
            count(scale.search_entries)
        ));
        let corpus = SearchCorpus::build(
            dir,
            "s1.db",
            scale.search_entries,
            scale.search_per_session,
            scale.search_concurrent,
        )?;
        progress(&format!(
            "S1: {} queries of each shape, with and without a session filter",
            scale.search_runs
        ));
        let shapes = corpus.measure(scale.search_runs)?;
        let all: Vec<f64> = shapes.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        let p50 = percentile(&all, 50.0);
        let p99 = percentile(&all, 99.0);
        let what = |p: &str| {
            format!(
                "search latency {p}, {}-entry history, limit 20, {} query shapes",
                count(corpus.len()),
                shapes.len()
            )
        };
        let mut row = Row::alone(
            "S1",
            what("p50"),
            Figure::new(p50, Unit::Millis),
            Target::OursAtMost(20.0, Unit::Millis),
        );
        let per_shape: Vec<String> = shapes
            .iter()
            .map(|(name, t)| format!("{name} {:.2}/{:.2}", median(t), percentile(t, 100.0)))
            .collect();
        row.note = Some(format!(
            "history of {} entries in sessions of {}, {} written at a time, built and indexed in {:.0} s; \
             per shape, median/max ms: {}",
            count(corpus.len()),
            count(scale.search_per_session),
            scale.search_concurrent,
            corpus.build.as_secs_f64(),
            per_shape.join("; ")
        ));
        rows.push(row);
        rows.push(Row::alone(
            "S1-p99",
            format!("  the same, p99 ({} queries)", all.len()),
            Figure::new(p99, Unit::Millis),
            Target::OursAtMost(100.0, Unit::Millis),
        ));
    }
    if selected.has("S2") {
        progress("S2: durable appends (FULL) with the search index against without");
        let runs = [
            (Synchronous::Full, scale.durable_appends),
            (Synchronous::Normal, scale.normal_appends),
        ];
        let mut measured = Vec::new();
        for (sync, n) in runs {
            let (mut with, mut without) = indexed_and_unindexed(dir, sync)?;
            let mut corpus = Corpus::new(3);
            let mut s2 = Sides::default();
            for r in 0..repeats {
                let batch = corpus.take_vec(n);
                let mut sides: [&mut dyn FnMut() -> Result<()>; 2] = [
                    &mut || {
                        s2.ours.push(rate(n, with.run(batch.clone())?));
                        Ok(())
                    },
                    &mut || {
                        s2.baseline.push(rate(n, without.run(batch.clone())?));
                        Ok(())
                    },
                ];
                run_rotated(&mut sides, r)?;
            }
            measured.push(s2);
        }
        let [full, normal]: [Sides; 2] = measured
            .try_into()
            .unwrap_or_else(|_| unreachable!("two runs"));
        rows.push(full.row(
            "S2",
            "durable append (FULL, 1 entry/txn) with the search index vs without".to_owned(),
            Unit::PerSecond,
            Target::RatioAtLeast(0.9),
        ));
        rows.push(normal.row(
            "S2-normal",
            "  the same at NORMAL (no flush): the index's CPU".to_owned(),
            Unit::PerSecond,
            Target::Reference,
        ));
    }
    Ok(rows)
}
