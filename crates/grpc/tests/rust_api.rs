//! gRPC from a Rust plan: a user keeps a `GrpcUserClient` in its state and
//! its calls are `grpc` rows of the test's statistics.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use swarmer_engine::{
    LocalRunner, Plan, RunnerOptions, RunnerState, Task, TaskResult, TestSettings, User, UserClass, task,
};
use swarmer_grpc::{CallOptions, GrpcUserClient, MethodDescriptor, Protos};
use swarmer_target::PredictServer;

static SERVER: OnceLock<String> = OnceLock::new();
static METHOD: OnceLock<MethodDescriptor> = OnceLock::new();

async fn predict(user: &mut User) -> TaskResult {
    if user.state::<GrpcUserClient>().is_none() {
        let client = GrpcUserClient::new(&user.client, SERVER.get().unwrap()).unwrap();
        user.set_state(Box::new(client));
    }
    let grpc = user.state::<GrpcUserClient>().unwrap().clone();
    let method = METHOD.get().unwrap();
    let text = if user.id().is_multiple_of(2) { "abc" } else { "fail:UNAVAILABLE:down" };
    let request = Protos::request(method, &serde_json::json!({ "text": text })).unwrap();
    grpc.unary(method, request, &CallOptions::default(), None).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rust_plans_calls_are_grpc_rows_with_their_failures() {
    let server = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    SERVER.set(server.url()).unwrap();
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/predict/categorization.proto");
    let mut protos = Protos::default();
    protos.load(&file, &[]).unwrap();
    METHOD.set(protos.method("categorization.TextCategorization/GetPrediction").unwrap()).unwrap();

    let plan = Plan::new("grpc", || vec![UserClass::new("Grpc").task(Task::new("predict", task!(predict)))]);
    let options = RunnerOptions { shards: 1, host: Some("http://127.0.0.1:1".into()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let run_time = Duration::from_secs(1);
    let settings = TestSettings { users: 2, spawn_rate: 100.0, run_time: Some(run_time), ..Default::default() };
    handle.start_test(settings).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    // Begun (not Ready any more), then stopped by its run time.
    for done in [|s: RunnerState| s != RunnerState::Ready, |s: RunnerState| s == RunnerState::Stopped] {
        while !done(handle.state()) {
            assert!(Instant::now() < deadline, "the test never began or stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    handle.flush().await;
    let store = handle.stats().lock().unwrap();
    let row = store.stats.entry("grpc", "categorization.TextCategorization/GetPrediction").expect("a grpc row");
    // One user's calls all fail, the other's all succeed.
    assert!(row.num_requests > 20, "{} calls", row.num_requests);
    assert!(
        row.num_failures > 5 && row.num_failures < row.num_requests,
        "{} of {}",
        row.num_failures,
        row.num_requests
    );
    let failures: Vec<&str> = store.stats.failures().map(|f| f.error.as_str()).collect();
    assert_eq!(failures, ["UNAVAILABLE: down"]);
    assert!(server.served() >= row.num_requests);
}
