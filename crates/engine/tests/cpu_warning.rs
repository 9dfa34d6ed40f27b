//! The generator's CPU warning: only a sustained spell above 90% of the
//! shards' cores warns, never a short sample at start-up or shutdown.
//! (The figure is the whole process's: these tests take turns, and no
//! other test shares their binary.)

use std::time::{Duration, Instant};

use swarmer_engine::{
    LocalRunner, Plan, RunnerEvent, RunnerOptions, Task, TaskResult, TestSettings, User, UserClass, constant, task,
};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn idle(_: &mut User) -> TaskResult {
    Ok(())
}

/// Busy for 100 ms without yielding (a plan that computes), then yield.
async fn spin(_: &mut User) -> TaskResult {
    let until = Instant::now() + Duration::from_millis(100);
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    tokio::task::yield_now().await;
    Ok(())
}

/// Another thread of the process spinning while `flag` is set: the
/// process's figure stays well above one core's 90% even when the shard
/// is descheduled now and then on a busy machine.
fn spinner(flag: &'static std::sync::atomic::AtomicBool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut x = 0u64;
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    })
}

fn options(after: Duration) -> RunnerOptions {
    RunnerOptions { shards: 1, host: Some("http://127.0.0.1:1".into()), cpu_warning_after: after, ..Default::default() }
}

fn cpu_warnings(events: &mut tokio::sync::broadcast::Receiver<RunnerEvent>) -> Vec<String> {
    let mut found = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let RunnerEvent::Warning(w) = event
            && w.contains("CPU usage")
        {
            found.push(w);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_generator_never_warns_through_start_up_and_shutdown() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // 20 runs, five at a time, each warning after a single busy second
    // (the most sensitive setting): start, users, stop, quit.
    for _ in 0..4 {
        let runs = (0..5).map(|_| async {
            let plan = Plan::new("idle", || {
                vec![UserClass::new("U").wait_time(constant(0.2)).task(Task::new("idle", task!(idle)))]
            });
            let handle = LocalRunner::start(plan, options(Duration::from_secs(1))).await.unwrap();
            let mut events = handle.subscribe();
            let settings = TestSettings { users: 20, spawn_rate: 100.0, ..Default::default() };
            handle.start_test(settings).unwrap();
            tokio::time::sleep(Duration::from_millis(1300)).await;
            handle.quit().await;
            cpu_warnings(&mut events)
        });
        for warnings in futures_util::future::join_all(runs).await {
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_generator_warns_once_after_a_sustained_spell() {
    let _turn = ONE_AT_A_TIME.lock().await;
    static HELPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    HELPING.store(true, std::sync::atomic::Ordering::Relaxed);
    let helper = spinner(&HELPING);
    let plan = Plan::new("busy", || vec![UserClass::new("U").task(Task::new("spin", task!(spin)))]);
    let handle = LocalRunner::start(plan, options(Duration::from_secs(2))).await.unwrap();
    let mut events = handle.subscribe();
    let started = Instant::now();
    handle.start_test(TestSettings { users: 1, spawn_rate: 10.0, ..Default::default() }).unwrap();
    let warning = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no CPU warning while a shard spun");
        match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            Ok(Ok(RunnerEvent::Warning(w))) if w.contains("CPU usage") => break w,
            _ => continue,
        }
    };
    // Not before two whole busy seconds.
    assert!(started.elapsed() >= Duration::from_secs(2), "warned after {:?}", started.elapsed());
    assert!(warning.contains("CPU usage above 90% of the 1 core(s) in use for 2 s"), "{warning}");
    // The report lists it too, with its time.
    let notes = handle.stats().lock().unwrap().notes.clone();
    assert!(notes.iter().any(|n| n.starts_with(&warning) && n.ends_with("s into the test)")), "{notes:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    handle.quit().await;
    HELPING.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = helper.join();
    assert_eq!(cpu_warnings(&mut events), Vec::<String>::new(), "warned twice");
}

static SPINNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Spins while [`SPINNING`] is set, else waits.
async fn spin_while_asked(user: &mut User) -> TaskResult {
    if SPINNING.load(std::sync::atomic::Ordering::Relaxed) {
        spin(user).await
    } else {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_guard_holds_the_ramp_while_saturated_and_resumes_after() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let plan = Plan::new("guarded", || vec![UserClass::new("U").task(Task::new("spin", task!(spin_while_asked)))]);
    SPINNING.store(true, std::sync::atomic::Ordering::Relaxed);
    let helper = spinner(&SPINNING);
    let options = RunnerOptions { cpu_guard: true, ..options(Duration::from_secs(60)) };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let mut events = handle.subscribe();
    // 40 users at 2 a second: 20 s of ramp, far longer than the guard takes.
    handle.start_test(TestSettings { users: 40, spawn_rate: 2.0, ..Default::default() }).unwrap();
    let started = Instant::now();
    let next_guard_event = |events: &mut tokio::sync::broadcast::Receiver<RunnerEvent>| {
        let mut events = events.resubscribe();
        async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
                    Ok(Ok(RunnerEvent::Warning(w))) if w.starts_with("CPU guard") => return w,
                    Ok(Ok(_)) => continue,
                    other => panic!("no CPU guard event: {other:?}"),
                }
            }
        }
    };
    let paused = next_guard_event(&mut events).await;
    assert!(paused.contains("spawning paused at"), "{paused}");
    let held = handle.stats().lock().unwrap().user_count;
    assert!(held < 40 && started.elapsed() < Duration::from_secs(15), "{held} users after {:?}", started.elapsed());
    // Held: no user added while it stays saturated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, held);
    // The users stop spinning: the ramp goes on where it was.
    SPINNING.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = helper.join();
    let resumed = next_guard_event(&mut events).await;
    assert!(resumed.contains("spawning resumed at"), "{resumed}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = handle.stats().lock().unwrap().user_count;
    assert!(now > held, "{now} users, {held} when held");
    let notes = handle.stats().lock().unwrap().notes.clone();
    assert!(
        notes.iter().any(|n| n.contains("spawning paused")) && notes.iter().any(|n| n.contains("resumed")),
        "{notes:?}"
    );
    handle.quit().await;
    SPINNING.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_saturated_shard_warns_though_the_process_is_not() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Two shards, one user: one shard spins, the other idles, so the
    // process stays near one core of two (below 90% of both).
    let plan = Plan::new("one hot shard", || vec![UserClass::new("U").task(Task::new("spin", task!(spin)))]);
    let options = RunnerOptions { shards: 2, ..options(Duration::from_secs(2)) };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let mut events = handle.subscribe();
    let started = Instant::now();
    handle.start_test(TestSettings { users: 1, spawn_rate: 10.0, ..Default::default() }).unwrap();
    let warning = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no CPU warning while one shard spun");
        match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            Ok(Ok(RunnerEvent::Warning(w))) if w.contains("CPU usage") => break w,
            _ => continue,
        }
    };
    handle.quit().await;
    assert!(started.elapsed() >= Duration::from_secs(2), "warned after {:?}", started.elapsed());
    assert!(warning.contains("CPU usage of a shard thread above 90% of its core for 2 s"), "{warning}");
}
