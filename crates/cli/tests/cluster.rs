//! Distributed runs as users run them: a master and worker processes of the
//! real binary on 127.0.0.1, against the real demo target.

// The tests send signals to the processes they start (libc::kill).
#![allow(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmer_target::{DemoTarget, PredictServer, TargetOptions};

const TOKEN: &str = "test-cluster-token-0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plan() -> String {
    repo().join("examples/lua/cluster/plan.lua").to_string_lossy().into_owned()
}

/// A running `swarmer` whose output is collected line by line.
struct Proc {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(args: &[&str], token: &str) -> Proc {
        Self::start_in(Path::new("."), args, token)
    }

    /// [`Proc::start`] with `dir` as the working directory.
    fn start_in(dir: &Path, args: &[&str], token: &str) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
        command.current_dir(dir).args(args);
        Self::spawn(command, token)
    }

    /// Run `command` (swarmer, or a program that runs it) with `token`.
    fn spawn(mut command: Command, token: &str) -> Proc {
        let mut child = command
            .env("SWARMER_CLUSTER_TOKEN", token)
            .env("NO_COLOR", "1")
            .env_remove("SWARMER_USERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("swarmer starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, output }
    }

    fn text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Wait until a line contains `needle`; returns that line.
    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(started.elapsed() < within, "no {needle:?} within {within:?} in:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(started.elapsed() < within, "still running after {within:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port after `marker` (`... listening on 127.0.0.1:PORT`).
fn port_after(line: &str, marker: &str) -> String {
    let rest = &line[line.find(marker).unwrap() + marker.len()..];
    let port: String = rest.rsplit(':').next().unwrap().chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(!port.is_empty(), "no port in {line:?}");
    port
}

fn worker(master_port: &str, extra: &[&str], token: &str) -> Proc {
    let mut args = vec!["--worker", "-f", "-", "--master-port", master_port, "--shards", "1"];
    args.extend_from_slice(extra);
    Proc::start(&args, token)
}

/// A master on a free cluster port, and (unless headless) a web UI on a free port.
struct MasterProc {
    proc: Proc,
    port: String,
    base: String,
}

/// `swarmer -f PLAN --master -H TARGET` on 127.0.0.1 with `flags` (split on
/// spaces) and `extra` arguments (which may hold spaces).
fn start_master(plan: &str, target: &str, flags: &str, extra: &[&str], token: &str) -> MasterProc {
    start_master_with_env(plan, target, flags, extra, token, &[])
}

/// [`start_master`] with environment variables set for the master.
fn start_master_with_env(
    plan: &str,
    target: &str,
    flags: &str,
    extra: &[&str],
    token: &str,
    env: &[(&str, &str)],
) -> MasterProc {
    let mut args: Vec<&str> =
        vec!["-f", plan, "-H", target, "--master-bind-host", "127.0.0.1", "--master-bind-port", "0"];
    if !flags.contains("--processes") {
        args.push("--master");
    }
    args.extend(flags.split_whitespace());
    let headless = flags.contains("--headless") || flags.contains("--processes");
    if !headless {
        args.extend(["--web-host", "127.0.0.1", "-P", "0"]);
    }
    args.extend_from_slice(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command.args(&args).envs(env.iter().copied());
    let proc = Proc::spawn(command, token);
    let port = if flags.contains("--processes") {
        String::new()
    } else {
        port_after(&proc.wait_for("Cluster master listening on", Duration::from_secs(20)), "listening on ")
    };
    let base = if headless {
        String::new()
    } else {
        let web = proc.wait_for("Starting web interface at", Duration::from_secs(20));
        web[web.find("http://").unwrap()..].trim().to_owned()
    };
    MasterProc { proc, port, base }
}

/// GET `path` from the web UI at `base` (HTTP/1.0, so the body ends at close).
fn get_json(base: &str, path: &str) -> Value {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // A UI that cannot answer fails the test rather than hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn total_requests(stats: &Value) -> u64 {
    stats["stats"].as_array().unwrap().last().unwrap()["num_requests"].as_u64().unwrap()
}

/// The requests the workers say they reported in all, when they quit.
fn reported_by(workers: &[Proc]) -> u64 {
    workers
        .iter()
        .map(|w| {
            let line = w.wait_for("it reported", Duration::from_secs(10));
            line.split("it reported ").nth(1).unwrap().split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum()
}

fn wait_until(within: Duration, mut check: impl FnMut() -> bool, what: &str) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn master_and_three_workers_split_users_ship_the_plan_and_count_every_request() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let mut master = start_master(
        &plan(),
        &t.url(),
        "--headless --expect-workers 3 -u 30 -r 100 -t 3s --stop-timeout 5 --only-summary",
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    let workers: Vec<Proc> = (0..3).map(|_| worker(&master.port, &[], TOKEN)).collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let log = master.proc.text();
    assert!(log.contains("Ramping to 30 users at a rate of 100.00 per second over 3 workers"), "{log}");
    for w in &workers {
        w.wait_for("Received the plan plan.lua (3 files)", Duration::from_secs(5));
        w.wait_for("Ramping to 10 users", Duration::from_secs(5));
        w.wait_for("The master asked this worker to quit", Duration::from_secs(10));
    }
    // The master's total is exactly the sum of what the workers reported:
    // they flushed their last statistics before acknowledging the stop.
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    let recorded: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    let names: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"/ (browse)") && names.contains(&"/login"), "{names:?}: the shipped module ran");
    assert!(recorded > 100, "{recorded}");
    let reported = reported_by(&workers);
    assert_eq!(recorded, reported, "master total = sum of the workers' reports");
    // And that is every request the target answered: the master's
    // --stop-timeout reached the workers, so no user was cut off mid-request.
    assert_eq!(t.requests_served(), recorded, "target served = recorded");
}

#[test]
fn the_masters_stop_timeout_lets_workers_users_finish_their_task() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("slow.lua");
    std::fs::write(
        &plan,
        "local swarmer = require('swarmer')\n\
         swarmer.user('Slow', { wait_time = swarmer.constant(60), tasks = { function(self) \
         self.client:get('/delay/2000') end } })\n",
    )
    .unwrap();
    let json = dir.path().join("stats");
    // The test ends at 1 s, in the middle of the user's 2 s request; the
    // worker was given no --stop-timeout of its own.
    let mut master = start_master(
        plan.to_str().unwrap(),
        &t.url(),
        "--headless --expect-workers 1 -u 1 -r 10 -t 1s --stop-timeout 10 --only-summary",
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    let _worker = worker(&master.port, &[], TOKEN);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    let slow = entries.as_array().unwrap().iter().find(|e| e["name"] == "/delay/2000");
    assert_eq!(slow.map(|e| e["num_requests"].clone()), Some(Value::from(1)), "the request was let finish: {entries}");
}

#[test]
fn a_killed_worker_goes_missing_and_the_others_carry_its_users() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let mut master = start_master(
        &plan(),
        &t.url(),
        "--autostart --expect-workers 3 -u 12 -r 100 --heartbeat-timeout 2 --stop-timeout 5",
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    let mut workers: Vec<Proc> = (0..3).map(|_| worker(&master.port, &[], TOKEN)).collect();
    master.proc.wait_for("All users spawned: 12 users over 3 workers", Duration::from_secs(20));
    let stats = get_json(&master.base, "/stats/requests");
    assert_eq!(stats["worker_count"], 3);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 3);
    // Long enough that what the killed worker can lose (below) is a small
    // part of what it has reported by then.
    std::thread::sleep(Duration::from_millis(8000));
    let before = total_requests(&get_json(&master.base, "/stats/requests"));
    workers[0].kill9();
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(15),
        || {
            let s = get_json(&master.base, "/stats/requests");
            let workers = s["workers"].as_array().unwrap();
            let missing = workers.iter().filter(|w| w["state"] == "missing").count();
            let users: u64 = workers.iter().map(|w| w["user_count"].as_u64().unwrap()).sum();
            missing == 1 && users == 12 && s["worker_count"] == 2
        },
        "one worker missing and the two others running all 12 users",
    );
    // Seen at once (the stream closes) and the users moved within a few
    // heartbeats; the bound is loose for a loaded machine.
    assert!(killed.elapsed() < Duration::from_secs(10), "took {:?}", killed.elapsed());
    let after = total_requests(&get_json(&master.base, "/stats/requests"));
    assert!(after >= before, "the killed worker's reported samples stay: {before} -> {after}");
    let notes = get_json(&master.base, "/stats/requests")["notes"].clone();
    assert!(notes[0].as_str().unwrap().contains("was lost during the test"), "the results say so: {notes}");
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    for w in &mut workers[1..] {
        assert_eq!(w.wait_exit(Duration::from_secs(10)), 0, "{}", w.text());
    }
    // All the killed worker lost is what it had not yet sent: up to about
    // two seconds (a shard flushes to its worker every second, the worker
    // reports to the master every second). Its share of the first 8 s
    // (about a third of `before`, which itself lags by up to two seconds)
    // stays.
    let final_total = json_total(&json.with_extension("json"));
    let lost = t.requests_served() - final_total;
    assert!(final_total >= after && lost * 6 < before, "lost {lost} of the killed worker's ~{} requests", before / 3);
}

#[test]
fn workers_that_lose_their_master_stop_their_users_and_wait() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let mut master = start_master(&plan(), &t.url(), "--autostart -u 2 -r 100", &[], TOKEN);
    let mut w = worker(&master.port, &["--master-timeout", "1"], TOKEN);
    w.wait_for("All users spawned", Duration::from_secs(20));
    master.proc.kill9();
    w.wait_for("Lost the master", Duration::from_secs(5));
    w.wait_for("stopping this worker's users; waiting for the master to come back", Duration::from_secs(6));
    // The line comes as the stop is asked for; a request already on its way
    // may still arrive. Then the count must settle and stay settled.
    wait_until(
        Duration::from_secs(5),
        || {
            let served = t.requests_served();
            std::thread::sleep(Duration::from_millis(300));
            t.requests_served() == served
        },
        "the target to see no more requests",
    );
    let served = t.requests_served();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(t.requests_served(), served, "no user runs without the master");
    assert!(w.is_running(), "the worker waits to reconnect");
}

#[test]
fn wrong_tokens_missing_tls_and_garbage_are_refused_and_nothing_runs() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master(
        &plan(),
        &t.url(),
        "--autostart -u 2 -r 100",
        &["--cluster-tls-cert", &tls("server.pem"), "--cluster-tls-key", &tls("server.key")],
        TOKEN,
    );

    // Garbage on the cluster port: dropped, the master carries on and says
    // what came (one line a second at most, hence the pauses), never the bytes.
    for (bytes, said) in [
        (&b"\x16\x03\x01 this is not a TLS hello nor HTTP/2 \x00\xff\x00\xff"[..], "during the TLS handshake"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "plain HTTP/1 (the cluster port is for workers"),
        (b"\x00\xffSECRET-LOOKING BYTES", "bytes that are neither TLS nor HTTP/2"),
    ] {
        let mut raw = std::net::TcpStream::connect(format!("127.0.0.1:{}", master.port)).unwrap();
        raw.write_all(bytes).unwrap();
        drop(raw);
        master.proc.wait_for(said, Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert!(!master.proc.text().contains("SECRET-LOOKING"), "{}", master.proc.text());

    // A TLS handshake begun and never ended: closed after its 10 s.
    let mut stalled = std::net::TcpStream::connect(format!("127.0.0.1:{}", master.port)).unwrap();
    stalled.write_all(b"\x16\x03\x01\x00\xf0\x01\x00\x00\xec\x03\x03").unwrap();
    let began = Instant::now();
    master.proc.wait_for("the TLS handshake did not end within 10 s", Duration::from_secs(15));
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(began.elapsed() < Duration::from_secs(16), "closed after {:?}", began.elapsed());
    std::thread::sleep(Duration::from_millis(1100));

    // No TLS against a TLS master: never connects, and the master says why.
    let mut plain = worker(&master.port, &[], TOKEN);
    plain.wait_for("Could not reach the master", Duration::from_secs(10));
    master.proc.wait_for("HTTP/2 without TLS, but the cluster port needs TLS", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1100));

    // TLS, but the wrong token: the worker sees the master cannot prove its
    // token and refuses to run anything.
    let mut wrong = worker(&master.port, &["--cluster-ca", &tls("ca.pem")], "some-other-token-9876543210");
    assert_eq!(wrong.wait_exit(Duration::from_secs(15)), 2, "{}", wrong.text());
    assert!(wrong.text().contains("did not prove the cluster token"), "{}", wrong.text());
    master.proc.wait_for("refused worker", Duration::from_secs(5));
    let stats = get_json(&master.base, "/stats/requests");
    assert_eq!(stats["worker_count"], 0);
    assert_eq!(stats["state"], "ready", "nothing runs");
    assert_eq!(t.requests_served(), 0);

    // The right token over TLS joins and runs.
    let good = worker(&master.port, &["--cluster-ca", &tls("ca.pem")], TOKEN);
    good.wait_for("Connected to the master", Duration::from_secs(15));
    wait_until(Duration::from_secs(15), || t.requests_served() > 0, "the TLS worker runs users");
    plain.kill9();
}

/// A master (web UI, autostart, 2 users) under an open-file limit of
/// `files`: the process, its cluster port and its web UI's base URL.
fn master_with_file_limit(files: u32, target: &str) -> (Proc, String, String) {
    let plan = plan();
    let limit = format!("--nofile={files}:{files}");
    let mut command = Command::new("prlimit");
    command.args([&limit, "--", env!("CARGO_BIN_EXE_swarmer")]);
    command.args(["-f", &plan, "-H", target, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port"]);
    command.args(["0", "--autostart", "-u", "2", "-r", "100", "--web-host", "127.0.0.1", "-P", "0"]);
    let master = Proc::spawn(command, TOKEN);
    let port = port_after(&master.wait_for("Cluster master listening on", Duration::from_secs(20)), "listening on ");
    let web = master.wait_for("Starting web interface at", Duration::from_secs(20));
    let base = web[web.find("http://").unwrap()..].trim().to_owned();
    (master, port, base)
}

/// Out of file descriptors (the web port's idle connections took them),
/// the master's accept loops wait between tries instead of spinning, and
/// once descriptors are free again a worker joins.
#[test]
fn out_of_descriptors_the_master_waits_instead_of_spinning_and_recovers() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let (master, port, web) = master_with_file_limit(128, &t.url());
    let web_addr = web.trim_start_matches("http://").to_owned();
    let hog: Vec<std::net::TcpStream> = (0..200).filter_map(|_| std::net::TcpStream::connect(&web_addr).ok()).collect();
    master.wait_for("web UI: accept failed", Duration::from_secs(10));
    let waiting: Vec<std::net::TcpStream> =
        (0..5).filter_map(|_| std::net::TcpStream::connect(format!("127.0.0.1:{port}")).ok()).collect();
    assert!(!waiting.is_empty() && hog.len() > 100);
    master.wait_for("the cluster port could not accept a connection", Duration::from_secs(10));
    // Both loops keep failing while the descriptors stay taken: CPU stays low.
    let pid = master.child.id();
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> =
            stat.rsplit(')').next().unwrap().split_whitespace().filter_map(|f| f.parse().ok()).collect();
        fields[10] + fields[11] // utime, stime (fields 14 and 15 of the line)
    };
    let before = ticks();
    std::thread::sleep(Duration::from_secs(3));
    let used = (ticks() - before) as f64 / 100.0 / 3.0;
    assert!(used < 0.3, "the master used {:.0}% of a core while out of descriptors", used * 100.0);
    drop(hog);
    drop(waiting);
    let good = worker(&port, &[], TOKEN);
    good.wait_for("Connected to the master", Duration::from_secs(30));
    wait_until(Duration::from_secs(20), || t.requests_served() > 0, "the worker runs users");
}

/// Connections are bounded per address too: past 256 open from one
/// address, further ones from it are closed at once while another
/// address still gets in.
#[test]
fn connections_from_one_address_are_bounded_and_others_still_get_in() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = plan();
    let mut command = Command::new("prlimit");
    command.args(["--nofile=1024:1024", "--", env!("CARGO_BIN_EXE_swarmer")]);
    command.args(["-f", &plan, "-H", &t.url(), "--master", "--headless", "--master-bind-host", "127.0.0.1"]);
    command.args(["--master-bind-port", "0", "-u", "2", "-r", "100"]);
    let master = Proc::spawn(command, TOKEN);
    let port = port_after(&master.wait_for("Cluster master listening on", Duration::from_secs(20)), "listening on ");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let first: Vec<std::net::TcpStream> = (0..300).filter_map(|_| std::net::TcpStream::connect(addr).ok()).collect();
    master.wait_for("are open from it (the most)", Duration::from_secs(5));
    // From 127.0.0.2 (a second host, as far as the master can tell).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let second: Vec<std::net::TcpStream> = runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..20 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            streams.push(socket.connect(addr).await.unwrap().into_std().unwrap());
        }
        streams
    });
    std::thread::sleep(Duration::from_millis(500));
    // A socket the master closed reads its end (or a reset) at once; an
    // open one waits (the master waits for the client's first bytes).
    let closed = |socket: &std::net::TcpStream| {
        socket.set_nonblocking(false).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut byte = [0u8; 1];
        match (&*socket).read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    };
    let closed_first = first.iter().filter(|s| closed(s)).count();
    let closed_second = second.iter().filter(|s| closed(s)).count();
    assert_eq!(closed_first, first.len() - 256, "past 256 from 127.0.0.1, closed at once");
    assert_eq!(closed_second, 0, "127.0.0.2 still gets in");
}

/// Idle connections cannot take the master: under an open-file limit of
/// 256, 300 sockets that never send a byte are bounded (the ones over the
/// limit closed at once, the rest after 10 s), the web UI answers all the
/// while, and a real worker joins and runs.
#[test]
fn idle_connections_to_the_cluster_port_are_bounded_and_closed() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let (master, port, web) = master_with_file_limit(256, &t.url());
    let base = web;

    let started = Instant::now();
    let idle: Vec<std::net::TcpStream> =
        (0..300).filter_map(|_| std::net::TcpStream::connect(format!("127.0.0.1:{port}")).ok()).collect();
    assert!(idle.len() >= 250, "only {} connected", idle.len());
    master.wait_for("refused a connection from 127.0.0.1", Duration::from_secs(5));
    // The web UI keeps its descriptors.
    assert_eq!(get_json(&base, "/stats/requests")["state"], "ready");
    let good = worker(&port, &[], TOKEN);
    good.wait_for("Connected to the master", Duration::from_secs(40));
    wait_until(Duration::from_secs(20), || t.requests_served() > 0, "the worker runs users");
    // Every idle socket was closed by the master, none later than ~10 s.
    for mut socket in idle {
        socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        // (The master's HTTP/2 settings may come first.)
        let mut sent = Vec::new();
        match socket.read_to_end(&mut sent) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("an idle socket is still open after {:?}", started.elapsed())
            }
            Err(_) => {} // reset
        }
        let closed_by = started.elapsed();
        assert!(closed_by < Duration::from_secs(30), "{closed_by:?}");
    }
    assert!(master.text().contains("nothing to start HTTP/2 or TLS in time"), "{}", master.text());
    assert_eq!(get_json(&base, "/stats/requests")["worker_count"], 1);
}

/// The master's resident memory, in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Peers without the token can neither make the master buffer nor hold a
/// connection: over TLS, 8 connections of 4 streams, each sending an 8 MiB
/// hello, are closed after 64 KiB and the master's memory stays flat (it
/// used to buffer each message whole); a connection that completes TLS and
/// HTTP/2 and answers the master's pings but never proves the token is
/// closed at 30 s; a real worker proves it and stays connected and running.
#[test]
fn peers_without_the_token_can_neither_make_the_master_buffer_nor_hold_a_connection() {
    use swarmer_cluster::proto::{self, cluster_client::ClusterClient, worker_message};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let tls_flags = ["--cluster-tls-cert", &tls("server.pem"), "--cluster-tls-key", &tls("server.key")];
    let master = start_master(&plan(), &t.url(), "--autostart -u 2 -r 100", &tls_flags, TOKEN);
    let good = worker(&master.port, &["--cluster-ca", &tls("ca.pem")], TOKEN);
    good.wait_for("Connected to the master", Duration::from_secs(15));
    let started = Instant::now();
    let before = rss_of(master.proc.child.id());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let port = master.port.clone();
    let log = master.proc.output.clone();
    let refused = runtime.block_on(async move {
        let ca = Certificate::from_pem(std::fs::read(tls("ca.pem")).unwrap());
        let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost"))
            .unwrap();
        // TLS and HTTP/2, then nothing but answers to the master's pings.
        let idle = endpoint.connect().await.unwrap();
        let mut calls = Vec::new();
        for _ in 0..8 {
            let channel = endpoint.connect().await.unwrap();
            for _ in 0..4 {
                let mut client = ClusterClient::new(channel.clone()).max_encoding_message_size(64 << 20);
                calls.push(tokio::spawn(async move {
                    let hello = proto::Hello {
                        protocol: swarmer_cluster::PROTOCOL,
                        worker_id: "x".repeat(8 << 20),
                        hostname: "h".into(),
                        cores: 1,
                        plan_digest: String::new(),
                        nonce: swarmer_cluster::auth::nonce(),
                    };
                    let first = proto::WorkerMessage { kind: Some(worker_message::Kind::Hello(hello)) };
                    // The hello, then the stream stays open.
                    let outbound =
                        tokio_stream::StreamExt::chain(tokio_stream::iter(vec![first]), tokio_stream::pending());
                    match client.join(outbound).await {
                        Err(_) => true,
                        Ok(response) => response.into_inner().message().await.is_err(),
                    }
                }));
            }
        }
        let mut refused = 0;
        for call in calls {
            let ended = tokio::time::timeout(Duration::from_secs(20), call).await;
            refused += usize::from(matches!(ended, Ok(Ok(true))));
        }
        // The idle connection answers pings for as long as this runs.
        let closed = "it did not prove the cluster token in time";
        let waited = Instant::now();
        while !log.lock().unwrap().iter().any(|l| l.contains(closed)) && waited.elapsed() < Duration::from_secs(45) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(idle);
        refused
    });
    let after = rss_of(master.proc.child.id());
    assert_eq!(refused, 32, "every flooding stream ends in an error: {}", master.proc.text());
    assert!(
        after < before + 64 * 1024 * 1024,
        "the master buffered the floods: {} MiB before, {} MiB after",
        before >> 20,
        after >> 20
    );
    master.proc.wait_for("before proving the cluster token", Duration::from_secs(5));
    // The connection that only answered pings was closed at 30 s.
    master.proc.wait_for("it did not prove the cluster token in time", Duration::from_secs(1));
    assert!(started.elapsed() > Duration::from_secs(25), "{:?}", started.elapsed());
    // The worker proved the token: still connected, still running users.
    let served = t.requests_served();
    wait_until(Duration::from_secs(10), || t.requests_served() > served, "the worker still runs users");
    assert_eq!(get_json(&master.base, "/stats/requests")["worker_count"], 1);
    assert!(!good.text().contains("Lost the master"), "{}", good.text());
}

/// A worker that holds the token, built on the crate's own protocol code,
/// sends the master valid reports, one with a per-second count at
/// `u64::MAX` (which used to pin the current rate at 0) and one with more
/// failures than requests. The master keeps exactly the valid requests,
/// refuses the bad report with a note in the results, and its current rate
/// still moves.
#[test]
fn a_hostile_worker_with_the_token_cannot_corrupt_the_masters_statistics() {
    use swarmer_cluster::proto::{self, cluster_client::ClusterClient, master_message, worker_message};
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master("builtin:hello", &t.url(), "--autostart -u 1 -r 100", &[], TOKEN);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let port = master.port.clone();
    let sent = runtime.block_on(async move {
        let msg = |kind| proto::WorkerMessage { kind: Some(kind) };
        let token = swarmer_cluster::auth::ClusterToken::new(TOKEN).unwrap();
        let mut client = ClusterClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
        // Meanwhile, a stream that never says hello: refused after 10 s.
        let mut silent = client.clone();
        let stalled = tokio::spawn(async move {
            let (keep, rx) = tokio::sync::mpsc::channel::<proto::WorkerMessage>(1);
            let mut inbound = silent.join(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
            let answer = inbound.message().await;
            drop(keep);
            answer
        });
        let my_nonce = swarmer_cluster::auth::nonce();
        let hello = proto::Hello {
            protocol: swarmer_cluster::PROTOCOL,
            worker_id: "hostile".into(),
            hostname: "h".into(),
            cores: 1,
            plan_digest: swarmer_cluster::bundle::Bundle::named("builtin:hello").digest(),
            nonce: my_nonce.clone(),
        };
        // First a proof that is not the token's: refused, and the log says so.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(msg(worker_message::Kind::Hello(hello.clone()))).await.unwrap();
        let mut inbound = client.join(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let _challenge = inbound.message().await.unwrap();
        tx.send(msg(worker_message::Kind::Proof(proto::Proof { proof: vec![7; 32] }))).await.unwrap();
        let Some(proto::MasterMessage { kind: Some(master_message::Kind::Reject(r)) }) =
            inbound.message().await.unwrap()
        else {
            panic!("a wrong proof was not rejected")
        };
        assert_eq!(r.reason, "wrong cluster token");
        // Then the token's own.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(msg(worker_message::Kind::Hello(hello))).await.unwrap();
        let mut inbound = client.join(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let Some(proto::MasterMessage { kind: Some(master_message::Kind::Challenge(c)) }) =
            inbound.message().await.unwrap()
        else {
            panic!("no challenge")
        };
        let proof = token.worker_proof(&c.nonce, &my_nonce);
        tx.send(msg(worker_message::Kind::Proof(proto::Proof { proof }))).await.unwrap();
        let mut instance = 0;
        while instance == 0 {
            if let Some(proto::MasterMessage { kind: Some(master_message::Kind::Welcome(w)) }) =
                inbound.message().await.unwrap()
            {
                instance = w.master_instance;
            }
        }
        // The statistics epoch (a new test resets it), and whether a test has assigned users.
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let seen = epoch.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.kind {
                    Some(master_message::Kind::ResetStats(r)) => {
                        seen.store(r.epoch, std::sync::atomic::Ordering::SeqCst)
                    }
                    Some(master_message::Kind::Assign(_)) => {
                        let _ = seen.compare_exchange(
                            u64::MAX,
                            0,
                            std::sync::atomic::Ordering::SeqCst,
                            std::sync::atomic::Ordering::SeqCst,
                        );
                    }
                    _ => {}
                }
            }
        });
        while epoch.load(std::sync::atomic::Ordering::SeqCst) == u64::MAX {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut valid = 0u64;
        for round in 0..8u64 {
            let mut recorder = swarmer_stats::ShardRecorder::new("hostile");
            let now = swarmer_stats::unix_now();
            for _ in 0..10 {
                let sample = swarmer_stats::RequestSample {
                    method: "GET",
                    name: "/h",
                    response_time_us: Some(2_000),
                    ttfb_us: 1_000,
                    content_length: 10,
                    error: None,
                };
                recorder.record(&sample, now);
            }
            let current = epoch.load(std::sync::atomic::Ordering::SeqCst);
            let mut report = swarmer_cluster::convert::delta_to_report(&recorder.take_delta(), current, instance);
            match round {
                2 => {
                    report.entries[0].per_second.push(proto::SecondCount { second: u64::MAX, requests: 1, failures: 0 })
                }
                4 => report.entries[0].num_failures = 11,
                _ => {}
            }
            if round != 4 {
                valid += 10;
            }
            let beat = proto::Heartbeat {
                state: "running".into(),
                user_count: 1,
                cpu_percent: f64::NAN,
                rss_bytes: 1,
                ..Default::default()
            };
            tx.send(msg(worker_message::Kind::Heartbeat(beat))).await.unwrap();
            tx.send(msg(worker_message::Kind::Stats(report))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        // More names than the master keeps apart: the rest fold into one row.
        let mut recorder = swarmer_stats::ShardRecorder::new("hostile");
        let now = swarmer_stats::unix_now();
        for i in 0..swarmer_stats::MOST_NAMES + 50 {
            let name = format!("/many/{i}");
            let sample = swarmer_stats::RequestSample {
                method: "GET",
                name: &name,
                response_time_us: Some(1_000),
                ttfb_us: 0,
                content_length: 0,
                error: None,
            };
            recorder.record(&sample, now);
        }
        let current = epoch.load(std::sync::atomic::Ordering::SeqCst);
        let report = swarmer_cluster::convert::delta_to_report(&recorder.take_delta(), current, instance);
        tx.send(msg(worker_message::Kind::Stats(report))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        match stalled.await.unwrap() {
            Ok(Some(proto::MasterMessage { kind: Some(master_message::Kind::Reject(r)) })) => {
                assert_eq!(r.reason, "handshake timed out")
            }
            other => panic!("a stream without a hello was not refused: {other:?}"),
        }
        valid
    });
    let stats = get_json(&master.base, "/stats/requests");
    let row = stats["stats"].as_array().unwrap().iter().find(|r| r["name"] == "/h").cloned();
    let row = row.unwrap_or_else(|| panic!("no /h row: {}", master.proc.text()));
    assert_eq!(row["num_requests"].as_u64(), Some(sent), "{row}");
    assert_eq!(row["num_failures"].as_u64(), Some(0), "{row}");
    assert!(stats["current_rps"].as_f64().unwrap() > 0.0, "the current rate moves: {}", stats["current_rps"]);
    let notes = stats["notes"].to_string();
    assert!(notes.contains("Worker hostile sent statistics that do not hold together"), "{notes}");
    // Names past the bound: one folded row, and the results say so.
    let rows = stats["stats"].as_array().unwrap();
    assert_eq!(rows.len(), swarmer_stats::MOST_NAMES + 2, "the kept names, the folded row, Aggregated");
    let folded = rows.iter().find(|r| r["name"] == swarmer_stats::FOLDED_NAME).unwrap();
    let total: u64 =
        rows.iter().filter(|r| r["name"] != "Aggregated").map(|r| r["num_requests"].as_u64().unwrap()).sum();
    assert_eq!(total, sent + swarmer_stats::MOST_NAMES as u64 + 50, "folded, not lost: {folded}");
    assert!(notes.contains(swarmer_stats::FOLDED_NAME), "{notes}");
    // Its heartbeats' CPU was not a number: shown as 0, not NaN.
    let hostile = stats["workers"].as_array().unwrap().iter().find(|w| w["id"] == "hostile").cloned().unwrap();
    assert_eq!(hostile["cpu_usage"].as_f64(), Some(0.0), "{hostile}");
    let log = master.proc.text();
    assert!(
        log.contains("refused worker \"hostile\" from 127.0.0.1:") && log.contains(": wrong cluster token"),
        "{log}"
    );
    assert!(log.contains("malformed statistics refused: entry GET /h: 11 failures of 10 requests"), "{log}");
    assert!(log.contains("per-second counts left out"), "{log}");
}

#[test]
fn processes_starts_local_workers_under_a_master() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let mut master = start_master(
        &plan(),
        &t.url(),
        "--processes 2 --headless --expect-workers 2 -u 4 -r 100 -t 2s --stop-timeout 5 --only-summary",
        &["--json-file", json.to_str().unwrap()],
        "",
    );
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    assert!(master.proc.text().contains("Started 2 worker processes"));
    assert!(master.proc.text().contains("over 2 workers"));
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    let recorded: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    let served = t.requests_served();
    assert!(served >= recorded && served - recorded <= 3, "target served {served}, recorded {recorded}");
    assert!(Path::new(&plan()).exists());
    assert!(recorded > 0, "the local workers ran users");
}

#[test]
fn custom_messages_split_test_data_over_workers_and_report_back() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let plan = repo().join("examples/lua/cluster_messages/plan.lua").to_string_lossy().into_owned();
    let mut master = start_master(
        &plan,
        &t.url(),
        "--headless --expect-workers 2 -u 4 -r 100 -t 2s --only-summary",
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    let _workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    assert_eq!(master.proc.text().matches(" received 2 users").count(), 2, "{}", master.proc.text());
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    let logins: Vec<(String, u64)> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("login as "))
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["num_requests"].as_u64().unwrap()))
        .collect();
    let mut names: Vec<&str> = logins.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["login as alice", "login as bob", "login as carol", "login as dave"], "each account used once");
    assert!(logins.iter().all(|(_, n)| *n == 1), "{logins:?}");
}

#[test]
fn mutual_tls_admits_only_workers_with_a_certificate_from_the_ca() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master(
        &plan(),
        &t.url(),
        "--autostart -u 2 -r 100",
        &[
            "--cluster-tls-cert",
            &tls("server.pem"),
            "--cluster-tls-key",
            &tls("server.key"),
            "--cluster-ca",
            &tls("ca.pem"),
        ],
        TOKEN,
    );
    let mut anonymous = worker(&master.port, &["--cluster-ca", &tls("ca.pem")], TOKEN);
    anonymous.wait_for("does not accept this worker's client certificate", Duration::from_secs(10));
    assert_eq!(get_json(&master.base, "/stats/requests")["worker_count"], 0, "no client certificate, no entry");
    master
        .proc
        .wait_for("no client certificate (this master wants one signed by its --cluster-ca)", Duration::from_secs(5));
    // It says why and stops, instead of retrying for ever (exit code 2:
    // a configuration error, which --processes does not restart).
    assert_eq!(anonymous.wait_exit(Duration::from_secs(30)), 2, "{}", anonymous.text());
    assert!(anonymous.text().contains("give this worker --cluster-tls-cert and --cluster-tls-key"));
    let client = [
        "--cluster-ca",
        &tls("ca.pem"),
        "--cluster-tls-cert",
        &tls("client.pem"),
        "--cluster-tls-key",
        &tls("client.key"),
    ];
    let good = worker(&master.port, &client, TOKEN);
    good.wait_for("Connected to the master", Duration::from_secs(15));
    wait_until(Duration::from_secs(15), || t.requests_served() > 0, "the worker with a certificate runs users");
}

/// The path of a test TLS file (`tests/fixtures/tls`).
fn tls(name: &str) -> String {
    repo().join("tests/fixtures/tls").join(name).to_string_lossy().into_owned()
}

/// A demo target on HTTPS with a certificate from the test CA, wanting a
/// client certificate from that CA if `client_ca`; and its URL.
fn tls_target(client_ca: bool) -> (DemoTarget, String) {
    let tls_files = swarmer_target::TlsFiles {
        cert: tls("server.pem").into(),
        key: tls("server.key").into(),
        client_ca: client_ca.then(|| tls("ca.pem").into()),
    };
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions { tls: Some(tls_files), ..Default::default() }, 1).unwrap();
    let url = format!("https://localhost:{}", t.addr().port());
    (t, url)
}

/// A plan of two classes: Alpha (tasks tagged read and write) and Beta.
/// `source` written as `plan.lua` in `dir`.
fn plan_file(dir: &Path, source: &str) -> PathBuf {
    let plan = dir.join("plan.lua");
    std::fs::write(&plan, source).unwrap();
    plan
}

fn two_class_plan(dir: &Path) -> PathBuf {
    let plan = dir.join("plan.lua");
    std::fs::write(
        &plan,
        "local swarmer = require('swarmer')\n\
         local function get(path) return function(self) self.client:get('/', { name = path }) end end\n\
         swarmer.user('Alpha', { wait_time = swarmer.constant(0.05), tasks = {\n\
           swarmer.task{ name = 'read', tags = { 'read' }, run = get('/alpha/read') },\n\
           swarmer.task{ name = 'write', tags = { 'write' }, run = get('/alpha/write') } } })\n\
         swarmer.user('Beta', { wait_time = swarmer.constant(0.05), tasks = { get('/beta') } })\n",
    )
    .unwrap();
    plan
}

/// How a test's two workers come about.
#[derive(Clone, Copy, Debug)]
enum TwoWorkers {
    /// `--processes 2`: children of the master.
    Processes,
    /// `--master` and two `--worker -f -` processes of their own.
    Separate,
}

/// The request names a run of the two-class plan over two workers
/// recorded, with `extra` arguments (classes, tags) for the master.
fn names_run_over_two_workers(mode: TwoWorkers, extra: &[&str]) -> Vec<String> {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = two_class_plan(dir.path());
    let json = dir.path().join("stats");
    let mut args = vec!["--json-file", json.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = "--headless --expect-workers 2 -u 4 -r 100 -t 2s --only-summary";
    let (flags, token) = match mode {
        TwoWorkers::Processes => (format!("--processes 2 {run}"), ""),
        TwoWorkers::Separate => (run.to_owned(), TOKEN),
    };
    let mut master = start_master(plan.to_str().unwrap(), &t.url(), &flags, &args, token);
    let _workers: Vec<Proc> = match mode {
        TwoWorkers::Processes => Vec::new(),
        TwoWorkers::Separate => (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect(),
    };
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{mode:?}: {}", master.proc.text());
    let mut names = json_names(&json);
    names.sort();
    names
}

#[test]
fn a_distributed_run_with_a_class_and_tags_chosen_runs_only_those_tasks() {
    // The master answers questions about the plan from the outline of one
    // load; the workers build the real classes: both must pick the same,
    // and the tags reach the workers.
    for mode in [TwoWorkers::Processes, TwoWorkers::Separate] {
        assert_eq!(names_run_over_two_workers(mode, &["-T", "read", "Alpha"]), ["/alpha/read"], "{mode:?}");
        assert_eq!(names_run_over_two_workers(mode, &["-E", "write"]), ["/alpha/read", "/beta"], "{mode:?}");
    }
}

#[test]
fn workers_run_the_class_picked_by_name_not_the_one_in_its_position() {
    // Beta is the plan's second class: shares counted over the master's
    // pick must not land on Alpha, the first class of the whole plan.
    for mode in [TwoWorkers::Processes, TwoWorkers::Separate] {
        assert_eq!(names_run_over_two_workers(mode, &["Beta"]), ["/beta"], "{mode:?}");
    }
}

/// A plan whose users ask the target for their HTTP version, then record
/// a request named after it (`seen HTTP/2.0`).
fn version_plan(dir: &Path) -> PathBuf {
    let plan = dir.join("plan.lua");
    std::fs::write(
        &plan,
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self)\n\
           local r = self.client:get('/version')\n\
           self.client:get('/', { name = 'seen ' .. r.text })\n\
         end } })\n",
    )
    .unwrap();
    plan
}

fn json_names(json: &Path) -> Vec<String> {
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    entries.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn workers_speak_the_http_version_the_master_was_given() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = version_plan(dir.path());
    let plan = plan.to_str().unwrap();
    let seen = |names: &[String], version: &str| names.iter().any(|n| n == &format!("seen {version}"));

    // --processes: the children take the master's --http-version.
    let json = dir.path().join("local");
    let flags = "--processes 2 --headless --expect-workers 2 -u 4 -r 100 -t 2s --only-summary --http-version 2";
    let mut master = start_master(plan, &t.url(), flags, &["--json-file", json.to_str().unwrap()], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let names = json_names(&json);
    assert!(seen(&names, "HTTP/2.0") && !seen(&names, "HTTP/1.1"), "{names:?}");
    assert!(master.proc.text().contains("Users run with HTTP version 2"), "{}", master.proc.text());

    // Workers of their own: the one without the flag takes the master's,
    // the one with --http-version 1 keeps its own.
    let json = dir.path().join("remote");
    let flags = "--headless --expect-workers 2 -u 4 -r 100 -t 3s --only-summary --http-version 2";
    let mut master = start_master(plan, &t.url(), flags, &["--json-file", json.to_str().unwrap()], TOKEN);
    let _plain = worker(&master.port, &[], TOKEN);
    let own = worker(&master.port, &["--http-version", "1"], TOKEN);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let names = json_names(&json);
    assert!(seen(&names, "HTTP/2.0") && seen(&names, "HTTP/1.1"), "{names:?}");
    assert!(own.text().contains("Users run with HTTP version 1"), "{}", own.text());
}

/// A port free on 127.0.0.1 a moment ago (for a master restarted on it).
fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string()
}

/// A worker (`-f -`, a 30 s master timeout) whose master, on `port` with
/// `extra` arguments, ran 2 users of `plan` and was then killed: the worker
/// keeps its users, waiting for a master to come back.
fn worker_of_a_killed_master(plan: &str, target: &str, port: &str, extra: &[&str]) -> Proc {
    let first = format!("--master-bind-port {port} --headless --expect-workers 1 -u 2 -r 100");
    let mut master = start_master(plan, target, &first, extra, TOKEN);
    let w = worker(port, &["--master-timeout", "30"], TOKEN);
    w.wait_for("All users spawned", Duration::from_secs(20));
    master.proc.kill9();
    w.wait_for("Lost the master", Duration::from_secs(5));
    w
}

/// A plan in a folder of its own whose one task records `name`.
fn named_plan(dir: &Path, name: &str) -> String {
    let folder = dir.join(name.trim_start_matches('/'));
    std::fs::create_dir_all(&folder).unwrap();
    let plan = folder.join("plan.lua");
    std::fs::write(
        &plan,
        format!(
            "local swarmer = require('swarmer')\n\
             swarmer.user('U', {{ wait_time = swarmer.constant(0.05), tasks = {{ function(self)\n\
               self.client:get('/', {{ name = '{name}' }})\n\
             end }} }})\n"
        ),
    )
    .unwrap();
    plan.to_string_lossy().into_owned()
}

#[test]
fn a_master_restarted_with_another_plan_gets_it_run_and_none_of_the_old_statistics() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let w = worker_of_a_killed_master(&named_plan(dir.path(), "/one"), &t.url(), &port, &[]);

    // The new master runs another plan on the same port; the worker keeps
    // its old users meanwhile (its master timeout is long).
    let json = dir.path().join("stats");
    let second = format!("--master-bind-port {port} --headless --expect-workers 1 -u 2 -r 100 -t 2s --only-summary");
    let mut master = start_master(
        &named_plan(dir.path(), "/two"),
        &t.url(),
        &second,
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    assert_eq!(json_names(&json), ["/two"], "{}\n{}", master.proc.text(), w.text());
    assert!(w.text().contains("The master runs another plan now"), "{}", w.text());
}

#[test]
fn a_restarted_master_counts_nothing_its_workers_recorded_for_the_previous_one() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let port = free_port();
    let w = worker_of_a_killed_master(&plan(), &t.url(), &port, &[]);
    // Let the worker's users record a while for a master that is gone.
    std::thread::sleep(Duration::from_millis(1500));

    // A new master with its web UI and no test: nothing may show up.
    let master = start_master(&plan(), &t.url(), &format!("--master-bind-port {port}"), &[], TOKEN);
    wait_until(
        Duration::from_secs(15),
        || w.text().matches("Connected to the master").count() == 2,
        "the worker joins the new master",
    );
    std::thread::sleep(Duration::from_secs(3));
    let stats = get_json(&master.base, "/stats/requests");
    assert_eq!(stats["state"], "ready", "{stats}");
    let requests: u64 = stats["stats"].as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 0, "a master that ran no test counts no request\n{}", w.text());
}

#[test]
fn a_worker_stopped_by_sigterm_sigint_or_sighup_sends_its_statistics_and_leaves_without_a_loss() {
    // Kubernetes scales a deployment down with SIGTERM; a terminal sends
    // SIGINT (Ctrl-C) or SIGHUP (closed): each time the worker's users
    // stop, its last statistics reach the master, and the master moves its
    // users without calling it lost.
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT"), (libc::SIGHUP, "SIGHUP")] {
        let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("stats");
        let flags = "--headless --expect-workers 2 -u 4 -r 100 -t 4s --only-summary";
        let mut master = start_master(&plan(), &t.url(), flags, &["--json-file", json.to_str().unwrap()], TOKEN);
        let _stays = worker(&master.port, &[], TOKEN);
        let mut leaves = worker(&master.port, &[], TOKEN);
        leaves.wait_for("All users spawned", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1500));
        leaves.signal(signal);
        assert_eq!(leaves.wait_exit(Duration::from_secs(15)), 0, "{name}: {}", leaves.text());
        let said = format!("Left the master (stopped by {name})");
        assert!(leaves.text().contains(&said), "{}", leaves.text());
        assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
        let text = master.proc.text();
        assert!(text.contains(&format!("left (stopped by {name})")), "{text}");
        assert!(!text.contains("is missing") && !text.contains("was lost"), "{name}: {text}");
        let entries: Value =
            serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
        let recorded: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
        // A user stopped mid-request (the leaving worker's 2, then all 4 at
        // the end of the test) leaves that request unrecorded, as Locust's
        // killed greenlets do: at most one each.
        let served = t.requests_served();
        assert!(served >= recorded && served - recorded <= 6, "{name}: target served {served}, recorded {recorded}");
    }
}

#[test]
fn a_worker_silent_then_gone_is_one_loss_with_one_note() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let mut master =
        start_master(&plan(), &t.url(), "--autostart --expect-workers 2 -u 4 -r 100 --heartbeat-timeout 1", &[], TOKEN);
    let mut workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    master.proc.wait_for("All users spawned: 4 users over 2 workers", Duration::from_secs(20));
    // Frozen: silent past the heartbeat timeout, its connection still open.
    workers[0].signal(libc::SIGSTOP);
    master.proc.wait_for("sent no heartbeat", Duration::from_secs(10));
    // Then gone: the connection closes too. That is the same loss.
    workers[0].kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let stats = get_json(&master.base, "/stats/requests");
    let notes = stats["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(master.proc.text().matches("its users move to the other").count(), 1, "{}", master.proc.text());
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
}

#[test]
fn a_busy_master_asks_workers_to_report_less_often_and_still_counts_every_request() {
    // A merge budget of almost nothing makes this small test past the
    // master's capacity: it asks for a report every 2, then 4, then 8 s.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let mut master = start_master_with_env(
        &plan(),
        &t.url(),
        "--autostart --expect-workers 2 -u 6 -r 100 -t 14s --stop-timeout 5",
        &[],
        TOKEN,
        &[("SWARMER_MASTER_MERGE_BUDGET", "0.0001")],
    );
    let workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    master.proc.wait_for("they now report every 2 s", Duration::from_secs(20));
    for w in &workers {
        w.wait_for("The master asks for statistics every 2 s", Duration::from_secs(10));
        w.wait_for("The master asks for statistics every 4 s", Duration::from_secs(15));
    }
    wait_until(
        Duration::from_secs(40),
        || get_json(&master.base, "/stats/requests")["state"] == "stopped",
        "the test stops at its run time",
    );
    let stats = get_json(&master.base, "/stats/requests");
    let notes = stats["notes"].to_string();
    assert!(notes.contains("workers were asked to report every"), "the results say so: {notes}");
    let recorded = total_requests(&stats);
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    // Fewer, larger reports: nothing lost, the total is exact.
    let reported = reported_by(&workers);
    assert!(recorded > 100, "{recorded}");
    assert_eq!(recorded, reported, "master total = sum of the workers' reports");
    assert_eq!(t.requests_served(), recorded, "target served = recorded");
}

/// Users that keep 64 KiB a request, on the worker started with
/// `SWARMER_TEST_LEAK` set; the same plan keeps nothing elsewhere.
const LEAKY_PLAN: &str = r#"
local swarmer = require("swarmer")
local leak = os.getenv("SWARMER_TEST_LEAK") ~= nil
swarmer.user("Leaky", {
  wait_time = swarmer.constant(0.02),
  on_start = function(self) self.kept = {} end,
  tasks = {
    get = function(self)
      self.client:get("/")
      if leak then self.kept[#self.kept + 1] = string.rep("x", 65536) .. #self.kept end
    end,
  },
})
"#;

#[test]
fn users_a_worker_sheds_under_its_memory_limit_move_to_a_worker_with_room() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), LEAKY_PLAN);
    let mut master = start_master(
        plan.to_str().unwrap(),
        &t.url(),
        "--autostart --expect-workers 2 -u 8 -r 100 --heartbeat-timeout 5",
        &[],
        TOKEN,
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command.args(["--worker", "-f", "-", "--master-port", &master.port, "--shards", "1", "--memory-limit", "160MiB"]);
    command.env("SWARMER_TEST_LEAK", "1");
    let leaky = Proc::spawn(command, TOKEN);
    let roomy = worker(&master.port, &[], TOKEN);
    master.proc.wait_for("All users spawned: 8 users over 2 workers", Duration::from_secs(30));
    leaky.wait_for("Memory guard", Duration::from_secs(40));
    leaky.wait_for("shed the", Duration::from_secs(40));
    master.proc.wait_for("shed users under its memory limit", Duration::from_secs(10));
    // The test goes on with all 8 users: those shed run on the other worker.
    wait_until(
        Duration::from_secs(20),
        || {
            let s = get_json(&master.base, "/stats/requests");
            let users: Vec<u64> =
                s["workers"].as_array().unwrap().iter().map(|w| w["user_count"].as_u64().unwrap()).collect();
            users.iter().sum::<u64>() == 8 && users.iter().any(|&n| n > 4)
        },
        "8 users run, more than half on the worker with room",
    );
    let notes = get_json(&master.base, "/stats/requests")["notes"].to_string();
    assert!(notes.contains("shed users under its memory limit"), "the results say so: {notes}");
    assert!(notes.contains("moved to workers with room"), "{notes}");
    drop(roomy);
    drop(leaky);
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
}

#[test]
fn each_worker_runs_the_plans_class_mix() {
    // Two equal-weight classes, 4 users, 2 workers: each worker runs one
    // user of each (dealt round robin, each ran two of one class).
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = two_class_plan(dir.path());
    let run = "--headless --expect-workers 2 -u 4 -r 100 -t 2s --only-summary";
    for mode in [TwoWorkers::Processes, TwoWorkers::Separate] {
        let (flags, token) = match mode {
            TwoWorkers::Processes => (format!("--processes 2 {run}"), ""),
            TwoWorkers::Separate => (run.to_owned(), TOKEN),
        };
        let mut master = start_master(plan.to_str().unwrap(), &t.url(), &flags, &[], token);
        let mut workers: Vec<Proc> = match mode {
            TwoWorkers::Processes => Vec::new(),
            TwoWorkers::Separate => (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect(),
        };
        assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{mode:?}: {}", master.proc.text());
        for w in &mut workers {
            assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
        }
        // The workers' lines: in the master's output for its children.
        let text =
            std::iter::once(master.proc.text()).chain(workers.iter().map(Proc::text)).collect::<Vec<_>>().join("\n");
        let spawned: Vec<&str> =
            text.lines().filter(|l| l.contains("[worker") && l.contains("All users spawned")).collect();
        assert_eq!(spawned.len(), 2, "{mode:?}: {text}");
        for line in spawned {
            assert!(line.contains("\"Alpha\": 1") && line.contains("\"Beta\": 1"), "{mode:?}: {line}");
        }
    }
}

#[test]
fn a_worker_runs_its_own_plan_from_any_folder() {
    // `-f` names the plan by a path from elsewhere than its folder.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master(&plan(), &t.url(), "--autostart -u 2 -r 100", &[], TOKEN);
    let w = worker(&master.port, &["-f", &plan()], TOKEN);
    w.wait_for("All users spawned", Duration::from_secs(20));
    wait_until(Duration::from_secs(10), || t.requests_served() > 0, "the worker's users run");
}

#[test]
fn a_received_plan_is_private_and_removed_when_the_worker_ends() {
    use std::os::unix::fs::PermissionsExt;
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master(&plan(), &t.url(), "--autostart -u 2 -r 100", &[], TOKEN);
    let mut w = worker(&master.port, &[], TOKEN);
    let line = w.wait_for("Received the plan", Duration::from_secs(20));
    w.wait_for("All users spawned", Duration::from_secs(20));
    let dir = PathBuf::from(line[line.find(" into ").unwrap() + 6..].trim());
    assert!(dir.is_dir(), "{line}");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_worker_that_cannot_load_the_plan_tells_the_master_why() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         if swarmer.runner.role == 'worker' then error('this plan refuses workers') end\n\
         swarmer.user('U', { tasks = { function(self) self.client:get('/') end } })\n",
    );
    let master = start_master(plan.to_str().unwrap(), &t.url(), "", &[], TOKEN);
    let mut w = worker(&master.port, &[], TOKEN);
    assert_ne!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
    let told = master.proc.wait_for("cannot run the plan", Duration::from_secs(10));
    assert!(told.contains("this plan refuses workers"), "{told}");
}

/// The class counts of "All users spawned: {...}" lines (a local run's, or
/// each worker's), summed.
fn spawned_class_counts(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("All users spawned: {")) {
        let inner = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        for pair in inner.split(", ").filter(|p| !p.is_empty()) {
            let (name, n) = pair.split_once(": ").unwrap();
            *counts.entry(name.trim_matches('"').to_owned()).or_insert(0) += n.parse::<u64>().unwrap();
        }
    }
    counts
}

#[test]
fn the_same_plan_runs_the_same_test_locally_and_over_two_workers() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = two_class_plan(dir.path());
    let plan = plan.to_str().unwrap();
    let common = ["-u", "6", "-r", "100", "-t", "2s", "--only-summary", "-E", "write"];

    let url = t.url();
    let local_json = dir.path().join("local");
    let mut args = vec!["-f", plan, "-H", &url, "--json-file", local_json.to_str().unwrap(), "--shards", "2"];
    args.extend(common);
    args.push("--headless");
    let mut local = Proc::start(&args, "");
    assert_eq!(local.wait_exit(Duration::from_secs(40)), 0, "{}", local.text());
    let local_counts = spawned_class_counts(&local.text());
    assert_eq!(local_counts.values().sum::<u64>(), 6, "{}", local.text());
    let mut local_names = json_names(&local_json);
    local_names.sort();
    assert_eq!(local_names, ["/alpha/read", "/beta"]);
    // The tasks run in the same proportions (Alpha's read task and Beta's
    // one task, equal weights and waits: about half each).
    let beta_share = |json: &Path| {
        let outcomes = json_outcomes(json);
        let count = |name: &str| outcomes.get(name).map_or(0, |(n, _)| *n);
        count("/beta") as f64 / (count("/beta") + count("/alpha/read")) as f64
    };
    let local_share = beta_share(&local_json);

    for mode in [TwoWorkers::Processes, TwoWorkers::Separate] {
        let cluster_json = dir.path().join(format!("{mode:?}"));
        let mut extra = vec!["--json-file", cluster_json.to_str().unwrap()];
        extra.extend(common);
        let (flags, token) = match mode {
            TwoWorkers::Processes => ("--processes 2 --expect-workers 2 --headless", ""),
            TwoWorkers::Separate => ("--expect-workers 2 --headless", TOKEN),
        };
        let mut master = start_master(plan, &url, flags, &extra, token);
        let mut workers: Vec<Proc> = match mode {
            TwoWorkers::Processes => Vec::new(),
            TwoWorkers::Separate => (0..2).map(|_| worker(&master.port, &["--shards", "2"], TOKEN)).collect(),
        };
        assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{mode:?}: {}", master.proc.text());
        // What each worker spawned (children of --processes log through the master).
        let mut text = master.proc.text();
        for w in &mut workers {
            assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
            text.push('\n');
            text.push_str(&w.text());
        }
        assert_eq!(spawned_class_counts(&text), local_counts, "{mode:?}: {text}");
        let mut cluster_names = json_names(&cluster_json);
        cluster_names.sort();
        assert_eq!(cluster_names, local_names, "{mode:?}");
        let cluster_share = beta_share(&cluster_json);
        assert!(
            (local_share - cluster_share).abs() < 0.15,
            "{mode:?}: local {local_share:.2}, distributed {cluster_share:.2}"
        );
    }
}

#[test]
fn workers_get_the_files_the_plan_loads_and_those_named_not_the_whole_folder() {
    // A busy folder: the plan, a module it requires, data it reads, an old
    // report it never opens, and data a task opens while running.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/paths.lua"), "return { home = '/' }").unwrap();
    std::fs::write(dir.path().join("users.csv"), "name\nalice\n").unwrap();
    std::fs::write(dir.path().join("old_report_stats.csv"), "Type,Name\n".repeat(1000)).unwrap();
    std::fs::write(dir.path().join("late.json"), "{\"path\": \"/late\"}").unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         local paths = require('lib.paths')\n\
         local users = swarmer.csv('users.csv')\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self)\n\
           local late = swarmer.json('late.json')\n\
           self.client:get(paths.home, { name = late.path .. '/' .. users:next().name })\n\
         end } })\n",
    );
    let plan = plan.to_str().unwrap();
    let master = start_master(plan, &t.url(), "--autostart -u 1 -r 100", &[], TOKEN);
    let w = worker(&master.port, &[], TOKEN);
    let received = w.wait_for("Received the plan", Duration::from_secs(20));
    assert!(received.contains("(3 files)"), "plan.lua, lib/paths.lua, users.csv: {received}");
    // The task's late.json was not shipped: its users fail, saying so.
    wait_until(
        Duration::from_secs(15),
        || get_json(&master.base, "/exceptions").to_string().contains("late.json"),
        "an exception naming late.json",
    );
    drop(w);
    drop(master);

    // Named with --plan-files, it travels too and the users run.
    let master = start_master(plan, &t.url(), "--autostart -u 1 -r 100", &["--plan-files", "late.json"], TOKEN);
    let w = worker(&master.port, &[], TOKEN);
    let received = w.wait_for("Received the plan", Duration::from_secs(20));
    assert!(received.contains("(4 files)"), "{received}");
    wait_until(
        Duration::from_secs(15),
        || {
            get_json(&master.base, "/stats/requests")["stats"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "/late/alice")
        },
        "the users run with the shipped data",
    );
}

#[test]
fn a_plan_in_a_subfolder_ships_the_modules_it_requires_from_the_working_directory() {
    // `plans/api.lua` requires `common/names.lua` at the project's root;
    // the master runs from that root, the worker somewhere else.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plans")).unwrap();
    std::fs::create_dir_all(dir.path().join("common")).unwrap();
    std::fs::write(dir.path().join("common/names.lua"), "return { path = '/from-root' }").unwrap();
    std::fs::write(
        dir.path().join("plans/api.lua"),
        "local swarmer = require('swarmer')\n\
         local names = require('common.names')\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = { function(self)\n\
           self.client:get('/', { name = names.path })\n\
         end } })\n",
    )
    .unwrap();
    let json = dir.path().join("stats");
    let args = [
        "-f",
        "plans/api.lua",
        "-H",
        &t.url(),
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        "0",
        "--headless",
        "--expect-workers",
        "1",
        "-u",
        "2",
        "-r",
        "100",
        "-t",
        "2s",
        "--only-summary",
        "--json-file",
        json.to_str().unwrap(),
    ];
    let mut master = Proc::start_in(dir.path(), &args, TOKEN);
    let port = port_after(&master.wait_for("Cluster master listening on", Duration::from_secs(20)), "listening on ");
    let w = worker(&port, &[], TOKEN);
    assert_eq!(master.wait_exit(Duration::from_secs(40)), 0, "{}\n{}", master.text(), w.text());
    assert!(w.text().contains("Received the plan plans/api.lua (2 files)"), "{}", w.text());
    assert_eq!(json_names(&json), ["/from-root"], "{}", w.text());
}

#[test]
fn workers_use_the_masters_certificates_for_the_target() {
    // The target wants TLS with a client certificate, both from the test
    // CA. Only the master is given --ca-cert and --client-cert/--client-key;
    // over its encrypted cluster port the workers get them.
    let (_target, url) = tls_target(true);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let (ca, cert, key) = (tls("ca.pem"), tls("client.pem"), tls("client.key"));
    let (server_pem, server_key) = (tls("server.pem"), tls("server.key"));
    let extra = [
        "--json-file",
        json.to_str().unwrap(),
        "--ca-cert",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
        "--cluster-tls-cert",
        &server_pem,
        "--cluster-tls-key",
        &server_key,
    ];
    let flags = "--headless --expect-workers 1 -u 2 -r 100 -t 2s --only-summary";
    let mut master = start_master(&plan(), &url, flags, &extra, TOKEN);
    let w = worker(&master.port, &["--cluster-ca", &ca], TOKEN);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}\n{}", master.proc.text(), w.text());
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    let requests: u64 = entries.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum();
    let failures: u64 = entries.as_array().unwrap().iter().map(|e| e["num_failures"].as_u64().unwrap()).sum();
    assert!(requests > 0 && failures == 0, "{requests} requests, {failures} failures\n{}", w.text());
}

/// A master (web UI, heartbeat timeout 2 s) running 30 users of two
/// classes, Alpha and Beta (GET / named after the class, the given wait,
/// and `extra` fields), over 3 workers, all users spawned.
fn thirty_users_over_three_workers(dir: &Path, target: &str, wait: f64, extra: &str) -> (MasterProc, Vec<Proc>) {
    let plan = dir.join("plan.lua");
    let text = format!(
        "local swarmer = require('swarmer')\n\
         local function user(name) swarmer.user(name, {{ wait_time = swarmer.constant({wait}), {extra}\n\
           tasks = {{ function(self) self.client:get('/', {{ name = '/' .. name }}) end }} }}) end\n\
         user('Alpha')\n\
         user('Beta')\n"
    );
    std::fs::write(&plan, text).unwrap();
    let flags = "--autostart --expect-workers 3 -u 30 -r 1000 --heartbeat-timeout 2";
    let master = start_master(plan.to_str().unwrap(), target, flags, &[], TOKEN);
    let workers: Vec<Proc> = (0..3).map(|_| worker(&master.port, &[], TOKEN)).collect();
    master.proc.wait_for("All users spawned: 30 users over 3 workers", Duration::from_secs(20));
    (master, workers)
}

#[test]
fn a_lost_and_a_returning_worker_restart_no_other_workers_users() {
    // Every user logs in once when it starts. 30 users of two classes over
    // 3 workers: 30 logins. One worker lost: only its 10 users start again
    // elsewhere (40). A worker back: it starts 10, the others stop their
    // surplus (50). Redealing from scratch restarted whole classes.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let login = "on_start = function(self) self.client:post('/login', { name = 'login',\n\
                   data = { username = 'u', password = 'p' } }) end,";
    let (mut master, mut workers) = thirty_users_over_three_workers(dir.path(), &t.url(), 0.2, login);
    let logins = |base: &str| {
        let stats = get_json(base, "/stats/requests");
        stats["stats"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "login")
            .map(|e| e["num_requests"].as_u64().unwrap())
            .sum::<u64>()
    };
    let settle = |expected: u64, what: &str| {
        wait_until(Duration::from_secs(15), || logins(&master.base) == expected, what);
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(logins(&master.base), expected, "{what}, and no more after");
    };
    settle(30, "30 users logged in");
    workers[0].kill9();
    settle(40, "the lost worker's 10 users start elsewhere");
    workers.push(worker(&master.port, &[], TOKEN));
    settle(50, "the returning worker starts 10 and nobody else restarts");
    let stats = get_json(&master.base, "/stats/requests");
    assert_eq!(stats["user_count"], 30, "{stats}");
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
}

#[test]
fn a_master_restarted_with_the_same_plan_and_another_class_gets_that_class_run() {
    // Same plan, so the same digest: the worker must still take the new
    // master's pick (its shares count over Beta only) instead of keeping
    // the classes it built for the first master.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = two_class_plan(dir.path());
    let plan = plan.to_str().unwrap();
    let port = free_port();
    let w = worker_of_a_killed_master(plan, &t.url(), &port, &["Alpha"]);

    let json = dir.path().join("stats");
    let second = format!("--master-bind-port {port} --headless --expect-workers 1 -u 2 -r 100 -t 2s --only-summary");
    let mut master = start_master(plan, &t.url(), &second, &["--json-file", json.to_str().unwrap(), "Beta"], TOKEN);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    assert_eq!(json_names(&json), ["/beta"], "{}\n{}", master.proc.text(), w.text());
    assert!(w.text().contains("other settings now"), "{}", w.text());
}

/// Requests, failures and the first error of each request name in a run's
/// JSON statistics.
fn json_outcomes(json: &Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(json.with_extension("json")).unwrap()).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            (name, (e["num_requests"].as_u64().unwrap(), e["num_failures"].as_u64().unwrap()))
        })
        .collect()
}

#[test]
fn workers_use_the_masters_insecure_timeout_and_body_limit_in_both_modes() {
    // The target's certificate is from the test CA, which nobody is told
    // about: only --insecure lets `root` succeed. `slow` takes 1.5 s, past
    // the master's --request-timeout; `big` is past its --max-body-size.
    let (_target, url) = tls_target(false);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.1), tasks = {\n\
           function(self) self.client:get('/', { name = 'root' }) end,\n\
           function(self) self.client:get('/delay/1500', { name = 'slow' }) end,\n\
           function(self) self.client:get('/bytes/5000', { name = 'big' }) end } })\n",
    );
    let settings = "--insecure --request-timeout 0.5 --max-body-size 1000";
    let run = format!("--headless --expect-workers 2 -u 4 -r 100 -t 4s --only-summary {settings}");
    for mode in [TwoWorkers::Processes, TwoWorkers::Separate] {
        let json = dir.path().join(format!("{mode:?}"));
        let (flags, token) = match mode {
            TwoWorkers::Processes => (format!("--processes 2 {run}"), ""),
            TwoWorkers::Separate => (run.clone(), TOKEN),
        };
        let mut master =
            start_master(plan.to_str().unwrap(), &url, &flags, &["--json-file", json.to_str().unwrap()], token);
        let _workers: Vec<Proc> = match mode {
            TwoWorkers::Processes => Vec::new(),
            TwoWorkers::Separate => (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect(),
        };
        master.proc.wait_exit(Duration::from_secs(40));
        let outcomes = json_outcomes(&json);
        let (root, slow, big) = (outcomes["root"], outcomes["slow"], outcomes["big"]);
        assert!(root.0 > 0 && root.1 == 0, "{mode:?}: root {root:?}: {}", master.proc.text());
        assert!(slow.0 > 0 && slow.1 == slow.0, "{mode:?}: slow {slow:?}");
        assert!(big.0 > 0 && big.1 == big.0, "{mode:?}: big {big:?}");
    }
}

#[test]
fn processes_workers_present_the_masters_client_certificate() {
    // An unencrypted cluster port never carries a private key: the master
    // hands --client-cert/--client-key to the workers it starts as flags.
    let (_target, url) = tls_target(true);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let (ca, cert, key) = (tls("ca.pem"), tls("client.pem"), tls("client.key"));
    let extra = ["--json-file", json.to_str().unwrap(), "--ca-cert", &ca, "--client-cert", &cert, "--client-key", &key];
    let flags = "--processes 2 --headless --expect-workers 2 -u 2 -r 100 -t 2s --only-summary";
    let mut master = start_master(&plan(), &url, flags, &extra, "");
    master.proc.wait_exit(Duration::from_secs(40));
    let outcomes = json_outcomes(&json);
    let (requests, failures) = outcomes.values().fold((0, 0), |(r, f), (r2, f2)| (r + r2, f + f2));
    assert!(requests > 0 && failures == 0, "{outcomes:?}\n{}", master.proc.text());
}

#[test]
fn a_processes_worker_stopped_by_sigterm_leaves_without_a_loss_and_its_users_move() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let flags = "--processes 2 --headless --expect-workers 2 -u 4 -r 100 -t 5s --only-summary";
    let mut master = start_master(&plan(), &t.url(), flags, &["--json-file", json.to_str().unwrap()], "");
    master.proc.wait_for("All users spawned: 4 users over 2 workers", Duration::from_secs(20));
    let children = children_of(master.proc.child.id());
    assert_eq!(children.len(), 2, "{children:?}");
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: kill(2) on a child of the master this test started.
    unsafe { libc::kill(children[0], libc::SIGTERM) };
    master.proc.wait_for("left (stopped by SIGTERM)", Duration::from_secs(10));
    // The other worker takes the 2 users.
    master.proc.wait_for("All users spawned: 4 users over 1 worker", Duration::from_secs(10));
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let text = master.proc.text();
    assert!(!text.contains("is missing") && !text.contains("was lost"), "{text}");
    let (recorded, _) = json_outcomes(&json).values().fold((0, 0), |(r, f), (r2, f2)| (r + r2, f + f2));
    // At most one request unrecorded per user stopped mid-request (2 on
    // the worker that left, 4 at the end).
    let served = t.requests_served();
    assert!(served >= recorded && served - recorded <= 6, "target served {served}, recorded {recorded}");
}

/// A target that counts its open connections: each user holds one
/// (keep-alive), so the count is the users running against it.
struct CountingTarget {
    port: u16,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingTarget {
    fn spawn() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = open.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let open = counter.clone();
                open.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut line = String::new();
                    'requests: loop {
                        // A request head (GET, no body), then the answer.
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => break 'requests,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { port, open }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sample the open connections every 10 ms for `span`.
    fn samples(&self, span: Duration) -> Vec<usize> {
        let started = Instant::now();
        let mut out = Vec::new();
        while started.elapsed() < span {
            out.push(self.open.load(std::sync::atomic::Ordering::SeqCst));
            std::thread::sleep(Duration::from_millis(10));
        }
        out
    }
}

#[test]
fn users_running_stay_at_the_target_while_a_worker_is_lost_and_while_one_returns() {
    // 30 users over 3 workers. A returning worker overshot to 35 for a
    // second when every join redealt from scratch; a loss dipped below the
    // lost worker's share. Counted at the target, 100 samples a second.
    let t = CountingTarget::spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut master, mut workers) = thirty_users_over_three_workers(dir.path(), &t.url(), 0.05, "");
    let steady = t.samples(Duration::from_millis(500));
    assert!(steady.iter().all(|n| *n == 30), "steady: {steady:?}");

    workers[0].kill9();
    // Until the heartbeat timeout, 20 run; then the master moves 10.
    let lost = t.samples(Duration::from_secs(5));
    assert!(lost.iter().all(|n| (20..=30).contains(n)), "after the loss: {lost:?}");
    assert_eq!(*lost.last().unwrap(), 30, "after the loss: {lost:?}");

    workers.push(worker(&master.port, &[], TOKEN));
    let returned = t.samples(Duration::from_secs(4));
    // The newcomer is dealt its 10 once its plan has loaded, and starts
    // them at the pace the others stop their surplus: for a few
    // milliseconds some connections may overlap, or the newcomer's may not
    // be open yet. On a machine whose cores are busy elsewhere, one process
    // may lag the other by a scheduler slice or two (seen: 21 for 20 ms
    // with two spinning processes on two cores). So: the others never stop
    // more than their surplus (20 stay) nor does anyone start more than the
    // newcomer's share (40 at most), and the count is off 30 by more than 2
    // for at most 40 ms in all. (Dealt as soon as it connected, and stopped
    // twice as fast as started, it dipped to 20 for 60 ms; redealt from
    // scratch, it overshot to 35 for a second.)
    let off = returned.iter().filter(|n| !(28..=32).contains(*n)).count();
    assert!(off <= 4 && returned.iter().all(|n| (20..=40).contains(n)), "after the return: {returned:?}");
    assert_eq!(*returned.last().unwrap(), 30, "after the return: {returned:?}");
    master.proc.wait_for("users over 3 workers", Duration::from_secs(5));
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
}

#[test]
fn a_worker_with_its_own_different_plan_is_refused_with_both_digests() {
    // A `-f path` worker whose plan is not the master's would run other
    // code: both sides say so, naming the two digests, and nothing runs.
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = (named_plan(dir.path(), "mine"), named_plan(dir.path(), "theirs"));
    let mut master = start_master(&mine, &t.url(), "--autostart --expect-workers 1 -u 2 -r 100", &[], TOKEN);
    let args = ["--worker", "-f", theirs.as_str(), "--master-port", master.port.as_str(), "--shards", "1"];
    let w = Proc::start(&args, TOKEN);
    let line = master.proc.wait_for("its plan differs from the master's", Duration::from_secs(20));
    assert!(line.matches("digest ").count() == 1 && line.contains(" vs "), "{line}");
    w.wait_for("plan differs", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.requests_served(), 0, "nothing ran");
    master.proc.signal(libc::SIGTERM);
    master.proc.wait_exit(Duration::from_secs(30));
}

/// Locust's events where Locust fires them: the master hears the test's
/// spawning_complete, test_stopping and a heartbeat_sent per worker; each
/// worker a heartbeat_received; every process quitting then quit(code).
#[test]
fn masters_and_workers_fire_the_test_heartbeat_and_quit_events_once_per_process() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require("swarmer")
local function say(what) print(("EVENT %s %s"):format(swarmer.runner.role, what)) end
for _, name in ipairs({ "test_start", "spawning_complete", "test_stopping", "test_stop", "quitting" }) do
  swarmer.events[name]:add_listener(function() say(name) end)
end
swarmer.events.test_start:add_listener(function()
  if swarmer.runner.role == "worker" then say("id " .. swarmer.runner.worker_id) end
end)
local heard = {}
swarmer.events.heartbeat_sent:add_listener(function(client_id, timestamp)
  assert(math.abs(timestamp - os.time()) < 5, "a Unix time")
  if not heard[client_id] then say("heartbeat_sent " .. client_id) end
  heard[client_id] = true
end)
swarmer.events.heartbeat_received:add_listener(function(client_id, timestamp)
  assert(math.abs(timestamp - os.time()) < 5, "a Unix time")
  if not heard.master then say("heartbeat_received " .. (client_id == swarmer.runner.worker_id and "self" or client_id)) end
  heard.master = true
end)
swarmer.events.quit:add_listener(function(code) say("quit " .. code) end)
swarmer.user("U", { wait_time = swarmer.constant(0.05), tasks = { function(self) self.client:get("/") end } })
"#,
    );
    let mut master = start_master(
        plan.to_str().unwrap(),
        &t.url(),
        "--headless --expect-workers 2 -u 4 -r 100 -t 3s --only-summary",
        &[],
        TOKEN,
    );
    let mut workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &["--shards", "2"], TOKEN)).collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let events = |text: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.find("EVENT ").map(|at| l[at + 6..].trim().to_owned())).collect()
    };
    let on_master = events(&master.proc.text());
    let once_in_order = ["test_start", "spawning_complete", "test_stopping", "test_stop", "quitting", "quit 0"]
        .map(|e| format!("master {e}"));
    let test_events: Vec<&String> = on_master.iter().filter(|e| !e.contains("heartbeat")).collect();
    assert_eq!(test_events, once_in_order.iter().collect::<Vec<_>>(), "{on_master:?}");
    let mut beaten: Vec<&str> = on_master.iter().filter_map(|e| e.strip_prefix("master heartbeat_sent ")).collect();
    beaten.sort();
    let mut ids = Vec::new();
    for w in &mut workers {
        assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
        let seen = events(&w.text());
        let id = seen.iter().find_map(|e| e.strip_prefix("worker id ")).expect("the worker's id").to_owned();
        let mut rest: Vec<&str> = seen.iter().filter(|e| !e.starts_with("worker id ")).map(String::as_str).collect();
        rest.sort();
        assert_eq!(
            rest,
            [
                "worker heartbeat_received self",
                "worker quit 0",
                "worker quitting",
                "worker spawning_complete",
                "worker test_start",
                "worker test_stop",
                "worker test_stopping",
            ],
            "once per worker process (2 shards): {}",
            w.text()
        );
        ids.push(id);
    }
    ids.sort();
    assert_eq!(beaten, ids, "a heartbeat_sent for each worker, with its id");
}

/// POST a form to the web UI at `base`; returns the status line.
fn post_form(base: &str, path: &str, form: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines().next().unwrap_or_default().to_owned()
}

/// A host given only in the web UI's start form reaches the clients the
/// master's and the workers' test_start listeners make.
#[test]
fn test_start_clients_use_the_host_given_in_the_web_ui() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.events.test_start:add_listener(function()
  local r = swarmer.http_client{ record = true }:get("/headers", { name = "setup on " .. swarmer.runner.role })
  print(("SETUP %s %s"):format(swarmer.runner.role, r.status_code))
end)
swarmer.user("U", { wait_time = swarmer.constant(0.1), tasks = { function(self) self.client:get("/") end } })
"#,
    );
    let args = ["-f", plan.to_str().unwrap(), "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", "0"];
    let master =
        Proc::start(&[&args[..], &["--web-host", "127.0.0.1", "-P", "0", "--expect-workers", "1"]].concat(), TOKEN);
    let port = port_after(&master.wait_for("Cluster master listening on", Duration::from_secs(20)), "listening on ");
    let web = master.wait_for("Starting web interface at", Duration::from_secs(20));
    let base = web[web.find("http://").unwrap()..].trim().to_owned();
    let _worker = worker(&port, &[], TOKEN);
    wait_until(
        Duration::from_secs(20),
        || get_json(&base, "/stats/requests")["workers"].as_array().is_some_and(|w| w.len() == 1),
        "the worker joins",
    );
    let form = format!("user_count=2&spawn_rate=100&host={}", t.url().replace(':', "%3A").replace('/', "%2F"));
    let status = post_form(&base, "/swarm", &form);
    assert!(status.contains("200"), "{status}");
    master.wait_for("SETUP master 200", Duration::from_secs(20));
    wait_until(
        Duration::from_secs(20),
        || {
            let stats = get_json(&base, "/stats/requests");
            let names: Vec<&str> =
                stats["stats"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
            names.contains(&"setup on master") && names.contains(&"setup on worker") && names.contains(&"/")
        },
        "both listeners' requests and the users' reach the target",
    );
}

/// `--processes N` waits for its N workers before starting (Locust sets
/// --expect-workers to N), and when every one of them exits first (they
/// cannot load the plan), the master says so and ends instead of waiting.
#[test]
fn processes_wait_for_all_their_workers_and_a_master_whose_workers_all_died_ends() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let mut master =
        start_master(&plan(), &t.url(), "--processes 3 --headless -u 3 -r 100 -t 1s --only-summary", &[], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let text = master.proc.text();
    let ramp = text.lines().find(|l| l.contains("[master]") && l.contains("Ramping to")).expect("a ramp line");
    assert!(ramp.contains("over 3 workers"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let broken = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         if swarmer.runner.role == 'worker' then error('workers cannot load this') end\n\
         swarmer.user('U', { tasks = { function(self) self.client:get('/') end } })\n",
    );
    let started = Instant::now();
    let mut master = start_master(broken.to_str().unwrap(), &t.url(), "--processes 2 --headless -u 2 -t 5s", &[], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(20)), 2, "{}", master.proc.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = master.proc.text();
    assert!(text.contains("plan.lua:2: workers cannot load this"), "{text}");
    assert!(text.contains("every worker process started by --processes exited"), "{text}");

    // One of two cannot (the first to load takes the marker): the users
    // run on the other, and the master says so.
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "").unwrap();
    let one_fails = plan_file(
        dir.path(),
        &format!(
            "local swarmer = require('swarmer')\n\
             if swarmer.runner.role == 'worker' and swarmer.runner.process and not os.remove({:?}) then\n\
               error('only one worker may run this')\n\
             end\n\
             swarmer.user('U', {{ wait_time = swarmer.constant(0.1), tasks = {{ function(self) self.client:get('/') end }} }})\n",
            marker.to_str().unwrap()
        ),
    );
    let mut master =
        start_master(one_fails.to_str().unwrap(), &t.url(), "--processes 2 --headless -u 2 -t 2s", &[], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    let text = master.proc.text();
    assert!(text.contains("the test runs on 1 of the 2 expected workers"), "{text}");
    assert!(text.contains("Ramping to 2 users at a rate of 1.00 per second over 1 workers"), "{text}");
}

/// What a run's result depends on reaches two workers from the master, as
/// separate processes and as --processes children: the plan's own options,
/// --reset-stats (statistics from before spawning completed are dropped
/// everywhere), and the client settings (--connect-timeout,
/// --request-timeout), which each worker logs.
#[test]
fn plan_options_reset_stats_and_timeouts_reach_two_workers_in_both_modes() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\n\
         swarmer.add_option{ name = 'page', default = '/', help = 'the page users read' }\n\
         swarmer.user('U', { wait_time = swarmer.constant(0.05),\n\
           on_start = function(self) self.client:get('/', { name = 'before spawning completed' }) end,\n\
           tasks = { function(self) self.client:get(swarmer.options.page, { name = 'page ' .. swarmer.options.page }) end } })\n",
    );
    for mode in [TwoWorkers::Separate, TwoWorkers::Processes] {
        let json = dir.path().join(format!("{mode:?}"));
        let run = "--headless --expect-workers 2 -u 4 -r 100 -t 3s --only-summary --reset-stats";
        let (flags, token) = match mode {
            TwoWorkers::Processes => (format!("--processes 2 {run}"), ""),
            TwoWorkers::Separate => (run.to_owned(), TOKEN),
        };
        let extra = ["--json-file", json.to_str().unwrap(), "--page", "/profile", "--connect-timeout", "3"];
        let mut master = start_master(
            plan.to_str().unwrap(),
            &t.url(),
            &flags,
            &[&extra[..], &["--request-timeout", "7"]].concat(),
            token,
        );
        let mut workers: Vec<Proc> = match mode {
            TwoWorkers::Processes => Vec::new(),
            TwoWorkers::Separate => (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect(),
        };
        assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{mode:?}: {}", master.proc.text());
        let mut outcomes = json_outcomes(&json);
        // Kept with nothing counted, or gone: either way reset.
        outcomes.retain(|_, (requests, _)| *requests > 0);
        assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["page /profile"], "{mode:?}: {outcomes:?}");
        assert!(outcomes["page /profile"].0 > 20, "{mode:?}: {outcomes:?}");
        // Each worker logs what its users run with (children of
        // --processes log through the master).
        let mut text = master.proc.text();
        for w in &mut workers {
            assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
            text.push_str(&w.text());
        }
        assert_eq!(text.matches("connect timeout 3s, request timeout 7s").count(), 2, "{mode:?}: {text}");
    }
}

/// On a master too, a test started from stopped starts from zero: the
/// second test's statistics are its own, on the master and its workers.
#[test]
fn a_masters_second_test_starts_from_zero() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let master = start_master(&plan(), &t.url(), "--expect-workers 2", &[], TOKEN);
    let _workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    wait_until(
        Duration::from_secs(20),
        || get_json(&master.base, "/stats/requests")["workers"].as_array().is_some_and(|w| w.len() == 2),
        "two workers join",
    );
    assert!(post_form(&master.base, "/swarm", "user_count=4&spawn_rate=100").contains("200"));
    wait_until(Duration::from_secs(20), || total_requests(&get_json(&master.base, "/stats/requests")) > 20, "test 1");
    get_json(&master.base, "/stop");
    wait_until(
        Duration::from_secs(20),
        || get_json(&master.base, "/stats/requests")["state"] == "stopped",
        "test 1 stops",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let served_before = t.requests_served();
    assert!(post_form(&master.base, "/swarm", "user_count=2&spawn_rate=100").contains("200"));
    std::thread::sleep(Duration::from_millis(2500));
    get_json(&master.base, "/stop");
    wait_until(
        Duration::from_secs(20),
        || get_json(&master.base, "/stats/requests")["state"] == "stopped",
        "test 2 stops",
    );
    // The workers' last reports arrive within a second of the stop.
    let served = t.requests_served() - served_before;
    wait_until(
        Duration::from_secs(10),
        || total_requests(&get_json(&master.base, "/stats/requests")) == served,
        &format!("the master counts exactly the second test's {served} requests"),
    );
}

/// A master's plan sets the class mix mid-test (`swarmer.runner.set_load`):
/// the master deals the new counts to its workers.
#[test]
fn a_masters_plan_changes_the_class_mix_over_its_workers() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require("swarmer")
local function page(self) self.client:get("/") end
swarmer.user("Weekday", { wait_time = swarmer.constant(0.05), tasks = { page } })
swarmer.user("Weekend", { wait_time = swarmer.constant(0.05), tasks = { page } })
swarmer.events.spawning_complete:add_listener(function()
  if swarmer.runner.role == "master" and not swarmer.shared.moved then
    swarmer.shared.moved = true
    swarmer.runner.set_load{ users = 6, spawn_rate = 100, mix = { Weekday = 1, Weekend = 2 } }
  end
end)
"#,
    );
    let mut master =
        start_master(plan.to_str().unwrap(), &t.url(), "--processes 2 --headless -u 4 -r 100 -t 5s", &[], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let text = master.proc.text();
    // Each worker's latest spawn line: their sum is the test's mix.
    let mut latest: std::collections::BTreeMap<String, String> = Default::default();
    for line in text.lines().filter(|l| l.starts_with("[worker ") && l.contains("All users spawned: {")) {
        latest.insert(line[..line.find(']').unwrap()].to_owned(), line.to_owned());
    }
    assert_eq!(latest.len(), 2, "{text}");
    let total = spawned_class_counts(&latest.values().cloned().collect::<Vec<_>>().join("\n"));
    assert_eq!(total, [("Weekday".to_owned(), 2), ("Weekend".to_owned(), 4)].into(), "{text}");
    assert!(text.contains("[master]") && text.contains("Ramping to 6 users"), "{text}");
}

/// A load shape runs on the master only: its steps reach the workers as
/// the whole test's load and mix, and it ends the distributed test.
#[test]
fn a_load_shape_on_a_master_drives_its_workers_and_ends_the_test() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = repo().join("tests/fixtures/plans/shape_phases.lua");
    let started = Instant::now();
    let mut master =
        start_master(plan.to_str().unwrap(), &t.url(), "--processes 2 --headless -t 30s --shape phases", &[], "");
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    assert!(started.elapsed() < Duration::from_secs(20), "the shape ended the test");
    let text = master.proc.text();
    assert_eq!(text.matches("The load shape ended the test").count(), 1, "once, on the master: {text}");
    // The shape's first step is the test's load from the start (not -u's 1
    // user first), and each step is marked once.
    assert!(!text.contains("Ramping to 1 users"), "{text}");
    assert_eq!(text.matches("Load shape phases: step 1 (4 users").count(), 1, "{text}");
    assert_eq!(text.matches("Load shape phases: step 2 (6 users").count(), 1, "{text}");
    let mut latest: std::collections::BTreeMap<String, String> = Default::default();
    for line in text.lines().filter(|l| l.starts_with("[worker ") && l.contains("All users spawned: {")) {
        latest.insert(line[..line.find(']').unwrap()].to_owned(), line.to_owned());
    }
    let total = spawned_class_counts(&latest.values().cloned().collect::<Vec<_>>().join("\n"));
    assert_eq!(total, [("Weekday".to_owned(), 2), ("Weekend".to_owned(), 4)].into(), "{text}");
}

/// A master's `--csv` history, as a local run's: one Aggregated row a
/// second, none twice, whose counts advance evenly although two workers
/// report on their own (they report at each whole second, every shard
/// flushed, and the master writes its rows half a second later).
#[test]
fn a_masters_history_rows_advance_evenly_with_two_workers() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("run");
    let mut master = start_master(
        "builtin:hello",
        &t.url(),
        "--headless --expect-workers 2 -u 4 -r 100 -t 6s --only-summary",
        &["--csv", prefix.to_str().unwrap()],
        TOKEN,
    );
    let _workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    let history = std::fs::read_to_string(dir.path().join("run_stats_history.csv")).unwrap();
    common::assert_history_is_even(&history, 4, 0.5);
}

/// What the plan's listeners record on the master belongs to the test they
/// ran for, and a start while the test stops is a new test once it has
/// stopped (as in Locust): the second test holds its own test_start
/// request and test_stop request, not the first test's.
#[test]
fn a_start_while_a_master_stops_is_a_new_test_with_its_own_listener_requests() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        r#"local swarmer = require("swarmer")
swarmer.user("Reader", { tasks = { function(self) self.client:get("/delay/2500", { name = "/page" }) end } })
local function on_master(path, name)
  return function()
    if swarmer.runner.role == "master" then
      print("listener " .. name)
      swarmer.http_client{ record = true }:get(path, { name = name })
    end
  end
end
swarmer.events.test_start:add_listener(on_master("/", "/setup"))
-- A slow cleanup: the next test is asked for before it is done.
swarmer.events.test_stop:add_listener(on_master("/delay/700", "/cleanup"))
"#,
    );
    let master = start_master(plan.to_str().unwrap(), &t.url(), "--expect-workers 1 --stop-timeout 5", &[], TOKEN);
    let _worker = worker(&master.port, &[], TOKEN);
    let names = || -> Vec<(String, u64)> {
        let stats = get_json(&master.base, "/stats/requests");
        let rows = stats["stats"].as_array().unwrap().iter();
        rows.map(|r| (r["name"].as_str().unwrap().to_owned(), r["num_requests"].as_u64().unwrap())).collect()
    };
    let count = |name: &str| names().iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
    let state = || get_json(&master.base, "/stats/requests")["state"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(20),
        || get_json(&master.base, "/stats/requests")["workers"].as_array().is_some_and(|w| w.len() == 1),
        "the worker joins",
    );
    assert!(post_form(&master.base, "/swarm", "user_count=2&spawn_rate=100").contains("200"));
    wait_until(Duration::from_secs(20), || count("/page") >= 2 && count("/setup") == 1, "test 1 runs");
    // The users are in their second request now.
    get_json(&master.base, "/stop");
    // Its users finish their request (--stop-timeout): the start comes meanwhile.
    wait_until(Duration::from_secs(5), || state() == "stopping", "test 1 stops");
    assert!(post_form(&master.base, "/swarm", "user_count=1&spawn_rate=100").contains("200"));
    wait_until(Duration::from_secs(20), || state() == "running" && count("/setup") == 1, "test 2 runs");
    wait_until(Duration::from_secs(20), || count("/page") >= 2, "test 2's users");
    get_json(&master.base, "/stop");
    wait_until(Duration::from_secs(20), || state() == "stopped", "test 2 stops");
    wait_until(Duration::from_secs(10), || count("/cleanup") == 1, "test 2's cleanup is counted");
    let rows = names();
    assert_eq!(count("/setup"), 1, "only the second test's setup: {rows:?}");
    assert_eq!(count("/cleanup"), 1, "only the second test's cleanup: {rows:?}");
    let text = master.proc.text();
    let listeners: Vec<&str> = text.lines().filter(|l| l.contains("listener /")).collect();
    assert_eq!(
        listeners.iter().map(|l| l.rsplit(' ').next().unwrap()).collect::<Vec<_>>(),
        ["/setup", "/cleanup", "/setup", "/cleanup"],
        "two whole tests, one after the other: {text}"
    );
}

/// An arrival rate over two workers: the master splits the iterations,
/// and the workers together start what was asked for, no more, no less.
#[test]
fn workers_together_start_the_arrival_rate_the_master_was_given() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let one_request = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\nswarmer.user('U', { tasks = { function(self) self.client:get('/') end } })\n",
    );
    let mut master = start_master(
        one_request.to_str().unwrap(),
        &t.url(),
        "--headless --expect-workers 2 --arrival-rate 300 -u 2 --max-users 20 -t 4s --stop-timeout 5 --only-summary",
        &["--json-file", json.to_str().unwrap()],
        TOKEN,
    );
    let workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats_run.json")).unwrap()).unwrap();
    let started = run["iterations"]["started"].as_u64().unwrap();
    let dropped = run["iterations"]["dropped"].as_u64().unwrap();
    // 4 s at 300/s from when each worker took its part: 1,200, give or take
    // the moments the two workers started and stopped.
    assert!(
        (1150..=1215).contains(&(started + dropped)),
        "{started} started + {dropped} dropped\n{}",
        master.proc.text()
    );
    assert!(dropped * 100 <= started, "a fast target keeps the pool free: {dropped} dropped");
    let requests: u64 = json_total(&dir.path().join("stats.json"));
    assert_eq!(requests, started, "every started iteration sent its request");
    for w in workers {
        drop(w);
    }
}

fn json_total(json: &Path) -> u64 {
    let list: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    list.as_array().unwrap().iter().map(|e| e["num_requests"].as_u64().unwrap()).sum()
}

/// A worker killed halfway up a ramp: the other takes up all its
/// iterations where the schedule is, not from the ramp's start (which
/// would run about half the iterations asked for).
#[test]
fn a_worker_killed_mid_ramp_leaves_the_other_on_the_schedule() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let one_request = plan_file(
        dir.path(),
        "local swarmer = require('swarmer')\nswarmer.user('U', { tasks = { function(self) self.client:get('/') end } })\n",
    );
    // 0 to 400/s over 6 s: 1,200 iterations.
    let mut master = start_master(
        one_request.to_str().unwrap(),
        &t.url(),
        "--headless --expect-workers 2 --arrival-rate 0 --arrival-stages 6s:400 -u 2 --max-users 40 --stop-timeout 5 \
         --only-summary",
        &[],
        TOKEN,
    );
    let mut workers: Vec<Proc> = (0..2).map(|_| worker(&master.port, &[], TOKEN)).collect();
    master.proc.wait_for("All users spawned", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    workers[0].kill9();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    let served = t.requests_served();
    assert!((1050..=1230).contains(&served), "{served} requests of the 1,200 iterations due\n{}", master.proc.text());
}

/// The seed's comparison, distributed: the predict example's REST and gRPC
/// users on two `-f -` workers, its `.proto` file shipped with the plan,
/// both rows in the master's summary without failures.
#[test]
fn the_predict_examples_rest_and_grpc_users_run_on_workers() {
    let web = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, None).unwrap();
    let plan = repo().join("examples/lua/predict/plan.lua").to_string_lossy().into_owned();
    let grpc_url = grpc.url();
    let extra = ["--grpc-host", grpc_url.as_str()];
    let flags = "--headless --expect-workers 2 -u 8 -r 100 -t 3s --only-summary";
    let mut master = start_master(&plan, &web.url(), flags, &extra, TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let port = master.port.clone();
    let mut workers: Vec<Proc> = (0..2)
        .map(|_| {
            Proc::start_in(dir.path(), &["--worker", "-f", "-", "--master-port", port.as_str(), "--shards", "1"], TOKEN)
        })
        .collect();
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}", master.proc.text());
    for w in &mut workers {
        assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
    }
    let text = master.proc.text();
    let row = |start: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.contains(start)).unwrap_or_else(|| panic!("no {start} row: {text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let grpc_row = row("grpc     categorization.TextCategorization/GetPrediction");
    let rest_row = row("POST     /predict");
    let requests = |r: &[String]| r[2].parse::<u64>().unwrap();
    assert!(requests(&grpc_row) >= 4 && requests(&rest_row) >= 4, "{grpc_row:?} {rest_row:?}");
    assert!(grpc_row[3].starts_with("0(") && rest_row[3].starts_with("0("), "{grpc_row:?} {rest_row:?}");
    assert!(grpc.served() >= requests(&grpc_row), "{} served", grpc.served());
}

/// A shipped plan whose top level asks a gRPC server over TLS what it
/// serves (server reflection): the worker loads it trusting the CA the
/// master was given (`--ca-cert`), as the worker's users do; the worker
/// itself has no `--ca-cert`.
#[test]
fn a_shipped_plans_top_level_reflection_over_tls_trusts_the_masters_ca_cert() {
    let files =
        swarmer_target::TlsFiles { cert: tls("server.pem").into(), key: tls("server.key").into(), client_ca: None };
    let grpc = PredictServer::spawn("127.0.0.1:0", 1, Some(&files)).unwrap();
    let host = format!("https://localhost:{}", grpc.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        &format!(
            "local swarmer = require('swarmer')\n\
             swarmer.grpc.reflect({host:?})\n\
             swarmer.user('G', {{ wait_time = swarmer.constant(0.05), tasks = {{ function(self)\n\
               self.client:grpc('categorization.TextCategorization/GetPrediction', {{ text = 'tls' }})\n\
             end }} }})\n"
        ),
    );
    let ca = tls("ca.pem");
    let flags = "--headless --expect-workers 1 -u 1 -r 10 -t 2s --only-summary";
    let mut master = start_master(plan.to_str().unwrap(), &host, flags, &["--ca-cert", &ca], TOKEN);
    let mut w = worker(&master.port, &[], TOKEN);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(40)), 0, "{}\n{}", master.proc.text(), w.text());
    assert_eq!(w.wait_exit(Duration::from_secs(20)), 0, "{}", w.text());
    let text = master.proc.text();
    let line = text.lines().find(|l| l.contains("GetPrediction")).unwrap_or_else(|| panic!("no grpc row: {text}"));
    let row: Vec<&str> = line.split_whitespace().collect();
    assert!(row[2].parse::<u64>().unwrap() >= 5 && row[3].starts_with("0("), "{row:?}\n{}", w.text());
}

/// The processes whose parent is `pid` (any of its threads: a worker
/// started again is the supervisor thread's child).
fn children_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command's name in parentheses: state, then the parent.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// `--processes 2`: a worker process killed mid-test is started again,
/// rejoins and takes users again; what it had reported before it died
/// stays in the totals, and the results say a worker was lost and list
/// the incident (process, time, cause).
#[test]
fn a_killed_worker_process_is_started_again_and_takes_users_again() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats");
    let flags = "--processes 2 --autostart --expect-workers 2 -u 4 -r 100 --heartbeat-timeout 2 --stop-timeout 5";
    let web_and_json = ["--json-file", json.to_str().unwrap(), "--web-host", "127.0.0.1", "-P", "0"];
    let mut master = start_master(&plan(), &t.url(), flags, &web_and_json, "");
    let web = master.proc.wait_for("Starting web interface at", Duration::from_secs(20));
    let base = web[web.find("http://").unwrap()..].trim().to_owned();
    master.proc.wait_for("All users spawned: 4 users over 2 workers", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4));
    let first: Vec<String> = get_json(&base, "/stats/requests")["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 2);
    let before = total_requests(&get_json(&base, "/stats/requests"));
    let children = children_of(master.proc.child.id());
    assert_eq!(children.len(), 2, "two worker processes: {children:?}");
    // SAFETY: kill(2) on a process of this test's own.
    unsafe { libc::kill(children[0], libc::SIGKILL) };
    master.proc.wait_for("started it again", Duration::from_secs(15));
    wait_until(
        Duration::from_secs(30),
        || {
            let s = get_json(&base, "/stats/requests");
            let workers = s["workers"].as_array().unwrap().clone();
            let live: Vec<&Value> = workers.iter().filter(|w| w["state"] != "missing").collect();
            let users: u64 = live.iter().map(|w| w["user_count"].as_u64().unwrap()).sum();
            let new_one_busy = live
                .iter()
                .any(|w| !first.iter().any(|id| w["id"] == id.as_str()) && w["user_count"].as_u64().unwrap() > 0);
            live.len() == 2 && users == 4 && new_one_busy
        },
        "the worker started again runs users, the two live workers all 4",
    );
    assert_eq!(children_of(master.proc.child.id()).len(), 2, "two worker processes again");
    let notes = get_json(&base, "/stats/requests")["notes"].clone();
    assert!(notes.to_string().contains("was lost during the test"), "the results say so: {notes}");
    assert!(master.proc.text().contains("killed by signal 9"), "and why: {}", master.proc.text());
    // The report lists the incident itself: which process, when, why.
    let incident = format!("(pid {}) killed by signal 9", children[0]);
    assert!(notes.to_string().contains(&incident), "{incident:?} in {notes}");
    assert!(notes.to_string().contains("Z; started again (pid "), "with its time: {notes}");
    let after = total_requests(&get_json(&base, "/stats/requests"));
    assert!(after >= before, "the killed worker's reported samples stay: {before} -> {after}");
    master.proc.signal(libc::SIGTERM);
    assert_eq!(master.proc.wait_exit(Duration::from_secs(30)), 0, "{}", master.proc.text());
    let final_total = json_total(&json.with_extension("json"));
    // Only what the killed worker had not yet sent (its last second or two)
    // is missing.
    let lost = t.requests_served() - final_total;
    assert!(final_total >= after && lost * 6 < before, "lost {lost} of {before} before the kill");
}

/// The status code of `GET path` on 127.0.0.1:`port` (HTTP/1.0).
fn status_of(port: &str, path: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{text:?}"))
}

/// `--health-port`, for Kubernetes probes: a worker's liveness check
/// answers from the start, its readiness follows its master, and garbage
/// on the port changes neither.
#[test]
fn a_workers_health_checks_answer_and_readiness_follows_its_master() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let (port, health) = (free_port(), free_port());
    let w = worker(&port, &["--health-port", &health, "--master-timeout", "30"], TOKEN);
    w.wait_for("Health checks on", Duration::from_secs(20));
    assert_eq!(status_of(&health, "/healthz"), 200);
    assert_eq!(status_of(&health, "/readyz"), 503, "no master yet");
    let flags = format!("--master-bind-port {port} --headless --expect-workers 1 -u 1 -r 10");
    let mut master = start_master(&plan(), &t.url(), &flags, &[], TOKEN);
    w.wait_for("Connected to the master", Duration::from_secs(20));
    wait_until(Duration::from_secs(10), || status_of(&health, "/readyz") == 200, "ready once connected");
    let mut garbage = std::net::TcpStream::connect(format!("127.0.0.1:{health}")).unwrap();
    garbage.write_all(b"\x16\x03\x01\x00\xffnot http at all\r\n\r\n").unwrap();
    master.proc.kill9();
    w.wait_for("Lost the master", Duration::from_secs(10));
    wait_until(Duration::from_secs(10), || status_of(&health, "/readyz") == 503, "not ready without its master");
    assert_eq!(status_of(&health, "/healthz"), 200, "alive all the same");
}

/// A worker that does not trust the master's certificate (the wrong
/// `--cluster-ca`) says so and what to give, and stops after about ten
/// tries instead of retrying for ever; nothing runs.
#[test]
fn a_worker_that_does_not_trust_the_masters_certificate_says_why_and_stops() {
    let t = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let tls_flags = ["--cluster-tls-cert", &tls("server.pem"), "--cluster-tls-key", &tls("server.key")];
    let master = start_master(&plan(), &t.url(), "--autostart -u 2 -r 100", &tls_flags, TOKEN);
    // A certificate that did not sign the master's, as the CA.
    let mut w =
        worker(&master.port, &["--cluster-ca", &tls("client.pem"), "--cluster-server-name", "localhost"], TOKEN);
    let code = w.wait_exit(Duration::from_secs(40));
    let text = w.text();
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("presents a certificate this worker does not trust") && text.contains("--cluster-ca"),
        "{text}"
    );
    assert_eq!(text.matches("does not trust").count(), 3, "said once, then once when it stops (log and exit): {text}");
    assert_eq!(t.requests_served(), 0);
    // The master says why too.
    master.proc.wait_for("the worker does not trust this master's certificate", Duration::from_secs(5));
}
