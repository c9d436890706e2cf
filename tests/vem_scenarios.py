"""The VEM scenarios, written once as data and run against both datapaths.

Each ``Scenario`` is what a VEM is given (the configuration the VSM pushed,
the vEth ports attached on the host, the uplinks and their port profiles)
and what its datapath must then do: where frames go (``Probe`` -> egress
ports; an empty set means dropped), which vEths are admin-up, which members
each port-channel bundles, and the errors reported. The VEM core's
``desired_state`` turns the inputs into a ``DesiredState``; the backend
converges to it and answers through the ``Observable`` protocol
(vem/model.py).

- tests/unit/test_vem_scenarios.py runs the table on the ``memory`` backend.
- tests/netns/test_vem_scenarios.py runs it on the ``ovs`` backend: a private
  OVS (userspace datapath) in a namespace, a VM namespace per vEth, uplinks
  linked to a switch namespace whose OVS runs LACP; ``trace`` is
  ``ofproto/trace`` on the real bridge.

Adding a scenario: append a ``Scenario`` to ``SCENARIOS`` (see
docs/ENGINEERING.md); devices are named by the inputs (vEth names of at most
15 characters, uplinks ``eth1``-``eth3``; ``eth2``/``eth3`` face an LACP
partner). Probes on VLAN ports use the broadcast destination: OVS learns MACs
from live traffic, the memory backend does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openvsm.vem.core import desired_state
from openvsm.vem.model import (
    BridgeDomainConfig,
    DesiredState,
    Egress,
    PortProfileConfig,
    Probe,
    VemConfigSnapshot,
)
from openvsm.wire.messages import VethPort

LACP_PARTNER = ("eth2", "eth3")  # uplinks facing the LACP switch in the netns run
UPLINKS = ("eth1", *LACP_PARTNER)


def mac(n: int) -> str:
    return f"02:00:00:00:01:{n:02x}"


FOREIGN = "02:00:00:00:66:66"  # a source MAC no VM owns


@dataclass(frozen=True)
class Scenario:
    name: str
    config: VemConfigSnapshot
    ports: tuple[VethPort, ...]
    uplinks: tuple[tuple[str, str], ...] = ()  # (device, port profile)
    local_vtep: str = ""
    frames: tuple[tuple[Probe, frozenset[Egress]], ...] = ()
    admin_up: dict[str, bool | None] = field(default_factory=dict)  # None: no such port
    bundles: dict[int, tuple[str, ...]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # each must appear in some reported error; none else

    def desired(self) -> tuple[DesiredState, list[str]]:
        return desired_state(self.config, list(self.ports), self.local_vtep, self.uplinks)

    def devices(self) -> tuple[str, ...]:
        """The uplink devices the backend is given (each once)."""
        return tuple(dict.fromkeys(d for d, _ in self.uplinks))

    def check_errors(self, reported: list[str]) -> None:
        missing = [e for e in self.errors if not any(e in r for r in reported)]
        assert not missing, f"{self.name}: errors {missing} not in {reported}"
        if not self.errors:
            assert reported == [], f"{self.name}: unexpected errors {reported}"


def veth(name: str, n: int, profile: str) -> VethPort:
    return VethPort(name=name, vm=f"vm-{name}", mac=mac(n), port_profile=profile)


def frame(in_port: str, src: str, *out: Egress, **kw: str | int) -> tuple[Probe, frozenset[Egress]]:
    return (Probe(in_port=in_port, src=src, **kw), frozenset(out))  # type: ignore[arg-type]


def _profile(name: str, **kw: object) -> PortProfileConfig:
    return PortProfileConfig(name=name, **kw)  # type: ignore[arg-type]


UPLINK = _profile("uplink", mode="trunk", allowed_vlans=(10, 20), uplink=True)
VM10 = _profile("vm10", access_vlan=10)
VM20 = _profile("vm20", access_vlan=20)

ACCESS = Scenario(
    name="access",
    config=VemConfigSnapshot(vlans=(10, 20), port_profiles=(UPLINK, VM10, VM20)),
    ports=(veth("va", 1, "vm10"), veth("vb", 2, "vm10"), veth("vc", 3, "vm20")),
    uplinks=(("eth1", "uplink"),),
    frames=(
        frame("va", mac(1), ("vb", 0), ("eth1", 10)),
        frame("vc", mac(3), ("eth1", 20)),
        frame("eth1", FOREIGN, ("va", 0), ("vb", 0), vlan=10),
        frame("eth1", FOREIGN, ("vc", 0), vlan=20),
        frame("eth1", FOREIGN, vlan=30),  # no port in VLAN 30
        frame("va", mac(1), vlan=10),  # a tagged frame on an access port: dropped
    ),
    admin_up={"va": True, "vb": True, "vc": True},
)

TRUNK = Scenario(
    name="trunk",
    config=VemConfigSnapshot(
        vlans=(10, 20, 30),
        port_profiles=(
            UPLINK,
            VM10,
            _profile("vm30", access_vlan=30),
            _profile("tr", mode="trunk", allowed_vlans=(10, 20)),
        ),
    ),
    ports=(veth("vt", 4, "tr"), veth("va", 1, "vm10"), veth("vd", 5, "vm30")),
    uplinks=(("eth1", "uplink"),),
    frames=(
        frame("vt", mac(4), ("va", 0), ("eth1", 10), vlan=10),
        frame("vt", mac(4), ("eth1", 20), vlan=20),
        frame("vt", mac(4), vlan=30),  # not allowed on the trunk
        frame("vt", mac(4)),  # untagged: no native VLAN
        frame("va", mac(1), ("vt", 10), ("eth1", 10)),
        # A plain uplink carries every VLAN: its profile's allowed VLANs (10, 20) are
        # applied to port-channels only (DesiredState has no per-uplink VLANs yet).
        frame("vd", mac(5), ("eth1", 30)),
    ),
)

SEGMENT = 5000
VXLAN = Scenario(
    name="vxlan",
    config=VemConfigSnapshot(
        vlans=(10, 20),
        port_profiles=(
            UPLINK,
            VM10,
            _profile("seg", bridge_domain="tenant-a"),
            _profile("lost", bridge_domain="nowhere"),
        ),
        bridge_domains=(BridgeDomainConfig(name="tenant-a", segment_id=SEGMENT),),
        vteps=("192.168.0.1", "192.168.0.2", "192.168.0.3", "not-an-ip"),
    ),
    ports=(
        veth("vx1", 6, "seg"),
        veth("vx2", 7, "seg"),
        veth("va", 1, "vm10"),
        veth("vl", 8, "lost"),
    ),
    uplinks=(("eth1", "uplink"),),
    local_vtep="192.168.0.1",
    frames=(
        frame("vx1", mac(6), ("vx2", 0), ("vxc0a80002", SEGMENT), ("vxc0a80003", SEGMENT)),
        frame("vx1", mac(6), ("vx2", 0), dst=mac(7)),  # a local MAC of the segment
        frame("vxc0a80002", FOREIGN, ("vx1", 0), ("vx2", 0), vni=SEGMENT),  # split horizon
        frame("vxc0a80002", FOREIGN, ("vx1", 0), dst=mac(6), vni=SEGMENT),
        frame("vxc0a80002", FOREIGN, vni=6000),  # a segment this VEM does not have
        frame("va", mac(1), ("eth1", 10)),  # VLAN traffic never reaches the segment
        frame("eth1", FOREIGN, ("va", 0), vlan=10),
        frame("vl", mac(8)),  # unknown bridge domain: does not forward
    ),
    errors=("bridge domain 'nowhere' is not known", "'not-an-ip' is not an IPv4 address"),
)

PO_UPLINK = _profile(
    "uplink-po", mode="trunk", allowed_vlans=(10,), uplink=True, channel_group=1, lacp_mode="active"
)
PORT_CHANNEL = Scenario(
    name="port-channel",
    config=VemConfigSnapshot(vlans=(10, 20), port_profiles=(PO_UPLINK, UPLINK, VM10, VM20)),
    ports=(veth("va", 1, "vm10"), veth("vc", 3, "vm20")),
    uplinks=(("eth1", "uplink"), ("eth2", "uplink-po"), ("eth3", "uplink-po")),
    frames=(
        frame("va", mac(1), ("po1", 10), ("eth1", 10)),
        frame("vc", mac(3), ("eth1", 20)),  # VLAN 20 is not on the port-channel
    ),
    bundles={1: ("eth2", "eth3")},
)

BIG_UPLINK = _profile(
    "uplink-big",
    mode="trunk",
    allowed_vlans=(10,),
    uplink=True,
    channel_group=2,
    lacp_mode="active",
)
CHANNEL_REFUSED = Scenario(
    name="port-channel-refused",
    config=VemConfigSnapshot(vlans=(10, 20), port_profiles=(BIG_UPLINK, UPLINK, VM10)),
    ports=(veth("va", 1, "vm10"),),
    uplinks=(("eth1", "uplink"), *((f"x{i}", "uplink-big") for i in range(1, 18))),
    frames=(frame("va", mac(1), ("eth1", 10)),),  # the devices need not exist: refused first
    bundles={2: ()},
    errors=("port-channel2", "17 members"),
)

SHUT = Scenario(
    name="shut",
    config=VemConfigSnapshot(
        vlans=(10, 20),
        port_profiles=(UPLINK, VM10, _profile("off10", access_vlan=10, enabled=False)),
    ),
    ports=(veth("va", 1, "off10"), veth("vb", 2, "vm10")),
    uplinks=(("eth1", "uplink"),),
    frames=(
        frame("va", mac(1)),  # shut: dropped
        frame("vb", mac(2), ("eth1", 10)),  # and not flooded to
        frame("eth1", FOREIGN, ("vb", 0), vlan=10),
    ),
    admin_up={"va": False, "vb": True},
)

PORT_SECURITY = Scenario(
    name="port-security",
    config=VemConfigSnapshot(
        vlans=(10, 20),
        port_profiles=(
            UPLINK,
            VM10,
            _profile("sec1", access_vlan=10, max_macs=1),
            _profile("sec2", access_vlan=10, max_macs=2),
        ),
    ),
    ports=(veth("va", 1, "sec1"), veth("vb", 2, "sec2"), veth("vc", 3, "vm10")),
    uplinks=(("eth1", "uplink"),),
    frames=(
        frame("va", mac(1), ("vb", 0), ("vc", 0), ("eth1", 10)),  # its own MAC
        frame("va", FOREIGN),  # a second MAC with max 1: dropped
        frame("vb", FOREIGN, ("va", 0), ("vc", 0), ("eth1", 10)),  # max 2: still room
        frame("vc", FOREIGN, ("va", 0), ("vb", 0), ("eth1", 10)),  # no port security
    ),
)

UNKNOWN_PROFILE = Scenario(
    name="unknown-profile",
    config=VemConfigSnapshot(vlans=(10, 20), port_profiles=(UPLINK, VM10)),
    ports=(veth("va", 1, "vm10"), veth("vz", 9, "nosuch")),
    uplinks=(("eth1", "uplink"),),
    frames=(frame("vz", mac(9)), frame("va", mac(1), ("eth1", 10))),
    admin_up={"va": True, "vz": False},
    errors=("port profile 'nosuch' is not known",),
)

SCENARIOS = (
    ACCESS,
    TRUNK,
    VXLAN,
    PORT_CHANNEL,
    CHANNEL_REFUSED,
    SHUT,
    PORT_SECURITY,
    UNKNOWN_PROFILE,
)
