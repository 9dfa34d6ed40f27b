//! Proptest strategies for HTTP/1.1 responses, shared by the head parser's,
//! the chunked decoder's and the connection's property tests.

use http::HeaderMap;
use proptest::prelude::*;

/// `input` cut at the given points (each an index into it), in order: how
/// the bytes arrive over several reads.
pub(crate) fn splits<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        pieces.push(&input[start..point]);
        start = point;
    }
    pieces.push(&input[start..]);
    pieces
}

/// Header names: tokens (RFC 9110 §5.6.2); framing headers are left to
/// the tests that choose the framing.
pub(crate) fn header_name() -> impl Strategy<Value = String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    proptest::collection::vec(proptest::sample::select(TCHAR), 1..24)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
        .prop_filter("framing headers are chosen separately", |name| {
            !["content-length", "transfer-encoding", "connection"].contains(&name.to_ascii_lowercase().as_str())
        })
}

/// Header values: visible ASCII and inner spaces, no leading or
/// trailing whitespace (a parser trims those).
pub(crate) fn header_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![8 => 0x21u8..=0x7e, 1 => Just(b' '), 1 => Just(b'\t')], 0..40)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap().trim_matches([' ', '\t']).to_owned())
}

/// A generated response head: its bytes and what parsing must give.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedHead {
    pub status: u16,
    pub http10: bool,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl GeneratedHead {
    pub fn to_bytes(&self) -> Vec<u8> {
        let version = if self.http10 { "1.0" } else { "1.1" };
        let mut out = format!("HTTP/{version} {} {}\r\n", self.status, self.reason).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Assert that `headers` holds exactly the generated headers, each
    /// name's values in the order generated.
    pub fn assert_headers(&self, headers: &HeaderMap) {
        assert_eq!(headers.len(), self.headers.len());
        for (name, _) in &self.headers {
            let expected: Vec<&str> =
                self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
            let got: Vec<&str> = headers.get_all(name.as_str()).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, expected, "{name}");
        }
    }
}

pub(crate) fn head(statuses: std::ops::RangeInclusive<u16>) -> impl Strategy<Value = GeneratedHead> {
    let reason = proptest::collection::vec(prop_oneof![0x20u8..=0x7e, Just(b'\t')], 0..30)
        .prop_map(|b| String::from_utf8(b).unwrap());
    (statuses, any::<bool>(), reason, proptest::collection::vec((header_name(), header_value()), 0..20))
        .prop_map(|(status, http10, reason, headers)| GeneratedHead { status, http10, reason, headers })
}

/// A generated chunked body: the decoded bytes and their encoding, with
/// random chunk boundaries, hex case, leading zeros, extensions and
/// trailers.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedBody {
    pub body: Vec<u8>,
    pub encoded: Vec<u8>,
}

/// One chunk's size-line decoration: leading zeros, upper-case hex, and an
/// extension (`;name=value`, possibly after whitespace).
type SizeStyle = (u8, bool, Option<(bool, String)>);

fn size_style() -> impl Strategy<Value = SizeStyle> {
    let extension = (any::<bool>(), "[a-z]{1,5}(=[a-z0-9]{0,5})?");
    (0u8..3, any::<bool>(), proptest::option::of(extension))
}

pub(crate) fn chunked_body() -> impl Strategy<Value = ChunkedBody> {
    let body = proptest::collection::vec(any::<u8>(), 0..3000);
    let cuts = proptest::collection::vec(any::<prop::sample::Index>(), 0..12);
    // Up to 13 data chunks and the last chunk.
    let styles = proptest::collection::vec(size_style(), 14);
    let trailers = proptest::collection::vec((header_name(), header_value()), 0..3);
    (body, cuts, styles, trailers).prop_map(|(body, cuts, styles, trailers)| {
        let mut encoded = Vec::new();
        let chunks = splits(&body, &cuts).into_iter().filter(|c| !c.is_empty());
        let last: &[u8] = &[];
        for (chunk, (zeros, upper, extension)) in chunks.chain([last]).zip(styles) {
            let size = if upper { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
            encoded.extend_from_slice("0".repeat(usize::from(zeros)).as_bytes());
            encoded.extend_from_slice(size.as_bytes());
            if let Some((space, extension)) = extension {
                encoded.extend_from_slice(if space { b" ;" } else { b";" });
                encoded.extend_from_slice(extension.as_bytes());
            }
            encoded.extend_from_slice(b"\r\n");
            if !chunk.is_empty() {
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
            }
        }
        for (name, value) in trailers {
            encoded.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        encoded.extend_from_slice(b"\r\n");
        ChunkedBody { body, encoded }
    })
}
