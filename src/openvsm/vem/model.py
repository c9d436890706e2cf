"""The VEM's desired datapath state, as data (faucet-style).

The VEM core computes a ``DesiredState`` from the configuration the VSM
pushed and the vEth ports attached on the host; a datapath backend
(``memory`` or ``ovs``) converges the datapath to it with ``apply`` and
reports what it did. Backends never decide policy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Annotated, Protocol

import msgspec


class PortProfileConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A port profile as pushed to VEMs (only what the datapath needs)."""

    name: str
    mode: str = "access"  # access | trunk
    access_vlan: int = 1
    allowed_vlans: tuple[int, ...] = ()  # trunk: empty = all configured VLANs
    enabled: bool = True  # "state enabled" and not "shutdown"
    max_macs: int = 0  # port-security maximum MAC addresses; 0 = unlimited
    bridge_domain: str = ""  # VXLAN segment (bridge domain name) instead of a VLAN
    channel_group: int = 0  # uplink profiles: port-channel number
    lacp_mode: str = ""  # "" (static) | active | passive
    uplink: bool = False  # type ethernet (uplink) profile


class BridgeDomainConfig(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    segment_id: int  # VXLAN id 4096-16000000
    sub_type: str = "unicast"  # unicast | native_vxlan
    group_ip: str = ""


class VemConfigSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a VEM needs from the VSM, pushed whole (it is small per VEM)."""

    config_seq: int = 0
    vlans: tuple[int, ...] = ()
    port_profiles: tuple[PortProfileConfig, ...] = ()
    bridge_domains: tuple[BridgeDomainConfig, ...] = ()
    vteps: tuple[str, ...] = ()  # VXLAN tunnel endpoints of the other VEMs (unicast flood list)


class VethState(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # datapath port name (e.g. the tap/veth device)
    vm: str
    mac: str
    port_profile: str
    mode: str = "access"
    access_vlan: int = 0  # 0 = not forwarding (unknown profile or VLAN)
    trunk_vlans: tuple[int, ...] = ()
    vni: int = 0  # VXLAN segment id when the profile binds a bridge domain
    enabled: bool = True
    max_macs: int = 0


class PortChannelState(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    members: tuple[str, ...]  # uplink device names in configuration order
    lacp_mode: str = ""  # "" (static) | active | passive
    port_priorities: tuple[tuple[str, int], ...] = ()  # LACP port priority per member
    trunk_vlans: tuple[int, ...] = ()


class DesiredState(msgspec.Struct, frozen=True, kw_only=True):
    ports: tuple[VethState, ...] = ()
    port_channels: tuple[PortChannelState, ...] = ()
    vxlan_peers: tuple[str, ...] = ()  # remote VTEP IPs
    vnis: tuple[int, ...] = ()
    local_vtep: str = ""


BROADCAST = "ff:ff:ff:ff:ff:ff"


_MAC_PATTERN = "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"
MacText = Annotated[str, msgspec.Meta(pattern=_MAC_PATTERN)]


class Probe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A frame offered to a datapath port, for ``trace`` (nothing is sent).

    The constraints hold for a probe decoded from outside (``vem-ctl trace``)."""

    # vEth, uplink or port-channel member device, or VXLAN port (vxlan_port_name)
    in_port: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")]
    src: MacText
    dst: MacText = BROADCAST
    vlan: Annotated[int, msgspec.Meta(ge=0, le=4094)] = 0  # 802.1Q tag; 0 = untagged
    vni: Annotated[int, msgspec.Meta(ge=0, le=16777215)] = 0  # VXLAN id, from a tunnel port


# Where a traced frame leaves: (port, tag) with the port a vEth, a plain uplink,
# ``po<N>`` or a VXLAN port, and the tag the 802.1Q VLAN on the wire (0 =
# untagged) or, on a VXLAN port, the VNI. No egress at all = dropped.
Egress = tuple[str, int]


def forwarding(port: VethState) -> bool:
    """Does the vEth forward at all (enabled, with a VLAN, trunk VLANs or a VNI)?"""
    return port.enabled and bool(
        port.vni or (port.trunk_vlans if port.mode == "trunk" else port.access_vlan)
    )


def vxlan_port_name(remote_ip: str) -> str:
    """vx + the remote VTEP's IPv4 address in hex (fits the 15-character limit)."""
    return "vx" + ipaddress.IPv4Address(remote_ip).packed.hex()


def uplink_trunks(vlans: Sequence[int]) -> tuple[int, ...]:
    """VLANs an uplink or port-channel carries: VLAN 0 = untagged (the bridge's own
    VTEP traffic) and ``vlans``; empty = all VLANs."""
    return tuple(sorted({0, *vlans})) if vlans else ()


def vxlan_peers(desired: DesiredState, errors: list[str]) -> list[str]:
    """The remote VTEPs to tunnel to: valid IPv4, not ourselves, once each."""
    peers: list[str] = []
    for peer in desired.vxlan_peers:
        try:
            ipaddress.IPv4Address(peer)
        except ValueError:
            errors.append(f"VXLAN peer {peer!r} is not an IPv4 address")
            continue
        if peer != desired.local_vtep and peer not in peers:
            peers.append(peer)
    return peers


def segment_errors(ports: Sequence[VethState], vnis: Sequence[int]) -> list[str]:
    return [
        f"{p.name}: VNI {p.vni} is not a configured segment"
        for p in ports
        if p.vni and p.vni not in vnis
    ]


_MAC = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")


def veth_errors(port: VethState) -> list[str]:
    """What is wrong with a vEth's desired state, whatever the datapath (each
    backend adds its own rules for the port name)."""
    errors: list[str] = []
    if port.mode not in ("access", "trunk"):
        errors.append(f"{port.name}: mode {port.mode!r} is invalid (access | trunk)")
    if not 0 <= port.access_vlan <= 4094:
        errors.append(f"{port.name}: access VLAN {port.access_vlan} is out of range (1-4094)")
    bad = [v for v in port.trunk_vlans if not 1 <= v <= 4094]
    if bad:
        errors.append(f"{port.name}: trunk VLANs {bad} are out of range (1-4094)")
    if port.vni and not 4096 <= port.vni <= 16000000:
        errors.append(f"{port.name}: VNI {port.vni} is out of range (4096-16000000)")
    if port.max_macs < 0:
        errors.append(f"{port.name}: max MACs {port.max_macs} is negative")
    if not _MAC.fullmatch(port.mac):
        errors.append(f"{port.name}: MAC address {port.mac!r} is invalid")
    return errors


class Backend(Protocol):
    """A datapath: converges to a desired state; idempotent; never raises on bad config."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def apply(self, desired: DesiredState) -> list[str]:
        """Converge to ``desired``; return human-readable errors (empty when all applied).

        Ports that already match are left untouched (no flap).
        """
        ...

    def observed(self) -> DesiredState:
        """What the datapath holds now (used to reconcile after a restart)."""
        ...


class Observable(Protocol):
    """What a datapath does, asked the same way of every backend (the VEM
    scenario table, tests/vem_scenarios.py, runs against both)."""

    def trace(self, probe: Probe) -> frozenset[Egress]:
        """Where ``probe`` would leave the datapath (empty: dropped); the bridge's
        own port (the host) is left out."""
        ...

    def admin_up(self, name: str) -> bool | None:
        """Is the vEth ``name`` admin-up (the VM sees link)? None: no such port."""
        ...

    def bundle(self, number: int) -> tuple[str, ...]:
        """The members port-channel ``number`` forwards over, in name order."""
        ...
