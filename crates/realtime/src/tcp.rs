//! Raw TCP (or TLS) connections for a plan's own protocol: bytes out,
//! lines or counted bytes in, each wait bounded. Nothing is recorded here:
//! the plan times its own exchanges (`measure`, `record_request`), naming
//! them as its protocol does.

use std::rc::Rc;
use std::time::Duration;

use swarmer_engine::Client;
use swarmer_http::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::RealtimeError;

/// How a connection is opened.
#[derive(Debug, Clone, Default)]
pub struct TcpOptions {
    /// TLS with the test's trust (`--ca-cert`, `--insecure`, client
    /// certificate); also chosen by a `tls://` address.
    pub tls: bool,
    /// Time allowed to connect (default: the test's connect timeout).
    pub timeout: Option<Duration>,
}

/// How much a receive waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// A line: up to `\n`, given without its `\r\n` or `\n`.
    Line,
    /// Exactly this many bytes.
    Bytes(usize),
    /// Whatever has arrived (at least one byte).
    Any,
}

/// What a receive found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpReceived {
    /// The bytes asked for.
    Data(Vec<u8>),
    /// The peer closed the connection before they all came (what did
    /// come stays unread).
    Closed,
    /// They did not all come in time (what did come stays unread).
    TimedOut,
}

struct Reader {
    half: ReadHalf<Stream>,
    /// Bytes read and not yet given.
    buffer: Vec<u8>,
    ended: bool,
}

struct Inner {
    reader: Mutex<Reader>,
    writer: Mutex<WriteHalf<Stream>>,
    peer: String,
    /// Most bytes one receive may wait for (the test's `--max-body-size`).
    limit: usize,
    /// Longest a send may wait for the peer to read (the test's request timeout).
    write_timeout: Duration,
}

/// One connection of a user. Clones share it.
#[derive(Clone)]
pub struct TcpConnection {
    inner: Rc<Inner>,
}

impl TcpConnection {
    /// Connect to `address`: `host:port`, `tcp://host:port` or
    /// `tls://host:port`.
    pub async fn connect(client: &Client, address: &str, options: &TcpOptions) -> Result<Self, RealtimeError> {
        let invalid = |why: &str| RealtimeError::InvalidUrl { url: address.to_owned(), why: why.to_owned() };
        let (tls, rest) = match address.split_once("://") {
            Some(("tcp", rest)) => (options.tls, rest),
            Some(("tls", rest)) => (true, rest),
            Some((scheme, _)) => return Err(invalid(&format!("scheme {scheme}: expected tcp or tls"))),
            None => (options.tls, address),
        };
        // A host given as a URL may end in a slash.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("expected host:port"))?;
        let port: u16 = port.parse().map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(invalid("expected host:port"));
        }
        let config = client.http_config();
        let tls = tls.then(|| config.tls_with_alpn(&[]));
        let allowed = options.timeout.unwrap_or(config.connect_timeout);
        // The TLS handshake within the same time as the TCP connect.
        let connecting = swarmer_http::open_stream(host, port, tls, allowed);
        let stream = tokio::time::timeout(allowed, connecting)
            .await
            .map_err(|_| RealtimeError::TimedOut(allowed))?
            .map_err(|e| RealtimeError::Connect(e.to_string()))?;
        let (read, write) = tokio::io::split(stream);
        Ok(Self {
            inner: Rc::new(Inner {
                reader: Mutex::new(Reader { half: read, buffer: Vec::new(), ended: false }),
                writer: Mutex::new(write),
                peer: format!("{host}:{port}"),
                limit: config.max_body_bytes,
                write_timeout: config.timeout.unwrap_or(crate::opening::DEFAULT_TIMEOUT),
            }),
        })
    }

    /// `host:port` connected to.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Write `bytes` (all of them), within the test's request timeout.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), RealtimeError> {
        let allowed = self.inner.write_timeout;
        let sending = async {
            let mut writer = self.inner.writer.lock().await;
            writer.write_all(bytes).await.map_err(gone)?;
            writer.flush().await.map_err(gone)
        };
        tokio::time::timeout(allowed, sending).await.map_err(|_| RealtimeError::TimedOut(allowed))?
    }

    /// Wait at most `timeout` for what `until` asks.
    pub async fn receive(&self, until: Until, timeout: Duration) -> Result<TcpReceived, RealtimeError> {
        if let Until::Bytes(n) = until
            && n > self.inner.limit
        {
            return Err(RealtimeError::Protocol(format!("{n} bytes asked, more than {} allowed", self.inner.limit)));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(mut reader) = tokio::time::timeout_at(deadline, self.inner.reader.lock()).await else {
            return Ok(TcpReceived::TimedOut);
        };
        loop {
            if let Some(data) = take(&mut reader.buffer, until) {
                return Ok(TcpReceived::Data(data));
            }
            if reader.ended {
                return Ok(TcpReceived::Closed);
            }
            if reader.buffer.len() > self.inner.limit {
                return Err(RealtimeError::Protocol(format!("a line longer than {} bytes", self.inner.limit)));
            }
            let Reader { half, buffer, ended } = &mut *reader;
            buffer.reserve(8192);
            // Cancel-safe: bytes read land in the buffer before the wait ends.
            match tokio::time::timeout_at(deadline, half.read_buf(buffer)).await {
                Err(_) => return Ok(TcpReceived::TimedOut),
                Ok(Ok(0)) => *ended = true,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(gone(e)),
            }
        }
    }

    /// Close the writing side (the peer reads the end); the connection
    /// goes when its last clone does.
    /// A send still waiting keeps the connection writing: then only the
    /// last clone's going closes it.
    pub async fn close(&self) -> Result<(), RealtimeError> {
        let Ok(mut writer) = self.inner.writer.try_lock() else { return Ok(()) };
        match tokio::time::timeout(self.inner.write_timeout, writer.shutdown()).await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            Ok(Err(e)) => Err(gone(e)),
        }
    }
}

fn gone(e: std::io::Error) -> RealtimeError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::NotConnected => {
            RealtimeError::Closed
        }
        _ => RealtimeError::Protocol(e.to_string()),
    }
}

/// Take what `until` asks from the front of `buffer`, if it is all there.
fn take(buffer: &mut Vec<u8>, until: Until) -> Option<Vec<u8>> {
    let (taken, skip) = match until {
        Until::Line => {
            let end = buffer.iter().position(|&b| b == b'\n')?;
            let content = if end > 0 && buffer[end - 1] == b'\r' { end - 1 } else { end };
            (content, end + 1 - content)
        }
        Until::Bytes(n) if buffer.len() >= n => (n, 0),
        Until::Bytes(_) => return None,
        Until::Any if buffer.is_empty() => return None,
        Until::Any => (buffer.len(), 0),
    };
    let data = buffer[..taken].to_vec();
    buffer.drain(..taken + skip);
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::{Until, take};

    #[test]
    fn lines_counted_bytes_and_whatever_came() {
        let mut buffer = b"+OK\r\n$3\r\nabc\r\nrest".to_vec();
        assert_eq!(take(&mut buffer, Until::Line).as_deref(), Some(&b"+OK"[..]));
        assert_eq!(take(&mut buffer, Until::Line).as_deref(), Some(&b"$3"[..]));
        assert_eq!(take(&mut buffer, Until::Bytes(5)).as_deref(), Some(&b"abc\r\n"[..]));
        assert_eq!(take(&mut buffer, Until::Line), None);
        assert_eq!(take(&mut buffer, Until::Bytes(5)), None);
        assert_eq!(take(&mut buffer, Until::Any).as_deref(), Some(&b"rest"[..]));
        assert_eq!(take(&mut buffer, Until::Any), None);
        let mut bare = b"\nx\n".to_vec();
        assert_eq!(take(&mut bare, Until::Line).as_deref(), Some(&b""[..]));
        assert_eq!(take(&mut bare, Until::Line).as_deref(), Some(&b"x"[..]));
    }
}
