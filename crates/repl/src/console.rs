//! What the chat needs from a terminal: the UEFI app (ConIn/ConOut or serial)
//! and `lbm chat` (a tty or plain stdin/stdout) each implement [`Console`].

use alloc::string::String;

/// A decoded key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character (already re-assembled from UTF-8 bytes).
    Char(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    Tab,
    Esc,
    /// Ctrl-C (U+0003).
    CtrlC,
    /// Ctrl-D (U+0004): end of input on an empty line.
    CtrlD,
}

/// Facts about the platform shown by the banner and `/stats`.
#[derive(Debug, Clone, Default)]
pub struct PlatformInfo {
    /// "scalar", "avx2", "avx512", ...
    pub simd: String,
    /// Cores the executor uses.
    pub cores: usize,
    /// Bytes of memory in use (model + caches), if known.
    pub mem_used: u64,
    /// Bytes of memory free, if known.
    pub mem_free: u64,
}

/// A terminal.
pub trait Console {
    /// Writes text. `\n` is a newline; the implementation translates it to
    /// what the terminal needs (`\r\n` on UEFI).
    fn write_str(&mut self, s: &str);
    /// Waits for the next key. `None` means the input has ended for good
    /// (stdin closed); the REPL then exits as if `/exit` was typed.
    fn read_key(&mut self) -> Option<Key>;
    /// Returns a key if one is waiting, without blocking. Used to stop a reply
    /// early with Esc or Ctrl-C.
    fn poll_key(&mut self) -> Option<Key>;
    /// Monotonic time in microseconds, for tok/s figures.
    fn now_us(&mut self) -> u64;
    /// Whether the terminal echoes and edits lines itself (false on UEFI and
    /// on a raw tty: the REPL then echoes and handles editing keys).
    fn is_interactive(&self) -> bool {
        true
    }
    /// Platform facts for `/stats`.
    fn platform(&self) -> PlatformInfo {
        PlatformInfo::default()
    }
}
