//! `podlog tail POD` (or `podlog tail SESSION`): a terminal client of
//! `podlog serve`. A name that is not one of the server's pods is taken for
//! a session id (or a unique prefix of one), which the server follows
//! whoever writes it (`GET /sessions/{id}/events`): another process, an
//! import, or a pod of its own.
//!
//! It attaches to the pod's event stream (over TCP, `--url`, by default
//! `http://127.0.0.1:7878`, or a Unix socket, `--unix`), prints the session's
//! last 100 entries (`--tail N`; `--all` for the whole session) one line per
//! entry, then renders the live stream: assistant text as it is
//! generated, one line per committed entry, a banner when the session
//! rotates. When the stream ends (server restart, network trouble) it
//! reconnects with the last event id it saw, so it carries on with exactly
//! what it missed; `--from SESSION:SEQ` starts that way. Ctrl-C exits with
//! status 0. The token, when the server needs one, comes from `--token-file`
//! or `$PODLOG_TOKEN`.
//!
//! An entry that holds large strings arrives lean: each such string is a
//! preview, and a reference names the payload holding it whole. Its line
//! shows the preview and each payload's size (`… [+97.5 KiB]`). With
//! `--full`, tail fetches those payloads (`GET /blobs/HASH`), puts them back
//! into the entry, and prints the whole entry: its line, then each large
//! string in full under the path it was cut at.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use podlog_entry::{iso8601, AssistantContent, Committed, LogEntry, PayloadHash};
use podlog_protocol::client::{Client, ClientError, Endpoint};
use podlog_protocol::Event;
use podlog_protocol::EventId;
use podlog_protocol::LogView;

/// Arguments of `podlog tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The pod to watch (`demo` for `podlog serve --demo`), or a session id
    /// (or a unique prefix of one) to follow, whoever writes it.
    pod: String,
    /// Resume after this position (an event id, SESSION:SEQ) instead of
    /// printing the whole snapshot.
    #[arg(long, value_name = "SESSION:SEQ")]
    from: Option<String>,
    /// The server's URL.
    #[arg(long, value_name = "URL", conflicts_with = "unix")]
    url: Option<String>,
    /// The server's Unix socket.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// File holding the server's bearer token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Start with the session's last N entries (tail-first attach), however
    /// long the session is.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "all")]
    tail: u64,
    /// Start with the whole session instead of its last entries.
    #[arg(long)]
    all: bool,
    /// Print entries whole. An entry's large strings (8 KiB or more: tool
    /// outputs, attachments, long answers) arrive as 512-byte previews, shown
    /// with each one's size, as in `… [+97.5 KiB]`; with --full, tail fetches
    /// each one from the server and prints it in full below the entry's line.
    #[arg(long)]
    full: bool,
}

/// Runs `podlog tail`.
pub fn run(args: &TailArgs) -> Result<ExitCode, String> {
    if let Some(from) = &args.from {
        EventId::parse(from).map_err(|e| format!("--from: {e}"))?;
    }
    let endpoint = match (&args.url, &args.unix) {
        (_, Some(path)) => Endpoint::Unix(path.clone()),
        (Some(url), None) => Endpoint::from_url(url).map_err(|e| e.to_string())?,
        (None, None) => Endpoint::Tcp(crate::serve_cmd::DEFAULT_LISTEN.to_owned()),
    };
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading token file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("PODLOG_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let client = Client::new(endpoint, token);
    // The current-thread runtime runs everything on this thread, so output
    // stays in order and stdout's lock is never contended.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut tail = Tail {
        out: std::io::stdout(),
        view: LogView::new(),
        in_text: false,
        full: args.full,
    };
    runtime.block_on(async {
        tokio::select! {
            result = tail.follow(&client, &args.pod, args.from.clone(), (!args.all).then_some(args.tail)) => result,
            _ = tokio::signal::ctrl_c() => {
                tail.finish_line();
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

struct Tail {
    out: std::io::Stdout,
    view: LogView,
    /// A line of streamed text is open.
    in_text: bool,
    /// Fetch and print the payloads of lean entries (`--full`).
    full: bool,
}

/// The payloads fetched for one event, by hash.
type Texts = HashMap<PayloadHash, String>;

/// Why one stream ended.
enum Ended {
    /// The reader of our output went away (`| head`).
    OutputClosed,
    /// Reconnect (server shutdown, restart or a broken connection).
    Reconnect,
}

impl Tail {
    /// Follows the pod's stream across reconnects until an error that
    /// reconnecting cannot fix.
    async fn follow(
        &mut self,
        client: &Client,
        pod: &str,
        mut last_id: Option<String>,
        tail: Option<u64>,
    ) -> Result<ExitCode, String> {
        let mut backoff = Duration::from_millis(250);
        let mut waiting = false;
        let mut attached = false;
        // A pod of the server, until the server says it has none by that
        // name: then a session, followed whoever writes it.
        let mut base = format!("/pods/{pod}/events");
        loop {
            // Tail-first unless asked otherwise: a first attach, and a
            // reconnect that has to start over on another session, begin
            // with the last entries; a reconnect otherwise resumes from the
            // last event id.
            let path = match tail {
                Some(n) => format!("{base}?tail={n}"),
                None => format!("{base}?tail=all"),
            };
            match client.events_at(&path, last_id.as_deref()).await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(250);
                    if attached {
                        eprintln!("podlog: reconnected");
                    }
                    attached = true;
                    waiting = false;
                    let ended = self.read(client, &mut stream).await;
                    last_id = stream.last_id().map(str::to_owned);
                    match ended {
                        Ended::OutputClosed => return Ok(ExitCode::SUCCESS),
                        Ended::Reconnect => {
                            self.finish_line();
                            eprintln!(
                                "podlog: stream ended; reconnecting from {}",
                                last_id.as_deref().unwrap_or("the start")
                            );
                        }
                    }
                }
                Err(ClientError::Status { status, .. })
                    if status == 404 && !attached && base.starts_with("/pods/") =>
                {
                    base = format!("/sessions/{pod}/events");
                    continue;
                }
                Err(ClientError::Status { status, message }) if status.is_client_error() => {
                    return Err(format!(
                        "{client_endpoint}: {message}",
                        client_endpoint = client.endpoint()
                    ));
                }
                Err(e) => {
                    if !waiting {
                        eprintln!("podlog: {e}; retrying");
                        waiting = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Renders one stream until it ends.
    async fn read(
        &mut self,
        client: &Client,
        stream: &mut podlog_protocol::client::EventStream,
    ) -> Ended {
        loop {
            let message = match stream.next().await {
                Ok(Some(message)) => message,
                Ok(None) | Err(_) => return Ended::Reconnect,
            };
            let Some(event) = message.pod_event() else {
                // `shutdown` or `reconnect`: the stream ends next.
                continue;
            };
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    eprintln!("podlog: {e}");
                    continue;
                }
            };
            if let Err(e) = self.view.apply(&event) {
                eprintln!("podlog: {e}; starting over");
                self.view = LogView::new();
                return Ended::Reconnect;
            }
            let texts = if self.full {
                fetch(client, &event).await
            } else {
                Texts::new()
            };
            if self.render(&event, &texts).is_err() {
                return Ended::OutputClosed;
            }
        }
    }

    fn finish_line(&mut self) {
        if self.in_text {
            let _ = writeln!(self.out);
            self.in_text = false;
        }
        let _ = self.out.flush();
    }

    /// One entry's line; a lean entry's line ends with the size of each
    /// payload, unless `texts` holds them all, when the whole entry is
    /// printed: its line, then each large string in full.
    fn line(&mut self, c: &Committed, texts: &Texts) -> std::io::Result<()> {
        let refs = c.payload_refs();
        if !refs.is_empty() && refs.iter().all(|r| texts.contains_key(&r.hash)) {
            match whole(c, texts) {
                Ok(entry) => {
                    self.entry_line(c, &entry, "")?;
                    for r in refs {
                        let text = &texts[&r.hash];
                        writeln!(
                            self.out,
                            "{:>5}  ── {} ({})",
                            "",
                            r.path,
                            human_size(r.size)
                        )?;
                        write!(self.out, "{text}")?;
                        if !text.ends_with('\n') {
                            writeln!(self.out)?;
                        }
                    }
                    return Ok(());
                }
                Err(e) => eprintln!("podlog: seq {}: {e}; printing its preview", c.seq),
            }
        }
        let markers: String = refs
            .iter()
            .map(|r| format!(" [+{}]", human_size(r.size)))
            .collect();
        self.entry_line(c, &c.entry, &markers)
    }

    fn entry_line(&mut self, c: &Committed, entry: &LogEntry, end: &str) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{:>5}  {}  {:<14}  {}{end}",
            c.seq,
            iso8601(entry.ts()),
            entry.kind(),
            entry.summary()
        )
    }

    fn render(&mut self, event: &Event, texts: &Texts) -> std::io::Result<()> {
        match event {
            Event::Snapshot {
                session_id,
                entries,
                end_seq,
            } => {
                self.finish_line();
                match entries.first() {
                    Some(first) if first.seq.get() > 1 => writeln!(
                        self.out,
                        "── session {session_id} (the last {} of {end_seq} entries, from seq {}; --all prints them all)",
                        entries.len(),
                        first.seq
                    )?,
                    _ => writeln!(
                        self.out,
                        "── session {session_id} ({} entries)",
                        entries.len()
                    )?,
                }
                for w in entries {
                    self.line(&Committed::from(w), texts)?;
                }
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
                payloads,
            } => {
                self.finish_line();
                let why = match entry {
                    LogEntry::SessionStart {
                        compacted_from: Some(r),
                        ..
                    } => format!("compacted from {r}"),
                    LogEntry::SessionStart {
                        forked_from: Some(r),
                        ..
                    } => format!("forked from {r}"),
                    _ => "new session".to_owned(),
                };
                writeln!(self.out, "── session {session_id} ({why})")?;
                let c = Committed {
                    seq: *seq,
                    entry: std::sync::Arc::new(entry.clone()),
                    payloads: payloads.clone(),
                };
                self.line(&c, texts)?;
            }
            Event::TextDelta { after, text } => {
                if !self.in_text {
                    write!(
                        self.out,
                        "{:>5}  {:<24}  {:<14}  ",
                        after.next(),
                        "(streaming)",
                        "assistant"
                    )?;
                    self.in_text = true;
                }
                write!(self.out, "{text}")?;
            }
            Event::ToolCallStart { .. } | Event::RunStarted { .. } => {}
            Event::AssistantItem {
                item: AssistantContent::Text { .. },
                ..
            } if self.in_text => {
                // The text was streamed already: close its line.
                writeln!(self.out)?;
                self.in_text = false;
            }
            other => {
                if let Some(c) = other.to_committed() {
                    self.finish_line();
                    self.line(&c, texts)?;
                }
            }
        }
        self.out.flush()
    }
}

/// Fetches every payload the lean entries of `event` refer to. One that
/// cannot be fetched is reported and left out: its entry prints lean.
async fn fetch(client: &Client, event: &Event) -> Texts {
    let refs: Vec<podlog_entry::PayloadRef> = match event {
        Event::Snapshot { entries, .. } => entries
            .iter()
            .flat_map(|w| w.payloads.iter().flat_map(|p| p.iter()))
            .cloned()
            .collect(),
        Event::SessionRotated { payloads, .. } | Event::Entry { payloads, .. } => {
            payloads.iter().flat_map(|p| p.iter()).cloned().collect()
        }
        _ => Vec::new(),
    };
    let mut texts = Texts::new();
    for r in refs {
        if texts.contains_key(&r.hash) {
            continue;
        }
        match client.blob(&r.hash).await {
            Ok(text) if text.len() as u64 == r.size => {
                texts.insert(r.hash, text);
            }
            Ok(text) => eprintln!(
                "podlog: payload {} is {} bytes, its reference says {}",
                r.hash,
                text.len(),
                r.size
            ),
            Err(e) => eprintln!("podlog: payload {}: {e}", r.hash),
        }
    }
    texts
}

/// The entry `c` whole: its payloads put back where they were cut.
fn whole(c: &Committed, texts: &Texts) -> Result<LogEntry, String> {
    let mut value = serde_json::to_value(&*c.entry).map_err(|e| e.to_string())?;
    for r in c.payload_refs() {
        podlog_entry::payload::inline(&mut value, &r.path, texts[&r.hash].clone())
            .map_err(|e| e.to_string())?;
    }
    serde_json::from_value(value).map_err(|e| format!("the whole entry does not decode: {e}"))
}

/// `bytes` for people: `512 B`, `97.5 KiB`, `1.2 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        for (bytes, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (8 * 1024, "8.0 KiB"),
            (99_840, "97.5 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (3 * 1024 * 1024 / 2, "1.5 MiB"),
            (5 << 30, "5.0 GiB"),
            (u64::MAX, "16777216.0 TiB"),
        ] {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }
}
