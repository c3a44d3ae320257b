//! Rows P8 and P9 against the real server: SSE fan-out to 1,000 clients at
//! 100 events/s, and the bytes of a resume 10 entries behind on a
//! 100k-entry session against a fresh snapshot (method: `podlog_bench::fanout`
//! and `podlog_bench::resume`). Not a timing loop, so not criterion: it
//! prints its figures and asserts nothing. The clients run in a second
//! process, this same binary started with `--fanout-clients SPEC`. Files go
//! under Cargo's `CARGO_TARGET_TMPDIR` (`target/tmp`).

use std::path::Path;

use podlog_bench::fanout::{client_main, measure_fanout, ClientLauncher, FanoutSpec};
use podlog_bench::restore::RestoreFixture;
use podlog_bench::resume::measure_resume;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--fanout-clients") {
        let Some(spec) = args.get(i + 1) else {
            fail("--fanout-clients", "needs a SPEC")
        };
        if let Err(e) = client_main(spec, &mut std::io::stdout().lock()) {
            fail("benchmark clients", e);
        }
        return;
    }
    // `cargo bench -- FILTER` passes a filter; run the rows it matches.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::Builder::new()
        .prefix("podlog-bench.")
        .tempdir_in(parent)
        .unwrap_or_else(|e| fail("creating a folder", e));

    if wanted("p8_sse_fanout") {
        let program = std::env::current_exe().unwrap_or_else(|e| fail("finding this program", e));
        let launcher = ClientLauncher::Command {
            program,
            args: vec!["--fanout-clients".to_owned()],
        };
        for clients in [1_000, 1] {
            let spec = FanoutSpec {
                clients,
                events: 300,
                rate: 100,
                history: 50,
            };
            let r = measure_fanout(dir.path(), &format!("p8-{clients}.db"), &spec, &launcher)
                .unwrap_or_else(|e| fail("p8_sse_fanout", e));
            println!(
                "p8_sse_fanout/{clients}_clients: {} of {} deliveries, {} of {clients} clients \
                 complete, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; server RSS per idle \
                 client {:.1} KiB, heap {:.1} KiB (targets: all delivered, p99 <= 50 ms, \
                 <= 64 KiB)",
                r.report.deliveries,
                r.expected,
                r.report.complete,
                r.report.latency_p50_ns as f64 / 1e6,
                r.report.latency_p99_ns as f64 / 1e6,
                r.report.latency_max_ns as f64 / 1e6,
                r.rss_per_client.unwrap_or(f64::NAN) / 1024.0,
                r.heap_per_client.unwrap_or(f64::NAN) / 1024.0,
            );
        }
    }
    if wanted("p9_resume") {
        let fixture = RestoreFixture::build(dir.path(), "p9.db", 100_000)
            .unwrap_or_else(|e| fail("p9_resume", e));
        let cost = measure_resume(&fixture, 10).unwrap_or_else(|e| fail("p9_resume", e));
        println!(
            "p9_resume: {} behind on {} entries: {} bytes vs {} for a fresh snapshot, ratio {:.2e} \
             (target <= 0.02)",
            cost.behind,
            cost.entries,
            cost.resume_bytes,
            cost.snapshot_bytes,
            cost.ratio()
        );
    }
}
