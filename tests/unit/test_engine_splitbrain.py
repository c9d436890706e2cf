"""Split-brain resolution between two actives (virtual time)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.redundancy.splitbrain import Side, choose_loser
from openvsm.wire.codec import Frame
from openvsm.wire.messages import HeartbeatRequest, ResolutionInfo, SenderRole

from .enginesim import MACS, NO_LOGS, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
P, S = "primary", "secondary"


def split(net: SimNet) -> None:
    """Pair up, then cut both links until both are active."""
    net.start_all()
    net.run_until(10.0)
    net.cut(Iface.CONTROL)
    net.cut(Iface.MGMT)
    net.run_for(20.0)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(S).state is HaState.ACTIVE


def set_side(e: eng.Engine, side: Side) -> None:
    e.set_local_facts(
        module_count=side.module_count, last_config_time=side.last_config_time, change_seq=0
    )
    e.set_last_active_time(side.last_active_time)


LEVELS = [
    # (primary side, secondary side, loser)
    (Side(2, 100.0, 10.0), Side(5, 50.0, 20.0), P),  # 1: more modules wins
    (Side(5, 50.0, 10.0), Side(2, 100.0, 20.0), S),
    (Side(3, 100.0, 30.0), Side(3, 50.0, 10.0), S),  # 2: later configuration wins
    (Side(3, 50.0, 10.0), Side(3, 100.0, 30.0), P),
    (Side(3, 100.0, 10.0), Side(3, 100.0, 20.0), S),  # 3: earlier switch (longer active) wins
    (Side(3, 100.0, 30.0), Side(3, 100.0, 20.0), P),
    (Side(3, 100.0, 20.0), Side(3, 100.0, 20.0), S),  # 4: tie: the primary wins
]


@pytest.mark.parametrize(("pside", "sside", "loser"), LEVELS)
def test_choose_loser_levels(pside: Side, sside: Side, loser: str) -> None:
    assert choose_loser(pside, sside) == loser


@pytest.mark.parametrize(("pside", "sside", "loser"), LEVELS)
def test_split_brain_resolution_every_level(pside: Side, sside: Side, loser: str) -> None:
    net = SimNet(DEFAULT, auto_restart=True)
    split(net)
    set_side(net.engine(P), pside)
    set_side(net.engine(S), sside)
    epochs = {n: net.engine(n).epoch for n in (P, S)}
    winner = S if loser == P else P
    t = net.now
    net.dropped.clear()
    net.run_for(3.0)
    won = net.node(winner).of(eng.SplitBrainWon, since=t)
    lost = net.node(loser).of(eng.SplitBrainLost, since=t)
    assert [e.loser_role for _, e in won] == [loser]
    assert [e.winner_role for _, e in lost] == [winner]
    assert won[0][1].info == lost[0][1].reason  # both saw the same facts
    assert net.node(loser).reloads == 1
    # the winner fences the loser's epoch
    assert net.engine(winner).epoch == max(epochs.values()) + 1
    # the loser boots again, finds the active and becomes standby: no loop
    net.run_for(60.0)
    assert net.engine(winner).state is HaState.ACTIVE
    assert net.engine(loser).state is HaState.STANDBY
    assert net.engine(winner).status(net.now).this_internal_state == "Active with HA standby"
    assert len(net.node(winner).of(eng.SplitBrainWon)) == 1
    assert net.node(loser).reloads == 1
    assert not net.node(loser).of(eng.BecomeActive, since=t)


def test_loser_reloads_after_timeout_if_logs_never_sent() -> None:
    net = SimNet(DEFAULT, auto_logs=False)
    split(net)
    set_side(net.engine(P), Side(1, 0.0, 0.0))
    set_side(net.engine(S), Side(9, 0.0, 0.0))
    net.dropped.clear()
    net.run_for(1.0)
    ((t_lost, _),) = net.node(P).of(eng.SplitBrainLost)
    net.run_until(t_lost + eng.LOGS_TIMEOUT - 1e-6)
    assert net.engine(P).state is HaState.ACTIVE
    net.run_until(t_lost + eng.LOGS_TIMEOUT)
    assert net.engine(P).state is HaState.RELOADING
    (_, reload), *_ = net.node(P).of(eng.Reload)
    assert "split-brain resolution lost to the secondary" in reload.reason


def test_resolution_logs_acknowledged_reload_the_loser_only() -> None:
    net = SimNet(DEFAULT, auto_logs=False)
    split(net)
    set_side(net.engine(S), Side(9, 0.0, 0.0))
    net.dropped.clear()
    net.run_for(1.0)
    assert net.engine(S).send_resolution_logs(NO_LOGS, net.now) == []  # the winner
    out = net.engine(P).send_resolution_logs(NO_LOGS, net.now)
    assert [type(x) for x in out] == [eng.Send, eng.Send]  # both ifaces, not yet reloading
    assert net.engine(P).state is HaState.ACTIVE
    net.apply(P, out)
    net.run_for(0.0)  # the winner takes them and acknowledges
    assert [type(e) for _, e in net.node(S).of(eng.StoreRemoteLogs)] == [eng.StoreRemoteLogs]
    (_, reload), *_ = net.node(P).of(eng.Reload)
    assert reload == eng.Reload("split-brain resolution lost to the secondary")
    assert net.engine(P).state is HaState.RELOADING


# ---- resolution data handling (one engine, hand-made frames) ---------------


def active(role: str = P, boot: int = 7) -> eng.Engine:
    peer = S if role == P else P
    e = eng.Engine(
        eng.EngineConfig(role=role, system_mac=MACS[role], timers=DEFAULT, boot_id=boot),
        eng.PersistedFacts(epoch=4, peer_macs={"control": MACS[peer], "mgmt": MACS[peer]}),
    )
    e.start(0.0)
    e.tick(5.0)
    assert e.state is HaState.ACTIVE
    return e


def from_secondary(msg: object, seq: int, epoch: int = 3) -> Frame:
    return Frame(
        role=SenderRole.SECONDARY,
        mac=MACS[S],
        epoch=epoch,
        seq=seq,
        msg=msg,  # type: ignore[arg-type]
    )


def info(modules: int, boot: int = 99) -> ResolutionInfo:
    return ResolutionInfo(
        module_count=modules, last_config_time=0.0, last_active_time=0.0, boot_id=boot
    )


def test_resolution_exchange_is_deterministic() -> None:
    e = active()
    e.set_local_facts(module_count=4, last_config_time=0.0, change_seq=0)
    ours = ResolutionInfo(
        module_count=4, last_config_time=0.0, last_active_time=0.0, boot_id=7, change_seq=0
    )
    out = e.on_frame(
        from_secondary(HeartbeatRequest(state="active", boot_id=99), 1), Iface.MGMT, 6.0
    )
    assert out[-2:] == [eng.StatusChanged(), eng.Send(Iface.MGMT, ours)]
    assert e.status(6.0).split_brain
    # heard again on the same iface: nothing new; on control: ours is sent there too
    req = HeartbeatRequest(state="active", boot_id=99)
    assert e.on_frame(from_secondary(req, 2), Iface.MGMT, 6.1) == []
    assert e.on_frame(from_secondary(req, 3), Iface.CONTROL, 6.2) == [eng.Send(Iface.CONTROL, ours)]
    # resent every heartbeat interval on the ifaces heard on until the peer's arrives
    resent = [x for x in e.tick(7.0) if isinstance(x, eng.Send) and x.msg == ours]
    assert resent == [eng.Send(Iface.CONTROL, ours), eng.Send(Iface.MGMT, ours)]
    # data from another incarnation of the peer is ignored
    assert e.on_frame(from_secondary(info(1, boot=55), 4), Iface.MGMT, 7.1) == []
    assert e.counters()["mgmt"]["drop_stale"] == 1
    # the peer's data: fewer modules, we win, once
    out = e.on_frame(from_secondary(info(2), 10), Iface.MGMT, 7.2)
    assert [type(x).__name__ for x in out] == [
        "Trace",
        "PersistFacts",
        "SplitBrainWon",
        "StatusChanged",
    ]
    assert e.epoch == 6  # max(own 5, seen 3) + 1
    # duplicated or disagreeing data later: no second decision; ours is resent
    # (the peer may lack it), at most once per heartbeat interval
    replies = []
    for t, seq, modules in ((7.3, 10, 2), (7.4, 11, 9), (8.3, 9, 0), (8.4, 12, 5)):
        out = e.on_frame(from_secondary(info(modules), seq), Iface.MGMT, t)
        assert all(isinstance(x, eng.Send) for x in out)
        replies += [t for _ in out]
    assert replies == [7.3, 8.3]
    assert e.state is HaState.ACTIVE
    assert not e.status(7.3).split_brain


def test_resolution_info_alone_reveals_split_brain() -> None:
    e = active(role=S)
    e.set_local_facts(module_count=1, last_config_time=0.0, change_seq=0)
    out = e.on_frame(
        Frame(role=SenderRole.PRIMARY, mac=MACS[P], epoch=2, seq=5, msg=info(3, boot=42)),
        Iface.CONTROL,
        6.0,
    )
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["Trace", "StatusChanged", "Send", "Trace", "SplitBrainLost", "StatusChanged"]
    assert out[4] == eng.SplitBrainLost(P, "module count primary 3, secondary 1")
    # the loser stops heartbeating; it only waits for its logs to go out
    assert e.tick(6.5) == []
    assert e.next_deadline() == 6.0 + eng.LOGS_TIMEOUT


# ---- properties --------------------------------------------------------------

sides = st.builds(
    Side,
    st.integers(0, 3),
    st.sampled_from([0.0, 100.0, 200.0]),
    st.sampled_from([0.0, 10.0, 20.0]),
)


@settings(max_examples=200, deadline=None)
@given(pside=sides, sside=sides, reverse=st.booleans())
def test_both_actives_choose_the_same_loser(pside: Side, sside: Side, reverse: bool) -> None:
    a, b = active(P, boot=1), active(S, boot=2)
    set_side(a, pside)
    set_side(b, sside)
    engines = {P: a, S: b}
    frames = {
        P: lambda m, seq: Frame(role=SenderRole.PRIMARY, mac=MACS[P], epoch=5, seq=seq, msg=m),
        S: lambda m, seq: Frame(role=SenderRole.SECONDARY, mac=MACS[S], epoch=5, seq=seq, msg=m),
    }
    first = S if reverse else P
    # ``first`` hears the other's heartbeat first; then messages flow until quiet.
    pending: list[tuple[str, object]] = [(first, HeartbeatRequest(state="active", boot_id=9))]
    pending[0] = (first, HeartbeatRequest(state="active", boot_id=2 if first == P else 1))
    outcome: dict[str, eng.Effect] = {}
    seq = 0
    while pending:
        to, msg = pending.pop(0)
        seq += 1
        sender = S if to == P else P
        out = engines[to].on_frame(frames[sender](msg, seq), Iface.CONTROL, 6.0)
        for x in out:
            if isinstance(x, eng.Send):
                pending.append((sender, x.msg))
            elif isinstance(x, eng.SplitBrainWon | eng.SplitBrainLost):
                assert to not in outcome
                outcome[to] = x
        assert seq < 20, "resolution messages must not ping-pong"
    loser = choose_loser(pside, sside)
    winner = S if loser == P else P
    assert outcome[loser] == eng.SplitBrainLost(winner, outcome[loser].reason)  # type: ignore[union-attr]
    assert outcome[winner] == eng.SplitBrainWon(loser, outcome[loser].reason)  # type: ignore[union-attr]


def test_peer_restart_mid_resolution_restarts_it_with_the_new_boot() -> None:
    """Regression (found by the random-fault property): a resolution against a
    peer incarnation that went silent must not block the new incarnation."""
    e = active()
    req = HeartbeatRequest(state="active", boot_id=99)
    e.on_frame(from_secondary(req, 1), Iface.MGMT, 6.0)
    new = HeartbeatRequest(state="active", boot_id=100)
    # while boot 99 still talks, frames of another boot are stale
    assert e.on_frame(from_secondary(new, 2), Iface.MGMT, 7.9) == []
    assert e.counters()["mgmt"]["drop_stale"] == 1
    # 2 heartbeat intervals of silence from boot 99: boot 100 gets a resolution
    out = e.on_frame(from_secondary(new, 3), Iface.MGMT, 8.0)
    assert out[0].text.startswith("split-brain: the secondary is also active")  # type: ignore[union-attr]
    out = e.on_frame(from_secondary(info(9, boot=100), 4), Iface.MGMT, 8.1)
    assert [type(x).__name__ for x in out] == ["Trace", "SplitBrainLost", "StatusChanged"]
