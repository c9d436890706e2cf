"""mgmt: the node's remote management service (the seed's "remote management
component"): the SSH server and the pair's shared management address.

It runs as its own sysmgr service (started last, stopped first) rather than
inside cfgmgr: SSH key exchange, ciphers and scrypt for password logins then
never run on cfgmgr's event loop (commits, replication, the local CLI), a
flood of SSH connections or a crash in the SSH stack costs this process only
(sysmgr restarts it), and the address follows hamgr's ``status`` topic
directly. Commands still run in cfgmgr's CLI (IPC op ``cli``, with the SSH
user), so every shell behaves the same.

The address loop (``_follow``) feeds ``AddressCore`` with hamgr's status and
its own deadlines and carries out the effects in order: on taking the address
it adds it, then the SSH listener on it; on releasing, it closes that listener
first, then removes the address. Serves ``RUNDIR/mgmt.sock``, op ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from openvsm.config import Endpoint, NodeConfig
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import IpcError, IpcServer, IpcUnavailable, subscribe_typed
from openvsm.mgmt.address import (
    AddAddress,
    AddressCore,
    Effect,
    Holding,
    LinuxAddress,
    RemoveAddress,
    SendGarp,
    remove_now,
)

log = logging.getLogger("mgmt")


class MgmtService:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.core = AddressCore()
        self.linux = LinuxAddress(cfg.shared_mgmt) if cfg.shared_mgmt else None
        self.sshd: Any = None
        self.ipc = IpcServer(cfg.rundir.mgmt, self._handle)
        self.ha_state = "initializing"
        self._wake = asyncio.Event()

    async def run(self) -> None:
        if self.cfg.ssh is not None:
            from openvsm.mgmt.sshd import SshDaemon

            self.sshd = SshDaemon(
                self.cfg.ssh, self.cfg.rundir.cfgmgr, hostname=lambda: self.cfg.hostname
            )
            await self.sshd.start()
        await self.ipc.start()
        tasks: list[asyncio.Task[None]] = []
        if self.linux is not None:
            # A predecessor killed while holding the address left it on the device:
            # this node holds it only once hamgr says so.
            await self.linux.remove()
            tasks.append(asyncio.create_task(self._follow()))
            tasks.append(asyncio.create_task(self._timers()))
        try:
            await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            if self.core.state is Holding.HELD and self.cfg.shared_mgmt is not None:
                remove_now(self.cfg.shared_mgmt)
                log.warning("shared management address %s released (stop)", self.cfg.shared_mgmt)
            if self.sshd is not None:
                with contextlib.suppress(Exception):
                    await self.sshd.stop()
            await self.ipc.stop()

    def _shared_endpoint(self) -> Endpoint | None:
        sm = self.cfg.shared_mgmt
        return Endpoint(sm.ip, sm.ssh_port) if sm is not None else None

    async def _apply(self, effects: list[Effect]) -> None:
        assert self.linux is not None
        for effect in effects:
            if isinstance(effect, AddAddress):
                await self.linux.add()
                log.warning("shared management address %s taken", self.linux.cfg.address)
                ep = self._shared_endpoint()
                if self.sshd is not None and ep is not None:
                    try:
                        await self.sshd.add_listener(ep)
                    except OSError as exc:
                        log.error("SSH on the shared address %s: %s", ep, exc)
            elif isinstance(effect, RemoveAddress):
                ep = self._shared_endpoint()
                if self.sshd is not None and ep is not None:
                    await self.sshd.remove_listener(ep)
                await self.linux.remove()
                log.warning("shared management address %s released", self.linux.cfg.address)
            elif isinstance(effect, SendGarp):
                self.linux.garp()
        self._wake.set()

    async def _follow(self) -> None:
        delay = 0.02
        while True:
            try:
                async for status in subscribe_typed(self.cfg.rundir.hamgr, "status", HaStatus):
                    delay = 0.02
                    self.ha_state = status.state
                    effects = self.core.on_status(
                        time.monotonic(), self.ha_state, status.split_brain
                    )
                    await self._apply(effects)
            except IpcUnavailable:
                pass
            # hamgr is restarting: keep the address as it is (a stateful restart
            # comes back active); its next status decides.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _timers(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            wait = deadline - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            await self._apply(self.core.on_timer(time.monotonic()))

    def status(self) -> dict[str, Any]:
        sm = self.cfg.shared_mgmt
        out: dict[str, Any] = {
            "mgmt_address": sm.address if sm else None,
            "mgmt_device": sm.device if sm else None,
            "holding": self.core.state is Holding.HELD,
            "announcements": self.core.announcements,
            "garps_sent": self.linux.garps_sent if self.linux else 0,
            "address_errors": self.linux.errors if self.linux else 0,
        }
        if self.sshd is not None:
            out["ssh_listen"] = self.sshd.listening()
            out["ssh_sessions"] = [{"id": k, **v} for k, v in sorted(self.sshd.sessions.items())]
            out["ssh_counters"] = self.sshd.counters.as_dict()
        return out

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op in ("status", "subscribed"):
            return self.status()
        raise IpcError(f"unknown op {op}")


async def run_mgmt(cfg: NodeConfig) -> None:
    await MgmtService(cfg).run()


__all__ = ["MgmtService", "run_mgmt"]
