//! Tokenizers: SentencePiece-style BPE ([`spm`]) and GPT-2 byte-level BPE ([`bpe`]).

pub mod bpe;
pub mod spm;

/// A model's tokenizer.
pub enum Tokenizer {
    Spm(spm::SpmTokenizer),
    Bpe(bpe::BpeTokenizer),
}
