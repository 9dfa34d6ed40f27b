//! Kept-alive connections that the server closes: a request is sent again
//! on a new connection only when that cannot make the server act twice.
//!
//! The server here counts every complete request it reads, so a test can
//! tell "sent once" from "sent twice" exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarmer_http::{ClientConfig, Method, Request, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does after reading a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Answer and keep the connection open.
    Answer,
    /// Answer, then half-close (send FIN) and count whatever still arrives.
    AnswerAndHalfClose,
    /// Close without answering, as a server that crashed after acting.
    CloseWithoutAnswer,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    /// Complete requests read, on any connection.
    requests: AtomicUsize,
    /// Complete requests read after the server half-closed their connection.
    after_half_close: AtomicUsize,
    half_closes: AtomicUsize,
}

impl Counts {
    fn get(&self) -> (usize, usize, usize) {
        let load = |c: &AtomicUsize| c.load(Ordering::SeqCst);
        (load(&self.connections), load(&self.requests), load(&self.after_half_close))
    }
}

/// A server where request `n` (from 0) of connection `c` (from 0) gets
/// `policy(c, n)`. Bounded: 16 connections, 16 requests each, 5 s each.
async fn counting_server(policy: fn(usize, usize) -> Then) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let server_counts = counts.clone();
    tokio::spawn(async move {
        for c in 0..16 {
            let Ok((socket, _)) = listener.accept().await else { return };
            server_counts.connections.fetch_add(1, Ordering::SeqCst);
            let counts = server_counts.clone();
            tokio::spawn(tokio::time::timeout(Duration::from_secs(5), serve(socket, c, policy, counts)));
        }
    });
    (addr, counts)
}

async fn serve(mut socket: TcpStream, connection: usize, policy: fn(usize, usize) -> Then, counts: Arc<Counts>) {
    let mut buffer = Vec::new();
    let mut half_closed = false;
    for n in 0..16 {
        if !read_request(&mut socket, &mut buffer).await {
            return;
        }
        counts.requests.fetch_add(1, Ordering::SeqCst);
        if half_closed {
            counts.after_half_close.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        match policy(connection, n) {
            Then::CloseWithoutAnswer => return,
            then => {
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if socket.write_all(answer).await.is_err() {
                    return;
                }
                if then == Then::AnswerAndHalfClose {
                    let _ = socket.shutdown().await;
                    half_closed = true;
                    counts.half_closes.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Read one complete request (head and Content-Length body) from the
/// front of `buffer` and the socket; `false` if the connection ends first.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + length {
                buffer.drain(..end + length);
                return true;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(n @ 1..) => buffer.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

fn request(method: &Method) -> Request {
    Request::new(method.clone(), "/order").body("one order")
}

async fn poll_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_post_after_the_server_closed_the_idle_connection_goes_once_on_a_new_one() {
    for method in [Method::POST, Method::PATCH] {
        let (addr, counts) = counting_server(|_, _| Then::AnswerAndHalfClose).await;
        let mut session = Session::new(Arc::new(ClientConfig::default_config()), format!("http://{addr}"));
        assert_eq!(session.send(&request(&method)).await.status_code(), 200);
        poll_until("the half-close", || counts.half_closes.load(Ordering::SeqCst) == 1).await;
        // Let the reactor see the FIN, as it does while a user waits.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = session.send(&request(&method)).await;
        assert_eq!(second.status_code(), 200, "{method}: {:?}", second.error);
        let (connections, requests, after_half_close) = counts.get();
        assert_eq!(after_half_close, 0, "{method}: nothing was written on the closed connection");
        assert_eq!((connections, requests), (2, 2), "{method}: each request arrived once");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_post_the_server_may_have_acted_on_is_not_sent_again() {
    for method in [Method::POST, Method::PATCH] {
        let (addr, counts) =
            counting_server(|c, n| if (c, n) == (0, 1) { Then::CloseWithoutAnswer } else { Then::Answer }).await;
        let mut session = Session::new(Arc::new(ClientConfig::default_config()), format!("http://{addr}"));
        assert_eq!(session.send(&request(&method)).await.status_code(), 200);
        let second = session.send(&request(&method)).await;
        let error = second.error.expect("the caller sees the failure").to_string();
        assert!(error.contains("not idempotent"), "{method}: {error}");
        assert_eq!(counts.get(), (1, 2, 0), "{method}: the second request arrived once, and was not sent again");
        // The session recovers: the next request goes on a new connection.
        assert_eq!(session.send(&request(&method)).await.status_code(), 200);
        assert_eq!(counts.get(), (2, 3, 0));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_idempotent_request_on_a_stale_connection_is_sent_again() {
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let (addr, counts) =
            counting_server(|c, n| if (c, n) == (0, 1) { Then::CloseWithoutAnswer } else { Then::Answer }).await;
        let mut session = Session::new(Arc::new(ClientConfig::default_config()), format!("http://{addr}"));
        assert_eq!(session.send(&request(&method)).await.status_code(), 200);
        let second = session.send(&request(&method)).await;
        assert_eq!(second.status_code(), 200, "{method}: {:?}", second.error);
        assert_eq!(counts.get(), (2, 3, 0), "{method}: sent again on a new connection");
    }
}
