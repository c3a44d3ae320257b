//! The `podlog` command-line program: argument parsing, the database
//! location, output and exit codes. The work itself is done by the library
//! crates; this file only wires them to a terminal.
//!
//! Exit codes: 0 on success, 1 when the command failed (the message says
//! why), 2 when the arguments are wrong.

mod cli;
mod gc_cmd;
mod lifecycle_cmd;
mod redaction_cmd;
mod search_cmd;
mod serve_cmd;
mod share_cmd;
mod tail_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    use clap::Parser;
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podlog: error: {e}");
            ExitCode::from(1)
        }
    }
}
