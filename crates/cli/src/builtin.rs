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
    role: swarmer_engine::NodeRole,
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
        return swarmer_lua::load_plan_as(std::path::Path::new(spec), options, role).map_err(|e| e.to_string());
    }
    Err(format!("-f {spec}: expected a Lua plan (plan.lua) or builtin:NAME ({})", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `-f`'s help lists the built-in plans by hand: it must name each one,
    /// and no other.
    #[test]
    fn the_locustfile_help_names_exactly_the_built_in_plans() {
        let command = crate::args::Cli::command();
        let locustfile = command.get_arguments().find(|a| a.get_long() == Some("locustfile")).unwrap();
        let help = locustfile.get_help().unwrap().to_string();
        let mut named: Vec<&str> = help
            .split("builtin:")
            .skip(1)
            .map(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap())
            .filter(|name| *name != "NAME")
            .collect();
        named.sort_unstable();
        let mut builtins: Vec<&str> = BUILTINS.iter().map(|(name, _)| *name).collect();
        builtins.sort_unstable();
        assert_eq!(named, builtins, "{help}");
        assert!(named.iter().all(|name| builtin_plan(name).is_some()));
    }
}
