//! `podlog serve`: serves the database's pods over HTTP + SSE until Ctrl-C
//! or SIGTERM, then shuts down in order (see `podlog_server::Server`).
//!
//! With neither `--listen` nor `--unix` it listens on `127.0.0.1:7878`. A
//! non-loopback `--listen` needs a token: `--token-file PATH`, or else one is
//! generated into `<database>.token` (0600); the log names the file, never
//! the token. `--demo` adds the pod `demo`, a scripted conversation at a
//! human pace; `--demo-pace-ms` makes it faster or slower. `--size-warning
//! SIZE` sets the stored size at each multiple of which a served pod commits
//! a warning into its session (256MiB by default, 0 for never). Logs go to
//! stderr (`PODLOG_LOG` sets the filter, `info` by default).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use podlog_server::demo::{self, DemoOptions};
use podlog_server::{auth, PodRegistry, Server, ServerConfig, TokenSource};
use podlog_store::Store;

/// The default TCP address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The slowest demo pace: a minute per text delta, 25 minutes between runs.
/// (The fastest is 1 ms: a pace of 0 would write as fast as the disk goes.)
const MAX_DEMO_PACE_MS: u64 = 60_000;

/// Arguments of `podlog serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TCP address to listen on (default 127.0.0.1:7878 when no --unix is
    /// given). A non-loopback address requires a bearer token.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Unix socket to listen on (created 0600, removed on shutdown).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// File holding the bearer token (generated, 0600, if missing). Default
    /// for a non-loopback address: the database path with `.token` added.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Serve the pod `demo`: a scripted conversation that keeps going.
    #[arg(long)]
    demo: bool,
    /// The demo's pace: its pause before each streamed text delta, in
    /// milliseconds (default 120; the pause between runs is 25 times
    /// longer). Lower for a fast demo, higher for a slow one.
    #[arg(
        long,
        requires = "demo",
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_DEMO_PACE_MS),
    )]
    demo_pace_ms: Option<u64>,
    /// Warn in a session (a committed SystemItem) each time its stored size
    /// passes a multiple of SIZE: bytes, or a number with KiB, MiB or GiB;
    /// 0 never warns.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    size_warning: u64,
}

/// Parses `SIZE`: a whole number of bytes, optionally with a unit `KiB`,
/// `MiB` or `GiB` (`K`, `M`, `G` too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!("bad size {text:?}: want a whole number and an optional unit KiB, MiB or GiB, e.g. 256MiB")
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODLOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only if a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Runs `podlog serve` on `store`.
pub fn run(args: ServeArgs, store: Store) -> Result<ExitCode, String> {
    init_logging();
    let listen = match (args.listen, &args.unix) {
        (None, None) => Some(
            DEFAULT_LISTEN
                .parse()
                .map_err(|e| format!("bad default address: {e}"))?,
        ),
        (listen, _) => listen,
    };
    let token = match (&args.token_file, listen) {
        (Some(path), _) => TokenSource::File(path.clone()),
        (None, Some(addr)) if !auth::is_loopback(&addr) => {
            TokenSource::File(auth::default_token_file(store.file_base()))
        }
        _ => TokenSource::None,
    };
    let config = ServerConfig {
        listen,
        unix: args.unix.clone(),
        token,
        http: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let demo = args.demo.then(|| match args.demo_pace_ms {
        Some(ms) => DemoOptions {
            delta_delay: Duration::from_millis(ms),
            // At most 25 * MAX_DEMO_PACE_MS: no overflow.
            pause_between_runs: Duration::from_millis(ms * 25),
            ..DemoOptions::default()
        },
        None => DemoOptions::default(),
    });
    runtime.block_on(serve(config, Arc::new(store), demo, args.size_warning))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    config: ServerConfig,
    store: Arc<Store>,
    demo: Option<DemoOptions>,
    size_warning: u64,
) -> Result<(), String> {
    let pods = PodRegistry::new();
    let (stop_demo, stop_rx) = tokio::sync::watch::channel(false);
    let mut feeder = None;
    let with_demo = demo.is_some();
    if let Some(options) = demo {
        let opened = {
            let store = store.clone();
            let options = options.clone();
            tokio::task::spawn_blocking(move || demo::open_demo_pod(store, &options))
                .await
                .map_err(|e| format!("starting the demo pod: {e}"))?
                .map_err(|e| format!("starting the demo pod: {e}"))?
        };
        let (pod, next) = opened;
        pod.set_size_warning(size_warning);
        eprintln!("podlog: pod demo writes session {}", pod.session_id());
        pods.insert("demo", pod.clone())?;
        feeder = Some(tokio::spawn(demo::feed(pod, next, options, stop_rx)));
    }
    let server = Server::start(config, store, pods)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(addr) = server.local_addr() {
        eprintln!("podlog: serving http://{addr}");
        if with_demo {
            eprintln!("podlog: watch with `podlog tail demo --url http://{addr}` or `curl -N http://{addr}/pods/demo/events`");
        }
    }
    if let Some(path) = server.unix_path() {
        eprintln!("podlog: serving unix socket {}", path.display());
    }
    podlog_server::shutdown_signal().await;
    eprintln!("podlog: shutting down");
    let _ = stop_demo.send(true);
    if let Some(feeder) = feeder {
        let _ = feeder.await;
    }
    server.shutdown().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_are_named() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("3KiB"), Ok(3072));
        for bad in ["", "MiB", "1.5GiB", "12 parsecs", "-1"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
