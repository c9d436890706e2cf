"""``openvsm chaos``: a seeded fault campaign against a loopback deployment.

Theory of operation (Jepsen / Pacemaker CTS habits, STYLE.md):

1. A ``Lab(proxy=True, timers="fast", vem_proxy=N)`` runs the VSM pair behind
   the fault proxy, plus VEM agents (memory backend) that reach each node
   through a proxy link of their own. The seed is printed first; the whole
   schedule (fault kinds, targets, durations, offsets) is drawn from it
   before anything runs, so ``--seed S --faults N`` replays the same
   schedule (``schedule``: the kinds added later come from a second stream,
   so an old seed's faults still happen, in order).
2. A writer thread commits CLI writes (``vlan K ; name V``, a unique value per
   attempt) on whichever node it believes active and records each attempt
   and its outcome (``ok`` / ``fail`` definite refusal / ``info`` unknown) in
   a history. It never trusts the system's own report. A sampler thread
   (``lab.sampler``) records, every 100 ms, each VEM's own word on the VSM it
   is attached to and both nodes' role and ``show module``.
3. Each fault is injected, held for its duration, and undone (heal, SIGCONT,
   restart a killed node, stop a copied VSM). Then the campaign waits, within
   a settle bound, for recovery: one node "Active with HA standby", every VEM
   attached, the standby's store digest equal to the active's, held without
   a break past the quiet point ``fault start + max loss interval`` (``Settle``:
   a loss timer armed before the fault may fire after the heal). The time
   from undoing the fault to the start of that healthy run is the fault's
   recovery time.
4. With the writer paused, the campaign reads the stores (cfgmgr ``list``,
   ``snapshot_digest``), the split-brain accounting logs (hamgr
   ``activeactive``) and the module table, and runs ``checker.check`` on the
   whole history so far; then the seed's rules on the sampled rounds
   (``module_not_attached``), on each split-brain decision the winner traced
   (``split_brain_winner``) and, for a copied VSM, on the pair
   (``pair_disturbed``). Violations are reported with the seed to replay.

Faults: SIGKILL and SIGSTOP/SIGCONT of a whole node and of one service,
control-only, mgmt-only, both-interface and one-way partitions (fault proxy),
standby sync-buffer overflow (control cut + a burst of concurrent writes
against a small buffer), ``system switchover`` during writes, jumps of a
node's wall clock (``node.clock_offset_s`` rewritten in its config, then its
services restarted: the machine's clock is never touched); added for issue
11: a third VSM started from a copy of a node's config (new ports, new data
directory, aimed at the other node; ``system_mac`` pinned to the node's own
or a random one) for 2-4 s, and the quick-heal split (one VSM cut from its
peer and every VEM until the pair has two actives, one configuration change
on it, healed 0.2-1.2 s later: before inherited modules time out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.config import load_node_config
from openvsm.ipc import IpcClient, IpcError
from openvsm.lab.checker import (
    AttachmentCheck,
    NodeView,
    Observation,
    Outcome,
    SplitBrainDecision,
    Violation,
    WriteOp,
    check,
    check_split_brain,
    check_undisturbed,
)
from openvsm.lab.common import LabError, free_port, ipc_call, signal_group, wait_for
from openvsm.lab.lab import Lab
from openvsm.lab.sampler import SampledNode, SampledVem, Sampler, TraceReader
from openvsm.node import SERVICES, RunDir

NODES = ("primary", "secondary")
PREFIX = "cw-"
KEY_FIRST, KEY_LAST = 1000, 3967  # VLAN ids the writer owns (3968-4047 are reserved)
OVERFLOW_VLANS = "100-999"  # the buffer-overflow burst renames these (~50 KB per change)
BASE_KINDS = (
    "kill_node",
    "stop_node",
    "kill_service",
    "stop_service",
    "partition_control",
    "partition_mgmt",
    "partition_both",
    "partition_oneway",
    "buffer_overflow",
    "switchover",
    "clock_jump",
)
# Added later; drawn from a stream of their own so that the BASE_KINDS faults of
# a seed stay those of earlier campaigns (``schedule``).
EXTRA_KINDS = ("copy_vsm_same_mac", "copy_vsm_new_mac", "quick_heal_split")
KINDS = BASE_KINDS + EXTRA_KINDS
QUICK_HEAL_VLAN = 99  # the operator's change on the isolated VSM (not the writer's)
# Small enough for a burst to overflow it, large enough to cover the writer's
# changes while a reset standby bulk-syncs (smaller: the standby is reset again
# during every bulk sync and never rejoins; see docs/service-ha.md).
SYNC_BUFFER_BYTES = 256 * 1024
BURST_SESSIONS = 8
SETTLE_BOUND = 45.0
WRITE_TIMEOUT = 4.0
DEFINITE_REFUSALS = ("HA standby", "configuration is not accepted", "is initializing")


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


# ---- schedule --------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    target: str  # "active" | "standby" (resolved when the fault runs)
    duration: float
    service: str = ""
    direction: str = ""  # one-way: "a->s" (active to standby lost) or "s->a"
    offset: float = 0.0  # clock jump, seconds
    base_index: int = 0  # its index in a schedule of BASE_KINDS only (0: an added kind)

    def describe(self) -> str:
        extra = ""
        if self.service:
            extra += f" {self.service}"
        if self.direction:
            extra += f" {self.direction}"
        if self.kind == "clock_jump":
            extra += f" {self.offset:+.0f}s"
        return f"{self.kind} {self.target}{extra} ({self.duration:.1f}s)"


def schedule(seed: int, count: int, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """``count`` faults drawn from ``seed``.

    The faults of ``BASE_KINDS`` come from ``random.Random(seed)`` exactly as
    before the added kinds existed, in the same order; the added kinds
    (``EXTRA_KINDS``) come from a second stream of the same seed and are
    slotted in between, each slot with probability ``len(extra) / len(kinds)``
    (every kind equally likely). An old seed's faults therefore still happen,
    in order, with the same targets and durations (``base_index`` is the
    index they had; the added faults shift them later in the run)."""
    base = tuple(k for k in kinds if k in BASE_KINDS)
    extra = tuple(k for k in kinds if k in EXTRA_KINDS)
    rng = random.Random(seed)
    xrng = random.Random(f"{seed}/extra-kinds")
    p_extra = len(extra) / (len(base) + len(extra)) if base else 1.0
    faults: list[Fault] = []
    drawn = 0
    while len(faults) < count:
        index = len(faults) + 1
        if extra and xrng.random() < p_extra:
            kind = xrng.choice(extra)
            target = xrng.choice(("active", "standby"))
            # Copies run 2-4 s. The quick heal comes 0.2-1.2 s after the takeover:
            # the seed's "2 s" against a 15 s module loss time, on the fast
            # profile's 1.5 s (inherited modules must not have gone offline yet).
            span = (2.0, 4.0) if kind.startswith("copy_vsm") else (0.2, 1.2)
            faults.append(Fault(index, kind, target, round(xrng.uniform(*span), 2)))
            continue
        drawn += 1
        kind = rng.choice(base)
        faults.append(
            Fault(
                index=index,
                kind=kind,
                target=rng.choice(("active", "standby")),
                duration=round(rng.uniform(0.2, 2.0), 2),
                service=rng.choice(SERVICES) if kind in ("kill_service", "stop_service") else "",
                direction=rng.choice(("a->s", "s->a")) if kind == "partition_oneway" else "",
                offset=rng.choice((-1, 1)) * rng.uniform(60, 7200) if kind == "clock_jump" else 0,
                base_index=drawn,
            )
        )
    return faults


# ---- settling ------------------------------------------------------------------


@dataclass
class Settle:
    """When is a fault over? (the bound after which the checker may judge).

    A fault's consequences outlive it: a heartbeat loss timer armed before a
    partition fires up to ``max_loss_interval`` after the last frame that got
    through, which for a partition shorter than the loss interval is *after*
    the heal. Seed 6005, fault 987: a 0.5 s cut (fast profile: heartbeat
    0.1 s, loss 0.6 s) dropped five heartbeat requests; the sixth was due at
    the standby's loss deadline and lost the race by a millisecond, so the
    standby took over ~0.1 s after the heal, the split-brain resolution ran
    and the loser reloaded 70 ms later. The campaign had sampled "Active with
    HA standby" / "standby" once, between the heal and the takeover, called
    that recovery, and its observation then caught the two actives of the
    resolution in progress. The engine kept the seed's rule; the campaign
    judged inside the bound.

    So recovery is declared only once the healthy state (``sample(now,
    True)``) has held without a break for ``hold`` seconds and the quiet point
    ``fault start + max_loss_interval + hold`` has passed: every timer the
    fault could have armed has fired by then, and a takeover it caused would
    have broken the healthy run. ``since`` is when the final healthy run
    began (the recovery time is measured to it).
    """

    quiet_until: float
    hold: float
    since: float | None = None

    @classmethod
    def after(cls, fault_start: float, max_loss: float, heartbeat: float) -> Settle:
        hold = 2 * heartbeat
        return cls(quiet_until=fault_start + max_loss + hold, hold=hold)

    def sample(self, now: float, healthy: bool) -> bool:
        """Record one observation; True once the fault is over."""
        if not healthy:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now >= self.quiet_until and now - self.since >= self.hold


# ---- writer ----------------------------------------------------------------------


class Writer:
    """Sequential CLI writes on the believed active; a history of every attempt."""

    def __init__(self, lab: Lab, *, interval: float = 0.02) -> None:
        self.lab = lab
        self.interval = interval
        self.history: list[WriteOp] = []
        self.target = "primary"
        self._lock = threading.Lock()
        self._next_id = 0
        self._next_key = KEY_FIRST
        self._gate = threading.Lock()  # held by each write; pause() holds it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WRITE_TIMEOUT * 3)

    def pause(self) -> None:
        """Wait for the write in flight, then hold the writer until ``resume``."""
        self._gate.acquire()

    def resume(self) -> None:
        self._gate.release()

    def _allocate(self) -> tuple[int, str]:
        with self._lock:
            self._next_id += 1
            key = self._next_key
            self._next_key = KEY_FIRST if key >= KEY_LAST else key + 1
            return self._next_id, str(key)

    def _record(self, op: WriteOp) -> None:
        with self._lock:
            self.history.append(op)

    def snapshot(self) -> list[WriteOp]:
        with self._lock:
            return list(self.history)

    async def write(self, node: str) -> WriteOp:
        op_id, key = self._allocate()
        value = f"{PREFIX}{op_id}"
        line = f"configure terminal ; vlan {key} ; name {value} ; end ; exit"
        start = time.monotonic()
        client = IpcClient(RunDir(self.lab.nodes[node].rundir).cfgmgr, timeout=WRITE_TIMEOUT)
        outcome, error = Outcome.INFO, ""
        try:
            res = await client.call("cli", line=line, session=f"chaos-w{op_id}")
            if isinstance(res, dict) and not res.get("error"):
                outcome = Outcome.OK
            else:
                error = str(res.get("output", "")) if isinstance(res, dict) else str(res)
                refused = any(r in error for r in DEFINITE_REFUSALS)
                # "vlan K" may have committed before "name V" was refused: the
                # value V itself was then definitely not written.
                outcome = Outcome.FAIL if refused else Outcome.INFO
        except (IpcError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        op = WriteOp(op_id, key, value, node, start, time.monotonic(), outcome, error)
        self._record(op)
        return op

    def _loop(self) -> None:
        asyncio.run(self._aloop())

    async def _aloop(self) -> None:
        while not self._stop.is_set():
            if not self._gate.acquire(timeout=0.2):
                continue
            try:
                op = await self.write(self.target)
            finally:
                self._gate.release()
            if op.outcome is not Outcome.OK:
                # The other node may be the active now (or this one is frozen).
                self.target = other(self.target)
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.interval)


def burst(rundir: Path, sessions: int) -> list[bool]:
    """Concurrent big changes (outside the writer's keys): each renames every
    VLAN of ``OVERFLOW_VLANS``. Returns which were acknowledged."""

    async def one(i: int) -> bool:
        client = IpcClient(RunDir(rundir).cfgmgr, timeout=WRITE_TIMEOUT * 2)
        line = f"configure terminal ; vlan {OVERFLOW_VLANS} ; name ovf-{i} ; end ; exit"
        try:
            res = await client.call("cli", line=line, session=f"chaos-burst-{i}")
            return isinstance(res, dict) and not res.get("error")
        except (IpcError, OSError):
            return False
        finally:
            client.close()

    async def run() -> list[bool]:
        return list(await asyncio.gather(*(one(i) for i in range(sessions))))

    return asyncio.run(run())


# ---- copied-config VSMs -----------------------------------------------------------


def random_mac(rng: random.Random) -> str:
    """A random locally administered unicast MAC."""
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] | 0x02) & 0xFE
    return ":".join(f"{o:02x}" for o in octets)


def lab_ports(*texts: str) -> set[int]:
    """Every ``host:port`` port named in these texts (node configs, lab.json)."""
    return {int(m) for text in texts for m in re.findall(r'"[\w.:\[\]-]+:(\d+)"', text)}


def copied_config(
    text: str,
    mac: str,
    peer_control: tuple[str, int],
    peer_mgmt: tuple[str, int],
    avoid: set[int] | None = None,
) -> str:
    """A node config copied elsewhere: every ``local``/``listen`` on a new free
    port, peers aimed at the other node's real sockets, ``system_mac`` pinned.
    ``data_dir``/``run_dir`` are relative, so the copy's directory makes them new.

    ``avoid``: ports of the lab's own nodes. A port of a service that is down
    at that moment (a killed vemmgr being restarted) is free, and a copy that
    took it made the real node's vemmgr crash-loop until its node reloaded
    (campaign seed 6005, fault 234): the copy is a new installation, on ports
    of its own."""
    avoid = avoid or set()

    def new_port(host: str) -> int:
        for _ in range(100):
            port = free_port(host)
            if port not in avoid:
                avoid.add(port)
                return port
        raise LabError("no free port outside the lab's own")

    out: list[str] = []
    section = ""
    peers = {"interfaces.control": peer_control, "interfaces.mgmt": peer_mgmt}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            out.append(line)
            if section == "node":
                out.append(f'system_mac = "{mac}"')
            continue
        key = stripped.split("=", 1)[0].strip()
        if section == "node" and key == "system_mac":
            continue
        if key in ("local", "listen"):
            host = stripped.split('"')[1].rsplit(":", 1)[0]
            line = f'{key} = "{host}:{new_port(host)}"'
        elif key == "peer" and section in peers:
            line = 'peer = "{}:{}"'.format(*peers[section])
        out.append(line)
    return "\n".join(out) + "\n"


def spawn_vsm(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``openvsm vsm --config C`` in a process group of its own."""
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "openvsm", "vsm", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# ---- the campaign ----------------------------------------------------------------


@dataclass
class FaultResult:
    fault: Fault
    node: str
    note: str
    recovery_s: float | None
    violations: list[Violation] = field(default_factory=list)


def _call(sock: Path, op: str, timeout: float = 2.0, **args: Any) -> Any:
    try:
        return ipc_call(sock, op, timeout=timeout, **args)
    except (IpcError, OSError):
        return None


class Campaign:
    def __init__(
        self,
        root: Path,
        *,
        seed: int,
        faults: int,
        vems: int = 3,
        kinds: tuple[str, ...] = KINDS,
        settle_bound: float = SETTLE_BOUND,
        timers: str = "fast",
        out: Any = None,
    ) -> None:
        self.seed = seed
        self.schedule = schedule(seed, faults, kinds)
        self.settle_bound = settle_bound
        self.out = out if out is not None else sys.stdout
        # Every VEM reaches each node through its own proxy link, so a fault can
        # cut one VSM off the VEMs (quick_heal_split).
        self.lab = Lab(
            root,
            vems=0,
            timers=timers,
            proxy=True,
            rest=False,
            sync_buffer_bytes=SYNC_BUFFER_BYTES,
            vem_proxy=vems,
        )
        self.nvems = vems
        self.writer = Writer(self.lab)
        self.results: list[FaultResult] = []
        self.modules: dict[str, int] = {}
        # Split-brain logs keep only the latest resolution: remember every one seen.
        self.discarded: set[str] = set()
        self._reported: set[str] = set()
        self.rng = random.Random(seed ^ 0x5EED)
        self.offsets = dict.fromkeys(NODES, 0.0)  # node clock - campaign clock (clock_jump)
        self.mono_to_wall = time.time() - time.monotonic()
        self.operator_changes: list[tuple[str, float]] = []  # (node, wall) of our own changes
        self.copies: list[subprocess.Popen[bytes]] = []
        self._vems_cut = False
        t = self.lab.timers
        self.attachment = AttachmentCheck(grace=t["vem_headless_ms"] / 1000 + 1.0)
        self.traces = TraceReader(
            {n: self.lab.nodes[n].datadir / "redundancy-trace.log" for n in NODES},
            offset=lambda n: self.offsets[n],
        )
        names = {"{}:{}".format(*vem.via[n]): n for vem in self.lab.proxied_vems for n in NODES}
        self.sampler = Sampler(
            [SampledNode(n, self.lab.nodes[n].rundir) for n in NODES],
            [SampledVem(v.host, v.rundir) for v in self.lab.proxied_vems],
            names,
        )
        self._fed = 0.0  # rounds up to this time were given to the attachment check

    def log(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ---- state --------------------------------------------------------------
    def ha(self, node: str) -> dict[str, Any] | None:
        st = _call(RunDir(self.lab.nodes[node].rundir).hamgr, "status", timeout=1.0)
        return st if isinstance(st, dict) else None

    def roles(self) -> dict[str, str | None]:
        return {n: (self.ha(n) or {}).get("state") for n in NODES}

    def active(self) -> str | None:
        actives = [n for n, s in self.roles().items() if s == "active"]
        return actives[0] if len(actives) == 1 else None

    def module_table(self, node: str) -> dict[str, tuple[int, str]]:
        data = _call(RunDir(self.lab.nodes[node].rundir).vemmgr, "modules", timeout=2.0)
        if not isinstance(data, dict) or not data.get("active"):
            return {}
        rows = data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
        srv = data.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])
        names = {r["modsrv"]: r["srvname"] for r in srv}
        return {str(names.get(r["modinf"])): (int(r["modinf"]), str(r["status"])) for r in rows}

    def digest(self, node: str) -> tuple[str, int] | None:
        d = _call(RunDir(self.lab.nodes[node].rundir).cfgmgr, "snapshot_digest", timeout=2.0)
        return (str(d["digest"]), int(d["seq"])) if isinstance(d, dict) else None

    def recovered(self) -> bool:
        st = {n: self.ha(n) or {} for n in NODES}
        actives = [n for n in NODES if st[n].get("state") == "active"]
        if len(actives) != 1:
            return False
        act = actives[0]
        if st[act].get("internal_state") != "Active with HA standby":
            return False
        if st[other(act)].get("state") != "standby":
            return False
        mods = self.module_table(act)
        return all(mods.get(h, (0, ""))[1] == "ok" for h in self.modules)

    def in_sync(self) -> bool:
        act = self.active()
        if act is None:
            return False
        a, s = self.digest(act), self.digest(other(act))
        return a is not None and a == s

    def observe(self, label: str) -> Observation:
        views = {}
        discarded: set[str] = set()
        for n in NODES:
            rundir = self.lab.nodes[n].rundir
            st = self.ha(n)
            d = self.digest(n)
            vlans = _call(RunDir(rundir).cfgmgr, "list", timeout=5.0, kind="vlan")
            values = (
                {k: str(v.get("name", "")) for k, v in vlans.items()}
                if isinstance(vlans, dict)
                else {}
            )
            views[n] = NodeView(
                n,
                st.get("state") if st else None,
                d[0] if d else None,
                d[1] if d else None,
                values,
            )
            for which in ("accounting", "remote accounting"):
                aa = _call(RunDir(rundir).hamgr, "activeactive", which=which)
                if isinstance(aa, dict):
                    discarded |= {str(e.get("command")) for e in aa.get("discarded", [])}
        self.discarded |= discarded
        act = next((n for n, v in views.items() if v.state == "active"), None)
        modules = self.module_table(act) if act else {}
        return Observation(label, views, frozenset(self.discarded), modules)

    def observe_and_check(self, label: str) -> list[Violation]:
        """Check an observation; a divergent standby is re-read for a while
        (vemmgr commits module state on its own, the writer is not alone)."""
        deadline = time.monotonic() + 10.0
        while True:
            obs = self.observe(label)
            found = check(self.writer.snapshot(), obs, prefix=PREFIX, modules=self.modules)
            transient = [
                v
                for v in found
                if v.kind in ("divergent_standby", "standby_lagging", "vem_detached")
            ]
            if not transient or time.monotonic() >= deadline:
                break
            time.sleep(0.3)
        new = []
        for v in found:
            # Every observation re-checks the whole history: report each problem once.
            key = f"{v.kind}:{v.detail.split(': ', 1)[-1]}"
            if key not in self._reported:
                self._reported.add(key)
                new.append(v)
        return new

    # ---- faults -------------------------------------------------------------
    def service_pid(self, node: str, service: str) -> int | None:
        data = _call(RunDir(self.lab.nodes[node].rundir).sysmgr, "services")
        if not isinstance(data, dict):
            return None
        for row in data["TABLE_service"]["ROW_service"]:
            if row["name"] == service and row.get("pid"):
                return int(row["pid"])
        return None

    def set_clock_offset(self, node: str, offset: float) -> None:
        path = self.lab.nodes[node].config
        text = re.sub(r"(?m)^clock_offset_s = .*\n", "", path.read_text())
        text = text.replace("[node]\n", f"[node]\nclock_offset_s = {offset:.3f}\n", 1)
        path.write_text(text)
        self.offsets[node] = offset

    def inject(self, f: Fault, node: str) -> str:
        """Run one fault against ``node`` and undo it; returns a note."""
        if f.kind.startswith("copy_vsm"):
            return self.copy_vsm(node, f, same_mac=f.kind == "copy_vsm_same_mac")
        if f.kind == "quick_heal_split":
            return self.quick_heal_split(node, f)
        lab = self.lab
        peer = other(node)
        if f.kind == "kill_node":
            lab.kill_node(node, signal.SIGKILL)
            time.sleep(f.duration)
            lab.start_node(node)
            return "node killed and restarted"
        if f.kind == "stop_node":
            lab.kill_node(node, signal.SIGSTOP)
            time.sleep(f.duration)
            lab.kill_node(node, signal.SIGCONT)
            return "node stopped and continued"
        if f.kind in ("kill_service", "stop_service"):
            pid = self.service_pid(node, f.service)
            if pid is None:
                return f"{f.service} not running"
            if f.kind == "kill_service":
                os.kill(pid, signal.SIGKILL)
                return f"{f.service} pid {pid} killed"
            os.kill(pid, signal.SIGSTOP)
            time.sleep(f.duration)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            return f"{f.service} pid {pid} stopped and continued"
        if f.kind.startswith("partition_"):
            if f.kind == "partition_oneway":
                act = node if f.target == "active" else peer
                src = act if f.direction == "a->s" else other(act)
                direction = "p->s" if src == "primary" else "s->p"
                ifaces = ["control", "mgmt"]
            else:
                direction = "both"
                ifaces = {
                    "partition_control": ["control"],
                    "partition_mgmt": ["mgmt"],
                    "partition_both": ["control", "mgmt"],
                }[f.kind]
            for iface in ifaces:
                lab.cut(iface, direction)
            time.sleep(f.duration)
            for iface in ifaces:
                lab.heal(iface, direction)
            return f"cut {'+'.join(ifaces)} {direction}"
        if f.kind == "buffer_overflow":
            act = self.active() or node
            lab.cut("control")
            acked = burst(lab.nodes[act].rundir, BURST_SESSIONS)
            time.sleep(f.duration)
            lab.heal("control")
            return f"control cut, {len(acked)} x 900-VLAN changes on {act} ({sum(acked)} acked)"
        if f.kind == "switchover":
            current = self.active()
            if current is None:
                return "no active"
            res = _call(
                RunDir(lab.nodes[current].rundir).cfgmgr,
                "cli",
                line="system switchover",
                session="chaos-ops",
            )
            out = str(res.get("output", "")).strip() if isinstance(res, dict) else "no answer"
            return f"switchover on {current}: {out[:60]}"
        if f.kind == "clock_jump":
            self.set_clock_offset(node, f.offset)
            for service in ("hamgr", "cfgmgr"):
                _call(RunDir(lab.nodes[node].rundir).sysmgr, "restart_service", name=service)
                time.sleep(0.2)
            return f"wall clock {f.offset:+.0f} s, hamgr+cfgmgr restarted"
        raise LabError(f"unknown fault kind {f.kind}")

    # ---- added fault kinds ------------------------------------------------------
    def copy_vsm(self, node: str, f: Fault, *, same_mac: bool) -> str:
        """A third VSM from a copy of ``node``'s config: new ports, a new data
        directory, aimed straight at the other node's real addresses (a cloned
        VM on the same network). ``system_mac`` pinned: ``node``'s own (as the
        peer learnt it) or a random locally administered one. Stopped at the
        fault's end."""
        src, peer = self.lab.nodes[node], self.lab.nodes[other(node)]
        mac = self.node_mac(node) if same_mac else random_mac(self.rng)
        d = self.lab.root / "copies" / f"copy-{len(self.copies) + 1}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        cfg = d / "node.toml"
        own = [n.config.read_text() for n in self.lab.nodes.values()]
        avoid = lab_ports(*own, (self.lab.root / "lab.json").read_text())
        text = copied_config(src.config.read_text(), mac, peer.control, peer.mgmt, avoid)
        cfg.write_text(text)
        proc = spawn_vsm(cfg, d / "console.log")
        self.copies.append(proc)
        time.sleep(f.duration)
        signal_group(proc, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)
        return f"copy of the {node}'s config ({mac}) ran {f.duration:.1f} s beside the pair"

    def node_mac(self, node: str) -> str:
        """The system MAC ``node`` uses, as its peer learnt it."""
        facts = self.lab.nodes[other(node)].datadir / "ha-facts.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return str(json.loads(facts.read_text())["peer_macs"]["control"])
        return load_node_config(self.lab.nodes[node].config).system_mac

    def stop_copies(self) -> None:
        for proc in self.copies:
            signal_group(proc, signal.SIGKILL)

    def quick_heal_split(self, node: str, f: Fault) -> str:
        """Seed scenario: ``node`` cut from its peer and from every VEM until the
        pair has two actives, one configuration change on ``node``, healed
        ``f.duration`` seconds after the takeover. The side the VEMs stayed
        with must win."""
        lab = self.lab
        for iface in ("control", "mgmt"):
            lab.cut(iface)
        self._vems_cut = True
        for vem in lab.proxied_vems:
            lab.cut_vem(vem, node)
        try:
            wait_for(lambda: all(self.roles()[n] == "active" for n in NODES), 10.0, "a takeover")
        except LabError:
            return f"{node} isolated, no takeover within 10 s"
        took = time.monotonic()
        res = _call(
            RunDir(lab.nodes[node].rundir).cfgmgr,
            "cli",
            line=f"configure terminal ; vlan {QUICK_HEAL_VLAN} ; name qh-{f.index} ; end",
            session="chaos-ops",
        )
        changed = isinstance(res, dict) and not res.get("error")
        if changed:
            self.operator_changes.append((node, time.time()))
        time.sleep(max(0.0, took + f.duration - time.monotonic()))
        for iface in ("control", "mgmt"):
            lab.heal(iface)
        for vem in lab.proxied_vems:
            lab.heal_vem(vem, node)
        self._vems_cut = False
        what = f"vlan {QUICK_HEAL_VLAN} named on it" if changed else "its change refused"
        return f"{node} isolated from peer and VEMs, {what}, healed {f.duration:.1f} s after"

    # ---- the seed's rules ---------------------------------------------------------
    def check_rules(self, f: Fault, wall0: float, pair: tuple[str, str] | None) -> list[Violation]:
        """Attachment truth, split-brain winners and, for copies, an undisturbed pair."""
        label = f"fault {f.index}"
        rounds = self.sampler.since(self._fed)
        out: list[Violation] = []
        for r in rounds:
            out += self.attachment.feed(r, label)
        if rounds:
            self._fed = rounds[-1].t0 + 1e-6
        for d in self.traces.decisions():
            around = self.sampler.since(d.split_start - 1.0)
            out += check_split_brain(d, around, self.changes_during(d), label=label)
        if f.kind.startswith("copy_vsm") and pair is not None:
            out += check_undisturbed(self.sampler.since(wall0), pair, label=label)
        return out

    def changes_during(self, d: SplitBrainDecision) -> dict[str, int]:
        """Configuration changes seen committed on each side during a split."""
        changes = dict.fromkeys(NODES, 0)
        for op in self.writer.snapshot():
            end = op.end + self.mono_to_wall
            if op.outcome is Outcome.OK and d.split_start <= end <= d.t:
                changes[op.node] += 1
        for node, t in self.operator_changes:
            if d.split_start <= t <= d.t:
                changes[node] += 1
        return changes

    def undo_everything(self) -> None:
        """Whatever a fault left behind: heal the links, continue, restart nodes."""
        for iface in ("control", "mgmt"):
            with contextlib.suppress(IpcError, OSError, LabError):
                self.lab.heal(iface, "both")
        if self._vems_cut:
            with contextlib.suppress(IpcError, OSError, LabError):
                for vem in self.lab.proxied_vems:
                    for n in NODES:
                        self.lab.heal_vem(vem, n)
                self._vems_cut = False
        for n in NODES:
            node = self.lab.nodes[n]
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
            else:
                node.proc = None
                self.lab.start_node(n)

    def settle(self, fault_start: float) -> float | None:
        """Wait for recovery past the bound (``Settle``); the recovery time is
        from undoing the fault to the start of the final healthy run."""
        start = time.monotonic()
        deadline = start + self.settle_bound
        t = self.lab.timers
        rule = Settle.after(
            fault_start, t["max_loss_interval_ms"] / 1000, t["heartbeat_interval_ms"] / 1000
        )
        while time.monotonic() < deadline:
            self.undo_everything()
            healthy = self.recovered()
            if rule.sample(time.monotonic(), healthy):
                self.writer.pause()
                try:
                    with contextlib.suppress(LabError):
                        wait_for(self.in_sync, 5.0, "the standby to catch up")
                        return max(0.0, (rule.since or start) - start)
                finally:
                    self.writer.resume()
            time.sleep(0.05)
        return None

    # ---- run ----------------------------------------------------------------
    def start(self) -> None:
        self.lab.start()
        self.lab.launch_vems(self.lab.proxied_vems)
        hosts = {v.host for v in self.lab.proxied_vems}

        def attached() -> bool:
            act = self.active()
            table = self.module_table(act) if act else {}
            return all(table.get(h, (0, ""))[1] == "ok" for h in hosts)

        wait_for(attached, 60.0, f"{len(hosts)} VEMs to attach")
        act = self.active()
        assert act is not None
        self.modules = {h: m for h, (m, _) in self.module_table(act).items()}
        self.writer.target = act
        self.writer.start()
        self.sampler.start()

    def run(self) -> list[FaultResult]:
        self.log(
            f"openvsm chaos: seed {self.seed}, {len(self.schedule)} faults "
            f"(replay: openvsm chaos --seed {self.seed} --faults {len(self.schedule)})"
        )
        self.start()
        self.log(f"deployment up: {len(self.modules)} VEMs {dict(sorted(self.modules.items()))}")
        for f in self.schedule:
            act = self.active() or "primary"
            node = act if f.target == "active" else other(act)
            t0 = time.monotonic()
            wall0 = time.time()
            pair = (act, other(act)) if self.active() == act else None
            try:
                note = self.inject(f, node)
            except (LabError, OSError, IpcError) as exc:
                note = f"injection error: {exc}"
            recovery = self.settle(t0)
            violations: list[Violation] = []
            if recovery is None:
                violations.append(
                    Violation("no_recovery", f"not recovered within {self.settle_bound:.0f} s")
                )
            self.writer.pause()
            try:
                violations += self.observe_and_check(f"fault {f.index}")
            finally:
                self.writer.resume()
            violations += self.check_rules(f, wall0, pair)
            res = FaultResult(f, node, note, recovery, violations)
            self.results.append(res)
            rec = f"{recovery:5.2f}s" if recovery is not None else "  none"
            base = f" #{f.base_index}" if f.base_index not in (0, f.index) else ""
            self.log(
                f"{time.strftime('%H:%M:%S')} [{f.index:4d}{base}] {f.describe():42s} on {node:9s} "
                f"recovered {rec} (fault {time.monotonic() - t0:5.1f}s) {note}"
            )
            for v in violations:
                self.log(f"       VIOLATION {v} (replay: --seed {self.seed})")
        self.writer.stop()
        return self.results

    def stop(self) -> None:
        self.writer.stop()
        self.sampler.stop()
        self.stop_copies()
        self.undo_everything_quietly()
        self.lab.stop()

    def undo_everything_quietly(self) -> None:
        for n in NODES:
            node = self.lab.nodes[n]
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)

    # ---- report -------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        recov = sorted(r.recovery_s for r in self.results if r.recovery_s is not None)
        hist = self.writer.snapshot()

        def pct(p: float) -> float | None:
            if not recov:
                return None
            return round(recov[min(len(recov) - 1, int(p * len(recov)))], 3)

        return {
            "seed": self.seed,
            "faults": len(self.results),
            "by_kind": dict(sorted(Counter(r.fault.kind for r in self.results).items())),
            "violations": [
                {"fault": r.fault.index, "kind": r.fault.kind, "violation": str(v)}
                for r in self.results
                for v in r.violations
            ],
            "recovery_s": {
                "p50": pct(0.5),
                "p90": pct(0.9),
                "p99": pct(0.99),
                "max": round(recov[-1], 3) if recov else None,
                "mean": round(statistics.fmean(recov), 3) if recov else None,
            },
            "writes": dict(Counter(o.outcome.value for o in hist)),
            "replay": f"openvsm chaos --seed {self.seed} --faults {len(self.schedule)}",
        }


def run_campaign(
    root: Path,
    *,
    seed: int,
    faults: int,
    vems: int = 3,
    kinds: tuple[str, ...] = KINDS,
    out: Any = None,
) -> dict[str, Any]:
    campaign = Campaign(root, seed=seed, faults=faults, vems=vems, kinds=kinds, out=out)
    try:
        campaign.run()
    finally:
        campaign.stop()
    return campaign.summary()


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openvsm chaos", description="Seeded fault campaign against a loopback deployment"
    )
    parser.add_argument("--seed", type=int, help="schedule seed (default: random, printed)")
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--vems", type=int, default=3)
    parser.add_argument("--kinds", help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--dir", type=Path, help="lab directory (default: temporary)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or args.faults < 1:
        print(f"openvsm chaos: bad --kinds {unknown} or --faults", file=sys.stderr)
        return 2
    tmp = None
    if args.dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="openvsm-chaos-"))
        root = tmp / "lab"
    else:
        root = args.dir.resolve()

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the campaign: its lab is stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = run_campaign(root, seed=seed, faults=args.faults, vems=args.vems, kinds=kinds)
    except LabError as exc:
        print(f"openvsm chaos: {exc} (seed {seed})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"openvsm chaos: interrupted (seed {seed})", file=sys.stderr)
        return 130
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["violations"] else 0
