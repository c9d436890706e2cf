"""Rotation of the pair key without downtime (issue 12 point 1), as an operator
does it (docs/security.md "Rotating the pair key"): ``openvsm keys new`` makes
the file; each step edits both node files' ``[keys]`` and restarts hamgr and
cfgmgr (``restart service``), the standby first, then the active:

1. ``pair_key_next`` = the new key (accepted, frames still signed with the old);
2. ``pair_key`` = the new key, ``pair_key_next`` = the old one;
3. ``pair_key_next`` removed.

After each hamgr restart both nodes take the other's heartbeats again
(``hb_recv`` of ``show system internal redundancy counters`` grows, no
``drop_bad_tag``); after each cfgmgr restart a VLAN committed on the active
reaches the standby (the replication stream authenticated under that step's
keys). Through every restart the pair keeps its roles (seed timers: a
service restart is shorter than the loss interval) and every VEM stays
attached.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from openvsm.ipc import IpcError
from openvsm.lab.lab import Lab, ipc_call, wait_for

pytestmark = pytest.mark.integration
VEM_TYPE = "Virtual Ethernet Module"


def set_pair_keys(lab: Lab, current: Path, nxt: Path | None) -> None:
    for node in lab.nodes.values():
        text = re.sub(r"(?m)^pair_key_next = .*\n", "", node.config.read_text())
        line = f'pair_key = "{current}"\n' + (f'pair_key_next = "{nxt}"\n' if nxt else "")
        text, n = re.subn(r"(?m)^pair_key = .*\n", line, text)
        assert n == 1, text
        node.config.write_text(text)


def service_pid(lab: Lab, node: str, service: str) -> int:
    rows = ipc_call(lab.rundir(node) / "sysmgr.sock", "services")["TABLE_service"]["ROW_service"]
    return int(next(r["pid"] or 0 for r in rows if r["name"] == service))


def restart(lab: Lab, node: str, service: str) -> None:
    before = service_pid(lab, node, service)
    try:
        res = lab.cli(node, f"restart service {service}")
        assert not res["error"], res
    except IpcError:
        assert service == "cfgmgr"  # it serves the CLI: the answer goes down with it
    wait_for(
        partial(lambda b: service_pid(lab, node, service) not in (0, b), before),
        30,
        f"{service} restarted on {node}",
    )


def heartbeats(lab: Lab, node: str) -> tuple[int, int]:
    """(heartbeats received, frames dropped for a bad tag) on the control interface."""
    rows = lab.cli_json(node, "show system internal redundancy counters")
    row = next(r for r in rows["TABLE_counters"]["ROW_counters"] if r["interface"] == "control")
    return int(row["hb_recv"]), int(row.get("drop_bad_tag", 0))


def hears_again(lab: Lab, node: str, peer: str, peer_before: tuple[int, int]) -> bool:
    """The restarted ``node`` and its ``peer`` both take the other's heartbeats."""
    try:
        own, peer_now = heartbeats(lab, node), heartbeats(lab, peer)
    except Exception:
        return False
    assert own[1] == 0 and peer_now[1] == peer_before[1], (own, peer_now, peer_before)
    return own[0] >= 3 and peer_now[0] >= peer_before[0] + 3


def vem_status(lab: Lab, node: str) -> list[str]:
    rows = lab.cli_json(node, "show module")["TABLE_modinfo"]["ROW_modinfo"]
    return sorted(r["status"] for r in rows if r["modtype"] == VEM_TYPE)


def states(lab: Lab) -> dict[str, str]:
    """Each node's internal state ("" while its CLI does not answer)."""
    out = {}
    for name in lab.nodes:
        st = lab.status(name)
        out[name] = st.get("this_sup_internal_state", "") if st else ""
    return out


def on_standby(lab: Lab, standby: str, vlan: int) -> bool:
    rows = lab.cli_json(standby, "show vlan brief")["TABLE_vlanbriefxbrief"]["ROW_vlanbriefxbrief"]
    return any(int(r["vlanshowbr-vlanid"]) == vlan for r in rows)


def test_pair_key_rotation_by_service_restarts_keeps_the_pair(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=2, timers="default", rest=False)
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    paired = {active: "Active with HA standby", standby: "HA standby"}
    old, new = lab.secret_file, lab.root / "pki" / "pair-next.secret"
    subprocess.run(
        [sys.executable, "-m", "openvsm", "keys", "new", "--out", str(new)], check=True, timeout=30
    )
    assert new.stat().st_mode & 0o777 == 0o600
    wait_for(lambda: vem_status(lab, active) == ["ok", "ok"], 30, "both VEMs attached")
    vlan = 3000
    for step, (current, nxt) in enumerate(((old, new), (new, old), (new, None)), start=1):
        set_pair_keys(lab, current, nxt)
        for node, peer in ((standby, active), (active, standby)):
            before = heartbeats(lab, peer)
            restart(lab, node, "hamgr")
            wait_for(partial(hears_again, lab, node, peer, before), 30, f"heartbeats, step {step}")
            restart(lab, node, "cfgmgr")
            wait_for(lambda: states(lab) == paired, 60, f"the pair after step {step}")
            vlan += 1
            res = lab.cli(active, f"configure terminal ; vlan {vlan} ; name rotation-{step} ; end")
            assert not res["error"], res
            wait_for(partial(on_standby, lab, standby, vlan), 30, f"vlan {vlan} on the standby")
        assert vem_status(lab, active) == ["ok", "ok"], step
        assert lab.active() == active, step  # no switchover, no takeover
