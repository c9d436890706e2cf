"""Real VEM agents (backend ovs) under a real VSM pair, forwarding between namespaces (root).

Topology: the VSM pair on loopback (``Lab``, fast timers); hosts h1, h2 as
namespaces with a private OVS each, driven by an ``openvsm vem`` agent process
(it runs in our namespace and reaches the host's devices with ``ip -n``); VM
namespaces a (h1) and b (h2) in VLAN 10; an upstream switch namespace whose
OVS holds an LACP bond towards each host (two uplinks per host), so a->b
crosses h1's port-channel, the switch and h2's port-channel.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openvsm.lab.common import ipc_call
from openvsm.lab.lab import Lab, VemHandle
from openvsm.lab.netns import (
    Host,
    Topology,
    UdpStream,
    Vm,
    ovs_vem_toml,
    udp_exchange,
    unavailable_reason,
)

REASON = unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

UPLINK_PROFILE = "uplink-po"
LOSS_NOISE = 20  # datagrams of 1 kHz streams we accept as noise (process scheduling)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Fabric:
    lab: Lab
    topo: Topology
    hosts: dict[str, Host]
    vems: dict[str, VemHandle]
    vms: dict[str, Vm]

    def active(self) -> str:
        name = self.lab.active()
        assert name is not None
        return name

    def show(self, command: str) -> dict[str, Any]:
        return self.lab.cli_json(self.active(), command)

    def vem_status(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = ipc_call(self.vems[host].rundir / "vem.sock", "status")
        return result


def _configure(lab: Lab, active: str) -> None:
    for line in (
        "configure terminal",
        f"port-profile type ethernet {UPLINK_PROFILE}",
        "switchport mode trunk",
        "switchport trunk allowed vlan 10,20",
        "channel-group auto mode active",
        "state enabled",
        "no shutdown",
        "end",
    ):
        res = lab.cli(active, line)
        assert not res.get("error"), (line, res)


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    root: Path = tmp_path_factory.mktemp("vemovs")
    lab = Lab(root, vems=0, timers="fast", rest=False)
    topo = Topology()
    try:
        active = lab.start()
        _configure(lab, active)
        sw = topo.add_switch("sw")
        hosts = {n: topo.add_host(n) for n in ("h1", "h2")}
        for i, host in enumerate(hosts.values()):
            for j in (1, 2):
                topo.link(host.ns, f"eth{j}", sw.ns, f"p{i + 1}{j}")
            sw.ovs.vsctl("add-bond", "br-int", f"po{i + 1}", f"p{i + 1}1", f"p{i + 1}2",
                         "lacp=active", "bond_mode=balance-tcp",
                         "other_config:lacp-time=fast", "trunks=10,20")  # fmt: skip
        vms = {
            "a": topo.add_vm("a", hosts["h1"], "va", "10.10.0.1"),
            "b": topo.add_vm("b", hosts["h2"], "vb", "10.10.0.2"),
        }
        vems = {}
        for i, (name, host) in enumerate(hosts.items()):
            vem = lab.add_vem(i + 1)
            vem.config.write_text(
                ovs_vem_toml(
                    host,
                    host_uuid=vem.uuid,  # the UUID its host key was derived from
                    host_ip="127.0.0.1",
                    domain_id=lab.domain_id,
                    key_file=str(vem.key_file),
                    local=f"{vem.addr[0]}:{vem.addr[1]}",
                    vsms=[f"{n.vem[0]}:{n.vem[1]}" for n in lab.nodes.values()],
                    uplinks=[("eth1", UPLINK_PROFILE), ("eth2", UPLINK_PROFILE)],
                    heartbeat_ms=lab.timers["vem_heartbeat_ms"],
                    headless_ms=lab.timers["vem_headless_ms"],
                )
            )
            lab.start_vem(vem)
            vems[name] = vem
        for vm_name, vm in vms.items():
            owner = "h1" if vm_name == "a" else "h2"
            sock = vems[owner].rundir / "vem.sock"
            wait_for(sock.exists, 20, f"{owner} control socket")
            ipc_call(sock, "attach_port", vm=vm.name, port_profile="vm-net", mac=vm.mac,
                     name=vm.port)  # fmt: skip
        fab = Fabric(lab, topo, hosts, vems, vms)

        def ready() -> bool:
            rows = fab.show("show port-channel summary")["TABLE_channel"]["ROW_channel"]
            return len(rows) == 2 and all(r["status"] == "U" for r in rows)

        try:
            wait_for(ready, 30, "both modules' port-channels up on the VSM", poll=0.3)
        except AssertionError:
            for vem in vems.values():
                for log in (vem.rundir / "vem.log", vem.dir / "console.log"):
                    if log.exists():
                        print(f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-25:]))
            raise
        yield fab
    finally:
        try:
            lab.stop()
        finally:
            topo.teardown()


def _stream(fab: Fabric, seconds: float, port: int) -> UdpStream:
    return UdpStream(fab.topo, fab.vms["a"], fab.vms["b"], rate=1000, duration=seconds, port=port)


def test_vms_on_different_hosts_exchange_udp(fabric: Fabric) -> None:
    assert udp_exchange(fabric.topo, fabric.vms["a"], fabric.vms["b"]) == 3
    for host in ("h1", "h2"):
        st = fabric.vem_status(host)
        assert st["backend"] == "ovs" and st["state"] == "attached"
        assert st["datapath_errors"] == [] and st["config_errors"] == []


def test_show_port_channel_summary_lists_the_bundles(fabric: Fabric) -> None:
    rows = fabric.show("show port-channel summary")["TABLE_channel"]["ROW_channel"]
    assert sorted(r["module"] for r in rows) == [3, 4]
    for row in rows:
        assert row["prtcl"] == "LACP" and row["status"] == "U"
        members = {m["port"]: m["port_status"] for m in row["TABLE_member"]["ROW_member"]}
        assert members == {"eth1": "P", "eth2": "P"}
    text = fabric.lab.cli(fabric.active(), "show port-channel summary")["output"]
    assert "Po1(SU)" in text and "eth1(P)" in text, text
    nbrs = fabric.show("show lacp neighbor")["TABLE_lacp_neighbor"]["ROW_lacp_neighbor"]
    assert len(nbrs) == 4 and all(n["partner_system_id"] for n in nbrs)
    counters = fabric.show("show lacp counters")["TABLE_lacp_counters"]["ROW_lacp_counters"]
    assert len(counters) == 4 and all(c["lacpdus_recv"] > 0 for c in counters)


def test_bad_input_is_reported_and_forwarding_continues(fabric: Fabric) -> None:
    lab, active = fabric.lab, fabric.active()
    try:
        for line in ("configure terminal", f"port-profile {UPLINK_PROFILE}",
                     "switchport trunk allowed vlan 10,20,77", "end"):  # fmt: skip
            assert not lab.cli(active, line).get("error"), line

        def reported() -> list[str]:
            errors = ipc_call(lab.rundir(active) / "vemmgr.sock", "vem_errors")
            rows = errors["TABLE_vem_error"]["ROW_vem_error"]
            return [r["error"] for r in rows if "[77]" in r["error"]]

        errors = wait_for(reported, 10, "the unknown VLAN reported to the VSM")
        print(f"\nVSM shows: {errors[0]}")
        traces = ipc_call(lab.rundir(active) / "vemmgr.sock", "traces")["traces"]
        assert any("[77]" in t for t in traces)
        assert any("[77]" in e for e in fabric.vem_status("h1")["config_errors"])
        assert udp_exchange(fabric.topo, fabric.vms["a"], fabric.vms["b"]) == 3
    finally:
        for line in ("configure terminal", f"port-profile {UPLINK_PROFILE}",
                     "switchport trunk allowed vlan 10,20", "end"):  # fmt: skip
            lab.cli(active, line)


def _vem_errors(fab: Fabric, module: int) -> list[str]:
    data = ipc_call(fab.lab.rundir(fab.active()) / "vemmgr.sock", "vem_errors")
    return [r["error"] for r in data["TABLE_vem_error"]["ROW_vem_error"] if r["module"] == module]


def _module_of(fab: Fabric, vem: VemHandle) -> int:
    def number() -> int:
        st = _status_or_none(vem)
        return int(st["module"]) if st and st.get("state") == "attached" else 0

    result: int = wait_for(number, 20, f"{vem.host} attached")
    return result


def test_channel_errors_and_ovs_down_surface_on_the_vsm(fabric: Fabric) -> None:
    """h3: an uplink named in two channel-groups, a 17-member LACP channel; h4: no OVS.

    Both are errors on the VSM; h3 keeps forwarding its VM over its plain uplink."""
    lab, topo, active = fabric.lab, fabric.topo, fabric.active()
    for line in (
        "configure terminal",
        "port-profile type ethernet uplink-plain", "switchport mode trunk",
        "switchport trunk allowed vlan 10", "state enabled", "no shutdown", "exit",
        "port-profile type ethernet uplink-big", "switchport mode trunk",
        "switchport trunk allowed vlan 10", "channel-group auto mode active",
        "state enabled", "no shutdown", "end",
    ):  # fmt: skip
        assert not lab.cli(active, line).get("error"), line
    h3 = topo.add_host("h3")
    sw_ns = f"{topo.prefix}-sw"
    topo.link(h3.ns, "eth1", sw_ns, "p31")
    fabric.topo.hosts["sw"].ovs.vsctl("add-port", "br-int", "p31", "trunks=10")
    big = [f"x{i}" for i in range(1, 18)]
    # (the devices need not exist: the 17-member channel is refused before OVS is touched)
    c = topo.add_vm("c", h3, "vc", "10.10.0.3")
    uplinks = [("eth1", "uplink-plain"), ("eth1", UPLINK_PROFILE)] + [
        (d, "uplink-big") for d in big
    ]
    vsms = [f"{n.vem[0]}:{n.vem[1]}" for n in lab.nodes.values()]
    v3, v4 = lab.add_vem(3), lab.add_vem(4)
    common: dict[str, Any] = {
        "host_ip": "127.0.0.1",
        "domain_id": lab.domain_id,
        "vsms": vsms,
        "heartbeat_ms": lab.timers["vem_heartbeat_ms"],
        "headless_ms": lab.timers["vem_headless_ms"],
    }
    v3.config.write_text(ovs_vem_toml(h3, host_uuid=v3.uuid, local=f"{v3.addr[0]}:{v3.addr[1]}",
                                      key_file=str(v3.key_file), uplinks=uplinks,
                                      **common))  # fmt: skip
    v4.config.write_text(
        ovs_vem_toml(
            h3,
            host_uuid=v4.uuid,
            local=f"{v4.addr[0]}:{v4.addr[1]}",
            key_file=str(v4.key_file),
            **common,
        ).replace(str(h3.ovs.directory), "/nonexistent/openvsm-ovs")
    )
    try:
        for vem in (v3, v4):
            lab.start_vem(vem)
        wait_for((v3.rundir / "vem.sock").exists, 20, "h3 agent")
        ipc_call(v3.rundir / "vem.sock", "attach_port", vm="c", port_profile="vm-net",
                 mac=c.mac, name="vc")  # fmt: skip
        m3, m4 = _module_of(fabric, v3), _module_of(fabric, v4)

        def h3_errors() -> list[str]:
            errors = _vem_errors(fabric, m3)
            dup = [e for e in errors if "eth1" in e and "already" in e]
            limit = [e for e in errors if "17 members" in e]
            return dup + limit if dup and limit else []

        errors = wait_for(h3_errors, 15, "h3's channel errors on the VSM")
        down = wait_for(lambda: _vem_errors(fabric, m4), 15, "h4's OVS error on the VSM")
        print("\nVSM shows:\n  " + "\n  ".join([*errors, *down]))
        assert any("OVS is not running" in e for e in down)
        assert udp_exchange(topo, c, fabric.vms["a"], timeout=6.0) == 3
        traces = ipc_call(lab.rundir(active) / "vemmgr.sock", "traces")["traces"]
        assert any("17 members" in t for t in traces)
        log = (v3.rundir / "vem.log").read_text()
        assert "17 members" in log and "already in port profile" in log
    finally:
        for vem in (v3, v4):
            lab.kill_vem(vem, signal.SIGKILL)
            lab.vems.remove(vem)


def test_vsm_failover_during_a_stream(fabric: Fabric) -> None:
    old = fabric.active()
    stream = _stream(fabric, 6.0, 7201)
    time.sleep(1.5)
    fabric.lab.kill_node(old, signal.SIGKILL)
    result = stream.result()
    new = wait_for(fabric.lab.active, 20, "the standby to take over")
    assert new != old
    wait_for(
        lambda: all(fabric.vem_status(h)["state"] == "attached" for h in ("h1", "h2")),
        20,
        "the VEMs to attach to the new active",
    )
    print(f"\nVSM failover ({old} SIGKILLed): sent {result.sent}, lost {result.lost}, "
          f"max gap {result.max_gap_ms:.1f} ms")  # fmt: skip
    assert result.sent > 4000
    assert result.lost <= LOSS_NOISE, result


def test_headless_and_agent_restart_keep_forwarding(fabric: Fabric) -> None:
    lab = fabric.lab
    stream = _stream(fabric, 8.0, 7202)
    time.sleep(1.0)
    for name in ("primary", "secondary"):
        lab.kill_node(name, signal.SIGKILL)
    wait_for(lambda: fabric.vem_status("h1")["headless"], 10, "h1 headless")
    vem = fabric.vems["h1"]
    lab.kill_vem(vem, signal.SIGKILL)
    time.sleep(0.5)
    lab.start_vem(vem)
    wait_for(lambda: _status_or_none(vem) is not None, 15, "the restarted h1 agent")
    result = stream.result()
    status = _status_or_none(vem)
    assert status is not None
    print(f"\nheadless + agent SIGKILL/restart: sent {result.sent}, lost {result.lost}, "
          f"max gap {result.max_gap_ms:.1f} ms; restarted agent: {status['state']}, "
          f"errors {status['datapath_errors']}")  # fmt: skip
    assert status["datapath_errors"] == []
    assert result.sent > 6000
    assert result.lost <= LOSS_NOISE, result
    assert udp_exchange(fabric.topo, fabric.vms["a"], fabric.vms["b"]) == 3


def _status_or_none(vem: VemHandle) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = ipc_call(vem.rundir / "vem.sock", "status", timeout=2.0)
        return result
    except Exception:
        return None


def _dump(fab: Fabric) -> str:  # debugging aid
    return json.dumps({h: fab.vem_status(h) for h in fab.vems}, indent=1)
