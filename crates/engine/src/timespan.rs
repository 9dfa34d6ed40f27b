//! Locust's time spans: `90` (seconds), `30s`, `5m`, `1h30m`, `1h20m30s`.

use std::time::Duration;

use crate::error::TimespanError;

/// Parse a time span; the error says what was expected.
pub fn parse_timespan(text: &str) -> Result<Duration, TimespanError> {
    let text = text.trim();
    let invalid = || TimespanError(text.to_owned());
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    let mut last_unit = 0; // 1 = h, 2 = m, 3 = s: units must come in this order
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (unit, factor) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(invalid()),
        };
        if number.is_empty() || unit <= last_unit {
            return Err(invalid());
        }
        let n: u64 = number.parse().map_err(|_| invalid())?;
        total = n.checked_mul(factor).and_then(|v| total.checked_add(v)).ok_or_else(invalid)?;
        number.clear();
        last_unit = unit;
    }
    if !number.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locust_formats() {
        assert_eq!(parse_timespan("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timespan("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timespan("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timespan("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_timespan("1h20m30s").unwrap(), Duration::from_secs(4830));
    }

    #[test]
    fn nonsense_is_rejected_with_a_hint() {
        for bad in ["", "abc", "5x", "m5", "1m1h", "10s5", "-3"] {
            let err = parse_timespan(bad).unwrap_err();
            assert!(err.to_string().contains("expected e.g."), "{bad}: {err}");
        }
    }
}
