"""Stateful hamgr restart (``Engine.checkpoint`` / ``Engine.resume``) and the
sync hold, on virtual time: the restart changes nothing the peer or the
status shows, and a checkpoint the world has overtaken is not used."""

from __future__ import annotations

from dataclasses import replace

import pytest

from openvsm.config import Timers
from openvsm.errors import LocalProtocolError, OperatorRefused
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import Flag, HeartbeatRequest, SenderRole

from .enginesim import MACS, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
FAST = Timers(0.1, 0.6, 0.5)
P, S = "primary", "secondary"
RESTART = 0.3  # a Python hamgr restart on a quiet machine


def hot_pair(timers: Timers = DEFAULT) -> SimNet:
    """An HA pair as hamgr runs it: "HA" only once cfgmgr reports the stream hot."""
    net = SimNet(timers, require_sync=True)
    net.start_all()
    net.run_until(timers.discovery_window * 2)
    for name in (P, S):
        net.engine(name).set_sync_state("hot", net.now)
    net.run_for(timers.heartbeat_interval * 2)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(P).status(net.now).this_internal_state == "Active with HA standby"
    assert net.engine(S).status(net.now).this_internal_state == "HA standby"
    return net


def killed(net: SimNet, name: str) -> eng.ResumePoint:
    """SIGKILL of hamgr: its last checkpoint, alive until now."""
    point = net.engine(name).checkpoint(net.now)
    assert point is not None
    net.kill(name)
    return point


def statuses(net: SimNet) -> dict[str, eng.RedundancyStatus]:
    return {name: net.engine(name).status(net.now) for name in (P, S)}


def watch(net: SimNet, until: float, names: tuple[str, ...] = (P, S)) -> set[str]:
    """Every distinct internal state the running ``names`` show, in 10 ms steps."""
    seen: set[str] = set()
    while net.now < until:
        net.run_for(0.01)
        for name in names:
            if net.node(name).running and not net.engine(name).resuming:
                seen.add(f"{name}: {net.engine(name).status(net.now).this_internal_state}")
    return seen


# ---- resume -----------------------------------------------------------------


@pytest.mark.parametrize("timers", [DEFAULT, FAST], ids=["seed", "fast"])
def test_active_hamgr_restart_changes_nothing_visible(timers: Timers) -> None:
    net = hot_pair(timers)
    before = statuses(net)
    boot = net.engine(P).config.boot_id
    point = killed(net, P)
    assert point.state is HaState.ACTIVE and point.peer_boot is not None
    net.run_for(RESTART / 3 if timers is FAST else RESTART)
    out = net.resume(P, point)
    # It asks first: the peer might have taken over while hamgr was down.
    assert [type(e.msg).__name__ for e in out if isinstance(e, eng.Send)] == ["LivenessProbe"] * 6
    assert net.engine(P).resuming
    seen = watch(net, net.now + timers.heartbeat_interval / 2)
    assert not net.engine(P).resuming
    net.engine(P).set_sync_state("hot", net.now)  # cfgmgr tells the new hamgr again
    seen |= watch(net, net.now + timers.max_loss_interval * 2)
    assert seen == {"primary: Active with HA standby", "secondary: HA standby"}
    assert statuses(net) == before
    assert net.engine(P).config.boot_id == boot  # the standby sees the same active
    for name in (P, S):
        assert not net.node(name).of(eng.BecomeActive, since=point.alive_at)
        assert not net.node(name).of(eng.PersistFacts, since=point.alive_at)
        assert not net.node(name).of(eng.PeerLost, since=point.alive_at)
    after = [e.text for _, e in net.node(S).of(eng.Trace, since=point.alive_at)]
    assert not any("accepted" in t or "restarted" in t for t in after), after


def test_standby_hamgr_restart_changes_nothing_visible() -> None:
    net = hot_pair()
    before = statuses(net)
    point = killed(net, S)
    assert point.state is HaState.STANDBY
    net.run_for(RESTART)
    out = net.resume(S, point)
    assert not [e for e in out if isinstance(e, eng.Send)]  # a standby only answers
    assert net.engine(S).state is HaState.STANDBY
    seen = watch(net, net.now + 1.0)
    net.engine(S).set_sync_state("hot", net.now)  # cfgmgr tells the new hamgr again
    seen |= watch(net, net.now + 20.0)
    assert seen == {"primary: Active with HA standby", "secondary: HA standby"}
    assert statuses(net) == before
    assert not net.node(P).of(eng.PeerLost)
    assert not any("standby restarted" in t for t in net.node(P).traces())


def test_checkpoint_older_than_the_loss_interval_is_not_used() -> None:
    # hamgr down for the whole loss interval: the standby took over; the
    # restarted one discovers (new boot id) and finds the new active.
    net = hot_pair()
    point = killed(net, P)
    net.run_for(DEFAULT.max_loss_interval + 0.5)
    assert net.engine(S).state is HaState.ACTIVE
    out = net.resume(P, point)
    assert any("checkpoint not used" in e.text for e in out if isinstance(e, eng.Trace))
    assert not net.engine(P).resuming
    assert net.engine(P).config.boot_id != point.boot_id
    net.run_for(DEFAULT.discovery_window * 2)
    assert net.engine(P).state is HaState.STANDBY  # and the node reloads (cfgmgr)
    assert net.engine(S).state is HaState.ACTIVE


def test_active_checkpoint_not_resumed_when_the_peer_took_over_meanwhile() -> None:
    # hamgr and cfgmgr killed together: the standby's sync stream is reset,
    # nobody answers its probes, it takes over within the probe timeout. The
    # checkpoint is fresh but the world changed: the peer answers as active.
    net = hot_pair()
    point = killed(net, P)
    net.apply(S, net.engine(S).on_sync_reset(net.now, stream_hot=True))
    net.run_for(RESTART)
    assert net.engine(S).state is HaState.ACTIVE
    net.resume(P, point)
    net.run_for(0.01)
    assert any("not resuming as active" in t for t in net.node(P).traces())
    net.run_for(DEFAULT.discovery_window * 2)
    assert net.engine(P).state is HaState.STANDBY
    assert net.engine(S).state is HaState.ACTIVE
    assert net.engine(S).epoch == point.epoch + 1


def test_a_request_of_an_active_peer_ends_the_resume_before_any_answer() -> None:
    net = hot_pair()
    point = killed(net, P)
    net.apply(S, net.engine(S).on_sync_reset(net.now, stream_hot=True))
    net.run_for(RESTART)
    assert net.engine(S).state is HaState.ACTIVE
    net.resume(P, point)
    assert net.engine(P).resuming
    request = HeartbeatRequest(state="active", flags=int(Flag.OUT_OF_SYNC), boot_id=1)
    net.inject(P, Frame(SenderRole.SECONDARY, MACS[S], point.epoch + 1, 99, request), Iface.MGMT)
    assert net.engine(P).state is HaState.STANDBY  # discovery, then that very request


def test_active_resumes_when_the_peer_is_silent_and_loses_it_on_time() -> None:
    net = hot_pair()
    net.kill(S)
    net.run_for(2.0)
    point = killed(net, P)
    net.run_for(RESTART)
    net.resume(P, point)
    net.run_for(DEFAULT.heartbeat_interval - 0.01)
    assert net.engine(P).resuming  # waits one heartbeat interval for an answer
    net.run_for(0.02)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(P).epoch == point.epoch
    assert net.engine(P).status(net.now).peer_present
    # The loss counts from the old process's last sign of life (its exit).
    net.run_until(point.alive_at + DEFAULT.max_loss_interval + DEFAULT.heartbeat_interval)
    (lost,) = net.node(P).of(eng.PeerLost)
    assert lost[0] == pytest.approx(point.alive_at + DEFAULT.max_loss_interval, abs=1e-6)


def test_active_resumes_when_its_peer_is_booting() -> None:
    # The standby node reloaded while hamgr restarted: it answers the probe
    # "initializing"; the resumed active answers its discovery, it becomes standby.
    net = hot_pair()
    point = killed(net, P)
    net.restart(S)  # a new boot of the standby node
    net.run_for(RESTART)
    net.resume(P, point)
    net.run_for(DEFAULT.discovery_window * 2)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(P).epoch == point.epoch
    assert net.engine(S).state is HaState.STANDBY
    assert net.engine(S).epoch == point.epoch


def test_standby_resume_takes_over_on_time_when_the_active_died_meanwhile() -> None:
    net = hot_pair()
    point = killed(net, S)
    net.kill(P)  # the active node dies while the standby's hamgr restarts
    t_dead = net.now
    net.run_for(RESTART)
    net.resume(S, point)
    net.run_until(t_dead + DEFAULT.max_loss_interval + DEFAULT.heartbeat_interval * 2)
    assert net.engine(S).state is HaState.ACTIVE
    (became,) = net.node(S).of(eng.BecomeActive)
    assert became[0] <= t_dead + DEFAULT.max_loss_interval + DEFAULT.heartbeat_interval


def test_resume_refuses_another_role_and_a_missed_epoch() -> None:
    net = hot_pair()
    point = killed(net, P)
    out = net.resume(P, replace(point, epoch=point.epoch - 1))
    assert any("durable epoch" in e.text for e in out if isinstance(e, eng.Trace))
    assert not net.engine(P).resuming
    net.kill(P)
    out = net.resume(P, replace(point, role="secondary"))
    assert any("taken as secondary" in e.text for e in out if isinstance(e, eng.Trace))


def test_resume_only_once_and_never_after_start() -> None:
    net = hot_pair()
    point = killed(net, P)
    net.resume(P, point)
    with pytest.raises(LocalProtocolError):
        net.engine(P).resume(point, net.now)
    with pytest.raises(LocalProtocolError):
        net.engine(P).start(net.now)


def test_no_checkpoint_while_unsettled() -> None:
    net = hot_pair()
    net.apply(P, net.engine(P).request_switchover(net.now))
    assert net.engine(P).checkpoint(net.now) is None
    net = hot_pair()
    net.cut(Iface.CONTROL)
    net.run_for(DEFAULT.degraded_after + 1.0)
    assert net.engine(P).checkpoint(net.now) is None  # degraded
    assert net.engine(S).checkpoint(net.now) is None  # told "degraded" by the active
    net.apply(S, net.engine(S).on_sync_reset(net.now, stream_hot=True))
    assert net.engine(S).checkpoint(net.now) is None  # probing its active
    assert eng.Engine(net.engine(P).config, eng.PersistedFacts()).checkpoint(0.0) is None


def test_at_most_one_active_across_restarts_at_any_moment() -> None:
    # hamgr restarts on either node at every step of a partition and heal:
    # once the split-brain bound has passed there is exactly one active.
    for kill_at in (0.5, 3.0, 10.0, 14.9, 15.5, 20.0):
        for victim in (P, S):
            net = hot_pair()
            net.cut(Iface.CONTROL)
            net.cut(Iface.MGMT)
            t0 = net.now
            net.run_until(t0 + kill_at)
            point = net.engine(victim).checkpoint(net.now)
            net.kill(victim)
            net.run_for(RESTART)
            if point is None:
                net.restart(victim)
            else:
                net.resume(victim, point)
            net.run_until(t0 + 25.0)
            net.heal(Iface.CONTROL)
            net.heal(Iface.MGMT)
            net.auto_restart = True
            net.run_for(30.0)
            actives = [n for n in (P, S) if net.engine(n).state is HaState.ACTIVE]
            assert len(actives) == 1, (kill_at, victim, actives)


# ---- sync hold --------------------------------------------------------------


def test_reconnecting_stream_is_held_hot_for_the_grace_only() -> None:
    net = hot_pair()
    e = net.engine(P)
    t = net.now
    out = e.set_sync_state("none", t)  # cfgmgr killed: its stream went down
    assert any("still shown in sync" in x.text for x in out if isinstance(x, eng.Trace))
    net.run_until(t + eng.SYNC_GRACE - 0.01)
    assert e.status(net.now).this_internal_state == "Active with HA standby"
    assert e.set_sync_state("warm", net.now) == []  # catching up a tail: still held
    net.run_until(t + eng.SYNC_GRACE)
    assert e.status(net.now).this_internal_state == "Active with warm standby"
    assert any("not resumed within" in x for x in net.node(P).traces())
    e.set_sync_state("hot", net.now)
    assert e.status(net.now).this_internal_state == "Active with HA standby"


def test_hold_ends_on_resume_bulk_sync_or_loss() -> None:
    net = hot_pair()
    e = net.engine(P)
    e.set_sync_state("none", net.now)
    e.set_sync_state("hot", net.now)
    assert e.status(net.now).this_internal_state == "Active with HA standby"
    e.set_sync_state("none", net.now)
    e.set_sync_state("cold", net.now)  # a snapshot: the truth at once
    assert e.status(net.now).this_internal_state == "Active with warm standby"
    e.set_sync_state("hot", net.now)
    e.set_sync_state("none", net.now)
    net.kill(S)
    net.run_for(DEFAULT.max_loss_interval + 1.0)
    e.set_sync_state("none", net.now)
    net.restart(S)
    net.run_for(DEFAULT.discovery_window * 2)
    # A new standby is never shown in sync on the old stream's word.
    assert e.status(net.now).this_internal_state == "Active with warm standby"


def test_hold_on_the_standby_and_none_without_a_grace() -> None:
    net = hot_pair()
    e = net.engine(S)
    e.set_sync_state("none", net.now)
    assert e.status(net.now).this_internal_state == "HA standby"
    e.set_sync_state("hot", net.now)
    e.set_sync_state("none")  # no time: the truth (tests, tools)
    assert e.status(net.now).this_internal_state == "Cold standby (sync in progress)"
    assert e.status(net.now).this_sup_state == "Cold standby"


def test_resumed_hot_is_held_until_cfgmgr_confirms_or_the_grace_ends() -> None:
    net = hot_pair()
    point = killed(net, S)
    net.run_for(RESTART)
    net.resume(S, point)
    e = net.engine(S)
    net.run_for(eng.SYNC_GRACE - 0.1)
    assert e.status(net.now).this_internal_state == "HA standby"
    net.run_for(0.2)  # cfgmgr never told this process: the truth is unknown
    assert e.status(net.now).this_internal_state == "Cold standby (sync in progress)"
    e.set_sync_state("hot", net.now)
    assert e.status(net.now).this_internal_state == "HA standby"


def test_switchover_is_allowed_exactly_while_the_standby_is_shown_in_sync() -> None:
    # A crash loop of cfgmgr on the active reloads the node through hamgr,
    # which hands over first: the standby, hot when the stream went down,
    # still has every acknowledged change (writes wait for its acks).
    net = hot_pair()
    e = net.engine(P)
    e.sync_stream_down(net.now)
    net.run_for(eng.SYNC_GRACE - 0.1)
    e.sync_stream_down(net.now)  # cfgmgr died again: a new grace
    net.run_for(eng.SYNC_GRACE - 0.1)
    assert e.status(net.now).this_internal_state == "Active with HA standby"
    net.run_for(0.2)
    assert e.status(net.now).this_internal_state == "Active with warm standby"
    with pytest.raises(OperatorRefused, match="not in HA standby state"):
        e.request_switchover(net.now)
    e.set_sync_state("hot", net.now)
    e.sync_stream_down(net.now)
    out = e.request_reload(net.now)
    assert any("failing over first" in x.text for x in out if isinstance(x, eng.Trace))
