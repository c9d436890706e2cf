"""``show module`` and ``show interface virtual`` as the CLI sees them.

VSM rows (modules 1 and 2) come from hamgr's view of the pair: the standby
disappears from the active's list when it is lost (seed, "Loss of
Communication"). VEM rows come from vemmgr, or, when vemmgr is restarting,
straight from the replicated ``module`` objects of the store, read by the
same ``ModuleTable`` code (an active's vemmgr commits every status it
decides, ``powered-up`` included, so both answers are the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openvsm import __version__
from openvsm.ipc import IpcError
from openvsm.modules.table import ModuleTable

if TYPE_CHECKING:
    from openvsm.cfgmgr.service import Cfgmgr

VSM_TYPE = "Virtual Supervisor Module"


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


def _store_table(cm: Cfgmgr) -> ModuleTable:
    """The replicated ``module``/``veth`` objects read the way vemmgr reads them,
    so the answer does not change when vemmgr restarts."""
    table = ModuleTable(module_limit=cm.cfg.module_limit)
    table.load(cm.store.list("module"), cm.store.list("veth"))
    return table


def _vem_from_store(cm: Cfgmgr) -> dict[str, Any]:
    return _store_table(cm).modules_data()


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


def svs_neighbors_data(cm: Cfgmgr, vemmgr_data: Any) -> dict[str, Any]:
    """``show svs neighbors``: vemmgr's rows (the VEMs attached to this VSM)
    with this domain and system MAC."""
    table = vemmgr_data.get("TABLE_neighbor", {}) if isinstance(vemmgr_data, dict) else {}
    rows = table.get("ROW_neighbor", []) if isinstance(table, dict) else []
    domain = cm.cfg.domain_id
    return {
        "domain_id": domain,
        "system_mac": cm.cfg.system_mac,
        "TABLE_neighbor": {
            "ROW_neighbor": [{**r, "domain_id": domain} for r in rows if isinstance(r, dict)]
        },
    }


async def interface_virtual_data(cm: Cfgmgr) -> dict[str, Any]:
    try:
        data = await cm.vemmgr.call("interfaces", timeout=3.0)
        rows = data.get("TABLE_vif", {}).get("ROW_vif", [])
    except IpcError:
        rows = _store_table(cm).interfaces_data()["TABLE_vif"]["ROW_vif"]
    return {"TABLE_interface": {"ROW_interface": rows}}
