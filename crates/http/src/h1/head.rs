//! Response heads: parsing the status line and headers, and reading from
//! them how the body is framed (RFC 9112 §6.3).
//!
//! Pure functions over bytes, so that property tests can feed them anything.

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use std::mem::MaybeUninit;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use crate::error::HttpError;

/// Largest response head accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// What the headers say about the body's framing.
    pub body: BodyHeaders,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
}

fn protocol(message: &str) -> HttpError {
    HttpError::Protocol(message.to_owned())
}

/// Parse the response head at the start of `buf`: `Ok(None)` while it is
/// incomplete, an error when it is invalid or longer than [`MAX_HEAD`].
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    // Uninitialised slots: zeroing 128 of them cost more than the parse.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(protocol("response head larger than 64 KiB"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Protocol(format!("invalid response: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(protocol("response head larger than 64 KiB"));
    }
    let status = StatusCode::from_u16(response.code.unwrap_or(0)).map_err(|_| protocol("invalid status code"))?;
    let version = if response.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    let mut body = BodyHeaders::default();
    let mut keep_alive = version == Version::HTTP_11;
    for h in response.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| protocol("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| protocol("invalid header value"))?;
        if name == CONNECTION {
            if contains_ignore_case(h.value, b"close") {
                keep_alive = false;
            } else if contains_ignore_case(h.value, b"keep-alive") {
                keep_alive = true;
            }
        }
        body.see(&name, h.value);
        headers.append(name, value);
    }
    Ok(Some(Head { len, status, version, headers, body, keep_alive }))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a response to HEAD, 1xx, 204 or 304.
    Empty,
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
    /// `Content-Length`: exactly this many bytes (saturated at `u64::MAX`).
    Length(u64),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

/// What a message's headers say about how its body is framed, gathered
/// header by header as they are parsed (no lookups afterwards).
#[derive(Debug, Default)]
pub(crate) struct BodyHeaders {
    /// Whether the last `Transfer-Encoding` ends in `chunked`; `None`
    /// when there is none.
    chunked: Option<bool>,
    /// Whether there is a `Content-Length` header at all.
    pub has_length: bool,
    /// The `Content-Length` so far (see [`content_length`]).
    length: Option<u64>,
    /// Why the `Content-Length` headers are invalid, once they are.
    length_error: Option<String>,
}

impl BodyHeaders {
    /// Gathered from every header of `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut body = Self::default();
        for (name, value) in headers {
            body.see(name, value.as_bytes());
        }
        body
    }

    /// Take one header into account, in the order they came.
    fn see(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == TRANSFER_ENCODING {
            let final_coding = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            self.chunked = Some(trim_whitespace(final_coding).eq_ignore_ascii_case(b"chunked"));
        } else if *name == CONTENT_LENGTH {
            self.has_length = true;
            if self.length_error.is_none() {
                self.see_length(value);
            }
        }
    }

    fn see_length(&mut self, value: &[u8]) {
        for item in value.split(|&b| b == b',') {
            let Some(length) = digits(trim_whitespace(item)) else {
                self.length_error = Some(format!(
                    "invalid Content-Length {:?}: expected digits only (RFC 9112 §6.3)",
                    String::from_utf8_lossy(value)
                ));
                return;
            };
            match self.length {
                Some(previous) if previous != length => {
                    self.length_error =
                        Some(format!("conflicting Content-Length values {previous} and {length} (RFC 9112 §6.3)"));
                    return;
                }
                _ => self.length = Some(length),
            }
        }
    }

    /// The `Content-Length`, if any (see [`content_length`]).
    fn content_length(&self) -> Result<Option<u64>, HttpError> {
        match &self.length_error {
            Some(error) => Err(HttpError::Protocol(error.clone())),
            None => Ok(self.length),
        }
    }
}

/// The framing of a response body, per RFC 9112 §6.3: no body for HEAD,
/// 1xx, 204 and 304; `Transfer-Encoding` wins over `Content-Length`; an
/// invalid `Content-Length` is an error, not a read-until-close.
pub(crate) fn framing(head_request: bool, status: StatusCode, body: &BodyHeaders) -> Result<Framing, HttpError> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(chunked) = body.chunked {
        // RFC 9112 §6.3 item 4: a response whose last coding is not
        // chunked is delimited by the connection closing.
        return Ok(if chunked { Framing::Chunked } else { Framing::UntilClose });
    }
    Ok(match body.content_length()? {
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    })
}

/// The `Content-Length` of `headers`, if any. Each value must be digits
/// only (no sign, no spaces inside, not empty); a list or repeated header
/// is accepted only when every value is the same (RFC 9110 §8.6). A number
/// too big for `u64` saturates at `u64::MAX`, which no body limit allows.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    BodyHeaders::of(headers).content_length()
}

/// The number `text` spells in decimal digits, saturating; `None` unless
/// `text` is one or more ASCII digits.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter()
        .try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

fn trim_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::strategies::head;
    use proptest::prelude::*;

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn framing_of(lines: &[(&str, &str)]) -> Result<Framing, HttpError> {
        framing(false, StatusCode::OK, &BodyHeaders::of(&headers(lines)))
    }

    #[test]
    fn valid_content_lengths() {
        assert_eq!(framing_of(&[("content-length", "0")]).unwrap(), Framing::Length(0));
        assert_eq!(framing_of(&[("content-length", " 42 ")]).unwrap(), Framing::Length(42));
        assert_eq!(framing_of(&[("content-length", "007")]).unwrap(), Framing::Length(7));
        assert_eq!(framing_of(&[("content-length", "5, 5")]).unwrap(), Framing::Length(5));
        assert_eq!(framing_of(&[("content-length", "5"), ("content-length", "5")]).unwrap(), Framing::Length(5));
        assert_eq!(
            framing_of(&[("content-length", "99999999999999999999999")]).unwrap(),
            Framing::Length(u64::MAX),
            "saturates instead of overflowing"
        );
        assert_eq!(framing_of(&[]).unwrap(), Framing::UntilClose);
    }

    #[test]
    fn invalid_content_lengths_are_errors_not_read_until_close() {
        for bad in ["", " ", "+5", "-1", "0x10", "1 2", "5,", ",5", "5, 6", "abc", "1e3", "٣"] {
            let err = framing_of(&[("content-length", bad)]).unwrap_err();
            assert!(err.to_string().contains("Content-Length"), "{bad:?}: {err}");
        }
        let err = framing_of(&[("content-length", "5"), ("content-length", "6")]).unwrap_err();
        assert!(err.to_string().contains("conflicting Content-Length values 5 and 6"), "{err}");
    }

    #[test]
    fn transfer_encoding_wins_and_no_body_statuses_ignore_framing() {
        let chunked = [("content-length", "nonsense"), ("transfer-encoding", "gzip, Chunked ")];
        assert_eq!(framing_of(&chunked).unwrap(), Framing::Chunked);
        assert_eq!(framing_of(&[("transfer-encoding", "chunked, gzip")]).unwrap(), Framing::UntilClose);
        let bad = headers(&[("content-length", "-1")]);
        assert_eq!(framing(true, StatusCode::OK, &BodyHeaders::of(&bad)).unwrap(), Framing::Empty, "HEAD");
        for status in [StatusCode::CONTINUE, StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            assert_eq!(framing(false, status, &BodyHeaders::of(&bad)).unwrap(), Framing::Empty, "{status}");
        }
    }

    #[test]
    fn heads_are_parsed_incrementally_and_bounded() {
        let raw = b"HTTP/1.1 404 Not Found\r\nConnection: Close\r\nX-A: 1\r\n\r\nbody";
        for cut in 0..raw.len() - 4 {
            assert!(parse(&raw[..cut]).unwrap().is_none(), "partial at {cut}");
        }
        let head = parse(raw).unwrap().unwrap();
        assert_eq!((head.len, head.status, head.keep_alive), (raw.len() - 4, StatusCode::NOT_FOUND, false));
        let http10 = parse(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert_eq!((http10.version, http10.keep_alive), (Version::HTTP_10, true));

        let mut long = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert!(parse(&long).unwrap_err().to_string().contains("larger than 64 KiB"));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(parse(&long).is_err(), "a complete head over the limit is refused too");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_status_line_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
            raw.extend_from_slice(&bytes);
            if let Ok(Some(head)) = parse(&raw) {
                let _ = framing(false, head.status, &head.body);
            }
        }

        #[test]
        fn generated_heads_round_trip(generated in head(100..=999), extra in proptest::collection::vec(any::<u8>(), 0..16)) {
            let raw = generated.to_bytes();
            let mut with_body = raw.clone();
            with_body.extend_from_slice(&extra);
            let head = parse(&with_body).unwrap().unwrap();
            prop_assert_eq!(head.len, raw.len());
            prop_assert_eq!(head.status.as_u16(), generated.status);
            prop_assert_eq!(head.version, if generated.http10 { Version::HTTP_10 } else { Version::HTTP_11 });
            prop_assert_eq!(head.keep_alive, !generated.http10);
            generated.assert_headers(&head.headers);
            for cut in 0..raw.len() {
                prop_assert!(parse(&raw[..cut]).unwrap().is_none());
            }
        }

        #[test]
        fn content_length_accepts_exactly_the_digit_strings(text in "[0-9+\\- ,a]{0,6}") {
            let parsed = HeaderValue::from_str(&text).ok().map(|v| {
                let mut map = HeaderMap::new();
                map.insert(CONTENT_LENGTH, v);
                content_length(&map)
            });
            if let Some(parsed) = parsed {
                let items: Vec<&str> = text.split(',').map(|i| i.trim_matches(' ')).collect();
                let valid = items.iter().all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                    && items.windows(2).all(|w| w[0].parse::<u64>().unwrap() == w[1].parse::<u64>().unwrap());
                prop_assert_eq!(parsed.is_ok(), valid, "{:?}", text);
                if valid {
                    prop_assert_eq!(parsed.unwrap(), Some(items[0].parse::<u64>().unwrap()));
                }
            }
        }
    }
}
