//! `podlog redaction on|off|status`: the store's write-time redaction
//! switch (see `podlog_store::redaction`).
//!
//! * `on` / `off` change the `redaction` setting in the database: every
//!   writer that opens the database afterwards follows it (a running
//!   `podlog serve` keeps the setting it opened with until restarted).
//!   Switching off means secrets in new entries are stored as written;
//!   entries already redacted stay redacted.
//! * `status` prints the setting, the key file, the user pattern file and
//!   how many secrets were redacted, in how many sessions.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use podlog_store::redaction::{config_path, key_path};
use podlog_store::Store;

/// What `podlog redaction` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedactionAction {
    /// Redact secrets in every entry written from now on (the default).
    On,
    /// Store new entries as written, secrets included.
    Off,
    /// Print the setting, its files and the counts.
    Status,
}

/// Arguments of `podlog redaction`.
#[derive(Debug, clap::Args)]
pub struct RedactionArgs {
    #[arg(value_enum)]
    action: RedactionAction,
}

/// Runs `podlog redaction` on `store`.
pub fn run(store: &Store, args: RedactionArgs, out: &mut impl Write) -> Result<ExitCode, String> {
    let text = match args.action {
        RedactionAction::On | RedactionAction::Off => {
            let on = args.action == RedactionAction::On;
            store.set_redaction(on).map_err(|e| e.to_string())?;
            if on {
                "redaction is on: secrets in new entries are replaced by markers\n".to_owned()
            } else {
                "redaction is off: new entries are stored as written, secrets included\n".to_owned()
            }
        }
        RedactionAction::Status => status(store)?,
    };
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("writing the output: {e}")),
    }
}

fn status(store: &Store) -> Result<String, String> {
    let mut text = String::new();
    let redactor = store.redactor();
    let _ = writeln!(
        text,
        "redaction: {}",
        if redactor.is_some() { "on" } else { "off" }
    );
    let key = key_path(store.file_base());
    let _ = writeln!(
        text,
        "key:       {}{}",
        key.display(),
        if key.exists() {
            ""
        } else {
            " (not created yet)"
        }
    );
    let config = config_path(store.file_base());
    let patterns = if config.exists() {
        match podlog_store::redact::load_config(&config) {
            Ok(p) => format!("{} user pattern(s)", p.len()),
            Err(e) => format!("unreadable: {e}"),
        }
    } else {
        "none (built-in detectors only)".to_owned()
    };
    let _ = writeln!(text, "patterns:  {} ({patterns})", config.display());
    let sessions = store.sessions().map_err(|e| e.to_string())?;
    let (mut total, mut redacted) = (0u64, 0usize);
    for s in sessions.iter().flatten() {
        total += s.redactions;
        redacted += usize::from(s.redactions > 0);
    }
    let _ = writeln!(
        text,
        "redacted:  {total} secret(s) in {redacted} of {} session(s)",
        sessions.len()
    );
    Ok(text)
}
