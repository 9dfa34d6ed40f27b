//! Lua plans end to end: loaded per shard, run by the engine's runner
//! against the real demo target on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarmer_engine::{LocalRunner, RunnerHandle, RunnerOptions, RunnerState, TagFilter};
use swarmer_target::{DemoTarget, TargetOptions};

fn target() -> DemoTarget {
    DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap()
}

fn write_plan(dir: &Path, source: &str) -> PathBuf {
    let path = dir.join("plan.lua");
    std::fs::write(&path, source).unwrap();
    path
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua").join(name).join("plan.lua")
}

async fn start(path: &Path, host: &str, shards: usize, tags: TagFilter) -> RunnerHandle {
    let plan = swarmer_lua::load_plan(path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunnerOptions { shards, host: Some(host.into()), tags, ..Default::default() };
    LocalRunner::start(plan, options).await.unwrap()
}

/// Starts `users`, waits until `done` holds (every shard's statistics are
/// handed over before each look), then quits. A slow machine only makes it
/// wait longer; asserting after the quit also catches anything extra.
async fn run_until(handle: &RunnerHandle, users: usize, what: &str, done: impl FnMut(&RunnerHandle) -> bool) {
    handle.start(users, 1000.0);
    wait_until(handle, what, done).await;
    handle.quit().await;
}

/// Waits up to 15 s until `done` holds of the running test.
async fn wait_until(handle: &RunnerHandle, what: &str, mut done: impl FnMut(&RunnerHandle) -> bool) {
    let started = Instant::now();
    loop {
        handle.flush().await;
        if done(handle) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "not within 15 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exception_count(handle: &RunnerHandle, containing: &str) -> u64 {
    let store = handle.stats().lock().unwrap();
    store.stats.exceptions().filter(|e| e.msg.contains(containing)).map(|e| e.count).sum()
}

fn count(handle: &RunnerHandle, method: &str, name: &str) -> (u64, u64) {
    let store = handle.stats().lock().unwrap();
    store.stats.entry(method, name).map_or((0, 0), |e| (e.num_requests, e.num_failures))
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        "local swarmer = require('swarmer')\n\nswarmer.user('A', {\n  tasks = { function(self) end end },\n})\n",
    );
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:4:"), "{err}");
}

#[test]
fn definition_errors_name_the_plan_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(dir.path(), "local s = require('swarmer')\ns.user('A', { weight = 'heavy', tasks = {} })\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("weight must be a non-negative integer"), "{err}");

    let path = write_plan(
        dir.path(),
        "local s = require('swarmer')\ns.user('A', { wait_time = s.between(9, 5), tasks = {} })\n",
    );
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("between(9, 5)"), "{err}");

    let path = write_plan(dir.path(), "local s = require('swarmer')\ns.user('A', { tasks = {} })\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2: user class A has no tasks"), "{err}");

    let err = swarmer_lua::load_plan(Path::new("/no/such/plan.lua")).err().unwrap().to_string();
    assert!(err.contains("/no/such/plan.lua"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn quickstart_logs_in_on_start_then_runs_weighted_tasks() {
    let t = target();
    let handle = start(&example("quickstart"), &t.url(), 2, TagFilter::default()).await;
    run_until(&handle, 4, "four logins and four tasks", |h| {
        count(h, "POST", "/login").0 == 4 && count(h, "GET", "/").0 + count(h, "GET", "/profile").0 == 4
    })
    .await;
    assert_eq!(count(&handle, "POST", "/login"), (4, 0));
    let (index, _) = count(&handle, "GET", "/");
    let (profile, _) = count(&handle, "GET", "/profile");
    assert_eq!(index + profile, 4, "one task each before the 5-9 s wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_multi_file_plan_requires_its_common_module_and_keeps_cookies() {
    let t = target();
    let handle = start(&example("multi_file"), &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 3, "six profiles", |h| count(h, "GET", "/profile").0 >= 6).await;
    assert_eq!(count(&handle, "POST", "/login"), (3, 0));
    let (profiles, failures) = count(&handle, "GET", "/profile");
    assert!(profiles >= 6, "{profiles}");
    assert_eq!(failures, 0, "each user's session cookie came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn random_query_is_grouped_under_its_name() {
    let t = target();
    let handle = start(&example("random_query"), &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 2, "six requests", |h| count(h, "GET", "/index.html?ok=[random]").0 >= 6).await;
    let (n, f) = count(&handle, "GET", "/index.html?ok=[random]");
    assert!(n >= 6 && f == 0, "{n} {f}");
    assert_eq!(handle.stats().lock().unwrap().stats.num_names(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn errors_in_tasks_and_on_start_are_exceptions_and_users_carry_on() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("Clumsy", {
  wait_time = swarmer.constant(0.02),
  on_start = function(self)
    error("no login today")
  end,
  tasks = {
    oops = function(self)
      self.client:get("/")
      local missing = nil
      return missing.field
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 2, "both on_start errors and ten requests", |h| {
        exception_count(h, "no login today") == 2 && count(h, "GET", "/").0 >= 10
    })
    .await;
    let store = handle.stats().lock().unwrap();
    let exceptions: Vec<_> = store.stats.exceptions().collect();
    let on_start = exceptions.iter().find(|e| e.msg.contains("no login today")).expect("on_start error recorded");
    assert_eq!(on_start.count, 2);
    assert!(on_start.msg.contains("plan.lua:5:"), "{}", on_start.msg);
    let in_task = exceptions.iter().find(|e| e.msg.contains("attempt to index")).expect("task error recorded");
    assert!(in_task.msg.contains("plan.lua:11:"), "{}", in_task.msg);
    assert!(in_task.traceback.contains("stack traceback"), "{}", in_task.traceback);
    let requests = store.stats.entry("GET", "/").unwrap().num_requests;
    assert!(requests >= 10, "users kept running after errors: {requests}");
    assert_eq!(in_task.count, requests, "one exception per task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plans_own_yields_and_resumes_are_not_taken_for_operations() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local function check(cond, what) if not cond then error("check failed: " .. what, 2) end end
local runs = 0
swarmer.user("Yielder", {
  wait_time = swarmer.constant(0.02),
  tasks = {
    function(self)
      -- A request inside a coroutine of the plan's own yields to the plan
      -- (what it yields is the request's tag).
      local co = coroutine.wrap(function() return self.client:get("/") end)
      local tag = co()
      local ok, err = pcall(co)
      check(not ok and tostring(err):match("plan.lua:%d+: a request was resumed without a response"),
        "own coroutine " .. tostring(err))
      -- Values shaped like the driver's operations are still a plan's own
      -- yield, the request's tag included, alone or over a request's frame.
      runs = runs + 1
      if runs % 3 == 1 then
        coroutine.yield(0.01, 2)
      elseif runs % 3 == 2 then
        coroutine.yield(tag)
      else
        coroutine.yield(self.client, "/", nil, self.client[1], -1, tag)
      end
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 1, "three refused yields", |h| exception_count(h, "coroutine.yield from a task") >= 3).await;
    let store = handle.stats().lock().unwrap();
    let exceptions: Vec<_> = store.stats.exceptions().collect();
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    assert!(exceptions[0].msg.contains("coroutine.yield from a task"), "{}", exceptions[0].msg);
    assert!(exceptions[0].count >= 2, "{:?}", exceptions[0]);
    assert!(store.stats.entry("GET", "/").is_none(), "no request was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn request_options_and_catch_response() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("Careful", {
  wait_time = swarmer.constant(10),
  tasks = {
    function(self)
      local r = self.client:post("/echo", {
        params = { a = 1, b = "two words" },
        json = { items = { 1, 2 }, name = "x" },
        headers = { ["X-Trace"] = "7" },
        name = "echo-json",
        catch_response = true,
      })
      local body = r:json()
      if body.query == "a=1&b=two+words" and body.content_type == "application/json" then
        r:success()
      else
        r:failure("echo mismatch: " .. r.text)
      end
      local form = self.client:post("/echo", { data = { user = "ellen" }, name = "echo-form" }):json()
      assert(form.body == "user=ellen", form.body)
      local h = self.client:get("/headers", { headers = { ["User-Agent"] = "lua-agent" } }):json()
      assert(h["user-agent"] == "lua-agent", h["user-agent"])
      -- 404 marked as success, 200 marked as failure, 500 left unmarked.
      self.client:get("/missing", { catch_response = true }):success()
      self.client:get("/", { catch_response = true }):failure("wrong page")
      self.client:get("/status/500", { catch_response = true })
      local plain = self.client:get("/status/503")
      assert(plain.status_code == 503 and not plain.ok)
      swarmer.stop_user()
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 1, "the last two requests", |h| {
        count(h, "GET", "/status/500").0 == 1 && count(h, "GET", "/status/503").0 == 1
    })
    .await;
    assert_eq!(count(&handle, "POST", "echo-json"), (1, 0));
    assert_eq!(count(&handle, "POST", "echo-form"), (1, 0));
    assert_eq!(count(&handle, "GET", "/missing"), (1, 0));
    assert_eq!(count(&handle, "GET", "/"), (1, 1));
    assert_eq!(count(&handle, "GET", "/status/500"), (1, 1), "unmarked: default verdict at task end");
    assert_eq!(count(&handle, "GET", "/status/503"), (1, 1));
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.exceptions().count(), 0, "{:?}", store.stats.exceptions().collect::<Vec<_>>());
    assert!(store.stats.failures().any(|f| f.error == "CatchResponseError('wrong page')"));
}

/// Responses are made by the driver, and their strings may be reused from
/// the previous response: each must keep its own values, even when kept
/// after later requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn responses_keep_their_own_values_after_later_requests() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local function check(cond, what) if not cond then error("check failed: " .. what, 2) end end
swarmer.user("Keeper", {
  wait_time = swarmer.constant(10),
  tasks = {
    function(self)
      local kept = {}
      for i = 1, 3 do
        kept[#kept + 1] = { "home", self.client:get("/") }
        kept[#kept + 1] = { "home", self.client:get("/") }
        kept[#kept + 1] = { "echo", self.client:get("/echo?n=" .. i), i }
        -- A longer body: the same headers but for Content-Length.
        kept[#kept + 1] = { "echo", self.client:get("/echo?n=" .. i * 1000), i * 1000 }
        kept[#kept + 1] = { "home", self.client:get("/") }
        kept[#kept + 1] = { "index", self.client:get("/index.html") }
      end
      for n, k in ipairs(kept) do
        local kind, r, i = k[1], k[2], k[3]
        check(r.status_code == 200 and r.ok and r.error == nil, n .. " status")
        check(r.content == r.text, n .. " content")
        check(r.elapsed >= 0, n .. " elapsed")
        if kind == "home" then
          check(r.text == "Our example home page.", n .. " home text " .. r.text)
          check(r.url:match("/$"), n .. " home url " .. r.url)
          check(r.headers["content-type"]:match("^text/html"), n .. " home type")
        elseif kind == "index" then
          check(r.text:match("<h1>Index</h1>"), n .. " index text " .. r.text)
          check(r.url:match("/index.html$"), n .. " index url " .. r.url)
        else
          check(r:json().query == "n=" .. i, n .. " echo query " .. r.text)
          check(r.url:match("/echo%?n=" .. i .. "$"), n .. " echo url " .. r.url)
          check(r.headers["content-type"] == "application/json", n .. " echo type")
        end
        check(tonumber(r.headers["content-length"]) == #r.text, n .. " length")
      end
      -- Two responses with the same status, body, headers and URL: each
      -- has its own headers table.
      local a, b = self.client:get("/"), self.client:get("/")
      a.headers["x-mine"] = "a"
      check(b.headers["x-mine"] == nil and a.headers["x-mine"] == "a", "headers tables are per response")
      check(a.text == b.text and a.status_code == b.status_code and a.url == b.url, "same parts")
      for _, m in ipairs({ "get", "post", "put", "patch", "delete", "options" }) do
        local r = self.client[m](self.client, "/echo", { name = "method" })
        check(r:json().method == m:upper(), m .. " sent as " .. r.text)
      end
      check(self.client:head("/").text == "", "head has no body")
      check(self.client:request("delete", "/echo", { name = "method" }):json().method == "DELETE", "request(name)")
      local ok, err = pcall(self.client.request, self.client, "BAD METHOD", "/echo")
      check(not ok and tostring(err):match("invalid method"), "a bad method is an error: " .. tostring(err))
      ok, err = pcall(function() return self.client.get("/") end)
      check(not ok and tostring(err):match("call it on self.client"), "client.get without ':' " .. tostring(err))
      ok, err = pcall(function() return self.client:get({}) end)
      check(not ok and tostring(err):match("%.lua:%d+: expected a URL string, got table"), "URL at the line " .. tostring(err))
      ok, err = pcall(function() return self.client:get() end)
      check(not ok and tostring(err):match("expected a URL string, got no value"), "no URL " .. tostring(err))
      ok, err = pcall(function() return self.client.get() end)
      check(not ok and tostring(err):match("call it on self.client"), "no client " .. tostring(err))
      ok, err = pcall(function() return self.client:get("/\xff") end)
      check(not ok and tostring(err):match("%.lua:%d+: request: the URL is not valid UTF%-8"), "URL bytes " .. tostring(err))
      ok, err = pcall(function() self.client.get({}, "/") end)
      check(not ok and tostring(err):match("%.lua:%d+: request: call it on self.client"), "not a client " .. tostring(err))
      check(self.client:get("/", nil, "ignored").status_code == 200, "extra arguments are ignored")
      ok, err = pcall(function() return self.client:post("/echo", "body") end)
      check(not ok and tostring(err):match("expected an options table, got string"), "options " .. tostring(err))
      local failed = self.client:get("http://127.0.0.1:9/", { timeout = 2 })
      check(failed.status_code == 0 and not failed.ok and failed.error ~= nil, "failed request " .. tostring(failed.error))
      check(failed.text == "" and next(failed.headers) == nil, "failed request body and headers")
      -- However many results the caller wants, it gets the response (a
      -- statement's is not built: nothing could read it).
      check(select('#', self.client:get("/")) == 1, "all results: one")
      local function tail() return self.client:get("/") end
      check(tail().status_code == 200, "a tail call")
      local x, y = self.client:get("/")
      check(x.status_code == 200 and y == nil, "two wanted")
      check(({ self.client:get("/") })[1].text == "Our example home page.", "in a table")
      self.client:get("/", { name = "statement" })
      self.client:get("http://127.0.0.1:9/", { name = "statement failed", timeout = 2 })
      self.client:get("/status/503", { name = "statement caught", catch_response = true })
      self.client:get("/", { name = "checked" })
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 1, "the last request", |h| count(h, "GET", "checked").0 == 1).await;
    assert_eq!(count(&handle, "GET", "statement"), (1, 0));
    assert_eq!(count(&handle, "GET", "statement failed"), (1, 1));
    assert_eq!(count(&handle, "GET", "statement caught"), (1, 1));
    let store = handle.stats().lock().unwrap();
    assert_eq!(store.stats.exceptions().count(), 0, "{:?}", store.stats.exceptions().collect::<Vec<_>>());
    drop(store);
    assert_eq!(count(&handle, "GET", "checked"), (1, 0));
    assert_eq!(count(&handle, "PUT", "method"), (1, 0));
    assert_eq!(count(&handle, "DELETE", "method"), (2, 0));
    assert_eq!(count(&handle, "HEAD", "/"), (1, 0));
}

/// Edges of the coroutine driver: a client kept after its user stopped is
/// refused (not handed to whichever user comes next), `<close>` variables
/// of a task that raises are closed, and out-of-range durations are
/// errors, not panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn kept_clients_close_variables_and_bad_durations() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local kept
local raised, closed = 0, 0
swarmer.user("Short", {
  fixed_count = 1,
  tasks = { function(self) kept = self.client; self:stop_user() end },
})
swarmer.user("Long", {
  fixed_count = 1,
  wait_time = swarmer.constant(0.02),
  tasks = { function(self)
    if kept then
      local ok, err = pcall(kept.get, kept, "/")
      if not ok then
        assert(tostring(err):match("this client's user has stopped"), err)
        self.client:get("/", { name = "refused" })
        kept = nil
      end
    end
    if raised < 3 then
      raised = raised + 1
      local guard <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
      error("boom")
    end
    local ok, err = pcall(swarmer.sleep, 1e20)
    assert(not ok and tostring(err):match("sleep: expected non%-negative seconds"), tostring(err))
    ok, err = pcall(self.client.get, self.client, "/", { timeout = 1e300 })
    assert(not ok and tostring(err):match("timeout must be a positive number"), tostring(err))
    if kept == nil then
      self.client:get("/", { name = "closed " .. closed })
      self:stop_user()
    end
  end },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 2, "every edge", |h| {
        count(h, "GET", "refused").0 == 1 && count(h, "GET", "closed 3").0 == 1 && exception_count(h, "boom") == 3
    })
    .await;
    assert_eq!(count(&handle, "GET", "refused"), (1, 0));
    assert_eq!(count(&handle, "GET", "closed 3"), (1, 0));
    let store = handle.stats().lock().unwrap();
    let errors: Vec<_> = store.stats.exceptions().map(|e| (e.msg.clone(), e.count)).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].0.contains("boom") && errors[0].1 == 3, "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn task_sets_interrupt_sequences_keep_order_and_stop_user_ends_the_user() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local checkout = swarmer.sequential_task_set("checkout", {
  tasks = {
    function(self) self.client:get("/index.html", { name = "1-cart" }) end,
    function(self) self.client:get("/index.html", { name = "2-pay" }) end,
    function(self)
      self.user.visits = (self.user.visits or 0) + 1
      self:interrupt()
    end,
  },
})
swarmer.user("Buyer", {
  tasks = {
    checkout,
    swarmer.task("leave", 1, function(self)
      if (self.visits or 0) >= 3 then
        self.client:get("/", { name = "done" })
        self:stop_user()
      end
    end),
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    handle.start(1, 10.0);
    for _ in 0..300 {
        if count(&handle, "GET", "done").0 == 1 && handle.stats().lock().unwrap().user_count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.quit().await;
    assert_eq!(count(&handle, "GET", "done").0, 1, "the user stopped itself once");
    let (cart, _) = count(&handle, "GET", "1-cart");
    let (pay, _) = count(&handle, "GET", "2-pay");
    assert_eq!(cart, pay, "sequences run whole");
    assert!(cart >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tags_pick_the_tasks_that_run() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local page = "/profile"
swarmer.user("Tagged", {
  wait_time = swarmer.constant(0.02),
  tasks = {
    swarmer.task{ name = "web", tags = { "web" }, run = function(self) self.client:get(page) end },
    swarmer.task{ name = "api", tags = { "api" }, run = function(self) self.client:get("/headers") end },
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::new(Some(vec!["web".into()]), vec![])).await;
    run_until(&handle, 1, "ten requests", |h| h.stats().lock().unwrap().stats.total().num_requests >= 10).await;
    assert_eq!(handle.state(), RunnerState::Stopped);
    let store = handle.stats().lock().unwrap();
    let names: Vec<&str> = store.stats.entries().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["/profile"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn measure_and_fire_request_record_other_protocols() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("Custom", {
  wait_time = swarmer.constant(10),
  tasks = {
    function(self)
      self.client:measure("grpc", "Greeter/SayHello", function() swarmer.sleep(0.05) end)
      pcall(function()
        self.client:measure("grpc", "Greeter/Fail", function() error("unavailable") end)
      end)
      self.client:fire_request{ request_type = "redis", name = "GET key", response_time = 12.5, response_length = 3 }
      self.client:fire_request{ request_type = "redis", name = "SET key", response_time = 1, exception = "READONLY" }
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 1, "every sample", |h| {
        let store = h.stats().lock().unwrap();
        ["Greeter/SayHello", "Greeter/Fail"].iter().all(|n| store.stats.entry("grpc", n).is_some())
            && store.stats.entry("redis", "GET key").is_some()
            && store.stats.failures().any(|f| f.error == "READONLY")
    })
    .await;
    let store = handle.stats().lock().unwrap();
    let hello = store.stats.entry("grpc", "Greeter/SayHello").unwrap();
    assert_eq!((hello.num_requests, hello.num_failures), (1, 0));
    assert!(hello.min_response_time_ms().unwrap() >= 50.0, "the sleep was timed");
    assert_eq!(store.stats.entry("grpc", "Greeter/Fail").unwrap().num_failures, 1);
    let get = store.stats.entry("redis", "GET key").unwrap();
    assert_eq!((get.max_response_time_ms(), get.total_content_length), (12.5, 3));
    assert!(store.stats.failures().any(|f| f.error == "READONLY" && f.method == "redis"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_background_checker_stops_the_test_when_the_failure_ratio_passes_20_percent() {
    let t = target();
    let handle = start(&example("fail_ratio_checker"), &t.url(), 2, TagFilter::default()).await;
    let mut events = handle.subscribe();
    handle.start(4, 100.0);
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(swarmer_engine::RunnerEvent::TestStopped) = events.recv().await {
                break;
            }
        }
    })
    .await;
    assert!(stopped.is_ok(), "the checker stopped the test");
    handle.quit().await;
    let store = handle.stats().lock().unwrap();
    assert!(store.stats.total().fail_ratio() > 0.2, "{}", store.stats.total().fail_ratio());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn test_data_lifecycle_hooks_run_once_per_process_and_share_data_with_every_shard() {
    // Two shards: the listeners run once (one test start, not one per
    // shard), and the three accounts they queue go to three users, one
    // each, whatever their shard; the fourth finds none and stops.
    let t = target();
    let handle = start(&example("test_data_lifecycle"), &t.url(), 2, TagFilter::default()).await;
    run_until(&handle, 4, "three users started and six profiles", |h| {
        count(h, "lifecycle", "4-user-start-sees-init-and-one-test-start").0 == 3 && count(h, "GET", "/profile").0 >= 6
    })
    .await;
    assert_eq!(count(&handle, "lifecycle", "4-user-start-sees-init-and-one-test-start"), (3, 0));
    assert_eq!(count(&handle, "lifecycle", "6-user-stop"), (3, 0));
    assert_eq!(count(&handle, "POST", "/login"), (3, 0));
    let (profiles, wrong_user) = count(&handle, "GET", "/profile");
    assert!(profiles >= 6 && wrong_user == 0, "{profiles} {wrong_user}");
}

#[test]
fn unknown_events_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(dir.path(), "local s = require('swarmer')\ns.events.bogus:add_listener(print)\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("swarmer.events.bogus is not available"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn csv_rows_are_unique_per_user_across_shards_and_json_loads() {
    let t = target();
    let handle = start(&example("test_data"), &t.url(), 2, TagFilter::default()).await;
    // Four users, three rows: the fourth user finds none and stops itself.
    run_until(&handle, 4, "three logins, six profiles, six products", |h| {
        count(h, "POST", "/login").0 == 3
            && count(h, "GET", "/profile").0 >= 6
            && count(h, "GET", "/index.html?product=[name]").0 >= 6
    })
    .await;
    assert_eq!(count(&handle, "POST", "/login"), (3, 0));
    let (profiles, wrong_user) = count(&handle, "GET", "/profile");
    assert!(profiles >= 6, "{profiles}");
    assert_eq!(wrong_user, 0, "every user kept its own account");
    assert!(count(&handle, "GET", "/index.html?product=[name]").0 >= 6);
}

#[test]
fn missing_data_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(dir.path(), "local s = require('swarmer')\nlocal d = s.csv('nope.csv')\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("nope.csv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn event_listeners_hear_locusts_events_in_order() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.log");
    let path = write_plan(
        dir.path(),
        &format!(
            r#"local swarmer = require("swarmer")
local log = assert(io.open("{log}", "a"))
local function note(s) log:write(s .. "\n"); log:flush() end
swarmer.events.init:add_listener(function() note("init " .. tostring(swarmer.runner.process)) end)
for _, name in ipairs({{ "test_start", "test_stopping", "test_stop", "quitting", "reset_stats" }}) do
  swarmer.events[name]:add_listener(function() note(name) end)
end
swarmer.events.spawning_complete:add_listener(function(n) note("spawning_complete " .. n) end)
local seen = 0
swarmer.events.request:add_listener(function(r)
  if seen == 0 then note(("request %s %s %s"):format(r.request_type, r.name, tostring(r.exception))) end
  seen = seen + 1
end)
swarmer.events.user_error:add_listener(function(message) note("user_error " .. message) end)
swarmer.user("U", {{
  wait_time = swarmer.constant(0.05),
  tasks = {{ function(self) self.client:get("/status/500"); error("boom") end }},
}})
"#,
            log = log_path.display()
        ),
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    let logged = |what: &str| std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(what));
    handle.start(2, 100.0);
    wait_until(&handle, "spawning complete, a request and a user error heard", |_| {
        logged("spawning_complete") && logged("request GET") && logged("user_error")
    })
    .await;
    handle.reset_stats();
    wait_until(&handle, "the reset heard", |_| logged("reset_stats")).await;
    handle.quit().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let position = |prefix: &str| {
        lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} missing: {log}"))
    };
    assert!(position("init true") < position("test_start"));
    assert!(position("test_start") < position("spawning_complete 2"));
    assert!(
        lines.contains(
            &"request GET /status/500 HTTPError('500 Server Error: Internal Server Error for url: /status/500')"
        ),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.starts_with("user_error ") && l.contains("plan.lua:17: boom")), "{log}");
    assert!(position("reset_stats") < position("test_stopping"));
    let stop = lines.iter().position(|l| *l == "test_stop").unwrap_or_else(|| panic!("test_stop missing: {log}"));
    assert!(position("test_stopping") < stop);
    assert!(stop < position("quitting"));
}

#[tokio::test]
async fn plan_options_are_read_when_used_so_a_new_value_reaches_the_next_test() {
    let t = target();
    let path = example("custom_options");
    let plan =
        swarmer_lua::load_plan_with_options(&path, [("page".to_string(), "/profile".to_string())].into()).unwrap();
    let declared: Vec<&str> = plan.options.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(declared, ["page", "pause", "verbose"]);
    let values = plan.option_values.clone();
    let options = RunnerOptions { shards: 1, host: Some(t.url()), ..Default::default() };
    let handle = swarmer_engine::LocalRunner::start(plan, options).await.unwrap();
    handle.start(1, 1000.0);
    wait_until(&handle, "a request to /profile", |h| count(h, "GET", "/profile").0 > 0).await;
    handle.stop();
    wait_until(&handle, "the test to stop", |h| h.state() == RunnerState::Stopped).await;
    // What the web UI's form does before the next test.
    values.set("page", "/headers".into());
    run_until(&handle, 1, "a request to /headers", |h| count(h, "GET", "/headers").0 > 0).await;
    assert!(count(&handle, "GET", "/headers").0 > 0, "the new value reached the users");
}

#[test]
fn option_choices_are_declared_and_a_default_outside_them_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.add_option{ name = "region", default = "eu", choices = { "eu", "us", 3 } }
swarmer.user("U", { tasks = { function(self) end } })
"#,
    );
    let plan = swarmer_lua::load_plan(&good).unwrap();
    assert_eq!(plan.options[0].choices, ["eu", "us", "3"]);
    for (declaration, expected) in [
        (
            r#"{ name = "region", default = "mars", choices = { "eu", "us" } }"#,
            r#"the default "mars" is not one of the choices (eu, us)"#,
        ),
        (r#"{ name = "region", choices = { "eu", {} } }"#, "choice 2 is a table, not a string or number"),
        (r#"{ name = "flag", default = false, choices = { "x" } }"#, "choices must be a list of strings or numbers"),
    ] {
        let bad = write_plan(
            dir.path(),
            &format!("local swarmer = require(\"swarmer\")\n\nswarmer.add_option{declaration}\n"),
        );
        let err = swarmer_lua::load_plan(&bad).err().expect("refused").to_string();
        assert!(err.contains("plan.lua:3:") && err.contains(expected), "{err}");
    }
}

#[tokio::test]
async fn the_idle_benchmark_plan_makes_one_request_per_user_then_waits() {
    let t = target();
    let handle = start(&example("idle"), &t.url(), 1, TagFilter::default()).await;
    handle.start(3, 1000.0);
    wait_until(&handle, "three requests", |h| count(h, "GET", "/").0 == 3).await;
    // And no more: each user waits after its one request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.quit().await;
    assert_eq!(count(&handle, "GET", "/"), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn listeners_and_handlers_run_once_per_process_may_wait_and_call_http_and_local_messages_arrive() {
    // Two shards. init and test_start run once; test_start's recorded
    // request appears once; a message sent in a local run reaches the
    // process's own handler, which waits, makes an unrecorded request and
    // queues four names that four users on both shards take, one each.
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local names = swarmer.queue("names")
swarmer.register_message("names", function(data, from)
  swarmer.sleep(0.01)
  local r = swarmer.http_client():get("/")
  assert(r.status_code == 200)
  names:extend(data)
  swarmer.shared.from = from
end)
swarmer.events.init:add_listener(function()
  swarmer.sleep(0.01)
  swarmer.shared.inits = (swarmer.shared.inits or 0) + 1
end)
swarmer.events.test_start:add_listener(function()
  swarmer.http_client{ record = true }:get("/", { name = "setup" })
  swarmer.send_message("names", { "a", "b", "c", "d" })
end)
swarmer.user("U", {
  wait_time = swarmer.constant(0.05),
  on_start = function(self)
    local name
    for _ = 1, 200 do
      name = names:shift()
      if name then break end
      swarmer.sleep(0.01)
    end
    local seen = ("user %s from %s inits %s"):format(name, swarmer.shared.from, swarmer.shared.inits)
    self.client:get("/", { name = seen })
  end,
  tasks = { function(self) swarmer.sleep(0.05) end },
})
"#,
    );
    let handle = start(&path, &t.url(), 2, TagFilter::default()).await;
    run_until(&handle, 4, "four users took a name", |h| {
        ["a", "b", "c", "d"].iter().all(|n| count(h, "GET", &format!("user {n} from local inits 1")).0 == 1)
    })
    .await;
    for name in ["a", "b", "c", "d"] {
        assert_eq!(count(&handle, "GET", &format!("user {name} from local inits 1")), (1, 0), "{name}");
    }
    assert_eq!(count(&handle, "GET", "setup"), (1, 0), "test_start ran once");
    assert_eq!(count(&handle, "GET", "/"), (0, 0), "the handler's client is not recorded");
}

#[test]
fn http_clients_while_the_plan_loads_and_unknown_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(dir.path(), "local s = require('swarmer')\nlocal c = s.http_client()\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("not while it loads"), "{err}");
    let path = write_plan(dir.path(), "local s = require('swarmer')\nlocal c = s.http_client{ hots = 'x' }\n");
    let err = swarmer_lua::load_plan(&path).err().unwrap().to_string();
    assert!(err.contains("plan.lua:2:") && err.contains("unknown option hots"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn plans_read_per_name_statistics_with_percentiles_and_the_live_user_counts() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.spawn(function()
  while true do
    swarmer.sleep(0.1)
    local fast = swarmer.stats("fast")
    if fast and fast.num_requests >= 5 then
      local p = fast.percentiles
      local ok = fast.method == "GET" and p[0.5] <= p[0.95] and p[0.95] <= p[1.0]
        and fast.max_response_time == p[1.0] and swarmer.stats("nothing") == nil
        and swarmer.stats("fast", "POST") == nil
        and swarmer.runner.user_count == 2 and swarmer.runner.target_user_count == 2
        and swarmer.stats().num_requests >= fast.num_requests
      swarmer.http_client{ record = true }:get("/", { name = "checked " .. tostring(ok) })
      return
    end
  end
end)
swarmer.user("U", { wait_time = swarmer.constant(0.02),
  tasks = { function(self) self.client:get("/", { name = "fast" }) end } })
"#,
    );
    let handle = start(&path, &t.url(), 2, TagFilter::default()).await;
    run_until(&handle, 2, "the plan checked its statistics", |h| {
        count(h, "GET", "checked true").0 + count(h, "GET", "checked false").0 == 1
    })
    .await;
    assert_eq!(count(&handle, "GET", "checked true"), (1, 0));
}

#[test]
fn definition_typos_and_locust_0x_fields_are_load_errors_that_name_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let load_error = |body: &str| {
        let path = write_plan(dir.path(), &format!("local swarmer = require('swarmer')\n{body}\n"));
        swarmer_lua::load_plan(&path).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let cases = [
        (
            "swarmer.user('U', { wait_tiem = swarmer.constant(1), tasks = { function() end } })",
            "did you mean wait_time?",
        ),
        (
            "swarmer.user('U', { hots = 'http://x', tasks = { function() end } })",
            "unknown field hots (did you mean host?)",
        ),
        ("swarmer.user('U', { min_wait = 5000, max_wait = 9000, tasks = { function() end } })", "swarmer.between"),
        ("swarmer.user('U', { wait_function = function() return 1 end, tasks = { function() end } })", "wait_time ="),
        ("swarmer.user('U', { tasks = { function() end, 'oops' } })", "tasks[2] is the string \"oops\""),
        ("swarmer.user('U', { tasks = { login = 42 } })", "tasks[\"login\"] is a number"),
        (
            "swarmer.user('U', { tasks = { swarmer.task_set('S', { tasks = { function() end }, on_strat = print }) } })",
            "swarmer.task_set(S): unknown field on_strat (did you mean on_start?)",
        ),
        ("swarmer.user('U', { tasks = { swarmer.task{ run = print, wieght = 2 } } })", "did you mean weight?"),
        (
            "swarmer.user('U', { connections = { mx = 2 }, tasks = { function() end } })",
            "swarmer.user(U).connections: unknown field mx (did you mean max?)",
        ),
        (
            "swarmer.user('U', { connections = { max = 0 }, tasks = { function() end } })",
            "connections.max must be a positive integer, got 0",
        ),
        (
            "swarmer.user('U', { connections = 4, tasks = { function() end } })",
            "connections must be a table { max = n, shared = true|false }",
        ),
    ];
    for (body, expected) in cases {
        let err = load_error(body);
        assert!(err.contains("plan.lua:2:") && err.contains(expected), "{body}\n→ {err}");
    }
    // Data and helper functions that are no typo stay, read through self.
    assert_eq!(load_error("swarmer.user('U', { products = { 1 }, login = print, tasks = { function() end } })"), "");
    let plurals = "swarmer.user('U', { hosts = {}, names = {}, pages = {}, weights = {}, tasks = { function() end } })";
    assert_eq!(load_error(plurals), "", "data fields named like a known one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_response_method_called_with_a_dot_names_the_plans_line() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self)\n\
           local r = self.client:get('/')\n\
           r.json()\n\
         end } })\n",
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    run_until(&handle, 1, "the mistake reported", |h| exception_count(h, "call it with a colon") > 0).await;
    assert!(exception_count(&handle, "plan.lua:4: json: call it with a colon: response:json()") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_second_runner_of_the_same_plan_gets_a_process_vm_of_its_own_and_runs_its_hooks() {
    // The first runner adopts the VM that described the plan; a second
    // runner of the same Plan in this process loads a new process VM on
    // the plan's thread. Both run their test_start listeners once and
    // their users see what those listeners shared.
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.events.test_start:add_listener(function()
  swarmer.shared.starts = (swarmer.shared.starts or 0) + 1
end)
swarmer.user("U", { wait_time = swarmer.constant(0.05), tasks = { function(self)
  self.client:get("/", { name = "starts " .. tostring(swarmer.shared.starts) })
end } })
"#,
    );
    let plan = swarmer_lua::load_plan(&path).unwrap();
    for (round, expected) in [(1, "starts 1"), (2, "starts 2")] {
        let options = RunnerOptions { shards: 2, host: Some(t.url()), ..Default::default() };
        let handle = LocalRunner::start(plan.clone(), options).await.unwrap();
        run_until(&handle, 2, "users saw the test_start", |h| count(h, "GET", expected).0 >= 2).await;
        let other = if round == 1 { "starts 2" } else { "starts 3" };
        assert_eq!(count(&handle, "GET", other).0, 0, "round {round}: test_start ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_task_sets_helpers_and_fields_are_its_own_and_nested_sets_reach_their_parent() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local inner = swarmer.task_set("inner", {
  depth = "inner",
  tasks = {
    function(self)
      -- its own field first, then the outer set's helper and the user's data
      self.client:get("/", { name = self.depth .. "-" .. self.parent:label() .. "-" .. self.user.kind })
      self.parent.inner_visits = (self.parent.inner_visits or 0) + 1
      self:interrupt()
    end,
  },
})
local account = swarmer.task_set("account", {
  depth = "outer",
  login = function(self)
    self.token = "t" .. self.user.id
    self.client:get("/headers", { name = "login" })
  end,
  label = function(self) return self.depth end,
  on_start = function(self)
    -- each entry into the set has a new self, as Locust makes a new TaskSet
    assert(self.entered == nil, "a field of the last visit is gone")
    self.entered = true
    self:login()
  end,
  tasks = {
    swarmer.task("profile", 3, function(self)
      assert(self.token == "t" .. self.user.id, "the set's own field")
      assert(self.user.token == nil, "a set's field stays on the set")
      self.client:get("/profile", { name = "profile-" .. self.depth })
      if (self.inner_visits or 0) >= 2 then self:interrupt() end
    end),
    inner,
  },
})
swarmer.user("Member", {
  kind = "member",
  depth = "user",
  tasks = {
    account,
    function(self)
      assert(self.token == nil and self.depth == "user", "the user does not see the set's fields")
      self.client:get("/", { name = "home-" .. self.depth })
    end,
  },
})
"#,
    );
    let handle = start(&path, &t.url(), 2, TagFilter::default()).await;
    run_until(&handle, 4, "every kind of request", |h| {
        count(h, "GET", "inner-outer-member").0 >= 4
            && count(h, "GET", "home-user").0 >= 4
            && count(h, "GET", "login").0 >= 8
    })
    .await;
    assert_eq!(exception_count(&handle, ""), 0, "{:?}", {
        let store = handle.stats().lock().unwrap();
        store.stats.exceptions().map(|e| e.msg.clone()).collect::<Vec<_>>()
    });
    assert!(count(&handle, "GET", "login").0 >= 8, "on_start called the set's helper, on every entry of 4 users");
    assert!(count(&handle, "GET", "profile-outer").0 >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn connections_are_capped_per_user_or_shared_by_a_class() {
    let (shared_target, per_user_target) = (target(), target());
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        &format!(
            r#"local swarmer = require("swarmer")
swarmer.user("Pooled", {{
  host = "{}",
  weight = 1,
  connections = {{ max = 2, shared = true }},
  tasks = {{ function(self) self.client:get("/delay/5", {{ name = "pooled" }}) end }},
}})
swarmer.user("Capped", {{
  host = "{}",
  weight = 1,
  connections = {{ max = 1 }},
  tasks = {{ function(self)
    -- three requests at once from one user: with one connection they take turns
    local done = 0
    for _ = 1, 3 do
      swarmer.spawn(function() self.client:get("/delay/5", {{ name = "capped" }}); done = done + 1 end)
    end
    while done < 3 do swarmer.sleep(0.005) end
  end }},
}})
"#,
            shared_target.url(),
            per_user_target.url()
        ),
    );
    let plan = swarmer_lua::load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunnerOptions { shards: 2, ..Default::default() };
    let handle = LocalRunner::start(plan, options).await.unwrap();
    run_until(&handle, 16, "both classes' requests", |h| {
        count(h, "GET", "pooled").0 >= 100 && count(h, "GET", "capped").0 >= 100
    })
    .await;
    assert_eq!(count(&handle, "GET", "pooled").1 + count(&handle, "GET", "capped").1, 0);
    let pooled = shared_target.connections();
    assert!(
        pooled.most_open() <= 2,
        "8 users share 2 connections per process: {} (accepted {})",
        pooled.most_open(),
        pooled.accepted()
    );
    // Also at the end: users stopped while they waited for a connection
    // do not open one when a stopped user frees its slot.
    assert!(pooled.accepted() <= 2, "and keep them, to the end: {} accepted", pooled.accepted());
    let capped = per_user_target.connections();
    assert!(capped.most_open() <= 8, "one connection per user: {}", capped.most_open());
    assert!(capped.most_open() >= 2);
}

/// A plan sets the load and the class mix while the test runs
/// (`swarmer.runner.set_load`): users move between classes.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_sets_the_user_count_and_the_class_mix_while_the_test_runs() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
local function page(self) self.client:get("/") end
swarmer.user("Weekday", { wait_time = swarmer.constant(0.05), tasks = { page } })
swarmer.user("Weekend", { wait_time = swarmer.constant(0.05), tasks = { page } })
swarmer.user("Admin", { fixed_count = 1, wait_time = swarmer.constant(0.05), tasks = { page } })
swarmer.register_message("phase", function(n)
  if n == 1 then swarmer.runner.set_load{ users = 7, spawn_rate = 100, mix = { Weekday = 1, Weekend = 2 } } end
  if n == 2 then swarmer.runner.set_load{ spawn_rate = 100, counts = { Weekday = 5, Weekend = 0 } } end
  if n == 3 then swarmer.runner.set_load{ users = 6, spawn_rate = 100 } end
end)
"#,
    );
    let handle = start(&path, &t.url(), 2, TagFilter::default()).await;
    let counts = |h: &RunnerHandle| h.stats().lock().unwrap().class_counts.clone();
    let want = |pairs: &[(&str, usize)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    handle.start(3, 100.0);
    wait_until(&handle, "the plan's weights", |h| counts(h) == want(&[("Admin", 1), ("Weekday", 1), ("Weekend", 1)]))
        .await;
    handle.deliver_message(swarmer_engine::ClusterMessage {
        kind: "phase".into(),
        data: "1".into(),
        peer: "test".into(),
    });
    wait_until(&handle, "a 1:2 mix", |h| counts(h) == want(&[("Admin", 1), ("Weekday", 2), ("Weekend", 4)])).await;
    handle.deliver_message(swarmer_engine::ClusterMessage {
        kind: "phase".into(),
        data: "2".into(),
        peer: "test".into(),
    });
    wait_until(&handle, "exact counts", |h| counts(h) == want(&[("Admin", 1), ("Weekday", 5), ("Weekend", 0)])).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, 6);
    // Back to the plan's weights (1:1 after the fixed Admin): users move.
    handle.deliver_message(swarmer_engine::ClusterMessage {
        kind: "phase".into(),
        data: "3".into(),
        peer: "test".into(),
    });
    wait_until(&handle, "the plan's weights again", |h| {
        counts(h) == want(&[("Admin", 1), ("Weekday", 3), ("Weekend", 2)])
    })
    .await;
    handle.quit().await;
}

#[test]
fn set_load_names_a_class_the_plan_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.user('Weekday', { tasks = { function() end } })\n\
         local ok, err = pcall(swarmer.runner.set_load, { users = 2, spawn_rate = 1, mix = { Weekdya = 1 } })\n\
         assert(not ok and err:find('no user class named Weekdya %(classes: Weekday%)'), err)\n\
         local ok2, err2 = pcall(swarmer.runner.set_load, { users = 2, spawn_rate = 0 })\n\
         assert(not ok2 and err2:find('spawn_rate must be a number above 0'), err2)\n\
         local ok3, err3 = pcall(swarmer.runner.set_load, { users = 2, spawn_rate = 1, mix = { Weekday = 4000000000 } })\n\
         assert(not ok3 and err3:find('Weekday must be a whole number from 0 to 10000'), err3)\n",
    );
    swarmer_lua::load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
}

/// A plan asks for an arrival rate (`set_load{ arrival_rate = ... }`): the
/// runner runs iterations at that rate from a pool, counted as iterations.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plan_sets_an_arrival_rate_while_the_test_runs() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("U", { wait_time = swarmer.constant(5), tasks = { function(self) self.client:get("/") end } })
swarmer.register_message("open", function()
  swarmer.runner.set_load{ users = 2, arrival_rate = "1200/m", max_users = 3 }
end)
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    handle.start(1, 100.0);
    wait_until(&handle, "the closed test", |h| h.stats().lock().unwrap().user_count == 1).await;
    handle.deliver_message(swarmer_engine::ClusterMessage {
        kind: "open".into(),
        data: "0".into(),
        peer: "test".into(),
    });
    wait_until(&handle, "the arrival rate", |h| h.stats().lock().unwrap().arrival.is_some()).await;
    let arrival = handle.stats().lock().unwrap().arrival.clone().unwrap();
    assert_eq!(arrival, "20/s (users: 2 pre-allocated, at most 3)");
    // Each reading after a flush: shards hand their counts over about once
    // a second, and a stale reading is off by up to a second's iterations.
    let started = |h: &RunnerHandle| h.stats().lock().unwrap().stats.iterations().started;
    handle.flush().await;
    let before = (started(&handle), t.requests_served());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    handle.flush().await;
    let after = (started(&handle), t.requests_served());
    // 20/s for 2 s; a closed user waiting 5 s would have sent none.
    let (iterations, served) = (after.0 - before.0, after.1 - before.1);
    assert!((36..=44).contains(&iterations), "{iterations} iterations in 2 s at 20/s");
    assert!(served.abs_diff(iterations) <= 2, "{served} served, {iterations} iterations");
    handle.quit().await;
}

/// A Lua shape's step may be an arrival-rate step, ramping to
/// `arrival_target` by its `ends_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_lua_shapes_step_may_ramp_an_arrival_rate() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("U", { wait_time = swarmer.constant(5), tasks = { function(self) self.client:get("/") end } })
swarmer.shape("open", { tick = function(run_time)
  if run_time < 3 then return 2, nil, nil, { name = "ramp", ends_at = 3, arrival_rate = 0, arrival_target = 40 } end
  return nil
end })
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    handle.start(1, 1.0);
    wait_until(&handle, "the ramp", |h| h.stats().lock().unwrap().arrival.is_some()).await;
    let arrival = handle.stats().lock().unwrap().arrival.clone().unwrap();
    assert!(arrival.starts_with("0/s → 40/s over "), "{arrival}");
    wait_until(&handle, "the shape's end", |h| h.stats().lock().unwrap().state == RunnerState::Stopped).await;
    // 0 to 40/s over 3 s: 60 iterations.
    handle.flush().await;
    let started = handle.stats().lock().unwrap().stats.iterations().started;
    assert!((52..=64).contains(&started), "{started} iterations on a ramp of 60");
    handle.quit().await;
}

/// Bad arrival settings in `set_load` name the field and the plan's line.
#[test]
fn set_load_names_a_bad_arrival_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', { tasks = { function() end } })\n\
         local function refused(load, why)\n\
           local ok, err = pcall(function() swarmer.runner.set_load(load) end)\n\
           assert(not ok and err:find(why, 1, true) and err:find('plan.lua:4:', 1, true), err)\n\
         end\n\
         refused({ users = 2, arrival_rate = 'fast' }, \"set_load: arrival_rate: arrival rate 'fast'\")\n\
         refused({ users = 2, arrival_rate = -1 }, 'set_load: arrival_rate: expected iterations per second')\n\
         refused({ users = 2, arrival_rate = 5, arrival_stages = '30s' }, 'set_load: arrival_stages: arrival stage')\n\
         refused({ users = 4, arrival_rate = 5, max_users = 2 }, 'set_load: users / max_users:')\n\
         refused({ users = 0, arrival_rate = 5 }, 'set_load: users / max_users:')\n\
         refused({ users = 2, max_users = 3, spawn_rate = 1 }, 'set_load: max_users needs an arrival_rate')\n\
         refused({ users = 2, arrival_rate = 5, max_users = 0 }, 'set_load: max_users must be a whole number')\n",
    );
    swarmer_lua::load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
}

/// A Lua shape's tick may name its step and say when it ends: marks carry
/// the name, a new count within a named step is not a new step, and the web
/// UI gets the step's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_lua_shapes_named_steps_are_marked_by_name_with_their_end() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("U", { wait_time = swarmer.constant(0.05), tasks = { function(self) self.client:get("/") end } })
swarmer.shape("named", { tick = function(run_time)
  if run_time < 0.5 then return 1, 100, nil, { name = "warm", ends_at = 1.5 } end
  if run_time < 1.5 then return 2, 100, nil, { name = "warm", ends_at = 1.5 } end
  return 3, 100, nil, { name = "peak", ends_at = 60 }
end })
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    handle.start(1, 1.0);
    wait_until(&handle, "the peak", |h| h.stats().lock().unwrap().user_count == 3).await;
    {
        let store = handle.stats().lock().unwrap();
        let status = store.shape.clone().expect("the shape's status");
        assert_eq!((status.step.as_deref(), status.step_number), (Some("peak"), 2));
        let left = status.step_ends.expect("the step's end") - store.step_marks[0].time;
        assert!((59.0..61.0).contains(&left), "peak ends 60 s after the start: {left}");
        let marks: Vec<&str> = store.step_marks.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(marks, ["warm", "peak"]);
    }
    handle.quit().await;
}

/// A Lua shape's steps are shown and marked as phases are; a change by
/// hand pauses it (its later steps are ignored) until the next test.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_lua_shape_is_shown_and_marked_and_pauses_when_changed_by_hand() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("U", { wait_time = swarmer.constant(0.05), tasks = { function(self) self.client:get("/") end } })
swarmer.shape("ramp", { tick = function(run_time)
  if run_time < 1 then return 2, 100 end
  return 4, 100
end })
"#,
    );
    let handle = start(&path, &t.url(), 1, TagFilter::default()).await;
    handle.start(1, 1.0);
    wait_until(&handle, "the second step", |h| h.stats().lock().unwrap().user_count == 4).await;
    {
        let store = handle.stats().lock().unwrap();
        let status = store.shape.clone().expect("the shape's status");
        assert_eq!((status.name.as_str(), status.step.as_deref(), status.paused), ("ramp", Some("step 2"), false));
        let marks: Vec<&str> = store.step_marks.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(marks, ["step 1", "step 2"]);
    }
    handle.start(1, 100.0);
    wait_until(&handle, "the change by hand", |h| {
        let store = h.stats().lock().unwrap();
        store.user_count == 1 && store.shape.as_ref().is_some_and(|s| s.paused)
    })
    .await;
    // The shape's next ticks (it would ask for 4 users) are ignored.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(handle.stats().lock().unwrap().user_count, 1);
    handle.quit().await;
}
