//! The session-lifecycle subcommands: `compact`, `fork`, `tree`, `verify`,
//! `export` and `import`. Each wires one store operation to the terminal;
//! the operations themselves live in `podlog-store`.
//!
//! Output contract: results go to stdout (for `export` without `-o`, the
//! JSON Lines themselves), notes to stderr. `verify` exits 1 when it finds a
//! problem. `export` and `import` draw a progress bar on stderr when stderr
//! is a terminal, and nothing when it is not. A reader that goes away
//! (`podlog export X | head`) ends the command quietly with exit 0.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use podlog_entry::{Conversation, LogEntry, Message, Seq, SessionId};
use podlog_store::{Origin, SessionInfo, Store, StoreError, Transfer};

#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Continue a session in a new one that starts from a summary (the old
    /// session stays as it is).
    Compact {
        /// The session id, or an unambiguous prefix of it.
        session: String,
        /// The summary the new session starts from (default: a mechanical
        /// summary listing the user's requests and the last answer).
        #[arg(long, value_name = "TEXT")]
        summary: Option<String>,
    },
    /// Branch a new session from a session's conversation up to SEQ.
    Fork {
        /// The session id, or an unambiguous prefix of it.
        session: String,
        /// The last entry the fork keeps.
        #[arg(long, value_name = "SEQ")]
        at: u64,
    },
    /// Draw every session's lineage (forks and compactions) as a tree.
    Tree,
    /// Check the database (or one session) for broken invariants; exit 1 if
    /// there is any.
    Verify {
        /// Only this session (id or unambiguous prefix).
        session: Option<String>,
    },
    /// Write a session as JSON Lines (format: docs/export-format.md).
    Export {
        /// The session id, or an unambiguous prefix of it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        session: Option<String>,
        /// Export every session of the database, each after the session it
        /// was forked or compacted from: `podlog export --all | podlog --db
        /// OTHER import -` moves a whole database.
        #[arg(long, conflicts_with = "with_ancestors")]
        all: bool,
        /// Export the sessions it was forked or compacted from first.
        #[arg(long)]
        with_ancestors: bool,
        /// Write to FILE (created 0600) instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Add the sessions of a JSON Lines export to the database, all or
    /// nothing.
    Import {
        /// The export file, or `-` for stdin.
        file: PathBuf,
    },
}

/// Runs one lifecycle command, writing results to `out`.
pub fn run(
    store: &Store,
    command: LifecycleCommand,
    out: &mut impl Write,
) -> Result<ExitCode, String> {
    let text = match command {
        LifecycleCommand::Compact { session, summary } => compact(store, &session, summary)?,
        LifecycleCommand::Fork { session, at } => fork(store, &session, at)?,
        LifecycleCommand::Tree => tree(&store.sessions().map_err(|e| e.to_string())?),
        LifecycleCommand::Verify { session } => return verify(store, session.as_deref(), out),
        LifecycleCommand::Export {
            session,
            all,
            with_ancestors,
            output,
        } => {
            let what = match session {
                Some(session) if !all => Exported::Session {
                    session,
                    with_ancestors,
                },
                _ => Exported::All,
            };
            return export(store, what, output, out);
        }
        LifecycleCommand::Import { file } => import(store, &file)?,
    };
    finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Exit 0 after a successful write or a reader that went away; an error
/// for any other write failure.
fn finish(written: std::io::Result<()>) -> Result<ExitCode, String> {
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("writing output: {e}")),
    }
}

fn compact(store: &Store, session: &str, summary: Option<String>) -> Result<String, String> {
    let id = store.resolve(session).map_err(|e| e.to_string())?;
    // Hold the session's write lock: the summary must cover everything up to
    // the cut, so no one may append in between, and a live pod writing this
    // session must compact it itself.
    let _lock = store.lock_session(&id).map_err(|e| e.to_string())?;
    let summary = match summary {
        Some(text) => Message::System { text },
        None => {
            let entries = store.entries(&id).map_err(|e| e.to_string())?;
            Conversation::from_entries(entries.iter().map(|c| c.entry.as_ref()))
                .mechanical_summary()
        }
    };
    let (new, start) = store
        .compact(&id, vec![summary])
        .map_err(|e| e.to_string())?;
    let cut = match start.entry.as_ref() {
        LogEntry::SessionStart {
            compacted_from: Some(cut),
            ..
        } => cut.seq,
        _ => store.session(&id).map_err(|e| e.to_string())?.last_seq,
    };
    Ok(format!("compacted {id} at seq {cut} into session {new}\n"))
}

fn fork(store: &Store, session: &str, at: u64) -> Result<String, String> {
    let id = store.resolve(session).map_err(|e| e.to_string())?;
    let (new, start) = store.fork(&id, Seq(at)).map_err(|e| e.to_string())?;
    let history = match start.entry.as_ref() {
        LogEntry::SessionStart { history, .. } => history.len(),
        _ => 0,
    };
    Ok(format!(
        "forked {id} at seq {at} into session {new} ({history} history messages)\n"
    ))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One node of the tree: id, origin and cut, entry count, title.
fn node(s: &SessionInfo) -> String {
    let origin = match (&s.parent, s.origin) {
        (Some(p), Origin::Fork) => format!("fork at seq {}", p.seq),
        (Some(p), Origin::Compaction) => format!("compaction at seq {}", p.seq),
        (Some(p), Origin::New) => format!("new, parent at seq {}", p.seq),
        (None, origin) => origin.as_str().to_owned(),
    };
    let mut text = format!(
        "{}  {origin}, {}",
        s.id,
        plural(s.entry_count, "entry", "entries")
    );
    if let Some(title) = &s.title {
        text.push_str("  ");
        text.push_str(&title.replace(['\n', '\r'], " "));
    }
    text
}

/// Draws `sessions` as a forest: roots (sessions without a parent, or whose
/// parent is missing) oldest first, each child under its parent, siblings
/// oldest first. Session rows that do not read are listed after it, each
/// with its error.
fn tree(sessions: &[Result<SessionInfo, StoreError>]) -> String {
    if sessions.is_empty() {
        return "(no sessions yet: `podlog demo` writes one)\n".to_owned();
    }
    let mut ordered: Vec<&SessionInfo> = sessions.iter().filter_map(|s| s.as_ref().ok()).collect();
    ordered.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let known: HashSet<&SessionId> = ordered.iter().map(|s| &s.id).collect();
    let mut children: HashMap<&SessionId, Vec<&SessionInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for s in &ordered {
        match &s.parent {
            Some(p) if known.contains(&p.session_id) => {
                children.entry(&p.session_id).or_default().push(s)
            }
            _ => roots.push(*s),
        }
    }
    let mut text = String::new();
    let mut drawn: HashSet<&SessionId> = HashSet::new();
    // Depth first without recursion: a long chain of compactions is deep.
    // Each stack item: the session, the prefix of its line, the prefix of
    // its children's lines.
    let mut stack: Vec<(&SessionInfo, String, String)> = roots
        .iter()
        .rev()
        .map(|s| (*s, String::new(), String::new()))
        .collect();
    while let Some((s, prefix, child_prefix)) = stack.pop() {
        if !drawn.insert(&s.id) {
            continue;
        }
        text.push_str(&prefix);
        text.push_str(&node(s));
        text.push('\n');
        let kids = children.get(&s.id).map_or(&[][..], Vec::as_slice);
        for (i, kid) in kids.iter().enumerate().rev() {
            let last = i + 1 == kids.len();
            stack.push((
                kid,
                format!("{child_prefix}{}", if last { "└── " } else { "├── " }),
                format!("{child_prefix}{}", if last { "    " } else { "│   " }),
            ));
        }
    }
    // Only sessions whose parents form a loop (a database edited by hand)
    // are unreachable from a root.
    let stranded: Vec<&&SessionInfo> = ordered.iter().filter(|s| !drawn.contains(&s.id)).collect();
    if !stranded.is_empty() {
        text.push_str("(sessions whose parents form a loop; `podlog verify` tells more)\n");
        for s in stranded {
            text.push_str(&node(s));
            text.push('\n');
        }
    }
    let unreadable: Vec<&StoreError> = sessions.iter().filter_map(|s| s.as_ref().err()).collect();
    if !unreadable.is_empty() {
        text.push_str("(session rows that do not read; `podlog verify` tells more)\n");
        for e in unreadable {
            text.push_str(&format!("{e}\n"));
        }
    }
    text
}

fn verify(store: &Store, session: Option<&str>, out: &mut impl Write) -> Result<ExitCode, String> {
    let id = match session {
        Some(text) => Some(store.resolve(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let problems = store.verify(id.as_ref()).map_err(|e| e.to_string())?;
    let (sessions, entries) = store.verify_scope(id.as_ref()).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for problem in &problems {
        text.push_str(&problem.to_string());
        text.push('\n');
    }
    let code = if problems.is_empty() {
        text.push_str(&format!(
            "ok: {}, {} verified\n",
            plural(sessions, "session", "sessions"),
            plural(entries, "entry", "entries")
        ));
        ExitCode::SUCCESS
    } else {
        text.push_str(&format!(
            "{} found in {}\n",
            plural(problems.len() as u64, "problem", "problems"),
            plural(sessions, "session", "sessions")
        ));
        ExitCode::from(1)
    };
    finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()))?;
    Ok(code)
}

/// A progress bar on stderr if stderr is a terminal, else one that draws
/// nothing.
fn progress_bar(total: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// What `podlog export` writes.
enum Exported {
    Session {
        session: String,
        with_ancestors: bool,
    },
    /// Every session, each after its parent.
    All,
}

/// The sessions to write, in file order: one session (and its ancestors
/// first, if asked), or every session with each parent before its
/// children (by lineage, not by clock: hosts' clocks may disagree).
fn export_plan(store: &Store, what: &Exported) -> Result<Vec<(SessionId, bool)>, String> {
    match what {
        Exported::Session {
            session,
            with_ancestors,
        } => Ok(vec![(
            store.resolve(session).map_err(|e| e.to_string())?,
            *with_ancestors,
        )]),
        Exported::All => {
            let mut left = Vec::new();
            for info in store.sessions().map_err(|e| e.to_string())? {
                left.push(info.map_err(|e| e.to_string())?);
            }
            // Oldest first, then each pass emits those whose parent is out.
            left.reverse();
            let mut done = HashSet::new();
            let mut plan = Vec::with_capacity(left.len());
            while !left.is_empty() {
                let before = left.len();
                left.retain(|info| {
                    let ready = info
                        .parent
                        .as_ref()
                        .is_none_or(|p| done.contains(&p.session_id));
                    if ready {
                        done.insert(info.id.clone());
                        plan.push((info.id.clone(), false));
                    }
                    !ready
                });
                if left.len() == before {
                    let names: Vec<String> = left.iter().map(|i| i.id.to_string()).collect();
                    return Err(format!(
                        "cannot order sessions {} after their parents (a parent is missing)",
                        names.join(", ")
                    ));
                }
            }
            Ok(plan)
        }
    }
}

fn export(
    store: &Store,
    what: Exported,
    output: Option<PathBuf>,
    stdout: &mut impl Write,
) -> Result<ExitCode, String> {
    let plan = export_plan(store, &what)?;
    let mut total = 0;
    for (id, with_ancestors) in &plan {
        total += store
            .export_sessions(id, *with_ancestors)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|s| s.entry_count)
            .sum::<u64>();
    }
    let bar = progress_bar(total, "exporting [{bar:40}] {pos}/{len} entries ({eta})");
    // Each session's export reports its own count: add what came before.
    let write_all =
        |mut writer: &mut dyn Write| -> (Result<Transfer, StoreError>, Option<SessionId>) {
            let mut all = Transfer {
                sessions: Vec::new(),
                entries: 0,
            };
            for (id, with_ancestors) in &plan {
                let base = all.entries;
                match store.export(id, *with_ancestors, &mut writer, |n| {
                    bar.set_position(base + n)
                }) {
                    Ok(done) => {
                        all.sessions.extend(done.sessions);
                        all.entries += done.entries;
                    }
                    Err(e) => return (Err(e), Some(id.clone())),
                }
            }
            (
                writer
                    .flush()
                    .map(|()| all)
                    .map_err(|source| StoreError::Io {
                        context: "writing the export".to_owned(),
                        source,
                    }),
                None,
            )
        };
    let ((done, failed), target) = match &output {
        Some(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let mut writer = BufWriter::new(file);
            let done = write_all(&mut writer);
            if done.0.is_err() {
                // Leave no partial export that looks complete.
                let _ = std::fs::remove_file(path);
            }
            (done, path.display().to_string())
        }
        None => {
            let mut writer = BufWriter::new(stdout);
            (write_all(&mut writer), "stdout".to_owned())
        }
    };
    bar.finish_and_clear();
    match done {
        Ok(done) => {
            eprintln!(
                "podlog: exported {} ({}) to {target}",
                plural(done.sessions.len() as u64, "session", "sessions"),
                plural(done.entries, "entry", "entries")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Io { source, .. })
            if output.is_none() && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match failed {
            Some(id) => Err(format!("exporting session {id}: {e}")),
            None => Err(format!("exporting to {target}: {e}")),
        },
    }
}

fn import(store: &Store, file: &PathBuf) -> Result<String, String> {
    let (reader, size, name): (Box<dyn BufRead>, Option<u64>, String) = if file.as_os_str() == "-" {
        (
            Box::new(BufReader::new(std::io::stdin().lock())),
            None,
            "stdin".to_owned(),
        )
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        let size = opened.metadata().ok().map(|m| m.len());
        (
            Box::new(BufReader::new(opened)),
            size,
            file.display().to_string(),
        )
    };
    let bar = match size {
        Some(size) => progress_bar(size, "importing [{bar:40}] {bytes}/{total_bytes} ({eta})"),
        None => ProgressBar::hidden(),
    };
    let done = store.import(reader, |n| bar.set_position(n));
    bar.finish_and_clear();
    let done = done.map_err(|e| format!("importing {name}: {e} (nothing was imported)"))?;
    let mut text = format!(
        "imported {} ({}) from {name}:\n",
        plural(done.sessions.len() as u64, "session", "sessions"),
        plural(done.entries, "entry", "entries")
    );
    for id in &done.sessions {
        text.push_str(&format!("  {id}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use podlog_entry::EntryRef;

    use super::*;

    fn session(
        id: &str,
        parent: Option<(&str, u64)>,
        origin: Origin,
        at: u64,
    ) -> Result<SessionInfo, StoreError> {
        Ok(SessionInfo {
            id: SessionId::new(id).unwrap(),
            origin,
            parent: parent.map(|(p, seq)| EntryRef {
                session_id: SessionId::new(p).unwrap(),
                seq: Seq(seq),
            }),
            created_at: at,
            updated_at: at,
            last_seq: Seq(3),
            entry_count: if at == 5 { 1 } else { 3 },
            title: Some(format!("t{at}")),
            redactions: 0,
            stored_bytes: 0,
        })
    }

    #[test]
    fn the_tree_draws_children_under_parents_oldest_first() {
        let sessions = vec![
            session("d", Some(("b", 2)), Origin::Compaction, 4),
            session("a", None, Origin::New, 1),
            session("b", Some(("a", 2)), Origin::Fork, 2),
            session("c", Some(("a", 3)), Origin::Compaction, 3),
            session("e", None, Origin::New, 5),
            session("f", Some(("gone", 9)), Origin::Fork, 6),
        ];
        assert_eq!(
            tree(&sessions),
            "a  new, 3 entries  t1\n\
             ├── b  fork at seq 2, 3 entries  t2\n\
             │   └── d  compaction at seq 2, 3 entries  t4\n\
             └── c  compaction at seq 3, 3 entries  t3\n\
             e  new, 1 entry  t5\n\
             f  fork at seq 9, 3 entries  t6\n"
        );
        assert_eq!(tree(&[]), "(no sessions yet: `podlog demo` writes one)\n");
    }

    #[test]
    fn sessions_in_a_parent_loop_are_still_listed() {
        let sessions = vec![
            session("a", None, Origin::New, 1),
            session("x", Some(("y", 1)), Origin::Fork, 2),
            session("y", Some(("x", 1)), Origin::Fork, 3),
        ];
        assert_eq!(
            tree(&sessions),
            "a  new, 3 entries  t1\n\
             (sessions whose parents form a loop; `podlog verify` tells more)\n\
             x  fork at seq 1, 3 entries  t2\n\
             y  fork at seq 1, 3 entries  t3\n"
        );
    }

    #[test]
    fn session_rows_that_do_not_read_are_listed_after_the_tree() {
        let sessions = vec![
            session("a", None, Origin::New, 1),
            Err(StoreError::CorruptSession {
                session: SessionId::new("b").unwrap(),
                problem: "unknown origin \"merge\"".to_owned(),
            }),
            session("c", Some(("b", 2)), Origin::Fork, 3),
        ];
        assert_eq!(
            tree(&sessions),
            "a  new, 3 entries  t1\n\
             c  fork at seq 2, 3 entries  t3\n\
             (session rows that do not read; `podlog verify` tells more)\n\
             session b: unknown origin \"merge\"\n"
        );
    }
}
