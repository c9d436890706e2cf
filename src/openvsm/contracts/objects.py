"""The store's object kinds (cfgmgr store, replicated to the standby).

One Struct per kind: its fields are the body's keys. Bodies stay JSON dicts in
the store, in the change log and on the sync stream (``to_body`` gives the
same dict a writer would build, ``from_body`` reads one back; every field has
a default, which an older body lacking the key reads as, and a key it does not
know is left out when reading). ``check_body`` is
what a commit on the active runs: a body with a key its kind does not know, or
a value of the wrong type, is refused with a clear error before anything is
written.
Kinds without a Struct here (the REST layer's other ``os_*`` kinds) are
checked by their own API layer (its request schemas).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

Owner = Literal["cli", "openstack"]


class StoreObject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A store object's body."""


S = TypeVar("S", bound=StoreObject)


class PortProfile(StoreObject, kw_only=True):
    """``port_profile``, key = name."""

    name: str = ""
    type: Literal["vethernet", "ethernet"] = "vethernet"
    mode: Literal["access", "trunk"] = "access"
    access_vlan: int | None = 1
    allowed_vlans: list[int] = []  # trunk: empty = every configured VLAN
    enabled: bool = False  # "state enabled"
    shutdown: bool = False
    description: str = ""
    max_macs: int = 0  # port-security maximum, 0 = unlimited
    channel_group: int = 0
    lacp_mode: Literal["", "active", "passive"] = ""
    owner: Owner = "cli"
    uuid: str = ""  # stable id
    inherit: str = ""  # parent policy profile of a dynamic profile
    bridge_domain: str = ""  # VXLAN bridge domain
    dynamic: bool = False


class Vlan(StoreObject, kw_only=True):
    """``vlan``, key = str(id)."""

    id: int = 0
    name: str = ""
    owner: Owner = "cli"


class SvsDomain(StoreObject, kw_only=True):
    """``svs_domain``, key = "domain"."""

    domain_id: int = 0
    control: str = ""
    mgmt: str = ""


class User(StoreObject, kw_only=True):
    """``user``, key = name."""

    name: str = ""
    password_hash: str = ""
    role: str = "network-operator"
    sshkey: str | msgspec.UnsetType = msgspec.UNSET  # only when one is set


class Checkpoint(StoreObject, kw_only=True):
    """``checkpoint``, key = name: a copy of the CLI-owned configuration
    (``checkpoint NAME``; ``rollback running-config checkpoint NAME``)."""

    name: str = ""
    created_by: str = ""
    created_at: float = 0.0  # wall clock
    objects: dict[str, dict[str, dict[str, Any]]] = {}  # kind -> key -> body


class Module(StoreObject, kw_only=True):
    """``module``, key = host uuid. The status is the active's view (the
    standby mirrors it): ``ok`` = the VEM attached to or heartbeats the active
    since it became active; ``powered-up`` = inherited by a new active from the
    store, not attached to it yet (committed by vemmgr at takeover, drops to
    ``offline`` after the loss time). Only ``ok`` modules count as attached."""

    module: int = 0  # the module number (the body's key is "module", not "number")
    host_uuid: str = ""
    host_name: str = ""
    host_ip: str = ""
    host_os: str = ""
    version: str = ""
    status: Literal["ok", "powered-up", "headless", "offline"] = "offline"
    ports: int = 0
    addr: str = ""  # "ip:port", the VEM's UDP address (SwitchRequest after a switchover)
    last_attach: float = 0.0  # wall-clock seconds


class Veth(StoreObject, kw_only=True):
    """``veth``, key = "Vethernet<N>"."""

    name: str = ""
    module: int = 0
    host_uuid: str = ""
    port: str = ""  # the port's name on the VEM
    vm: str = ""
    mac: str = ""
    port_profile: str = ""
    status: Literal["up", "down"] = "up"


class OsBridgeDomain(StoreObject, kw_only=True, rename="camel"):
    """``os_bridge_domain`` (REST), key = name."""

    name: str = ""
    segment_id: int = 0
    sub_type: Literal["unicast", "native_vxlan"] = "unicast"
    group_ip: str = ""
    tenant_id: str = ""
    owner: Owner = "openstack"


class OsPort(StoreObject, kw_only=True, rename="camel"):
    """``os_port`` (REST), key = the Neutron port id: one object per port."""

    id: str = ""
    vm_network: str = ""  # "vmn_<policy id>_<network id>"
    mac_address: str = ""
    port_type: str = ""
    ip_address: str | None = None
    subnet_id: str | None = None
    tenant_id: str = ""
    owner: Owner = "openstack"


KINDS: dict[str, type[StoreObject]] = {
    "port_profile": PortProfile,
    "vlan": Vlan,
    "svs_domain": SvsDomain,
    "user": User,
    "checkpoint": Checkpoint,
    "module": Module,
    "veth": Veth,
    "os_bridge_domain": OsBridgeDomain,
    "os_port": OsPort,
}


class BodyError(ValueError):
    """A body that does not match its kind's contract."""


def from_body(kind: type[S], body: Mapping[str, Any]) -> S:
    """A stored body as its Struct. Missing keys read as the defaults and keys
    the kind does not know are left out (a body of an older or newer build);
    a value of the wrong type is a ``BodyError``."""
    known = {k: v for k, v in body.items() if k in kind.__struct_encode_fields__}
    try:
        return msgspec.convert(known, kind)
    except msgspec.ValidationError as exc:
        raise BodyError(f"{kind.__name__} body does not match its contract: {exc}") from None


def to_body(obj: StoreObject) -> dict[str, Any]:
    """The Struct as the body dict the store keeps and replicates."""
    out = msgspec.to_builtins(obj)
    assert isinstance(out, dict)
    return out


def check_body(kind: str, key: str, body: dict[str, Any]) -> None:
    """Refuse a body its kind does not know how to keep (``BodyError``)."""
    struct = KINDS.get(kind)
    if struct is None:
        return
    try:
        msgspec.convert(body, struct)
    except msgspec.ValidationError as exc:
        raise BodyError(f"{kind}/{key}: the body does not match its contract: {exc}") from None
