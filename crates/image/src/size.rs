//! Sizes as people write them on a command line, and back.

use anyhow::{bail, Result};

/// Parses a byte count: a plain number of bytes (`"123456"`), or a number
/// (whole or decimal) with a unit.
///
/// Units follow `dd` and `qemu-img`: `K`, `M`, `G`, `T` (and `KiB`, `MiB`,
/// `GiB`, `TiB`) are powers of 1024; `KB`, `MB`, `GB`, `TB` are powers of
/// 1000; `B` is bytes. Units are case-insensitive and may follow a space:
/// `"64M"`, `"2G"`, `"1.5GiB"`, `"700 MB"`. A size that does not come to a
/// whole number of bytes (`"0.1K"`) is refused.
pub fn parse_size(s: &str) -> Result<u64> {
    parse(s, true)
}

/// [`parse_size`] for a limit, where a fraction of a byte does not matter:
/// `"3.9G"` is 3.9 GiB rounded down to a whole byte.
pub fn parse_size_floor(s: &str) -> Result<u64> {
    parse(s, false)
}

fn parse(s: &str, exact: bool) -> Result<u64> {
    let text = s.trim();
    if text.is_empty() {
        bail!("empty size: expected a number of bytes, or a number with a unit such as 64M or 2G");
    }
    if text.starts_with('-') {
        bail!("bad size {s:?}: a size cannot be negative");
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => bail!(
            "bad size {s:?}: unknown unit {unit:?} (use K, M, G, T or KiB, MiB, GiB, TiB for \
             powers of 1024; KB, MB, GB, TB for powers of 1000)"
        ),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        bail!("bad size {s:?}: expected a number such as 64M, 2G, 1.5GiB or 123456");
    }
    let overflow = || anyhow::anyhow!("size {s:?} is too large");
    let whole_value: u64 = if whole.is_empty() { 0 } else { whole.parse::<u64>().map_err(|_| overflow())? };
    let mut bytes = whole_value.checked_mul(multiplier).ok_or_else(overflow)?;
    if !frac.is_empty() {
        // frac digits * multiplier / 10^digits, exactly, in 128-bit arithmetic.
        if frac.len() > 30 {
            bail!("bad size {s:?}: too many decimal digits");
        }
        let digits: u128 = frac.parse().map_err(|_| overflow())?;
        let scale = 10u128.pow(frac.len() as u32);
        let scaled = digits * u128::from(multiplier);
        if exact && !scaled.is_multiple_of(scale) {
            bail!("size {s:?} does not come to a whole number of bytes");
        }
        let extra = u64::try_from(scaled / scale).map_err(|_| overflow())?;
        bytes = bytes.checked_add(extra).ok_or_else(overflow)?;
    }
    Ok(bytes)
}

/// Renders a byte count for messages: `"512 bytes"`, `"62.0 MiB"`, `"3.47 GiB"`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123456").unwrap(), 123456);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("700 MB").unwrap(), 700_000_000);
        assert_eq!(parse_size(".5K").unwrap(), 512);
        assert!(parse_size("0.1K").is_err());
        assert_eq!(parse_size_floor("0.1K").unwrap(), 102);
        assert_eq!(parse_size_floor("3.9G").unwrap(), 4_187_593_113);
        assert_eq!(parse_size_floor("64M").unwrap(), 64 << 20);
        assert!(parse_size_floor("1.2.3M").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-5M").is_err());
        assert!(parse_size("1.2.3M").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(512), "512 bytes");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(format_size(3 << 29), "1.50 GiB");
    }
}
