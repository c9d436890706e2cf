"""vemmgr's scale paths in virtual time: lazy ``changes`` frames, paced switch
requests at a takeover, the attach-ack snapshot cache."""

from __future__ import annotations

from typing import Any

import msgspec

from openvsm.modules.table import ModuleTable, StoreOp, parse_changes_frame


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
