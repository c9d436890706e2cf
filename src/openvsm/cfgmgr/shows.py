"""Data of the system show commands (version, clock, users, inventory,
interfaces, VLANs, startup-config, checkpoints), in NX-OS's JSON keys.

Each function reads the node (config, store, the CLI server's sessions,
``show module`` data) and returns the dict that ``| json`` prints and
``openvsm.cli.render`` lays out; none of them writes anything.

What the tables hold on openvsm: ``mgmt0`` is the node's management
interface (its configured address, the system MAC, counters of the Linux
device when ``[mgmt] device`` names one); the Vethernet rows are the VM
ports vemmgr (or the replicated store) knows, with the VLAN and mode of
their port-profile. The startup configuration is the running one: every
change is committed to the store before it is acknowledged and a node boots
from its store, so there is nothing to copy; ``copy running-config
startup-config`` says so and completes.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from openvsm import __version__
from openvsm.cfgmgr.host import NodeView
from openvsm.cli.server import CliServer, CliSession
from openvsm.macs import dotted_mac
from openvsm.store.runningconfig import running_config_lines
from openvsm.vlans import default_vlan_name

_BOOT_WALL = time.time()
_BOOT = time.monotonic()
PRODUCT = "openvsm Virtual Supervisor Module"


def _wall(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def system_mac(cm: NodeView) -> str:
    return cm.cfg.resolved_mac or cm.cfg.configured_mac or "00:00:00:00:00:00"


_dotted = dotted_mac


def version_data(cm: NodeView) -> dict[str, Any]:
    up = int(time.monotonic() - _BOOT)
    try:
        mem_kb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    except (ValueError, OSError):
        mem_kb = 0
    return {
        "header_str": "openvsm Virtual Supervisor Module Software (not Cisco NX-OS)",
        "sys_ver_str": __version__,
        "isan_file_name": "openvsm (Python package)",
        "isan_cmpl_time": "",
        "host_name": cm.cfg.hostname,
        "chassis_id": f'{PRODUCT} ("Virtual Supervisor Module")',
        "cpu_name": "Virtual CPU",
        "memory": mem_kb,
        "mem_type": "kB",
        "proc_board_id": _dotted(system_mac(cm)).replace(".", "").upper(),
        "bootflash_size": 0,
        "kern_uptm_days": up // 86400,
        "kern_uptm_hrs": up % 86400 // 3600,
        "kern_uptm_mins": up % 3600 // 60,
        "kern_uptm_secs": up % 60,
        "rr_reason": "Unknown",
        "rr_sys_ver": __version__,
        "rr_service": "",
        "os_str": socket.gethostname(),
    }


def clock_data(cm: NodeView) -> dict[str, Any]:
    now = cm.wall()
    ms = int(now * 1000) % 1000
    text = time.strftime(f"%H:%M:%S.{ms:03d} %Z %a %b %d %Y", time.localtime(now))
    return {"simple_time": text, "time_source": "the host system clock"}


def users_data(cli: CliServer, me: CliSession) -> dict[str, Any]:
    rows = []
    now = time.monotonic()
    for s in cli.sessions():
        idle = int(now - s.last_used)
        rows.append(
            {
                "u_name": s.user,
                "tty": s.line,
                "login_time": time.strftime("%b %d %H:%M", time.localtime(s.started)),
                "idle": "." if idle < 60 else f"{idle // 3600:02d}:{idle % 3600 // 60:02d}",
                "pid": s.pid,
                "host": s.origin,
                "cur_session": "true" if s.id == me.id else "false",
            }
        )
    return {"TABLE_sessions": {"ROW_sessions": rows}}


def user_account_data(cm: NodeView, name: str | None) -> dict[str, Any]:
    from openvsm.roles import role_of

    users = sorted(set(cm.store.list("user")) | {"admin"})
    rows = [
        {
            "usr_name": u,
            "expire_date": "this user account has no expiry date",
            "usr_roles": role_of(u, cm.store).value,
        }
        for u in users
        if name is None or u == name
    ]
    return {"TABLE_template": {"ROW_template": rows}}


def inventory_data(cm: NodeView, modules: dict[str, Any]) -> dict[str, Any]:
    """The chassis, the supervisors and every VEM of ``show module``."""
    rows = [
        {
            "name": '"Chassis"',
            "desc": f'"{PRODUCT} Chassis"',
            "productid": "OVSM-CHASSIS",
            "vendorid": "",
            "serialnum": f"domain-{cm.cfg.domain_id}",
        }
    ]
    uuids = {
        r.get("modsrv"): str(r.get("srvuuid", ""))
        for r in modules.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])
    }
    for r in modules.get("TABLE_modinfo", {}).get("ROW_modinfo", []):
        number = r.get("modinf")
        vsm = number in (1, 2)
        serial = uuids.get(number, "")
        if vsm and number == cm.cfg.sup_number:
            serial = _dotted(system_mac(cm))
        rows.append(
            {
                "name": f'"Slot {number}"',
                "desc": f'"{r.get("modtype", "")}"',
                "productid": "OVSM-VSM" if vsm else "OVSM-VEM",
                "vendorid": "",
                "serialnum": "" if serial == "NA" else serial,
            }
        )
    return {"TABLE_inv": {"ROW_inv": rows}}


def _mgmt_address(cm: NodeView) -> tuple[str, int]:
    mgmt = cm.cfg.raw.get("mgmt") if isinstance(cm.cfg.raw, dict) else None
    address = mgmt.get("local_address") if isinstance(mgmt, dict) else None
    if isinstance(address, str) and "/" in address:
        ip, _, mask = address.partition("/")
        if mask.isdigit():
            return ip, int(mask)
    return cm.cfg.mgmt.local.host, 24


def _counter(device: str | None, name: str) -> int:
    if not device:
        return 0
    try:
        return int(Path(f"/sys/class/net/{device}/statistics/{name}").read_text().strip())
    except (OSError, ValueError):
        return 0


def mgmt0_data(cm: NodeView) -> dict[str, Any]:
    ip, mask = _mgmt_address(cm)
    mac = _dotted(system_mac(cm))
    dev = cm.cfg.mgmt.device
    row = {
        "interface": "mgmt0",
        "state": "up",
        "admin_state": "up",
        "eth_hw_desc": "Ethernet",
        "eth_hw_addr": mac,
        "eth_bia_addr": mac,
        "eth_ip_addr": ip,
        "eth_ip_mask": mask,
        "eth_mtu": "1500",
        "eth_bw": 1000000,
        "eth_inpkts": _counter(dev, "rx_packets"),
        "eth_inbytes": _counter(dev, "rx_bytes"),
        "eth_outpkts": _counter(dev, "tx_packets"),
        "eth_outbytes": _counter(dev, "tx_bytes"),
    }
    return {"TABLE_interface": {"ROW_interface": [row]}}


def _profile_vlan(cm: NodeView, profile: str) -> tuple[str, str]:
    """(VLAN column, port mode) of a port-profile's ports."""
    body = cm.store.get("port_profile", profile) or {}
    if body.get("mode") == "trunk":
        return "trunk", "trunk"
    return str(body.get("access_vlan") or 1), "access"


def _veth_rows(cm: NodeView, vifs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, str]]:
    return [(r, *_profile_vlan(cm, str(r.get("port_profile") or ""))) for r in vifs]


def interface_brief_data(cm: NodeView, vifs: list[dict[str, Any]]) -> dict[str, Any]:
    ip, _ = _mgmt_address(cm)
    rows: list[dict[str, Any]] = [
        {"interface": "mgmt0", "state": "up", "ip_addr": ip, "speed": "1000", "mtu": 1500}
    ]
    for r, vlan, mode in _veth_rows(cm, vifs):
        up = r.get("status") == "up"
        rows.append(
            {
                "interface": r["interface"],
                "vlan": vlan,
                "type": "virt",
                "portmode": mode,
                "state": "up" if up else "down",
                "state_rsn_desc": "none" if up else "Administratively down",
                "speed": "auto",
            }
        )
    return {"TABLE_interface": {"ROW_interface": rows}}


def interface_status_data(cm: NodeView, vifs: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        {
            "interface": "mgmt0",
            "name": "--",
            "state": "connected",
            "vlan": "routed",
            "duplex": "full",
            "speed": "1000",
            "type": "--",
        }
    ]
    for r, vlan, _ in _veth_rows(cm, vifs):
        rows.append(
            {
                "interface": r["interface"],
                "name": str(r.get("owner") or "--"),
                "state": "connected" if r.get("status") == "up" else "notconnec",
                "vlan": vlan,
                "duplex": "auto",
                "speed": "auto",
                "type": "--",
            }
        )
    return {"TABLE_interface": {"ROW_interface": rows}}


def interface_data(cm: NodeView, vifs: list[dict[str, Any]]) -> dict[str, Any]:
    """``show interface``: mgmt0 and every vEthernet, NX-OS keys."""
    rows: list[dict[str, Any]] = list(mgmt0_data(cm)["TABLE_interface"]["ROW_interface"])
    for r, _, mode in _veth_rows(cm, vifs):
        mac = str(r.get("mac") or "")
        dotted = _dotted(mac) if len(mac.replace(":", "")) == 12 else "0000.0000.0000"
        up = r.get("status") == "up"
        rows.append(
            {
                "interface": r["interface"],
                "state": "up" if up else "down",
                "admin_state": "up",
                "desc": str(r.get("owner") or ""),
                "eth_hw_desc": "Virtual",
                "eth_hw_addr": dotted,
                "eth_bia_addr": dotted,
                "module": r.get("module", 0),
                "port_profile": str(r.get("port_profile") or ""),
                "portmode": mode,
                "eth_mtu": "1500",
                "eth_bw": 10000000,
            }
        )
    return {"TABLE_interface": {"ROW_interface": rows}}


def vlan_brief_data(cm: NodeView) -> dict[str, Any]:
    vlans = {int(k): v for k, v in cm.store.list("vlan").items() if k.isdigit()}
    vlans.setdefault(1, {"id": 1, "name": "default"})
    ports: dict[int, list[str]] = {}
    for veth in cm.store.list("veth").values():
        vlan, mode = _profile_vlan(cm, str(veth.get("port_profile") or ""))
        if mode == "access" and vlan.isdigit():
            ports.setdefault(int(vlan), []).append(str(veth.get("name", "")))
    rows = []
    for n in sorted(vlans):
        name = str(vlans[n].get("name") or (default_vlan_name(n) if n != 1 else "default"))
        members = sorted(ports.get(n, []), key=lambda p: (len(p), p))
        row: dict[str, Any] = {
            "vlanshowbr-vlanid": n,
            "vlanshowbr-vlanid-utf": n,
            "vlanshowbr-vlanname": name,
            "vlanshowbr-vlanstate": "active",
            "vlanshowbr-shutstate": "noshutdown",
        }
        if members:  # NX-OS leaves the key out for a VLAN without ports
            row["vlanshowplist-ifidx"] = ",".join(members)
        rows.append(row)
    return {"TABLE_vlanbriefxbrief": {"ROW_vlanbriefxbrief": rows}}


def startup_config_data(cm: NodeView) -> dict[str, Any]:
    last = cm.store.last_change_time()
    saved = _wall(last) if last else _wall(_BOOT_WALL)
    return {
        "time": _wall(cm.wall()),
        "saved": saved,
        "lines": running_config_lines(cm.store),
    }


__all__ = [
    "clock_data",
    "interface_brief_data",
    "interface_status_data",
    "inventory_data",
    "mgmt0_data",
    "startup_config_data",
    "user_account_data",
    "users_data",
    "version_data",
    "vlan_brief_data",
]
