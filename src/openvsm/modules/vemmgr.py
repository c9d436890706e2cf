"""vemmgr: the VSM service that serves VEMs (asyncio adapter of ``ModuleTable``).

``run_vemmgr(cfg)`` is the service body (started by sysmgr as
``openvsm service vemmgr``). It owns:

- the UDP socket on ``cfg.vem_listen`` (``BatchedUdpEndpoint``: up to 64
  datagrams read per wake-up, sends straight to the socket; drops counted by
  reason). Only the ACTIVE serves VEMs; the standby drops their frames
  (counted ``not_active``);
- the frame keys (``openvsm.wire.keys``): with ``[keys] vem_key`` a VEM's
  frame must carry the tag of the host it names (``bad_host_key``), a
  VSM-role frame signed with a host key is dropped (``vem_key_vsm_role``),
  and every frame to a VEM is signed with that host's key (one copy per VEM
  key while a rotation overlap does not know the host's generation yet).
  Old files (only ``node.secret``): that one secret signs everything;
- a subscription to hamgr ``status`` (retried with back-off: hamgr may not
  exist yet or may restart). On becoming active it loads modules, vEths and
  the configuration from cfgmgr, then (if hamgr still says active with that
  epoch: a status change cancels the activation, and the check holds where a
  cancellation is lost) asks every known VEM to switch (``SwitchRequest``,
  paced by the table's ``SwitchPacer``: at most 1,000 outstanding);
  inherited modules are ``powered-up`` until they attach (see ``ModuleTable``).
  On leaving active it stops serving; a status of ``initializing`` after
  active is hamgr restarting on this same active (active never becomes
  standby without a node reload), so the observed
  module statuses are kept for the re-activation;
- the checkpoint ``RUNDIR/vemmgr-attachments.json`` (kept for the node's
  boot: sysmgr removes it when the node starts or reloads): the observed
  statuses of the current activation and its epoch, rewritten (atomic
  rename, no fsync: it only has to outlive this process) ``CHECKPOINT_DELAY``
  after they change (longer for a big table: the writes take at most
  ``CHECKPOINT_SHARE`` of the time), removed when hamgr says standby.
  A restarted vemmgr on an active resumes those statuses (same epoch, or a
  higher one: hamgr restarted on this active meanwhile), so a vemmgr
  restart changes no line of ``show module``; statuses that changed just
  before a crash (not written yet) are re-learnt from the next
  attach/heartbeat;
- a subscription to cfgmgr ``changes``, read raw (``subscribe_raw``) and
  decoded lazily (``parse_changes_frame``: only the kinds the table takes; the
  active skips the bodies of its own module/veth commits): configuration
  changes are pushed to the VEMs that need them (``ConfigDelta``); on the
  standby the replicated ``module``/``veth`` objects keep the table current;
- commits of ``module``/``veth`` objects through cfgmgr op ``commit`` (user
  and source ``vemmgr``), in order, retried while cfgmgr is unreachable;
- the attached module count, reported to hamgr (``set_module_count``);
- ``RUNDIR/vemmgr.sock`` ops ``modules``, ``counters``, ``neighbors``,
  ``interfaces``, ``traces``, ``port_channels``, ``lacp_neighbors``,
  ``lacp_counters``, ``vem_errors`` (data with NX-OS keys; see ``ModuleTable``;
  port-channel/LACP data and VEM errors come from each VEM's ``VemLacpReport``).
  ``modules`` says ``active`` only for the active's own table: on a node
  that is not (yet) serving VEMs its rows are the store's, the previous
  active's view, even if the activation completed while they were read
  (cfgmgr then shows the takeover view instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_never

from openvsm.config import NodeConfig
from openvsm.contracts import cfgmgr as cfg_api
from openvsm.contracts import hamgr as hamgr_api
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import (
    IpcClient,
    IpcError,
    IpcServer,
    IpcUnavailable,
    subscribe_raw,
    subscribe_typed,
)
from openvsm.modules.checkpoint import (
    CheckpointError,
    read_attachments,
    usable,
    write_attachments,
)
from openvsm.modules.table import (
    Addr,
    AttachmentCheckpoint,
    Commit,
    Effect,
    ModuleCount,
    ModuleTable,
    Send,
    StoreOp,
    Trace,
    parse_changes_frame,
    parse_ops,
)
from openvsm.modules.udpbatch import BatchedUdpEndpoint
from openvsm.node import RunDir
from openvsm.wire.codec import MAX_FRAME, Codec, Drop
from openvsm.wire.messages import SenderRole

log = logging.getLogger("vemmgr")

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
TRACE_LINES = 500
RCVBUF_BYTES = 4 << 20
CHECKPOINT_DELAY = 0.01  # coalesces checkpoint writes during an attach storm
CHECKPOINT_SHARE = 0.1  # ... and keeps them under this share of the loop's time


def merge_commits(pending: list[Commit]) -> tuple[list[dict[str, Any]], str]:
    """Collapse queued commits into one op list (last body per object wins, order kept)."""
    merged: dict[tuple[str, str], StoreOp] = {}
    for commit in pending:
        for op in commit.ops:
            merged.pop((op.kind, op.key), None)
            merged[(op.kind, op.key)] = op
    commands = sorted({c.command for c in pending})
    command = "; ".join(commands[:5]) + (" ..." if len(commands) > 5 else "")
    return [op.as_dict() for op in merged.values()], command


class Vemmgr:
    def __init__(self, cfg: NodeConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        hb = cfg.vem_heartbeat_interval
        loss = cfg.vem_loss_time
        self.table = ModuleTable(
            module_limit=cfg.module_limit,
            listen=str(cfg.vem_listen),
            heartbeat_interval=hb if hb is not None else cfg.timers.heartbeat_interval,
            loss_time=loss if loss is not None else cfg.timers.max_loss_interval,
        )
        self.codec = Codec.for_vsm(cfg.domain_id, cfg.secret, cfg.vem_keys, cfg.pair_key_next)
        self.role = SenderRole.PRIMARY if cfg.role == "primary" else SenderRole.SECONDARY
        self.endpoint = BatchedUdpEndpoint(cfg.vem_listen.addr, self._on_datagram)
        self.run_dir: Path = cfg.run_dir
        self.rundir = RunDir(cfg.run_dir)
        self.ipc = IpcServer(self.rundir.vemmgr, self.handle)
        self.cfgmgr = IpcClient(self.rundir.cfgmgr)
        self.hamgr = IpcClient(self.rundir.hamgr)
        self.drops: dict[str, int] = {}
        self.traces: deque[str] = deque(maxlen=TRACE_LINES)
        self.ha_state = "initializing"
        self.ha_epoch = 0
        self.commit_errors = 0
        self._seq = time.time_ns() // 1000  # never below a previous run's numbers
        self._pending: list[Commit] = []
        self._commit_wake = asyncio.Event()
        self._count: int | None = None
        self._count_wake = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._timer_at = -math.inf  # when the timer loop wakes up by itself
        self._activation: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.checkpoint_path = self.rundir.vemmgr_attachments
        self._saved_version = -1
        self._save_timer: asyncio.TimerHandle | None = None
        self._save_delay = CHECKPOINT_DELAY

    # ---- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.endpoint.open()
        self._grow_receive_buffer()
        await self.ipc.start()
        for coro in (
            self._watch_ha(),
            self._watch_changes(),
            self._timer_loop(),
            self._committer(),
            self._count_reporter(),
        ):
            self._tasks.append(asyncio.create_task(coro))
        self.trace(f"serving VEMs on {self.cfg.vem_listen} when active")

    async def stop(self) -> None:
        tasks = list(self._tasks)
        if self._activation is not None:
            tasks.append(self._activation)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_attachments()  # a clean stop leaves the latest statuses
        await self.ipc.stop()
        self.endpoint.close()
        self.cfgmgr.close()
        self.hamgr.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # ---- effects --------------------------------------------------------------

    def trace(self, text: str) -> None:
        self.traces.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}")
        log.info("%s", text)

    def process(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:  # a new effect type fails mypy here (assert_never)
                case Send():
                    self._send(effect.addr, effect)
                case Commit():
                    if self.table.active:
                        self._pending.append(effect)
                        self._commit_wake.set()
                case ModuleCount():
                    self._count = effect.count
                    self._count_wake.set()
                case Trace():
                    self.trace(effect.text)
                case _:
                    assert_never(effect)
        if (
            self.table.active
            and self.table.attachment_version != self._saved_version
            and self._save_timer is None
        ):
            loop = asyncio.get_running_loop()
            self._save_timer = loop.call_later(self._save_delay, self._save_attachments)
        if self.table.next_deadline() < self._timer_at:
            self._timer_wake.set()  # an earlier deadline than the loop sleeps for

    def _grow_receive_buffer(self) -> None:
        """A switchover brings every VEM's attach at once: room for them in the
        kernel (up to net.core.rmem_max), not drops and 1 s retries."""
        self.endpoint.set_receive_buffer(RCVBUF_BYTES)

    def _send(self, addr: Addr, effect: Send) -> None:
        for key in self.codec.keys.sign_keys(effect.host):
            self._seq += 1
            data = self.codec.encode(
                effect.msg,
                role=self.role,
                mac=self.cfg.system_mac,
                epoch=self.table.epoch,
                seq=self._seq,
                key=key,
            )
            if len(data) > MAX_FRAME:
                self.trace(
                    f"{type(effect.msg).__name__} to {addr[0]}:{addr[1]} too large, not sent"
                )
                return
            self.endpoint.send(data, addr)

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        result = self.codec.decode(data)
        if isinstance(result, Drop):
            key = result.reason.value
            self.drops[key] = self.drops.get(key, 0) + 1
            return
        self.process(self.table.on_frame(result, addr, self.clock()))

    # ---- HA role --------------------------------------------------------------

    async def _watch_ha(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                async for status in subscribe_typed(self.rundir.hamgr, "status", HaStatus):
                    backoff = BACKOFF_MIN
                    self.on_ha_status(status)
            except (IpcError, OSError, ConnectionError) as exc:
                log.debug("hamgr status subscription: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def on_ha_status(self, status: HaStatus) -> None:
        state, epoch = status.state, status.epoch
        self.ha_state = state
        self.ha_epoch = epoch
        if state == "active":
            if self.table.active and epoch == self.table.epoch:
                return
            if self._activation is not None and not self._activation.done():
                self._activation.cancel()
            self._activation = asyncio.create_task(self._become_active(epoch))
        elif self.table.active or (self._activation is not None and not self._activation.done()):
            if self._activation is not None:
                self._activation.cancel()
            # initializing after active: hamgr restarted on this node, still the
            # VEMs' active. Its statuses and their commits wait for the re-activation.
            keep = state == "initializing"
            self.process(self.table.became_standby(keep_attachments=keep))
            if not keep:
                self._pending.clear()
                self._drop_attachments()

    async def _become_active(self, epoch: int) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                await self._load_from_store()
                break
            except IpcError as exc:
                self.trace(f"becoming active: cannot load modules from cfgmgr yet ({exc})")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        if self.ha_state != "active" or self.ha_epoch != epoch:
            # hamgr left this activation while the store was read, and the
            # cancellation was lost (asyncio.wait_for on Python 3.11 may return a
            # reply that raced with it): a reloading node must not serve VEMs.
            self.trace(f"activation for epoch {epoch} dropped: hamgr is {self.ha_state} now")
            return
        saved = usable(self._load_attachments(), epoch)
        if saved is not None:
            restored = self.table.restore_attachments(saved)
            if restored:  # 0: this process observed them itself (a hamgr restart)
                self.trace(
                    f"resumed {restored} module status(es) of epoch {saved.epoch} at epoch {epoch}"
                )
        self.process(self.table.became_active(epoch, self.clock()))
        self._commit_wake.set()

    # ---- checkpoint -----------------------------------------------------------

    def _save_attachments(self) -> None:
        self._save_timer = None
        if not self.table.active:
            return
        version = self.table.attachment_version
        started = time.perf_counter()
        try:
            write_attachments(self.checkpoint_path, self.table.attachments())
        except OSError as exc:
            log.warning("checkpoint %s not written: %s", self.checkpoint_path, exc)
            return
        self._saved_version = version
        spent = time.perf_counter() - started  # ~2 ms for 1000 modules
        self._save_delay = max(CHECKPOINT_DELAY, spent / CHECKPOINT_SHARE)

    def _load_attachments(self) -> AttachmentCheckpoint | None:
        try:
            return read_attachments(self.checkpoint_path)
        except CheckpointError as exc:
            self.trace(f"checkpoint {exc}, ignored")
            return None

    def _drop_attachments(self) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        self._saved_version = -1
        with contextlib.suppress(OSError):
            self.checkpoint_path.unlink()

    async def _list(self, kind: str) -> dict[str, Any]:
        result = await self.cfgmgr.ask(cfg_api.List(kind=kind))
        return dict(result) if isinstance(result, dict) else {}

    async def _load_from_store(self) -> None:
        modules = await self._list("module")
        veths = await self._list("veth")
        profiles = await self._list("port_profile")
        vlans = await self._list("vlan")
        bds = await self._list("os_bridge_domain")
        if self.table.has_observed():
            # Re-activation of this same active (hamgr restarted): its table is the
            # author of the module objects; the store may lag behind its commits.
            self.table.load_config(profiles, vlans, bds)
            self.trace("re-activation: module table kept, configuration reloaded")
            return
        self.table.load(modules, veths)
        self.table.load_config(profiles, vlans, bds)
        numbers = sorted(m.number for m in self.table.modules.values())
        self.trace(
            f"loaded {len(modules)} module(s) {numbers}, {len(veths)} vEth(s), "
            f"{len(profiles)} port profile(s) from the store"
        )

    # ---- configuration changes ------------------------------------------------

    async def _watch_changes(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                live = False
                async for event in subscribe_raw(self.rundir.cfgmgr, "changes"):
                    backoff = BACKOFF_MIN
                    if not live:
                        # The subscription's answer: from now on no change is missed.
                        # One committed before it (while this vemmgr activated, or
                        # while it was disconnected) is in the store: read it again.
                        live = True
                        await self._reload_config()
                        continue
                    if isinstance(event, bytes):
                        self.on_changes_frame(event)
            except (IpcError, OSError, ConnectionError) as exc:
                log.debug("cfgmgr changes subscription: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _reload_config(self) -> None:
        """The configuration kinds read again from the store; an active pushes
        what changed to its VEMs (only where a VEM's snapshot differs)."""
        if not self.table.active:
            return  # the activation reads the store itself
        with contextlib.suppress(IpcError):
            self.table.load_config(
                await self._list("port_profile"),
                await self._list("vlan"),
                await self._list("os_bridge_domain"),
            )
            self.process(self.table.config_reloaded(self.clock()))

    def on_changes(self, event: dict[str, Any]) -> None:
        self.process(self.table.apply_changes(parse_ops(event.get("ops")), self.clock()))

    def on_changes_frame(self, raw: bytes) -> None:
        """A raw ``changes`` frame: only the ops the table takes are decoded."""
        ops = parse_changes_frame(raw, self.table.wanted_kinds())
        if ops:
            self.process(self.table.apply_changes(ops, self.clock()))

    # ---- background work ------------------------------------------------------

    async def _timer_loop(self) -> None:
        while True:
            delay = self.table.next_deadline() - self.clock()
            if delay > 0:
                self._timer_wake.clear()
                self._timer_at = self.clock() + min(delay, 1.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, 1.0)):
                        await self._timer_wake.wait()
                self._timer_at = -math.inf
                continue
            self.process(self.table.tick(self.clock()))

    async def _committer(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            while self._pending and self.table.active:
                batch = list(self._pending)
                ops, command = merge_commits(batch)
                try:
                    await self.cfgmgr.call(
                        "commit", ops=ops, user="vemmgr", source="vemmgr", command=command
                    )
                except IpcError as exc:
                    self.commit_errors += 1
                    log.warning("commit of %d op(s) failed: %s", len(ops), exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
                if self._pending[: len(batch)] == batch:
                    del self._pending[: len(batch)]

    async def _count_reporter(self) -> None:
        reported: int | None = None
        backoff = BACKOFF_MIN
        while True:
            await self._count_wake.wait()
            self._count_wake.clear()
            while self._count is not None and self._count != reported:
                count = self._count
                try:
                    await self.hamgr.ask(hamgr_api.SetModuleCount(count=count))
                except IpcError:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
                reported = count

    # ---- show -----------------------------------------------------------------

    async def _store_view(self) -> ModuleTable:
        """The standby's view: the replicated objects in cfgmgr's store."""
        if self.table.active:
            return self.table
        try:
            modules = await self._list("module")
            veths = await self._list("veth")
        except IpcUnavailable:
            return self.table
        view = ModuleTable(module_limit=self.cfg.module_limit)
        view.load(modules, veths)
        return view

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "subscribed":
            return None
        if op == "modules":
            view = await self._store_view()
            data = view.modules_data()
            # Whether *these rows* are the active's own: the store view was read
            # before an activation that may have completed meanwhile (its rows
            # are then the previous active's view, which cfgmgr must not show).
            data["active"] = view is self.table and self.table.active
            return data
        if op == "counters":
            data = self.table.counters_data()
            data["drops"] = dict(self.drops)
            data["commit_errors"] = self.commit_errors
            data["pending_commits"] = len(self._pending)
            ep = self.endpoint
            data["udp"] = {
                "received": ep.received,
                "reads": ep.reads,
                "sent": ep.sent,
                "send_errors": ep.send_errors,
                "send_dropped": ep.send_dropped,
                "receive_errors": ep.errors,
            }
            return data
        if op == "neighbors":
            return self.table.neighbors_data(self.clock())
        if op == "interfaces":
            return (await self._store_view()).interfaces_data()
        if op == "traces":
            return {"traces": list(self.traces)}
        if op == "port_channels":
            return self.table.port_channels_data()
        if op == "lacp_neighbors":
            return self.table.lacp_neighbors_data()
        if op == "lacp_counters":
            return self.table.lacp_counters_data()
        if op == "vem_errors":
            return self.table.errors_data()
        raise IpcError(f"unknown op {op}")


async def run_vemmgr(cfg: NodeConfig) -> None:
    await Vemmgr(cfg).run()


__all__ = ["Vemmgr", "merge_commits", "run_vemmgr"]
