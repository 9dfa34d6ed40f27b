//! What the realtime tests share: one user of a Rust plan, run against the
//! demo target until the user stops the test.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use swarmer_engine::{LocalRunner, Plan, RunnerHandle, RunnerOptions, TestSettings};
use swarmer_target::DemoTarget;

/// Run one user of `plan` against `target` until it stops the test
/// (failing after 30 s, showing what the user had `seen`); statistics flushed.
pub async fn run_one_user(plan: Plan, target: &DemoTarget, seen: &Mutex<Vec<String>>) -> RunnerHandle {
    let options = RunnerOptions { shards: 1, host: Some(target.url()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    handle.start_test(TestSettings { users: 1, spawn_rate: 10.0, ..Default::default() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.state() != swarmer_engine::RunnerState::Stopped {
        assert!(Instant::now() < deadline, "the user never stopped the test; saw {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.flush().await;
    handle
}
