//! The firmware console: ConOut for text, ConIn for keys, the TSC for time.
//!
//! ConIn delivers UEFI keys (scan code or UCS-2 char). Over OVMF's serial
//! terminal, Backspace (0x7F) arrives as the DELETE scan code, UTF-8 text
//! arrives as one Latin-1 char per byte, and Enter may come as CR, LF or
//! CRLF; [`KeyDecoder`] turns all that into [`Key`]s.

use alloc::collections::VecDeque;
use alloc::string::String;
use core::time::Duration;

use engine::console::{Console, Key, PlatformInfo};
use uefi::proto::console::text::{Key as UefiKey, ScanCode};
use uefi::{boot, system, CStr16};

use crate::{cpu, mem};

/// A key as ConIn reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKey {
    /// A scan code (arrows, function keys, ...), no character.
    Scan(u16),
    /// A UCS-2 character.
    Char(u16),
}

/// Turns [`RawKey`]s into [`Key`]s.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    /// The previous key was a CR (an LF right after it is dropped).
    after_cr: bool,
    /// Bytes of an incomplete UTF-8 sequence that arrived as Latin-1 chars.
    partial: [u8; 4],
    have: usize,
    need: usize,
    out: VecDeque<Key>,
}

impl KeyDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next decoded key.
    pub fn pop(&mut self) -> Option<Key> {
        self.out.pop_front()
    }

    /// Whether an incomplete UTF-8 sequence is waiting for more bytes.
    pub fn has_partial(&self) -> bool {
        self.have > 0
    }

    /// Gives up waiting for the rest of a UTF-8 sequence: its bytes were
    /// Latin-1 characters after all (e.g. 'é' typed on a real keyboard).
    pub fn flush_partial(&mut self) {
        for i in 0..self.have {
            self.out.push_back(Key::Char(char::from(self.partial[i])));
        }
        self.have = 0;
        self.need = 0;
    }

    /// Feeds one raw key.
    pub fn feed(&mut self, raw: RawKey) {
        match raw {
            RawKey::Scan(code) => {
                self.flush_partial();
                self.after_cr = false;
                let key = match ScanCode(code) {
                    ScanCode::UP => Key::Up,
                    ScanCode::DOWN => Key::Down,
                    ScanCode::LEFT => Key::Left,
                    ScanCode::RIGHT => Key::Right,
                    ScanCode::HOME => Key::Home,
                    ScanCode::END => Key::End,
                    // A terminal's Backspace (0x7F) arrives as DELETE and
                    // cannot be told apart from the Delete key: erase left.
                    ScanCode::DELETE => Key::Backspace,
                    ScanCode::ESCAPE => Key::Esc,
                    _ => return,
                };
                self.out.push_back(key);
            }
            RawKey::Char(c) => self.feed_char(c),
        }
    }

    fn feed_char(&mut self, c: u16) {
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
            0x1B => Key::Esc,
            0x00..=0x1F => return,
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
            _ => match char::from_u32(u32::from(c)) {
                Some(ch) => Key::Char(ch),
                None => return,
            },
        };
        self.out.push_back(key);
    }
}

/// Writes text to ConOut: `\n` becomes `\r\n`; characters outside UCS-2
/// become `?`. Errors (e.g. unknown glyphs) are ignored: there is nowhere
/// else to report them.
pub fn conout_write(s: &str) {
    const CAP: usize = 160;
    let mut buf = [0u16; CAP + 1];
    let mut n = 0;
    let flush = |buf: &mut [u16; CAP + 1], n: &mut usize| {
        if *n == 0 {
            return;
        }
        buf[*n] = 0;
        if let Ok(text) = CStr16::from_u16_with_nul(&buf[..=*n]) {
            system::with_stdout(|out| {
                let _ = out.output_string(text);
            });
        }
        *n = 0;
    };
    for ch in s.chars() {
        if n + 2 > CAP {
            flush(&mut buf, &mut n);
        }
        if ch == '\n' {
            buf[n] = u16::from(b'\r');
            buf[n + 1] = u16::from(b'\n');
            n += 2;
            continue;
        }
        let c = ch as u32;
        buf[n] = if c == 0 || c > 0xFFFF || (0xD800..=0xDFFF).contains(&c) { u16::from(b'?') } else { c as u16 };
        n += 1;
    }
    flush(&mut buf, &mut n);
}

/// `core::fmt::Write` onto ConOut.
pub struct ConOut;

impl core::fmt::Write for ConOut {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        conout_write(s);
        Ok(())
    }
}

/// Reads what ConIn has, without waiting.
fn read_raw() -> Option<RawKey> {
    // A key the uefi crate cannot convert is dropped by the firmware call
    // anyway; treat it as nothing.
    match system::with_stdin(|input| input.read_key()) {
        Ok(Some(UefiKey::Printable(c))) => Some(RawKey::Char(u16::from(c))),
        Ok(Some(UefiKey::Special(code))) => Some(RawKey::Scan(code.0)),
        Ok(None) | Err(_) => None,
    }
}

/// The TSC rate, measured against the firmware's stall.
pub fn calibrate_tsc() -> u64 {
    let t0 = cpu::rdtsc();
    boot::stall(Duration::from_millis(200));
    let t1 = cpu::rdtsc();
    let hz = t1.wrapping_sub(t0).saturating_mul(5);
    if hz < 1_000_000 {
        // A TSC that barely moves is useless; pretend 1 GHz so times stay finite.
        1_000_000_000
    } else {
        hz
    }
}

/// How long to wait for the rest of a UTF-8 sequence (ConIn over serial
/// delivers about 100 characters per second).
const UTF8_WAIT_US: u64 = 250_000;

/// The chat's console on UEFI.
pub struct UefiConsole {
    dec: KeyDecoder,
    tsc_hz: u64,
    tsc0: u64,
    partial_since_us: u64,
    simd: String,
    cores: usize,
}

impl UefiConsole {
    pub fn new(tsc_hz: u64, simd: &str, cores: usize) -> Self {
        UefiConsole {
            dec: KeyDecoder::new(),
            tsc_hz: tsc_hz.max(1),
            tsc0: cpu::rdtsc(),
            partial_since_us: 0,
            simd: String::from(simd),
            cores,
        }
    }

    fn elapsed_us(&self) -> u64 {
        let ticks = cpu::rdtsc().wrapping_sub(self.tsc0);
        (u128::from(ticks) * 1_000_000 / u128::from(self.tsc_hz)) as u64
    }

    /// Feeds everything ConIn has into the decoder.
    fn pump(&mut self) {
        // Bounded so a misbehaving device cannot keep us here.
        for _ in 0..256 {
            let Some(raw) = read_raw() else { break };
            let had_partial = self.dec.has_partial();
            self.dec.feed(raw);
            if !had_partial && self.dec.has_partial() {
                self.partial_since_us = self.elapsed_us();
            }
        }
        if self.dec.has_partial() && self.elapsed_us().saturating_sub(self.partial_since_us) > UTF8_WAIT_US {
            self.dec.flush_partial();
        }
    }

    fn has_pending(&self) -> bool {
        !self.dec.out.is_empty()
    }

    /// Waits until ConIn signals a key (the CPU idles meanwhile).
    fn wait_key_event(&self) {
        let waited =
            system::with_stdin(|input| input.wait_for_key_event()).ok().map(|ev| boot::wait_for_event(&[ev]).is_ok());
        if waited != Some(true) {
            boot::stall(Duration::from_millis(10));
        }
    }
}

impl Console for UefiConsole {
    fn write_str(&mut self, s: &str) {
        conout_write(s);
    }

    fn read_key(&mut self) -> Option<Key> {
        loop {
            if let Some(k) = self.dec.pop() {
                return Some(k);
            }
            self.pump();
            if self.dec.has_partial() {
                boot::stall(Duration::from_millis(5));
            } else if !self.has_pending() {
                self.wait_key_event();
            }
        }
    }

    fn poll_key(&mut self) -> Option<Key> {
        if let Some(k) = self.dec.pop() {
            return Some(k);
        }
        self.pump();
        self.dec.pop()
    }

    fn now_us(&mut self) -> u64 {
        self.elapsed_us()
    }

    fn is_interactive(&self) -> bool {
        false
    }

    fn platform(&self) -> PlatformInfo {
        let free = mem::mem_summary().map(|s| s.free).unwrap_or(0);
        PlatformInfo { simd: self.simd.clone(), cores: self.cores, mem_used: mem::live_bytes(), mem_free: free }
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
        let mut v = Vec::new();
        while let Some(k) = d.pop() {
            v.push(k);
        }
        v
    }

    fn chars(s: &[u16]) -> Vec<RawKey> {
        s.iter().map(|&c| RawKey::Char(c)).collect()
    }

    #[test]
    fn scan_codes() {
        let keys = decode(&[
            RawKey::Scan(1),
            RawKey::Scan(2),
            RawKey::Scan(3),
            RawKey::Scan(4),
            RawKey::Scan(5),
            RawKey::Scan(6),
            RawKey::Scan(8),
            RawKey::Scan(0x17),
            RawKey::Scan(0x0B), // F1: ignored
        ]);
        assert_eq!(keys, [Key::Up, Key::Down, Key::Right, Key::Left, Key::Home, Key::End, Key::Backspace, Key::Esc]);
    }

    #[test]
    fn control_chars() {
        let keys = decode(&chars(&[0x08, 0x7F, 0x09, 0x03, 0x04, 0x1B, 0x01, 0x00, b'a' as u16]));
        assert_eq!(keys, [Key::Backspace, Key::Backspace, Key::Tab, Key::CtrlC, Key::CtrlD, Key::Esc, Key::Char('a')]);
    }

    #[test]
    fn enter_variants() {
        assert_eq!(decode(&chars(&[0x0D])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0A])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, 0x0A])), [Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, 0x0D, 0x0A])), [Key::Enter, Key::Enter]);
        assert_eq!(decode(&chars(&[0x0A, 0x0A])), [Key::Enter, Key::Enter]);
        assert_eq!(decode(&chars(&[0x0D, b'x' as u16, 0x0A])), [Key::Enter, Key::Char('x'), Key::Enter]);
    }

    #[test]
    fn utf8_reassembly() {
        // "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80
        let keys = decode(&chars(&[0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, b'!' as u16]));
        assert_eq!(keys, [Key::Char('é'), Key::Char('€'), Key::Char('😀'), Key::Char('!')]);
    }

    #[test]
    fn latin1_fallback() {
        // 'é' typed as a Latin-1 char (0xE9) followed by 'a': not UTF-8.
        assert_eq!(decode(&chars(&[0xE9, b'a' as u16])), [Key::Char('é'), Key::Char('a')]);
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
        // A scan code in the middle flushes.
        assert_eq!(decode(&[RawKey::Char(0xC3), RawKey::Scan(4)]), [Key::Char('Ã'), Key::Left]);
        // UCS-2 chars beyond Latin-1 pass through; surrogates are dropped.
        assert_eq!(decode(&chars(&[0x20AC, 0xD800])), [Key::Char('€')]);
    }
}
