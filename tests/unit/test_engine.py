"""Redundancy engine: boot, heartbeats, degraded mode, loss (virtual time)."""

from __future__ import annotations

import pytest

from openvsm.config import Timers
from openvsm.errors import ImpossibleTransition, LocalProtocolError, OperatorRefused, ProtocolError
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    Discovery,
    Flag,
    HeartbeatRequest,
    HeartbeatResponse,
    LivenessProbe,
    SenderRole,
)

from .enginesim import MACS, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
FAST = Timers(0.1, 0.6, 0.5)
P, S = "primary", "secondary"


def alone(timers: Timers = DEFAULT, role: str = P, epoch: int = 0) -> eng.Engine:
    return eng.Engine(
        eng.EngineConfig(role=role, system_mac=MACS[role], timers=timers, boot_id=7),
        eng.PersistedFacts(epoch=epoch),
    )


def frame(msg: object, role: str = S, epoch: int = 1, seq: int = 1) -> Frame:
    return Frame(
        role=SenderRole.PRIMARY if role == P else SenderRole.SECONDARY,
        mac=MACS[role],
        epoch=epoch,
        seq=seq,
        msg=msg,  # type: ignore[arg-type]
    )


def paired(timers: Timers = DEFAULT) -> SimNet:
    net = SimNet(timers)
    net.start_all()
    net.run_until(timers.discovery_window * 2)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(S).state is HaState.STANDBY
    return net


def sends(effects: list[eng.Effect]) -> list[tuple[Iface, str]]:
    return [(e.iface, type(e.msg).__name__) for e in effects if isinstance(e, eng.Send)]


# ---- boot / discovery ------------------------------------------------------


def test_boot_alone_broadcasts_discovery_then_becomes_active_at_window_end() -> None:
    e = alone(epoch=3)
    out = e.start(0.0)
    disc = Discovery(state="initializing", boot_id=7)
    assert out[1:] == [
        eng.Send(Iface.CONTROL, disc, broadcast=True),
        eng.Send(Iface.MGMT, disc, broadcast=True),
    ]
    for t in (1.0, 2.0, 3.0, 4.0):
        assert e.next_deadline() == t
        assert sends(e.tick(t)) == [(Iface.CONTROL, "Discovery"), (Iface.MGMT, "Discovery")]
    assert e.next_deadline() == 5.0
    assert e.tick(4.999) == []
    out = e.tick(5.0)
    reason = "no active supervisor found during discovery"
    assert out[:4] == [
        eng.Trace(f"redundancy state initializing -> active: {reason}"),
        eng.PersistFacts(eng.PersistedFacts(epoch=4)),
        eng.BecomeActive(4, reason),
        eng.StatusChanged(),
    ]
    flags = int(Flag.OUT_OF_SYNC)
    req = HeartbeatRequest(state="active", flags=flags, change_seq=0, boot_id=7)
    assert out[4:] == [eng.Send(Iface.CONTROL, req), eng.Send(Iface.MGMT, req)]
    assert e.state is HaState.ACTIVE and e.epoch == 4
    st = e.status(5.0)
    assert (st.this_internal_state, st.other_rdn_state, st.mode_oper) == (
        "Active with no standby",
        "Not present",
        "None",
    )


def test_booting_vsm_that_hears_an_active_becomes_standby() -> None:
    net = SimNet(DEFAULT)
    net.start(P)
    net.run_until(6.0)
    assert net.engine(P).state is HaState.ACTIVE
    net.start(S)
    net.run_until(6.0)
    sec = net.node(S)
    assert net.engine(S).state is HaState.STANDBY
    assert net.engine(S).epoch == net.engine(P).epoch == 1
    assert eng.BecomeStandby(MACS[P]) in sec.effects()
    assert not sec.of(eng.BecomeActive)
    # the active answered the initializing peer's discovery and heartbeats it
    kinds = [
        (src, type(m).__name__, m.state) for _, src, _, _, m in net.delivered if hasattr(m, "state")
    ]
    assert (P, "Discovery", "active") in kinds
    net.run_until(8.0)
    assert net.engine(P).status(8.0).this_internal_state == "Active with HA standby"
    assert net.engine(S).status(8.0).this_internal_state == "HA standby"


@pytest.mark.parametrize("first", [P, S])
def test_both_initializing_primary_wins(first: str) -> None:
    net = SimNet(DEFAULT)
    net.start(first)
    net.run_until(0.5)
    net.start(S if first == P else P)
    net.run_until(20.0)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(S).state is HaState.STANDBY
    assert not net.node(S).of(eng.BecomeActive)
    assert not any("split-brain" in t for t in net.node(P).traces())


def test_active_answers_discovery_of_initializing_peer() -> None:
    e = alone()
    e.start(0.0)
    e.tick(5.0)
    out = e.on_frame(frame(Discovery(state="initializing", boot_id=9), epoch=0), Iface.MGMT, 5.2)
    assert out[-2:] == [
        eng.Send(Iface.MGMT, Discovery(state="active", boot_id=7, reply=True)),
        eng.Send(
            Iface.MGMT,
            HeartbeatRequest(state="active", flags=int(Flag.OUT_OF_SYNC), boot_id=7, peer_boot=9),
        ),
    ]


def test_standby_answers_restarted_active_as_standby_so_it_resumes() -> None:
    """hamgr restart on the active node: no failover, the node resumes as active."""
    net = paired()
    net.restart(P)  # new boot id, persisted epoch
    net.run_until(net.now + 3.0)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(S).state is HaState.STANDBY
    assert not net.node(S).of(eng.BecomeActive)
    assert net.engine(S).epoch == net.engine(P).epoch == 2


# ---- heartbeats -------------------------------------------------------------


def test_heartbeat_unicast_on_control_and_standby_answers_only_requests() -> None:
    net = paired()
    t0 = net.now
    net.delivered.clear()
    net.run_until(t0 + 5.0)
    reqs = [(t, i) for t, src, _, i, m in net.delivered if isinstance(m, HeartbeatRequest)]
    resps = [(t, i) for t, src, _, i, m in net.delivered if isinstance(m, HeartbeatResponse)]
    assert reqs == [(t0 + k, Iface.CONTROL) for k in range(1, 6)]
    assert resps == reqs  # one answer per request, same iface, same instant
    senders = {(src, type(m).__name__) for _, src, _, _, m in net.delivered}
    assert senders == {(P, "HeartbeatRequest"), (S, "HeartbeatResponse")}
    # the standby answers on the iface the request came in on
    out = net.inject(S, frame(HeartbeatRequest(state="active", boot_id=1000), role=P), Iface.MGMT)
    assert sends(out) == [(Iface.MGMT, "HeartbeatResponse")]
    c = net.engine(P).counters()["control"]
    assert c["hb_req_sent"] == c["hb_resp_recv"] >= 15 and c["hb_missed"] == 0


def test_request_carries_state_flags_and_change_seq() -> None:
    net = paired()
    net.engine(P).set_local_facts(module_count=3, last_config_time=1.0, change_seq=42)
    net.delivered.clear()
    net.run_for(1.0)
    (msg,) = [m for *_, m in net.delivered if isinstance(m, HeartbeatRequest)]
    assert msg == HeartbeatRequest(
        state="active", flags=0, change_seq=42, boot_id=1000, peer_boot=1001
    )


# ---- degraded and loss ------------------------------------------------------


@pytest.mark.parametrize(
    "timers",
    [Timers(1.0, 6.0, 5.0), DEFAULT, Timers(1.0, 30.0, 5.0), FAST],
    ids=["6s", "15s", "30s", "fast"],
)
def test_degraded_at_exactly_half_the_loss_interval(timers: Timers) -> None:
    net = paired(timers)
    last = net.now - (net.now % timers.heartbeat_interval)
    net.run_until(last + timers.heartbeat_interval / 2)
    last_resp = max(t for t, src, _, i, m in net.delivered if isinstance(m, HeartbeatResponse))
    net.cut(Iface.CONTROL)
    due = last_resp + timers.degraded_after
    net.run_until(due - 1e-6)
    act = net.engine(P)
    assert not act.status(net.now).degraded
    assert not any("degraded" in t for t in net.node(P).traces())
    net.run_until(due)
    assert act.status(net.now).degraded
    trace = f"degraded: no heartbeat response on control for {timers.degraded_after:g} s"
    assert [t for t, e in net.node(P).of(eng.Trace) if e.text.startswith(trace)] == [due]
    # mgmt answers: degraded mode with mgmt up; no failover on either side
    assert act.status(net.now).this_internal_state == "Degraded: control down, mgmt up"
    net.run_for(timers.max_loss_interval * 3)
    assert act.state is HaState.ACTIVE and act.status(net.now).peer_present
    sb = net.engine(S).status(net.now)
    assert (
        sb.state is HaState.STANDBY and sb.this_internal_state == "Degraded: control down, mgmt up"
    )
    # control comes back: restored, traced, requests on control only again
    net.heal(Iface.CONTROL)
    net.run_for(timers.heartbeat_interval * 2)
    assert not act.status(net.now).degraded
    assert any("control interface restored" in t for t in net.node(P).traces())
    net.delivered.clear()
    net.run_for(timers.heartbeat_interval * 3)
    ifaces = {i for _, src, _, i, m in net.delivered if src == P}
    assert ifaces == {Iface.CONTROL}
    assert net.engine(S).status(net.now).this_internal_state == "HA standby"


@pytest.mark.parametrize(
    "timers",
    [Timers(1.0, 6.0, 5.0), DEFAULT, Timers(1.0, 30.0, 5.0), FAST],
    ids=["6s", "15s", "30s", "fast"],
)
def test_loss_on_both_interfaces(timers: Timers) -> None:
    net = paired(timers)
    net.run_for(timers.heartbeat_interval / 2)
    last = max(t for t, *_ in net.delivered)
    net.cut(Iface.CONTROL)
    net.cut(Iface.MGMT)
    due = last + timers.max_loss_interval
    net.run_until(due - 1e-6)
    assert net.engine(P).status(net.now).peer_present
    assert net.engine(S).state is HaState.STANDBY
    net.run_until(due)
    act, sb = net.node(P), net.node(S)
    loss = f"no heartbeat response on control or mgmt for {timers.max_loss_interval:g} s"
    assert [(t, e) for t, e in act.log if isinstance(e, eng.PeerLost)] == [
        (due, eng.PeerLost(loss))
    ]
    st = net.engine(P).status(net.now)
    assert (st.peer_present, st.this_internal_state, st.other_rdn_state, st.other_sup_state) == (
        False,
        "Active with no standby",
        "Not present",
        "Not present",
    )
    # the standby takes over at the same instant: epoch + 1, persisted first
    loss_s = timers.max_loss_interval
    reason = f"no heartbeat request from the active on control or mgmt for {loss_s:g} s"
    took = [e for t, e in sb.log if t == due and not isinstance(e, eng.Send)]
    assert took == [
        eng.Trace(f"redundancy state standby -> active: {reason}"),
        eng.PersistFacts(eng.PersistedFacts(2, dict(sb.facts.peer_macs), 0.0)),
        eng.BecomeActive(2, reason),
        eng.SwitchRequestNeeded(),
        eng.StatusChanged(),
    ]
    assert net.engine(S).state is HaState.ACTIVE and net.engine(S).epoch == 2
    # both keep probing the peer address on both interfaces
    net.delivered.clear()
    net.dropped.clear()
    net.run_for(timers.heartbeat_interval * 1.5)
    assert {(src, i) for _, src, _, i, _ in net.delivered} >= {
        (P, Iface.CONTROL),
        (P, Iface.MGMT),
        (S, Iface.CONTROL),
        (S, Iface.MGMT),
    }


def test_active_to_standby_one_way_loss_equals_total_loss() -> None:
    net = paired()
    net.cut(Iface.CONTROL, src=P)
    net.cut(Iface.MGMT, src=P)
    net.run_for(16.0)
    assert net.engine(S).state is HaState.ACTIVE  # the standby took over
    assert net.node(P).of(eng.PeerLost)  # the active lost it (no responses at all)


def test_standby_to_active_one_way_inconsistency_and_reset() -> None:
    net = paired()
    net.cut(Iface.CONTROL, src=S)
    net.cut(Iface.MGMT, src=S)
    net.run_for(16.0)
    act, sb = net.engine(P), net.engine(S)
    assert act.state is HaState.ACTIVE and sb.state is HaState.STANDBY
    ast, sst = act.status(net.now), sb.status(net.now)
    assert ast.this_internal_state == "Active with no standby"
    assert ast.other_rdn_state == "Not present"
    assert sst.inconsistent
    assert sst.this_internal_state == "Inconsistent: peer believes standby"
    assert sst.other_internal_state == "Active with no standby"
    assert sst.this_rdn_state == "Standby"
    # two-way resumes: the standby asks to be reset, the active orders it
    net.heal(Iface.CONTROL, src=S)
    net.run_for(1.0)
    asked = [
        m
        for _, src, _, _, m in net.delivered
        if src == S and isinstance(m, HeartbeatResponse) and m.flags & Flag.RESET_REQUESTED
    ]
    assert asked
    ordered = [
        m
        for _, src, _, _, m in net.delivered
        if src == P and isinstance(m, HeartbeatRequest) and m.flags & Flag.RESET_ORDERED
    ]
    assert len(ordered) == 1
    assert net.engine(S).state is HaState.RELOADING
    (reload,) = net.node(S).of(eng.Reload)
    assert reload[1] == eng.Reload("reset ordered by the active")
    assert act.state is HaState.ACTIVE


def test_reset_standby_comes_back_and_is_accepted() -> None:
    net = paired()
    net.auto_restart = True
    net.engine(P).mark_standby_out_of_sync(net.now)
    net.run_for(1.0)
    assert net.node(S).reloads == 1
    net.run_for(10.0)
    assert net.engine(S).state is HaState.STANDBY
    st = net.engine(P).status(net.now)
    assert st.this_internal_state == "Active with HA standby"
    assert len(net.node(P).of(eng.PeerUp)) == 2


def test_sync_overflow_orders_reset_when_standby_heard() -> None:
    net = paired()
    act = net.engine(P)
    out = act.mark_standby_out_of_sync(net.now)
    assert out[0] == eng.Trace(
        "sync buffer overflow: standby out of sync, its reset is ordered when heard"
    )
    t = net.now
    net.run_for(1.0)
    log = [e for tt, e in net.node(P).log if tt > t]
    last = log[-1]
    assert isinstance(last, eng.Send) and isinstance(last.msg, HeartbeatRequest)
    assert last.msg.flags & Flag.RESET_ORDERED
    assert eng.PeerLost("standby reset ordered: sync buffer overflow: it is out of sync") in log
    assert net.engine(S).state is HaState.RELOADING


def test_stale_epoch_requests_are_counted_and_ignored() -> None:
    net = paired()
    sb = net.engine(S)
    deadline = sb.next_deadline()
    req = HeartbeatRequest(state="active", boot_id=1000)
    net.run_for(0.5)
    out = net.inject(S, frame(req, role=P, epoch=0), Iface.CONTROL)
    assert out == []
    assert sb.counters()["control"]["drop_stale"] == 1
    assert sb.next_deadline() == deadline  # did not refresh the loss timer


def test_standby_follows_highest_epoch() -> None:
    net = paired()
    sb = net.engine(S)
    out = net.inject(
        S, frame(HeartbeatRequest(state="active", boot_id=1000), role=P, epoch=9), Iface.CONTROL
    )
    assert eng.PersistFacts(eng.PersistedFacts(9, dict(net.node(S).facts.peer_macs))) in out
    assert sb.epoch == 9
    out = net.inject(
        S, frame(HeartbeatRequest(state="active", boot_id=1000), role=P, epoch=8), Iface.CONTROL
    )
    assert out == [] and sb.counters()["control"]["drop_stale"] == 1


# ---- switchover and reload --------------------------------------------------


def test_switchover() -> None:
    net = paired()
    act = net.engine(P)
    t = net.now
    out = act.request_switchover(t)
    assert out[0] == eng.Trace(
        "switchover: switchover requested by operator; handing over to the standby"
    )
    req = HeartbeatRequest(state="active", flags=int(Flag.SWITCHOVER), boot_id=1000, peer_boot=1001)
    assert [e for e in out if isinstance(e, eng.Send)] == [eng.Send(Iface.CONTROL, req)]
    net.apply(P, out)
    net.run_for(0.0)
    sb = net.node(S)
    assert net.engine(S).state is HaState.ACTIVE and net.engine(S).epoch == 2
    assert eng.BecomeActive(2, "switchover requested by the active") in sb.effects()
    assert eng.SwitchRequestNeeded() in sb.effects()
    assert act.state is HaState.RELOADING
    assert net.node(P).of(eng.Reload)[0][1] == eng.Reload(
        "switchover complete: the secondary is active"
    )
    # the old active comes back as standby
    net.restart(P)
    net.run_for(6.0)
    assert net.engine(P).state is HaState.STANDBY
    assert net.engine(S).status(net.now).this_internal_state == "Active with HA standby"


def test_switchover_reloads_anyway_after_bound() -> None:
    net = paired()
    net.cut(Iface.CONTROL, src=P)  # the SWITCHOVER request never arrives
    act = net.engine(P)
    t = net.now
    net.apply(P, act.request_switchover(t))
    net.run_until(t + 15.0 - 1e-6)
    assert act.state is HaState.ACTIVE
    net.run_until(t + 15.0)
    assert net.engine(P).state is HaState.RELOADING


def test_switchover_refused_without_ha_standby() -> None:
    e = alone()
    with pytest.raises(OperatorRefused, match="not active"):
        e.request_switchover(0.0)
    e.start(0.0)
    e.tick(5.0)
    with pytest.raises(OperatorRefused, match="no standby"):
        e.request_switchover(5.0)
    net = paired()
    net.engine(P).set_sync_state("cold")
    assert net.engine(P).status(net.now).this_internal_state == "Active with warm standby"
    with pytest.raises(OperatorRefused, match="not in HA standby"):
        net.engine(P).request_switchover(net.now)
    with pytest.raises(OperatorRefused):
        net.engine(S).request_switchover(net.now)


def test_reload_of_active_with_ha_standby_fails_over_first() -> None:
    net = paired()
    net.apply(P, net.engine(P).request_reload(net.now))
    assert net.engine(P).state is HaState.ACTIVE  # handing over first
    net.run_for(0.0)
    assert net.engine(S).state is HaState.ACTIVE
    assert net.engine(P).state is HaState.RELOADING


def test_reload_without_standby_is_immediate() -> None:
    e = alone()
    e.start(0.0)
    e.tick(5.0)
    assert e.request_reload(6.0) == [
        eng.Trace("redundancy state active -> reloading: reload requested by operator"),
        eng.Reload("reload requested by operator"),
        eng.StatusChanged(),
    ]
    assert e.state is HaState.RELOADING and e.next_deadline() == float("inf")
    assert e.tick(100.0) == [] and e.request_reload(7.0) == []


def test_impossible_transition_raises() -> None:
    e = alone()
    e.start(0.0)
    e.tick(5.0)
    with pytest.raises(ImpossibleTransition, match="impossible transition active -> standby"):
        e._transition(HaState.STANDBY, "test")


# ---- crash fast path --------------------------------------------------------

PROBE_STEP = 0.05 / eng.PROBE_ROUNDS


def probe_rounds(net: SimNet, name: str, since: float) -> list[float]:
    """Times at which ``name`` sent a round of liveness probes (one per iface)."""
    return [
        t
        for t, e in net.node(name).log
        if t >= since
        and isinstance(e, eng.Send)
        and e.iface is Iface.CONTROL
        and isinstance(e.msg, LivenessProbe)
    ]


def active_request(net: SimNet) -> Frame:
    """A heartbeat request of the primary's current incarnation (as if still in flight)."""
    msg = HeartbeatRequest(state="active", flags=0, change_seq=0, boot_id=net.node(P).boot)
    return frame(msg, role=P, epoch=net.engine(P).epoch, seq=10_000)


def test_crash_fast_path_takes_over_within_probe_timeout() -> None:
    net = paired()
    net.kill(P)
    t = net.now
    out = net.engine(S).on_sync_reset(t, stream_hot=True)
    assert sends(out) == [(Iface.CONTROL, "LivenessProbe"), (Iface.MGMT, "LivenessProbe")]
    net.apply(S, out)
    net.run_until(t + 0.05 - 1e-6)
    assert net.engine(S).state is HaState.STANDBY
    net.run_until(t + 0.05)
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert became == (t + 0.05, eng.BecomeActive(2, became[1].reason))
    assert "did not answer liveness probes in 50 ms" in became[1].reason
    # A round every probe_timeout / PROBE_ROUNDS: a probe lost, or one that
    # reached a hamgr still exiting, is not the last word.
    rounds = probe_rounds(net, S, t)
    assert len(rounds) == eng.PROBE_ROUNDS
    assert rounds == pytest.approx([t + i * PROBE_STEP for i in range(eng.PROBE_ROUNDS)])


def test_crash_fast_path_no_takeover_when_hamgr_answers() -> None:
    # Only cfgmgr died on the active: its hamgr answers, nobody takes over
    # (a false fast takeover would be a split-brain).
    net = SimNet(DEFAULT, latency=0.012)  # acks after 24 ms: rounds go on until then
    net.start_all()
    net.run_until(DEFAULT.discovery_window * 2)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.run_for(1.0)
    assert net.engine(S).state is HaState.STANDBY
    assert net.engine(P).state is HaState.ACTIVE
    assert any("the active is alive (answered as active)" in x for x in net.node(S).traces())
    rounds = probe_rounds(net, S, t)
    assert len(rounds) == 5 and rounds[-1] < t + 0.024  # none after the first ack
    assert net.engine(P).counters()["control"]["probe_recv"] == 5


def test_crash_fast_path_not_taken_for_a_stream_that_never_was_hot() -> None:
    # A cold standby (bulk sync in progress) ignores the reset: it may be a
    # service restart on the active; only the heartbeat loss interval decides.
    net = paired()
    net.kill(P)
    t = net.now
    out = net.engine(S).on_sync_reset(t, stream_hot=False)
    assert sends(out) == []
    assert any("no fast takeover" in e.text for e in out if isinstance(e, eng.Trace))
    net.apply(S, out)
    net.run_until(t + 1.0)
    assert net.engine(S).state is HaState.STANDBY
    net.run_until(t + DEFAULT.max_loss_interval + DEFAULT.heartbeat_interval)
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert "no heartbeat request" in became[1].reason


def test_crash_fast_path_taken_when_cold_was_reported_before_the_reset() -> None:
    # Measured (bench/failover.py, 3 of 60 runs at the fast profile): cfgmgr's
    # receiver forgot the connection, its watcher told hamgr "cold", and the
    # reset arrived after it. The reset's own word (the stream was hot) decides.
    net = paired()
    net.kill(P)
    net.engine(S).set_sync_state("cold")
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.run_until(t + 0.05)
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert became[0] == t + 0.05 and "crash fast path" in became[1].reason


def test_crash_fast_path_a_request_sent_before_the_death_proves_nothing() -> None:
    # The active's last request may sit in the standby's socket and be read
    # after the reset: only an answer to a probe says the active lives.
    net = paired()
    net.kill(P)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.run_for(0.001)
    out = net.inject(S, active_request(net), Iface.CONTROL)
    assert sends(out) == [(Iface.CONTROL, "HeartbeatResponse")]
    net.run_until(t + 0.05)
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert became[0] == t + 0.05 and "crash fast path" in became[1].reason


def test_crash_fast_path_ports_closed_on_both_ifaces_takes_over_at_once() -> None:
    net = paired()
    net.kill(P)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.run_for(0.0004)
    out = net.engine(S).on_peer_unreachable(Iface.MGMT, net.now)
    assert out == [eng.Trace("crash fast path: the active's mgmt port is closed")]
    assert net.engine(S).on_peer_unreachable(Iface.MGMT, net.now) == []  # once per iface
    net.run_for(0.0004)
    net.apply(S, net.engine(S).on_peer_unreachable(Iface.CONTROL, net.now))
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert became[0] == pytest.approx(t + 0.0008)
    assert "reports its control and mgmt ports closed" in became[1].reason
    assert net.engine(S).next_deadline() > net.now  # no probe timer left behind
    assert probe_rounds(net, S, t + 1e-9) == []


def test_crash_fast_path_one_closed_port_is_not_enough() -> None:
    # A wrong mgmt address refuses every probe while the active lives: its ack
    # on control keeps the standby a standby.
    net = SimNet(DEFAULT, latency=0.003)
    net.start_all()
    net.run_until(DEFAULT.discovery_window * 2)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.apply(S, net.engine(S).on_peer_unreachable(Iface.MGMT, t))
    net.run_for(1.0)
    assert net.engine(S).state is HaState.STANDBY
    assert any("the active is alive" in x for x in net.node(S).traces())
    # and with the active dead, one closed port waits for the probe timeout
    net.kill(P)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.apply(S, net.engine(S).on_peer_unreachable(Iface.CONTROL, t))
    net.run_until(t + 0.05 - 1e-6)
    assert net.engine(S).state is HaState.STANDBY
    net.run_until(t + 0.05)
    assert net.engine(S).state is HaState.ACTIVE


def test_closed_ports_without_a_sync_reset_are_ignored() -> None:
    # The active's hamgr restarting alone (its ports closed for a moment, the
    # sync stream up) never starts a takeover.
    net = paired()
    for iface in (Iface.CONTROL, Iface.MGMT):
        assert net.engine(S).on_peer_unreachable(iface, net.now) == []
    net.run_for(1.0)
    assert net.engine(S).state is HaState.STANDBY


def test_crash_fast_path_after_an_answered_probe_starts_afresh() -> None:
    net = paired()
    net.apply(S, net.engine(S).on_sync_reset(net.now, stream_hot=True))
    net.run_for(0.2)
    assert net.engine(S).state is HaState.STANDBY
    # a port closed from the first episode's time does not count in the next
    assert net.engine(S).on_peer_unreachable(Iface.CONTROL, net.now) == []
    net.kill(P)
    t = net.now
    net.apply(S, net.engine(S).on_sync_reset(t, stream_hot=True))
    net.apply(S, net.engine(S).on_peer_unreachable(Iface.MGMT, t))
    assert net.engine(S).state is HaState.STANDBY
    net.apply(S, net.engine(S).on_peer_unreachable(Iface.CONTROL, t))
    assert net.engine(S).state is HaState.ACTIVE


def test_on_sync_reset_ignored_unless_standby() -> None:
    e = alone()
    e.start(0.0)
    assert e.on_sync_reset(0.1, stream_hot=True) == []
    assert e.on_peer_unreachable(Iface.CONTROL, 0.1) == []


def test_refusal_and_bug_are_distinct_errors() -> None:
    """An operator refusal is shown as it is; an impossible transition is a bug."""
    e = alone()
    with pytest.raises(OperatorRefused) as refused:
        e.request_switchover(0.0)
    assert not isinstance(refused.value, ProtocolError)
    e.start(0.0)
    with pytest.raises(LocalProtocolError, match="already started"):
        e.start(0.0)
    with pytest.raises(LocalProtocolError, match="sync state must be one of"):
        e.set_sync_state("lukewarm")
    e.tick(5.0)
    with pytest.raises(ImpossibleTransition) as bug:
        e._transition(HaState.STANDBY, "test")
    assert isinstance(bug.value, LocalProtocolError) and not isinstance(bug.value, OperatorRefused)


def test_active_sub_states_follow_the_standby() -> None:
    e = alone()
    assert e.active_state is None
    e.start(0.0)
    e.tick(5.0)
    assert e.active_state is eng.ActiveState.ALONE
    net = paired()
    assert net.engine(P).active_state is eng.ActiveState.WITH_STANDBY
    assert net.engine(S).active_state is None
    net.cut(Iface.CONTROL)
    net.run_for(DEFAULT.degraded_after + 1.5)
    assert net.engine(P).active_state is eng.ActiveState.DEGRADED
    net.heal(Iface.CONTROL)
    net.run_for(2.0)
    assert net.engine(P).active_state is eng.ActiveState.WITH_STANDBY
    net.engine(P).set_sync_state("hot")
    net.apply(P, net.engine(P).request_switchover(net.now))
    assert net.engine(P).active_state is eng.ActiveState.HANDING_OVER


def test_impossible_active_sub_state_raises() -> None:
    e = alone()
    e.start(0.0)
    e.tick(5.0)
    with pytest.raises(ImpossibleTransition, match="alone -> handing over"):
        e._set_active(eng.ActiveState.HANDING_OVER)
    assert e.active_state is eng.ActiveState.ALONE
