//! Calls to the demo prediction server, with the example's `.proto` file.

use std::path::PathBuf;
use std::time::Duration;

use swarmer_grpc::{CallOptions, CompressionEncoding, GrpcChannel, Protos};
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
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let protos = protos();
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&server.url(), None).unwrap();
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
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let protos = protos();
    let method = protos.method("categorization.TextCategorization.GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&server.url(), None).unwrap();
    let options = CallOptions {
        metadata: vec![("x-user".into(), "7".into())],
        timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let request = Protos::request(&method, &serde_json::json!({ "text": "sleep:10" })).unwrap();
    let outcome = channel.unary(&method, request, &options).await;
    assert!(outcome.ok(), "{outcome:?}");
    assert!(outcome.metadata.contains(&("x-user".to_owned(), "7".to_owned())), "{:?}", outcome.metadata);
    // The deadline travels as grpc-timeout (200 ms, in tonic's unit).
    let sent = outcome.metadata.iter().find(|(k, _)| k == "x-grpc-timeout").map(|(_, v)| v.as_str());
    assert!(sent.is_some_and(|v| v.ends_with('m') || v.ends_with('u') || v.ends_with('n')), "{sent:?}");
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
    let channel = GrpcChannel::lazy(&url, None).unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "x" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert_eq!(outcome.code, Code::Unavailable, "{outcome:?}");
}

/// The server refuses a `:scheme` that is not its connection's, as strict
/// proxies do: a call over TLS must say `https`.
#[tokio::test]
async fn over_tls_a_call_says_https_trusts_the_tests_ca_and_an_untrusted_server_is_refused() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tls");
    let files = swarmer_target::TlsFiles {
        cert: fixtures.join("server.pem"),
        key: fixtures.join("server.key"),
        client_ca: None,
    };
    let server = PredictServer::spawn("127.0.0.1:0", 1, Some(&files)).unwrap();
    assert!(server.url().starts_with("https://"));
    let protos = protos();
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let options = swarmer_http::TlsOptions { ca_certs: vec![fixtures.join("ca.pem")], ..Default::default() };
    let trusted = swarmer_http::ClientConfig::new(&options, swarmer_http::HttpVersionPreference::Auto).unwrap();
    let channel = GrpcChannel::lazy(&server.url(), Some(trusted.tls_with_alpn(&[b"h2"]))).unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "tls" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(serde_json::to_value(outcome.reply.unwrap()).unwrap()["text"], "tls");

    // The Mozilla roots alone do not trust the test CA: no call reaches it.
    let untrusted = GrpcChannel::lazy(&server.url(), None).unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "x" })).unwrap();
    let outcome = untrusted.unary(&method, request, &CallOptions::default()).await;
    assert_eq!(outcome.code, Code::Unavailable, "{outcome:?}");
    assert_eq!(server.served(), 1);
}

#[test]
fn an_address_without_http_or_https_is_refused() {
    let e = GrpcChannel::lazy("grpc://127.0.0.1:1", None).err().unwrap().0;
    assert!(e.contains("expected http://host:port (h2c) or https://host:port (TLS)"), "{e}");
}

#[tokio::test]
async fn compressed_calls_and_binary_metadata_travel_both_ways() {
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let protos = protos();
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let channel = GrpcChannel::lazy(&server.url(), None).unwrap();
    let raw = vec![0u8, 255, 10, 13, b'x'];
    for (encoding, name) in [(CompressionEncoding::Gzip, "gzip"), (CompressionEncoding::Deflate, "deflate")] {
        let options = CallOptions {
            binary_metadata: vec![("x-trace-bin".into(), raw.clone())],
            compression: Some(encoding),
            ..Default::default()
        };
        let text = "a long text that compresses well ".repeat(20);
        let request = Protos::request(&method, &serde_json::json!({ "text": text })).unwrap();
        let outcome = channel.unary(&method, request, &options).await;
        assert!(outcome.ok(), "{outcome:?}");
        let reply = serde_json::to_value(outcome.reply.as_ref().unwrap()).unwrap();
        assert_eq!(reply["text"], text.as_str());
        // The server saw the request compressed, and the bytes came back intact.
        let seen = outcome.metadata.iter().find(|(k, _)| k == "x-grpc-encoding").map(|(_, v)| v.as_str());
        assert_eq!(seen, Some(name), "{:?}", outcome.metadata);
        assert_eq!(outcome.binary_metadata, vec![("x-trace-bin".to_owned(), raw.clone())]);
    }
    // Uncompressed by default.
    let request = Protos::request(&method, &serde_json::json!({ "text": "plain" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert!(outcome.metadata.iter().all(|(k, _)| k != "x-grpc-encoding"), "{:?}", outcome.metadata);
    // A text value under a binary key is refused before sending.
    let options = CallOptions { metadata: vec![("x-trace-bin".into(), "text".into())], ..Default::default() };
    let request = Protos::request(&method, &serde_json::json!({ "text": "x" })).unwrap();
    let outcome = channel.unary(&method, request, &options).await;
    assert_eq!(outcome.code, Code::InvalidArgument, "{outcome:?}");
}

#[tokio::test]
async fn reflection_describes_a_servers_services_without_a_proto_file() {
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let channel = GrpcChannel::lazy(&server.url(), None).unwrap();
    let mut protos = Protos::default();
    let services = swarmer_grpc::reflect(&channel, &mut protos, Duration::from_secs(5)).await.unwrap();
    assert_eq!(services, ["categorization.TextCategorization"]);
    let method = protos.method("categorization.TextCategorization/GetPrediction").unwrap();
    let request = Protos::request(&method, &serde_json::json!({ "text": "reflected" })).unwrap();
    let outcome = channel.unary(&method, request, &CallOptions::default()).await;
    assert!(outcome.ok(), "{outcome:?}");
    let reply = serde_json::to_value(outcome.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply["category"], category_of("reflected"));
    // Asking again (another VM of the plan, say) is harmless.
    swarmer_grpc::reflect(&channel, &mut protos, Duration::from_secs(5)).await.unwrap();

    // A server without reflection says so; one that is not there is unavailable.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = swarmer_grpc::reflect(&GrpcChannel::lazy(&gone, None).unwrap(), &mut protos, Duration::from_secs(5))
        .await
        .unwrap_err()
        .0;
    assert!(e.starts_with("reflection: UNAVAILABLE"), "{e}");
}

fn streams() -> Protos {
    let mut protos = protos();
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/grpc/streams.proto");
    protos.load(&file, &[]).unwrap();
    protos
}

#[tokio::test]
async fn an_interactive_stream_sends_and_receives_as_it_goes() {
    use swarmer_grpc::StreamReceived;
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let protos = streams();
    let method = protos.method("streams.Streams/Echo").unwrap();
    let channel = GrpcChannel::lazy(&server.url(), None).unwrap();
    let word = |text: &str| Protos::request(&method, &serde_json::json!({ "text": text })).unwrap();
    let second = Duration::from_secs(5);
    let stream = channel.open_stream(&method, &CallOptions::default()).unwrap();
    // Nothing sent, nothing back yet.
    assert!(matches!(stream.receive(Duration::from_millis(50)).await, StreamReceived::TimedOut));
    for text in ["one", "two"] {
        stream.send(word(text), second).await.unwrap();
        let StreamReceived::Message(reply) = stream.receive(second).await else { panic!("no reply to {text}") };
        assert_eq!(serde_json::to_value(&reply).unwrap()["text"], text);
    }
    stream.send(word("three"), second).await.unwrap();
    let outcome = stream.finish(second).await;
    assert!(outcome.ok(), "{outcome:?}");
    // The reply to "three" was read by finish, and counted.
    assert_eq!((outcome.sent, stream.received()), (3, 3));
    assert!(stream.send(word("late"), second).await.is_err());

    // A failure the server ends the stream with is the call's status.
    let stream = channel.open_stream(&method, &CallOptions::default()).unwrap();
    stream.send(word("fine"), second).await.unwrap();
    stream.send(word("fail:NOT_FOUND:gone"), second).await.unwrap();
    assert!(matches!(stream.receive(second).await, StreamReceived::Message(_)));
    assert!(matches!(stream.receive(second).await, StreamReceived::Ended));
    // The call's time ends with its status, not when the plan finishes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let outcome = stream.finish(second).await;
    assert_eq!(outcome.failure().as_deref(), Some("NOT_FOUND: gone"));
    assert!(outcome.elapsed < Duration::from_millis(350), "{:?}", outcome.elapsed);

    // The call's deadline ends a stream the server leaves open.
    let options = CallOptions { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let stream = channel.open_stream(&method, &options).unwrap();
    stream.send(word("x"), second).await.unwrap();
    assert!(matches!(stream.receive(second).await, StreamReceived::Message(_)));
    let started = std::time::Instant::now();
    assert!(matches!(stream.receive(second).await, StreamReceived::Ended));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let outcome = stream.finish(second).await;
    assert!(
        matches!(outcome.code, Code::DeadlineExceeded | Code::Cancelled),
        "{:?}: {}",
        outcome.code,
        outcome.message
    );
}
