//! SentencePiece-style BPE.
/// Placeholder until the tokenizer lands.
pub struct SpmTokenizer;
