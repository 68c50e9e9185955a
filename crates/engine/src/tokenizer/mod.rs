//! Tokenizers: SentencePiece-style BPE ([`spm`]) and GPT-2 byte-level BPE
//! ([`bpe`]), behind one [`Tokenizer`] type, plus a streaming decoder that
//! only ever emits whole UTF-8 characters.

pub mod bpe;
pub mod spm;

use alloc::string::String;
use alloc::vec::Vec;

use crate::Result;

/// A model's tokenizer.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    Spm(spm::SpmTokenizer),
    Bpe(bpe::BpeTokenizer),
}

impl Tokenizer {
    /// From a llama2.c `tokenizer.bin` for a model with `vocab_size` tokens.
    pub fn from_llama2c(bytes: &[u8], vocab_size: usize) -> Result<Self> {
        Ok(Tokenizer::Spm(spm::SpmTokenizer::from_llama2c(bytes, vocab_size)?))
    }
    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Spm(t) => t.vocab_size(),
            Tokenizer::Bpe(t) => t.vocab_size(),
        }
    }
    /// Beginning-of-sequence id.
    pub fn bos(&self) -> u32 {
        match self {
            Tokenizer::Spm(t) => t.bos(),
            Tokenizer::Bpe(t) => t.bos(),
        }
    }
    /// End-of-sequence id.
    pub fn eos(&self) -> u32 {
        match self {
            Tokenizer::Spm(t) => t.eos(),
            Tokenizer::Bpe(t) => t.eos(),
        }
    }
    /// Whether prompts start with BOS.
    pub fn add_bos(&self) -> bool {
        match self {
            Tokenizer::Spm(t) => t.add_bos(),
            Tokenizer::Bpe(t) => t.add_bos(),
        }
    }
    /// What the user should be told about this tokenizer, e.g. that its
    /// pre-tokenizer is unknown and GPT-2's rules stand in for it. The engine
    /// prints nothing itself (it is `no_std`); front ends should show these.
    pub fn warnings(&self) -> &[String] {
        match self {
            Tokenizer::Spm(_) => &[],
            Tokenizer::Bpe(t) => t.warnings(),
        }
    }
    /// Plain text to ids (special-token text is ordinary text).
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        match self {
            Tokenizer::Spm(t) => t.encode(text, add_bos),
            Tokenizer::Bpe(t) => t.encode(text, add_bos),
        }
    }
    /// Text with special tokens (for chat templates) to ids.
    pub fn encode_with_special(&self, text: &str, add_bos: bool) -> Vec<u32> {
        match self {
            Tokenizer::Spm(t) => t.encode_with_special(text, add_bos),
            Tokenizer::Bpe(t) => t.encode_with_special(text, add_bos),
        }
    }
    /// Appends the bytes token `id` contributes after `prev` to `out`.
    pub fn decode_token_into(&self, prev: Option<u32>, id: u32, out: &mut Vec<u8>) {
        match self {
            Tokenizer::Spm(t) => t.decode_token_into(prev, id, out),
            Tokenizer::Bpe(t) => out.extend_from_slice(&t.decode_token(id)),
        }
    }
    /// Decodes a whole sequence.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Spm(t) => t.decode(ids),
            Tokenizer::Bpe(t) => t.decode(ids),
        }
    }
    /// The vocabulary piece of `id`, for display.
    pub fn piece(&self, id: u32) -> Option<&str> {
        match self {
            Tokenizer::Spm(t) => t.piece(id),
            Tokenizer::Bpe(t) => t.piece(id),
        }
    }
    /// The id of a vocabulary piece.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match self {
            Tokenizer::Spm(t) => t.token_id(piece),
            Tokenizer::Bpe(t) => t.token_id(piece),
        }
    }
    /// Whether `id` is a control token (never shown to the user).
    pub fn is_control(&self, id: u32) -> bool {
        match self {
            Tokenizer::Spm(t) => matches!(t.token_type(id), Some(spm::TokenType::Control)),
            Tokenizer::Bpe(t) => t.token_type(id) == Some(bpe::TOKEN_CONTROL),
        }
    }
}

/// Turns a stream of token ids into text, holding back bytes until they form
/// whole UTF-8 characters.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    prev: Option<u32>,
}

impl StreamDecoder {
    /// A decoder at the start of a text; `prev` is the token before the first
    /// one that will be pushed (e.g. BOS), if any.
    pub fn new(prev: Option<u32>) -> Self {
        StreamDecoder { pending: Vec::new(), prev }
    }

    /// Adds a token and appends whatever complete text is now available to `out`.
    pub fn push(&mut self, tok: &Tokenizer, id: u32, out: &mut String) {
        tok.decode_token_into(self.prev, id, &mut self.pending);
        self.prev = Some(id);
        self.drain(out, false);
    }

    /// Flushes what is left (invalid sequences become U+FFFD).
    pub fn finish(&mut self, out: &mut String) {
        self.drain(out, true);
    }

    fn drain(&mut self, out: &mut String, flush: bool) {
        let mut start = 0;
        loop {
            match core::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just validated by from_utf8.
                    out.push_str(core::str::from_utf8(&self.pending[start..start + valid]).unwrap_or_default());
                    start += valid;
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += bad;
                        }
                        None if flush => {
                            out.push('\u{FFFD}');
                            start = self.pending.len();
                            break;
                        }
                        None => break, // incomplete character: wait for more bytes
                    }
                }
            }
        }
        self.pending.drain(..start);
    }
}
