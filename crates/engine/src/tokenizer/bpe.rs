//! GPT-2 byte-level BPE, as llama.cpp runs it for every `gpt2`-model GGUF
//! vocabulary (Llama 3, Qwen2, DeepSeek, Falcon, StarCoder, SmolLM, ...).
//!
//! User-defined tokens (and, when asked, control tokens) are split off the
//! text first. The rest is split into words by the pre-tokenizer's regexes
//! (see [`PreTokenizer`], run by the small engine in [`regex`]); each word's
//! UTF-8 bytes become one symbol per byte, written in the vocabulary with GPT-2's byte-level alphabet (printable
//! Latin-1 stands for itself, the other 68 byte values for U+0100..U+0143,
//! so a space is `Ġ`); then adjacent symbols are merged, lowest merge rank
//! first and leftmost first among equal ranks, until no merge applies.

#[path = "unicode_tables.rs"]
mod unicode_tables;

mod json;
mod pretokenize;
pub mod regex;

pub use pretokenize::{PreTokenizer, Splitter};
pub use unicode_tables::UNICODE_VERSION;

use pretokenize::SplitScratch;

use crate::{Error, Result};
use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;

/// GGUF token type: a normal token.
pub const TOKEN_NORMAL: i32 = 1;
/// GGUF token type: the unknown token (split off like a control token).
pub const TOKEN_UNKNOWN: i32 = 2;
/// GGUF token type: a control token (`<|endoftext|>`, `<|im_start|>`): never
/// produced from plain text, decoded as nothing.
pub const TOKEN_CONTROL: i32 = 3;
/// GGUF token type: a user-defined token, stored and decoded as raw text.
pub const TOKEN_USER_DEFINED: i32 = 4;

/// The character that stands for byte `b` in the byte-level alphabet.
pub fn byte_to_char(b: u8) -> char {
    let cp = match b {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => return char::from(b),
        0x00..=0x20 => u32::from(b),
        0x7F..=0xA0 => u32::from(b) - 0x7F + 33,
        0xAD => 67,
    };
    char::from_u32(0x100 + cp).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte a byte-level character stands for, if it is one.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x120 => Some((cp - 0x100) as u8),
        0x121..=0x142 => Some((cp - 0x121 + 0x7F) as u8),
        0x143 => Some(0xAD),
        _ => None,
    }
}

/// No token.
const NONE: u32 = u32::MAX;

/// One merge rule: `left right -> id` with priority `rank` (lower first).
#[derive(Clone, Copy)]
struct Merge {
    pair: u64,
    rank: u32,
    id: u32,
}

fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// A byte-level BPE tokenizer (GPT-2, Qwen2).
#[derive(Clone)]
pub struct BpeTokenizer {
    pieces: Vec<String>,
    types: Vec<i32>,
    /// Ids sorted by piece, one id (the lowest) per distinct piece.
    by_piece: Vec<u32>,
    /// Byte -> id of its one-character token, or `NONE`.
    byte_ids: Box<[u32; 256]>,
    /// Sorted by `pair`, one rule (the first listed) per pair.
    merges: Vec<Merge>,
    /// Control, user-defined and unknown tokens, longest first (then by id).
    specials: Vec<u32>,
    bos: u32,
    eos: u32,
    pre: PreTokenizer,
    /// `pre`'s regexes, compiled.
    splitter: Splitter,
    add_bos: bool,
    /// A word that is a token is taken whole (llama.cpp `ignore_merges`).
    ignore_merges: bool,
    warnings: Vec<String>,
}

impl fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("merges", &self.merges.len())
            .field("specials", &self.specials.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pre", &self.pre)
            .field("add_bos", &self.add_bos)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Splits a merge line `"a b"` at the first space after its first character.
fn split_merge(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?.len_utf8();
    let k = first + line[first..].find(' ')?;
    Some((&line[..k], &line[k + 1..]))
}

impl BpeTokenizer {
    /// Builds a tokenizer from its vocabulary.
    ///
    /// `tokens` are byte-level strings (`"Ġthe"`), indexed by id; `merges` are
    /// `"a b"` lines in rank order (first = applied first); `types` are GGUF
    /// token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte), one per token, or empty for all normal.
    ///
    /// The pre-tokenizer's regexes are compiled here, once. It also sets
    /// the defaults llama.cpp derives from it: whether prompts start with BOS
    /// ([`set_add_bos`](Self::set_add_bos) overrides it, e.g. from GGUF
    /// `tokenizer.ggml.add_bos_token`) and whether whole words that are
    /// tokens skip merging. An unknown pre-tokenizer adds a warning, see
    /// [`warnings`](Self::warnings).
    ///
    /// Errors: an empty vocabulary, a `types` length or value that does not
    /// fit, `bos`/`eos` out of range, or a merge that is not two tokens of the
    /// vocabulary whose concatenation is also a token.
    pub fn new(
        tokens: Vec<String>,
        merges: &[&str],
        types: &[i32],
        bos: u32,
        eos: u32,
        pre: PreTokenizer,
    ) -> Result<Self> {
        let mut tok = Self::build(tokens, merges.iter().copied(), types, bos, eos, pre)?;
        tok.index_specials();
        Ok(tok)
    }

    /// Builds the GPT-2 tokenizer from OpenAI's `encoder.json` (a JSON object
    /// piece -> id) and `vocab.bpe` (a `#version` line, then one merge per
    /// line); Hugging Face `vocab.json` + `merges.txt` have the same format.
    ///
    /// Tokens that BPE cannot produce (neither one byte nor the result of a
    /// merge, like `<|endoftext|>`) become control tokens. `bos` and `eos`
    /// are `<|endoftext|>`, or the last id if there is no such token (see
    /// [`BpeTokenizer::with_bos_eos`]). The pre-tokenizer is GPT-2's.
    pub fn from_encoder_json(encoder_json: &[u8], vocab_bpe: &[u8]) -> Result<Self> {
        let entries = json::parse_object(encoder_json)?;
        let n = entries.len();
        if n == 0 {
            return Err(Error::invalid("encoder.json", "no tokens"));
        }
        let mut slots: Vec<Option<String>> = vec![None; n];
        for (piece, id) in entries {
            let slot = slots.get_mut(id as usize).ok_or_else(|| {
                Error::invalid("encoder.json", format!("id {id} of '{piece}' leaves a gap: there are only {n} tokens"))
            })?;
            if let Some(other) = slot {
                return Err(Error::invalid("encoder.json", format!("id {id} is used by both '{other}' and '{piece}'")));
            }
            *slot = Some(piece);
        }
        // Every slot is filled: n distinct ids below n.
        let tokens: Vec<String> = slots.into_iter().flatten().collect();

        let text = core::str::from_utf8(vocab_bpe)
            .map_err(|e| Error::invalid("vocab.bpe", format!("not UTF-8 at byte {}", e.valid_up_to())))?;
        if text.trim().is_empty() {
            return Err(Error::invalid("vocab.bpe", "the file is empty"));
        }
        let lines = text
            .lines()
            .enumerate()
            .filter(|&(i, l)| !(l.trim().is_empty() || i == 0 && l.starts_with("#version")))
            .map(|(_, l)| l);

        let eot = tokens.iter().position(|t| t == "<|endoftext|>").unwrap_or(n - 1) as u32;
        let mut tok = Self::build(tokens, lines, &[], eot, eot, PreTokenizer::Gpt2)?;
        if tok.by_piece.len() < n {
            let dup = (0..n as u32).find(|&id| tok.token_id(&tok.pieces[id as usize]) != Some(id));
            let piece = dup.map_or("", |id| tok.pieces[id as usize].as_str());
            return Err(Error::invalid("encoder.json", format!("token '{piece}' appears twice")));
        }
        let mut reachable = vec![false; n];
        for id in tok.byte_ids.iter().chain(tok.merges.iter().map(|m| &m.id)) {
            if let Some(r) = reachable.get_mut(*id as usize) {
                *r = true;
            }
        }
        for (ty, r) in tok.types.iter_mut().zip(reachable) {
            if !r {
                *ty = TOKEN_CONTROL;
            }
        }
        tok.index_specials();
        Ok(tok)
    }

    /// The tokenizer of a GGUF file whose `tokenizer.ggml.model` is `gpt2`,
    /// read as llama.cpp reads it: tokens, merges and token types; BOS and
    /// EOS (the last id if absent); the pre-tokenizer named by
    /// `tokenizer.ggml.pre`, or, if there is none, llama.cpp's default one
    /// with a warning; `tokenizer.ggml.add_bos_token` over the
    /// pre-tokenizer's default.
    ///
    /// [`crate::gguf_model::tokenizer`] reads the same keys but neither the
    /// missing-pre default nor `add_bos_token`; it can call this instead.
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<Self> {
        let tokens: Vec<String> = g.get_str_array("tokenizer.ggml.tokens")?.into_iter().map(String::from).collect();
        let merges = g.get_str_array("tokenizer.ggml.merges")?;
        let types = match g.get("tokenizer.ggml.token_type") {
            Some(_) => g.get_i32_array("tokenizer.ggml.token_type")?,
            None => Vec::new(),
        };
        let pre = match g.get("tokenizer.ggml.pre") {
            Some(_) => Some(PreTokenizer::from_gguf_pre(g.get_str("tokenizer.ggml.pre")?)?),
            None => None,
        };
        let missing_pre = pre.is_none();
        let last = tokens.len().saturating_sub(1) as u32;
        let id = |k: &str| match g.get(k) {
            Some(_) => g.get_u32(k),
            None => Ok(last),
        };
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id")?, id("tokenizer.ggml.eos_token_id")?);
        let mut tok = Self::new(tokens, &merges, &types, bos, eos, pre.unwrap_or(PreTokenizer::Default))?;
        if missing_pre {
            tok.warnings.push(String::from(
                "no tokenizer.ggml.pre in the file: using llama.cpp's default pre-tokenizer, \
                 as llama.cpp does; the text may be split differently from the model's own tokenizer",
            ));
        }
        if g.get("tokenizer.ggml.add_bos_token").is_some() {
            tok.add_bos = g.get_bool("tokenizer.ggml.add_bos_token")?;
        }
        Ok(tok)
    }

    /// Replaces the BOS and EOS ids.
    pub fn with_bos_eos(mut self, bos: u32, eos: u32) -> Result<Self> {
        self.check_id(bos)?;
        self.check_id(eos)?;
        self.bos = bos;
        self.eos = eos;
        Ok(self)
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if (id as usize) < self.pieces.len() {
            Ok(())
        } else {
            Err(Error::TokenOutOfRange { id, vocab: self.pieces.len() })
        }
    }

    /// Everything but the special-token index.
    fn build<'m>(
        pieces: Vec<String>,
        merges: impl Iterator<Item = &'m str>,
        types: &[i32],
        bos: u32,
        eos: u32,
        pre: PreTokenizer,
    ) -> Result<Self> {
        let n = pieces.len();
        if n == 0 {
            return Err(Error::invalid("BPE vocabulary", "no tokens"));
        }
        let splitter = pre.compile()?;
        let warnings = pre.warning().into_iter().collect();
        if n >= NONE as usize {
            return Err(Error::overflow(format!("BPE vocabulary of {n} tokens")));
        }
        let types = match types.len() {
            0 => vec![TOKEN_NORMAL; n],
            len if len == n => types.to_vec(),
            len => return Err(Error::invalid("token types", format!("{len} types for {n} tokens"))),
        };
        if let Some(i) = types.iter().position(|t| !(0..=6).contains(t)) {
            return Err(Error::invalid("token types", format!("token {i} has unknown type {}", types[i])));
        }

        let mut by_piece: Vec<u32> = (0..n as u32).collect();
        by_piece.sort_by(|&a, &b| pieces[a as usize].cmp(&pieces[b as usize]).then(a.cmp(&b)));
        by_piece.dedup_by(|b, a| pieces[*a as usize] == pieces[*b as usize]);

        let mut tok = Self {
            pieces,
            types,
            by_piece,
            byte_ids: Box::new([NONE; 256]),
            merges: Vec::new(),
            specials: Vec::new(),
            bos,
            eos,
            add_bos: pre.add_bos(),
            ignore_merges: pre.ignore_merges(),
            pre,
            splitter,
            warnings,
        };
        tok.check_id(bos)?;
        tok.check_id(eos)?;
        let mut buf = [0; 4];
        for b in 0..=255u8 {
            tok.byte_ids[b as usize] = tok.token_id(byte_to_char(b).encode_utf8(&mut buf)).unwrap_or(NONE);
        }

        let mut joined = String::new();
        for (rank, line) in merges.enumerate() {
            let bad = |detail: &str| Error::invalid("BPE merge", format!("merge {rank} '{line}': {detail}"));
            let (a, b) = split_merge(line).ok_or_else(|| bad("expected two tokens separated by a space"))?;
            let id = |t: &str| tok.token_id(t).ok_or_else(|| bad(&format!("'{t}' is not in the vocabulary")));
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let (pair, id) = (pair(id(a)?, id(b)?), id(&joined)?);
            let rank = u32::try_from(rank).map_err(|_| Error::overflow("number of BPE merges"))?;
            tok.merges.push(Merge { pair, rank, id });
        }
        // Stable: among duplicate pairs the first listed (lowest rank) comes first and stays.
        tok.merges.sort_by_key(|m| m.pair);
        tok.merges.dedup_by_key(|m| m.pair);
        Ok(tok)
    }

    fn index_specials(&mut self) {
        let pieces = &self.pieces;
        self.specials = (0..pieces.len() as u32)
            .filter(|&id| {
                let i = id as usize;
                matches!(self.types[i], TOKEN_CONTROL | TOKEN_USER_DEFINED | TOKEN_UNKNOWN) && !pieces[i].is_empty()
            })
            .collect();
        self.specials.sort_by_key(|&id| Reverse(pieces[id as usize].len()));
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The pre-tokenizer.
    pub fn pre_tokenizer(&self) -> &PreTokenizer {
        &self.pre
    }

    /// The words the pre-tokenizer splits `text` into (BPE then runs on each).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.splitter.split(text)
    }

    /// Whether prompts should start with BOS (see [`BpeTokenizer::new`]).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Sets whether prompts start with BOS (GGUF `tokenizer.ggml.add_bos_token`).
    pub fn set_add_bos(&mut self, add_bos: bool) {
        self.add_bos = add_bos;
    }

    /// What the user should be told about this tokenizer (e.g. an unknown
    /// pre-tokenizer); the engine prints nothing itself.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The id of a token given as its vocabulary string (`"Ġthe"`); the lowest
    /// id if the vocabulary lists the string twice.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        let i = self.by_piece.binary_search_by(|&id| self.pieces[id as usize].as_str().cmp(piece)).ok()?;
        Some(self.by_piece[i])
    }

    /// The vocabulary string of a token.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The GGUF type of a token (1 normal, 3 control, 4 user-defined, ...).
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.types.get(id as usize).copied()
    }

    /// Plain text -> ids. Control tokens are never parsed, so
    /// `"<|endoftext|>"` typed by a user is ordinary text; user-defined
    /// tokens (added words such as MPT's runs of spaces) are split off
    /// before pre-tokenizing, as llama.cpp and Hugging Face do. BOS is
    /// prepended only if `add_bos` (see [`add_bos`](Self::add_bos) for the
    /// model's preference).
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_impl(text, add_bos, false)
    }

    /// Like [`encode`](Self::encode), but control tokens (`"<|endoftext|>"`,
    /// `"<|im_start|>"`) are split off too and become their ids.
    ///
    /// As in llama.cpp, the special tokens are taken longest first: every
    /// occurrence of the longest is split off the text, then the next
    /// longest in what remains, and so on.
    pub fn encode_with_special(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_impl(text, add_bos, true)
    }

    fn encode_impl(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_bos {
            out.push(self.bos);
        }
        let mut present = [0u64; 4];
        for &b in text.as_bytes() {
            present[usize::from(b / 64)] |= 1 << (b % 64);
        }
        // (start, end, token): a special token if `token != NONE`, else text.
        let mut frags = vec![(0, text.len(), NONE)];
        let mut next = Vec::new();
        for &id in &self.specials {
            let piece = self.pieces[id as usize].as_str();
            let b = piece.as_bytes()[0];
            if present[usize::from(b / 64)] & (1 << (b % 64)) == 0
                || !parse_special && self.types[id as usize] != TOKEN_USER_DEFINED
            {
                continue;
            }
            next.clear();
            for &(a, z, tok) in &frags {
                if tok != NONE {
                    next.push((a, z, tok));
                    continue;
                }
                let mut s = a;
                // `piece` is valid UTF-8, so every match starts and ends on a char boundary.
                while let Some(k) = text[s..z].find(piece) {
                    if k > 0 {
                        next.push((s, s + k, NONE));
                    }
                    next.push((s + k, s + k + piece.len(), id));
                    s += k + piece.len();
                }
                if s < z {
                    next.push((s, z, NONE));
                }
            }
            core::mem::swap(&mut frags, &mut next);
        }
        let mut scratch = Scratch::default();
        for &(a, z, tok) in &frags {
            if tok == NONE {
                self.encode_text(&text[a..z], &mut out, &mut scratch);
            } else {
                out.push(tok);
            }
        }
        out
    }

    fn encode_text(&self, text: &str, out: &mut Vec<u32>, scratch: &mut Scratch) {
        let mut words = core::mem::take(&mut scratch.words);
        self.splitter.split_ranges(text, &mut words, &mut scratch.split);
        for &(a, b) in &words {
            let word = &text.as_bytes()[a..b];
            if self.ignore_merges {
                scratch.encoded.clear();
                scratch.encoded.extend(word.iter().map(|&b| byte_to_char(b)));
                if let Some(id) = self.token_id(&scratch.encoded) {
                    out.push(id);
                    continue;
                }
            }
            self.bpe(word, out, scratch);
        }
        scratch.words = words;
    }

    /// The merge rule for adjacent tokens `a b`: `(rank, merged id)`.
    fn merge(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        if a == NONE || b == NONE {
            return None;
        }
        let key = pair(a, b);
        let i = self.merges.binary_search_by_key(&key, |m| m.pair).ok()?;
        Some((self.merges[i].rank, self.merges[i].id))
    }

    /// BPE on one word. Bytes without a token of their own (there are none in
    /// GPT-2 or Qwen2 vocabularies) are dropped.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        s.syms.clear();
        s.heap.clear();
        s.syms.extend(word.iter().enumerate().map(|(i, &b)| Sym {
            id: self.byte_ids[b as usize],
            prev: i.wrapping_sub(1),
            next: if i + 1 < word.len() { i + 1 } else { usize::MAX },
        }));
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize| {
            let r = syms[l].next;
            if let Some(&Sym { id: b, .. }) = syms.get(r) {
                if let Some((rank, id)) = self.merge(syms[l].id, b) {
                    heap.push(Reverse(Candidate { rank, pos: l, left: syms[l].id, right: b, id }));
                }
            }
        };
        for l in 0..s.syms.len() {
            push(&mut s.heap, &s.syms, l);
        }
        while let Some(Reverse(Candidate { pos: l, left: a, right: b, id, .. })) = s.heap.pop() {
            // Skip stale entries: a merged symbol always gets a new (longer) token.
            let r = s.syms[l].next;
            if s.syms[l].id != a || s.syms.get(r).is_none_or(|sym| sym.id != b) {
                continue;
            }
            let rr = s.syms[r].next;
            s.syms[l].id = id;
            s.syms[l].next = rr;
            s.syms[r].id = NONE;
            if let Some(sym) = s.syms.get_mut(rr) {
                sym.prev = l;
            }
            let p = s.syms[l].prev;
            if p < s.syms.len() {
                push(&mut s.heap, &s.syms, p);
            }
            push(&mut s.heap, &s.syms, l);
        }
        let mut i = 0;
        while let Some(sym) = s.syms.get(i) {
            if sym.id != NONE {
                out.push(sym.id);
            }
            i = sym.next;
        }
    }

    /// The bytes of one token: its byte-level characters mapped back to
    /// bytes. Control tokens and ids out of range give nothing; user-defined
    /// tokens are raw text.
    pub fn decode_token(&self, id: u32) -> Vec<u8> {
        let (Some(piece), Some(&ty)) = (self.pieces.get(id as usize), self.types.get(id as usize)) else {
            return Vec::new();
        };
        match ty {
            TOKEN_CONTROL => Vec::new(),
            TOKEN_USER_DEFINED => piece.as_bytes().to_vec(),
            _ => {
                let mut out = Vec::with_capacity(piece.len());
                let mut buf = [0; 4];
                for c in piece.chars() {
                    match char_to_byte(c) {
                        Some(b) => out.push(b),
                        // Not in the byte-level alphabet: keep the character as is.
                        None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                    }
                }
                out
            }
        }
    }

    /// Ids -> text. The tokens' bytes are joined first, so characters split
    /// across tokens come out whole; only invalid UTF-8 in the result becomes
    /// U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.decode_token(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// One symbol of a word being merged, in a linked list over the word's bytes.
#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: usize,
    next: usize,
}

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
struct Scratch {
    split: SplitScratch,
    words: Vec<(usize, usize)>,
    /// A word in the byte-level alphabet.
    encoded: String,
    syms: Vec<Sym>,
    /// Possible merges, lowest rank then leftmost first.
    heap: BinaryHeap<Reverse<Candidate>>,
}

/// A possible merge of the symbol at `pos` (token `left`) with the next one
/// (token `right`) into token `id`. Ordered by rank, then position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    pos: usize,
    left: u32,
    right: u32,
    id: u32,
}
