"""Store object kinds as Structs (openvsm.contracts.objects): a body written
from a Struct is stored, replicated and read back as the same Struct; a
commit with a key its kind does not know is refused with a clear error;
stores and sync streams of older builds are still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvsm.contracts import objects as obj
from openvsm.modules.table import ModuleTable
from openvsm.store.pss import Change, Op, Store, StoreError

SAMPLES: dict[str, tuple[str, obj.StoreObject]] = {
    "port_profile": (
        "web",
        obj.PortProfile(
            name="web",
            mode="trunk",
            allowed_vlans=[10, 20],
            enabled=True,
            max_macs=4,
            channel_group=3,
            lacp_mode="active",
            uuid="u-1",
        ),
    ),
    "vlan": ("10", obj.Vlan(id=10, name="VLAN0010")),
    "svs_domain": ("domain", obj.SvsDomain(domain_id=7, control="udp 10.0.0.1:6000")),
    "user": ("ann", obj.User(name="ann", password_hash="$scrypt$x", role="network-admin")),
    "checkpoint": (
        "cp1",
        obj.Checkpoint(
            name="cp1", created_by="ann", created_at=12.5, objects={"vlan": {"10": {"id": 10}}}
        ),
    ),
    "module": (
        "uuid-1",
        obj.Module(
            module=3,
            host_uuid="uuid-1",
            host_name="h1",
            status="ok",
            ports=2,
            addr="10.0.0.5:5000",
            last_attach=99.0,
        ),
    ),
    "veth": (
        "Vethernet1",
        obj.Veth(name="Vethernet1", module=3, host_uuid="uuid-1", vm="vm-a", port="vnet0"),
    ),
    "os_bridge_domain": (
        "bd1",
        obj.OsBridgeDomain(name="bd1", segment_id=5000, sub_type="native_vxlan", group_ip="x"),
    ),
    "os_port": ("p1", obj.OsPort(id="p1", vm_network="vmn_a_b", mac_address="00:11:22:33:44:55")),
}


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(obj.KINDS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip_through_the_store_and_the_standby(tmp_path: Path, kind: str) -> None:
    key, value = SAMPLES[kind]
    body = obj.to_body(value)
    with Store(tmp_path / "a.db") as active, Store(tmp_path / "s.db") as standby:
        change = active.commit([Op(kind, key, body)], user="u", source="cli", command="c", time=1)
        assert standby.apply_replicated(change)
        for store in (active, standby):
            stored = store.get(kind, key)
            assert stored == body  # the stored form is the writer's dict, unchanged
            assert stored is not None
            assert obj.from_body(type(value), stored) == value
    if kind == "module":  # the table reads it as vemmgr does
        table = ModuleTable(module_limit=16)
        table.load({key: body}, {})
        assert table.modules[key].number == 3 and table.modules[key].host_name == "h1"


def test_a_body_with_an_unknown_key_is_refused_at_commit(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        bad = Op("module", "uuid-1", {"number": 3, "host_uuid": "uuid-1"})  # the key is "module"
        with pytest.raises(StoreError, match=r"module/uuid-1: .*unknown field `number`"):
            store.commit(
                [Op("vlan", "5", {"id": 5}), bad], user="u", source="s", command="c", time=1
            )
        with pytest.raises(StoreError, match=r"vlan/5: .*Expected `int`, got `str` - at `\$.id`"):
            store.prepare(
                [Op("vlan", "5", {"id": "five"})], user="u", source="s", command="c", time=1
            )
        assert store.last_seq == 0 and store.head_seq == 0
        assert store.get("vlan", "5") is None  # nothing of the change was written
        # A kind without a contract is kept as it is.
        store.commit([Op("x_kind", "k", {"any": 1})], user="u", source="s", command="c", time=1)


def test_older_streams_and_stores_are_still_read(tmp_path: Path) -> None:
    # A replicated change or a stored body is not checked again, and reading
    # leaves out keys the kind does not know (a body of another build).
    old = {"module": 4, "host_uuid": "u", "legacy": True}
    change = Change(
        seq=1, time=1.0, user="u", source="vemmgr", command="c", ops=(Op("module", "u", old),)
    )
    with Store(tmp_path / "s.db") as standby:
        assert standby.apply_replicated(change)
        stored = standby.get("module", "u")
        assert stored == old
        assert obj.from_body(obj.Module, stored) == obj.Module(module=4, host_uuid="u")


def test_the_module_table_counts_a_body_of_the_wrong_shape() -> None:
    table = ModuleTable(module_limit=16)
    table.load(
        {"a": {"module": "three", "host_uuid": "a"}, "b": {"module": 4, "host_uuid": "b"}},
        {"Vethernet1": {"host_uuid": "b", "status": 1}},
    )
    assert list(table.modules) == ["b"]
    assert table.counters["bad_store_body"] == 2
    assert not table.veths
