//! Misbehaving connections, against the demo target: a server that pings
//! a client which is not receiving, WebSockets and event streams cut
//! without their end, and a burst larger than the messages held.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use swarmer_engine::{Plan, Task, TaskError, TaskResult, User, UserClass, task};
use swarmer_realtime::sse::Next;
use swarmer_realtime::{EventStream, Received, SseOptions, WebSocket, WsMessage, WsOptions};
use swarmer_target::{DemoTarget, TargetOptions};

/// What the user saw, for the test to check.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn saw(what: impl Into<String>) {
    SEEN.lock().unwrap().push(what.into());
}

const SHORT: Duration = Duration::from_secs(5);

fn named(name: &str) -> WsOptions {
    WsOptions { name: Some(name.into()), ..Default::default() }
}

async fn misbehave(user: &mut User) -> TaskResult {
    let client = &user.client;
    // The server pings and wants its pong within 1 s, while the user does
    // something else for 1.5 s: the pong still goes.
    let ws = WebSocket::connect(client, "/ws", &named("pinged")).await.expect("opens");
    ws.send(WsMessage::Text("ping:1000".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    saw(format!("pinged {:?}", ws.receive(SHORT).await.unwrap()));
    // More messages than are held, all received in order.
    ws.send(WsMessage::Text("burst:300".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    while got.len() < 300 {
        match ws.receive(SHORT).await.unwrap() {
            Received::Message(WsMessage::Text(text)) => got.push(text.parse::<usize>().unwrap()),
            other => panic!("{other:?}"),
        }
    }
    saw(format!("burst in order {}", got.iter().enumerate().all(|(i, n)| *n == i + 1)));
    // Closed by the plan: not a break.
    ws.close(None, "done").await.unwrap();

    // The server drops the connection without a close frame: a break.
    let dropped = WebSocket::connect(client, "/ws", &named("dropped")).await.expect("opens");
    dropped.send(WsMessage::Text("drop".into())).await.unwrap();
    saw(format!("dropped {:?}", dropped.receive(SHORT).await.unwrap()));
    saw(format!("again {:?}", dropped.receive(SHORT).await.unwrap()));

    // An event stream cut before its end: a break; one ended cleanly is not.
    let cut = SseOptions { name: Some("cut".into()), ..Default::default() };
    let events = EventStream::subscribe(client, "/sse?count=2&interval_ms=10&broken=1", &cut).await.unwrap();
    loop {
        match events.next(SHORT).await {
            Ok(Next::Event(event)) => saw(format!("event {}", event.data)),
            Ok(other) => {
                saw(format!("cut ended {other:?}"));
                break;
            }
            Err(e) => {
                saw(format!("cut failed {}", !e.to_string().is_empty()));
                break;
            }
        }
    }
    let whole = SseOptions { name: Some("whole".into()), ..Default::default() };
    let events = EventStream::subscribe(client, "/sse?count=1", &whole).await.unwrap();
    while let Ok(Next::Event(_)) = events.next(SHORT).await {}
    Err(TaskError::StopTest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn pings_are_answered_between_receives_and_broken_connections_are_failures() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = Plan::new("breaks", || vec![UserClass::new("Breaks").task(Task::new("misbehave", task!(misbehave)))]);
    let handle = common::run_one_user(plan, &target, &SEEN).await;
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "pinged Message(Text(\"pong\"))",
            "burst in order true",
            "dropped Closed { code: None, reason: \"\" }",
            "again Closed { code: None, reason: \"\" }",
            "event 1",
            "event 2",
            "cut failed true",
        ],
    );

    let store = handle.stats().lock().unwrap();
    let rows: Vec<(String, String, u64, u64)> = store
        .stats
        .entries()
        .filter(|e| e.name.ends_with("(connection)"))
        .map(|e| (e.method.clone(), e.name.clone(), e.num_requests, e.num_failures))
        .collect();
    // One break each; the pinged socket (closed by the plan) and the whole
    // stream have no such row.
    assert_eq!(
        rows.len(),
        2,
        "{rows:?}; failures: {:?}",
        store.stats.failures().map(|f| (&f.name, &f.error)).collect::<Vec<_>>()
    );
    assert!(rows.contains(&("WS".into(), "dropped (connection)".into(), 1, 1)), "{rows:?}");
    assert!(rows.contains(&("SSE".into(), "cut (connection)".into(), 1, 1)), "{rows:?}");
    let failure =
        |name: &str| store.stats.failures().find(|f| f.name == name).map(|f| f.error.clone()).unwrap_or_default();
    assert!(failure("dropped (connection)").contains("closed without a close frame (1006)"));
    assert!(failure("cut (connection)").starts_with("the stream broke: "), "{}", failure("cut (connection)"));
}
