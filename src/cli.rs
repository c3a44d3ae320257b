//! Subcommands of the `podlog` binary and the choice of database file.
//!
//! The database is `--db PATH`, else `$PODLOG_DB`, else `podlog.db` in the
//! platform's data folder (`$XDG_DATA_HOME/podlog`, by default
//! `~/.local/share/podlog`, created 0700). A `postgres://` or
//! `postgresql://` URL instead of a path means a PostgreSQL database. Every
//! command says on stderr which database it used (never a password);
//! results go to stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use podlog_entry::{iso8601, Committed, SystemClock};
use podlog_pod::script::Script;
use podlog_sink::SessionLogSink;
use podlog_store::{Location, NewSession, SessionInfo, Store, StoreOptions, Synchronous};

/// A durable, live-streamed session log for LLM agent pods.
#[derive(Debug, Parser)]
#[command(name = "podlog", version, about)]
pub struct Args {
    /// The database: a SQLite file (default: podlog.db in the platform's data
    /// folder) or a postgres:// URL.
    #[arg(long, global = true, env = "PODLOG_DB", value_name = "PATH|URL")]
    db: Option<String>,

    /// How hard each commit waits for the disk: `full` survives power loss,
    /// `normal` survives a process crash and is faster.
    #[arg(long, global = true, value_enum, default_value_t = SyncArg::Full)]
    synchronous: SyncArg,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SyncArg {
    Full,
    Normal,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a scripted agent conversation into a new session and print it.
    Demo {
        /// How many user requests the scripted conversation makes.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// List sessions, newest first.
    Sessions,
    /// Print a session's timeline.
    Show {
        /// The session id, or an unambiguous prefix of it.
        session: String,
        /// Start at this seq (a few entries before it for context), marking
        /// it with `>`: where a search hit is.
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
    },
    #[command(flatten)]
    Lifecycle(crate::lifecycle_cmd::LifecycleCommand),
    /// Serve pods over HTTP + SSE (loopback by default) until Ctrl-C.
    Serve(crate::serve_cmd::ServeArgs),
    /// Follow a served pod's live log in the terminal.
    Tail(crate::tail_cmd::TailArgs),
    /// Make, list or revoke read-only links to one session.
    Share(crate::share_cmd::ShareArgs),
    /// Search every session's entries, newest first.
    Search(crate::search_cmd::SearchArgs),
    /// Delete whole sessions untouched for longer than a limit, archiving
    /// them first if asked; never one an open pod holds.
    Gc(crate::gc_cmd::GcArgs),
    /// Delete one session (and, if asked, its descendants), archiving it
    /// first if asked.
    Rm(crate::gc_cmd::RmArgs),
    /// Switch write-time secret redaction on or off, or show its status.
    Redaction(crate::redaction_cmd::RedactionArgs),
}

/// The database from the arguments, or the platform default.
fn database(args: &Args) -> Result<Location, String> {
    if let Some(db) = &args.db {
        return Ok(Location::parse(db));
    }
    podlog_store::default_path()
        .map(Location::Sqlite)
        .map_err(|e| format!("{e} (or give PODLOG_DB or --db)"))
}

/// Runs the command; `Err` carries the message for the user.
pub fn run(args: Args) -> Result<ExitCode, String> {
    if let Command::Tail(tail) = &args.command {
        return crate::tail_cmd::run(tail);
    }
    let location = database(&args)?;
    eprintln!("podlog: database {location}");
    let options = StoreOptions {
        synchronous: match args.synchronous {
            SyncArg::Full => Synchronous::Full,
            SyncArg::Normal => Synchronous::Normal,
        },
        progress: Some(crate::search_cmd::migration_progress()),
        ..StoreOptions::default()
    };
    let store = Store::open_location(&location, options).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let text = match args.command {
        Command::Demo { runs } => match demo(store, runs, &mut out) {
            Ok(text) => text,
            Err(DemoError::Output(e)) => return output_error(e),
            Err(DemoError::Store(e)) => return Err(e),
        },
        Command::Sessions => sessions(&store)?,
        Command::Show { session, at } => show(&store, &session, at)?,
        Command::Search(search) => return crate::search_cmd::run(&store, search, &mut out),
        Command::Lifecycle(command) => return crate::lifecycle_cmd::run(&store, command, &mut out),
        Command::Share(share) => return crate::share_cmd::run(&store, share, &mut out),
        Command::Gc(gc) => return crate::gc_cmd::gc(&store, gc, &mut out),
        Command::Rm(rm) => return crate::gc_cmd::rm(&store, rm, &mut out),
        Command::Redaction(args) => return crate::redaction_cmd::run(&store, args, &mut out),
        Command::Serve(serve) => {
            drop(out);
            return crate::serve_cmd::run(serve, store);
        }
        Command::Tail(tail) => {
            drop(out);
            return crate::tail_cmd::run(&tail);
        }
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => output_error(e),
    }
}

/// A reader that went away (`podlog show X | head`) is not an error worth a
/// message; any other output failure is.
fn output_error(e: std::io::Error) -> Result<ExitCode, String> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("writing output: {e}"))
    }
}

fn line(c: &Committed) -> String {
    format!(
        "{:>5}  {}  {:<14}  {}\n",
        c.seq,
        iso8601(c.entry.ts()),
        c.entry.kind(),
        c.entry.summary()
    )
}

enum DemoError {
    Store(String),
    Output(std::io::Error),
}

fn demo(store: Store, runs: usize, out: &mut impl std::io::Write) -> Result<String, DemoError> {
    let store = std::sync::Arc::new(store);
    let script = Script::demo();
    let (id, start) = store
        .create_session(NewSession {
            title: Some("demo conversation".to_owned()),
            system_prompt: Some("You are a careful coding assistant.".to_owned()),
            config: podlog_entry::RequestConfig {
                model: script.model.clone(),
                ..Default::default()
            },
            history: vec![],
        })
        .map_err(|e| DemoError::Store(e.to_string()))?;
    writeln!(out, "session {id}").map_err(DemoError::Output)?;
    let sink = SessionLogSink::with_initial([start.clone()])
        .map_err(|e| DemoError::Store(e.to_string()))?;
    write!(out, "{}", line(&start)).map_err(DemoError::Output)?;
    let mut writer = store
        .session_writer(&id)
        .map_err(|e| DemoError::Store(e.to_string()))?;
    for run in 0..runs {
        for entry in script.run(run, &format!("call-{run}"), &SystemClock) {
            writer
                .append(entry, &sink)
                .map_err(|e| DemoError::Store(e.to_string()))?;
            // Print from the mirror: what a client would now see.
            let snapshot = sink.snapshot();
            if let Some(last) = snapshot.entries.back() {
                write!(out, "{}", line(last)).map_err(DemoError::Output)?;
            }
        }
    }
    Ok(format!(
        "wrote {} entries to session {id}; see them again with: podlog show {id}\n",
        sink.len()
    ))
}

fn session_row(s: &SessionInfo) -> String {
    let parent = s
        .parent
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string);
    format!(
        "{:<36}  {:<10}  {:>7}  {:>9}  {:>8}  {}  {:<24}  {}\n",
        s.id,
        s.origin.as_str(),
        s.entry_count,
        podlog_pod::human_bytes(s.stored_bytes),
        s.redactions,
        iso8601(s.updated_at),
        parent,
        s.title.as_deref().unwrap_or("")
    )
}

fn sessions(store: &Store) -> Result<String, String> {
    let list = store.sessions().map_err(|e| e.to_string())?;
    let mut text = format!(
        "{:<36}  {:<10}  {:>7}  {:>9}  {:>8}  {:<24}  {:<24}  {}\n",
        "ID", "ORIGIN", "ENTRIES", "SIZE", "REDACTED", "UPDATED", "PARENT", "TITLE"
    );
    let mut unreadable = 0;
    for s in &list {
        match s {
            Ok(s) => text.push_str(&session_row(s)),
            // In its place, so the row is not missed.
            Err(e) => {
                unreadable += 1;
                let _ = writeln!(text, "! {e}");
            }
        }
    }
    if list.is_empty() {
        text.push_str("(no sessions yet: `podlog demo` writes one)\n");
    }
    if unreadable > 0 {
        let _ = writeln!(
            text,
            "({unreadable} session {} not read; `podlog verify` tells more)",
            if unreadable == 1 {
                "row does"
            } else {
                "rows do"
            }
        );
    }
    Ok(text)
}

/// How many entries `show --at` prints before the one asked for.
const SHOW_CONTEXT: u64 = 3;

fn show(store: &Store, session: &str, at: Option<u64>) -> Result<String, String> {
    let id = store.resolve(session).map_err(|e| e.to_string())?;
    let info = store.session(&id).map_err(|e| e.to_string())?;
    let entries = store.entries(&id).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "session {} ({}, {} entries, {}{}{})",
        info.id,
        info.origin.as_str(),
        info.entry_count,
        podlog_pod::human_bytes(info.stored_bytes),
        match info.redactions {
            0 => String::new(),
            n => format!(", {n} redacted"),
        },
        info.parent
            .as_ref()
            .map_or_else(String::new, |p| format!(", from {p}"))
    );
    let Some(at) = at else {
        for c in &entries {
            text.push_str(&line(c));
        }
        return Ok(text);
    };
    if at == 0 || at > info.last_seq.get() {
        return Err(format!(
            "session {} has no seq {at} (its entries are 1 to {})",
            info.id, info.last_seq
        ));
    }
    for c in entries.iter().filter(|c| c.seq.get() + SHOW_CONTEXT >= at) {
        text.push_str(if c.seq.get() == at { "> " } else { "  " });
        text.push_str(&line(c));
    }
    Ok(text)
}
