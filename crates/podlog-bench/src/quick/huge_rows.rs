//! Rows H1 to H4 of the quick mode: a long session with a gigabyte of tool
//! output (H1 server memory after a restore, H2 the first attach's bytes,
//! H4 the database against the export) and restore time against the
//! session's length (H3). See [`crate::huge`], [`crate::restored`] and
//! [`crate::restore`] for the methods.

use std::path::Path;
use std::time::Duration;

use super::{count, run_rotated, Figure, Row, Scale, Selection, Sides, Target, Unit};
use crate::error::Result;
use crate::huge::{HugeFixture, HugeSpec};
use crate::restore::RestoreFixture;
use crate::restored::{measure_restored, RestoredResult, ServerLauncher};

/// The seed of the long session.
const SEED: u64 = 11;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// The H rows of `selected`, in the table's order.
pub(super) fn rows(
    dir: &Path,
    scale: &Scale,
    repeats: usize,
    selected: &Selection,
    server: &ServerLauncher,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut h4_rows = Vec::new();
    let mut corpus_note = None;
    if ["H1", "H2", "H4"].iter().any(|g| selected.has(g)) {
        progress(&format!(
            "H1, H2, H4: writing a {}-entry session with {} MiB of tool output",
            count(scale.huge_entries),
            mib(scale.huge_output_bytes).round()
        ));
        let fixture = HugeFixture::build(
            dir,
            "huge.db",
            &HugeSpec {
                entries: scale.huge_entries,
                output_bytes: scale.huge_output_bytes,
                seed: SEED,
            },
        )?;
        let stats = fixture.stats();
        let corpus = format!(
            "{} entries in {} runs, {} tool results ({} of 8 KiB or more), {:.0} MiB of tool \
             output, {:.1}% of it repeats; written by Store::import in {:.1} s",
            stats.entries,
            stats.runs,
            stats.tool_results,
            stats.large_results,
            mib(stats.output_bytes),
            100.0 * stats.repeated_share(),
            fixture.import_time().as_secs_f64()
        );
        if selected.has("H4") {
            progress("H4: database size against the JSONL export");
            let size = fixture.measure_size()?;
            let mut row = Row::measured(
                "H4",
                format!(
                    "database after wal_checkpoint(TRUNCATE) vs JSONL export ({} entries)",
                    count(scale.huge_entries)
                ),
                Figure::new(mib(size.db_bytes + size.wal_bytes), Unit::MiB),
                Figure::new(mib(size.export_bytes), Unit::MiB),
                size.ratio(),
                Target::RatioAtMost(0.6),
            );
            row.note = Some(format!(
                "{} bytes of database file, {} of WAL, {} of export",
                size.db_bytes, size.wal_bytes, size.export_bytes
            ));
            h4_rows.push(row);
            let mut payloads = Row::alone(
                "H4-payloads",
                "  payloads stored (Store::payload_totals), total bytes".to_owned(),
                Figure::new(mib(size.payload_bytes), Unit::MiB),
                Target::Reference,
            );
            payloads.note = Some(format!(
                "{} payloads, {} bytes: one per distinct output of 8 KiB or more, of {} such \
                 tool results",
                size.payloads, size.payload_bytes, stats.large_results
            ));
            h4_rows.push(payloads);
            let mut search = Row::alone(
                "H4-search",
                "  the full-text search index in it (Store::search_index_bytes)".to_owned(),
                Figure::new(mib(size.search_bytes), Unit::MiB),
                Target::Reference,
            );
            search.note = Some(format!(
                "{} bytes of search index: every tool result is indexed whole, repeated \
                 outputs once per entry; the database without it is {:.3}x the export",
                size.search_bytes,
                size.db_bytes.saturating_sub(size.search_bytes) as f64 / size.export_bytes as f64
            ));
            h4_rows.push(search);
        }
        if selected.has("H1") || selected.has("H2") {
            progress("H1, H2: a server restoring the long session, and its first attaches");
            let measured = measure_restored(
                &fixture.path(),
                fixture.session(),
                scale.attach_tail,
                server,
            );
            rows.extend(server_rows(selected, scale, measured));
        }
        corpus_note = Some(corpus);
    }
    if selected.has("H3") {
        progress(&format!(
            "H3: restoring a {}-entry session against a {}-entry one",
            count(scale.restore_long),
            count(scale.restore_short)
        ));
        rows.push(restore_row(dir, scale, repeats)?);
    }
    rows.extend(h4_rows);
    // What the long session holds, said once, under its first row.
    if let Some(corpus) = corpus_note {
        if let Some(row) = rows.iter_mut().find(|r| ["H1", "H2", "H4"].contains(&r.id)) {
            row.note = Some(match row.note.take() {
                Some(note) => format!("{note}; the session: {corpus}"),
                None => format!("the session: {corpus}"),
            });
        }
    }
    Ok(rows)
}

/// The rows of H1 and H2 from one server run.
fn server_rows(selected: &Selection, scale: &Scale, measured: Result<RestoredResult>) -> Vec<Row> {
    let memory_what = format!(
        "server resident memory (VmRSS) serving the restored {}-entry session",
        count(scale.huge_entries)
    );
    let peak_what = "  the same, peak (VmHWM) by then".to_owned();
    let attach_what =
        "bytes of a default first attach: the snapshot event of GET /pods/{pod}/events".to_owned();
    let tail_what = format!("  the same with ?tail={}", scale.attach_tail);
    let memory_target = Target::OursAtMost(64.0, Unit::MiB);
    let attach_target = Target::OursAtMost(1.0, Unit::MiB);
    let r = match measured {
        Ok(r) => r,
        Err(e) => {
            let why = e.to_string();
            let mut rows = Vec::new();
            if selected.has("H1") {
                rows.push(Row::not_measured(
                    "H1",
                    memory_what,
                    memory_target,
                    why.clone(),
                ));
            }
            if selected.has("H2") {
                rows.push(Row::not_measured("H2", attach_what, attach_target, why));
            }
            return rows;
        }
    };
    let mut rows = Vec::new();
    if selected.has("H1") {
        let shown = |b: Option<u64>| {
            b.map_or_else(|| "unknown".to_owned(), |b| format!("{:.1} MiB", mib(b)))
        };
        let place = if r.separate_process {
            "the server ran in a process of its own"
        } else {
            "the server ran in this process (the figures include the rest of it)"
        };
        let note = format!(
            "Pod::restore took {:.2} s; after malloc_trim {}; after the two attaches VmRSS {}, \
             VmHWM {}; {place}",
            r.ready.restore_ms / 1e3,
            shown(r.ready.trimmed_rss_bytes),
            shown(r.done.rss_bytes),
            shown(r.done.hwm_bytes),
        );
        match (r.ready.rss_bytes, r.ready.hwm_bytes) {
            (Some(rss), Some(hwm)) => {
                let mut row = Row::alone(
                    "H1",
                    memory_what,
                    Figure::new(mib(rss), Unit::MiB),
                    memory_target,
                );
                row.note = Some(note);
                rows.push(row);
                rows.push(Row::alone(
                    "H1-peak",
                    peak_what,
                    Figure::new(mib(hwm), Unit::MiB),
                    Target::Reference,
                ));
            }
            _ => rows.push(Row::not_measured(
                "H1",
                memory_what,
                memory_target,
                "this system does not show VmRSS and VmHWM (/proc/self/status)".to_owned(),
            )),
        }
    }
    if selected.has("H2") {
        let mut row = Row::alone(
            "H2",
            attach_what,
            Figure::new(mib(r.first.bytes), Unit::MiB),
            attach_target,
        );
        row.note = Some(format!(
            "{} bytes of event; {} bytes read from the socket by its end (HTTP head and chunk \
             framing included)",
            r.first.bytes, r.first.wire_bytes
        ));
        rows.push(row);
        let mut tail = Row::alone(
            "H2-tail",
            tail_what,
            Figure::new(r.tail.bytes as f64 / 1024.0, Unit::KiB),
            Target::Reference,
        );
        tail.note = Some(format!(
            "{} entries, {} bytes of event, {} bytes read from the socket",
            r.tail_entries, r.tail.bytes, r.tail.wire_bytes
        ));
        rows.push(tail);
    }
    rows
}

/// Row H3: `Pod::restore` on the long session against the short one,
/// `repeats` times each, alternating which goes first.
fn restore_row(dir: &Path, scale: &Scale, repeats: usize) -> Result<Row> {
    let short = RestoreFixture::build_closed("H3", dir, "h3-short.db", scale.restore_short)?;
    let long = RestoreFixture::build_closed("H3", dir, "h3-long.db", scale.restore_long)?;
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let mut h3 = Sides::default();
    for r in 0..repeats {
        let mut sides: [&mut dyn FnMut() -> Result<()>; 2] = [
            &mut || {
                h3.ours.push(millis(long.pod_restore()?));
                Ok(())
            },
            &mut || {
                h3.baseline.push(millis(short.pod_restore()?));
                Ok(())
            },
        ];
        run_rotated(&mut sides, r)?;
    }
    Ok(h3.row(
        "H3",
        format!(
            "Pod::restore of a {}-entry session vs a {}-entry one",
            count(long.len()),
            count(short.len())
        ),
        Unit::Millis,
        Target::RatioAtMost(2.0),
    ))
}
