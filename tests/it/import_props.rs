//! Guards against an importer that half-writes or accepts garbage: random
//! corruptions of a valid export (lines deleted, duplicated, swapped, cut
//! short, bytes changed, seqs shifted, junk inserted) are imported into a
//! fresh database. Whatever the input, import must not panic; a refused
//! file must name its line and leave the database empty; an accepted file
//! must pass `verify`.

use std::sync::Arc;

use podlog_entry::StepClock;
use podlog_store::{SequentialIds, Store, StoreOptions, Synchronous};
use proptest::prelude::*;

use crate::support::TempDb;

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Truncate(usize, usize),
    Byte(usize, usize, u8),
    ShiftSeq(usize, i64),
    Junk(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Truncate(a, b)),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(a, b, c)| Mutation::Byte(a, b, c)),
        (any::<usize>(), -3i64..4).prop_map(|(a, d)| Mutation::ShiftSeq(a, d)),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(a, s)| Mutation::Junk(a, s)),
    ]
}

fn apply(lines: &mut Vec<String>, m: &Mutation) {
    let n = lines.len();
    if n == 0 {
        return;
    }
    match m {
        Mutation::Delete(i) => {
            lines.remove(i % n);
        }
        Mutation::Duplicate(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::Swap(a, b) => lines.swap(a % n, b % n),
        Mutation::Truncate(i, k) => {
            let l = &mut lines[i % n];
            let cut = k % (l.len() + 1);
            let cut = (0..=cut)
                .rev()
                .find(|c| l.is_char_boundary(*c))
                .unwrap_or(0);
            l.truncate(cut);
        }
        Mutation::Byte(i, k, b) => {
            let mut bytes = lines[i % n].clone().into_bytes();
            if !bytes.is_empty() {
                let at = k % bytes.len();
                bytes[at] = *b;
            }
            lines[i % n] = String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::ShiftSeq(i, d) => {
            let l = &mut lines[i % n];
            if let Some(pos) = l.find("\"seq\":") {
                let start = pos + 6;
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(l.len(), |e| start + e);
                if let Ok(seq) = l[start..end].parse::<i64>() {
                    l.replace_range(start..end, &(seq + d).to_string());
                }
            }
        }
        Mutation::Junk(i, s) => lines.insert(i % (n + 1), s.clone()),
    }
}

fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/logs/compaction_chain.jsonl"
    ))
    .unwrap();
    text.lines().map(str::to_owned).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn corrupted_exports_are_refused_whole_or_imported_clean(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut lines = fixture_lines();
        for m in &mutations {
            apply(&mut lines, m);
        }
        let input = lines.join("\n");
        let db = TempDb::new();
        let store = Store::open(&db.path, StoreOptions {
            synchronous: Synchronous::Normal,
            clock: Arc::new(StepClock::new(0, 1)),
            ids: Arc::new(SequentialIds::new("p")),
            ..StoreOptions::default()
        }).unwrap();
        match store.import(input.as_bytes(), |_| {}) {
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains("line "), "names a line: {}", message);
                prop_assert!(store.sessions().unwrap().is_empty(), "nothing written after: {}", message);
            }
            Ok(transfer) => {
                let problems = store.verify(None).unwrap();
                prop_assert!(problems.is_empty(), "accepted input verifies clean: {:?}", problems);
                let stored: u64 = store.sessions().unwrap().iter().map(|s| s.as_ref().unwrap().entry_count).sum();
                prop_assert_eq!(stored, transfer.entries);
            }
        }
    }
}
