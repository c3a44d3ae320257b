//! `podlog share`: read-only links to one session.
//!
//! * `podlog share SESSION [--expires DURATION] [--url BASE]` creates a
//!   share and prints its link, `BASE/?share=TOKEN#session=ID` (the web
//!   viewer reads both), then a line naming the share's id, its session
//!   and when it expires. The token is printed once and stored only as its
//!   hash. `DURATION` is a whole number and a unit, `s`, `m`, `h` or `d`
//!   (`30m`, `24h`, `7d`), or `never`; it is `24h` when not given, so a
//!   forgotten link does not stay open for good.
//! * `podlog share --list`: every share, newest first, with its state
//!   (`active`, `expired` or `revoked`).
//! * `podlog share --revoke ID`: the share's token stops working at once;
//!   a server that streams the session to it ends that stream.
//!
//! A share reads only the session it names (see `podlog_server::share`):
//! a compaction or fork of it is another session, shared on its own.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use podlog_entry::iso8601;
use podlog_store::{ShareInfo, Store};

/// Where the link points when no `--url` is given: `podlog serve`'s
/// default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7878";

/// Arguments of `podlog share`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("what").required(true).args(["session", "list", "revoke"])
))]
pub struct ShareArgs {
    /// The session to share: its id, or an unambiguous prefix of it.
    session: Option<String>,
    /// How long the link works: a number and a unit (s, m, h, d), e.g.
    /// 30m, 24h, 7d; or `never`.
    #[arg(long, value_name = "DURATION", default_value = "24h", conflicts_with_all = ["list", "revoke"])]
    expires: String,
    /// The server's address, as the link's reader reaches it.
    #[arg(long, value_name = "BASE", default_value = DEFAULT_URL, conflicts_with_all = ["list", "revoke"])]
    url: String,
    /// List every share and its state.
    #[arg(long, conflicts_with = "revoke")]
    list: bool,
    /// Revoke the share ID: its link stops working at once.
    #[arg(long, value_name = "ID")]
    revoke: Option<String>,
}

/// Parses `30m`, `24h`, `7d`, `90s` or `never` (`None`).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    if text == "never" {
        return Ok(None);
    }
    let bad = || {
        format!("bad duration {text:?}: want a whole number and a unit (s, m, h, d), e.g. 30m, 24h, 7d, or `never`")
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!(
            "bad duration {text:?}: a link that expires at once is of no use"
        ));
    }
    // At most about 300 years: far past any use, short of any overflow.
    let seconds = n
        .checked_mul(seconds)
        .filter(|&s| s <= 10_000_000_000)
        .ok_or_else(|| format!("bad duration {text:?}: too long; use `never`"))?;
    Ok(Some(Duration::from_secs(seconds)))
}

/// Runs `podlog share`, writing results to `out`.
pub fn run(store: &Store, args: ShareArgs, out: &mut impl Write) -> Result<ExitCode, String> {
    let text = if args.list {
        list(store)?
    } else if let Some(id) = &args.revoke {
        revoke(store, id)?
    } else {
        let session = args.session.as_deref().unwrap_or_default();
        create(store, session, &args.expires, &args.url)?
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("writing output: {e}")),
    }
}

fn expiry(info: &ShareInfo) -> String {
    info.expires_at.map_or_else(|| "never".to_owned(), iso8601)
}

fn create(store: &Store, session: &str, expires: &str, url: &str) -> Result<String, String> {
    let expires = parse_duration(expires)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "bad --url {url:?}: want the server's address, e.g. {DEFAULT_URL}"
        ));
    }
    let (info, token) = store
        .create_share(session, expires)
        .map_err(|e| e.to_string())?;
    let base = url.trim_end_matches('/');
    Ok(format!(
        "{base}/?share={}#session={}\nshare {} of session {}, expires {}; revoke it with `podlog share --revoke {}`\n",
        token.expose(),
        info.session_id,
        info.id,
        info.session_id,
        expiry(&info),
        info.id,
    ))
}

fn list(store: &Store) -> Result<String, String> {
    let shares = store.list_shares().map_err(|e| e.to_string())?;
    let now = store.now();
    let mut text = format!(
        "{:<16}  {:<36}  {:<24}  {:<24}  {}\n",
        "ID", "SESSION", "CREATED", "EXPIRES", "STATE"
    );
    for s in &shares {
        let _ = writeln!(
            text,
            "{:<16}  {:<36}  {:<24}  {:<24}  {}",
            s.id,
            s.session_id,
            iso8601(s.created_at),
            expiry(s),
            s.state(now).as_str()
        );
    }
    if shares.is_empty() {
        text.push_str("(no shares yet: `podlog share SESSION` makes one)\n");
    }
    Ok(text)
}

fn revoke(store: &Store, id: &str) -> Result<String, String> {
    let before = store.share(id).map_err(|e| e.to_string())?;
    let after = store.revoke_share(id).map_err(|e| e.to_string())?;
    Ok(match before.revoked_at {
        Some(at) => format!(
            "share {id} of session {} was already revoked at {}\n",
            after.session_id,
            iso8601(at)
        ),
        None => format!("revoked share {id} of session {}\n", after.session_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_unit_and_are_never_zero() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("30m").unwrap(),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            parse_duration("24h").unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("7d").unwrap(),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(parse_duration("never").unwrap(), None);
        for bad in [
            "",
            "24",
            "h",
            "1.5h",
            "-1h",
            "1w",
            "1 h",
            "0h",
            "99999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.starts_with("bad duration"), "{bad:?}: {err}");
        }
    }
}
