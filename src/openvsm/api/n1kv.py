"""The n1kv object model: OpenStack's view of the switch, as pure functions.

Owns the meaning of every ``/api/n1k`` write (specs/n1kv-rest-api.md): each
one is a function of a read view of the store (``get``/``list``) and the
decoded request, and answers either an ``Outcome`` (the store ``Op``s of one
change plus a short message) or raises ``ApiError(status, text)``. Nothing is
written here: the REST layer commits the ops as one change, so a refused
request changes nothing and an accepted one is all-or-nothing.

Store kinds (docs/CONTRACTS.md), every body with ``"owner": "openstack"``:

- ``os_logical_network`` key = name (``<profile id>_log_net``);
- ``os_network_profile`` key = id (the driver's network-segment-pool);
- ``os_network_segment`` key = id (a Neutron network: vlan, vxlan, trunk);
- ``os_bridge_domain``   key = name (``<network id>_bd``, one VXLAN);
- ``os_ip_pool``         key = id (ip-pool-template, a Neutron subnet);
- ``os_vm_network``      key = ``vmn_<policy id>_<network id>``, with ``portCount``;
- ``os_port``            key = port id: one object per port, naming its VM
  network (``vmNetwork``), so that adding, changing or deleting a port reads
  and writes O(1) objects whatever the number of ports (bench/api.py);
- ``os_sync``            key = ``"driver"``: the driver's sync notifications;
- ``vlan`` (owner "openstack") for the VLAN of a vlan network segment unless
  the CLI already defined that VLAN;
- ``port_profile`` (owner "openstack", ``dynamic`` True) for each VM network.

Dynamic port profiles: the first port of a (policy profile, network) pair
creates the VM network and a port profile named ``<policy name>_<segment>``
where ``<segment>`` is the VLAN id for vlan networks, the VXLAN id for vxlan
networks and ``trunk_<network id>`` for trunk networks (segment ids are
unique per type and VLAN ids never reach the VXLAN range, so the name is
unique while the network exists). It inherits the policy profile and binds
the segment: ``access_vlan`` (vlan), ``bridge_domain`` (vxlan) or trunk mode
with the policy profile's allowed VLANs (trunk). Later ports reuse it; it is
deleted with the VM network's last port.

Status codes: 400 a malformed or invalid request (types, missing or unknown
fields, ranges, reserved VLANs); 404 the resource a request updates or shows
does not exist; 409 the request contradicts the configuration (duplicate
segment id, conflicting re-create, missing referenced object, deleting
something still referenced). Deleting an object that does not exist is 200:
the driver re-sends a request whose answer it lost, and the result is the
same.

Port layout: a VM network's body carries ``portCount`` (how many ``os_port``
objects name it), maintained in the same change as each port, so that the
last port's delete also deletes the VM network without a scan. Stores
written before this layout kept the ports inside the VM network
(``"ports": {id: port}``): every read here understands both, and
``convert_legacy_ports`` gives the one change that moves them to ``os_port``
objects (the REST backend commits it before its first write).

md5 hashes (``md5_hashes``) are computed from the ids in the store;
``openvsm.api.digests.Md5Index`` keeps the same hashes from the change
stream so that the driver's periodic request costs O(1) (see there).

Policy profiles are the VSM's ``port_profile`` objects of type vethernet that
are enabled and not dynamic; their id is the body's ``uuid`` (a uuid5 of the name when a
body has none, which is stable for the profile's life as well).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from openvsm.store.pss import Op

OWNER: Final = "openstack"

K_LOGICAL_NETWORK: Final = "os_logical_network"
K_NETWORK_PROFILE: Final = "os_network_profile"
K_NETWORK: Final = "os_network_segment"
K_BRIDGE_DOMAIN: Final = "os_bridge_domain"
K_IP_POOL: Final = "os_ip_pool"
K_VM_NETWORK: Final = "os_vm_network"
K_PORT: Final = "os_port"
K_SYNC: Final = "os_sync"
K_PORT_PROFILE: Final = "port_profile"
K_VLAN: Final = "vlan"
SYNC_KEY: Final = "driver"

VLAN_MIN: Final = 1
VLAN_MAX: Final = 4094
VLAN_RESERVED: Final = range(3968, 4048)  # 3968-4047
VXLAN_MIN: Final = 4096
VXLAN_MAX: Final = 16_000_000
SYNC_HISTORY: Final = 16  # notifications kept in the os_sync record
VM_NETWORK_PREFIX: Final = "vmn_"

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}")
_MAC_RE: Final = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_TEXT_MAX: Final = 1024
_POLICY_UUID_NS: Final = uuid.UUID("5b0c35c4-4f56-534d-8e2b-706f6c696379")


class ApiError(Exception):
    """A refused request: HTTP ``status`` and a sentence for the driver's log."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ReadView(Protocol):
    """What the model reads: the store, or anything shaped like it."""

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def list(self, kind: str) -> dict[str, dict[str, Any]]: ...


class Outcome(msgspec.Struct, frozen=True):
    """An accepted write: the ops of one change (maybe none) and a message."""

    ops: tuple[Op, ...]
    message: str


# --- request bodies -------------------------------------------------------------
# Field names are the driver's JSON keys. Unknown keys are refused, like the
# product does ("Invalid Request"), so that a driver/VSM mismatch is loud.


class _Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class LogicalNetworkBody(_Body, frozen=True):
    description: str = ""


class NetworkProfileBody(_Body, frozen=True):
    name: str
    description: str
    id: str
    logicalNetwork: str


class NetworkSegmentBody(_Body, frozen=True):
    """Create (``segmentType`` present) or update (description, tenantId)."""

    publishName: str | None = None
    description: str | None = None
    id: str | None = None
    tenantId: str | None = None
    mode: str | None = None
    segmentType: str | None = None
    networkSegmentPool: str | None = None
    vlan: int | None = None
    vxlan: int | None = None
    bridgeDomain: str | None = None


class BridgeDomainBody(_Body, frozen=True):
    name: str
    segmentId: int
    subType: str
    tenantId: str = ""
    groupIp: str | None = None


class IpPoolBody(_Body, frozen=True):
    """Create (``netSegmentName`` present) or update (description, dhcp, dns)."""

    addressRangeStart: str | None = None
    addressRangeEnd: str | None = None
    ipAddressSubnet: str | None = None
    description: str | None = None
    gateway: str | None = None
    dhcp: bool | None = None
    dnsServersList: list[str] | None = None
    networkAddress: str | None = None
    netSegmentName: str | None = None
    id: str | None = None
    tenantId: str | None = None


class VmNetworkPortBody(_Body, frozen=True):
    name: str
    networkSegmentId: str
    networkSegment: str
    portProfile: str
    portProfileId: str
    tenantId: str
    portId: str
    macAddress: str
    portType: str = ""
    ipAddress: str | None = None
    subnetId: str | None = None


class SyncNotificationBody(_Body, frozen=True):
    status: Literal["start", "end", "no-change"]


_B = TypeVar("_B", bound=_Body)


def decode_body(body: Any, kind: type[_B]) -> _B:
    """The request body as ``kind``, or 400 saying which field is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request body: {exc}") from None


# --- small validators -------------------------------------------------------------


def check_id(value: str, what: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ApiError(
            400,
            f"{what} {value[:80]!r} is not a valid id "
            "(1-200 letters, digits and _.:@+- starting with a letter or digit)",
        )
    return value


def _check_text(value: str | None, what: str) -> str:
    if value is None:
        return ""
    if len(value) > _TEXT_MAX or any(ord(c) < 32 for c in value):
        raise ApiError(400, f"{what} is longer than {_TEXT_MAX} characters or has control chars")
    return value


def check_vlan(vlan: int) -> int:
    if not VLAN_MIN <= vlan <= VLAN_MAX:
        raise ApiError(400, f"VLAN {vlan} is out of range ({VLAN_MIN}-{VLAN_MAX})")
    if vlan in VLAN_RESERVED:
        raise ApiError(
            400, f"VLAN {vlan} is reserved ({VLAN_RESERVED.start}-{VLAN_RESERVED.stop - 1})"
        )
    return vlan


def check_vxlan(segment: int) -> int:
    if not VXLAN_MIN <= segment <= VXLAN_MAX:
        raise ApiError(400, f"VXLAN segment id {segment} is out of range ({VXLAN_MIN}-{VXLAN_MAX})")
    return segment


def _ip(value: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ApiError(400, f"{what} {value[:80]!r} is not an IP address") from None


def _network_of(address: str, netmask: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The subnet ``address``/``netmask`` (the netmask as an address, v4 or v6)."""
    net_ip = _ip(address, "networkAddress")
    mask_ip = _ip(netmask, "ipAddressSubnet (netmask)")
    if net_ip.version != mask_ip.version:
        raise ApiError(400, f"netmask {netmask} and network address {address} differ in family")
    bits = net_ip.max_prefixlen
    mask = int(mask_ip)
    prefix = bits - (((1 << bits) - 1 - mask).bit_length())
    if mask != ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1):
        raise ApiError(
            400, f"netmask {netmask} is not a valid netmask (its bits are not contiguous)"
        )
    try:
        return ipaddress.ip_network(f"{address}/{prefix}", strict=True)
    except ValueError:
        raise ApiError(
            400, f"{address} is not the network address of a /{prefix} ({netmask}) subnet"
        ) from None


def _owned(body: Mapping[str, Any] | None) -> bool:
    return body is not None and body.get("owner") == OWNER


def _op(kind: str, key: str, body: dict[str, Any] | None) -> Op:
    return Op(kind=kind, key=key, body=body)


def _path_id(path_id: str, body_id: str | None, what: str) -> None:
    if body_id is not None and body_id != path_id:
        raise ApiError(
            400, f"{what} id {body_id!r} in the body differs from {path_id!r} in the path"
        )


# --- policy profiles -------------------------------------------------------------


def policy_profile_id(name: str, body: Mapping[str, Any]) -> str:
    """The stable id OpenStack knows a policy profile by."""
    stored = body.get("uuid")
    if isinstance(stored, str) and stored:
        return stored
    return str(uuid.uuid5(_POLICY_UUID_NS, name))


def policy_profiles(view: ReadView) -> dict[str, str]:
    """Policy profiles: non-dynamic vethernet port profiles, name -> id."""
    out: dict[str, str] = {}
    for name, body in view.list(K_PORT_PROFILE).items():
        if body.get("dynamic") or body.get("type", "vethernet") != "vethernet":
            continue
        if not body.get("enabled", True):
            continue  # NX-OS: a profile is usable only once "state enabled"
        out[name] = policy_profile_id(name, body)
    return out


def list_policy_profiles(view: ReadView) -> dict[str, Any]:
    """GET /virtual-port-profile."""
    return {
        name: {"properties": {"name": name, "id": pid}}
        for name, pid in sorted(policy_profiles(view).items())
    }


# --- reads -----------------------------------------------------------------------


_PRIVATE: Final = frozenset({"owner", "ports", "portCount"})


def _public(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _PRIVATE}


def list_objects(view: ReadView, kind: str) -> dict[str, Any]:
    """GET of a collection: ``{key: {"properties": {...}}}``."""
    return {key: {"properties": _public(body)} for key, body in view.list(kind).items()}


def show_network(view: ReadView, network_id: str) -> dict[str, Any]:
    """GET /network-segment/<id>."""
    body = view.get(K_NETWORK, network_id)
    if body is None:
        raise ApiError(404, f"network segment {network_id} does not exist")
    return {"properties": _public(body)}


def legacy_port_ids(vmn: Mapping[str, Any]) -> list[str]:
    """Ports kept inside a VM network body by the layout before ``os_port``."""
    ports = vmn.get("ports")
    return sorted(ports) if isinstance(ports, dict) else []


def ports_by_vm_network(view: ReadView) -> dict[str, list[str]]:
    """VM network name -> its port ids (both layouts), sorted."""
    by: dict[str, list[str]] = {}
    for pid, port in view.list(K_PORT).items():
        by.setdefault(str(port.get("vmNetwork", "")), []).append(pid)
    for name, vmn in view.list(K_VM_NETWORK).items():
        legacy = legacy_port_ids(vmn)
        if legacy:
            by.setdefault(name, []).extend(legacy)
    return {name: sorted(ids) for name, ids in by.items()}


def port_count(view: ReadView) -> int:
    """How many ports OpenStack created (both layouts)."""
    return sum(len(ids) for ids in ports_by_vm_network(view).values())


def list_vm_networks(view: ReadView) -> dict[str, Any]:
    """GET /kvm/vm-network: ports as the driver reads them (``portId`` a,b,..)."""
    by = ports_by_vm_network(view)
    out: dict[str, Any] = {}
    for name, body in view.list(K_VM_NETWORK).items():
        props = _public(body)
        props["portId"] = ",".join(by.get(name, ()))
        out[name] = {"properties": props}
    return out


# --- md5 hashes --------------------------------------------------------------------


def md5_of_ids(ids: Iterable[str]) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for item in sorted(ids):
        h.update(item.encode())
    return h.hexdigest()


# Hashed kinds, in the order of consolidated_md5; ports come from K_PORT
# (and from legacy VM network bodies).
MD5_KINDS: Final = (
    ("network_profile_md5", K_NETWORK_PROFILE),
    ("subnet_md5", K_IP_POOL),
    ("network_md5", K_NETWORK),
    ("port_md5", K_PORT),
)


def consolidate(hashes: dict[str, str]) -> dict[str, str]:
    """``hashes`` (the four per-kind digests) with ``consolidated_md5`` added."""
    consolidated = hashlib.md5(usedforsecurity=False)
    for name, _kind in MD5_KINDS:
        consolidated.update(hashes[name].encode())
    return {**hashes, "consolidated_md5": consolidated.hexdigest()}


def md5_hashes(view: ReadView) -> dict[str, str]:
    """The five hashes of the driver's periodic sync (spec "md5 hashes"),
    computed from the store: O(objects). ``Md5Index`` gives the same in O(1)."""
    hashes = {name: md5_of_ids(view.list(kind)) for name, kind in MD5_KINDS}
    ports = {pid for ids in ports_by_vm_network(view).values() for pid in ids}
    hashes["port_md5"] = md5_of_ids(ports)
    return consolidate(hashes)


def md5_response(hashes: dict[str, str]) -> dict[str, Any]:
    """GET /kvm/config-md5-hashes."""
    return {"md5_hashes": {"properties": hashes}}


# --- logical networks --------------------------------------------------------------


def create_logical_network(view: ReadView, name: str, raw: Any) -> Outcome:
    check_id(name, "logical network")
    body = decode_body(raw, LogicalNetworkBody)
    new = {"name": name, "description": _check_text(body.description, "description")}
    new["owner"] = OWNER
    old = view.get(K_LOGICAL_NETWORK, name)
    if old == new:
        return Outcome((), f"logical network {name} exists")
    if old is not None and not _owned(old):
        raise ApiError(409, f"logical network {name} exists and is not owned by OpenStack")
    verb = "updated" if old is not None else "created"
    return Outcome((_op(K_LOGICAL_NETWORK, name, new),), f"logical network {name} {verb}")


def delete_logical_network(view: ReadView, name: str) -> Outcome:
    if view.get(K_LOGICAL_NETWORK, name) is None:
        return Outcome((), f"logical network {name} does not exist; nothing deleted")
    users = sorted(
        pid for pid, p in view.list(K_NETWORK_PROFILE).items() if p.get("logicalNetwork") == name
    )
    if users:
        raise ApiError(
            409, f"logical network {name} is used by network segment pool {', '.join(users)}"
        )
    return Outcome((_op(K_LOGICAL_NETWORK, name, None),), f"logical network {name} deleted")


# --- network profiles (network segment pools) ----------------------------------------


def create_network_profile(view: ReadView, profile_id: str, raw: Any) -> Outcome:
    check_id(profile_id, "network segment pool")
    body = decode_body(raw, NetworkProfileBody)
    _path_id(profile_id, body.id, "network segment pool")
    check_id(body.logicalNetwork, "logicalNetwork")
    if view.get(K_LOGICAL_NETWORK, body.logicalNetwork) is None:
        raise ApiError(409, f"logical network {body.logicalNetwork} does not exist")
    new = {
        "id": profile_id,
        "name": _check_text(body.name, "name"),
        "description": _check_text(body.description, "description"),
        "logicalNetwork": body.logicalNetwork,
        "owner": OWNER,
    }
    old = view.get(K_NETWORK_PROFILE, profile_id)
    if old == new:
        return Outcome((), f"network segment pool {profile_id} exists")
    if old is not None and old.get("logicalNetwork") != body.logicalNetwork:
        raise ApiError(
            409,
            f"network segment pool {profile_id} exists with logical network "
            f"{old.get('logicalNetwork')}, not {body.logicalNetwork}",
        )
    verb = "updated" if old is not None else "created"
    return Outcome(
        (_op(K_NETWORK_PROFILE, profile_id, new),), f"network segment pool {profile_id} {verb}"
    )


def delete_network_profile(view: ReadView, profile_id: str) -> Outcome:
    if view.get(K_NETWORK_PROFILE, profile_id) is None:
        return Outcome((), f"network segment pool {profile_id} does not exist; nothing deleted")
    users = sorted(
        nid for nid, n in view.list(K_NETWORK).items() if n.get("networkSegmentPool") == profile_id
    )
    if users:
        raise ApiError(
            409,
            f"network segment pool {profile_id} still has network segment(s) {', '.join(users)}",
        )
    return Outcome(
        (_op(K_NETWORK_PROFILE, profile_id, None),), f"network segment pool {profile_id} deleted"
    )


# --- bridge domains -------------------------------------------------------------------


def create_bridge_domain(view: ReadView, raw: Any) -> Outcome:
    body = decode_body(raw, BridgeDomainBody)
    name = check_id(body.name, "bridge domain")
    segment = check_vxlan(body.segmentId)
    if body.subType == "native_vxlan":
        if not body.groupIp:
            raise ApiError(400, "a native_vxlan bridge domain needs a groupIp (multicast address)")
        group = _ip(body.groupIp, "groupIp")
        if not group.is_multicast:
            raise ApiError(400, f"groupIp {body.groupIp} is not a multicast address")
        group_ip = str(group)
    elif body.subType == "unicast":
        if body.groupIp not in (None, "", "0.0.0.0"):
            raise ApiError(400, "a unicast bridge domain takes no groupIp (or 0.0.0.0)")
        group_ip = "0.0.0.0"
    else:
        raise ApiError(
            400, f"bridge domain subType {body.subType[:40]!r} is not unicast or native_vxlan"
        )
    tenant = _check_text(body.tenantId, "tenantId")
    new = {
        "name": name,
        "segmentId": segment,
        "subType": body.subType,
        "groupIp": group_ip,
        "tenantId": tenant,
        "owner": OWNER,
    }
    old = view.get(K_BRIDGE_DOMAIN, name)
    if old == new:
        return Outcome((), f"bridge domain {name} exists")
    if old is not None and any(old.get(k) != new[k] for k in ("segmentId", "subType", "groupIp")):
        raise ApiError(
            409,
            f"bridge domain {name} exists with segment {old.get('segmentId')} "
            f"({old.get('subType')}); delete it first",
        )
    for other, bd in view.list(K_BRIDGE_DOMAIN).items():
        if other != name and bd.get("segmentId") == segment:
            raise ApiError(409, f"VXLAN segment {segment} is already used by bridge domain {other}")
    verb = "updated" if old is not None else "created"
    return Outcome((_op(K_BRIDGE_DOMAIN, name, new),), f"bridge domain {name} {verb}")


def delete_bridge_domain(view: ReadView, name: str) -> Outcome:
    # The driver deletes a VXLAN network's bridge domain before the network
    # itself: a network still naming it is fine, ports bound to it are not.
    if view.get(K_BRIDGE_DOMAIN, name) is None:
        return Outcome((), f"bridge domain {name} does not exist; nothing deleted")
    networks = {nid for nid, n in view.list(K_NETWORK).items() if n.get("bridgeDomain") == name}
    users = sorted(
        vname for vname, v in view.list(K_VM_NETWORK).items() if v.get("networkSegment") in networks
    )
    if users:
        raise ApiError(409, f"bridge domain {name} is in use by VM network(s) {', '.join(users)}")
    return Outcome((_op(K_BRIDGE_DOMAIN, name, None),), f"bridge domain {name} deleted")


# --- network segments ---------------------------------------------------------------------

_NETWORK_IDENTITY: Final = ("segmentType", "networkSegmentPool", "vlan", "bridgeDomain")


def create_or_update_network(view: ReadView, network_id: str, raw: Any) -> Outcome:
    check_id(network_id, "network segment")
    body = decode_body(raw, NetworkSegmentBody)
    _path_id(network_id, body.id, "network segment")
    old = view.get(K_NETWORK, network_id)
    if body.segmentType is None:
        return _update_network(network_id, body, old)
    new, extra = _new_network(view, network_id, body)
    if old is not None:
        if any(old.get(k) != new[k] for k in _NETWORK_IDENTITY):
            raise ApiError(
                409,
                f"network segment {network_id} exists as {_describe_network(old)}; "
                "delete it before re-creating it differently",
            )
        if old == new:
            return Outcome((), f"network segment {network_id} exists")
        return Outcome((_op(K_NETWORK, network_id, new),), f"network segment {network_id} updated")
    return Outcome(
        (*extra, _op(K_NETWORK, network_id, new)), f"network segment {network_id} created"
    )


def _describe_network(n: Mapping[str, Any]) -> str:
    kind = n.get("segmentType")
    if kind == "vlan":
        return f"VLAN {n.get('vlan')}"
    if kind == "vxlan":
        return f"VXLAN bridge domain {n.get('bridgeDomain')}"
    return f"{kind} in pool {n.get('networkSegmentPool')}"


def _update_network(
    network_id: str, body: NetworkSegmentBody, old: dict[str, Any] | None
) -> Outcome:
    if old is None:
        raise ApiError(
            404, f"network segment {network_id} does not exist (a create needs segmentType)"
        )
    for field in ("mode", "networkSegmentPool", "vlan", "vxlan", "bridgeDomain"):
        if getattr(body, field) is not None:
            raise ApiError(400, f"an update of network segment {network_id} cannot change {field}")
    new = dict(old)
    if body.description is not None:
        new["description"] = _check_text(body.description, "description")
    if body.tenantId is not None:
        new["tenantId"] = _check_text(body.tenantId, "tenantId")
    if body.publishName is not None:
        new["publishName"] = _check_text(body.publishName, "publishName")
    if new == old:
        return Outcome((), f"network segment {network_id} unchanged")
    return Outcome((_op(K_NETWORK, network_id, new),), f"network segment {network_id} updated")


def _new_network(
    view: ReadView, network_id: str, body: NetworkSegmentBody
) -> tuple[dict[str, Any], tuple[Op, ...]]:
    """The stored body of a new network segment and the ops it brings along."""
    seg_type = body.segmentType
    if seg_type not in ("vlan", "vxlan", "trunk"):
        raise ApiError(400, f"segmentType {str(seg_type)[:40]!r} is not vlan, vxlan or trunk")
    if body.mode not in (None, "access"):
        raise ApiError(400, f"network segment mode {body.mode[:40]!r} is not access")
    pool = body.networkSegmentPool
    if pool is None:
        raise ApiError(400, "a network segment create needs networkSegmentPool")
    check_id(pool, "networkSegmentPool")
    if view.get(K_NETWORK_PROFILE, pool) is None:
        raise ApiError(409, f"network segment pool (network profile) {pool} does not exist")
    networks = view.list(K_NETWORK)
    for other, n in networks.items():
        if other != network_id and n.get("networkSegmentPool") == pool:
            if n.get("segmentType") != seg_type:
                raise ApiError(
                    409,
                    f"network segment pool {pool} holds {n.get('segmentType')} segments "
                    f"(e.g. {other}), not {seg_type}",
                )
            break
    new: dict[str, Any] = {
        "id": network_id,
        "publishName": _check_text(body.publishName or network_id, "publishName"),
        "description": _check_text(body.description, "description"),
        "tenantId": _check_text(body.tenantId, "tenantId"),
        "mode": "access",
        "segmentType": seg_type,
        "networkSegmentPool": pool,
        "vlan": None,
        "vxlan": None,
        "bridgeDomain": None,
        "owner": OWNER,
    }
    extra: tuple[Op, ...] = ()
    if seg_type == "vlan":
        if body.bridgeDomain is not None or body.vxlan is not None:
            raise ApiError(400, "a vlan network segment takes no bridgeDomain or vxlan")
        if body.vlan is None:
            raise ApiError(400, "a vlan network segment needs vlan")
        vlan = check_vlan(body.vlan)
        for other, n in networks.items():
            if other != network_id and n.get("segmentType") == "vlan" and n.get("vlan") == vlan:
                raise ApiError(409, f"VLAN {vlan} is already used by network segment {other}")
        new["vlan"] = vlan
        if view.get(K_VLAN, str(vlan)) is None:
            extra = (
                _op(K_VLAN, str(vlan), {"id": vlan, "name": f"VLAN{vlan:04d}", "owner": OWNER}),
            )
    elif seg_type == "vxlan":
        if body.vlan is not None:
            raise ApiError(400, "a vxlan network segment takes no vlan")
        bd_name = body.bridgeDomain
        if bd_name is None:
            raise ApiError(400, "a vxlan network segment needs bridgeDomain")
        check_id(bd_name, "bridgeDomain")
        bd = view.get(K_BRIDGE_DOMAIN, bd_name)
        if bd is None:
            raise ApiError(409, f"bridge domain {bd_name} does not exist (create it first)")
        if body.vxlan is not None and body.vxlan != bd.get("segmentId"):
            raise ApiError(
                400, f"vxlan {body.vxlan} differs from bridge domain {bd_name}'s segment"
            )
        for other, n in networks.items():
            if other != network_id and n.get("bridgeDomain") == bd_name:
                raise ApiError(409, f"bridge domain {bd_name} is already used by network {other}")
        new["bridgeDomain"] = bd_name
        new["vxlan"] = bd.get("segmentId")
    elif body.vlan is not None or body.vxlan is not None or body.bridgeDomain is not None:
        raise ApiError(400, "a trunk network segment takes no vlan, vxlan or bridgeDomain")
    return new, extra


def delete_network(view: ReadView, network_id: str) -> Outcome:
    old = view.get(K_NETWORK, network_id)
    if old is None:
        return Outcome((), f"network segment {network_id} does not exist; nothing deleted")
    pools = sorted(
        i for i, p in view.list(K_IP_POOL).items() if p.get("netSegmentName") == network_id
    )
    if pools:
        raise ApiError(
            409, f"network segment {network_id} still has ip pool template(s) {', '.join(pools)}"
        )
    vmns = sorted(
        n for n, v in view.list(K_VM_NETWORK).items() if v.get("networkSegment") == network_id
    )
    if vmns:
        raise ApiError(
            409, f"network segment {network_id} still has ports in VM network(s) {', '.join(vmns)}"
        )
    ops = [_op(K_NETWORK, network_id, None)]
    vlan = old.get("vlan")
    if (
        old.get("segmentType") == "vlan"
        and isinstance(vlan, int)
        and _owned(view.get(K_VLAN, str(vlan)))
    ):
        ops.append(_op(K_VLAN, str(vlan), None))
    return Outcome(tuple(ops), f"network segment {network_id} deleted")


# --- ip pool templates (subnets) ---------------------------------------------------------

_POOL_IDENTITY: Final = (
    "addressRangeStart",
    "addressRangeEnd",
    "ipAddressSubnet",
    "networkAddress",
    "gateway",
    "netSegmentName",
)


def create_or_update_ip_pool(view: ReadView, pool_id: str, raw: Any) -> Outcome:
    check_id(pool_id, "ip pool template")
    body = decode_body(raw, IpPoolBody)
    _path_id(pool_id, body.id, "ip pool template")
    old = view.get(K_IP_POOL, pool_id)
    if body.netSegmentName is None:
        return _update_ip_pool(pool_id, body, old)
    new = _new_ip_pool(view, pool_id, body)
    if old is not None:
        if any(old.get(k) != new[k] for k in _POOL_IDENTITY):
            raise ApiError(
                409,
                f"ip pool template {pool_id} exists with network {old.get('networkAddress')}/"
                f"{old.get('ipAddressSubnet')} on {old.get('netSegmentName')}; delete it first",
            )
        if old == new:
            return Outcome((), f"ip pool template {pool_id} exists")
        return Outcome((_op(K_IP_POOL, pool_id, new),), f"ip pool template {pool_id} updated")
    return Outcome((_op(K_IP_POOL, pool_id, new),), f"ip pool template {pool_id} created")


def _dns_list(servers: list[str]) -> list[str]:
    if len(servers) > 16:
        raise ApiError(400, "dnsServersList has more than 16 servers")
    return [str(_ip(s, "DNS server")) for s in servers]


def _update_ip_pool(pool_id: str, body: IpPoolBody, old: dict[str, Any] | None) -> Outcome:
    if old is None:
        raise ApiError(
            404, f"ip pool template {pool_id} does not exist (a create needs netSegmentName)"
        )
    for field in _POOL_IDENTITY:
        if getattr(body, field) is not None:
            raise ApiError(400, f"an update of ip pool template {pool_id} cannot change {field}")
    new = dict(old)
    if body.description is not None:
        new["description"] = _check_text(body.description, "description")
    if body.dhcp is not None:
        new["dhcp"] = body.dhcp
    if body.dnsServersList is not None:
        new["dnsServersList"] = _dns_list(body.dnsServersList)
    if body.tenantId is not None:
        new["tenantId"] = _check_text(body.tenantId, "tenantId")
    if new == old:
        return Outcome((), f"ip pool template {pool_id} unchanged")
    return Outcome((_op(K_IP_POOL, pool_id, new),), f"ip pool template {pool_id} updated")


def _new_ip_pool(view: ReadView, pool_id: str, body: IpPoolBody) -> dict[str, Any]:
    network_id = check_id(body.netSegmentName or "", "netSegmentName")
    if not body.ipAddressSubnet or not body.networkAddress:
        raise ApiError(400, "an ip pool template needs ipAddressSubnet and networkAddress")
    subnet = _network_of(body.networkAddress, body.ipAddressSubnet)
    start = end = None
    if (body.addressRangeStart is None) != (body.addressRangeEnd is None):
        raise ApiError(400, "addressRangeStart and addressRangeEnd go together (both or neither)")
    if body.addressRangeStart is not None and body.addressRangeEnd is not None:
        first = _ip(body.addressRangeStart, "addressRangeStart")
        last = _ip(body.addressRangeEnd, "addressRangeEnd")
        for what, addr in (("addressRangeStart", first), ("addressRangeEnd", last)):
            if addr not in subnet:
                raise ApiError(400, f"{what} {addr} is outside the subnet {subnet}")
        if int(first) > int(last):
            raise ApiError(400, f"address range {first}-{last} is empty (start after end)")
        start, end = str(first), str(last)
    gateway = None
    if body.gateway:
        gw = _ip(body.gateway, "gateway")
        if gw not in subnet:
            raise ApiError(400, f"gateway {gw} is outside the subnet {subnet}")
        gateway = str(gw)
    if view.get(K_NETWORK, network_id) is None:
        raise ApiError(409, f"network segment {network_id} does not exist")
    return {
        "id": pool_id,
        "description": _check_text(body.description, "description"),
        "addressRangeStart": start,
        "addressRangeEnd": end,
        "ipAddressSubnet": body.ipAddressSubnet,
        "networkAddress": body.networkAddress,
        "gateway": gateway,
        "dhcp": bool(body.dhcp),
        "dnsServersList": _dns_list(body.dnsServersList or []),
        "netSegmentName": network_id,
        "tenantId": _check_text(body.tenantId, "tenantId"),
        "owner": OWNER,
    }


def delete_ip_pool(view: ReadView, pool_id: str) -> Outcome:
    # Ports may still name the subnet (Neutron removes a DHCP port's address
    # by an update the driver does not forward): not a reason to refuse.
    if view.get(K_IP_POOL, pool_id) is None:
        return Outcome((), f"ip pool template {pool_id} does not exist; nothing deleted")
    return Outcome((_op(K_IP_POOL, pool_id, None),), f"ip pool template {pool_id} deleted")


# --- VM networks, ports and dynamic port profiles ---------------------------------------


def vm_network_name(policy_id: str, network_id: str) -> str:
    return f"{VM_NETWORK_PREFIX}{policy_id}_{network_id}"


def dynamic_profile_name(policy_name: str, network: Mapping[str, Any]) -> str:
    """``<policy name>_<vlan id | vxlan id | trunk_<network id>>``."""
    seg_type = network.get("segmentType")
    if seg_type == "vlan":
        return f"{policy_name}_{network.get('vlan')}"
    if seg_type == "vxlan":
        return f"{policy_name}_{network.get('vxlan')}"
    return f"{policy_name}_trunk_{network.get('id')}"


def _dynamic_profile(
    name: str, policy_name: str, policy: Mapping[str, Any], network: Mapping[str, Any], vmn: str
) -> dict[str, Any]:
    seg_type = network.get("segmentType")
    allowed = policy.get("allowed_vlans", [])
    return {
        "name": name,
        "type": "vethernet",
        "mode": "trunk" if seg_type == "trunk" else "access",
        "access_vlan": network.get("vlan") if seg_type == "vlan" else 0,
        "allowed_vlans": list(allowed) if seg_type == "trunk" and isinstance(allowed, list) else [],
        "enabled": True,
        "shutdown": bool(policy.get("shutdown", False)),
        "description": f"OpenStack VM network {vmn}",
        "max_macs": policy.get("max_macs", 0),
        "channel_group": 0,
        "lacp_mode": "",
        "owner": OWNER,
        "uuid": str(uuid.uuid5(_POLICY_UUID_NS, vmn)),
        "inherit": policy_name,
        "bridge_domain": str(network.get("bridgeDomain") or "") if seg_type == "vxlan" else "",
        "dynamic": True,
    }


def add_port(view: ReadView, raw: Any) -> Outcome:
    """POST /kvm/vm-network: add a port; the first one creates the VM network.

    O(1) objects read and written: the port is found by its id (``os_port``),
    the VM network by its name; its ``portCount`` goes up by one.
    """
    body = decode_body(raw, VmNetworkPortBody)
    for field in ("name", "networkSegmentId", "networkSegment", "portProfileId", "portId"):
        check_id(getattr(body, field), field)
    if body.networkSegmentId != body.networkSegment:
        raise ApiError(400, "networkSegmentId and networkSegment name different networks")
    vmn_name = vm_network_name(body.portProfileId, body.networkSegment)
    if body.name != vmn_name:
        raise ApiError(400, f"VM network name {body.name} should be {vmn_name}")
    if not _MAC_RE.fullmatch(body.macAddress):
        raise ApiError(400, f"macAddress {body.macAddress[:40]!r} is not a MAC address")
    port = {
        "id": body.portId,
        "vmNetwork": vmn_name,
        "macAddress": body.macAddress.lower(),
        "portType": _check_text(body.portType, "portType"),
        "ipAddress": str(_ip(body.ipAddress, "ipAddress")) if body.ipAddress else None,
        "subnetId": check_id(body.subnetId, "subnetId") if body.subnetId else None,
        "tenantId": _check_text(body.tenantId, "tenantId"),
        "owner": OWNER,
    }
    if port["subnetId"] is not None:
        pool = view.get(K_IP_POOL, port["subnetId"])
        if pool is None:
            raise ApiError(409, f"ip pool template {port['subnetId']} does not exist")
        if pool.get("netSegmentName") != body.networkSegment:
            raise ApiError(
                409, f"ip pool template {port['subnetId']} is not on network {body.networkSegment}"
            )
    known = view.get(K_PORT, body.portId)
    if known is not None:
        if known.get("vmNetwork") != vmn_name:
            raise ApiError(
                409, f"port {body.portId} already belongs to VM network {known.get('vmNetwork')}"
            )
        if known == port:
            return Outcome((), f"port {body.portId} exists in VM network {vmn_name}")
        raise ApiError(
            409,
            f"port {body.portId} exists in VM network {vmn_name} with MAC "
            f"{known.get('macAddress')} / IP {known.get('ipAddress')}; delete it first",
        )
    old = view.get(K_VM_NETWORK, vmn_name)
    if old is not None:
        new = dict(old)
        new["portCount"] = _count(old) + 1
        return Outcome(
            (_op(K_PORT, body.portId, port), _op(K_VM_NETWORK, vmn_name, new)),
            f"port {body.portId} added to VM network {vmn_name}",
        )
    return _new_vm_network(view, vmn_name, body, port)


def _count(vmn: Mapping[str, Any]) -> int:
    count = vmn.get("portCount")
    return count if isinstance(count, int) and count > 0 else 0


def _new_vm_network(
    view: ReadView, vmn_name: str, body: VmNetworkPortBody, port: dict[str, Any]
) -> Outcome:
    by_id = {pid: name for name, pid in policy_profiles(view).items()}
    policy_name = by_id.get(body.portProfileId)
    if policy_name is None:
        raise ApiError(
            409, f"policy profile {body.portProfile[:80]} ({body.portProfileId}) does not exist"
        )
    if policy_name != body.portProfile:
        raise ApiError(
            409,
            f"policy profile {body.portProfileId} is named {policy_name}, not {body.portProfile}",
        )
    policy = view.get(K_PORT_PROFILE, policy_name) or {}
    network = view.get(K_NETWORK, body.networkSegment)
    if network is None:
        raise ApiError(409, f"network segment {body.networkSegment} does not exist")
    if network.get("segmentType") == "vxlan" and (
        view.get(K_BRIDGE_DOMAIN, str(network.get("bridgeDomain"))) is None
    ):
        raise ApiError(
            409, f"network segment {body.networkSegment} has no bridge domain (it is being deleted)"
        )
    profile_name = dynamic_profile_name(policy_name, network)
    existing = view.get(K_PORT_PROFILE, profile_name)
    if existing is not None and not (_owned(existing) and existing.get("dynamic")):
        raise ApiError(
            409,
            f"port profile {profile_name} exists and is not a dynamic OpenStack profile; "
            "cannot create the dynamic profile of this VM network",
        )
    profile = _dynamic_profile(profile_name, policy_name, policy, network, vmn_name)
    vmn = {
        "name": vmn_name,
        "networkSegmentId": body.networkSegment,
        "networkSegment": body.networkSegment,
        "portProfile": policy_name,
        "portProfileId": body.portProfileId,
        "dynamicPortProfile": profile_name,
        "tenantId": port["tenantId"],
        "portCount": 1,
        "owner": OWNER,
    }
    return Outcome(
        (
            _op(K_PORT_PROFILE, profile_name, profile),
            _op(K_VM_NETWORK, vmn_name, vmn),
            _op(K_PORT, body.portId, port),
        ),
        f"VM network {vmn_name} created with port {body.portId} (port profile {profile_name})",
    )


def delete_port(view: ReadView, vmn_name: str, port_id: str) -> Outcome:
    """DELETE /kvm/vm-network/<vmn>/ports/<port>: the last port takes the VM network."""
    port = view.get(K_PORT, port_id)
    if port is None or port.get("vmNetwork") != vmn_name:
        return Outcome((), f"port {port_id} is not in VM network {vmn_name}; nothing deleted")
    ops = [_op(K_PORT, port_id, None)]
    vmn = view.get(K_VM_NETWORK, vmn_name)
    if vmn is None:  # cannot happen through this API; remove the stray port
        return Outcome(tuple(ops), f"port {port_id} removed")
    left = _count(vmn) - 1
    if left > 0:
        new = dict(vmn)
        new["portCount"] = left
        ops.append(_op(K_VM_NETWORK, vmn_name, new))
        return Outcome(tuple(ops), f"port {port_id} removed from VM network {vmn_name}")
    ops.append(_op(K_VM_NETWORK, vmn_name, None))
    profile_name = vmn.get("dynamicPortProfile")
    if isinstance(profile_name, str):
        profile = view.get(K_PORT_PROFILE, profile_name)
        if _owned(profile) and profile is not None and profile.get("dynamic"):
            ops.append(_op(K_PORT_PROFILE, profile_name, None))
    return Outcome(
        tuple(ops), f"port {port_id} removed; VM network {vmn_name} and its port profile deleted"
    )


def convert_legacy_ports(view: ReadView) -> Outcome:
    """The change that moves ports kept inside VM network bodies (the layout
    before ``os_port``) to one ``os_port`` object each; no ops when none are left."""
    ops: list[Op] = []
    for name, vmn in view.list(K_VM_NETWORK).items():
        ports = vmn.get("ports")
        if not isinstance(ports, dict):
            continue
        for pid, old in sorted(ports.items()):
            record = dict(old) if isinstance(old, dict) else {}
            record.update({"id": pid, "vmNetwork": name, "owner": OWNER})
            ops.append(_op(K_PORT, pid, record))
        new = {k: v for k, v in vmn.items() if k != "ports"}
        new["portCount"] = len(ports)
        ops.append(_op(K_VM_NETWORK, name, new))
    return Outcome(tuple(ops), f"{len(ops)} objects moved to the per-port layout")


# --- sync notifications --------------------------------------------------------------


def sync_notification(
    view: ReadView,
    raw: Any,
    *,
    now: float,
    last_md5_request: float | None,
    hashes: dict[str, str] | None = None,
) -> Outcome:
    """POST /sync-notification: remember it, with the hashes it refers to
    (``hashes``: the current ones when the caller keeps them, else computed)."""
    body = decode_body(raw, SyncNotificationBody)
    old = view.get(K_SYNC, SYNC_KEY) or {}
    history = old.get("notifications")
    history = list(history) if isinstance(history, list) else []
    history.append(
        {
            "time": now,
            "status": body.status,
            "consolidated_md5": (hashes or md5_hashes(view))["consolidated_md5"],
            "md5_request_time": last_md5_request,
        }
    )
    new = {"notifications": history[-SYNC_HISTORY:], "owner": OWNER}
    return Outcome((_op(K_SYNC, SYNC_KEY, new),), f"sync notification {body.status} recorded")


def openstack_sync_status(
    view: ReadView,
    *,
    last_md5_request: float | None = None,
    hashes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Data of ``show openstack sync``.

    ``in_sync``: the driver's last check found nothing to do ("no-change"),
    or its last sync completed ("end"), and the hashes have not changed
    since. ``last_check_no_change``: the last md5 request was followed by a
    "no-change" notification. ``last_md5_request`` (wall-clock, seen by this
    node's REST server, not replicated) refines it when newer.
    """
    record = view.get(K_SYNC, SYNC_KEY) or {}
    stored = record.get("notifications")
    history: list[dict[str, Any]] = (
        [n for n in stored if isinstance(n, dict)] if isinstance(stored, list) else []
    )
    hashes = hashes or md5_hashes(view)
    last = history[-1] if history else None
    status = str(last.get("status", "")) if last is not None else ""
    unchanged = last is not None and last.get("consolidated_md5") == hashes["consolidated_md5"]
    no_change_after_request = (
        last is not None and status == "no-change" and last.get("md5_request_time") is not None
    )
    if (
        last is not None
        and last_md5_request is not None
        and last_md5_request > float(last.get("time", 0.0))
    ):
        no_change_after_request = False  # a newer check has no answer yet
    if last is None:
        reason = "no sync notification received from OpenStack"
    elif status == "start":
        reason = "OpenStack sync in progress (or interrupted: no end notification)"
    elif not unchanged:
        reason = "the configuration changed since the last sync notification"
    elif status == "no-change":
        reason = "OpenStack found no difference"
    else:
        reason = "OpenStack completed a sync"
    return {
        "in_sync": last is not None and status in ("no-change", "end") and unchanged,
        "reason": reason,
        "last_status": status,
        "last_time": float(last.get("time", 0.0)) if last is not None else None,
        "last_md5_request_time": (
            last_md5_request
            if last_md5_request is not None
            else (last.get("md5_request_time") if last is not None else None)
        ),
        "last_check_no_change": no_change_after_request,
        "md5_hashes": hashes,
        "notifications": history,
    }
