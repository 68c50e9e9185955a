//! Key decoding shared by the UEFI console and `lbm chat`'s terminal.
//!
//! Both deliver a stream of character units: bytes from a tty or a pipe, and
//! on UEFI one UCS-2 char per byte of what the serial terminal sent (UTF-8
//! text arrives as one Latin-1 char per byte). [`KeyDecoder`] turns them into
//! [`Key`]s: Enter as CR, LF or CRLF, control characters, UTF-8 re-assembled
//! (on UEFI a sequence that turns out not to be UTF-8 is taken as Latin-1,
//! which is what a real keyboard's 'é' is; from a byte stream that is UTF-8
//! by convention, [`KeyDecoder::utf8`], each invalid sequence becomes one
//! U+FFFD and the bytes after it are read as usual), and ANSI
//! cursor sequences (`ESC [ A` ... `ESC [ 3 ~`). Keys the platform has already
//! decoded (UEFI scan codes) are fed as [`RawKey::Key`].

use alloc::collections::VecDeque;

use crate::console::Key;

/// One unit of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKey {
    /// A character unit: a byte, or a UCS-2 char.
    Char(u32),
    /// A key the platform decoded itself (e.g. from a UEFI scan code).
    Key(Key),
}

/// Where an escape sequence stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Esc,
    /// After `ESC [`.
    Csi,
    /// After `ESC [ 3`: one more unit (`~`) and it is Delete.
    Delete,
}

/// Turns [`RawKey`]s into [`Key`]s.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    /// The previous key was a CR (an LF right after it is dropped).
    after_cr: bool,
    escape: Escape,
    /// Bytes of an incomplete UTF-8 sequence.
    partial: [u8; 4],
    have: usize,
    need: usize,
    out: VecDeque<Key>,
    /// Invalid UTF-8 becomes U+FFFD instead of Latin-1.
    strict: bool,
}

impl KeyDecoder {
    /// A decoder with nothing pending, for UEFI input (invalid UTF-8 is
    /// Latin-1).
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a byte stream that is UTF-8 (a terminal or a pipe):
    /// every invalid or cut-off sequence is one U+FFFD.
    pub fn utf8() -> Self {
        KeyDecoder { strict: true, ..Self::default() }
    }

    /// The next decoded key.
    pub fn pop(&mut self) -> Option<Key> {
        self.out.pop_front()
    }

    /// Whether decoded keys are waiting.
    pub fn has_keys(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether an incomplete UTF-8 or escape sequence is waiting for more.
    pub fn has_partial(&self) -> bool {
        self.have > 0 || self.escape != Escape::None
    }

    /// Gives up waiting for the rest of a sequence (more input is slow to
    /// come, or there is none): a lone ESC is the Esc key, and the bytes of
    /// an incomplete UTF-8 sequence were Latin-1 characters after all (e.g.
    /// 'é' typed on a real keyboard).
    pub fn flush_partial(&mut self) {
        if self.escape == Escape::Esc {
            self.out.push_back(Key::Esc);
        }
        self.escape = Escape::None;
        if self.strict && self.have > 0 {
            self.out.push_back(Key::Char(char::REPLACEMENT_CHARACTER));
        } else {
            for i in 0..self.have {
                self.out.push_back(Key::Char(char::from(self.partial[i])));
            }
        }
        self.have = 0;
        self.need = 0;
    }

    /// Feeds one raw key.
    pub fn feed(&mut self, raw: RawKey) {
        match raw {
            RawKey::Key(key) => {
                self.flush_partial();
                self.after_cr = false;
                self.out.push_back(key);
            }
            RawKey::Char(c) => self.feed_char(c),
        }
    }

    fn feed_char(&mut self, c: u32) {
        match self.escape {
            Escape::None => {}
            Escape::Esc => {
                self.escape = Escape::None;
                if c == u32::from(b'[') {
                    self.escape = Escape::Csi;
                    return;
                }
                self.out.push_back(Key::Esc);
            }
            Escape::Csi => {
                self.escape = Escape::None;
                let key = match char::from_u32(c) {
                    Some('A') => Key::Up,
                    Some('B') => Key::Down,
                    Some('C') => Key::Right,
                    Some('D') => Key::Left,
                    Some('H') => Key::Home,
                    Some('F') => Key::End,
                    Some('3') => {
                        self.escape = Escape::Delete;
                        return;
                    }
                    // Other sequences are dropped.
                    _ => return,
                };
                self.out.push_back(key);
                return;
            }
            Escape::Delete => {
                self.escape = Escape::None;
                self.out.push_back(Key::Delete);
                return;
            }
        }
        if self.have > 0 {
            if (0x80..=0xBF).contains(&c) {
                self.partial[self.have] = c as u8;
                self.have += 1;
                if self.have == self.need {
                    match core::str::from_utf8(&self.partial[..self.have]) {
                        Ok(s) => {
                            self.out.extend(s.chars().map(Key::Char));
                            self.have = 0;
                            self.need = 0;
                        }
                        Err(_) => self.flush_partial(),
                    }
                }
                return;
            }
            self.flush_partial();
        }
        if c == 0x0D {
            self.after_cr = true;
            self.out.push_back(Key::Enter);
            return;
        }
        if c == 0x0A {
            if !self.after_cr {
                self.out.push_back(Key::Enter);
            }
            self.after_cr = false;
            return;
        }
        self.after_cr = false;
        let key = match c {
            0x08 | 0x7F => Key::Backspace,
            0x09 => Key::Tab,
            0x03 => Key::CtrlC,
            0x04 => Key::CtrlD,
            0x1B => {
                self.escape = Escape::Esc;
                return;
            }
            0x00..=0x1F => return,
            // Bytes that never start a UTF-8 sequence (continuations, C0/C1, F5..FF).
            0x80..=0xC1 | 0xF5..=0xFF if self.strict => Key::Char(char::REPLACEMENT_CHARACTER),
            0xC2..=0xF4 => {
                self.partial[0] = c as u8;
                self.have = 1;
                self.need = match c {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                return;
            }
            _ => match char::from_u32(c) {
                Some(ch) => Key::Char(ch),
                None => return,
            },
        };
        self.out.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn decode(raw: &[RawKey]) -> Vec<Key> {
        let mut d = KeyDecoder::new();
        for &r in raw {
            d.feed(r);
        }
        d.flush_partial();
        let mut v = Vec::new();
        while let Some(k) = d.pop() {
            v.push(k);
        }
        v
    }

    fn chars(s: &[u32]) -> Vec<RawKey> {
        s.iter().map(|&c| RawKey::Char(c)).collect()
    }

    fn bytes(s: &[u8]) -> Vec<RawKey> {
        s.iter().map(|&c| RawKey::Char(u32::from(c))).collect()
    }

    #[test]
    fn decoded_keys_pass_through() {
        let keys = decode(&[RawKey::Key(Key::Up), RawKey::Key(Key::Esc), RawKey::Char(u32::from(b'a'))]);
        assert_eq!(keys, [Key::Up, Key::Esc, Key::Char('a')]);
    }

    #[test]
    fn control_chars() {
        let keys = decode(&chars(&[0x08, 0x7F, 0x09, 0x03, 0x04, 0x1B, 0x01, 0x00, b'a' as u32]));
        assert_eq!(keys, [Key::Backspace, Key::Backspace, Key::Tab, Key::CtrlC, Key::CtrlD, Key::Esc, Key::Char('a')]);
    }

    #[test]
    fn enter_variants() {
        assert_eq!(decode(&chars(&[0x0D])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0A])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, 0x0A])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, 0x0D, 0x0A])), [Key::Enter, Key::Enter]);
        assert_eq!(decode(&chars(&[0x0A, 0x0A])), [Key::Enter, Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, b'x' as u32, 0x0A])), [Key::Enter, Key::Char('x'), Key::Enter]);
    }

    #[test]
    fn escape_sequences() {
        let keys = decode(&bytes(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1b[3~x"));
        assert_eq!(keys, [Key::Up, Key::Down, Key::Right, Key::Left, Key::Home, Key::End, Key::Delete, Key::Char('x')]);
        // Unknown sequences are dropped; ESC before anything else is Esc.
        assert_eq!(decode(&bytes(b"\x1b[Zy\x1bq")), [Key::Char('y'), Key::Esc, Key::Char('q')]);
        // A lone ESC waits until flushed.
        let mut d = KeyDecoder::new();
        d.feed(RawKey::Char(0x1B));
        assert!(d.has_partial());
        assert_eq!(d.pop(), None);
        d.flush_partial();
        assert_eq!(d.pop(), Some(Key::Esc));
    }

    #[test]
    fn utf8_reassembly() {
        // "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80
        let keys = decode(&chars(&[0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, b'!' as u32]));
        assert_eq!(keys, [Key::Char('é'), Key::Char('€'), Key::Char('😀'), Key::Char('!')]);
    }

    #[test]
    fn latin1_fallback() {
        // 'é' typed as a Latin-1 char (0xE9) followed by 'a': not UTF-8.
        assert_eq!(decode(&chars(&[0xE9, b'a' as u32])), [Key::Char('é'), Key::Char('a')]);
        // A lone lead byte waits until flushed.
        let mut d = KeyDecoder::new();
        d.feed(RawKey::Char(0xC3));
        assert!(d.has_partial());
        assert_eq!(d.pop(), None);
        d.flush_partial();
        assert_eq!(d.pop(), Some(Key::Char('Ã')));
        // A stray continuation byte and plain Latin-1 letters.
        assert_eq!(decode(&chars(&[0xA9, 0xFC])), [Key::Char('©'), Key::Char('ü')]);
        // An overlong/invalid sequence falls back to Latin-1.
        assert_eq!(decode(&chars(&[0xE0, 0x80, 0x80])), [Key::Char('à'), Key::Char('\u{80}'), Key::Char('\u{80}')]);
        // A decoded key in the middle flushes.
        assert_eq!(decode(&[RawKey::Char(0xC3), RawKey::Key(Key::Left)]), [Key::Char('Ã'), Key::Left]);
        // UCS-2 chars beyond Latin-1 pass through; surrogates are dropped.
        assert_eq!(decode(&chars(&[0x20AC, 0xD800])), [Key::Char('€')]);
    }

    #[test]
    fn strict_utf8_replaces_invalid_bytes_and_keeps_the_rest() {
        let decode_utf8 = |bytes: &[u8]| {
            let mut d = KeyDecoder::utf8();
            for &b in bytes {
                d.feed(RawKey::Char(u32::from(b)));
            }
            d.flush_partial();
            core::iter::from_fn(|| d.pop()).collect::<Vec<_>>()
        };
        let c = Key::Char;
        let r = Key::Char(char::REPLACEMENT_CHARACTER);
        // A stray byte: one U+FFFD, the rest of the line and its newline kept.
        assert_eq!(decode_utf8(b"ab\xffcd\n"), [c('a'), c('b'), r, c('c'), c('d'), Key::Enter]);
        // A cut sequence before a newline, then the next line.
        assert_eq!(decode_utf8(b"\xc3\nx"), [r, Key::Enter, c('x')]);
        // Stray continuation bytes, an overlong sequence, valid text after.
        assert_eq!(decode_utf8(b"\x80\xe0\x80\x80\xc3\xa9"), [r, r, c('\u{e9}')]);
        // A lead byte cut off at the end of input.
        assert_eq!(decode_utf8(b"ok\xe2\x82"), [c('o'), c('k'), r]);
        // Valid UTF-8 is unchanged.
        assert_eq!(decode_utf8("€😀".as_bytes()), [c('€'), c('😀')]);
    }
}
