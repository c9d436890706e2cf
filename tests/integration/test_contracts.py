"""The node's IPC contracts from outside: a request whose arguments do not
match its contract is refused with a clear error and counted; the service and
its typed readers (cfgmgr's show module, vemmgr's module count) carry on."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from openvsm.ipc import IpcError
from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

SETTLE = 60.0


def test_hamgr_refuses_arguments_of_another_shape(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="default", rest=False, vems=1)
    active = lab.start()
    sock = lab.rundir(active) / "hamgr.sock"
    # vemmgr's typed set_module_count reached hamgr: its status says so.
    wait_for(lambda: ipc_call(sock, "status")["module_count"] == 1, SETTLE, "module count")
    status = ipc_call(sock, "status")
    assert status["state"] == "active" and "peer_lost" in status and "boot_id" in status
    for op, args, text in (
        ("set_module_count", {"cnt": 7}, "unknown field `cnt`"),
        ("set_module_count", {}, "missing required field `count`"),
        ("sync_state", {"state": "lukewarm"}, "Invalid enum value 'lukewarm'"),
    ):
        with pytest.raises(IpcError, match=f"bad arguments to {op}: .*{text}"):
            ipc_call(sock, op, **args)
    assert ipc_call(sock, "ipc_counters")["bad_args"] == 3
    assert ipc_call(sock, "status")["module_count"] == 1  # nothing was taken from them
    rows = lab.cli_json(active, "show module")["TABLE_modinfo"]["ROW_modinfo"]
    assert any(r["status"] == "active *" for r in rows), rows


def test_a_commit_with_a_key_its_kind_does_not_know_is_refused(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(timers="default", rest=False, vems=0)
    active = lab.start()
    sock = lab.rundir(active) / "cfgmgr.sock"
    before = ipc_call(sock, "snapshot_digest")
    bad = {"kind": "vlan", "key": "77", "body": {"id": 77, "name": "x", "colour": "red"}}
    with pytest.raises(IpcError, match=r"Configuration not saved: invalid op vlan/77: .*`colour`"):
        ipc_call(sock, "commit", ops=[bad], user="admin", source="ipc", command="test")
    assert ipc_call(sock, "snapshot_digest") == before  # nothing written
    good = {"kind": "vlan", "key": "77", "body": {"id": 77, "name": "x", "owner": "cli"}}
    ipc_call(sock, "commit", ops=[good], user="admin", source="ipc", command="test")
    vlans = lab.cli_json(active, "show vlan brief")
    assert "77" in str(vlans), vlans
