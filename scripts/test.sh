#!/usr/bin/env bash
# The whole test suite, from a fresh clone. Installs what the tests need
# (nothing beyond the Rust toolchain for now), then checks formatting and
# lints, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
