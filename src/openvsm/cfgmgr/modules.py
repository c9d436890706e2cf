"""``show module`` and ``show interface virtual`` as the CLI sees them.

VSM rows (modules 1 and 2) come from hamgr's view of the pair: the standby
disappears from the active's list when it is lost (seed, "Loss of
Communication"). VEM rows come from vemmgr, or, when vemmgr is restarting
or not active yet on an active node, from the replicated ``module`` objects
of the store read by the same ``ModuleTable`` code with vemmgr's checkpoint
and takeover rule (``_vem_from_store``), so the answer is the one vemmgr
gives: an active's vemmgr commits every status it decides and checkpoints
them, and a new active never shows the previous active's ``ok``.
"""

from __future__ import annotations

from typing import Any

from openvsm import __version__
from openvsm.cfgmgr.host import ModuleSources
from openvsm.contracts import hamgr as hamgr_api
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import IpcError
from openvsm.modules.checkpoint import CheckpointError, read_attachments, takeover_view
from openvsm.modules.table import ModuleShowRows, ModuleTable

VSM_TYPE = "Virtual Supervisor Module"


def _vsm_status(state: str) -> str:
    return {"active": "active", "standby": "ha-standby"}.get(state, "initializing")


async def current_ha(cm: ModuleSources) -> HaStatus:
    """hamgr's status now (as ``show system redundancy status`` reads it), so a
    ``show module`` right after a takeover agrees with it; the last status
    cfgmgr was told when hamgr does not answer (restarting)."""
    try:
        return await cm.hamgr.ask(hamgr_api.Status(), timeout=0.5)
    except IpcError:
        return cm.ha


def vsm_rows(cm: ModuleSources, ha: HaStatus) -> list[tuple[int, str]]:
    me = cm.cfg.sup_number
    rows = [(me, _vsm_status(ha.state) + " *")]
    if ha.peer_present:
        peer_state = ha.peer_state.lower()
        status = "active" if peer_state == "active" else "ha-standby"
        rows.append((3 - me, status))
    return sorted(rows)


def _store_table(cm: ModuleSources) -> ModuleTable:
    """The replicated ``module``/``veth`` objects read the way vemmgr reads them,
    so the answer does not change when vemmgr restarts."""
    table = ModuleTable(module_limit=cm.cfg.module_limit)
    table.load(cm.store.list("module"), cm.store.list("veth"))
    return table


def _vem_from_store(cm: ModuleSources, ha: HaStatus) -> dict[str, Any]:
    """VEM rows without vemmgr's live table: on a standby the replicated view;
    on an active, what its vemmgr shows once active (checkpointed statuses of
    this activation, ``powered-up`` for the rest), never the store's copy of
    the previous active's ``ok``."""
    if ha.state != "active":
        return _store_table(cm).modules_data()
    try:
        saved = read_attachments(cm.cfg.rundir.vemmgr_attachments)
    except CheckpointError:
        saved = None
    view = takeover_view(
        cm.store.list("module"),
        cm.store.list("veth"),
        saved,
        ha.epoch,
        module_limit=cm.cfg.module_limit,
    )
    return view.modules_data()


async def show_module_data(cm: ModuleSources) -> dict[str, Any]:
    ha = await current_ha(cm)
    try:
        vems = await cm.vemmgr.call("modules", timeout=3.0)
    except IpcError:
        vems = _vem_from_store(cm, ha)  # vemmgr restarting
    else:
        if ha.state == "active" and not vems.get("active"):
            vems = _vem_from_store(cm, ha)  # vemmgr has not taken over yet
    mgmt_ip = cm.cfg.mgmt.local.host
    rows = ModuleShowRows()
    for number, status in vsm_rows(cm, ha):
        rows.add(
            number,
            ports=0,
            modtype=VSM_TYPE,
            model="openvsm",
            status=status,
            sw=__version__,
            hw="0.0",
            srvip=mgmt_ip,
            srvuuid="NA",
            srvname="NA",
        )
    rows.extend(vems)
    return rows.data()


def svs_neighbors_data(cm: ModuleSources, vemmgr_data: Any) -> dict[str, Any]:
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


async def interface_virtual_data(cm: ModuleSources) -> dict[str, Any]:
    try:
        data = await cm.vemmgr.call("interfaces", timeout=3.0)
        rows = data.get("TABLE_vif", {}).get("ROW_vif", [])
    except IpcError:
        rows = _store_table(cm).interfaces_data()["TABLE_vif"]["ROW_vif"]
    return {"TABLE_interface": {"ROW_interface": rows}}
