//! [`PgListener`]: following commits made by any process, on any host.
//!
//! # Contract
//!
//! * Every committed entry is announced on the store's channel (see
//!   [`PgStore::channel`]) by a notification carrying `<session>:<seq>` and
//!   nothing else, naming its seq or a later one of its session: a new
//!   session's `SessionStart` in its own transaction, a writer's appends
//!   within a few milliseconds of their commit, those of quick appends
//!   sharing one notification per session (`pg/announce.rs`). A follower
//!   reads every entry past the last seq it holds, so a notice of seq N
//!   stands for all before it. The entry is read from the table by seq, so
//!   a notification never hits the server's payload limit and a slow
//!   listener never holds up a commit.
//! * The server delivers a notification only once its transaction
//!   committed, and never one of a transaction that rolled back: a
//!   [`Notice`] always names an entry that a read finds.
//! * [`PgStore::listen`] opens a connection of its own and `LISTEN`s on it;
//!   notices of commits from then on arrive in commit order. Nothing is
//!   delivered for commits before it, or while the connection was down: a
//!   follower reads what it missed by seq (`entries_after`), which is also
//!   how it recovers from a lost connection (open a new listener, then
//!   read). A notification on the channel that is not `<session>:<seq>`
//!   (sent by something else than podlog) is passed over.
//! * [`PgListener::wait`] blocks for at most its timeout; a closed
//!   connection is an error, never a silent end.

use std::time::{Duration, Instant};

use podlog_entry::{Seq, SessionId};
use postgres::fallible_iterator::FallibleIterator;

use super::{PgContext, PgStore};
use crate::Result;

/// One commit announced: the session and the seq of the entry it added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub session: SessionId,
    pub seq: Seq,
}

impl Notice {
    /// Reads a notification's payload, `<session>:<seq>`. Session ids may
    /// hold `:`; the seq is after the last one.
    pub fn parse(payload: &str) -> Option<Self> {
        let (session, seq) = payload.rsplit_once(':')?;
        Some(Notice {
            session: SessionId::new(session).ok()?,
            seq: Seq(seq.parse().ok()?),
        })
    }
}

/// A connection listening to a store's commits. See the module docs.
pub struct PgListener {
    client: super::client::PgClient,
    channel: String,
}

impl std::fmt::Debug for PgListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgListener")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// `name` as a quoted SQL identifier. `LISTEN` takes no bound parameter.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgStore {
    /// Starts listening to this store's commits on a connection of its own.
    pub fn listen(&self) -> Result<PgListener> {
        let mut client = self.connect()?;
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
            .context(|| format!("listening on {} of {}", self.channel, self.location))?;
        Ok(PgListener {
            client,
            channel: self.channel.clone(),
        })
    }
}

impl PgListener {
    /// The next commit announced, waiting at most `timeout` for it; `None`
    /// when none came in time.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<Notice>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self
                .client
                .notifications()
                .timeout_iter(left)
                .next()
                .context(|| format!("waiting for commits on {}", self.channel))?;
            let Some(notification) = next else {
                return Ok(None);
            };
            if notification.channel() == self.channel {
                if let Some(notice) = Notice::parse(notification.payload()) {
                    return Ok(Some(notice));
                }
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    /// The commits announced, one by one, each waited for at most
    /// `timeout`: the iterator ends at the first wait that times out, and
    /// yields an error (then ends) if the connection fails.
    pub fn iter(&mut self, timeout: Duration) -> impl Iterator<Item = Result<Notice>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match self.wait(timeout) {
                Ok(notice) => notice.map(Ok),
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_a_session_and_the_seq_after_its_last_colon() {
        assert_eq!(
            Notice::parse("a:b:12"),
            Some(Notice {
                session: SessionId::new("a:b").unwrap(),
                seq: Seq(12)
            })
        );
        assert_eq!(Notice::parse("s-0001"), None);
        assert_eq!(Notice::parse("s-0001:x"), None);
        assert_eq!(Notice::parse(":3"), None, "an empty id is no session");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("podlog.a\"b"), "\"podlog.a\"\"b\"");
    }
}
