//! Identifiers and positions: [`SessionId`], [`Seq`], [`EntryRef`] and the
//! wall clock [`now_millis`].
//!
//! A position in the log is always a `(SessionId, Seq)` pair. `Seq` starts at
//! 1 for a session's first entry (its `SessionStart`) and grows by one per
//! committed entry with no gap. `Seq::ZERO` is the position *before* the first
//! entry: a snapshot of an empty mirror ends there, and a client that has seen
//! nothing resumes from there.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The id of a session row. Opaque text; podlog generates time-ordered ids
/// (see `podlog-store`), and imported logs keep the ids they carry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps `id`. Fails on an empty id or one with control characters or
    /// white space, which would make the CLI and the `sqlite3` views ambiguous.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let id = id.into();
        if id.is_empty()
            || id.len() > 128
            || id.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(InvalidSessionId(id));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = InvalidSessionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A session id that is empty, longer than 128 bytes, or holds white space or
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id {0:?}: want 1 to 128 characters with no white space")]
pub struct InvalidSessionId(pub String);

/// The position of an entry within its session: 1 for the `SessionStart`,
/// then one more per committed entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The position before the first entry.
    pub const ZERO: Seq = Seq(0);
    /// The position of a session's `SessionStart`.
    pub const FIRST: Seq = Seq(1);

    /// The next position.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A reference to one committed entry: used by `SessionStart` to say which
/// session and position a fork or compaction started from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryRef {
    pub session_id: SessionId,
    pub seq: Seq,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.session_id, self.seq)
    }
}

/// Milliseconds since the Unix epoch, from the system clock. Ordering in the
/// log never depends on it (see [`Seq`]); it is for people reading the log.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A source of timestamps, injected so that tests and fixtures are
/// deterministic.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        now_millis()
    }
}

/// A clock that starts at a fixed instant and advances by a fixed step on
/// every reading.
#[derive(Debug)]
pub struct StepClock {
    next: std::sync::atomic::AtomicU64,
    step: u64,
}

impl StepClock {
    /// A clock whose first reading is `start` and each later one `step` more.
    pub fn new(start: u64, step: u64) -> Self {
        Self {
            next: std::sync::atomic::AtomicU64::new(start),
            step,
        }
    }
}

impl Clock for StepClock {
    fn now_millis(&self) -> u64 {
        self.next
            .fetch_add(self.step, std::sync::atomic::Ordering::Relaxed)
    }
}
