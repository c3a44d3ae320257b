//! `podlog bench`: the quick mode of the benchmark suite. Runs every row of
//! the performance table against its same-run baseline (see
//! `podlog_bench::quick`) and returns the ratio table for stdout; progress
//! goes to stderr.
//!
//! The temporary files go in a fresh folder inside `--dir`, by default the
//! database's folder, so the append figures are those of the disk the
//! database is on. The folder is removed afterwards.
//!
//! Row P8's clients run in a second `podlog` process (this binary, with the
//! hidden `--fanout-clients SPEC`), so that the server's memory per client
//! is measured without theirs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use podlog_bench::fanout::{client_main, ClientLauncher};
use podlog_bench::{quick, Mallinfo, QuickOptions, Scale};

/// Options of `podlog bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The folder for the temporary files (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// How many times each measurement runs; the table shows medians.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeats: u16,

    /// Run P8's clients as described by SPEC (JSON) and report on stdout:
    /// what the benchmark starts this program with.
    #[arg(long, hide = true, value_name = "SPEC")]
    fanout_clients: Option<String>,
}

/// Runs the quick suite; `Err` carries the message for the user.
pub fn run(args: &BenchArgs, database: &Path) -> Result<String, String> {
    if let Some(spec) = &args.fanout_clients {
        let mut out = std::io::stdout().lock();
        client_main(spec, &mut out).map_err(|e| format!("benchmark clients: {e}"))?;
        out.flush().map_err(|e| format!("benchmark clients: {e}"))?;
        return Ok(String::new());
    }
    let clients = match std::env::current_exe() {
        Ok(program) => ClientLauncher::Command {
            program,
            args: vec![
                "--db".to_owned(),
                database.display().to_string(),
                "bench".to_owned(),
                "--fanout-clients".to_owned(),
            ],
        },
        // Without its own path, the program cannot start its clients apart:
        // they run in this process and P8's memory figure says so.
        Err(_) => ClientLauncher::InProcess,
    };
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => match database.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        },
    };
    let options = QuickOptions {
        dir,
        repeats: usize::from(args.repeats),
        scale: Scale::quick(),
        clients,
    };
    eprintln!(
        "podlog bench: {} repetitions, files in {}",
        options.repeats,
        options.dir.display()
    );
    let report = quick(&options, &Mallinfo, &mut |what| {
        eprintln!("podlog bench: {what}")
    })
    .map_err(|e| format!("benchmark failed: {e}"))?;
    Ok(format!("{}\n{report}", machine()))
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
