//! The cluster port's accept loop, before any byte reaches HTTP/2 or TLS:
//! what keeps peers without the token from exhausting the master.
//!
//! - At most [`Limits::total`] connections are open at once (below the
//!   process's open-file limit, so the web UI and the plan keep room), and
//!   at most [`Limits::per_peer`] from one address; further ones are
//!   closed as soon as they are accepted.
//! - A connection must send its first bytes (the HTTP/2 preface, or a TLS
//!   ClientHello) within [`Limits::first_bytes`]; an idle one is closed.
//!   (TLS handshakes have their own deadline, HTTP/2 its keepalive, and
//!   the service a deadline for the hello.)
//! - An accept error (out of descriptors, say) waits a moment instead of
//!   spinning.
//!
//! - Until a worker on the connection has proved the cluster token (the
//!   service says so through [`PeerInfo::prove`]), the connection may send at
//!   most [`PRE_AUTH_BYTES`] and must prove it within
//!   [`Limits::to_prove`]: a peer without the token can neither make the
//!   master buffer a large message nor hold its slot by answering pings.
//!
//! Refusals and closes are logged with their reason, at most one line a
//! second of each kind.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use swarmer_engine::LockExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use super::opening::{DECIDING_BYTES, Expect, Verdict, judge};

/// Bounds on the cluster port's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub total: usize,
    /// Connections open at once from one address.
    pub per_peer: usize,
    /// Time for a connection's first bytes.
    pub first_bytes: Duration,
    /// Time from its start for a connection to prove the token.
    pub to_prove: Duration,
}

/// What a connection may send before it has proved the token: room for
/// the TLS handshake (client certificates included), HTTP/2's preface and
/// settings, and a hello, many times over; far below one report.
pub const PRE_AUTH_BYTES: usize = 64 * 1024;

/// Descriptors left for everything but the cluster port (the web UI, the
/// plan's files, logs).
const RESERVED_FILES: usize = 96;

impl Limits {
    /// Limits for this process: as many connections as its open-file limit
    /// allows after a reserve (at most 16,384), 256 per address, 10 s for
    /// the first bytes.
    pub fn for_this_process() -> Self {
        let files = open_file_limit().unwrap_or(1024);
        let total = files.saturating_sub(RESERVED_FILES).clamp(16, 16_384);
        // The first bytes, then a hello and a proof, each with 10 s.
        Self {
            total,
            per_peer: total.min(256),
            first_bytes: Duration::from_secs(10),
            to_prove: Duration::from_secs(30),
        }
    }
}

/// The soft limit on open files (`/proc/self/limits`); `None` if unknown
/// or unlimited.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The open connections per address.
type PerPeer = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// What the service knows of the connection a request came on (tonic
/// puts it in each request's extensions): the peer's address, and the
/// connection's flag the service sets once a worker on it proved the token,
/// which lifts the connection's pre-authentication bounds.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    proved: Arc<AtomicBool>,
}

impl PeerInfo {
    /// A worker on this connection proved the token.
    pub fn prove(&self) {
        self.proved.store(true, Ordering::Release);
    }
}

/// Accepted connections within `limits`, as tonic's incoming stream.
/// With `tls`, each connection's handshake is done here, several at once,
/// and one that fails is logged and dropped (`super::tls`).
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    tls: Option<TlsAcceptor>,
) -> impl Stream<Item = io::Result<Connection>> {
    let expect = if tls.is_some() { Expect::Tls } else { Expect::Http2 };
    let state = Accepting {
        listener,
        limits,
        expect,
        open: Arc::new(Semaphore::new(limits.total)),
        per_peer: PerPeer::default(),
    };
    let accepted = futures_util::stream::unfold(state, |mut state| async move {
        let guarded = state.next().await;
        Some((guarded, state))
    });
    accepted
        .map(move |guarded| {
            let tls = tls.clone();
            async move {
                match tls {
                    None => Some(Connection::Plain(Box::new(guarded))),
                    Some(acceptor) => {
                        let peer = guarded.peer;
                        super::tls::handshake(acceptor, guarded, peer).await.map(|s| Connection::Tls(Box::new(s)))
                    }
                }
            }
        })
        // Every connection the limits allow may be in its handshake.
        .buffer_unordered(limits.total)
        .filter_map(|connection| std::future::ready(connection.map(Ok)))
}

/// A connection as tonic serves it: as accepted, or after its TLS handshake.
pub enum Connection {
    Plain(Box<Guarded>),
    Tls(Box<TlsStream<Guarded>>),
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
            Connection::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Connection::Plain(s) => s.connect_info(),
            Connection::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

struct Accepting {
    listener: TcpListener,
    limits: Limits,
    expect: Expect,
    open: Arc<Semaphore>,
    per_peer: PerPeer,
}

impl Accepting {
    /// The next connection within the limits (waiting as long as it takes).
    async fn next(&mut self) -> Guarded {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn_limited(
                        Kind::AcceptError,
                        format_args!("the cluster port could not accept a connection: {e}"),
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                let total = self.limits.total;
                warn_limited(
                    Kind::OverLimit,
                    format_args!("refused a connection from {peer}: {total} are open (the most at once)"),
                );
                continue;
            };
            let Some(slot) = PeerSlot::take(&self.per_peer, peer.ip(), self.limits.per_peer) else {
                let most = self.limits.per_peer;
                warn_limited(
                    Kind::OverLimit,
                    format_args!("refused a connection from {peer}: {most} are open from it (the most)"),
                );
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let started = Box::pin(tokio::time::sleep(self.limits.first_bytes));
            let unproved = Unproved { deadline: Box::pin(tokio::time::sleep(self.limits.to_prove)) };
            return Guarded {
                tcp,
                peer,
                proved: Arc::default(),
                started: Some(started),
                expect: self.expect,
                head: Vec::new(),
                unproved: Some(unproved),
                read: 0,
                _permit: permit,
                _slot: slot,
            };
        }
    }
}

/// Why the accept loop logs: each kind is logged at most once a second, so
/// a flood of one kind (refusals over the limit) never hides another (the
/// idle connections closed meanwhile).
#[derive(Clone, Copy)]
pub(super) enum Kind {
    AcceptError,
    OverLimit,
    FirstBytes,
    Unproved,
    Refused,
}

/// Log `what`, unless this module logged the same kind within the last
/// second (one line a second per kind, however many peers misbehave).
pub(super) fn warn_limited(kind: Kind, what: std::fmt::Arguments<'_>) {
    static LAST: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
    let now = swarmer_stats::unix_now() as u64;
    if LAST[kind as usize].swap(now, Ordering::Relaxed) != now {
        tracing::warn!("{what}");
    }
}

/// One connection of the most a peer may hold; given back when dropped.
struct PeerSlot {
    per_peer: PerPeer,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(per_peer: &PerPeer, ip: IpAddr, most: usize) -> Option<Self> {
        let mut counts = per_peer.lock_or_recover();
        let count = counts.entry(ip).or_insert(0);
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(Self { per_peer: per_peer.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.per_peer.lock_or_recover();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// An accepted connection holding its places in the limits; it fails
/// (and so closes) if its first bytes do not come in time, or if it sends
/// too much or takes too long before it proves the token.
pub struct Guarded {
    tcp: TcpStream,
    peer: SocketAddr,
    /// The deadline for the first bytes, until they came.
    started: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What its first bytes should be, and those seen until they decide.
    expect: Expect,
    head: Vec<u8>,
    /// Set by the service once a worker on it proved the token.
    proved: Arc<AtomicBool>,
    /// The bounds before the token is proved, until it is.
    unproved: Option<Unproved>,
    /// Bytes read so far (counted until the token is proved).
    read: usize,
    _permit: OwnedSemaphorePermit,
    _slot: PeerSlot,
}

/// A connection's state until it proves the token.
struct Unproved {
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Guarded {
    /// The pre-authentication bounds, after a read: an error closes the
    /// connection.
    fn check_unproved(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(unproved) = &mut self.unproved else { return Ok(()) };
        if self.proved.load(Ordering::Acquire) {
            self.unproved = None;
            return Ok(());
        }
        if self.read > PRE_AUTH_BYTES {
            warn_limited(
                Kind::Unproved,
                format_args!(
                    "closed a connection from {}: it sent more than {} KiB before proving the cluster token",
                    self.peer,
                    PRE_AUTH_BYTES / 1024
                ),
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too much before proving the token"));
        }
        if unproved.deadline.as_mut().poll(cx).is_ready() {
            warn_limited(
                Kind::Unproved,
                format_args!("closed a connection from {}: it did not prove the cluster token in time", self.peer),
            );
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the token was not proved in time"));
        }
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.started.is_some() || self.unproved.is_some() {
            self.read += buf.filled().len() - before;
        }
        if let Err(e) = self.check_unproved(cx) {
            return Poll::Ready(Err(e));
        }
        if self.started.is_some() {
            let fresh = &buf.filled()[before..];
            let wanted = DECIDING_BYTES.saturating_sub(self.head.len()).min(fresh.len());
            let fresh = fresh[..wanted].to_vec();
            self.head.extend_from_slice(&fresh);
            match judge(self.expect, &self.head) {
                Verdict::Expected => {
                    self.started = None;
                    self.head = Vec::new();
                }
                Verdict::Refused(why) => {
                    warn_limited(Kind::Refused, format_args!("refused a connection from {}: {why}", self.peer));
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
                }
                Verdict::Undecided => {
                    if polled.is_pending() && self.started.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready()) {
                        warn_limited(
                            Kind::FirstBytes,
                            format_args!(
                                "closed a connection from {}: nothing to start HTTP/2 or TLS in time",
                                self.peer
                            ),
                        );
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no first bytes in time")));
                    }
                }
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo { remote: self.peer, proved: self.proved.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_and_leaves_a_reserve() {
        let files = open_file_limit().expect("Linux says");
        let limits = Limits::for_this_process();
        assert!(limits.total <= files.saturating_sub(RESERVED_FILES).max(16), "{limits:?} of {files}");
        assert!(limits.per_peer <= limits.total);
    }

    /// Reads `guarded` until `bytes` came or it fails.
    async fn read_from(guarded: &mut Guarded, bytes: usize) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let mut got = 0;
        let mut buf = vec![0u8; 16 * 1024];
        while got < bytes {
            match guarded.read(&mut buf).await? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }

    #[tokio::test]
    async fn a_connection_sends_little_and_proves_the_token_in_time_or_is_closed() {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            total: 16,
            per_peer: 16,
            first_bytes: Duration::from_secs(5),
            to_prove: Duration::from_millis(300),
        };
        let accepted = incoming(listener, limits, None);
        tokio::pin!(accepted);
        let mut big = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        big.resize(2 * PRE_AUTH_BYTES, 7);

        // Proved: past the deadline and the byte budget, it goes on.
        let mut proved = TcpStream::connect(addr).await.unwrap();
        let Connection::Plain(mut guarded) = accepted.next().await.unwrap().unwrap() else { panic!("no TLS here") };
        proved.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        assert!(read_from(&mut guarded, 24).await.unwrap() >= 24);
        let info = guarded.connect_info();
        assert_eq!(info.remote, proved.local_addr().unwrap());
        info.prove();
        tokio::time::sleep(Duration::from_millis(500)).await;
        proved.write_all(&big).await.unwrap();
        assert!(read_from(&mut guarded, big.len()).await.unwrap() >= big.len());

        // Not proved in time: closed, though it sent its first bytes.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let Connection::Plain(mut guarded) = accepted.next().await.unwrap().unwrap() else { panic!("no TLS here") };
        slow.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let err = read_from(&mut guarded, usize::MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop((guarded, slow));

        // Too much before the proof: closed.
        let mut flood = TcpStream::connect(addr).await.unwrap();
        let Connection::Plain(mut guarded) = accepted.next().await.unwrap().unwrap() else { panic!("no TLS here") };
        let writer = tokio::spawn(async move {
            let _ = flood.write_all(&big).await;
            flood
        });
        let err = read_from(&mut guarded, usize::MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(guarded);
        drop(writer.await);
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back() {
        let per_peer = PerPeer::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = PeerSlot::take(&per_peer, ip, 2).unwrap();
        let second = PeerSlot::take(&per_peer, ip, 2).unwrap();
        assert!(PeerSlot::take(&per_peer, ip, 2).is_none());
        assert!(PeerSlot::take(&per_peer, "10.0.0.2".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(PeerSlot::take(&per_peer, ip, 2).is_some());
        drop(second);
        assert!(per_peer.lock().unwrap().get(&ip).is_none_or(|n| *n <= 1));
    }
}
