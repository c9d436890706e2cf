"""What the fault campaign watches while faults run: both VSMs and every VEM.

Theory of operation:

- ``Sampler`` is a thread that, every ``interval`` seconds, takes one
  ``checker.ModuleSample`` round: each VEM's own word on the VSM it is
  attached to (its control socket, ``status``: ``state``, ``active``
  address, heartbeats received), then both nodes' hamgr status (role, internal state, boot id)
  and, for each node that says it is active, its ``show module | json``
  (the operator's view, through cfgmgr's CLI) with the state its own
  supervisor row gives (the state that answer was made in: a split-brain
  loser may be reloading already), then every VEM again. A VEM's
  ``active`` address is mapped to the node it belongs to (``vsm_names``:
  address -> name); any other address is reported as ``other:ADDR``. A VEM
  that says "attached" but received no heartbeat since the previous round
  is reported ``UNKNOWN``: cut off from its VSM, it keeps saying so until its
  headless timer, while the VSM may already have declared it lost. Rounds
  are kept for ``keep`` seconds and handed out with ``since(t)``.
- ``TraceReader`` follows each node's redundancy trace file (the data behind
  ``show system internal redundancy trace``: one JSON ``[time, text]`` per
  line, the node's own wall clock) and yields the split-brain decisions
  (``split-brain resolution: this ROLE stays active``) with the moments each
  node last became active, converted to the campaign's clock with the node's
  known clock offset.

Nothing here judges; ``checker`` does, on these plain records.
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.ipc import IpcError
from openvsm.lab.checker import UNKNOWN, ModuleSample, SplitBrainDecision
from openvsm.lab.common import ipc_call
from openvsm.node import RunDir

DECISION = re.compile(
    r"split-brain resolution: this (primary|secondary) stays active, epoch \d+ \((.*)\)$"
)
BECAME_ACTIVE = "became active (epoch"


def _call(sock: Path, op: str, timeout: float, **args: Any) -> Any:
    try:
        return ipc_call(sock, op, timeout=timeout, **args)
    except (IpcError, OSError):
        return None


def module_statuses(data: Any) -> dict[str, str]:
    """host name -> status from ``show module | json`` (VEM rows only)."""
    if not isinstance(data, dict):
        return {}
    rows = data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
    srv = data.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])
    if isinstance(rows, dict):
        rows = [rows]
    if isinstance(srv, dict):
        srv = [srv]
    names = {str(r.get("modsrv")): str(r.get("srvname")) for r in srv}
    out = {}
    for r in rows:
        if r.get("modtype") not in (None, "Virtual Ethernet Module"):
            continue
        name = names.get(str(r.get("modinf")))
        if name:
            out[name] = str(r.get("status"))
    return out


def own_state(data: Any) -> str | None:
    """This supervisor's status (``active``, ``ha-standby``, ``initializing``)
    from its own row (marked `` *``) of ``show module | json``."""
    if not isinstance(data, dict):
        return None
    rows = data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
    for r in [rows] if isinstance(rows, dict) else rows:
        status = str(r.get("status", ""))
        if r.get("modtype") == "Virtual Supervisor Module" and status.endswith(" *"):
            return status.removesuffix(" *")
    return None


@dataclass
class SampledNode:
    name: str
    rundir: Path


@dataclass
class SampledVem:
    host: str
    rundir: Path


@dataclass
class Sampler:
    nodes: list[SampledNode]
    vems: list[SampledVem]
    vsm_names: Mapping[str, str]  # "host:port" a VEM reports -> node name
    interval: float = 0.1
    keep: float = 120.0
    _rounds: collections.deque[ModuleSample] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _heard: dict[str, int] = field(default_factory=dict)  # host -> heartbeats received

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="chaos-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def since(self, t: float) -> list[ModuleSample]:
        with self._lock:
            return [s for s in self._rounds if s.t0 >= t]

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            s = self.take()
            with self._lock:
                self._rounds.append(s)
                while self._rounds and self._rounds[0].t0 < s.t0 - self.keep:
                    self._rounds.popleft()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def attachment(self, vem: SampledVem) -> tuple[str | None, int]:
        """(where the VEM says it is attached, heartbeats it received so far)."""
        st = _call(RunDir(vem.rundir).vem, "status", 0.5)
        if not isinstance(st, dict):
            return UNKNOWN, -1
        heard = int(st.get("counters", {}).get("heartbeats_received", -1))
        addr = st.get("active")
        if st.get("state") == "switching":
            return UNKNOWN, heard  # in motion between two VSMs
        if st.get("state") != "attached" or not addr:
            return None, heard
        return self.vsm_names.get(str(addr), f"other:{addr}"), heard

    def _reads(self) -> dict[str, tuple[str | None, int]]:
        return {v.host: self.attachment(v) for v in self.vems}

    def _live(
        self, before: dict[str, tuple[str | None, int]], after: dict[str, tuple[str | None, int]]
    ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """A VEM that says it is attached but heard no heartbeat from that VSM
        since the previous round is not known to be attached (a VEM cut off
        from its VSM keeps saying "attached" until its headless timer)."""
        b: dict[str, str | None] = {}
        a: dict[str, str | None] = {}
        for host in before:
            (wb, _), (wa, heard) = before[host], after[host]
            live = heard > self._heard.get(host, heard)
            self._heard[host] = heard
            b[host] = UNKNOWN if wb not in (None, UNKNOWN) and not live else wb
            a[host] = UNKNOWN if wa not in (None, UNKNOWN) and not live else wa
        return b, a

    def take(self) -> ModuleSample:
        t0 = time.time()
        first = self._reads()
        roles: dict[str, str | None] = {}
        internal: dict[str, str | None] = {}
        boots: dict[str, int | None] = {}
        listed: dict[str, dict[str, str]] = {}
        answered: dict[str, str | None] = {}
        for n in self.nodes:
            st = _call(RunDir(n.rundir).hamgr, "status", 0.5)
            st = st if isinstance(st, dict) else {}
            roles[n.name] = st.get("state")
            internal[n.name] = st.get("internal_state")
            boot = st.get("boot_id")
            boots[n.name] = int(boot) if boot is not None else None
            if roles[n.name] == "active":
                sock = RunDir(n.rundir).cfgmgr
                res = _call(sock, "cli", 1.0, line="show module | json", session="chaos-sampler")
                if isinstance(res, dict) and not res.get("error"):
                    try:
                        data = json.loads(str(res.get("output")))
                    except ValueError:
                        continue
                    listed[n.name] = module_statuses(data)
                    answered[n.name] = own_state(data)
        before, after = self._live(first, self._reads())
        return ModuleSample(
            t0, time.time(), roles, listed, before, after, internal, boots, answered
        )


@dataclass
class TraceReader:
    """Split-brain decisions from the nodes' redundancy trace files."""

    paths: Mapping[str, Path]  # node -> data/redundancy-trace.log
    offset: Callable[[str], float]  # node -> its clock offset (node clock - campaign clock)
    _pos: dict[str, int] = field(default_factory=dict)
    _became: dict[str, list[float]] = field(default_factory=dict)  # node clock
    _seen: set[tuple[str, float]] = field(default_factory=set)

    def decisions(self) -> list[SplitBrainDecision]:
        found: list[tuple[str, float, str, str]] = []
        for node, path in self.paths.items():
            for t, text in self._new_lines(node, path):
                if BECAME_ACTIVE in text:
                    self._became.setdefault(node, []).append(t)
                m = DECISION.search(text)
                if m and (node, t) not in self._seen:
                    self._seen.add((node, t))
                    found.append((node, t, m.group(1), m.group(2)))
        out = []
        for node, t, winner, why in found:
            loser = "secondary" if winner == "primary" else "primary"
            last_active = {n: self._last_before(n, t, node) for n in (winner, loser)}
            starts = [a - self.offset(n) for n, a in last_active.items() if a is not None]
            out.append(
                SplitBrainDecision(
                    t=t - self.offset(node),
                    winner=winner,
                    loser=loser,
                    reason=why,
                    split_start=max(starts, default=t - self.offset(node)),
                    last_active=last_active,
                )
            )
        return out

    def _last_before(self, node: str, t: float, at: str) -> float | None:
        """The node's last "became active" before a decision traced by ``at``
        (times on each node's own clock: compared on the campaign's)."""
        limit = t - self.offset(at) + self.offset(node)
        times = [x for x in self._became.get(node, []) if x <= limit]
        return max(times) if times else None

    def _new_lines(self, node: str, path: Path) -> list[tuple[float, str]]:
        try:
            with path.open("rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                pos = self._pos.get(node, 0)
                if size < pos:
                    pos = 0  # rewritten (trimmed to its tail)
                fh.seek(pos)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._pos[node] = pos + end
        out = []
        for line in data[:end].splitlines():
            try:
                t, text = json.loads(line)
                out.append((float(t), str(text)))
            except (ValueError, TypeError):
                continue
        return out
