//! GPT-2 byte-level BPE.
/// Placeholder until the tokenizer lands.
pub struct BpeTokenizer;
