//! Row P7 with an exact count: this binary installs podlog-bench's counting
//! global allocator, fills a mirror with a long session and prints the heap
//! it holds against the JSON text of its entries (method:
//! `podlog_bench::memory`). Run by `cargo bench -p podlog-bench`; prints,
//! asserts nothing.

use podlog_bench::memory::{measure_mirror, CountingAlloc, HeapGauge};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

fn main() {
    // `cargo bench -- FILTER` passes a filter; run only when it matches.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty()
        && !filter
            .iter()
            .any(|f| "p7_mirror_memory".contains(f.as_str()))
    {
        return;
    }
    let entries = 100_000;
    match measure_mirror(entries, &ALLOC) {
        Ok(Some(m)) => println!(
            "p7_mirror_memory: {} entries, heap {:.1} MiB, JSON {:.1} MiB, ratio {:.2}x \
             (target <= 2x; {})",
            m.entries,
            m.heap_bytes as f64 / 1048576.0,
            m.json_bytes as f64 / 1048576.0,
            m.ratio(),
            ALLOC.method()
        ),
        Ok(None) => println!("p7_mirror_memory: the counting allocator saw no allocation"),
        Err(e) => {
            eprintln!("p7_mirror_memory: {e}");
            std::process::exit(1);
        }
    }
}
