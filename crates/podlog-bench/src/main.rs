//! `podlog-bench`: the quick mode of the benchmark suite, as its own program
//! so that the shipped `podlog` binary links no benchmark code. Runs every
//! row of the performance table against its same-run baseline (see
//! [`podlog_bench::quick`]) and prints the ratio table on stdout, under a
//! line naming the machine; progress goes to stderr.
//!
//! The temporary files go in a fresh folder inside `--dir`, by default the
//! folder of the database named by `--db` (or `$PODLOG_DB`, or podlog's
//! default database in the platform's data folder), so the append figures
//! are those of the disk the database is on. The folder is removed
//! afterwards.
//!
//! Row P8's clients run in a second process: this program again, with the
//! hidden `--fanout-clients SPEC`, so that the server's memory per client
//! is measured without theirs. So does the server of rows H1 and H2, with
//! the hidden `--serve-restored SPEC`, so that its memory is its own.
//!
//! With `--db postgres://...` the rows PG1 to PG3 run against that
//! server, each in a fresh schema of its own that is dropped afterwards
//! (the temporary files of the other rows then go in the system's
//! temporary folder unless `--dir` says otherwise); PG3's follower is this
//! program again, with the hidden `--pg-follow SPEC`. Without a
//! PostgreSQL URL the PG rows are skipped with a line saying so.
//!
//! `--only H1,H2` runs some rows only; `--huge-mb` sizes the long session
//! of rows H1, H2 and H4.
//!
//! Exit codes: 0 on success, 1 when the run failed (the message says why),
//! 2 when the arguments are wrong.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use podlog_bench::fanout::{client_main, ClientLauncher};
use podlog_bench::pg::FollowerLauncher;
use podlog_bench::restored::{server_main, ServerLauncher};
use podlog_bench::{quick, Mallinfo, PgTarget, QuickOptions, Scale, Selection};
use podlog_store::Location;

/// Measure podlog against baselines run on the same disk and print the
/// ratio table of docs/performance.md.
#[derive(Debug, Parser)]
#[command(name = "podlog-bench", version)]
struct Args {
    /// The folder for the temporary files (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// The database whose disk to measure: the default for --dir is its
    /// folder (default: podlog.db in the platform's data folder, as for
    /// `podlog`). Nothing is written to the database itself. A
    /// postgres:// URL is the server of rows PG1 to PG3, which work in
    /// schemas of their own and drop them.
    #[arg(long, env = "PODLOG_DB", value_name = "PATH")]
    db: Option<PathBuf>,

    /// How many times each measurement runs; the table shows medians.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeats: u16,

    /// The rows to run: a comma-separated list of P1 to P9, H1 to H4, F1, F2, S1, S2,
    /// R1 and PG1 to PG3 (each with its reference rows), or all.
    #[arg(long, value_name = "ROWS", default_value = "all")]
    only: Selection,

    /// The tool output of the long session of rows H1, H2 and H4, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    huge_mb: u64,

    /// Run P8's clients as described by SPEC (JSON) and report on stdout:
    /// what the benchmark starts this program with.
    #[arg(long, hide = true, value_name = "SPEC")]
    fanout_clients: Option<String>,

    /// Serve the restored session of H1 and H2 as described by SPEC (JSON)
    /// and report on stdout until stdin ends: what the benchmark starts
    /// this program with.
    #[arg(
        long,
        hide = true,
        value_name = "SPEC",
        conflicts_with = "fanout_clients"
    )]
    serve_restored: Option<String>,

    /// Follow the session described by SPEC (JSON) on PostgreSQL and report
    /// when each entry arrived on stdout: what row PG3 starts this program
    /// with.
    #[arg(
        long,
        hide = true,
        value_name = "SPEC",
        conflicts_with_all = ["fanout_clients", "serve_restored"]
    )]
    pg_follow: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podlog-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the quick suite, or P8's clients; `Err` carries the message for the
/// user.
fn run(args: &Args) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    if let Some(spec) = &args.fanout_clients {
        client_main(spec, &mut out).map_err(|e| format!("benchmark clients: {e}"))?;
        return out.flush().map_err(|e| format!("benchmark clients: {e}"));
    }
    if let Some(spec) = &args.serve_restored {
        let mut input = std::io::stdin().lock();
        return server_main(spec, &mut input, &mut out)
            .map_err(|e| format!("benchmark server: {e}"));
    }
    if let Some(spec) = &args.pg_follow {
        return podlog_bench::pg::follower_main(spec, &mut out)
            .map_err(|e| format!("benchmark follower: {e}"));
    }
    // Without its own path, the program cannot start its clients or the
    // server apart: they run in this process and the memory rows say so.
    let program = std::env::current_exe().ok();
    let clients = match &program {
        Some(program) => ClientLauncher::Command {
            program: program.clone(),
            args: vec!["--fanout-clients".to_owned()],
        },
        None => ClientLauncher::InProcess,
    };
    let server = match &program {
        Some(program) => ServerLauncher::Command {
            program: program.clone(),
            args: vec!["--serve-restored".to_owned()],
        },
        None => ServerLauncher::InProcess,
    };
    let follower = match &program {
        Some(program) => FollowerLauncher::Command {
            program: program.clone(),
            args: vec!["--pg-follow".to_owned()],
        },
        None => FollowerLauncher::InProcess,
    };
    let options = QuickOptions {
        dir: files_dir(args)?,
        repeats: usize::from(args.repeats),
        scale: Scale {
            huge_output_bytes: args.huge_mb << 20,
            ..Scale::quick()
        },
        clients,
        server,
        rows: args.only.clone(),
        postgres: postgres_url(args).map(|url| PgTarget { url, follower }),
    };
    eprintln!(
        "podlog-bench: rows {}, {} repetitions, files in {}",
        options.rows.groups().join(","),
        options.repeats,
        options.dir.display()
    );
    let report = quick(&options, &Mallinfo, &mut |what| {
        eprintln!("podlog-bench: {what}")
    })
    .map_err(|e| format!("benchmark failed: {e}"))?;
    let written = writeln!(out, "{}\n{report}", machine()).and_then(|()| out.flush());
    match written {
        // A reader that went away (`podlog-bench | head`) is no failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing output: {e}")),
        _ => Ok(()),
    }
}

/// The URL of `--db` when it names a PostgreSQL database.
fn postgres_url(args: &Args) -> Option<String> {
    let db = args.db.as_ref()?.to_str()?;
    match Location::parse(db) {
        Location::Postgres(url) => Some(url),
        Location::Sqlite(_) => None,
    }
}

/// The folder the temporary files go in: `--dir`, else the database's
/// folder (the system's temporary folder for a PostgreSQL database).
fn files_dir(args: &Args) -> Result<PathBuf, String> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    if postgres_url(args).is_some() {
        return Ok(std::env::temp_dir());
    }
    let database = match &args.db {
        Some(path) => path.clone(),
        None => default_database()?,
    };
    Ok(match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    })
}

/// podlog's default database (see `podlog_store::default_path`).
fn default_database() -> Result<PathBuf, String> {
    podlog_store::default_path().map_err(|e| format!("{e} (or give PODLOG_DB, --db or --dir)"))
}

/// One line naming the machine: cores and CPU model.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("machine: {cores} cores, {model}")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{files_dir, Args};

    #[test]
    fn the_arguments_are_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_files_go_beside_the_database_unless_dir_says_otherwise() {
        let parse = |argv: &[&str]| {
            let args =
                Args::try_parse_from(std::iter::once("podlog-bench").chain(argv.iter().copied()))
                    .expect("valid arguments");
            files_dir(&args).expect("a folder")
        };
        assert_eq!(
            parse(&["--db", "/srv/pods/podlog.db"]),
            std::path::Path::new("/srv/pods")
        );
        assert_eq!(parse(&["--db", "podlog.db"]), std::path::Path::new("."));
        assert_eq!(
            parse(&["--db", "/srv/pods/podlog.db", "--dir", "/mnt/ssd"]),
            std::path::Path::new("/mnt/ssd")
        );
        assert_eq!(
            parse(&["--db", "postgres://root@127.0.0.1:5432/test"]),
            std::env::temp_dir()
        );
    }

    #[test]
    fn repeats_must_be_between_1_and_100() {
        for bad in ["0", "101", "many"] {
            assert!(
                Args::try_parse_from(["podlog-bench", "--repeats", bad]).is_err(),
                "{bad}"
            );
        }
        let args = Args::try_parse_from(["podlog-bench", "--repeats", "7"]).expect("valid");
        assert_eq!(args.repeats, 7);
    }

    #[test]
    fn only_picks_rows_and_huge_mb_sizes_the_long_session() {
        let args = Args::try_parse_from(["podlog-bench"]).expect("valid");
        assert_eq!(args.only.groups().len(), 21);
        assert_eq!(args.huge_mb, 1024);
        let args = Args::try_parse_from(["podlog-bench", "--only", "h4,H1", "--huge-mb", "8"])
            .expect("valid");
        assert_eq!(args.only.groups(), ["H1", "H4"]);
        assert_eq!(args.huge_mb, 8);
        for bad in [
            &["--only", "P10"][..],
            &["--only", ","],
            &["--huge-mb", "0"],
        ] {
            assert!(
                Args::try_parse_from(std::iter::once("podlog-bench").chain(bad.iter().copied()))
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
