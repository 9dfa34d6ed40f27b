//! The seed scenarios as a complete Swarmer program: every `swarmer` flag
//! works, e.g.
//!
//! ```text
//! cargo run --release --example seed -- --headless -H http://127.0.0.1:8080 -u 20 -r 5 -t 30s
//! ```

mod seed_plan;

// Swarmer's allocator, as the `swarmer` binary uses it (see `swarmer::Allocator`).
#[global_allocator]
static GLOBAL: swarmer::Allocator = swarmer::Allocator;

fn main() -> std::process::ExitCode {
    swarmer::run_plan(seed_plan::plan())
}
