#!/usr/bin/env bash
# The whole test suite, from a fresh clone. Installs what the tests need
# (Debian's chromium for the browser tests, playwright-core from npm, PyYAML,
# Locust, grpcio and websockets from PyPI for the parity, gRPC and WebSocket
# checks), then checks formatting and lints, runs every test of the
# workspace, the web UI's browser tests against the freshly built binary,
# Locust's examples side by side with their plans, and Swarmer against
# gRPC and WebSocket servers it did not write.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# What the browser tests need: chromium from apt (a test tool's own browser
# download cannot work here), playwright-core from the npm registry.
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
(cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
# PyYAML for the deployment checks (Debian's python3-yaml, or pip).
python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet --user pyyaml

# The vendored Lua is built with its API checks, so a broken invariant of
# the Lua bridge (crates/lua/src/raw/) fails a test with an assertion
# instead of corrupting memory. The Lua crate's own tests also run with
# Lua's internal assertions (LUAI_ASSERT), in a target directory of their
# own: those make a binary too slow for the browser tests.
export CFLAGS="${CFLAGS:-} -DLUA_USE_APICHECK"

cargo fmt --all -- --check
# No dependency a crate does not use (cargo-machete, from crates.io).
command -v cargo-machete >/dev/null 2>&1 || cargo install --locked --quiet cargo-machete
cargo machete
# Every dependency under a permissive licence (an SPDX allow list), and
# none affected by a RustSec advisory (the database is on GitHub, out of
# CI's reach: the check reads a snapshot of its version ranges kept in
# scripts/advisories.json; the script says how to refresh it).
python3 scripts/check_licenses.py
python3 scripts/check_advisories.py --self-test
python3 scripts/check_advisories.py
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
CFLAGS="$CFLAGS -DLUAI_ASSERT" CARGO_TARGET_DIR=target/lua-checks cargo test -p swarmer-lua --locked
cargo build --locked --bin swarmer
python3 tests/deploy/check_deploy.py target/debug/swarmer
(cd tests/ui && SWARMER_BIN="$PWD/../../target/debug/swarmer" npm test)

# Locust parity: Locust's own examples and their Swarmer plans print the
# same lines, once per process (Locust from PyPI, in a venv of its own;
# Debian's python3 needs python3-venv for that).
venv=target/parity-venv
if [ ! -x "$venv/bin/locust" ]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check locust==2.47.0
fi
python3 tests/parity/compare.py --swarmer target/debug/swarmer --locust "$venv/bin/locust"

# gRPC against a server Swarmer did not write: Python's grpcio (PyPI), in
# the same venv.
"$venv/bin/python" -c "import grpc" 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio==1.85.3
"$venv/bin/python" tests/grpc/interop.py --swarmer target/debug/swarmer

# WebSocket against a server Swarmer did not write: Python's websockets
# (PyPI), in the same venv.
"$venv/bin/python" -c "import websockets" 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check websockets==15.0.1
"$venv/bin/python" tests/realtime/interop.py --swarmer target/debug/swarmer
