//! The demo target's endpoints.
//!
//! | path | what it does |
//! |---|---|
//! | `GET /` | "Our example home page." |
//! | `POST /login` | form `username`, `password`; sets a `session` cookie |
//! | `GET /profile` | "Profile" (names the user when logged in) |
//! | `GET /index.html` | a small HTML page (any query string) |
//! | `GET /delay/{ms}` | answers after `ms` milliseconds |
//! | `GET /status/{code}` | answers with that status code |
//! | `GET /flaky?rate=0.2` | fails with 500 at that rate |
//! | `GET /redirect/{n}` | redirects `n` times, then to `/` |
//! | `GET /gzip` | a gzip-encoded body |
//! | `GET /cookies/set?k=v` | sets cookies from the query |
//! | `GET /cookies` | the cookies it received, as JSON |
//! | `GET /headers` | the request headers, as JSON |
//! | `POST /echo` (any method) | the body and content type it received, as JSON |
//! | `GET /basic-auth/{user}/{pass}` | 200 with matching basic auth, else 401 |
//! | `GET /version` | the HTTP version of the request |
//! | `GET /bytes/{n}` | `n` bytes of body |
//! | `POST /predict` | JSON `{"text": ...}` → `{"category": n}` (the seed's API; over gRPC see [`crate::predict`]) |
//!
//! WebSocket (`/ws`) and Server-Sent Events (`/sse`): see [`crate::live`].
//!
//! `--delay` and `--error-rate` of the target apply to every request but
//! those two.

use std::io::Write;

use base64_free::decode_basic;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use rand::Rng;

/// Answer one request. `body` is the complete request body.
pub fn respond(req: &Request<()>, body: &[u8]) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    let rest: Vec<&str> = segments.collect();
    match (req.method(), first, rest.as_slice()) {
        (&Method::GET | &Method::HEAD, "", []) => html("Our example home page."),
        (&Method::POST, "login", []) => login(body),
        (&Method::GET, "profile", []) => profile(req),
        (&Method::GET, "index.html", []) => html("<html><body><h1>Index</h1></body></html>"),
        (&Method::GET, "status", [code]) => status(code),
        (&Method::GET, "flaky", []) => flaky(query),
        (&Method::GET, "redirect", [n]) => redirect(n),
        (&Method::GET, "gzip", []) => gzip(),
        (&Method::GET, "cookies", ["set"]) => set_cookies(query),
        (&Method::GET, "cookies", []) => json(&cookies_of(req)),
        (&Method::GET, "headers", []) => json(&headers_of(req)),
        (_, "echo", []) => echo(req, body),
        (&Method::POST, "predict", []) => predict(body),
        (&Method::GET, "basic-auth", [user, pass]) => basic_auth(req, user, pass),
        (&Method::GET, "version", []) => text(StatusCode::OK, format!("{:?}", req.version())),
        (&Method::GET, "bytes", [n]) => match n.parse::<usize>() {
            Ok(n) if n <= 64 << 20 => text(StatusCode::OK, "x".repeat(n)),
            _ => text(StatusCode::BAD_REQUEST, "bytes: expected a count up to 67108864".into()),
        },
        _ => text(StatusCode::NOT_FOUND, "Not Found".into()),
    }
}

/// Milliseconds `/delay/{ms}` asks for, if this is such a request.
pub fn requested_delay_ms(path: &str) -> Option<u64> {
    path.strip_prefix("/delay/")?.parse().ok().filter(|ms| *ms <= 600_000)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn form_pairs(data: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(data).into_owned().collect()
}

fn login(body: &[u8]) -> Response<Full<Bytes>> {
    let pairs = form_pairs(body);
    let user = pairs.iter().find(|(k, _)| k == "username").map(|(_, v)| v.as_str());
    match user {
        Some(user) if !user.is_empty() => {
            let mut r = text(StatusCode::OK, "Login".into());
            let cookie = format!(
                "session={}; Path=/; HttpOnly",
                url::form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>()
            );
            if let Ok(v) = HeaderValue::try_from(cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => text(StatusCode::BAD_REQUEST, "login: form field 'username' is required".into()),
    }
}

fn profile(req: &Request<()>) -> Response<Full<Bytes>> {
    match cookies_of(req).get("session").and_then(|v| v.as_str()) {
        Some(user) => text(StatusCode::OK, format!("Profile of {user}")),
        None => text(StatusCode::OK, "Profile".into()),
    }
}

fn status(code: &str) -> Response<Full<Bytes>> {
    match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
        Some(code) => text(code, code.canonical_reason().unwrap_or("").to_owned()),
        None => text(StatusCode::BAD_REQUEST, format!("status: {code:?} is not a status code")),
    }
}

fn flaky(query: &str) -> Response<Full<Bytes>> {
    let rate = form_pairs(query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "rate")
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .unwrap_or(0.5);
    if rand::thread_rng().r#gen::<f64>() < rate {
        text(StatusCode::INTERNAL_SERVER_ERROR, "flaky: failed on purpose".into())
    } else {
        text(StatusCode::OK, "flaky: ok".into())
    }
}

fn redirect(n: &str) -> Response<Full<Bytes>> {
    let Ok(n) = n.parse::<u32>() else {
        return text(StatusCode::BAD_REQUEST, "redirect: expected a count".into());
    };
    let location = if n <= 1 { "/".to_owned() } else { format!("/redirect/{}", n - 1) };
    let mut r = text(StatusCode::FOUND, String::new());
    if let Ok(v) = HeaderValue::try_from(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn gzip() -> Response<Full<Bytes>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all("gzipped body ".repeat(20).as_bytes());
    let mut r = Response::new(Full::new(Bytes::from(enc.finish().unwrap_or_default())));
    r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn set_cookies(query: &str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, "cookies set".into());
    for (k, v) in form_pairs(query.as_bytes()) {
        if let Ok(value) = HeaderValue::try_from(format!("{k}={v}; Path=/")) {
            r.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    r
}

fn cookies_of(req: &Request<()>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for value in req.headers().get_all(header::COOKIE) {
        for pair in value.to_str().unwrap_or("").split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                map.insert(k.to_owned(), v.into());
            }
        }
    }
    map.into()
}

fn headers_of(req: &Request<()>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in req.headers() {
        map.insert(name.as_str().to_owned(), value.to_str().unwrap_or("").into());
    }
    map.into()
}

/// The seed's REST prediction: `{"text": "..."}` gives `{"category": n}`.
fn predict(body: &[u8]) -> Response<Full<Bytes>> {
    let given = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned));
    match given {
        Some(given) => json(&serde_json::json!({ "category": crate::predict::category_of(&given) })),
        None => text(StatusCode::UNPROCESSABLE_ENTITY, "predict: expected JSON {\"text\": \"...\"}".into()),
    }
}

fn echo(req: &Request<()>, body: &[u8]) -> Response<Full<Bytes>> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    json(&serde_json::json!({
        "method": req.method().as_str(),
        "query": req.uri().query().unwrap_or(""),
        "content_type": content_type,
        "body": String::from_utf8_lossy(body),
    }))
}

fn basic_auth(req: &Request<()>, user: &str, pass: &str) -> Response<Full<Bytes>> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode_basic);
    if given.as_deref() == Some(&format!("{user}:{pass}")) {
        text(StatusCode::OK, format!("authenticated as {user}"))
    } else {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized".into());
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"demo\""));
        r
    }
}

/// A tiny base64 decoder for basic-auth checks, so the demo target needs no
/// extra dependency for one header.
mod base64_free {
    pub fn decode_basic(text: &str) -> Option<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in text.trim_end_matches('=').bytes() {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            bits = (bits << 6) | v;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        String::from_utf8(out).ok()
    }
}

/// Whether to fail this request given the target-wide error rate.
pub fn should_inject_error(error_rate: f64) -> bool {
    error_rate > 0.0 && rand::thread_rng().r#gen::<f64>() < error_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn home_login_profile_like_the_seed_server() {
        assert_eq!(respond(&get("/"), b"").status(), StatusCode::OK);
        let login = Request::builder().method("POST").uri("/login").body(()).unwrap();
        let r = respond(&login, b"username=ellen_key&password=education");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::SET_COOKIE].to_str().unwrap().starts_with("session=ellen_key"));
        assert_eq!(respond(&get("/profile"), b"").status(), StatusCode::OK);
    }

    #[test]
    fn status_and_unknown_paths() {
        assert_eq!(respond(&get("/status/503"), b"").status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(respond(&get("/nope"), b"").status(), StatusCode::NOT_FOUND);
        assert_eq!(respond(&get("/status/abc"), b"").status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn basic_auth_decodes() {
        assert_eq!(base64_free::decode_basic("dXNlcjpwYXNz").as_deref(), Some("user:pass"));
    }
}
