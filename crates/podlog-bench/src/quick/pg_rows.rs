//! Rows PG1 to PG3 of the quick mode: podlog's store on PostgreSQL. PG1 is
//! P1's durable append (`synchronous_commit=on`) against a raw client
//! `INSERT` per transaction, PG2 eight sessions appending at once against
//! PG1's rate, PG3 the latency from a commit to a follower in another
//! process. Each row works in a fresh schema of its own, dropped when it
//! ends; see [`crate::pg`] for the methods.

use std::time::Duration;

use podlog_store::Synchronous;

use super::{count, rate, run_rotated, Corpus, Figure, Row, Scale, Selection, Sides, Target, Unit};
use crate::append::{GroupAppend, PodlogAppend};
use crate::error::Result;
use crate::pg::{
    measure_follow, open_store, raw_group, settle, BenchSchema, FollowerLauncher, RawPgAppend,
    RawPgShape,
};
use crate::stats::percentile;

/// How many entries each side of PG1 appends before the next side's turn.
const PG1_CHUNK: usize = 100;

/// The PostgreSQL server the PG rows run against.
#[derive(Clone, Debug)]
pub struct PgTarget {
    /// A `postgres://` URL; each row makes a schema of its own in its
    /// database.
    pub url: String,
    /// Where PG3's follower runs.
    pub follower: FollowerLauncher,
}

/// Whether any PG row is selected.
pub(super) fn any(selected: &Selection) -> bool {
    ["PG1", "PG2", "PG3"].iter().any(|g| selected.has(g))
}

/// The PG rows of `selected`, in the table's order. PG2's baseline is
/// PG1's rate, so PG2 measures PG1 too.
pub(super) fn rows(
    target: &PgTarget,
    scale: &Scale,
    repeats: usize,
    selected: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut pg1_rates = Vec::new();
    let mut raw_rates = Vec::new();
    let mut raw_notify_rates = Vec::new();
    if selected.has("PG1") || selected.has("PG2") {
        progress(
            "PG1: durable appends (synchronous_commit=on) against a raw INSERT per transaction",
        );
        let schema = BenchSchema::create("PG1", &target.url)?;
        let mut ours =
            PodlogAppend::with_store("PG1", open_store("PG1", &schema, Synchronous::Full)?)?;
        let mut raw = RawPgAppend::open("PG1", &schema, "raw", RawPgShape::Insert)?;
        let mut raw_notify =
            RawPgAppend::open("PG1", &schema, "raw-notify", RawPgShape::InsertNotify)?;
        let mut raw_after =
            RawPgAppend::open("PG1", &schema, "raw-after", RawPgShape::InsertThenNotify)?;
        let mut corpus = Corpus::new(1);
        let n = scale.pg_appends;
        let mut pg1 = Sides::default();
        let mut notify = Vec::new();
        let mut after = Vec::new();
        for r in 0..repeats {
            let batch = corpus.take_vec(n);
            // The sides take turns a chunk at a time, so that each sees the
            // disk as the others do: a flush's latency on a shared machine
            // drifts over seconds, more than the sides differ.
            let mut took = [Duration::ZERO; 4];
            for (k, chunk) in batch.chunks(PG1_CHUNK).enumerate() {
                let [t_ours, t_raw, t_notify, t_after] = &mut took;
                let mut sides: [&mut dyn FnMut() -> Result<()>; 4] = [
                    &mut || {
                        *t_ours += ours.run(chunk.to_vec())?;
                        settle("PG1", ours.store())
                    },
                    &mut || {
                        *t_raw += raw.run(chunk)?;
                        Ok(())
                    },
                    &mut || {
                        *t_notify += raw_notify.run(chunk)?;
                        Ok(())
                    },
                    &mut || {
                        *t_after += raw_after.run(chunk)?;
                        Ok(())
                    },
                ];
                run_rotated(&mut sides, r + k)?;
            }
            pg1.ours.push(rate(n, took[0]));
            pg1.baseline.push(rate(n, took[1]));
            notify.push(rate(n, took[2]));
            after.push(rate(n, took[3]));
        }
        drop((ours, raw, raw_notify, raw_after));
        raw_rates = pg1.baseline.clone();
        raw_notify_rates = notify.clone();
        schema.drop_now()?;
        pg1_rates = pg1.ours.clone();
        if selected.has("PG1") {
            let note = format!(
                "{n} entries per repetition, the sides taking turns every {PG1_CHUNK}; per repetition, ours/baseline: {}",
                figures(pg1.ours.iter().zip(&pg1.baseline).map(|(o, b)| o / b))
            );
            let mut row = pg1.row(
                "PG1",
                "durable append (sync commit on, 1 entry/txn) vs raw client INSERT/txn".to_owned(),
                Unit::PerSecond,
                Target::RatioAtLeast(0.8),
            );
            row.note = Some(note);
            rows.push(row);
            rows.push(
                Sides {
                    ours: pg1_rates.clone(),
                    baseline: notify,
                }
                .row(
                    "PG1-notify",
                    "  the same vs raw INSERT + pg_notify in its txn".to_owned(),
                    Unit::PerSecond,
                    Target::Reference,
                ),
            );
            rows.push(
                Sides {
                    ours: pg1_rates.clone(),
                    baseline: after,
                }
                .row(
                    "PG1-after",
                    "  the same vs raw INSERT, then pg_notify in a no-flush txn".to_owned(),
                    Unit::PerSecond,
                    Target::Reference,
                ),
            );
        }
    }

    if selected.has("PG2") {
        progress(&format!(
            "PG2: {} sessions appending at once (synchronous_commit=on)",
            scale.group_writers
        ));
        let schema = BenchSchema::create("PG2", &target.url)?;
        let mut group = GroupAppend::with_store(
            "PG2",
            open_store("PG2", &schema, Synchronous::Full)?,
            scale.group_writers,
        )?;
        let mut pg2 = Sides {
            ours: Vec::new(),
            baseline: pg1_rates,
        };
        let stats_before = group.commit_stats();
        for _ in 0..repeats {
            let t = group.run(scale.group_appends)?;
            pg2.ours
                .push(rate(scale.group_appends * group.writers(), t));
            settle("PG2", group.store())?;
        }
        let stats = group.commit_stats();
        let per_txn = (stats.entries - stats_before.entries) as f64
            / (stats.transactions - stats_before.transactions).max(1) as f64;
        let writers = group.writers();
        drop(group);
        // For reference: as many raw clients at once, with and without a
        // pg_notify in each transaction, against one of the same shape.
        let mut raw = Sides {
            ours: Vec::new(),
            baseline: raw_rates,
        };
        let mut raw_notify = Sides {
            ours: Vec::new(),
            baseline: raw_notify_rates,
        };
        let mut corpus = Corpus::new(7);
        let per = scale.group_appends;
        for r in 0..repeats {
            let batches: Vec<Vec<_>> = (0..writers).map(|_| corpus.take_vec(per)).collect();
            let mut sides: [&mut dyn FnMut() -> Result<()>; 2] = [
                &mut || {
                    let batches = batches.clone();
                    let t = raw_group("PG2", &schema, r, RawPgShape::Insert, writers, batches)?;
                    raw.ours.push(rate(per * writers, t));
                    Ok(())
                },
                &mut || {
                    let batches = batches.clone();
                    let t = raw_group(
                        "PG2",
                        &schema,
                        r,
                        RawPgShape::InsertNotify,
                        writers,
                        batches,
                    )?;
                    raw_notify.ours.push(rate(per * writers, t));
                    Ok(())
                },
            ];
            run_rotated(&mut sides, r)?;
        }
        schema.drop_now()?;
        let note = format!(
            "{} entries per session per repetition; aggregate per repetition, /s: {}",
            scale.group_appends,
            figures(pg2.ours.iter().copied())
        );
        let mut row = pg2.row(
            "PG2",
            format!(
                "{writers} sessions appending at once (sync commit on, {per_txn:.1} entries/txn), \
                 aggregate vs PG1"
            ),
            Unit::PerSecond,
            Target::RatioAtLeast(3.0),
        );
        row.note = Some(note);
        rows.push(row);
        rows.push(raw.row(
            "PG2-raw",
            format!("  {writers} raw clients INSERT/txn at once vs one (PG1's baseline)"),
            Unit::PerSecond,
            Target::Reference,
        ));
        rows.push(raw_notify.row(
            "PG2-raw-notify",
            format!("  {writers} raw clients INSERT + pg_notify/txn at once vs one"),
            Unit::PerSecond,
            Target::Reference,
        ));
    }

    if selected.has("PG3") {
        progress(&format!(
            "PG3: {} commits, one every {} ms, to a follower in another process",
            count(scale.follow_commits),
            scale.follow_pace.as_millis()
        ));
        let schema = BenchSchema::create("PG3", &target.url)?;
        let store = open_store("PG3", &schema, Synchronous::Full)?;
        let entries = Corpus::new(5).take_vec(scale.follow_commits);
        let (latencies, apart) = measure_follow(
            &store,
            schema.url(),
            entries,
            scale.follow_pace,
            &target.follower,
        )?;
        drop(store);
        schema.drop_now()?;
        let p50 = percentile(&latencies, 50.0);
        let p99 = percentile(&latencies, 99.0);
        let mut row = Row::alone(
            "PG3",
            "commit to a follower in another process (LISTEN), p99".to_owned(),
            Figure::new(p99, Unit::Millis),
            Target::OursAtMost(50.0, Unit::Millis),
        );
        row.note = Some(format!(
            "{} entries: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms; the follower {}, \
             checks its LISTEN every {} ms as a serve node does, then reads by seq",
            latencies.len(),
            percentile(&latencies, 100.0),
            if apart {
                "ran in another process"
            } else {
                "ran in this process (a thread)"
            },
            poll().as_millis()
        ));
        rows.push(row);
    }
    Ok(rows)
}

/// `xs` as a list with three significant digits.
fn figures(xs: impl Iterator<Item = f64>) -> String {
    xs.map(super::round3).collect::<Vec<_>>().join(", ")
}

fn poll() -> Duration {
    podlog_pod::follow::POLL
}
