//! The firmware console: ConOut for text, ConIn for keys, the TSC for time.
//!
//! ConIn delivers UEFI keys (scan code or UCS-2 char). Over OVMF's serial
//! terminal, Backspace (0x7F) arrives as the DELETE scan code, UTF-8 text
//! arrives as one Latin-1 char per byte, and Enter may come as CR, LF or
//! CRLF; [`scan_key`] maps the scan codes and `repl`'s [`KeyDecoder`] turns
//! the rest into [`Key`]s.

use alloc::string::String;
use core::time::Duration;

use repl::{Console, Key, KeyDecoder, PlatformInfo, RawKey};
use uefi::proto::console::text::{Key as UefiKey, ScanCode};
use uefi::{boot, system, CStr16};

use crate::{cpu, mem};

/// The key a UEFI scan code stands for (`None`: one the chat does not use).
pub fn scan_key(code: u16) -> Option<Key> {
    Some(match ScanCode(code) {
        ScanCode::UP => Key::Up,
        ScanCode::DOWN => Key::Down,
        ScanCode::LEFT => Key::Left,
        ScanCode::RIGHT => Key::Right,
        ScanCode::HOME => Key::Home,
        ScanCode::END => Key::End,
        // A terminal's Backspace (0x7F) arrives as DELETE and cannot be told
        // apart from the Delete key: erase left.
        ScanCode::DELETE => Key::Backspace,
        ScanCode::ESCAPE => Key::Esc,
        _ => return None,
    })
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
    // anyway; treat it as nothing. A scan code the chat does not use still
    // ends a pending UTF-8 or escape sequence, as any key does: it is fed as
    // a NUL, which decodes to nothing.
    match system::with_stdin(|input| input.read_key()) {
        Ok(Some(UefiKey::Printable(c))) => Some(RawKey::Char(u32::from(u16::from(c)))),
        Ok(Some(UefiKey::Special(code))) => Some(scan_key(code.0).map_or(RawKey::Char(0), RawKey::Key)),
        Ok(None) | Err(_) => None,
    }
}

/// The rate of `cpu::ticks`: the generic timer's stated frequency on
/// aarch64, the TSC measured against the firmware's stall on x86-64.
pub fn calibrate_tsc() -> u64 {
    if let Some(hz) = cpu::ticks_hz() {
        return hz;
    }
    let t0 = cpu::ticks();
    boot::stall(Duration::from_millis(200));
    let t1 = cpu::ticks();
    let hz = t1.wrapping_sub(t0).saturating_mul(5);
    if hz < 1_000_000 {
        // A TSC that barely moves is useless; pretend 1 GHz so times stay finite.
        1_000_000_000
    } else {
        hz
    }
}

/// How long to wait for the rest of a UTF-8 or escape sequence (ConIn over
/// serial delivers about 100 characters per second).
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
    /// The SIMD level `/stats` reports (after a cap from the settings).
    pub fn set_simd(&mut self, simd: &str) {
        self.simd = String::from(simd);
    }

    pub fn new(tsc_hz: u64, simd: &str, cores: usize) -> Self {
        UefiConsole {
            dec: KeyDecoder::new(),
            tsc_hz: tsc_hz.max(1),
            tsc0: cpu::ticks(),
            partial_since_us: 0,
            simd: String::from(simd),
            cores,
        }
    }

    fn elapsed_us(&self) -> u64 {
        let ticks = cpu::ticks().wrapping_sub(self.tsc0);
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
        self.dec.has_keys()
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

    #[test]
    fn scan_codes() {
        let keys: alloc::vec::Vec<Option<Key>> = [1, 2, 3, 4, 5, 6, 8, 0x17, 0x0B].into_iter().map(scan_key).collect();
        let want = [Key::Up, Key::Down, Key::Right, Key::Left, Key::Home, Key::End, Key::Backspace, Key::Esc];
        assert_eq!(keys[..8], want.map(Some));
        assert_eq!(keys[8], None, "F1 is ignored");
    }
}
