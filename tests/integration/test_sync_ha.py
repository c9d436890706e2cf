"""Configuration store, synchronisation to the standby, stateful switchover
(DESIGN §4) with real processes.

- Concurrent writers through the CLI server while the active is SIGKILLed at
  seeded random moments: every change acknowledged to a writer is on the new
  active, nothing appears that was not requested, and after the killed node
  comes back (standby, bulk sync) the two stores are equal.
- A control partition longer than the sync buffer allows: overflow, the
  standby is marked out of sync, reset (reload, same sysmgr pid) and resynced.
- The standby refuses configuration naming the active; bad input changes
  nothing.

Set ``OPENVSM_SEED`` to replay a run; the seed is printed.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from openvsm.lab.common import LabError, ipc_call, wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

SETTLE = 15.0  # generous deadlines: the machine is shared; order matters, not speed
WRITERS = 4
FIRST_VLAN, LAST_VLAN = 100, 3967  # below the reserved range 3968-4047
DEFAULT_VLANS = {"10", "20"}  # Lab.configure_defaults
DEFAULT_PROFILES = {"vm-net"}


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def cfgmgr(lab: Lab, node: str, op: str, **args: Any) -> Any:
    return ipc_call(lab.rundir(node) / "cfgmgr.sock", op, timeout=10.0, **args)


def digest(lab: Lab, node: str) -> str:
    return str(cfgmgr(lab, node, "snapshot_digest")["digest"])


def trace_events(lab: Lab, node: str) -> list[str]:
    data = lab.cli_json(node, "show system internal redundancy trace")
    return [str(r["event"]) for r in data["TABLE_trace"]["ROW_trace"]]


def wait_active(lab: Lab, node: str) -> None:
    wait_for(
        lambda: (lab.status(node) or {}).get("this_sup_rdn_state") == "Active",
        SETTLE,
        f"{node} to become active",
    )


def wait_stores_equal(lab: Lab, a: str, b: str) -> None:
    wait_for(lambda: digest(lab, a) == digest(lab, b), SETTLE, f"{a} and {b} stores to be equal")


@dataclass
class Request:
    """One CLI line a writer sent: a new VLAN, or a new port profile with a description."""

    kind: str  # "vlan" | "port_profile"
    key: str
    description: str = ""


@dataclass
class History:
    requested: dict[tuple[str, str], Request] = field(default_factory=dict)
    acked: list[Request] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.acked)


class Writers:
    """``WRITERS`` threads sending configuration lines to ``target`` (switched by the test)."""

    def __init__(self, lab: Lab, target: str) -> None:
        self.lab = lab
        self.target = target
        self.history = History()
        self.stop = threading.Event()
        self._vlans = itertools.count(FIRST_VLAN)
        self._sessions = itertools.count()
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WRITERS)
        ]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def _next(self, w: int, k: int) -> tuple[Request, str]:
        with self.history.lock:
            vlan = next(self._vlans) if k % 2 == 0 else LAST_VLAN + 1
        if vlan <= LAST_VLAN:
            return Request("vlan", str(vlan)), f"configure terminal ; vlan {vlan} ; end"
        name, desc = f"pw{w}k{k}", f"d{w}-{k}"
        line = f"configure terminal ; port-profile type vethernet {name} ; description {desc} ; end"
        return Request("port_profile", name, desc), line

    def _run(self, w: int) -> None:
        for k in itertools.count():
            if self.stop.is_set():
                return
            req, line = self._next(w, k)
            with self.history.lock:
                self.history.requested[(req.kind, req.key)] = req
                node = self.target
                session = f"w{w}-{next(self._sessions)}"
            try:
                res = ipc_call(
                    self.lab.rundir(node) / "cfgmgr.sock",
                    "cli",
                    timeout=20.0,
                    line=line,
                    session=session,
                )
            except Exception as exc:  # the node died under us: maybe committed, not acked
                outcome = type(exc).__name__
                time.sleep(0.02)
            else:
                outcome = "ok" if not res.get("error") else str(res.get("output", ""))[:60]
            with self.history.lock:
                if outcome == "ok":
                    self.history.acked.append(req)
                else:
                    self.history.errors[outcome] = self.history.errors.get(outcome, 0) + 1
            if outcome != "ok":
                time.sleep(0.01)


def check_history(lab: Lab, node: str, history: History, acked: list[Request]) -> None:
    """Every acknowledged change is on ``node``; nothing is there that nobody asked for."""
    vlans = cfgmgr(lab, node, "list", kind="vlan")
    profiles = cfgmgr(lab, node, "list", kind="port_profile")
    missing = [
        r
        for r in acked
        if (r.kind == "vlan" and r.key not in vlans)
        or (
            r.kind == "port_profile" and profiles.get(r.key, {}).get("description") != r.description
        )
    ]
    assert not missing, f"{len(missing)} acknowledged changes lost on {node}: {missing[:5]}"
    with history.lock:
        requested = dict(history.requested)
    unexpected_vlans = set(vlans) - DEFAULT_VLANS - {k for (kind, k) in requested if kind == "vlan"}
    assert not unexpected_vlans, f"VLANs nobody asked for: {sorted(unexpected_vlans)[:5]}"
    for name, body in profiles.items():
        if name in DEFAULT_PROFILES:
            continue
        req = requested.get(("port_profile", name))
        assert req is not None, f"port profile nobody asked for: {name}"
        assert body.get("description", "") in ("", req.description), (name, body)


def test_writes_survive_repeated_failover(make_lab: Callable[..., Lab]) -> None:
    seed = int(os.environ.get("OPENVSM_SEED") or random.randrange(2**32))
    print(f"OPENVSM_SEED={seed}")
    rng = random.Random(seed)
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    with Writers(lab, active) as writers:
        history = writers.history
        wait_for(lambda: len(history.acked_snapshot()) >= 20, SETTLE, "writes to start")
        for round_ in range(2):
            standby = other(active)
            time.sleep(rng.uniform(0.1, 1.5))
            acked_before_kill = history.acked_snapshot()
            lab.kill_node(active)
            print(f"round {round_}: killed {active} after {len(acked_before_kill)} acks")
            wait_active(lab, standby)
            with history.lock:
                writers.target = standby
            check_history(lab, standby, history, acked_before_kill)
            n = len(history.acked_snapshot())
            wait_for(
                lambda n=n: len(history.acked_snapshot()) >= n + 20,  # type: ignore[misc]
                SETTLE,
                "writes on the new active",
            )
            # The killed node comes back as standby and bulk-syncs while writes go on.
            lab.start_node(active)
            assert lab.wait_pair(SETTLE * 2) == standby
            active = standby
        time.sleep(rng.uniform(0.1, 0.5))
    acked = history.acked_snapshot()
    print(f"{len(history.requested)} requested, {len(acked)} acknowledged, {history.errors}")
    assert len(acked) >= 60
    check_history(lab, active, history, acked)
    wait_stores_equal(lab, active, other(active))
    check_history(lab, other(active), history, acked)


def test_control_partition_overflows_buffer_then_standby_resyncs(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True, sync_buffer_bytes=4096)
    active = lab.start()
    standby = other(active)
    standby_sysmgr = lab.nodes[standby].pid
    assert standby_sysmgr is not None
    lab.cut("control")
    wait_for(
        lambda: (
            "degraded" in str((lab.status(active) or {}).get("this_sup_internal_state", "")).lower()
        ),
        SETTLE,
        "the active to see the control interface down (degraded)",
    )
    # Concurrent writers: each waits for the standby's ack, which cannot come,
    # until the unacknowledged changes exceed the 4 KiB buffer.
    results: list[dict[str, Any] | Exception] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        line = (
            f"configure terminal ; port-profile type vethernet ovf{i} ; "
            f"description {'x' * 70}-{i} ; end"
        )
        try:
            res: dict[str, Any] | Exception = ipc_call(
                lab.rundir(active) / "cfgmgr.sock", "cli", timeout=30.0, line=line, session=f"o{i}"
            )
        except Exception as exc:
            res = exc
        with lock:
            results.append(res)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, dict) and not r["error"] for r in results), results[:3]
    assert (lab.status(active) or {}).get("this_sup_rdn_state") == "Active"
    sync = cfgmgr(lab, active, "sync_status")
    assert sync["out_of_sync"] and not sync["attached"], sync
    # Writes go on without waiting for the standby.
    res = lab.cli(active, "configure terminal ; vlan 300 ; end", timeout=10.0)
    assert not res["error"], res
    events = trace_events(lab, active)
    overflow = next(i for i, e in enumerate(events) if "overflow" in e)

    # The reset the overflow causes is the first one ordered after it (on a
    # loaded machine a slow pair start may have ordered one before, for its own reason).
    def resets_after() -> list[str]:
        return [
            e
            for e in trace_events(lab, active)[overflow + 1 :]
            if "ordering the standby to reset" in e
        ]

    wait_for(lambda: resets_after(), SETTLE, "the active to order the standby's reset")
    assert "out of sync" in resets_after()[0], resets_after()

    lab.heal("control")
    assert lab.wait_pair(SETTLE * 2) == active
    wait_stores_equal(lab, active, standby)
    # The standby reloaded (services restarted under the same sysmgr) and says why.
    assert lab.nodes[standby].pid == standby_sysmgr
    standby_trace = trace_events(lab, standby)
    print("standby trace:", standby_trace)
    reload = next(i for i, e in enumerate(standby_trace) if "reset ordered by the active" in e)
    assert any("after reload" in e for e in standby_trace[reload:]), standby_trace
    profiles = cfgmgr(lab, standby, "list", kind="port_profile")
    assert {f"ovf{i}" for i in range(40)} <= set(profiles)
    assert "300" in cfgmgr(lab, standby, "list", kind="vlan")


def test_lone_writer_in_a_control_partition_is_not_held_forever(
    make_lab: Callable[..., Lab],
) -> None:
    """One sequential writer never fills the buffer: the ack timeout (>= 3 s)
    marks the standby out of sync instead of holding the write forever."""
    lab = make_lab(timers="fast", rest=False, proxy=True)
    active = lab.start()
    standby = other(active)
    lab.cut("control")
    wait_for(
        lambda: (
            "degraded" in str((lab.status(active) or {}).get("this_sup_internal_state", "")).lower()
        ),
        SETTLE,
        "the active to see the control interface down (degraded)",
    )
    res = lab.cli(active, "configure terminal ; vlan 301 ; end", timeout=30.0)
    assert not res["error"], res
    sync = cfgmgr(lab, active, "sync_status")
    assert sync["out_of_sync"] and not sync["attached"], sync
    res = lab.cli(active, "configure terminal ; vlan 302 ; end", timeout=10.0)
    assert not res["error"], res
    wait_for(
        lambda: any("ordering the standby to reset" in e for e in trace_events(lab, active)),
        SETTLE,
        "the active to order the standby's reset",
    )
    lab.heal("control")
    assert lab.wait_pair(SETTLE * 2) == active
    wait_stores_equal(lab, active, standby)
    assert {"301", "302"} <= set(cfgmgr(lab, standby, "list", kind="vlan"))


def test_standby_refuses_configuration_naming_the_active(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    before = digest(lab, standby)
    for line in ("configure terminal", "configure terminal ; vlan 500 ; end"):
        res = lab.cli(standby, line)
        assert res["error"], res
        assert "standby" in res["output"].lower(), res
        assert active in res["output"], res
    # show commands work on the standby
    res = lab.cli(standby, "show running-config")
    assert not res["error"] and "vlan 10,20" in res["output"], res
    assert digest(lab, standby) == before == digest(lab, active)


BAD_LINES = [
    ("vlan 0", "out of range"),
    ("vlan 4095", "out of range"),
    ("vlan 4000", "reserved"),
    ("vlan 10-", ""),
    ("vlan abc", ""),
    ("no port-profile nosuch", "nosuch"),
    ("port-profile type vethernet vm-net ; switchport access vlan 5000", "out of range"),
    ("port-profile type vethernet vm-net ; switchport mode bogus", ""),
    ("frobnicate the switch", ""),
    ("port-profile", ""),
    ("username", ""),
]


def test_bad_configuration_input_changes_nothing(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    before = digest(lab, active)
    for i, (line, words) in enumerate(BAD_LINES):
        res = ipc_call(
            lab.rundir(active) / "cfgmgr.sock",
            "cli",
            line=f"configure terminal ; {line}",
            session=f"bad-{i}",
        )
        assert res["error"], (line, res)
        text = res["output"]
        print(f"{line!r}: {text.strip()!r}")
        assert text.strip().splitlines()[-1].startswith(("%", "ERROR:")), (line, text)
        assert words in text, (line, text)
        assert digest(lab, active) == before, line
    wait_stores_equal(lab, active, other(active))
    if lab.active() != active:
        raise LabError("the active changed during the test")
