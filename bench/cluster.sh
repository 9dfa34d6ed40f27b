#!/usr/bin/env bash
# Cluster benchmarks (issue: distributed runs):
#  1. The master with many workers: one real master process and SWEEP
#     simulated workers (crates/cluster/examples/simulated_workers.rs, one
#     process for all) each sending a heartbeat and a 1 s report with NAMES
#     request names. For each count: the master's CPU (% of one core), its
#     memory and how it grows, and whether its total equals what the
#     workers reported, and how often the master asked for reports (past
#     its capacity it asks for fewer: backpressure). Goal: 1,000 workers x
#     50 names merged exactly at < 25% of one core with flat memory.
#  2. Requests/s of 2 worker processes (--processes 2) against one process
#     with 2 shards, same plan, same target. Goal: >= 0.9.
# Run: bash bench/cluster.sh   (SWEEP="100 300 1000" NAMES=50 DURATION=20; PART=1 or PART=2 for one part)
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-${WORKERS:-100 300 1000}}
NAMES=${NAMES:-50}
DURATION=${DURATION:-20}
USERS=${USERS:-50}
PART=${PART:-all}
export SWARMER_CLUSTER_TOKEN=bench-cluster-token-0123456789
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

cargo build --release -p swarmer --bin swarmer >/dev/null
cargo build --release -p swarmer-cluster --example simulated_workers >/dev/null
bin=target/release/swarmer
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# 1. The master with many workers.
for workers in $SWEEP; do
  [ "$PART" = 2 ] && break
  port=$(free_port)
  "$bin" -f builtin:hello --master --headless --expect-workers "$workers" -u $((workers * 10)) -r 100000 \
    -t $((DURATION + 15))s -H http://127.0.0.1:9 --master-bind-host 127.0.0.1 --master-bind-port "$port" \
    --only-summary --json-file "$work/master-$workers" -L INFO >"$work/master.log" 2>&1 &
  master=$!; pids+=("$master")
  sleep 1
  target/release/examples/simulated_workers --master "127.0.0.1:$port" --workers "$workers" --names "$NAMES" \
    --seconds $((DURATION + 120)) >"$work/sent-$workers" 2>"$work/sim-$workers.log" &
  sim=$!; pids+=("$sim")
  sleep 10   # every worker connected and assigned
  t0=$(cpu_ticks "$master"); s0=$(date +%s.%N); r0=$(rss_kib "$master")
  # The master's RSS every 10 s (MiB), to tell warm-up from growth.
  series=""; rh=""; sh=""
  for ((i = 0; i < DURATION; i += 10)); do
    step=$((DURATION - i < 10 ? DURATION - i : 10))
    sleep "$step"
    series="$series $(( $(rss_kib "$master") / 1024 ))"
    if [ -z "$rh" ] && [ $((i + step)) -ge $((DURATION / 2)) ]; then rh=$(rss_kib "$master"); sh=$(date +%s.%N); fi
  done
  t1=$(cpu_ticks "$master"); s1=$(date +%s.%N); r1=$(rss_kib "$master")
  wait "$master" || true
  wait "$sim" || true
  sent=$(cat "$work/sent-$workers" 2>/dev/null || echo 0)
  merged=$(python3 -c 'import json,sys; print(sum(x["num_requests"] for x in json.load(open(sys.argv[1]))))' \
    "$work/master-$workers.json" 2>/dev/null || echo 0)
  failed=$(grep -c "simulated worker failed" "$work/sim-$workers.log" || true)
  # The master's last word on the report pace (backpressure), if any.
  pace=$(grep -o -e "they now report every [0-9]* s" -e "report every second" "$work/master.log" | tail -1 |
    sed -e 's/.*every \([0-9]*\) s/\1 s/' -e 's/.*every second/1 s/' || true)
  pace=${pace:-1 s}
  python3 -c "
t0, t1, s0, s1, hz, r0, r1, rh, sh = $t0, $t1, $s0, $s1, $hz, $r0, $r1, $rh, $sh
sent, merged = $sent, $merged
cpu = 100 * (t1 - t0) / hz / (s1 - s0)
growth = (r1 - r0) / 1024 / (s1 - s0)
late = (r1 - rh) / 1024 / max(s1 - sh, 1)
exact = 'exact' if sent == merged and sent > 0 else f'NOT exact ({merged - sent:+d})'
print(f'master, $workers workers x $NAMES names (reports every $pace at the end): {cpu:.1f}% of one core, '
      f'RSS {r1 // 1024} MiB ({growth:+.2f} MiB/s; {late:+.2f} MiB/s over the second half), merged {merged} of '
      f'{sent} reported requests: {exact}; {$failed} workers failed to run')
print('  RSS every 10 s (MiB):$series')
"
done

# 2. Two worker processes against one process with two shards.
[ "$PART" = 1 ] && exit 0
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
