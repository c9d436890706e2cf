"""``openvsm vem --config FILE``: the VEM agent process (asyncio adapter).

A thin adapter around the sans-IO ``VemCore``: it owns the UDP socket (the
codec with this host's own key, ``vem.key_file``, or the old domain secret:
``openvsm.wire.keys``; frames it cannot verify are dropped and counted by
reason, so it trusts only the VSMs, which alone derive its key), the clock
(monotonic), the datapath backend (``memory``, or ``ovs`` from
``openvsm.vem.ovs`` imported only when configured) and the local control
socket ``RUN_DIR/vem.sock`` (ops ``attach_port``,
``detach_port``, ``status``, ``ports``). vEth ports are kept in
``DATA_DIR/ports.json`` so an agent restart re-attaches with them.

``VemRunner`` (core + codec + backend + timer) is shared with ``vem-sim``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import platform
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_never

import msgspec

from openvsm import __version__
from openvsm.config import ConfigError, VemConfig, load_vem_config
from openvsm.errors import LocalProtocolError
from openvsm.files import write_private
from openvsm.ipc import IpcError, IpcServer
from openvsm.vem.core import (
    Addr,
    ApplyDatapath,
    Effect,
    Send,
    Trace,
    VemCore,
    VemState,
)
from openvsm.vem.lacp import ReportPacer
from openvsm.vem.memory import MemoryBackend
from openvsm.vem.model import Backend, DesiredState, Egress, Probe, VemConfigSnapshot, forwarding
from openvsm.wire.codec import MAX_FRAME, Codec, Drop
from openvsm.wire.keys import vem_mac
from openvsm.wire.messages import PortChannelInfo, SenderRole, VemLacpReport, VethPort
from openvsm.wire.udp import UdpEndpoint

log = logging.getLogger(__name__)

TRACE_LINES = 200


def make_backend(cfg: VemConfig) -> Backend:
    """The datapath backend the configuration names (``ovs`` imported lazily)."""
    uplinks = list(dict.fromkeys(u.device for u in cfg.uplinks))
    if cfg.backend == "memory":
        return MemoryBackend(uplinks)
    module = importlib.import_module("openvsm.vem.ovs")
    backend: Backend = module.OvsBackend(
        bridge=cfg.bridge,
        ovsdb=cfg.ovsdb_remote,
        uplinks=uplinks,
        rundir=str(cfg.ovs_run_dir) if cfg.ovs_run_dir is not None else None,
        netns=cfg.ovs_netns,
    )
    return backend


class VemRunner:
    """One VEM protocol instance: core, codec, backend and timer; no sockets of its own."""

    def __init__(
        self,
        core: VemCore,
        codec: Codec,
        backend: Backend,
        send: Callable[[bytes, Addr], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "vem",
    ) -> None:
        self.core = core
        self.codec = codec
        self.backend = backend
        self.mac = vem_mac(core.host_uuid)  # the VSM checks it is this host's
        self.send_raw = send
        self.clock = clock
        self.name = name
        # Sequence numbers start from the wall clock so a restarted agent is
        # never taken for a replay by the VSM.
        self._seq = time.time_ns() // 1000
        self.drops: dict[str, int] = {}
        self.datapath_errors: list[str] = []
        self.datapath_errors_total = 0  # errors that appeared (metrics)
        self.last_lacp: VemLacpReport | None = None  # the poll loop's last report (metrics)
        self.traces: deque[str] = deque(maxlen=TRACE_LINES)
        self.wake = asyncio.Event()
        # apply and poll never run at the same time
        self.dp_lock = threading.Lock()
        # set by the agent for slow backends (ovs): apply off the event loop
        self.defer_apply: Callable[[DesiredState], None] | None = None

    def on_datagram(self, data: bytes, addr: Addr) -> None:
        result = self.codec.decode(data)
        if isinstance(result, Drop):
            key = result.reason.value
            self.drops[key] = self.drops.get(key, 0) + 1
            return
        self.process(self.core.on_frame(result, addr, self.clock()))

    def process(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:  # a new effect type fails mypy here (assert_never)
                case Send():
                    data = self.codec.encode(
                        effect.msg,
                        role=SenderRole.VEM,
                        mac=self.mac,
                        epoch=self.core.highest_epoch,
                        seq=self._next_seq(),
                    )
                    if len(data) > MAX_FRAME:
                        self.trace(f"frame {type(effect.msg).__name__} too large, not sent")
                        continue
                    self.send_raw(data, effect.addr)
                case ApplyDatapath():
                    if self.defer_apply is not None:
                        self.defer_apply(effect.desired)
                        continue
                    self.set_datapath_errors(self.apply_datapath(effect.desired))
                case Trace():
                    self.trace(effect.text)
                case _:
                    assert_never(effect)
        self.wake.set()

    def set_datapath_errors(self, errors: list[str]) -> None:
        """Keep the datapath's current errors; log the ones that are new."""
        for err in errors:
            if err not in self.datapath_errors:
                self.datapath_errors_total += 1
                self.trace(f"datapath: {err}")
        if self.datapath_errors and not errors:
            self.trace("datapath: all errors cleared")
        self.datapath_errors = list(errors)

    def apply_datapath(self, desired: DesiredState) -> list[str]:
        with self.dp_lock:
            return self.backend.apply(desired)

    def poll_datapath(self) -> list[str] | None:
        """Backend housekeeping (LACP member selection, sticky MACs); worker thread.

        Returns the datapath's errors, or None when the backend has no ``poll``."""
        poll = getattr(self.backend, "poll", None)
        if poll is None:
            return None
        with self.dp_lock:
            errors: list[str] = poll()
        return errors

    def lacp_report(self) -> VemLacpReport:
        channels: list[PortChannelInfo] = []
        fn = getattr(self.backend, "channel_infos", None)
        if fn is not None:
            with self.dp_lock:
                channels = list(fn())
        errors = [f"config: {e}" for e in self.core.config_errors]
        errors += [f"datapath: {e}" for e in self.datapath_errors]
        return VemLacpReport(
            host_uuid=self.core.host_uuid,
            channels=channels,
            errors=errors,
            backend=self.backend.name,
        )

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def trace(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.traces.append(f"{stamp} {text}")
        log.info("%s: %s", self.name, text)

    def start(self) -> None:
        self.process(self.core.start(self.clock()))

    def due(self) -> float:
        return self.core.next_deadline()

    def tick(self) -> None:
        self.process(self.core.tick(self.clock()))

    async def timer_loop(self) -> None:
        while True:
            delay = self.due() - self.clock()
            if delay > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, 1.0)):
                        await self.wake.wait()
                continue
            self.tick()

    def ports_data(self) -> list[dict[str, Any]]:
        applied = {p.name: p for p in (self.core.applied.ports if self.core.applied else ())}
        rows = []
        for port in self.core.ports:
            st = applied.get(port.name)
            rows.append(
                {
                    "name": port.name,
                    "vm": port.vm,
                    "mac": port.mac,
                    "port_profile": port.port_profile,
                    "mode": st.mode if st else "",
                    "access_vlan": st.access_vlan if st else 0,
                    "trunk_vlans": list(st.trunk_vlans) if st else [],
                    "vni": st.vni if st else 0,
                    "enabled": st.enabled if st else False,
                    "forwarding": bool(st and forwarding(st)),
                }
            )
        return rows

    def status_data(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.core.status())
        data["drops"] = dict(self.drops)
        data["backend"] = self.backend.name
        data["datapath_errors"] = list(self.datapath_errors)
        data["config_errors"] = list(self.core.config_errors)
        return data


class VemAgent:
    """The agent process body: one runner, a UDP socket, the control socket."""

    def __init__(self, cfg: VemConfig, backend: Backend | None = None) -> None:
        self.cfg = cfg
        self.backend = backend or make_backend(cfg)
        self.endpoint = UdpEndpoint(cfg.local.addr, self._on_datagram)
        core = VemCore.from_config(
            cfg, version=__version__, host_os=f"{platform.system()} {platform.release()}"
        )
        self.runner = VemRunner(
            core, Codec(cfg.domain_id, cfg.secret), self.backend, self.endpoint.send
        )
        self.ipc = IpcServer(cfg.rundir.vem, self._handle)
        self._ports_file = cfg.data_dir / "ports.json"
        self._config_file = cfg.data_dir / "config.msgpack"
        self._saved_seq = -1
        self._timer: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._applier: asyncio.Task[None] | None = None
        self._desired: DesiredState | None = None
        self._apply_wake = asyncio.Event()
        self._metrics: Any = None  # aiohttp runner of [vem] metrics_listen
        if cfg.backend == "ovs":
            # OVS programming takes tens to hundreds of ms (OVSDB, ovs-ofctl): keep it
            # off the event loop so heartbeats keep their timing.
            self.runner.defer_apply = self._defer_apply

    def _defer_apply(self, desired: DesiredState) -> None:
        self._desired = desired  # the latest wins
        self._apply_wake.set()

    async def apply_loop(self) -> None:
        runner = self.runner
        while True:
            await self._apply_wake.wait()
            self._apply_wake.clear()
            desired, self._desired = self._desired, None
            if desired is None:
                continue
            errors = await asyncio.to_thread(runner.apply_datapath, desired)
            runner.set_datapath_errors(errors)

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        self.runner.on_datagram(data, addr)

    def _load_ports(self) -> list[VethPort]:
        try:
            raw = self._ports_file.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return msgspec.json.decode(raw, type=list[VethPort])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.runner.trace(f"{self._ports_file} unreadable, starting without ports: {exc}")
            return []

    def _load_config(self) -> None:
        """The last configuration from the VSM: a restarted agent keeps forwarding as
        before (headless or not) instead of parking every port until it attaches."""
        try:
            raw = self._config_file.read_bytes()
            snap = msgspec.msgpack.decode(raw, type=VemConfigSnapshot)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.runner.trace(f"{self._config_file} unreadable, starting without it: {exc}")
            return
        self.runner.core.config = snap
        self._saved_seq = snap.config_seq

    def _save_config(self) -> None:
        core = self.runner.core
        if core.config_seq == self._saved_seq:
            return
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        snap = msgspec.structs.replace(core.config, config_seq=core.config_seq)
        write_private(self._config_file, msgspec.msgpack.encode(snap))
        self._saved_seq = core.config_seq

    async def poll_loop(self) -> None:
        """Every poll interval: backend poll, config persistence, VemLacpReport to the
        active VSM on change, on a new attachment and every report interval."""
        runner = self.runner
        pacer = ReportPacer(self.cfg.report_interval)
        while True:
            await asyncio.sleep(self.cfg.poll_interval)
            try:
                self._save_config()
            except OSError as exc:
                runner.trace(f"cannot save the configuration: {exc}")
            errors = await asyncio.to_thread(runner.poll_datapath)
            if errors is not None:
                runner.set_datapath_errors(errors)
            core = runner.core
            if core.state is not VemState.ATTACHED or core.active_addr is None:
                pacer.reset()
                continue
            report = await asyncio.to_thread(runner.lacp_report)
            runner.last_lacp = report
            addr = core.active_addr
            if core.state is not VemState.ATTACHED or addr is None:
                continue  # changed while the report was built
            key = (addr, core.active_epoch, report)
            now = time.monotonic()
            if pacer.due(key, now):
                runner.process([Send(addr, report)])
                pacer.sent(key, now)

    def _save_ports(self) -> None:
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(self._ports_file, msgspec.json.encode(self.runner.core.ports))

    async def start(self) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.backend.start()
        self.runner.core.restore_ports(self._load_ports())
        self._load_config()
        await self.endpoint.open()
        await self.ipc.start()
        self.runner.trace(
            f"VEM agent {self.cfg.host_name} ({self.cfg.host_uuid}) on "
            f"{self.endpoint.local[0]}:{self.endpoint.local[1]}, backend {self.backend.name}"
        )
        self._applier = asyncio.create_task(self.apply_loop())
        self.runner.start()
        self._timer = asyncio.create_task(self.runner.timer_loop())
        self._poller = asyncio.create_task(self.poll_loop())
        if self.cfg.metrics_listen is not None:
            from openvsm.observe.vem import start_vem_metrics

            ml = self.cfg.metrics_listen
            self._metrics = await start_vem_metrics(_MetricsView(self), ml.host, ml.port)

    async def stop(self) -> None:
        for task in (self._poller, self._applier):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = self._applier = None
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._metrics is not None:
            await self._metrics.cleanup()
            self._metrics = None
        await self.ipc.stop()
        self.endpoint.close()
        self.backend.stop()

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        runner = self.runner
        if op == "subscribed":
            return None
        if op == "attach_port":
            name = args.get("name")
            try:
                port_name, effects = runner.core.attach_port(
                    str(args.get("vm", "")),
                    str(args.get("port_profile", "")),
                    str(args.get("mac", "")),
                    str(name) if name else None,
                )
            except LocalProtocolError as exc:
                raise IpcError(str(exc)) from None
            runner.process(effects)
            self._save_ports()
            return {"name": port_name}
        if op == "detach_port":
            try:
                effects = runner.core.detach_port(str(args.get("name", "")))
            except LocalProtocolError as exc:
                raise IpcError(str(exc)) from None
            runner.process(effects)
            self._save_ports()
            return {"ok": True}
        if op == "status":
            data = runner.status_data()
            data["local"] = f"{self.endpoint.local[0]}:{self.endpoint.local[1]}"
            data["traces"] = list(runner.traces)[-50:]
            return data
        if op == "ports":
            return {"ports": runner.ports_data()}
        if op == "trace":
            return await self._trace(args)
        raise IpcError(f"unknown op {op}")

    async def _trace(self, args: dict[str, Any]) -> dict[str, Any]:
        """Where the datapath would send a frame (``Observable.trace``); nothing is sent."""
        trace: Callable[[Probe], frozenset[Egress]] | None = getattr(self.backend, "trace", None)
        if trace is None:
            raise IpcError(f"the {self.backend.name} backend cannot trace frames")
        try:
            probe = msgspec.convert(args, Probe)
        except msgspec.ValidationError as exc:
            raise IpcError(f"bad frame: {exc}") from None
        egress = await asyncio.to_thread(trace, probe)
        return {"egress": [{"port": port, "tag": tag} for port, tag in sorted(egress)]}


class _MetricsView:
    """The agent as ``openvsm.observe.vem`` reads it."""

    def __init__(self, agent: VemAgent) -> None:
        self.runner = agent.runner

    def status_data(self) -> dict[str, Any]:
        return self.runner.status_data()

    def ports_data(self) -> list[dict[str, Any]]:
        return self.runner.ports_data()

    @property
    def last_lacp(self) -> VemLacpReport | None:
        return self.runner.last_lacp

    @property
    def datapath_errors_total(self) -> int:
        return self.runner.datapath_errors_total


async def run_agent(cfg: VemConfig, stop: asyncio.Event | None = None) -> None:
    agent = VemAgent(cfg)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    try:
        await stop.wait()
    finally:
        await agent.stop()


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openvsm vem", description="run a VEM agent")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        cfg = load_vem_config(args.config)
    except ConfigError as exc:
        print(f"openvsm vem: {exc}", file=sys.stderr)
        return 2
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(cfg.rundir.log("vem")),
        level=logging.INFO,
        format="%(asctime)s vem[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(run_agent(cfg))
    except OSError as exc:
        print(f"openvsm vem: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
