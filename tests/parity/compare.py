#!/usr/bin/env python3
"""Run Locust and Swarmer side by side on the same examples and compare
what they print, process by process.

Each case is a Locust file here and its Swarmer plan under examples/lua/.
Both tools run it the same way (a master and two separate worker
processes, or one local process), against Swarmer's demo target on
127.0.0.1; Swarmer's workers run two shards each, so a line Locust prints
once per process must come once per process, not once per shard.

    python3 tests/parity/compare.py [--swarmer PATH] [--locust PATH] [case ...]

Lines are compared as multisets per role (master, each worker, local)
after numbers that vary between runs (how many times a task ran, a
heartbeat) are reduced to "seen"; see CASES. Exits 1 on a difference.
"""

import argparse
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# name: (locust file, swarmer plan, mode, users, run time, lines that may
# come any number of times (at least once) instead of an exact count)
CASES = {
    "lifecycle": ("lifecycle.py", "lifecycle", "distributed", 4, 4, ("5. task", "M2. ", "M3. ")),
    "lifecycle-local": ("lifecycle.py", "lifecycle", "local", 4, 3, ("5. task",)),
    "messages": ("messages.py", "messages", "distributed", 2, 3, ()),
    "messages-local": ("messages.py", "messages", "local", 2, 3, ()),
    "messages_concurrent": ("messages_concurrent.py", "messages_concurrent", "distributed", 4, 4, ("name ",)),
    "messages_concurrent-local": ("messages_concurrent.py", "messages_concurrent", "local", 4, 4, ("name ",)),
}

# Lines of our own examples' prints: anything else (logs, tables) is not compared.
PRINTED = re.compile(
    r"^(\d+\.|M\d\.|X\.|User \S+ received|Thanks for|concurrent_message|finished processing|name )"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, within=20):
    deadline = time.time() + within
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {within} s")


def printed(text):
    return [line.strip() for line in text.splitlines() if PRINTED.match(line.strip())]


def normalise(lines, repeated):
    """A multiset of lines; lines starting with a `repeated` prefix count once."""
    counts = collections.Counter()
    for line in lines:
        key = next((p + "..." for p in repeated if line.startswith(p)), line)
        counts[key] = 1 if key.endswith("...") else counts[key] + 1
    return counts


def run_tool(tool, case, host, workdir):
    """Run one case with `tool` ("locust" or "swarmer"); returns {role: [lines]}."""
    locust_file, plan, mode, users, seconds, _ = CASES[case]
    if tool == "locust":
        plan_path = str(HERE / locust_file)
        base = [ARGS.locust, "-f", plan_path]
        worker_extra = []
    else:
        plan_path = str(ROOT / "examples/lua" / plan / "plan.lua")
        base = [ARGS.swarmer, "-f", plan_path]
        worker_extra = ["--shards", "2"]
    common = ["-H", host, "--headless", "-u", str(users), "-r", "100", "-t", f"{seconds}s", "--only-summary"]
    env = dict(os.environ, SWARMER_CLUSTER_TOKEN="parity-check-token-0123456789", NO_COLOR="1", PYTHONUNBUFFERED="1")
    if mode == "local":
        extra = ["--shards", "2"] if tool == "swarmer" else []
        out = subprocess.run(base + common + extra, capture_output=True, text=True, timeout=120, env=env, cwd=workdir)
        return {"local": printed(out.stdout + out.stderr)}, out.returncode
    port = free_port()
    master_args = base + common + ["--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1"]
    master_args += ["--master-bind-port", str(port)]
    master = subprocess.Popen(
        master_args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir
    )
    wait_port(port)
    worker_base = [ARGS.swarmer, "-f", "-"] if tool == "swarmer" else [ARGS.locust, "-f", "-"]
    workers = [
        subprocess.Popen(
            worker_base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)] + worker_extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=workdir,
        )
        for _ in range(2)
    ]
    try:
        master_out, _ = master.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # Nothing may outlive the check; the caller decides whether to retry.
        for process in [master] + workers:
            process.kill()
        out, _ = master.communicate()
        raise Hung(f"{tool} master did not end within 120 s; its output:\n{out}")
    outputs = {"master": printed(master_out)}
    for i, w in enumerate(workers):
        out, _ = w.communicate(timeout=60)
        outputs[f"worker{i}"] = printed(out)
    return outputs, master.returncode


class Hung(Exception):
    """A distributed run whose master did not end."""


def locust_run(case, host, workdir):
    """Locust's run of `case`. Locust is the reference, not what is under
    test: a Locust master that hangs (it happened once in CI, a 4 s
    distributed run still waiting after 120 s) is run once more."""
    try:
        return run_tool("locust", case, host, workdir)
    except Hung as hung:
        print(f"note: {case}: {hung}; running Locust once more", file=sys.stderr)
        return run_tool("locust", case, host, workdir)


def compare(case, host):
    repeated = CASES[case][5]
    with tempfile.TemporaryDirectory() as workdir:
        locust, locust_code = locust_run(case, host, workdir)
        swarmer, swarmer_code = run_tool("swarmer", case, host, workdir)
    problems = []
    if locust_code != swarmer_code:
        problems.append(f"exit code: Locust {locust_code}, Swarmer {swarmer_code}")
    # Workers are interchangeable: compare them sorted by what they printed.
    def roles(outputs):
        workers = sorted((normalise(v, repeated) for k, v in outputs.items() if k.startswith("worker")), key=str)
        others = {k: normalise(v, repeated) for k, v in outputs.items() if not k.startswith("worker")}
        return others, workers

    (l_others, l_workers), (s_others, s_workers) = roles(locust), roles(swarmer)
    for role in sorted(set(l_others) | set(s_others)):
        if l_others.get(role) != s_others.get(role):
            problems.append(f"{role}: Locust {dict(l_others.get(role, {}))}\n   Swarmer {dict(s_others.get(role, {}))}")
    if case.startswith("messages_concurrent"):
        # Each name goes to exactly one user: the names printed, over all
        # workers, are the same set, none printed by two processes.
        def names(outputs):
            by_process = [{l for l in v if l.startswith("name ")} for v in outputs.values()]
            return sorted(set().union(*by_process)), sum(len(s) for s in by_process)

        l_names, s_names = names(locust), names(swarmer)
        if l_names != s_names:
            problems.append(f"names: Locust {l_names}, Swarmer {s_names}")
        l_workers = [collections.Counter({k: v for k, v in w.items() if k != "name ..."}) for w in l_workers]
        s_workers = [collections.Counter({k: v for k, v in w.items() if k != "name ..."}) for w in s_workers]
    if l_workers != s_workers:
        problems.append(f"workers: Locust {[dict(w) for w in l_workers]}\n   Swarmer {[dict(w) for w in s_workers]}")
    return problems, locust, swarmer


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swarmer", default=str(ROOT / "target/debug/swarmer"))
    parser.add_argument("--locust", default="locust")
    parser.add_argument("cases", nargs="*", default=list(CASES))
    ARGS = parser.parse_args()
    # The tools run in a scratch folder: paths given relative to here must still work.
    ARGS.swarmer, ARGS.locust = (os.path.abspath(p) if os.sep in p else p for p in (ARGS.swarmer, ARGS.locust))
    port = free_port()
    target = subprocess.Popen(
        [ARGS.swarmer, "target", "--bind", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    failed = False
    try:
        wait_port(port)
        for case in ARGS.cases:
            problems, locust, swarmer = compare(case, f"http://127.0.0.1:{port}")
            if problems:
                failed = True
                print(f"FAIL {case}")
                for p in problems:
                    print("   " + p)
                print(f"   Locust printed {locust}\n   Swarmer printed {swarmer}")
            else:
                print(f"ok   {case}: {sum(len(v) for v in swarmer.values())} lines over {len(swarmer)} processes")
    finally:
        target.kill()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
