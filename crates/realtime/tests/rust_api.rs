//! WebSocket and Server-Sent Events from a Rust plan, against the demo
//! target's `/ws` and `/sse`: what a user sees, and the rows recorded.

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

async fn converse(user: &mut User) -> TaskResult {
    let client = &user.client;
    let options = WsOptions { subprotocols: vec!["chat".into(), "other".into()], ..Default::default() };
    let ws = WebSocket::connect(client, "/ws", &options).await.expect("opens");
    saw(format!("status {} protocol {:?} url {}", ws.status(), ws.protocol(), ws.url()));
    // Request/reply pairs, one skipping an unrelated message first.
    for i in 0..3 {
        let reply = ws.request(WsMessage::Text(format!("hi {i}")), "echo", SHORT, |_| true).await.unwrap();
        saw(format!("reply {reply:?}"));
    }
    ws.send(WsMessage::Text("burst:2".into())).await.unwrap();
    let reply = ws.request(WsMessage::Binary(vec![0, 1, 2]), "binary", SHORT, |m| matches!(m, WsMessage::Binary(_)));
    saw(format!("binary {:?}", reply.await.unwrap()));
    // A receiver on another task while this one sends.
    let pump = ws.clone();
    let pumped = tokio::task::spawn_local(async move {
        let mut got = Vec::new();
        while got.len() < 3 {
            match pump.receive(SHORT).await.unwrap() {
                Received::Message(WsMessage::Text(text)) => got.push(text),
                other => panic!("{other:?}"),
            }
        }
        got
    });
    ws.send(WsMessage::Text("burst:3".into())).await.unwrap();
    saw(format!("pumped {:?}", pumped.await.unwrap()));
    // Nothing comes: the receive times out, and a pair fails as timed out.
    saw(format!("idle {:?}", ws.receive(Duration::from_millis(50)).await.unwrap()));
    let late = ws.request(WsMessage::Text("delay:500:late".into()), "slow", Duration::from_millis(100), |_| true).await;
    saw(format!("slow {}", late.unwrap_err()));
    // The server closes: the code and reason come through; sending then fails.
    ws.send(WsMessage::Text("close".into())).await.unwrap();
    loop {
        match ws.receive(SHORT).await.unwrap() {
            Received::Message(_) => continue,
            closed => {
                saw(format!("closed {closed:?}"));
                break;
            }
        }
    }
    saw(format!("send after close {}", ws.send(WsMessage::Text("x".into())).await.unwrap_err()));

    // Refusals are failures of the opening.
    let refused = WebSocket::connect(client, "/index.html", &WsOptions::default()).await;
    saw(format!("refused {}", refused.err().unwrap()));

    let plain = SseOptions::default();
    let events = EventStream::subscribe(client, "/sse?count=3&interval_ms=20&event=tick", &plain).await.unwrap();
    loop {
        match events.next(SHORT).await.unwrap() {
            Next::Event(event) => saw(format!("event {} {} {:?}", event.event, event.data, event.id)),
            end => {
                saw(format!("sse {end:?}"));
                break;
            }
        }
    }
    let resumed = SseOptions { last_event_id: Some("41".into()), name: Some("resume".into()), ..Default::default() };
    let events = EventStream::subscribe(client, "/sse?count=1", &resumed).await.unwrap();
    if let Next::Event(event) = events.next(SHORT).await.unwrap() {
        saw(format!("resumed {}", event.data));
    }
    let waiting = EventStream::subscribe(client, "/sse?count=2&interval_ms=1000", &SseOptions::default()).await;
    let waiting = waiting.unwrap();
    let first = waiting.next(SHORT).await.unwrap();
    saw(format!("then {:?}", matches!(first, Next::Event(_))));
    saw(format!("quiet {:?}", waiting.next(Duration::from_millis(50)).await.unwrap()));
    let not_events = EventStream::subscribe(client, "/", &SseOptions::default()).await;
    saw(format!("not events {}", not_events.err().unwrap()));
    Err(TaskError::StopTest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_user_converses_over_a_websocket_and_follows_an_event_stream() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = Plan::new("live", || vec![UserClass::new("Live").task(Task::new("converse", task!(converse)))]);
    let handle = common::run_one_user(plan, &target, &SEEN).await;
    let seen = SEEN.lock().unwrap().clone();
    let port = target.addr().port();
    let expected = [
        format!("status 101 protocol Some(\"chat\") url ws://127.0.0.1:{port}/ws"),
        "reply Text(\"hi 0\")".into(),
        "reply Text(\"hi 1\")".into(),
        "reply Text(\"hi 2\")".into(),
        "binary Binary([0, 1, 2])".into(),
        "pumped [\"1\", \"2\", \"3\"]".into(),
        "idle TimedOut".into(),
        "slow timed out after 100ms".into(),
    ];
    assert_eq!(seen[..expected.len()], expected, "{seen:#?}");
    let rest = &seen[expected.len()..];
    // The late reply arrives before the close: skipped by the loop.
    assert_eq!(rest[0], "closed Closed { code: Some(1000), reason: \"bye\" }", "{seen:#?}");
    assert_eq!(rest[1], "send after close the connection is closed");
    assert!(rest[2].starts_with("refused") && rest[2].contains("200 OK"), "{}", rest[2]);
    assert_eq!(
        rest[3..7],
        ["event tick 1 Some(\"1\")", "event tick 2 Some(\"2\")", "event tick 3 Some(\"3\")", "sse Ended"]
    );
    assert_eq!(rest[7], "resumed 42");
    assert_eq!(rest[8..10], ["then true", "quiet TimedOut"]);
    assert!(rest[10].contains("text/html"), "{}", rest[10]);

    let store = handle.stats().lock().unwrap();
    let row = |kind: &str, name: &str| {
        let entry = store.stats.entry(kind, name).unwrap_or_else(|| panic!("no {kind} {name} row"));
        (entry.num_requests, entry.num_failures)
    };
    assert_eq!(row("WS", "/ws"), (1, 0));
    assert_eq!(row("WS", "/index.html"), (1, 1));
    assert_eq!(row("WSR", "echo"), (3, 0));
    assert_eq!(row("WSR", "binary"), (1, 0));
    assert_eq!(row("WSR", "slow"), (1, 1));
    assert_eq!(row("SSE", "/sse?count=3&interval_ms=20&event=tick"), (1, 0));
    assert_eq!(row("SSE", "event tick"), (3, 0));
    assert_eq!(row("SSE", "resume"), (1, 0));
    assert_eq!(row("SSE", "event message"), (2, 0));
    assert_eq!(row("SSE", "/"), (1, 1));
    let ticks = store.stats.entry("SSE", "event tick").unwrap();
    // Each tick is recorded with the time since the one before (20 ms apart).
    assert!(ticks.max_response_time_us >= 15_000, "{}", ticks.max_response_time_us);
}
