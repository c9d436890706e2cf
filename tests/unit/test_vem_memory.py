"""The memory datapath backend: idempotent apply, errors for bad config, model as data."""

from __future__ import annotations

from openvsm.vem.memory import MemoryBackend
from openvsm.vem.model import DesiredState, VethState

P1 = VethState(name="p1", vm="vm1", mac="02:00:00:00:00:01", port_profile="a", access_vlan=10)
P2 = VethState(
    name="p2",
    vm="vm2",
    mac="02:00:00:00:00:02",
    port_profile="t",
    mode="trunk",
    trunk_vlans=(10, 20),
)
P3 = VethState(name="p3", vm="vm3", mac="02:00:00:00:00:03", port_profile="x", vni=5000)


def test_apply_is_idempotent() -> None:
    be = MemoryBackend()
    be.start()
    desired = DesiredState(ports=(P1, P2, P3), vnis=(5000,), vxlan_peers=("10.0.0.2",))
    assert be.apply(desired) == []
    changes = be.changes
    assert changes > 0
    assert be.apply(desired) == []
    assert be.changes == changes
    assert be.observed() == DesiredState(
        ports=(P1, P2, P3), vnis=(5000,), vxlan_peers=("10.0.0.2",)
    )
    assert be.vlan_members() == {10: ["p1", "p2"], 20: ["p2"]}
    assert be.fdb()[("02:00:00:00:00:03", 5000)] == "p3"


def test_only_changed_ports_are_touched() -> None:
    be = MemoryBackend()
    be.apply(DesiredState(ports=(P1, P2)))
    before = be.changes
    moved = VethState(name="p1", vm="vm1", mac=P1.mac, port_profile="a", access_vlan=20)
    be.apply(DesiredState(ports=(moved, P2)))
    assert be.changes == before + 1
    be.apply(DesiredState(ports=(P2,)))
    assert set(be.ports) == {"p2"}


def test_bad_config_returns_errors_and_leaves_port_as_it_was() -> None:
    be = MemoryBackend()
    be.apply(DesiredState(ports=(P1,)))
    bad = VethState(name="p1", vm="vm1", mac="zz", port_profile="a", access_vlan=5000)
    errors = be.apply(DesiredState(ports=(bad, P2, P2)))
    assert any("MAC" in e for e in errors)
    assert any("out of range" in e for e in errors)
    assert any("duplicate" in e for e in errors)
    assert be.ports["p1"] == P1 and be.ports["p2"] == P2


def test_disabled_port_does_not_forward() -> None:
    be = MemoryBackend()
    off = VethState(name="p9", vm="v", mac="02:00:00:00:00:09", port_profile="a", enabled=False)
    be.apply(DesiredState(ports=(off,)))
    assert be.vlan_members() == {} and be.fdb() == {}
