//! The per-user HTTP client of Swarmer.
//!
//! Each simulated user owns one [`Session`], like a browser: its own
//! keep-alive connection per origin and its own cookie jar. The session
//! speaks HTTP/1.1 and HTTP/2 (ALPN over TLS, or prior-knowledge h2c), follows
//! redirects up to a limit, decodes gzip and deflate, applies connect and
//! total timeouts, sends basic auth from the URL, and times every request
//! from sending to the last body byte (plus time to first byte).
//!
//! A misbehaving target cannot take the load generator down with it: a
//! response body is limited ([`ClientConfig::max_body_bytes`], or
//! [`Request::max_body`]) as received and again as decoded, response heads,
//! 1xx responses and chunk framing are bounded, and an invalid
//! `Content-Length` is an error. A request is sent again on a new
//! connection when a kept-alive one turns out closed only if it never left
//! or its method is idempotent: a POST is never sent twice silently.
//!
//! Main types:
//! - [`ClientConfig`]: settings shared by every session of a test (TLS roots,
//!   client certificate, timeouts, protocol choice, body limit). `Send +
//!   Sync`, built once.
//! - [`Session`]: one user's client. Not `Send`: it lives on its shard.
//! - [`ConnectionPool`]: a cap on connections, shared by the sessions
//!   given it (a user class's pool, or one user's concurrent requests).
//! - [`Request`] / [`Response`]: what a task sends and gets back.
//! - [`HttpError`]: why a request produced no response (connect, TLS,
//!   timeout, protocol, body too large); the engine records these as failed
//!   samples.
//!
//! What it does not do: statistics. The engine wraps a session and records
//! each [`Response`]'s timing into the shard's recorder.

mod config;
mod connection;
mod decode;
mod error;
mod h1;
mod head_id;
mod pool;
mod request;
mod response;
mod session;
mod tls;

pub use config::{ClientConfig, DEFAULT_MAX_BODY_BYTES, HttpVersionPreference, TlsOptions};
pub use connection::open_stream;
pub use error::HttpError;
pub use h1::Stream;
pub use head_id::number_heads_on_this_thread;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use pool::ConnectionPool;
pub use request::{Body, Request};
pub use response::Response;
pub use session::Session;
