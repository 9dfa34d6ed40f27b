//! Arrival-rate load end to end: real shards, a real HTTP server on
//! 127.0.0.1 that can stall, and the statistics the run leaves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarmer_engine::{
    ArrivalRate, LocalRunner, Plan, RequestStats, RunnerHandle, RunnerOptions, RunnerState, Task, TaskResult,
    TestSettings, User, UserClass, constant, constant_pacing, task,
};
use swarmer_target::{DemoTarget, Stall, TargetOptions};

/// The demo target on 127.0.0.1; requests arriving inside `stall`
/// (seconds from now) are answered when it ends.
fn target(stall: Option<(f64, f64)>) -> DemoTarget {
    let stall =
        stall.map(|(from, to)| Stall::starting_in(Duration::from_secs_f64(from), Duration::from_secs_f64(to - from)));
    DemoTarget::spawn("127.0.0.1:0", TargetOptions { stall, ..Default::default() }, 2).unwrap()
}

async fn get_root(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

fn plan() -> Plan {
    Plan::new("arrival", || vec![UserClass::new("U").task(Task::new("root", task!(get_root)))])
}

/// The run's merged statistics and its arrival rate as described.
fn snapshot(handle: &RunnerHandle) -> (RequestStats, Option<String>) {
    let store = handle.stats().lock().unwrap();
    (store.stats.clone(), store.arrival.clone())
}

async fn run(handle: &RunnerHandle, rate: ArrivalRate, run_time: Duration) {
    let settings = TestSettings { arrival: Some(Box::new(rate)), run_time: Some(run_time), ..Default::default() };
    handle.start_test(settings).unwrap();
    wait_stopped(handle, run_time + Duration::from_secs(10)).await;
}

/// Two busy users of `plan` on one shard against `server` for `run_time`
/// (the closed model); the statistics they leave.
async fn run_closed(plan: Plan, server: &DemoTarget, run_time: Duration) -> RequestStats {
    let options = RunnerOptions { shards: 1, host: Some(server.url()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let settings = TestSettings { users: 2, spawn_rate: 100.0, run_time: Some(run_time), ..Default::default() };
    handle.start_test(settings).unwrap();
    wait_stopped(&handle, run_time + Duration::from_secs(10)).await;
    let (stats, _) = snapshot(&handle);
    handle.quit().await;
    stats
}

/// Wait (at most `within`) until the test has stopped, then for its last statistics.
async fn wait_stopped(handle: &RunnerHandle, within: Duration) {
    let deadline = Instant::now() + within;
    // A second test starts from the first one's Stopped: it must begin first.
    while matches!(handle.state(), RunnerState::Ready | RunnerState::Stopped) {
        assert!(Instant::now() < deadline, "the test never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while handle.state() != RunnerState::Stopped {
        assert!(Instant::now() < deadline, "the test never stopped: {:?}", handle.state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn iterations_start_at_the_rate_asked_for_over_every_shard() {
    let server = target(None);
    let options = RunnerOptions {
        shards: 2,
        host: Some(server.url()),
        stop_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let handle = LocalRunner::start(plan(), options).await.unwrap();
    run(&handle, ArrivalRate::constant(200.0, 4, 20), Duration::from_secs(3)).await;
    let (stats, arrival) = snapshot(&handle);
    let iterations = stats.iterations();
    // 3 s at 200/s: 600 due (the first at 0 s), give or take the last tick.
    assert!((590..=602).contains(&iterations.due()), "due {}", iterations.due());
    assert_eq!(iterations.dropped, 0, "a fast target never runs the pool dry");
    assert_eq!(stats.total().num_requests, iterations.started);
    assert_eq!(server.requests_served(), iterations.started);
    // Every request had a schedule: the corrected table has it too.
    let corrected = stats.corrected_entry("GET", "/").expect("corrected row");
    assert_eq!(corrected.num_requests, iterations.started);
    assert!(arrival.unwrap().starts_with("200/s"));

    // A second test in the same process counts only its own iterations,
    // at its own rate, from its own pool.
    run(&handle, ArrivalRate::constant(100.0, 2, 4), Duration::from_secs(2)).await;
    let (stats, arrival) = snapshot(&handle);
    assert!((195..=202).contains(&stats.iterations().due()), "due {}", stats.iterations().due());
    assert_eq!(stats.total().num_requests, stats.iterations().started);
    assert!(arrival.unwrap().starts_with("100/s (users: 2 pre-allocated, at most 4)"));
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stall_shows_in_the_corrected_times_and_the_dropped_iterations() {
    // 10 s at 200/s; the server holds every request for 2 s from 4 s on.
    let server = target(Some((4.0, 6.0)));
    let options = RunnerOptions { shards: 1, host: Some(server.url()), ..Default::default() };
    let handle = LocalRunner::start(plan(), options).await.unwrap();
    run(&handle, ArrivalRate::constant(200.0, 5, 10), Duration::from_secs(10)).await;
    let (stats, _) = snapshot(&handle);
    let iterations = stats.iterations();
    assert!(iterations.dropped >= 300, "the stall ran the pool dry: {} dropped", iterations.dropped);
    assert!((1990..=2002).contains(&iterations.due()), "due {}", iterations.due());
    let measured_p99 = stats.total().percentile_ms(0.99);
    let corrected_p99 = stats.corrected_total().percentile_ms(0.99);
    assert!(measured_p99 < 1000.0, "measured p99 {measured_p99} ms hides the stall");
    assert!(corrected_p99 >= 1000.0, "corrected p99 {corrected_p99} ms shows it");
    assert!(stats.total().max_response_time_ms() >= 1500.0, "a few requests did wait out the stall");
    // The charts' corrected line shows it too, from the first point on.
    let points = handle.stats().lock().unwrap().history.points().to_vec();
    assert!(points.len() >= 8, "a point a second: {}", points.len());
    // Once the first statistics arrived, every point has the line.
    let first = points.iter().position(|p| p.corrected_percentile_99.is_some()).expect("a corrected line");
    assert!(first <= 3, "the line starts late: {points:?}");
    assert!(points[first..].iter().all(|p| p.corrected_percentile_99.is_some()), "{points:?}");
    let peak = points.iter().filter_map(|p| p.corrected_percentile_99).fold(0.0, f64::max);
    assert!(peak >= 1000.0, "the corrected p99 line peaks at {peak} ms");
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_pool_grows_to_its_maximum_and_no_further() {
    // Each request takes 2 s (the server stalls all the time): 10 users
    // can serve 5 iterations a second of the 50 due.
    let server = target(Some((0.0, 2.0)));
    let options = RunnerOptions { shards: 2, host: Some(server.url()), ..Default::default() };
    let handle = LocalRunner::start(plan(), options).await.unwrap();
    let settings = TestSettings {
        arrival: Some(Box::new(ArrivalRate::constant(50.0, 1, 10))),
        run_time: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    handle.start_test(settings).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, 10, "grown to the maximum");
    let bad = TestSettings { arrival: Some(Box::new(ArrivalRate::constant(5.0, 0, 0))), ..Default::default() };
    let error = handle.start_test(bad).unwrap_err().to_string();
    assert!(error.contains("at least one user"), "{error}");
    handle.quit().await;
}

/// Users started by [`a_smaller_pool_keeps_its_users_up_to_the_new_maximum`].
static POOL_STARTS: AtomicUsize = AtomicUsize::new(0);

async fn count_start(_: &mut User) -> TaskResult {
    POOL_STARTS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// The users' on_start count once it reached `expected` (at most 5 s)
/// and stayed a moment: a user counts as running once started, and its
/// on_start may still be on its way on a busy machine.
async fn starts_settled(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while POOL_STARTS.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    POOL_STARTS.load(Ordering::SeqCst)
}

/// Waits (at most 10 s) until the runner has `users` users.
async fn wait_users(handle: &RunnerHandle, users: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().lock().unwrap().user_count != users {
        assert!(Instant::now() < deadline, "never {users} users: {}", handle.stats().lock().unwrap().user_count);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_smaller_pool_keeps_its_users_up_to_the_new_maximum() {
    // Every request is held for the whole test: the pool grows to its
    // maximum at once.
    let server = target(Some((0.0, 30.0)));
    let counted = Plan::new("counted", || {
        vec![UserClass::new("U").on_start(task!(count_start)).task(Task::new("root", task!(get_root)))]
    });
    let options = RunnerOptions { shards: 2, host: Some(server.url()), ..Default::default() };
    let handle = LocalRunner::start(counted, options).await.unwrap();
    let rate = |max_users| TestSettings {
        arrival: Some(Box::new(ArrivalRate::constant(50.0, 1, max_users))),
        ..Default::default()
    };
    handle.start_test(rate(10)).unwrap();
    wait_users(&handle, 10).await;
    assert_eq!(starts_settled(10).await, 10);
    // A smaller maximum: the users over it leave, the others go on (none
    // starts afresh), and the pool stays at its new maximum.
    handle.start_test(rate(6)).unwrap();
    wait_users(&handle, 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, 6);
    assert_eq!(POOL_STARTS.load(Ordering::SeqCst), 10, "no user was started afresh");
    // A maximum below the shards: one shard takes part, with one user.
    handle.start_test(rate(1)).unwrap();
    wait_users(&handle, 1).await;
    assert_eq!(POOL_STARTS.load(Ordering::SeqCst), 10, "no user was started afresh");
    // Back to a larger maximum: the pool grows again from the user it kept.
    handle.start_test(rate(4)).unwrap();
    wait_users(&handle, 4).await;
    assert_eq!(starts_settled(13).await, 13, "three users started afresh, no more");
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn constant_pacing_counts_from_the_pacing_schedule_and_other_waits_do_not() {
    // Two users paced at 0.1 s; the target holds requests from 1 s to 2 s.
    // The task after the stalled one was due 0.1 s after that one began:
    // about 0.9 s late, which its corrected time carries.
    let server = target(Some((1.0, 2.0)));
    let paced = Plan::new("paced", || {
        vec![UserClass::new("U").wait_time(constant_pacing(0.1)).task(Task::new("root", task!(get_root)))]
    });
    let stats = run_closed(paced, &server, Duration::from_secs(3)).await;
    let (measured, corrected) = (stats.total(), stats.corrected_total());
    assert_eq!(corrected.num_requests, measured.num_requests, "every paced request has a schedule");
    let late_us = corrected.total_response_time_us - measured.total_response_time_us;
    assert!(late_us >= 2 * 800_000, "each user's task after the stall began ~0.9 s late: {late_us} us in all");
    assert!(stats.iterations().is_empty(), "a closed test has no iterations");

    // A wait that is not a pacing has no schedule: nothing is corrected.
    let server = target(None);
    let waiting = Plan::new("waiting", || {
        vec![UserClass::new("U").wait_time(constant(0.05)).task(Task::new("root", task!(get_root)))]
    });
    let stats = run_closed(waiting, &server, Duration::from_secs(1)).await;
    assert!(stats.total().num_requests > 10);
    assert!(!stats.has_corrected());
}
