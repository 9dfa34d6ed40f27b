//! `--memory-limit` end to end, alone in its test binary (the process's
//! resident memory is what it watches): users that keep what they make
//! trip the guard, which stops adding users and sheds the newest (whose
//! memory is given back), and the test goes on to its end with those
//! left and a note of each step.

use std::time::{Duration, Instant};

use swarmer_engine::{
    LocalRunner, Plan, RunnerHandle, RunnerOptions, RunnerState, Task, TaskResult, TestSettings, User, UserClass,
    constant, task,
};
use swarmer_target::{DemoTarget, TargetOptions};

/// What a leaking user keeps.
#[derive(Default)]
struct Kept(Vec<Vec<u8>>);

/// A request, then 256 KiB more kept (written, so it is resident; large
/// enough that the allocator maps it alone and gives it back on free).
async fn leak(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    if let Some(kept) = user.state::<Kept>() {
        kept.0.push(vec![0xa5; 256 << 10]);
    }
    Ok(())
}

fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn wait_stopped(handle: &RunnerHandle, within: Duration) {
    let deadline = Instant::now() + within;
    while handle.state() != RunnerState::Stopped {
        assert!(Instant::now() < deadline, "the test never stopped: {:?}", handle.state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn users_that_keep_what_they_make_are_shed_and_the_test_goes_on() {
    let server = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = Plan::new("leak", || {
        vec![
            UserClass::new("Leaky").state(Kept::default).wait_time(constant(0.04)).task(Task::new("leak", task!(leak))),
        ]
    });
    // Five users keep 6.4 MiB/s each: the limit, 128 MiB above what the
    // process holds now, is near within about four seconds.
    let limit = resident() + (128 << 20);
    let options =
        RunnerOptions { shards: 1, host: Some(server.url()), memory_limit: Some(limit), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let settings =
        TestSettings { users: 5, spawn_rate: 100.0, run_time: Some(Duration::from_secs(8)), ..Default::default() };
    handle.start_test(settings).unwrap();
    let mut fewest = 5;
    // (when, resident bytes, users) every 20 ms, to see memory given back.
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.state() != RunnerState::Stopping && handle.state() != RunnerState::Stopped {
        assert!(Instant::now() < deadline, "the run never ended");
        let users = handle.stats().lock().unwrap().user_count;
        if handle.state() == RunnerState::Running {
            fewest = fewest.min(users);
            samples.push((Instant::now(), resident(), users));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_stopped(&handle, Duration::from_secs(10)).await;
    handle.flush().await;
    let (notes, requests) = {
        let store = handle.stats().lock().unwrap();
        (store.notes.join("\n"), store.stats.total().num_requests)
    };
    assert!(notes.contains("Memory guard") && notes.contains("newest user"), "shed, and said so: {notes}");
    assert!(fewest < 5, "the test went on with fewer users ({fewest})");
    // A shed settles before the next: the leak costs users, not all of them.
    assert!(fewest >= 1, "every user was shed");
    assert!(requests > 100, "requests went on: {requests}");
    // The first shed gives the process's memory back: a shed user's
    // ~20 MiB is freed, so resident memory falls below its peak before
    // the shed (the four left then keep making more).
    let shed_at = samples.iter().position(|&(_, _, users)| users < 5).expect("a sample after the shed");
    let peak = samples[..shed_at].iter().map(|&(_, rss, _)| rss).max().unwrap_or(0);
    let since = samples[shed_at].0;
    let low = samples[shed_at..]
        .iter()
        .take_while(|&&(at, _, _)| at.duration_since(since) < Duration::from_secs(1))
        .map(|&(_, rss, _)| rss)
        .min()
        .unwrap();
    assert!(
        low + (8 << 20) < peak,
        "resident memory should fall after the shed: {} MiB at the peak, then {} MiB",
        peak >> 20,
        low >> 20
    );
    handle.quit().await;
}
