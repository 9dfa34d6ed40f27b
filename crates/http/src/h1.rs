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

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::error::HttpError;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;
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
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
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
    /// A reused connection was closed by the server before answering: the
    /// request can be retried on a new connection.
    Stale,
    Failed(HttpError),
}

fn io_error(e: std::io::Error) -> H1Error {
    H1Error::Failed(HttpError::Protocol(e.to_string()))
}

fn protocol(message: &str) -> H1Error {
    H1Error::Failed(HttpError::Protocol(message.to_owned()))
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

    /// Send one request and read the whole response.
    pub async fn send(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
    ) -> Result<RawResponse, H1Error> {
        // If this future is dropped (a timeout), the flag stays set and the
        // connection is never reused with half a response in it.
        self.in_flight = true;
        let mut buf = take_buffer();
        let result = self.exchange(&mut buf, method, target, headers, body, started).await;
        give_back(buf);
        self.in_flight = false;
        match &result {
            Ok(_) => self.completed += 1,
            Err(_) => self.reusable = false,
        }
        result
    }

    async fn exchange(
        &mut self,
        buf: &mut Vec<u8>,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
    ) -> Result<RawResponse, H1Error> {
        write_head(buf, method, target, headers, body.len());
        let reused = self.completed > 0;
        let write = async {
            if body.is_empty() || buf.len() + body.len() <= POOLED_CAPACITY {
                buf.extend_from_slice(body);
                self.stream.write_all(buf).await?;
            } else {
                self.stream.write_all(buf).await?;
                self.stream.write_all(body).await?;
            }
            self.stream.flush().await
        };
        if let Err(e) = write.await {
            return Err(if reused { H1Error::Stale } else { io_error(e) });
        }
        buf.clear();
        loop {
            let (head_len, status, version, headers, keep_alive) = self.read_head(buf, reused).await?;
            let ttfb = started.elapsed();
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                buf.drain(..head_len);
                continue;
            }
            let head_id = crate::head_id::of(&buf[..head_len]);
            let no_body =
                *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
            let chunked = headers
                .get(http::header::TRANSFER_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
            let length =
                headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
            let body = if no_body {
                Bytes::new()
            } else if chunked {
                self.read_chunked(buf, head_len).await?
            } else if let Some(length) = length {
                while buf.len() < head_len + length {
                    self.read_more(buf)
                        .await
                        .map_err(io_error)?
                        .then_some(())
                        .ok_or_else(|| protocol("connection closed before the end of the body"))?;
                }
                Bytes::copy_from_slice(&buf[head_len..head_len + length])
            } else {
                // No framing: the body ends when the server closes.
                while self.read_more(buf).await.map_err(io_error)? {}
                self.reusable = false;
                Bytes::copy_from_slice(&buf[head_len..])
            };
            if !keep_alive {
                self.reusable = false;
            }
            return Ok(RawResponse { status, version, headers, head_id, body, ttfb });
        }
    }

    /// Read until a complete response head is in `buf`.
    async fn read_head(
        &mut self,
        buf: &mut Vec<u8>,
        reused: bool,
    ) -> Result<(usize, StatusCode, Version, HeaderMap, bool), H1Error> {
        loop {
            if !buf.is_empty() {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut slots);
                match response.parse(buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = StatusCode::from_u16(response.code.unwrap_or(0))
                            .map_err(|_| protocol("invalid status code"))?;
                        let version = if response.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
                        let mut headers = HeaderMap::with_capacity(response.headers.len());
                        let mut keep_alive = version == Version::HTTP_11;
                        for h in response.headers.iter() {
                            let name = HeaderName::from_bytes(h.name.as_bytes())
                                .map_err(|_| protocol("invalid header name"))?;
                            let value =
                                HeaderValue::from_bytes(h.value).map_err(|_| protocol("invalid header value"))?;
                            if name == http::header::CONNECTION {
                                let v = h.value.to_ascii_lowercase();
                                if v.windows(5).any(|w| w == b"close") {
                                    keep_alive = false;
                                } else if v.windows(10).any(|w| w == b"keep-alive") {
                                    keep_alive = true;
                                }
                            }
                            headers.append(name, value);
                        }
                        return Ok((len, status, version, headers, keep_alive));
                    }
                    Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                        return Err(protocol("response head larger than 64 KiB"));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(H1Error::Failed(HttpError::Protocol(format!("invalid response: {e}")))),
                }
            }
            let was_empty = buf.is_empty();
            match self.read_more(buf).await {
                Ok(true) => {}
                Ok(false) if was_empty && reused => return Err(H1Error::Stale),
                Ok(false) => return Err(protocol("connection closed before a complete response")),
                Err(_) if was_empty && reused => return Err(H1Error::Stale),
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

    async fn read_chunked(&mut self, buf: &mut Vec<u8>, start: usize) -> Result<Bytes, H1Error> {
        let mut body = Vec::new();
        let mut pos = start;
        loop {
            let line_end = self.read_line(buf, pos).await?;
            let line = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| protocol("invalid chunk size"))?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| protocol("invalid chunk size"))?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers, until an empty line.
                loop {
                    let end = self.read_line(buf, pos).await?;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        return Ok(body.into());
                    }
                }
            }
            while buf.len() < pos + size + 2 {
                if !self.read_more(buf).await.map_err(io_error)? {
                    return Err(protocol("connection closed inside a chunk"));
                }
            }
            if &buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(protocol("chunk not followed by CRLF"));
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    }

    /// Position of the CRLF ending the line that starts at `from`.
    async fn read_line(&mut self, buf: &mut Vec<u8>, from: usize) -> Result<usize, H1Error> {
        loop {
            if let Some(i) = buf.get(from..).and_then(|rest| rest.windows(2).position(|w| w == b"\r\n")) {
                return Ok(from + i);
            }
            if buf.len() - from > MAX_HEAD {
                return Err(protocol("chunk header line too long"));
            }
            if !self.read_more(buf).await.map_err(io_error)? {
                return Err(protocol("connection closed inside a chunked body"));
            }
        }
    }
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
    if needs_length && !headers.contains_key(http::header::CONTENT_LENGTH) {
        buf.extend_from_slice(b"content-length: ");
        buf.extend_from_slice(body_len.to_string().as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Serve canned bytes to each request and return the request bytes seen.
    async fn exchange_with(
        canned: Vec<&'static [u8]>,
        requests: usize,
    ) -> (Vec<Result<RawResponse, H1Error>>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for reply in canned {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                seen.extend_from_slice(&chunk[..n]);
                // Write in two pieces to exercise partial reads.
                let (a, b) = reply.split_at(reply.len() / 2);
                s.write_all(a).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                s.write_all(b).await.unwrap();
            }
            seen
        });
        let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
        let mut results = Vec::new();
        for _ in 0..requests {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, HeaderValue::from_static("x"));
            results.push(conn.send(&Method::POST, "/p?q=1", &headers, b"abc", Instant::now()).await);
        }
        (results, server.await.unwrap())
    }

    fn body(r: &Result<RawResponse, H1Error>) -> &[u8] {
        match r {
            Ok(r) => &r.body,
            Err(_) => panic!("exchange failed"),
        }
    }

    #[tokio::test]
    async fn content_length_and_chunked_bodies_on_one_connection() {
        let (results, seen) = exchange_with(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
            ],
            2,
        )
        .await;
        assert_eq!(body(&results[0]), b"hello");
        assert_eq!(body(&results[1]), b"abcde");
        let seen = String::from_utf8(seen).unwrap();
        assert!(seen.starts_with("POST /p?q=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"), "{seen}");
    }

    #[tokio::test]
    async fn read_to_close_and_connection_close_end_reuse() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut chunk = [0u8; 1024];
            let _ = s.read(&mut chunk).await;
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil close").await.unwrap();
        });
        let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
        let r = conn.send(&Method::GET, "/", &HeaderMap::new(), b"", Instant::now()).await;
        assert_eq!(body(&r), b"until close");
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn a_reused_connection_closed_by_the_server_is_stale() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut chunk = [0u8; 1024];
            let _ = s.read(&mut chunk).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
            // Then close the kept-alive connection.
        });
        let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
        assert!(conn.send(&Method::GET, "/", &HeaderMap::new(), b"", Instant::now()).await.is_ok());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = conn.send(&Method::GET, "/", &HeaderMap::new(), b"", Instant::now()).await;
        assert!(matches!(second, Err(H1Error::Stale)));
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let (results, _) = exchange_with(vec![b"NOT HTTP AT ALL\r\n\r\n"], 1).await;
        assert!(matches!(results[0], Err(H1Error::Failed(HttpError::Protocol(_)))));
    }
}
