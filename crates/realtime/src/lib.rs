//! Connections that stay open, for load tests: WebSocket, Server-Sent
//! Events, and raw TCP for a plan's own protocol.
//!
//! A user opens a [`WebSocket`] (`ws://`, or `wss://` with the test's TLS
//! trust) or subscribes to an [`EventStream`] (`text/event-stream` over
//! HTTP/1.1), over the HTTP client's own connect (name resolution, connect
//! timeout, TLS). Opening is recorded in the user's statistics (type `WS`
//! or `SSE`, named by the URL as given or the plan's name); so is each
//! request/reply pair a plan marks ([`WebSocket::request`], type `WSR`) and
//! each event received (type `SSE`, named `event <type>`). Messages are
//! sent and received with a timeout; a receiver and a sender may work from
//! different tasks at once.
//!
//! For a protocol of the plan's own, a [`TcpConnection`] carries bytes
//! over TCP or TLS and records nothing: the plan times its exchanges.
//!
//! The Lua front end (`self.client:websocket`, `self.client:sse`) and Rust
//! plans use these types alike.

mod endpoint;
mod error;
mod opening;

pub mod tcp;
mod websocket;

pub use endpoint::Endpoint;
pub use error::RealtimeError;
pub mod sse;
pub use sse::{Event, EventStream, SseOptions};
pub use tcp::{TcpConnection, TcpOptions};
pub use websocket::{Received, WebSocket, WsMessage, WsOptions};
