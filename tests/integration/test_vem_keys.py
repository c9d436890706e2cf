"""Rotation of the domain VEM key without downtime (issue 12 point 1), as an
operator does it (docs/security.md "Rotating the VEM key"): ``openvsm keys``
makes the files, the node configs get ``[keys] vem_key_next``, vemmgr is
restarted with ``restart service vemmgr`` on the standby then the active.

During the overlap a VEM holding its key derived from the old VEM key and a
VEM holding one derived from the new key both attach; after the promotion
and the removal of the old key the old VEM is refused (``bad_host_key`` in
``show module vem counters | json``) while the new one stays attached.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from openvsm.lab.lab import Lab, ipc_call, wait_for

pytestmark = pytest.mark.integration
VEM_TYPE = "Virtual Ethernet Module"


def openvsm(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "openvsm", *args], check=True, timeout=30)


def modules(lab: Lab, node: str) -> dict[str, str]:
    """Host UUID -> module status (``show module | json``)."""
    data = lab.cli_json(node, "show module")
    status = {
        r["modinf"]: r["status"]
        for r in data["TABLE_modinfo"]["ROW_modinfo"]
        if r["modtype"] == VEM_TYPE
    }
    rows = data["TABLE_modsrvinfo"]["ROW_modsrvinfo"]
    return {r["srvuuid"]: status[r["modsrv"]] for r in rows if r["modsrv"] in status}


def set_vem_keys(lab: Lab, current: Path, nxt: Path | None) -> None:
    """Edit both node files' ``[keys]`` as the operator would."""
    for node in lab.nodes.values():
        text = node.config.read_text()
        text = re.sub(r"(?m)^vem_key_next = .*\n", "", text)
        line = f'vem_key = "{current}"\n' + (f'vem_key_next = "{nxt}"\n' if nxt else "")
        text, n = re.subn(r"(?m)^vem_key = .*\n", line, text)
        assert n == 1, text
        node.config.write_text(text)


def vemmgr_pid(sock: Path) -> int:
    rows = ipc_call(sock, "services")["TABLE_service"]["ROW_service"]
    return int(next(r["pid"] or 0 for r in rows if r["name"] == "vemmgr"))


def restart_vemmgr(lab: Lab, active: str) -> None:
    standby = "secondary" if active == "primary" else "primary"
    for node in (standby, active):
        sock = lab.rundir(node) / "sysmgr.sock"

        before = vemmgr_pid(sock)
        res = lab.cli(node, "restart service vemmgr")
        assert not res["error"], res
        wait_for(
            partial(lambda s, b: vemmgr_pid(s) not in (0, b), sock, before),
            20,
            f"vemmgr restarted on {node}",
        )
        wait_for(
            partial(ipc_call, lab.rundir(node) / "vemmgr.sock", "counters"),
            20,
            f"the new vemmgr to answer on {node}",
        )


def bad_host_keys(lab: Lab, node: str) -> int:
    return int(lab.cli_json(node, "show module vem counters")["drops"].get("bad_host_key", 0))


def test_both_vem_keys_attach_during_the_overlap_and_the_old_is_refused_after(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=1, timers="fast", rest=False)
    active = lab.start()
    old_vem = lab.vems[0]
    old_key, new_key = lab.vem_key_file, lab.root / "pki" / "vem-next.secret"

    # 1. The new VEM key as the next one on both VSMs.
    openvsm("keys", "new", "--out", str(new_key))
    set_vem_keys(lab, old_key, new_key)
    restart_vemmgr(lab, active)
    # 2. A host rolled to the new key (here: a new host) attaches beside the old one.
    new_vem = lab.add_vem(2)
    assert new_vem.key_file is not None
    new_vem.key_file.unlink()
    openvsm("keys", "host", "--vem-key", str(new_key), "--host-uuid", new_vem.uuid,
            "--out", str(new_vem.key_file))  # fmt: skip
    lab.start_vem(new_vem)
    both = {old_vem.uuid: "ok", new_vem.uuid: "ok"}
    wait_for(lambda: modules(lab, active) == both, 30, "both VEMs attached during the overlap")
    # 3. Promotion: the new key is current, the old one still accepted.
    set_vem_keys(lab, new_key, old_key)
    restart_vemmgr(lab, active)
    wait_for(lambda: modules(lab, active) == both, 30, "both VEMs still attached after promotion")
    refused = bad_host_keys(lab, active)
    # 4. The old key dropped: the host still on it is refused, the new one stays.
    set_vem_keys(lab, new_key, None)
    restart_vemmgr(lab, active)
    wait_for(lambda: bad_host_keys(lab, active) >= refused + 3, 30, "old-key frames refused")
    wait_for(lambda: modules(lab, active).get(old_vem.uuid) != "ok", 30, "the old-key host to drop")
    assert modules(lab, active)[new_vem.uuid] == "ok"
    st = ipc_call(old_vem.rundir / "vem.sock", "status")
    assert st["drops"].get("bad_tag", 0) > 0 or st["state"] != "attached"
