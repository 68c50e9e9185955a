//! SentencePiece-style BPE, as used by Llama 1/2, TinyLlama and llama2.c.
//!
//! Encoding follows SentencePiece's BPE model: the text gets a dummy-prefix
//! space, spaces become U+2581 (`▁`), the text is split into characters, and
//! adjacent symbols are merged greedily, always taking the pair whose merged
//! piece is in the vocabulary with the highest score (leftmost on ties).
//! Characters left that are not pieces fall back to `<0xXX>` byte tokens.
//! There is no normalization beyond the space mapping (Llama's models use the
//! identity normalizer).
//!
//! Vocabulary pieces are hostile input: every length and id is checked, and
//! bad input is an [`Error`], never a panic. Scores must not be NaN (a NaN
//! score means a corrupt file, and is rejected naming the token).

mod llama2c;
mod merge;
mod vocab;

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{Error, Result};
use vocab::{PieceMap, Pieces};

/// How SentencePiece writes a space inside pieces.
const SPACE: char = '\u{2581}';

/// The role of a vocabulary entry (SentencePiece / GGUF `tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// Ordinary text piece, produced by BPE merges.
    Normal,
    /// The unknown token (`<unk>`); decodes to nothing.
    Unknown,
    /// Control tokens such as `<s>` and `</s>`; decode to nothing.
    Control,
    /// Pieces added by the model author, e.g. chat markers; decode as text.
    UserDefined,
    /// Reserved, never produced; decodes to nothing.
    Unused,
    /// Byte-fallback token `<0xXX>`; decodes to that one byte.
    Byte,
}

impl TokenType {
    /// From GGUF's numbering: 1 Normal, 2 Unknown, 3 Control, 4 UserDefined,
    /// 5 Unused, 6 Byte; anything else is treated as Normal.
    pub fn from_gguf(v: i32) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }

    /// Whether BPE may produce this token from text (and decode it as text).
    fn is_text(self) -> bool {
        matches!(self, TokenType::Normal | TokenType::UserDefined)
    }

    /// Whether [`SpmTokenizer::encode_with_special`] matches it as one token.
    fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined)
    }
}

/// The value of a byte-fallback piece `<0xXX>` (either hex case).
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A SentencePiece-style BPE tokenizer with byte fallback.
#[derive(Clone)]
pub struct SpmTokenizer {
    pieces: Pieces,
    map: PieceMap,
    /// Score and type of each token.
    info: Vec<(f32, TokenType)>,
    /// Token id of each byte's `<0xXX>` piece (boxed to keep the struct small).
    byte_ids: Box<[Option<u32>; 256]>,
    /// Ids of special (Control/UserDefined, non-empty) pieces, sorted by piece, one per piece.
    specials: Vec<u32>,
    /// Distinct byte lengths of the special pieces, longest first.
    special_lens: Vec<usize>,
    /// `special_first[b]`: some special piece starts with byte `b`.
    special_first: Box<[bool; 256]>,
    /// Longest piece in bytes; longer merges are not looked up.
    max_piece_len: usize,
    bos: u32,
    eos: u32,
    unk: u32,
    add_bos: bool,
    add_space_prefix: bool,
}

impl fmt::Debug for SpmTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpmTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("unk", &self.unk)
            .field("add_bos", &self.add_bos)
            .field("add_space_prefix", &self.add_space_prefix)
            .finish_non_exhaustive()
    }
}

impl SpmTokenizer {
    /// From vocabulary pieces as stored in GGUF/SentencePiece (spaces written
    /// as U+2581 `▁`; byte tokens `<0xAB>`), their scores and types.
    ///
    /// Fails unless the three vectors have the same non-zero length, `bos`,
    /// `eos` and `unk` are valid ids, no score is NaN and every
    /// [`TokenType::Byte`] piece has the form `<0xXX>`. If a piece occurs more
    /// than once, [`token_id`](Self::token_id) and encoding use the lowest id.
    pub fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        types: Vec<TokenType>,
        bos: u32,
        eos: u32,
        unk: u32,
    ) -> Result<Self> {
        let n = pieces.len();
        if n == 0 {
            return Err(Error::invalid("tokenizer", "the vocabulary is empty"));
        }
        if scores.len() != n || types.len() != n {
            return Err(Error::invalid(
                "tokenizer",
                format!("{n} pieces but {} scores and {} token types", scores.len(), types.len()),
            ));
        }
        for id in [bos, eos, unk] {
            if id as usize >= n {
                return Err(Error::TokenOutOfRange { id, vocab: n });
            }
        }
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(Error::invalid(format!("tokenizer score of token {i}"), "NaN"));
        }
        // Also rejects vocabularies of u32::MAX tokens or more, so ids fit in u32.
        let packed = Pieces::new(&pieces)?;
        let map = PieceMap::build(&packed)?;
        let mut byte_ids = Box::new([None; 256]);
        for (i, (piece, ty)) in pieces.iter().zip(&types).enumerate() {
            if *ty == TokenType::Byte {
                let b = parse_byte_piece(piece).ok_or_else(|| {
                    Error::invalid(
                        format!("tokenizer byte token {i}"),
                        format!("piece {piece:?} is not of the form <0xXX>"),
                    )
                })?;
                byte_ids[b as usize].get_or_insert(i as u32);
            }
        }
        let mut specials: Vec<u32> =
            (0..n).filter(|&i| types[i].is_special() && !pieces[i].is_empty()).map(|i| i as u32).collect();
        // Stable sort: among equal pieces the lowest id comes first and is kept.
        specials.sort_by(|&a, &b| pieces[a as usize].cmp(&pieces[b as usize]));
        specials.dedup_by(|a, b| pieces[*a as usize] == pieces[*b as usize]);
        let mut special_lens: Vec<usize> = specials.iter().map(|&i| pieces[i as usize].len()).collect();
        special_lens.sort_unstable_by(|a, b| b.cmp(a));
        special_lens.dedup();
        let mut special_first = Box::new([false; 256]);
        for &i in &specials {
            special_first[pieces[i as usize].as_bytes()[0] as usize] = true;
        }
        let max_piece_len = pieces.iter().map(String::len).max().unwrap_or(0);
        Ok(SpmTokenizer {
            pieces: packed,
            map,
            info: scores.into_iter().zip(types).collect(),
            byte_ids,
            specials,
            special_lens,
            special_first,
            max_piece_len,
            bos,
            eos,
            unk,
            add_bos: true,
            add_space_prefix: true,
        })
    }

    /// From a llama2.c `tokenizer.bin` (`i32 max_token_length`, then per
    /// token: `f32 score, i32 len, len bytes`). `vocab_size` is the model's;
    /// the file must hold exactly that many tokens ([`Error::VocabMismatch`]
    /// otherwise). Pieces must be UTF-8; `max_token_length` must be
    /// non-negative but is otherwise not needed.
    ///
    /// llama2.c stores spaces as `' '`: they are turned into `▁`, and ids 1/2
    /// written `"\n<s>\n"`/`"\n</s>\n"` become `<s>`/`</s>`. Types are inferred:
    /// `<0xXX>` is Byte, id 0 Unknown, `<s>`/`</s>` Control, the rest Normal.
    /// BOS is 1, EOS 2 and UNK 0.
    pub fn from_llama2c(bytes: &[u8], vocab_size: usize) -> Result<Self> {
        let (raw, scores) = llama2c::parse(bytes, vocab_size)?;
        let mut pieces = Vec::with_capacity(raw.len());
        let mut types = Vec::with_capacity(raw.len());
        for (id, piece) in raw.into_iter().enumerate() {
            let piece = match (id, piece.as_str()) {
                (1, "\n<s>\n") => "<s>".to_owned(),
                (2, "\n</s>\n") => "</s>".to_owned(),
                _ if piece.contains(' ') => piece.replace(' ', "\u{2581}"),
                _ => piece,
            };
            types.push(if parse_byte_piece(&piece).is_some() {
                TokenType::Byte
            } else if id == 0 {
                TokenType::Unknown
            } else if piece == "<s>" || piece == "</s>" {
                TokenType::Control
            } else {
                TokenType::Normal
            });
            pieces.push(piece);
        }
        Self::new(pieces, scores, types, 1, 2, 0)
    }

    /// Records whether the model wants BOS at the start of a prompt
    /// (GGUF `tokenizer.ggml.add_bos_token`). The default is true.
    pub fn set_add_bos(&mut self, v: bool) {
        self.add_bos = v;
    }

    /// Whether the model wants BOS at the start of a prompt.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether encoding prepends SentencePiece's dummy-prefix space to the
    /// text (GGUF `tokenizer.ggml.add_space_prefix`). The default is true.
    pub fn set_add_space_prefix(&mut self, v: bool) {
        self.add_space_prefix = v;
    }

    /// Whether encoding prepends the dummy-prefix space.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.info.len()
    }

    /// Beginning-of-sequence token id.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// End-of-sequence token id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Unknown-token id.
    pub fn unk(&self) -> u32 {
        self.unk
    }

    /// The type of token `id`, or `None` if out of range.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.info.get(id as usize).map(|e| e.1)
    }

    /// The score of token `id`, or `None` if out of range.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.info.get(id as usize).map(|e| e.0)
    }

    /// The raw vocabulary piece, for display (`"▁the"`, `"<0x0A>"`, `"</s>"`).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize)
    }

    /// The id of a vocabulary piece (hashed lookup; the lowest id if repeated).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.map.get(&self.pieces, piece)
    }

    /// The id of `piece` if BPE may produce it from text (Normal or UserDefined).
    fn text_piece_id(&self, piece: &str) -> Option<u32> {
        self.token_id(piece).filter(|&id| self.info[id as usize].1.is_text())
    }

    /// Emits one final BPE symbol: its piece, or else byte tokens for each of
    /// its characters (`unk` for a character whose bytes lack byte tokens).
    fn push_symbol(&self, symbol: &str, out: &mut Vec<u32>) {
        if let Some(id) = self.text_piece_id(symbol) {
            out.push(id);
            return;
        }
        let mut buf = [0; 4];
        for ch in symbol.chars() {
            let bytes = ch.encode_utf8(&mut buf).as_bytes();
            if bytes.iter().all(|&b| self.byte_ids[b as usize].is_some()) {
                out.extend(bytes.iter().filter_map(|&b| self.byte_ids[b as usize]));
            } else {
                out.push(self.unk);
            }
        }
    }

    /// Appends the BPE encoding of `text`, spaces mapped to `▁`, with the
    /// dummy-prefix space if `prefix`.
    fn encode_text(&self, text: &str, prefix: bool, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut norm = String::with_capacity(text.len() + 3 * (1 + text.len() / 4));
        if prefix {
            norm.push(SPACE);
        }
        for ch in text.chars() {
            norm.push(if ch == ' ' { SPACE } else { ch });
        }
        merge::encode(self, &norm, out);
    }

    /// Plain text -> ids. Never interprets special-token text: `"<s>"` typed
    /// by a user is ordinary characters. Adds BOS first if `add_bos`. Applies
    /// the dummy-prefix space (unless disabled) and `' '` -> `'▁'`, then BPE
    /// by piece scores, with `<0xXX>` byte fallback for characters not in the
    /// vocabulary (`unk` if there are no byte tokens).
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 2 + 2);
        if add_bos {
            out.push(self.bos);
        }
        self.encode_text(text, self.add_space_prefix, &mut out);
        out
    }

    /// The longest special piece that `text[pos..]` starts with: its id and length.
    fn match_special(&self, text: &str, pos: usize) -> Option<(u32, usize)> {
        let rest = text.as_bytes().get(pos..)?;
        if !self.special_first[*rest.first()? as usize] || !text.is_char_boundary(pos) {
            return None;
        }
        self.special_lens.iter().find_map(|&len| {
            let key = rest.get(..len)?;
            let i = self
                .specials
                .binary_search_by(|&id| self.pieces.get(id as usize).unwrap_or("").as_bytes().cmp(key))
                .ok()?;
            Some((self.specials[i], len))
        })
    }

    /// Like [`encode`](Self::encode), but text that exactly matches a Control
    /// or UserDefined token's piece (e.g. `"</s>"`, `"<|user|>"` when such
    /// tokens exist) becomes that single id, leftmost-longest first, as
    /// Hugging Face tokenizers do with special tokens in chat templates.
    ///
    /// As with Hugging Face's `legacy=false`, the dummy-prefix space is added
    /// only at the very beginning of the text (when it starts with ordinary
    /// text), not after a special token.
    pub fn encode_with_special(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 2 + 2);
        if add_bos {
            out.push(self.bos);
        }
        let (mut start, mut pos) = (0, 0);
        while pos < text.len() {
            match self.match_special(text, pos) {
                Some((id, len)) => {
                    self.encode_text(&text[start..pos], start == 0 && self.add_space_prefix, &mut out);
                    out.push(id);
                    pos += len;
                    start = pos;
                }
                None => pos += 1,
            }
        }
        self.encode_text(&text[start..], start == 0 && self.add_space_prefix, &mut out);
        out
    }

    /// Appends the bytes token `id` contributes to decoded text: see
    /// [`decode_token`](Self::decode_token).
    pub fn decode_token_into(&self, prev: Option<u32>, id: u32, out: &mut Vec<u8>) {
        let (Some(ty), Some(piece)) = (self.token_type(id), self.piece(id)) else {
            return;
        };
        match ty {
            TokenType::Normal | TokenType::UserDefined => {
                let at_start = prev.is_none() || prev == Some(self.bos);
                let piece = if at_start { piece.strip_prefix(SPACE).unwrap_or(piece) } else { piece };
                let mut parts = piece.split(SPACE);
                out.extend_from_slice(parts.next().unwrap_or("").as_bytes());
                for part in parts {
                    out.push(b' ');
                    out.extend_from_slice(part.as_bytes());
                }
            }
            TokenType::Byte => out.extend(parse_byte_piece(piece)),
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {}
        }
    }

    /// Bytes token `id` contributes to decoded text: `▁` becomes a space,
    /// `<0xAB>` the byte 0xAB; Control, Unknown and Unused tokens and
    /// out-of-range ids give nothing. If `prev` is BOS or `None` (start of
    /// text) and the piece starts with a space, that one space is dropped
    /// (the dummy prefix), as run.c and SentencePiece do. Byte tokens may
    /// split a character: concatenate the outputs before decoding UTF-8.
    pub fn decode_token(&self, prev: Option<u32>, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.decode_token_into(prev, id, &mut out);
        out
    }

    /// Whole-sequence decode; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut prev = None;
        for &id in ids {
            self.decode_token_into(prev, id, &mut bytes);
            prev = Some(id);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
