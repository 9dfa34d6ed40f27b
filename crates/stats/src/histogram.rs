//! An exact, mergeable latency histogram.
//!
//! Wraps `hdrhistogram` with the settings Swarmer uses everywhere: values in
//! microseconds, 3 significant digits, auto-resizing so an entry that only
//! ever sees fast responses stays small. Serialization uses the standard
//! HdrHistogram V2 encoding so other tools can read what we ship.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Deserializer as SerdeDeserializer, Serialize, Serializer as SerdeSerializer};

const SIGNIFICANT_DIGITS: u8 = 3;

/// The largest response time kept, in microseconds (2^40: about 12.7
/// days); larger ones are recorded as this.
pub const MOST_MICROS: u64 = 1 << 40;
/// The largest response size kept, in bytes (a terabyte).
pub const MOST_CONTENT_LENGTH: u64 = 1 << 40;
/// The highest trackable value a histogram of ours can reach by growing to
/// hold [`MOST_MICROS`] (hdrhistogram grows by powers of two).
const MOST_HIGH: u64 = 1 << 42;
/// HdrHistogram's V2 cookie (uncompressed, 8-byte counts): the only
/// encoding [`LatencyHistogram::to_bytes`] writes.
const V2_COOKIE: u32 = 0x1c84_9313;
/// Bytes before a V2 encoding's counts.
const V2_HEADER: usize = 40;

/// Failure to (de)serialize a histogram.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    /// Serializing failed; holds hdrhistogram's error, formatted.
    #[error("histogram could not be encoded: {0}")]
    Encode(String),
    /// The bytes could not be decoded; holds hdrhistogram's error, formatted.
    #[error("histogram bytes are not a valid HdrHistogram V2 encoding: {0}")]
    Decode(String),
}

/// Response times in microseconds, 3 significant digits.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl LatencyHistogram {
    /// An empty histogram that grows as larger values arrive.
    pub fn new() -> Self {
        let mut inner =
            Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is within HdrHistogram's supported range");
        inner.auto(true);
        Self { inner }
    }

    /// Record one response time in microseconds.
    #[inline]
    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(MOST_MICROS);
        // Auto-resize is on, so recording cannot fail for any u64 value that
        // fits the histogram's maximum range; the error branch is unreachable
        // in practice but we clamp instead of panicking.
        if self.inner.record(micros).is_err() {
            let _ = self.inner.record(self.inner.high());
        }
    }

    /// Add every sample of `other` to this histogram. Exact: no rounding
    /// beyond the shared 3-significant-digit bucketing.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.inner.add(&other.inner).is_err() {
            // Only possible when auto-resize is off, which never happens here.
            for v in other.inner.iter_recorded() {
                let _ = self.inner.record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Take out every sample of `earlier`, a histogram this one grew from
    /// (a snapshot of it): what was recorded since. Exact, bucket by bucket.
    pub fn subtract(&mut self, earlier: &LatencyHistogram) {
        // `earlier` must be a snapshot of this one: otherwise nothing is
        // taken out rather than a wrong difference (hdrhistogram changes
        // counts before it finds out, and panics when the total would go
        // below zero, so the difference is made on a copy after a check).
        if earlier.count() > self.count() || earlier.max() > self.max() {
            return;
        }
        let mut difference = self.inner.clone();
        if difference.subtract(&earlier.inner).is_ok() {
            self.inner = difference;
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Value at `quantile` (0.0..=1.0) in microseconds; 0 when empty.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        if self.inner.is_empty() {
            return 0;
        }
        if quantile >= 1.0 {
            return self.inner.max();
        }
        self.inner.value_at_quantile(quantile)
    }

    /// Smallest recorded value in microseconds (to 3 significant digits); 0 when empty.
    pub fn min(&self) -> u64 {
        if self.inner.is_empty() { 0 } else { self.inner.min() }
    }

    /// Largest recorded value in microseconds (to 3 significant digits); 0 when empty.
    pub fn max(&self) -> u64 {
        self.inner.max()
    }

    /// Every distinct recorded value (highest equivalent, microseconds) with
    /// its count, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.inner.iter_recorded().map(|v| (self.inner.highest_equivalent(v.value_iterated_to()), v.count_at_value()))
    }

    /// Remove every recorded value; min and max read 0 again.
    pub fn clear(&mut self) {
        self.inner.reset();
    }

    /// Encode with the HdrHistogram V2 format.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HistogramError> {
        let mut out = Vec::new();
        V2Serializer::new().serialize(&self.inner, &mut out).map_err(|e| HistogramError::Encode(format!("{e:?}")))?;
        Ok(out)
    }

    /// Bytes the counts of the histogram encoded in `bytes` take once
    /// decoded (from its header's range; 0 for bytes that are not one), so
    /// a receiver can bound what a message of many histograms costs before
    /// decoding any.
    pub fn decoded_size(bytes: &[u8]) -> usize {
        let Some(V2Header { high, .. }) = V2Header::read(bytes) else { return 0 };
        // 3 digits: 2048 sub-buckets, then one bucket (of 1024 more counts)
        // per power of two up to `high`.
        let buckets = (64 - high.max(1).leading_zeros()).saturating_sub(11) as usize + 1;
        (buckets + 1) * 1024 * 8
    }

    /// Decode a V2 encoding (uncompressed) with the settings
    /// [`LatencyHistogram::to_bytes`] writes: 3 significant digits, lowest
    /// value 1, a range no wider than [`MOST_MICROS`] needs. Anything else
    /// is refused before it is decoded, so hostile bytes cannot make it
    /// allocate more than such a histogram.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HistogramError> {
        let refused = |why: String| Err(HistogramError::Decode(why));
        let Some(V2Header { cookie, payload, digits, low, high }) = V2Header::read(bytes) else {
            return refused(format!("{} bytes, shorter than a header", bytes.len()));
        };
        if cookie != V2_COOKIE {
            return refused(format!("cookie {cookie:#x}: only uncompressed V2 ({V2_COOKIE:#x}) is read"));
        }
        if payload as usize > bytes.len() - V2_HEADER {
            return refused(format!("{payload} bytes of counts announced, {} given", bytes.len() - V2_HEADER));
        }
        if digits != u32::from(SIGNIFICANT_DIGITS) || low != 1 || high > MOST_HIGH {
            return refused(format!(
                "{digits} significant digits, values {low} to {high}: Swarmer's have {SIGNIFICANT_DIGITS}, 1 to at most \
                 {MOST_HIGH}"
            ));
        }
        let mut inner: Histogram<u64> =
            Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        inner.auto(true);
        Ok(Self { inner })
    }
}

/// The fields of a V2 encoding's header that say what decoding it costs.
struct V2Header {
    cookie: u32,
    /// Bytes of counts that follow.
    payload: u32,
    digits: u32,
    low: u64,
    high: u64,
}

impl V2Header {
    /// The header at the start of `bytes`, if they are long enough.
    fn read(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..V2_HEADER)?;
        let word = |at: usize| header[at..at + 4].try_into().ok().map(u32::from_be_bytes);
        let long = |at: usize| header[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        Some(Self { cookie: word(0)?, payload: word(4)?, digits: word(12)?, low: long(16)?, high: long(24)? })
    }
}

impl Serialize for LatencyHistogram {
    fn serialize<S: SerdeSerializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_bytes().map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: SerdeDeserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(deserializer)?;
        LatencyHistogram::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one_histogram() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut all = LatencyHistogram::new();
        for v in 1..5_000u64 {
            let micros = v * 37 % 100_000 + 1;
            if v % 3 == 0 {
                a.record(micros)
            } else {
                b.record(micros)
            }
            all.record(micros);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(a.value_at_quantile(q), all.value_at_quantile(q), "quantile {q}");
        }
        assert_eq!(a, all);
    }

    /// What a hostile peer could send: other precisions and ranges (which
    /// would make the decoder allocate gigabytes), a compressed encoding,
    /// a header announcing more counts than it carries.
    #[test]
    fn only_histograms_with_our_settings_are_decoded() {
        let mut ours = LatencyHistogram::new();
        ours.record(u64::MAX);
        let clamped = ours.max();
        assert!((MOST_MICROS..=MOST_MICROS + MOST_MICROS / 1000).contains(&clamped), "{clamped}");
        let bytes = ours.to_bytes().unwrap();
        assert_eq!(LatencyHistogram::from_bytes(&bytes).unwrap(), ours);

        let encode = |h: &Histogram<u64>| {
            let mut out = Vec::new();
            V2Serializer::new().serialize(h, &mut out).unwrap();
            out
        };
        let five_digits = Histogram::<u64>::new_with_bounds(1, u64::MAX, 5).unwrap();
        let err = LatencyHistogram::from_bytes(&encode(&five_digits)).unwrap_err().to_string();
        assert!(err.contains("5 significant digits"), "{err}");
        let wide = Histogram::<u64>::new_with_bounds(1, 1 << 50, 3).unwrap();
        assert!(LatencyHistogram::from_bytes(&encode(&wide)).is_err());
        let mut compressed = Vec::new();
        hdrhistogram::serialization::V2DeflateSerializer::new().serialize(&ours.inner, &mut compressed).unwrap();
        assert!(LatencyHistogram::from_bytes(&compressed).unwrap_err().to_string().contains("cookie"));
        let mut lying = bytes.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(LatencyHistogram::from_bytes(&lying).unwrap_err().to_string().contains("announced"));
        assert!(LatencyHistogram::from_bytes(&bytes[..10]).is_err());
    }

    #[test]
    fn serialization_round_trips_exactly() {
        let mut h = LatencyHistogram::new();
        for v in [1u64, 10, 999, 1_000, 12_345, 3_000_000] {
            h.record(v);
        }
        let back = LatencyHistogram::from_bytes(&h.to_bytes().unwrap()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn three_significant_digits_at_microsecond_resolution() {
        let mut h = LatencyHistogram::new();
        h.record(123_456); // 123.456 ms
        let p = h.value_at_quantile(0.5);
        // 3 significant digits: within 0.1% of the recorded value.
        assert!((p as f64 - 123_456.0).abs() / 123_456.0 < 0.001, "{p}");
        h.record(7);
        assert_eq!(h.min(), 7);
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        assert!(LatencyHistogram::from_bytes(b"not a histogram").is_err());
        assert!(LatencyHistogram::from_bytes(&[]).is_err());
    }
}
