//! Vocabulary storage: every piece packed into one string, plus an
//! open-addressing hash table from piece text to id.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::{Error, Result};

/// The vocabulary strings, packed: piece `i` is `text[offsets[i]..offsets[i + 1]]`.
#[derive(Clone)]
pub(super) struct Pieces {
    text: String,
    offsets: Vec<u32>,
}

impl Pieces {
    /// Packs `pieces`. Fails if there are `u32::MAX` or more of them, or if
    /// their total length does not fit in a `u32` offset.
    pub(super) fn new(pieces: &[String]) -> Result<Self> {
        if pieces.len() >= u32::MAX as usize {
            return Err(Error::overflow("tokenizer vocabulary size"));
        }
        let total = pieces
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.len()))
            .filter(|&t| t <= u32::MAX as usize)
            .ok_or_else(|| Error::overflow("tokenizer vocabulary text"))?;
        let mut text = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(pieces.len() + 1);
        offsets.push(0);
        for p in pieces {
            text.push_str(p);
            // Cannot truncate: the total was checked above.
            offsets.push(text.len() as u32);
        }
        Ok(Pieces { text, offsets })
    }

    /// Number of pieces.
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Piece `id`, or `None` if out of range.
    pub(super) fn get(&self, id: usize) -> Option<&str> {
        let start = *self.offsets.get(id)? as usize;
        let end = *self.offsets.get(id.checked_add(1)?)? as usize;
        self.text.get(start..end)
    }
}

/// Marks a free slot; ids are always below `u32::MAX` (checked by [`Pieces::new`]).
const EMPTY: u32 = u32::MAX;

/// Piece text -> id, by linear probing over a table at most half full.
/// When a piece occurs more than once, the lowest id wins.
#[derive(Clone)]
pub(super) struct PieceMap {
    /// A power-of-two number of slots, each an id or [`EMPTY`].
    slots: Vec<u32>,
}

/// FNV-1a, with the high half folded in so that masking keeps its entropy.
fn hash(bytes: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 29)) as usize
}

impl PieceMap {
    /// Indexes every piece.
    pub(super) fn build(pieces: &Pieces) -> Result<Self> {
        let cap = pieces
            .len()
            .checked_mul(2)
            .and_then(|c| c.max(8).checked_next_power_of_two())
            .ok_or_else(|| Error::overflow("tokenizer hash table"))?;
        let (mut slots, mask) = (vec![EMPTY; cap], cap - 1);
        for id in 0..pieces.len() {
            let key = pieces.get(id).unwrap_or_default();
            let mut i = hash(key.as_bytes()) & mask;
            loop {
                match slots[i] {
                    EMPTY => {
                        slots[i] = id as u32;
                        break;
                    }
                    other if pieces.get(other as usize) == Some(key) => break,
                    _ => i = (i + 1) & mask,
                }
            }
        }
        Ok(PieceMap { slots })
    }

    /// The id of `key`, if it is a piece.
    pub(super) fn get(&self, pieces: &Pieces, key: &str) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = hash(key.as_bytes()) & mask;
        loop {
            match self.slots[i] {
                EMPTY => return None,
                id if pieces.get(id as usize) == Some(key) => return Some(id),
                _ => i = (i + 1) & mask,
            }
        }
    }
}
