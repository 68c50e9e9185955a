//! One error type for the whole engine. Every variant names what was wrong
//! (the tensor, key, offset or value), so a user can act on the message.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Engine result.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input ended before `need` bytes could be read at `offset`.
    Truncated { what: String, offset: u64, need: u64, have: u64 },
    /// A file does not start with the expected magic number.
    BadMagic { format: &'static str, found: u32 },
    /// A format version we do not read.
    UnsupportedVersion { format: &'static str, version: u32 },
    /// A metadata key that must be present is missing.
    MissingKey(String),
    /// A metadata key has the wrong type.
    WrongKeyType { key: String, expected: &'static str, found: String },
    /// A tensor the model needs is not in the file.
    MissingTensor(String),
    /// A tensor has an unexpected shape.
    TensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    /// A tensor's data lies (partly) outside the file.
    TensorOutOfBounds { name: String, offset: u64, size: u64, file_len: u64 },
    /// A tensor type we cannot run (yet).
    UnsupportedTensorType { name: String, ty: String },
    /// A size computation overflowed (absurd dimensions).
    Overflow { what: String },
    /// A value is outside what the format or model allows.
    Invalid { what: String, detail: String },
    /// The model architecture is not supported.
    UnsupportedArchitecture(String),
    /// The tokenizer's vocabulary does not match the model's.
    VocabMismatch { model: usize, tokenizer: usize },
    /// A token id is not in the vocabulary.
    TokenOutOfRange { id: u32, vocab: usize },
    /// The context window is full.
    ContextFull { n_ctx: usize },
    /// An allocation would be larger than the memory available.
    OutOfMemory { what: String, bytes: u64 },
    /// An I/O error from the host or the firmware.
    Io(String),
    /// A bad argument from the user (command line, chat command, settings file).
    Usage(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), detail: detail.into() }
    }
    /// Shorthand for [`Error::Overflow`].
    pub fn overflow(what: impl Into<String>) -> Self {
        Error::Overflow { what: what.into() }
    }
    /// Shorthand for [`Error::Truncated`].
    pub fn truncated(what: impl Into<String>, offset: u64, need: u64, have: u64) -> Self {
        Error::Truncated { what: what.into(), offset, need, have }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names, keys and values may come from a (hostile) file: shown
        // escaped and cut to an excerpt (`Shown`).
        match self {
            Error::Truncated { what, offset, need, have } => write!(
                f,
                "truncated input: {} needs {need} bytes at offset {offset}, but only {have} remain",
                Shown(what)
            ),
            Error::BadMagic { format, found } => {
                write!(f, "not a {format} file (magic 0x{found:08x})")
            }
            Error::UnsupportedVersion { format, version } => {
                write!(f, "unsupported {format} version {version}")
            }
            Error::MissingKey(k) => write!(f, "missing metadata key '{}'", Shown(k)),
            Error::WrongKeyType { key, expected, found } => {
                write!(f, "metadata key '{}' should be {expected}, found {}", Shown(key), Shown(found))
            }
            Error::MissingTensor(n) => write!(f, "missing tensor '{}'", Shown(n)),
            Error::TensorShape { name, expected, found } => {
                write!(f, "tensor '{}' has shape {found:?}, expected {expected:?}", Shown(name))
            }
            Error::TensorOutOfBounds { name, offset, size, file_len } => write!(
                f,
                "tensor '{}' data at offset {offset} (+{size} bytes) lies past the end of the file ({file_len} bytes)",
                Shown(name)
            ),
            Error::UnsupportedTensorType { name, ty } => {
                write!(f, "tensor '{}' has unsupported type {}", Shown(name), Shown(ty))
            }
            Error::Overflow { what } => write!(f, "size overflow: {}", Shown(what)),
            Error::Invalid { what, detail } => write!(f, "invalid {}: {}", Shown(what), Shown(detail)),
            Error::UnsupportedArchitecture(a) => write!(f, "unsupported architecture '{}'", Shown(a)),
            Error::VocabMismatch { model, tokenizer } => {
                write!(f, "tokenizer has {tokenizer} tokens but the model's vocabulary has {model}")
            }
            Error::TokenOutOfRange { id, vocab } => {
                write!(f, "token id {id} is outside the vocabulary (size {vocab})")
            }
            Error::ContextFull { n_ctx } => write!(f, "context full ({n_ctx} tokens)"),
            Error::OutOfMemory { what, bytes } => {
                write!(f, "out of memory: {} needs {bytes} bytes", Shown(what))
            }
            Error::Io(s) => write!(f, "I/O error: {}", Shown(s)),
            Error::Usage(s) => write!(f, "{}", Shown(s)),
        }
    }
}

/// The longest excerpt of a string an error message shows, in chars.
pub const EXCERPT_CHARS: usize = 200;

/// A string as an error message shows it: control characters (terminal
/// escape sequences, newlines) and bidirectional overrides escaped the way
/// `{:?}` would, and cut after [`EXCERPT_CHARS`] chars with the length of
/// what was left out, so a file cannot drive the terminal or flood it.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Excerpt { text: self.0, max_chars: EXCERPT_CHARS, keep_lines: false }.fmt(f)
    }
}

/// [`Shown`] with its knobs: at most `max_chars` chars, and with
/// `keep_lines` newlines and tabs left as they are (for a whole message of
/// several lines, as `lbm` prints its errors).
pub struct Excerpt<'a> {
    pub text: &'a str,
    pub max_chars: usize,
    pub keep_lines: bool,
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (at, c)) in self.text.char_indices().enumerate() {
            if i == self.max_chars {
                return write!(f, "... (+{} more bytes)", self.text.len() - at);
            }
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
            let kept = self.keep_lines && (c == '\n' || c == '\t');
            if (c.is_control() && !kept) || bidi {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn file_strings_in_messages_are_escaped_and_cut() {
        let e = Error::UnsupportedArchitecture("ll\u{1b}[2Jama\n".into());
        assert_eq!(e.to_string(), "unsupported architecture 'll\\u{1b}[2Jama\\n'");
        let long = "x".repeat(100_000);
        let m = Error::MissingKey(long).to_string();
        assert!(m.len() < EXCERPT_CHARS + 80, "{}", m.len());
        assert!(m.contains("(+99800 more bytes)"), "{m}");
        // Plain text, including non-ASCII, is shown as it is.
        assert_eq!(Error::MissingTensor("blk.0.é".into()).to_string(), "missing tensor 'blk.0.é'");
    }
}
