#!/usr/bin/env bash
# A CI job: start the built-in target, run the test, leave the verdict in
# the exit code (0 passed, 99 a threshold crossed or a regression against
# a baseline) and the files in results/.
#
#   bash examples/lua/ci_verdict/run.sh                       # the verdict
#   BASELINE=main.json bash examples/lua/ci_verdict/run.sh    # also compare with an earlier run
#   bash examples/lua/ci_verdict/run.sh --threshold "p95<0.001ms"   # see it fail
#   CONFIG=arrival.toml bash examples/lua/ci_verdict/run.sh   # an arrival-rate run
#   CONFIG=arrival.toml TARGET_ARGS="--stall 2s:1s" bash examples/lua/ci_verdict/run.sh
#                                           # the target stalls: dropped and corrected_p99 fail it
#
# SWARMER names the binary (default: swarmer on PATH); CONFIG the settings
# (default: swarmer.toml); TARGET_ARGS more flags for the built-in target.
set -euo pipefail
cd "$(dirname "$0")"
swarmer=${SWARMER:-swarmer}
mkdir -p results
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# (Word-split on purpose: TARGET_ARGS is a list of flags.)
# shellcheck disable=SC2086
"$swarmer" target --bind "127.0.0.1:$port" ${TARGET_ARGS:-} >results/target.log 2>&1 &
target=$!
trap 'kill $target 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
compare=()
if [ -n "${BASELINE:-}" ]; then
  compare=(--compare "$BASELINE" --compare-tolerance "p95 +25%")
fi
status=0
# (Written so that bash 3.2's `set -u` accepts an empty list.)
"$swarmer" --config "${CONFIG:-swarmer.toml}" -f plan.lua -H "http://127.0.0.1:$port" \
  ${compare[@]+"${compare[@]}"} "$@" || status=$?
case $status in
  0) echo "load test passed" ;;
  99) echo "load test FAILED: a threshold was crossed or a metric regressed (see results/junit.xml)" ;;
  *) echo "load test could not run (exit $status)" ;;
esac
exit $status
