//! WebSocket and Server-Sent Events from Lua plans, against the demo
//! target's `/ws` and `/sse`: the values a plan sees (checked in the plan,
//! where a failed check is an error row), the rows recorded, and bad calls
//! named at their line.

use std::path::Path;
use std::time::{Duration, Instant};

use swarmer_engine::{LocalRunner, RunnerHandle, RunnerOptions};
use swarmer_target::{DemoTarget, TargetOptions};

async fn run(dir: &Path, body: &str, host: &str, until: impl Fn(&RunnerHandle) -> bool) -> RunnerHandle {
    let path = dir.join("plan.lua");
    std::fs::write(&path, format!("local swarmer = require('swarmer')\n{body}")).unwrap();
    let plan = swarmer_lua::load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunnerOptions { shards: 1, host: Some(host.into()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    handle.start(1, 100.0);
    let started = Instant::now();
    loop {
        handle.flush().await;
        if until(&handle) {
            break;
        }
        let errors = errors(&handle);
        assert!(started.elapsed() < Duration::from_secs(20), "not within 20 s; errors: {errors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.quit().await;
    handle
}

fn count(handle: &RunnerHandle, method: &str, name: &str) -> (u64, u64) {
    let store = handle.stats().lock().unwrap();
    store.stats.entry(method, name).map_or((0, 0), |e| (e.num_requests, e.num_failures))
}

fn errors(handle: &RunnerHandle) -> Vec<String> {
    let store = handle.stats().lock().unwrap();
    store.stats.exceptions().map(|e| format!("{} at {}", e.msg, e.traceback)).collect()
}

const CONVERSATION: &str = r#"
swarmer.user("Chat", { wait_time = swarmer.constant(0.01), tasks = { function(self)
  local ws = assert(self.client:websocket("/ws", { name = "chat", protocols = { "chat" },
                                                   headers = { ["x-room"] = "7" } }))
  assert(ws.status == 101 and ws.protocol == "chat", tostring(ws.protocol))
  assert(ws.url:match("^ws://127%.0%.0%.1:%d+/ws$"), ws.url)
  local reply, kind = ws:request("hello", { name = "echo" })
  assert(reply == "hello" and kind == "text", tostring(reply))
  assert(ws:send_binary("\0\1\2"))
  local data, kind2 = ws:receive(5)
  assert(data == "\0\1\2" and kind2 == "binary")
  -- A reply picked out of a burst by match.
  local third = ws:request("burst:3", { name = "burst", match = function(d) return d == "3" end })
  assert(third == "3")
  -- A background coroutine pumps messages while the task sends.
  local got = {}
  swarmer.spawn(function()
    while #got < 2 do
      local m = ws:receive(5)
      if m == nil then break end
      got[#got + 1] = m
    end
  end)
  assert(ws:send("one")); assert(ws:send("two"))
  local waited = 0
  while #got < 2 and waited < 50 do swarmer.sleep(0.02); waited = waited + 1 end
  assert(got[1] == "one" and got[2] == "two", "pumped " .. #got)
  -- Nothing comes: a timeout; a slow reply fails its pair.
  local none, why = ws:receive(0.05)
  assert(none == nil and why == "timeout", tostring(why))
  local late, err = ws:request("delay:400:late", { name = "slow", timeout = 0.1 })
  assert(late == nil and err:find("timed out"), tostring(err))
  -- The server closes with a code and a reason.
  assert(ws:send("close"))
  local m, closed, code, reason
  repeat m, closed, code, reason = ws:receive(5) until m == nil
  assert(closed == "closed" and code == 1000 and reason == "bye", tostring(closed))
  local sent, broken = ws:send("x")
  assert(sent == nil and broken:find("closed"), tostring(broken))
  assert(ws:close())
  -- A refused opening is nil and the reason.
  local nope, refused = self.client:websocket("/index.html")
  assert(nope == nil and refused:find("200"), tostring(refused))

  local events = assert(self.client:sse("/sse?count=3&interval_ms=10&event=tick", { name = "ticks" }))
  for i = 1, 3 do
    local e = assert(events:receive(5))
    assert(e.event == "tick" and e.data == tostring(i) and e.id == tostring(i), e.data)
  end
  local gone, ended = events:receive(5)
  assert(gone == nil and ended == "ended", tostring(ended))
  events:close()
  local resumed = assert(self.client:sse("/sse?count=1", { last_event_id = "9" }))
  assert(resumed:receive(5).data == "10")
  local bad, why2 = self.client:sse("/")
  assert(bad == nil and why2:find("text/event-stream", 1, true), tostring(why2))
  self.client:fire_request{ request_type = "CHECK", name = "done", response_time = 0 }
  swarmer.stop_user()
end } })
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_converses_over_a_websocket_and_follows_an_event_stream() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let handle =
        run(dir.path(), CONVERSATION, &target.url(), |h| count(h, "CHECK", "done").0 == 1 || !errors(h).is_empty())
            .await;
    assert_eq!(errors(&handle), Vec::<String>::new());
    assert_eq!(count(&handle, "WS", "chat"), (1, 0));
    assert_eq!(count(&handle, "WS", "/index.html"), (1, 1));
    assert_eq!(count(&handle, "WSR", "echo"), (1, 0));
    assert_eq!(count(&handle, "WSR", "burst"), (1, 0));
    assert_eq!(count(&handle, "WSR", "slow"), (1, 1));
    assert_eq!(count(&handle, "SSE", "ticks"), (1, 0));
    assert_eq!(count(&handle, "SSE", "event tick"), (3, 0));
    assert_eq!(count(&handle, "SSE", "event message"), (1, 0));
    assert_eq!(count(&handle, "SSE", "/"), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn bad_calls_are_errors_at_the_plans_line() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = r#"
swarmer.user("Bad", { wait_time = swarmer.constant(0.01), tasks = { function(self)
  local step = (self.step or 0) + 1
  self.step = step
  if step == 1 then self.client:websocket("/ws", { nmae = "x" })
  elseif step == 2 then self.client:sse("/sse", { timeout = -1 })
  elseif step == 3 then
    local ws = assert(self.client:websocket("/ws"))
    local c, bad = ws:close(999)
    assert(c == nil and bad:find("close code 999: 1000-1003", 1, true), tostring(bad))
    ws:close()
    local ok, err = ws:send("after")
    assert(ok == nil and err == "the connection is closed", tostring(err))
    ws:receive("soon")
  else
    self.client:fire_request{ request_type = "CHECK", name = "done", response_time = 0 }
    swarmer.stop_user()
  end
end } })
"#;
    let handle = run(dir.path(), plan, &target.url(), |h| count(h, "CHECK", "done").0 == 1).await;
    let errors = errors(&handle);
    assert_eq!(errors.len(), 3, "{errors:?}");
    let find = |part: &str| errors.iter().find(|e| e.contains(part)).unwrap_or_else(|| panic!("{part}: {errors:?}"));
    assert!(find("unknown option nmae").contains("plan.lua:6"), "{errors:?}");
    assert!(find("option timeout: seconds above 0").contains("plan.lua:7"), "{errors:?}");
    assert!(find("the timeout is in seconds").contains("plan.lua:15"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_speaks_its_own_protocol_over_tcp_and_times_it() {
    let kv = swarmer_target::KvServer::spawn("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        r#"
swarmer.user("Kv", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local conn = assert(self.client:tcp("{addr}"))
  assert(conn.url == "{addr}", conn.url)
  self.client:measure("kv", "SET", function()
    assert(conn:send("SET greeting hello world\r\n"))
    assert(conn:receive_line(2) == "+OK")
  end)
  self.client:measure("kv", "GET", function()
    assert(conn:send("GET greeting\nPING\n"))
    assert(conn:receive_line(2) == "$11")
    assert(conn:receive(13, 2) == "hello world\r\n")
    local pong = ""
    while #pong < 7 do pong = pong .. assert(conn:receive_any(2)) end   -- it may come in pieces
    assert(pong == "+PONG\r\n")
  end)
  -- A slow reply times out; the bytes stay for the next read.
  assert(conn:send("SLEEP 300\r\n"))
  local none, why = conn:receive_line(0.05)
  assert(none == nil and why == "timeout", tostring(why))
  assert(conn:receive_line(2) == "+OK")
  -- A failure inside measure is the sample's failure.
  pcall(self.client.measure, self.client, "kv", "FLY", function()
    assert(conn:send("FLY\r\n"))
    local reply = conn:receive_line(2)
    if reply:sub(1, 1) == "-" then error(reply:sub(2), 0) end
  end)
  assert(conn:close())
  local after, closed = conn:receive_line(1)
  assert(after == nil and closed == "closed", tostring(closed))
  local refused, why2 = self.client:tcp("127.0.0.1:1")
  assert(refused == nil and why2 ~= nil)
  local bad, why3 = self.client:tcp("no-port-here")
  assert(bad == nil and why3:find("host:port"), tostring(why3))
  self.client:fire_request{{ request_type = "CHECK", name = "done", response_time = 0 }}
  swarmer.stop_user()
end }} }})
"#,
        addr = kv.addr()
    );
    let handle =
        run(dir.path(), &plan, "http://127.0.0.1:1", |h| count(h, "CHECK", "done").0 == 1 || !errors(h).is_empty())
            .await;
    assert_eq!(errors(&handle), Vec::<String>::new());
    assert_eq!(count(&handle, "kv", "SET"), (1, 0));
    assert_eq!(count(&handle, "kv", "GET"), (1, 0));
    assert_eq!(count(&handle, "kv", "FLY"), (1, 1));
    let store = handle.stats().lock().unwrap();
    let failure = store.stats.failures().map(|e| e.error.clone()).collect::<Vec<_>>();
    assert!(failure.iter().any(|e| e.contains("unknown command 'FLY'")), "{failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn connections_close_with_their_objects_and_their_user_and_are_bounded() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = r#"
swarmer.user("Many", { wait_time = swarmer.constant(0.01), tasks = { function(self)
  -- Garbage connections close.
  for _ = 1, 20 do assert(self.client:websocket("/ws")) end
  collectgarbage(); collectgarbage()
  -- Kept ones are bounded.
  local kept, last_error = {}, nil
  for _ = 1, 300 do
    local ws, err = self.client:websocket("/ws")
    if not ws then last_error = err break end
    kept[#kept + 1] = ws
  end
  assert(#kept == 256 and last_error:find("at most 256 connections"), #kept .. " " .. tostring(last_error))
  for _, ws in ipairs(kept) do ws:close() end
  -- A pump still waiting when its user stops ends quietly.
  local ws = assert(self.client:websocket("/ws"))
  swarmer.spawn(function()
    local probe = swarmer.http_client{ record = true }   -- self.client goes with the user
    local m, why = ws:receive(60)
    assert(m == nil and why == "closed", tostring(why))
    probe:fire_request{ request_type = "CHECK", name = "pump ended", response_time = 0 }
  end)
  self.client:fire_request{ request_type = "CHECK", name = "done", response_time = 0 }
  swarmer.stop_user()
end } })
"#;
    let handle =
        run(dir.path(), plan, &target.url(), |h| count(h, "CHECK", "pump ended").0 == 1 || !errors(h).is_empty()).await;
    assert_eq!(errors(&handle), Vec::<String>::new());
    assert_eq!(count(&handle, "CHECK", "done"), (1, 0));
    // 20 + 256 + 1 opened; the 257th kept was closed at once, unrecorded
    // as a failure (it opened).
    let (opened, failed) = count(&handle, "WS", "/ws");
    assert_eq!((opened, failed), (20 + 257 + 1, 0));
    // Every connection closed: the garbage ones, the closed ones, the pump's with its user.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while target.connections().open() > 0 {
        assert!(std::time::Instant::now() < deadline, "{} still open", target.connections().open());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finalizers of connections, clients and a plan's own objects still alive
/// when a VM closes run inside the VM's teardown: they must not reach the
/// dying VM (once an abort on a violated precondition in the CLI tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_vm_closing_with_open_connections_and_clients_closes_cleanly() {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let kv = swarmer_target::KvServer::spawn("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        r#"
-- A plan's own finalizers call into Swarmer too (at close they get errors).
kept = setmetatable({{}}, {{ __gc = function() swarmer.stats() end }})
swarmer.user("Holder", {{ wait_time = swarmer.constant(0.05),
  on_start = function(self)
    self.finalized = setmetatable({{}}, {{ __gc = function() swarmer.stats(); self.client:get("/") end }})
    self.ws = assert(self.client:websocket("/ws"))
    self.events = assert(self.client:sse("/sse?count=1000&interval_ms=10"))
    self.conn = assert(self.client:tcp("{kv}"))
    self.other = swarmer.http_client{{ record = true }}
  end,
  tasks = {{ function(self)
    assert(self.ws:request("x"))
    self.other:get("/")
    self.client:fire_request{{ request_type = "CHECK", name = "held", response_time = 0 }}
  end }} }})
"#,
        kv = kv.addr()
    );
    let handle = run(dir.path(), &plan, &target.url(), |h| count(h, "CHECK", "held").0 >= 5).await;
    // `run` quit the runner: its shards have closed their VMs.
    assert_eq!(errors(&handle), Vec::<String>::new());
    drop(handle);
}
