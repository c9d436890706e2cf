"""Attack: junk at running daemons (issue 12 point 7).

Junk UDP (frames with a plausible header and random rest) at both nodes'
hamgr ports (control, mgmt) and vemmgr port, and junk over each daemon's
IPC socket (``cfgmgr.sock``, ``hamgr.sock``, ``vemmgr.sock`` under the run
dir: oversized lengths, bodies that are not msgpack, well-formed
non-requests, random ops and arguments). Expected: counted (hamgr's
``drop_*`` in ``show system internal redundancy counters``, vemmgr's
``drops`` in ``show module vem counters``, each server's ``ipc_counters``),
every daemon alive (same pids), states and configuration unchanged, and a
change made after still reaches the standby.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from openvsm.lab.lab import Lab, ipc_call, wait_for
from openvsm.node import SERVICES, RunDir
from tests.attacks import ipc_junk, service_pid, udp_junk

pytestmark = pytest.mark.integration

UDP_PER_PORT = 300
IPC_PER_SOCKET = 40
IPC_DROPS = ("drop_oversized", "drop_malformed", "malformed_requests", "bad_args")


@pytest.fixture
def pair(make_lab: Callable[..., Lab]) -> Iterator[tuple[Lab, str, str]]:
    lab = make_lab(timers="fast", rest=False)
    for name in ("primary", "secondary"):
        lab.start_node(name)
    active = lab.wait_pair(60)
    lab.configure_defaults(active)
    yield lab, active, "secondary" if active == "primary" else "primary"


def hamgr_drops(lab: Lab, node: str) -> int:
    ctr = lab.cli_json(node, "show system internal redundancy counters")
    rows = ctr["TABLE_counters"]["ROW_counters"]
    return sum(
        v for r in rows for k, v in r.items() if k.startswith("drop_") and isinstance(v, int)
    )


def vemmgr_drops(lab: Lab, node: str) -> int:
    drops = lab.cli_json(node, "show module vem counters").get("drops", {})
    return sum(int(v) for v in drops.values())


def ipc_drops(lab: Lab, node: str, service: str) -> int:
    ctr = ipc_call(RunDir(lab.rundir(node)).socket(service), "ipc_counters")
    assert isinstance(ctr, dict), ctr
    return sum(int(ctr.get(k, 0)) for k in IPC_DROPS)


def facts(lab: Lab, node: str) -> tuple[Any, ...]:
    st = lab.cli_json(node, "show system redundancy status")
    sysmgr = lab.nodes[node].pid
    assert sysmgr is not None
    pids = {s: service_pid(sysmgr, s) for s in SERVICES}
    return st["this_sup_internal_state"], st.get("this_sup_epoch"), sysmgr, pids


def at_least(count: Callable[[Lab, str], int], lab: Lab, node: str, want: float) -> bool:
    return count(lab, node) >= want


def running_config(lab: Lab, node: str) -> list[str]:
    """The configuration lines (not the ``!`` header with its time)."""
    out = lab.cli(node, "show running-config")["output"]
    return [line for line in out.splitlines() if not line.startswith("!")]


def junk_frames(rng: random.Random) -> Iterator[bytes]:
    while True:
        head = b"OV\x01" + bytes([rng.randint(0, 30)]) + rng.randbytes(31)
        yield head + rng.randbytes(rng.randint(0, 200))


def test_junk_udp_and_ipc_at_running_daemons_is_counted_and_changes_nothing(
    pair: tuple[Lab, str, str],
) -> None:
    lab, active, standby = pair
    nodes = (active, standby)
    before = {n: facts(lab, n) for n in nodes}
    config = running_config(lab, active)
    ha0 = {n: hamgr_drops(lab, n) for n in nodes}
    vem0 = {n: vemmgr_drops(lab, n) for n in nodes}
    ipc0 = {(n, s): ipc_drops(lab, n, s) for n in nodes for s in SERVICES}

    rng = random.Random(23)
    gen = junk_frames(rng)
    sent_ha = dict.fromkeys(nodes, 0)
    sent_vem = dict.fromkeys(nodes, 0)
    for _ in range(UDP_PER_PORT // 50):  # bursts: nothing lost to a full buffer
        for n in nodes:
            node = lab.nodes[n]
            sent_ha[n] += udp_junk(node.control, gen, 50) + udp_junk(node.mgmt, gen, 50)
            sent_vem[n] += udp_junk(node.vem, gen, 50)
        time.sleep(0.05)
    for n in nodes:
        for s in SERVICES:
            assert ipc_junk(RunDir(lab.rundir(n)).socket(s), rng, IPC_PER_SOCKET) > 0

    for n in nodes:
        # Nearly every datagram counted (loopback may drop a few under load).
        ha_want, vem_want = ha0[n] + 0.9 * sent_ha[n], vem0[n] + 0.9 * sent_vem[n]
        wait_for(partial(at_least, hamgr_drops, lab, n, ha_want), 20, f"{n} hamgr drops")
        wait_for(partial(at_least, vemmgr_drops, lab, n, vem_want), 20, f"{n} vemmgr drops")
        for s in SERVICES:
            # At least the oversized, non-msgpack and non-request connections (3 in 4).
            got = ipc_drops(lab, n, s) - ipc0[(n, s)]
            assert got >= IPC_PER_SOCKET // 2, (n, s, got)
    assert {n: facts(lab, n) for n in nodes} == before
    assert before[active][0] == "Active with HA standby" and before[standby][0] == "HA standby"
    assert running_config(lab, active) == config and "vlan 10,20" in config
    res = lab.cli(active, "configure terminal ; vlan 91 ; end")
    assert not res["error"], res
    wait_for(
        lambda: any(
            line.startswith("vlan ") and "91" in line[5:].split(",")
            for line in running_config(lab, standby)
        ),
        15,
        "vlan 91 on the standby",
    )
