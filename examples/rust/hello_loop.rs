//! The benchmark user as a program: `GET /` in a loop, no wait. Used by
//! `bench/` to compare Swarmer's Rust API with wrk on the same target.
//!
//! ```text
//! cargo run --release --example hello_loop -- --headless -H http://127.0.0.1:8080 -u 50 -r 1000 -t 10s --shards 1
//! ```

mod hello_plan;

// Swarmer's allocator, as the `swarmer` binary uses it (see `swarmer::Allocator`).
#[global_allocator]
static GLOBAL: swarmer::Allocator = swarmer::Allocator;

fn main() -> std::process::ExitCode {
    swarmer::run_plan(hello_plan::plan())
}
