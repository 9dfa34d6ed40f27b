//! Plans compiled into the `swarmer` binary, chosen with `-f builtin:NAME`.
//! Their sources are the Rust examples, so each one is also a runnable
//! example program.

use swarmer_engine::Plan;

#[path = "../../../examples/rust/seed_plan.rs"]
mod seed_plan;

#[path = "../../../examples/rust/hello_plan.rs"]
mod hello_plan;

#[path = "../../../examples/rust/idle_plan.rs"]
mod idle_plan;

/// Names and one-line descriptions of the built-in plans.
pub const BUILTINS: [(&str, &str); 3] = [
    ("seed", "Locust's quick start: log in, browse / and /profile; and a random-query user"),
    ("hello", "GET / in a loop with no wait (the benchmark user)"),
    ("idle", "one GET / per user, then an hour's wait (the memory benchmark)"),
];

/// The plan called `name`, if there is one.
pub fn builtin_plan(name: &str) -> Option<Plan> {
    match name {
        "seed" => Some(seed_plan::plan()),
        "hello" => Some(hello_plan::plan()),
        "idle" => Some(idle_plan::plan()),
        _ => None,
    }
}

/// Resolve `-f`: a Lua plan file, `builtin:NAME`, or an error naming what is accepted.
pub fn resolve_plan(
    locustfile: Option<&str>,
    options: std::collections::HashMap<String, String>,
) -> Result<Plan, String> {
    let names: Vec<String> = BUILTINS.iter().map(|(n, _)| format!("builtin:{n}")).collect();
    let Some(spec) = locustfile else {
        return Err(format!("no test plan given: use -f with one of {}", names.join(", ")));
    };
    if let Some(name) = spec.strip_prefix("builtin:") {
        return builtin_plan(name)
            .ok_or_else(|| format!("-f {spec}: no such built-in plan (have {})", names.join(", ")));
    }
    if spec.ends_with(".lua") {
        return swarmer_lua::load_plan_with_options(std::path::Path::new(spec), options).map_err(|e| e.to_string());
    }
    Err(format!("-f {spec}: expected a Lua plan (plan.lua) or builtin:NAME ({})", names.join(", ")))
}
