//! Content-Encoding decoding (gzip, deflate), as browsers and `requests` do.
//!
//! The inflated size is bounded by the same limit as the received body: a
//! body of one megabyte can inflate to a gigabyte (a "gzip bomb"), so the
//! decoder reads at most one byte past the limit and then gives up.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{GzDecoder, ZlibDecoder};

use crate::error::HttpError;

/// Decode `body` according to a `Content-Encoding` header value; a decoded
/// body longer than `limit` bytes is [`HttpError::BodyTooLarge`].
pub(crate) fn decode_body(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, HttpError> {
    let Some(encoding) = encoding.map(str::trim) else {
        return Ok(body);
    };
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        inflate(GzDecoder::new(&body[..]), body.len(), limit, encoding)
    } else if encoding.eq_ignore_ascii_case("deflate") {
        inflate(ZlibDecoder::new(&body[..]), body.len(), limit, encoding)
    } else {
        Ok(body)
    }
}

/// Read `decoder` to its end, but never more than `limit + 1` bytes: the
/// one byte past the limit tells "exactly at the limit" from "over it".
/// `read_to_end` on a `Take` grows the buffer in steps as data arrives,
/// so memory follows what was inflated, not what the stream claims.
fn inflate(decoder: impl Read, encoded_len: usize, limit: usize, encoding: &str) -> Result<Bytes, HttpError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // Text compresses about 4:1; start there, but not past the limit.
    let mut out = Vec::with_capacity(encoded_len.saturating_mul(4).min(limit.saturating_add(1)));
    decoder.take(cap).read_to_end(&mut out).map_err(|e| HttpError::Decode(format!("{encoding}: {e}")))?;
    if out.len() > limit {
        return Err(HttpError::BodyTooLarge { limit, decoded: true });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap().into()
    }

    #[test]
    fn gzip_round_trip_and_identity() {
        let gz = gzip(b"hello hello hello");
        assert_eq!(decode_body(Some("gzip"), gz, 1 << 20).unwrap(), Bytes::from_static(b"hello hello hello"));
        assert_eq!(decode_body(None, Bytes::from_static(b"x"), 1 << 20).unwrap(), Bytes::from_static(b"x"));
        assert!(matches!(decode_body(Some("gzip"), Bytes::from_static(b"not gzip"), 100), Err(HttpError::Decode(_))));
    }

    #[test]
    fn a_decoded_body_exactly_at_the_limit_passes_and_one_byte_more_fails() {
        let data = vec![b'a'; 1000];
        assert_eq!(decode_body(Some("gzip"), gzip(&data), 1000).unwrap().len(), 1000);
        let err = decode_body(Some("gzip"), gzip(&data), 999).unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 999, decoded: true }), "{err}");
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&data).unwrap();
        let zlib = Bytes::from(zlib.finish().unwrap());
        assert_eq!(decode_body(Some("deflate"), zlib.clone(), 1000).unwrap().len(), 1000);
        let err = decode_body(Some("deflate"), zlib, 999).unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 999, decoded: true }), "{err}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 32 MiB of zeros compress to about 32 KiB.
        let bomb = gzip(&vec![0; 32 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = decode_body(Some("gzip"), bomb, 1 << 20).unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 1048576, decoded: true }), "{err}");
    }

    /// A decoder that never ends, and fails the test if it is asked for
    /// more than the limit allows.
    struct Endless {
        given: usize,
        allowed: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(self.given <= self.allowed, "read {} bytes, past the limit", self.given);
            buf.fill(0);
            self.given += buf.len();
            Ok(buf.len())
        }
    }

    #[test]
    fn inflating_reads_no_more_than_one_byte_past_the_limit() {
        let limit = 100_000;
        let mut endless = Endless { given: 0, allowed: limit + 1 };
        let err = inflate(&mut endless, 10, limit, "gzip").unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 100_000, decoded: true }), "{err}");
        assert_eq!(endless.given, limit + 1);
    }
}
