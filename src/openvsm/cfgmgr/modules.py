"""``show module`` and ``show interface virtual`` as the CLI sees them.

VSM rows (modules 1 and 2) come from hamgr's view of the pair: the standby
disappears from the active's list when it is lost (seed, "Loss of
Communication"). VEM rows come from vemmgr, or, when vemmgr is restarting,
straight from the replicated ``module`` objects of the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openvsm import __version__
from openvsm.ipc import IpcError

if TYPE_CHECKING:
    from openvsm.cfgmgr.service import Cfgmgr

VSM_TYPE = "Virtual Supervisor Module"
VEM_TYPE = "Virtual Ethernet Module"


def _vsm_status(state: str) -> str:
    return {"active": "active", "standby": "ha-standby"}.get(state, "initializing")


def vsm_rows(cm: Cfgmgr) -> list[tuple[int, str]]:
    ha = cm.ha
    me = cm.cfg.sup_number
    rows = [(me, _vsm_status(str(ha.get("state", ""))) + " *")]
    if ha.get("peer_present"):
        peer_state = str(ha.get("peer_state", "")).lower()
        status = "active" if peer_state == "active" else "ha-standby"
        rows.append((3 - me, status))
    return sorted(rows)


def _vem_from_store(cm: Cfgmgr) -> dict[str, Any]:
    mods = sorted(cm.store.list("module").values(), key=lambda m: int(m.get("module", 0)))
    return {
        "TABLE_modinfo": {
            "ROW_modinfo": [
                {
                    "modinf": m["module"],
                    "ports": m.get("ports", 0),
                    "modtype": VEM_TYPE,
                    "model": "NA",
                    "status": m.get("status", "offline"),
                }
                for m in mods
            ]
        },
        "TABLE_modwwninfo": {
            "ROW_modwwninfo": [
                {"modwwn": m["module"], "sw": m.get("version", ""), "hw": m.get("host_os", "")}
                for m in mods
            ]
        },
        "TABLE_modsrvinfo": {
            "ROW_modsrvinfo": [
                {
                    "modsrv": m["module"],
                    "srvip": m.get("host_ip", ""),
                    "srvuuid": m.get("host_uuid", ""),
                    "srvname": m.get("host_name", ""),
                }
                for m in mods
            ]
        },
    }


async def show_module_data(cm: Cfgmgr) -> dict[str, Any]:
    try:
        vems = await cm.vemmgr.call("modules", timeout=3.0)
    except IpcError:
        vems = _vem_from_store(cm)
    mgmt_ip = cm.cfg.mgmt.local.host
    info, sw, srv = [], [], []
    for number, status in vsm_rows(cm):
        info.append(
            {
                "modinf": number,
                "ports": 0,
                "modtype": VSM_TYPE,
                "model": "openvsm",
                "status": status,
            }
        )
        sw.append({"modwwn": number, "sw": __version__, "hw": "0.0"})
        srv.append({"modsrv": number, "srvip": mgmt_ip, "srvuuid": "NA", "srvname": "NA"})
    info += vems.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
    sw += vems.get("TABLE_modwwninfo", {}).get("ROW_modwwninfo", [])
    srv += vems.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])
    return {
        "TABLE_modinfo": {"ROW_modinfo": info},
        "TABLE_modwwninfo": {"ROW_modwwninfo": sw},
        "TABLE_modsrvinfo": {"ROW_modsrvinfo": srv},
    }


async def interface_virtual_data(cm: Cfgmgr) -> dict[str, Any]:
    try:
        data = await cm.vemmgr.call("interfaces", timeout=3.0)
        rows = data.get("TABLE_vif", {}).get("ROW_vif", [])
    except IpcError:
        by_host = {m.get("host_uuid"): m for m in cm.store.list("module").values()}
        rows = []
        for veth in cm.store.list("veth").values():
            mod = by_host.get(veth.get("host_uuid"), {})
            rows.append(
                {
                    "interface": veth.get("name", ""),
                    "module": mod.get("module", 0),
                    "owner": veth.get("vm", ""),
                    "port_profile": veth.get("port_profile", ""),
                    "status": veth.get("status", "down"),
                }
            )
        rows.sort(key=lambda r: int(str(r["interface"]).removeprefix("Vethernet") or 0))
    return {"TABLE_interface": {"ROW_interface": rows}}
