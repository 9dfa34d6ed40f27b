"""WebSocket against a server Swarmer did not write: Python's `websockets`.

A `websockets` server (in this process, on 127.0.0.1) pings every client
every 0.2 s and closes one whose pong has not come 0.3 s later (its
keepalive, code 1011), and serves:

- /echo: each message back, text or binary; subprotocol `chat` chosen;
- /close: closes at once with 4001 "custom";
- /drop: drops the TCP connection without a close frame.

A Swarmer plan opens each, has request/reply pairs before and after a
1.2 s pause in which it does not receive (the pings must still be
answered), sees the close code, and sees the dropped connection closed.
Its JSON summary must count every row, with exactly the dropped
connections as failures, and the server must not have closed anyone for
missing pongs.

    python3 tests/realtime/interop.py --swarmer target/debug/swarmer
Run by scripts/test.sh with the parity venv's Python, which has websockets.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading

from websockets.asyncio.server import serve

KEEPALIVE_CLOSES = []


async def handler(connection):
    path = connection.request.path
    if path == "/close":
        await connection.close(4001, "custom")
        return
    if path == "/drop":
        connection.transport.abort()
        return
    try:
        async for message in connection:
            await connection.send(message)
    finally:
        if connection.close_code == 1011:
            KEEPALIVE_CLOSES.append(path)


def choose_chat(connection, offered):
    return "chat" if "chat" in offered else None


def start_server():
    """The server on its own thread and loop; returns its port."""
    ready = threading.Event()
    port = {}

    async def run():
        async with serve(handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.3,
                         select_subprotocol=choose_chat) as server:
            port["n"] = server.sockets[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

    threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    if not ready.wait(10):
        sys.exit("the websockets server did not start")
    return port["n"]


PLAN = r"""
local swarmer = require("swarmer")
swarmer.user("Ws", { wait_time = swarmer.constant(0.05), tasks = { function(self)
  local ws = assert(self.client:websocket("/echo", { name = "echo", protocols = { "chat" } }))
  assert(ws.protocol == "chat", "protocol: " .. tostring(ws.protocol))
  local reply, err = ws:request("hello", { name = "hello", timeout = 2 })
  assert(reply == "hello", "hello: " .. tostring(err))
  assert(ws:send_binary("\0\1\2"))
  local data, kind = ws:receive(2)
  assert(data == "\0\1\2" and kind == "binary", "binary: " .. tostring(kind))
  -- Not receiving while the server pings: the pongs must still go.
  swarmer.sleep(1.2)
  local late, why = ws:request("still there", { name = "after pings", timeout = 2 })
  assert(late == "still there", "after pings: " .. tostring(why))
  assert(ws:close(1000, "done"))

  local closing = assert(self.client:websocket("/close", { name = "close" }))
  local none, what, code, reason = closing:receive(2)
  assert(none == nil and what == "closed" and code == 4001 and reason == "custom",
         "close: " .. tostring(what) .. " " .. tostring(code) .. " " .. tostring(reason))

  local dropping = assert(self.client:websocket("/drop", { name = "drop" }))
  local gone, said = dropping:receive(2)
  assert(gone == nil and said == "closed", "drop: " .. tostring(said))
end } })
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swarmer", required=True)
    args = parser.parse_args()
    port = start_server()
    with tempfile.TemporaryDirectory() as work:
        plan = os.path.join(work, "plan.lua")
        with open(plan, "w") as f:
            f.write(PLAN)
        run = subprocess.run(
            [args.swarmer, "-f", plan, "-H", f"http://127.0.0.1:{port}", "--headless", "-u", "2", "-r", "100",
             "-t", "4s", "--json", "--only-summary", "--stop-timeout", "5"],
            capture_output=True, text=True, timeout=60)
    if run.returncode not in (0, 1):
        sys.exit(f"swarmer exited with {run.returncode}:\n{run.stderr[-3000:]}")
    start = run.stdout.index("[")
    rows = {(row["method"], row["name"]): row for row in json.loads(run.stdout[start:])}
    problems = []
    expected = [("WS", "echo"), ("WSR", "hello"), ("WSR", "after pings"), ("WS", "close"), ("WS", "drop"),
                ("WS", "drop (connection)")]
    for key in expected:
        if key not in rows or rows[key]["num_requests"] < 2:
            problems.append(f"{key}: too few: {rows.get(key)}")
    if not problems:
        for key in expected[:-1]:
            if rows[key]["num_failures"] != 0:
                problems.append(f"{key}: {rows[key]['num_failures']} failures")
        dropped = rows[("WS", "drop (connection)")]
        if dropped["num_failures"] != dropped["num_requests"]:
            problems.append(f"drop (connection): {dropped['num_failures']} of {dropped['num_requests']} failed")
        if dropped["num_requests"] > rows[("WS", "drop")]["num_requests"]:
            problems.append("more broken connections than drop openings")
        others = [key for key in rows if key[1].endswith("(connection)") and key != ("WS", "drop (connection)")]
        if others:
            problems.append(f"connections recorded broken that were not: {others}")
    if KEEPALIVE_CLOSES:
        problems.append(f"the server closed {len(KEEPALIVE_CLOSES)} connections for missing pongs")
    if "\nExceptions\n" in run.stdout + run.stderr:
        problems.append("a task's assert failed (see Exceptions below)")
    if problems:
        sys.exit("WebSocket interop against websockets failed:\n" + "\n".join(problems) + "\n"
                 + run.stdout[-2000:] + run.stderr[-2000:])
    counts = ", ".join(f"{name} {row['num_requests']}" for (_, name), row in rows.items() if name != "Aggregated")
    print(f"WebSocket interop against websockets: ok ({counts})")


if __name__ == "__main__":
    main()
