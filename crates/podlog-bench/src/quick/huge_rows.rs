//! The H rows of the quick mode: a long session with a gigabyte of tool
//! output, and H4, the database against the export. See [`crate::huge`]
//! for the method.

use std::path::Path;

use super::{count, Figure, Row, Scale, Selection, Target, Unit};
use crate::error::Result;
use crate::huge::{HugeFixture, HugeSpec};

/// The seed of the long session.
const SEED: u64 = 11;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// The H rows of `selected`, in the table's order.
pub(super) fn rows(
    dir: &Path,
    scale: &Scale,
    selected: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut corpus_note = None;
    if selected.has("H4") {
        progress(&format!(
            "H4: writing a {}-entry session with {} MiB of tool output",
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
        rows.push(row);
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
        rows.push(payloads);
        corpus_note = Some(corpus);
    }
    // What the long session holds, said once, under its first row.
    if let Some(corpus) = corpus_note {
        if let Some(row) = rows.iter_mut().find(|r| ["H4"].contains(&r.id)) {
            row.note = Some(match row.note.take() {
                Some(note) => format!("{note}; the session: {corpus}"),
                None => format!("the session: {corpus}"),
            });
        }
    }
    Ok(rows)
}
