"""Where the commit path's time goes (issue 15 point 2): py-spy on a lab pair.

A lab pair with an HA standby (fast timers, synchronous=FULL). For each
path (``op commit`` and REST ``POST /logical-network``, 16 concurrent
writers, as bench/commit.py writes them) the writes run twice: once
alone (the same-run baseline), once with ``py-spy record`` sampling the
active's and the standby's cfgmgr (every thread, idle samples dropped:
busy time only). Prints the writes/s of both and their ratio (the
profiler's own cost), then per cfgmgr the functions with the most busy
samples, by own time (the frame on top) and by inclusive time for the
stages of the path: IPC / HTTP request handling, the store (prepare, the
writer thread's SQLite), the sync stream (send, receive, acks), the
``changes`` publish, and socket writes and reads.

    .venv/bin/python bench/commit_profile.py
    .venv/bin/python bench/commit_profile.py --ops 4000 --seconds 8 --top 25
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from commit import run_writes, service_pids
from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = "the same writes without the profiler attached (the profiler's cost)"

# Inclusive stages: (label, regular expression over "Class.function (file)" frames).
STAGES = (
    ("IPC request handling (ipc.py)", r"\(ipc\.py\)"),
    ("HTTP request handling (aiohttp)", r"\(aiohttp/"),
    ("REST API (api/)", r"\(api/"),
    ("Store.prepare (checks, seq)", r"^Store\.(prepare|prepare_replicated) "),
    ("writer thread: SQLite group write", r"^StoreWriter\._commit "),
    ("sync stream (sync/)", r"\(sync/"),
    ("TLS (ssl.py, sslproto.py)", r"\((ssl|asyncio/sslproto)\.py\)"),
    ("ack gate (cfgmgr/ackgate.py, acks.py)", r"\(cfgmgr/ack(gate|s)\.py\)"),
    ("changes publish", r"publish_changes "),
    ("socket writes", r"^(_SelectorSocketTransport\.write|socket\.send\w*) "),
    ("socket reads", r"^_SelectorSocketTransport\._read_ready__\w+ |^socket\.recv\w* "),
)
# A sample whose top frame is one of these waits (py-spy does not always see it idle).
# Idle pool threads (the password pool) wait in _worker's queue get.
IDLE = re.compile(
    r"^(Condition\.wait|EpollSelector\.select|socket\.accept) |^_worker \(concurrent/futures/"
)
FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:)]+)(?::\d+)?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for mark in ("openvsm/", "site-packages/", "python3.11/"):
        if mark in file:
            file = file.split(mark, 1)[1]
            break
    return f"{m.group('func')} ({file})"


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count``, root first."""
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks.append((head.split(";"), int(count)))
    return stacks


def summarise(name: str, stacks: list[tuple[list[str], int]], top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    stage: collections.Counter[str] = collections.Counter()
    idle = 0
    for frames, n in stacks:
        names = [short(f) for f in frames[1:]]
        if not names or IDLE.match(names[-1]):
            idle += n
            continue
        own[names[-1]] += n
        for label, rx in STAGES:
            if any(re.search(rx, f) for f in names):
                stage[label] += n
    busy = sum(own.values())
    print(f"  {name}: {busy} busy samples, {idle} waiting (select, condition wait)")
    if not busy:
        return
    print("    busy time by stage, inclusive (a sample may count in several):")
    for label, _rx in STAGES:
        print(f"      {100 * stage[label] / busy:5.1f} %  {label}")
    print(f"    busy time by function, own, top {top} (StoreWriter._commit: in SQLite, fsync):")
    for func, n in own.most_common(top):
        print(f"      {100 * n / busy:5.1f} %  {func}")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # the venv's (dev extras)
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, out: Path, seconds: float, rate: int) -> subprocess.Popen[bytes]:
    cmd = [py_spy() or "py-spy", "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    cmd += ["-r", str(rate), "-f", "raw", "-o", str(out), "--threads"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load_for(
    sock: Path, mode: str, ops: int, counter: itertools.count[int], rest: tuple[str, str] | None
) -> float:
    lat, wall = asyncio.run(run_writes(sock, mode, ops, 16, counter, rest))
    return len(lat) / wall


def profile_mode(
    lab: Lab, active: str, mode: str, args: argparse.Namespace, counter: itertools.count[int]
) -> None:
    standby = "secondary" if active == "primary" else "primary"
    pids = service_pids(lab, (active, standby))
    sock = lab.rundir(active) / "cfgmgr.sock"
    addr = lab.nodes[active].rest_plain
    rest = (f"http://{addr[0]}:{addr[1]}/api/n1k", lab.password) if addr else None
    # One writer first: the REST credentials are verified once (scrypt) and cached;
    # 16 new clients at once would find the password pool busy (429).
    asyncio.run(run_writes(sock, mode, 16, 1, counter, rest))
    quiet = load_for(sock, mode, args.ops, counter, rest)
    outs = {k: Path(args.out) / f"{mode}-{k}.txt" for k in ("a-cfgmgr", "s-cfgmgr")}
    spies = [record(pids[k][0], outs[k], args.seconds, args.rate) for k in outs if pids[k]]
    time.sleep(1.0)  # py-spy attaches
    done = threading.Event()
    rates: list[float] = []

    def keep_writing() -> None:
        while not done.is_set():
            rates.append(load_for(sock, mode, args.ops, counter, rest))

    t = threading.Thread(target=keep_writing)
    t.start()
    for spy in spies:
        spy.wait(args.seconds + 60)
    done.set()
    t.join()
    profiled = statistics_mean(rates)
    print(f"\n{mode}: 16-way, HA standby: {quiet:.0f} writes/s alone, {profiled:.0f} profiled")
    print(same_run_ratio(f"{mode} 16-way writes/s profiled", profiled, quiet, "not profiled"))
    for k, path in outs.items():
        if path.exists():
            who = "active" if k == "a-cfgmgr" else "standby"
            summarise(f"{who} cfgmgr", parse_raw(path), args.top)


def statistics_mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ops", type=int, default=960, help="writes per load round")
    parser.add_argument("--seconds", type=float, default=5.0, help="py-spy record duration")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--modes", default="commit,rest")
    parser.add_argument("--out", default=None, help="keep py-spy's raw files here")
    args = parser.parse_args()
    if py_spy() is None:
        print(
            "bench/commit_profile.py: py-spy not found (pip install -e '.[dev]')", file=sys.stderr
        )
        return 2
    counter = itertools.count()
    with tempfile.TemporaryDirectory(prefix="openvsm-profile-") as tmp:
        if args.out is None:
            args.out = tmp
        Path(args.out).mkdir(parents=True, exist_ok=True)
        lab = Lab(Path(tmp) / "lab", timers="fast", rest=True)
        try:
            active = lab.start(timeout=180)
            for mode in args.modes.split(","):
                profile_mode(lab, active, mode, args, counter)
        finally:
            lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
