//! The store-wide switches of a PostgreSQL store: the redaction switch,
//! [`PgStore::set_redaction`] and [`PgStore::redaction_enabled`], as the
//! SQLite store's `redaction.rs` has them.
//!
//! # Contract
//!
//! * The switch is the `redaction` row of `settings` (`on` when absent),
//!   read when the store opens ([`PgStore::open`]). [`PgStore::set_redaction`]
//!   writes the row (one statement, so one transaction) and applies the new
//!   setting to the store that changed it at once, for every write that
//!   starts after it returns; another process (or another `PgStore` in this
//!   one) with the schema open keeps its setting until it opens the store
//!   again.
//! * Switching on loads the redaction key from the host's key file, creating
//!   it if needed, before anything is written: a key that cannot be read or
//!   made fails the call and leaves the row and the store as they were.
//! * Switching off writes `off`; entries already written stay as they were
//!   written (redacted or not): history is not rewritten.

use std::sync::{Arc, PoisonError};

use super::{PgContext, PgStore};
use crate::redaction::{build, SETTING};
use crate::Result;

impl PgStore {
    /// Whether redaction is on for this store.
    pub fn redaction_enabled(&self) -> bool {
        self.redactor().is_some()
    }

    /// Switches redaction on or off for the store (the `settings` row), and
    /// for this `PgStore` at once. Switching on creates the key if needed.
    pub fn set_redaction(&self, on: bool) -> Result<()> {
        let redactor = if on {
            Some(Arc::new(build(&self.key_base)?))
        } else {
            None
        };
        let value = if on { "on" } else { "off" };
        self.with_client(|client| {
            client
                .execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&SETTING, &value],
                )
                .context(|| format!("changing the redaction setting of {}", self.location))
        })?;
        *self.redactor.lock().unwrap_or_else(PoisonError::into_inner) = redactor;
        Ok(())
    }
}
