"""A simulated VSM pair for redundancy engine tests: virtual time, no sockets.

``SimNet`` owns a fake monotonic clock, two (or more) ``Engine``s keyed by
role name, and a delivery queue with per-direction, per-interface drop
switches. It plays the adapter: it fills frame headers (role, MAC, the
sender's epoch, a sequence number), keeps each node's persisted facts,
restarts reloaded nodes when asked, and records every effect with its time.

    net = SimNet(Timers(1.0, 15.0, 5.0))
    net.start_all()
    net.run_until(10.0)
    assert net.node("primary").engine.state is HaState.ACTIVE
    net.cut(Iface.CONTROL)                  # both directions
    net.cut(Iface.MGMT, src="secondary")    # secondary -> primary only

``latency`` (settable between steps) and ``jitter`` (a seeded uniform extra
delay per frame) model the network's timing: two events due at the same
instant (a heartbeat and the loss deadline it would have met) are otherwise
always decided in favour of the frame.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import TypeVar

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.wire.codec import Frame
from openvsm.wire.messages import Message, ResolutionLogs, SenderRole

MACS = {"primary": "02:00:00:00:00:01", "secondary": "02:00:00:00:00:02"}
NO_LOGS = ResolutionLogs(accounting=[], traces=[], discarded=[], nonce=0)  # the engine sets it
ROLES = {"primary": SenderRole.PRIMARY, "secondary": SenderRole.SECONDARY}


E = TypeVar("E", bound=eng.Effect)


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


@dataclass
class Node:
    name: str
    engine: eng.Engine
    facts: eng.PersistedFacts
    boot: int
    running: bool = False
    log: list[tuple[float, eng.Effect]] = field(default_factory=list)
    reloads: int = 0

    def effects(self, since: float = -1.0) -> list[eng.Effect]:
        return [e for t, e in self.log if t >= since]

    def of(self, kind: type[E], since: float = -1.0) -> list[tuple[float, E]]:
        return [(t, e) for t, e in self.log if t >= since and isinstance(e, kind)]

    def traces(self) -> list[str]:
        return [e.text for _, e in self.log if isinstance(e, eng.Trace)]


class SimNet:
    def __init__(
        self,
        timers: Timers,
        *,
        latency: float = 0.0,
        auto_restart: bool = False,
        auto_logs: bool = True,
        probe_timeout: float = 0.05,
        jitter: float = 0.0,
        seed: int = 0,
        require_sync: bool = False,
    ) -> None:
        self.timers = timers
        self.latency = latency  # may be changed between steps (one frame late)
        self.jitter = jitter  # each frame also waits uniform(0, jitter): UDP may reorder
        self._rng = random.Random(seed)
        self.auto_restart = auto_restart  # reloaded nodes boot again at once
        self.auto_logs = auto_logs  # split-brain loser "sends its logs" at once
        self.probe_timeout = probe_timeout
        self.require_sync = require_sync  # as hamgr: "HA" only once the sync stream is hot
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.dropped: set[tuple[str, eng.Iface]] = set()  # (sender, iface)
        self._queue: list[tuple[float, int, str, Frame, eng.Iface]] = []
        self._order = itertools.count()
        self._seq = itertools.count(1)
        self._boots = itertools.count(1000)
        self._nonces = itertools.count(7001)  # resolution-logs exchanges (deterministic)
        self.delivered: list[tuple[float, str, str, eng.Iface, Message]] = []
        for name in ("primary", "secondary"):
            self.nodes[name] = self._new_node(name, eng.PersistedFacts())

    # ---- topology -----------------------------------------------------------

    def _new_node(self, name: str, facts: eng.PersistedFacts) -> Node:
        boot = next(self._boots)
        config = eng.EngineConfig(
            role=name,
            system_mac=MACS[name],
            timers=self.timers,
            boot_id=boot,
            probe_timeout=self.probe_timeout,
            require_sync=self.require_sync,
            nonces=lambda: next(self._nonces),
        )
        old = self.nodes.get(name)
        node = Node(name, eng.Engine(config, facts), facts, boot)
        if old is not None:
            node.log, node.reloads = old.log, old.reloads
        return node

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def engine(self, name: str) -> eng.Engine:
        return self.nodes[name].engine

    def start(self, name: str) -> None:
        node = self.nodes[name]
        node.running = True
        self.apply(name, node.engine.start(self.now))

    def start_all(self) -> None:
        for name in ("primary", "secondary"):
            self.start(name)

    def restart(self, name: str) -> None:
        """Boot a node again from its persisted facts (new boot id)."""
        old = self.nodes[name]
        facts = eng.PersistedFacts(
            old.facts.epoch, dict(old.facts.peer_macs), old.facts.last_active_time
        )
        self.nodes[name] = self._new_node(name, facts)
        self.start(name)

    def resume(self, name: str, point: eng.ResumePoint) -> list[eng.Effect]:
        """hamgr restarted within the node's boot: persisted facts plus its
        checkpoint (``Engine.resume``); returns (and applies) the first effects."""
        old = self.nodes[name]
        facts = eng.PersistedFacts(
            old.facts.epoch, dict(old.facts.peer_macs), old.facts.last_active_time
        )
        node = self._new_node(name, facts)
        self.nodes[name] = node
        node.running = True
        effects = node.engine.resume(point, self.now)
        self.apply(name, effects)
        return effects

    def kill(self, name: str) -> None:
        self.nodes[name].running = False

    def cut(self, iface: eng.Iface, src: str | None = None) -> None:
        """Drop frames on ``iface`` sent by ``src`` (both directions if None)."""
        for s in (src,) if src else ("primary", "secondary"):
            self.dropped.add((s, iface))

    def heal(self, iface: eng.Iface, src: str | None = None) -> None:
        for s in (src,) if src else ("primary", "secondary"):
            self.dropped.discard((s, iface))

    # ---- effects ------------------------------------------------------------

    def apply(self, name: str, effects: list[eng.Effect]) -> None:
        node = self.nodes[name]
        for effect in effects:
            node.log.append((self.now, effect))
            if isinstance(effect, eng.Send):
                self._send(name, effect)
            elif isinstance(effect, eng.PersistFacts):
                f = effect.facts
                node.facts = eng.PersistedFacts(f.epoch, dict(f.peer_macs), f.last_active_time)
            elif isinstance(effect, eng.SplitBrainLost) and self.auto_logs:
                self.apply(name, node.engine.send_resolution_logs(NO_LOGS, self.now))
            elif isinstance(effect, eng.Reload):
                node.running = False
                node.reloads += 1
                if self.auto_restart:
                    self.restart(name)
                    return

    def _send(self, name: str, effect: eng.Send) -> None:
        node = self.nodes[name]
        frame = Frame(
            role=ROLES[name],
            mac=MACS[name],
            epoch=node.engine.epoch,
            seq=next(self._seq),
            msg=effect.msg,
        )
        if (name, effect.iface) in self.dropped:
            return
        delay = self.latency + (self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
        heapq.heappush(
            self._queue,
            (self.now + delay, next(self._order), other(name), frame, effect.iface),
        )

    def inject(
        self, to: str, frame: Frame, iface: eng.Iface, src_mac: str | None = None
    ) -> list[eng.Effect]:
        """Deliver a hand-made frame now; returns (and applies) the effects."""
        node = self.nodes[to]
        effects = node.engine.on_frame(frame, iface, self.now, src_mac)
        self.apply(to, effects)
        return effects

    # ---- time ---------------------------------------------------------------

    def next_event(self) -> float:
        times = [n.engine.next_deadline() for n in self.nodes.values() if n.running]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times, default=float("inf"))

    def run_until(self, t_end: float) -> None:
        for _ in range(1_000_000):
            t = self.next_event()
            if t > t_end:
                break
            self.now = max(self.now, t)
            if self._queue and self._queue[0][0] <= self.now:
                _, _, dst, frame, iface = heapq.heappop(self._queue)
                node = self.nodes[dst]
                if node.running:
                    self.delivered.append((self.now, other(dst), dst, iface, frame.msg))
                    self.apply(dst, node.engine.on_frame(frame, iface, self.now))
                continue
            for name, node in list(self.nodes.items()):
                if node.running and node.engine.next_deadline() <= self.now:
                    self.apply(name, node.engine.tick(self.now))
        else:  # pragma: no cover - a deadline that never advances is a bug
            raise AssertionError(f"simulation did not advance at t={self.now}")
        self.now = max(self.now, t_end)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def until(self, cond: object, limit: float, step: float = 0.001) -> float:
        """Advance in small steps until ``cond()`` is true; returns the time."""
        assert callable(cond)
        end = self.now + limit
        while not cond():
            if self.now >= end:
                raise AssertionError(f"condition not met by t={self.now}")
            self.run_for(step)
        return self.now
