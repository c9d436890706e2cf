"""The CLI of a node: binds every exec command to the service that answers it.

Show handlers return data (``openvsm.cli.views``); the CLI server renders it.
Redundancy commands go to hamgr, module commands to vemmgr (the standby's
answers come from replicated objects), process commands to sysmgr, and
configuration to cfgmgr's own store and configuration sessions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from openvsm import roles
from openvsm.cfgmgr import shows
from openvsm.cfgmgr.configmode import ConfigExecutor
from openvsm.cfgmgr.host import CliHost
from openvsm.cfgmgr.modules import interface_virtual_data, show_module_data, svs_neighbors_data
from openvsm.cli.server import CliCommandError, CliServer, CliSession, Handler
from openvsm.ipc import IpcClient, IpcError
from openvsm.observe.tracelog import iso_utc
from openvsm.store import checkpoints
from openvsm.store.pss import Op

COPY_OUTPUT = "[########################################] 100%\nCopy complete.\n"


log = logging.getLogger("cfgmgr.cli")


async def _call(client: IpcClient, what: str, op: str, **args: Any) -> Any:
    try:
        return await client.call(op, **args)
    except IpcError as exc:
        text = str(exc)
        if not text.startswith("%"):
            text = f"% {what} is not available: {text}"
        raise CliCommandError(text) from None


async def _mgmt_address(cm: CliHost, address: str) -> dict[str, Any]:
    """Who holds the shared management address, as this node's mgmt service says."""
    client = IpcClient(cm.cfg.rundir.mgmt, timeout=2.0)
    try:
        st = await client.call("status")
        held = bool(isinstance(st, dict) and st.get("holding"))
        holder = f"sup-{cm.cfg.sup_number} (this supervisor)" if held else "not this supervisor"
    except IpcError:
        holder = "unknown (mgmt service not answering)"
    finally:
        client.close()
    return {"mgmt_address": address, "mgmt_address_holder": holder}


async def _commit_cli(
    cm: CliHost, s: CliSession, build: Callable[[], list[Op]], command: str
) -> int:
    """Commit the ops ``build()`` makes from the store as ONE change under the
    session's user (replicated like any configuration); the number of ops."""
    try:
        await cm.ensure_active()
    except IpcError as exc:
        raise CliCommandError(str(exc)) from None
    try:
        ops = build()
    except checkpoints.CheckpointError as exc:
        raise CliCommandError(str(exc)) from None
    if ops:
        try:
            await cm.commit(ops, user=s.user, source="cli", command=command)
        except IpcError as exc:
            text = str(exc)
            raise CliCommandError(text if text.startswith("%") else f"% {text}") from None
    return len(ops)


def _file_key(name: str) -> str:
    try:
        return checkpoints.file_key(name)
    except checkpoints.CheckpointError as exc:
        raise CliCommandError(str(exc)) from None


Register = Callable[[str, Handler], None]

ROLLBACK_DONE = (
    "Collecting Running-Config\n"
    "Generating Rollback Patch\n"
    "Executing Rollback Patch ({changed} object(s), one replicated change)\n"
    "Verification is Successful.\n\n"
    "Rollback completed successfully.\n"
)


def build_cli(cm: CliHost) -> CliServer:
    """The CLI server with every exec command bound to its handler."""
    executor = ConfigExecutor(cm)
    cli = CliServer(
        hostname=lambda: cm.cfg.hostname,
        config_executor=executor.execute,
        role_of=lambda user: roles.role_of(user, cm.store),
        accountant=lambda user, command, result: cm.account(
            user=user, command=command, result=result
        ),
    )
    reg: Register = cli.register
    _redundancy(cm, reg)
    _sysmgr(cm, reg)
    _modules(cm, reg)
    _configuration(cm, executor, reg)
    _checkpoints(cm, reg)
    _system(cm, cli, reg)
    _interfaces(cm, reg)
    return cli


def _redundancy(cm: CliHost, reg: Register) -> None:
    """Redundancy commands: hamgr answers."""
    hamgr = cm.hamgr

    async def redundancy_status(args: dict[str, str], s: CliSession) -> Any:
        data = await _call(hamgr, "hamgr", "redundancy_status")
        shared = cm.cfg.shared_mgmt
        if shared is not None and isinstance(data, dict):
            data = {**data, **await _mgmt_address(cm, shared.address)}
        return data

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


def _sysmgr(cm: CliHost, reg: Register) -> None:
    """Process commands: sysmgr answers."""
    sysmgr = cm.sysmgr

    async def services(args: dict[str, str], s: CliSession) -> Any:
        return await _call(sysmgr, "sysmgr", "services")

    async def restart_service(args: dict[str, str], s: CliSession) -> Any:
        name = args.get("service", "")
        await _call(sysmgr, "sysmgr", "restart_service", name=name)
        return f"Service {name} restarted."

    reg("show_sysmgr_services", services)
    reg("restart_service", restart_service)


def _modules(cm: CliHost, reg: Register) -> None:
    """Module commands: vemmgr answers (the standby from replicated objects)."""
    vemmgr = cm.vemmgr

    async def show_module(args: dict[str, str], s: CliSession) -> Any:
        return await show_module_data(cm)

    async def vemmgr_op(op: str) -> Any:
        return await _call(vemmgr, "vemmgr", op)

    async def module_counters(args: dict[str, str], s: CliSession) -> Any:
        return await vemmgr_op("counters")

    async def svs_neighbors(args: dict[str, str], s: CliSession) -> Any:
        return svs_neighbors_data(cm, await vemmgr_op("neighbors"))

    async def interface_virtual(args: dict[str, str], s: CliSession) -> Any:
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
            "state": f"{cm.ha.state} (epoch {cm.ha.epoch})",
        }

    reg("show_module", show_module)
    reg("show_module_vem_counters", module_counters)
    reg("show_svs_neighbors", svs_neighbors)
    reg("show_interface_virtual", interface_virtual)
    reg("show_port_channel_summary", port_channel)
    reg("show_lacp_neighbor", lacp_neighbor)
    reg("show_lacp_counters", lacp_counters)
    reg("show_svs_domain", svs_domain)


def _configuration(cm: CliHost, executor: ConfigExecutor, reg: Register) -> None:
    """Configuration mode, the running configuration and the accounting log."""

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
                "timestamp": iso_utc(e.time),  # stable, machine-readable (observability.md)
                "user": e.user,
                "command": e.command,
                "result": e.result,
            }
            for e in cm.store.accounting_log(1000)
        ]
        return {"TABLE_acct": {"ROW_acct": rows}}

    async def copy_rs(args: dict[str, str], s: CliSession) -> Any:
        return COPY_OUTPUT

    reg("configure_terminal", configure_terminal)
    reg("show_running_config", show_running)
    reg("show_port_profile", show_port_profile)
    reg("show_accounting_log", show_accounting)
    reg("copy_running_startup", copy_rs)


KeyOf = Callable[[dict[str, str]], tuple[str, str]]  # args -> (store key, as typed)


def _named(args: dict[str, str]) -> tuple[str, str]:
    return args["checkpoint"], args["checkpoint"]


def _filed(args: dict[str, str]) -> tuple[str, str]:
    return _file_key(args["file"]), args["file"]


def _checkpoints(cm: CliHost, reg: Register) -> None:
    """Checkpoints, named or files (``bootflash:``), and rollback to them (each
    one replicated change). One handler per verb; ``key_of`` says where the
    checkpoint is (``_named``/``_filed``), ``verb`` how the command reads."""

    def checkpoint(key_of: KeyOf, verb: str) -> Handler:
        async def handler(args: dict[str, str], s: CliSession) -> Any:
            key, typed = key_of(args)
            await _commit_cli(
                cm,
                s,
                lambda: checkpoints.checkpoint_ops(cm.store, key, user=s.user, now=cm.wall()),
                f"{verb} {typed}",
            )
            return "Done"

        return handler

    def rollback(key_of: KeyOf, verb: str) -> Handler:
        async def handler(args: dict[str, str], s: CliSession) -> Any:
            key, typed = key_of(args)
            changed = await _commit_cli(
                cm, s, lambda: checkpoints.rollback_ops(cm.store, key), f"{verb} {typed}"
            )
            return ROLLBACK_DONE.format(changed=changed)

        return handler

    def delete(key_of: KeyOf, verb: str) -> Handler:
        async def handler(args: dict[str, str], s: CliSession) -> Any:
            key, typed = key_of(args)
            await _commit_cli(
                cm, s, lambda: checkpoints.delete_ops(cm.store, key), f"{verb} {typed}"
            )
            return None

        return handler

    async def checkpoint_summary(args: dict[str, str], s: CliSession) -> Any:
        return checkpoints.summary_data(cm.store)

    async def show_file(args: dict[str, str], s: CliSession) -> Any:
        key = _file_key(args["file"])
        try:
            return {"lines": checkpoints.file_lines(cm.store, key)}
        except checkpoints.CheckpointError as exc:
            raise CliCommandError(str(exc)) from None

    reg("checkpoint", checkpoint(_named, "checkpoint"))
    reg("checkpoint_file", checkpoint(_filed, "checkpoint file"))
    reg("no_checkpoint", delete(_named, "no checkpoint"))
    reg("delete_file", delete(_filed, "delete"))
    reg("rollback", rollback(_named, "rollback running-config checkpoint"))
    reg("rollback_file", rollback(_filed, "rollback running-config file"))
    reg("show_checkpoint_summary", checkpoint_summary)
    reg("show_file", show_file)


def _system(cm: CliHost, cli: CliServer, reg: Register) -> None:
    """The system shows: version, clock, users, inventory, OpenStack sync."""

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
        return shows.version_data(cm)

    async def show_hostname(args: dict[str, str], s: CliSession) -> Any:
        return {"hostname": cm.cfg.hostname}

    async def show_clock(args: dict[str, str], s: CliSession) -> Any:
        return shows.clock_data(cm)

    async def show_users(args: dict[str, str], s: CliSession) -> Any:
        return shows.users_data(cli, s)

    async def show_user_account(args: dict[str, str], s: CliSession) -> Any:
        return shows.user_account_data(cm, args.get("user"))

    async def show_inventory(args: dict[str, str], s: CliSession) -> Any:
        return shows.inventory_data(cm, await show_module_data(cm))

    async def show_vlan_brief(args: dict[str, str], s: CliSession) -> Any:
        return shows.vlan_brief_data(cm)

    async def show_startup(args: dict[str, str], s: CliSession) -> Any:
        return shows.startup_config_data(cm)

    async def show_hosts(args: dict[str, str], s: CliSession) -> Any:
        return {"dns_enabled": False, "domain": ""}

    reg("show_openstack_sync", openstack_sync)
    reg("show_version", show_version)
    reg("show_hostname", show_hostname)
    reg("show_clock", show_clock)
    reg("show_users", show_users)
    reg("show_user_account", show_user_account)
    reg("show_inventory", show_inventory)
    reg("show_vlan_brief", show_vlan_brief)
    reg("show_startup_config", show_startup)
    reg("show_hosts", show_hosts)


def _interfaces(cm: CliHost, reg: Register) -> None:
    """The interface shows (the vEths from vemmgr, mgmt0 from the host)."""

    async def vifs() -> list[dict[str, Any]]:
        data = await interface_virtual_data(cm)
        return list(data["TABLE_interface"]["ROW_interface"])

    async def show_interface(args: dict[str, str], s: CliSession) -> Any:
        return shows.interface_data(cm, await vifs())

    async def show_interface_brief(args: dict[str, str], s: CliSession) -> Any:
        return shows.interface_brief_data(cm, await vifs())

    async def show_interface_status(args: dict[str, str], s: CliSession) -> Any:
        return shows.interface_status_data(cm, await vifs())

    async def show_interface_mgmt0(args: dict[str, str], s: CliSession) -> Any:
        return shows.mgmt0_data(cm)

    reg("show_interface", show_interface)
    reg("show_interface_brief", show_interface_brief)
    reg("show_interface_status", show_interface_status)
    reg("show_interface_mgmt0", show_interface_mgmt0)


__all__ = ["build_cli"]
