"""One-way communication between the VSMs, real processes on loopback (seed:
"One-Way Communication"; DESIGN §3).

- standby->active lost (the standby still hears requests, the active hears
  no responses): the active declares the standby not present; the standby
  stays standby and shows the inconsistency; when two-way communication
  returns, the standby asks to be reset, reloads and resyncs.
- active->standby lost: equivalent to a total loss (the standby answers only
  requests), so the standby becomes active; on heal the split-brain is
  resolved.

The fault proxy drops one direction of both interfaces (UDP heartbeats and,
on control, the sync TCP stream). Deadlines are generous; order, not speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

LOSS = 0.6
SETTLE = 20.0
BOTH = ("primary", "secondary")


def status(lab: Lab, node: str) -> dict[str, Any]:
    st = lab.status(node)
    assert st is not None, f"{node} does not answer"
    return st


def trace_events(lab: Lab, node: str) -> list[str]:
    data = lab.cli_json(node, "show system internal redundancy trace")
    return [str(r["event"]) for r in data["TABLE_trace"]["ROW_trace"]]


def vsm_rows(lab: Lab, node: str) -> list[dict[str, Any]]:
    data = lab.cli_json(node, "show module")
    rows = data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
    return [r for r in rows if r.get("modtype") == "Virtual Supervisor Module"]


def digest(lab: Lab, node: str) -> str:
    data: dict[str, Any] = ipc_call(lab.rundir(node) / "cfgmgr.sock", "snapshot_digest")
    return str(data["digest"])


def reload_count(lab: Lab, node: str) -> int:
    return sum(1 for e in trace_events(lab, node) if e.startswith("reload: "))


def configure(lab: Lab, node: str, *lines: str) -> None:
    for line in ("configure terminal", *lines, "end"):
        res = lab.cli(node, line)
        assert not res.get("error"), f"{node}: {line}: {res.get('output')}"


def test_standby_to_active_loss_inconsistent_then_reset(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True)
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    assert len(vsm_rows(lab, active)) == 2

    # The standby's traffic to the active is lost; the active's requests still arrive.
    to_active = "s->p" if active == "primary" else "p->s"
    lab.cut("control", to_active)
    lab.cut("mgmt", to_active)
    wait_for(
        lambda: status(lab, active)["this_sup_internal_state"] == "Active with no standby",
        SETTLE,
        "the active to declare the standby not present",
    )
    st = status(lab, active)
    assert st["other_sup_rdn_state"] == "Not present"
    assert st["rdn_mode_oper"] == "None"
    rows = vsm_rows(lab, active)
    assert len(rows) == 1 and str(rows[0]["status"]).startswith("active"), rows

    # The standby stays standby and shows the inconsistency.
    wait_for(
        lambda: (
            status(lab, standby)["this_sup_internal_state"] == "Inconsistent: peer believes standby"
        ),
        SETTLE,
        "the standby to show the inconsistent redundancy state",
    )
    st = status(lab, standby)
    assert st["this_sup_rdn_state"] == "Standby"
    assert st["other_sup_rdn_state"] == "Active"
    assert st["other_sup_internal_state"] == "Active with no standby"
    time.sleep(LOSS * 3)  # long enough for a false takeover to show
    assert status(lab, standby)["this_sup_rdn_state"] == "Standby"
    assert not any("became active" in e for e in trace_events(lab, standby))
    assert reload_count(lab, standby) == 0

    # A change made while the standby cannot acknowledge it.
    configure(lab, active, "vlan 77")

    lab.heal("control", to_active)
    lab.heal("mgmt", to_active)
    # The standby asks to be reset, the active orders it, the standby reloads.
    wait_for(
        lambda: reload_count(lab, standby) >= 1,
        SETTLE,
        "the standby to reload",
    )
    wait_for(
        lambda: status(lab, active)["this_sup_internal_state"] == "Active with HA standby",
        SETTLE * 2,
        "the pair to be 'Active with HA standby' again",
    )
    events = trace_events(lab, active)
    asked = [i for i, e in enumerate(events) if "asked to be reset" in e]
    assert asked, events
    # The standby learns "hot" from its own end of the stream, a moment later.
    wait_for(
        lambda: status(lab, standby)["this_sup_internal_state"] == "HA standby",
        SETTLE,
        "the standby to be 'HA standby'",
    )
    reloads = [e for e in trace_events(lab, standby) if e.startswith("reload: ")]
    assert reloads == ["reload: reset ordered by the active"], reloads
    wait_for(lambda: digest(lab, standby) == digest(lab, active), SETTLE, "stores to be equal")
    assert len(vsm_rows(lab, active)) == 2
    time.sleep(LOSS * 3)
    assert reload_count(lab, standby) == 1
    assert reload_count(lab, active) == 0
    assert lab.active() == active


def test_active_to_standby_loss_is_total_loss(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True)
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    # The direction from the active to the standby.
    to_standby = "p->s" if active == "primary" else "s->p"
    lab.cut("control", to_standby)
    lab.cut("mgmt", to_standby)
    # The standby hears no requests: it becomes active (split-brain).
    wait_for(
        lambda: status(lab, standby)["this_sup_rdn_state"] == "Active",
        SETTLE,
        "the standby to take over",
    )
    wait_for(
        lambda: status(lab, active)["this_sup_internal_state"] == "Active with no standby",
        SETTLE,
        "the active to lose its standby",
    )
    assert status(lab, active)["this_sup_rdn_state"] == "Active"
    time.sleep(LOSS)
    lab.heal("control", to_standby)
    lab.heal("mgmt", to_standby)

    # Resolution: nothing differs but the last standby->active switch, so the
    # first active (active longer) stays and the other reloads into standby.
    def resolved() -> bool:
        a, s = lab.status(active), lab.status(standby)
        return bool(
            a
            and s
            and a["this_sup_internal_state"] == "Active with HA standby"
            and s["this_sup_rdn_state"] == "Standby"
        )

    wait_for(resolved, SETTLE * 2, "the split-brain to be resolved")
    time.sleep(LOSS * 3)
    assert reload_count(lab, active) == 0
    assert reload_count(lab, standby) == 1
    assert any("split-brain resolution" in e for e in trace_events(lab, standby))
    wait_for(lambda: digest(lab, active) == digest(lab, standby), SETTLE, "stores to be equal")
