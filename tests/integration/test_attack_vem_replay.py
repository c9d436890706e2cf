"""Attack: capture real VEM<->VSM frames on loopback and replay each (issue 12 points 2, 7).

A lab pair and one VEM agent whose VSM addresses are a tap of this test: a
UDP relay per node that records every datagram both ways. The captured
frames (attach, ack, heartbeats both ways, port events, configuration
pushes, LACP reports) are sent again, three times and shuffled, along the
path they took. Expected: every replay dropped and counted (``replayed`` in
``show module vem counters | json`` and in the VEM's control socket
``status``), nothing changes (``show module | json``, the VEM's state,
module, epoch, configuration), nothing crashes, and the pair and the VEM
still work after.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from openvsm.lab.lab import Lab, VemHandle, ipc_call, wait_for
from openvsm.node import RunDir

pytestmark = pytest.mark.integration

ACK, HEARTBEAT, CONFIG = 21, 23, 26  # message type numbers (wire.messages)


class VemTap:
    """Per node: the address the VEM knows (``front``) and a socket toward the node."""

    def __init__(self, lab: Lab, vem: VemHandle) -> None:
        self.vem = vem
        self.captured: list[tuple[str, str, bytes]] = []  # (node, "to_vsm" | "to_vem", frame)
        self.front: dict[str, socket.socket] = {}
        self.back: dict[str, socket.socket] = {}
        self.node_addr = {n.name: n.vem for n in lab.nodes.values()}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        for name in self.node_addr:
            for side in (self.front, self.back):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                s.settimeout(0.2)
                side[name] = s
            self._spawn(self._relay, name, self.front[name], "to_vsm")
            self._spawn(self._relay, name, self.back[name], "to_vem")

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def addrs(self) -> list[tuple[str, int]]:
        return [self.front[n].getsockname() for n in self.node_addr]

    def _relay(self, node: str, s: socket.socket, way: str) -> None:
        while not self.stop.is_set():
            try:
                data, _ = s.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.captured.append((node, way, data))
            self.send(node, way, data)

    def send(self, node: str, way: str, data: bytes) -> None:
        if way == "to_vsm":
            self.back[node].sendto(data, self.node_addr[node])
        else:
            self.front[node].sendto(data, self.vem.addr)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2)
        for s in [*self.front.values(), *self.back.values()]:
            s.close()


@pytest.fixture
def tapped(make_lab: Callable[..., Lab]) -> Iterator[tuple[Lab, VemTap, str]]:
    lab = make_lab(timers="fast", rest=False)
    for name in ("primary", "secondary"):
        lab.start_node(name)
    active = lab.wait_pair(60)
    lab.configure_defaults(active)
    vem = lab.add_vem(1)
    tap = VemTap(lab, vem)
    try:
        lab._write_vem_config(vem, tap.addrs())
        lab.start_vem(vem)
        yield lab, tap, active
    finally:
        tap.close()


def vem_status(vem: VemHandle) -> dict[str, Any]:
    st = ipc_call(RunDir(vem.rundir).vem, "status")
    assert isinstance(st, dict), st
    return st


def facts(lab: Lab, active: str, vem: VemHandle) -> tuple[Any, ...]:
    mods = lab.cli_json(active, "show module")["TABLE_modinfo"]["ROW_modinfo"]
    st = vem_status(vem)
    keep = ("state", "module", "active", "active_mac", "epoch", "config_seq", "ports")
    return mods, {k: st[k] for k in keep}


def table_replayed(lab: Lab, node: str) -> int:
    return int(lab.cli_json(node, "show module vem counters")["table"]["replayed"])


def replays_counted(lab: Lab, active: str, vem: VemHandle, vsm: int, vem_n: int) -> bool:
    return table_replayed(lab, active) >= vsm and vem_status(vem)["counters"]["replayed"] >= vem_n


def test_replayed_vem_frames_are_dropped_and_change_nothing(
    tapped: tuple[Lab, VemTap, str],
) -> None:
    lab, tap, active = tapped
    vem = tap.vem
    sock = RunDir(vem.rundir).vem
    wait_for(lambda: ipc_call(sock, "status"), 30, "the VEM's control socket")
    ipc_call(sock, "attach_port", vm="vm-a", port_profile="vm-net", mac="02:00:00:00:aa:01")
    wait_for(lambda: vem_status(vem)["state"] == "attached", 30, "the VEM attached")
    # After the attach: a port event, and a configuration push.
    ipc_call(sock, "attach_port", vm="vm-b", port_profile="vm-net", mac="02:00:00:00:aa:02")
    res = lab.cli(active, "configure terminal ; vlan 30 ; end")
    assert not res["error"], res

    def settled() -> bool:
        mods = lab.cli_json(active, "show module")["TABLE_modinfo"]["ROW_modinfo"]
        vems = [m for m in mods if m["modtype"] == "Virtual Ethernet Module"]
        kinds = {d[3] for n, _, d in tap.captured if n == active}
        return (
            bool(vems)
            and vems[0]["status"] == "ok"
            and vems[0]["ports"] == 2
            and {ACK, HEARTBEAT, CONFIG} <= kinds
        )

    wait_for(settled, 30, "module ok with 2 ports, ack, heartbeats and a config push captured")
    captured = [c for c in tap.captured if c[0] == active]  # the standby drops VEM frames
    kinds = sorted({(way, d[3]) for _, way, d in captured})
    before = facts(lab, active, vem)
    vsm_before, vem_before = table_replayed(lab, active), vem_status(vem)["counters"]["replayed"]
    shuffled = captured * 3
    random.Random(7).shuffle(shuffled)
    to_vsm = sum(1 for _, way, _ in shuffled if way == "to_vsm")
    for i in range(0, len(shuffled), 20):  # small bursts: nothing lost to a full buffer
        for node, way, data in shuffled[i : i + 20]:
            tap.send(node, way, data)
        done = shuffled[: i + 20]
        want_vsm = vsm_before + sum(1 for _, w, _ in done if w == "to_vsm")
        want_vem = vem_before + sum(1 for _, w, _ in done if w == "to_vem")
        counted = partial(replays_counted, lab, active, vem, want_vsm, want_vem)
        wait_for(counted, 20, f"{len(done)} replays counted")
    assert table_replayed(lab, active) == vsm_before + to_vsm
    assert vem_status(vem)["counters"]["replayed"] == vem_before + len(shuffled) - to_vsm
    assert facts(lab, active, vem) == before, kinds
    assert before[1]["state"] == "attached" and before[1]["ports"] == 2
    assert {w for w, _ in kinds} == {"to_vsm", "to_vem"} and len(kinds) >= 5, kinds
    # Both still work: a new port reaches the VSM, the VEM process is alive.
    ipc_call(sock, "attach_port", vm="vm-c", port_profile="vm-net", mac="02:00:00:00:aa:03")
    wait_for(
        lambda: any(
            m["ports"] == 3
            for m in lab.cli_json(active, "show module")["TABLE_modinfo"]["ROW_modinfo"]
        ),
        20,
        "a third port on the module",
    )
    assert vem.proc is not None and vem.proc.poll() is None
