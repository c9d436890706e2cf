"""Attack: capture real HA frames on loopback and replay every one (issue 12 points 2, 7).

The pair runs with its peer addresses on a tap of this test (UDP relay for
heartbeats, TCP relay for the sync stream) that records every datagram.
Each captured frame is then sent again, from the address the target knows
as its peer, several times and shuffled. Expected: every replay is dropped
and counted (``drop_replay`` in ``show system internal redundancy
counters``), and nothing changes: same states, same epochs, same boot ids,
no reset, and a write made afterwards still reaches the standby.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration


class Tap:
    """UDP relay (recording) on each node's configured peer ports; TCP relay for sync."""

    def __init__(self, lab: Lab) -> None:
        self.captured: list[tuple[str, str, bytes]] = []  # (from role, iface, datagram)
        self.socks: dict[tuple[str, str], socket.socket] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.real = {(n.name, "control"): n.control for n in lab.nodes.values()}
        self.real |= {(n.name, "mgmt"): n.mgmt for n in lab.nodes.values()}
        for role, ports in lab.proxy_ports.items():
            for iface in ("control", "mgmt"):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", ports[iface]))
                s.settimeout(0.2)
                self.socks[(role, iface)] = s
        self.listeners: list[socket.socket] = []
        for role, ports in lab.proxy_ports.items():
            ls = socket.create_server(("127.0.0.1", ports["control"]))
            ls.settimeout(0.2)
            self.listeners.append(ls)
            other = "secondary" if role == "primary" else "primary"
            self._spawn(self._accept, ls, self.real[(other, "control")])
        for (role, iface), s in self.socks.items():
            self._spawn(self._udp, role, iface, s)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    @staticmethod
    def other(role: str) -> str:
        return "secondary" if role == "primary" else "primary"

    def _udp(self, role: str, iface: str, s: socket.socket) -> None:
        # Datagrams from node `role` arrive on its peer port; the other node must see
        # them come from ITS peer port: forward through that socket.
        while not self.stop.is_set():
            try:
                data, _ = s.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.captured.append((role, iface, data))
            target = self.other(role)
            self.socks[(target, iface)].sendto(data, self.real[(target, iface)])

    def _accept(self, ls: socket.socket, target: tuple[str, int]) -> None:
        while not self.stop.is_set():
            try:
                a, _ = ls.accept()
            except (TimeoutError, OSError):
                continue
            try:
                b = socket.create_connection(target, timeout=5)
            except OSError:
                a.close()
                continue
            for x, y in ((a, b), (b, a)):
                self._spawn(self._pipe, x, y)

    def _pipe(self, x: socket.socket, y: socket.socket) -> None:
        x.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = x.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                y.sendall(data)
            except OSError:
                break
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def replay(self, frames: list[tuple[str, str, bytes]]) -> None:
        for role, iface, data in frames:
            target = self.other(role)
            self.socks[(target, iface)].sendto(data, self.real[(target, iface)])

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2)
        for s in [*self.socks.values(), *self.listeners]:
            s.close()


@pytest.fixture
def tapped(make_lab: Callable[..., Lab]) -> Iterator[tuple[Lab, Tap, str]]:
    lab = make_lab(timers="fast", rest=False, proxy=True)
    tap = Tap(lab)
    try:
        for name in ("primary", "secondary"):
            lab.start_node(name)
        active = lab.wait_pair(60)
        lab.write_lab_json()
        yield lab, tap, active
    finally:
        tap.close()


def cli_json(lab: Lab, node: str, command: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "openvsm", "cli", "--node", str(lab.rundir(node)), "-c",
         f"{command} | json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def facts(lab: Lab, node: str) -> tuple[Any, ...]:
    st = cli_json(lab, node, "show system redundancy status")
    ha = lab.cli_json(node, "show system internal redundancy trace")
    resets = [r for r in ha["TABLE_trace"]["ROW_trace"] if "reset" in r["event"].lower()]
    return st["this_sup_internal_state"], st.get("this_sup_epoch"), len(resets)


def replays(lab: Lab, node: str) -> int:
    rows = cli_json(lab, node, "show system internal redundancy counters")["TABLE_counters"]
    return sum(int(r.get("drop_replay", 0)) for r in rows["ROW_counters"])


def test_replayed_ha_frames_are_dropped_and_change_nothing(
    tapped: tuple[Lab, Tap, str],
) -> None:
    lab, tap, active = tapped
    standby = Tap.other(active)
    wait_for(lambda: len(tap.captured) >= 40, 20, "frames to capture")
    captured = list(tap.captured)
    kinds = {data[3] for _, _, data in captured}  # the header's message type
    before = {n: facts(lab, n) for n in (active, standby)}
    counted = {n: replays(lab, n) for n in (active, standby)}
    shuffled = captured * 3
    random.Random(12).shuffle(shuffled)

    def total() -> int:
        return sum(replays(lab, n) - counted[n] for n in (active, standby))

    for i in range(0, len(shuffled), 20):  # small bursts: no datagram lost to a full buffer
        tap.replay(shuffled[i : i + 20])
        n = min(i + 20, len(shuffled))
        try:
            wait_for(partial(lambda k: total() >= k, n), 20, f"{n} replayed frames to be counted")
        except Exception:
            print("batch", i, total(), [(r, f, d[3], len(d)) for r, f, d in shuffled[i : i + 20]])
            for node in (active, standby):
                print(node, cli_json(lab, node, "show system internal redundancy counters"))
            raise
    assert total() == len(shuffled)
    assert {n: facts(lab, n) for n in (active, standby)} == before
    assert before[active][0] == "Active with HA standby" and before[standby][0] == "HA standby"
    assert len(kinds) >= 2, kinds  # at least requests and responses were replayed
    # The pair still works: a change reaches the standby.
    res = lab.cli(active, "configure terminal ; vlan 88 ; end")
    assert not res["error"], res
    wait_for(
        lambda: "88" in (lab.cli(standby, "show running-config")["output"]),
        15,
        "vlan 88 on the standby",
    )
