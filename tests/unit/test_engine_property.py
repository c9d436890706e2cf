"""Properties of the redundancy engine under hostile input and random faults."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.config import Timers
from openvsm.errors import OperatorRefused
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    Discovery,
    HeartbeatRequest,
    HeartbeatResponse,
    LivenessAck,
    LivenessProbe,
    Message,
    ResolutionInfo,
    ResolutionLogs,
    ResolutionLogsAck,
    SenderRole,
    SwitchRequest,
)

from .enginesim import MACS, NO_LOGS, SimNet

FAST = Timers(0.1, 0.6, 0.5)
STATES = st.sampled_from(["initializing", "active", "standby", "bogus"])
FLAGS = st.integers(0, 63)
BOOTS = st.sampled_from([1, 2, 3, 1000, 1001])

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Discovery, state=STATES, boot_id=BOOTS, reply=st.booleans()),
    st.builds(
        HeartbeatRequest, state=STATES, flags=FLAGS, change_seq=st.integers(0, 9), boot_id=BOOTS
    ),
    st.builds(
        HeartbeatResponse, state=STATES, flags=FLAGS, boot_id=BOOTS, peer_present=st.booleans()
    ),
    st.builds(LivenessProbe, nonce=st.integers(0, 3)),
    st.builds(LivenessAck, nonce=st.integers(0, 3), state=STATES),
    st.builds(
        ResolutionInfo,
        module_count=st.integers(0, 3),
        last_config_time=st.sampled_from([0.0, 1.0]),
        last_active_time=st.sampled_from([0.0, 1.0]),
        boot_id=BOOTS,
    ),
    st.builds(SwitchRequest, vsm_addr=st.just("x")),
    st.builds(
        ResolutionLogs,
        accounting=st.just([]),
        traces=st.just([]),
        discarded=st.just([]),
        nonce=st.integers(0, 3),
    ),
    st.builds(ResolutionLogsAck, count=st.integers(0, 1), nonce=st.integers(0, 3)),
)
ROLES = st.sampled_from([SenderRole.PRIMARY, SenderRole.SECONDARY, SenderRole.VEM])
MAC_CHOICES = st.sampled_from([MACS["primary"], MACS["secondary"], "02:00:00:00:00:77"])
steps = st.lists(
    st.tuples(
        messages,
        ROLES,
        MAC_CHOICES,
        st.integers(0, 12),  # epoch
        st.integers(0, 50),  # seq (duplicates and reordering)
        st.sampled_from(list(Iface)),
        st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.35, 1.0]),  # time advance before it
        st.sampled_from(["none", "sync_reset", "unreachable", "oos", "logs", "switchover"]),
    ),
    max_size=60,
)


def assert_active_state_consistent(e: eng.Engine, now: float) -> None:
    """The active's sub-state says what its status shows (alone, with standby, degraded)."""
    sub = e.active_state
    if e.state is not HaState.ACTIVE:
        assert sub is None
        return
    st_ = e.status(now)
    if sub is eng.ActiveState.ALONE:
        assert not st_.peer_present and not st_.degraded
    elif sub is eng.ActiveState.WITH_STANDBY:
        assert st_.peer_present and not st_.degraded
    elif sub is eng.ActiveState.DEGRADED:
        assert st_.peer_present and st_.degraded
    else:  # handing over or losing: it reloads by a deadline
        assert e.next_deadline() < float("inf")


def state_of(e: eng.Engine) -> HaState:
    return e.state  # a call, so that mypy does not narrow across steps


@settings(max_examples=150, deadline=None)
@given(role=st.sampled_from(["primary", "secondary"]), script=steps)
def test_active_never_becomes_standby(role: str, script: list[tuple[object, ...]]) -> None:
    e = eng.Engine(
        eng.EngineConfig(
            role=role, system_mac=MACS[role], timers=FAST, boot_id=1000, nonces=lambda: 2
        ),
        eng.PersistedFacts(epoch=2),
    )
    now = 0.0
    e.start(now)
    now = 0.5
    e.tick(now)
    assert e.state is HaState.ACTIVE
    for msg, srole, mac, epoch, seq, iface, dt, op in script:
        assert isinstance(msg, Message) and isinstance(srole, SenderRole)
        assert isinstance(mac, str) and isinstance(epoch, int) and isinstance(seq, int)
        assert isinstance(iface, Iface) and isinstance(dt, float)
        before = state_of(e)
        now += dt
        effects: list[eng.Effect] = []
        while e.next_deadline() <= now:
            t = e.next_deadline()
            effects += e.tick(t)
            assert e.next_deadline() > t, "a deadline must advance after tick"
        effects += e.on_frame(Frame(role=srole, mac=mac, epoch=epoch, seq=seq, msg=msg), iface, now)
        if op == "sync_reset":
            effects += e.on_sync_reset(now, stream_hot=seq % 2 == 0)
        elif op == "unreachable":
            effects += e.on_peer_unreachable(iface, now)
        elif op == "oos":
            effects += e.mark_standby_out_of_sync(now)
        elif op == "logs":
            effects += e.send_resolution_logs(NO_LOGS, now)
        elif op == "switchover":
            try:
                effects += e.request_switchover(now)
            except OperatorRefused:
                pass
        after = state_of(e)
        assert_active_state_consistent(e, now)
        assert after is not HaState.STANDBY
        assert not any(isinstance(x, eng.BecomeStandby) for x in effects)
        if before is HaState.ACTIVE and after is not HaState.ACTIVE:
            assert after is HaState.RELOADING
            assert any(isinstance(x, eng.Reload) for x in effects)
        if after is HaState.RELOADING:
            break
        e.status(now)
        e.counters()


faults = st.lists(
    st.tuples(
        st.sampled_from(
            ["cut", "heal", "restart", "run", "switchover", "sync_reset", "unreachable"]
        ),
        st.sampled_from(["primary", "secondary"]),
        st.sampled_from(list(Iface)),
        st.sampled_from([0.05, 0.3, 0.7, 2.0]),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(schedule=faults, latency=st.sampled_from([0.0, 0.002, 0.03]))
def test_random_faults_converge_to_one_active_one_standby(
    schedule: list[tuple[str, str, Iface, float]], latency: float
) -> None:
    """Jepsen-style: random partitions, one-way loss and restarts; after healing,
    exactly one active and one HA standby, and no active ever became standby."""
    net = SimNet(FAST, latency=latency, auto_restart=True)
    net.start_all()
    seen: dict[tuple[str, int], list[HaState]] = {}

    def observe() -> None:
        for name, node in net.nodes.items():
            states = seen.setdefault((name, node.boot), [])
            if not states or states[-1] is not node.engine.state:
                states.append(node.engine.state)

    for op, name, iface, dt in schedule:
        if op == "cut":
            net.cut(iface, src=name)
        elif op == "heal":
            net.heal(iface, src=name)
        elif op == "restart":
            net.restart(name)
        elif op == "switchover":
            try:
                net.apply(name, net.engine(name).request_switchover(net.now))
            except OperatorRefused:
                pass
        elif op == "sync_reset":
            net.apply(name, net.engine(name).on_sync_reset(net.now, stream_hot=True))
        elif op == "unreachable":
            net.apply(name, net.engine(name).on_peer_unreachable(iface, net.now))
        observe()
        net.run_for(dt)
        observe()
    net.dropped.clear()
    net.run_for(20.0)
    observe()
    states = sorted(net.engine(n).state.value for n in ("primary", "secondary"))
    assert states == ["active", "standby"], seen
    for history in seen.values():
        for a, b in itertools.pairwise(history):
            assert not (a is HaState.ACTIVE and b is HaState.STANDBY), history
    active = next(n for n in ("primary", "secondary") if net.engine(n).state is HaState.ACTIVE)
    assert net.engine(active).status(net.now).this_internal_state == "Active with HA standby"
