#!/usr/bin/env bash
# Swarmer benchmarks: requests/s against wrk on the same target, and RSS per
# idle user. Anyone can run it: `bash bench/run.sh` (installs wrk and nginx
# with apt when missing and root; falls back to the built-in target).
#
# Layout on a 2-core machine: the target is pinned to core 1, the load
# generators (wrk, Swarmer, then the peers, one after another) to core 0, so
# the target and the generator running get one core each.
# Environment: DURATION (default 6s per run), ROUNDS (7), USERS (50),
# IDLE_USERS (5000), RSS=0 to skip the memory part, PEERS=0 to skip the
# peers (Locust and Goose, installed from PyPI and crates.io on first use
# into target/bench-peers; a peer that cannot be installed is skipped).
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

# Peers: the same user (GET / in a loop, no wait) for Locust (FastHttpUser,
# its faster client; one process, as Locust runs per core) and for Goose.
peers=target/bench-peers
locust_bin="" goose_bin=""
if [ "${PEERS:-1}" = 1 ]; then
  mkdir -p "$peers"
  locust_version=2.47.0
  if ! "$peers/locust/bin/pip" show locust 2>/dev/null | grep -qx "Version: $locust_version"; then
    if ! python3 -m venv "$peers/locust" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      { (apt-get install -y python3-venv || (apt-get update && apt-get install -y python3-venv)) >/dev/null 2>&1 \
        && rm -rf "$peers/locust" && python3 -m venv "$peers/locust" >/dev/null 2>&1; } || true
    fi
    "$peers/locust/bin/pip" install -q "locust==$locust_version" >"$work/locust.log" 2>&1 || true
  fi
  if [ -x "$peers/locust/bin/locust" ]; then
    locust_bin=$peers/locust/bin/locust
  else
    echo "Locust skipped: could not install it ($(tail -1 "$work/locust.log" 2>/dev/null))"
  fi
  if cargo build --release --locked --manifest-path bench/peers/goose/Cargo.toml --target-dir "$peers/goose" \
      >"$work/goose.log" 2>&1; then
    goose_bin=$peers/goose/release/swarmer-bench-goose
  else
    echo "Goose skipped: could not build it ($(grep -m1 error "$work/goose.log"))"
  fi
fi

echo "target: $target_name on CPU $TARGET_CPU; generators on CPU $GEN_CPU; $USERS connections/users; $DURATION x $ROUNDS rounds"

# Each generator's figure, or "-" when it failed: a run's exit code (which
# is 1 after any failed request, in Locust and Swarmer alike) never ends
# the benchmark, its output is read either way.
# Requests/s from Locust's --json layout (Swarmer's --json has the same):
# requests over the time from the first request to the last.
rps_of_json() {
  python3 -c 'import json,sys; e=json.load(sys.stdin); n=sum(x["num_requests"] for x in e); t=max(x["last_request_timestamp"] for x in e)-min(x["start_time"] for x in e); print(f"{n/t:.0f}")' 2>/dev/null || echo "-"
}
swarmer_rps() { # $1: program, rest: extra args
  local program=$1; shift
  local out
  out=$(taskset -c "$GEN_CPU" "$program" "$@" --headless -H "$url" -u "$USERS" -r 100000 -t "$DURATION" --shards 1 \
    --only-summary --json 2>/dev/null) || true
  printf '%s' "$out" | rps_of_json
}
goose_rps() { # Goose's own figure: requests over the time all users ran
  [ -n "$goose_bin" ] || { echo "-"; return; }
  local out
  out=$(taskset -c "$GEN_CPU" "$goose_bin" --scenarios hello -H "$url" -u "$USERS" -r 100000 -t "$DURATION" \
    2>/dev/null) || true
  # The last metrics table is the final one (Goose may print one when all
  # users have started, before it resets its metrics).
  printf '%s' "$out" | python3 -c '
import sys
lines = sys.stdin.read().split("=== PER REQUEST METRICS ===")[-1].splitlines()
rps = float(next(l.split("|")[3] for l in lines if l.strip().startswith("GET /")))
print(f"{rps:.0f}" if rps > 0 else "-")' 2>/dev/null || echo "-"
}
locust_rps() {
  [ -n "$locust_bin" ] || { echo "-"; return; }
  local out
  out=$(taskset -c "$GEN_CPU" "$locust_bin" -f bench/peers/locustfile.py HelloUser --headless -H "$url" \
    -u "$USERS" -r 100000 -t "$DURATION" --only-summary --json 2>/dev/null) || true
  printf '%s' "$out" | rps_of_json
}
# Rounds of wrk, Rust API, Lua plan, Locust, Goose back to back: a shared machine's load
# drifts, so each round's ratios compare runs made moments apart, and the
# medians over the rounds are reported.
rounds=()
for round in $(seq "$ROUNDS"); do
  wrk_rps=$({ taskset -c "$GEN_CPU" wrk -t1 -c"$USERS" -d"$DURATION" "$url/" || true; } | awk '/Requests\/sec/ {print $2}')
  wrk_rps=${wrk_rps:--}
  rust_rps=$(swarmer_rps target/release/examples/hello_loop)
  lua_rps=$(swarmer_rps "$bin" -f examples/lua/hello/plan.lua)
  locust=$(locust_rps)
  goose=$(goose_rps)
  echo "round $round: wrk $wrk_rps, Rust API $rust_rps, Lua plan $lua_rps, Locust $locust, Goose $goose req/s"
  rounds+=("$wrk_rps $rust_rps $lua_rps $locust $goose")
done
printf '%s\n' "${rounds[@]}" | python3 -c '
import statistics, sys
rows = [[None if v == "-" else float(v) for v in line.split()] for line in sys.stdin if line.strip()]
def med(i, over=None):
    """Median of column i, or of the per-round ratios of i to column over."""
    xs = [r[i] / r[over] if over is not None else r[i] for r in rows
          if r[i] is not None and (over is None or r[over])]
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "-" if x is None else format(x, spec)
N, R, X = ".0f", ".2f", ".1f"  # request rates, ratios to wrk and Rust, ratios to a peer
print("(ratios are medians of the per-round ratios, not ratios of the medians)")
print(f"wrk:                 {fmt(med(0), N)} req/s (median)")
print(f"swarmer (Rust API):  {fmt(med(1), N)} req/s  = {fmt(med(1, 0), R)} x wrk")
print(f"swarmer (Lua plan):  {fmt(med(2), N)} req/s  = {fmt(med(2, 0), R)} x wrk, "
      f"{fmt(med(2, 1), R)} x Rust API")
for i, label in ((3, "Locust FastHttpUser:"), (4, "Goose:")):
    if med(i) is None:
        print(f"{label:<21}skipped")
    else:
        print(f"{label:<21}{fmt(med(i), N)} req/s  = {fmt(med(i, 0), R)} x wrk; swarmer Rust API = "
              f"{fmt(med(1, i), X)} x, Lua plan = {fmt(med(2, i), X)} x this")
'

[ "${RSS:-1}" = 0 ] && exit 0

# RSS per idle user: users that made one request and now wait an hour.
# Rust users measured twice: ramped at 1000 users/s (few requests in flight at once),
# and all at once (every user mid-request together: transient read buffers
# that the allocator keeps afterwards count too); Lua users and the peers' ramped.
rss_at() { # $1 users, $2 spawn rate, rest: the generator's command -> RSS in KiB once they are all spawned
  local users=$1 rate=$2; shift 2
  "$@" -H "$url" -u "$users" -r "$rate" -t 30s >/dev/null 2>&1 &
  local pid=$! rss
  sleep $((10 + users / 1000))
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null) || rss=""
  kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  echo "$rss"
}
per_user() { # $1 label, $2 spawn rate, rest: the generator's command
  local label=$1 rate=$2; shift 2
  local base full
  base=$(rss_at 100 "$rate" "$@")
  full=$(rss_at $((IDLE_USERS + 100)) "$rate" "$@")
  if [ -z "$base" ] || [ -z "$full" ]; then
    echo "RSS per idle user:   -, $label: the generator had exited before it was measured"
    return
  fi
  echo "RSS per idle user:   $(python3 -c "print(f'{($full-$base)/$IDLE_USERS:.2f}')") KiB, $label at spawn rate $rate/s" \
    "($IDLE_USERS users: ${base} KiB -> ${full} KiB)"
}
# (Each command is run as is, no shell function: its process is the one measured.)
for plan_rate in builtin:idle:1000 builtin:idle:1000000 examples/lua/idle/plan.lua:1000; do
  plan=${plan_rate%:*}; rate=${plan_rate##*:}
  per_user "swarmer $plan" "$rate" taskset -c "$GEN_CPU" "$bin" -f "$plan" --headless --shards 1 --only-summary
done
if [ -n "$locust_bin" ]; then
  per_user "Locust FastHttpUser" 1000 taskset -c "$GEN_CPU" "$locust_bin" -f bench/peers/locustfile.py IdleUser \
    --headless --only-summary
fi
[ -z "$goose_bin" ] || per_user "Goose" 1000 taskset -c "$GEN_CPU" "$goose_bin" --scenarios idle
