//! The BPE merge loop: characters in a doubly linked list, candidate merges of
//! adjacent symbols in a max-heap keyed by the merged piece's score.
//! O(n log n) in the number of characters.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::SpmTokenizer;

/// No neighbour.
const NONE: usize = usize::MAX;

/// A run of the normalized text; `len == 0` once merged into its left neighbour.
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// A possible merge of symbols `left` and `right` into a piece of `len` bytes.
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Candidate {
    /// Higher score first; on ties, the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The merge state for one piece of normalized text.
struct Merger<'a> {
    tok: &'a SpmTokenizer,
    text: &'a str,
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Candidate>,
}

impl Merger<'_> {
    /// Queues the merge of `left` and `right` if the result is a mergeable piece.
    fn consider(&mut self, left: usize, right: usize) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (&self.symbols[left], &self.symbols[right]);
        let len = l.len + r.len;
        if len > self.tok.max_piece_len {
            return;
        }
        let Some(piece) = self.text.get(l.start..l.start + len) else {
            return;
        };
        if let Some(id) = self.tok.text_piece_id(piece) {
            let score = self.tok.info[id as usize].0;
            self.heap.push(Candidate { score, left, right, len });
        }
    }
}

/// Appends the ids of `text` (already normalized: spaces as U+2581) to `out`.
pub(super) fn encode(tok: &SpmTokenizer, text: &str, out: &mut Vec<u32>) {
    let symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1).unwrap_or(NONE),
            next: if start + c.len_utf8() < text.len() { i + 1 } else { NONE },
        })
        .collect();
    let n = symbols.len();
    let mut m = Merger { tok, text, symbols, heap: BinaryHeap::with_capacity(n) };
    for i in 1..n {
        m.consider(i - 1, i);
    }
    while let Some(c) = m.heap.pop() {
        let (l, r) = (&m.symbols[c.left], &m.symbols[c.right]);
        // Stale: a side was merged away or grew since this pair was queued.
        // Symbols only grow or vanish, so equal lengths mean both are unchanged.
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len {
            continue;
        }
        let (prev, next) = (l.prev, r.next);
        m.symbols[c.left].len = c.len;
        m.symbols[c.left].next = next;
        m.symbols[c.right].len = 0;
        if next != NONE {
            m.symbols[next].prev = c.left;
        }
        m.consider(prev, c.left);
        m.consider(c.left, next);
    }
    // Symbol 0 is never merged into a left neighbour, so the list starts there.
    let mut i = if n == 0 { NONE } else { 0 };
    while i != NONE {
        let s = &m.symbols[i];
        tok.push_symbol(&text[s.start..s.start + s.len], out);
        i = s.next;
    }
}
