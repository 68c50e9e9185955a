//! A tiny reader for `encoder.json` / `vocab.json`: one flat JSON object
//! mapping strings to non-negative integers. Anything else is an error.

use crate::{Error, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const WHAT: &str = "encoder.json";

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn invalid(&self, detail: &str) -> Error {
        Error::invalid(WHAT, format!("{detail} at byte {}", self.pos))
    }

    fn eof(&self) -> Error {
        Error::truncated(WHAT, self.pos as u64, 1, 0)
    }

    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The next byte after white space, without consuming it.
    fn peek(&mut self) -> Result<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied().ok_or_else(|| self.eof())
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek()? != b {
            return Err(self.invalid(&format!("expected '{}'", b as char)));
        }
        self.pos += 1;
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.eof())?;
        let mut v = 0;
        for &d in digits {
            let x = (d as char).to_digit(16).ok_or_else(|| self.invalid("bad \\u escape"))?;
            v = v * 16 + x;
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while !matches!(self.s.get(self.pos), None | Some(b'"' | b'\\' | 0..=0x1f)) {
                self.pos += 1;
            }
            // The whole input was checked to be UTF-8 and we stop only at ASCII bytes.
            out.push_str(core::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.invalid("bad UTF-8"))?);
            let Some(&b) = self.s.get(self.pos) else {
                return Err(self.eof());
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.s.get(self.pos).ok_or_else(|| self.eof())?;
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.invalid("unknown escape")),
                    };
                    out.push(c);
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.invalid("control character in string"));
                }
            }
        }
    }

    /// The code point of `\uXXXX` (after the `u`), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char> {
        let hi = self.hex4()?;
        let cp = match hi {
            0xD800..=0xDBFF => {
                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.invalid("unpaired surrogate"));
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.invalid("unpaired surrogate"));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            _ => hi,
        };
        char::from_u32(cp).ok_or_else(|| self.invalid("unpaired surrogate"))
    }

    fn id(&mut self) -> Result<u32> {
        self.skip_ws();
        let start = self.pos;
        let mut v: u32 = 0;
        while let Some(d) = self.s.get(self.pos).filter(|d| d.is_ascii_digit()) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(d - b'0')))
                .ok_or_else(|| self.invalid("token id too large"))?;
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 || (len > 1 && self.s[start] == b'0') {
            self.pos = start;
            return Err(self.invalid("expected a non-negative integer token id"));
        }
        Ok(v)
    }
}

/// Parses `{"piece": id, ...}` into `(piece, id)` pairs in file order.
pub(super) fn parse_object(bytes: &[u8]) -> Result<Vec<(String, u32)>> {
    if let Err(e) = core::str::from_utf8(bytes) {
        return Err(Error::invalid(WHAT, format!("not UTF-8 at byte {}", e.valid_up_to())));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut r = Reader { s: bytes, pos: 0 };
    let mut out = Vec::new();
    r.expect(b'{')?;
    if r.peek()? == b'}' {
        r.pos += 1;
    } else {
        loop {
            let key = r.string()?;
            r.expect(b':')?;
            out.push((key, r.id()?));
            match r.peek()? {
                b',' => r.pos += 1,
                b'}' => {
                    r.pos += 1;
                    break;
                }
                _ => return Err(r.invalid("expected ',' or '}'")),
            }
        }
    }
    r.skip_ws();
    if r.pos != r.s.len() {
        return Err(r.invalid("trailing data after the object"));
    }
    Ok(out)
}
