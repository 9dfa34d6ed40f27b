"""Arrival-rate benchmark driver (run by bench/arrival.sh): Swarmer and k6
at the same constant arrival rates against the same target, each pinned to
one core. For every rate: the rate achieved, the share of iterations
dropped, and the generator's CPU time per iteration in the steady part of
the run (user + system of the process, all its threads, read one second
after the start and one second before the end, divided by the iterations
started meanwhile at the rate achieved): start-up and shutdown are left
out. The total comes from each thread's /proc/PID/task/TID/schedstat, in
nanoseconds: /proc/PID/stat counts in ticks of 10 ms, which at 1,000
iterations/s over a few seconds is a tenth of the figure. The user part
(ticks) is shown as well."""

import json
import os
import subprocess
import sys
import tempfile
import time

url, gen_cpu, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
swarmer, k6 = sys.argv[4], sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
rates = [int(r) for r in os.environ.get("RATES", "1000,2000,4000,5000,10000,20000,40000,80000,100000,120000,140000").split(",")]
pre, most = os.environ.get("PRE", "50"), os.environ.get("MAX", "1000")
here = os.path.dirname(os.path.abspath(__file__))


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU seconds used so far: (user + system, user alone)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user = int(fields[11]) / TICKS  # utime
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])  # time on a CPU, ns
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total / 1e9, user


def timed(cmd, env=None):
    """Run `cmd` pinned to the generator's core; its CPU seconds over the
    steady window and that window's length."""
    child = subprocess.Popen(["taskset", "-c", gen_cpu] + cmd, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    start = cpu_seconds(child.pid)
    time.sleep(seconds - 2.0)
    end = cpu_seconds(child.pid)
    child.wait()
    return end[0] - start[0], end[1] - start[1], seconds - 2.0


def run_swarmer(rate, work):
    out = os.path.join(work, "swarmer")
    cpu = timed([swarmer, "-f", "builtin:hello", "-H", url, "--headless", "--only-summary", "--shards", "1",
                 "--arrival-rate", str(rate), "-u", pre, "--max-users", most, "-t", f"{seconds}s",
                 "--json-file", out])
    with open(out + "_run.json") as f:
        iterations = json.load(f)["iterations"] or {"started": 0, "dropped": 0}
    return iterations["started"], iterations["dropped"], cpu


def run_k6(rate, work):
    out = os.path.join(work, "k6.json")
    env = dict(os.environ, RATE=str(rate), DURATION=f"{seconds}s", PRE=pre, MAX=most, URL=url,
               K6_NO_USAGE_REPORT="true")
    cpu = timed([k6, "run", "-q", "--no-thresholds", "--summary-export", out,
                 os.path.join(here, "peers", "k6_arrival.js")], env)
    with open(out) as f:
        metrics = json.load(f)["metrics"]
    started = metrics.get("iterations", {}).get("count", 0)
    dropped = metrics.get("dropped_iterations", {}).get("count", 0)
    return started, dropped, cpu


tools = [("swarmer", run_swarmer)] + ([("k6 1.1.0", run_k6)] if k6 else [])
best = {}
# CPU per iteration counts the kernel's side too: on loopback, the TCP work
# of both ends of a request largely runs in the sender's system calls, the
# same for every generator. The user-space part alone is the generator's own.
print(f"{'generator':<10} {'asked/s':>8} {'achieved/s':>11} {'dropped':>8} {'CPU µs/iter':>12} {'user µs/iter':>13}  held")
with tempfile.TemporaryDirectory() as work:
    for name, run in tools:
        for rate in rates:
            started, dropped, cpu = run(rate, work)
            due = started + dropped
            achieved = started / seconds
            dropped_share = dropped / due if due else 1.0
            held = abs(achieved - rate) <= 0.01 * rate and dropped_share < 0.01
            cpu_seconds_used, user_seconds, window = cpu
            per_iteration = cpu_seconds_used / (achieved * window) * 1e6 if started else float("nan")
            user_per_iteration = user_seconds / (achieved * window) * 1e6 if started else float("nan")
            print(f"{name:<10} {rate:>8} {achieved:>11.0f} {dropped_share:>7.2%} {per_iteration:>12.1f} "
                  f"{user_per_iteration:>13.1f}  {'yes' if held else 'no'}", flush=True)
            if held:
                best[name] = max(best.get(name, (0, 0))[0], rate), per_iteration
            elif dropped_share > 0.5:
                break
for name, (rate, cpu) in best.items():
    print(f"{name}: highest rate held (within 1%, < 1% dropped): {rate}/s")
if len(best) == 2:
    (_, (s_rate, _)), (_, (k_rate, _)) = list(best.items())
    print(f"highest rate held, swarmer / k6: {s_rate / k_rate:.1f}x")
