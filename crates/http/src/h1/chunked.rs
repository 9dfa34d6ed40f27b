//! The chunked transfer coding (RFC 9112 §7.1), decoded as bytes arrive.
//!
//! The decoder holds no input of its own: it consumes complete units (a
//! chunk-size line, any chunk data there is, the CRLF after the data, a
//! trailer line) from the caller's buffer and says how many bytes it used,
//! so the caller can drop them and read more. Every length is bounded:
//! the body by the caller's limit (checked against each declared chunk
//! size before its data is read), a chunk-size line and the trailers by
//! constants. An endless chunked body therefore ends in an error, not in
//! a full memory.

/// Longest chunk-size line (size plus extensions) accepted; hyper allows
/// 16 KiB of extensions too.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// Most bytes of trailer fields accepted after the last chunk.
pub(crate) const MAX_TRAILERS: usize = 64 * 1024;

/// Why a chunked body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkedError {
    /// Not the chunked coding; the text says what was wrong.
    Invalid(&'static str),
    /// The body would be longer than the limit.
    TooLarge,
}

#[derive(Debug)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, with this many bytes left.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers {
        seen: usize,
    },
    Done,
}

/// Decoder state of one chunked body.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Body bytes the limit still allows.
    allowed: usize,
}

impl ChunkedDecoder {
    /// A decoder that fails with [`ChunkedError::TooLarge`] once the body
    /// would pass `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { state: State::Size, allowed: limit }
    }

    /// Whether the whole body (last chunk and trailers) has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decode from `input`, appending body bytes to `body`; returns how many
    /// bytes of `input` were consumed. Bytes not consumed are an incomplete
    /// line (or CRLF): hand them back with more input after them.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Size => {
                    let Some(line_len) = line_length(rest, MAX_LINE, "chunk-size line longer than 16 KiB")? else {
                        return Ok(pos);
                    };
                    let size = chunk_size(&rest[..line_len])?;
                    pos += line_len + 2;
                    if size == 0 {
                        self.state = State::Trailers { seen: 0 };
                    } else if size > self.allowed {
                        return Err(ChunkedError::TooLarge);
                    } else {
                        self.allowed -= size;
                        self.state = State::Data(size);
                    }
                }
                State::Data(left) => {
                    let take = left.min(rest.len());
                    body.extend_from_slice(&rest[..take]);
                    pos += take;
                    if take < left {
                        self.state = State::Data(left - take);
                        return Ok(pos);
                    }
                    self.state = State::DataEnd;
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(pos),
                    _ => return Err(ChunkedError::Invalid("chunk data not followed by CRLF")),
                },
                State::Trailers { seen } => {
                    let allowed = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line_len) = line_length(rest, allowed, "trailers longer than 64 KiB")? else {
                        return Ok(pos);
                    };
                    pos += line_len + 2;
                    self.state =
                        if line_len == 0 { State::Done } else { State::Trailers { seen: seen + line_len + 2 } };
                }
            }
        }
    }
}

/// Length of the line at the start of `input`, without its CRLF; `None`
/// when the line end has not arrived yet. A line longer than `max` is an
/// error (`why`), whether or not its end has arrived; so is a bare LF.
fn line_length(input: &[u8], max: usize, why: &'static str) -> Result<Option<usize>, ChunkedError> {
    let searched = &input[..input.len().min(max.saturating_add(2))];
    match searched.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && searched[end - 1] == b'\r' => Ok(Some(end - 1)),
        Some(_) => Err(ChunkedError::Invalid("chunked line not ended by CRLF")),
        None if input.len() >= max.saturating_add(2) => Err(ChunkedError::Invalid(why)),
        None => Ok(None),
    }
}

/// The size in a chunk-size line: hex digits, then optionally whitespace
/// and `;` extensions (which are ignored).
fn chunk_size(line: &[u8]) -> Result<usize, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkedError::Invalid("invalid chunk size"));
    }
    let after = line[digits..].iter().position(|&b| b != b' ' && b != b'\t').map(|i| line[digits + i]);
    if !matches!(after, None | Some(b';')) {
        return Err(ChunkedError::Invalid("invalid chunk size"));
    }
    line[..digits].iter().try_fold(0usize, |size, &b| {
        let digit = (b as char).to_digit(16).unwrap_or(0) as usize;
        size.checked_mul(16).and_then(|s| s.checked_add(digit)).ok_or(ChunkedError::TooLarge)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::strategies::{ChunkedBody, chunked_body, splits};
    use proptest::prelude::*;

    /// A decoded body, and the bytes that came after it.
    type BodyAndRest = (Vec<u8>, Vec<u8>);

    /// Decode `pieces` as if each arrived in its own read, as the
    /// connection does; returns the body and the bytes after its end, or
    /// `None` if the pieces end before the body does.
    fn decode_pieces(pieces: &[&[u8]], limit: usize) -> Result<Option<BodyAndRest>, ChunkedError> {
        let mut decoder = ChunkedDecoder::new(limit);
        let mut buffer = Vec::new();
        let mut body = Vec::new();
        let mut pieces = pieces.iter();
        while !decoder.is_done() {
            let Some(piece) = pieces.next() else {
                return Ok(None);
            };
            buffer.extend_from_slice(piece);
            let used = decoder.decode(&buffer, &mut body)?;
            buffer.drain(..used);
        }
        buffer.extend(pieces.flat_map(|p| p.iter()));
        Ok(Some((body, buffer)))
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let raw = b"3;x=y\r\nabc\r\n2 ; q\r\nde\r\nA\r\n0123456789\r\n0\r\nTrailer: 1\r\n\r\nnext";
        let (body, rest) = decode_pieces(&[raw], 100).unwrap().unwrap();
        assert_eq!(body, b"abcde0123456789");
        assert_eq!(rest, b"next");
        for cut in 0..raw.len() {
            let (body, rest) = decode_pieces(&[&raw[..cut], &raw[cut..]], 100).unwrap().unwrap();
            assert_eq!((body.as_slice(), rest.as_slice()), (&b"abcde0123456789"[..], &b"next"[..]), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for raw in
            [&b"+5\r\nhello\r\n0\r\n\r\n"[..], b"-1\r\n", b"x\r\n", b"5 5\r\n", b"\r\n", b"3\r\nabcX\r\n", b"5\nhello"]
        {
            let err = decode_pieces(&[raw, b"\r\n\r\n"], 100).unwrap_err();
            assert!(matches!(err, ChunkedError::Invalid(_)), "{:?}: {err:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn the_limit_is_checked_before_the_data_is_read() {
        let mut decoder = ChunkedDecoder::new(10);
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"6\r\nabcdef\r\n", &mut body), Ok(11));
        // Only the size line of the next chunk: 6 + 5 > 10 is refused now.
        assert_eq!(decoder.decode(b"5\r\n", &mut body), Err(ChunkedError::TooLarge));
        let mut exact = ChunkedDecoder::new(10);
        let mut body = Vec::new();
        assert_eq!(exact.decode(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", &mut body), Ok(25));
        assert!(exact.is_done());
        assert_eq!(body, b"abcdefghij");
        let huge = ChunkedDecoder::new(usize::MAX).decode(b"fffffffffffffffffffff\r\n", &mut Vec::new());
        assert_eq!(huge, Err(ChunkedError::TooLarge), "a size that overflows is too large, not a panic");
    }

    #[test]
    fn endless_lines_and_trailers_hit_their_bounds() {
        let mut decoder = ChunkedDecoder::new(100);
        let mut endless_line = b"5;".to_vec();
        endless_line.resize(MAX_LINE + 2, b'x');
        assert!(matches!(decoder.decode(&endless_line, &mut Vec::new()), Err(ChunkedError::Invalid(_))));

        let mut decoder = ChunkedDecoder::new(100);
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"0\r\n", &mut body), Ok(3));
        let trailer = b"X-Trailer: 0123456789\r\n";
        let mut sent = 0;
        let err = loop {
            match decoder.decode(trailer, &mut body) {
                Ok(used) => assert_eq!(used, trailer.len()),
                Err(e) => break e,
            }
            sent += trailer.len();
            assert!(sent <= MAX_TRAILERS, "trailers are not bounded");
        };
        assert!(matches!(err, ChunkedError::Invalid(_)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            limit in 0usize..1024,
        ) {
            let pieces = splits(&input, &cuts);
            let _ = decode_pieces(&pieces, limit);
        }

        #[test]
        fn generated_bodies_round_trip_across_any_reads(
            generated in chunked_body(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let ChunkedBody { body, encoded } = generated;
            let mut input = encoded.clone();
            input.extend_from_slice(b"HTTP/1.1");
            let pieces = splits(&input, &cuts);
            let (decoded, rest) = decode_pieces(&pieces, body.len()).unwrap().unwrap();
            prop_assert_eq!(decoded, body.clone());
            prop_assert_eq!(rest, b"HTTP/1.1".to_vec());
            if !body.is_empty() {
                prop_assert_eq!(decode_pieces(&pieces, body.len() - 1).unwrap_err(), ChunkedError::TooLarge);
            }
        }
    }
}
