"""Pipelined group commit, from the outside: no acknowledged write is lost when
the active dies with a pipeline full of writes.

Driven as an operator's script would: ``openvsm lab --dir D --no-shell
--timers fast --vems 0``, ``lab.json`` for the nodes' run directories and
process groups, sixteen concurrent writers speaking ``openvsm cli``'s
protocol on ``RUNDIR/cfgmgr.sock`` (a process per write cannot keep the
pipeline full), SIGKILL of the active node's whole process group, then
``openvsm cli -c "show ..."`` on the node left. With the pipeline the
active sends each change to the standby while its own group commit runs; a
write is acknowledged only when both are durable, so every acknowledged VLAN
must be in the new active's running configuration; a write whose answer did
not arrive may or may not be there (its outcome is unknown to its client).

Also (lab helpers): a local commit that fails after the change reached the
standby fails the write, resets the standby and resyncs it without the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.cli.client import CliConnection
from openvsm.ipc import IpcError, subscribe
from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

WRITERS = 16
SETTLE = 60.0


class OutsideLab:
    def __init__(self, root: Path, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.proc = proc
        self.info: dict[str, Any] = {}

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.info["nodes"] if n["name"] == name)

    def cli(self, name: str, command: str) -> str:
        """``openvsm cli --node RUNDIR -c COMMAND``, as an operator runs it."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "openvsm",
                "cli",
                "--node",
                self.node(name)["rundir"],
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise AssertionError(f"{command!r} on {name}: {out.stdout}{out.stderr}")
        return out.stdout

    def cli_json(self, name: str, command: str) -> Any:
        return json.loads(self.cli(name, f"{command} | json"))

    def state(self, name: str) -> str | None:
        try:
            return str(
                self.cli_json(name, "show system redundancy status")["this_sup_internal_state"]
            )
        except (AssertionError, json.JSONDecodeError, subprocess.TimeoutExpired):
            return None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[OutsideLab]:
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openvsm",
            "lab",
            "--dir",
            str(tmp_path / "lab"),
            "--no-shell",
            "--timers",
            "fast",
            "--vems",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = OutsideLab(tmp_path / "lab", proc)
    try:
        lab_json = tmp_path / "lab" / "lab.json"
        wait_for(lambda: lab_json.exists() or proc.poll() is not None, 120, "lab.json")
        assert proc.poll() is None, (tmp_path / "lab.log").read_text()
        running.info = json.loads(lab_json.read_text())
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for node in running.info.get("nodes", []):
            with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                os.killpg(node["pgid"], signal.SIGKILL)
        log.close()
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        leaked = [
            int(line.split(None, 1)[0])
            for line in out.splitlines()
            if str(tmp_path) in line and "openvsm" in line
        ]
        for pid in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leaked, f"processes left by the lab: {leaked}"


async def _writer(rundir: Path, first: int, acked: list[int], stop: asyncio.Event) -> None:
    conn = CliConnection(rundir, timeout=20.0)
    try:
        n = first
        while not stop.is_set():
            try:
                reply = await conn.run(f"configure terminal ; vlan {n} ; name pipe-{n} ; end")
            except (IpcError, OSError):
                return  # the node died: this write's outcome is unknown
            if not reply.get("error"):
                acked.append(n)
            n += 1
    finally:
        conn.close()


async def _write_then_kill(lab: OutsideLab, active: str) -> list[int]:
    acked: list[int] = []
    stop = asyncio.Event()
    rundir = Path(lab.node(active)["rundir"])
    tasks = [
        asyncio.create_task(_writer(rundir, 100 + 200 * i, acked, stop)) for i in range(WRITERS)
    ]
    deadline = time.monotonic() + SETTLE
    while len(acked) < 400:
        assert time.monotonic() < deadline, f"only {len(acked)} writes acknowledged"
        await asyncio.sleep(0.01)
    os.killpg(lab.node(active)["pgid"], signal.SIGKILL)  # mid-pipeline, every process
    killed_at = len(acked)
    stop.set()
    await asyncio.gather(*tasks)
    assert len(acked) - killed_at < WRITERS  # nothing acknowledged by a dead node after
    return acked


def test_no_acknowledged_write_is_lost_when_the_active_dies_mid_pipeline(
    lab: OutsideLab,
) -> None:
    states = {n: lab.state(n) for n in ("primary", "secondary")}
    active = next(n for n, s in states.items() if s == "Active with HA standby")
    standby = "secondary" if active == "primary" else "primary"
    acked = asyncio.run(_write_then_kill(lab, active))
    wait_for(
        lambda: (lab.state(standby) or "").startswith("Active"), SETTLE, "the standby to take over"
    )
    running = lab.cli(standby, "show running-config")
    lost = [n for n in acked if f"name pipe-{n}\n" not in running]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost: {lost[:10]}"


def test_a_failed_local_commit_resyncs_a_standby_that_received_it(
    make_lab: Callable[..., Lab],
) -> None:
    # Pipelined: a change reaches the standby while the active's own commit
    # runs. When that commit fails (here RLIMIT_FSIZE on the active's cfgmgr,
    # like a full disk), the write fails with an error saying the standby may
    # have it, the standby is given up on (reset, snapshot of the active's
    # store) and the pair comes back equal, without the failed change.
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    services = lab.cli_json(active, "show system internal sysmgr services")
    pid = {r["name"]: r["pid"] for r in services["TABLE_service"]["ROW_service"]}["cfgmgr"]
    data = lab.nodes[active].datadir
    biggest = max(p.stat().st_size for p in data.glob("pss.db*"))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (biggest, hard))
    failed: int | None = None
    error = ""
    try:
        for n in range(100, 3000):
            res = lab.cli(active, f"configure terminal ; vlan {n} ; name disk-{n} ; end")
            if res["error"]:
                failed, error = n, res["output"]
                break
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert failed is not None and "Configuration not saved" in error, error
    assert "standby may have received it" in error, error
    assert lab.wait_pair(SETTLE) == active

    def equal() -> bool:
        digests = {
            ipc_call(lab.rundir(n) / "cfgmgr.sock", "snapshot_digest")["digest"]
            for n in (active, standby)
        }
        return len(digests) == 1

    wait_for(equal, SETTLE, "the standby to be resynchronised from the active")
    for node in (active, standby):
        vlans = ipc_call(lab.rundir(node) / "cfgmgr.sock", "list", kind="vlan")
        assert str(failed) not in vlans, f"{node} kept the change that was not saved"
    res = ipc_call(
        lab.rundir(active) / "cfgmgr.sock",
        "cli",
        line="configure terminal ; vlan 3600 ; name after-disk ; end",
        session="after-disk",  # the lab's session stayed in config mode at the error
    )
    assert not res["error"], res["output"]


async def _watch_changes(rundir: Path, events: list[Any], ready: asyncio.Event) -> None:
    async for event in subscribe(rundir / "cfgmgr.sock", "changes"):
        if not ready.is_set():
            ready.set()  # the subscription's answer
            continue
        events.append(event)


async def _write_and_watch(lab: OutsideLab, active: str) -> tuple[list[int], list[Any]]:
    rundir = Path(lab.node(active)["rundir"])
    events: list[Any] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(_watch_changes(rundir, events, ready))
    await asyncio.wait_for(ready.wait(), 20)
    acked: list[int] = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_writer(rundir, 100 + 200 * i, acked, stop)) for i in range(WRITERS)
    ]
    deadline = time.monotonic() + SETTLE
    while len(acked) < 400:
        assert time.monotonic() < deadline, f"only {len(acked)} writes acknowledged"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks)

    def seen() -> set[str]:
        return {o["key"] for e in events for o in e["ops"] if o["kind"] == "vlan"}

    while not {str(n) for n in acked} <= seen():
        assert time.monotonic() < deadline, "the changes events lack acknowledged VLANs"
        await asyncio.sleep(0.01)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return acked, events


def test_a_subscriber_gets_one_changes_event_per_commit_group(lab: OutsideLab) -> None:
    """What vemmgr (or any program on RUNDIR/cfgmgr.sock) sees of sixteen
    concurrent writers: one event per commit group, ``first``..``seq``
    contiguous from one event to the next, every acknowledged VLAN in its ops."""
    states = {n: lab.state(n) for n in ("primary", "secondary")}
    active = next(n for n, s in states.items() if s == "Active with HA standby")
    acked, events = asyncio.run(_write_and_watch(lab, active))
    for before, after in itertools.pairwise(events):
        assert after["first"] == before["seq"] + 1, (before, after)
    assert all(e["first"] <= e["seq"] for e in events)
    changes = events[-1]["seq"] - events[0]["first"] + 1
    assert changes >= len(acked)
    assert len(events) < changes, "sixteen writers never shared a commit group"
