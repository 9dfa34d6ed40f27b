//! Content-Encoding decoding (gzip, deflate), as browsers and `requests` do.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{GzDecoder, ZlibDecoder};

use crate::error::HttpError;

/// Decode `body` according to a `Content-Encoding` header value.
pub(crate) fn decode_body(encoding: Option<&str>, body: Bytes) -> Result<Bytes, HttpError> {
    let Some(encoding) = encoding.map(str::trim) else {
        return Ok(body);
    };
    let mut out = Vec::with_capacity(body.len() * 4);
    let result = if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        GzDecoder::new(&body[..]).read_to_end(&mut out)
    } else if encoding.eq_ignore_ascii_case("deflate") {
        ZlibDecoder::new(&body[..]).read_to_end(&mut out)
    } else {
        return Ok(body);
    };
    result.map_err(|e| HttpError::Decode(format!("{encoding}: {e}")))?;
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn gzip_round_trip_and_identity() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"hello hello hello").unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        assert_eq!(decode_body(Some("gzip"), gz).unwrap(), Bytes::from_static(b"hello hello hello"));
        assert_eq!(decode_body(None, Bytes::from_static(b"x")).unwrap(), Bytes::from_static(b"x"));
        assert!(decode_body(Some("gzip"), Bytes::from_static(b"not gzip")).is_err());
    }
}
