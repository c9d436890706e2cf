"""The ``memory`` datapath backend: the VEM datapath model held as data.

Same model as the ``ovs`` backend, no packets: ports, VLAN membership, a
forwarding table of the vEth MAC addresses (static entries per VLAN or VNI),
VXLAN peers. Used by unit tests, ``vem-sim`` and the loopback lab.

``apply`` converges to the desired state and is idempotent: a port that
already matches is left untouched (``changes`` counts only real changes). A
port with invalid settings is reported as an error and left as it was.
"""

from __future__ import annotations

from openvsm.vem.model import DesiredState, PortChannelState, VethState, veth_errors


def _port_errors(port: VethState) -> list[str]:
    errors: list[str] = []
    if not port.name or len(port.name) > 64:
        errors.append(f"port name {port.name!r} is invalid")
    return errors + veth_errors(port)


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.ports: dict[str, VethState] = {}
        self.port_channels: dict[int, PortChannelState] = {}
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
        channels = {pc.number: pc for pc in desired.port_channels}
        if channels != self.port_channels:
            self.port_channels = channels
            self.changes += 1
        peers = tuple(sorted(set(desired.vxlan_peers)))
        vnis = tuple(sorted(set(desired.vnis)))
        if (peers, vnis, desired.local_vtep) != (self.vxlan_peers, self.vnis, self.local_vtep):
            self.vxlan_peers, self.vnis, self.local_vtep = peers, vnis, desired.local_vtep
            self.changes += 1
        return errors

    def observed(self) -> DesiredState:
        return DesiredState(
            ports=tuple(self.ports[n] for n in sorted(self.ports)),
            port_channels=tuple(self.port_channels[n] for n in sorted(self.port_channels)),
            vxlan_peers=self.vxlan_peers,
            vnis=self.vnis,
            local_vtep=self.local_vtep,
        )

    def forwarding(self, port: VethState) -> bool:
        return port.enabled and bool(port.access_vlan or port.trunk_vlans or port.vni)

    def vlan_members(self) -> dict[int, list[str]]:
        """VLAN -> ports that forward in it (access or trunk)."""
        members: dict[int, list[str]] = {}
        for name in sorted(self.ports):
            port = self.ports[name]
            if not self.forwarding(port):
                continue
            vlans = port.trunk_vlans if port.mode == "trunk" else (port.access_vlan,)
            for vlan in vlans:
                if vlan:
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
