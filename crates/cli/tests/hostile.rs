//! Plans written to break Swarmer. Each runs in a child process (the real
//! binary, against a real target on 127.0.0.1) that must end on its own at
//! `-t`, without a crash, with its JSON report written. Exit code 1 is
//! allowed (a plan's errors are exceptions); a signal or a hang is not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swarmer_target::{DemoTarget, TargetOptions};

/// The user class around a hostile task body (Lua, `self` in scope).
fn plan_with_task(host: &str, body: &str) -> String {
    format!(
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', {{ host = '{host}', tasks = {{ swarmer.task('hostile', function(self)\n{body}\nend) }} }})\n"
    )
}

struct Finished {
    code: Option<i32>,
    stderr: String,
    report: serde_json::Value,
    took: Duration,
}

/// Run `plan` for `seconds` with `users` on one shard; the run must end by
/// itself within `seconds` + 20 s.
fn run_plan(dir: &Path, name: &str, plan: &str, users: u32, seconds: u32) -> Finished {
    run_plan_with(dir, name, plan, users, seconds, &[])
}

/// [`run_plan`] with more flags.
fn run_plan_with(dir: &Path, name: &str, plan: &str, users: u32, seconds: u32, flags: &[&str]) -> Finished {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, plan).unwrap();
    // Locust's --json-file takes a prefix and adds `.json`.
    let report = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmer"))
        .env("NO_COLOR", "1")
        .args(["-f", path.to_str().unwrap(), "--headless", "--only-summary", "--shards", "1"])
        .args(["-u", &users.to_string(), "-r", "1000", "-t", &format!("{seconds}s")])
        .args(["--json-file", report.to_str().unwrap()])
        .args(flags)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(u64::from(seconds) + 20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: still running {} s after -t {seconds}s", 20);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(status.signal().is_none(), "{name}: killed by signal {:?}\n{stderr}", status.signal());
    let text = std::fs::read_to_string(report.with_extension("json"))
        .unwrap_or_else(|e| panic!("{name}: no JSON report ({e})\n{stderr}"));
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: bad JSON report ({e})"));
    Finished { code: status.code(), stderr, report, took }
}

/// Requests recorded in a JSON report (Locust's list of entries).
fn requests(report: &serde_json::Value) -> u64 {
    report.as_array().map(|rows| rows.iter().filter_map(|r| r["num_requests"].as_u64()).sum()).unwrap_or(0)
}

fn target() -> DemoTarget {
    DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap()
}

fn ended_normally(name: &str, finished: &Finished) {
    assert!(matches!(finished.code, Some(0) | Some(1)), "{name}: exit {:?}\n{}", finished.code, finished.stderr);
    assert!(!finished.stderr.contains("panicked"), "{name}: a panic\n{}", finished.stderr);
}

#[test]
fn a_finalizer_that_resumes_its_own_coroutine_cannot_crash_the_process() {
    // The plan of issue 11: before, the response was built on the
    // suspended coroutine and a finalizer resumed it (exit 139 within 1 s).
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        "local FIN = {{ __gc = function()\n\
           local co, main = coroutine.running()\n\
           if not main then pcall(coroutine.resume, co) end\n\
         end }}\n{}",
        plan_with_task(
            &t.url(),
            "for _ = 1, 4 do setmetatable({}, FIN) end\nlocal r = self.client:get('/')\nlocal _ = r.status_code"
        )
    );
    let finished = run_plan(dir.path(), "finalizer", &plan, 20, 3);
    ended_normally("finalizer", &finished);
    assert!(requests(&finished.report) > 100, "requests kept flowing: {}", finished.report);
}

#[test]
fn plans_that_attack_coroutines_metatables_and_the_collector_end_normally_with_reports() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let attacks: [(&str, &str, &str); 9] = [
        (
            "other_users_coroutines",
            "KEPT = KEPT or {}",
            "table.insert(KEPT, (coroutine.running()))\n\
             for i, co in ipairs(KEPT) do\n\
               if co ~= coroutine.running() then pcall(coroutine.resume, co); pcall(coroutine.close, co) end\n\
               if i > 50 then KEPT = {} break end\n\
             end\n\
             local r = self.client:get('/')\nlocal _ = r.status_code",
        ),
        (
            "metatables",
            "",
            "local r = self.client:get('/')\n\
             assert(getmetatable(r) ~= nil and type(getmetatable(r)) ~= 'table', 'response metatable is sealed')\n\
             assert(not pcall(setmetatable, self.client, {}), 'client metatable is sealed')\n\
             assert(not pcall(setmetatable, self, {}), 'user metatable is sealed')\n\
             assert(not pcall(function() getmetatable(r).__index = function() return 1 end end))\n\
             assert(r.status_code == 200)",
        ),
        (
            "collector",
            "",
            "collectgarbage('stop')\nlocal r = self.client:get('/')\ncollectgarbage('step')\n\
             collectgarbage('restart')\nlocal _ = r.text",
        ),
        (
            "wrap",
            "",
            "local ok = pcall(coroutine.wrap(function() return self.client:get('/') end))\n\
             local co = coroutine.create(function() self.client:get('/') end)\n\
             coroutine.resume(co); pcall(coroutine.resume, co); pcall(coroutine.close, co)\n\
             local r = self.client:get('/')\nassert(r.status_code == 200)",
        ),
        (
            "deep_recursion",
            "local function deep(n) return deep(n + 1) + 1 end\n\
             local function cdeep() return pcall(cdeep) end",
            "pcall(deep, 1)\ncdeep()\nlocal r = self.client:get('/')",
        ),
        (
            "many_arguments",
            "local BIG = {} for i = 1, 10000 do BIG[i] = i end",
            "pcall(self.client.get, self.client, '/', nil, table.unpack(BIG))\n\
             pcall(swarmer.sleep, table.unpack(BIG))\nselect('#', table.unpack(BIG))\n\
             local r = self.client:get('/')",
        ),
        (
            "error_objects",
            "local BAD = setmetatable({}, { __tostring = function() error('no string for you') end })",
            "self.client:get('/')\nerror(BAD)",
        ),
        ("yield_numbers_as_operands", "", "pcall(coroutine.yield, 1, 2, 3)\nself.client:get(12345)"),
        (
            "load_binary_and_c",
            "",
            "assert(package.loadlib == nil)\n\
             assert(load(string.dump(function() end)) == nil, 'binary chunks are refused')\n\
             self.client:get('/')",
        ),
    ];
    for (name, top, body) in attacks {
        let plan = format!("{top}\n{}", plan_with_task(&t.url(), body));
        let finished = run_plan(dir.path(), name, &plan, 10, 2);
        ended_normally(name, &finished);
        assert!(finished.took < Duration::from_secs(15), "{name}: took {:?}", finished.took);
    }
}

#[test]
fn the_metatable_attack_changes_nothing_and_raises_no_exception() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let body = "local r = self.client:get('/')\n\
                pcall(function() getmetatable(r).__index = function() return 'hacked' end end)\n\
                if r.status_code ~= 200 then error('response changed: ' .. tostring(r.status_code)) end";
    let finished = run_plan(dir.path(), "sealed", &plan_with_task(&t.url(), body), 5, 2);
    assert_eq!(finished.code, Some(0), "no exception, no failure:\n{}", finished.stderr);
    assert!(requests(&finished.report) > 10);
}

#[test]
fn a_task_that_never_yields_still_ends_at_run_time_and_is_named() {
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    // A busy loop, next to a task with I/O that must keep running.
    let plan = format!(
        "local swarmer = require('swarmer')\n\
         swarmer.user('Busy', {{ host = '{}', tasks = {{\n\
           swarmer.task('spin', function(self) while true do end end),\n\
           swarmer.task('fetch', 3, function(self) self.client:get('/') end) }} }})\n",
        t.url()
    );
    let started = Instant::now();
    let finished = run_plan(dir.path(), "spin", &plan, 4, 3);
    ended_normally("spin", &finished);
    assert!(started.elapsed() < Duration::from_secs(10), "ended at -t: {:?}", started.elapsed());
    assert!(finished.stderr.contains("task spin was stopped"), "the stuck task is named:\n{}", finished.stderr);
    // Tasks without I/O and no wait time do not take the shard over.
    let plan = format!(
        "local swarmer = require('swarmer')\n\
         swarmer.user('Sum', {{ host = '{}', tasks = {{\n\
           swarmer.task('sum', function(self) local x = 0 for i = 1, 1000 do x = x + i end end) }} }})\n",
        t.url()
    );
    let started = Instant::now();
    let finished = run_plan(dir.path(), "sum", &plan, 4, 2);
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "ended at -t: {:?}", started.elapsed());
}

#[test]
fn a_finalizer_that_reads_the_live_statistics_while_they_are_read_cannot_hang_the_shard() {
    // swarmer.stats() reads the runner's store; the tables it fills may run
    // finalizers, and one that calls swarmer.stats() again must not find
    // the store still locked by the same thread (a deadlock: no report).
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    // A finalizer still reachable from a global when the shard ends runs
    // while the VM is closed; so do those still pending then.
    let body = "keep = keep or setmetatable({}, { __gc = function() assert(swarmer.stats().state) end })\n\
                for _ = 1, 50 do\n\
                  setmetatable({}, { __gc = function() local s = swarmer.stats(); assert(s.state) end })\n\
                  local s = swarmer.stats()\n\
                  assert(type(s.num_requests) == 'number')\n\
                end\n\
                collectgarbage('step')\n\
                local r = self.client:get('/')\nlocal _ = r.status_code";
    let plan = plan_with_task(&t.url(), body);
    let finished = run_plan(dir.path(), "stats_from_finalizer", &plan, 5, 3);
    ended_normally("stats_from_finalizer", &finished);
    assert!(requests(&finished.report) > 0, "{}", finished.stderr);
}

#[test]
fn a_plan_that_allocates_without_bound_meets_its_vm_limit_and_the_run_goes_on() {
    // Two users keep all they make; two others only send requests. Each
    // leaking user is stopped when the VM is full, which frees what it
    // held: the others go on, and the process is never at risk.
    let t = target();
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        "local swarmer = require('swarmer')\n\
         swarmer.user('Leaky', {{ host = '{host}', fixed_count = 2, wait_time = swarmer.constant(0.01), tasks = {{\n\
           function(self)\n\
             self.kept = self.kept or {{}}\n\
             for i = 1, 200 do self.kept[#self.kept + 1] = string.rep('x', 1000) .. i end\n\
           end }} }})\n\
         swarmer.user('Steady', {{ host = '{host}', wait_time = swarmer.constant(0.02), tasks = {{\n\
           function(self) self.client:get('/', {{ name = 'steady' }}) end }} }})\n",
        host = t.url()
    );
    let finished = run_plan_with(dir.path(), "leak", &plan, 4, 4, &["--lua-memory-limit", "48MiB"]);
    ended_normally("leak", &finished);
    let stopped = "out of memory: this Lua VM reached its limit of 48 MiB (--lua-memory-limit)";
    assert!(finished.stderr.contains(stopped), "the limit is named\n{}", finished.stderr);
    assert!(finished.stderr.contains("its user was stopped"), "{}", finished.stderr);
    let steady = finished.report.as_array().unwrap().iter().find(|r| r["name"] == "steady").unwrap();
    // 2 users, a request each 20 ms, for 4 s: about 400 on an idle machine.
    // What matters is that they went on: requests in several seconds (a
    // loaded machine, a debug build, and the leaky users' collections take
    // a share of the shard, so no rate is asserted).
    let seconds = steady["num_reqs_per_sec"].as_object().map_or(0, |m| m.len());
    assert!(steady["num_requests"].as_u64().unwrap() > 50 && seconds >= 2, "the others went on: {steady}");
    assert_eq!(steady["num_failures"].as_u64(), Some(0));
}

#[test]
fn a_plan_whose_top_level_allocates_without_bound_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("top.lua");
    std::fs::write(
        &path,
        "local swarmer = require('swarmer')\nlocal t = {}\nfor i = 1, 1e9 do t[i] = string.rep('y', 100) .. i end\n\
         swarmer.user('U', { tasks = { function(self) end } })\n",
    )
    .unwrap();
    let swarmer = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_swarmer"))
            .args(["-f", path.to_str().unwrap(), "--headless", "-H", "http://127.0.0.1:9", "-t", "1s"])
            .args(["--lua-memory-limit", limit])
            .output()
            .unwrap()
    };
    let out = swarmer("32MiB");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("top.lua: out of memory: this Lua VM reached its limit of 32 MiB"), "{err}");
    for (bad, said) in [("1k", "at least 4MiB"), ("lots", "expected a size"), ("50%%", "expected a percentage")] {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmer"))
            .args(["-f", "builtin:hello", "--headless", "-H", "http://127.0.0.1:9", "-t", "1s"])
            .args(["--lua-memory-limit", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--lua-memory-limit") && err.contains(said), "{bad}: {err}");
    }
}
