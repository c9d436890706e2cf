"""The VEM scenario table (tests/vem_scenarios.py) on the ``memory`` backend.

The same table runs on the ``ovs`` backend in tests/netns/test_vem_scenarios.py.
"""

from __future__ import annotations

import pytest

from openvsm.vem.memory import MemoryBackend
from openvsm.vem.ovs import trace_egress
from tests.vem_scenarios import SCENARIOS, Scenario


@pytest.fixture(params=SCENARIOS, ids=[s.name for s in SCENARIOS])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    result: Scenario = request.param
    return result


def test_scenario(scenario: Scenario) -> None:
    backend = MemoryBackend(scenario.devices())
    backend.start()
    desired, config_errors = scenario.desired()
    scenario.check_errors(config_errors + backend.apply(desired))
    for probe, expected in scenario.frames:
        assert backend.trace(probe) == expected, probe
    for name, up in scenario.admin_up.items():
        assert backend.admin_up(name) is up, name
    for number, members in scenario.bundles.items():
        assert backend.bundle(number) == members, number
    changes = backend.changes
    backend.apply(desired)
    assert backend.changes == changes  # converged: a second apply changes nothing


def test_the_table_covers_every_vem_feature() -> None:
    names = {s.name for s in SCENARIOS}
    assert {"access", "trunk", "vxlan", "port-channel", "shut", "port-security"} <= names
    assert len(names) == len(SCENARIOS)


# ``OvsBackend.trace`` reads OVS's own answer; its parser on OVS 3.1's text
# (the netns run checks it against a live bridge).
DPIF = """netdev@ovs-netdev: hit:26 missed:28
  br-int:
    br-int 65534/1: (tap)
    eth1 6/7: (system)
    eth2 3/4: (system)
    va 7/8: (system)
    vb 1/2: (system)
    vx1 5/6: (system)
    vxc0a80002 4/5: (vxlan: key=flow, local_ip=192.168.0.1, remote_ip=192.168.0.2)
"""
BONDS = """---- po1 ----
bond_mode: balance-tcp
bond may use recirculation: yes, Recirc-ID : 1
member eth2: enabled
"""
SNAP = {
    "ports": {
        "po1": {"external_ids": {"openvsm-kind": "port-channel"}, "interfaces": {"eth2": {}}},
        "vxc0a80002": {
            "external_ids": {"openvsm-kind": "vxlan"},
            "interfaces": {"vxc0a80002": {"ofport": 4}},
        },
        **{n: {"external_ids": {}, "interfaces": {n: {}}} for n in ("eth1", "va", "vb", "vx1")},
    }
}


def test_ovs_trace_flood_over_vlan_ports_uplink_and_bond() -> None:
    text = """Flow: in_port=7,vlan_tci=0x0000,dl_src=02:00:0a:0a:00:01
 1. priority 0, cookie 0x5e7bf4862a2e59d
    NORMAL
     -> no learned MAC for destination, flooding
Final flow: unchanged
Datapath actions: push_vlan(vid=10,pcp=0),1,7,hash(l4(0)),recirc(0x1),pop_vlan,2
"""
    egress = trace_egress(text, DPIF, BONDS, SNAP, 0, "br-int")
    assert egress == {("eth1", 10), ("po1", 10), ("vb", 0)}  # not br-int itself


def test_ovs_trace_vxlan_flood_and_split_horizon() -> None:
    text = """40. reg7=0,tun_id=0x1388, priority 100, cookie 0x5e7f00a7673a937
    output:5
     >> skipping output to input port
    output:4
     -> output to native tunnel
     >> native tunnel routing failed
    output:1
Final flow: tun_id=0x1388,in_port=5,vlan_tci=0x0000
Datapath actions: 2
"""
    egress = trace_egress(text, DPIF, BONDS, SNAP, 0, "br-int")
    assert egress == {("vxc0a80002", 5000), ("vb", 0)}
    assert trace_egress("Datapath actions: drop\n", DPIF, BONDS, SNAP, 0, "br-int") == set()
