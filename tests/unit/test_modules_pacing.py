"""vemmgr's scale paths in virtual time: lazy ``changes`` frames, paced switch
requests at a takeover, the attach-ack snapshot cache."""

from __future__ import annotations

import itertools
import math
from typing import Any

import msgspec

from openvsm.modules.pacing import SwitchPacer
from openvsm.modules.table import (
    Effect,
    ModuleStatus,
    ModuleTable,
    Send,
    StoreOp,
    parse_changes_frame,
)
from openvsm.vem.model import VemConfigSnapshot
from openvsm.wire.codec import Frame
from openvsm.wire.messages import SenderRole, SwitchRequest, VemAttach, VemAttachAck, VethPort


def changes_frame(ops: list[Any], event: str = "changes") -> bytes:
    return msgspec.msgpack.encode({"event": event, "data": {"first": 1, "seq": 2, "ops": ops}})


MODULE_OP = {"kind": "module", "key": "u1", "body": {"module": 3, "status": "ok"}}
PROFILE_OP = {"kind": "port_profile", "key": "p", "body": {"name": "p", "access_vlan": 10}}
VLAN_DELETE = {"kind": "vlan", "key": "10", "body": None}


def test_a_changes_frame_decodes_only_the_kinds_the_table_takes() -> None:
    table = ModuleTable(module_limit=8)
    raw = changes_frame([MODULE_OP, PROFILE_OP, VLAN_DELETE])
    # The standby mirrors the active's module objects and takes every kind.
    assert parse_changes_frame(raw, table.wanted_kinds()) == [
        StoreOp("module", "u1", {"module": 3, "status": "ok"}),
        StoreOp("port_profile", "p", {"name": "p", "access_vlan": 10}),
        StoreOp("vlan", "10", None),
    ]
    table.active = True  # the active authors module/veth objects: skipped, not decoded
    assert parse_changes_frame(raw, table.wanted_kinds()) == [
        StoreOp("port_profile", "p", {"name": "p", "access_vlan": 10}),
        StoreOp("vlan", "10", None),
    ]


def test_a_bad_changes_frame_is_read_like_parse_ops_never_raised() -> None:
    kinds = ModuleTable(module_limit=8).wanted_kinds()
    assert parse_changes_frame(b"\xc1junk", kinds) is None
    assert parse_changes_frame(changes_frame([PROFILE_OP], event="status"), kinds) is None
    assert parse_changes_frame(msgspec.msgpack.encode([1, 2]), kinds) is None
    # A bad item (no key) makes the typed decoder refuse: the rest still counts.
    raw = changes_frame([{"kind": "vlan"}, 7, PROFILE_OP, {"kind": "vlan", "key": 3}])
    assert parse_changes_frame(raw, kinds) == [
        StoreOp("port_profile", "p", {"name": "p", "access_vlan": 10})
    ]
    assert parse_changes_frame(msgspec.msgpack.encode({"event": "changes"}), kinds) is None


# ---- paced switch requests ----------------------------------------------------


def test_the_pacer_keeps_a_window_in_order_and_asks_each_vem_once() -> None:
    pacer = SwitchPacer(window=1000, timeout=0.5)
    hosts = [f"h{i}" for i in range(2500)]
    pacer.start(hosts)
    asked: list[tuple[float, str]] = []

    def release(now: float) -> list[str]:
        out = pacer.release(now)
        assert pacer.outstanding() <= 1000
        asked.extend((now, h) for h in out)
        return out

    assert release(0.0) == hosts[:1000]
    assert release(0.1) == [] and pacer.next_deadline() == 0.5
    for host in hosts[:10]:  # ten answers free ten slots, taken in order
        assert pacer.answered(host)
    assert release(0.2) == hosts[1000:1010]
    assert not pacer.answered(hosts[0])  # a second frame of the same VEM frees nothing
    assert release(0.3) == []
    # Nobody else answers: each window's requests time out and free their slots.
    assert release(0.5) == hosts[1010:2000]
    assert release(0.7) == hosts[2000:2010]
    assert release(1.0) == hosts[2010:]
    assert release(1.2) == []
    assert release(1.5) == [] and not pacer.busy and pacer.next_deadline() == math.inf
    assert [h for _, h in asked] == hosts  # every VEM asked once, in order ...
    assert max(t for t, _ in asked) <= math.ceil(2500 / 1000) * 0.5  # ... within the bound
    assert pacer.asked == 2500


def test_a_vem_is_never_asked_twice_within_a_window() -> None:
    pacer = SwitchPacer(window=2, timeout=0.5, max_asks=3)
    pacer.start(["a", "b", "c", "a"])  # a host named twice is asked as one
    times: dict[str, list[float]] = {}
    now = 0.0
    while pacer.busy and now < 10.0:
        for host in pacer.release(now):
            times.setdefault(host, []).append(now)
        if now == 0.3:
            assert pacer.answered("b")
        now = round(now + 0.1, 1)
    assert times == {"a": [0.0, 0.5, 1.0], "b": [0.0], "c": [0.4, 0.9, 1.4]}
    for asks in times.values():  # asked again only after a whole window unanswered
        assert all(later - first >= 0.5 - 1e-9 for first, later in itertools.pairwise(asks))


def vem_table(count: int, window: int) -> ModuleTable:
    """A standby's table holding ``count`` modules attached to the other VSM."""
    table = ModuleTable(module_limit=count + 8, listen="127.0.0.1:9", loss_time=15.0)
    table.pacer = SwitchPacer(window=window, timeout=0.5)
    table.load(
        {
            f"u{i}": {"module": 3 + i, "status": "ok", "addr": f"127.0.0.1:{20000 + i}"}
            for i in range(count)
        },
        {},
    )
    return table


def requested(effects: list[Effect]) -> list[int]:
    """Ports the switch requests among ``effects`` go to."""
    return [
        e.addr[1] - 20000
        for e in effects
        if isinstance(e, Send) and isinstance(e.msg, SwitchRequest)
    ]


def attach_from(i: int, seq: int = 1) -> Frame:
    msg = VemAttach(
        host_uuid=f"u{i}",
        host_name=f"h{i}",
        host_ip="127.0.0.1",
        version="x",
        host_os="linux",
        config_seq=0,
        ports=[],
        module=3 + i,
    )
    return Frame(
        role=SenderRole.VEM,
        mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
        epoch=0,
        seq=seq,
        msg=msg,
    )


def test_a_takeover_asks_the_vems_in_module_order_a_window_at_a_time() -> None:
    table = vem_table(10, window=4)
    effects = table.became_active(epoch=2, now=100.0)
    assert requested(effects) == [0, 1, 2, 3]
    assert table.counters["switch_requests_sent"] == 4
    assert requested(table.tick(100.0)) == []
    assert table.next_deadline() == 100.5  # the window's timeout (heartbeats at 101)
    # Two of them attach: their slots go to the next two at once.
    assert requested(table.on_frame(attach_from(0), ("127.0.0.1", 20000), 100.1)) == [4]
    assert requested(table.on_frame(attach_from(2), ("127.0.0.1", 20002), 100.1)) == [5]
    assert requested(table.on_frame(attach_from(2, 2), ("127.0.0.1", 20002), 100.2)) == []
    assert requested(table.tick(100.2)) == []
    # 1 and 3 never answer: at 100.5 their slots free, 6 and 7 are asked; 4 and 5
    # time out at 100.6: 8 and 9.
    assert requested(table.tick(100.5)) == [6, 7]
    assert table.next_deadline() == 100.6
    assert requested(table.tick(100.6)) == [8, 9]
    assert requested(table.tick(101.1)) == [] and requested(table.tick(102.0)) == []
    assert table.counters["switch_requests_sent"] == 10  # each VEM once
    assert table.modules["u0"].status is ModuleStatus.POWERED_UP  # attached, not yet ok
    table.became_standby()
    assert not table.pacer.busy


# ---- attach-ack snapshots -----------------------------------------------------


def ack_config(effects: list[Effect]) -> VemConfigSnapshot:
    (ack,) = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, VemAttachAck)]
    return msgspec.msgpack.decode(ack.config, type=VemConfigSnapshot)


def attach_with(i: int, profile: str, ip: str = "127.0.0.1") -> Frame:
    port = VethPort(name="p1", vm=f"vm{i}", mac="02:00:00:00:01:01", port_profile=profile)
    frame = attach_from(i)
    assert isinstance(frame.msg, VemAttach)
    msg = msgspec.structs.replace(frame.msg, ports=[port], host_ip=ip)
    return Frame(role=frame.role, mac=frame.mac, epoch=0, seq=frame.seq, msg=msg)


def test_attach_acks_share_one_snapshot_per_profile_set_until_the_config_changes() -> None:
    table = ModuleTable(module_limit=16, listen="127.0.0.1:9")
    table.load_config(
        {"a": {"name": "a", "access_vlan": 10}, "b": {"name": "b", "access_vlan": 20}},
        {"10": {"id": 10}, "20": {"id": 20}},
        {},
    )
    table.became_active(epoch=1, now=0.0)
    for i, profile in enumerate(["a", "a", "b"]):
        table.on_frame(attach_with(i, profile), ("127.0.0.1", 20000 + i), 1.0)
    m0, m1, m2 = (table.modules[f"u{i}"] for i in range(3))
    assert m0.pushed_config is m1.pushed_config  # one encoding for the same profiles
    assert m2.pushed_config != m0.pushed_config
    assert [p.name for p in table.snapshot(m2).port_profiles] == ["b"]
    # A configuration change is seen by the next attach.
    table.apply_changes([StoreOp("port_profile", "a", {"name": "a", "access_vlan": 20})], 2.0)
    late = ack_config(table.on_frame(attach_with(3, "a"), ("127.0.0.1", 20003), 3.0))
    assert [p.access_vlan for p in late.port_profiles] == [20]
    # A new VTEP (a host on another IP) is in the next snapshots.
    table.on_frame(attach_with(4, "a", ip="10.0.0.9"), ("127.0.0.1", 20004), 4.0)
    again = ack_config(table.on_frame(attach_with(5, "a"), ("127.0.0.1", 20005), 5.0))
    assert again.vteps == ("10.0.0.9",)
