"""hamgr: the asyncio adapter around the redundancy engine (DESIGN §1, §3).

Owns the heartbeat sockets (control and mgmt), the monotonic timer, the
durable HA facts (epoch, learnt peer MACs, last standby->active time) and
the redundancy trace. It does no disk I/O on the heartbeat path: facts are
written only when the engine says they changed (rare), traces are appended
on events only.

The UDP heartbeat sockets report ICMP "port unreachable" for the peer's
address (``UdpEndpoint.on_unreachable``) to the engine: evidence for the
crash fast path, which cfgmgr starts with ``sync_reset`` (docs/crash-fast-path.md).

Freshness (issue 12, docs/security.md): every frame of the peer's role
passes ``openvsm.wire.freshness`` before the engine sees it: replays,
duplicates, frames of old boots and epoch jumps are dropped and counted
(``drop_replay``, ``drop_epoch_*``), and a heartbeat response must echo a
request this hamgr sent and has not yet seen answered (``drop_unsolicited``).
Frames are numbered from the wall clock in microseconds at start, so a
restarted hamgr continues above its predecessor.

Other services reach hamgr on ``RUNDIR/hamgr.sock`` (see docs/CONTRACTS.md);
the ``status`` topic pushes the HA status on every change.

Stateful restart (docs/service-ha.md): hamgr keeps the engine's settled
state (``Engine.checkpoint``) in ``RUNDIR/hamgr-checkpoint.json`` for the
node's boot (atomic rename, no fsync, written only when it changes, removed
while not settled; sysmgr clears it when the node starts). A hamgr that
sysmgr restarts gives it to ``Engine.resume`` with the time its predecessor
exited, and opens its IPC socket only once the engine has decided (an active
first hears from the peer): no status query sees a resuming engine; a
resumed one shows what its predecessor showed. cfgmgr holds a subscription
to the ``sync`` topic while it runs; its end (cfgmgr exited) counts as a sync
report "none", which the engine's bounded sync hold covers while the
restarted cfgmgr reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, assert_never

import msgspec
from msgspec import UnsetType

from openvsm.cli import views
from openvsm.config import InterfaceConfig, NodeConfig
from openvsm.contracts import cfgmgr as cfg_api
from openvsm.contracts import hamgr as api
from openvsm.contracts.base import Ok
from openvsm.contracts.hamgr import HaStatus
from openvsm.errors import LocalProtocolError, OperatorRefused
from openvsm.ipc import IpcClient, IpcError, IpcServer, IpcUnavailable, decode_args
from openvsm.node import PREVIOUS_EXIT_ENV, NodeReload
from openvsm.observe.export import HamgrMetrics, InterfaceMetrics, encode_hamgr_metrics
from openvsm.observe.gaps import HeartbeatGaps
from openvsm.observe.tracelog import TRACE_JSONL, JsonlTrace, iso_utc
from openvsm.redundancy import engine as eng
from openvsm.redundancy.collision import CollisionEntry, Overwrite
from openvsm.timefmt import display_time
from openvsm.wire.codec import Codec, Drop, Frame
from openvsm.wire.freshness import FreshnessFilter, OutstandingRequests
from openvsm.wire.l2 import BROADCAST_MAC, L2Endpoint
from openvsm.wire.messages import (
    AccountingEntry,
    HeartbeatRequest,
    HeartbeatResponse,
    Message,
    ResolutionLogs,
    SenderRole,
)
from openvsm.wire.udp import UdpEndpoint

log = logging.getLogger("hamgr")

TRACE_KEEP = 2000
AA_KINDS = ("accounting", "traces", "remote accounting", "remote traces")
_AA_FILES = {
    "accounting": "local-accounting.json",
    "traces": "local-traces.json",
    "remote accounting": "remote-accounting.json",
    "remote traces": "remote-traces.json",
}
MAX_LOG_BYTES = 48_000  # ResolutionLogs must fit in one datagram
SYNC_LEASE_TOPIC: Final = "sync"  # subscribed by cfgmgr while it runs
_UNWRITTEN: Final = object()


class HamgrCheckpoint(msgspec.Struct, frozen=True):
    """``RUNDIR/hamgr-checkpoint.json``: what a restarted hamgr resumes from."""

    role: str
    system_mac: str
    engine: eng.ResumePoint
    switch_seq: int = 0
    peer_lost: bool = False
    split_started: float | None = None


def previous_exit() -> float | None:
    """When (monotonic) sysmgr saw this service's previous process exit."""
    try:
        return float(os.environ[PREVIOUS_EXIT_ENV])
    except (KeyError, ValueError):
        return None


wall_str = display_time


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: unreadable ({exc}); refusing to start") from None


class Hamgr:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.codec = Codec.for_vsm(cfg.domain_id, cfg.secret, cfg.vem_keys, cfg.pair_key_next)
        self.role = SenderRole.PRIMARY if cfg.role == "primary" else SenderRole.SECONDARY
        self.facts_path = cfg.data_dir / "ha-facts.json"
        self.aa_dir = cfg.data_dir / "active-active"
        self.trace_path = cfg.data_dir / "redundancy-trace.log"
        facts = self._init_engine()
        self._init_observability()
        self._init_transport(facts)
        self.ipc = IpcServer(cfg.rundir.hamgr, self._handle, on_unsubscribe=self._on_unsubscribe)
        self.instance = random.getrandbits(48)  # this process (boot_id may be resumed)
        self.checkpoint_path = cfg.rundir.hamgr_checkpoint
        self._checkpoint_key: object = _UNWRITTEN  # what the file holds (None: no file)
        self._restored: HamgrCheckpoint | None = None
        self._decided = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._reload = asyncio.Event()
        self._reload_reason = ""
        self._init_resolution_facts()
        self.switch_seq = 0
        # True once this hamgr declared a standby it had lost (PeerLost) and until
        # one is up again. A restarted hamgr starts with False: not hearing the
        # standby yet is not losing it (cfgmgr releases waiting writes only on a loss).
        self.peer_lost = False
        self.sync_state = "none"
        self._tasks: set[asyncio.Task[None]] = set()
        self.split_started: float | None = None
        self._last_status: HaStatus | None = None

    def _init_engine(self) -> eng.PersistedFacts:
        """The engine, from the durable HA facts (returned)."""
        cfg = self.cfg
        raw = read_json(self.facts_path, {})
        facts = eng.PersistedFacts(
            epoch=int(raw.get("epoch", 0)),
            peer_macs=dict(raw.get("peer_macs", {})),
            last_active_time=float(raw.get("last_active_time", 0.0)),
        )
        self.boot_id = random.getrandbits(48)
        self.engine = eng.Engine(
            eng.EngineConfig(
                role=cfg.role,
                system_mac=cfg.system_mac,
                timers=cfg.timers,
                boot_id=self.boot_id,
                require_sync=True,
            ),
            facts,
        )
        self.last_active_time = facts.last_active_time
        return facts

    def _init_observability(self) -> None:
        cfg = self.cfg
        self.traces: collections.deque[tuple[float, str]] = collections.deque(maxlen=TRACE_KEEP)
        # Observability (docs/observability.md): counters pulled by cfgmgr's
        # /metrics over the ``metrics`` op; nothing here does I/O per heartbeat.
        self.jsonl = JsonlTrace(
            cfg.run_dir / TRACE_JSONL,
            node=cfg.name,
            role=cfg.role,
            domain=cfg.domain_id,
            max_bytes=cfg.observe.trace_max_bytes,
            keep=cfg.observe.trace_keep,
        )
        self.gaps = HeartbeatGaps(("control", "mgmt"), reset_after=cfg.timers.max_loss_interval)
        self.started = self.wall()
        self.state_since = self.started
        self.role_changes = 0
        self.split_brain_won = 0
        self.split_brain_lost = 0
        self._seen_state: eng.HaState | None = None
        self._load_trace_tail()

    def _init_transport(self, facts: eng.PersistedFacts) -> None:
        """Frame numbering, freshness, drop counters, endpoints and peer addresses."""
        cfg = self.cfg
        self.seq = time.time_ns() // 1000
        self.freshness = FreshnessFilter()
        self.outstanding = OutstandingRequests()
        self.drops: dict[str, collections.Counter[str]] = {
            "control": collections.Counter(),
            "mgmt": collections.Counter(),
        }
        self.endpoints: dict[eng.Iface, UdpEndpoint | L2Endpoint] = {}
        # L2 transport: peer MACs learnt by the engine (durable facts) are the unicast
        # destinations; before that, the configured peer_mac or broadcast (seed).
        self.l2_learnt: dict[str, str] = dict(facts.peer_macs)
        self.peers: dict[eng.Iface, tuple[str, int] | None] = {
            eng.Iface.CONTROL: cfg.control.peer.addr if cfg.control.peer else None,
            eng.Iface.MGMT: cfg.mgmt.peer.addr if cfg.mgmt.peer else None,
        }
        self._resolved: dict[eng.Iface, set[tuple[str, int]]] = {}

    def _init_resolution_facts(self) -> None:
        """Split-brain resolution inputs, pushed by cfgmgr and vemmgr. They are
        kept for the node's boot (run dir, cleared by sysmgr at node start) so
        a hamgr that restarts alone resolves with them at once instead of
        zeros until the other services push again."""
        self.resolution_path = self.cfg.rundir.resolution_facts
        self.module_count = 0
        self.last_config_time = 0.0
        self.change_seq = 0
        self._resolution_save: asyncio.TimerHandle | None = None
        try:
            kept = read_json(self.resolution_path, {})
            self.module_count = int(kept.get("module_count", 0))
            self.last_config_time = float(kept.get("last_config_time", 0.0))
            self.change_seq = int(kept.get("change_seq", 0))
        except (RuntimeError, AttributeError, TypeError, ValueError) as exc:
            log.warning("%s ignored: %s", self.resolution_path, exc)
        self.engine.set_local_facts(
            module_count=self.module_count,
            last_config_time=self.last_config_time,
            change_seq=self.change_seq,
        )

    # ---- time -----------------------------------------------------------
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.cfg.clock_offset_s

    def mono_to_wall(self, t: float) -> float:
        return self.wall() - (self.now() - t)

    # ---- lifecycle ------------------------------------------------------
    async def run(self) -> None:
        reason = self._pop_reload_reason()
        point = self._load_checkpoint()
        # The engine starts before the sockets open: no frame may reach it first.
        if point is None:
            self.trace(
                f"boot: role {self.cfg.role}, system MAC {self.cfg.system_mac}, "
                f"epoch {self.engine.epoch}" + (f", after reload: {reason}" if reason else "")
            )
            first = self.engine.start(self.now())
        else:
            down = self.now() - point.alive_at
            self.trace(
                f"restart: hamgr restarted, role {self.cfg.role}, epoch {self.engine.epoch}, "
                f"checkpoint of the {point.state.value}, down {down:.3g} s"
            )
            first = self.engine.resume(point, self.now())
        for iface, icfg in ((eng.Iface.CONTROL, self.cfg.control), (eng.Iface.MGMT, self.cfg.mgmt)):
            ep = self._endpoint(iface, icfg)
            await ep.open()
            self.endpoints[iface] = ep
        self._process(first)
        self._spawn(self._resolve_peers())
        if self.engine.resuming:
            # No status query may see the restart: answer none until decided
            # (the engine's own deadline is one heartbeat interval).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.timers.heartbeat_interval * 2 + 1.0):
                    await self._decided.wait()
        await self.ipc.start()
        try:
            await self._reload.wait()
            raise NodeReload(self._reload_reason)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for t in list(self._tasks):
                t.cancel()
            for ep in self.endpoints.values():
                ep.close()
            await self.ipc.stop()

    def _pop_reload_reason(self) -> str:
        path = self.cfg.rundir.reload_reason
        try:
            text = path.read_text().strip()
            path.unlink()
            return text
        except OSError:
            return ""

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- I/O ------------------------------------------------------------
    def _endpoint(self, iface: eng.Iface, icfg: InterfaceConfig) -> UdpEndpoint | L2Endpoint:
        """The interface's transport: UDP (ip:port) or raw L2 (AF_PACKET on a device)."""
        if icfg.transport == "l2" and icfg.device:
            return L2Endpoint(icfg.device, on_datagram=self._receiver(iface))
        return UdpEndpoint(
            icfg.local.addr, self._receiver(iface), on_unreachable=self._unreachable(iface)
        )

    def _unreachable(self, iface: eng.Iface) -> Any:
        """ICMP port unreachable for a datagram to the peer on ``iface`` (crash fast path)."""

        def on_unreachable(addr: tuple[str, int]) -> None:
            if addr in self._peer_addrs(iface):
                self._process(self.engine.on_peer_unreachable(iface, self.now()))

        return on_unreachable

    def _peer_addrs(self, iface: eng.Iface) -> set[tuple[str, int]]:
        """The peer's address on ``iface`` as the kernel reports it (numeric)."""
        peer = self.peers.get(iface)
        if peer is None:
            return set()
        return self._resolved.get(iface, {peer})

    async def _resolve_peers(self) -> None:
        """Numeric forms of the peer addresses, once at start (never on the heartbeat path)."""
        loop = asyncio.get_running_loop()
        for iface, peer in self.peers.items():
            if peer is None:
                continue
            known = {peer}
            with contextlib.suppress(OSError):
                for *_, sockaddr in await loop.getaddrinfo(
                    peer[0], peer[1], type=socket.SOCK_DGRAM
                ):
                    known.add((str(sockaddr[0]), int(sockaddr[1])))
            self._resolved[iface] = known

    def _l2_dst(self, iface: eng.Iface) -> str:
        icfg = self.cfg.control if iface is eng.Iface.CONTROL else self.cfg.mgmt
        return self.l2_learnt.get(iface.value) or icfg.peer_mac or BROADCAST_MAC

    def _receiver(self, iface: eng.Iface) -> Any:
        def on_datagram(data: bytes, addr: tuple[str, int] | str) -> None:
            result = self.codec.decode(data)
            if isinstance(result, Drop):
                self.drops[iface.value][result.reason.value] += 1
                return
            self._on_frame(result, iface, addr)

        return on_datagram

    def _refusal(self, frame: Frame) -> str | None:
        """Why a peer's frame is not fresh (openvsm.wire.freshness), else None."""
        refused = self.freshness.check(frame)
        msg = frame.msg
        if refused is not None or not isinstance(msg, HeartbeatResponse):
            return refused
        if not self.outstanding.answered(msg.echo_seq):
            return "unsolicited"  # must echo a request we sent, not yet answered
        return None

    def _on_frame(self, frame: Frame, iface: eng.Iface, addr: tuple[str, int] | str) -> None:
        if frame.role == SenderRole.VEM:
            self.drops[iface.value]["unexpected"] += 1
            return
        # L2: validate the frame's real source MAC, not the system MAC it claims.
        src_mac = addr if isinstance(addr, str) else None
        learnt = self.engine.learnt_peer_mac(iface) if src_mac is not None else None
        # A frame from another source MAC than the peer's never touches the peer's
        # freshness window (a spoofer could move it): the engine drops it (bad_mac).
        spoofed = learnt is not None and src_mac is not None and learnt != src_mac.lower()
        if frame.role != self.role and not spoofed:
            # the peer's: replays, duplicates, epoch jumps refused
            refused = self._refusal(frame)
            if refused is not None:
                self.drops[iface.value][refused] += 1
                return
        msg = frame.msg
        now = self.now()
        if frame.role != self.role and isinstance(msg, HeartbeatRequest | HeartbeatResponse):
            self.gaps.heard(iface.value, now, self.wall())
        self._process(self.engine.on_frame(frame, iface, now, src_mac=src_mac))

    def send(self, iface: eng.Iface, msg: Message) -> None:
        ep = self.endpoints.get(iface)
        dst = self._l2_dst(iface) if isinstance(ep, L2Endpoint) else self.peers.get(iface)
        if dst is None or ep is None:
            return
        self.seq += 1
        if isinstance(msg, HeartbeatRequest):
            self.outstanding.sent(self.seq)
        data = self.codec.encode(
            msg, role=self.role, mac=self.cfg.system_mac, epoch=self.engine.epoch, seq=self.seq
        )
        if isinstance(ep, L2Endpoint):
            if isinstance(dst, str):
                ep.send(data, dst)
        elif isinstance(dst, tuple):
            ep.send(data, dst)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.engine.next_deadline()
        if deadline == float("inf"):
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(max(deadline, loop.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._process(self.engine.tick(self.now()))

    # ---- effects --------------------------------------------------------
    def _process(self, effects: list[eng.Effect]) -> None:
        changed = False
        for effect in effects:
            changed = True
            self._apply(effect)
        if self.engine.state is not self._seen_state:
            if self._seen_state is not None:
                self.role_changes += 1
                self.state_since = self.wall()
            self._seen_state = self.engine.state
        if not self.engine.resuming:
            self._decided.set()
            if self._restored is not None:
                self._adopt_restored()
        self._arm_timer()
        if changed:
            self._publish()
            if not self.engine.resuming:
                self._keep_checkpoint()

    def _apply(self, effect: eng.Effect) -> None:
        """One engine effect; a new effect type fails mypy here (``assert_never``)."""
        match effect:
            case eng.Send():
                self.send(effect.iface, effect.msg)
            case eng.Trace():
                self.trace(effect.text)
            case eng.PersistFacts():
                self._persist(effect.facts)
            case eng.BecomeActive():
                self.last_active_time = self.wall()
                self.split_started = self.wall()
                self._persist_current()
                self.trace(f"became active (epoch {effect.epoch}): {effect.reason}")
            case eng.PeerLost():
                self.split_started = self.wall()
                self.peer_lost = True
            case eng.PeerUp():
                self.peer_lost = False
            case eng.SwitchRequestNeeded():
                self.switch_seq += 1
            case eng.SplitBrainWon():
                self.switch_seq += 1
                self.split_brain_won += 1
                self.trace(f"split-brain resolution: this supervisor stays active ({effect.info})")
                # DESIGN §3: each side keeps a local copy of its own logs.
                self._spawn(self._save_local_logs(self.cfg.role, discard=False))
            case eng.SplitBrainLost():
                self.split_brain_lost += 1
                self.trace(f"split-brain resolution: this supervisor reloads ({effect.reason})")
                self._spawn(self._lose_split_brain(effect.winner_role))
            case eng.StoreRemoteLogs():
                self._store_remote_logs(effect.logs, effect.mac)
            case eng.Reload():
                self._begin_reload(effect.reason)
            case eng.BecomeStandby() | eng.StatusChanged():
                pass  # the status is published after every batch of effects
            case _:
                assert_never(effect)

    # ---- stateful restart -------------------------------------------------
    def _load_checkpoint(self) -> eng.ResumePoint | None:
        """The checkpoint of this node boot's previous hamgr, if any and readable."""
        try:
            raw = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s not read: %s", self.checkpoint_path, exc)
            return None
        try:
            cp = msgspec.json.decode(raw, type=HamgrCheckpoint)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s ignored: %s", self.checkpoint_path, exc)
            return None
        if cp.role != self.cfg.role or cp.system_mac.lower() != self.cfg.system_mac.lower():
            log.warning("%s ignored: taken as %s %s", self.checkpoint_path, cp.role, cp.system_mac)
            return None
        self._restored = cp
        alive = cp.engine.alive_at
        exited = previous_exit()
        if exited is not None:
            alive = max(alive, exited)
        return replace(cp.engine, alive_at=alive)

    def _adopt_restored(self) -> None:
        """The engine decided: when it resumed, so do hamgr's own facts of this boot."""
        cp, self._restored = self._restored, None
        if cp is None or self.engine.config.boot_id != cp.engine.boot_id:
            return
        self.switch_seq, self.peer_lost = cp.switch_seq, cp.peer_lost
        self.split_started = cp.split_started

    def _keep_checkpoint(self) -> None:
        """Write the engine's settled state when it changed (no fsync: boot-lived);
        remove the file while it is not settled, so no restart resumes from it."""
        point = self.engine.checkpoint(self.now())
        cp = None
        if point is not None:
            cp = HamgrCheckpoint(
                role=self.cfg.role,
                system_mac=self.cfg.system_mac,
                engine=replace(point, alive_at=0.0),
                switch_seq=self.switch_seq,
                peer_lost=self.peer_lost,
                split_started=self.split_started,
            )
        if cp == self._checkpoint_key:
            return
        self._checkpoint_key = cp
        try:
            if cp is None:
                with contextlib.suppress(FileNotFoundError):
                    self.checkpoint_path.unlink()
                return
            assert point is not None
            tmp = self.checkpoint_path.with_suffix(".tmp")
            tmp.write_bytes(msgspec.json.encode(msgspec.structs.replace(cp, engine=point)))
            tmp.replace(self.checkpoint_path)
        except OSError as exc:
            log.warning("cannot keep the checkpoint: %s", exc)
            self._checkpoint_key = _UNWRITTEN
            with contextlib.suppress(OSError):
                self.checkpoint_path.unlink()

    def _on_unsubscribe(self, topic: str) -> None:
        """cfgmgr's lease on the ``sync`` topic ended: it exited, its stream is down."""
        if topic != SYNC_LEASE_TOPIC or self.ipc.subscriber_count(topic) > 0:
            return
        self.sync_state = "none"
        self._process([eng.StatusChanged(), *self.engine.sync_stream_down(self.now())])

    def _begin_reload(self, reason: str) -> None:
        if self._reload.is_set():
            return
        self.trace(f"reload: {reason}")
        self._reload_reason = reason
        self._reload.set()

    def _persist(self, facts: eng.PersistedFacts) -> None:
        self.l2_learnt = dict(facts.peer_macs)
        write_json_atomic(
            self.facts_path,
            {
                "epoch": facts.epoch,
                "peer_macs": dict(facts.peer_macs),
                "last_active_time": self.last_active_time or facts.last_active_time,
            },
        )

    def _persist_current(self) -> None:
        raw = read_json(self.facts_path, {})
        raw["epoch"] = max(int(raw.get("epoch", 0)), self.engine.epoch)
        raw["last_active_time"] = self.last_active_time
        write_json_atomic(self.facts_path, raw)
        self._push_facts()

    def _keep_resolution_facts(self) -> None:
        """Write the resolution inputs at most every 100 ms (no fsync: boot-lived).

        A write storm pushes facts after every commit group; hamgr's loop must
        stay free for heartbeats, so the file trails by at most 100 ms."""
        if self._resolution_save is not None:
            return

        def save() -> None:
            self._resolution_save = None
            data = {
                "module_count": self.module_count,
                "last_config_time": self.last_config_time,
                "change_seq": self.change_seq,
            }
            tmp = self.resolution_path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(data))
                tmp.replace(self.resolution_path)
            except OSError as exc:
                log.warning("cannot keep the resolution facts: %s", exc)

        self._resolution_save = asyncio.get_running_loop().call_later(0.1, save)

    def _push_facts(self) -> None:
        self.engine.set_local_facts(
            module_count=self.module_count,
            last_config_time=self.last_config_time,
            change_seq=self.change_seq,
        )
        self.engine.set_last_active_time(self.last_active_time)

    def trace(self, text: str) -> None:
        t = self.wall()
        self.traces.append((t, text))
        log.info("trace: %s", text)
        with contextlib.suppress(OSError), self.trace_path.open("a") as fh:
            fh.write(json.dumps([t, text]) + "\n")
        self.jsonl.record(t, text, state=self.engine.state.value, epoch=self.engine.epoch)

    def _load_trace_tail(self) -> None:
        try:
            lines = self.trace_path.read_text().splitlines()[-TRACE_KEEP:]
        except OSError:
            return
        for line in lines:
            with contextlib.suppress(ValueError, TypeError):
                t, text = json.loads(line)
                self.traces.append((float(t), str(text)))
        if len(lines) >= TRACE_KEEP:
            with contextlib.suppress(OSError):
                self.trace_path.write_text("\n".join(lines) + "\n")

    # ---- split-brain ----------------------------------------------------
    async def _lose_split_brain(self, winner_role: str) -> None:
        accounting, traces, discarded = await self._save_local_logs(winner_role, discard=True)
        # The engine sends them (fresh nonce), resends and reloads on the ack.
        self._process(
            self.engine.send_resolution_logs(_fit_logs(accounting, traces, discarded), self.now())
        )

    async def _save_local_logs(
        self, winner_role: str, *, discard: bool
    ) -> tuple[list[AccountingEntry], list[str], list[AccountingEntry]]:
        """Write the local copies of this node's accounting log and traces; with
        ``discard`` (the loser) also list its changes made during the split."""
        accounting: list[AccountingEntry] = []
        discarded: list[AccountingEntry] = []
        client = IpcClient(self.cfg.rundir.cfgmgr, timeout=2.0)
        try:
            rows = await client.ask(cfg_api.Accounting(limit=500))
            accounting = [_acc_entry(r) for r in rows]
            if discard:
                since = self.split_started or self.last_active_time
                # fence: the loser's cfgmgr refuses writes from now on, so
                # every change it acknowledged is in this list.
                rows = await client.ask(cfg_api.ChangesSinceTime(time=since, fence=True))
                discarded = [_acc_entry(r) for r in rows]
        except (IpcError, TypeError, ValueError) as exc:
            self.trace(f"split-brain: could not collect the accounting log: {exc}")
        finally:
            client.close()
        traces = [f"{wall_str(t)} {text}" for t, text in self.traces]
        local = {"saved": wall_str(self.wall()), "winner": winner_role}
        write_json_atomic(
            self.aa_dir / _AA_FILES["accounting"],
            {
                **local,
                "entries": [_acc_dict(e) for e in accounting],
                "discarded": [_acc_dict(e) for e in discarded],
            },
        )
        write_json_atomic(self.aa_dir / _AA_FILES["traces"], {**local, "traces": traces})
        return accounting, traces, discarded

    async def _fence_cfgmgr(self, fenced: bool) -> None:
        """Make cfgmgr refuse (or accept again) writes, before a handover."""
        client = IpcClient(self.cfg.rundir.cfgmgr, timeout=2.0)
        try:
            await client.ask(cfg_api.Fence(fenced=fenced))
        except IpcError as exc:
            self.trace(f"could not {'fence' if fenced else 'unfence'} cfgmgr: {exc}")
        finally:
            client.close()

    def _store_remote_logs(self, msg: ResolutionLogs, mac: str) -> None:
        meta = {"saved": wall_str(self.wall()), "from": mac}
        write_json_atomic(
            self.aa_dir / _AA_FILES["remote accounting"],
            {
                **meta,
                "entries": [_acc_dict(e) for e in msg.accounting],
                "discarded": [_acc_dict(e) for e in msg.discarded],
            },
        )
        write_json_atomic(
            self.aa_dir / _AA_FILES["remote traces"], {**meta, "traces": list(msg.traces)}
        )
        self.trace(
            f"split-brain: stored the remote accounting log ({len(msg.accounting)} entries, "
            f"{len(msg.discarded)} discarded changes) and {len(msg.traces)} traces from {mac}"
        )

    def activeactive(self, which: str) -> dict[str, Any]:
        if which not in _AA_FILES:
            raise IpcError(f"unknown active-active store {which!r}")
        data = read_json(self.aa_dir / _AA_FILES[which], {})
        return {"which": which, **data}

    def clear_activeactive(self, which: str) -> dict[str, Any]:
        if which not in _AA_FILES:
            raise IpcError(f"unknown active-active store {which!r}")
        with contextlib.suppress(FileNotFoundError):
            (self.aa_dir / _AA_FILES[which]).unlink()
        self.trace(f"cleared active-active {which}")
        return {"cleared": which}

    # ---- status ---------------------------------------------------------
    def ha_status(self) -> HaStatus:
        st = self.engine.status(self.now())
        return HaStatus(
            state=self.engine.state.value,
            role=self.cfg.role,
            epoch=self.engine.epoch,
            peer_present=bool(st.peer_present),
            peer_lost=self.peer_lost,
            peer_state=str(st.other_rdn_state),
            internal_state=str(st.this_internal_state),
            degraded=bool(st.degraded),
            split_brain=bool(st.split_brain),
            peer_control=str(self.cfg.control.peer) if self.cfg.control.peer else None,
            switch_seq=self.switch_seq,
            boot_id=self.engine.config.boot_id,
            instance=self.instance,
            module_count=self.module_count,
            last_config_time=self.last_config_time,
        )

    def redundancy_status(self) -> views.RedundancyStatus:
        st = self.engine.status(self.now())
        this_sup = f"(sup-{self.cfg.sup_number})"
        other_sup = f"(sup-{3 - self.cfg.sup_number})"
        data: views.RedundancyStatus = {
            "rdn_role_admin": self.cfg.role,
            "rdn_role_oper": self.cfg.role,
            "rdn_mode_admin": "HA",
            "rdn_mode_oper": st.mode_oper,
            "this_sup": this_sup,
            "this_sup_rdn_state": st.this_rdn_state,
            "this_sup_sup_state": st.this_sup_state,
            "this_sup_internal_state": st.this_internal_state,
            "other_sup": other_sup,
            "other_sup_rdn_state": st.other_rdn_state,
            "other_sup_sup_state": st.other_sup_state,
            "other_sup_internal_state": st.other_internal_state,
            "collisions": self._collision_rows(st.collisions),
            "overwrites": self._overwrite_lines(st.overwrites),
            # VSMs of the other supervisor's role heard here (relayed to it).
            "peer_collisions": self._collision_rows(st.peer_collisions),
            "peer_overwrites": self._overwrite_lines(st.peer_overwrites),
            "epoch": self.engine.epoch,
        }
        return data

    def _collision_rows(self, entries: tuple[CollisionEntry, ...]) -> list[views.Collision]:
        return [
            {"mac": c.mac, "latest_collision_time": wall_str(self.mono_to_wall(c.last_seen))}
            for c in entries
        ]

    def _overwrite_lines(self, overwrites: tuple[Overwrite, ...]) -> list[views.Overwrite | str]:
        return [
            f"Overwritten: {o.old_mac} by {o.new_mac} at {wall_str(self.mono_to_wall(o.time))}"
            for o in overwrites
        ]

    def trace_table(self) -> views.RedundancyTrace:
        # Stable keys (docs/observability.md): time (display), timestamp (ISO UTC), event.
        rows: list[views.TraceRow] = [
            {"time": wall_str(t), "timestamp": iso_utc(t), "event": text} for t, text in self.traces
        ]
        return {"TABLE_trace": {"ROW_trace": rows}}

    def counters_table(self) -> dict[str, Any]:
        ctr = self.engine.counters()
        rows = []
        for iface in ("control", "mgmt"):
            row: dict[str, Any] = {"interface": iface}
            row.update(ctr.get(iface, {}))
            for reason, n in self.drops[iface].items():
                key = f"drop_{reason}"
                row[key] = row.get(key, 0) + n
            ep = self.endpoints.get(eng.Iface(iface))
            if ep is not None:
                row["socket_errors"] = ep.errors + ep.send_errors
                if isinstance(ep, UdpEndpoint):
                    # ICMP "port unreachable" from the peer's host (crash fast path evidence)
                    row["port_unreachable"] = ep.unreachable
            rows.append(row)
        return {"TABLE_counters": {"ROW_counters": rows}}

    def metrics(self, *, recent: bool = False) -> HamgrMetrics:
        """The ``metrics`` op: counters already kept, no I/O (cfgmgr's /metrics);
        ``recent`` adds the last gap samples (the status page's chart)."""
        now = self.now()
        st = self.engine.status(now)
        ctr = self.engine.counters()
        ifaces = []
        for name in ("control", "mgmt"):
            row = ctr.get(name, {})
            ifaces.append(
                InterfaceMetrics(
                    name=name,
                    heartbeats_sent=int(row.get("hb_sent", 0)),
                    heartbeats_received=int(row.get("hb_recv", 0)),
                    heartbeats_missed=int(row.get("hb_missed", 0)),
                    frames_dropped=sum(self.drops[name].values()),
                    gaps=self.gaps.snapshot(name),
                    max_gap=self.gaps.max_gap[name],
                    silence=self.gaps.silence(name, now),
                    recent=list(self.gaps.recent[name]) if recent else [],
                )
            )
        return HamgrMetrics(
            role=self.cfg.role,
            state=self.engine.state.value,
            epoch=self.engine.epoch,
            degraded=bool(st.degraded),
            peer_present=bool(st.peer_present),
            peer_state=str(st.other_rdn_state),
            sync_state=self.sync_state,
            state_since=self.state_since,
            started=self.started,
            role_changes=self.role_changes,
            split_brain_won=self.split_brain_won,
            split_brain_lost=self.split_brain_lost,
            collisions=len(st.collisions) + len(st.peer_collisions),
            max_loss_interval=self.cfg.timers.max_loss_interval,
            heartbeat_interval=self.cfg.timers.heartbeat_interval,
            interfaces=ifaces,
            mode_oper=str(st.mode_oper),
        )

    def _publish(self) -> None:
        status = self.ha_status()
        if status != self._last_status:
            self._last_status = status
            self.ipc.publish("status", status)

    # ---- IPC ------------------------------------------------------------
    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op in ("status", "subscribed"):
            return self.ha_status()
        if op == api.RedundancyStatus.op:
            return self.redundancy_status()
        if op == api.Switchover.op:
            return await self._switchover()
        if op == api.Reload.op:
            decode_args(args, api.Reload)
            await self._fence_cfgmgr(True)
            self._process(self.engine.request_reload(self.now()))
            return Ok()
        if op == api.SetFacts.op:
            return self._set_facts(decode_args(args, api.SetFacts))
        if op == api.SetModuleCount.op:
            self.module_count = decode_args(args, api.SetModuleCount).count
            self._push_facts()
            self._keep_resolution_facts()
            return Ok()
        if op == api.SyncState.op:
            return self._sync_state(decode_args(args, api.SyncState))
        if op == api.SyncReset.op:
            # "hot": the reset stream had reached streaming (cfgmgr's receiver
            # saw it); without it the reset is not an HA standby's.
            hot = decode_args(args, api.SyncReset).hot
            self._process(self.engine.on_sync_reset(self.now(), stream_hot=hot))
            return Ok()
        if op == api.Trace.op:
            return self.trace_table()
        if op == api.Counters.op:
            return self.counters_table()
        if op == api.Metrics.op:
            recent = decode_args(args, api.Metrics).recent
            return encode_hamgr_metrics(self.metrics(recent=recent))
        if op == api.ClearPeerMac.op:
            self._process(self.engine.clear_peer_macs())
            self.trace("learnt peer MAC addresses cleared by operator")
            return Ok()
        if op == api.ActiveActive.op:
            return self.activeactive(decode_args(args, api.ActiveActive).which)
        if op == api.ClearActiveActive.op:
            return self.clear_activeactive(decode_args(args, api.ClearActiveActive).which)
        raise IpcError(f"unknown op {op}")

    async def _switchover(self) -> Ok:
        # This node reloads after handing over: from now on cfgmgr must not
        # acknowledge a change the standby may not have (fenced first).
        await self._fence_cfgmgr(True)
        try:
            self._process(self.engine.request_switchover(self.now()))
        except OperatorRefused as exc:
            await self._fence_cfgmgr(False)
            raise IpcError(f"% {exc}") from None
        return Ok()

    def _set_facts(self, req: api.SetFacts) -> Ok:
        if not isinstance(req.module_count, UnsetType):
            self.module_count = req.module_count
        if not isinstance(req.last_config_time, UnsetType):
            self.last_config_time = req.last_config_time
        if not isinstance(req.change_seq, UnsetType):
            self.change_seq = req.change_seq
        self._push_facts()
        self._keep_resolution_facts()
        return Ok()

    def _sync_state(self, req: api.SyncState) -> Ok:
        now = self.now()
        try:
            # Out of sync: the truth at once, never held.
            held = self.engine.set_sync_state(req.state, None if req.out_of_sync else now)
        except LocalProtocolError as exc:
            raise IpcError(f"% {exc}") from None
        self.sync_state = req.state
        effects: list[eng.Effect] = [eng.StatusChanged(), *held]
        if req.out_of_sync:
            self.trace("sync buffer overflow: standby marked out of sync, will be reset")
            effects += self.engine.mark_standby_out_of_sync(now)
        self._process(effects)
        return Ok()


def _acc_entry(r: cfg_api.AccountingRow) -> AccountingEntry:
    return AccountingEntry(time=r.time, user=r.user, command=r.command, result=r.result, seq=r.seq)


def _acc_dict(e: AccountingEntry) -> dict[str, Any]:
    return {"time": e.time, "user": e.user, "command": e.command, "result": e.result, "seq": e.seq}


def _fit_logs(
    accounting: list[AccountingEntry], traces: list[str], discarded: list[AccountingEntry]
) -> ResolutionLogs:
    """Trim the oldest entries until the message fits in one datagram."""
    import msgspec

    acc, tr, disc = list(accounting), list(traces), list(discarded)
    while True:
        # The engine sets the exchange's nonce: size it at its largest.
        msg = ResolutionLogs(accounting=acc, traces=tr, discarded=disc, nonce=2**63 - 1)
        if len(msgspec.msgpack.encode(msg)) <= MAX_LOG_BYTES or not (acc or tr or disc):
            return msg
        if len(tr) > len(acc) and tr:
            tr = tr[len(tr) // 4 or 1 :]
        elif acc:
            acc = acc[len(acc) // 4 or 1 :]
        elif disc:
            disc = disc[len(disc) // 4 or 1 :]
        else:
            tr = tr[1:]


async def run_hamgr(cfg: NodeConfig) -> None:
    await Hamgr(cfg).run()


__all__ = ["Hamgr", "IpcUnavailable", "run_hamgr"]
