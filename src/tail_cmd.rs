//! `podlog tail POD`: a terminal client of `podlog serve`.
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

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use podlog_entry::{iso8601, AssistantContent, Committed, LogEntry};
use podlog_protocol::client::{Client, ClientError, Endpoint};
use podlog_protocol::Event;
use podlog_protocol::EventId;
use podlog_protocol::LogView;

/// Arguments of `podlog tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The pod to watch (`demo` for `podlog serve --demo`).
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
}

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
        loop {
            // Tail-first unless asked otherwise: a first attach, and a
            // reconnect that has to start over on another session, begin
            // with the last entries; a reconnect otherwise resumes from the
            // last event id.
            let path = match tail {
                Some(n) => format!("/pods/{pod}/events?tail={n}"),
                None => format!("/pods/{pod}/events"),
            };
            match client.events_at(&path, last_id.as_deref()).await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(250);
                    if attached {
                        eprintln!("podlog: reconnected");
                    }
                    attached = true;
                    waiting = false;
                    let ended = self.read(&mut stream).await;
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
    async fn read(&mut self, stream: &mut podlog_protocol::client::EventStream) -> Ended {
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
            if self.render(&event).is_err() {
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

    fn line(&mut self, c: &Committed) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{:>5}  {}  {:<14}  {}",
            c.seq,
            iso8601(c.entry.ts()),
            c.entry.kind(),
            c.entry.summary()
        )
    }

    fn render(&mut self, event: &Event) -> std::io::Result<()> {
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
                    self.line(&Committed::from(w))?;
                }
            }
            Event::SessionRotated {
                session_id,
                seq,
                entry,
                ..
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
                self.line(&Committed::new(*seq, entry.clone()))?;
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
                    self.line(&c)?;
                }
            }
        }
        self.out.flush()
    }
}
