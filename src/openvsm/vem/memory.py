"""The ``memory`` datapath backend: the VEM datapath model held as data.

Same model as the ``ovs`` backend, no packets: ports, VLAN membership, a
forwarding table of the vEth MAC addresses (static entries per VLAN or VNI),
VXLAN peers, uplinks and port-channels (members chosen by the same
``lacp.PortChannelSelector``, every link taken as up and in sync). Used by
unit tests, ``vem-sim`` and the loopback lab.

``apply`` converges to the desired state and is idempotent: a port that
already matches is left untouched (``changes`` counts only real changes). A
port with invalid settings is reported as an error and left as it was; the
other errors are the ``ovs`` backend's (a VXLAN peer that is not IPv4, a vEth
on a segment that is not configured, a port-channel ``lacp`` refuses).

``trace`` answers what the ``ovs`` backend's datapath (OVS NORMAL plus the
flows of vem/ovs.py) would do with one frame: the scenario table in
tests/vem_scenarios.py checks that both answer the same.
"""

from __future__ import annotations

from collections.abc import Iterator

from openvsm.vem.lacp import (
    LacpConfigError,
    MemberStatus,
    PortChannelSelector,
    member_configs,
)
from openvsm.vem.model import (
    DesiredState,
    Egress,
    PortChannelState,
    Probe,
    VethState,
    forwarding,
    segment_errors,
    uplink_trunks,
    veth_errors,
    vxlan_peers,
    vxlan_port_name,
)


def _port_errors(port: VethState) -> list[str]:
    errors: list[str] = []
    if not port.name or len(port.name) > 64:
        errors.append(f"port name {port.name!r} is invalid")
    return errors + veth_errors(port)


def _bundle(pc: PortChannelState) -> tuple[str, ...]:
    """The members the selector bundles when every link is up and in sync;
    raises LacpConfigError for a channel ``lacp`` refuses."""
    selector = PortChannelSelector(
        pc.number, member_configs(pc.members, pc.port_priorities), pc.lacp_mode
    )
    up = {m: MemberStatus(name=m, link_up=True, lacp_current=True) for m in pc.members}
    return tuple(sorted(selector.update(0.0, up).active))


class MemoryBackend:
    name = "memory"

    def __init__(self, uplinks: tuple[str, ...] | list[str] = ()) -> None:
        self.uplinks = tuple(uplinks)  # uplink devices (trunks of every VLAN unless bundled)
        self.ports: dict[str, VethState] = {}
        self.port_channels: dict[int, PortChannelState] = {}
        self.bundles: dict[int, tuple[str, ...]] = {}
        self.vxlan_peers: tuple[str, ...] = ()
        self.vnis: tuple[int, ...] = ()
        self.local_vtep = ""
        self.changes = 0  # datapath operations performed (adds, modifies, removes)
        self.applies = 0
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def apply(self, desired: DesiredState) -> list[str]:
        self.applies += 1
        errors: list[str] = []
        self._apply_ports(desired, errors)
        bundles: dict[int, tuple[str, ...]] = {}
        for pc in desired.port_channels:
            try:
                bundles[pc.number] = _bundle(pc)
            except LacpConfigError as exc:
                errors.append(f"port-channel{pc.number}: {exc}")
        channels = {pc.number: pc for pc in desired.port_channels}
        if (channels, bundles) != (self.port_channels, self.bundles):
            self.port_channels, self.bundles = channels, bundles
            self.changes += 1
        peers = tuple(sorted(set(vxlan_peers(desired, errors))))
        vnis = tuple(sorted({v for v in desired.vnis if 4096 <= v <= 16000000}))
        errors += segment_errors(list(self.ports.values()), vnis)
        if (peers, vnis, desired.local_vtep) != (self.vxlan_peers, self.vnis, self.local_vtep):
            self.vxlan_peers, self.vnis, self.local_vtep = peers, vnis, desired.local_vtep
            self.changes += 1
        return errors

    def _apply_ports(self, desired: DesiredState, errors: list[str]) -> None:
        wanted: dict[str, VethState] = {}
        for port in desired.ports:
            if port.name in wanted:
                errors.append(f"{port.name}: duplicate port name")
                continue
            port_errors = _port_errors(port)
            if port_errors:
                errors += port_errors
                if port.name in self.ports:
                    wanted[port.name] = self.ports[port.name]  # left as it was
                continue
            wanted[port.name] = port
        for name in list(self.ports):
            if name not in wanted:
                del self.ports[name]
                self.changes += 1
        for name, port in wanted.items():
            if self.ports.get(name) != port:
                self.ports[name] = port
                self.changes += 1

    def observed(self) -> DesiredState:
        return DesiredState(
            ports=tuple(self.ports[n] for n in sorted(self.ports)),
            port_channels=tuple(self.port_channels[n] for n in sorted(self.port_channels)),
            vxlan_peers=self.vxlan_peers,
            vnis=self.vnis,
            local_vtep=self.local_vtep,
        )

    def forwarding(self, port: VethState) -> bool:
        return forwarding(port) and (not port.vni or port.vni in self.vnis)

    def vlan_members(self) -> dict[int, list[str]]:
        """VLAN -> ports that forward in it (access or trunk)."""
        members: dict[int, list[str]] = {}
        for name in sorted(self.ports):
            port = self.ports[name]
            if not self.forwarding(port) or port.vni:
                continue
            vlans = port.trunk_vlans if port.mode == "trunk" else (port.access_vlan,)
            for vlan in vlans:
                members.setdefault(vlan, []).append(name)
        return members

    def fdb(self) -> dict[tuple[str, int], str]:
        """Static forwarding entries: (MAC, VLAN or VNI) -> port."""
        table: dict[tuple[str, int], str] = {}
        for name in sorted(self.ports):
            port = self.ports[name]
            if not self.forwarding(port):
                continue
            if port.vni:
                table[(port.mac, port.vni)] = name
            elif port.mode == "access":
                table[(port.mac, port.access_vlan)] = name
            else:
                for vlan in port.trunk_vlans:
                    table[(port.mac, vlan)] = name
        return table

    # -- what the datapath does (the Observable protocol) --

    def admin_up(self, name: str) -> bool | None:
        port = self.ports.get(name)
        return None if port is None else port.enabled

    def bundle(self, number: int) -> tuple[str, ...]:
        return self.bundles.get(number, ())

    def trace(self, probe: Probe) -> frozenset[Egress]:
        port = self.ports.get(probe.in_port)
        if port is not None:
            return frozenset(self._from_veth(port, probe))
        if probe.in_port in {vxlan_port_name(p) for p in self.vxlan_peers}:
            if probe.vni not in self.vnis:
                return frozenset()
            return frozenset(self._segment(probe, probe.vni, to_tunnels=False))
        trunks = dict(self._trunks())
        ingress = next((f"po{n}" for n, m in self.bundles.items() if probe.in_port in m), "")
        ingress = ingress or probe.in_port
        allowed = trunks.get(ingress, ())
        if ingress not in trunks or (allowed and probe.vlan not in allowed):
            return frozenset()
        return frozenset(self._flood(probe.vlan, ingress))

    def _from_veth(self, port: VethState, probe: Probe) -> Iterator[Egress]:
        if not self.forwarding(port) or not self._admitted(port, probe.src):
            return
        if port.vni:
            yield from self._segment(probe, port.vni, to_tunnels=True)
        elif port.mode == "trunk":
            if probe.vlan in port.trunk_vlans:
                yield from self._flood(probe.vlan, port.name)
        elif probe.vlan == 0:
            yield from self._flood(port.access_vlan, port.name)

    def _admitted(self, port: VethState, src: str) -> bool:
        """Port security: the VM's own MAC is secure; another source passes while
        fewer than ``max_macs`` are secure (here only the VM's own ever is)."""
        return port.max_macs <= 0 or src.lower() == port.mac.lower() or port.max_macs > 1

    def _segment(self, probe: Probe, vni: int, to_tunnels: bool) -> Iterator[Egress]:
        """VXLAN: the local port owning the destination MAC, else every local
        port of the segment and, from a local sender only, every remote VTEP."""
        local = [p for p in self.ports.values() if self.forwarding(p) and p.vni == vni]
        owner = next((p for p in local if p.mac.lower() == probe.dst.lower()), None)
        if owner is not None:
            if owner.name != probe.in_port:
                yield (owner.name, probe.vlan)
            return
        yield from ((p.name, probe.vlan) for p in local if p.name != probe.in_port)
        if to_tunnels:
            yield from ((vxlan_port_name(peer), vni) for peer in self.vxlan_peers)

    def _trunks(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Uplinks and port-channels with the VLANs they carry (empty: all)."""
        members = {m for pc in self.port_channels.values() for m in pc.members}
        yield from ((u, ()) for u in self.uplinks if u not in members)
        for number, pc in self.port_channels.items():
            if self.bundles.get(number):
                yield (f"po{number}", uplink_trunks(pc.trunk_vlans))

    def _flood(self, vlan: int, ingress: str) -> Iterator[Egress]:
        """OVS NORMAL with no learned MAC: every other port carrying ``vlan``."""
        for name, port in self.ports.items():
            if name == ingress or not self.forwarding(port) or port.vni:
                continue
            if port.mode == "trunk" and vlan in port.trunk_vlans:
                yield (name, vlan)
            elif port.mode != "trunk" and vlan and port.access_vlan == vlan:
                yield (name, 0)
        for name, allowed in self._trunks():
            if name != ingress and (not allowed or vlan in allowed):
                yield (name, vlan)
