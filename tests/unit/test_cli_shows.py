"""The system shows of issue 13: golden texts of the renderers on fixed data,
checkpoint/rollback patches (sans-IO), the Unix-peer user mapping, roles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from openvsm import roles
from openvsm.cfgmgr.configsession import ConfigSession, Mode
from openvsm.cli import peers
from openvsm.cli.render import render
from openvsm.store import checkpoints
from openvsm.store.pss import Op
from openvsm.store.runningconfig import MemoryView, running_config_lines

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

VERSION = {
    "sys_ver_str": "0.1.0",
    "isan_file_name": "openvsm (Python package)",
    "isan_cmpl_time": "",
    "host_name": "vsm-a",
    "chassis_id": 'openvsm Virtual Supervisor Module ("Virtual Supervisor Module")',
    "cpu_name": "Virtual CPU",
    "memory": 4027412,
    "mem_type": "kB",
    "proc_board_id": "02005E100001",
    "bootflash_size": 0,
    "kern_uptm_days": 2,
    "kern_uptm_hrs": 3,
    "kern_uptm_mins": 4,
    "kern_uptm_secs": 5,
    "rr_reason": "Unknown",
    "rr_sys_ver": "0.1.0",
    "rr_service": "",
    "os_str": "host1",
}
INTERFACES = {
    "TABLE_interface": {
        "ROW_interface": [
            {
                "interface": "mgmt0",
                "state": "up",
                "ip_addr": "10.1.0.11",
                "speed": "1000",
                "mtu": 1500,
            },
            {
                "interface": "Vethernet1",
                "vlan": "10",
                "type": "virt",
                "portmode": "access",
                "state": "up",
                "state_rsn_desc": "none",
                "speed": "auto",
            },
        ]
    }
}
STATUS = {
    "TABLE_interface": {
        "ROW_interface": [
            {
                "interface": "mgmt0",
                "name": "--",
                "state": "connected",
                "vlan": "routed",
                "duplex": "full",
                "speed": "1000",
                "type": "--",
            },
            {
                "interface": "Vethernet1",
                "name": "vm-1",
                "state": "connected",
                "vlan": "10",
                "duplex": "auto",
                "speed": "auto",
                "type": "--",
            },
        ]
    }
}
VLANS = {
    "TABLE_vlanbriefxbrief": {
        "ROW_vlanbriefxbrief": [
            {
                "vlanshowbr-vlanid": 1,
                "vlanshowbr-vlanname": "default",
                "vlanshowbr-vlanstate": "active",
                "vlanshowplist-ifidx": "",
            },
            {
                "vlanshowbr-vlanid": 10,
                "vlanshowbr-vlanname": "VLAN0010",
                "vlanshowbr-vlanstate": "active",
                "vlanshowplist-ifidx": ",".join(f"Vethernet{i}" for i in range(1, 6)),
            },
        ]
    }
}
INVENTORY = {
    "TABLE_inv": {
        "ROW_inv": [
            {
                "name": '"Chassis"',
                "desc": '"openvsm Virtual Supervisor Module Chassis"',
                "productid": "OVSM-CHASSIS",
                "vendorid": "",
                "serialnum": "domain-100",
            },
            {
                "name": '"Slot 3"',
                "desc": '"Virtual Ethernet Module"',
                "productid": "OVSM-VEM",
                "vendorid": "",
                "serialnum": "3343b8cc-c806-5361-a101-d1ec41b2a925",
            },
        ]
    }
}
USERS = {
    "TABLE_sessions": {
        "ROW_sessions": [
            {
                "u_name": "admin",
                "tty": "pts",
                "login_time": "Dec 02 04:17",
                "idle": ".",
                "pid": 4242,
                "host": "",
                "cur_session": "true",
            },
            {
                "u_name": "olga",
                "tty": "ssh",
                "login_time": "Dec 02 04:20",
                "idle": "00:05",
                "pid": 0,
                "host": "10.1.0.99",
                "cur_session": "false",
            },
        ]
    }
}

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("show_version", "show_version.txt", VERSION),
    ("show_interface_brief", "show_interface_brief.txt", INTERFACES),
    ("show_interface_status", "show_interface_status.txt", STATUS),
    ("show_vlan_brief", "show_vlan_brief.txt", VLANS),
    ("show_inventory", "show_inventory.txt", INVENTORY),
    ("show_users", "show_users.txt", USERS),
]


@pytest.mark.parametrize(("handler", "golden", "data"), CASES)
def test_golden_text(handler: str, golden: str, data: dict[str, Any]) -> None:
    assert render(handler, data) == (GOLDEN / golden).read_text()


def _view() -> MemoryView:
    view = MemoryView()
    cs = ConfigSession(view, mode=Mode.CONFIG)
    for line in (
        "username bob password bob-pass-1 role network-admin",
        "vlan 10,20",
        "port-profile type vethernet web",
        "switchport access vlan 10",
    ):
        view.apply(cs.execute(line).ops)
    # an OpenStack-owned object: never part of a checkpoint, never rolled back
    view.apply([Op("vlan", "500", {"id": 500, "name": "os", "owner": "openstack"})])
    return view


def test_rollback_returns_to_the_checkpoint_in_one_patch() -> None:
    view = _view()
    before = running_config_lines(view)
    view.apply(checkpoints.checkpoint_ops(view, "cp1", user="bob", now=1.0))
    cs = ConfigSession(view, mode=Mode.CONFIG)
    for line in ("vlan 30", "no vlan 20", "port-profile web", "description changed", "exit"):
        view.apply(cs.execute(line).ops)
    view.apply([Op("vlan", "500", None)])  # Neutron removed its VLAN
    assert running_config_lines(view) != before
    patch = checkpoints.rollback_ops(view, "cp1")
    assert {(op.kind, op.key, op.body is None) for op in patch} == {
        ("vlan", "30", True),
        ("vlan", "20", False),
        ("port_profile", "web", False),
    }
    view.apply(patch)
    assert view.get("vlan", "500") is None  # OpenStack's objects are its own
    expected = [
        ln for ln in before if "500" not in ln and "OpenStack" not in ln and ln != "!  name os"
    ]
    assert [ln for ln in running_config_lines(view) if ln] == [ln for ln in expected if ln]
    assert checkpoints.rollback_ops(view, "cp1") == []  # nothing left to do


def test_checkpoint_errors() -> None:
    view = _view()
    view.apply(checkpoints.checkpoint_ops(view, "a", user="bob", now=1.0))
    with pytest.raises(checkpoints.CheckpointError, match="already in use"):
        checkpoints.checkpoint_ops(view, "a", user="bob", now=2.0)
    with pytest.raises(checkpoints.CheckpointError, match="Invalid checkpoint name"):
        checkpoints.checkpoint_ops(view, "bad name!", user="bob", now=2.0)
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.rollback_ops(view, "nope")
    for i in range(checkpoints.MAX_CHECKPOINTS - 1):
        view.apply(checkpoints.checkpoint_ops(view, f"c{i}", user="bob", now=3.0 + i))
    with pytest.raises(checkpoints.CheckpointError, match="Maximum number"):
        checkpoints.checkpoint_ops(view, "one-more", user="bob", now=99.0)
    view.apply(checkpoints.delete_ops(view, "a"))
    names = [r["name"] for r in checkpoints.summary_data(view)["TABLE_ckpt"]["ROW_ckpt"]]
    assert names[0] == "c0" and "a" not in names


def test_rollback_refuses_to_orphan_ports() -> None:
    view = _view()
    view.apply(checkpoints.checkpoint_ops(view, "cp", user="bob", now=1.0))
    cs = ConfigSession(view, mode=Mode.CONFIG)
    view.apply(cs.execute("port-profile type vethernet new").ops)
    view.apply([Op("veth", "Vethernet1", {"name": "Vethernet1", "port_profile": "new"})])
    with pytest.raises(checkpoints.CheckpointError, match="in use by interfaces: new"):
        checkpoints.rollback_ops(view, "cp")


def test_unix_peer_mapping() -> None:
    me = os.getuid()
    assert peers.cli_user(0, {}) == "admin"
    assert peers.cli_user(me, {}, own_uid=me) == "admin"
    nobody = 65534
    name = peers.unix_name(nobody)
    assert peers.cli_user(nobody, {}, own_uid=me) == name  # same-name CLI user
    assert peers.cli_user(nobody, {name: "olga"}, own_uid=me) == "olga"
    assert peers.cli_user(nobody, {"*": "guest"}, own_uid=me) == "guest"
    assert peers.cli_user(0, {"root": "ops"}) == "ops"
    assert peers.unix_name(2**31 - 7) == f"uid-{2**31 - 7}"
    assert peers.user_map({"cli": {"users": {"root": "admin", "x": 5}}}) == {"root": "admin"}
    assert peers.user_map({"cli": {"users": "nonsense"}}) == {}
    assert peers.user_map({}) == {}


def test_roles() -> None:
    view = _view()
    assert roles.role_of("admin", None) is roles.Role.NETWORK_ADMIN
    assert roles.role_of("bob", view) is roles.Role.NETWORK_ADMIN
    assert roles.role_of("ghost", view) is roles.Role.NETWORK_OPERATOR
    view.apply([Op("user", "odd", {"name": "odd", "role": "superuser"})])
    assert roles.role_of("odd", view) is roles.Role.NETWORK_OPERATOR
    assert roles.may_write("network-admin") and not roles.may_write("network-operator")
