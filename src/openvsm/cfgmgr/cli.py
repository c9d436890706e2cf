"""The CLI of a node: binds every exec command to the service that answers it.

Show handlers return data (``openvsm.cli.views``); the CLI server renders it.
Redundancy commands go to hamgr, module commands to vemmgr (the standby's
answers come from replicated objects), process commands to sysmgr, and
configuration to cfgmgr's own store and configuration sessions.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from openvsm import __version__
from openvsm.cli.server import CliCommandError, CliServer, CliSession
from openvsm.ipc import IpcClient, IpcError

if TYPE_CHECKING:
    from openvsm.cfgmgr.service import Cfgmgr

log = logging.getLogger("cfgmgr.cli")
_BOOT = time.monotonic()


def _wall(t: float) -> str:
    return time.strftime("%Y-%b-%d %H:%M:%S", time.localtime(t))


async def _call(client: IpcClient, what: str, op: str, **args: Any) -> Any:
    try:
        return await client.call(op, **args)
    except IpcError as exc:
        text = str(exc)
        if not text.startswith("%"):
            text = f"% {what} is not available: {text}"
        raise CliCommandError(text) from None


def build_cli(cm: Cfgmgr) -> CliServer:
    from openvsm.cfgmgr.configmode import ConfigExecutor

    executor = ConfigExecutor(cm)
    cli = CliServer(hostname=lambda: cm.cfg.hostname, config_executor=executor.execute)
    hamgr, vemmgr, sysmgr = cm.hamgr, cm.vemmgr, cm.sysmgr

    def reg(handler_id: str, fn: Any) -> None:
        cli.register(handler_id, fn)

    # ---- redundancy (hamgr) ------------------------------------------------
    async def redundancy_status(args: dict[str, str], s: CliSession) -> Any:
        return await _call(hamgr, "hamgr", "redundancy_status")

    async def trace(args: dict[str, str], s: CliSession) -> Any:
        return await _call(hamgr, "hamgr", "trace")

    async def counters(args: dict[str, str], s: CliSession) -> Any:
        return await _call(hamgr, "hamgr", "counters")

    async def aa_show(args: dict[str, str], s: CliSession) -> Any:
        return await _call(hamgr, "hamgr", "activeactive", which=args["which"])

    async def aa_clear(args: dict[str, str], s: CliSession) -> Any:
        await _call(hamgr, "hamgr", "clear_activeactive", which=args["which"])
        return None

    async def clear_peer_mac(args: dict[str, str], s: CliSession) -> Any:
        await _call(hamgr, "hamgr", "clear_peer_mac")
        return None

    async def switchover(args: dict[str, str], s: CliSession) -> Any:
        await _call(hamgr, "hamgr", "switchover")
        return "Switchover in progress: this supervisor hands over to the HA standby and reloads."

    async def reload(args: dict[str, str], s: CliSession) -> Any:
        await _call(hamgr, "hamgr", "reload")
        return "Reloading this supervisor."

    reg("show_redundancy_status", redundancy_status)
    reg("show_redundancy_trace", trace)
    reg("show_redundancy_counters", counters)
    for which in (
        "accounting_logs",
        "redundancy_traces",
        "remote_accounting_logs",
        "remote_redundancy_traces",
    ):
        reg(f"show_activeactive_{which}", aa_show)
        reg(f"clear_activeactive_{which}", aa_clear)
    reg("clear_peer_mac", clear_peer_mac)
    reg("system_switchover", switchover)
    reg("reload", reload)

    # ---- sysmgr -------------------------------------------------------------
    async def services(args: dict[str, str], s: CliSession) -> Any:
        return await _call(sysmgr, "sysmgr", "services")

    async def restart_service(args: dict[str, str], s: CliSession) -> Any:
        name = args.get("service", "")
        await _call(sysmgr, "sysmgr", "restart_service", name=name)
        cm.account(user=s.user, command=f"restart service {name}", result="SUCCESS")
        return f"Service {name} restarted."

    reg("show_sysmgr_services", services)
    reg("restart_service", restart_service)

    # ---- modules (vemmgr) ---------------------------------------------------
    async def show_module(args: dict[str, str], s: CliSession) -> Any:
        from openvsm.cfgmgr.modules import show_module_data

        return await show_module_data(cm)

    async def vemmgr_op(op: str) -> Any:
        return await _call(vemmgr, "vemmgr", op)

    async def module_counters(args: dict[str, str], s: CliSession) -> Any:
        return await vemmgr_op("counters")

    async def svs_neighbors(args: dict[str, str], s: CliSession) -> Any:
        from openvsm.cfgmgr.modules import svs_neighbors_data

        return svs_neighbors_data(cm, await vemmgr_op("neighbors"))

    async def interface_virtual(args: dict[str, str], s: CliSession) -> Any:
        from openvsm.cfgmgr.modules import interface_virtual_data

        return await interface_virtual_data(cm)

    async def port_channel(args: dict[str, str], s: CliSession) -> Any:
        return await vemmgr_op("port_channels")

    async def lacp_neighbor(args: dict[str, str], s: CliSession) -> Any:
        return await vemmgr_op("lacp_neighbors")

    async def lacp_counters(args: dict[str, str], s: CliSession) -> Any:
        return await vemmgr_op("lacp_counters")

    async def svs_domain(args: dict[str, str], s: CliSession) -> Any:
        c = cm.cfg
        return {
            "domain_id": c.domain_id,
            "control": f"{c.control.transport} {c.control.local}",
            "mgmt": f"{c.mgmt.transport} {c.mgmt.local}",
            "transport": "L2" if c.control.transport == "l2" else "L3 (UDP)",
            "state": f"{cm.ha.get('state', 'initializing')} (epoch {cm.ha.get('epoch', 0)})",
        }

    reg("show_module", show_module)
    reg("show_module_vem_counters", module_counters)
    reg("show_svs_neighbors", svs_neighbors)
    reg("show_interface_virtual", interface_virtual)
    reg("show_port_channel_summary", port_channel)
    reg("show_lacp_neighbor", lacp_neighbor)
    reg("show_lacp_counters", lacp_counters)
    reg("show_svs_domain", svs_domain)

    # ---- configuration (cfgmgr) --------------------------------------------
    async def configure_terminal(args: dict[str, str], s: CliSession) -> Any:
        try:
            await cm.ensure_active()
        except IpcError as exc:
            raise CliCommandError(str(exc)) from None
        executor.begin(s)
        return None

    async def show_running(args: dict[str, str], s: CliSession) -> Any:
        return executor.running_config()

    async def show_port_profile(args: dict[str, str], s: CliSession) -> Any:
        return executor.port_profiles(args.get("name"))

    async def show_accounting(args: dict[str, str], s: CliSession) -> Any:
        rows = [
            {
                "seq": e.seq,
                "time": time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(e.time)),
                "user": e.user,
                "command": e.command,
                "result": e.result,
            }
            for e in cm.store.accounting_log(1000)
        ]
        return {"TABLE_acct": {"ROW_acct": rows}}

    async def copy_rs(args: dict[str, str], s: CliSession) -> Any:
        return "Copy complete: the configuration is always durable (committed to the store)."

    async def openstack_sync(args: dict[str, str], s: CliSession) -> Any:
        from openvsm.api.n1kv import openstack_sync_status, port_count
        from openvsm.api.rest import rest_state

        state = rest_state(cm.rest.app) if cm.rest is not None else None
        data = openstack_sync_status(
            cm.store,
            last_md5_request=state.last_md5_request if state is not None else None,
            hashes=state.backend.md5_hashes() if state is not None else None,
        )
        data["network_profiles"] = len(cm.store.list("os_network_profile"))
        data["networks"] = len(cm.store.list("os_network_segment"))
        data["subnets"] = len(cm.store.list("os_ip_pool"))
        data["ports"] = port_count(cm.store)
        return data

    async def show_version(args: dict[str, str], s: CliSession) -> Any:
        up = int(time.monotonic() - _BOOT)
        return {
            "sys_ver_str": __version__,
            "host_name": cm.cfg.hostname,
            "chassis_id": "openvsm Virtual Supervisor Module",
            "kern_uptm_days": up // 86400,
            "kern_uptm_hrs": up % 86400 // 3600,
            "kern_uptm_mins": up % 3600 // 60,
            "kern_uptm_secs": up % 60,
            "os_str": socket.gethostname(),
        }

    async def show_hostname(args: dict[str, str], s: CliSession) -> Any:
        return {"hostname": cm.cfg.hostname}

    reg("configure_terminal", configure_terminal)
    reg("show_running_config", show_running)
    reg("show_port_profile", show_port_profile)
    reg("show_accounting_log", show_accounting)
    reg("copy_running_startup", copy_rs)
    reg("show_openstack_sync", openstack_sync)
    reg("show_version", show_version)
    reg("show_hostname", show_hostname)
    return cli


__all__ = ["build_cli"]
