"""sysmgr: the parent process of a VSM node (service-level HA, DESIGN §1).

Starts every service (hamgr, cfgmgr, vemmgr, and mgmt when [ssh] or [mgmt] is
configured) as its own OS process, watches
it and restarts it when it exits, with back-off; a restarted service learns
when its predecessor exited (``PREVIOUS_EXIT_ENV``, monotonic seconds: hamgr
resumes from its checkpoint only if that is recent). A service that crashes
``CRASH_LOOP_COUNT`` times within ``CRASH_LOOP_WINDOW`` seconds makes the node
reload; on an active with an HA standby that reload goes through hamgr (op
``reload``), which hands over to the standby first. A service exiting with
``FATAL_EXIT`` (e.g. cfgmgr found its store corrupted) stops the node: sysmgr
logs the reason, prints it on its console and exits 1, instead of restarting
into the same failure. A service exiting with ``RELOAD_EXIT`` asks for a node reload: sysmgr
stops every service and re-executes itself (a fresh process tree, same pid,
so the lab's pid/pgid stay valid). SIGTERM/SIGINT stop the services in
reverse start order and exit; no orphans (services also die with sysmgr via
PR_SET_PDEATHSIG). SIGHUP restarts the mgmt service only (settings reload).

sysmgr does no networking. It serves ``RUNDIR/sysmgr.sock`` with the ops
``services`` (``show system internal sysmgr services``), ``restart_service``
and ``reload``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import fcntl
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.config import ConfigError, NodeConfig, load_node_config
from openvsm.identity import resolve_identity
from openvsm.ipc import IpcClient, IpcError, IpcServer
from openvsm.node import FATAL_EXIT, PREVIOUS_EXIT_ENV, RELOAD_EXIT, RunDir, node_services
from openvsm.sysmgr.restart import CrashLoop, RestartPolicy
from openvsm.sysmgr.service import setup_logging

log = logging.getLogger("sysmgr")

STOP_GRACE = 3.0
HANDOVER_GRACE = 10.0  # crash loop on an active: time for hamgr's switchover-then-reload


class ServiceState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass
class Service:
    name: str
    proc: asyncio.subprocess.Process | None = None
    state: ServiceState = ServiceState.STOPPED
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str | None = None
    policy: RestartPolicy = field(default_factory=lambda: RestartPolicy(""))
    manual_restart: bool = False
    exited_at: float | None = None  # monotonic; passed to the next process (stateful restart)


class Sysmgr:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.names = node_services(cfg)
        self.services = {name: Service(name, policy=RestartPolicy(name)) for name in self.names}
        self._stopping = False
        self._reload_reason: str | None = None
        self.fatal_reason: str | None = None
        self._done = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self.ipc = IpcServer(cfg.rundir.sysmgr, self._handle)

    async def run(self) -> str | None:
        """Run until stopped; returns a reload reason when the node must reload."""
        await self.ipc.start()
        for name in self.names:
            await self._start(self.services[name])
        await self._done.wait()
        await self._stop_all()
        await self.ipc.stop()
        return self._reload_reason

    def stop(self) -> None:
        self._stopping = True
        self._done.set()

    def reload(self, reason: str) -> None:
        if self._reload_reason is None:
            log.warning("node reload: %s", reason)
            self._reload_reason = reason
        self.stop()

    async def _start(self, svc: Service) -> None:
        if self._stopping:
            return
        svc.state = ServiceState.STARTING
        cmd = [sys.executable, "-m", "openvsm", "service", svc.name, "--config", str(self.cfg.path)]
        env = dict(os.environ)
        env.pop(PREVIOUS_EXIT_ENV, None)
        if svc.exited_at is not None:
            env[PREVIOUS_EXIT_ENV] = repr(svc.exited_at)
        svc.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, env=env
        )
        svc.started_at = time.monotonic()
        svc.policy.started(svc.started_at)
        svc.state = ServiceState.RUNNING
        log.info("started %s pid %d", svc.name, svc.proc.pid)
        task = asyncio.create_task(self._watch(svc, svc.proc))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, svc: Service, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        svc.exited_at = time.monotonic()
        if self._stopping or svc.proc is not proc:
            svc.state = ServiceState.STOPPED
            return
        svc.last_exit = _describe_exit(code)
        log.warning("%s exited: %s", svc.name, svc.last_exit)
        if code == RELOAD_EXIT:
            reason = _read_reason(self.cfg.rundir.reload_reason) or f"{svc.name} requested a reload"
            self.reload(reason)
            return
        if code == FATAL_EXIT:
            reason = _read_reason(self.cfg.rundir.fatal_reason) or f"{svc.name} cannot run"
            self.fatal_reason = reason
            log.error("stopping the node: %s", reason)
            print(f"openvsm vsm: stopping the node: {reason}", file=sys.stderr, flush=True)
            self.stop()
            return
        manual, svc.manual_restart = svc.manual_restart, False
        decision = svc.policy.exited(time.monotonic(), manual=manual)
        if isinstance(decision, CrashLoop):
            await self.crash_loop_reload(decision.reason, via_hamgr=svc.name != "hamgr")
            return
        svc.state = ServiceState.BACKOFF
        # The policy owns the back-off: sleep until its deadline only.
        await asyncio.sleep(max(0.0, svc.policy.next_deadline() - time.monotonic()))
        svc.restarts += 1
        await self._start(svc)

    async def crash_loop_reload(self, reason: str, *, via_hamgr: bool) -> None:
        """Reload the node; through hamgr when it runs, so an active with an HA
        standby fails over first (hamgr then exits RELOAD_EXIT) instead of
        leaving the standby to detect a dead active."""
        if via_hamgr:
            client = IpcClient(self.cfg.rundir.hamgr, timeout=2.0)
            try:
                await client.call("reload", reason=reason)
                log.warning("crash loop: %s; hamgr hands over and reloads the node", reason)
                self.cfg.rundir.reload_reason.write_text(f"sysmgr: {reason}\n")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HANDOVER_GRACE):
                        await self._done.wait()
            except IpcError as exc:
                log.warning("crash loop: hamgr unreachable (%s); reloading directly", exc)
            finally:
                client.close()
        self.reload(reason)

    async def _stop_all(self) -> None:
        self._stopping = True
        for name in reversed(self.names):
            svc = self.services[name]
            proc = svc.proc
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            svc.state = ServiceState.STOPPED
        for task in list(self._watchers):
            task.cancel()

    def services_table(self) -> dict[str, Any]:
        now = time.monotonic()
        rows = []
        for name in self.names:
            svc = self.services[name]
            running = svc.proc is not None and svc.proc.returncode is None
            rows.append(
                {
                    "name": name,
                    "pid": svc.proc.pid if svc.proc is not None and running else None,
                    "state": svc.state.value,
                    "restarts": svc.restarts,
                    "uptime_s": int(now - svc.started_at) if running else 0,
                    "last_exit": svc.last_exit,
                }
            )
        return {"TABLE_service": {"ROW_service": rows}}

    def reload_settings(self) -> None:
        """SIGHUP (``systemctl reload``): restart the mgmt service, which reads the
        node file's [ssh] and [mgmt] settings and the host key anew. The HA services
        keep running; their settings apply at the next node restart."""
        svc = self.services.get("mgmt")
        if svc is None or svc.proc is None or svc.proc.returncode is not None:
            log.info("SIGHUP: no mgmt service to restart")
            return
        log.warning("SIGHUP: restarting the mgmt service (settings reload)")
        svc.manual_restart = True
        svc.last_exit = "restarted by SIGHUP (settings reload)"
        with contextlib.suppress(ProcessLookupError):
            svc.proc.terminate()

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "services":
            return self.services_table()
        if op == "restart_service":
            name = args.get("name")
            svc = self.services.get(str(name))
            if svc is None:
                raise IpcError(f"% Unknown service '{name}'. Services: {', '.join(self.names)}")
            if svc.proc is not None and svc.proc.returncode is None:
                svc.manual_restart = True
                svc.last_exit = "restarted by operator"
                with contextlib.suppress(ProcessLookupError):
                    svc.proc.kill()
            return {"restarted": svc.name}
        if op == "reload":
            self.reload(str(args.get("reason") or "operator reload"))
            return {"reloading": True}
        if op == "subscribed":
            return None
        raise IpcError(f"unknown op {op}")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == RELOAD_EXIT:
        return "requested node reload"
    return f"exited with code {code}"


def _read_reason(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _lock_run_dir(run_dir: Path) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(RunDir(run_dir).sysmgr_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"node.run_dir: {run_dir} is in use by another openvsm vsm") from None
    os.set_inheritable(fd, False)
    return fd


async def _amain(cfg: NodeConfig) -> tuple[str | None, str | None]:
    """Run sysmgr; returns (reload reason, fatal reason)."""
    mgr = Sysmgr(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, mgr.stop)
    loop.add_signal_handler(signal.SIGHUP, mgr.reload_settings)
    reason = await mgr.run()
    return reason, mgr.fatal_reason


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openvsm vsm", description="Run a VSM node.")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        cfg = load_node_config(args.config.resolve())
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock_run_dir(cfg.run_dir)
    except (ConfigError, OSError) as exc:
        print(f"openvsm vsm: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.rundir.log("sysmgr"), "sysmgr")
    try:
        # Before any service: the one place a new data directory gets its MAC.
        cfg = resolve_identity(cfg)
    except (ConfigError, OSError) as exc:
        print(f"openvsm vsm: {exc}", file=sys.stderr)
        return 2
    log.info("system MAC %s", cfg.system_mac)
    cfg.rundir.sysmgr_pid.write_text(f"{os.getpid()}\n")
    with contextlib.suppress(OSError):
        cfg.rundir.fatal_reason.unlink()
    # hamgr's split-brain inputs and checkpoint, and vemmgr's module statuses,
    # live for one node boot (a reload starts anew: discovery).
    for boot_lived in cfg.rundir.boot_lived:
        with contextlib.suppress(OSError):
            boot_lived.unlink()
    reason, fatal = asyncio.run(_amain(cfg))
    if fatal is not None:
        log.error("node stopped: %s", fatal)
        return 1
    if reason is None:
        return 0
    log.warning("re-executing for reload: %s", reason)
    logging.shutdown()
    os.close(lock_fd)
    os.execv(sys.executable, [sys.executable, "-m", "openvsm", "vsm", "--config", str(cfg.path)])
    return 0  # not reached
