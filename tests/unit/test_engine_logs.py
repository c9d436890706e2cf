"""The split-brain resolution-logs exchange, owned by the engine (virtual time).

The loser sends its logs on both interfaces with a fresh nonce, again every
``LOGS_RETRY`` for ``LOGS_ROUNDS`` rounds, and reloads on the ack that echoes
that nonce (or unacknowledged after the last round); the winner takes the logs
of one exchange once (``StoreRemoteLogs``), acknowledges every copy, and drops
a replayed logs message or ack of another exchange (``drop_replay``).
"""

from __future__ import annotations

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    AccountingEntry,
    ResolutionLogs,
    ResolutionLogsAck,
    SenderRole,
)

from .enginesim import MACS, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
P, S = "primary", "secondary"
ENTRY = AccountingEntry(time=1.0, user="admin", command="vlan 7", result="ok", seq=1)
LOGS = ResolutionLogs(accounting=[ENTRY], traces=["a trace"], discarded=[], nonce=0)


def losing_primary(**kw: bool) -> SimNet:
    """A split-brain the primary loses, decided; its logs not yet sent."""
    net = SimNet(DEFAULT, auto_logs=False, **kw)
    net.start_all()
    net.run_until(10.0)
    net.cut(Iface.CONTROL)
    net.cut(Iface.MGMT)
    net.run_for(20.0)
    assert net.engine(P).state is HaState.ACTIVE and net.engine(S).state is HaState.ACTIVE
    net.engine(S).set_local_facts(module_count=9, last_config_time=0.0, change_seq=0)
    net.dropped.clear()
    net.run_for(1.0)
    assert net.node(P).of(eng.SplitBrainLost)
    assert net.node(S).of(eng.SplitBrainWon)
    return net


def frame_of(name: str, msg: object, seq: int = 10**9) -> Frame:
    role = SenderRole.PRIMARY if name == P else SenderRole.SECONDARY
    return Frame(role=role, mac=MACS[name], epoch=50, seq=seq, msg=msg)  # type: ignore[arg-type]


def sent(effects: list[eng.Effect], kind: type) -> list[object]:
    return [e.msg for e in effects if isinstance(e, eng.Send) and isinstance(e.msg, kind)]


def drops(net: SimNet, name: str, reason: str) -> int:
    return sum(row.get(f"drop_{reason}", 0) for row in net.engine(name).counters().values())


def test_logs_carry_a_fresh_nonce_on_both_ifaces() -> None:
    net = losing_primary()
    out = net.engine(P).send_resolution_logs(LOGS, net.now)
    assert [(e.iface, type(e.msg)) for e in out if isinstance(e, eng.Send)] == [
        (Iface.CONTROL, ResolutionLogs),
        (Iface.MGMT, ResolutionLogs),
    ]
    (msg, _) = sent(out, ResolutionLogs)
    assert isinstance(msg, ResolutionLogs)
    assert msg.nonce != 0 and msg.nonce != LOGS.nonce
    assert msg.accounting == LOGS.accounting and msg.traces == LOGS.traces
    # one exchange per resolution: a second call sends nothing
    assert net.engine(P).send_resolution_logs(LOGS, net.now) == []
    # the default source: random, never 0
    assert len({eng.fresh_nonce() for _ in range(100)}) == 100
    assert all(eng.fresh_nonce() > 0 for _ in range(100))


def test_logs_resent_until_acknowledged_then_reload_anyway() -> None:
    net = losing_primary()
    net.cut(Iface.CONTROL, src=S)
    net.cut(Iface.MGMT, src=S)  # the winner's acks never arrive
    t0 = net.now
    net.apply(P, net.engine(P).send_resolution_logs(LOGS, net.now))
    assert net.engine(P).next_deadline() == t0 + eng.LOGS_RETRY
    net.run_until(t0 + eng.LOGS_ROUNDS * eng.LOGS_RETRY - 1e-6)
    assert net.engine(P).state is HaState.ACTIVE
    rounds = [t for t, e in net.node(P).of(eng.Send) if isinstance(e.msg, ResolutionLogs)]
    assert len(rounds) == 2 * eng.LOGS_ROUNDS  # both ifaces, every LOGS_RETRY
    assert len({round(t, 6) for t in rounds}) == eng.LOGS_ROUNDS
    # the winner took them once, acknowledged each copy
    assert len(net.node(S).of(eng.StoreRemoteLogs)) == 1
    assert len(
        [e for _, e in net.node(S).of(eng.Send) if isinstance(e.msg, ResolutionLogsAck)]
    ) == (2 * eng.LOGS_ROUNDS)
    net.run_until(t0 + eng.LOGS_ROUNDS * eng.LOGS_RETRY)
    assert net.engine(P).state is HaState.RELOADING
    (_, reload), *_ = net.node(P).of(eng.Reload)
    assert reload.reason == "split-brain resolution lost to the secondary"


def test_ack_must_echo_the_outstanding_nonce() -> None:
    net = losing_primary()
    out = net.engine(P).send_resolution_logs(LOGS, net.now)
    (msg, _) = sent(out, ResolutionLogs)
    assert isinstance(msg, ResolutionLogs)
    # an ack of another exchange (a replay) changes nothing, is counted
    stale = ResolutionLogsAck(count=1, nonce=msg.nonce + 1)
    assert net.engine(P).on_frame(frame_of(S, stale), Iface.CONTROL, net.now) == []
    assert net.engine(P).state is HaState.ACTIVE
    assert drops(net, P, "replay") == 1
    good = ResolutionLogsAck(count=1, nonce=msg.nonce)
    out = net.engine(P).on_frame(frame_of(S, good, 10**9 + 1), Iface.MGMT, net.now)
    assert eng.Reload("split-brain resolution lost to the secondary") in out
    assert net.engine(P).state is HaState.RELOADING


def test_ack_without_an_exchange_is_dropped() -> None:
    net = losing_primary()
    ack = ResolutionLogsAck(count=0, nonce=7001)  # the nonce the loser would draw
    assert net.engine(P).on_frame(frame_of(S, ack), Iface.CONTROL, net.now) == []
    assert net.engine(P).state is HaState.ACTIVE
    assert drops(net, P, "unexpected") >= 1
    # and the winner, which sent no logs, ignores acks too
    assert net.engine(S).on_frame(frame_of(P, ack), Iface.CONTROL, net.now) == []
    assert net.engine(S).state is HaState.ACTIVE


def test_winner_takes_one_exchange_and_acks_every_copy() -> None:
    net = losing_primary()
    logs = ResolutionLogs(accounting=[ENTRY], traces=[], discarded=[], nonce=4242)
    w = net.engine(S)
    first = w.on_frame(frame_of(P, logs, 1), Iface.CONTROL, net.now)
    assert first == [
        eng.StoreRemoteLogs(logs, MACS[P]),
        eng.Send(Iface.CONTROL, ResolutionLogsAck(count=1, nonce=4242)),
    ]
    again = w.on_frame(frame_of(P, logs, 2), Iface.MGMT, net.now)
    assert again == [eng.Send(Iface.MGMT, ResolutionLogsAck(count=1, nonce=4242))]
    # a second exchange within the same resolution is not the loser's
    other = ResolutionLogs(accounting=[], traces=[], discarded=[], nonce=4343)
    assert w.on_frame(frame_of(P, other, 3), Iface.CONTROL, net.now) == []
    assert drops(net, S, "replay") == 1


def test_logs_from_another_mac_are_dropped() -> None:
    net = losing_primary()
    logs = ResolutionLogs(accounting=[], traces=[], discarded=[], nonce=4242)
    spoofed = Frame(role=SenderRole.PRIMARY, mac="02:00:00:00:00:99", epoch=50, seq=1, msg=logs)
    out = net.engine(S).on_frame(spoofed, Iface.CONTROL, net.now)
    assert not any(isinstance(e, eng.StoreRemoteLogs | eng.Send) for e in out)
    assert drops(net, S, "bad_mac") == 1
    # the real loser's copy is still taken
    out = net.engine(S).on_frame(frame_of(P, logs, 2), Iface.CONTROL, net.now)
    assert isinstance(out[0], eng.StoreRemoteLogs)


def test_logs_outside_a_resolution_are_dropped() -> None:
    net = SimNet(DEFAULT)
    net.start_all()
    net.run_until(10.0)
    assert net.engine(P).state is HaState.ACTIVE and net.engine(S).state is HaState.STANDBY
    logs = ResolutionLogs(accounting=[], traces=[], discarded=[], nonce=4242)
    for name, sender in ((P, S), (S, P)):
        assert net.engine(name).on_frame(frame_of(sender, logs), Iface.CONTROL, net.now) == []
        assert drops(net, name, "unexpected") == 1


def test_replayed_logs_of_an_earlier_split_brain_are_dropped() -> None:
    net = SimNet(DEFAULT, auto_restart=True)
    net.start_all()
    net.run_until(10.0)
    for round_ in (1, 2):
        net.cut(Iface.CONTROL)
        net.cut(Iface.MGMT)
        net.run_for(20.0)
        assert net.engine(P).state is HaState.ACTIVE and net.engine(S).state is HaState.ACTIVE
        net.engine(S).set_local_facts(module_count=9, last_config_time=0.0, change_seq=0)
        if round_ == 2:
            net.auto_logs = False  # the loser's new logs wait: the replay comes first
        net.dropped.clear()
        net.run_for(1.0 if round_ == 2 else 60.0)
        if round_ == 1:
            assert net.engine(P).state is HaState.STANDBY  # lost, reloaded, rejoined
            copies = [
                m for _, _, to, _, m in net.delivered if to == S and isinstance(m, ResolutionLogs)
            ]
            assert copies and all(m == copies[0] for m in copies)
            captured = copies[0]
    assert len(net.node(S).of(eng.SplitBrainWon)) == 2
    stored = len(net.node(S).of(eng.StoreRemoteLogs))
    out = net.engine(S).on_frame(frame_of(P, captured), Iface.CONTROL, net.now)
    assert out == []  # neither stored nor acknowledged
    assert len(net.node(S).of(eng.StoreRemoteLogs)) == stored == 1
    assert drops(net, S, "replay") == 1
    # the loser's fresh logs of this exchange are taken
    net.apply(P, net.engine(P).send_resolution_logs(LOGS, net.now))
    net.run_for(0.01)
    assert len(net.node(S).of(eng.StoreRemoteLogs)) == 2
    assert net.node(P).reloads == 2
