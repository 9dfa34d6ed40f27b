//! The web API end to end: a real runner with real users, the real demo
//! target, the real web server on 127.0.0.1, and HTTP requests to it.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use swarmer_engine::{
    ClientConfig, HttpVersionPreference, LocalRunner, OptionKind, OptionValues, Plan, PlanOption, Request,
    RunnerHandle, RunnerOptions, RunnerState, Task, TaskResult, TlsOptions, User, UserClass, constant, task,
};
use swarmer_http::{Response, Session};
use swarmer_target::{DemoTarget, TargetOptions};
use swarmer_web::auth::Credentials;
use swarmer_web::{FormDefaults, LogBuffer, TlsFiles, WebOptions, WebServer};

async fn get_root(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

async fn fail(user: &mut User) -> TaskResult {
    user.client.get("/status/503").await;
    Ok(())
}

/// Two classes (for the class picker), a failing request (for the
/// failure views), and a plan option `env` the users put in a request name.
fn plan() -> Plan {
    let values = OptionValues::default();
    let seen = values.clone();
    Plan::new("api-test.rs", move || {
        let env = seen.clone();
        vec![
            UserClass::new("Web")
                .wait_time(constant(0.05))
                .task(Task::new("root", task!(get_root)).weight(3))
                .task(Task::new("fail", task!(fail))),
            UserClass::new("Api").wait_time(constant(0.05)).task(Task::new(
                "env",
                move |user: &mut User| -> swarmer_engine::LocalBoxFuture<'_, TaskResult> {
                    let env = env.get("env").unwrap_or_else(|| "none".into());
                    Box::pin(async move {
                        user.client.send(Request::get("/headers").name(format!("/headers env={env}"))).await;
                        Ok(())
                    })
                },
            )),
        ]
    })
    .with_options(
        vec![
            PlanOption {
                name: "env".into(),
                help: "Environment".into(),
                default: None,
                kind: OptionKind::String,
                choices: Vec::new(),
            },
            PlanOption {
                name: "region".into(),
                help: "Where from".into(),
                default: Some("eu".into()),
                kind: OptionKind::String,
                choices: vec!["eu".into(), "us".into()],
            },
        ],
        values,
    )
}

struct Setup {
    _target: DemoTarget,
    target_url: String,
    runner: RunnerHandle,
    web: WebServer,
    client: Session,
}

fn web_options() -> WebOptions {
    WebOptions {
        host: "127.0.0.1".into(),
        port: 0,
        base_path: String::new(),
        tls: None,
        credentials: None,
        class_picker: false,
        defaults: FormDefaults { users: 1, spawn_rate: 1.0, run_time: None },
        full_history_csv: None,
        logs: LogBuffer::default(),
    }
}

async fn setup_with(options: WebOptions, host: bool) -> Setup {
    let target = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let target_url = target.url();
    let runner_options =
        RunnerOptions { shards: 1, host: host.then(|| target_url.clone()), host_required: false, ..Default::default() };
    let runner = LocalRunner::start(plan(), runner_options).await.unwrap();
    let web = WebServer::start(runner.clone(), options).await.unwrap();
    let client = Session::new(Arc::new(ClientConfig::default_config()), web.url());
    Setup { _target: target, target_url, runner, web, client }
}

async fn setup() -> Setup {
    setup_with(web_options(), true).await
}

impl Setup {
    async fn get(&mut self, path: &str) -> Response {
        self.client.send(&Request::get(path)).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client.send(&Request::post(path).form(form)).await
    }

    async fn json(&mut self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status_code(), 200, "{path}: {}", r.text());
        r.json().unwrap()
    }

    async fn wait_for(&self, state: RunnerState) {
        for _ in 0..500 {
            if self.runner.state() == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never reached {state:?}");
    }

    /// GETs the JSON at `path` every 100 ms (for up to 10 s) until `done`
    /// holds of it; returns it.
    async fn poll(&mut self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            let value = self.json(path).await;
            if done(&value) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path}: never {what}");
    }

    async fn wait_for_requests(&mut self, at_least: u64) -> Value {
        self.poll("/stats/requests", &format!("{at_least} requests"), |stats| {
            stats["stats"].as_array().unwrap().last().unwrap()["num_requests"].as_u64().unwrap() >= at_least
        })
        .await
    }

    /// Waits until the Web class's `root` and `fail` tasks have each run at
    /// least once. Which task a user picks is random, so a count of
    /// requests alone promises neither.
    async fn wait_for_both_web_tasks(&mut self) -> Value {
        self.poll("/stats/requests", "both the root and fail tasks", |stats| {
            stats["stats"].as_array().unwrap().iter().any(|r| r["name"] == "/")
                && !stats["errors"].as_array().unwrap().is_empty()
        })
        .await
    }
}

#[tokio::test]
async fn swarm_starts_a_test_and_stats_use_locusts_field_names() {
    let mut s = setup().await;
    let r = s.post("/swarm", &[("user_count", "4"), ("spawn_rate", "100")]).await;
    assert_eq!(r.status_code(), 200, "{}", r.text());
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["message"], "Swarming started");
    assert_eq!(answer["host"], s.target_url.as_str());
    s.wait_for(RunnerState::Running).await;
    s.wait_for_requests(20).await;
    let stats = s.wait_for_both_web_tasks().await;
    for key in [
        "stats",
        "errors",
        "current_rps",
        "fail_ratio",
        "current_response_time_percentiles",
        "state",
        "user_count",
        "total_rps",
        "total_fail_per_sec",
    ] {
        assert!(stats.get(key).is_some(), "missing {key}");
    }
    assert_eq!(stats["state"], "running");
    assert_eq!(stats["user_count"], 4);
    let rows = stats["stats"].as_array().unwrap();
    let last = rows.last().unwrap();
    assert_eq!((last["name"].as_str(), last["method"].as_str()), (Some("Aggregated"), Some("")));
    let root = rows.iter().find(|r| r["name"] == "/").expect("a row for /");
    for key in [
        "method",
        "name",
        "num_requests",
        "num_failures",
        "min_response_time",
        "max_response_time",
        "current_rps",
        "current_fail_per_sec",
        "avg_response_time",
        "median_response_time",
        "total_rps",
        "total_fail_per_sec",
        "response_time_percentile_0.95",
        "response_time_percentile_0.99",
        "avg_content_length",
    ] {
        assert!(root.get(key).is_some(), "row lacks {key}: {root}");
    }
    // Whole milliseconds where Locust writes integers; the exact figures
    // (the demo target answers in well under a millisecond) beside them.
    for key in ["min_response_time", "max_response_time", "median_response_time", "response_time_percentile_0.95"] {
        assert!(root[key].is_u64(), "{key} is an integer, as Locust's: {root}");
        assert!(root["exact"][key].is_number(), "exact {key}: {root}");
        let exact = root["exact"][key].as_f64().unwrap();
        assert_eq!(root[key].as_u64().unwrap(), (exact + 0.5).floor() as u64, "{key} rounds the exact figure");
    }
    let percentiles = stats["current_response_time_percentiles"].as_object().unwrap();
    assert!(percentiles.contains_key("response_time_percentile_0.5"));
    assert!(percentiles["response_time_percentile_0.95"].is_u64());
    let error = &stats["errors"].as_array().unwrap()[0];
    assert_eq!(error["name"], "/status/503");
    assert!(error["occurrences"].as_u64().unwrap() >= 1);
    for key in ["method", "error", "first_seen", "last_seen"] {
        assert!(error.get(key).is_some(), "error lacks {key}");
    }
    // The chart history: one point a second, [time, users, rps, fail/s, p50, p95, p99, avg,
    // dropped/s, corrected p95, corrected p99, then the workers' CPU and memory (lowest,
    // mean, highest)], those last ones null in a closed test of one process.
    let history = s
        .poll("/stats/history", "a point with 4 users", |h| h.as_array().unwrap().last().is_some_and(|p| p[1] == 4))
        .await;
    let point = history.as_array().unwrap().last().unwrap().as_array().unwrap().clone();
    assert_eq!(point.len(), 17);
    assert_eq!(point[1], 4, "users");
    assert!(point[8].is_null(), "no dropped iterations in a closed test");
    assert!(point[9].is_null() && point[10].is_null(), "no corrected times in a closed test");
    assert!(point[11..].iter().all(Value::is_null), "no workers in one process: {point:?}");
    // Edit: the same endpoint changes the user count of the running test.
    s.post("/swarm", &[("user_count", "2"), ("spawn_rate", "100")]).await;
    for _ in 0..200 {
        if s.runner.stats().lock().unwrap().user_count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.json("/stats/requests").await["user_count"], 2);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let mut s = setup_with(WebOptions { class_picker: true, ..web_options() }, true).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("spawn_rate", "1")], "user_count"),
        (&[("user_count", "ten"), ("spawn_rate", "1")], "user_count"),
        (&[("user_count", "-3"), ("spawn_rate", "1")], "user_count"),
        (&[("user_count", "3")], "spawn_rate"),
        (&[("user_count", "3"), ("spawn_rate", "-1")], "spawn_rate"),
        (&[("user_count", "3"), ("spawn_rate", "fast")], "spawn_rate"),
        (&[("user_count", "3"), ("spawn_rate", "1"), ("host", "ftp://x")], "host"),
        (&[("user_count", "3"), ("spawn_rate", "1"), ("run_time", "soon")], "run_time"),
        (&[("user_count", "3"), ("spawn_rate", "1"), ("user_classes", "Nope")], "user_classes"),
    ];
    for (form, field) in cases {
        let r = s.post("/swarm", form).await;
        assert_eq!(r.status_code(), 400, "{form:?}: {}", r.text());
        let answer: Value = r.json().unwrap();
        assert_eq!(answer["success"], false);
        assert_eq!(answer["field"], *field, "{form:?}: {answer}");
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{answer}");
    }
    let huge = "x".repeat(200 * 1024);
    let r = s.client.send(&Request::post("/swarm").body(huge)).await;
    assert_eq!(r.status_code(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "body");
    assert_eq!(s.runner.state(), RunnerState::Ready, "nothing started");
}

#[tokio::test]
async fn stop_and_reset_accept_get_and_post() {
    let mut s = setup().await;
    s.post("/swarm", &[("user_count", "2"), ("spawn_rate", "100")]).await;
    s.wait_for_requests(5).await;
    let r = s.get("/stop").await;
    assert_eq!(r.json::<Value>().unwrap(), serde_json::json!({"success": true, "message": "Test stopped"}));
    s.wait_for(RunnerState::Stopped).await;
    let r = s.post("/stop", &[]).await;
    assert_eq!(r.status_code(), 200);
    for reset in [Request::get("/stats/reset"), Request::post("/stats/reset")] {
        let r = s.client.send(&reset).await;
        assert_eq!((r.status_code(), r.text().as_str()), (200, "ok"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = s.json("/stats/requests").await;
    assert_eq!(stats["stats"].as_array().unwrap().last().unwrap()["num_requests"], 0);
    assert_eq!(stats["errors"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn downloads_carry_locusts_formats() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("run_stats_history.csv");
    std::fs::write(&history, "Timestamp,User Count\r\n1,2\r\n").unwrap();
    let mut s = setup_with(WebOptions { full_history_csv: Some(history), ..web_options() }, true).await;
    s.post("/swarm", &[("user_count", "3"), ("spawn_rate", "100")]).await;
    s.wait_for_requests(10).await;
    s.wait_for_both_web_tasks().await;
    let r = s.get("/stats/requests/csv").await;
    assert_eq!(r.status_code(), 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let disposition = r.header("content-disposition").unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"Locust_") && disposition.ends_with("_requests.csv\""));
    let text = r.text();
    assert!(text.starts_with("Type,Name,Request Count,Failure Count,Median Response Time"), "{text}");
    assert!(text.contains("\r\nGET,/,"), "{text}");
    assert!(text.contains("\r\n,Aggregated,"), "{text}");
    // Median and percentiles are whole milliseconds, as Locust writes them
    // (`int(row["95%"])`, locust_csv2openmetrics).
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let root: Vec<&str> = text.lines().find(|l| l.starts_with("GET,/,")).unwrap().split(',').collect();
    for (column, value) in header.iter().zip(&root) {
        if *column == "Median Response Time" || column.ends_with('%') {
            assert!(value.parse::<u64>().is_ok(), "{column} = {value:?} is not an integer");
        }
    }
    let r = s.get("/stats/failures/csv").await;
    assert!(r.text().starts_with("Method,Name,Error,Occurrences,First Seen,Last Seen\r\n"));
    assert!(r.text().contains("/status/503"));
    let r = s.get("/exceptions/csv").await;
    assert!(r.text().starts_with("Count,Message,Traceback,Nodes\r\n"));
    let r = s.get("/stats/requests_full_history/csv").await;
    assert_eq!((r.status_code(), r.text().as_str()), (200, "Timestamp,User Count\r\n1,2\r\n"));
    let r = s.get("/stats/json").await;
    let entries: Value = r.json().unwrap();
    let root = entries.as_array().unwrap().iter().find(|e| e["name"] == "/").expect("an entry for /");
    let buckets = root["response_times"].as_object().unwrap();
    assert!(buckets.keys().all(|k| k.parse::<u64>().is_ok()), "Locust's whole-ms keys: {buckets:?}");
    assert!(root["percentiles_exact"]["0.95"].is_f64() || root["percentiles_exact"]["0.95"].is_u64(), "{root}");

    let r = s.get("/stats/report").await;
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(html.contains("<td class=\"text\">/status/503</td>"));
    assert!(html.contains("id=\"percentiles\"") && html.contains("id=\"charts\"") && html.contains("uPlot"));
    assert!(!html.contains("http://cdn") && !html.contains("https://cdn"), "no CDN");
    let r = s.get("/stats/report?download=1").await;
    assert!(r.header("content-disposition").unwrap().ends_with(".html\""));
}

#[tokio::test]
async fn the_full_history_is_404_unless_kept() {
    let mut s = setup().await;
    let r = s.get("/stats/requests_full_history/csv").await;
    assert_eq!(r.status_code(), 404);
    assert!(r.text().contains("--csv-full-history"));
}

#[tokio::test]
async fn exceptions_tasks_logs_and_worker_count_have_locusts_shapes() {
    let logs = LogBuffer::default();
    logs.push("[2026-11-27 09:00:00] host/INFO/swarmer: hello");
    let mut s = setup_with(WebOptions { logs, ..web_options() }, true).await;
    assert_eq!(s.json("/exceptions").await, serde_json::json!({ "exceptions": [] }));
    let tasks = s.json("/tasks").await;
    assert_eq!(tasks["per_class"]["Web"]["tasks"]["root"]["ratio"], 0.75);
    assert_eq!(tasks["total"]["Web"]["ratio"], 0.5);
    assert_eq!(tasks["total"]["Web"]["tasks"]["fail"]["ratio"], 0.125);
    let logs = s.json("/logs").await;
    assert_eq!(logs["master"][0], "[2026-11-27 09:00:00] host/INFO/swarmer: hello");
    assert!(logs["workers"].is_object());
    assert_eq!(s.json("/worker-count").await, serde_json::json!({ "worker_count": 0 }));
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let mut s = setup().await;
    s.post("/swarm", &[("user_count", "2"), ("spawn_rate", "100")]).await;
    s.wait_for_requests(10).await;
    let stats = s.wait_for_both_web_tasks().await;
    let r = s.get("/metrics").await;
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.contains("# TYPE swarmer_requests_total counter"), "{text}");
    assert!(text.contains("swarmer_requests_total{method=\"GET\",name=\"/\"} "), "{text}");
    assert!(text.contains("swarmer_response_time_seconds{method=\"GET\",name=\"/\",quantile=\"0.99\"} "));
    assert!(text.contains("swarmer_users 2\n"), "{text}");
    assert!(text.contains("swarmer_state{state=\"running\"} 1\n"));
    let failures: u64 = text
        .lines()
        .find(|l| l.starts_with("swarmer_failures_total{method=\"GET\",name=\"/status/503\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(failures >= 1 && stats["errors"][0]["occurrences"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn the_stream_pushes_stats_every_second() {
    let s = setup().await;
    s.runner.start(2, 100.0);
    let addr = s.web.local_addr();
    let events = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 65536];
        let started = std::time::Instant::now();
        while seen.matches("event: stats").count() < 3 {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        (seen, started.elapsed())
    })
    .await
    .unwrap();
    let (text, elapsed) = events;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"));
    assert!(elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8), "{elapsed:?}");
    let data = text.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap();
    let message: Value = serde_json::from_str(data).unwrap();
    assert!(message["stats"].is_array() && message.get("history_point").is_some());
}

#[tokio::test]
async fn login_guards_the_api_and_the_ui() {
    let credentials = Credentials::parse("alice:s3cret", "test").unwrap();
    let mut s = setup_with(WebOptions { credentials: Some(credentials), ..web_options() }, true).await;
    let r = s.get("/stats/requests").await;
    assert_eq!(r.status_code(), 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"swarmer\""));
    let r = s.post("/swarm", &[("user_count", "1"), ("spawn_rate", "1")]).await;
    assert_eq!(r.status_code(), 401);
    assert_eq!(s.runner.state(), RunnerState::Ready);
    let r = s.client.send(&Request::get("/").allow_redirects(false)).await;
    assert_eq!((r.status_code(), r.header("location")), (303, Some("/login")));
    assert_eq!(s.get("/login").await.status_code(), 200);
    // The tab's icon needs no login.
    let r = s.get("/favicon.ico").await;
    assert_eq!((r.status_code(), r.header("content-type")), (200, Some("image/svg+xml")));
    assert!(r.text().starts_with("<svg"));

    let basic = |user: &str, password: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    let r = s.client.send(&Request::get("/stats/requests").header("authorization", &basic("alice", "nope"))).await;
    assert_eq!(r.status_code(), 401);
    let r = s.client.send(&Request::get("/stats/requests").header("authorization", &basic("alice", "s3cret"))).await;
    assert_eq!(r.status_code(), 200);

    let r = s
        .client
        .send(&Request::post("/login").form(&[("username", "alice"), ("password", "wrong")]).allow_redirects(false))
        .await;
    assert_eq!(r.header("location"), Some("/login?error=1"));
    let r = s
        .client
        .send(&Request::post("/login").form(&[("username", "alice"), ("password", "s3cret")]).allow_redirects(false))
        .await;
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    // The session keeps cookies: the API now answers.
    assert_eq!(s.get("/stats/requests").await.status_code(), 200);
    let r = s.client.send(&Request::post("/logout").allow_redirects(false)).await;
    assert_eq!(r.status_code(), 303);
    assert_eq!(s.get("/stats/requests").await.status_code(), 401);
}

#[tokio::test]
async fn the_base_path_prefixes_every_route() {
    let mut s = setup_with(WebOptions { base_path: "/swarmer".into(), ..web_options() }, true).await;
    assert!(s.web.url().ends_with("/swarmer"));
    let root = s.web.url().trim_end_matches("/swarmer").to_owned();
    assert_eq!(s.client.send(&Request::get(format!("{root}/swarmer/stats/requests"))).await.status_code(), 200);
    assert_eq!(s.client.send(&Request::get(format!("{root}/stats/requests"))).await.status_code(), 404);
    let page = s.client.send(&Request::get(format!("{root}/swarmer"))).await.text();
    assert!(page.contains("src=\"/swarmer/assets/app.js\""), "assets under the base path");
    let js = s.client.send(&Request::get(format!("{root}/swarmer/assets/app.js"))).await;
    assert_eq!(js.status_code(), 200);
}

#[tokio::test]
async fn tls_serves_the_ui_over_https() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tls");
    let tls = TlsFiles { cert: fixtures.join("server.pem"), key: fixtures.join("server.key") };
    let s = setup_with(WebOptions { tls: Some(tls), ..web_options() }, true).await;
    assert!(s.web.url().starts_with("https://127.0.0.1:"));
    let trusted = TlsOptions { insecure: false, ca_certs: vec![fixtures.join("ca.pem")], client_cert: None };
    let config = Arc::new(ClientConfig::new(&trusted, HttpVersionPreference::Auto).unwrap());
    let mut client = Session::new(config, s.web.url());
    let r = client.send(&Request::get("/stats/requests")).await;
    assert_eq!(r.status_code(), 200, "{}", r.text());
    // Plain HTTP to the TLS port gets nothing served.
    let plain = format!("http://127.0.0.1:{}", s.web.local_addr().port());
    let mut client = Session::new(Arc::new(ClientConfig::default_config()), plain);
    assert_ne!(client.send(&Request::get("/stats/requests").timeout(Duration::from_secs(3))).await.status_code(), 200);
}

#[tokio::test]
async fn the_class_picker_runs_only_the_picked_classes() {
    let mut s = setup_with(WebOptions { class_picker: true, ..web_options() }, true).await;
    let r = s.post("/swarm", &[("user_count", "3"), ("spawn_rate", "100"), ("user_classes", "Api")]).await;
    assert_eq!(r.json::<Value>().unwrap()["user_classes"], serde_json::json!(["Api"]));
    s.wait_for(RunnerState::Running).await;
    let counts = s.runner.stats().lock().unwrap().class_counts.clone();
    assert_eq!(counts.get("Api"), Some(&3));
    assert_eq!(counts.get("Web"), Some(&0));
}

#[tokio::test]
async fn the_forms_host_and_plan_options_reach_the_users() {
    let mut s = setup_with(WebOptions { class_picker: true, ..web_options() }, false).await;
    let r = s.post("/swarm", &[("user_count", "1"), ("spawn_rate", "100"), ("user_classes", "Api")]).await;
    assert_eq!(r.status_code(), 400, "no host anywhere: {}", r.text());
    assert_eq!(r.json::<Value>().unwrap()["field"], "host");
    let host = s.target_url.clone();
    let form = [
        ("user_count", "1"),
        ("spawn_rate", "100"),
        ("user_classes", "Api"),
        ("host", host.as_str()),
        ("env", "staging"),
    ];
    // A value outside an option's choices is refused, naming them.
    let r = s.post("/swarm", &[&form[..], &[("region", "mars")]].concat()).await;
    assert_eq!(r.status_code(), 400, "{}", r.text());
    assert!(r.text().contains("region: expected one of eu, us, got \\\"mars\\\""), "{}", r.text());
    let r = s.post("/swarm", &[&form[..], &[("region", "us")]].concat()).await;
    assert_eq!(r.status_code(), 200, "{}", r.text());
    let stats = s.wait_for_requests(3).await;
    let names: Vec<&str> = stats["stats"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&"/headers env=staging"), "{names:?}");
    assert_eq!(s.runner.host().as_deref(), Some(host.as_str()));
}

#[tokio::test]
async fn the_run_time_from_the_form_stops_the_test() {
    let mut s = setup().await;
    let r = s.post("/swarm", &[("user_count", "1"), ("spawn_rate", "100"), ("run_time", "1s")]).await;
    assert_eq!(r.json::<Value>().unwrap()["run_time"], 1);
    s.wait_for(RunnerState::Running).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    s.wait_for(RunnerState::Stopped).await;
}

#[tokio::test]
async fn the_page_embeds_its_configuration() {
    let mut s = setup_with(WebOptions { class_picker: true, ..web_options() }, true).await;
    let page = s.get("/").await.text();
    let start = page.find("<script id=\"config\" type=\"application/json\">").unwrap();
    let json = &page[start..];
    let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
    let config: Value = serde_json::from_str(json).unwrap();
    assert_eq!(config["plan"], "api-test.rs");
    assert_eq!(config["class_picker"], true);
    assert_eq!(config["options"][0]["name"], "env");
    assert_eq!(config["options"][1]["choices"], serde_json::json!(["eu", "us"]));
    assert_eq!(config["classes"].as_array().unwrap().len(), 2);
    for asset in ["app.js", "app.css", "charts.js", "uPlot.iife.min.js", "uPlot.min.css", "uPlot-LICENSE.txt"] {
        assert_eq!(s.get(&format!("/assets/{asset}")).await.status_code(), 200, "{asset}");
    }
    let openapi = s.json("/openapi.json").await;
    assert_eq!(openapi["openapi"], "3.0.3");
}

#[tokio::test]
async fn other_sites_cannot_start_stop_or_reset_a_test() {
    let mut s = setup().await;
    let form = [("user_count", "1"), ("spawn_rate", "1")];
    let cross = Request::post("/swarm").form(&form).header("sec-fetch-site", "cross-site");
    assert_eq!(s.client.send(&cross).await.status_code(), 403);
    let foreign = Request::post("/swarm").form(&form).header("origin", "http://evil.example");
    assert_eq!(s.client.send(&foreign).await.status_code(), 403);
    let image = Request::get("/stop").header("sec-fetch-site", "cross-site");
    assert_eq!(s.client.send(&image).await.status_code(), 403);
    // A sandboxed frame or a data: URL elsewhere posts `Origin: null`; a
    // browser without Sec-Fetch-Site cannot tell more.
    let opaque = Request::post("/stats/reset").header("origin", "null");
    assert_eq!(s.client.send(&opaque).await.status_code(), 403);
    // With Sec-Fetch-Site, that header decides.
    let judged = Request::post("/swarm").form(&form).header("origin", "null").header("sec-fetch-site", "cross-site");
    assert_eq!(s.client.send(&judged).await.status_code(), 403);
    assert_eq!(s.runner.state(), RunnerState::Ready, "nothing started");
    // The page itself (same origin) and scripts (no such headers) may.
    let origin = s.web.url();
    let own = Request::post("/swarm").form(&form).header("origin", &origin).header("sec-fetch-site", "same-origin");
    assert_eq!(s.client.send(&own).await.status_code(), 200);
    assert_eq!(s.get("/stop").await.status_code(), 200);
    // Reading is allowed from anywhere (a link to the UI from a chat, say).
    assert_eq!(s.client.send(&Request::get("/").header("sec-fetch-site", "cross-site")).await.status_code(), 200);
}

#[tokio::test]
async fn absurd_user_counts_are_refused() {
    let mut s = setup().await;
    let r = s.post("/swarm", &[("user_count", "100000000000"), ("spawn_rate", "1")]).await;
    assert_eq!(r.status_code(), 400);
    assert!(r.json::<Value>().unwrap()["message"].as_str().unwrap().contains("at most"));
}

/// Wrong passwords are throttled in aggregate: many connections guessing
/// at once get their answers one at a time, 0.4 s apart, by form and by
/// basic auth alike; a session cookie is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guesses_are_throttled_across_connections() {
    let credentials = Credentials::parse("alice:s3cret", "test").unwrap();
    let s = setup_with(WebOptions { credentials: Some(credentials), ..web_options() }, true).await;
    let url = s.web.url();
    let started = std::time::Instant::now();
    // At once, each on its own connection (the client is !Send: a LocalSet).
    let local = tokio::task::LocalSet::new();
    let guesses: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            local.spawn_local(async move {
                let mut client = Session::new(Arc::new(ClientConfig::default_config()), url);
                let guess = if i % 2 == 0 {
                    let header = format!("Basic {}", b64(&format!("alice:guess{i}")));
                    Request::get("/stats/requests").header("authorization", &header)
                } else {
                    let password = format!("guess{i}");
                    Request::post("/login")
                        .form(&[("username", "alice"), ("password", &password)])
                        .allow_redirects(false)
                };
                client.send(&guess).await.status_code()
            })
        })
        .collect();
    local
        .run_until(async {
            for guess in guesses {
                let status = guess.await.unwrap();
                assert!(status == 401 || status == 303, "{status}");
            }
        })
        .await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2300), "6 wrong guesses answered within {elapsed:?}: not one at a time");
    let mut client = Session::new(Arc::new(ClientConfig::default_config()), url);
    let right = Request::get("/stats/requests").header("authorization", &format!("Basic {}", b64("alice:s3cret")));
    assert_eq!(client.send(&right).await.status_code(), 200);
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn login_works_under_a_base_path_that_looks_like_a_route() {
    let credentials = Credentials::parse("alice:s3cret", "test").unwrap();
    let options = WebOptions { credentials: Some(credentials), base_path: "/log".into(), ..web_options() };
    let mut s = setup_with(options, true).await;
    let root = s.web.url().trim_end_matches("/log").to_owned();
    let page = s.client.send(&Request::get(format!("{root}/log/login"))).await;
    assert_eq!(page.status_code(), 200, "the login page is reachable");
    assert!(page.text().contains("action=\"/log/login\""));
    let login = Request::post(format!("{root}/log/login"))
        .form(&[("username", "alice"), ("password", "s3cret")])
        .allow_redirects(false);
    assert_eq!(s.client.send(&login).await.header("location"), Some("/log"));
    assert_eq!(s.client.send(&Request::get(format!("{root}/log/stats/requests"))).await.status_code(), 200);
}

/// Starting a test from stopped starts from zero, as Locust does: the
/// second test's table, failures, rates and history are its own.
#[tokio::test]
async fn a_new_test_starts_from_zero_with_its_own_rates_and_history() {
    let mut s = setup().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.post("/swarm", &[("user_count", "2"), ("spawn_rate", "100")]).await;
    s.wait_for_both_web_tasks().await;
    s.get("/stop").await;
    s.wait_for(RunnerState::Stopped).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let served_before = s._target.requests_served();
    let started = std::time::Instant::now();
    let started_unix = swarmer_engine::unix_now();
    s.post("/swarm", &[("user_count", "2"), ("spawn_rate", "100")]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.get("/stop").await;
    s.wait_for(RunnerState::Stopped).await;
    let elapsed = started.elapsed().as_secs_f64();
    s.runner.flush().await;
    let served = s._target.requests_served() - served_before;

    let stats = s.json("/stats/requests").await;
    let total = stats["stats"].as_array().unwrap().last().unwrap();
    // Only the second test's requests: all the target served since, less
    // at most one per user (a request the stop cut after the target had
    // answered it but before its user recorded it).
    let recorded = total["num_requests"].as_u64().unwrap();
    assert!(recorded <= served && recorded + 2 >= served, "{recorded} recorded, {served} served: {stats}");
    let failures: u64 = stats["errors"].as_array().unwrap().iter().map(|e| e["occurrences"].as_u64().unwrap()).sum();
    assert_eq!(failures, total["num_failures"].as_u64().unwrap(), "only the second test's failures");
    let rps = total["total_rps"].as_f64().unwrap();
    let expected = served as f64 / elapsed;
    assert!(rps >= expected * 0.85, "requests/s over the second test only: {rps:.1} for {expected:.1}");
    let history = s.json("/stats/history").await;
    let points = history.as_array().unwrap();
    assert!(!points.is_empty(), "{history}");
    for point in points {
        assert!(point[0].as_f64().unwrap() >= started_unix - 1.0, "a point from before the second test: {point}");
    }
}

async fn slow_page(user: &mut User) -> TaskResult {
    user.client.get("/delay/700").await;
    Ok(())
}

/// A start while the last test stops (its users finish their task within
/// the stop timeout) is a new test, as in Locust: the answer names its
/// host, it begins once the last user stopped, and it counts only its own
/// requests.
#[tokio::test]
async fn a_start_while_the_test_stops_is_a_new_test_once_stopped() {
    let first = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let second = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let plan = Plan::new("slow.rs", || vec![UserClass::new("Slow").task(Task::new("slow", task!(slow_page)))]);
    let options = RunnerOptions {
        shards: 1,
        host: Some(first.url()),
        stop_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let runner = LocalRunner::start(plan, options).await.unwrap();
    let web = WebServer::start(runner.clone(), web_options()).await.unwrap();
    let mut client = Session::new(Arc::new(ClientConfig::default_config()), web.url());
    let mut post = async |form: &[(&str, &str)]| -> Value {
        let r = client.send(&Request::post("/swarm").form(form)).await;
        assert_eq!(r.status_code(), 200, "{}", r.text());
        r.json().unwrap()
    };
    post(&[("user_count", "2"), ("spawn_rate", "100")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runner.state(), RunnerState::Stopping, "the users finish their request");
    let answer = post(&[("user_count", "1"), ("spawn_rate", "100"), ("host", &second.url())]).await;
    assert_eq!(answer["host"], second.url().as_str(), "the new test's host: {answer}");
    assert_eq!(runner.state(), RunnerState::Stopping, "the new test waits for the last one to stop");
    for _ in 0..300 {
        if runner.state() == RunnerState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runner.state(), RunnerState::Running, "the new test runs once the last one stopped");
    assert_eq!(runner.host().as_deref(), Some(second.url().as_str()));
    assert_eq!(first.requests_served(), 2, "the first test's users each finished their request");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    runner.stop();
    for _ in 0..300 {
        if runner.state() == RunnerState::Stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner.flush().await;
    let total = runner.stats().lock().unwrap().stats.total().num_requests;
    assert_eq!(total, second.requests_served(), "only the new test's requests count");
    assert!(total >= 2, "{total}");
}

/// `curl -F` and a browser's FormData send multipart forms; the answer's
/// host is the host of the test it started, also when that host changed.
#[tokio::test]
async fn swarm_takes_multipart_forms_and_answers_with_the_new_tests_host() {
    let mut s = setup().await;
    let other = DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap();
    let boundary = "----swarmer-test-boundary";
    let part = |name: &str, value: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let body = format!(
        "{}{}{}--{boundary}--\r\n",
        part("user_count", "3"),
        part("spawn_rate", "100"),
        part("host", &other.url())
    );
    let request =
        Request::post("/swarm").header("content-type", &format!("multipart/form-data; boundary={boundary}")).body(body);
    let r = s.client.send(&request).await;
    assert_eq!(r.status_code(), 200, "{}", r.text());
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["host"], other.url().as_str(), "the new test's host, not the previous one");
    s.wait_for(RunnerState::Running).await;
    assert_eq!(s.runner.stats().lock().unwrap().user_count, 3);
    for _ in 0..100 {
        if other.requests_served() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(other.requests_served() > 0, "the users went to the form's host");

    let file = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"user_count\"; filename=\"x.txt\"\r\n\r\n3\r\n--{boundary}--\r\n"
    );
    let request =
        Request::post("/swarm").header("content-type", &format!("multipart/form-data; boundary={boundary}")).body(file);
    let r = s.client.send(&request).await;
    assert_eq!(r.status_code(), 400, "{}", r.text());
    assert!(r.text().contains("text fields only"), "{}", r.text());
}
