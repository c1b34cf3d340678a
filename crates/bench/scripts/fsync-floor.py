"""The disk's own floor under Runnel's acks=all latency (issue 19, goal 1).

Appends 1 KiB and fdatasyncs it at a fixed rate, as a leader flushing one
small produce at a time does, and prints the percentiles of each fsync:

  append   the file grows with every write, as a segment does (each
           fdatasync must also commit the new size to the journal);
  prezero  the file's first 64 MiB were written with zeros and synced
           first, so a write changes no metadata (what preallocated,
           pre-zeroed segments would give).

usage: fsync-floor.py MODE RATE SECONDS DIR
"""
import os
import sys
import time

mode, rate, seconds, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
path = os.path.join(directory, f"fsync-floor-{mode}.log")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
if mode == "prezero":
    zeros = b"\0" * (1 << 20)
    for i in range(64):
        os.pwrite(fd, zeros, i << 20)
    os.fsync(fd)
elif mode != "append":
    sys.exit(f"unknown mode {mode!r}: append or prezero")
payload = b"x" * 1024
latencies = []
start = time.monotonic()
for i in range(rate * seconds):
    due = start + i / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    t0 = time.monotonic()
    os.pwrite(fd, payload, i * len(payload))
    os.fdatasync(fd)
    latencies.append((time.monotonic() - t0) * 1000)
os.close(fd)
os.unlink(path)
latencies.sort()


def q(p):
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))]


print(f"{mode:8} {rate:5}/s n={len(latencies)}  p50 {q(0.5):.2f}  p99 {q(0.99):.1f}  p99.9 {q(0.999):.1f}  max {latencies[-1]:.1f} ms")
