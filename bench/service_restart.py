"""Service restart visibility benchmark (issue 11, point 4).

SIGKILL of hamgr and of cfgmgr, on the active and on the standby, ``--runs``
times each; both nodes' ``show system redundancy status | json`` polled
every 20 ms for 4 s after each kill. Prints, per case, how long the killed
node's CLI gave no answer (cfgmgr serves the CLI, hamgr answers this
command) and in how many runs an answered poll differed from the answer
before the kill (the goal: none).

    .venv/bin/python bench/service_restart.py --runs 5 --timers default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openvsm.cli.client import CliConnection
from openvsm.ipc import IpcClient, IpcError
from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.lab import TIMER_PROFILES, Lab

SAME_RUN_BASELINE = "the median answered poll of the same node before any kill"

COMMAND = "show system redundancy status | json"
WINDOW = 4.0


class Poller:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.conns = {n: CliConnection(lab.rundir(n), timeout=1.0) for n in lab.nodes}

    async def ask(self, node: str) -> dict[str, Any] | None:
        try:
            reply = await self.conns[node].run(COMMAND)
        except (IpcError, OSError):
            self.conns[node].close()
            self.conns[node] = CliConnection(self.lab.rundir(node), timeout=1.0)
            return None
        if reply.get("error"):
            return None
        answer: dict[str, Any] = json.loads(reply["output"])
        return answer

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


async def service_pid(lab: Lab, node: str, service: str) -> int:
    client = IpcClient(lab.rundir(node) / "sysmgr.sock", timeout=2.0)
    try:
        rows = (await client.call("services"))["TABLE_service"]["ROW_service"]
    finally:
        client.close()
    return int(next(r["pid"] for r in rows if r["name"] == service))


async def quiet_poll(lab: Lab, node: str, count: int = 20) -> float:
    """Median seconds of one answered poll of ``node`` with nothing killed."""
    poller = Poller(lab)
    try:
        took = []
        for _ in range(count):
            t0 = time.monotonic()
            await poller.ask(node)
            took.append(time.monotonic() - t0)
        return statistics.median(took)
    finally:
        poller.close()


async def one_kill(lab: Lab, node: str, service: str) -> tuple[float, list[str]]:
    """(seconds the killed node gave no answer, the differing answers)."""
    poller = Poller(lab)
    try:
        before = {n: await poller.ask(n) for n in lab.nodes}
        os.kill(await service_pid(lab, node, service), signal.SIGKILL)
        t0 = time.monotonic()
        silent_from = silent_to = None
        changed: list[str] = []
        while time.monotonic() - t0 < WINDOW:
            for n in lab.nodes:
                answer = await poller.ask(n)
                t = time.monotonic() - t0
                if n == node and answer is None and silent_from is None:
                    silent_from = t
                if n == node and answer is not None and silent_from is not None:
                    silent_to = silent_to or t
                base = before[n] or {}
                if answer is not None and answer != base:
                    diff = {k: v for k, v in answer.items() if base.get(k) != v}
                    changed.append(f"{n} +{t:.3f} s: {diff}")
            await asyncio.sleep(0.02)
    finally:
        poller.close()
    return (silent_to or 0.0) - (silent_from or 0.0), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timers", choices=sorted(TIMER_PROFILES), default="default")
    parser.add_argument("--vems", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openvsm-restart-") as tmp:
        lab = Lab(Path(tmp), vems=args.vems, timers=args.timers, rest=False)
        try:
            active = lab.start()
            standby = "secondary" if active == "primary" else "primary"
            results: dict[tuple[str, str], list[tuple[float, list[str]]]] = {}
            quiet = {"active": asyncio.run(quiet_poll(lab, active))}
            quiet["standby"] = asyncio.run(quiet_poll(lab, standby))
            for _ in range(args.runs):
                for which, node in (("active", active), ("standby", standby)):
                    for service in ("hamgr", "cfgmgr"):
                        lab.wait_pair()
                        run = asyncio.run(one_kill(lab, node, service))
                        results.setdefault((which, service), []).append(run)
            print(f"timers {args.timers}, {args.runs} runs, load {os.getloadavg()[0]:.1f}")
            for (which, service), runs in results.items():
                gaps = [g * 1000 for g, _ in runs]
                bad = [c for _, c in runs if c]
                print(
                    f"{service:6s} on the {which:7s}: no answer min {min(gaps):.0f} "
                    f"median {statistics.median(gaps):.0f} max {max(gaps):.0f} ms; "
                    f"runs with a changed answer {len(bad)}/{len(runs)}"
                )
                for changes in bad[:2]:
                    print("   ", changes[0])
                print(
                    same_run_ratio(
                        f"{service} on the {which}: median no-answer ms",
                        statistics.median(gaps),
                        quiet[which] * 1000,
                        "quiet poll",
                    )
                )
        finally:
            lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
