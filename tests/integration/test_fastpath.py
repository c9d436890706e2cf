"""The crash fast path as an operator sees it (DESIGN §3, issue 11 point 5).

Faults from outside: signals to the process group and pids that ``lab.json``
and ``show system internal sysmgr services`` give. Assertions on the
standby's ``show system internal redundancy trace | json``: which path the
takeover took and in which order, never how fast (the machine is shared).

- SIGKILL of the active node's process group (its host lives): the standby
  takes the crash fast path, every time.
- SIGKILL of the active's cfgmgr alone: the active's hamgr answers the
  probes, nobody takes over (a false fast takeover would be a split-brain).
- SIGSTOP of the active (the silent path): no reset, no probe, the loss
  interval decides.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import pytest

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

SETTLE = 10.0  # deadline on a loaded machine; order matters, not speed
PROBING = "sync connection reset by the active's host: probing the active's liveness"


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def trace(lab: Lab, node: str) -> list[str]:
    data = lab.cli_json(node, "show system internal redundancy trace")
    return [r["event"] for r in data["TABLE_trace"]["ROW_trace"]]


def pgid(lab: Lab, node: str) -> int:
    data = json.loads((lab.root / "lab.json").read_text())
    (entry,) = [n for n in data["nodes"] if n["name"] == node]
    return int(entry["pgid"])


def is_active(lab: Lab, node: str) -> Callable[[], bool]:
    return lambda: (lab.status(node) or {}).get("this_sup_rdn_state") == "Active"


def restart(lab: Lab, node: str) -> str:
    """Reap the signalled node, start it again, wait for a hot pair."""
    lab.kill_node(node)
    lab.start_node(node)
    active = lab.wait_pair()
    lab.write_lab_json()
    return active


def test_sigkill_of_the_active_takes_the_crash_fast_path_every_time(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    takeovers: list[str] = []
    for _ in range(5):
        standby = other(active)
        before = len(trace(lab, standby))
        os.killpg(pgid(lab, active), signal.SIGKILL)
        wait_for(is_active(lab, standby), SETTLE, f"{standby} to become active")
        events = trace(lab, standby)[before:]
        took = [e for e in events if e.startswith("redundancy state standby -> active")]
        assert len(took) == 1, events
        assert "crash fast path" in took[0], events
        assert PROBING in events
        assert events.index(PROBING) < events.index(took[0]), events
        assert not any("no fast takeover" in e for e in events), events
        takeovers.append(took[0])
        assert restart(lab, active) == standby
        active = standby
    # Nothing is bound in the dead node's place: its host answers the probes
    # with "port unreachable" and the standby need not wait for the timeout
    # (ICMP is rate-limited machine-wide, so not necessarily every time).
    assert any("reports its control and mgmt ports closed" in t for t in takeovers), takeovers


def test_sigkill_of_the_active_cfgmgr_alone_is_answered_not_taken_over(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    before = len(trace(lab, standby))
    rows = lab.cli_json(active, "show system internal sysmgr services")["TABLE_service"]
    pid = {r["name"]: r["pid"] for r in rows["ROW_service"]}["cfgmgr"]
    os.kill(pid, signal.SIGKILL)

    def answered() -> bool:
        events = trace(lab, standby)[before:]
        return PROBING in events and any("the active is alive" in e for e in events)

    wait_for(answered, SETTLE, "the standby to probe the active and hear its hamgr")
    assert lab.wait_pair() == active
    events = trace(lab, standby)[before:]
    assert events.index(PROBING) < next(
        i for i, e in enumerate(events) if "the active is alive" in e
    )
    assert not any(e.startswith("redundancy state standby -> active") for e in events), events
    assert not any(e.startswith("became active") for e in trace(lab, standby)), events


def test_sigstop_of_the_active_waits_out_the_loss_interval(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    before = len(trace(lab, standby))
    os.killpg(pgid(lab, active), signal.SIGSTOP)
    try:
        wait_for(is_active(lab, standby), SETTLE, f"{standby} to become active")
    finally:
        lab.kill_node(active)  # SIGKILL ends a stopped group too
    events = trace(lab, standby)[before:]
    took = [e for e in events if e.startswith("redundancy state standby -> active")]
    assert len(took) == 1 and "no heartbeat request" in took[0], events
    assert PROBING not in events
