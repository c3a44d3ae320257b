//! podlog's benchmark suite: the measurement behind every row of the
//! performance table (issue 5, `docs/performance.md`), each against a
//! baseline measured in the same run, on the same disk, with the same entry
//! bodies.
//!
//! | row | podlog side | baseline |
//! |---|---|---|
//! | P1 | [`append::PodlogAppend`], `synchronous=FULL` | [`baseline::JsonlAppend`] with `fdatasync` (and, for reference, without; and [`baseline::RawSqliteAppend`] at FULL) |
//! | P2 | [`append::PodlogAppend`], `synchronous=NORMAL` | [`baseline::RawSqliteAppend`] at NORMAL |
//! | P3 | [`append::GroupAppend`]: sessions appending from their own threads through one store | P1's single-session rate |
//! | P4 | `subscribe_with_snapshot` on [`mirror::build_mirror`] mirrors | [`baseline::SeedSink`]'s whole-`Vec` clone; the short mirror |
//! | P5 | `publish` latency with [`mirror::PublishUnderAttach`] attaching | the same with nothing attaching |
//! | P6 | `Store::load_sink` on [`restore::RestoreFixture`] | [`baseline::raw_restore`] |
//! | P7 | [`memory::measure_mirror`] heap | the JSON text of the same entries |
//!
//! [`quick()`] runs them all and returns a [`Report`] (what `podlog bench`
//! prints); the criterion benches in `benches/` time the same functions.
//! Rows P8 and P9 need the HTTP/SSE server and are reported as not measured
//! until it exists.
//!
//! Nothing here prints: progress goes to a callback, results are values.
//! Every measurement checks that it did the work it timed (the entries are in
//! the mirror, the restore returned every entry) and fails with a
//! [`BenchError`] otherwise. Files go in the folder the caller names.

pub mod append;
pub mod baseline;
pub mod corpus;
pub mod error;
pub mod fanout;
pub mod memory;
pub mod mirror;
pub mod quick;
pub mod restore;
pub mod resume;
pub mod sse_client;
pub mod stats;

pub use error::{BenchError, Result};
pub use memory::{CountingAlloc, HeapGauge, Mallinfo};
pub use quick::{quick, Outcome, QuickOptions, Report, Row, Scale, Target};

#[cfg(test)]
mod tests;
