//! Retention from the command line: `podlog gc` and `podlog rm`.
//!
//! * `podlog gc --older-than DURATION [--dry-run] [--archive DIR]
//!   [--keep-titled] [--with-descendants] [--vacuum]` deletes every session
//!   untouched (its `updated_at`) for longer than `DURATION` (a whole number
//!   and a unit: `90m`, `12h`, `30d`), by the rules of
//!   `podlog_store::retention`: whole sessions only; never one an open pod
//!   holds; never one whose descendants stay, unless `--with-descendants`
//!   takes them along; with `--archive`, each session is first written to
//!   `DIR/<id>.jsonl` (the `podlog export` format, which `podlog import`
//!   reads back) and checked.
//! * `podlog rm SESSION [--archive DIR] [--with-descendants] [--dry-run]`
//!   deletes one session (id or unambiguous prefix) by the same rules,
//!   whatever its age.
//!
//! Output: one line per session deleted (`deleted`, or `would delete` in a
//! dry run) and per session kept, with the reason (`kept ID: held by pid
//! 1234 on box since ...`), then the totals and what became of the space.
//! Exit 1 when a session could not be archived or deleted (`gc`), or when
//! the session was not deleted (`rm`).

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use podlog_entry::iso8601;
use podlog_store::{
    AutoVacuum, Kept, RetentionOptions, RetentionReport, Selection, SessionInfo, SpaceUsage, Store,
};

/// Arguments of `podlog gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Delete sessions untouched for longer than this: a whole number and a
    /// unit (m, h, d), e.g. 90m, 12h, 30d.
    #[arg(long, value_name = "DURATION")]
    older_than: String,
    #[command(flatten)]
    common: Common,
    /// Keep sessions that have a title.
    #[arg(long)]
    keep_titled: bool,
    /// Rewrite the database once with incremental auto-vacuum, for a
    /// database made before podlog set it: needs free disk space the size
    /// of the database, and pods' commits wait while it runs.
    #[arg(long, conflicts_with = "dry_run")]
    vacuum: bool,
}

/// Arguments of `podlog rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The session id, or an unambiguous prefix of it.
    session: String,
    #[command(flatten)]
    common: Common,
}

/// What `gc` and `rm` share.
#[derive(Debug, clap::Args)]
struct Common {
    /// Print what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write each session to DIR/<id>.jsonl (created 0600) and check it
    /// before deleting it.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    /// Delete a session's forks and compactions (and theirs) with it,
    /// rather than keep it while they stay.
    #[arg(long)]
    with_descendants: bool,
}

/// Parses `90m`, `12h` or `30d` into milliseconds.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad duration {text:?}: want a whole number and a unit (m, h, d), e.g. 90m, 12h, 30d"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!(
            "bad duration {text:?}: must be more than zero (`podlog rm SESSION` deletes one session)"
        ));
    }
    n.checked_mul(unit_ms)
        .filter(|&ms| ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| format!("bad duration {text:?}: more than 100 years"))
}

/// Runs `podlog gc`.
pub fn gc(store: &Store, args: GcArgs, out: &mut impl Write) -> Result<ExitCode, String> {
    let age = parse_age(&args.older_than)?;
    let now = store.now();
    let cutoff = now.saturating_sub(age);
    let options = args.common.options(args.keep_titled);
    let before = store.space_usage().map_err(|e| e.to_string())?;
    let report = store
        .retain(&Selection::UntouchedBefore(cutoff), &options)
        .map_err(|e| e.to_string())?;
    let mut text = format!(
        "{} sessions untouched since {} ({} ago){}\n",
        if report.dry_run {
            "would delete"
        } else {
            "deleting"
        },
        iso8601(cutoff),
        args.older_than,
        if options.keep_titled {
            ", keeping titled ones"
        } else {
            ""
        }
    );
    describe(&report, &mut text);
    if !report.dry_run {
        space(store, &before, &report, args.vacuum, &mut text)?;
    }
    write(out, &text)?;
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `podlog rm`.
pub fn rm(store: &Store, args: RmArgs, out: &mut impl Write) -> Result<ExitCode, String> {
    let id = store.resolve(&args.session).map_err(|e| e.to_string())?;
    let options = args.common.options(false);
    let before = store.space_usage().map_err(|e| e.to_string())?;
    let report = store
        .retain(&Selection::Session(id.clone()), &options)
        .map_err(|e| e.to_string())?;
    if let Some(kept) = report.kept.first() {
        return Err(format!("session {id} was not deleted: {}", kept.because));
    }
    let mut text = String::new();
    describe(&report, &mut text);
    if !report.dry_run {
        space(store, &before, &report, false, &mut text)?;
    }
    write(out, &text)?;
    Ok(ExitCode::SUCCESS)
}

impl Common {
    fn options(&self, keep_titled: bool) -> RetentionOptions {
        RetentionOptions {
            dry_run: self.dry_run,
            archive: self.archive.clone(),
            keep_titled,
            with_descendants: self.with_descendants,
        }
    }
}

fn write(out: &mut impl Write, text: &str) -> Result<(), String> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing output: {e}")),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1.5 MiB` and the like.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return plural(bytes, "byte", "bytes");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn session_line(verb: &str, s: &SessionInfo, first: &SessionInfo) -> String {
    let mut line = format!(
        "{verb} {}  {}, {}, updated {}",
        s.id,
        s.origin.as_str(),
        plural(s.entry_count, "entry", "entries"),
        iso8601(s.updated_at)
    );
    if s.id != first.id {
        let _ = write!(line, ", descendant of {}", first.id);
    }
    if let Some(title) = &s.title {
        let _ = write!(line, "  {}", title.replace(['\n', '\r'], " "));
    }
    line
}

fn kept_line(k: &Kept) -> String {
    format!("kept {}: {}", k.session.id, k.because)
}

/// The sessions deleted and kept, and the totals.
fn describe(report: &RetentionReport, text: &mut String) {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for unit in &report.removed {
        for (i, s) in unit.sessions.iter().enumerate() {
            text.push_str(&session_line(verb, s, &unit.sessions[0]));
            if let Some(path) = unit.archives.get(i) {
                let _ = write!(text, "  (archived to {})", path.display());
            }
            text.push('\n');
        }
    }
    for k in &report.kept {
        text.push_str(&kept_line(k));
        text.push('\n');
    }
    let shares: u64 = report.removed.iter().map(|r| r.shares).sum();
    let _ = writeln!(
        text,
        "{verb} {}, {}, {}, {}: {} of entries and payloads{}",
        plural(report.sessions(), "session", "sessions"),
        plural(report.entries(), "entry", "entries"),
        plural(report.payloads(), "payload", "payloads"),
        plural(shares, "share", "shares"),
        human(report.bytes()),
        if report.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    );
    if !report.kept.is_empty() {
        let _ = writeln!(
            text,
            "kept {}",
            plural(
                report.kept.len() as u64,
                "selected session",
                "selected sessions"
            )
        );
    }
}

/// Gives the space back where the database allows it, and says what
/// became of it.
fn space(
    store: &Store,
    before: &SpaceUsage,
    report: &RetentionReport,
    vacuum: bool,
    text: &mut String,
) -> Result<(), String> {
    if store.as_postgres().is_some() {
        // PostgreSQL's autovacuum makes the deleted rows' space reusable;
        // there is no file of podlog's to shrink.
        if vacuum {
            text.push_str(
                "PostgreSQL reclaims space with its own autovacuum: nothing to rewrite\n",
            );
        }
        if !report.removed.is_empty() {
            let after = store.space_usage().map_err(|e| e.to_string())?;
            let _ = writeln!(
                text,
                "database: the store's tables take {} (PostgreSQL's autovacuum makes the \
                 deleted rows' space reusable)",
                human(after.file_bytes)
            );
        }
        return Ok(());
    }
    let mode = store.auto_vacuum().map_err(|e| e.to_string())?;
    if vacuum && mode == AutoVacuum::None {
        let after = store.vacuum_to_incremental().map_err(|e| e.to_string())?;
        let _ = writeln!(
            text,
            "rewrote the database with incremental auto-vacuum: {} -> {}",
            human(before.file_bytes),
            human(after.file_bytes)
        );
        return Ok(());
    }
    if vacuum {
        text.push_str("the database already has auto-vacuum on: nothing to rewrite\n");
    }
    if report.removed.is_empty() {
        return Ok(());
    }
    let after = store.reclaim_space().map_err(|e| e.to_string())?;
    let reclaimed = before.file_bytes.saturating_sub(after.file_bytes);
    let freed_pages = before.pages.saturating_sub(after.pages);
    match mode {
        AutoVacuum::None => {
            let _ = writeln!(
                text,
                "database: {} ({} pages, {} of them free: {}); this database was made without \
                 auto-vacuum, so free pages stay in the file and later writes reuse them; \
                 `podlog gc --vacuum` rewrites it once so that gc gives space back",
                human(after.file_bytes),
                after.pages,
                after.free_pages,
                human(after.free_pages * after.page_size)
            );
        }
        AutoVacuum::Full | AutoVacuum::Incremental => {
            let _ = writeln!(
                text,
                "database: {} -> {} (reclaimed {}, {reclaimed} bytes; {} of {} bytes freed, {} now)",
                human(before.file_bytes),
                human(after.file_bytes),
                human(reclaimed),
                plural(freed_pages, "page", "pages"),
                after.page_size,
                plural(after.pages, "page", "pages")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_a_number_and_a_unit() {
        assert_eq!(parse_age("90m"), Ok(90 * 60_000));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_age("30d"), Ok(30 * 86_400_000));
        for bad in ["", "30", "d", "30 d", "30w", "-1d", "1.5d", "30D"] {
            let err = parse_age(bad).unwrap_err();
            assert!(
                err.contains("want a whole number and a unit"),
                "{bad}: {err}"
            );
        }
        assert!(parse_age("0d").unwrap_err().contains("more than zero"));
        assert!(parse_age("99999999999999d")
            .unwrap_err()
            .contains("100 years"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(1), "1 byte");
        assert_eq!(human(1023), "1023 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 * 1024 * 1024), "5.0 MiB");
    }
}
