//! A protocol the engine has no client for, from a Rust plan: a user keeps
//! a raw TCP connection to a Redis-like store in its state and times each
//! command with `User::measure`, so each is a row like any request (the
//! pattern docs/realtime.md describes).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use swarmer_engine::{
    LocalRunner, Plan, RunnerOptions, RunnerState, Task, TaskResult, TestSettings, User, UserClass, constant, task,
};
use swarmer_target::KvServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

static ADDRESS: OnceLock<String> = OnceLock::new();

type Connection = BufStream<TcpStream>;

/// Send one command line and read its one-line reply; an `-ERR` reply is
/// the error.
async fn command(conn: &mut Connection, line: &str) -> Result<String, String> {
    conn.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    conn.flush().await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    conn.read_line(&mut reply).await.map_err(|e| e.to_string())?;
    match reply.trim_end().strip_prefix('-') {
        Some(error) => Err(error.to_owned()),
        None if reply.is_empty() => Err("the server closed the connection".into()),
        None => Ok(reply.trim_end().to_owned()),
    }
}

async fn visit(user: &mut User) -> TaskResult {
    // The connection lives in the user's state between tasks; it is taken
    // out while in use and put back only while it works.
    let kept = user.state::<Option<Connection>>().and_then(Option::take);
    let mut conn = match kept {
        Some(conn) => conn,
        None => match user.measure("kv", "connect", TcpStream::connect(ADDRESS.get().unwrap().as_str())).await {
            Ok(tcp) => BufStream::new(tcp),
            Err(_) => return Ok(()),
        },
    };
    let key = format!("visits:{}", user.id() % 2);
    let counted = user.measure("kv", "INCR", command(&mut conn, &format!("INCR {key}"))).await;
    let refused = user.measure("kv", "INCR text", command(&mut conn, "SET word x")).await.is_err()
        || user.measure("kv", "INCR text", command(&mut conn, "INCR word")).await.is_err();
    if counted.is_ok() && refused {
        user.set_state(Box::new(Some(conn)));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rust_user_times_its_own_protocols_commands_as_rows() {
    let kv = KvServer::spawn("127.0.0.1:0").unwrap();
    ADDRESS.set(kv.addr().to_string()).unwrap();
    let plan = Plan::new("kv", || {
        vec![UserClass::new("Kv").wait_time(constant(0.002)).task(Task::new("visit", task!(visit)))]
    });
    let options = RunnerOptions { shards: 1, host: Some("http://127.0.0.1:1".into()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    let settings =
        TestSettings { users: 4, spawn_rate: 100.0, run_time: Some(Duration::from_secs(1)), ..Default::default() };
    handle.start_test(settings).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for done in [|s: RunnerState| s != RunnerState::Ready, |s: RunnerState| s == RunnerState::Stopped] {
        while !done(handle.state()) {
            assert!(Instant::now() < deadline, "the test never began or stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    handle.flush().await;
    let store = handle.stats().lock().unwrap();
    let row = |name: &str| store.stats.entry("kv", name).map_or((0, 0), |e| (e.num_requests, e.num_failures));
    // Each user connects once and keeps its connection.
    assert_eq!(row("connect"), (4, 0));
    let (incr, failed) = row("INCR");
    assert!(incr > 100 && failed == 0, "{incr} INCR, {failed} failed");
    // The SET succeeds and the INCR of a word fails with the server's
    // words (a user stopped by the run time may end between commands).
    let (text, text_failed) = row("INCR text");
    assert!(text_failed <= incr && text_failed + 4 >= incr, "{text_failed} of {incr}");
    assert!(text.abs_diff(2 * text_failed) <= 4, "{text} text commands, {text_failed} failed");
    let errors: Vec<_> = store.stats.failures().map(|f| f.error.clone()).collect();
    assert_eq!(errors, ["ERR value is not an integer or out of range"]);
    // What the server answered was recorded (but for a command a stopping
    // user left unrecorded).
    let recorded = incr + text;
    assert!(kv.served() >= recorded && kv.served() <= recorded + 4, "{} served, {recorded} recorded", kv.served());
}
