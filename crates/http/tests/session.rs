//! The per-user client against the real demo target on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarmer_http::{ClientConfig, HttpError, HttpVersionPreference, Request, Session, TlsOptions, Version};
use swarmer_target::{DemoTarget, TargetOptions, TlsFiles};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tls").join(name)
}

fn plain_target() -> DemoTarget {
    DemoTarget::spawn("127.0.0.1:0", TargetOptions::default(), 1).unwrap()
}

fn tls_target(require_client_cert: bool) -> DemoTarget {
    let tls = TlsFiles {
        cert: fixture("server.pem"),
        key: fixture("server.key"),
        client_ca: require_client_cert.then(|| fixture("ca.pem")),
    };
    DemoTarget::spawn("127.0.0.1:0", TargetOptions { tls: Some(tls), ..Default::default() }, 1).unwrap()
}

fn session(base: &str) -> Session {
    Session::new(Arc::new(ClientConfig::default_config()), base)
}

fn trusting_session(base: &str, version: HttpVersionPreference, client_cert: bool) -> Session {
    let tls = TlsOptions {
        insecure: false,
        ca_certs: vec![fixture("ca.pem")],
        client_cert: client_cert.then(|| (fixture("client.pem"), fixture("client.key"))),
    };
    Session::new(Arc::new(ClientConfig::new(&tls, version).unwrap()), base)
}

#[tokio::test(flavor = "current_thread")]
async fn keep_alive_reuses_one_connection() {
    let target = plain_target();
    let mut s = session(&target.url());
    for _ in 0..20 {
        let r = s.send(&Request::get("/")).await;
        assert_eq!(r.status_code(), 200, "{:?}", r.error);
        assert_eq!(r.text(), "Our example home page.");
        assert!(r.elapsed >= r.ttfb);
    }
    assert_eq!(s.open_connections(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn cookies_from_login_are_sent_on_later_requests() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::post("/login").form(&[("username", "ellen_key"), ("password", "education")])).await;
    assert_eq!(r.status_code(), 200);
    let r = s.send(&Request::get("/profile")).await;
    assert_eq!(r.text(), "Profile of ellen_key");
    // Another user (session) has its own jar.
    let mut other = session(&target.url());
    assert_eq!(other.send(&Request::get("/profile")).await.text(), "Profile");
}

#[tokio::test(flavor = "current_thread")]
async fn redirects_are_followed_up_to_the_limit() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::get("/redirect/3")).await;
    assert_eq!(r.status_code(), 200);
    assert!(r.url.ends_with('/'), "{}", r.url);
    let r = s.send(&Request::get("/redirect/2").allow_redirects(false)).await;
    assert_eq!(r.status_code(), 302);

    let mut config = ClientConfig::default_config();
    config.max_redirects = 2;
    let mut limited = Session::new(Arc::new(config), target.url());
    let r = limited.send(&Request::get("/redirect/5")).await;
    assert!(matches!(r.error, Some(HttpError::TooManyRedirects(2))), "{:?}", r.error);
}

#[tokio::test(flavor = "current_thread")]
async fn gzip_bodies_are_decoded() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::get("/gzip")).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.text().starts_with("gzipped body gzipped body"), "{}", r.text());
}

#[tokio::test(flavor = "current_thread")]
async fn basic_auth_comes_from_the_url() {
    let target = plain_target();
    let base = format!("http://alice:s3cret@{}", target.addr());
    let mut s = session(&base);
    assert_eq!(s.send(&Request::get("/basic-auth/alice/s3cret")).await.status_code(), 200);
    assert_eq!(s.send(&Request::get("/basic-auth/alice/other")).await.status_code(), 401);
}

#[tokio::test(flavor = "current_thread")]
async fn query_form_json_and_headers_reach_the_server() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::post("/echo?a=1").query("b", "two words").json(&serde_json::json!({"k": [1, 2]}))).await;
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["query"], "a=1&b=two+words");
    assert_eq!(v["content_type"], "application/json");
    assert_eq!(v["body"], r#"{"k":[1,2]}"#);

    let r = s.send(&Request::get("/headers").header("User-Agent", "my-agent").header("X-Trace", "7")).await;
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["user-agent"], "my-agent");
    assert_eq!(v["x-trace"], "7");
    assert_eq!(v["host"], target.addr().to_string());
    let v: serde_json::Value = s.send(&Request::get("/headers")).await.json().unwrap();
    assert_eq!(v["user-agent"], format!("swarmer/{}", env!("CARGO_PKG_VERSION")));
    let other = format!("http://localhost:{}/headers", target.addr().port());
    let v: serde_json::Value = s.send(&Request::get(other.as_str())).await.json().unwrap();
    assert_eq!(v["host"], format!("localhost:{}", target.addr().port()), "an absolute URL gets its own Host");
}

#[tokio::test(flavor = "current_thread")]
async fn timeouts_and_refused_connections_are_errors_not_panics() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::get("/delay/2000").timeout(Duration::from_millis(100))).await;
    assert!(matches!(r.error, Some(HttpError::Timeout(_))), "{:?}", r.error);
    assert!(r.elapsed >= Duration::from_millis(100));
    assert_eq!(r.status_code(), 0);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut s = session(&format!("http://127.0.0.1:{port}"));
    let r = s.send(&Request::get("/")).await;
    assert!(matches!(r.error, Some(HttpError::Connect { .. })), "{:?}", r.error);
    assert!(r.default_failure("/").unwrap().contains("ConnectionRefusedError"));
}

#[tokio::test(flavor = "current_thread")]
async fn status_codes_give_locust_style_failures() {
    let target = plain_target();
    let mut s = session(&target.url());
    let r = s.send(&Request::get("/status/503")).await;
    assert_eq!(
        r.default_failure("/status/503").unwrap(),
        "HTTPError('503 Server Error: Service Unavailable for url: /status/503')"
    );
    assert_eq!(s.send(&Request::get("/")).await.default_failure("/"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn https_negotiates_http2_by_alpn() {
    let target = tls_target(false);
    let base = format!("https://localhost:{}", target.addr().port());
    let mut s = trusting_session(&base, HttpVersionPreference::Auto, false);
    let r = s.send(&Request::get("/version")).await;
    assert_eq!(r.status_code(), 200, "{:?}", r.error);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.text(), "HTTP/2.0");

    let mut h1 = trusting_session(&base, HttpVersionPreference::Http1Only, false);
    assert_eq!(h1.send(&Request::get("/version")).await.text(), "HTTP/1.1");
}

#[tokio::test(flavor = "current_thread")]
async fn tls_verifies_certificates_unless_insecure() {
    let target = tls_target(false);
    let base = format!("https://localhost:{}", target.addr().port());
    let mut strict = session(&base);
    let r = strict.send(&Request::get("/")).await;
    assert!(matches!(r.error, Some(HttpError::Tls(_))), "{:?}", r.error);

    let insecure = TlsOptions { insecure: true, ..Default::default() };
    let config = ClientConfig::new(&insecure, HttpVersionPreference::Auto).unwrap();
    let mut lax = Session::new(Arc::new(config), base);
    assert_eq!(lax.send(&Request::get("/")).await.status_code(), 200);
}

#[tokio::test(flavor = "current_thread")]
async fn client_certificates_satisfy_mutual_tls() {
    let target = tls_target(true);
    let base = format!("https://localhost:{}", target.addr().port());
    let mut without = trusting_session(&base, HttpVersionPreference::Auto, false);
    assert!(without.send(&Request::get("/")).await.error.is_some());
    let mut with = trusting_session(&base, HttpVersionPreference::Auto, true);
    let r = with.send(&Request::get("/")).await;
    assert_eq!(r.status_code(), 200, "{:?}", r.error);
}

#[tokio::test(flavor = "current_thread")]
async fn prior_knowledge_h2c_on_plain_tcp() {
    let target = plain_target();
    let config = ClientConfig::new(&TlsOptions::default(), HttpVersionPreference::Http2Only).unwrap();
    let mut s = Session::new(Arc::new(config), target.url());
    let r = s.send(&Request::get("/version")).await;
    assert_eq!(r.version, Version::HTTP_2, "{:?}", r.error);
    assert_eq!(r.text(), "HTTP/2.0");
}

#[tokio::test(flavor = "current_thread")]
async fn bad_certificate_paths_are_reported_at_configuration() {
    let tls = TlsOptions { ca_certs: vec![PathBuf::from("/no/such/ca.pem")], ..Default::default() };
    let err = ClientConfig::new(&tls, HttpVersionPreference::Auto).unwrap_err();
    assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_kept_alive_connection_closed_by_the_server_is_retried_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that answers one request per connection, then closes it
    // without saying `Connection: close`, as idle-timeout servers do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        }
    });
    let mut s = session(&format!("http://{addr}"));
    for _ in 0..3 {
        let r = s.send(&Request::get("/")).await;
        assert_eq!(r.status_code(), 200, "{:?}", r.error);
        assert_eq!(r.text(), "ok");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_are_limited_by_the_configuration_and_each_request() {
    let target = plain_target();
    for version in [HttpVersionPreference::Http1Only, HttpVersionPreference::Http2Only] {
        let mut config = ClientConfig::new(&TlsOptions::default(), version).unwrap();
        assert_eq!(config.max_body_bytes, swarmer_http::DEFAULT_MAX_BODY_BYTES);
        config.max_body_bytes = 1000;
        let mut s = Session::new(Arc::new(config), target.url());
        let r = s.send(&Request::get("/bytes/1000")).await;
        assert_eq!((r.status_code(), r.body.len()), (200, 1000), "{version:?}: exactly the limit: {:?}", r.error);
        let r = s.send(&Request::get("/bytes/1001")).await;
        assert!(
            matches!(r.error, Some(HttpError::BodyTooLarge { limit: 1000, decoded: false })),
            "{version:?}: {:?}",
            r.error
        );
        let r = s.send(&Request::get("/bytes/5000").max_body(5000)).await;
        assert_eq!(r.body.len(), 5000, "{version:?}: a request's limit overrides the configuration's");
        let r = s.send(&Request::get("/bytes/500").max_body(499)).await;
        assert!(matches!(r.error, Some(HttpError::BodyTooLarge { limit: 499, .. })), "{version:?}: {:?}", r.error);
        // A failed request does not spoil the session.
        assert_eq!(s.send(&Request::get("/")).await.status_code(), 200);
    }
}

/// Sessions given one pool share its connections: never more open than
/// its limit, requests beyond it wait their turn, each session keeps its
/// own cookies, and a request that fails frees its slot.
#[tokio::test(flavor = "current_thread")]
async fn a_pool_caps_the_connections_of_the_sessions_sharing_it() {
    use std::rc::Rc;
    use swarmer_http::ConnectionPool;
    let target = plain_target();
    let config = Arc::new(ClientConfig::default_config());
    let pool = Rc::new(ConnectionPool::new(3));
    let mut sessions: Vec<Session> =
        (0..10).map(|_| Session::with_pool(config.clone(), target.url(), pool.clone())).collect();
    let login = Request::post("/login").form(&[("username", "ellen_key"), ("password", "education")]);
    assert_eq!(sessions[0].send(&login).await.status_code(), 200);
    let started = std::time::Instant::now();
    let rounds = sessions.iter_mut().map(|s| async move {
        let mut ok = 0;
        for _ in 0..4 {
            ok += u32::from(s.send(&Request::get("/delay/20")).await.status_code() == 200);
        }
        ok
    });
    let ok: u32 = futures_util::future::join_all(rounds).await.into_iter().sum();
    assert_eq!(ok, 40);
    let counts = target.connections();
    assert_eq!(counts.most_open(), 3, "never more than the pool's limit");
    assert_eq!(counts.accepted(), 3, "the pool's connections are kept alive and reused");
    // 40 requests of 20 ms over 3 connections take at least 14 turns.
    assert!(started.elapsed() >= Duration::from_millis(13 * 20), "{:?}", started.elapsed());
    assert_eq!(sessions[0].send(&Request::get("/profile")).await.text(), "Profile of ellen_key");
    assert_eq!(sessions[1].send(&Request::get("/profile")).await.text(), "Profile", "cookies stay per session");
    assert_eq!(pool.open_connections(), 3);

    // A timed-out request drops its connection and frees its slot.
    let slow = sessions[2].send(&Request::get("/delay/2000").timeout(Duration::from_millis(50))).await;
    assert!(matches!(slow.error, Some(HttpError::Timeout(_))), "{:?}", slow.error);
    assert_eq!(sessions[3].send(&Request::get("/")).await.status_code(), 200);
    assert!(pool.open_connections() <= 3);

    // Another origin: an idle connection is closed to make room.
    let other = plain_target();
    let mut elsewhere: Vec<Session> =
        (0..6).map(|_| Session::with_pool(config.clone(), other.url(), pool.clone())).collect();
    let turns = elsewhere.iter_mut().map(|s| async move { s.send(&Request::get("/delay/10")).await.status_code() });
    assert!(futures_util::future::join_all(turns).await.iter().all(|code| *code == 200));
    assert!(pool.open_connections() <= 3);
    assert!(counts.open() + other.connections().open() <= 3 + 1, "closed ones may still be closing");
}

/// As with urllib3's blocking pool, waiting for a pooled connection counts
/// in the response time but not against the request's timeout.
#[tokio::test(flavor = "current_thread")]
async fn waiting_for_a_pooled_connection_is_timed_but_not_a_timeout() {
    use std::rc::Rc;
    use swarmer_http::ConnectionPool;
    let target = plain_target();
    let config = Arc::new(ClientConfig::default_config());
    let pool = Rc::new(ConnectionPool::new(1));
    let mut busy = Session::with_pool(config.clone(), target.url(), pool.clone());
    let mut waiting = Session::with_pool(config, target.url(), pool.clone());
    let slow = Request::get("/delay/400");
    let quick = Request::get("/").timeout(Duration::from_millis(150));
    let (first, second) = tokio::join!(busy.send(&slow), waiting.send(&quick));
    assert_eq!(first.status_code(), 200);
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(second.status_code(), 200);
    assert!(second.elapsed >= Duration::from_millis(350), "the wait is timed: {:?}", second.elapsed);
    // Once it holds the slot, the timeout applies as ever.
    let late = waiting.send(&Request::get("/delay/2000").timeout(Duration::from_millis(100))).await;
    assert!(matches!(late.error, Some(HttpError::Timeout(_))), "{:?}", late.error);
}
