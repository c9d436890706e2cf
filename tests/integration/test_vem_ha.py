"""VEMs across VSM failures, as real processes on loopback (issue: VEM agent and
module management; seed "VSM-VEM Communication Loss", DESIGN §5).

A pair of VSM nodes and ``openvsm vem`` agents (memory datapath), fast timer
profile: 100 ms heartbeats, VSM loss 600 ms, VEM headless after 1.5 s. Where a
VEM is attached is read from both ends: the new active's ``show module`` and
the VEM's own ``status`` (its control socket), whose ``active`` is the address
it heartbeats. A module's "ok" on a node that just became active is only the
replicated state; the VEM side says whether it really attached there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab, VemHandle

pytestmark = pytest.mark.integration

SETTLE = 20.0  # generous deadline for a loaded machine; order matters, not speed
VEM_TYPE = "Virtual Ethernet Module"
HEADLESS_AFTER = 1.5  # the fast profile's vem_headless_ms

# host uuid -> (module number, status)
ModuleMap = dict[str, tuple[int, str]]


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def vem_modules(lab: Lab, node: str) -> ModuleMap:
    """VEM rows of ``show module | json`` keyed by host UUID."""
    data = lab.cli_json(node, "show module")
    info = {
        r["modinf"]: r for r in data["TABLE_modinfo"]["ROW_modinfo"] if r["modtype"] == VEM_TYPE
    }
    uuids = {r["modsrv"]: r["srvuuid"] for r in data["TABLE_modsrvinfo"]["ROW_modsrvinfo"]}
    return {uuids[n]: (int(n), str(r["status"])) for n, r in info.items()}


def veth_ports(lab: Lab, node: str) -> dict[str, tuple[int, str, str]]:
    """``show interface virtual | json``: vEth name -> (module, owner VM, port profile)."""
    data = lab.cli_json(node, "show interface virtual")
    return {
        r["interface"]: (int(r["module"]), str(r["owner"]), str(r["port_profile"]))
        for r in data["TABLE_interface"]["ROW_interface"]
    }


def vem_status(vem: VemHandle) -> dict[str, Any]:
    status: dict[str, Any] = ipc_call(vem.rundir / "vem.sock", "status")
    return status


def vem_ctl_status(vem: VemHandle) -> dict[str, Any]:
    """The same through the operator's tool, ``openvsm vem-ctl --run-dir D status``."""
    out = subprocess.run(
        [sys.executable, "-m", "openvsm", "vem-ctl", "--run-dir", str(vem.rundir), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    status: dict[str, Any] = json.loads(out)
    return status


def vsm_addresses(lab: Lab, vem: VemHandle) -> dict[str, str]:
    """node -> "ip:port" the VEM talks to for that node (a proxy socket when proxied)."""
    if not vem.links:
        return {name: f"{n.vem[0]}:{n.vem[1]}" for name, n in lab.nodes.items()}
    links = {link["name"]: link for link in lab.proxy("links")}
    out = {}
    for node, name in vem.links.items():
        host, port = links[name]["b_listen"]  # the VEM sends to b_listen
        out[node] = f"{host}:{port}"
    return out


def attached_to(lab: Lab, vem: VemHandle) -> str | None:
    """The node this VEM says it is attached to (None: booting, switching or headless)."""
    st = vem_status(vem)
    if st["state"] != "attached":
        return None
    by_addr = {addr: node for node, addr in vsm_addresses(lab, vem).items()}
    return by_addr.get(str(st["active"]))


def all_attached(lab: Lab, node: str, vems: list[VemHandle]) -> bool:
    mods = vem_modules(lab, node)
    return all(mods.get(v.uuid, (0, ""))[1] == "ok" and attached_to(lab, v) == node for v in vems)


def wait_all_attached(lab: Lab, node: str, vems: list[VemHandle], what: str) -> None:
    wait_for(lambda: all_attached(lab, node, vems), SETTLE, what, interval=0.2)


def test_kill_active_vems_reattach_with_same_modules_and_ports(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=10, timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    wait_all_attached(lab, active, lab.vems, "10 VEMs attached to the active")
    before = vem_modules(lab, active)
    assert set(before) == {v.uuid for v in lab.vems}
    assert sorted(n for n, _ in before.values()) == list(range(3, 13))
    assert {s for _, s in before.values()} == {"ok"}
    veths = veth_ports(lab, active)
    assert len(veths) == 20
    assert {m for m, _, _ in veths.values()} == {n for n, _ in before.values()}
    owners = {owner for _, owner, _ in veths.values()}
    assert owners == {f"vm-{v.host}-{i}" for v in lab.vems for i in (1, 2)}

    # Before anything fails, the standby already lists the VEMs and their ports:
    # it serves `show module` from the replicated module/veth objects.
    wait_for(lambda: vem_modules(lab, standby) == before, SETTLE, "the standby to list the VEMs")
    wait_for(lambda: veth_ports(lab, standby) == veths, SETTLE, "the standby to list the vEths")
    switch_requests = {v.host: vem_status(v)["counters"]["switch_requests"] for v in lab.vems}

    lab.kill_node(active)
    wait_for(lambda: lab.active() == standby, SETTLE, "the standby to take over")
    wait_all_attached(lab, standby, lab.vems, "every VEM to attach to the new active")

    after = vem_modules(lab, standby)
    assert after == before  # same module number per host UUID, all ok
    assert veth_ports(lab, standby) == veths  # same names, modules, owners, profiles
    for vem in lab.vems:
        st = vem_status(vem)
        assert st["module"] == before[vem.uuid][0]
        assert st["ports"] == 2
        # The new active broadcast its switch request to every known VEM.
        assert st["counters"]["switch_requests"] > switch_requests[vem.host], vem.host
    counters = lab.cli_json(standby, "show module vem counters")
    rows = counters["TABLE_vem_counters"]["ROW_vem_counters"]
    assert all(r["attaches"] >= 1 for r in rows), rows
    assert counters["table"]["switch_requests_sent"] >= 10


def test_switchover_moves_vems_keeping_module_numbers(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(vems=6, timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    wait_all_attached(lab, active, lab.vems, "6 VEMs attached to the active")
    before = vem_modules(lab, active)
    veths = veth_ports(lab, active)
    wait_for(lambda: vem_modules(lab, standby) == before, SETTLE, "the standby to list the VEMs")

    res = lab.cli(active, "system switchover")
    assert not res["error"], res["output"]
    wait_for(lambda: lab.active() == standby, SETTLE, "the switchover")
    wait_all_attached(lab, standby, lab.vems, "every VEM to attach to the new active")
    assert vem_modules(lab, standby) == before
    assert veth_ports(lab, standby) == veths
    for vem in lab.vems:
        assert vem_status(vem)["counters"]["switch_requests"] >= 1, vem.host

    # The old active reloads into standby and lists the same modules; a switchover
    # back brings every VEM home, numbers still unchanged.
    assert lab.wait_pair() == standby
    wait_for(lambda: vem_modules(lab, active) == before, SETTLE, "the new standby's module list")
    res = lab.cli(standby, "system switchover")
    assert not res["error"], res["output"]
    wait_for(lambda: lab.active() == active, SETTLE, "the switchover back")
    wait_all_attached(lab, active, lab.vems, "every VEM to attach to the original node")
    assert vem_modules(lab, active) == before
    assert veth_ports(lab, active) == veths


def test_vem_cut_off_from_new_active_goes_headless_then_attaches_on_heal(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=2, timers="fast", rest=False, proxy=True, vem_proxy=1)
    active = lab.start()
    standby = other(active)
    cut = lab.proxied_vems[0]
    lab.launch_vems([cut])
    wait_all_attached(lab, active, lab.vems, "all VEMs (one behind the proxy) attached")
    number = vem_modules(lab, active)[cut.uuid][0]
    wait_for(
        lambda: vem_modules(lab, standby).get(cut.uuid) == (number, "ok"),
        SETTLE,
        "the standby to list the proxied VEM",
    )

    def forwarding_ports() -> list[dict[str, Any]]:
        ports: list[dict[str, Any]] = ipc_call(cut.rundir / "vem.sock", "ports")["ports"]
        return ports if len(ports) == 2 and all(p["forwarding"] for p in ports) else []

    ports_before = wait_for(forwarding_ports, SETTLE, "the proxied VEM's ports to forward")

    # The VEM loses the node that is about to become active, then its own active dies.
    lab.cut_vem(cut, standby)
    lab.kill_node(active)
    t_kill = time.monotonic()
    wait_for(lambda: lab.active() == standby, SETTLE, "the standby to take over")
    others = [v for v in lab.vems if v is not cut]
    wait_all_attached(lab, standby, others, "the reachable VEMs to attach to the new active")

    wait_for(lambda: vem_status(cut)["state"] == "headless", SETTLE, "the cut VEM to go headless")
    assert time.monotonic() - t_kill >= HEADLESS_AFTER * 0.9  # not before its headless timer
    st = vem_ctl_status(cut)
    assert st["state"] == "headless" and st["headless"] is True
    assert st["ports"] == 2 and st["module"] == number
    # Headless keeps forwarding with its last configuration.
    assert ipc_call(cut.rundir / "vem.sock", "ports")["ports"] == ports_before
    wait_for(
        lambda: vem_modules(lab, standby).get(cut.uuid) == (number, "offline"),
        SETTLE,
        "the new active to mark the unreachable module offline",
    )
    time.sleep(HEADLESS_AFTER)  # still partitioned: it stays headless, attached nowhere
    assert vem_status(cut)["state"] == "headless"
    assert vem_modules(lab, standby)[cut.uuid] == (number, "offline")

    lab.heal_vem(cut, standby)
    wait_all_attached(lab, standby, lab.vems, "the healed VEM to attach to the new active")
    assert vem_modules(lab, standby)[cut.uuid] == (number, "ok")
    st = vem_status(cut)
    assert st["module"] == number
    assert st["counters"]["headless_events"] >= 1
    assert st["counters"]["switches"] == 0  # it never heard a switch request: headless path
    traces = st["traces"]
    headless = next(i for i, t in enumerate(traces) if "headless:" in t)
    attached = max(i for i, t in enumerate(traces) if "attached to" in t)
    assert headless < attached and "after headless" in traces[attached], traces
    assert ipc_call(cut.rundir / "vem.sock", "ports")["ports"] == ports_before


def test_wrong_host_key_and_module_limit_are_refused_and_counted(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=3, timers="fast", rest=False, module_limit=3)
    active = lab.start()
    wait_all_attached(lab, active, lab.vems, "3 VEMs attached")
    before = vem_modules(lab, active)

    # A host holding another host's key (a copied key file): every frame claims
    # its own host UUID and fails that host's key.
    intruder = lab.add_vem(len(lab.vems) + 1)
    text = intruder.config.read_text()
    assert lab.secret not in text and lab.vem_key not in text  # only its own key file
    assert intruder.key_file is not None and lab.vems[0].key_file is not None
    intruder.key_file.write_bytes(lab.vems[0].key_file.read_bytes())
    lab.start_vem(intruder)

    def bad_keys() -> int:
        counters = lab.cli_json(active, "show module vem counters")
        return int(counters["drops"].get("bad_host_key", 0))

    wait_for(lambda: bad_keys() >= 5, SETTLE, "frames under another host's key to be counted")
    st = vem_status(intruder)
    assert st["state"] == "booting" and st["module"] == 0
    assert st["counters"]["attach_sent"] >= 5
    assert vem_modules(lab, active) == before

    # A fourth host over module_limit 3: refused with the reason, counted both ends.
    extra = lab.add_vem(len(lab.vems) + 1)
    lab.start_vem(extra)
    wait_for(
        lambda: vem_status(extra)["counters"]["attach_refused"] >= 2,
        SETTLE,
        "the fourth host to be refused",
    )
    st = vem_status(extra)
    assert st["state"] == "booting" and st["module"] == 0
    assert any("attach refused" in t and "module limit 3 reached" in t for t in st["traces"])
    counters = lab.cli_json(active, "show module vem counters")
    assert counters["table"]["attach_refused"] >= 2
    vemmgr_traces = ipc_call(lab.rundir(active) / "vemmgr.sock", "traces")["traces"]
    assert any(extra.uuid in t and "module limit 3 reached" in t for t in vemmgr_traces)
    assert vem_modules(lab, active) == before
    assert bad_keys() > 5  # the intruder keeps trying and keeps being dropped
    assert vem_status(intruder)["state"] == "booting"
