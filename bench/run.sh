#!/usr/bin/env bash
# Swarmer benchmarks: requests/s against wrk on the same target, and RSS per
# idle user. Anyone can run it: `bash bench/run.sh` (installs wrk and nginx
# with apt when missing and root; falls back to the built-in target).
#
# Layout on a 2-core machine: the target is pinned to core 1, the load
# generator (wrk, then Swarmer) to core 0, so both get one core each.
# Environment: DURATION (default 6s per run), ROUNDS (7), USERS (50),
# IDLE_USERS (5000), RSS=0 to skip the memory part.
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/.."
DURATION=${DURATION:-6s}
ROUNDS=${ROUNDS:-7}
USERS=${USERS:-50}
IDLE_USERS=${IDLE_USERS:-5000}
GEN_CPU=${GEN_CPU:-0}
TARGET_CPU=${TARGET_CPU:-1}
work=$(mktemp -d)
cleanup() { [ -n "${target_pid:-}" ] && kill "$target_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y wrk nginx-light || (apt-get update && apt-get install -y wrk nginx-light)) >/dev/null 2>&1 || true
  fi
fi
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }

cargo build --release -p swarmer --bins --examples >/dev/null
bin=target/release/swarmer
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if command -v nginx >/dev/null; then
  mkdir -p "$work/tmp"
  sed -e "s|BENCH_DIR|$work|g" -e "s|BENCH_PORT|$port|g" bench/nginx.conf > "$work/nginx.conf"
  taskset -c "$TARGET_CPU" nginx -c "$work/nginx.conf" -p "$work" &
  target_pid=$!
  target_name="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
else
  taskset -c "$TARGET_CPU" "$bin" target --bind "127.0.0.1:$port" --threads 1 2>/dev/null &
  target_pid=$!
  target_name="swarmer built-in target"
fi
url="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -fs "$url/" >/dev/null 2>&1 && break; sleep 0.1; done

echo "target: $target_name on CPU $TARGET_CPU; generators on CPU $GEN_CPU; $USERS connections/users; $DURATION x $ROUNDS rounds"

swarmer_rps() { # $1: program, rest: extra args
  local program=$1; shift
  taskset -c "$GEN_CPU" "$program" "$@" --headless -H "$url" -u "$USERS" -r 100000 -t "$DURATION" --shards 1 \
    --only-summary --json 2>/dev/null \
    | python3 -c 'import json,sys; e=json.load(sys.stdin); n=sum(x["num_requests"] for x in e); t=max(x["last_request_timestamp"] for x in e)-min(x["start_time"] for x in e); print(f"{n/t:.0f}")'
}
# Rounds of wrk, Rust API, Lua plan back to back: a shared machine's load
# drifts, so each round's ratios compare runs made moments apart, and the
# medians over the rounds are reported.
rounds=()
for round in $(seq "$ROUNDS"); do
  wrk_rps=$(taskset -c "$GEN_CPU" wrk -t1 -c"$USERS" -d"$DURATION" "$url/" | awk '/Requests\/sec/ {print $2}')
  rust_rps=$(swarmer_rps target/release/examples/hello_loop)
  lua_rps=$(swarmer_rps "$bin" -f examples/lua/hello/plan.lua)
  echo "round $round: wrk $wrk_rps, Rust API $rust_rps, Lua plan $lua_rps req/s"
  rounds+=("$wrk_rps $rust_rps $lua_rps")
done
printf '%s\n' "${rounds[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, line.split())) for line in sys.stdin if line.strip()]
med = lambda xs: statistics.median(xs)
wrk, rust, lua = (med([r[i] for r in rows]) for i in range(3))
print(f"wrk:                 {wrk:.0f} req/s (median)")
print(f"swarmer (Rust API):  {rust:.0f} req/s  = {med([r[1] / r[0] for r in rows]):.2f} x wrk")
print(f"swarmer (Lua plan):  {lua:.0f} req/s  = {med([r[2] / r[0] for r in rows]):.2f} x wrk, "
      f"{med([r[2] / r[1] for r in rows]):.2f} x Rust API")
'

[ "${RSS:-1}" = 0 ] && exit 0

# RSS per idle user: users that made one request and now wait an hour.
# Rust users measured twice: ramped at 1000 users/s (few requests in flight at once),
# and all at once (every user mid-request together: transient read buffers
# that the allocator keeps afterwards count too); Lua users ramped.
rss_at() { # $1 users, $2 spawn rate, $3 plan -> RSS in KiB once they are all spawned
  taskset -c "$GEN_CPU" "$bin" -f "$3" --headless -H "$url" -u "$1" -r "$2" -t 30s --shards 1 \
    --only-summary >/dev/null 2>&1 &
  local pid=$! rss
  sleep 10
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  echo "$rss"
}
for plan_rate in builtin:idle:1000 builtin:idle:1000000 examples/lua/idle/plan.lua:1000; do
  plan=${plan_rate%:*}; rate=${plan_rate##*:}
  base=$(rss_at 100 "$rate" "$plan")
  full=$(rss_at $((IDLE_USERS + 100)) "$rate" "$plan")
  per_user=$(python3 -c "print(f'{($full-$base)/$IDLE_USERS:.2f}')")
  echo "RSS per idle user:   $per_user KiB, $plan at spawn rate $rate/s ($IDLE_USERS users: ${base} KiB -> ${full} KiB)"
done
