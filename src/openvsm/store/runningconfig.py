"""The running configuration: what the store's configuration reads back as.

``running_config_lines`` is ``show running-config`` in NX-OS order; the
CLI-owned objects are re-playable through the configuration session
(``cfgmgr/configsession.py``), the OpenStack-owned ones are shown as ``!``
comments so that a replay skips them. Renderers read a *store view*
(``StoreView``: a ``Store``, or a ``MemoryView`` that applies ops).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from openvsm.roles import Role
from openvsm.store.pss import Op
from openvsm.vlans import default_vlan_name, format_vlan_list


class StoreView(Protocol):
    """What configuration commands and renderers read: a ``Store`` or a stand-in."""

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def list(self, kind: str) -> dict[str, dict[str, Any]]: ...


class MemoryView:
    """A dict-backed store view that applies ops (tests, dry runs, replays)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        body = self.objects.get(kind, {}).get(key)
        return None if body is None else dict(body)

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in sorted(self.objects.get(kind, {}).items())}

    def apply(self, ops: Iterable[Op]) -> None:
        for op in ops:
            table = self.objects.setdefault(op.kind, {})
            if op.body is None:
                table.pop(op.key, None)
            else:
                table[op.key] = dict(op.body)


def is_openstack(body: Mapping[str, Any] | None) -> bool:
    """Whether ``body`` belongs to the Neutron driver (``owner == "openstack"``)."""
    return body is not None and body.get("owner") == "openstack"


def natural_key(text: str) -> tuple[str, int]:
    """Sort key of interface names: ``Vethernet2`` before ``Vethernet10``."""
    m = re.match(r"(.*?)(\d+)$", text)
    return (m.group(1), int(m.group(2))) if m else (text, -1)


def port_profile_lines(body: Mapping[str, Any]) -> list[str]:
    """The configuration lines inside ``port-profile`` (without indentation)."""
    lines: list[str] = []
    if body.get("description"):
        lines.append(f"description {body['description']}")
    lines.append(f"switchport mode {body.get('mode', 'access')}")
    access = int(body.get("access_vlan") or 1)
    if access != 1:
        lines.append(f"switchport access vlan {access}")
    allowed = body.get("allowed_vlans") or []
    if allowed:
        lines.append(f"switchport trunk allowed vlan {format_vlan_list(int(v) for v in allowed)}")
    if body.get("max_macs"):
        lines.append(f"switchport port-security maximum {int(body['max_macs'])}")
    if body.get("channel_group"):
        mode = f" mode {body['lacp_mode']}" if body.get("lacp_mode") else ""
        lines.append(f"channel-group {int(body['channel_group'])}{mode}")
    # Set only through OpenStack (dynamic profiles); shown as comments so that a
    # replay of the running configuration skips them.
    if body.get("inherit"):
        lines.append(f"! inherit port-profile {body['inherit']}")
    if body.get("bridge_domain"):
        lines.append(f"! switchport access bridge-domain {body['bridge_domain']}")
    lines.append("shutdown" if body.get("shutdown") else "no shutdown")
    if body.get("enabled"):
        lines.append("state enabled")
    return lines


def running_config_lines(view: StoreView) -> list[str]:
    """``show running-config`` lines, in NX-OS order; CLI-owned objects re-playable."""
    out: list[str] = []
    users = view.list("user")
    for name in sorted(users):
        u = users[name]
        out.append(
            f"username {name} password 5 {u.get('password_hash', '')}"
            f"  role {u.get('role', Role.NETWORK_OPERATOR.value)}"
        )
        if u.get("sshkey"):
            out.append(f'username {name} sshkey "{u["sshkey"]}"')
    vlans = view.list("vlan")
    cli_vlans = {int(k): v for k, v in vlans.items() if not is_openstack(v)}
    os_vlans = {int(k): v for k, v in vlans.items() if is_openstack(v)}
    if cli_vlans:
        out.append("")
        out.append(f"vlan {format_vlan_list(cli_vlans)}")
        for n in sorted(cli_vlans):
            name = cli_vlans[n].get("name") or default_vlan_name(n)
            if name != default_vlan_name(n):
                out += [f"vlan {n}", f"  name {name}"]
    profiles = view.list("port_profile")
    cli_profiles = {k: v for k, v in profiles.items() if not is_openstack(v)}
    os_profiles = {k: v for k, v in profiles.items() if is_openstack(v)}
    for name in sorted(cli_profiles, key=lambda k: (cli_profiles[k].get("type") != "ethernet", k)):
        body = cli_profiles[name]
        out.append("")
        out.append(f"port-profile type {body.get('type', 'vethernet')} {name}")
        out += [f"  {line}" for line in port_profile_lines(body)]
    if os_vlans or os_profiles:
        out += [
            "",
            "! Configuration owned by OpenStack (made through Neutron; not re-playable here)",
        ]
        for n in sorted(os_vlans):
            out.append(f"!vlan {n}")
            out.append(f"!  name {os_vlans[n].get('name') or default_vlan_name(n)}")
        for name in sorted(os_profiles):
            body = os_profiles[name]
            out.append(f"!port-profile type {body.get('type', 'vethernet')} {name}")
            out += [f"!  {line}" for line in port_profile_lines(body)]
    return out


def render_running_config(view: StoreView, *, now: float | None = None) -> str:
    """The NX-OS ``show running-config`` text."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now))
    head = ["", "!Command: show running-config", f"!Time: {stamp}", ""]
    return "\n".join(head + running_config_lines(view)) + "\n"
