//! The criterion benches of rows P1 to P6, each beside its baseline (the
//! measurement code is `podlog_bench`'s, shared with the `podlog-bench`
//! program). Row P7 is the `memory` bench, P8 and P9 the `fanout` bench.
//! Files go in a temporary folder under Cargo's `CARGO_TARGET_TMPDIR`
//! (`target/tmp`), removed at the end.
//!
//! Sample sizes and measurement times are small so that the whole suite runs
//! in a few minutes on two cores; criterion reports means and spreads, the
//! quick mode (the `podlog-bench` program) the medians and ratios of the
//! table. A failed measurement ends the run with its message.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use podlog_bench::append::{GroupAppend, PodlogAppend};
use podlog_bench::baseline::{JsonlAppend, RawShape, RawSqliteAppend};
use podlog_bench::corpus::{shared_pool, Corpus};
use podlog_bench::mirror::{build_mirror, build_seed_mirror, Attach, PublishUnderAttach};
use podlog_bench::restore::RestoreFixture;
use podlog_entry::LogEntry;
use podlog_store::Synchronous;
use tempfile::TempDir;

/// The value, or the end of the run with the error's message.
fn ok<T>(result: podlog_bench::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

fn workdir() -> TempDir {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    match tempfile::Builder::new()
        .prefix("podlog-bench.")
        .tempdir_in(parent)
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a folder in {}: {e}", parent.display());
            std::process::exit(1);
        }
    }
}

/// Times `iters` entries in chunks, so that a fast side does not need
/// millions of entries generated at once: `run` gets each chunk, already
/// generated, and returns the time it took.
fn chunked(
    corpus: &mut Corpus,
    iters: u64,
    mut run: impl FnMut(Vec<LogEntry>) -> Duration,
) -> Duration {
    let mut left = iters as usize;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(1_024);
        total += run(corpus.take_vec(n));
        left -= n;
    }
    total
}

fn p1_durable_append(c: &mut Criterion) {
    let dir = workdir();
    let mut group = c.benchmark_group("p1_durable_append");
    group.throughput(Throughput::Elements(1));
    let mut corpus = Corpus::new(1);

    let mut ours = ok(PodlogAppend::open(
        "P1",
        dir.path(),
        "p1.db",
        Synchronous::Full,
    ));
    group.bench_function("podlog_full", |b| {
        b.iter_custom(|iters| chunked(&mut corpus, iters, |batch| ok(ours.run(batch))))
    });
    let mut jsonl = ok(JsonlAppend::open("P1", dir.path(), "p1.jsonl", true));
    group.bench_function("jsonl_fdatasync", |b| {
        b.iter_custom(|iters| chunked(&mut corpus, iters, |batch| ok(jsonl.run(&batch))))
    });
    let mut raw = ok(RawSqliteAppend::open(
        "P1",
        dir.path(),
        "p1-raw.db",
        Synchronous::Full,
        RawShape::Insert,
    ));
    group.bench_function("raw_sqlite_full", |b| {
        b.iter_custom(|iters| chunked(&mut corpus, iters, |batch| ok(raw.run(&batch))))
    });
    group.finish();
}

fn p2_normal_append(c: &mut Criterion) {
    let dir = workdir();
    let mut group = c.benchmark_group("p2_normal_append");
    group.throughput(Throughput::Elements(1));
    let mut corpus = Corpus::new(2);

    let mut ours = ok(PodlogAppend::open(
        "P2",
        dir.path(),
        "p2.db",
        Synchronous::Normal,
    ));
    group.bench_function("podlog_normal", |b| {
        b.iter_custom(|iters| chunked(&mut corpus, iters, |batch| ok(ours.run(batch))))
    });
    for (name, shape) in [
        ("raw_sqlite_normal", RawShape::Insert),
        ("raw_sqlite_counters_normal", RawShape::InsertWithCounters),
    ] {
        let mut raw = ok(RawSqliteAppend::open(
            "P2",
            dir.path(),
            &format!("{name}.db"),
            Synchronous::Normal,
            shape,
        ));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| chunked(&mut corpus, iters, |batch| ok(raw.run(&batch))))
        });
    }
    group.finish();
}

fn p3_group_commit(c: &mut Criterion) {
    let dir = workdir();
    let mut group = c.benchmark_group("p3_group_commit");
    let mut writers = ok(GroupAppend::open(
        "P3",
        dir.path(),
        "p3.db",
        Synchronous::Full,
        8,
    ));
    // One iteration: every writer appends one entry.
    group.throughput(Throughput::Elements(writers.writers() as u64));
    group.bench_function("podlog_8_sessions_full", |b| {
        b.iter_custom(|iters| ok(writers.run(iters as usize)))
    });
    group.finish();
}

fn p4_subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("p4_subscribe_with_snapshot");
    let pool: Vec<Arc<LogEntry>> = shared_pool(2, 4_096);
    for len in [1_000usize, 100_000, 1_000_000] {
        let sink = ok(build_mirror(&pool, len));
        group.bench_with_input(BenchmarkId::new("podlog", len), &sink, |b, sink| {
            b.iter(|| black_box(sink.subscribe_with_snapshot()))
        });
    }
    // The seed clones the whole mirror: tens of milliseconds per call.
    group.sampling_mode(SamplingMode::Flat);
    let seed = build_seed_mirror(&pool, 100_000);
    group.bench_with_input(
        BenchmarkId::new("seed_vec_clone", 100_000),
        &seed,
        |b, seed| b.iter(|| black_box(seed.subscribe_with_snapshot())),
    );
    group.finish();
}

fn p5_publish_while_attaching(c: &mut Criterion) {
    let mut group = c.benchmark_group("p5_publish_100k_mirror_100_subscribers");
    group.throughput(Throughput::Elements(1));
    let mut fixture = ok(PublishUnderAttach::new(shared_pool(3, 4_096), 100_000, 100));
    for (name, attach) in [("attaching", Attach::Loop), ("idle", Attach::None)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let run = ok(fixture.run(iters as usize, attach));
                Duration::from_nanos(run.latencies.iter().sum::<f64>() as u64)
            })
        });
    }
    group.finish();
}

fn p6_restore(c: &mut Criterion) {
    let dir = workdir();
    let mut group = c.benchmark_group("p6_restore_100k");
    group.sampling_mode(SamplingMode::Flat);
    let fixture = ok(RestoreFixture::build(dir.path(), "p6.db", 100_000));
    group.throughput(Throughput::Elements(fixture.len() as u64));
    group.bench_function("podlog_load_sink", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ok(fixture.podlog())).sum())
    });
    group.bench_function("raw_select_from_str", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ok(fixture.raw())).sum())
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = suite;
    config = config();
    targets = p1_durable_append, p2_normal_append, p3_group_commit, p4_subscribe,
        p5_publish_while_attaching, p6_restore
}
criterion_main!(suite);
