//! Numbers for people: parameter counts and byte sizes, as the model menu,
//! the load messages and `lbm info` show them.

use alloc::format;
use alloc::string::{String, ToString};

/// A count with a K/M/B/T suffix: 260K, 15M, 1.1B.
pub fn format_params(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1_000_000_000_000, "T"), (1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")];
    for (scale, unit) in UNITS {
        if n >= scale {
            return scaled(n, scale, unit, "");
        }
    }
    n.to_string()
}

/// A byte size in KiB/MiB/GiB: 512 B, 6.1 KiB, 58 MiB.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if bytes >= scale {
            return scaled(bytes, scale, unit, " ");
        }
    }
    format!("{bytes} B")
}

/// `n / scale` with one decimal below 10 and none above, rounded.
fn scaled(n: u64, scale: u64, unit: &str, sep: &str) -> String {
    let tenths = (u128::from(n) * 10 + u128::from(scale) / 2) / u128::from(scale);
    if tenths < 100 {
        format!("{}.{}{sep}{unit}", tenths / 10, tenths % 10)
    } else {
        let whole = (u128::from(n) + u128::from(scale) / 2) / u128::from(scale);
        format!("{whole}{sep}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_sizes() {
        assert_eq!(format_params(999), "999");
        assert_eq!(format_params(262_656), "263K");
        assert_eq!(format_params(260_000), "260K");
        assert_eq!(format_params(15_191_712), "15M");
        assert_eq!(format_params(1_100_048_384), "1.1B");
        assert_eq!(format_params(6_738_415_616), "6.7B");
        assert_eq!(format_params(110_000_000), "110M");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1_056_540), "1.0 MiB");
        assert_eq!(format_size(6227), "6.1 KiB");
        assert_eq!(format_size(60_816_028), "58 MiB");
        assert_eq!(format_size(1_170_000_000), "1.1 GiB");
        assert_eq!(format_size(4 << 30), "4.0 GiB");
    }
}
