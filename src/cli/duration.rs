//! Parsing `--idle` durations: `90`, `90s`, `30m`, `2h`, `1d` (one unit, no fractions).

use std::time::Duration;

/// Parses a duration such as `30m`; a bare number is seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 90s, 30m or 2h)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    let secs = n.checked_mul(mult).ok_or_else(|| format!("`{text}` is too long"))?;
    if secs == 0 {
        return Err("the idle time must be at least 1 second".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse("0").is_err());
        assert!(parse("m").is_err());
        assert!(parse("5w").is_err());
        assert!(parse("1.5h").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
