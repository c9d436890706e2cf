"""The OVS datapath backend forwarding real packets between network namespaces (root)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
import pytest

from openvsm.lab.netns import Host, Topology, UdpStream, Vm, sh, udp_exchange, unavailable_reason
from openvsm.vem.model import DesiredState, PortChannelState, VethState
from openvsm.vem.ovs import OvsBackend

REASON = unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

VNI = 5000


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def veth(vm: Vm, **kw: object) -> VethState:
    return VethState(name=vm.port, vm=vm.name, mac=vm.mac, port_profile="pp", **kw)  # type: ignore[arg-type]


@dataclass
class Fabric:
    topo: Topology
    h1: Host
    h2: Host
    vms: dict[str, Vm]
    desired: dict[str, DesiredState]
    backends: dict[str, OvsBackend]


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    topo = Topology()
    try:
        h1, h2 = topo.add_host("h1"), topo.add_host("h2")
        topo.link(h1.ns, "eth1", h2.ns, "eth1")  # the "physical" link, a trunk
        h1.ip("addr", "add", "192.168.0.1/24", "dev", "br-int")  # VTEPs on the bridge port
        h2.ip("addr", "add", "192.168.0.2/24", "dev", "br-int")
        vms = {
            "a10": topo.add_vm("a10", h1, "va10", "10.10.0.1"),
            "b10": topo.add_vm("b10", h2, "vb10", "10.10.0.2"),
            "b20": topo.add_vm("b20", h2, "vb20", "10.10.0.3"),
            "ax": topo.add_vm("ax", h1, "vax", "10.50.0.1"),
            "bx": topo.add_vm("bx", h2, "vbx", "10.50.0.2"),
        }
        # A trunk vEth on h1 towards a tenant's own switch (an OVS in its own
        # namespace) with access ports in VLAN 10 and 20 (no 802.1Q devices here).
        tsw = topo.add_switch("tsw")
        topo.link(h1.ns, "vtrunk", tsw.ns, "up0")
        vms["t10"] = topo.add_vm("t10", tsw, "t10", "10.10.0.11")
        vms["t20"] = topo.add_vm("t20", tsw, "t20", "10.10.0.12")
        tsw.ovs.vsctl("add-port", "br-int", "up0", "--", "add-port", "br-int", "t10", "tag=10",
                      "--", "add-port", "br-int", "t20", "tag=20")  # fmt: skip
        desired = {
            "h1": DesiredState(
                ports=(
                    veth(vms["a10"], access_vlan=10),
                    veth(vms["ax"], vni=VNI),
                    VethState(
                        name="vtrunk",
                        vm="tsw",
                        mac="02:00:00:00:99:01",
                        port_profile="trunk",
                        mode="trunk",
                        trunk_vlans=(10,),
                    ),
                ),
                vxlan_peers=("192.168.0.2",),
                vnis=(VNI,),
                local_vtep="192.168.0.1",
            ),
            "h2": DesiredState(
                ports=(
                    veth(vms["b10"], access_vlan=10),
                    veth(vms["b20"], access_vlan=20),
                    veth(vms["bx"], vni=VNI),
                ),
                vxlan_peers=("192.168.0.1",),
                vnis=(VNI,),
                local_vtep="192.168.0.2",
            ),
        }
        backends = {}
        for name, host in (("h1", h1), ("h2", h2)):
            backends[name] = host.backend(uplinks=("eth1",))
            assert backends[name].apply(desired[name]) == []
        yield Fabric(topo, h1, h2, vms, desired, backends)
    finally:
        topo.teardown()


def test_same_vlan_across_hosts(fabric: Fabric) -> None:
    assert udp_exchange(fabric.topo, fabric.vms["a10"], fabric.vms["b10"]) == 3


def test_different_vlans_are_isolated(fabric: Fabric) -> None:
    assert udp_exchange(fabric.topo, fabric.vms["a10"], fabric.vms["b20"], timeout=1.5) == 0


def test_vxlan_segment_across_hosts(fabric: Fabric) -> None:
    # VXLAN on the userspace datapath: the first flows take a few seconds under load
    assert udp_exchange(fabric.topo, fabric.vms["ax"], fabric.vms["bx"], timeout=15.0) == 3


def test_trunk_carries_allowed_vlans_only(fabric: Fabric) -> None:
    assert udp_exchange(fabric.topo, fabric.vms["t10"], fabric.vms["b10"]) == 3
    assert udp_exchange(fabric.topo, fabric.vms["t20"], fabric.vms["b20"], timeout=1.5) == 0


def test_shut_port_drops_and_goes_admin_down(fabric: Fabric) -> None:
    h2 = fabric.backends["h2"]
    d = fabric.desired["h2"]
    shut = DesiredState(
        ports=tuple(
            msgspec.structs.replace(p, enabled=False) if p.name == "vb10" else p for p in d.ports
        ),
        vxlan_peers=d.vxlan_peers,
        vnis=d.vnis,
        local_vtep=d.local_vtep,
    )
    try:
        assert h2.apply(shut) == []
        assert "UP" not in _flags(fabric.h2, "vb10")
        assert udp_exchange(fabric.topo, fabric.vms["a10"], fabric.vms["b10"], timeout=1.0) == 0
    finally:
        assert h2.apply(d) == []
    wait_for(lambda: udp_exchange(fabric.topo, fabric.vms["a10"], fabric.vms["b10"]) == 3, 10,
             "port back")  # fmt: skip


def test_port_security_limits_source_macs(fabric: Fabric) -> None:
    h1 = fabric.backends["h1"]
    d = fabric.desired["h1"]
    a10 = fabric.vms["a10"]
    secured = DesiredState(
        ports=tuple(
            msgspec.structs.replace(p, max_macs=1) if p.name == "va10" else p for p in d.ports
        ),
        vxlan_peers=d.vxlan_peers,
        vnis=d.vnis,
        local_vtep=d.local_vtep,
    )
    try:
        assert h1.apply(secured) == []
        assert udp_exchange(fabric.topo, a10, fabric.vms["b10"]) == 3  # its own MAC: fine
        sh("ip", "-n", a10.ns, "link", "set", "eth0", "address", "02:00:00:00:66:66")
        assert udp_exchange(fabric.topo, a10, fabric.vms["b10"], timeout=1.5) == 0
    finally:
        sh("ip", "-n", a10.ns, "link", "set", "eth0", "address", a10.mac)
        assert h1.apply(d) == []


def test_reconcile_after_restart_touches_nothing(fabric: Fabric) -> None:
    h1 = fabric.h1
    before = _ovs_ports(h1)
    carrier = _carrier_changes(h1, "va10")
    fabric.backends["h1"].stop()
    fresh = h1.backend(uplinks=("eth1",))  # the agent restarted: a new backend, same OVS
    assert fresh.apply(fabric.desired["h1"]) == []
    assert fresh.changes == [], fresh.changes
    assert fresh.flow_changes == 0
    assert _ovs_ports(h1) == before  # same interface UUIDs and ofports
    assert _carrier_changes(h1, "va10") == carrier  # no link flap
    observed = fresh.observed()
    assert {p.name for p in observed.ports} == {"va10", "vax", "vtrunk"}
    assert observed.vxlan_peers == ("192.168.0.2",) and observed.vnis == (VNI,)
    fabric.backends["h1"] = fresh
    assert udp_exchange(fabric.topo, fabric.vms["a10"], fabric.vms["b10"]) == 3


def test_ovs_not_running_is_an_error_not_an_exception(tmp_path: object) -> None:
    backend = OvsBackend(ovsdb="unix:/nonexistent/openvsm/db.sock")
    backend.start()
    errors = backend.apply(DesiredState())
    assert errors and "not running" in errors[0]
    assert backend.observed() == DesiredState()
    backend.stop()


# -- LACP ---------------------------------------------------------------------


@dataclass
class Lacp:
    topo: Topology
    host: Host
    sw: Host
    c: Vm
    u: Vm
    backend: OvsBackend


LINKS = [f"l{i}" for i in range(1, 11)]


@pytest.fixture(scope="module")
def lacp() -> Iterator[Lacp]:
    topo = Topology()
    try:
        host, sw = topo.add_host("h3"), topo.add_switch("sw")
        for link in LINKS:
            topo.link(host.ns, link, sw.ns, link)
        c = topo.add_vm("c", host, "vc", "10.30.0.1")
        u = topo.add_vm("u", sw, "u0", "10.30.0.2")
        sw.ovs.vsctl("add-port", "br-int", "u0", "tag=10")
        backend = host.backend()
        yield Lacp(topo, host, sw, c, u, backend)
    finally:
        topo.teardown()


def _switch_bond(lacp: Lacp, members: list[str]) -> None:
    lacp.sw.ovs.vsctl("--if-exists", "del-port", "br-int", "po1")
    lacp.sw.ovs.vsctl("add-bond", "br-int", "po1", *members, "lacp=active",
                      "bond_mode=balance-tcp", "other_config:lacp-time=fast")  # fmt: skip


def _host_state(lacp: Lacp, members: list[str]) -> DesiredState:
    pc = PortChannelState(number=1, members=tuple(members), lacp_mode="active")
    return DesiredState(ports=(veth(lacp.c, access_vlan=10),), port_channels=(pc,))


def _enabled_members(host: Host, bond: str = "po1") -> set[str]:
    text = host.ovs.appctl("bond/show", bond, check=False)
    return set(re.findall(r"member (\S+): enabled", text))


def test_lacp_bundle_of_four_and_member_failure(lacp: Lacp) -> None:
    four = LINKS[:4]
    _switch_bond(lacp, four)
    assert lacp.backend.apply(_host_state(lacp, four)) == []
    wait_for(lambda: _enabled_members(lacp.sw) == set(four), 15, "LACP bundle on the switch")
    wait_for(lambda: _enabled_members(lacp.host) == set(four), 15, "LACP bundle on the host")
    assert udp_exchange(lacp.topo, lacp.c, lacp.u) == 3
    stream = UdpStream(lacp.topo, lacp.c, lacp.u, rate=1000, duration=3.0)
    time.sleep(1.0)
    for link in four[:1]:
        lacp.sw.ip("link", "set", link, "down")  # the cable is pulled at the switch
    result = stream.result()
    print(f"\nLACP member failure: sent {result.sent}, lost {result.lost}, "
          f"max gap {result.max_gap_ms:.1f} ms")  # fmt: skip
    assert result.sent > 2000
    assert result.lost <= 50, result
    lacp.sw.ip("link", "set", four[0], "up")


def test_lacp_ten_members_eight_active_two_standby_and_promotion(lacp: Lacp) -> None:
    _switch_bond(lacp, LINKS)
    state = _host_state(lacp, LINKS)
    assert lacp.backend.apply(state) == []
    active = set(LINKS[:8])
    wait_for(lambda: _enabled_members(lacp.sw) == active, 20, "8 active on the switch")
    selector = lacp.backend.selector(1)
    assert selector is not None
    assert selector.selection.standby == ("l9", "l10")
    # The standby links are held down, so the partner sees them go.
    assert "LOWER_UP" not in _flags(lacp.sw, "l9")
    assert lacp.backend.poll() == []
    summary = lacp.backend.port_channel_summary()["TABLE_channel"]["ROW_channel"][0]
    flags = {r["port"]: r["port_status"] for r in summary["TABLE_member"]["ROW_member"]}
    assert flags["l9"] == "H" and flags["l1"] == "P"
    # An active member fails: the best standby (l9) is promoted.
    lacp.sw.ip("link", "set", "l2", "down")

    def promoted() -> bool:
        assert lacp.backend.poll() == []
        return _enabled_members(lacp.sw) == (active - {"l2"}) | {"l9"}

    wait_for(promoted, 20, "l9 promoted and bundled", poll=0.2)
    assert list(selector.selection.standby) == ["l10"]
    assert selector.promotions == 1
    assert udp_exchange(lacp.topo, lacp.c, lacp.u) == 3
    lacp.sw.ip("link", "set", "l2", "up")


# -- helpers --


def _flags(host: Host, dev: str) -> list[str]:
    out = host.ip("-o", "link", "show", dev)
    return re.search(r"<([^>]*)>", out).group(1).split(",")  # type: ignore[union-attr]


def _carrier_changes(host: Host, dev: str) -> str:
    return sh("ip", "netns", "exec", host.ns, "cat", f"/sys/class/net/{dev}/carrier_changes")


def _ovs_ports(host: Host) -> str:
    return host.ovs.vsctl("--columns=_uuid,name,ofport", "list", "Interface")
