//! Server reflection: ask a server which services it offers and for the
//! files describing them, so a plan can call methods without a `.proto`.
//!
//! Uses `grpc.reflection.v1` and, when a server only has it,
//! `grpc.reflection.v1alpha` (the same messages at another path). Each
//! question is its own short stream: list the services, then the file
//! defining each, then any file those import that did not come with them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use prost::Message;
use prost_reflect::prost_types::FileDescriptorProto;
use tonic::Code;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::{GrpcChannel, ProtoError, Protos};

const V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// Most files, and bytes of files, one server may describe (bounds against
/// a hostile server).
const MOST_FILES: usize = 10_000;
const MOST_BYTES: usize = 64 << 20;

/// Ask the server behind `channel` for its services and add the files
/// describing them to `protos`; the services it offers (reflection's own
/// left out), within `timeout` in all.
pub async fn reflect(channel: &GrpcChannel, protos: &mut Protos, timeout: Duration) -> Result<Vec<String>, ProtoError> {
    let asked = tokio::time::timeout(timeout, files_of(channel)).await;
    let (services, files) = asked.map_err(|_| ProtoError(format!("reflection: no answer within {timeout:?}")))??;
    protos.add_files(files).map_err(|e| ProtoError(format!("reflection: the server's files: {}", e.0)))?;
    Ok(services)
}

async fn files_of(channel: &GrpcChannel) -> Result<(Vec<String>, Vec<FileDescriptorProto>), ProtoError> {
    let mut path = V1;
    let listed = match ask(channel, path, MessageRequest::ListServices(String::new())).await {
        Err(status) if status.code() == Code::Unimplemented => {
            path = V1ALPHA;
            ask(channel, path, MessageRequest::ListServices(String::new())).await
        }
        other => other,
    };
    let services: Vec<String> = match listed.map_err(failed)? {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => return Err(unexpected(&other)),
    };
    let services: Vec<String> = services.into_iter().filter(|s| !s.starts_with("grpc.reflection.")).collect();
    let mut files: HashMap<String, FileDescriptorProto> = HashMap::new();
    let mut total = 0usize;
    for service in &services {
        let answer = ask(channel, path, MessageRequest::FileContainingSymbol(service.clone())).await;
        take_files(answer.map_err(failed)?, &mut files, &mut total)?;
    }
    // Imports that did not come along, asked for by name.
    loop {
        let missing: BTreeSet<String> =
            files.values().flat_map(|f| f.dependency.iter()).filter(|d| !files.contains_key(*d)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        for name in missing {
            let answer = ask(channel, path, MessageRequest::FileByFilename(name.clone())).await;
            let before = files.len();
            take_files(answer.map_err(failed)?, &mut files, &mut total)?;
            if !files.contains_key(&name) && files.len() == before {
                return Err(ProtoError(format!("reflection: the server did not describe {name}")));
            }
        }
    }
    Ok((services, files.into_values().collect()))
}

/// One question on a stream of its own; the one answer.
async fn ask(
    channel: &GrpcChannel,
    path: &'static str,
    question: MessageRequest,
) -> Result<MessageResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.channel());
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(question) };
    let codec = tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
    let stream = futures_util::stream::iter([request]);
    let path = http::uri::PathAndQuery::from_static(path);
    let mut answers = grpc.streaming(tonic::Request::new(stream), path, codec).await?.into_inner();
    let answer = answers.message().await?.ok_or_else(|| tonic::Status::internal("no answer"))?;
    match answer.message_response {
        Some(MessageResponse::ErrorResponse(error)) => {
            Err(tonic::Status::new(Code::from_i32(error.error_code), error.error_message))
        }
        Some(response) => Ok(response),
        None => Err(tonic::Status::internal("an empty answer")),
    }
}

fn take_files(
    answer: MessageResponse,
    files: &mut HashMap<String, FileDescriptorProto>,
    total: &mut usize,
) -> Result<(), ProtoError> {
    let MessageResponse::FileDescriptorResponse(described) = answer else {
        return Err(unexpected(&answer));
    };
    for bytes in described.file_descriptor_proto {
        *total += bytes.len();
        if *total > MOST_BYTES {
            return Err(ProtoError(format!(
                "reflection: the server described more than {} MiB of files",
                MOST_BYTES >> 20
            )));
        }
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| ProtoError(format!("reflection: a file the server sent does not decode: {e}")))?;
        files.insert(file.name().to_owned(), file);
        if files.len() > MOST_FILES {
            return Err(ProtoError(format!("reflection: the server described more than {MOST_FILES} files")));
        }
    }
    Ok(())
}

fn failed(status: tonic::Status) -> ProtoError {
    let code = crate::code_name(status.code());
    match status.code() {
        Code::Unimplemented => ProtoError("reflection: the server does not offer reflection (UNIMPLEMENTED)".into()),
        _ if status.message().is_empty() => ProtoError(format!("reflection: {code}")),
        _ => ProtoError(format!("reflection: {code}: {}", status.message())),
    }
}

fn unexpected(answer: &MessageResponse) -> ProtoError {
    let kind = match answer {
        MessageResponse::FileDescriptorResponse(_) => "files",
        MessageResponse::AllExtensionNumbersResponse(_) => "extension numbers",
        MessageResponse::ListServicesResponse(_) => "a list of services",
        MessageResponse::ErrorResponse(_) => "an error",
    };
    ProtoError(format!("reflection: the server answered with {kind}, not what was asked"))
}
