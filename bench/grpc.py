"""Unary gRPC calls per generator-core-second: Swarmer, k6 1.1.0 and a
Python grpcio client, each pinned to one core, the same concurrency,
against the demo prediction server on the other core (bench/grpc.sh).

Prints, per generator, calls/s, the generator's CPU per call (user +
system, from /proc between the first and the last second) and calls per
CPU-second, then the ratios to Swarmer.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

addr, gen_cpu, seconds, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
swarmer, k6, python = sys.argv[5], sys.argv[6] or None, sys.argv[7] or None
here = os.path.dirname(os.path.abspath(__file__))
proto_dir = os.path.join(here, "..", "examples", "lua", "predict")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def timed(cmd, env=None):
    """Run `cmd` on the generator's core: its output and CPU seconds over
    the steady window, and that window's length."""
    child = subprocess.Popen(["taskset", "-c", gen_cpu] + cmd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    start = cpu_seconds(child.pid)
    time.sleep(seconds - 2.0)
    end = cpu_seconds(child.pid)
    out, _ = child.communicate()
    return out, end - start, seconds - 2.0


PLAN = """local swarmer = require("swarmer")
swarmer.grpc.load(%s)
swarmer.user("U", { tasks = { function(self)
  self.client:grpc("categorization.TextCategorization/GetPrediction", { text = "hello" })
end } })
"""


def run_swarmer(work):
    plan = os.path.join(work, "grpc_plan.lua")
    with open(plan, "w") as f:
        f.write(PLAN % json.dumps(os.path.abspath(os.path.join(proto_dir, "categorization.proto"))))
    out, cpu, window = timed([swarmer, "-f", plan, "-H", f"http://{addr}", "--headless", "--only-summary",
                              "--shards", "1", "-u", str(users), "-r", str(users * 10), "-t", f"{seconds}s",
                              "--json"])
    rows = json.loads(out[out.index("["):])
    calls = sum(r["num_requests"] for r in rows if r["method"] == "grpc")
    failures = sum(r["num_failures"] for r in rows)
    return calls, failures, cpu, window


def run_k6(work):
    summary = os.path.join(work, "k6.json")
    env = dict(os.environ, ADDR=addr, PROTO_DIR=os.path.abspath(proto_dir), VUS=str(users),
               DURATION=f"{seconds}s", K6_NO_USAGE_REPORT="true")
    _, cpu, window = timed([k6, "run", "-q", "--summary-export", summary,
                            os.path.join(here, "peers", "k6_grpc.js")], env)
    with open(summary) as f:
        metrics = json.load(f)["metrics"]
    # One call per iteration (the summary's trend has no count).
    calls = metrics.get("iterations", {}).get("count", 0)
    failures = 0
    return calls, failures, cpu, window


def run_grpcio(work):
    out, cpu, window = timed([python, os.path.join(here, "peers", "grpcio_client.py"), addr, str(users), str(seconds)])
    return int(out.strip()), 0, cpu, window


tools = [("swarmer", run_swarmer)]
if k6:
    tools.append(("k6 1.1.0", run_k6))
if python:
    tools.append(("grpcio", run_grpcio))
results = {}
print(f"{users} concurrent callers, {seconds} s each, generator on core {gen_cpu}")
print(f"{'generator':<10} {'calls/s':>9} {'failures':>9} {'CPU µs/call':>12} {'calls/CPU-s':>12}")
with tempfile.TemporaryDirectory() as work:
    for name, run in tools:
        calls, failures, cpu, window = run(work)
        rate = calls / seconds
        if not calls or not cpu:
            print(f"{name:<10} no calls measured")
            continue
        per_cpu_second = rate * window / cpu if cpu else float("nan")
        results[name] = per_cpu_second
        print(f"{name:<10} {rate:>9.0f} {failures:>9} {cpu / (rate * window) * 1e6:>12.1f} {per_cpu_second:>12.0f}",
              flush=True)
for name, value in results.items():
    if name != "swarmer":
        print(f"calls per generator-core-second, swarmer / {name}: {results['swarmer'] / value:.1f}x")
