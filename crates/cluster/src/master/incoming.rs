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
//! Refusals and closes are logged with their reason, at most one line a
//! second. A peer that completes HTTP/2 and answers its pings without
//! authenticating keeps its slot: the bounds per address and in total
//! are what limit such peers.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use swarmer_engine::LockExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bounds on the cluster port's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub total: usize,
    /// Connections open at once from one address.
    pub per_peer: usize,
    /// Time for a connection's first bytes.
    pub first_bytes: Duration,
}

/// Descriptors left for everything but the cluster port (the web UI, the
/// plan's files, logs).
const RESERVED_FILES: usize = 96;
/// Bytes that count as a start: the HTTP/2 preface's length (a TLS
/// ClientHello is longer).
const FIRST_BYTES: usize = 24;

impl Limits {
    /// Limits for this process: as many connections as its open-file limit
    /// allows after a reserve (at most 16,384), 256 per address, 10 s for
    /// the first bytes.
    pub fn for_this_process() -> Self {
        let files = open_file_limit().unwrap_or(1024);
        let total = files.saturating_sub(RESERVED_FILES).clamp(16, 16_384);
        Self { total, per_peer: total.min(256), first_bytes: Duration::from_secs(10) }
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

/// Accepted connections within `limits`, as tonic's incoming stream.
pub fn incoming(listener: TcpListener, limits: Limits) -> impl Stream<Item = io::Result<Guarded>> {
    let state =
        Accepting { listener, limits, open: Arc::new(Semaphore::new(limits.total)), per_peer: PerPeer::default() };
    futures_util::stream::unfold(state, |mut state| async move {
        let guarded = state.next().await;
        Some((Ok(guarded), state))
    })
}

struct Accepting {
    listener: TcpListener,
    limits: Limits,
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
                    warn_limited(format_args!("the cluster port could not accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                let total = self.limits.total;
                warn_limited(format_args!("refused a connection from {peer}: {total} are open (the most at once)"));
                continue;
            };
            let Some(slot) = PeerSlot::take(&self.per_peer, peer.ip(), self.limits.per_peer) else {
                let most = self.limits.per_peer;
                warn_limited(format_args!("refused a connection from {peer}: {most} are open from it (the most)"));
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let started = Box::pin(tokio::time::sleep(self.limits.first_bytes));
            return Guarded { tcp, peer, started: Some(started), read: 0, _permit: permit, _slot: slot };
        }
    }
}

/// Log `what`, unless this module logged within the last second (one
/// line a second, however many peers misbehave).
fn warn_limited(what: std::fmt::Arguments<'_>) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = swarmer_stats::unix_now() as u64;
    if LAST.swap(now, Ordering::Relaxed) != now {
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
/// (and so closes) if its first bytes do not come in time.
pub struct Guarded {
    tcp: TcpStream,
    peer: SocketAddr,
    /// The deadline for the first bytes, until they came.
    started: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    _permit: OwnedSemaphorePermit,
    _slot: PeerSlot,
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.started.is_some() {
            self.read += buf.filled().len() - before;
            if self.read >= FIRST_BYTES {
                self.started = None;
            } else if polled.is_pending() && self.started.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready()) {
                warn_limited(format_args!(
                    "closed a connection from {}: nothing to start HTTP/2 or TLS in time",
                    self.peer
                ));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no first bytes in time")));
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
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
