"""A SIGKILL of hamgr or cfgmgr is invisible to ``show system redundancy status``.

Driven from the outside only, as an operator's script would: ``openvsm lab
--no-shell`` (seed timers), ``lab.json`` for the nodes' run directories,
``openvsm cli -c "show system internal sysmgr services | json"`` for the
service's pid, SIGKILL, and both nodes' ``show system redundancy status``
(``| json`` and text, alternately) polled every 20 ms until the service is
back and a second more, and at least the sync grace after the kill (a stream
that did not resume would show then). The poller speaks ``openvsm cli``'s
protocol on ``RUNDIR/cfgmgr.sock`` (a process per poll cannot keep 20 ms).

Every answered poll must equal the answer before the kill. A poll may go
unanswered while the node's cfgmgr (it serves the CLI) or hamgr (it answers
this command) is down; the test counts those, and checks the other node
answered throughout. A writer commits VLANs on the active meanwhile; every
acknowledged one must be on the standby afterwards, and the standby's stream
must have resumed without a bulk sync.

The seed's timers: with the fast profile (600 ms loss interval, 300 ms to
degraded) a Python hamgr restart on this machine (0.2-0.7 s) is as long as
the loss interval, so the standby may rightly take over (docs/service-ha.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openvsm.cli.client import CliConnection
from openvsm.ipc import IpcError
from openvsm.lab.common import ipc_call, wait_for
from openvsm.redundancy.engine import SYNC_GRACE

pytestmark = pytest.mark.integration

STATUS = "show system redundancy status"
POLL = 0.02
SETTLE = 60.0
LAB = ("--timers", "default", "--vems", "2")
NODES = ("primary", "secondary")


@dataclass
class RunningLab:
    dir: Path
    proc: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.info["nodes"] if n["name"] == name)

    def rundir(self, name: str) -> Path:
        return Path(self.node(name)["rundir"])

    def cli(self, name: str, command: str) -> str:
        """``openvsm cli --node RUNDIR -c COMMAND``, as an operator runs it."""
        argv = ["cli", "--node", str(self.rundir(name)), "-c", command]
        out = subprocess.run(
            [sys.executable, "-m", "openvsm", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise AssertionError(f"{command!r} on {name}: {out.stdout}{out.stderr}")
        return out.stdout

    def cli_json(self, name: str, command: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.cli(name, f"{command} | json"))
        return data

    def service(self, name: str, service: str) -> dict[str, Any]:
        rows = self.cli_json(name, "show system internal sysmgr services")
        row: dict[str, Any] = next(
            r for r in rows["TABLE_service"]["ROW_service"] if r["name"] == service
        )
        return row

    def roles(self) -> dict[str, str]:
        return {n: self.cli_json(n, STATUS)["this_sup_internal_state"] for n in NODES}


def _leftovers(root: Path) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [
        int(line.split(None, 1)[0])
        for line in out.splitlines()
        if str(root) in line and "openvsm" in line and int(line.split(None, 1)[0]) != os.getpid()
    ]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    root = tmp_path_factory.mktemp("invisible")
    log = (root / "lab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "openvsm", "lab", "--dir", str(root / "lab"), "--no-shell", *LAB],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = RunningLab(root / "lab", proc)
    try:
        lab_json = root / "lab" / "lab.json"
        wait_for(lambda: lab_json.exists() or proc.poll() is not None, 120, "lab.json")
        assert proc.poll() is None, (root / "lab.log").read_text()
        running.info = json.loads(lab_json.read_text())
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for group in [n["pgid"] for n in running.info.get("nodes", [])] + [
            v["pgid"] for v in running.info.get("vems", [])
        ]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        log.close()
        leaked = _leftovers(root)
        for pid in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leaked, f"processes left by the lab: {leaked}"


@dataclass
class Poll:
    t: float
    node: str
    form: str  # "json" | "text"
    answer: Any  # None: no answer


class Poller:
    """Both nodes' status every ``POLL`` s, on one CLI session per node."""

    def __init__(self, lab: RunningLab) -> None:
        self.lab = lab
        self.conns = {n: CliConnection(lab.rundir(n), timeout=2.0) for n in NODES}
        self.polls: list[Poll] = []

    async def ask(self, node: str, command: str) -> dict[str, Any] | None:
        try:
            reply = await self.conns[node].run(command)
        except (IpcError, OSError):
            self.conns[node].close()  # cfgmgr gone: a new connection next time
            self.conns[node] = CliConnection(self.lab.rundir(node), timeout=2.0)
            return None
        return None if reply.get("error") else reply

    async def status(self, node: str, form: str) -> Any:
        reply = await self.ask(node, f"{STATUS} | json" if form == "json" else STATUS)
        if reply is None:
            return None
        return json.loads(reply["output"]) if form == "json" else reply["output"]

    async def round(self, form: str) -> None:
        t = time.monotonic()
        answers = await asyncio.gather(*(self.status(n, form) for n in self.conns))
        self.polls += [Poll(t, n, form, a) for n, a in zip(self.conns, answers, strict=True)]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


async def _writer(lab: RunningLab, node: str, acked: list[int], stop: asyncio.Event) -> None:
    n = 2000
    while not stop.is_set():
        n += 1
        conn = CliConnection(lab.rundir(node), timeout=20.0)
        try:
            reply = await conn.run(f"configure terminal ; vlan {n} ; name rs-{n} ; end")
            if not reply.get("error"):
                acked.append(n)
        except (IpcError, OSError):
            pass  # cfgmgr restarting: this write's outcome is unknown
        finally:
            conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _through_a_kill(
    lab: RunningLab, node: str, service: str, pid: int, active: str, acked: list[int]
) -> tuple[Poller, float, float]:
    """Kill ``service`` on ``node``; poll until it is back + 1 s (and the grace)
    while a writer commits on the ``active``."""
    poller = Poller(lab)
    stop = asyncio.Event()
    writer = asyncio.create_task(_writer(lab, active, acked, stop))
    try:
        await poller.round("json")
        await poller.round("text")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        back: float | None = None
        i = 0
        while back is None or time.monotonic() < max(back + 1.0, killed + SYNC_GRACE + 0.5):
            await poller.round("json" if i % 2 == 0 else "text")
            i += 1
            if back is None and i % 5 == 0 and await _is_back(poller, node, service, pid):
                back = time.monotonic()
            assert time.monotonic() - killed < SETTLE, f"{service} on {node} not back"
            await asyncio.sleep(POLL)
    finally:
        stop.set()
        await writer
        poller.close()
    assert back is not None
    return poller, killed, back


def _ha_pair(lab: RunningLab) -> str | None:
    """The active's name once the pair shows "Active with HA standby" / "HA standby"."""
    roles = lab.roles()
    active = next((n for n, s in roles.items() if s == "Active with HA standby"), None)
    if active is None or "HA standby" not in roles.values():
        return None
    return active


async def _is_back(poller: Poller, node: str, service: str, pid: int) -> bool:
    reply = await poller.ask(node, "show system internal sysmgr services | json")
    if reply is None:
        return False
    rows = json.loads(reply["output"])["TABLE_service"]["ROW_service"]
    row = next(r for r in rows if r["name"] == service)
    return row["pid"] not in (None, pid) and row["state"] == "running"


@pytest.mark.parametrize(
    ("which", "service"),
    [("active", "hamgr"), ("standby", "hamgr"), ("active", "cfgmgr"), ("standby", "cfgmgr")],
)
def test_sigkill_of_a_service_changes_no_line_of_the_redundancy_status(
    lab: RunningLab, which: str, service: str
) -> None:
    active: str = wait_for(lambda: _ha_pair(lab), SETTLE, "an HA pair before the kill")
    standby = "secondary" if active == "primary" else "primary"
    node = active if which == "active" else standby
    row = lab.service(node, service)
    before = {n: (lab.cli_json(n, STATUS), lab.cli(n, STATUS)) for n in (active, standby)}
    assert before[standby][0]["this_sup_internal_state"] == "HA standby"
    snapshots = _snapshots_loaded(lab, standby)
    acked: list[int] = []
    poller, killed, back = asyncio.run(
        _through_a_kill(lab, node, service, int(row["pid"]), active, acked)
    )
    unanswered = {n: 0 for n in (active, standby)}
    for p in poller.polls:
        if p.answer is None:
            unanswered[p.node] += 1
            continue
        expected = before[p.node][0] if p.form == "json" else before[p.node][1].rstrip("\n")
        got = p.answer if p.form == "json" else p.answer.rstrip("\n")
        assert got == expected, f"{p.node} at +{p.t - killed:.3f} s after the kill: {got}"
    answered_after = [p for p in poller.polls if p.node == node and p.t > back and p.answer]
    assert len(answered_after) >= 20, "the restarted node was not polled enough"
    other = standby if node == active else active
    other_polls = [p for p in poller.polls if p.node == other]
    assert unanswered[other] <= len(other_polls) // 10, unanswered
    # The service really restarted; the status, asked as an operator, is unchanged.
    after = lab.service(node, service)
    assert after["pid"] != row["pid"] and after["restarts"] == row["restarts"] + 1
    assert {n: lab.cli_json(n, STATUS) for n in (active, standby)} == {
        n: before[n][0] for n in before
    }
    # Every acknowledged write is on the standby; its stream resumed by a tail.
    assert acked, "no write was acknowledged during the restart"
    running = lab.cli(standby, "show running-config")
    missing = [n for n in acked if f"vlan {n}\n  name rs-{n}\n" not in running]
    assert not missing, f"acknowledged but not on the standby: {missing}"
    assert _snapshots_loaded(lab, standby) == snapshots, "the standby was bulk-synced"


def _snapshots_loaded(lab: RunningLab, standby: str) -> int:
    # Not in the CLI: the replication receiver's counter (cfgmgr IPC).
    status = wait_for(
        lambda: ipc_call(lab.rundir(standby) / "cfgmgr.sock", "sync_status", timeout=2.0),
        SETTLE,
        "the standby's sync status",
    )
    return int(status["snapshots_loaded"])
