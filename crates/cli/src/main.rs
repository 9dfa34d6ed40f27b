//! The `swarmer` binary. Everything lives in the library (`crates/cli/src/lib.rs`).

fn main() -> std::process::ExitCode {
    swarmer::main_binary()
}
