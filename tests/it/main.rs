//! Whole-system integration tests of the `podlog` binary and crates, built
//! as one test binary (linking is the slow part of a test run on a small
//! machine): one module per area.

mod binary;
mod blobs;
mod browser;
mod child;
mod cli;
mod concurrency;
mod corrupt;
mod crash;
mod failover;
mod faults;
mod fixtures;
mod follow;
mod http_props;
mod import_props;
mod inspect;
mod lifecycle_cli;
mod pg_cli;
mod pg_follow;
mod pg_support;
mod pod;
mod redaction;
mod retention;
mod search;
mod server;
mod server_cli;
mod server_faults;
mod server_support;
mod share;
mod sql_audit;
mod stall;
mod support;
mod upgrade;
