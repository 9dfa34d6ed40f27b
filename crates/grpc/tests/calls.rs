//! Calls to the demo prediction server, with the example's `.proto` file.

use std::path::PathBuf;
use std::time::Duration;

use swarmer_grpc::{CallOptions, GrpcChannel, Protos};
use swarmer_target::PredictServer;
use swarmer_target::predict::category_of;
use tonic::Code;

fn protos() -> Protos {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/predict/categorization.proto");
    let mut protos = Protos::default();
    protos.load(&file, &[]).unwrap();
    protos
}

#[tokio::test]
async fn a_unary_call_returns_the_reply_and_a_failure_its_status_from_the_trailers() {
    let server = PredictServer::spawn("127.0.0.1:0", 1).unwrap();
    let protos = protos();
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&server.url()).unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "hello" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert!(outcome.ok(), "{outcome:?}");
    let reply = outcome.reply.as_ref().unwrap();
    let json = serde_json::to_value(reply).unwrap();
    assert_eq!(json["category"], category_of("hello"));
    assert_eq!(json["text"], "hello");
    assert!(outcome.reply_size > 5);

    let request = Protos::request(&method, &serde_json::json!({ "text": "fail:NOT_FOUND:no such text" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert_eq!((outcome.code, outcome.message.as_str()), (Code::NotFound, "no such text"));
    assert_eq!(outcome.failure().as_deref(), Some("NOT_FOUND: no such text"));
    assert_eq!(server.served(), 2);
}

#[tokio::test]
async fn a_deadline_and_metadata_travel_and_a_slow_reply_is_deadline_exceeded() {
    let server = PredictServer::spawn("127.0.0.1:0", 1).unwrap();
    let protos = protos();
    let method = protos.method("categorization.TextCategorization.GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&server.url()).unwrap();
    let options =
        CallOptions { metadata: vec![("x-user".into(), "7".into())], timeout: Some(Duration::from_millis(200)) };
    let request = Protos::request(&method, &serde_json::json!({ "text": "sleep:10" })).unwrap();
    let outcome = channel.unary(&method, request, &options).await;
    assert!(outcome.ok(), "{outcome:?}");
    assert!(outcome.metadata.contains(&("x-user".to_owned(), "7".to_owned())), "{:?}", outcome.metadata);
    let request = Protos::request(&method, &serde_json::json!({ "text": "sleep:2000" })).unwrap();
    let outcome = channel.unary(&method, request, &options).await;
    assert_eq!(outcome.code, Code::DeadlineExceeded, "{outcome:?}");
    assert!(outcome.elapsed < Duration::from_secs(1), "{:?}", outcome.elapsed);
}

#[test]
fn bad_names_and_messages_say_what_is_known() {
    let protos = protos();
    let e = protos.method("categorization.TextCategorization/Predict").unwrap_err().0;
    assert!(e.contains("has no method Predict (methods: GetPrediction)"), "{e}");
    let e = protos.method("shop.Cart/Add").unwrap_err().0;
    assert!(e.contains("no service shop.Cart") && e.contains("categorization.TextCategorization"), "{e}");
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let e = Protos::request(&method, &serde_json::json!({ "txet": "x" })).unwrap_err().0;
    assert!(e.contains("categorization.TextCategorizationInput") && e.contains("txet"), "{e}");
    let mut empty = Protos::default();
    let e = empty.load(std::path::Path::new("/nonexistent/x.proto"), &[]).unwrap_err().0;
    assert!(e.contains("x.proto"), "{e}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let protos = protos();
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&url).unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "x" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert_eq!(outcome.code, Code::Unavailable, "{outcome:?}");
}
