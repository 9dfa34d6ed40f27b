//! The HTTP endpoints, one module per group.

pub mod control;
pub mod downloads;
pub mod info;
pub mod metrics;
pub mod stats;
pub mod stream;
