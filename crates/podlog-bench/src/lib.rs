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
//! | P8 | [`fanout::measure_fanout`]: `podlog-server` streaming to 1,000 clients | the same with one client (latency); the expected deliveries |
//! | P9 | [`resume::measure_resume`]: bytes of a reconnect a few entries behind | the bytes of a fresh attach's snapshot |
//! | H1 | [`restored::measure_restored`]: a server's resident memory once it serves a restored [`huge`] session (10k entries, 1 GiB of tool output) | 64 MiB |
//! | H2 | the same run: bytes of a default first attach's snapshot event | 1 MiB; the `?tail=100` attach |
//! | H3 | [`restore::RestoreFixture::pod_restore`] on a 1M-entry session | the same on a 10k-entry session |
//! | H4 | [`huge::HugeFixture::measure_size`]: the database after a checkpoint | the session's JSONL export |
//! | S1 | [`search::SearchCorpus::measure`]: `Store::search` latency over a 1M-entry history | p50 20 ms, p99 100 ms |
//! | S2 | P1's durable append with the search index | the same with the index's triggers dropped |
//! | PG1 | P1's durable append on PostgreSQL (`synchronous_commit=on`) | [`pg::RawPgAppend`]: a raw client `INSERT` per transaction (and, for reference, with a `pg_notify` in it, or after it) |
//! | PG2 | [`append::GroupAppend`] on PostgreSQL: eight sessions at once | PG1's single-session rate |
//! | PG3 | [`pg::measure_follow`]: commit to a follower in another process ([`pg::follower_main`]) | p99 50 ms |
//!
//! [`quick()`] runs them (all, or those of [`QuickOptions::rows`]) and
//! returns a [`Report`] (what the
//! `podlog-bench` program, `src/main.rs`, prints). The benches in `benches/`
//! run the same functions: `suite` (criterion, P1 to P6), `memory` (P7 with
//! a counting allocator) and `fanout` (P8 and P9).
//!
//! Nothing here prints: progress goes to a callback, results are values
//! (the exceptions are [`fanout::client_main`], the client process of P8,
//! [`restored::server_main`], the server process of H1 and H2, and
//! [`pg::follower_main`], the follower process of PG3, which
//! write their reports to the writer they are given).
//! Every measurement checks that it did the work it timed (the entries are in
//! the mirror, the restore returned every entry) and fails with a
//! [`BenchError`] otherwise. Files go in the folder the caller names.

pub mod append;
pub mod baseline;
pub mod corpus;
pub mod error;
pub mod fanout;
pub mod follow;
pub mod huge;
pub mod memory;
pub mod mirror;
pub mod pg;
pub mod quick;
pub mod restore;
pub mod restored;
pub mod resume;
pub mod search;
pub mod sse_client;
pub mod stats;

pub use error::{BenchError, Result};
pub use memory::{CountingAlloc, HeapGauge, Mallinfo};
pub use quick::{
    quick, Outcome, PgTarget, QuickOptions, Report, Row, Scale, Selection, Target, GROUPS,
};

#[cfg(test)]
mod tests;
