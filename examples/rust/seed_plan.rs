//! The seed scenarios of Locust's quick start, written with Swarmer's Rust API.
//!
//! - `WebsiteUser`: logs in on start (`POST /login` with a form), then
//!   requests `/` (weight 2) and `/profile` (weight 1), waiting 5–9 s.
//! - `QuickstartUser`: requests `/index.html?ok=<random>`, grouped under the
//!   name `/index.html?ok=[random]`, with a custom User-Agent, waiting 0.1 s.
//!
//! This file is shared: `examples/rust/seed.rs` runs it as a program, and
//! the `swarmer` binary offers it as `-f builtin:seed` and in `swarmer demo`.

use rand::Rng;
use swarmer_engine::{Plan, Request, Task, TaskResult, User, UserClass, between, constant, task};

async fn login(user: &mut User) -> TaskResult {
    user.client.send(Request::post("/login").form(&[("username", "ellen_key"), ("password", "education")])).await;
    Ok(())
}

async fn index(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

async fn profile(user: &mut User) -> TaskResult {
    user.client.get("/profile").await;
    Ok(())
}

async fn random_page(user: &mut User) -> TaskResult {
    let ok: u32 = user.rng().gen_range(0..1_000_000);
    let request = Request::get(format!("/index.html?ok={ok}"))
        .name("/index.html?ok=[random]")
        .header("User-Agent", "Mozilla/5.0 (swarmer quickstart)");
    user.client.send(request).await;
    Ok(())
}

/// The two seed user classes.
pub fn user_classes() -> Vec<UserClass> {
    vec![
        UserClass::new("WebsiteUser")
            .wait_time(between(5.0, 9.0))
            .on_start(task!(login))
            .task(Task::new("index", task!(index)).weight(2))
            .task(Task::new("profile", task!(profile)).weight(1)),
        UserClass::new("QuickstartUser").wait_time(constant(0.1)).task(Task::new("random_page", task!(random_page))),
    ]
}

/// The seed plan.
pub fn plan() -> Plan {
    Plan::new("seed", user_classes)
}
