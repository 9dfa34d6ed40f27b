//! How numbers are printed. Response times keep the histogram's precision
//! (3 significant digits, microseconds) instead of Locust's rounding.

/// Milliseconds with up to three decimals, trailing zeros removed: `12`,
/// `12.5`, `0.123`. Integers print as integers, so readers expecting
/// Locust's whole milliseconds still parse them.
pub fn ms(value: f64) -> String {
    trim(format!("{value:.3}"))
}

/// A float with up to `decimals` decimals, trailing zeros removed.
pub fn trimmed(value: f64, decimals: usize) -> String {
    trim(format!("{value:.decimals$}"))
}

fn trim(mut text: String) -> String {
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if text == "-0" { "0".into() } else { text }
}

/// Milliseconds for a fixed-width console column: more decimals for small
/// values so sub-millisecond responses do not all read `0`.
pub fn ms_column(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zeros_are_trimmed() {
        assert_eq!(ms(12.0), "12");
        assert_eq!(ms(12.5), "12.5");
        assert_eq!(ms(0.1234), "0.123");
        assert_eq!(ms(0.0), "0");
        assert_eq!(trimmed(1.23456, 2), "1.23");
    }

    #[test]
    fn columns_keep_small_values_readable() {
        assert_eq!(ms_column(0.123), "0.12");
        assert_eq!(ms_column(42.26), "42.3");
        assert_eq!(ms_column(1234.4), "1234");
    }
}
