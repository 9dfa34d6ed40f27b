#!/usr/bin/env bash
# Cluster benchmarks (issue: distributed runs):
#  1. The master's CPU with many workers: one real master process, WORKERS
#     simulated workers (crates/cluster/examples/simulated_workers.rs) each
#     sending a heartbeat and a 1 s report with NAMES request names.
#     Goal: < 10% of one core at 100 workers.
#  2. Requests/s of 2 worker processes (--processes 2) against one process
#     with 2 shards, same plan, same target. Goal: >= 0.9.
# Run: bash bench/cluster.sh   (WORKERS=100 NAMES=50 DURATION=20)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-100}
NAMES=${NAMES:-50}
DURATION=${DURATION:-20}
USERS=${USERS:-50}
export SWARMER_CLUSTER_TOKEN=bench-cluster-token-0123456789
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -p swarmer --bin swarmer >/dev/null
cargo build --release -p swarmer-cluster --example simulated_workers >/dev/null
bin=target/release/swarmer
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# 1. Master CPU.
port=$(free_port)
"$bin" -f builtin:hello --master --headless --expect-workers "$WORKERS" -u $((WORKERS * 10)) -r 100000 \
  -t $((DURATION + 20))s -H http://127.0.0.1:9 --master-bind-host 127.0.0.1 --master-bind-port "$port" \
  --only-summary -L WARNING >"$work/master.log" 2>&1 &
master=$!; pids+=("$master")
sleep 1
target/release/examples/simulated_workers --master "127.0.0.1:$port" --workers "$WORKERS" --names "$NAMES" \
  --seconds $((DURATION + 10)) >"$work/sent" &
pids+=("$!")
sleep 8   # every worker connected and assigned
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks "$master"); s0=$(date +%s.%N)
sleep "$DURATION"
t1=$(cpu_ticks "$master"); s1=$(date +%s.%N)
cpu=$(python3 -c "print(f'{100*($t1-$t0)/$hz/($s1-$s0):.1f}')")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$master/status")
echo "master with $WORKERS workers x $NAMES names (1 s reports): ${cpu}% of one core, RSS ${rss} KiB (goal < 10%)"
kill "$master" 2>/dev/null || true

# 2. Two worker processes against one process with two shards.
target_port=$(free_port)
"$bin" target --bind "127.0.0.1:$target_port" --threads 2 2>/dev/null &
pids+=("$!")
sleep 0.5
rps() { python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); n=sum(x["num_requests"] for x in e); t=max(x["last_request_timestamp"] for x in e)-min(x["start_time"] for x in e); print(f"{n/t:.0f}")' "$1"; }
"$bin" -f examples/lua/hello/plan.lua --headless -H "http://127.0.0.1:$target_port" -u "$USERS" -r 100000 \
  -t "${DURATION}s" --shards 2 --only-summary --json-file "$work/one" -L ERROR >/dev/null 2>&1
one=$(rps "$work/one.json")
"$bin" -f examples/lua/hello/plan.lua --processes 2 --headless --expect-workers 2 -H "http://127.0.0.1:$target_port" \
  -u "$USERS" -r 100000 -t "${DURATION}s" --only-summary --json-file "$work/two" -L ERROR >/dev/null 2>&1
two=$(rps "$work/two.json")
echo "one process, 2 shards:   $one req/s"
echo "2 worker processes:      $two req/s = $(python3 -c "print(f'{$two/$one:.2f}')") x one process (goal >= 0.9)"
