//! Reader for llama2.c `tokenizer.bin`: `i32 max_token_length`, then per
//! token `f32 score, i32 len, len bytes` (little-endian), to the end of the file.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{Error, Result};

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::truncated(what(), self.pos as u64, n as u64, self.remaining() as u64));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn word(&mut self, what: impl FnOnce() -> String) -> Result<[u8; 4]> {
        let b = self.take(4, what)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

/// Reads every entry of the file. Returns the pieces exactly as stored (not
/// yet normalized) and their scores. Fails with [`Error::VocabMismatch`]
/// unless the file holds exactly `vocab_size` tokens; only the first
/// `vocab_size` are kept in memory while counting.
pub(super) fn parse(bytes: &[u8], vocab_size: usize) -> Result<(Vec<String>, Vec<f32>)> {
    let mut r = Reader { bytes, pos: 0 };
    let max_len = i32::from_le_bytes(r.word(|| "tokenizer.bin header".to_string())?);
    if max_len < 0 {
        return Err(Error::invalid("tokenizer.bin max_token_length", format!("{max_len}")));
    }
    let cap = vocab_size.min(bytes.len() / 8);
    let (mut pieces, mut scores) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    let mut count = 0usize;
    while r.remaining() > 0 {
        let i = count;
        let score = f32::from_le_bytes(r.word(|| format!("tokenizer.bin token {i} score"))?);
        let len = i32::from_le_bytes(r.word(|| format!("tokenizer.bin token {i} length"))?);
        let len = usize::try_from(len)
            .map_err(|_| Error::invalid(format!("tokenizer.bin token {i} length"), format!("{len} is negative")))?;
        let raw = r.take(len, || format!("tokenizer.bin token {i} text"))?;
        let text = core::str::from_utf8(raw)
            .map_err(|e| Error::invalid(format!("tokenizer.bin token {i} text"), format!("not UTF-8 ({e})")))?;
        if count < vocab_size {
            pieces.push(text.to_string());
            scores.push(score);
        }
        count += 1;
    }
    if count != vocab_size {
        return Err(Error::VocabMismatch { model: vocab_size, tokenizer: count });
    }
    Ok((pieces, scores))
}
