"""The VSM pair as real processes on loopback (issue: VSM pair).

Fast timer profile (100 ms heartbeats, 600 ms loss interval) to keep the
suite short; the seed defaults are exercised on virtual time in unit tests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

LOSS = 0.6
SETTLE = 8.0  # generous deadline for a loaded machine; order matters, not speed


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def _reports(lab: Lab, name: str, want: str) -> Callable[[], bool]:
    def check() -> bool:
        return (lab.status(name) or {}).get("this_sup_internal_state") == want

    return check


def trace_events(lab: Lab, node: str) -> list[str]:
    data = lab.cli_json(node, "show system internal redundancy trace")
    return [r["event"] for r in data["TABLE_trace"]["ROW_trace"]]


def test_pair_kill_active_restart_switchover(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    # The primary wins the boot-time negotiation when both start together.
    standby = other(active)
    st = lab.status(standby)
    assert st is not None
    assert st["this_sup_rdn_state"] == "Standby"
    assert st["this_sup_internal_state"] == "HA standby"
    assert lab.status(active)["rdn_mode_oper"] == "HA"  # type: ignore[index]
    epoch_before = lab.status(active)["epoch"]  # type: ignore[index]

    # kill -9 the active's whole process tree: the standby takes over.
    lab.kill_node(active)
    wait_for(
        lambda: (lab.status(standby) or {}).get("this_sup_rdn_state") == "Active",
        SETTLE,
        "the standby to become active",
    )
    st = lab.status(standby)
    assert st is not None
    assert st["this_sup_internal_state"] == "Active with no standby"
    assert st["rdn_mode_oper"] == "None"
    assert st["other_sup_rdn_state"] == "Not present"
    assert st["epoch"] > epoch_before

    # The killed node comes back as standby (never a second active).
    lab.start_node(active)
    assert lab.wait_pair() == standby
    st = lab.status(active)
    assert st is not None and st["this_sup_rdn_state"] == "Standby"

    # Controlled switchover: roles swap, the old active reloads into standby.
    res = lab.cli(standby, "system switchover")
    assert not res["error"], res["output"]
    wait_for(lambda: lab.active() == active, SETTLE, "the switchover")
    assert lab.wait_pair() == active
    assert any("switchover" in e for e in trace_events(lab, active))


def test_switchover_refused_without_standby(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    lab.kill_node(other(active))
    wait_for(
        lambda: (lab.status(active) or {}).get("other_sup_rdn_state") == "Not present",
        SETTLE,
        "the active to lose its standby",
    )
    res = lab.cli(active, "system switchover")
    assert res["error"]
    assert lab.active() == active


def test_hamgr_crash_is_a_stateful_restart(make_lab: Callable[..., Lab]) -> None:
    # 100 ms heartbeats; the loss interval leaves room for a Python process to
    # start on a busy 2-core machine (~1 s), which the restart has to beat.
    lab = make_lab(timers="fast", rest=False, timer_overrides={"max_loss_interval_ms": 3000})
    active = lab.start()
    standby = other(active)
    for node in (active, standby):
        services = lab.cli_json(node, "show system internal sysmgr services")
        rows = {r["name"]: r for r in services["TABLE_service"]["ROW_service"]}
        pid = rows["hamgr"]["pid"]
        os.kill(pid, signal.SIGKILL)

        def restarted(node: str = node, pid: int = pid) -> bool:
            services = lab.cli_json(node, "show system internal sysmgr services")
            row = {r["name"]: r for r in services["TABLE_service"]["ROW_service"]}["hamgr"]
            return bool(row["pid"] and row["pid"] != pid and row["restarts"] >= 1)

        wait_for(restarted, SETTLE, f"sysmgr to restart hamgr on {node}")
        time.sleep(3.5)  # longer than the loss interval: a false failover would show
        for name, want in ((active, "Active with HA standby"), (standby, "HA standby")):
            wait_for(_reports(lab, name, want), SETTLE, f"{name} to report {want!r}")
    assert not any("became active" in e for e in trace_events(lab, standby))


def test_control_loss_is_degraded_both_is_failover(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True)
    active = lab.start()
    standby = other(active)
    lab.cut("control")
    wait_for(
        lambda: any("degraded" in e.lower() for e in trace_events(lab, active)),
        SETTLE,
        "degraded mode to be traced",
    )
    time.sleep(LOSS * 3)
    assert lab.active() == active
    assert lab.status(standby)["this_sup_rdn_state"] == "Standby"  # type: ignore[index]
    lab.heal("control")
    wait_for(
        lambda: any("restored" in e.lower() for e in trace_events(lab, active)),
        SETTLE,
        "the control interface to be restored",
    )
    assert lab.status(standby)["this_sup_rdn_state"] == "Standby"  # type: ignore[index]

    # Both interfaces down: the standby takes over (split-brain by design).
    lab.cut("control")
    lab.cut("mgmt")
    wait_for(
        lambda: (lab.status(standby) or {}).get("this_sup_rdn_state") == "Active",
        SETTLE,
        "the standby to take over after losing both interfaces",
    )
