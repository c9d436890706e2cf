"""Data-plane benchmark: openvsm-managed OVS vs a hand-built OVS bridge (root).

    sudo .venv/bin/python bench/dataplane.py [--seconds 5] [--rounds 2]

Two "hosts" (namespaces, a private userspace-datapath OVS each) joined by one
veth "cable"; two "VMs" per host: one pair in VLAN 10, one pair in a VXLAN
segment (VNI 5000, VTEPs on the bridges' internal ports). The same topology is
built twice in the same run:

- managed: br-int converged by ``OvsBackend.apply`` (what the VEM agent does:
  access ports, trunk uplink, our OpenFlow pipeline for the VXLAN segment);
- hand: br-int set up with ovs-vsctl only (access ports tag=10, the uplink a
  plain port, a vxlan port with key=5000 and the VM port untagged), forwarded
  by NORMAL.

iperf3 TCP and UDP (unlimited rate, 1400-byte datagrams; delivered rate)
between the VMs, rounds interleaved managed/hand; the best round of each is
compared: ratio = managed / hand (goal >= 0.95). VXLAN VMs use MTU 1450.

Then the LACP member-failure outage: a host with a 4-link LACP port-channel
(``OvsBackend``) to an upstream-switch namespace (an OVS LACP bond), a 1 kHz
UDP probe stream, one member's cable pulled at the switch: lost probes and
the longest gap between two received probes (= outage).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.netns import Host, Topology, UdpStream, Vm, netns_exec, sh, unavailable_reason
from openvsm.vem.model import DesiredState, PortChannelState, VethState

SAME_RUN_BASELINE = "the hand-built OVS topology of the same run (managed against hand)"

VNI = 5000


@dataclass
class Pair:
    label: str
    topo: Topology
    vlan: tuple[Vm, Vm]
    vxlan: tuple[Vm, Vm]


def _veth(vm: Vm, **kw: Any) -> VethState:
    return VethState(name=vm.port, vm=vm.name, mac=vm.mac, port_profile="bench", **kw)


def build(topo: Topology, label: str, managed: bool, net: int) -> Pair:
    h1, h2 = topo.add_host(f"{label}1"), topo.add_host(f"{label}2")
    topo.link(h1.ns, "eth1", h2.ns, "eth1")
    vteps = (f"192.168.{net}.1", f"192.168.{net}.2")
    for host, ip in zip((h1, h2), vteps, strict=True):
        host.ip("addr", "add", f"{ip}/24", "dev", "br-int")
    a = topo.add_vm(f"{label}a", h1, "va", f"10.{net}.0.1")
    b = topo.add_vm(f"{label}b", h2, "vb", f"10.{net}.0.2")
    ax = topo.add_vm(f"{label}ax", h1, "vax", f"10.{net + 100}.0.1")
    bx = topo.add_vm(f"{label}bx", h2, "vbx", f"10.{net + 100}.0.2")
    for vm in (ax, bx):
        sh("ip", "-n", vm.ns, "link", "set", "eth0", "mtu", "1450")
    hosts: tuple[Host, Host] = (h1, h2)
    for i, (host, vm, vmx) in enumerate(zip(hosts, (a, b), (ax, bx), strict=True)):
        local, remote = vteps[i], vteps[1 - i]
        if managed:
            backend = host.backend(uplinks=("eth1",))
            errors = backend.apply(
                DesiredState(
                    ports=(_veth(vm, access_vlan=10), _veth(vmx, vni=VNI)),
                    vxlan_peers=(remote,),
                    vnis=(VNI,),
                    local_vtep=local,
                )
            )
            if errors:
                raise SystemExit(f"{host.name}: {errors}")
        else:
            host.ovs.vsctl("add-port", "br-int", "eth1", "--",
                           "add-port", "br-int", vm.port, "tag=10", "--",
                           "add-br", "br-x", "--", "set", "bridge", "br-x",
                           "datapath_type=netdev", "--",
                           "add-port", "br-x", vmx.port, "--",
                           "add-port", "br-x", "vx", "--", "set", "interface", "vx",
                           "type=vxlan", f"options:remote_ip={remote}",
                           f"options:local_ip={local}", f"options:key={VNI}")  # fmt: skip
    return Pair(label, topo, (a, b), (ax, bx))


def iperf(pair: Pair, vms: tuple[Vm, Vm], udp: bool, seconds: float) -> float:
    """Delivered bits/s from vms[0] to vms[1]."""
    src, dst = vms
    server = pair.topo.spawn(dst.ns, "iperf3", "-s", "-1", "-B", dst.ip)
    time.sleep(0.3)
    args = ["iperf3", "-c", dst.ip, "-t", str(seconds), "-J"]
    if udp:
        args += ["-u", "-b", "0", "-l", "1400"]
    try:
        out = sh(*netns_exec(src.ns, *args), check=False)
    finally:
        server.communicate(timeout=seconds + 10)
    try:
        data = json.loads(out)
    except ValueError:
        return 0.0
    end = data.get("end", {})
    if udp:
        s = end.get("sum", {})
        return float(s.get("bits_per_second", 0.0)) * (1 - float(s.get("lost_percent", 0.0)) / 100)
    return float(end.get("sum_received", {}).get("bits_per_second", 0.0))


def throughput(seconds: float, rounds: int) -> None:
    topo = Topology()
    try:
        pairs = {"managed": build(topo, "m", True, 21), "hand": build(topo, "h", False, 22)}
        # warm up (ARP, MAC learning, learned VXLAN flows)
        for pair in pairs.values():
            for vms in (pair.vlan, pair.vxlan):
                iperf(pair, vms, udp=False, seconds=1)
        results: dict[tuple[str, str, str], list[float]] = {}
        for r in range(rounds):
            for seg in ("vlan", "vxlan"):
                for proto in ("tcp", "udp"):
                    order = ("managed", "hand") if r % 2 == 0 else ("hand", "managed")
                    for label in order:
                        pair = pairs[label]
                        vms = pair.vlan if seg == "vlan" else pair.vxlan
                        bps = iperf(pair, vms, udp=proto == "udp", seconds=seconds)
                        results.setdefault((seg, proto, label), []).append(bps)
        print(f"\niperf3 {seconds:g} s x {rounds} round(s), best round (Gbit/s):")
        print(f"{'segment':8} {'proto':5} {'managed':>9} {'hand':>9} {'ratio':>7}")
        for seg in ("vlan", "vxlan"):
            for proto in ("tcp", "udp"):
                m = max(results[(seg, proto, "managed")])
                h = max(results[(seg, proto, "hand")])
                ratio = m / h if h else 0.0
                flag = "" if ratio >= 0.95 else "  (< 0.95)"
                print(f"{seg:8} {proto:5} {m / 1e9:9.3f} {h / 1e9:9.3f} {ratio:7.3f}{flag}")
                print(same_run_ratio(f"{seg} {proto} Gbit/s managed", m / 1e9, h / 1e9, "hand"))
        print("all rounds:", json.dumps({"/".join(k): [round(v / 1e9, 3) for v in vs]
                                         for k, vs in results.items()}))  # fmt: skip
    finally:
        topo.teardown()


def lacp_outage(duration: float = 4.0) -> None:
    topo = Topology()
    try:
        host, sw = topo.add_host("lh"), topo.add_switch("lsw")
        links = [f"l{i}" for i in range(1, 5)]
        for link in links:
            topo.link(host.ns, link, sw.ns, link)
        c = topo.add_vm("lc", host, "vc", "10.30.0.1")
        u = topo.add_vm("lu", sw, "u0", "10.30.0.2")
        sw.ovs.vsctl("add-port", "br-int", "u0", "tag=10")
        sw.ovs.vsctl("add-bond", "br-int", "po1", *links, "lacp=active",
                     "bond_mode=balance-tcp", "other_config:lacp-time=fast")  # fmt: skip
        backend = host.backend()
        pc = PortChannelState(number=1, members=tuple(links), lacp_mode="active")
        errors = backend.apply(DesiredState(ports=(_veth(c, access_vlan=10),), port_channels=(pc,)))
        if errors:
            raise SystemExit(f"lacp: {errors}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = sw.ovs.appctl("bond/show", "po1", check=False)
            if text.count(": enabled") >= 4:
                break
            backend.poll()
            time.sleep(0.2)
        else:
            raise SystemExit("LACP bundle did not form")
        results = []
        for link in links[:2]:
            stream = UdpStream(topo, c, u, rate=1000, duration=duration, port=7300)
            time.sleep(1.5)
            sw.ip("link", "set", link, "down")  # the cable is pulled at the switch
            t0 = time.monotonic()
            while time.monotonic() - t0 < duration - 1.5:
                backend.poll()  # what the agent does every 250 ms
                time.sleep(0.25)
            res = stream.result()
            results.append(res)
            print(f"LACP member {link} pulled (4-link bundle, 1 kHz probe): sent {res.sent}, "
                  f"lost {res.lost}, longest gap {res.max_gap_ms:.1f} ms")  # fmt: skip
            sw.ip("link", "set", link, "up")
            time.sleep(2.0)
    finally:
        topo.teardown()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-lacp", action="store_true")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"bench/dataplane.py: {reason}", file=sys.stderr)
        return 2
    if sh("sh", "-c", "command -v iperf3 || true").strip() == "":
        print(
            "bench/dataplane.py: iperf3 not found (make system-deps installs it, as root)",
            file=sys.stderr,
        )
        return 2
    if not args.skip_throughput:
        throughput(args.seconds, args.rounds)
    if not args.skip_lacp:
        lacp_outage()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
