//! gRPC for load tests: calls to methods known only at run time.
//!
//! A plan names its `.proto` files (read by [`Protos`], a pure-Rust
//! compiler, no `protoc`, or asks the server by [`reflect`]), builds requests from plain values, and calls
//! methods over a [`GrpcChannel`] (one HTTP/2 connection, h2c or TLS,
//! opened on first use). Each call ends in a [`CallOutcome`]: the status,
//! the reply and the metadata, ready to be recorded as a request of type
//! `grpc`: [`GrpcUserClient`] records it in a user's statistics, for
//! the Lua front end and Rust plans alike.

mod call;
mod codec;
mod connector;
mod protos;
mod recorded;
mod reflection;
mod stream;

pub use call::{CallOptions, CallOutcome, GrpcChannel, code_name};
pub use codec::DynamicCodec;
pub use prost::Message;
pub use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
pub use protos::{ProtoError, Protos, message_json};
pub use recorded::GrpcUserClient;
pub use reflection::reflect;
pub use stream::{GrpcStream, StreamReceived};
pub use tonic::codec::CompressionEncoding;
