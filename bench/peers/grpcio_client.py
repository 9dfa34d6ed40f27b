"""Python grpcio making unary calls back to back from THREADS threads, one
channel each (bench/grpc.sh). Prints the calls made. Hand-encoded messages:
no generated code."""
import sys
import threading
import time

import grpc

addr, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
REQUEST = b"\x12\x05hello"  # TextCategorizationInput { text = "hello" } (field 2)
counts = [0] * threads


def run(i):
    channel = grpc.insecure_channel(addr)
    call = channel.unary_unary("/categorization.TextCategorization/GetPrediction",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        call(REQUEST)
        counts[i] += 1


workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(sum(counts))
