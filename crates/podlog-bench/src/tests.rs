//! Unit tests of the benchmark suite: every measurement runs at a tiny size
//! and returns sane figures (positive, finite, with its own checks passed),
//! the corpus is deterministic and realistic, and the statistics are right.
//! No test looks at how fast anything is.

use std::alloc::{GlobalAlloc, Layout};
use std::io::Read;
use std::sync::{Mutex, MutexGuard, PoisonError};

use podlog_entry::{Conversation, LogEntry};

use crate::corpus::{Corpus, MAX_TOOL_OUTPUT, MIN_TOOL_OUTPUT};
use crate::fanout::ClientLauncher;
use crate::huge::{HugeCorpus, HugeSpec, MIN_ENTRIES, MIN_LARGE_OUTPUT};
use crate::memory::{measure_mirror, CountingAlloc, HeapGauge, Mallinfo};
use crate::pg::{BenchSchema, FollowerLauncher};
use crate::quick::{
    count, quick, Outcome, PgTarget, QuickOptions, Scale, Selection, Target, GROUPS,
};
use crate::restore::RestoreFixture;
use crate::restored::ServerLauncher;
use crate::sse_client::FrameMeter;
use crate::stats::{median, percentile};

/// Measurements read the process's heap and time threads: run them one at
/// a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn the_corpus_is_deterministic_and_mixes_kinds_and_sizes() {
    let _guard = serial();
    let a = Corpus::new(3).take_vec(300);
    let b = Corpus::new(3).take_vec(300);
    assert_eq!(a, b);
    assert_ne!(a, Corpus::new(4).take_vec(300));

    let mut kinds: Vec<&str> = a.iter().map(LogEntry::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "assistant_item",
            "llm_usage",
            "run_completed",
            "system_item",
            "tool_result",
            "turn_end",
            "user_input"
        ]
    );
    let outputs: Vec<usize> = a
        .iter()
        .filter_map(|e| match e {
            LogEntry::ToolResult { output, .. } => Some(output.len()),
            _ => None,
        })
        .collect();
    assert!(outputs.len() > 20, "{outputs:?}");
    assert!(outputs
        .iter()
        .all(|&n| (MIN_TOOL_OUTPUT..=MAX_TOOL_OUTPUT).contains(&n)));
    assert!(outputs.iter().any(|&n| n < 1024), "{outputs:?}");
    assert!(outputs.iter().any(|&n| n > 2048), "{outputs:?}");
    assert!(a.iter().all(|e| !e.is_session_start()));
}

#[test]
fn median_and_percentile_pick_the_right_element() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    assert!(median(&[]).is_nan());
    let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    assert_eq!(percentile(&hundred, 99.0), 99.0);
    assert_eq!(percentile(&hundred, 100.0), 100.0);
    assert_eq!(percentile(&hundred, 50.0), 50.0);
    assert_eq!(percentile(&hundred, 0.0), 1.0);
    assert_eq!(percentile(&[7.0], 99.0), 7.0);
}

#[test]
fn counts_print_short() {
    assert_eq!(count(1_000), "1k");
    assert_eq!(count(100_000), "100k");
    assert_eq!(count(1_000_000), "1M");
    assert_eq!(count(1_500), "1500");
    assert_eq!(count(7), "7");
}

#[test]
fn the_counting_allocator_tracks_live_bytes() {
    let counter = CountingAlloc::new();
    assert_eq!(counter.live_bytes(), None, "nothing allocated yet");
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: the layout has a non-zero size; each pointer is released with
    // the layout it was allocated or reallocated with.
    unsafe {
        let p = counter.alloc(layout);
        assert!(!p.is_null());
        assert_eq!(counter.live_bytes(), Some(100));
        let q = counter.realloc(p, layout, 300);
        assert!(!q.is_null());
        assert_eq!(counter.live_bytes(), Some(300));
        let z = counter.alloc_zeroed(layout);
        assert_eq!(counter.live_bytes(), Some(400));
        counter.dealloc(z, layout);
        counter.dealloc(q, Layout::from_size_align(300, 8).unwrap());
    }
    assert_eq!(counter.live_bytes(), Some(0));
}

#[test]
fn mallinfo_sees_the_mirror_grow_with_its_entries() {
    let _guard = serial();
    let small = measure_mirror(500, &Mallinfo).unwrap();
    let large = measure_mirror(5_000, &Mallinfo).unwrap();
    let (Some(small), Some(large)) = (small, large) else {
        // Not glibc: the gauge says it cannot see the heap.
        assert_eq!(Mallinfo.live_bytes(), None);
        return;
    };
    assert_eq!(small.entries, 500);
    assert_eq!(large.entries, 5_000);
    assert!(small.json_bytes > 500 * 40, "{small:?}");
    assert!(
        large.json_bytes > 9 * small.json_bytes,
        "{small:?} {large:?}"
    );
    // The mirror holds at least the entries' text and grows with them.
    assert!(large.heap_bytes > large.json_bytes / 2, "{large:?}");
    assert!(
        large.heap_bytes > 5 * small.heap_bytes,
        "{small:?} {large:?}"
    );
    assert!(large.ratio().is_finite());
}

#[test]
fn a_quick_run_measures_every_row() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut heard = Vec::new();
    let report = quick(
        &QuickOptions {
            dir: dir.path().to_owned(),
            repeats: 2,
            scale: Scale::tiny(),
            clients: ClientLauncher::InProcess,
            server: ServerLauncher::InProcess,
            rows: Selection::all(),
            postgres: None,
        },
        &Mallinfo,
        &mut |what| heard.push(what.to_owned()),
    )
    .unwrap();

    let ids: Vec<&str> = report.rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "P1",
            "P1-nosync",
            "P1-sqlite",
            "P2",
            "P2-sql",
            "P3",
            "P4",
            "P4-scale",
            "P5",
            "P5-paced",
            "P6",
            "P7",
            "P8",
            "P8-delivery",
            "P8-memory",
            "P8-cpu",
            "P9",
            "H1",
            "H1-peak",
            "H2",
            "H2-tail",
            "H3",
            "H4",
            "H4-payloads",
            "H4-search",
            "F1",
            "F2",
            "S1",
            "S1-p99",
            "S2",
            "S2-normal",
            "R1",
            "R1-secrets",
            "R1-normal"
        ],
        "{report}"
    );
    let mut measured = vec![
        "P1",
        "P1-nosync",
        "P1-sqlite",
        "P2",
        "P2-sql",
        "P3",
        "P4",
        "P4-scale",
        "P5",
        "P5-paced",
        "P6",
        "P8",
        "P8-delivery",
        "P9",
        "H3",
        "H4",
        "S2",
        "S2-normal",
    ];
    if Mallinfo.live_bytes().is_some() {
        measured.push("P7");
    }
    for id in measured {
        let row = report.row(id).unwrap();
        let ours = row.ours.unwrap().value;
        let baseline = row.baseline.unwrap().value;
        let ratio = row.ratio.unwrap();
        for (name, x) in [("ours", ours), ("baseline", baseline), ("ratio", ratio)] {
            assert!(x.is_finite() && x > 0.0, "{id} {name} = {x}: {row:?}");
        }
        let expected = match row.target {
            Target::RatioAtLeast(t) => Some(ratio >= t),
            Target::RatioAtMost(t) => Some(ratio <= t),
            Target::OursAtMost(t, _) => Some(ours <= t),
            Target::Reference => None,
        };
        match expected {
            Some(true) => assert_eq!(row.outcome, Outcome::Met, "{row:?}"),
            Some(false) => assert_eq!(row.outcome, Outcome::Missed, "{row:?}"),
            None => assert_eq!(row.outcome, Outcome::Reference, "{row:?}"),
        }
    }
    // Every live event reached every client, in order.
    let delivery = report.row("P8-delivery").unwrap();
    assert_eq!(delivery.ratio, Some(1.0), "{delivery:?}");
    assert_eq!(delivery.outcome, Outcome::Met, "{delivery:?}");
    // The resume sent less than the snapshot of the same session.
    assert!(report.row("P9").unwrap().ratio.unwrap() < 1.0);
    // Memory per client is a figure (possibly zero at this size), not a ratio.
    let memory = report.row("P8-memory").unwrap();
    assert!(memory.ours.unwrap().value.is_finite(), "{memory:?}");
    assert_eq!((memory.baseline, memory.ratio), (None, None));
    assert!(memory.note.as_deref().unwrap().contains("in this process"));
    // The rows without a baseline: a figure and its target, or a reference.
    let alone = |id: &str| {
        let row = report.row(id).unwrap();
        assert_eq!((row.baseline, row.ratio), (None, None), "{row:?}");
        let ours = row.ours.unwrap().value;
        assert!(ours.is_finite() && ours > 0.0, "{row:?}");
        match row.target {
            Target::OursAtMost(t, _) if ours <= t => assert_eq!(row.outcome, Outcome::Met),
            Target::OursAtMost(..) => assert_eq!(row.outcome, Outcome::Missed),
            _ => assert_eq!(row.outcome, Outcome::Reference, "{row:?}"),
        }
        ours
    };
    let (rss, peak) = (alone("H1"), alone("H1-peak"));
    assert!(peak >= rss, "VmHWM {peak} < VmRSS {rss}");
    assert!(report
        .row("H1")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("in this process"));
    // The tail-first attach holds 10 of the 300 entries: it is the smaller.
    let (first, tail_kib) = (alone("H2"), alone("H2-tail"));
    assert!(
        tail_kib / 1024.0 < first,
        "tail {tail_kib} KiB, whole {first} MiB"
    );
    assert!(report
        .row("H2-tail")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .starts_with("10 entries"));
    // Half the output repeats: the database holds it once (the search
    // index, which indexes each entry's output, aside).
    let h4 = report.row("H4").unwrap();
    let search = alone("H4-search");
    let without_index = (h4.ours.unwrap().value - search) / h4.baseline.unwrap().value;
    assert!(without_index < 0.8, "{without_index}: {report}");
    let payloads = alone("H4-payloads");
    assert!(payloads < h4.ours.unwrap().value);
    // Every entry another connection committed reached the follower, and
    // the idle share is a share.
    let follow = alone("F1");
    assert!(follow < 10_000.0, "F1 p99 {follow} ms");
    assert!(report
        .row("F1")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .starts_with("20 entries"));
    let idle = report.row("F2").unwrap().ours.unwrap().value;
    assert!((0.0..=200.0).contains(&idle), "F2 {idle}%");
    // Search answered, in well under the time a tiny history allows.
    let (p50, p99) = (alone("S1"), alone("S1-p99"));
    assert!(p50 <= p99 && p99 < 10_000.0, "S1 {p50} ms, {p99} ms");
    assert!(report
        .row("S1")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("rare term"));
    let redaction = report.row("R1").unwrap().ours.unwrap().value;
    assert!(redaction > 0.0, "R1 {redaction}/s");
    // Without a PostgreSQL server the PG rows are skipped, saying why.
    assert!(
        heard
            .iter()
            .any(|h| h.starts_with("PG1, PG2, PG3: skipped: they need a PostgreSQL server")),
        "{heard:?}"
    );
    assert_eq!(heard.len(), 20, "{heard:?}");

    let table = report.to_string();
    for id in ids {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{id} missing from\n{table}"
        );
    }
    assert!(
        table.contains("P8-delivery: 4 of 4 clients got every event in order"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("H1: ") && l.contains("; the session: 300 entries in ")),
        "{table}"
    );
    // The run's files are gone; the folder given stays.
    assert!(!report.workdir.exists());
    assert!(dir.path().is_dir());
}

#[test]
fn only_the_selected_rows_are_shown_and_what_they_need_still_runs() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut heard = Vec::new();
    let report = quick(
        &QuickOptions {
            dir: dir.path().to_owned(),
            repeats: 1,
            scale: Scale::tiny(),
            clients: ClientLauncher::InProcess,
            server: ServerLauncher::InProcess,
            rows: "p3, P9,H4".parse().unwrap(),
            postgres: None,
        },
        &Mallinfo,
        &mut |what| heard.push(what.to_owned()),
    )
    .unwrap();
    let ids: Vec<&str> = report.rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        ["P3", "P9", "H4", "H4-payloads", "H4-search"],
        "{report}"
    );
    // P3's baseline is P1's rate and P9 serves P6's session: both ran.
    assert!(heard[0].starts_with("P1:"), "{heard:?}");
    assert!(heard.iter().any(|h| h.starts_with("P6:")), "{heard:?}");
    assert!(!heard.iter().any(|h| h.starts_with("H1, H2:")), "{heard:?}");
    assert!(report.row("P3").unwrap().baseline.unwrap().value > 0.0);
    assert!(report
        .row("H4")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("the session: 300 entries"));
}

#[test]
fn a_selection_names_groups_in_any_case_and_keeps_the_table_order() {
    let all = Selection::all();
    assert_eq!(all.groups(), GROUPS);
    assert_eq!("all".parse::<Selection>().unwrap(), all);
    let some: Selection = " h4 ,P1,h1,P1".parse().unwrap();
    assert_eq!(some.groups(), ["P1", "H1", "H4"]);
    assert!(some.has("H1") && !some.has("H2") && !some.has("P2"));
    for bad in ["", ",", "P10", "H1,X"] {
        let e = bad.parse::<Selection>().unwrap_err();
        assert!(e.contains("P1,P2"), "{bad:?}: {e}");
    }
}

#[test]
fn the_long_session_is_deterministic_closed_and_half_repeats() {
    let spec = HugeSpec {
        entries: 400,
        output_bytes: 6 << 20,
        seed: 5,
    };
    let corpus = HugeCorpus::plan(&spec);
    let entries: Vec<LogEntry> = corpus.entries().collect();
    assert_eq!(entries.len(), 400);
    assert!(entries[0].is_session_start());
    assert!(entries[1..].iter().all(|e| !e.is_session_start()));
    assert!(matches!(
        entries.last(),
        Some(LogEntry::RunCompleted { .. })
    ));
    // Every call has its result: no run is left open.
    let conversation = Conversation::from_entries(&entries);
    assert!(conversation.pending_calls.is_empty());
    let runs = entries.iter().filter(|e| e.ends_run()).count();
    let inputs = entries.iter().filter(|e| e.kind() == "user_input").count();
    assert_eq!(runs, inputs);
    let stats = corpus.stats().clone();
    assert_eq!((stats.entries, stats.runs), (400, runs as u64));

    let outputs: Vec<&str> = entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::ToolResult { output, .. } => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len() as u64, stats.tool_results);
    let share = outputs.len() as f64 / entries.len() as f64;
    assert!((0.15..0.35).contains(&share), "{share}");
    let total: u64 = outputs.iter().map(|o| o.len() as u64).sum();
    assert_eq!(total, stats.output_bytes);
    assert_eq!(total, spec.output_bytes);
    // Repeats are exact copies of earlier outputs, about half the bytes.
    let mut seen = std::collections::HashSet::new();
    let repeated: u64 = outputs
        .iter()
        .filter(|o| !seen.insert(**o))
        .map(|o| o.len() as u64)
        .sum();
    assert!(repeated >= stats.repeated_bytes, "{repeated} {stats:?}");
    assert!((0.4..0.6).contains(&stats.repeated_share()), "{stats:?}");
    let large: Vec<&&str> = outputs.iter().filter(|o| o.len() >= 8 * 1024).collect();
    assert_eq!(large.len() as u64, stats.large_results);
    assert!(large.iter().all(|o| o.len() >= MIN_LARGE_OUTPUT));
    let distinct: std::collections::HashSet<&&&str> = large.iter().collect();
    assert_eq!(distinct.len() as u64, stats.distinct_large);
    assert!(outputs.iter().any(|o| o.len() < 8 * 1024));
    assert!(outputs.iter().any(|o| o.contains(" ... ok\n")));
    assert!(outputs.iter().any(|o| o.contains("   Compiling ")));
    assert!(outputs.iter().any(|o| o.contains("\tpub fn ")));

    // The same spec gives the same export, byte for byte; another seed not.
    let jsonl = |spec: &HugeSpec| {
        let mut text = String::new();
        HugeCorpus::plan(spec)
            .jsonl()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let text = jsonl(&spec);
    assert_eq!(text, jsonl(&spec));
    assert_ne!(
        text,
        jsonl(&HugeSpec {
            seed: 6,
            ..spec.clone()
        })
    );
    assert_eq!(text.lines().count(), 401);
    assert!(
        text.starts_with("{\"type\":\"podlog.session\""),
        "{}",
        &text[..80]
    );
}

#[test]
fn the_long_session_has_exactly_the_entries_asked_for() {
    for entries in [0, MIN_ENTRIES, MIN_ENTRIES + 1, 10, 23, 57, 1_000] {
        let corpus = HugeCorpus::plan(&HugeSpec {
            entries,
            output_bytes: 1 << 20,
            seed: entries as u64,
        });
        let all: Vec<LogEntry> = corpus.entries().collect();
        assert_eq!(all.len(), entries.max(MIN_ENTRIES), "{entries}");
        assert!(
            matches!(all.last(), Some(LogEntry::RunCompleted { .. })),
            "{entries}"
        );
        assert!(
            Conversation::from_entries(&all).pending_calls.is_empty(),
            "{entries}"
        );
    }
}

#[test]
fn the_frame_meter_sizes_the_first_message_and_keeps_only_short_data() {
    let stream = b": heartbeat\n\nid: s-1:7\nevent: snapshot\ndata: {\"a\":1}\ndata: {\"b\":2}\n\nid: s-1:8\n";
    let message = "id: s-1:7\nevent: snapshot\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n".len() as u64;
    // Whatever the pieces the bytes arrive in.
    for piece in [1, 2, 5, stream.len()] {
        let mut meter = FrameMeter::new(64);
        let mut done = false;
        for chunk in stream.chunks(piece) {
            if meter.feed(chunk) {
                done = true;
                break;
            }
        }
        assert!(done, "{piece}");
        let frame = meter.finish(1_000);
        assert_eq!(frame.bytes, message, "{piece}");
        assert_eq!(frame.id_seq(), Some(7));
        assert_eq!(frame.event, "snapshot");
        assert_eq!(frame.data.as_deref(), Some("{\"a\":1}\n{\"b\":2}"));
        assert_eq!(frame.wire_bytes, 1_000);
    }
    // Data over the bytes to keep is counted, not kept.
    let mut meter = FrameMeter::new(4);
    assert!(meter.feed(b"event: snapshot\ndata: 0123456789\n\n"));
    let frame = meter.finish(0);
    assert_eq!(frame.bytes, 34);
    assert_eq!(frame.data, None);
    // A stream that ends inside its message never ends it.
    assert!(!FrameMeter::new(4).feed(b"event: snapshot\ndata: 01\n"));
}

#[test]
fn a_closed_restore_fixture_restores_a_pod_that_writes_nothing() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    // The corpus's first run is longer than 4 entries: a 5-entry session
    // of it ends inside that run.
    let open = RestoreFixture::build(dir.path(), "open.db", 5).unwrap();
    let e = open.pod_restore().unwrap_err().to_string();
    assert!(e.contains("want 5"), "{e}");
    for len in [1, 2, 5, 50, 137] {
        let closed =
            RestoreFixture::build_closed("H3", dir.path(), &format!("c{len}.db"), len).unwrap();
        // Twice: the first pod gave its writer back.
        for _ in 0..2 {
            let t = closed.pod_restore().unwrap();
            assert!(t > std::time::Duration::ZERO);
        }
        let entries = closed.store().entries(closed.session()).unwrap();
        assert_eq!(entries.len(), len);
        assert!(open_run_free(&entries), "{len}");
    }
}

/// Whether every user input in `entries` is followed by its run's end.
fn open_run_free(entries: &[podlog_entry::Committed]) -> bool {
    let mut open = false;
    for c in entries {
        match &*c.entry {
            LogEntry::UserInput { .. } => open = true,
            e if e.ends_run() => open = false,
            _ => {}
        }
    }
    !open
}

/// The PostgreSQL server of the PG rows' test: `PODLOG_TEST_PG`, else the
/// project's loopback server. The test fails when it does not answer.
fn test_pg_url() -> String {
    std::env::var("PODLOG_TEST_PG")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

#[test]
fn the_pg_rows_measure_against_the_server() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut heard = Vec::new();
    let report = quick(
        &QuickOptions {
            dir: dir.path().to_owned(),
            repeats: 2,
            scale: Scale::tiny(),
            clients: ClientLauncher::InProcess,
            server: ServerLauncher::InProcess,
            rows: "PG1,PG2,PG3".parse().unwrap(),
            postgres: Some(PgTarget {
                url: test_pg_url(),
                follower: FollowerLauncher::InProcess,
            }),
        },
        &Mallinfo,
        &mut |what| heard.push(what.to_owned()),
    )
    .unwrap_or_else(|e| panic!("the PG rows against {}: {e}", test_pg_url()));
    let ids: Vec<&str> = report.rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "PG1",
            "PG1-notify",
            "PG1-after",
            "PG2",
            "PG2-raw",
            "PG2-raw-notify",
            "PG3"
        ],
        "{report}"
    );
    assert_eq!(heard.len(), 3, "{heard:?}");
    for id in [
        "PG1",
        "PG1-notify",
        "PG1-after",
        "PG2",
        "PG2-raw",
        "PG2-raw-notify",
    ] {
        let row = report.row(id).unwrap();
        let (ours, baseline, ratio) = (
            row.ours.unwrap().value,
            row.baseline.unwrap().value,
            row.ratio.unwrap(),
        );
        for (name, x) in [("ours", ours), ("baseline", baseline), ("ratio", ratio)] {
            assert!(x.is_finite() && x > 0.0, "{id} {name} = {x}: {row:?}");
        }
        let want = match row.target {
            Target::RatioAtLeast(t) if ratio >= t => Outcome::Met,
            Target::RatioAtLeast(_) => Outcome::Missed,
            Target::Reference => Outcome::Reference,
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(row.outcome, want, "{row:?}");
    }
    assert!(report
        .row("PG1")
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .starts_with(
            "3 entries per repetition, the sides taking turns every 100; \
             per repetition, ours/baseline: "
        ));
    // PG2's baseline is PG1's rate, measured in the same run.
    assert_eq!(
        report.row("PG2").unwrap().baseline,
        report.row("PG1").unwrap().ours
    );
    let pg3 = report.row("PG3").unwrap();
    assert_eq!((pg3.baseline, pg3.ratio), (None, None), "{pg3:?}");
    let p99 = pg3.ours.unwrap().value;
    assert!((0.0..10_000.0).contains(&p99), "{pg3:?}");
    let Target::OursAtMost(t, _) = pg3.target else {
        panic!("{:?}", pg3.target);
    };
    let want = if p99 <= t {
        Outcome::Met
    } else {
        Outcome::Missed
    };
    assert_eq!(pg3.outcome, want, "{pg3:?}");
    let note = pg3.note.as_deref().unwrap();
    assert!(
        note.starts_with("20 entries") && note.contains("in this process"),
        "{note}"
    );
    let table = report.to_string();
    for id in ids {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{id} missing from\n{table}"
        );
    }
}

#[test]
fn a_bench_schema_is_made_fresh_and_dropped_with_its_tables() {
    let url = test_pg_url();
    let exists = |client: &mut postgres::Client, name: &str| -> bool {
        client
            .query_one(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                &[&name],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    };
    let mut admin = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
    let a = BenchSchema::create("test", &url).unwrap();
    let b = BenchSchema::create("test", &url).unwrap();
    assert_ne!(a.url(), b.url());
    let name = a
        .url()
        .rsplit_once("%3D")
        .map(|(_, n)| n.to_owned())
        .unwrap();
    assert!(name.starts_with("podlog_bench_"), "{name}");
    assert!(exists(&mut admin, &name));
    // The URL puts a connection's tables in the schema.
    let mut inside = postgres::Client::connect(a.url(), postgres::NoTls).unwrap();
    inside.batch_execute("CREATE TABLE t (x int)").unwrap();
    let schema: String = inside
        .query_one("SELECT current_schema()", &[])
        .unwrap()
        .get(0);
    assert_eq!(schema, name);
    drop(inside);
    a.drop_now().unwrap();
    assert!(!exists(&mut admin, &name));
    // Dropping the value drops the schema too.
    let other = b
        .url()
        .rsplit_once("%3D")
        .map(|(_, n)| n.to_owned())
        .unwrap();
    assert!(exists(&mut admin, &other));
    drop(b);
    assert!(!exists(&mut admin, &other));
}
