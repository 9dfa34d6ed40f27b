//! How numbers are printed. Response times keep the histogram's precision
//! (3 significant digits, microseconds) instead of Locust's rounding.

/// Milliseconds with up to three decimals, trailing zeros removed: `12`,
/// `12.5`, `0.123`. Integers print as integers, so readers expecting
/// Locust's whole milliseconds still parse them.
pub fn ms(value: f64) -> String {
    trim(format!("{value:.3}"))
}

/// Whole milliseconds, rounded half up, as Locust writes its medians and
/// percentiles (`int(row["95%"])` must work on every such field).
pub fn whole_ms(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 { (value + 0.5).floor() as u64 } else { 0 }
}

/// `entry`'s response times in Locust's `response_times` buckets
/// ([`locust_bucket_ms`] → count), lowest first.
pub fn locust_buckets(entry: &swarmer_stats::StatsEntry) -> std::collections::BTreeMap<u64, u64> {
    let mut buckets = std::collections::BTreeMap::new();
    for (micros, count) in entry.histogram.buckets() {
        *buckets.entry(locust_bucket_ms(micros as f64 / 1000.0)).or_default() += count;
    }
    buckets
}

/// Locust's bucket for a response time in its `response_times`: whole
/// milliseconds below 100, then two significant digits (`147.3` → 150,
/// `1234` → 1200, `12345` → 12000).
pub fn locust_bucket_ms(value: f64) -> u64 {
    let whole = whole_ms(value);
    let step = match whole {
        0..100 => 1,
        100..1_000 => 10,
        1_000..10_000 => 100,
        _ => 1_000,
    };
    (whole + step / 2) / step * step
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
    fn whole_ms_round_half_up_and_locusts_buckets_keep_two_digits() {
        assert_eq!([whole_ms(0.153), whole_ms(0.5), whole_ms(12.49), whole_ms(f64::NAN)], [0, 1, 12, 0]);
        let buckets = [0.4, 99.4, 147.3, 995.0, 1234.0, 12_345.0].map(locust_bucket_ms);
        assert_eq!(buckets, [0, 99, 150, 1000, 1200, 12_000]);
    }

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
