#!/usr/bin/env bash
# Instructions per request, counted by callgrind: steadier than requests/s
# for comparing two builds of the hot path on a noisy machine.
#
#   bash bench/instructions.sh                   # this tree's release build
#   BIN_DIR=/other/target/release bash bench/instructions.sh   # another build
#
# Each program (the Rust API's `hello_loop` and the Lua benchmark plan) runs
# twice under callgrind against nginx, SHORT and LONG seconds, 50 users, one
# shard; the figure is (instructions of the long run - of the short run) /
# (requests of the long run - of the short run), so start-up and shutdown
# cancel out. `ANNOTATE=1` also keeps the long runs' callgrind files in
# target/instructions/ for `callgrind_annotate`, with their
# `--json` statistics beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=${SHORT:-4}
LONG=${LONG:-12}
USERS=${USERS:-50}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx-light)"; exit 1; }
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -p swarmer --bins --examples >/dev/null
  BIN_DIR=target/release
fi
work=$(mktemp -d)
out=target/instructions
mkdir -p "$out"
cleanup() { [ -n "${target_pid:-}" ] && kill "$target_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/tmp"
sed -e "s|BENCH_DIR|$work|g" -e "s|BENCH_PORT|$port|g" bench/nginx.conf > "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" &
target_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -fs "$url/" >/dev/null 2>&1 && break; sleep 0.1; done

# Prints "instructions requests" for one run: $1 seconds, $2 a name, rest the program.
measure() {
  local seconds=$1 name=$2; shift 2
  local file="$work/$name-$seconds.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$file" "$@" --headless -H "$url" -u "$USERS" -r 100000 \
    -t "${seconds}s" --shards 1 --only-summary --json >"$work/$name.json" 2>/dev/null || true
  local ir requests
  ir=$(grep -m1 '^totals:' "$file" | awk '{print $2}')
  requests=$(python3 -c 'import json,sys; print(sum(x["num_requests"] for x in json.load(open(sys.argv[1]))))' \
    "$work/$name.json")
  [ "${ANNOTATE:-0}" = 1 ] && [ "$seconds" = "$LONG" ] && { cp "$file" "$out/$name.callgrind"; cp "$work/$name.json" "$out/$name.json"; }
  echo "$ir $requests"
}
per_request() { # $1 a name, rest the program
  local name=$1; shift
  read -r ir_short req_short < <(measure "$SHORT" "$name" "$@")
  read -r ir_long req_long < <(measure "$LONG" "$name" "$@")
  python3 -c 'import sys; a,b,c,d=map(int,sys.argv[2:]); print(f"{sys.argv[1]:<12}{(c-a)/(d-b):>8.0f} instructions/request ({d-b} requests)")' \
    "$name" "$ir_short" "$req_short" "$ir_long" "$req_long"
}
per_request rust "$BIN_DIR/examples/hello_loop"
per_request lua "$BIN_DIR/swarmer" -f examples/lua/hello/plan.lua
