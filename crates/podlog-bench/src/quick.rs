//! The quick mode behind the `podlog-bench` program: every row of the
//! performance table, each side measured `repeats` times in one run,
//! reported as medians and ratios in a [`Report`].
//!
//! # What a row reports
//!
//! * `ours` and `baseline`: the medians over the repetitions.
//! * `ratio`: the median of the per-repetition ratios `ours / baseline`.
//!   Each repetition measures both sides back to back (alternating which goes
//!   first) on the same files, so a ratio holds on a noisy machine even when
//!   the absolute figures move.
//! * `target` and `result`: the target for the row and whether the
//!   median met it. A reference row (a second baseline, for context) has no
//!   target. Notes under the table add what a figure needs to be read
//!   (entries per transaction, attach rate, where P8's clients ran).
//!
//! A failure in rows P1 to P7, H3 and H4 fails the run (it is a bug or a
//! broken disk). P8, P9, H1 and H2 need a loopback server, a second process
//! and many sockets; when they cannot run, their rows say "not measured"
//! with the reason.
//!
//! [`QuickOptions::rows`] picks the rows to run, by group (`P1` brings its
//! reference rows, `H1` its peak): `--only H1,H2` on the command line. A
//! group another needs is measured without being shown: P3's baseline is
//! P1's rate, P9 serves P6's session.
//!
//! All files live in a fresh temporary folder inside [`QuickOptions::dir`]
//! and are removed when the run ends, whether it succeeded or not.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::LogEntry;
use podlog_store::Synchronous;

use crate::append::{rate, GroupAppend, PodlogAppend};
use crate::baseline::{JsonlAppend, RawShape, RawSqliteAppend};
use crate::corpus::{shared_pool, Corpus};
use crate::error::{self, Result};
use crate::fanout::{measure_fanout, ClientLauncher, FanoutResult, FanoutSpec};
use crate::memory::{measure_mirror, HeapGauge};
use crate::mirror::{
    build_mirror, build_seed_mirror, seed_subscribe_latencies, subscribe_latencies, Attach,
    PublishUnderAttach,
};
use crate::restore::RestoreFixture;
use crate::restored::ServerLauncher;
use crate::resume::measure_resume;
use crate::stats::{median, percentile};

mod huge_rows;
mod pg_rows;
mod search_rows;

pub use pg_rows::PgTarget;

/// F1 and F2: following sessions another connection writes (see
/// [`crate::follow`]). One run each: F1's figure is a percentile over its
/// entries, F2's a share over its window.
fn follow_rows(
    dir: &std::path::Path,
    scale: &Scale,
    selected: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if selected.has("F1") {
        progress(&format!(
            "F1: {} commits by another connection, one every {} ms, to a follower",
            count(scale.follow_commits),
            scale.follow_pace.as_millis()
        ));
        let latencies: Vec<f64> =
            crate::follow::measure_follow_latency(dir, scale.follow_commits, scale.follow_pace)?
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
        let p99 = percentile(&latencies, 99.0);
        let mut row = Row::alone(
            "F1",
            "commit by another connection to the follower's event, p99".to_owned(),
            Figure::new(p99, Unit::Millis),
            Target::OursAtMost(100.0, Unit::Millis),
        );
        row.note = Some(format!(
            "{} entries: p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms (the watcher polls every {} ms)",
            latencies.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 100.0),
            podlog_pod::follow::POLL.as_millis()
        ));
        rows.push(row);
    }
    if selected.has("F2") {
        progress(&format!(
            "F2: CPU of an idle process following {} sessions, over {} s",
            scale.follow_sessions,
            scale.follow_idle.as_secs_f64()
        ));
        let share =
            crate::follow::measure_idle_follow_cpu(dir, scale.follow_sessions, scale.follow_idle)?;
        let mut row = Row::alone(
            "F2",
            format!(
                "CPU of an idle process following {} sessions, % of one core",
                scale.follow_sessions
            ),
            Figure::new(share, Unit::Percent),
            Target::OursAtMost(1.0, Unit::Percent),
        );
        row.note = Some(format!(
            "{share:.3}% of one core over {:.1} s (getrusage: user + system time of the whole process)",
            scale.follow_idle.as_secs_f64()
        ));
        rows.push(row);
    }
    Ok(rows)
}

/// How many entries, samples and threads each row uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// P1: durable appends per side per repetition.
    pub durable_appends: usize,
    /// PG1: durable appends per side per repetition. More than P1's: a
    /// commit on PostgreSQL takes a fraction of SQLite's on the same disk,
    /// and a repetition needs to last long enough for its ratio to hold
    /// still.
    pub pg_appends: usize,
    /// P2: appends at `synchronous=NORMAL` per side per repetition.
    pub normal_appends: usize,
    /// P3: sessions appending at once.
    pub group_writers: usize,
    /// P3: appends per session per repetition.
    pub group_appends: usize,
    /// P4: the short, long and very long mirrors.
    pub mirror_short: usize,
    pub mirror_long: usize,
    pub mirror_huge: usize,
    /// P4: timed subscribes per mirror per repetition.
    pub subscribe_samples: usize,
    /// P4: timed subscribes to the seed's sink per repetition.
    pub seed_subscribe_samples: usize,
    /// P5: receivers attached while publishing.
    pub subscribers: usize,
    /// P5: timed publishes per side per repetition.
    pub publishes: usize,
    /// P5: the attach rate of the paced reference run, per second.
    pub paced_attaches: f64,
    /// P6: entries in the restored session.
    pub restore_entries: usize,
    /// P7: entries in the measured mirror.
    pub memory_entries: usize,
    /// Distinct entry bodies the long mirrors of P4 and P5 cycle through.
    pub pool: usize,
    /// P8: clients attached to the pod.
    pub fanout_clients: usize,
    /// P8: live events per run.
    pub fanout_events: usize,
    /// P8: live events per second.
    pub fanout_rate: u32,
    /// P8: entries in the session before the clients attach.
    pub fanout_history: usize,
    /// P8: runs (each with a one-client baseline run), at most `repeats`.
    pub fanout_runs: usize,
    /// P9: entries the reconnecting client is behind.
    pub resume_behind: u64,
    /// H1, H2 and H4: entries in the long session.
    pub huge_entries: usize,
    /// H1, H2 and H4: the long session's tool output, in bytes.
    pub huge_output_bytes: u64,
    /// H2: entries of the tail-first attach.
    pub attach_tail: usize,
    /// H3: entries in the short and in the long restored session.
    pub restore_short: usize,
    pub restore_long: usize,
    /// F1: entries another connection commits, and the pause between two.
    pub follow_commits: usize,
    pub follow_pace: Duration,
    /// F2: sessions followed, and how long the idle process is watched.
    pub follow_sessions: usize,
    pub follow_idle: Duration,
    /// S1: entries of the searched history, entries per session, sessions
    /// written at a time, and timed queries per query shape.
    pub search_entries: usize,
    pub search_per_session: usize,
    pub search_concurrent: usize,
    pub search_runs: usize,
}

impl Scale {
    /// The sizes of the targets: P1 to P9 in well under a minute
    /// on two cores, H1 to H4 (a gigabyte of tool output, a
    /// million-entry restore) in about two more.
    pub fn quick() -> Self {
        Self {
            durable_appends: 500,
            pg_appends: 2_000,
            normal_appends: 5_000,
            group_writers: 8,
            group_appends: 200,
            mirror_short: 1_000,
            mirror_long: 100_000,
            mirror_huge: 1_000_000,
            subscribe_samples: 2_000,
            seed_subscribe_samples: 5,
            subscribers: 100,
            publishes: 50_000,
            paced_attaches: 10_000.0,
            restore_entries: 100_000,
            memory_entries: 100_000,
            pool: 4_096,
            fanout_clients: 1_000,
            fanout_events: 200,
            fanout_rate: 100,
            fanout_history: 50,
            fanout_runs: 3,
            resume_behind: 10,
            huge_entries: 10_000,
            huge_output_bytes: 1024 << 20,
            attach_tail: 100,
            restore_short: 10_000,
            restore_long: 1_000_000,
            follow_commits: 500,
            follow_pace: Duration::from_millis(7),
            follow_sessions: 100,
            follow_idle: Duration::from_secs(10),
            search_entries: 1_000_000,
            search_per_session: 1_000,
            search_concurrent: 8,
            search_runs: 50,
        }
    }

    /// Tiny sizes that run in a moment: for checking the measurements work,
    /// not for their figures.
    pub fn tiny() -> Self {
        Self {
            durable_appends: 3,
            pg_appends: 3,
            normal_appends: 5,
            group_writers: 2,
            group_appends: 2,
            mirror_short: 10,
            mirror_long: 100,
            mirror_huge: 1_000,
            subscribe_samples: 5,
            seed_subscribe_samples: 1,
            subscribers: 3,
            publishes: 50,
            paced_attaches: 10_000.0,
            restore_entries: 50,
            memory_entries: 200,
            pool: 64,
            fanout_clients: 4,
            fanout_events: 5,
            fanout_rate: 200,
            fanout_history: 5,
            fanout_runs: 1,
            resume_behind: 3,
            huge_entries: 300,
            huge_output_bytes: 4 << 20,
            attach_tail: 10,
            restore_short: 100,
            restore_long: 2_000,
            follow_commits: 20,
            follow_pace: Duration::from_millis(2),
            follow_sessions: 5,
            follow_idle: Duration::from_millis(300),
            search_entries: 2_000,
            search_per_session: 100,
            search_concurrent: 3,
            search_runs: 2,
        }
    }
}

/// What to run and where.
#[derive(Clone, Debug)]
pub struct QuickOptions {
    /// The folder the temporary files go in (inside a fresh subfolder).
    /// Put it on the disk whose speed you want to know: the appends' figures
    /// are the disk's flush cost.
    pub dir: PathBuf,
    /// Repetitions of each measurement (at least 1).
    pub repeats: usize,
    /// Sizes.
    pub scale: Scale,
    /// Where P8's clients run: another process keeps their memory out of
    /// the server's.
    pub clients: ClientLauncher,
    /// Where the server of H1 and H2 runs: in a process of its own, its
    /// memory is its own.
    pub server: ServerLauncher,
    /// The rows to run.
    pub rows: Selection,
    /// The PostgreSQL server of rows PG1 to PG3; without one they are
    /// skipped (a progress line says so).
    pub postgres: Option<PgTarget>,
}

/// The groups of rows, in the table's order. A group is a row with its
/// reference and sub-rows (`P1` brings `P1-nosync` and `P1-sqlite`).
pub const GROUPS: [&str; 21] = [
    "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "H1", "H2", "H3", "H4", "F1", "F2", "S1",
    "S2", "R1", "PG1", "PG2", "PG3",
];

/// Which groups of rows a run measures: all of them, or those named in a
/// comma-separated list such as `H1,H2,h3` (any case; `all` for every one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    groups: Vec<&'static str>,
}

impl Selection {
    /// Every group.
    pub fn all() -> Self {
        Self {
            groups: GROUPS.to_vec(),
        }
    }

    /// Whether `group` is selected.
    pub fn has(&self, group: &str) -> bool {
        self.groups.contains(&group)
    }

    /// The selected groups, in the table's order.
    pub fn groups(&self) -> &[&'static str] {
        &self.groups
    }
}

impl Default for Selection {
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Selection {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut named = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                return Ok(Self::all());
            }
            match GROUPS.iter().find(|g| g.eq_ignore_ascii_case(part)) {
                Some(group) => named.push(*group),
                None => {
                    return Err(format!(
                        "unknown row {part:?}: want some of {} (or all)",
                        GROUPS.join(",")
                    ))
                }
            }
        }
        if named.is_empty() {
            return Err(format!(
                "no row named: want some of {} (or all)",
                GROUPS.join(",")
            ));
        }
        Ok(Self {
            groups: GROUPS
                .iter()
                .copied()
                .filter(|g| named.contains(g))
                .collect(),
        })
    }
}

/// A measured quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub unit: Unit,
}

/// The unit of a [`Figure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Entries per second.
    PerSecond,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Kibibytes.
    KiB,
    /// Mebibytes.
    MiB,

    /// A share, in percent.
    Percent,
    /// A plain count.
    Count,
}

impl Figure {
    fn new(value: f64, unit: Unit) -> Self {
        Self { value, unit }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.unit {
            Unit::PerSecond => write!(f, "{} /s", round3(v)),
            Unit::Micros => write!(f, "{} us", round3(v)),
            Unit::Millis => write!(f, "{} ms", round3(v)),
            Unit::KiB => write!(f, "{} KiB", round3(v)),
            Unit::MiB => write!(f, "{} MiB", round3(v)),
            Unit::Count => write!(f, "{v:.0}"),
            Unit::Percent => write!(f, "{} %", round3(v)),
        }
    }
}

/// `v` with three significant digits (no exponent).
fn round3(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let digits = if v == 0.0 {
        0
    } else {
        (2 - v.abs().log10().floor() as i32).max(0) as usize
    };
    format!("{v:.digits$}")
}

/// A ratio for the table: three significant digits, or a power of ten
/// for a very small one.
fn ratio_text(x: f64) -> String {
    if x > 0.0 && x < 0.001 {
        format!("{x:.1e}x")
    } else {
        format!("{}x", round3(x))
    }
}

/// What a row must reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// `ratio >= x`.
    RatioAtLeast(f64),
    /// `ratio <= x`.
    RatioAtMost(f64),
    /// `ours <= x`, in the unit given (ours').
    OursAtMost(f64, Unit),
    /// No target: a reference row.
    Reference,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::RatioAtLeast(x) => write!(f, ">= {x}x"),
            Target::RatioAtMost(x) => write!(f, "<= {x}x"),
            Target::OursAtMost(x, unit) => write!(f, "<= {}", Figure::new(*x, *unit)),
            Target::Reference => f.write_str("-"),
        }
    }
}

/// Whether a row met its target.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Met,
    Missed,
    /// A reference row: no target.
    Reference,
    /// The row could not be measured; the text says why.
    NotMeasured(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Met => f.write_str("met"),
            Outcome::Missed => f.write_str("MISSED"),
            Outcome::Reference => f.write_str("(reference)"),
            Outcome::NotMeasured(_) => f.write_str("not measured"),
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `P1` ... `P9`, with a suffix for reference and sub-rows.
    pub id: &'static str,
    /// What is measured against what.
    pub what: String,
    pub ours: Option<Figure>,
    pub baseline: Option<Figure>,
    /// Median of the per-repetition ratios ours / baseline.
    pub ratio: Option<f64>,
    pub target: Target,
    pub outcome: Outcome,
    /// More about the figure, printed under the table.
    pub note: Option<String>,
}

impl Row {
    fn measured(
        id: &'static str,
        what: String,
        ours: Figure,
        baseline: Figure,
        ratio: f64,
        target: Target,
    ) -> Self {
        let met = match target {
            Target::RatioAtLeast(x) => Some(ratio >= x),
            Target::RatioAtMost(x) => Some(ratio <= x),
            Target::OursAtMost(x, _) => Some(ours.value <= x),
            Target::Reference => None,
        };
        Self {
            id,
            what,
            ours: Some(ours),
            baseline: Some(baseline),
            ratio: Some(ratio),
            target,
            outcome: match met {
                Some(true) => Outcome::Met,
                Some(false) => Outcome::Missed,
                None => Outcome::Reference,
            },
            note: None,
        }
    }

    /// A row with no baseline: only an absolute target on ours.
    fn alone(id: &'static str, what: String, ours: Figure, target: Target) -> Self {
        let outcome = match target {
            Target::OursAtMost(x, _) if ours.value <= x => Outcome::Met,
            Target::OursAtMost(..) => Outcome::Missed,
            _ => Outcome::Reference,
        };
        Self {
            id,
            what,
            ours: Some(ours),
            baseline: None,
            ratio: None,
            target,
            outcome,
            note: None,
        }
    }

    fn not_measured(id: &'static str, what: String, target: Target, why: String) -> Self {
        Self {
            id,
            what,
            ours: None,
            baseline: None,
            ratio: None,
            target,
            outcome: Outcome::NotMeasured(why),
            note: None,
        }
    }
}

/// The result of a quick run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The folder the files were in (removed since).
    pub workdir: PathBuf,
    pub repeats: usize,
    /// How P7 read the heap.
    pub heap_method: &'static str,
    pub rows: Vec<Row>,
}

impl Report {
    /// The row `id`.
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = |x: Option<String>| x.unwrap_or_else(|| "-".to_owned());
        let lines: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.id.to_owned(),
                    r.what.clone(),
                    cell(r.ours.map(|x| x.to_string())),
                    cell(r.baseline.map(|x| x.to_string())),
                    cell(r.ratio.map(ratio_text)),
                    r.target.to_string(),
                    r.outcome.to_string(),
                ]
            })
            .collect();
        let header = [
            "row", "what", "ours", "baseline", "ratio", "target", "result",
        ]
        .map(str::to_owned);
        let mut widths = [0usize; 7];
        for line in std::iter::once(&header).chain(&lines) {
            for (w, c) in widths.iter_mut().zip(line) {
                *w = (*w).max(c.chars().count());
            }
        }
        for line in std::iter::once(&header).chain(&lines) {
            let mut text = String::new();
            for (i, (c, w)) in line.iter().zip(widths).enumerate() {
                // Text columns align left, figures right.
                if (2..=4).contains(&i) {
                    text.push_str(&format!("{c:>w$}  "));
                } else {
                    text.push_str(&format!("{c:<w$}  "));
                }
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "medians of {} repetitions; ratio = median of per-repetition ours/baseline; \
             files in {}; P7 heap by {}",
            self.repeats,
            self.workdir.display(),
            self.heap_method
        )?;
        for r in &self.rows {
            if let Outcome::NotMeasured(why) = &r.outcome {
                writeln!(f, "{}: not measured: {why}", r.id)?;
            }
            if let Some(note) = &r.note {
                writeln!(f, "{}: {note}", r.id)?;
            }
        }
        Ok(())
    }
}

/// `n` as `1k`, `100k`, `1M` where it divides evenly.
pub fn count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Runs the rows of [`QuickOptions::rows`]. `progress` hears which row is
/// being measured; `gauge` reads the heap for P7.
pub fn quick(
    options: &QuickOptions,
    gauge: &dyn HeapGauge,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let workdir = tempfile::Builder::new()
        .prefix("podlog-bench.")
        .tempdir_in(&options.dir)
        .map_err(error::io("setup", "creating a folder in", &options.dir))?;
    let dir = workdir.path();
    let repeats = options.repeats.max(1);
    let scale = &options.scale;
    let selected = &options.rows;
    let mut rows = Vec::new();
    let mut corpus = Corpus::new(1);

    // P1 and its references; P3's baseline is P1's rate, so P3 measures
    // it too.
    let mut p1_rates = Vec::new();
    if selected.has("P1") || selected.has("P3") {
        let mut p1_rows = Vec::new();
        // One session, one entry per transaction.
        progress("P1: durable appends (FULL) against JSONL and raw SQLite");
        let mut ours = PodlogAppend::open("P1", dir, "p1.db", Synchronous::Full)?;
        let mut jsonl_sync = JsonlAppend::open("P1", dir, "p1-sync.jsonl", true)?;
        let mut jsonl_nosync = JsonlAppend::open("P1", dir, "p1-nosync.jsonl", false)?;
        let mut raw_full =
            RawSqliteAppend::open("P1", dir, "p1-raw.db", Synchronous::Full, RawShape::Insert)?;
        let n = scale.durable_appends;
        let mut p1 = Sides::default();
        let mut p1_nosync = Vec::new();
        let mut p1_raw = Vec::new();
        for r in 0..repeats {
            let batch = corpus.take_vec(n);
            let mut sides: [&mut dyn FnMut() -> Result<()>; 4] = [
                &mut || {
                    p1.ours.push(rate(n, ours.run(batch.clone())?));
                    Ok(())
                },
                &mut || {
                    let t = jsonl_sync.run(&batch)?;
                    p1.baseline.push(rate(n, t));
                    Ok(())
                },
                &mut || {
                    let t = jsonl_nosync.run(&batch)?;
                    p1_nosync.push(rate(n, t));
                    Ok(())
                },
                &mut || {
                    let t = raw_full.run(&batch)?;
                    p1_raw.push(rate(n, t));
                    Ok(())
                },
            ];
            run_rotated(&mut sides, r)?;
        }
        p1_rates = p1.ours.clone();
        p1_rows.push(p1.row(
            "P1",
            "durable append (FULL, 1 entry/txn) vs JSONL write+fdatasync".to_owned(),
            Unit::PerSecond,
            Target::RatioAtLeast(0.8),
        ));
        p1_rows.push(
            Sides {
                ours: p1_rates.clone(),
                baseline: p1_nosync,
            }
            .row(
                "P1-nosync",
                "  the same vs JSONL write, no fsync".to_owned(),
                Unit::PerSecond,
                Target::Reference,
            ),
        );
        p1_rows.push(
            Sides {
                ours: p1_rates.clone(),
                baseline: p1_raw,
            }
            .row(
                "P1-sqlite",
                "  the same vs raw rusqlite INSERT/txn, FULL".to_owned(),
                Unit::PerSecond,
                Target::Reference,
            ),
        );
        drop((ours, jsonl_sync, jsonl_nosync, raw_full));
        if selected.has("P1") {
            rows.extend(p1_rows);
        }
    }

    if selected.has("P2") {
        // P2: the same at NORMAL, against hand-written rusqlite.
        progress("P2: appends (NORMAL) against raw rusqlite");
        let mut ours = PodlogAppend::open("P2", dir, "p2.db", Synchronous::Normal)?;
        let mut raw = RawSqliteAppend::open(
            "P2",
            dir,
            "p2-raw.db",
            Synchronous::Normal,
            RawShape::Insert,
        )?;
        let mut raw_sql = RawSqliteAppend::open(
            "P2",
            dir,
            "p2-raw-counters.db",
            Synchronous::Normal,
            RawShape::InsertWithCounters,
        )?;
        let n = scale.normal_appends;
        let mut p2 = Sides::default();
        let mut p2_sql = Vec::new();
        for r in 0..repeats {
            let batch = corpus.take_vec(n);
            let mut sides: [&mut dyn FnMut() -> Result<()>; 3] = [
                &mut || {
                    p2.ours.push(rate(n, ours.run(batch.clone())?));
                    Ok(())
                },
                &mut || {
                    p2.baseline.push(rate(n, raw.run(&batch)?));
                    Ok(())
                },
                &mut || {
                    p2_sql.push(rate(n, raw_sql.run(&batch)?));
                    Ok(())
                },
            ];
            run_rotated(&mut sides, r)?;
        }
        let p2_rates = p2.ours.clone();
        rows.push(p2.row(
            "P2",
            "append (NORMAL) vs raw rusqlite INSERT/txn, NORMAL".to_owned(),
            Unit::PerSecond,
            Target::RatioAtLeast(0.8),
        ));
        rows.push(
            Sides {
                ours: p2_rates,
                baseline: p2_sql,
            }
            .row(
                "P2-sql",
                "  the same vs raw rusqlite running podlog's SQL (counters, insert)".to_owned(),
                Unit::PerSecond,
                Target::Reference,
            ),
        );
        drop((ours, raw, raw_sql));
    }

    if selected.has("P3") {
        // P3: several sessions at once through one store, against P1's rate.
        progress("P3: sessions appending concurrently (FULL)");
        let mut group =
            GroupAppend::open("P3", dir, "p3.db", Synchronous::Full, scale.group_writers)?;
        let mut p3 = Sides {
            ours: Vec::new(),
            baseline: p1_rates,
        };
        let stats_before = group.commit_stats();
        for _ in 0..repeats {
            let t = group.run(scale.group_appends)?;
            p3.ours.push(rate(scale.group_appends * group.writers(), t));
        }
        let stats = group.commit_stats();
        let per_txn = (stats.entries - stats_before.entries) as f64
            / (stats.transactions - stats_before.transactions).max(1) as f64;
        rows.push(p3.row(
            "P3",
            format!(
                "{} sessions appending at once (FULL, {per_txn:.1} entries/txn), aggregate vs P1",
                group.writers()
            ),
            Unit::PerSecond,
            Target::RatioAtLeast(4.0),
        ));
        drop(group);
    }

    // The entries P4 and P5 share.
    let pool: Vec<Arc<LogEntry>> = shared_pool(2, scale.pool);
    if selected.has("P4") {
        // P4: subscribe cost against the log's length and the seed.
        progress("P4: subscribe_with_snapshot on long mirrors");
        let short = build_mirror(&pool, scale.mirror_short)?;
        let long = build_mirror(&pool, scale.mirror_long)?;
        let huge = build_mirror(&pool, scale.mirror_huge)?;
        let seed = build_seed_mirror(&pool, scale.mirror_long);
        let mut p4 = Sides::default();
        let mut p4_scale = Sides::default();
        for _ in 0..repeats {
            let micros = |ns: Vec<f64>| median(&ns) / 1_000.0;
            p4.ours
                .push(micros(subscribe_latencies(&long, scale.subscribe_samples)));
            p4.baseline.push(micros(seed_subscribe_latencies(
                &seed,
                scale.seed_subscribe_samples,
            )));
            p4_scale
                .ours
                .push(micros(subscribe_latencies(&huge, scale.subscribe_samples)));
            p4_scale
                .baseline
                .push(micros(subscribe_latencies(&short, scale.subscribe_samples)));
        }
        rows.push(p4.row(
            "P4",
            format!(
                "subscribe_with_snapshot, {} entries (median) vs seed Vec clone",
                count(scale.mirror_long)
            ),
            Unit::Micros,
            Target::OursAtMost(20.0, Unit::Micros),
        ));
        rows.push(p4_scale.row(
            "P4-scale",
            format!(
                "  the same, {} entries vs {} entries",
                count(scale.mirror_huge),
                count(scale.mirror_short)
            ),
            Unit::Micros,
            Target::RatioAtMost(2.0),
        ));
        drop((short, long, huge, seed));
    }

    if selected.has("P5") {
        // P5: publish tail latency while subscribers attach.
        progress("P5: publish latency while subscribers attach");
        let mut fixture = PublishUnderAttach::new(pool, scale.mirror_long, scale.subscribers)?;
        let mut p5 = Sides::default();
        let mut p5_paced = Vec::new();
        let mut attach_rates = Vec::new();
        let paced = Attach::Paced(scale.paced_attaches);
        for r in 0..repeats {
            // Rotate which side goes first.
            let order = [Attach::Loop, Attach::None, paced];
            for i in 0..order.len() {
                let attach = order[(r + i) % order.len()];
                let run = fixture.run(scale.publishes, attach)?;
                let p99 = percentile(&run.latencies, 99.0) / 1_000.0;
                match attach {
                    Attach::Loop => {
                        p5.ours.push(p99);
                        attach_rates.push(run.attach_rate());
                    }
                    Attach::None => p5.baseline.push(p99),
                    Attach::Paced(_) => p5_paced.push(p99),
                }
            }
        }
        let p5_idle = p5.baseline.clone();
        let p5_note = format!(
            "{} attaches/s during the attaching runs (median)",
            round3(median(&attach_rates))
        );
        let mut p5_row = p5.row(
            "P5",
            format!(
                "publish p99, {} subscribers attaching in a loop vs none attaching ({} entries)",
                scale.subscribers,
                count(scale.mirror_long)
            ),
            Unit::Micros,
            Target::RatioAtMost(2.0),
        );
        p5_row.note = Some(p5_note);
        rows.push(p5_row);
        rows.push(
            Sides {
                ours: p5_paced,
                baseline: p5_idle,
            }
            .row(
                "P5-paced",
                format!(
                    "  the same, attaching at {}/s instead of back to back",
                    round3(scale.paced_attaches)
                ),
                Unit::Micros,
                Target::Reference,
            ),
        );
        drop(fixture);
    }

    // P6: restore against the raw read; P9 serves the same session.
    let p6_fixture = if selected.has("P6") || selected.has("P9") {
        progress("P6: restoring a long session");
        let fixture = RestoreFixture::build(dir, "p6.db", scale.restore_entries)?;
        if selected.has("P6") {
            let mut p6 = Sides::default();
            for r in 0..repeats {
                let millis = |d: Duration| d.as_secs_f64() * 1e3;
                let mut sides: [&mut dyn FnMut() -> Result<()>; 2] = [
                    &mut || {
                        p6.ours.push(millis(fixture.podlog()?));
                        Ok(())
                    },
                    &mut || {
                        p6.baseline.push(millis(fixture.raw()?));
                        Ok(())
                    },
                ];
                run_rotated(&mut sides, r)?;
            }
            rows.push(p6.row(
                "P6",
                format!(
                    "restore {}-entry session into a sink vs raw SELECT + from_str",
                    count(fixture.len())
                ),
                Unit::Millis,
                Target::RatioAtMost(1.5),
            ));
        }
        Some(fixture)
    } else {
        None
    };

    if selected.has("P7") {
        // P7: the mirror's heap.
        progress("P7: mirror memory");
        let what = format!(
            "mirror heap, {} entries vs their JSON text",
            count(scale.memory_entries)
        );
        match measure_mirror(scale.memory_entries, gauge)? {
            Some(m) => {
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                rows.push(Row::measured(
                    "P7",
                    what,
                    Figure::new(mib(m.heap_bytes), Unit::MiB),
                    Figure::new(mib(m.json_bytes), Unit::MiB),
                    m.ratio(),
                    Target::RatioAtMost(2.0),
                ));
            }
            None => rows.push(Row::not_measured(
                "P7",
                what,
                Target::RatioAtMost(2.0),
                format!(
                    "the heap gauge ({}) cannot read the heap here",
                    gauge.method()
                ),
            )),
        }
    }

    if selected.has("P8") {
        progress("P8: SSE fan-out");
        rows.extend(fanout_rows(dir, scale, repeats, &options.clients));
    }

    if let Some(fixture) = p6_fixture.filter(|_| selected.has("P9")) {
        progress("P9: resume against a fresh snapshot");
        let what = format!(
            "resume {} entries behind on a {}-entry session: bytes vs fresh snapshot",
            scale.resume_behind,
            count(fixture.len())
        );
        rows.push(match measure_resume(&fixture, scale.resume_behind) {
            Ok(cost) => Row::measured(
                "P9",
                what,
                Figure::new(cost.resume_bytes as f64 / 1024.0, Unit::KiB),
                Figure::new(cost.snapshot_bytes as f64 / 1024.0, Unit::KiB),
                cost.ratio(),
                Target::RatioAtMost(0.02),
            ),
            Err(e) => Row::not_measured("P9", what, Target::RatioAtMost(0.02), e.to_string()),
        });
    }

    rows.extend(huge_rows::rows(
        dir,
        scale,
        repeats,
        selected,
        &options.server,
        progress,
    )?);
    rows.extend(follow_rows(dir, scale, selected, progress)?);
    rows.extend(search_rows::rows(dir, scale, repeats, selected, progress)?);

    if selected.has("R1") {
        rows.extend(redaction_rows(
            dir,
            repeats,
            scale.durable_appends,
            scale.normal_appends,
            &mut corpus,
            progress,
        )?);
    }

    if pg_rows::any(selected) {
        match &options.postgres {
            Some(target) => rows.extend(pg_rows::rows(target, scale, repeats, selected, progress)?),
            None => progress(
                "PG1, PG2, PG3: skipped: they need a PostgreSQL server (--db postgres://...)",
            ),
        }
    }

    let workdir_path = workdir.path().to_owned();
    workdir
        .close()
        .map_err(error::io("cleanup", "removing", &workdir_path))?;
    Ok(Report {
        workdir: workdir_path,
        repeats,
        heap_method: gauge.method(),
        rows,
    })
}

/// The rows of P8: `repeats` runs (at most [`Scale::fanout_runs`]) with the
/// scale's clients, and as many with one client for the latency baseline.
/// A run that cannot be made turns the rows into "not measured" with the
/// reason.
fn fanout_rows(
    dir: &std::path::Path,
    scale: &Scale,
    repeats: usize,
    launcher: &ClientLauncher,
) -> Vec<Row> {
    let many = FanoutSpec {
        clients: scale.fanout_clients,
        events: scale.fanout_events,
        rate: scale.fanout_rate,
        history: scale.fanout_history,
    };
    let one = FanoutSpec {
        clients: 1,
        ..many.clone()
    };
    let what = format!(
        "SSE fan-out p99 end-to-end, {} clients at {} events/s vs 1 client",
        many.clients, many.rate
    );
    let delivered_what = "  events delivered to every client, in order (worst run)".to_owned();
    let memory_what = "  server resident memory per idle client".to_owned();
    let cpu_what = format!(
        "  server CPU per live event, {} clients vs 1 client",
        many.clients
    );
    let mut cpu = Sides::default();
    let mut latency = Sides::default();
    let mut worst: Option<FanoutResult> = None;
    let mut rss = Vec::new();
    let mut heap = Vec::new();
    for r in 0..repeats.min(scale.fanout_runs.max(1)) {
        let runs = [
            measure_fanout(dir, &format!("p8-{r}.db"), &many, launcher),
            measure_fanout(dir, &format!("p8-one-{r}.db"), &one, launcher),
        ];
        let [many_run, one_run] = match runs {
            [Ok(a), Ok(b)] => [a, b],
            [Err(e), _] | [_, Err(e)] => {
                let why = e.to_string();
                return vec![
                    Row::not_measured(
                        "P8",
                        what,
                        Target::OursAtMost(50.0, Unit::Millis),
                        why.clone(),
                    ),
                    Row::not_measured(
                        "P8-delivery",
                        delivered_what,
                        Target::RatioAtLeast(1.0),
                        why.clone(),
                    ),
                    Row::not_measured(
                        "P8-memory",
                        memory_what,
                        Target::OursAtMost(64.0, Unit::KiB),
                        why,
                    ),
                ];
            }
        };
        latency
            .ours
            .push(many_run.report.latency_p99_ns as f64 / 1e6);
        latency
            .baseline
            .push(one_run.report.latency_p99_ns as f64 / 1e6);
        if let (Some(m), Some(o)) = (many_run.cpu_per_event_ns, one_run.cpu_per_event_ns) {
            cpu.ours.push(m / 1e3);
            cpu.baseline.push(o / 1e3);
        }
        rss.extend(many_run.rss_per_client.map(|b| b / 1024.0));
        heap.extend(many_run.heap_per_client.map(|b| b / 1024.0));
        let share = |f: &FanoutResult| f.report.deliveries as f64 / f.expected.max(1) as f64;
        if worst.as_ref().is_none_or(|w| share(&many_run) < share(w)) {
            worst = Some(many_run);
        }
    }
    let mut rows = vec![latency.row(
        "P8",
        what,
        Unit::Millis,
        Target::OursAtMost(50.0, Unit::Millis),
    )];
    if let Some(w) = &worst {
        let mut row = Row::measured(
            "P8-delivery",
            delivered_what,
            Figure::new(w.report.deliveries as f64, Unit::Count),
            Figure::new(w.expected as f64, Unit::Count),
            w.report.deliveries as f64 / w.expected.max(1) as f64,
            Target::RatioAtLeast(1.0),
        );
        if w.report.out_of_order > 0 || w.report.complete < w.spec.clients {
            row.outcome = Outcome::Missed;
        }
        row.note = Some(format!(
            "{} of {} clients got every event in order; {} out of order{}",
            w.report.complete,
            w.spec.clients,
            w.report.out_of_order,
            match w.report.errors.first() {
                Some(e) => format!("; first error: {e}"),
                None => String::new(),
            }
        ));
        rows.push(row);
    }
    let mut memory = if rss.is_empty() {
        Row::not_measured(
            "P8-memory",
            memory_what,
            Target::OursAtMost(64.0, Unit::KiB),
            "this system does not show the resident set (/proc/self/statm)".to_owned(),
        )
    } else {
        Row::alone(
            "P8-memory",
            memory_what,
            Figure::new(median(&rss), Unit::KiB),
            Target::OursAtMost(64.0, Unit::KiB),
        )
    };
    memory.note = Some(format!(
        "heap in use per client {}; clients {}",
        if heap.is_empty() {
            "unknown".to_owned()
        } else {
            Figure::new(median(&heap), Unit::KiB).to_string()
        },
        match launcher {
            ClientLauncher::InProcess => "in this process (the figure includes their memory)",
            ClientLauncher::Command { .. } => "in a separate process",
        }
    ));
    rows.push(memory);
    if !cpu.ours.is_empty() {
        rows.push(cpu.row("P8-cpu", cpu_what, Unit::Micros, Target::Reference));
    }
    rows
}

/// Runs `sides` in order starting at `offset % len`, so that across
/// repetitions each side goes first as often as the others.
fn run_rotated(sides: &mut [&mut dyn FnMut() -> Result<()>], offset: usize) -> Result<()> {
    let len = sides.len();
    for i in 0..len {
        (sides[(offset + i) % len])()?;
    }
    Ok(())
}

/// Per-repetition figures of both sides of a row.
#[derive(Default)]
struct Sides {
    ours: Vec<f64>,
    baseline: Vec<f64>,
}

impl Sides {
    fn row(self, id: &'static str, what: String, unit: Unit, target: Target) -> Row {
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.baseline)
            .map(|(o, b)| o / b)
            .collect();
        Row::measured(
            id,
            what,
            Figure::new(median(&self.ours), unit),
            Figure::new(median(&self.baseline), unit),
            median(&ratios),
            target,
        )
    }
}

/// R1: P1's durable append with write-time redaction on (the default)
/// against the same store type with it switched off, on P1's ordinary
/// entries; and, for reference, on entries that each hold a secret (the
/// slow path: parse, redact, re-encode), and at `synchronous=NORMAL`, where
/// no flush hides the CPU redaction costs.
fn redaction_rows(
    dir: &std::path::Path,
    repeats: usize,
    n: usize,
    normal_n: usize,
    corpus: &mut Corpus,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    progress("R1: durable appends (FULL) with redaction on against off");
    let mut on = PodlogAppend::open("R1", dir, "r1-on.db", Synchronous::Full)?;
    let mut off = PodlogAppend::open("R1", dir, "r1-off.db", Synchronous::Full)?;
    let mut on_secrets = PodlogAppend::open("R1", dir, "r1-on-secrets.db", Synchronous::Full)?;
    let mut off_secrets = PodlogAppend::open("R1", dir, "r1-off-secrets.db", Synchronous::Full)?;
    for side in [&off, &off_secrets] {
        side.store()
            .set_redaction(false)
            .map_err(error::store("R1"))?;
    }
    let mut plain = Sides::default();
    let mut secrets = Sides::default();
    for r in 0..repeats {
        let batch = corpus.take_vec(n);
        let with_secrets: Vec<LogEntry> = batch.iter().map(with_a_secret).collect();
        let mut sides: [&mut dyn FnMut() -> Result<()>; 4] = [
            &mut || {
                plain.ours.push(rate(n, on.run(batch.clone())?));
                Ok(())
            },
            &mut || {
                plain.baseline.push(rate(n, off.run(batch.clone())?));
                Ok(())
            },
            &mut || {
                secrets
                    .ours
                    .push(rate(n, on_secrets.run(with_secrets.clone())?));
                Ok(())
            },
            &mut || {
                secrets
                    .baseline
                    .push(rate(n, off_secrets.run(with_secrets.clone())?));
                Ok(())
            },
        ];
        run_rotated(&mut sides, r)?;
    }
    let mut on_normal = PodlogAppend::open("R1", dir, "r1-on-normal.db", Synchronous::Normal)?;
    let mut off_normal = PodlogAppend::open("R1", dir, "r1-off-normal.db", Synchronous::Normal)?;
    off_normal
        .store()
        .set_redaction(false)
        .map_err(error::store("R1"))?;
    let mut normal = Sides::default();
    for r in 0..repeats {
        let batch = corpus.take_vec(normal_n);
        let mut sides: [&mut dyn FnMut() -> Result<()>; 2] = [
            &mut || {
                normal
                    .ours
                    .push(rate(normal_n, on_normal.run(batch.clone())?));
                Ok(())
            },
            &mut || {
                normal
                    .baseline
                    .push(rate(normal_n, off_normal.run(batch.clone())?));
                Ok(())
            },
        ];
        run_rotated(&mut sides, r)?;
    }
    Ok(vec![
        plain.row(
            "R1",
            "durable append (FULL), redaction on vs off".to_owned(),
            Unit::PerSecond,
            Target::RatioAtLeast(0.9),
        ),
        secrets.row(
            "R1-secrets",
            "  the same, every entry holding a secret".to_owned(),
            Unit::PerSecond,
            Target::Reference,
        ),
        normal.row(
            "R1-normal",
            "  the same at NORMAL (no flush), ordinary entries".to_owned(),
            Unit::PerSecond,
            Target::Reference,
        ),
    ])
}

/// A tool result quoting `entry` with a (fake) token in it.
fn with_a_secret(entry: &LogEntry) -> LogEntry {
    LogEntry::ToolResult {
        ts: entry.ts(),
        call_id: "call-r1".to_owned(),
        output: format!(
            "$ env | grep TOKEN\nGITHUB_TOKEN=ghp_FAKEfake0000000000000000000000000000\n{}",
            entry.to_json()
        ),
        is_error: false,
    }
}
