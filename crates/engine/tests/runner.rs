//! The runner end to end: real shards, real users, the real demo target.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmer_engine::{
    LocalBoxFuture, LocalRunner, Plan, PlanError, Request, RunnerEvent, RunnerHandle, RunnerOptions, RunnerState,
    StartError, TagFilter, Task, TaskError, TaskResult, TaskSet, TestSettings, User, UserClass, constant, task,
    task_fn,
};
use swarmer_target::{DemoTarget, TargetOptions};

type Log = Arc<Mutex<Vec<String>>>;

fn target() -> DemoTarget {
    DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap()
}

fn options(host: &str, shards: usize) -> RunnerOptions {
    RunnerOptions { shards, host: Some(host.to_owned()), ..Default::default() }
}

async fn get_root(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

async fn wait_for_state(handle: &RunnerHandle, state: RunnerState) {
    for _ in 0..500 {
        if handle.state() == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("runner never reached {state:?}, is {:?}", handle.state());
}

async fn wait_until(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never became true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn weighted_classes_are_spawned_in_proportion() {
    let t = target();
    let plan = Plan::new("weights", || {
        vec![
            UserClass::new("A").weight(5).wait_time(constant(0.2)).task(Task::new("root", task!(get_root))),
            UserClass::new("B").weight(1).wait_time(constant(0.2)).task(Task::new("root", task!(get_root))),
            UserClass::new("F").fixed_count(1).wait_time(constant(0.2)).task(Task::new("root", task!(get_root))),
        ]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 2)).await.unwrap();
    let mut events = handle.subscribe();
    handle.start(13, 1000.0);
    let complete = loop {
        if let RunnerEvent::SpawningComplete { class_counts, user_count } = events.recv().await.unwrap() {
            break (class_counts, user_count);
        }
    };
    assert_eq!(complete.1, 13);
    assert_eq!(complete.0["F"], 1);
    assert_eq!(complete.0["A"], 10);
    assert_eq!(complete.0["B"], 2);
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn ramp_up_honours_the_spawn_rate() {
    let t = target();
    let plan = Plan::new("ramp", || {
        vec![UserClass::new("U").wait_time(constant(0.5)).task(Task::new("root", task!(get_root)))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 2)).await.unwrap();
    // At 20 users/s, a user at t = 0 and one every 50 ms after it: never
    // more than that by any moment, and all ten not before 450 ms. (Bounds
    // a slow machine cannot break: it can only be later, never earlier.)
    let started = std::time::Instant::now();
    handle.start(10, 20.0);
    tokio::time::sleep(Duration::from_millis(230)).await;
    let early = handle.stats().lock().unwrap().user_count;
    let allowed = (20.0 * started.elapsed().as_secs_f64()) as usize + 1;
    assert!(early <= allowed, "after {:?} at 20/s: {early} users", started.elapsed());
    wait_for_state(&handle, RunnerState::Running).await;
    assert!(started.elapsed() >= Duration::from_millis(450), "ten users at 20/s in {:?}", started.elapsed());
    assert_eq!(handle.stats().lock().unwrap().user_count, 10);
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn ramp_down_removes_newest_users_first() {
    let t = target();
    let stopped: Log = Arc::default();
    let log = stopped.clone();
    let plan = Plan::new("down", move || {
        let log = log.clone();
        vec![UserClass::new("U").wait_time(constant(0.05)).task(Task::new("root", task!(get_root))).on_stop(
            move |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                log.lock().unwrap().push(user.id().to_string());
                Box::pin(async { Ok(()) })
            },
        )]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 2)).await.unwrap();
    handle.start(6, 1000.0);
    wait_for_state(&handle, RunnerState::Running).await;
    handle.start(2, 1000.0);
    wait_until(|| stopped.lock().unwrap().len() == 4).await;
    let mut ids: Vec<u64> = stopped.lock().unwrap().iter().map(|s| s.parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [2, 3, 4, 5], "the four newest users stop");
    assert_eq!(handle.stats().lock().unwrap().user_count, 2);
    handle.quit().await;
}

/// A task that takes `delay_ms` and logs when it starts and completes.
fn slow_task_plan(log: Log, delay_ms: u64) -> Plan {
    Plan::new("slow", move || {
        let done = log.clone();
        let stopped = log.clone();
        vec![
            UserClass::new("U")
                .task(Task::new("slow", move |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                    let done = done.clone();
                    Box::pin(async move {
                        done.lock().unwrap().push("task started".into());
                        user.client.get(&format!("/delay/{delay_ms}")).await;
                        done.lock().unwrap().push("task finished".into());
                        Ok(())
                    })
                }))
                .on_stop(move |_u: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                    stopped.lock().unwrap().push("on_stop".into());
                    Box::pin(async { Ok(()) })
                }),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn stop_timeout_lets_users_finish_their_task() {
    let t = target();
    let log: Log = Arc::default();
    let opts = RunnerOptions { stop_timeout: Duration::from_secs(3), ..options(&t.url(), 1) };
    let handle = LocalRunner::start(slow_task_plan(log.clone(), 400), opts).await.unwrap();
    handle.start(1, 100.0);
    wait_until(|| !log.lock().unwrap().is_empty()).await;
    handle.quit().await;
    assert_eq!(*log.lock().unwrap(), ["task started", "task finished", "on_stop"]);
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.total().num_requests, 1, "the finished request is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn without_stop_timeout_users_stop_at_once() {
    let t = target();
    let log: Log = Arc::default();
    let handle = LocalRunner::start(slow_task_plan(log.clone(), 3000), options(&t.url(), 1)).await.unwrap();
    handle.start(1, 100.0);
    wait_until(|| !log.lock().unwrap().is_empty()).await;
    let started = std::time::Instant::now();
    handle.quit().await;
    assert!(started.elapsed() < Duration::from_secs(2), "quit waited for the 3 s task: {:?}", started.elapsed());
    assert_eq!(*log.lock().unwrap(), ["task started", "on_stop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn catch_response_and_default_verdicts_are_recorded() {
    let t = target();
    let plan = Plan::new("catch", || {
        vec![UserClass::new("U").wait_time(constant(10.0)).task(Task::new(
            "all",
            |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                Box::pin(async move {
                    // 200 marked as failure.
                    let r = user.client.send_catch(Request::get("/")).await;
                    if r.text().contains("home page") {
                        r.failure("Got wrong response");
                    }
                    // 404 marked as success.
                    user.client.send_catch(Request::get("/missing").name("/missing")).await.success();
                    // Unmarked: default verdict (500 is a failure).
                    let _ = user.client.send_catch(Request::get("/status/500")).await;
                    // Plain request grouped under a name.
                    for i in 0..3 {
                        user.client
                            .send(Request::get(format!("/index.html?ok={i}")).name("/index.html?ok=[random]"))
                            .await;
                    }
                    Err(TaskError::StopUser)
                })
            },
        ))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    handle.start(1, 10.0);
    wait_until(|| handle.stats().lock().unwrap().user_count == 0 && handle.state() == RunnerState::Running).await;
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    let s = &store.stats;
    assert_eq!(s.entry("GET", "/").unwrap().num_failures, 1);
    assert_eq!(s.entry("GET", "/missing").unwrap().num_failures, 0);
    assert_eq!(s.entry("GET", "/status/500").unwrap().num_failures, 1);
    assert_eq!(s.entry("GET", "/index.html?ok=[random]").unwrap().num_requests, 3);
    let errors: Vec<(String, u64)> = s.failures().map(|f| (f.error.clone(), f.occurrences)).collect();
    assert!(errors.contains(&("CatchResponseError('Got wrong response')".into(), 1)), "{errors:?}");
    assert!(
        errors.contains(&("HTTPError('500 Server Error: Internal Server Error for url: /status/500')".into(), 1)),
        "{errors:?}"
    );
    assert_eq!(s.total().num_requests, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn exceptions_are_grouped_and_users_carry_on() {
    let t = target();
    let plan = Plan::new("exc", || {
        vec![UserClass::new("U").task(Task::new("flaky", |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
            Box::pin(async move {
                user.client.get("/").await;
                let n: u32 = "not a number".parse()?;
                let _ = n;
                Ok(())
            })
        }))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    handle.start(2, 100.0);
    wait_until(|| handle.stats().lock().unwrap().stats.total().num_requests >= 20).await;
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    let exceptions: Vec<_> = store.stats.exceptions().collect();
    assert_eq!(exceptions.len(), 1, "one group for one message and location");
    assert_eq!(exceptions[0].msg, "invalid digit found in string");
    assert!(exceptions[0].traceback.contains("runner.rs:"), "{}", exceptions[0].traceback);
    assert_eq!(exceptions[0].count, store.stats.total().num_requests, "one per task, users kept going");
    assert_eq!(store.stats.error_count(), exceptions[0].count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn stop_test_from_a_task_stops_the_whole_test() {
    let t = target();
    let plan = Plan::new("stoptest", || {
        vec![UserClass::new("U").wait_time(constant(0.01)).task(Task::new(
            "t",
            |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                Box::pin(async move {
                    user.client.get("/").await;
                    if user.id() == 0 { Err(TaskError::StopTest) } else { Ok(()) }
                })
            },
        ))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 2)).await.unwrap();
    let mut events = handle.subscribe();
    handle.start(4, 1000.0);
    let mut saw_request = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap() {
            RunnerEvent::StopTestRequested => saw_request = true,
            RunnerEvent::TestStopped => break,
            _ => {}
        }
    }
    assert!(saw_request);
    assert_eq!(handle.state(), RunnerState::Stopped);
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn nested_task_sets_interrupt_back_to_the_parent_and_sequences_keep_order() {
    let t = target();
    let log: Log = Arc::default();
    let l = log.clone();
    let plan = Plan::new("sets", move || {
        let step = |name: &'static str, log: Log, interrupt: bool| {
            Task::new(name, move |_u: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                log.lock().unwrap().push(name.into());
                Box::pin(async move { if interrupt { Err(TaskError::Interrupt { reschedule: true }) } else { Ok(()) } })
            })
        };
        let checkout = TaskSet::sequential("checkout")
            .task(step("cart", l.clone(), false))
            .task(step("pay", l.clone(), false))
            .task(step("leave", l.clone(), true));
        let stop_after = l.clone();
        vec![
            UserClass::new("U")
                .task(Task::set(checkout))
                .task(Task::new("outer", move |_u: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                    let mut log = stop_after.lock().unwrap();
                    let visits = log.iter().filter(|s| *s == "leave").count();
                    log.push("outer".into());
                    Box::pin(async move { if visits >= 3 { Err(TaskError::StopUser) } else { Ok(()) } })
                }))
                .weight(1),
        ]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    handle.start(1, 10.0);
    wait_until(|| handle.stats().lock().unwrap().user_count == 0 && handle.state() == RunnerState::Running).await;
    handle.quit().await;
    let log = log.lock().unwrap().clone();
    // Each visit to the sequential set runs cart, pay, leave in order; the
    // interrupt hands control back to the user's own tasks in between.
    let in_set: Vec<&str> = log.iter().map(String::as_str).filter(|s| *s != "outer").collect();
    assert!(in_set.len() >= 9, "{log:?}");
    for (i, step) in in_set.iter().enumerate() {
        assert_eq!(*step, ["cart", "pay", "leave"][i % 3], "{log:?}");
    }
    assert_eq!(log.last().map(String::as_str), Some("outer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tags_select_which_tasks_run() {
    let t = target();
    let plan = Plan::new("tags", || {
        let hit = |path: &'static str| {
            task_fn(move |user| {
                Box::pin(async move {
                    user.client.get(path).await;
                    Ok(())
                })
            })
        };
        vec![
            UserClass::new("U")
                .wait_time(constant(0.01))
                .task(Task::new("home", hit("/")).tag("web"))
                .task(Task::new("profile", hit("/profile")).tag("web").tag("slow"))
                .task(Task::new("index", hit("/index.html")).tag("api")),
        ]
    });
    let opts =
        RunnerOptions { tags: TagFilter::new(Some(vec!["web".into()]), vec!["slow".into()]), ..options(&t.url(), 1) };
    let handle = LocalRunner::start(plan, opts).await.unwrap();
    handle.start(2, 100.0);
    wait_until(|| handle.stats().lock().unwrap().stats.total().num_requests >= 10).await;
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    let names: Vec<&str> = store.stats.entries().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn quit_collects_every_request_from_every_shard() {
    let t = target();
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = counted.clone();
    let plan = Plan::new("count", move || {
        let c = c.clone();
        vec![UserClass::new("U").task(Task::new("root", move |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
            let c = c.clone();
            Box::pin(async move {
                user.client.get("/").await;
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        }))]
    });
    let opts = RunnerOptions { stop_timeout: Duration::from_secs(2), ..options(&t.url(), 2) };
    let handle = LocalRunner::start(plan, opts).await.unwrap();
    handle.start(8, 1000.0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    let made = counted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(made > 50);
    assert_eq!(store.stats.total().num_requests, made, "no sample lost at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unknown_classes_and_missing_hosts_are_clear_errors() {
    let plan = Plan::new("p", || vec![UserClass::new("Web").task(Task::new("root", task!(get_root)))]);
    let opts = RunnerOptions { classes: vec!["Nope".into()], host: Some("http://x".into()), ..Default::default() };
    let err = LocalRunner::start(plan.clone(), opts).await.err().unwrap();
    assert_eq!(
        err,
        StartError::Plan(PlanError::UnknownClasses { unknown: vec!["Nope".into()], known: vec!["Web".into()] })
    );
    assert!(err.to_string().contains("Unknown User(s): Nope") && err.to_string().contains("Web"), "{err}");
    let err = LocalRunner::start(plan, RunnerOptions::default()).await.err().unwrap();
    assert_eq!(err, StartError::NoHost { class: "Web".into() });
    assert!(err.to_string().contains("--host"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn reset_stats_forgets_the_ramp_once_spawning_completes() {
    let t = target();
    let plan = Plan::new("reset", || {
        vec![
            UserClass::new("U")
                .on_start(|user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
                    Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let name = format!("on_start {}", user.id());
                        user.client.send(Request::get("/status/503").name(name)).await;
                        Ok(())
                    })
                })
                .wait_time(constant(0.05))
                .task(Task::new("root", task!(get_root))),
        ]
    });
    let opts = RunnerOptions { reset_stats: true, ..options(&t.url(), 1) };
    let handle = LocalRunner::start(plan, opts).await.unwrap();
    handle.start(3, 1.0);
    wait_for_state(&handle, RunnerState::Running).await;
    for _ in 0..100 {
        handle.flush().await;
        let seen = handle.stats().lock().unwrap().stats.entry("GET", "on_start 2").is_some();
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    assert!(store.stats.entry("GET", "/").is_some_and(|e| e.num_requests > 0));
    // Users start at 0, 1 and 2 s, and each makes its on_start request
    // 500 ms after it starts. Spawning completes (and the statistics are
    // reset) when the last user starts: its request comes 500 ms after the
    // reset, the first two users' 1.5 s and 500 ms before it.
    let on_start: Vec<&str> =
        store.stats.entries().map(|e| e.name.as_str()).filter(|n| n.starts_with("on_start")).collect();
    assert_eq!(on_start, ["on_start 2"], "only the last user's on_start request outlived the reset");
    assert_eq!(store.stats.total().num_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn too_many_request_names_warn_once() {
    let t = target();
    let plan = Plan::new("names", || {
        vec![UserClass::new("U").task(Task::new("many", |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
            Box::pin(async move {
                for i in 0..520 {
                    user.client.get(&format!("/index.html?id={i}")).await;
                }
                Err(TaskError::StopUser)
            })
        }))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    let mut events = handle.subscribe();
    handle.start(1, 10.0);
    let warning = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap() {
            // The CPU warning may come too on a busy machine.
            RunnerEvent::Warning(w) if w.contains("request names") => break w,
            _ => continue,
        }
    };
    assert!(warning.contains("More than 500 different request names"), "{warning}");
    handle.quit().await;
}

/// Past 2,000 names, further names share one row (the totals stay exact)
/// and the results say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn names_past_the_bound_are_folded_into_one_row_and_noted() {
    let t = target();
    let plan = Plan::new("names", || {
        vec![UserClass::new("U").task(Task::new("many", |user: &mut User| -> LocalBoxFuture<'_, TaskResult> {
            Box::pin(async move {
                for i in 0..swarmer_stats::MOST_NAMES + 10 {
                    user.client.get(&format!("/index.html?id={i}")).await;
                }
                Err(TaskError::StopTest)
            })
        }))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    handle.start(1, 10.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        handle.flush().await;
        let noted = handle.stats().lock().unwrap().notes.iter().any(|n| n.contains("different request names"));
        if noted && handle.state() == RunnerState::Stopped {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no note within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.total().num_requests, swarmer_stats::MOST_NAMES as u64 + 10);
    assert_eq!(store.stats.num_names(), swarmer_stats::MOST_NAMES + 1);
    let folded = store.stats.entry("GET", swarmer_stats::FOLDED_NAME).expect("the folded row");
    assert!(folded.num_requests >= 10, "{}", folded.num_requests);
    let note = store.notes.iter().find(|n| n.contains("different request names")).unwrap();
    assert!(note.contains("More than 2000 different request names"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn exact_class_counts_are_reached_and_changed_by_stopping_the_surplus() {
    let t = target();
    let plan = Plan::new("counts", || {
        vec![
            UserClass::new("A").weight(5).wait_time(constant(0.05)).task(Task::new("root", task!(get_root))),
            UserClass::new("B").weight(1).wait_time(constant(0.05)).task(Task::new("root", task!(get_root))),
            UserClass::new("F").fixed_count(1).wait_time(constant(0.05)).task(Task::new("root", task!(get_root))),
        ]
    });
    let (sink, mut deltas) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunnerOptions { delta_sink: Some(sink), ..options(&t.url(), 2) };
    let handle = LocalRunner::start(plan, opts).await.unwrap();
    let counts = |h: &RunnerHandle| h.stats().lock().unwrap().class_counts.clone();
    let settings = |c: Vec<usize>| TestSettings { spawn_rate: 1000.0, class_counts: Some(c), ..Default::default() };
    handle.start_test(settings(vec![1, 3, 0])).unwrap();
    wait_for_state(&handle, RunnerState::Running).await;
    let c = counts(&handle);
    assert_eq!((c["A"], c["B"], c["F"]), (1, 3, 0), "weights and fixed counts give way to exact counts");
    handle.start_test(settings(vec![2, 1, 1])).unwrap();
    wait_until(|| {
        let c = counts(&handle);
        (c["A"], c["B"], c["F"]) == (2, 1, 1)
    })
    .await;
    wait_for_state(&handle, RunnerState::Running).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, 4);
    // A flush hands every shard's numbers over at once, to the sink too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.stop();
    wait_for_state(&handle, RunnerState::Stopped).await;
    handle.flush().await;
    let mut forwarded = 0;
    while let Ok(delta) = deltas.try_recv() {
        forwarded += delta.num_requests();
    }
    let merged = handle.stats().lock().unwrap().stats.total().num_requests;
    assert!(forwarded > 0);
    assert_eq!(forwarded, merged, "the sink saw exactly what the runner merged");
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_runner_stops_the_test_when_its_run_time_is_up() {
    let t = target();
    let plan = Plan::new("run time", || {
        vec![UserClass::new("U").wait_time(constant(0.05)).task(Task::new("root", task!(get_root)))]
    });
    let handle = LocalRunner::start(plan, options(&t.url(), 1)).await.unwrap();
    let mut events = handle.subscribe();
    let started = std::time::Instant::now();
    let settings = |users, run_time| TestSettings { users, spawn_rate: 100.0, run_time, ..Default::default() };
    handle.start_test(settings(2, Some(Duration::from_millis(800)))).unwrap();
    wait_for_state(&handle, RunnerState::Running).await;
    // A new target without a run time keeps the test's clock.
    handle.start_test(settings(3, None)).unwrap();
    let mut saw = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("the run time never ended it") {
            Ok(RunnerEvent::RunTimeReached) => saw.push("run time"),
            Ok(RunnerEvent::TestStopped) => break,
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(saw, ["run time"]);
    assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(handle.state(), RunnerState::Stopped);
    // A new test without a run time has none: it is still running later.
    handle.start_test(settings(1, None)).unwrap();
    wait_for_state(&handle, RunnerState::Running).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(handle.state(), RunnerState::Running);
    // A zero run time removes a limit.
    handle.start_test(settings(1, Some(Duration::from_millis(300)))).unwrap();
    handle.start_test(settings(1, Some(Duration::ZERO))).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(handle.state(), RunnerState::Running);
    handle.quit().await;
}

/// A shape of a Rust test: its first step replaces the start's users and
/// mix, a later step moves users between classes, `None` ends the test,
/// and a change by hand pauses it.
struct TwoSteps;

impl swarmer_engine::LoadShape for TwoSteps {
    fn name(&self) -> &str {
        "two steps"
    }
    fn tick(&mut self, run_time: Duration, _stats: &swarmer_engine::RequestStats) -> Option<swarmer_engine::ShapeStep> {
        let (users, a, b) = match run_time.as_millis() {
            0..800 => (4, 3, 1),
            800..1600 => (6, 1, 2),
            _ => return None,
        };
        let mix = [("A".to_owned(), a), ("B".to_owned(), b)].into();
        Some(swarmer_engine::ShapeStep {
            users,
            spawn_rate: 1000.0,
            mix: Some(swarmer_engine::ClassMix::Weights(mix)),
            wait_times: Default::default(),
            label: None,
            ends_after: None,
            arrival: None,
        })
    }
}

fn two_classes() -> Plan {
    Plan::new("shape", || {
        vec![
            UserClass::new("A").wait_time(constant(0.1)).task(Task::new("root", task!(get_root))),
            UserClass::new("B").wait_time(constant(0.1)).task(Task::new("root", task!(get_root))),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rust_shape_drives_users_and_mix_and_ends_the_test() {
    let t = target();
    let shape: swarmer_engine::SharedShape = Arc::new(Mutex::new(Box::new(TwoSteps)));
    let opts = RunnerOptions { shape: Some(shape), ..options(&t.url(), 2) };
    let handle = LocalRunner::start(two_classes(), opts).await.unwrap();
    let mut events = handle.subscribe();
    handle.start(1, 1.0);
    let mut completes = Vec::new();
    loop {
        match events.recv().await.unwrap() {
            RunnerEvent::SpawningComplete { class_counts, .. } => completes.push(class_counts),
            RunnerEvent::TestStopped => break,
            _ => {}
        }
    }
    let counts: Vec<(usize, usize)> = completes.iter().map(|c| (c["A"], c["B"])).collect();
    assert_eq!(counts, [(3, 1), (2, 4)], "each step's mix, then the end");
    let marks: Vec<String> = handle.stats().lock().unwrap().step_marks.iter().map(|m| m.label.clone()).collect();
    assert_eq!(marks, ["step 1", "step 2"]);
    handle.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_change_by_hand_pauses_the_shape() {
    let t = target();
    let shape: swarmer_engine::SharedShape = Arc::new(Mutex::new(Box::new(TwoSteps)));
    let opts = RunnerOptions { shape: Some(shape), ..options(&t.url(), 1) };
    let handle = LocalRunner::start(two_classes(), opts).await.unwrap();
    handle.start(1, 1.0);
    wait_until(|| handle.stats().lock().unwrap().user_count == 4).await;
    handle.start(2, 1000.0);
    wait_until(|| handle.stats().lock().unwrap().shape.as_ref().is_some_and(|s| s.paused)).await;
    // Past the shape's end: it no longer drives the test.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(handle.state(), RunnerState::Running);
    assert_eq!(handle.stats().lock().unwrap().user_count, 2);
    handle.quit().await;
}
