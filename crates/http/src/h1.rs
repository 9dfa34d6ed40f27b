//! A small HTTP/1.1 client codec, driven by the user's own task.
//!
//! HOT PATH. Why not hyper's HTTP/1 client: hyper runs each connection as a
//! separate task fed through a channel, and keeps 16 KiB of buffers plus a
//! channel block per connection for its whole life. A load generator holds
//! thousands of mostly idle keep-alive connections, so here the user's task
//! writes the request and reads the response itself (no task hop, no
//! channel), and buffers come from a per-thread pool only while a request is
//! in flight: an idle connection is just its socket.
//!
//! Supported: Content-Length, chunked and read-to-close bodies, 1xx
//! responses, `Connection: close`, HTTP/1.0 servers, responses to HEAD and
//! 204/304 without a body. Not supported (not needed by a client that sends
//! one request at a time): pipelining, upgrades.
//!
//! Bounded against misbehaving servers: a body longer than the request's
//! limit is [`HttpError::BodyTooLarge`], found from `Content-Length` or a
//! chunk size before that data is read, and from what has arrived for a
//! body that ends at close; a head is at most 64 KiB, at most 32 1xx heads
//! may precede the final one, chunk-size lines and trailers are bounded
//! (see `chunked`). Time is bounded by the session's total timeout. All of
//! these checks are integer compares.
//!
//! Kept-alive connections the server closed: see [`H1Error`] for how a
//! failure tells "not sent" from "sent, maybe acted on". A POST or PATCH
//! on a reused connection first makes one read attempt that does not wait,
//! to find a close that already arrived while the connection was idle.
//!
//! Parts: `head` parses response heads and their framing, `chunked`
//! decodes the chunked coding; both are pure, so property tests feed them
//! anything.

mod chunked;
mod head;
#[cfg(test)]
mod strategies;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use self::chunked::{ChunkedDecoder, ChunkedError};
use self::head::{Framing, Head};
use crate::error::HttpError;

pub(crate) use self::head::content_length;

/// Most 1xx responses accepted before the final one. Servers send one
/// `100 Continue` or a few `103 Early Hints`; more is a broken server, and
/// a client that skipped them for ever would never finish.
const MAX_INFORMATIONAL: usize = 32;
/// Buffers larger than this are not returned to the pool.
const POOLED_CAPACITY: usize = 64 * 1024;
/// Most buffers the pool keeps; a burst of simultaneous requests beyond it
/// frees its buffers afterwards instead of keeping them for ever.
const POOLED_BUFFERS: usize = 256;
/// First size of a buffer; it doubles while a response needs more. Small,
/// because most responses of a load test are small and thousands of users
/// may be mid-request at once during a ramp.
const INITIAL_CAPACITY: usize = 2 * 1024;

thread_local! {
    /// Buffers of this thread's in-flight requests, reused across requests.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(INITIAL_CAPACITY))
}

fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() <= POOLED_CAPACITY {
        buf.clear();
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOLED_BUFFERS {
                pool.push(buf);
            }
        });
    }
}

/// A plain or TLS byte stream.
pub enum Stream {
    /// Plaintext.
    Tcp(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Bytes arriving in given pieces, for tests of split reads.
    #[cfg(test)]
    Scripted(tests::Scripted),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(test)]
            Stream::Scripted(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, data),
            #[cfg(test)]
            Stream::Scripted(s) => Pin::new(s).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            #[cfg(test)]
            Stream::Scripted(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(test)]
            Stream::Scripted(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A response read off the wire (body still encoded as sent).
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// See [`crate::head_id`].
    pub head_id: u64,
    pub body: Bytes,
    pub ttfb: Duration,
}

/// Why an exchange failed.
pub(crate) enum H1Error {
    /// The server had closed the reused connection and nothing of the
    /// request was written to it: safe to send on a new connection.
    NotSent,
    /// A reused connection closed without a byte of response after (some
    /// of) the request was written: the server may have acted on it, so
    /// only an idempotent request may be sent again.
    Stale,
    Failed(HttpError),
}

fn io_error(e: std::io::Error) -> H1Error {
    H1Error::Failed(HttpError::Protocol(e.to_string()))
}

fn protocol(message: &str) -> H1Error {
    H1Error::Failed(HttpError::Protocol(message.to_owned()))
}

fn too_large(limit: usize) -> H1Error {
    H1Error::Failed(HttpError::BodyTooLarge { limit, decoded: false })
}

/// One HTTP/1.1 connection.
pub(crate) struct H1Connection {
    stream: Stream,
    /// Requests completed on this connection.
    completed: u64,
    /// False once the server said `close`, or an exchange was interrupted.
    reusable: bool,
    in_flight: bool,
}

impl H1Connection {
    pub fn new(stream: Stream) -> Self {
        Self { stream, completed: 0, reusable: true, in_flight: false }
    }

    /// Whether another request can be sent on this connection.
    pub fn is_usable(&self) -> bool {
        self.reusable && !self.in_flight
    }

    /// Send one request and read the whole response, whose body may be at
    /// most `max_body` bytes.
    pub async fn send(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
        max_body: usize,
    ) -> Result<RawResponse, H1Error> {
        // If this future is dropped (a timeout), the flag stays set and the
        // connection is never reused with half a response in it.
        self.in_flight = true;
        let mut buf = take_buffer();
        let result = self.exchange(&mut buf, method, target, headers, body, started, max_body).await;
        give_back(buf);
        self.in_flight = false;
        match &result {
            Ok(_) => self.completed += 1,
            Err(_) => self.reusable = false,
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &mut self,
        buf: &mut Vec<u8>,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
        max_body: usize,
    ) -> Result<RawResponse, H1Error> {
        let reused = self.completed > 0;
        // A request that must not be sent twice (POST, PATCH) goes on a
        // kept-alive connection only if the server has not closed it while
        // it was idle, so that the common stale case costs a reconnect
        // rather than a failure. Idempotent requests skip the check (one
        // more read attempt per request): they are simply sent again if
        // the connection turns out to be stale.
        if reused && !method.is_idempotent() && self.closed_while_idle().await {
            return Err(H1Error::NotSent);
        }
        write_head(buf, method, target, headers, body.len());
        let mut written = 0;
        if let Err(e) = self.write_request(buf, body, &mut written).await {
            return Err(match (reused, written) {
                (true, 0) => H1Error::NotSent,
                (true, _) => H1Error::Stale,
                (false, _) => io_error(e),
            });
        }
        buf.clear();
        let mut informational = 0;
        loop {
            // Stale only while the server has sent nothing for this request.
            let head = self.read_head(buf, reused && informational == 0).await?;
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                informational += 1;
                if informational > MAX_INFORMATIONAL {
                    return Err(protocol("more than 32 informational (1xx) responses before the final one"));
                }
                buf.drain(..head.len);
                continue;
            }
            let ttfb = started.elapsed();
            let head_id = crate::head_id::of(&buf[..head.len]);
            let Head { len, status, version, headers, body: body_headers, keep_alive } = head;
            let framing = head::framing(*method == Method::HEAD, status, &body_headers).map_err(H1Error::Failed)?;
            let body = match framing {
                Framing::Empty => Bytes::new(),
                Framing::Length(length) => self.read_length(buf, len, length, max_body).await?,
                Framing::Chunked => {
                    // Both framings at once hints at request smuggling
                    // (RFC 9112 §6.3): chunked wins, and the connection
                    // is not trusted with another request.
                    if body_headers.has_length {
                        self.reusable = false;
                    }
                    self.read_chunked(buf, len, max_body).await?
                }
                Framing::UntilClose => {
                    self.reusable = false;
                    self.read_to_close(buf, len, max_body).await?
                }
            };
            if !keep_alive || status == StatusCode::SWITCHING_PROTOCOLS {
                self.reusable = false;
            }
            return Ok(RawResponse { status, version, headers, head_id, body, ttfb });
        }
    }

    /// Whether the server closed this idle connection (or sent something
    /// nobody asked for), as far as the socket already knows: one read
    /// attempt that does not wait.
    async fn closed_while_idle(&mut self) -> bool {
        let mut byte = [0u8; 1];
        std::future::poll_fn(|cx| {
            let mut probe = ReadBuf::new(&mut byte);
            Poll::Ready(Pin::new(&mut self.stream).poll_read(cx, &mut probe).is_ready())
        })
        .await
    }

    /// Write the head in `buf` and `body`, counting the bytes written so
    /// that a failure can tell "nothing sent" from "partly sent".
    async fn write_request(&mut self, buf: &mut Vec<u8>, body: &[u8], written: &mut usize) -> std::io::Result<()> {
        if body.is_empty() || buf.len() + body.len() <= POOLED_CAPACITY {
            buf.extend_from_slice(body);
            write_counting(&mut self.stream, buf, written).await?;
        } else {
            write_counting(&mut self.stream, buf, written).await?;
            write_counting(&mut self.stream, body, written).await?;
        }
        self.stream.flush().await
    }

    /// Read until a complete response head is at the start of `buf`. A
    /// close before any byte is [`H1Error::Stale`] when `may_be_stale`.
    async fn read_head(&mut self, buf: &mut Vec<u8>, may_be_stale: bool) -> Result<Head, H1Error> {
        loop {
            let parsed = if buf.is_empty() { None } else { head::parse(buf).map_err(H1Error::Failed)? };
            if let Some(head) = parsed {
                return Ok(head);
            }
            let nothing_yet = buf.is_empty() && may_be_stale;
            match self.read_more(buf).await {
                Ok(true) => {}
                Ok(false) | Err(_) if nothing_yet => return Err(H1Error::Stale),
                Ok(false) => return Err(protocol("connection closed before a complete response")),
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    /// Append what the socket has to `buf`; `false` at end of stream.
    async fn read_more(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        if buf.capacity() - buf.len() < INITIAL_CAPACITY / 2 {
            buf.reserve(buf.len().max(INITIAL_CAPACITY));
        }
        Ok(self.stream.read_buf(buf).await? > 0)
    }

    /// A body of `length` bytes starting at `buf[start]`; refused before
    /// reading when the length is over `limit`.
    async fn read_length(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        length: u64,
        limit: usize,
    ) -> Result<Bytes, H1Error> {
        let length = usize::try_from(length).ok().filter(|length| *length <= limit).ok_or(too_large(limit))?;
        let end = start.checked_add(length).ok_or(too_large(limit))?;
        while buf.len() < end {
            if !self.read_more(buf).await.map_err(io_error)? {
                return Err(protocol("connection closed before the end of the body"));
            }
        }
        Ok(Bytes::copy_from_slice(&buf[start..end]))
    }

    /// A body that ends when the server closes, starting at `buf[start]`.
    async fn read_to_close(&mut self, buf: &mut Vec<u8>, start: usize, limit: usize) -> Result<Bytes, H1Error> {
        loop {
            if buf.len() - start > limit {
                return Err(too_large(limit));
            }
            if !self.read_more(buf).await.map_err(io_error)? {
                return Ok(Bytes::copy_from_slice(&buf[start..]));
            }
        }
    }

    /// A chunked body starting at `buf[start]`. Decoded bytes leave `buf`
    /// as they are decoded, so it holds at most one read and one line.
    async fn read_chunked(&mut self, buf: &mut Vec<u8>, start: usize, limit: usize) -> Result<Bytes, H1Error> {
        let mut decoder = ChunkedDecoder::new(limit);
        let mut body = Vec::new();
        let mut pos = start;
        loop {
            pos += decoder.decode(&buf[pos..], &mut body).map_err(|e| match e {
                ChunkedError::TooLarge => too_large(limit),
                ChunkedError::Invalid(why) => protocol(why),
            })?;
            if decoder.is_done() {
                return Ok(body.into());
            }
            buf.drain(..pos);
            pos = 0;
            if !self.read_more(buf).await.map_err(io_error)? {
                return Err(protocol("connection closed inside a chunked body"));
            }
        }
    }
}

/// `write_all` that adds to `written` each byte the stream accepted.
async fn write_counting(stream: &mut Stream, mut data: &[u8], written: &mut usize) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = stream.write(data).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *written += n;
        data = &data[n..];
    }
    Ok(())
}

/// Serialize the request line and headers (and Content-Length) into `buf`.
fn write_head(buf: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, body_len: usize) {
    buf.clear();
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let needs_length = body_len > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length && !headers.contains_key(CONTENT_LENGTH) {
        buf.extend_from_slice(b"content-length: ");
        buf.extend_from_slice(body_len.to_string().as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}
