//! Server-Sent Events: subscribe (recorded), then read events as they
//! come, each recorded with the time since the one before. A stream cut
//! before its end (or one that cannot be parsed) is recorded once as a
//! failure of type `SSE` named `<name> (connection)`, its time the
//! stream's life; a stream the server ends cleanly is not a failure.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use swarmer_engine::Client;
use tokio::sync::Mutex;

use crate::{RealtimeError, opening};

/// How a subscription is made.
#[derive(Debug, Clone, Default)]
pub struct SseOptions {
    /// The name the subscription is recorded under (default: the URL as given).
    pub name: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Sent as `Last-Event-ID`, to resume a stream.
    pub last_event_id: Option<String>,
    /// Time allowed to connect and be answered (default: the test's
    /// request timeout).
    pub timeout: Option<Duration>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Its type (`message` unless the server named one).
    pub event: String,
    /// Its data, lines joined by `\n`.
    pub data: String,
    /// The last event ID the stream set, if any.
    pub id: Option<String>,
    /// A reconnection time the server asked for, in ms.
    pub retry: Option<u64>,
}

/// What reading the next event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An event.
    Event(Event),
    /// The server ended the stream.
    Ended,
    /// No event within the time allowed.
    TimedOut,
}

struct Reader {
    body: Incoming,
    parser: Parser,
    ended: bool,
}

struct Inner {
    reader: Mutex<Reader>,
    client: Client,
    url: String,
    /// When the previous event arrived (or the subscription was answered).
    last: Cell<Instant>,
    /// The event types recorded under their own row (at most
    /// [`MOST_EVENT_TYPES`]; the server chooses them).
    types: std::cell::RefCell<Vec<String>>,
    /// For recording a break.
    life: opening::Life,
}

/// Most event types of one stream recorded under their own rows; events
/// of further types share the row `event (other types)`.
const MOST_EVENT_TYPES: usize = 32;

/// A subscription to an event stream. Clones share it.
#[derive(Clone)]
pub struct EventStream {
    inner: Rc<Inner>,
}

impl EventStream {
    /// Subscribe to `url` (`http://`, `https://`, or a path on the user's
    /// host) and record it as type `SSE`, named `options.name` or `url`,
    /// with the time until the server answered.
    pub async fn subscribe(client: &Client, url: &str, options: &SseOptions) -> Result<Self, RealtimeError> {
        let name = options.name.as_deref().unwrap_or(url);
        let opened = opening::recorded(client, "SSE", name, options.timeout, open(client, url, options)).await;
        let (body, url) = opened?;
        let limit = client.http_config().max_body_bytes;
        Ok(Self {
            inner: Rc::new(Inner {
                reader: Mutex::new(Reader { body, parser: Parser::new(limit), ended: false }),
                client: client.clone(),
                url,
                last: Cell::new(Instant::now()),
                types: Default::default(),
                life: opening::Life::begin(client, "SSE", name),
            }),
        })
    }

    /// The URL subscribed to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The next event, waiting at most `timeout`; recorded as type `SSE`
    /// named `event <type>` (the first 32 types; later ones share `event
    /// (other types)`), with the time between its arrival and the previous
    /// event's (or the subscription's answer) and the data's size.
    pub async fn next(&self, timeout: Duration) -> Result<Next, RealtimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reader = match tokio::time::timeout_at(deadline, self.inner.reader.lock()).await {
            Ok(reader) => reader,
            Err(_) => return Ok(Next::TimedOut),
        };
        loop {
            if let Some((event, arrived)) = reader.parser.next_event() {
                let apart = arrived.saturating_duration_since(self.inner.last.replace(arrived));
                let name = self.row_of(&event.event);
                self.inner.client.record_request("SSE", &name, apart, event.data.len() as u64, None);
                return Ok(Next::Event(event));
            }
            if reader.ended {
                return Ok(Next::Ended);
            }
            let frame = match tokio::time::timeout_at(deadline, reader.body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Ok(Next::TimedOut),
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = reader.parser.feed(&data)
                    {
                        // What follows cannot be read in step: the stream ends.
                        reader.ended = true;
                        self.inner.life.broke("stream", &e.to_string());
                        return Err(e);
                    }
                }
                Some(Err(e)) => {
                    reader.ended = true;
                    let why = e.to_string();
                    self.inner.life.broke("stream", &why);
                    return Err(RealtimeError::Protocol(why));
                }
                None => reader.ended = true,
            }
        }
    }
}

impl EventStream {
    /// The row an event of type `kind` is recorded under.
    fn row_of(&self, kind: &str) -> String {
        let mut types = self.inner.types.borrow_mut();
        if types.iter().any(|known| known == kind) {
            return format!("event {kind}");
        }
        if types.len() < MOST_EVENT_TYPES {
            types.push(kind.to_owned());
            return format!("event {kind}");
        }
        "event (other types)".to_owned()
    }
}

/// Connect, send the request, and check the answer is an event stream.
async fn open(client: &Client, url: &str, options: &SseOptions) -> Result<(Incoming, String), RealtimeError> {
    let (endpoint, stream) = opening::connect(client, url, false).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| RealtimeError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let invalid = |why: String| RealtimeError::InvalidUrl { url: url.to_owned(), why };
    let mut request = http::Request::get(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.authority())
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .header(http::header::USER_AGENT, client.http_config().user_agent.as_str())
        .body(Empty::new())
        .map_err(|e| invalid(e.to_string()))?;
    let headers = request.headers_mut();
    let extra = options.last_event_id.iter().map(|id| ("last-event-id", id.as_str()));
    for (name, value) in options.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).chain(extra) {
        opening::set_header(headers, url, name, value)?;
    }
    let response = sender.send_request(request).await.map_err(|e| RealtimeError::Protocol(e.to_string()))?;
    let status = response.status();
    let kind = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if status != http::StatusCode::OK {
        return Err(RealtimeError::Refused(format!("the server answered {status} instead of an event stream")));
    }
    let essence = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "text/event-stream" {
        return Err(RealtimeError::Refused(format!(
            "the server answered with content type {kind:?}, not text/event-stream"
        )));
    }
    Ok((response.into_body(), endpoint.url))
}

/// The event stream format's parser: bytes in, events out.
struct Parser {
    line: Vec<u8>,
    /// The last byte seen was a CR (a following LF belongs to it).
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    /// Events complete, with when their last byte arrived.
    ready: std::collections::VecDeque<(Event, Instant)>,
    /// Most bytes of one line or of one event's data.
    limit: usize,
}

impl Parser {
    fn new(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            retry: None,
            ready: Default::default(),
            limit,
        }
    }

    fn next_event(&mut self) -> Option<(Event, Instant)> {
        self.ready.pop_front()
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), RealtimeError> {
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.take_line(&line);
                }
                _ => self.line.push(byte),
            }
            if self.line.len() > self.limit || self.data.len() > self.limit {
                return Err(RealtimeError::Protocol(format!("an event larger than {} bytes", self.limit)));
            }
        }
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        data.pop();
        let event = if event.is_empty() { "message".to_owned() } else { event };
        self.ready.push_back((Event { event, data, id: self.id.clone(), retry: self.retry }, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, Parser};

    fn parse(chunks: &[&str]) -> Vec<Event> {
        let mut parser = Parser::new(1 << 20);
        for chunk in chunks {
            parser.feed(chunk.as_bytes()).unwrap();
        }
        std::iter::from_fn(|| parser.next_event().map(|(event, _)| event)).collect()
    }

    #[test]
    fn events_as_the_format_defines_them() {
        let events = parse(&[": hello\n\nevent: tick\nid: 7\ndata: a\ndata:b\n\n", "data: plain\r\n\r\n"]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], Event { event: "tick".into(), data: "a\nb".into(), id: Some("7".into()), retry: None });
        assert_eq!((events[1].event.as_str(), events[1].data.as_str()), ("message", "plain"));
        // The ID carries over; the type does not.
        assert_eq!(events[1].id.as_deref(), Some("7"));
    }

    #[test]
    fn line_ends_split_across_chunks_and_bare_crs() {
        let events = parse(&["data: one\r", "\n\r", "\ndata: two\r\r", "retry: 50\ndata\n\n"]);
        let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["one", "two", ""]);
        assert_eq!(events[2].retry, Some(50));
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_huge_lines_are_refused() {
        assert!(parse(&["event: x\n\n"]).is_empty());
        let mut parser = Parser::new(8);
        assert!(parser.feed(b"data: 0123456789\n").is_err());
    }
}
