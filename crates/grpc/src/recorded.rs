//! A user's gRPC client for the engine's front ends: calls made over the
//! user's own channel and recorded in the user's statistics as requests of
//! type `grpc` (named by the method, or a name of the plan's), a status
//! other than OK being the failure. The Lua front end and Rust plans use
//! it alike.

use prost_reflect::{DynamicMessage, MethodDescriptor};
use swarmer_engine::Client;

use crate::GrpcStream;
use crate::call::{CallOptions, CallOutcome, GrpcChannel};
use crate::protos::ProtoError;

/// Calls to one server, recorded for one user.
#[derive(Clone)]
pub struct GrpcUserClient {
    channel: GrpcChannel,
    client: Client,
}

impl GrpcUserClient {
    /// A client of `host` (`http://host:port`, or `https://` with the
    /// test's TLS trust) recording in `client`'s user's name; nothing
    /// connects until the first call.
    pub fn new(client: &Client, host: &str) -> Result<Self, ProtoError> {
        let tls = client.http_config().tls_with_alpn(&[b"h2"]);
        Ok(Self { channel: GrpcChannel::lazy(host, Some(tls))?, client: client.clone() })
    }

    /// [`GrpcUserClient::new`] over an existing channel (one connection
    /// shared by several users, when a plan asks for that).
    pub fn with_channel(client: &Client, channel: GrpcChannel) -> Self {
        Self { channel, client: client.clone() }
    }

    /// Call a unary method and record the call under `name` (default:
    /// `package.Service/Method`).
    pub async fn unary(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        options: &CallOptions,
        name: Option<&str>,
    ) -> CallOutcome {
        self.call(method, vec![request], options, name).await
    }

    /// Call a method of any kind (see [`GrpcChannel::call`]) and record
    /// it once, from the first message sent to the stream's end, with the
    /// bytes of every reply.
    pub async fn call(
        &self,
        method: &MethodDescriptor,
        requests: Vec<DynamicMessage>,
        options: &CallOptions,
        name: Option<&str>,
    ) -> CallOutcome {
        // Without a deadline of its own, a call gets the test's request
        // timeout (60 s unless --request-timeout says otherwise), as HTTP does.
        let outcome = self.channel.call(method, requests, &self.defaulted(options)).await;
        self.record(method, &outcome, name);
        outcome
    }

    /// Start an interactive call (see [`GrpcStream`]); record its outcome
    /// with [`Self::record`] once it is finished.
    pub fn open_stream(&self, method: &MethodDescriptor, options: &CallOptions) -> Result<GrpcStream, tonic::Status> {
        self.channel.open_stream(method, &self.defaulted(options))
    }

    /// Record a call's outcome under `name` (default:
    /// `package.Service/Method`): type `grpc`, its reply bytes, a status
    /// other than OK as the failure.
    pub fn record(&self, method: &MethodDescriptor, outcome: &CallOutcome, name: Option<&str>) {
        let full;
        let name = match name {
            Some(name) => name,
            None => {
                full = format!("{}/{}", method.parent_service().full_name(), method.name());
                &full
            }
        };
        let failure = outcome.failure();
        self.client.record_request("grpc", name, outcome.elapsed, outcome.reply_size as u64, failure.as_deref());
    }

    /// The user's HTTP settings behind this client (timeouts).
    pub fn request_timeout(&self) -> Option<std::time::Duration> {
        self.client.http_config().timeout
    }

    /// `options` with the test's request timeout when they have no deadline.
    fn defaulted<'a>(&self, options: &'a CallOptions) -> std::borrow::Cow<'a, CallOptions> {
        match (options.timeout, self.client.http_config().timeout) {
            (None, Some(timeout)) => std::borrow::Cow::Owned(CallOptions { timeout: Some(timeout), ..options.clone() }),
            _ => std::borrow::Cow::Borrowed(options),
        }
    }
}
