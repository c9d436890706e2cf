"""A copy of a lab node's config file started beside the healthy pair: the
cloned-VM mistake (issue 11, points 2 and 3; seed "VSM Role Collision
Detection", "Displaying the Role Collision").

Driven only from outside, as an operator would: ``openvsm lab --dir D
--no-shell --timers fast`` (``lab.json``), a copy of a node's TOML with new
ports and a new data directory but the same peer addresses (so it talks to
the pair), ``openvsm vsm --config copy.toml``, and ``openvsm cli --node RUNDIR
-c "... | json"`` (polled through the same CLI socket every 50 ms while the
copy runs).

- Same MAC: a copy of the primary that pins the primary's system MAC, aimed
  at the secondary (the standby). The standby hears a second incarnation
  (boot id) of its active's MAC interleaving with the real one: a duplicate,
  never "the active restarted". It shows it (heard, sup-1 block) and relays
  it; the primary shows the seed's WARNING block with its own MAC.
- New MAC: a copy of the secondary without a pin, aimed at the primary (the
  active). Its fresh data directory generates its own MAC (the identity
  belongs to the installation, not to the file), so the active drops its
  frames (``bad_mac``), shows it (heard, sup-2 block) and relays it; the
  secondary shows the WARNING block with the copy's MAC.

In both, for the whole time the copy runs, the pair stays ``Active with HA
standby`` / ``HA standby``: no reset, no split-brain resolution, no reload,
the standby's store untouched (the copy, which never had a standby, never
streams to it), and the copy itself is not reset out of the real standby.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openvsm.lab.common import free_port, ipc_call

pytestmark = pytest.mark.integration

START = 90.0  # the lab on a loaded machine
SETTLE = 20.0
HOLD = 3.0  # after the collision shows: five loss intervals of the fast profile
FAST = ("--timers", "fast", "--vems", "0")
ENDPOINT = re.compile(r'^(local|listen|plain_listen) = "127\.0\.0\.1:\d+"$', re.MULTILINE)
# [ssh] listen is a list: a copy keeping the node's SSH port crash-loops its mgmt service
ENDPOINT_LIST = re.compile(r'^listen = \["127\.0\.0\.1:\d+"\]$', re.MULTILINE)


@dataclass
class Node:
    name: str
    rundir: Path
    config: Path
    pid: int


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def openvsm_cli(rundir: Path, command: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openvsm", "cli", "--node", str(rundir), "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, f"{command} on {rundir}: {out.stdout}{out.stderr}"
    return out.stdout


def cli_json(rundir: Path, command: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(openvsm_cli(rundir, command + " | json"))
    return data


def poll_status(rundir: Path) -> dict[str, Any]:
    """``show system redundancy status | json`` over the CLI's own socket (fast)."""
    res = ipc_call(
        rundir / "cfgmgr.sock",
        "cli",
        timeout=5.0,
        line="show system redundancy status | json",
        session="watch",
    )
    assert isinstance(res, dict) and not res.get("error"), res
    data: dict[str, Any] = json.loads(res["output"])
    return data


def trace_events(rundir: Path) -> list[str]:
    rows = cli_json(rundir, "show system internal redundancy trace")["TABLE_trace"]["ROW_trace"]
    return [str(r["event"]) for r in rows]


def _kill_tree(root: Path) -> list[int]:
    """SIGKILL every openvsm process whose command line mentions ``root``."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid_s, _, args = line.strip().partition(" ")
        if str(root) in args and "openvsm" in args and int(pid_s) != os.getpid():
            pids.append(int(pid_s))
            try:
                os.kill(int(pid_s), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Node]]]:
    """``openvsm lab --dir D --no-shell --timers fast`` until lab.json is written."""
    root = tmp_path / "lab"
    with (tmp_path / "lab-console.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "openvsm", "lab", "--dir", str(root), "--no-shell", *FAST],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START
        while not (root / "lab.json").exists():
            assert proc.poll() is None, (tmp_path / "lab-console.log").read_text()
            assert time.monotonic() < deadline, "openvsm lab did not write lab.json"
            time.sleep(0.1)
        doc = json.loads((root / "lab.json").read_text())
        nodes = {
            n["name"]: Node(n["name"], Path(n["rundir"]), Path(n["config"]), int(n["pid"]))
            for n in doc["nodes"]
        }
        yield root, nodes
    finally:
        _stop_group(proc, 30.0)
        leaked = _kill_tree(tmp_path)
        assert not leaked, f"processes leaked by the test: {leaked}"


def write_copy(node: Node, where: Path, system_mac: str | None) -> Path:
    """The node's config file with new ports; its data and run directories are
    relative to the file, so the copy in ``where`` gets new ones. Peer
    addresses are kept: the copy talks to the pair."""
    text = ENDPOINT.sub(lambda m: f'{m[1]} = "127.0.0.1:{free_port()}"', node.config.read_text())
    text = ENDPOINT_LIST.sub(lambda m: f'listen = ["127.0.0.1:{free_port()}"]', text)
    assert len(ENDPOINT.findall(text)) >= 3, text
    if system_mac is not None:
        text = text.replace("[node]\n", f'[node]\nsystem_mac = "{system_mac}"\n', 1)
    where.mkdir(parents=True)
    path = where / "node.toml"
    path.write_text(text)
    return path


def start_copy(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "console.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "openvsm", "vsm", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def system_mac(rundir: Path) -> str:
    return str(cli_json(rundir, "show svs neighbors")["system_mac"])


def watch_pair(
    nodes: dict[str, Node], active: str, shown: Any, copy: subprocess.Popen[bytes]
) -> dict[str, dict[str, Any]]:
    """Poll both nodes until ``shown(statuses)`` holds, then ``HOLD`` more
    seconds; every poll must find the pair untouched."""
    want = {active: "Active with HA standby", other(active): "HA standby"}
    deadline, held_until = time.monotonic() + SETTLE, None
    while True:
        assert copy.poll() is None, "the copy stopped"
        st = {name: poll_status(nodes[name].rundir) for name in want}
        for name, expected in want.items():
            assert st[name]["this_sup_internal_state"] == expected, (name, st[name])
            assert st[name]["rdn_mode_oper"] == "HA", (name, st[name])
        if held_until is None and shown(st):
            held_until = time.monotonic() + HOLD
        if held_until is not None and time.monotonic() >= held_until:
            assert shown(st), st
            return st
        assert time.monotonic() < deadline, f"collision not shown in time: {st}"
        time.sleep(0.05)


def macs(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["mac"]) for r in rows]


def warning_block(text: str, sup: str) -> list[str]:
    """The MAC lines of the WARNING block for conflicting ``sup``s."""
    lines = text.splitlines()
    i = lines.index(f"WARNING! Conflicting {sup}(s) detected in same domain")
    assert lines[i + 1] == "-----" and lines[i + 2].split() == [
        "MAC",
        "Latest",
        "Collision",
        "Time",
    ]
    out = []
    for line in lines[i + 3 :]:
        if not re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\s+\d{4}-\w{3}-\d\d \d\d:\d\d:\d\d$", line):
            break
        out.append(line.split()[0])
    return out


def pair_facts(nodes: dict[str, Node]) -> dict[str, Any]:
    """What must not change while the copy runs: epochs, service restarts, store."""
    out: dict[str, Any] = {}
    for name, node in nodes.items():
        services = cli_json(node.rundir, "show system internal sysmgr services")
        out[name] = {
            "epoch": cli_json(node.rundir, "show system redundancy status")["epoch"],
            "services": {
                r["name"]: (r["pid"], r["restarts"])
                for r in services["TABLE_service"]["ROW_service"]
            },
            "running": [
                line
                for line in openvsm_cli(node.rundir, "show running-config").splitlines()
                if not line.startswith("!Time:")
            ],
            "events": len(trace_events(node.rundir)),
        }
    return out


def check_untouched(nodes: dict[str, Node], before: dict[str, Any]) -> None:
    after = pair_facts(nodes)
    for name, node in nodes.items():
        os.kill(node.pid, 0)  # the lab's sysmgr, never re-executed or gone
        events = trace_events(node.rundir)[before[name]["events"] :]
        bad = ("boot:", "standby lost", "restart", "reset", "split-brain", "reload", "active")
        events = [e for e in events if "role collision" not in e]
        assert not [e for e in events if any(b in e for b in bad)], events
        del after[name]["events"], before[name]["events"]
    assert after == before


def check_copy(rundir: Path) -> list[str]:
    """The copy ran alone: one boot, never reset, never a standby of the pair."""
    events = trace_events(rundir)
    assert sum(e.startswith("boot:") for e in events) == 1, events
    assert not [e for e in events if "reset" in e or "-> standby" in e], events
    st = cli_json(rundir, "show system redundancy status")
    assert st["this_sup_internal_state"] == "Active with no standby", st
    return events


def active_of(nodes: dict[str, Node]) -> str:
    st = cli_json(nodes["primary"].rundir, "show system redundancy status")
    return "primary" if st["this_sup_rdn_state"] == "Active" else "secondary"


def test_copy_with_the_same_mac_is_a_duplicate_not_a_restart(
    lab_dir: tuple[Path, dict[str, Node]],
) -> None:
    root, nodes = lab_dir
    active = active_of(nodes)
    src, target = nodes[active], nodes[other(active)]
    mac = system_mac(src.rundir)
    before = pair_facts(nodes)
    copy = start_copy(write_copy(src, root / "copy-same-mac", mac))
    try:

        def shown(st: dict[str, dict[str, Any]]) -> bool:
            return mac in macs(st[active]["collisions"]) and mac in macs(
                st[target.name]["peer_collisions"]
            )

        st = watch_pair(nodes, active, shown, copy)
        copy_rundir = root / "copy-same-mac" / "run"
        assert system_mac(copy_rundir) == mac  # pinned: the same identity
        check_copy(copy_rundir)
    finally:
        _stop_group(copy, 20.0)
    assert macs(st[active]["collisions"]) == [mac]
    assert st[active]["peer_collisions"] == [] and st[target.name]["collisions"] == []
    sup = f"sup-{1 if active == 'primary' else 2}"
    text = openvsm_cli(src.rundir, "show system redundancy status")
    assert warning_block(text, sup) == [mac]
    heard = openvsm_cli(target.rundir, "show system redundancy status")
    assert warning_block(heard, sup) == [mac]
    assert f"      (heard by this supervisor, reported to {sup})" in heard
    events = trace_events(target.rundir)
    assert any("duplicate" in e and mac in e and "never taken as its restart" in e for e in events)
    counters = cli_json(target.rundir, "show system internal redundancy counters")
    rows = {r["interface"]: r for r in counters["TABLE_counters"]["ROW_counters"]}
    assert rows["control"]["drop_collision"] > 0
    check_untouched(nodes, before)


def test_copy_with_a_fresh_data_dir_has_its_own_mac_and_is_reported(
    lab_dir: tuple[Path, dict[str, Node]],
) -> None:
    root, nodes = lab_dir
    active = active_of(nodes)
    src, target = nodes[other(active)], nodes[active]  # a copy of the standby at the active
    pair_macs = {system_mac(n.rundir) for n in nodes.values()}
    before = pair_facts(nodes)
    copy = start_copy(write_copy(src, root / "copy-new-mac", None))
    copy_rundir = root / "copy-new-mac" / "run"
    try:
        mac_file = root / "copy-new-mac" / "data" / "system-mac"
        deadline = time.monotonic() + SETTLE
        while not mac_file.exists():
            assert time.monotonic() < deadline, "the copy did not write its system MAC"
            time.sleep(0.05)
        mac = mac_file.read_text().strip()
        assert mac not in pair_macs  # generated at its first boot, not from the file
        assert int(mac[:2], 16) & 0x03 == 0x02  # locally administered unicast
        assert oct(mac_file.stat().st_mode & 0o777) == "0o600"

        def shown(st: dict[str, dict[str, Any]]) -> bool:
            return mac in macs(st[target.name]["peer_collisions"]) and mac in macs(
                st[src.name]["collisions"]
            )

        st = watch_pair(nodes, active, shown, copy)
        assert system_mac(copy_rundir) == mac
        check_copy(copy_rundir)
    finally:
        _stop_group(copy, 20.0)
    sup = f"sup-{1 if src.name == 'primary' else 2}"
    assert macs(st[src.name]["collisions"]) == [mac]
    text = openvsm_cli(src.rundir, "show system redundancy status")
    assert warning_block(text, sup) == [mac]
    assert (
        f"NOTE: Please run the same command on sup-{3 - int(sup[-1])} to check for "
        f"conflicting(if any) sup-{3 - int(sup[-1])}(s) in the same domain."
    ) in text
    heard = openvsm_cli(target.rundir, "show system redundancy status")
    assert warning_block(heard, sup) == [mac]
    counters = cli_json(target.rundir, "show system internal redundancy counters")
    rows = {r["interface"]: r for r in counters["TABLE_counters"]["ROW_counters"]}
    assert rows["control"]["drop_bad_mac"] > 0 and rows["mgmt"]["drop_bad_mac"] > 0
    check_untouched(nodes, before)
