//! The `swarmer` binary. Everything lives in the library (`crates/cli/src/lib.rs`).

#[global_allocator]
static GLOBAL: swarmer::Allocator = swarmer::Allocator;

fn main() -> std::process::ExitCode {
    swarmer::main_binary()
}
