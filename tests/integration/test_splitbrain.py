"""Split-brain resolution with real processes on loopback (seed: "Loss of
Communication", "Split-Brain Resolution", "Checking the Accounting Logs and
the Redundancy Traces"; DESIGN §3).

Both interfaces between the VSMs are cut through the fault proxy until both
are active; each side is configured from its CLI and gets its own VEMs (each
VEM reaches the VSMs through its own proxy links, so a test can cut it off
one side). On heal the seed's rules choose the VSM that reloads: module count
first, then the last configuration time, then the last standby->active
switch. Deadlines are generous (shared CPU); the tests assert outcomes and
order, never speed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest

from openvsm.lab.common import LabError, ipc_call, wait_for
from openvsm.lab.lab import Lab, VemHandle

pytestmark = pytest.mark.integration

LOSS = 0.6
SETTLE = 20.0
BOTH = ("primary", "secondary")
AA_SHOW = "show system internal active-active"


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def rdn_state(lab: Lab, node: str) -> str | None:
    st = lab.status(node)
    return None if st is None else str(st.get("this_sup_rdn_state"))


def trace_events(lab: Lab, node: str) -> list[str]:
    data = lab.cli_json(node, "show system internal redundancy trace")
    return [str(r["event"]) for r in data["TABLE_trace"]["ROW_trace"]]


def vem_rows(lab: Lab, node: str) -> dict[str, dict[str, Any]]:
    """VEM rows of ``show module`` with status ok, by server name."""
    data = lab.cli_json(node, "show module")
    names = {
        r.get("modsrv"): r.get("srvname")
        for r in data.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])
    }
    out: dict[str, dict[str, Any]] = {}
    for r in data.get("TABLE_modinfo", {}).get("ROW_modinfo", []):
        if r.get("modtype") == "Virtual Ethernet Module" and r.get("status") == "ok":
            out[str(names.get(r.get("modinf"), r.get("modinf")))] = r
    return out


def vem_state(vem: VemHandle) -> dict[str, Any]:
    st: dict[str, Any] = ipc_call(vem.rundir / "vem.sock", "status", timeout=5.0)
    return st


def attached_exactly(lab: Lab, node: str, hosts: set[str]) -> bool:
    return set(vem_rows(lab, node)) == hosts


def vem_attached_to(vem: VemHandle, addr: str) -> bool:
    return vem_state(vem).get("active") == addr


def vlans(lab: Lab, node: str) -> set[str]:
    data: dict[str, Any] = ipc_call(lab.rundir(node) / "cfgmgr.sock", "list", kind="vlan")
    return set(data)


def digest(lab: Lab, node: str) -> str:
    data: dict[str, Any] = ipc_call(lab.rundir(node) / "cfgmgr.sock", "snapshot_digest")
    return str(data["digest"])


def configure(lab: Lab, node: str, *lines: str) -> None:
    for line in ("configure terminal", *lines, "end"):
        res = lab.cli(node, line)
        assert not res.get("error"), f"{node}: {line}: {res.get('output')}"


def reload_count(lab: Lab, node: str) -> int:
    return sum(1 for e in trace_events(lab, node) if e.startswith("reload: "))


def partition(lab: Lab) -> None:
    """Cut both interfaces and wait until both VSMs are active (split-brain)."""
    lab.cut("control")
    lab.cut("mgmt")
    wait_for(
        lambda: all(rdn_state(lab, n) == "Active" for n in BOTH),
        SETTLE,
        "both VSMs to be active (split-brain)",
    )
    # Each active has removed the other from its module list.
    for node in BOTH:
        st = lab.status(node)
        assert st is not None
        assert st["this_sup_internal_state"] == "Active with no standby"
        assert st["other_sup_rdn_state"] == "Not present"


def heal(lab: Lab) -> None:
    lab.heal("control")
    lab.heal("mgmt")
    for vem in lab.proxied_vems:
        for node in BOTH:
            lab.heal_vem(vem, node)


def wait_resolved(lab: Lab, winner: str) -> None:
    loser = other(winner)

    def resolved() -> bool:
        st_w, st_l = lab.status(winner), lab.status(loser)
        return bool(
            st_w
            and st_l
            and st_w["this_sup_internal_state"] == "Active with HA standby"
            and st_l["this_sup_rdn_state"] == "Standby"
        )

    wait_for(resolved, SETTLE * 2, f"the {winner} to stay active with the {loser} as HA standby")


def test_split_brain_module_count_decides(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True, vem_proxy=3)
    first = lab.start()  # active since boot (usually the primary)
    second = other(first)  # becomes active during the split
    partition(lab)

    # One VEM reaches only the first active, two only the second.
    on_first, on_second = lab.proxied_vems[:1], lab.proxied_vems[1:]
    for vem in on_first:
        lab.cut_vem(vem, second)
    for vem in on_second:
        lab.cut_vem(vem, first)
    lab.launch_vems(lab.proxied_vems)
    for node, vems in ((first, on_first), (second, on_second)):
        hosts = {v.host for v in vems}
        wait_for(
            functools.partial(attached_exactly, lab, node, hosts),
            SETTLE,
            f"{sorted(hosts)} to attach to the {node} only",
        )

    # Configuration on both sides; the first active's is the later one and it
    # has been active longer, so only the module count can make the second win.
    configure(lab, second, "vlan 402")
    configure(lab, first, "vlan 301", "vlan 302")
    assert {"301", "302"} <= vlans(lab, first)
    assert "402" in vlans(lab, second)
    reloads_before = {n: reload_count(lab, n) for n in BOTH}
    time.sleep(LOSS)

    heal(lab)
    winner, loser = second, first
    counts = {first: 1, second: 2}
    why = f"module count primary {counts['primary']}, secondary {counts['secondary']}"
    wait_resolved(lab, winner)
    assert lab.active() == winner

    # The decision and its reason, identical on both sides.
    for node in BOTH:
        decisions = [e for e in trace_events(lab, node) if "split-brain resolution:" in e]
        assert decisions, node
        assert all(why in e for e in decisions), decisions

    # Every VEM ends on the winner; the loser (standby) serves none.
    hosts = {v.host for v in lab.proxied_vems}
    wait_for(lambda: set(vem_rows(lab, winner)) == hosts, SETTLE, "all VEMs on the winner")
    for vem in lab.proxied_vems:
        want = "{}:{}".format(*vem.via[winner])
        wait_for(
            functools.partial(vem_attached_to, vem, want),
            SETTLE,
            f"{vem.host} to be attached to the {winner}",
        )

    # The loser's split-time changes are gone; the winner's stay; stores equal.
    wait_for(lambda: digest(lab, loser) == digest(lab, winner), SETTLE, "stores to converge")
    for node in BOTH:
        have = vlans(lab, node)
        assert "402" in have and not {"301", "302"} & have, (node, have)

    # Exactly one reload, of the loser; the winner never reloaded. The
    # returning loser does not trigger a second resolution.
    time.sleep(LOSS * 5)
    assert reload_count(lab, winner) == reloads_before[winner]
    assert reload_count(lab, loser) == reloads_before[loser] + 1
    boots = [e for e in trace_events(lab, loser) if e.startswith("boot:")]
    assert sum("after reload" in b and "split-brain" in b for b in boots) == 1, boots
    assert rdn_state(lab, loser) == "Standby"
    assert lab.active() == winner

    # The loser's logs: remote copies on the winner, local copies on the loser
    # (they survived its reload).
    for node, kind in ((winner, "remote "), (loser, "")):
        acct = lab.cli(node, f"{AA_SHOW} {kind}accounting logs")["output"]
        assert "saved at" in acct, (node, acct)
        assert "vlan 301" in acct and "vlan 302" in acct, acct
        discarded = acct.split("Discarded changes", 1)
        assert len(discarded) == 2, acct
        assert "vlan 301" in discarded[1] and "DISCARDED" in discarded[1]
        assert "vlan 402" not in acct  # the winner's change is not the loser's log
        traces = lab.cli(node, f"{AA_SHOW} {kind}redundancy traces")["output"]
        assert f"split-brain resolution: this {loser} reloads" in traces, traces
        data = lab.cli_json(node, f"{AA_SHOW} {kind}accounting logs")
        disc = data.get("discarded") or data.get("TABLE_discarded", {}).get("ROW_acct", [])
        assert any(r["command"].endswith("vlan 302") for r in disc), disc
    # The winner keeps a local copy of its own log too; it discarded nothing.
    acct = lab.cli(winner, f"{AA_SHOW} accounting logs")["output"]
    assert "saved at" in acct and "Discarded changes" not in acct, acct
    # The winner stored the loser's logs once.
    stored = [e for e in trace_events(lab, winner) if "stored the remote accounting log" in e]
    assert len(stored) == 1, stored

    # The four clear commands each clear exactly their own store.
    def saved(node: str, what: str) -> bool:
        return "saved at" in lab.cli(node, f"{AA_SHOW} {what}")["output"]

    stores = ("accounting logs", "redundancy traces")
    assert saved(winner, "remote accounting logs") and saved(winner, "remote redundancy traces")
    for what in ("remote accounting logs", "remote redundancy traces"):
        res = lab.cli(winner, f"clear active-active {what}")
        assert not res.get("error"), res
        assert not saved(winner, what)
    assert not saved(winner, "remote accounting logs")
    for what in stores:
        assert saved(loser, what)
    res = lab.cli(loser, "clear active-active accounting logs")
    assert not res.get("error"), res
    assert not saved(loser, "accounting logs") and saved(loser, "redundancy traces")
    res = lab.cli(loser, "clear active-active redundancy traces")
    assert not res.get("error"), res
    assert not saved(loser, "redundancy traces")
    out = lab.cli(loser, f"{AA_SHOW} accounting logs")["output"]
    assert out.startswith("No accounting logs saved")


def test_split_brain_tie_last_configuration_time_decides(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False, proxy=True)
    first = lab.start()
    second = other(first)
    partition(lab)
    # Equal module counts (none); the second active configures last. Without
    # rule 2 the first would win (rule 3: it has been active longer).
    configure(lab, first, "vlan 501")
    time.sleep(0.05)
    configure(lab, second, "vlan 601")
    time.sleep(LOSS)
    heal(lab)
    wait_resolved(lab, second)
    for node in BOTH:
        decisions = [e for e in trace_events(lab, node) if "split-brain resolution:" in e]
        assert decisions and all("last configuration time" in e for e in decisions), decisions
    wait_for(lambda: digest(lab, first) == digest(lab, second), SETTLE, "stores to converge")
    assert "601" in vlans(lab, first) and "501" not in vlans(lab, first)
    assert reload_count(lab, second) == 0
    assert reload_count(lab, first) == 1


def test_split_brain_all_equal_longer_active_wins(make_lab: Callable[..., Lab]) -> None:
    """No modules, no configuration during the split: the VSM active for longer
    (active since boot) stays; the one that took over during the split reloads."""
    lab = make_lab(timers="fast", rest=False, proxy=True)
    first = lab.start()
    second = other(first)
    partition(lab)
    time.sleep(LOSS)
    heal(lab)
    wait_resolved(lab, first)
    decisions = [e for e in trace_events(lab, first) if "split-brain resolution:" in e]
    assert decisions and all("last standby->active switch" in e for e in decisions), decisions
    time.sleep(LOSS * 5)
    assert reload_count(lab, first) == 0
    assert reload_count(lab, second) == 1
    assert lab.active() == first


# A short profile inside the seed's range: 6 s loss interval (the seed allows
# 6-30 s), VEMs headless after the same 6 s (the seed's ~15 s is its default
# loss interval), 500 ms heartbeats. The heal comes ~2 s after the takeover:
# well inside the loss time, so a new active that counted the modules it
# inherited from the store as attached would still count them.
QUICK = {
    "heartbeat_interval_ms": 500,
    "max_loss_interval_ms": 6000,
    "discovery_window_ms": 1000,
    "vem_heartbeat_ms": 500,
    "vem_headless_ms": 6000,
}
QUICK_LOSS = QUICK["max_loss_interval_ms"] / 1000
HEAL_AFTER = 2.0


def vem_statuses(lab: Lab, node: str) -> dict[str, str]:
    """``show module | json`` on a node: VEM status by server name."""
    data = lab.cli_json(node, "show module")
    names = {r["modsrv"]: r["srvname"] for r in data["TABLE_modsrvinfo"]["ROW_modsrvinfo"]}
    return {
        str(names.get(r["modinf"], r["modinf"])): str(r["status"])
        for r in data["TABLE_modinfo"]["ROW_modinfo"]
        if r["modtype"] == "Virtual Ethernet Module"
    }


def all_status(lab: Lab, node: str, hosts: set[str], status: str) -> bool:
    return vem_statuses(lab, node) == dict.fromkeys(hosts, status)


def explain(lab: Lab) -> str:
    """Both nodes' redundancy state, VEM rows and last trace events (for a timeout)."""
    out = []
    for node in BOTH:
        try:
            st = lab.status(node) or {}
            events = trace_events(lab, node)[-12:]
            out.append(
                f"{node}: {st.get('this_sup_internal_state')} / {st.get('other_sup_rdn_state')}; "
                f"modules {vem_statuses(lab, node)}; trace: " + " | ".join(events)
            )
        except (LabError, OSError, KeyError, ValueError) as exc:
            out.append(f"{node}: unreachable ({exc})")
    for vem in lab.proxied_vems:
        try:
            st = vem_state(vem)
            out.append(f"{vem.host}: {st['state']} on {st['active']} epoch {st['epoch']}")
        except (LabError, OSError, KeyError, ValueError) as exc:
            out.append(f"{vem.host}: unreachable ({exc})")
    return "\n".join(out)


def isolate(lab: Lab, node: str) -> None:
    """Cut ``node`` off its peer (both interfaces) and off every VEM."""
    for vem in lab.proxied_vems:
        lab.cut_vem(vem, node)
    lab.cut("control")
    lab.cut("mgmt")


@pytest.mark.parametrize("isolated", ["standby", "active"])
def test_quick_heal_the_vsm_with_the_vems_wins(make_lab: Callable[..., Lab], isolated: str) -> None:
    """Issue 11: one VSM is isolated from its peer and from every VEM; the
    standby takes over; the isolated VSM gets a configuration change (so rule 2
    favours it); the pair heals ~2 s after the takeover. The VSM that kept the
    VEMs must win on module count and stay active; only the isolated one
    reloads. ``isolated="standby"``: the secondary takes over with the store's
    modules, which must be powered-up there, not ok. ``isolated="active"``:
    the mirror case, the primary is cut off and the secondary gets the VEMs."""
    lab = make_lab(timers="default", timer_overrides=QUICK, rest=False, proxy=True, vem_proxy=3)
    first = lab.start()  # active since boot (usually the primary)
    lab.launch_vems(lab.proxied_vems)
    hosts = {v.host for v in lab.proxied_vems}
    wait_for(lambda: all_status(lab, first, hosts, "ok"), SETTLE, "the VEMs to attach")
    # The standby mirrors the active's view from the replicated store.
    wait_for(lambda: all_status(lab, other(first), hosts, "ok"), SETTLE, "the standby's view")
    iso = other(first) if isolated == "standby" else first
    keeper = other(iso)
    reloads_before = {n: reload_count(lab, n) for n in BOTH}

    isolate(lab, iso)
    try:
        quick_heal_split(lab, iso, keeper, hosts, isolated)
    except (LabError, AssertionError) as exc:
        raise AssertionError(f"{exc}\n{explain(lab)}") from None
    assert reload_count(lab, keeper) == reloads_before[keeper]
    assert reload_count(lab, iso) == reloads_before[iso] + 1
    # Every VEM on the winner, and the loser, now its standby, mirrors that view.
    for node in (keeper, iso):
        wait_for(functools.partial(all_status, lab, node, hosts, "ok"), SETTLE, f"{node}: all ok")
    for vem in lab.proxied_vems:
        assert vem_attached_to(vem, "{}:{}".format(*vem.via[keeper])), vem.host
    if isolated == "standby":
        assert all(vem_state(v)["counters"]["switches"] == 0 for v in lab.proxied_vems)
    # The loser's configuration change was discarded; the winner stays active.
    wait_for(lambda: digest(lab, iso) == digest(lab, keeper), SETTLE, "stores to converge")
    assert "777" not in vlans(lab, keeper) and "777" not in vlans(lab, iso)
    assert (lab.status(keeper) or {}).get("this_sup_internal_state") == "Active with HA standby"
    assert reload_count(lab, keeper) == reloads_before[keeper]


def quick_heal_split(lab: Lab, iso: str, keeper: str, hosts: set[str], isolated: str) -> None:
    """From the isolation to the resolution: takeover, a configuration change on
    the isolated VSM, heal ~2 s after the takeover, the keeper wins."""
    wait_for(
        lambda: all(rdn_state(lab, n) == "Active" for n in BOTH),
        SETTLE,
        "both VSMs to be active (split-brain)",
    )
    took_over = time.monotonic()
    if isolated == "standby":
        # The new active heard no VEM: its inherited modules are not attached to it.
        assert all_status(lab, iso, hosts, "powered-up"), vem_statuses(lab, iso)
        neighbors = lab.cli_json(iso, "show svs neighbors")["TABLE_neighbor"]["ROW_neighbor"]
        assert neighbors == [], neighbors
    else:
        # The VEMs lost the primary: the secondary's switch request brought them.
        wait_for(lambda: all_status(lab, keeper, hosts, "ok"), SETTLE, "the VEMs to switch")
    configure(lab, iso, "vlan 777")
    time.sleep(max(0.0, took_over + HEAL_AFTER - time.monotonic()))
    heal(lab)
    healed_after = time.monotonic() - took_over
    if isolated == "standby":
        # Otherwise the inherited modules would have dropped to offline anyway
        # and the run would not test the rule.
        assert healed_after < QUICK_LOSS, f"healed {healed_after:.1f} s after the takeover"
        assert all_status(lab, iso, hosts, "powered-up"), vem_statuses(lab, iso)

    wait_resolved(lab, keeper)
    counts = {keeper: 3, iso: 0}
    why = f"module count primary {counts['primary']}, secondary {counts['secondary']}"
    for node in BOTH:
        decisions = [e for e in trace_events(lab, node) if "split-brain resolution:" in e]
        assert decisions and all(why in e for e in decisions), decisions
