"""Configuration write benchmark (issue 15 point 2: pipelined grouped commit).

Writes through the active's cfgmgr IPC (op ``cli``: a configuration line in
a session already in configuration mode, as the CLI shell sends it; op
``commit``: the ops directly, as vemmgr and tools do) and through its REST
API (``POST /api/n1k/logical-network/NAME``, HTTP basic auth, as the
OpenStack driver does), each acknowledged only after the local SQLite
commit (synchronous=FULL) and, with an HA standby, the standby's durable
commit. Sequential and 16-way concurrent, first with the HA standby, then
with the standby killed, in the same run; then the goals (HA 16-way >=
20,000/s, sequential p99 < 2 ms, HA >= 0.8 x no standby), the ratio of each
HA figure to the no-standby one and to main's figures of issue 15.
``--dir /dev/shm`` puts the lab on tmpfs: the figures without the disk
(what the CPU allows). Then bulk
sync: the time from starting a standby with an empty store until the pair
is "Active with HA standby", for stores of about 10k and 100k objects
(committed in big batches) plus the same with an almost empty store (the
process start-up cost included in each figure).

    .venv/bin/python bench/commit.py
    .venv/bin/python bench/commit.py --ops 3000 --bulk 10000,100000
    .venv/bin/python bench/commit.py --bulk "" --dir /dev/shm
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from openvsm.identity import MAC_FILE
from openvsm.ipc import IpcClient, IpcError
from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = "the same path and concurrency with the standby killed (no standby)"
GOAL_P99_MS = 2.0  # sequential, with an HA standby
GOAL_OPS = 20_000.0  # 16 concurrent writers, with an HA standby
GOAL_RATIO = 0.8  # HA standby / no standby
MODES = ("cli", "commit", "rest")
# main before issue 15 (its text: bench/commit.py --ops 480, quiet machine), op commit.
MAIN_BEFORE = {("ha", 1): 342.0, ("ha", 16): 1174.0, ("alone", 1): 1010.0, ("alone", 16): 2889.0}


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def report(label: str, lat: list[float], wall: float, cpu: dict[str, float]) -> dict[str, float]:
    ms = [x * 1000 for x in lat]
    row = {
        "ops_s": len(lat) / wall,
        "p50": statistics.median(ms),
        "p99": percentile(ms, 0.99),
        "max": max(ms),
    }
    per = "  ".join(f"{k} {v / len(lat) * 1e6:4.0f}" for k, v in cpu.items())
    print(
        f"  {label:28s} {len(lat):5d} ops {row['ops_s']:7.0f} ops/s  "
        f"p50 {row['p50']:6.2f} ms  p99 {row['p99']:6.2f} ms  max {row['max']:7.2f} ms  "
        f"CPU us/write (net of idle): {per}",
        flush=True,
    )
    return row


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def service_pids(lab: Lab, nodes: tuple[str, ...]) -> dict[str, list[int]]:
    """cfgmgr of each node ("a"/"s" cfgmgr) and every other VSM service ("rest")."""
    out: dict[str, list[int]] = {"a-cfgmgr": [], "s-cfgmgr": [], "others": []}
    for i, node in enumerate(nodes):
        try:
            rows = ipc_call(lab.rundir(node) / "sysmgr.sock", "services")
        except (OSError, IpcError):
            continue  # that node is down
        for r in rows["TABLE_service"]["ROW_service"]:
            key = ("a-cfgmgr" if i == 0 else "s-cfgmgr") if r["name"] == "cfgmgr" else "others"
            out[key].append(int(r["pid"]))
    return out


class Writer:
    """One client connection; ``write(n)`` sends change number ``n``."""

    def __init__(self, sock: Path, mode: str, name: str, rest: tuple[str, str] | None) -> None:
        self.client = IpcClient(sock, timeout=30.0)
        self.mode = mode
        self.session = name
        self.rest = rest  # (base url, admin password)
        self.http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        self.client.close()
        if self.http is not None:
            await self.http.close()

    async def setup(self) -> None:
        if self.mode == "rest":
            assert self.rest is not None
            token = base64.b64encode(f"admin:{self.rest[1]}".encode()).decode()
            self.http = aiohttp.ClientSession(
                headers={"Authorization": f"Basic {token}"},
                connector=aiohttp.TCPConnector(limit=1),
            )
        if self.mode == "cli":
            res = await self.client.call("cli", line="configure terminal", session=self.session)
            assert not res["error"], res

    async def write(self, n: int) -> None:
        name = f"bench-{n}"
        if self.mode == "rest":
            assert self.http is not None and self.rest is not None
            url = f"{self.rest[0]}/logical-network/{name}"
            async with self.http.post(url, json={"description": f"bench {n}"}) as r:
                if r.status != 200:
                    raise RuntimeError(f"{url}: {r.status} {await r.text()}")
            return
        if self.mode == "cli":
            res = await self.client.call(
                "cli", line=f"port-profile type vethernet {name}", session=self.session
            )
            if res["error"]:
                raise RuntimeError(res["output"])
        else:
            body = {
                "name": name,
                "type": "vethernet",
                "mode": "access",
                "access_vlan": 10,
                "allowed_vlans": [],
                "enabled": False,
                "shutdown": False,
                "description": f"benchmark profile {n}",
                "max_macs": 0,
                "channel_group": 0,
                "lacp_mode": "",
                "owner": "cli",
                "uuid": f"00000000-0000-0000-0000-{n:012d}",
                "inherit": "",
                "bridge_domain": "",
                "dynamic": False,
            }
            await self.client.call(
                "commit",
                ops=[{"kind": "port_profile", "key": name, "body": body}],
                user="admin",
                source="bench",
                command=f"port-profile type vethernet {name}",
            )


async def run_writes(
    sock: Path,
    mode: str,
    total: int,
    conc: int,
    counter: itertools.count[int],
    rest: tuple[str, str] | None = None,
) -> tuple[list[float], float]:
    writers = [
        Writer(sock, mode, f"bench-{mode}-{conc}-{i}-{next(counter)}", rest) for i in range(conc)
    ]
    for w in writers:
        await w.setup()
    lat: list[float] = []
    per = total // conc

    async def loop(w: Writer) -> None:
        for _ in range(per):
            n = next(counter)
            t0 = time.perf_counter()
            await w.write(n)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in writers))
    wall = time.perf_counter() - t0
    for w in writers:
        await w.close()
    return lat, wall


def write_suite(
    lab: Lab, active: str, ops: int, counter: itertools.count[int]
) -> dict[tuple[str, int], dict[str, float]]:
    pids = service_pids(lab, (active, "secondary" if active == "primary" else "primary"))
    sock = lab.rundir(active) / "cfgmgr.sock"
    # The plain listener (as the n1kv driver speaks); the HTTPS one is `rest`.
    addr = lab.nodes[active].rest_plain
    rest = (f"http://{addr[0]}:{addr[1]}/api/n1k", lab.password) if addr else None
    rows: dict[tuple[str, int], dict[str, float]] = {}
    # The services' CPU with no writes (heartbeats, status polls), per second:
    # subtracted, so that the figure is what each write costs.
    before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items() if v}
    t0 = time.perf_counter()
    time.sleep(2.0)
    idle_s = time.perf_counter() - t0
    idle = {k: (sum(cpu_seconds(p) for p in pids[k]) - v) / idle_s for k, v in before.items()}
    for mode in MODES:
        for conc in (1, 16):
            before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items() if v}
            lat, wall = asyncio.run(run_writes(sock, mode, ops, conc, counter, rest))
            cpu = {
                k: max(0.0, sum(cpu_seconds(p) for p in pids[k]) - v - idle[k] * wall)
                for k, v in before.items()
            }
            path = "REST  " if mode == "rest" else f"op {mode:6s}"
            label = f"{path} {'sequential' if conc == 1 else f'{conc}-way concurrent'}"
            rows[(mode, conc)] = report(label, lat, wall, cpu)
    return rows


def goals(
    ha: dict[tuple[str, int], dict[str, float]], alone: dict[tuple[str, int], dict[str, float]]
) -> None:
    """The issue's goals per path, and the ratios (HA / no standby, HA / main before)."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(" goals with an HA standby (same run):")
    for mode in MODES:
        seq, many = ha[(mode, 1)], ha[(mode, 16)]
        ratio = many["ops_s"] / alone[(mode, 16)]["ops_s"]
        seq_ratio = seq["ops_s"] / alone[(mode, 1)]["ops_s"]
        print(
            f"  {mode:6s} 16-way {many['ops_s']:7.0f}/s >= {GOAL_OPS:.0f}: "
            f"{verdict(many['ops_s'] >= GOAL_OPS)};  sequential p99 {seq['p99']:.2f} ms "
            f"< {GOAL_P99_MS} ms: {verdict(seq['p99'] < GOAL_P99_MS)};  HA/no standby "
            f"16-way {ratio:.2f}, sequential {seq_ratio:.2f} >= {GOAL_RATIO}: "
            f"{verdict(min(ratio, seq_ratio) >= GOAL_RATIO)}"
        )
    for mode in MODES:
        for conc in (1, 16):
            print(
                same_run_ratio(
                    f"{mode} {conc}-way ops/s, HA",
                    ha[(mode, conc)]["ops_s"],
                    alone[(mode, conc)]["ops_s"],
                    "no standby",
                )
            )
    print(" ratio to main before issue 15 (op commit; its figures, another run):")
    for (where, conc), before in MAIN_BEFORE.items():
        now = (ha if where == "ha" else alone)[("commit", conc)]["ops_s"]
        label = "HA standby" if where == "ha" else "no standby"
        print(f"  {label} {conc:2d}-way: {now:7.0f}/s vs {before:6.0f}/s = x{now / before:.2f}")


def bulk_commit(lab: Lab, active: str, start: int, count: int, batch: int = 1000) -> None:
    sock = lab.rundir(active) / "cfgmgr.sock"

    async def go() -> None:
        client = IpcClient(sock, timeout=120.0)
        try:
            for base in range(start, start + count, batch):
                ops = [
                    {
                        "kind": "port_profile",
                        "key": f"bulk-{n}",
                        "body": {
                            "name": f"bulk-{n}",
                            "type": "vethernet",
                            "mode": "access",
                            "access_vlan": 10,
                            "description": f"bulk profile {n}",
                            "enabled": False,
                            "shutdown": False,
                            "owner": "cli",
                            "uuid": f"10000000-0000-0000-0000-{n:012d}",
                            "dynamic": False,
                        },
                    }
                    for n in range(base, min(base + batch, start + count))
                ]
                await client.call(
                    "commit", ops=ops, user="admin", source="bench", command="bulk load"
                )
        finally:
            client.close()

    asyncio.run(go())


def time_bulk_sync(lab: Lab, active: str, standby: str) -> tuple[float, dict[str, Any]]:
    """Kill the standby, wipe its store, start it: seconds until 'Active with HA standby'."""
    lab.kill_node(standby)
    wait_for(
        lambda: (lab.status(active) or {}).get("other_sup_rdn_state") == "Not present",
        30,
        "the active to lose its standby",
    )
    # A wiped store, not a new installation: the node keeps its system MAC (the
    # active enforces the one it learnt; openvsm.identity).
    datadir = lab.nodes[standby].datadir
    mac = (datadir / MAC_FILE).read_bytes()
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(parents=True)
    (datadir / MAC_FILE).write_bytes(mac)
    t0 = time.perf_counter()
    lab.start_node(standby)
    assert lab.wait_pair(600) == active
    dt = time.perf_counter() - t0
    sync = ipc_call(lab.rundir(active) / "cfgmgr.sock", "sync_status")
    return dt, sync


def fsync_floor(where: Path, n: int = 100) -> float:
    """ms per one-row SQLite commit, WAL + synchronous=FULL, on the lab's disk."""
    db = sqlite3.connect(where / "floor.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
            db.execute("COMMIT")
        return (time.perf_counter() - t0) / n * 1000
    finally:
        db.close()


def objects(lab: Lab, node: str) -> int:
    sock = lab.rundir(node) / "cfgmgr.sock"
    return sum(len(ipc_call(sock, "list", kind=k)) for k in ("port_profile", "vlan", "user"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=480, help="writes per measurement")
    parser.add_argument("--bulk", default="10000,100000", help="store sizes for bulk sync")
    parser.add_argument("--dir", default=None, help="where the lab lives (/dev/shm: no disk)")
    args = parser.parse_args()
    counter = itertools.count()
    with tempfile.TemporaryDirectory(prefix="openvsm-bench-", dir=args.dir) as tmp:
        lab = Lab(Path(tmp), timers="fast", rest=True)
        try:
            active = lab.start(timeout=180)
            standby = "secondary" if active == "primary" else "primary"
            print(f"configuration writes, {args.ops} per row (fast timers, synchronous=FULL)")
            floor = fsync_floor(Path(tmp))
            print(f" disk floor: one SQLite WAL commit with synchronous=FULL = {floor:.2f} ms")
            print(" with an HA standby (each write acked by the standby):")
            ha = write_suite(lab, active, args.ops, counter)
            lab.kill_node(standby)
            wait_for(
                lambda: (
                    (lab.status(active) or {}).get("this_sup_internal_state")
                    == "Active with no standby"
                ),
                30,
                "the active to lose its standby",
            )
            print(" with no standby:")
            alone = write_suite(lab, active, args.ops, counter)
            lab.start_node(standby)
            lab.wait_pair(60)
            goals(ha, alone)

            print("\nbulk sync: empty standby started -> 'Active with HA standby'")
            done = objects(lab, active)
            dt, sync = time_bulk_sync(lab, active, standby)
            print(f"  {done:7d} objects: {dt:7.2f} s  (start-up baseline)", flush=True)
            for size in (int(x) for x in args.bulk.split(",") if x):
                have = objects(lab, active)
                if size > have:
                    t0 = time.perf_counter()
                    bulk_commit(lab, active, have, size - have)
                    load = time.perf_counter() - t0
                else:
                    load = 0.0
                n = objects(lab, active)
                dt, sync = time_bulk_sync(lab, active, standby)
                mode = "snapshot" if sync.get("snapshots_sent") else "change-log tail"
                digests = {
                    node: ipc_call(lab.rundir(node) / "cfgmgr.sock", "snapshot_digest")["digest"]
                    for node in (active, standby)
                }
                same = "equal" if len(set(digests.values())) == 1 else "DIFFERENT"
                print(
                    f"  {n:7d} objects: {dt:7.2f} s  ({mode}; stores {same}; "
                    f"loaded in batches of 1000 at {(n - have) / load if load else 0:.0f} obj/s)",
                    flush=True,
                )
        finally:
            lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
