//! The built-in demo target: a small web site to load-test without a server
//! of your own, and the server every Swarmer test runs against.
//!
//! It serves the example site of Locust's quick-start (`/`, `POST /login`,
//! `/profile`) plus endpoints that show what load tests are for: slow
//! responses, errors at a chosen rate, redirects, gzip, cookies, echo.
//! See [`routes`] for the list. It speaks HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge on plain TCP, ALPN over TLS) and can require client certificates.
//!
//! Main types: [`TargetOptions`] (delay, error rate, TLS) and
//! [`DemoTarget`], a running server with its bound address.
//!
//! What it is not: a production web server. It binds where it is told;
//! tests bind it to `127.0.0.1:0`.

pub mod kv;
pub mod live;
pub mod predict;
mod predict_reflection;
pub mod routes;
mod server;
mod tls;

pub use kv::KvServer;
pub use predict::PredictServer;
pub use server::{ConnectionCounts, DemoTarget, Stall, TargetError, TargetOptions, TlsFiles};
