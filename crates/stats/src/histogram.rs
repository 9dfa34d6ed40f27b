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
///
/// One received from another process ([`LatencyHistogram::received`]) is
/// kept as the list of its recorded counts until something needs more
/// than its count and maximum: merging it into another then costs one
/// step per distinct value rather than one per bucket of the whole range
/// (a second's report of 20 requests a name against ~11,000 buckets for
/// times up to half a second), which is what lets a master merge a
/// thousand workers' reports.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// Counts in hdrhistogram's buckets.
    Dense(Histogram<u64>),
    /// The recorded counts of a decoded V2 encoding.
    Received(Box<Received>),
}

/// The recorded counts of a decoded V2 encoding.
#[derive(Clone, Debug)]
struct Received {
    /// (lowest value of the bucket, count), lowest first, counts > 0.
    counts: Vec<(u64, u64)>,
    total: u64,
}

/// An empty histogram with our settings, for what depends on the buckets'
/// layout only (the highest value of a bucket).
static LAYOUT: std::sync::LazyLock<Histogram<u64>> = std::sync::LazyLock::new(empty);

/// An empty histogram with our settings.
fn empty() -> Histogram<u64> {
    let mut inner =
        Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is within HdrHistogram's supported range");
    inner.auto(true);
    inner
}

/// Add a received list's counts to `dense` (the same bucketing, so each
/// lands in the bucket it came from: exact).
fn add_received(dense: &mut Histogram<u64>, received: &Received) {
    for &(value, count) in &received.counts {
        if dense.record_n(value, count).is_err() {
            let _ = dense.record_n(dense.high(), count);
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        *self.dense() == *other.dense()
    }
}

impl LatencyHistogram {
    /// An empty histogram that grows as larger values arrive.
    pub fn new() -> Self {
        Self { repr: Repr::Dense(empty()) }
    }

    /// The histogram with its counts in buckets (made from a received
    /// list when needed, for reading).
    fn dense(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
        match &self.repr {
            Repr::Dense(inner) => std::borrow::Cow::Borrowed(inner),
            Repr::Received(received) => {
                let mut dense = empty();
                add_received(&mut dense, received);
                std::borrow::Cow::Owned(dense)
            }
        }
    }

    /// The histogram with its counts in buckets, a received list moved
    /// into them first.
    fn dense_mut(&mut self) -> &mut Histogram<u64> {
        if let Repr::Received(received) = &self.repr {
            let mut dense = empty();
            add_received(&mut dense, received);
            self.repr = Repr::Dense(dense);
        }
        match &mut self.repr {
            Repr::Dense(inner) => inner,
            Repr::Received(_) => unreachable!("made dense above"),
        }
    }

    /// Record one response time in microseconds.
    #[inline]
    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(MOST_MICROS);
        let inner = self.dense_mut();
        // Auto-resize is on, so recording cannot fail for any u64 value that
        // fits the histogram's maximum range; the error branch is unreachable
        // in practice but we clamp instead of panicking.
        if inner.record(micros).is_err() {
            let _ = inner.record(inner.high());
        }
    }

    /// Add every sample of `other` to this histogram. Exact: no rounding
    /// beyond the shared 3-significant-digit bucketing.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let inner = self.dense_mut();
        match &other.repr {
            Repr::Received(received) => add_received(inner, received),
            Repr::Dense(other) => {
                if inner.add(other).is_err() {
                    // Only possible when auto-resize is off, which never happens here.
                    for v in other.iter_recorded() {
                        let _ = inner.record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
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
        let earlier = earlier.dense();
        let mut difference = self.dense_mut().clone();
        if difference.subtract(&*earlier).is_ok() {
            self.repr = Repr::Dense(difference);
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        match &self.repr {
            Repr::Received(received) => received.total,
            Repr::Dense(inner) => inner.len(),
        }
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Value at `quantile` (0.0..=1.0) in microseconds; 0 when empty.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        let inner = self.dense();
        if inner.is_empty() {
            return 0;
        }
        if quantile >= 1.0 {
            return inner.max();
        }
        inner.value_at_quantile(quantile)
    }

    /// Smallest recorded value in microseconds (to 3 significant digits); 0 when empty.
    pub fn min(&self) -> u64 {
        let inner = self.dense();
        if inner.is_empty() { 0 } else { inner.min() }
    }

    /// Largest recorded value in microseconds (to 3 significant digits); 0 when empty.
    pub fn max(&self) -> u64 {
        match &self.repr {
            // The highest value of the last bucket, as hdrhistogram reports it.
            Repr::Received(received) => {
                received.counts.last().map_or(0, |&(value, _)| LAYOUT.highest_equivalent(value))
            }
            Repr::Dense(inner) => inner.max(),
        }
    }

    /// Every distinct recorded value (highest equivalent, microseconds) with
    /// its count, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let inner = self.dense();
        let listed: Vec<(u64, u64)> = inner
            .iter_recorded()
            .map(|v| (inner.highest_equivalent(v.value_iterated_to()), v.count_at_value()))
            .collect();
        listed.into_iter()
    }

    /// Remove every recorded value; min and max read 0 again.
    pub fn clear(&mut self) {
        match &mut self.repr {
            Repr::Dense(inner) => inner.reset(),
            Repr::Received(_) => self.repr = Repr::Dense(empty()),
        }
    }

    /// Encode with the HdrHistogram V2 format.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HistogramError> {
        let mut out = Vec::new();
        V2Serializer::new()
            .serialize(&*self.dense(), &mut out)
            .map_err(|e| HistogramError::Encode(format!("{e:?}")))?;
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
        Self::checked_header(bytes)?;
        let mut inner: Histogram<u64> =
            Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        inner.auto(true);
        Ok(Self { repr: Repr::Dense(inner) })
    }

    /// [`LatencyHistogram::from_bytes`] for a histogram about to be merged
    /// into another (a worker's report on a master): its counts are read
    /// as a list, without laying out the buckets of its whole range (see
    /// the type). Refuses what `from_bytes` refuses, and counts that do
    /// not fit the range its header gives or that overflow.
    pub fn received(bytes: &[u8]) -> Result<Self, HistogramError> {
        let refused = |why: String| Err(HistogramError::Decode(why));
        let header = Self::checked_header(bytes)?;
        // Indexes of a histogram of 3 digits whose range reaches `high`
        // (as `decoded_size` counts them).
        let slots = Self::decoded_size(bytes) / 8;
        let payload = &bytes[V2_HEADER..V2_HEADER + header.payload as usize];
        let mut counts = Vec::new();
        let (mut at, mut index, mut total) = (0usize, 0usize, 0u64);
        while at < payload.len() {
            let Some((encoded, used)) = read_varint(&payload[at..]) else {
                return refused(format!("counts cut short at byte {at}"));
            };
            at += used;
            // Zig-zag: a negative number is a run of empty buckets.
            let number = ((encoded >> 1) as i64) ^ -((encoded & 1) as i64);
            if number < 0 {
                index = index.saturating_add(number.unsigned_abs().try_into().unwrap_or(usize::MAX));
                continue;
            }
            if index >= slots {
                return refused(format!("a count past the range its header gives ({} values)", header.high));
            }
            if number > 0 {
                let count = number as u64;
                total = match total.checked_add(count) {
                    Some(total) => total,
                    None => return refused("counts that overflow".into()),
                };
                counts.push((value_at_index(index), count));
            }
            index += 1;
        }
        Ok(Self { repr: Repr::Received(Box::new(Received { counts, total })) })
    }

    /// The header of a V2 encoding with our settings, or why not.
    fn checked_header(bytes: &[u8]) -> Result<V2Header, HistogramError> {
        let refused = |why: String| Err(HistogramError::Decode(why));
        let Some(header) = V2Header::read(bytes) else {
            return refused(format!("{} bytes, shorter than a header", bytes.len()));
        };
        let V2Header { cookie, payload, offset, digits, low, high } = header;
        if cookie != V2_COOKIE {
            return refused(format!("cookie {cookie:#x}: only uncompressed V2 ({V2_COOKIE:#x}) is read"));
        }
        if payload as usize > bytes.len() - V2_HEADER {
            return refused(format!("{payload} bytes of counts announced, {} given", bytes.len() - V2_HEADER));
        }
        if digits != u32::from(SIGNIFICANT_DIGITS) || low != 1 || high > MOST_HIGH || offset != 0 {
            return refused(format!(
                "{digits} significant digits, values {low} to {high}, index offset {offset}: Swarmer's have \
                 {SIGNIFICANT_DIGITS}, 1 to at most {MOST_HIGH}, 0"
            ));
        }
        Ok(header)
    }
}

/// The lowest value of the bucket at `index` for 3 significant digits from
/// 1: 2,048 sub-buckets, the upper 1,024 of each further bucket twice as
/// wide as the last (hdrhistogram's layout).
fn value_at_index(index: usize) -> u64 {
    const HALF_MAGNITUDE: u32 = 10;
    const HALF: usize = 1 << HALF_MAGNITUDE;
    let bucket = (index >> HALF_MAGNITUDE) as i64 - 1;
    let sub = (index & (HALF - 1)) + HALF;
    if bucket < 0 { (sub - HALF) as u64 } else { (sub as u64) << bucket }
}

/// A LEB128 number of at most 9 bytes (the 9th holds 8 bits), as V2
/// encodings write counts: the number and the bytes it took, or `None`
/// if `bytes` end first.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some((value | (u64::from(byte) << 56), 9));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The fields of a V2 encoding's header that say what decoding it costs.
struct V2Header {
    cookie: u32,
    /// Bytes of counts that follow.
    payload: u32,
    /// The normalizing index offset (ours write 0).
    offset: u32,
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
        Some(Self {
            cookie: word(0)?,
            payload: word(4)?,
            offset: word(8)?,
            digits: word(12)?,
            low: long(16)?,
            high: long(24)?,
        })
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
    fn a_received_histogram_merges_and_reads_exactly_as_a_decoded_one() {
        let mut rng = 12345u64;
        let mut next = move || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            rng >> 20
        };
        let (mut decoded_sum, mut received_sum) = (LatencyHistogram::new(), LatencyHistogram::new());
        for round in 0..40 {
            let mut h = LatencyHistogram::new();
            // Each round reaches another range: up to the largest kept.
            let top = 1u64 << (4 + round);
            for _ in 0..(1 + next() % 300) {
                h.record(1 + next() % top.min(MOST_MICROS));
            }
            if round % 7 == 0 {
                h.record(MOST_MICROS);
            }
            let bytes = h.to_bytes().unwrap();
            let decoded = LatencyHistogram::from_bytes(&bytes).unwrap();
            let received = LatencyHistogram::received(&bytes).unwrap();
            assert_eq!(received.count(), decoded.count());
            assert_eq!(received.max(), decoded.max(), "round {round}");
            assert_eq!(received.min(), decoded.min());
            assert_eq!(received.value_at_quantile(0.95), decoded.value_at_quantile(0.95));
            assert!(received == decoded);
            assert_eq!(received.to_bytes().unwrap(), bytes);
            decoded_sum.merge(&decoded);
            received_sum.merge(&received);
            assert!(decoded_sum == received_sum, "round {round}");
        }
        // A received one merged into, or recorded into, becomes whole.
        let mut grown = LatencyHistogram::received(&decoded_sum.to_bytes().unwrap()).unwrap();
        grown.merge(&received_sum);
        grown.record(5);
        let mut expected = decoded_sum.clone();
        expected.merge(&received_sum);
        expected.record(5);
        assert!(grown == expected);
    }

    #[test]
    fn received_counts_out_of_range_cut_short_or_overflowing_are_refused() {
        let mut h = LatencyHistogram::new();
        h.record(100);
        let good = h.to_bytes().unwrap();
        let with_counts = |counts: &[u8]| {
            let mut bytes = good[..V2_HEADER].to_vec();
            bytes[4..8].copy_from_slice(&(counts.len() as u32).to_be_bytes());
            bytes.extend_from_slice(counts);
            bytes
        };
        // A run of empty buckets (zig-zag -1,000,000), then a count: past the range.
        let far = with_counts(&[0xff, 0x88, 0x7a, 0x02]);
        assert!(LatencyHistogram::received(&far).is_err());
        // A varint whose bytes end too soon.
        assert!(LatencyHistogram::received(&with_counts(&[0x02, 0x80])).is_err());
        // Two counts of 2^62 each: their sum overflows u64's half, then u64.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80];
        let overflow = with_counts(&[&huge[..], &huge[..], &huge[..], &huge[..]].concat());
        assert!(LatencyHistogram::received(&overflow).is_err());
        // What from_bytes refuses.
        assert!(LatencyHistogram::received(b"garbage").is_err());
        assert_eq!(LatencyHistogram::received(&good).unwrap().count(), 1);
    }

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
        hdrhistogram::serialization::V2DeflateSerializer::new().serialize(&*ours.dense(), &mut compressed).unwrap();
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
