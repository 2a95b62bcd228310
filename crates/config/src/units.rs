//! Durations (`500ms`, `5s`, `10m`, `1h`, or plain seconds) and sizes (`256MiB`, or plain bytes).
//!
//! Only whole numbers and a single unit are accepted: a config is read by people under
//! pressure, and `1.5h` or `1h30m` buy little while making typos harder to spot.
//! Decimal size units (`KB`, `MB`, `GB`) are refused rather than guessed, because tools
//! disagree on whether they mean 1000 or 1024.

use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Splits `text` into its leading decimal digits and the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h`, or a plain
/// number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (digits, unit) = split_number(trimmed);
    let usage = "use a whole number followed by ms, s, m or h (e.g. 500ms, 5s, 10m, 1h), \
                 or a plain number of seconds";
    if digits.is_empty() {
        return Err(format!("invalid duration `{text}`: {usage}"));
    }
    let too_large = || format!("duration `{text}` is too large");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("invalid duration `{text}`: {usage}")),
    };
    let millis = n.checked_mul(millis_per_unit).ok_or_else(too_large)?;
    Ok(Duration::from_millis(millis))
}

/// Parses a size: a whole number of bytes, optionally followed by `B`, `KiB`, `MiB` or `GiB`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, unit) = split_number(trimmed);
    let usage = "use a whole number of bytes, or a whole number followed by B, KiB, MiB or GiB \
                 (e.g. 256MiB)";
    if digits.is_empty() {
        return Err(format!("invalid size `{text}`: {usage}"));
    }
    let too_large = || format!("size `{text}` is too large");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let unit = unit.trim_start();
    let multiplier = match unit {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        _ => {
            let binary = match unit.to_ascii_uppercase().as_str() {
                "K" | "KB" | "KIB" => Some("KiB"),
                "M" | "MB" | "MIB" => Some("MiB"),
                "G" | "GB" | "GIB" => Some("GiB"),
                _ => None,
            };
            return Err(match binary {
                Some(binary) => format!(
                    "invalid size `{text}`: `{unit}` is ambiguous, write `{binary}` \
                     (sizes use powers of 1024: KiB, MiB, GiB)"
                ),
                None => format!("invalid size `{text}`: {usage}"),
            });
        }
    };
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// Renders a duration in the largest unit that represents it exactly (`1h`, `10m`, `5s`, `500ms`).
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        "0s".to_owned()
    } else if millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

/// Renders a size in the largest binary unit that represents it exactly (`256MiB`, `1000B`).
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes != 0 && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", 500),
            ("5s", 5_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("30", 30_000),
            ("0", 0),
            (" 7 s ", 7_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in [
            "",
            "s",
            "1.5s",
            "5x",
            "-1",
            "1h30m",
            "5 sec",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("1024", 1024),
            ("1B", 1),
            ("4KiB", 4096),
            ("256MiB", 256 * MIB),
            ("1GiB", GIB),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        let err = parse_size("256MB").unwrap_err();
        assert!(err.contains("`MB` is ambiguous, write `MiB`"), "{err}");
        let err = parse_size("1k").unwrap_err();
        assert!(err.contains("write `KiB`"), "{err}");
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_size(256 * MIB), "256MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
