"""At most one active once the bound has passed (seed 6005, fault 987), on
virtual time.

The campaign's report: ``two_actives`` after fault 987, a 0.5 s cut of both
interfaces right after fault 986, a 1.8 s one-way loss standby -> active. The
replay below shows what happened: the one-way loss is handled by the seed's
rule (the active declares the standby lost, the standby, told "no standby",
asks to be reset and is reset on the heal); the 0.5 s cut then drops five
heartbeat requests of the fast profile (interval 0.1 s, loss 0.6 s), so the
sixth arrives at the standby's loss deadline. One millisecond late, and the
standby takes over ~0.1 s *after* the heal: a split-brain that starts after
the fault is over, resolved at once (the loser reloads), never outliving the
bound ``fault start + loss interval + resolution``. The campaign had judged
the pair recovered in the 0.1 s between the heal and the takeover; its
``Settle`` rule now waits for the quiet point.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.config import Timers
from openvsm.lab.chaos import Settle
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.messages import HeartbeatRequest

from .enginesim import SimNet, other

FAST = Timers(0.1, 0.6, 0.4)  # the lab's fast profile (heartbeat, loss, discovery)
P, S = "primary", "secondary"
STEP = 0.005  # the campaign samples far less often; 5 ms misses nothing here


def actives(net: SimNet) -> list[str]:
    return [n for n in (P, S) if net.node(n).running and net.engine(n).state is HaState.ACTIVE]


def healthy(net: SimNet) -> bool:
    """The campaign's recovery condition: Active with HA standby + a standby."""
    act = actives(net)
    if len(act) != 1:
        return False
    peer = net.node(other(act[0]))
    return (
        net.engine(act[0]).status(net.now).this_internal_state == "Active with HA standby"
        and peer.running
        and peer.engine.state is HaState.STANDBY
    )


def last_request_delivery(net: SimNet, to: str) -> float:
    return max(
        t for t, _, dst, _, msg in net.delivered if dst == to and isinstance(msg, HeartbeatRequest)
    )


def test_seed_6005_fault_987_two_actives_only_within_the_bound() -> None:
    net = SimNet(FAST, latency=0.001, auto_restart=True)
    net.start_all()
    net.run_until(3.0)
    active, standby = P, S
    assert healthy(net)

    # fault 986: partition_oneway s->a, 1.8 s (both interfaces)
    for iface in (Iface.CONTROL, Iface.MGMT):
        net.cut(iface, src=standby)
    net.run_for(1.8)
    assert net.engine(active).status(net.now).this_internal_state == "Active with no standby"
    assert net.engine(standby).status(net.now).inconsistent  # it asks to be reset
    for iface in (Iface.CONTROL, Iface.MGMT):
        net.heal(iface, src=standby)
    reloads = net.node(standby).reloads
    net.until(lambda: healthy(net) and net.node(standby).reloads > reloads, 5.0)
    assert actives(net) == [active]  # the one-way loss: reset, never two actives
    net.run_for(1.0)  # the campaign's observation, the writer resumes

    # fault 987: partition_both 0.5 s, cut just after a request reached the standby
    net.until(lambda: last_request_delivery(net, standby) >= net.now - STEP, 1.0, step=0.0005)
    last = last_request_delivery(net, standby)
    cut = net.now
    net.cut(Iface.CONTROL)
    net.cut(Iface.MGMT)
    net.run_for(0.5 + 0.002)  # the proxy's heal takes a few ms
    net.heal(Iface.CONTROL)
    net.heal(Iface.MGMT)
    heal = net.now
    net.latency = 0.002  # the sixth request is 1 ms later than the first five
    # The campaign's old single sample right after the heal: "recovered".
    assert healthy(net) and actives(net) == [active]

    settle = Settle.after(cut, FAST.max_loss_interval, FAST.heartbeat_interval)
    settled_at: float | None = None
    both: list[float] = []
    while net.now < heal + 5.0:
        net.run_for(STEP)
        if len(actives(net)) > 1:
            both.append(net.now)
        if settled_at is None and settle.sample(net.now, healthy(net)):
            settled_at = net.now

    # The takeover came after the heal, at the standby's loss deadline.
    became = net.node(standby).of(eng.BecomeActive, since=heal)
    takeovers = [t for t, e in became if "no heartbeat" in e.reason]
    assert takeovers, net.node(standby).traces()[-10:]
    assert takeovers[0] >= last + FAST.max_loss_interval > heal
    # Two actives only during the resolution, and never past the bound.
    assert both, "the split-brain this replays did not happen"
    assert both[-1] - both[0] <= 2 * FAST.heartbeat_interval
    assert both[-1] <= cut + FAST.max_loss_interval + 2 * FAST.heartbeat_interval
    won = [len(net.node(n).of(eng.SplitBrainWon, since=heal)) for n in (P, S)]
    assert sum(won) == 1, won
    # The campaign's Settle rule declares recovery only after all of it.
    assert settled_at is not None and settled_at > both[-1]
    assert settle.since is not None and settle.since > both[-1]
    assert healthy(net)


LINKS = [(iface, src) for iface in (Iface.CONTROL, Iface.MGMT) for src in (P, S, None)]

partitions = st.lists(
    st.tuples(
        st.sampled_from(["cut", "heal", "run"]),
        st.sampled_from(range(len(LINKS))),
        st.sampled_from([0.05, 0.3, 0.45, 0.5, 0.55, 0.6, 0.65, 1.0, 1.8]),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(
    script=partitions,
    jitter=st.sampled_from([0.0, 0.001, 0.003]),
    seed=st.integers(0, 1000),
    logs=st.booleans(),
)
def test_at_most_one_active_once_the_bound_has_passed(
    script: list[tuple[str, int, float]], jitter: float, seed: int, logs: bool
) -> None:
    """Random partitions (any interface, either or both directions, around the
    loss interval), then every link healed: from ``heal + loss interval +
    resolution`` on, never two actives, and the pair is whole again. The
    resolution is immediate when the loser's logs go at once, at most
    ``LOGS_TIMEOUT`` when they are never confirmed."""
    net = SimNet(FAST, latency=0.001, jitter=jitter, seed=seed, auto_restart=True, auto_logs=logs)
    net.start_all()
    net.run_until(3.0)
    for op, link, dt in script:
        iface, src = LINKS[link]
        if op == "cut":
            net.cut(iface, src=src)
        elif op == "heal":
            net.heal(iface, src=src)
        net.run_for(dt)
    net.dropped.clear()
    heal = net.now
    resolution = 3 * FAST.heartbeat_interval + (0.0 if logs else eng.LOGS_TIMEOUT)
    bound = heal + FAST.max_loss_interval + resolution
    while net.now < bound + 10.0:
        net.run_for(STEP)
        if net.now >= bound:
            assert len(actives(net)) <= 1, (net.now - heal, net.node(P).traces()[-8:])
    assert healthy(net), [net.engine(n).status(net.now).this_internal_state for n in (P, S)]
