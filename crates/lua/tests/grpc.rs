//! gRPC from Lua plans, against the demo prediction server (REST and gRPC
//! users in one run, failures from trailers, bad calls named at their line).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarmer_engine::{LocalRunner, RunnerHandle, RunnerOptions};
use swarmer_target::{DemoTarget, PredictServer, TargetOptions};

fn proto() -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/predict/categorization.proto");
    file.to_string_lossy().into_owned()
}

fn write_plan(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("plan.lua");
    let text = format!("local swarmer = require('swarmer')\nswarmer.grpc.load({:?})\n{body}", proto());
    std::fs::write(&path, text).unwrap();
    path
}

async fn run(path: &Path, host: &str, users: usize, until: impl Fn(&RunnerHandle) -> bool) -> RunnerHandle {
    let plan = swarmer_lua::load_plan(path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunnerOptions { shards: 1, host: Some(host.into()), ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    handle.start(users, 1000.0);
    let started = Instant::now();
    loop {
        handle.flush().await;
        if until(&handle) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "not within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.quit().await;
    handle
}

fn count(handle: &RunnerHandle, method: &str, name: &str) -> (u64, u64) {
    let store = handle.stats().lock().unwrap();
    store.stats.entry(method, name).map_or((0, 0), |e| (e.num_requests, e.num_failures))
}

const METHOD: &str = "categorization.TextCategorization/GetPrediction";

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn rest_and_grpc_users_share_a_run_and_each_call_is_a_grpc_row() {
    let (web, grpc) = (
        DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap(),
        PredictServer::spawn("127.0.0.1:0", 1, None).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.user("Rest", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local r = self.client:post("/predict", {{ json = {{ text = "abc" }} }})
  assert(r:json().category == {category})
end }} }})
swarmer.user("Grpc", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local r = self.client:grpc("{METHOD}", {{ text = "abc" }}, {{ host = "{host}", metadata = {{ ["x-run"] = "1" }} }})
  assert(r.ok and r.status == "OK" and r.code == 0, r.message)
  assert(r.reply.category == {category} and r.reply.text == "abc" and r.reply.prediction_id:match("^p%-%d+$"))
  assert(r.metadata["x-run"] == "1" and r.elapsed > 0)
  -- Compressed, with binary metadata (raw bytes both ways).
  local z = self.client:grpc("{METHOD}", {{ text = "abc" }}, {{ host = "{host}", compression = "gzip",
    metadata = {{ ["x-trace-bin"] = "\0\255\n" }} }})
  assert(z.ok and z.reply.category == {category}, z.message)
  assert(z.metadata["x-grpc-encoding"] == "gzip" and z.metadata["x-trace-bin"] == "\0\255\n")
end }} }})
"#,
            category = swarmer_target::predict::category_of("abc"),
            host = grpc.url(),
        ),
    );
    let handle =
        run(&path, &web.url(), 2, |h| count(h, "grpc", METHOD).0 >= 20 && count(h, "POST", "/predict").0 >= 20).await;
    let (calls, failed) = count(&handle, "grpc", METHOD);
    assert_eq!(failed, 0);
    assert_eq!(count(&handle, "POST", "/predict").1, 0);
    // Every call recorded reached the server (a stopped user's call in
    // flight may have reached it unrecorded).
    assert!(grpc.served() >= calls && grpc.served() <= calls + 1, "{} served, {calls} recorded", grpc.served());
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.exceptions().count(), 0, "no task failed its asserts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_status_in_the_trailers_is_a_failure_named_by_the_status_and_a_deadline_ends_a_call() {
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.user("U", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local r = self.client:grpc("{METHOD}", {{ text = "fail:NOT_FOUND:no such text" }}, {{ name = "missing" }})
  assert(not r.ok and r.status == "NOT_FOUND" and r.code == 5 and r.message == "no such text" and r.reply == nil)
  local slow = self.client:grpc("{METHOD}", {{ text = "sleep:3000" }}, {{ name = "slow", timeout = 0.1 }})
  assert(slow.status == "DEADLINE_EXCEEDED", slow.status)
end }} }})
"#
        ),
    );
    let handle = run(&path, &grpc.url(), 1, |h| count(h, "grpc", "slow").0 >= 3).await;
    let (calls, failed) = count(&handle, "grpc", "missing");
    assert!(calls >= 3 && failed == calls, "{calls} calls, {failed} failed");
    let store = handle.stats().lock().unwrap();
    let errors: Vec<String> = store.stats.failures().map(|f| format!("{} {}: {}", f.method, f.name, f.error)).collect();
    assert!(errors.contains(&"grpc missing: NOT_FOUND: no such text".to_owned()), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("grpc slow: DEADLINE_EXCEEDED")), "{errors:?}");
    let slow = store.stats.entry("grpc", "slow").unwrap();
    assert!(
        slow.max_response_time_ms() < 1000.0,
        "a 0.1 s deadline ended the call: {} ms",
        slow.max_response_time_ms()
    );
    assert_eq!(store.stats.exceptions().count(), 0, "no task failed its asserts");
}

#[test]
fn bad_calls_and_files_are_errors_at_the_plans_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.plan.lua");
    std::fs::write(&missing, "local swarmer = require('swarmer')\n\nswarmer.grpc.load('missing.proto')\n").unwrap();
    let e = swarmer_lua::load_plan(&missing).err().unwrap().to_string();
    assert!(e.contains("nope.plan.lua:3:") && e.contains("swarmer.grpc.load:") && e.contains("missing.proto"), "{e}");

    let broken = dir.path().join("broken.proto");
    std::fs::write(&broken, "syntax = \"proto3\";\nmessage M { string a = 1 }\n").unwrap();
    let bad = dir.path().join("bad.plan.lua");
    std::fs::write(&bad, "local swarmer = require('swarmer')\nswarmer.grpc.load('broken.proto')\n").unwrap();
    let e = swarmer_lua::load_plan(&bad).err().unwrap().to_string();
    assert!(e.contains("bad.plan.lua:2:") && e.contains("broken.proto"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_wrong_field_or_method_is_an_error_at_the_calling_line() {
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.user("U", {{ wait_time = swarmer.constant(0.05), tasks = {{ function(self)
  local ok, e = pcall(function() self.client:grpc("{METHOD}", {{ txet = "a" }}) end)
  assert(not ok and e:find("plan.lua:4: client:grpc: a categorization.TextCategorizationInput message", 1, true), e)
  local ok2, e2 = pcall(function() self.client:grpc("categorization.TextCategorization/Predict", {{}}) end)
  assert(not ok2 and e2:find("has no method Predict (methods: GetPrediction)", 1, true), e2)
  local ok3, e3 = pcall(function() self.client:grpc("{METHOD}", {{}}, {{ retries = 3 }}) end)
  assert(not ok3 and e3:find("unknown option retries", 1, true), e3)
  local ok5, e5 = pcall(function() self.client:grpc("{METHOD}", {{}}, {{ timeout = 1e12 }}) end)
  assert(not ok5 and e5:find("option timeout: seconds above 0, at most 86400", 1, true), e5)
  local ok7, e7 = pcall(function() self.client:grpc("{METHOD}", {{}}, {{ compression = "brotli" }}) end)
  assert(not ok7 and e7:find('option compression: "gzip" or "deflate"', 1, true), e7)
  local ok6, e6 = pcall(function() table.sort({{ 1, 2 }}, function() return self.client:grpc("{METHOD}", {{}}) end) end)
  assert(not ok6 and e6:find("client:grpc: cannot wait here", 1, true), e6)
  local ok4, e4 = pcall(function() self.client:grpc("streams.Streams/Join", {{ text = "a" }}) end)
  assert(not ok4 and e4:find("streams.Streams.Join streams its requests: give a list of messages", 1, true), e4)
  self.client:fire_request({{ request_type = "check", name = "done", response_time = 1 }})
end }} }})
swarmer.grpc.load({streams:?})
"#,
            streams =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/grpc/streams.proto").to_string_lossy(),
        ),
    );
    let handle = run(&path, &grpc.url(), 1, |h| count(h, "check", "done").0 >= 2).await;
    let store = handle.stats().lock().unwrap();
    let exceptions: Vec<&str> = store.stats.exceptions().map(|e| e.msg.as_str()).collect();
    assert!(exceptions.is_empty(), "{exceptions:?}");
    assert_eq!(grpc.served(), 0, "no bad call was sent");
}

#[test]
fn the_proto_files_a_plan_loads_ship_with_it() {
    let plan = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/predict/plan.lua");
    let files = swarmer_lua::plan_files(&plan).unwrap();
    let names: Vec<String> =
        files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"categorization.proto".to_owned()), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_without_a_proto_file_calls_what_reflection_describes() {
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.lua");
    let plan = format!(
        r#"local swarmer = require('swarmer')
local services = swarmer.grpc.reflect("{host}")
assert(#services == 1 and services[1] == "categorization.TextCategorization", tostring(services[1]))
local ok, e = pcall(swarmer.grpc.reflect, "http://127.0.0.1:1", {{ timeout = 2 }})
assert(not ok and e:find("swarmer.grpc.reflect: reflection: UNAVAILABLE", 1, true), e)
swarmer.user("Reflected", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local r = self.client:grpc("{METHOD}", {{ text = "abc" }}, {{ host = "{host}" }})
  assert(r.ok and r.reply.category == {category}, r.message)
  local ok, e = pcall(swarmer.grpc.reflect, "{host}")
  assert(not ok and e:find("call it at the plan's top level", 1, true), e)
end }} }})
"#,
        host = grpc.url(),
        category = swarmer_target::predict::category_of("abc"),
    );
    std::fs::write(&path, plan).unwrap();
    let handle = run(&path, "http://127.0.0.1:1", 1, |h| count(h, "grpc", METHOD).0 >= 5).await;
    let (calls, failed) = count(&handle, "grpc", METHOD);
    assert!(calls >= 5 && failed == 0, "{calls} calls, {failed} failed");
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.exceptions().count(), 0, "{:?}", store.stats.exceptions().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn users_naming_a_channel_share_one_connection() {
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.user("Shared", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local r = self.client:grpc("{METHOD}", {{ text = "abc" }}, {{ host = "{host}", channel = "pool", name = "shared" }})
  assert(r.ok, r.message)
end }} }})
"#,
            host = grpc.url(),
        ),
    );
    let handle = run(&path, "http://127.0.0.1:1", 4, |h| count(h, "grpc", "shared").0 >= 40).await;
    assert_eq!(count(&handle, "grpc", "shared").1, 0);
    // Four users, one shard: one connection.
    assert_eq!(grpc.connections(), 1);

    // Without a channel name, each user has its own.
    let own = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.user("Own", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  assert(self.client:grpc("{METHOD}", {{ text = "abc" }}, {{ host = "{host}" }}).ok)
end }} }})
"#,
            host = own.url(),
        ),
    );
    run(&path, "http://127.0.0.1:1", 4, |h| count(h, "grpc", METHOD).0 >= 40).await;
    assert_eq!(own.connections(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_holds_a_conversation_over_an_interactive_stream() {
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let streams = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/grpc/streams.proto");
    let path = write_plan(
        dir.path(),
        &format!(
            r#"swarmer.grpc.load({streams:?})
swarmer.user("Chat", {{ wait_time = swarmer.constant(0.01), tasks = {{ function(self)
  local stream = self.client:grpc_stream("streams.Streams/Echo", {{ host = "{host}", name = "chat" }})
  local none, why = stream:receive(0.05)
  assert(none == nil and why == "timeout", tostring(why))
  for _, word in ipairs({{ "one", "two" }}) do
    assert(stream:send({{ text = word }}))
    local reply = assert(stream:receive(5))
    assert(reply.text == word and reply.prediction_id:match("^p%-%d+$"), reply.text)
  end
  assert(stream:send({{ text = "three" }}))
  local r = stream:finish()
  assert(r.ok and r.sent == 3 and r.received == 3, r.status .. " " .. r.sent .. " " .. r.received)
  local late, gone = stream:send({{ text = "late" }})
  assert(late == nil and gone == "the stream is finished", tostring(gone))
  -- A status the server ends with.
  local failing = self.client:grpc_stream("streams.Streams/Echo", {{ host = "{host}", name = "failing" }})
  assert(failing:send({{ text = "fail:NOT_FOUND:gone" }}))
  local nothing, ended = failing:receive(5)
  assert(nothing == nil and ended == "ended", tostring(ended))
  local f = failing:finish()
  assert(not f.ok and f.status == "NOT_FOUND" and f.message == "gone", f.status)
  local ok, e = pcall(function() stream:send({{ txet = "x" }}) end)
  assert(ok, e)  -- finished: nil and why, before the message is looked at
  local open = self.client:grpc_stream("streams.Streams/Echo", {{ host = "{host}" }})
  local ok2, e2 = pcall(function() open:send({{ txet = "x" }}) end)
  assert(not ok2 and e2:find("txet", 1, true), e2)
  open:close_send()
  assert(open:finish().ok)
end }} }})
"#,
            host = grpc.url(),
        ),
    );
    let handle = run(&path, "http://127.0.0.1:1", 1, |h| count(h, "grpc", "failing").0 >= 3).await;
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.exceptions().count(), 0, "{:?}", store.stats.exceptions().collect::<Vec<_>>());
    let chat = store.stats.entry("grpc", "chat").unwrap();
    assert!(chat.num_requests >= 3 && chat.num_failures == 0);
    let failing = store.stats.entry("grpc", "failing").unwrap();
    assert_eq!(failing.num_failures, failing.num_requests);
}
