"""Failover benchmark (issue: VSM pair).

SIGKILL of the active node's whole process tree, then the time until the
standby's first heartbeat as active is seen on the wire. The dead node's
control socket address is taken over by this benchmark right after the kill,
so the new active's first frame with state "active" is timestamped here, not
reported by the system itself.

    .venv/bin/python bench/failover.py --runs 20 --timers fast
    .venv/bin/python bench/failover.py --runs 3 --timers default
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from openvsm.lab.lab import TIMER_PROFILES, Lab
from openvsm.wire.codec import Codec, Frame
from openvsm.wire.messages import Discovery, HeartbeatRequest


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(values: list[float], fmt: str) -> str:
    parts = [
        ("min", min(values)),
        ("median", statistics.median(values)),
        ("p95", percentile(values, 0.95)),
        ("max", max(values)),
    ]
    return "  ".join(f"{name} {value:{fmt}}" for name, value in parts)


def one_run(lab: Lab, codec: Codec, timeout: float) -> tuple[float, str]:
    active = lab.active()
    assert active is not None, "no active node"
    standby = "secondary" if active == "primary" else "primary"
    dead = lab.nodes[active]
    proc = dead.proc
    assert proc is not None
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.bind(dead.control)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.0005)
    sock.settimeout(0.05)
    t1 = None
    end = time.monotonic() + timeout
    while time.monotonic() < end and t1 is None:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        frame = codec.decode(data)
        if not isinstance(frame, Frame):
            continue
        msg = frame.msg
        if isinstance(msg, HeartbeatRequest | Discovery) and msg.state == "active":
            t1 = time.monotonic()
    sock.close()
    proc.wait()
    lab.kill_node(active)
    if t1 is None:
        raise RuntimeError(f"{standby} did not become active within {timeout} s")
    lab.start_node(active)
    lab.wait_pair()
    return t1 - t0, standby


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timers", choices=sorted(TIMER_PROFILES), default="fast")
    args = parser.parse_args()
    loss = TIMER_PROFILES[args.timers]["max_loss_interval_ms"] / 1000
    with tempfile.TemporaryDirectory(prefix="openvsm-bench-") as tmp:
        lab = Lab(Path(tmp), timers=args.timers, rest=False)
        codec = Codec(lab.domain_id, lab.secret.encode())
        try:
            lab.start()
            times: list[float] = []
            for i in range(args.runs):
                dt, new_active = one_run(lab, codec, timeout=loss * 4 + 5)
                times.append(dt)
                print(
                    f"run {i + 1:2d}: {dt * 1000:8.1f} ms  (new active: {new_active})", flush=True
                )
        finally:
            lab.stop()
    hb = TIMER_PROFILES[args.timers]["heartbeat_interval_ms"]
    print(f"\nfailover ({args.timers} timers, hb {hb} ms, loss interval {loss * 1000:.0f} ms),")
    print(f"{len(times)} runs of SIGKILL of the active node:")
    print("  detection-to-active ms:", stats([t * 1000 for t in times], ".1f"))
    print("  ratio to loss interval:", stats([t / loss for t in times], ".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
