//! The client against a target that misbehaves on purpose.
//!
//! A raw TCP server on 127.0.0.1 has one route per misbehaviour. Each must
//! become a failed response (a recorded failure) within the client's
//! timeouts: no hang, no panic, and no memory growing with what the server
//! sends (the body limit and the bounds on heads, 1xx responses, chunk
//! lines and trailers stop it first; the tests check which error ended
//! the request). Every server loop is bounded in count and in time, so the
//! tests end even if the client does not stop reading.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use swarmer_http::{ClientConfig, HttpError, HttpVersionPreference, Request, Response, Session, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The client's connect and total timeouts in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The client's body limit in these tests.
const LIMIT: usize = 1 << 20;
/// Longer than any request may take: past it the client hung.
const HANG: Duration = Duration::from_secs(15);
/// How long a server connection may live, whatever the client does.
const SERVER_LIFETIME: Duration = Duration::from_secs(20);
/// Most bytes a server route sends, whatever the client does.
const SERVER_MAX_BYTES: usize = 64 << 20;

/// `Content-Length` values that are not a length; see RFC 9112 §6.3.
const BAD_LENGTHS: &[&str] = &["", "+5", "-1", "abc", "5, 6", "0x5", "1 2", "5;"];

/// Start the misbehaving server; it lives until the test's runtime ends.
async fn misbehaving_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((socket, _)) = listener.accept().await else { return };
            tokio::spawn(tokio::time::timeout(SERVER_LIFETIME, serve(socket)));
        }
    });
    addr
}

/// The path of the request on `socket` (its head read, at most 8 KiB).
async fn request_path(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    line.split(' ').nth(1).map(str::to_owned)
}

/// Write `piece` again and again, up to `SERVER_MAX_BYTES`, until the
/// client stops reading.
async fn repeat(socket: &mut TcpStream, piece: &[u8]) {
    let mut sent = 0;
    while sent < SERVER_MAX_BYTES && socket.write_all(piece).await.is_ok() {
        sent += piece.len();
    }
}

async fn serve(mut socket: TcpStream) {
    let Some(path) = request_path(&mut socket).await else { return };
    let s = &mut socket;
    match path.as_str() {
        "/garbage" => {
            let _ = s.write_all(b"\x16\x03\x01\x00\xa5\x00\xffgarbage, not HTTP\r\n\r\n").await;
        }
        "/huge-header" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Huge: ").await;
            let line = vec![b'a'; 64 << 10];
            for _ in 0..16 {
                if s.write_all(&line).await.is_err() {
                    return;
                }
            }
            let _ = s.write_all(b"\r\nContent-Length: 0\r\n\r\n").await;
        }
        "/endless-chunked" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 0x4000]);
            chunk.extend_from_slice(b"\r\n");
            repeat(s, &chunk).await;
        }
        "/endless-tiny-chunks" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            repeat(s, &b"1\r\nx\r\n".repeat(10_000)).await;
        }
        "/endless-trailers" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n").await;
            repeat(s, &b"X-Trailer: again\r\n".repeat(1000)).await;
        }
        "/huge-chunk" => {
            // Declares a 2 MiB chunk, then sends nothing.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n").await;
            tokio::time::sleep(SERVER_LIFETIME).await;
        }
        "/slowloris" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
            for _ in 0..100 {
                if s.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        "/slow-head" => {
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().chain([b'y'; 100].iter()) {
                if s.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "/reset" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").await;
            let _ = s.write_all(&[b'x'; 10_000]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = s.set_zero_linger();
        }
        "/continue-storm" => {
            repeat(s, &b"HTTP/1.1 100 Continue\r\n\r\n".repeat(100)).await;
        }
        "/over-limit-length" => {
            // Declares 2 MiB, then sends nothing: only a client that reads
            // before checking would wait for it.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n").await;
            tokio::time::sleep(SERVER_LIFETIME).await;
        }
        "/over-limit-close" => {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            repeat(s, &[b'x'; 64 << 10]).await;
        }
        "/gzip-bomb" => {
            let bomb = gzip_bomb(1024);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", bomb.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&bomb).await;
        }
        "/huge-length" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello").await;
        }
        "/two-lengths" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
        }
        other => {
            // `/bad-length/{i}`: the i-th of BAD_LENGTHS, then a close, so
            // that a client reading until close would see a success.
            let value = other.strip_prefix("/bad-length/").and_then(|i| BAD_LENGTHS.get(i.parse::<usize>().ok()?));
            if let Some(value) = value {
                let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nhello");
                let _ = s.write_all(response.as_bytes()).await;
            }
        }
    }
}

/// A gzip body of `mib` MiB of zeros in about `mib` KiB. Built from one
/// compressed MiB repeated: a full flush ends the deflate data on a byte
/// boundary with nothing referring back, so copies of it can follow each
/// other. The trailer's CRC and size are exact, so this is a valid body.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 << 10);
    deflate.compress_vec(&zeros, &mut block, FlushCompress::Full).unwrap();
    assert_eq!(deflate.total_in(), zeros.len() as u64, "one MiB fits in one block");
    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        bomb.extend_from_slice(&block);
        crc.combine(&one);
    }
    // An empty final stored block, then CRC-32 and size (mod 2^32).
    bomb.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    bomb.extend_from_slice(&crc.sum().to_le_bytes());
    bomb.extend_from_slice(&crc.amount().to_le_bytes());
    bomb
}

fn test_config() -> ClientConfig {
    let mut config = ClientConfig::default_config();
    config.connect_timeout = TIMEOUT;
    config.timeout = Some(TIMEOUT);
    config.max_body_bytes = LIMIT;
    config
}

/// Send `request` to `base` with `config`; fails the test if the client
/// outlives its own timeout.
async fn fetch_with(base: String, request: Request, config: ClientConfig) -> (Response, Duration) {
    let mut session = Session::new(Arc::new(config), base);
    let started = Instant::now();
    let response =
        tokio::time::timeout(HANG, session.send(&request)).await.expect("the client hung past its own timeout");
    assert_eq!(response.status_code(), 0, "a failure has no status");
    (response, started.elapsed())
}

/// GET `path` from the misbehaving server with the test configuration;
/// returns the error and how long it took.
async fn fetch(path: &str) -> (HttpError, Duration) {
    fetch_request(Request::get(path)).await
}

async fn fetch_request(request: Request) -> (HttpError, Duration) {
    let addr = misbehaving_server().await;
    let path = request.url.clone();
    let (response, elapsed) = fetch_with(format!("http://{addr}"), request, test_config()).await;
    match response.error {
        Some(error) => (error, elapsed),
        None => panic!("{path}: expected a failure, got {}", response.text()),
    }
}

/// The request failed because of the body limit, fast (not by the timeout).
fn assert_too_large(path: &str, (error, elapsed): (HttpError, Duration), decoded: bool, limit: usize) {
    match error {
        HttpError::BodyTooLarge { limit: l, decoded: d } if l == limit && d == decoded => {}
        other => panic!("{path}: expected the body limit, got {other}"),
    }
    assert!(elapsed < TIMEOUT, "{path}: took {elapsed:?}");
}

/// The request failed as a protocol error whose text contains `text`.
fn assert_protocol(path: &str, (error, elapsed): (HttpError, Duration), text: &str) {
    match &error {
        HttpError::Protocol(message) if message.contains(text) => {}
        other => panic!("{path}: expected a protocol error with {text:?}, got {other}"),
    }
    assert!(elapsed < TIMEOUT, "{path}: took {elapsed:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_instead_of_a_response_is_a_protocol_error() {
    assert_protocol("/garbage", fetch("/garbage").await, "invalid response");
}

#[tokio::test(flavor = "current_thread")]
async fn a_one_mebibyte_header_line_stops_at_the_head_limit() {
    assert_protocol("/huge-header", fetch("/huge-header").await, "larger than 64 KiB");
}

#[tokio::test(flavor = "current_thread")]
async fn endless_chunked_bodies_stop_at_the_body_limit() {
    assert_too_large("/endless-chunked", fetch("/endless-chunked").await, false, LIMIT);
    // Six bytes on the wire per body byte: a smaller limit keeps the test
    // quick on a slow machine.
    let tiny = Request::get("/endless-tiny-chunks").max_body(64 << 10);
    assert_too_large("/endless-tiny-chunks", fetch_request(tiny).await, false, 64 << 10);
    assert_too_large("/huge-chunk", fetch("/huge-chunk").await, false, LIMIT);
}

#[tokio::test(flavor = "current_thread")]
async fn endless_trailers_stop_at_the_trailer_limit() {
    assert_protocol("/endless-trailers", fetch("/endless-trailers").await, "trailers longer than 64 KiB");
}

#[tokio::test(flavor = "current_thread")]
async fn a_response_that_never_finishes_times_out() {
    let (slowloris, slow_head) = tokio::join!(fetch("/slowloris"), fetch("/slow-head"));
    for (path, (error, elapsed)) in [("/slowloris", slowloris), ("/slow-head", slow_head)] {
        assert!(matches!(error, HttpError::Timeout(t) if t == TIMEOUT), "{path}: {error}");
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT + Duration::from_secs(2), "{path}: {elapsed:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_reset_mid_body_is_a_connection_error() {
    let (error, elapsed) = fetch("/reset").await;
    assert!(matches!(&error, HttpError::Protocol(m) if m.contains("reset")), "{error}");
    assert!(elapsed < TIMEOUT, "{elapsed:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_storm_of_100_continue_stops_at_the_informational_limit() {
    assert_protocol("/continue-storm", fetch("/continue-storm").await, "informational (1xx)");
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_over_the_limit_fail_whatever_their_framing() {
    // Refused from the Content-Length alone: the server never sends it.
    assert_too_large("/over-limit-length", fetch("/over-limit-length").await, false, LIMIT);
    assert_too_large("/over-limit-close", fetch("/over-limit-close").await, false, LIMIT);
    assert_too_large("/huge-length", fetch("/huge-length").await, false, LIMIT);
}

#[test]
fn the_gzip_bomb_is_valid_gzip() {
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&gzip_bomb(3)[..]).read_to_end(&mut inflated).unwrap();
    assert_eq!(inflated.len(), 3 << 20);
    assert!(inflated.iter().all(|&b| b == 0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_gzip_bomb_stops_at_the_limit_when_inflated() {
    const MIB: usize = 1 << 20;
    let bomb_size = gzip_bomb(1024).len();
    assert!(bomb_size > MIB && bomb_size < 2 * MIB, "a bomb of {bomb_size} bytes");
    let addr = misbehaving_server().await;
    let base = format!("http://{addr}");
    let mut config = test_config();
    config.max_body_bytes = 2 * MIB;
    // The configured limit: the 1 MiB received passes, inflating stops
    // after 2 MiB of the 1 GiB.
    let (response, elapsed) = fetch_with(base.clone(), Request::get("/gzip-bomb"), config.clone()).await;
    assert_too_large("/gzip-bomb", (response.error.unwrap(), elapsed), true, 2 * MIB);
    // A request's own limit overrides the configuration's, both ways.
    let request = Request::get("/gzip-bomb").max_body(4 * MIB);
    let (response, elapsed) = fetch_with(base.clone(), request, config.clone()).await;
    assert_too_large("/gzip-bomb", (response.error.unwrap(), elapsed), true, 4 * MIB);
    let request = Request::get("/gzip-bomb").max_body(MIB);
    let (response, elapsed) = fetch_with(base.clone(), request, config).await;
    assert_too_large("/gzip-bomb", (response.error.unwrap(), elapsed), false, MIB);
    // And the default limit, 64 MiB, also ends a bomb of 1 GiB.
    let mut config = ClientConfig::default_config();
    config.timeout = Some(HANG);
    let (response, _) = fetch_with(base, Request::get("/gzip-bomb"), config).await;
    let error = response.error.unwrap();
    assert!(matches!(error, HttpError::BodyTooLarge { limit, decoded: true } if limit == 64 * MIB), "{error}");
    assert_eq!(error.to_string(), "BodyTooLarge: decoded response body larger than the 64 MiB limit (max body size)");
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_content_lengths_fail_instead_of_reading_until_close() {
    for (i, value) in BAD_LENGTHS.iter().enumerate() {
        let (error, elapsed) = fetch(&format!("/bad-length/{i}")).await;
        assert!(error.to_string().contains("Content-Length"), "{value:?}: {error}");
        assert!(elapsed < TIMEOUT, "{elapsed:?}");
    }
    assert_protocol("/two-lengths", fetch("/two-lengths").await, "conflicting Content-Length values 5 and 6");
}

/// An HTTP/2 response body of `frames` frames of 16 KiB, with no length
/// announced, so only counting the frames can stop it.
struct Frames {
    left: usize,
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        static FRAME: [u8; 16 << 10] = [b'x'; 16 << 10];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(&FRAME)))))
    }
}

/// An h2c (prior knowledge) server whose every response is `frames` frames.
async fn http2_server(frames: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((socket, _)) = listener.accept().await else { return };
            let service = hyper::service::service_fn(move |_| async move {
                Ok::<_, Infallible>(hyper::Response::new(Frames { left: frames }))
            });
            let connection = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
            tokio::spawn(tokio::time::timeout(SERVER_LIFETIME, connection));
        }
    });
    addr
}

#[tokio::test(flavor = "current_thread")]
async fn an_http2_body_without_a_length_stops_at_the_limit() {
    let mut config = ClientConfig::new(&TlsOptions::default(), HttpVersionPreference::Http2Only).unwrap();
    config.timeout = Some(TIMEOUT);
    config.max_body_bytes = LIMIT;
    // 64 frames of 16 KiB are exactly the limit; 4096 (64 MiB) are not.
    let fits = http2_server(64).await;
    let (response, _) = fetch_ok(format!("http://{fits}"), config.clone()).await;
    assert_eq!(response.body.len(), LIMIT);
    assert!(response.header("content-length").is_none(), "the body is not announced");
    let endless = http2_server(4096).await;
    let (response, elapsed) = fetch_with(format!("http://{endless}"), Request::get("/"), config).await;
    assert_too_large("h2 /", (response.error.unwrap(), elapsed), false, LIMIT);
}

async fn fetch_ok(base: String, config: ClientConfig) -> (Response, Duration) {
    let mut session = Session::new(Arc::new(config), base);
    let started = Instant::now();
    let response = tokio::time::timeout(HANG, session.send(&Request::get("/"))).await.expect("hung");
    assert_eq!(response.status_code(), 200, "{:?}", response.error);
    (response, started.elapsed())
}
