//! The mirror's storage: an append-only log of committed entries whose
//! views share its memory and are never copied, not even in part.
//!
//! # Why not a persistent vector alone
//!
//! A persistent vector (`imbl::Vector`) makes a snapshot O(1), but the next
//! push onto a vector that a snapshot still shares copies the shared tail
//! chunk and the path above it (hundreds of reference-count updates) under
//! the sink's lock. When clients attach often, nearly every publish pays
//! that copy.
//!
//! # How
//!
//! Entries live in fixed-size [`CHUNK`]-slot chunks of write-once cells
//! (`OnceLock`). The log is an `imbl::Vector` of `Arc`-shared chunks plus a
//! length; a view ([`Entries`]) is a clone of that vector (O(1)) plus the
//! range it covers. Appending fills the next cell of the last chunk in place:
//! a view never looks past its own end, and cells are written once, so
//! nothing a view can see ever changes and nothing needs copying. The vector
//! of chunks is pushed to once per [`CHUNK`] appends, so the copy-on-write of
//! its tail touches fewer than one publish in 256.
//!
//! Cells before a view's end are always filled: the log fills a cell before
//! it counts it, and views are taken under the same lock as appends (the
//! sink's), so the lock orders the write before any read through a view.

use std::fmt;
use std::sync::{Arc, OnceLock};

use imbl::Vector;
use podlog_entry::Committed;

/// Entries per chunk.
pub const CHUNK: usize = 256;

struct Chunk {
    cells: Box<[OnceLock<Committed>]>,
}

impl Chunk {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            cells: (0..CHUNK).map(|_| OnceLock::new()).collect(),
        })
    }
}

/// The writable log: the sink's mirror.
#[derive(Default)]
pub(crate) struct AppendLog {
    chunks: Vector<Arc<Chunk>>,
    len: usize,
}

impl AppendLog {
    /// A log holding `entries`, in order.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = Committed>) -> Self {
        let mut log = Self::default();
        for c in entries {
            log.push(c);
        }
        log
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `c`. Views taken before do not see it.
    pub(crate) fn push(&mut self, c: Committed) {
        let index = self.len;
        if index / CHUNK == self.chunks.len() {
            self.chunks.push_back(Chunk::new());
        }
        let chunk = self
            .chunks
            .get(index / CHUNK)
            .expect("the chunk for the next index was just ensured");
        // The cell is past every view's end and was never written: a log
        // only grows, and only through here.
        let filled = chunk.cells[index % CHUNK].set(c).is_ok();
        debug_assert!(filled, "cell {index} written twice");
        self.len += 1;
    }

    /// Drops whole chunks from the front while at least `keep` entries stay
    /// (never the last chunk). Views taken before keep their chunks.
    pub(crate) fn trim_front(&mut self, keep: usize) {
        while self.chunks.len() > 1 && self.len >= keep + CHUNK {
            self.chunks.pop_front();
            self.len -= CHUNK;
        }
    }

    /// The last entry.
    pub(crate) fn back(&self) -> Option<&Committed> {
        self.len.checked_sub(1).and_then(|i| cell(&self.chunks, i))
    }

    /// A view of every entry so far.
    pub(crate) fn view(&self) -> Entries {
        Entries {
            chunks: self.chunks.clone(),
            start: 0,
            end: self.len,
        }
    }
}

fn cell(chunks: &Vector<Arc<Chunk>>, index: usize) -> Option<&Committed> {
    chunks.get(index / CHUNK)?.cells[index % CHUNK].get()
}

/// A read-only range of a session's committed entries, in seq order: what a
/// [`Snapshot`](crate::Snapshot) holds and what a resubscribing receiver
/// missed. Shares memory with the mirror; cloning it and taking a sub-range
/// ([`Entries::skip`]) cost the same whatever the length.
#[derive(Clone, Default)]
pub struct Entries {
    chunks: Vector<Arc<Chunk>>,
    /// Index of the first entry in `chunks`' first chunk (below [`CHUNK`]
    /// once trimmed by `skip`).
    start: usize,
    /// One past the last entry, counted like `start`.
    end: usize,
}

impl Entries {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`th entry of the range.
    pub fn get(&self, index: usize) -> Option<&Committed> {
        if index >= self.len() {
            return None;
        }
        cell(&self.chunks, self.start + index)
    }

    /// The first entry.
    pub fn front(&self) -> Option<&Committed> {
        self.get(0)
    }

    /// The last entry.
    pub fn back(&self) -> Option<&Committed> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The range without its first `count` entries (empty if there are no
    /// more), sharing memory with this one.
    pub fn skip(&self, count: usize) -> Self {
        let start = self.start + count.min(self.len());
        let first_chunk = start / CHUNK;
        Self {
            chunks: self.chunks.skip(first_chunk),
            start: start - first_chunk * CHUNK,
            end: self.end - first_chunk * CHUNK,
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            chunks: self.chunks.iter(),
            cells: [].iter(),
            skip: self.start,
            remaining: self.len(),
        }
    }

    /// The entries, copied into a `Vec` (each entry's body stays shared).
    pub fn to_vec(&self) -> Vec<Committed> {
        self.iter().cloned().collect()
    }
}

/// Iterator over [`Entries`].
pub struct Iter<'a> {
    chunks: imbl::vector::Iter<'a, Arc<Chunk>, imbl::shared_ptr::DefaultSharedPtr>,
    cells: std::slice::Iter<'a, OnceLock<Committed>>,
    /// Cells to skip at the start of the first chunk.
    skip: usize,
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Committed;

    fn next(&mut self) -> Option<&'a Committed> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(cell) = self.cells.next() {
                self.remaining -= 1;
                return cell.get();
            }
            let chunk = self.chunks.next()?;
            let skip = std::mem::take(&mut self.skip);
            self.cells = chunk.cells[skip..].iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Committed;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Owning iterator over [`Entries`]: clones of the entries (each body stays
/// shared).
pub struct IntoIter {
    entries: Entries,
    next: usize,
}

impl Iterator for IntoIter {
    type Item = Committed;

    fn next(&mut self) -> Option<Committed> {
        let c = self.entries.get(self.next)?.clone();
        self.next += 1;
        Some(c)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.entries.len() - self.next;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for Entries {
    type Item = Committed;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter {
            entries: self,
            next: 0,
        }
    }
}

impl std::ops::Index<usize> for Entries {
    type Output = Committed;

    fn index(&self, index: usize) -> &Committed {
        match self.get(index) {
            Some(c) => c,
            None => panic!("index {index} out of range for {} entries", self.len()),
        }
    }
}

impl FromIterator<Committed> for Entries {
    fn from_iter<I: IntoIterator<Item = Committed>>(entries: I) -> Self {
        AppendLog::from_entries(entries).view()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Entries {}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlog_entry::{LogEntry, Seq};
    use proptest::prelude::*;

    fn committed(seq: u64) -> Committed {
        Committed::new(
            Seq(seq),
            LogEntry::TurnEnd {
                ts: seq,
                turn_count: seq,
            },
        )
    }

    fn seqs<'a>(entries: impl IntoIterator<Item = &'a Committed>) -> Vec<u64> {
        entries.into_iter().map(|c| c.seq.get()).collect()
    }

    #[test]
    fn a_view_keeps_its_range_while_the_log_grows() {
        let mut log = AppendLog::default();
        let mut views = Vec::new();
        for seq in 1..=3 * CHUNK as u64 + 7 {
            views.push(log.view());
            log.push(committed(seq));
        }
        for (len, view) in views.iter().enumerate() {
            assert_eq!(view.len(), len);
            assert_eq!(seqs(view), (1..=len as u64).collect::<Vec<_>>());
            let want_back = (len > 0).then_some(len as u64);
            assert_eq!(view.back().map(|c| c.seq.get()), want_back);
        }
        // The log's entries are shared with its views, not copied.
        let last = log.view();
        assert!(Arc::ptr_eq(&last[500].entry, &views[600][500].entry));
    }

    #[test]
    fn skipping_to_or_past_a_chunk_boundary_or_the_end_is_empty_or_exact() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK] {
            let all: Entries = (1..=len as u64).map(committed).collect();
            for cut in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK] {
                let rest = all.skip(cut);
                let want: Vec<u64> = (cut.min(len) as u64 + 1..=len as u64).collect();
                assert_eq!(seqs(&rest), want, "{len} entries, skip {cut}");
                assert_eq!(rest.len(), want.len());
                assert_eq!(
                    seqs(&rest.skip(1)),
                    want.iter().skip(1).copied().collect::<Vec<_>>()
                );
            }
        }
    }

    proptest! {
        #[test]
        fn skip_get_iter_and_into_iter_agree_with_a_vec(
            len in 0usize..4 * CHUNK,
            cuts in proptest::collection::vec(0usize..5 * CHUNK, 0..4),
        ) {
            let model: Vec<u64> = (1..=len as u64).collect();
            let mut view: Entries = model.iter().map(|&s| committed(s)).collect();
            let mut expected = model.clone();
            for cut in cuts {
                view = view.skip(cut);
                expected.drain(..cut.min(expected.len()));
                prop_assert_eq!(view.len(), expected.len());
                prop_assert_eq!(seqs(&view), expected.clone());
                prop_assert_eq!(view.iter().len(), expected.len());
                let owned: Vec<u64> = view.clone().into_iter().map(|c| c.seq.get()).collect();
                prop_assert_eq!(&owned, &expected);
                for (i, want) in expected.iter().enumerate() {
                    prop_assert_eq!(view.get(i).map(|c| c.seq.get()), Some(*want));
                }
                prop_assert!(view.get(expected.len()).is_none());
                prop_assert_eq!(view.front().map(|c| c.seq.get()), expected.first().copied());
                prop_assert_eq!(view.back().map(|c| c.seq.get()), expected.last().copied());
                let rebuilt: Entries = view.to_vec().into_iter().collect();
                prop_assert_eq!(&rebuilt, &view);
            }
        }
    }
}
