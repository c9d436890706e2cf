"""A standby whose sync port is taken when it starts still becomes HA standby
once the port is free (chaos campaign seed 1000, fault 377: a restarted
cfgmgr found its sync port in use, the task following hamgr died with the
bind error, and the standby never synced again until restarted).

Driven from outside: another program holds the secondary's control TCP port
while the pair starts; the pair must come up as ``Active with HA standby`` /
``HA standby`` after that program lets go, with the same cfgmgr process (it
retried, it did not die), and a change must replicate.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from openvsm.lab.lab import Lab, ipc_call, wait_for

pytestmark = pytest.mark.integration


def cfgmgr_pid(lab: Lab, node: str) -> int:
    rows = ipc_call(lab.rundir(node) / "sysmgr.sock", "services")["TABLE_service"]["ROW_service"]
    return int(next(r["pid"] or 0 for r in rows if r["name"] == "cfgmgr"))


def test_standby_takes_its_sync_port_once_free(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(vems=0, timers="fast", rest=False)
    host, port = lab.nodes["secondary"].control
    blocker = socket.create_server((host, port))  # the other program
    try:
        lab.start_proxy()
        lab.start_node("primary")
        wait_for(lambda: lab.active() == "primary", 30, "the primary active alone")
        lab.start_node("secondary")
        wait_for(
            lambda: (lab.status("secondary") or {}).get("this_sup_rdn_state") == "Standby",
            30,
            "the secondary's hamgr to follow the active",
        )
        pid = wait_for(lambda: cfgmgr_pid(lab, "secondary") or None, 30, "cfgmgr running")
        st = lab.status("primary") or {}
        assert st.get("this_sup_internal_state") != "Active with HA standby", st
    finally:
        blocker.close()
    assert lab.wait_pair() == "primary"
    assert cfgmgr_pid(lab, "secondary") == pid  # it retried; it was not restarted
    res = lab.cli("primary", "configure terminal ; vlan 777 ; name after-the-port ; end")
    assert not res["error"], res
    wait_for(
        lambda: any(
            int(r["vlanshowbr-vlanid"]) == 777
            for r in lab.cli_json("secondary", "show vlan brief")["TABLE_vlanbriefxbrief"][
                "ROW_vlanbriefxbrief"
            ]
        ),
        30,
        "vlan 777 on the standby",
    )
