//! Server reflection for the prediction API: the description of
//! `categorization.proto`, built here (the target has no `.proto`
//! compiler), served by tonic's reflection service at both its versions.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
    ServiceDescriptorProto,
};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tower_service::Service;

/// A request's answer, as the prediction service's routes give it.
pub type Answer = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

/// Reflection requests (`/grpc.reflection.v1.*` and
/// `/grpc.reflection.v1alpha.*`), answered about the prediction API.
pub type Route = Arc<dyn Fn(http::Request<tonic::body::Body>) -> Answer + Send + Sync>;

/// The reflection route.
pub fn route() -> Route {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(FileDescriptorSet { file: vec![categorization()] })
    };
    // The description is built here and is complete: these cannot fail.
    let v1 = builder().build_v1().expect("the prediction API's description");
    let v1alpha = builder().build_v1alpha().expect("the prediction API's description");
    Arc::new(move |request: http::Request<tonic::body::Body>| -> Answer {
        if request.uri().path().starts_with("/grpc.reflection.v1alpha.") {
            let mut service = v1alpha.clone();
            Box::pin(async move { service.call(request).await })
        } else {
            let mut service = v1.clone();
            Box::pin(async move { service.call(request).await })
        }
    })
}

fn field(name: &str, number: i32, kind: Type) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional.into()),
        r#type: Some(kind.into()),
        json_name: Some(name.split('_').enumerate().map(|(i, w)| camel(i, w)).collect()),
        ..Default::default()
    }
}

fn camel(i: usize, word: &str) -> String {
    let mut chars = word.chars();
    match (i, chars.next()) {
        (0, _) | (_, None) => word.to_owned(),
        (_, Some(first)) => first.to_uppercase().chain(chars).collect(),
    }
}

/// `examples/lua/predict/categorization.proto`, described.
fn categorization() -> FileDescriptorProto {
    let message = |name: &str, fields| DescriptorProto { name: Some(name.into()), field: fields, ..Default::default() };
    FileDescriptorProto {
        name: Some("categorization.proto".into()),
        package: Some("categorization".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            message("TextCategorizationInput", vec![field("text", 2, Type::String)]),
            message(
                "TextCategorizationOutput",
                vec![
                    field("text", 1, Type::String),
                    field("prediction_id", 2, Type::String),
                    field("category", 3, Type::Int32),
                ],
            ),
        ],
        service: vec![ServiceDescriptorProto {
            name: Some("TextCategorization".into()),
            method: vec![MethodDescriptorProto {
                name: Some("GetPrediction".into()),
                input_type: Some(".categorization.TextCategorizationInput".into()),
                output_type: Some(".categorization.TextCategorizationOutput".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
