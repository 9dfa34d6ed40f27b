"""gRPC against a server Swarmer did not write: Python's grpcio.

A grpcio server (in this process, on 127.0.0.1, generic handlers with the
seed's TextCategorization messages encoded by hand, so no generated code
and no protobuf package) answers a unary method three ways: a reply; a
status without a reply (trailers only, `context.abort`); and a reply
followed by a non-OK status in the trailers (`set_code` then return);
asked for reflection, which it does not offer, it says UNIMPLEMENTED. It
also serves server-, client- and bidirectional-streaming methods
(`streams.proto`), one of which aborts mid-stream, and the bidirectional
one also as a conversation (an interactive stream). A Swarmer plan calls
them all; its JSON summary must count each call, with the right failures.

    python3 tests/grpc/interop.py --swarmer target/debug/swarmer [--python VENV/bin/python]
Run by scripts/test.sh with the parity venv's Python, which has grpcio.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "examples", "lua", "predict", "categorization.proto")


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    shift = value = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def decode_input(data):
    """TextCategorizationInput { string text = 2; } -> text."""
    at, text = 0, ""
    while at < len(data):
        key, at = read_varint(data, at)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, at = read_varint(data, at)
            if field == 2:
                text = data[at:at + length].decode()
            at += length
        elif wire == 0:
            _, at = read_varint(data, at)
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return text


def encode_output(reply):
    """TextCategorizationOutput { string text = 1; string prediction_id = 2; int32 category = 3; }."""
    text, pid, category = reply
    out = bytearray()
    for field, value in ((1, text), (2, pid)):
        raw = value.encode()
        out += varint(field << 3 | 2) + varint(len(raw)) + raw
    out += varint(3 << 3 | 0) + varint(category)
    return bytes(out)


def serve():
    import grpc

    counter = {"n": 0}
    lock = threading.Lock()

    def predict(text, context):
        with lock:
            counter["n"] += 1
            n = counter["n"]
        if text.startswith("abort:"):
            context.abort(grpc.StatusCode.NOT_FOUND, text[len("abort:"):])
        if text.startswith("late:"):
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(text[len("late:"):])
            return (text, f"py-{n}", 0)
        return (text, f"py-{n}", sum(text.encode()) % 10)

    handler = grpc.method_handlers_generic_handler("categorization.TextCategorization", {
        "GetPrediction": grpc.unary_unary_rpc_method_handler(
            predict, request_deserializer=decode_input, response_serializer=encode_output),
    })
    def split(text, context):
        for i, word in enumerate(text.split()):
            yield (word, f"split-{i}", i)

    def join(words, context):
        texts = list(words)
        return (" ".join(texts), "join", len(texts))

    def echo(words, context):
        for i, word in enumerate(words):
            if word == "stop":
                context.abort(grpc.StatusCode.ABORTED, f"stopped after {i}")
            yield (word, f"echo-{i}", i)

    codec = dict(request_deserializer=decode_input, response_serializer=encode_output)
    streams = grpc.method_handlers_generic_handler("streams.Streams", {
        "Split": grpc.unary_stream_rpc_method_handler(split, **codec),
        "Join": grpc.stream_unary_rpc_method_handler(join, **codec),
        "Echo": grpc.stream_stream_rpc_method_handler(echo, **codec),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler, streams))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, counter


PLAN = """
local swarmer = require("swarmer")
swarmer.grpc.load(%(proto)s)
swarmer.grpc.load(%(streams)s)
-- This server offers no reflection: asking says so.
local reflected, why = pcall(swarmer.grpc.reflect, %(host)s, { timeout = 5 })
assert(not reflected and why:find("does not offer reflection (UNIMPLEMENTED)", 1, true), why)
local METHOD = "categorization.TextCategorization/GetPrediction"
swarmer.user("U", { wait_time = swarmer.constant(0.02), tasks = { function(self)
  local ok = self.client:grpc(METHOD, { text = "abc" }, { name = "ok" })
  assert(ok.ok and ok.reply.category == %(category)d and ok.reply.prediction_id:match("^py%%-"), "ok: " .. ok.status)
  local aborted = self.client:grpc(METHOD, { text = "abort:gone" }, { name = "abort" })
  assert(aborted.status == "NOT_FOUND" and aborted.message == "gone", "abort: " .. aborted.status)
  local late = self.client:grpc(METHOD, { text = "late:busy" }, { name = "late" })
  assert(late.status == "RESOURCE_EXHAUSTED" and late.message == "busy", "late: " .. late.status)
  local split = self.client:grpc("streams.Streams/Split", { text = "a bb ccc" }, { name = "split" })
  assert(split.ok and #split.replies == 3 and split.replies[3].text == "ccc" and split.replies[3].category == 2,
    "split: " .. split.status)
  local join = self.client:grpc("streams.Streams/Join", { { text = "x" }, { text = "y" } }, { name = "join" })
  assert(join.ok and join.reply.text == "x y" and join.reply.category == 2 and join.sent == 2, "join: " .. join.status)
  local echo = self.client:grpc("streams.Streams/Echo", { { text = "p" }, { text = "q" } }, { name = "echo" })
  assert(echo.ok and #echo.replies == 2 and echo.replies[2].text == "q", "echo: " .. echo.status)
  local stopped = self.client:grpc("streams.Streams/Echo", { { text = "p" }, { text = "stop" } }, { name = "stopped" })
  assert(stopped.status == "ABORTED" and stopped.message == "stopped after 1", "stopped: " .. stopped.status)
  -- A conversation: each word answered before the next is sent.
  local talk = self.client:grpc_stream("streams.Streams/Echo", { name = "talk" })
  for i, word in ipairs({ "r", "s" }) do
    assert(talk:send({ text = word }))
    local reply = talk:receive(5)
    assert(reply and reply.text == word and reply.prediction_id == "echo-" .. (i - 1), "talk: no reply to " .. word)
  end
  local done = talk:finish()
  assert(done.ok and done.sent == 2 and done.received == 2, "talk: " .. done.status)
end } })
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swarmer", required=True)
    args = parser.parse_args()
    server, port, counter = serve()
    try:
        with tempfile.TemporaryDirectory() as work:
            plan = os.path.join(work, "plan.lua")
            with open(plan, "w") as f:
                f.write(PLAN % {"proto": json.dumps(os.path.abspath(PROTO)), "category": sum(b"abc") % 10,
                                "host": json.dumps(f"http://127.0.0.1:{port}"),
                                "streams": json.dumps(os.path.join(HERE, "streams.proto"))})
            run = subprocess.run(
                [args.swarmer, "-f", plan, "-H", f"http://127.0.0.1:{port}", "--headless", "-u", "2", "-r", "100",
                 "-t", "3s", "--json", "--only-summary", "--stop-timeout", "5"],
                capture_output=True, text=True, timeout=60)
            if run.returncode not in (0, 1):
                sys.exit(f"swarmer exited with {run.returncode}:\n{run.stderr[-3000:]}")
            start = run.stdout.index("[")
            rows = {row["name"]: row for row in json.loads(run.stdout[start:]) if row["method"] == "grpc"}
    finally:
        server.stop(None)
    problems = []
    for name in ("ok", "abort", "late", "split", "join", "echo", "stopped", "talk"):
        if name not in rows or rows[name]["num_requests"] < 5:
            problems.append(f"{name}: too few calls: {rows.get(name)}")
    if not problems:
        for name in ("ok", "split", "join", "echo", "talk"):
            if rows[name]["num_failures"] != 0:
                problems.append(f"{name}: failures {rows[name]['num_failures']}")
        for name in ("abort", "late", "stopped"):
            if rows[name]["num_failures"] != rows[name]["num_requests"]:
                problems.append(f"{name}: {rows[name]['num_failures']} of {rows[name]['num_requests']} failed")
        unary = sum(rows[n]["num_requests"] for n in ("ok", "abort", "late"))
        if counter["n"] < unary:
            problems.append(f"the server saw {counter['n']} unary calls, Swarmer recorded {unary}")
    if "\nExceptions\n" in run.stdout + run.stderr:
        problems.append("a task's assert failed (see Exceptions below)")
    if problems:
        sys.exit("gRPC interop against grpcio failed:\n" + "\n".join(problems) + "\n" + run.stderr[-2000:])
    counts = ", ".join(f"{name} {row['num_requests']}" for name, row in rows.items())
    print(f"gRPC interop against grpcio: ok ({counts})")


if __name__ == "__main__":
    main()
