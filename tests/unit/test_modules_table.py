"""VSM module table in virtual time: numbering, limit, heartbeats, status, config push."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from openvsm.modules.table import (
    Commit,
    Effect,
    Module,
    ModuleCount,
    ModuleStatus,
    ModuleTable,
    Send,
    StoreOp,
    parse_ops,
)
from openvsm.vem.model import VemConfigSnapshot
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    ConfigDelta,
    Message,
    SenderRole,
    SwitchRequest,
    VemAttach,
    VemAttachAck,
    VemDetach,
    VemHeartbeat,
    VemPortEvent,
    VethPort,
)

LISTEN = "127.0.0.1:17003"
PROFILES: dict[str, dict[str, Any]] = {
    "vm-net": {"name": "vm-net", "type": "vethernet", "mode": "access", "access_vlan": 10},
    "vx": {"name": "vx", "type": "vethernet", "mode": "access", "bridge_domain": "bd1"},
    "other": {"name": "other", "mode": "access", "access_vlan": 20, "shutdown": True},
}
VLANS: dict[str, dict[str, Any]] = {
    "10": {"id": 10, "name": "VLAN0010"},
    "20": {"id": 20, "name": "VLAN0020"},
}
BDS: dict[str, dict[str, Any]] = {"bd1": {"name": "bd1", "segmentId": 5000, "subType": "unicast"}}


class FakeVem:
    _macs = itertools.count(1)

    def __init__(self, uuid: str, ip: str = "10.0.0.1", port: int = 18001) -> None:
        self.uuid = uuid
        self.ip = ip
        self.addr = ("127.0.0.1", port)
        self.mac = f"02:00:00:00:99:{next(self._macs):02x}"
        self._seq = itertools.count(1)

    def frame(self, msg: Message) -> Frame:
        return Frame(role=SenderRole.VEM, mac=self.mac, epoch=0, seq=next(self._seq), msg=msg)

    def attach(self, ports: list[VethPort] | None = None, module: int = 0) -> Frame:
        return self.frame(
            VemAttach(
                host_uuid=self.uuid,
                host_name=f"host-{self.uuid}",
                host_ip=self.ip,
                version="0.1",
                host_os="linux",
                config_seq=0,
                ports=ports or [],
                module=module,
            )
        )

    def heartbeat(self, config_seq: int) -> Frame:
        return self.frame(VemHeartbeat(host_uuid=self.uuid, config_seq=config_seq))


def status(mod: Module) -> ModuleStatus:
    return mod.status


def port(name: str, profile: str = "vm-net") -> VethPort:
    return VethPort(name=name, vm=f"vm-{name}", mac="02:00:00:00:01:01", port_profile=profile)


def new_table(limit: int = 16) -> ModuleTable:
    table = ModuleTable(
        module_limit=limit, listen=LISTEN, heartbeat_interval=1.0, loss_time=15.0, wall=lambda: 1e9
    )
    table.load_config(PROFILES, VLANS, BDS)
    table.became_active(epoch=1, now=0.0)
    return table


def acks(effects: list[Effect]) -> list[VemAttachAck]:
    return [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, VemAttachAck)]


def commits(effects: list[Effect]) -> list[StoreOp]:
    return [op for e in effects if isinstance(e, Commit) for op in e.ops]


def store_of(effects_list: list[list[Effect]]) -> dict[str, dict[str, Any]]:
    store: dict[str, dict[str, Any]] = {"module": {}, "veth": {}}
    for effects in effects_list:
        for op in commits(effects):
            if op.body is None:
                store[op.kind].pop(op.key, None)
            else:
                store[op.kind][op.key] = op.body
    return store


def test_module_numbers_start_at_3_and_are_stable_per_host() -> None:
    table = new_table()
    v1, v2 = FakeVem("u1"), FakeVem("u2", port=18002)
    (a1,) = acks(table.on_frame(v1.attach(), v1.addr, 0.1))
    (a2,) = acks(table.on_frame(v2.attach(), v2.addr, 0.2))
    assert (a1.module, a2.module) == (3, 4) and a1.accepted
    # detach (switch away) then reattach: same number
    table.on_frame(v1.frame(VemDetach(host_uuid="u1", reason="switch")), v1.addr, 1.0)
    assert status(table.modules["u1"]) is ModuleStatus.OFFLINE
    v3 = FakeVem("u3", port=18003)
    (a3,) = acks(table.on_frame(v3.attach(), v3.addr, 1.1))
    assert a3.module == 5  # 3 is still u1's
    (again,) = acks(table.on_frame(v1.attach(), v1.addr, 1.2))
    assert again.module == 3


def test_module_numbers_survive_a_reload_from_store_objects() -> None:
    table = new_table()
    history = []
    vems = [FakeVem(f"u{i}", port=18000 + i) for i in range(3)]
    for v in vems:
        history.append(table.on_frame(v.attach([port("vnet1"), port("vnet2")]), v.addr, 0.1))
    store = store_of(history)
    assert {b["module"] for b in store["module"].values()} == {3, 4, 5}
    assert sorted(store["veth"]) == [f"Vethernet{i}" for i in range(1, 7)]
    # The standby (or a restarted vemmgr) loads the replicated objects.
    reloaded = ModuleTable(module_limit=16, listen=LISTEN)
    reloaded.load(store["module"], store["veth"])
    reloaded.load_config(PROFILES, VLANS, BDS)
    effects = reloaded.became_active(epoch=2, now=0.0)
    switch = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, SwitchRequest)]
    assert sorted(e.addr for e in switch) == sorted(v.addr for v in vems)
    new = FakeVem("u9", port=18009)
    (a_new,) = acks(reloaded.on_frame(new.attach(), new.addr, 0.5))
    assert a_new.module == 6
    again = reloaded.on_frame(vems[1].attach([port("vnet1"), port("vnet2")]), vems[1].addr, 0.6)
    assert acks(again)[0].module == 4
    # Same vEth numbers for the same (host, port); nothing rewritten but the module.
    assert [op.kind for op in commits(again)] == ["module"]


def test_veth_numbers_are_stable_per_host_and_port() -> None:
    table = new_table()
    v = FakeVem("u1")
    table.on_frame(v.attach([port("a"), port("b")]), v.addr, 0.1)
    rows = table.interfaces_data()["TABLE_vif"]["ROW_vif"]
    assert [(r["interface"], r["port"], r["module"]) for r in rows] == [
        ("Vethernet1", "a", 3),
        ("Vethernet2", "b", 3),
    ]
    ev = v.frame(VemPortEvent(host_uuid="u1", attached=[port("c")], detached=["a"]))
    effects = table.on_frame(ev, v.addr, 0.2)
    ops = {(op.key, op.body is None) for op in commits(effects)}
    assert ("Vethernet1", True) in ops and ("Vethernet3", False) in ops
    # Reattach with the same ports: same numbers.
    table.on_frame(v.attach([port("b"), port("c")]), v.addr, 0.3)
    names = {r["port"]: r["interface"] for r in table.interfaces_data()["TABLE_vif"]["ROW_vif"]}
    assert names == {"b": "Vethernet2", "c": "Vethernet3"}


def test_module_limit_refuses_with_a_reason_and_counts() -> None:
    table = new_table(limit=2)
    vems = [FakeVem(f"u{i}", port=18000 + i) for i in range(3)]
    table.on_frame(vems[0].attach(), vems[0].addr, 0.1)
    table.on_frame(vems[1].attach(), vems[1].addr, 0.1)
    (refusal,) = acks(table.on_frame(vems[2].attach(), vems[2].addr, 0.2))
    assert not refusal.accepted and "module limit 2" in refusal.reason
    assert table.counters["attach_refused"] == 1
    assert "u2" not in table.modules
    # A known host is never refused.
    (ok,) = acks(table.on_frame(vems[0].attach(), vems[0].addr, 0.3))
    assert ok.accepted and ok.module == 3


def test_standby_does_not_serve_vems() -> None:
    table = ModuleTable(module_limit=4, listen=LISTEN)
    v = FakeVem("u1")
    assert table.on_frame(v.attach(), v.addr, 0.0) == []
    assert table.counters["not_active"] == 1
    assert table.next_deadline() == float("inf")


def test_heartbeats_counters_and_offline_after_loss_time() -> None:
    table = new_table()
    v = FakeVem("u1")
    (ack,) = acks(table.on_frame(v.attach(), v.addr, 0.0))
    now = 0.0
    for _ in range(5):
        now += 1.0
        table.on_frame(v.heartbeat(ack.config_seq), v.addr, now)
        effects = table.tick(now)
        assert any(isinstance(e, Send) and isinstance(e.msg, VemHeartbeat) for e in effects)
    mod = table.modules["u1"]
    assert mod.hb_received == 5 and mod.hb_sent == 5 and mod.hb_missed == 0
    last = now
    while table.next_deadline() < last + 15.0:
        table.tick(table.next_deadline())
    assert status(mod) is ModuleStatus.OK
    effects = table.tick(last + 15.0)
    assert status(mod) is ModuleStatus.OFFLINE
    assert mod.hb_missed >= 13
    assert [op.body["status"] for op in commits(effects) if op.body] == ["offline"]
    assert ModuleCount(0) in effects
    row = table.counters_data()["TABLE_vem_counters"]["ROW_vem_counters"][0]
    assert row["module"] == 3 and row["status"] == "offline" and row["hb_received"] == 5
    # A heartbeat from an offline module asks it to attach again.
    effects = table.on_frame(v.heartbeat(ack.config_seq), v.addr, last + 16)
    assert any(isinstance(e, Send) and isinstance(e.msg, VemDetach) for e in effects)


def test_config_snapshot_per_vem_and_push_on_change() -> None:
    table = new_table()
    v1 = FakeVem("u1", ip="10.0.0.1")
    v2 = FakeVem("u2", ip="10.0.0.2", port=18002)
    (ack1,) = acks(table.on_frame(v1.attach([port("a", "vm-net"), port("b", "vx")]), v1.addr, 0.0))
    table.on_frame(v1.heartbeat(ack1.config_seq), v1.addr, 0.0)  # it took the ack: ok
    (ack2,) = acks(table.on_frame(v2.attach([port("c", "other")]), v2.addr, 0.0))
    table.on_frame(v2.heartbeat(ack2.config_seq), v2.addr, 0.0)
    snap2 = msgspec.msgpack.decode(ack2.config, type=VemConfigSnapshot)
    assert [p.name for p in snap2.port_profiles] == ["other"]
    assert not snap2.port_profiles[0].enabled  # shutdown
    assert snap2.vlans == (10, 20) and snap2.bridge_domains == () and snap2.vteps == ("10.0.0.1",)
    snap1 = table.snapshot(table.modules["u1"])
    assert [p.name for p in snap1.port_profiles] == ["vm-net", "vx"]
    assert snap1.bridge_domains[0].segment_id == 5000 and snap1.vteps == ("10.0.0.2",)
    # u2's arrival changed u1's VTEP list: pushed with the next heartbeat round.
    tick = table.tick(1.0)
    assert [e.addr for e in tick if isinstance(e, Send) and isinstance(e.msg, ConfigDelta)] == [
        v1.addr
    ]
    # A change to a profile only u2 uses pushes a delta to u2 only.
    op = StoreOp("port_profile", "other", dict(PROFILES["other"], shutdown=False))
    effects = table.apply_changes([op], 1.0)
    deltas = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, ConfigDelta)]
    assert [d.addr for d in deltas] == [v2.addr]
    assert isinstance(deltas[0].msg, ConfigDelta)
    pushed = msgspec.msgpack.decode(deltas[0].msg.config, type=VemConfigSnapshot)
    assert pushed.port_profiles[0].enabled and pushed.config_seq == deltas[0].msg.config_seq
    # The VEM reports an old config seq (lost push): the table pushes again.
    effects = table.on_frame(v2.heartbeat(ack2.config_seq), v2.addr, 1.5)
    assert any(isinstance(e, Send) and isinstance(e.msg, ConfigDelta) for e in effects)


def test_module_and_veth_changes_are_applied_on_the_standby() -> None:
    active = new_table()
    v = FakeVem("u1")
    effects = active.on_frame(v.attach([port("a")]), v.addr, 0.0)
    (ack,) = acks(effects)
    effects += active.on_frame(v.heartbeat(ack.config_seq), v.addr, 0.0)  # took the ack: ok
    standby = ModuleTable(module_limit=16, listen="127.0.0.1:17103")
    raw_ops = [op.as_dict() for op in commits(effects)]
    standby.apply_changes(parse_ops(raw_ops), 0.0)
    assert standby.modules_data() == active.modules_data()
    assert standby.interfaces_data() == active.interfaces_data()
    rows = standby.modules_data()["TABLE_modinfo"]["ROW_modinfo"]
    assert rows == [
        {
            "modinf": 3,
            "ports": 1,
            "modtype": "Virtual Ethernet Module",
            "model": "NA",
            "status": "ok",
        }
    ]
    srv = standby.modules_data()["TABLE_modsrvinfo"]["ROW_modsrvinfo"][0]
    assert srv == {"modsrv": 3, "srvip": "10.0.0.1", "srvuuid": "u1", "srvname": "host-u1"}


def test_replayed_vem_frames_are_dropped() -> None:
    table = new_table()
    v = FakeVem("u1")
    frame = v.attach()
    table.on_frame(frame, v.addr, 0.0)
    assert table.on_frame(frame, v.addr, 0.1) == []
    assert table.counters["replayed"] == 1
    assert table.modules["u1"].attaches == 1


def test_parse_ops_skips_garbage() -> None:
    ops = parse_ops([{"kind": "vlan", "key": "10", "body": {"id": 10}}, 5, ["vlan", "20", None]])
    assert ops == [StoreOp("vlan", "10", {"id": 10}), StoreOp("vlan", "20", None)]
    assert parse_ops("nope") == []


def test_a_retransmitted_attach_is_answered_without_a_commit() -> None:
    table = new_table()
    v = FakeVem("u1")
    first = table.on_frame(v.attach([port("a")]), v.addr, 0.1)
    assert commits(first)
    again = table.on_frame(v.attach([port("a")]), v.addr, 0.2)
    assert acks(again)[0].module == acks(first)[0].module
    assert commits(again) == []
    assert table.counters["attach_repeats"] == 1
    # A changed port list is a real change: committed.
    changed = table.on_frame(v.attach([port("a"), port("b")]), v.addr, 0.3)
    assert commits(changed)


def test_a_vsm_without_the_host_keeps_the_number_the_vem_had() -> None:
    # A VSM that took over before its bulk sync finished lacks the module objects:
    # the VEM's own number is kept when free, so nothing is renumbered.
    table = new_table()
    a, b = FakeVem("ua", port=18101), FakeVem("ub", port=18102)
    (ack_a,) = acks(table.on_frame(a.attach(module=5), a.addr, 0.1))
    assert ack_a.module == 5
    (ack_b,) = acks(table.on_frame(b.attach(module=5), b.addr, 0.2))
    assert ack_b.module == 3  # taken: the lowest free number instead
    c = FakeVem("uc", port=18103)
    (ack_c,) = acks(table.on_frame(c.attach(), c.addr, 0.3))
    assert ack_c.module == 4


def test_a_configuration_read_again_is_pushed_only_where_it_changed() -> None:
    """vemmgr reads the configuration kinds again when its change subscription
    becomes live (a change committed before it would be lost): each VEM whose
    snapshot differs gets it, the others nothing."""
    table = new_table()
    v1 = FakeVem("u1", ip="10.0.0.1")
    (ack,) = acks(table.on_frame(v1.attach([port("a", "vm-net")]), v1.addr, 0.0))
    table.on_frame(v1.heartbeat(ack.config_seq), v1.addr, 0.0)
    assert table.config_reloaded(0.5) == []  # nothing changed: no push
    profiles = dict(table.profiles)
    profiles["vm-net"] = dict(profiles["vm-net"], shutdown=True)
    table.load_config(profiles, table.vlans, table.bridge_domains)
    deltas = [
        e
        for e in table.config_reloaded(1.0)
        if isinstance(e, Send) and isinstance(e.msg, ConfigDelta)
    ]
    assert [d.addr for d in deltas] == [v1.addr]
