//! A Redis-like key-value server over TCP: the target of the "your own
//! protocol" example and tests (`swarmer target --kv-bind ADDR`).
//!
//! One command per line (`\r\n` or `\n`), answered in Redis's reply
//! format: `PING` → `+PONG`; `SET key value…` → `+OK`; `GET key` →
//! `$len\r\nvalue` or `$-1`; `DEL key` → `:1` or `:0`; `INCR key` → `:n`;
//! `SLEEP ms` → `+OK` after that long (at most 60 s); anything else →
//! `-ERR …`. A thread serves each connection (at most 256 at once; more
//! are told `-ERR busy` and closed); a line over 64 KiB closes the
//! connection, as does a minute without a command or ten seconds without
//! reading; at most 100,000 keys. It is a demo, not a database.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::TargetError;

/// Most connections served at once.
const MOST_CONNECTIONS: usize = 256;
/// Longest command line.
const MOST_LINE: usize = 64 << 10;
/// Most keys stored.
const MOST_KEYS: usize = 100_000;

#[derive(Default)]
struct Shared {
    store: Mutex<HashMap<String, String>>,
    served: AtomicU64,
    open: AtomicUsize,
    stopping: AtomicBool,
}

/// A running key-value server. Stops accepting when dropped.
pub struct KvServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl KvServer {
    /// Listen on `addr` and serve on threads of its own.
    pub fn spawn(addr: &str) -> Result<Self, TargetError> {
        let bind = |source| TargetError::Bind { addr: addr.into(), source };
        let listener = TcpListener::bind(addr).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let accepting = std::thread::Builder::new()
            .name("kv-accept".into())
            .spawn(move || accept(&listener, &serving))
            .map_err(TargetError::Runtime)?;
        Ok(Self { addr: local, shared, accepting: Some(accepting) })
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Commands answered so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }
}

impl Drop for KvServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MOST_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(b"-ERR busy\r\n");
            continue;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new().name("kv-conn".into()).spawn(move || {
            let _ = serve(stream, &shared);
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // An idle client is let go after a minute.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // A client that sends and never reads is let go too.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = std::io::Read::take(&mut lines, MOST_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if read == 0 || shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            out.write_all(b"-ERR line too long\r\n")?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let reply = answer(text.trim_end_matches(['\r', '\n']), &shared.store);
        shared.served.fetch_add(1, Ordering::Relaxed);
        out.write_all(reply.as_bytes())?;
    }
}

/// The reply to one command line.
fn answer(line: &str, store: &Mutex<HashMap<String, String>>) -> String {
    let mut words = line.splitn(3, ' ');
    let command = words.next().unwrap_or("").to_ascii_uppercase();
    let (key, rest) = (words.next(), words.next());
    let mut store = match store.lock() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    };
    match (command.as_str(), key, rest) {
        ("PING", None, _) => "+PONG\r\n".into(),
        ("SET", Some(key), Some(_)) if store.len() >= MOST_KEYS && !store.contains_key(key) => {
            format!("-ERR full (at most {MOST_KEYS} keys)\r\n")
        }
        ("SET", Some(key), Some(value)) => {
            store.insert(key.to_owned(), value.to_owned());
            "+OK\r\n".into()
        }
        ("GET", Some(key), None) => match store.get(key) {
            Some(value) => format!("${}\r\n{value}\r\n", value.len()),
            None => "$-1\r\n".into(),
        },
        ("DEL", Some(key), None) => format!(":{}\r\n", u8::from(store.remove(key).is_some())),
        ("INCR", Some(key), None) => {
            let now = store.get(key).map_or(Ok(0), |v| v.parse::<i64>());
            match now.ok().and_then(|n| n.checked_add(1)) {
                Some(_) if store.len() >= MOST_KEYS && !store.contains_key(key) => {
                    format!("-ERR full (at most {MOST_KEYS} keys)\r\n")
                }
                Some(n) => {
                    store.insert(key.to_owned(), n.to_string());
                    format!(":{n}\r\n")
                }
                None => "-ERR value is not an integer or out of range\r\n".into(),
            }
        }
        ("SLEEP", Some(ms), None) => {
            drop(store);
            let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
            std::thread::sleep(Duration::from_millis(ms));
            "+OK\r\n".into()
        }
        ("PING" | "SET" | "GET" | "DEL" | "INCR" | "SLEEP", _, _) => {
            format!("-ERR wrong number of arguments for '{}'\r\n", command.to_ascii_lowercase())
        }
        _ => format!("-ERR unknown command '{}'\r\n", command.chars().take(64).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn commands_get_redis_replies() {
        let store = Default::default();
        assert_eq!(answer("PING", &store), "+PONG\r\n");
        assert_eq!(answer("GET k", &store), "$-1\r\n");
        assert_eq!(answer("SET k hello world", &store), "+OK\r\n");
        assert_eq!(answer("get k", &store), "$11\r\nhello world\r\n");
        assert_eq!(answer("INCR n", &store), ":1\r\n");
        assert_eq!(answer("INCR k", &store), "-ERR value is not an integer or out of range\r\n");
        assert_eq!(answer("DEL k", &store), ":1\r\n");
        assert_eq!(answer("DEL k", &store), ":0\r\n");
        assert_eq!(answer("SET k", &store), "-ERR wrong number of arguments for 'set'\r\n");
        assert_eq!(answer("FLY", &store), "-ERR unknown command 'FLY'\r\n");
    }
}
