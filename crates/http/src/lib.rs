//! The per-user HTTP client of Swarmer.
//!
//! Each simulated user owns one [`Session`], like a browser: its own
//! keep-alive connection per origin and its own cookie jar. The session
//! speaks HTTP/1.1 and HTTP/2 (ALPN over TLS, or prior-knowledge h2c), follows
//! redirects up to a limit, decodes gzip and deflate, applies connect and
//! total timeouts, sends basic auth from the URL, and times every request
//! from sending to the last body byte (plus time to first byte).
//!
//! Main types:
//! - [`ClientConfig`]: settings shared by every session of a test (TLS roots,
//!   client certificate, timeouts, protocol choice). `Send + Sync`, built once.
//! - [`Session`]: one user's client. Not `Send`: it lives on its shard.
//! - [`Request`] / [`Response`]: what a task sends and gets back.
//! - [`HttpError`]: why a request produced no response (connect, TLS,
//!   timeout, protocol); the engine records these as failed samples.
//!
//! What it does not do: statistics. The engine wraps a session and records
//! each [`Response`]'s timing into the shard's recorder.

mod config;
mod connection;
mod decode;
mod error;
mod h1;
mod head_id;
mod request;
mod response;
mod session;
mod tls;

pub use config::{ClientConfig, HttpVersionPreference, TlsOptions};
pub use error::HttpError;
pub use head_id::number_heads_on_this_thread;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use request::{Body, Request};
pub use response::Response;
pub use session::Session;
