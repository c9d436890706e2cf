"""The VEM scenario table (tests/vem_scenarios.py) on the ``ovs`` backend (root + OVS).

One host namespace with a private OVS (userspace datapath); every vEth of the
table is a veth pair whose far end sits in a ``vms`` namespace with the VM's
MAC; uplinks ``eth1``-``eth3`` are linked to a switch namespace whose OVS
holds ``eth2``/``eth3``'s far ends in an LACP bond (the partner). Each
scenario gets a new backend (an agent restart) that converges the bridge from
the previous scenario's state; its answers come from OVS itself
(``ofproto/trace``, the Interface table, ``bond/show``). The same table runs on
the ``memory`` backend in tests/unit/test_vem_scenarios.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import pytest

from openvsm.lab.netns import Host, Topology, sh, unavailable_reason
from tests.vem_scenarios import LACP_PARTNER, SCENARIOS, UPLINKS, Scenario

REASON = unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

T = TypeVar("T")


def settle(read: Callable[[], T], want: T, timeout: float, what: str) -> None:
    """Wait until ``read()`` gives ``want`` (OVS applies asynchronously: ofports,
    admin state, LACP negotiation); fail with the last answer."""
    deadline = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = read()
    assert got == want, f"{what}: OVS answers {got}, the table says {want}"


@dataclass
class Bench:
    topo: Topology
    host: Host


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    topo = Topology()
    try:
        host, sw = topo.add_host("h1"), topo.add_switch("sw")
        vms = topo.namespace("vms")
        sh("ip", "netns", "exec", vms, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        for dev in UPLINKS:
            topo.link(host.ns, dev, sw.ns, f"s{dev}")
        sw.ovs.vsctl("add-bond", "br-int", "po1", *(f"s{d}" for d in LACP_PARTNER),
                     "lacp=active", "bond_mode=balance-tcp",
                     "other_config:lacp-time=fast")  # fmt: skip
        ports = {p.name: p.mac for s in SCENARIOS for p in s.ports}
        for name, mac in ports.items():
            topo.link(vms, f"{name}-vm", host.ns, name)
            sh("ip", "-n", vms, "link", "set", f"{name}-vm", "address", mac)
        yield Bench(topo, host)
    finally:
        topo.teardown()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(bench: Bench, scenario: Scenario) -> None:
    backend = bench.host.backend(uplinks=scenario.devices())
    try:
        desired, config_errors = scenario.desired()
        scenario.check_errors(config_errors + backend.apply(desired))
        for number, members in scenario.bundles.items():
            settle(partial(backend.bundle, number), members, 30, f"port-channel {number}")
        for name, up in scenario.admin_up.items():
            settle(partial(backend.admin_up, name), up, 10, f"{name} admin-up")
        for probe, expected in scenario.frames:
            settle(partial(backend.trace, probe), expected, 10, f"{probe}")
        backend.apply(desired)
        assert backend.changes == []  # converged: a second apply changes nothing
    finally:
        backend.stop()
