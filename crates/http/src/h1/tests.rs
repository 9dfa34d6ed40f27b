//! Tests of the HTTP/1.1 connection: real sockets for keep-alive and stale
//! connections, scripted reads for framing, limits and split reads.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::Waker;

use proptest::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::strategies::{ChunkedBody, GeneratedHead, chunked_body, head, splits};
use super::*;

/// A stream whose reads return the given pieces one by one, then end;
/// writes are accepted and dropped. It never waits.
pub struct Scripted {
    pieces: VecDeque<Vec<u8>>,
}

impl Scripted {
    pub fn new<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Self {
        // An empty read means end of stream, so empty pieces are dropped.
        Self { pieces: pieces.into_iter().filter(|p| !p.is_empty()).map(<[u8]>::to_vec).collect() }
    }
}

impl AsyncRead for Scripted {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(mut piece) = self.pieces.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                piece.drain(..n);
                self.pieces.push_front(piece);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Run a future that never waits (everything it reads is scripted).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a scripted exchange waited"),
    }
}

/// One exchange whose response arrives in `pieces`.
fn scripted(pieces: &[&[u8]], method: Method, max_body: usize) -> (Result<RawResponse, H1Error>, H1Connection) {
    let mut conn = H1Connection::new(Stream::Scripted(Scripted::new(pieces.iter().copied())));
    let result = now(conn.send(&method, "/", &HeaderMap::new(), b"", Instant::now(), max_body));
    (result, conn)
}

fn body(r: &Result<RawResponse, H1Error>) -> &[u8] {
    match r {
        Ok(r) => &r.body,
        Err(H1Error::Failed(e)) => panic!("exchange failed: {e}"),
        Err(_) => panic!("exchange failed: stale connection"),
    }
}

fn error(r: Result<RawResponse, H1Error>) -> HttpError {
    match r {
        Ok(_) => panic!("expected an error, got a response"),
        Err(H1Error::Failed(e)) => e,
        Err(_) => panic!("expected a failure, got a stale connection"),
    }
}

/// Serve canned bytes to each request and return the request bytes seen.
async fn exchange_with(canned: Vec<&'static [u8]>, requests: usize) -> (Vec<Result<RawResponse, H1Error>>, Vec<u8>) {
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
        headers.insert(http::header::HOST, http::HeaderValue::from_static("x"));
        results.push(conn.send(&Method::POST, "/p?q=1", &headers, b"abc", Instant::now(), 1 << 20).await);
    }
    (results, server.await.unwrap())
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
    let r = conn.send(&Method::GET, "/", &HeaderMap::new(), b"", Instant::now(), 1 << 20).await;
    assert_eq!(body(&r), b"until close");
    assert!(!conn.is_usable());
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let (results, _) = exchange_with(vec![b"NOT HTTP AT ALL\r\n\r\n"], 1).await;
    assert!(matches!(results[0], Err(H1Error::Failed(HttpError::Protocol(_)))));
}

/// A server for stale-connection tests: it answers the first request on
/// its one connection, then does `after_answer`, and reports how many
/// bytes arrived after the answer.
async fn serve_once_then<F, Fut>(after_answer: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<usize>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = usize> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut chunk = [0u8; 1024];
        let _ = s.read(&mut chunk).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        after_answer(s).await
    });
    (addr, server)
}

/// Bytes that arrive on `s` until it ends or a second passes.
async fn bytes_until_end(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut chunk = [0u8; 1024];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut chunk)).await {
        total += n;
    }
    total
}

async fn send(conn: &mut H1Connection, method: Method) -> Result<RawResponse, H1Error> {
    conn.send(&method, "/", &HeaderMap::new(), b"x", Instant::now(), 1 << 20).await
}

#[tokio::test]
async fn a_reused_connection_closed_after_the_request_was_written_is_stale() {
    // The server reads the second request, then closes without answering:
    // it may have acted on the request.
    let (addr, server) = serve_once_then(|mut s| async move { bytes_until_end_once(&mut s).await }).await;
    let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
    assert!(send(&mut conn, Method::POST).await.is_ok());
    assert!(matches!(send(&mut conn, Method::POST).await, Err(H1Error::Stale)));
    assert!(server.await.unwrap() > 0, "the second request was written");
}

/// Read once (the next request), then close.
async fn bytes_until_end_once(s: &mut TcpStream) -> usize {
    let mut chunk = [0u8; 1024];
    s.read(&mut chunk).await.unwrap_or(0)
}

#[tokio::test]
async fn a_post_is_not_written_to_an_idle_connection_the_server_closed() {
    let (closed_tx, closed_rx) = oneshot::channel();
    let (addr, server) = serve_once_then(|mut s| async move {
        // Half-close: the client sees the end of the stream, and anything
        // it still writes arrives here and is counted.
        s.shutdown().await.unwrap();
        closed_tx.send(()).unwrap();
        bytes_until_end(&mut s).await
    })
    .await;
    let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
    assert!(send(&mut conn, Method::POST).await.is_ok());
    closed_rx.await.unwrap();
    // Let the runtime's reactor see the FIN, as it does while a user waits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(send(&mut conn, Method::POST).await, Err(H1Error::NotSent)));
    drop(conn);
    assert_eq!(server.await.unwrap(), 0, "no byte of the POST reached the closed connection");
}

#[tokio::test]
async fn a_write_that_fails_before_any_byte_is_not_sent() {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (reset_tx, reset_rx) = oneshot::channel();
    let (addr, server) = serve_once_then(|s| async move {
        let _ = done_rx.await;
        // Reset (RST) instead of closing: the client's next write fails.
        s.set_zero_linger().unwrap();
        drop(s);
        reset_tx.send(()).unwrap();
        0
    })
    .await;
    let mut conn = H1Connection::new(Stream::Tcp(TcpStream::connect(addr).await.unwrap()));
    assert!(send(&mut conn, Method::GET).await.is_ok());
    done_tx.send(()).unwrap();
    reset_rx.await.unwrap();
    server.await.unwrap();
    // A GET skips the idle check, so this is the write failing.
    assert!(matches!(send(&mut conn, Method::GET).await, Err(H1Error::NotSent)));
}

#[test]
fn a_content_length_over_the_limit_is_refused_before_reading_the_body() {
    // Only the head arrives: reading the body would end in "closed before
    // the end of the body", not in the limit.
    let (r, _) = scripted(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n"], Method::GET, 1000);
    assert!(matches!(error(r), HttpError::BodyTooLarge { limit: 1000, decoded: false }));
    let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    let (r, _) = scripted(&[huge], Method::GET, usize::MAX);
    assert!(matches!(error(r), HttpError::BodyTooLarge { .. }), "a length past u64 is too large, not an overflow");
    let (r, _) = scripted(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", &[b'a'; 1000]], Method::GET, 1000);
    assert_eq!(body(&r).len(), 1000, "exactly the limit is accepted");
    let (r, _) = scripted(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"], Method::HEAD, 1000);
    assert_eq!(body(&r), b"", "a HEAD response's length is not a body");
}

#[test]
fn a_body_until_close_stops_at_the_limit() {
    let head: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n";
    let data = vec![b'a'; 4000];
    let (r, _) = scripted(&[head, &data], Method::GET, 3999);
    assert!(matches!(error(r), HttpError::BodyTooLarge { limit: 3999, decoded: false }));
    let (r, _) = scripted(&[head, &data], Method::GET, 4000);
    assert_eq!(body(&r).len(), 4000);
}

#[test]
fn a_chunked_body_stops_at_the_limit() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunks = Vec::new();
    for _ in 0..4 {
        chunks.extend_from_slice(b"400\r\n");
        chunks.extend_from_slice(&[b'a'; 0x400]);
        chunks.extend_from_slice(b"\r\n");
    }
    let (r, _) = scripted(&[head, &chunks], Method::GET, 3000);
    assert!(matches!(error(r), HttpError::BodyTooLarge { limit: 3000, decoded: false }));
    chunks.extend_from_slice(b"0\r\n\r\n");
    let (r, _) = scripted(&[head, &chunks], Method::GET, 4096);
    assert_eq!(body(&r).len(), 4096);
}

#[test]
fn invalid_content_lengths_fail_the_request() {
    for value in ["", "+5", "-1", "5x", "0x5", "5, 6", "1 2"] {
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nhello");
        let (r, _) = scripted(&[raw.as_bytes()], Method::GET, 1000);
        let e = error(r);
        assert!(e.to_string().contains("Content-Length"), "{value:?}: {e}");
    }
    let (r, _) =
        scripted(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"], Method::GET, 1000);
    assert!(error(r).to_string().contains("conflicting Content-Length"));
}

#[test]
fn chunked_with_a_content_length_is_used_but_not_reused() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (r, conn) = scripted(&[raw], Method::GET, 1000);
    assert_eq!(body(&r), b"hello");
    assert!(!conn.is_usable());
    let (r, conn) = scripted(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"], Method::GET, 1000);
    assert!(r.is_ok() && conn.is_usable());
}

#[test]
fn informational_responses_are_bounded() {
    let continue_: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let last: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let allowed: Vec<&[u8]> = std::iter::repeat_n(continue_, MAX_INFORMATIONAL).chain([last]).collect();
    let (r, _) = scripted(&allowed, Method::GET, 1000);
    assert_eq!(body(&r), b"ok");
    let storm: Vec<&[u8]> = std::iter::repeat_n(continue_, MAX_INFORMATIONAL + 1).chain([last]).collect();
    let (r, _) = scripted(&storm, Method::GET, 1000);
    assert!(error(r).to_string().contains("informational"));
}

/// How a generated response frames its body.
#[derive(Debug, Clone)]
enum GeneratedFraming {
    Length(Vec<u8>),
    Chunked(ChunkedBody),
    UntilClose(Vec<u8>),
}

fn framing() -> impl Strategy<Value = GeneratedFraming> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..3000);
    prop_oneof![
        bytes().prop_map(GeneratedFraming::Length),
        chunked_body().prop_map(GeneratedFraming::Chunked),
        bytes().prop_map(GeneratedFraming::UntilClose),
    ]
}

/// A generated response: its bytes, its head, and the body it carries.
fn response() -> impl Strategy<Value = (Vec<u8>, GeneratedHead, Vec<u8>)> {
    let informational = proptest::collection::vec(head(100..=199).prop_filter("not 101", |h| h.status != 101), 0..3);
    (informational, head(200..=599), framing()).prop_map(|(informational, mut head, framing)| {
        let mut raw: Vec<u8> = informational.iter().flat_map(GeneratedHead::to_bytes).collect();
        let no_body = matches!(head.status, 204 | 304);
        let (encoded, body) = match framing {
            GeneratedFraming::Length(body) => {
                head.headers.push(("Content-Length".into(), body.len().to_string()));
                (body.clone(), body)
            }
            GeneratedFraming::Chunked(ChunkedBody { body, encoded }) => {
                head.headers.push(("Transfer-Encoding".into(), "chunked".into()));
                (encoded, body)
            }
            GeneratedFraming::UntilClose(body) => (body.clone(), body),
        };
        raw.extend_from_slice(&head.to_bytes());
        if !no_body {
            raw.extend_from_slice(&encoded);
        }
        (raw, head, if no_body { Vec::new() } else { body })
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop::sample::select(vec![
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n",
        ]),
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        max_body in 0usize..2048,
    ) {
        let input = [prefix, &bytes[..]].concat();
        let _ = scripted(&splits(&input, &cuts), Method::GET, max_body);
    }

    #[test]
    fn generated_responses_round_trip_across_any_reads(
        (raw, head, expected) in response(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let pieces = splits(&raw, &cuts);
        let (result, _) = scripted(&pieces, Method::GET, expected.len());
        let response = match result {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("{}", error(Err(e))))),
        };
        prop_assert_eq!(response.status.as_u16(), head.status);
        prop_assert_eq!(response.version, if head.http10 { Version::HTTP_10 } else { Version::HTTP_11 });
        head.assert_headers(&response.headers);
        prop_assert_eq!(&response.body[..], &expected[..]);
        if !expected.is_empty() {
            let (smaller, _) = scripted(&pieces, Method::GET, expected.len() - 1);
            let too_large = matches!(error(smaller), HttpError::BodyTooLarge { .. });
            prop_assert!(too_large, "one byte under the body is not too large");
        }
    }
}
