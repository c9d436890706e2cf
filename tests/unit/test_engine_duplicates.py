"""A third VSM beside a healthy pair, on virtual time (issue 11, points 2-3).

The third VSM is an engine of its own whose frames reach one node of the
pair only, as in a routed (UDP) deployment where a copied config sends to
its peer addresses and nobody sends back. Cases: either role, the same MAC
as a pair node (a duplicate: another boot id of a learnt MAC) or a new MAC,
aimed at either node; frames from the peer's MAC with an unknown boot id;
the relay of what the peer heard; the seed's 8-entry limit with overwrite
and its 1 h expiry. In every case the pair keeps ``Active with HA standby``
/ ``HA standby``: no reset, no split-brain resolution, no reload, no
"standby restarted". A real restart (the old boot falls silent) is still a
restart and is never reported as a collision.
"""

from __future__ import annotations

import itertools

import pytest

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.redundancy.collision import EXPIRY, MAX_ENTRIES
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    Discovery,
    Flag,
    HeardVsm,
    HeartbeatRequest,
    HeartbeatResponse,
    SenderRole,
)

from .enginesim import MACS, ROLES, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
FAST = Timers(0.1, 0.6, 0.5)
P, S = "primary", "secondary"
NEW_MAC = "02:ee:00:00:00:99"
DISRUPTIONS = (
    eng.PeerLost,
    eng.PeerUp,
    eng.Reload,
    eng.BecomeActive,
    eng.BecomeStandby,
    eng.SplitBrainWon,
    eng.SplitBrainLost,
    eng.SwitchRequestNeeded,
)


def other(name: str) -> str:
    return S if name == P else P


def paired(timers: Timers = DEFAULT) -> SimNet:
    net = SimNet(timers)
    net.start_all()
    net.run_until(timers.discovery_window * 2)
    assert net.engine(P).state is HaState.ACTIVE
    assert net.engine(S).state is HaState.STANDBY
    return net


class Third:
    """A third VSM (its own engine) whose frames reach only ``target``."""

    def __init__(self, net: SimNet, role: str, mac: str, target: str, boot: int = 0x7EED) -> None:
        self.net, self.role, self.mac, self.target = net, role, mac, target
        self.engine = eng.Engine(
            eng.EngineConfig(role=role, system_mac=mac, timers=net.timers, boot_id=boot),
            eng.PersistedFacts(),
        )
        self._seq = itertools.count(10**6)
        self.running = False

    def start(self) -> None:
        self.running = True
        self._deliver(self.engine.start(self.net.now))

    def _deliver(self, effects: list[eng.Effect]) -> None:
        for e in effects:
            if isinstance(e, eng.Send):
                frame = Frame(
                    role=ROLES[self.role],
                    mac=self.mac,
                    epoch=self.engine.epoch,
                    seq=next(self._seq),
                    msg=e.msg,
                )
                self.net.inject(self.target, frame, e.iface)

    def run_until(self, t_end: float) -> None:
        """Run the pair and this VSM together until ``t_end``."""
        while self.running:
            due = self.engine.next_deadline()
            if due > t_end:
                break
            self.net.run_until(due)
            self._deliver(self.engine.tick(self.net.now))
        self.net.run_until(t_end)

    def run_for(self, dt: float) -> None:
        self.run_until(self.net.now + dt)


def assert_pair_undisturbed(net: SimNet, since: float) -> None:
    act, sby = net.engine(P), net.engine(S)
    assert act.state is HaState.ACTIVE and sby.state is HaState.STANDBY
    assert act.status(net.now).this_internal_state == "Active with HA standby"
    assert sby.status(net.now).this_internal_state == "HA standby"
    assert act.status(net.now).peer_present and not act.status(net.now).split_brain
    for name in (P, S):
        node = net.node(name)
        bad = [e for e in node.effects(since) if isinstance(e, DISRUPTIONS)]
        assert bad == [], (name, bad)
        assert node.reloads == 0
        orders = [
            e
            for e in node.effects(since)
            if isinstance(e, eng.Send)
            and isinstance(e.msg, HeartbeatRequest)
            and e.msg.flags & Flag.RESET_ORDERED
        ]
        assert orders == [], name
        assert not [t for t in node.traces() if "restarted" in t or "split-brain" in t]


def macs(entries: tuple[object, ...]) -> list[str]:
    return [e.mac for e in entries]  # type: ignore[attr-defined]


# ---- a third VSM, every combination -----------------------------------------


@pytest.mark.parametrize("timers", [DEFAULT, FAST], ids=["seed", "fast"])
@pytest.mark.parametrize("role", [P, S])
@pytest.mark.parametrize("target", [P, S])
@pytest.mark.parametrize("same_mac", [True, False], ids=["same-mac", "new-mac"])
def test_third_vsm_is_reported_and_the_pair_is_undisturbed(
    timers: Timers, role: str, target: str, same_mac: bool
) -> None:
    net = paired(timers)
    t0 = net.now
    mac = MACS[role] if same_mac else NEW_MAC
    third = Third(net, role, mac, target)
    third.start()
    third.run_for(60 * timers.heartbeat_interval)
    assert third.engine.state is HaState.ACTIVE  # alone: it never hears the pair
    assert_pair_undisturbed(net, t0)
    # The node of the colliding role shows it as its own collision (directly when
    # it is the target, relayed by its partner otherwise); the partner that heard
    # it shows it as a collision of the other role.
    dup_node = role
    st = net.engine(dup_node).status(net.now)
    assert macs(st.collisions) == [mac]
    if target != role:
        heard = net.engine(target).status(net.now)
        assert macs(heard.peer_collisions) == [mac]
        assert heard.collisions == ()
        assert st.collisions[0].ifaces == frozenset({"relayed"})
        reason = "collision" if same_mac else "bad_mac"
        ctr = net.engine(target).counters()
        assert ctr["control"][f"drop_{reason}"] > 0 and ctr["mgmt"][f"drop_{reason}"] > 0
        assert net.engine(dup_node).counters()["control"]["relay_recv"] >= 1
        # The relayed time follows the heard time: it rides the first heartbeat
        # after the relay interval.
        lag = heard.peer_collisions[0].last_seen - st.collisions[0].last_seen
        assert 0 <= lag <= eng.RELAY_INTERVAL + timers.heartbeat_interval + 1e-9
    else:
        assert st.collisions[0].ifaces == frozenset({"control", "mgmt"})
    # Nobody else shows anything.
    for name in (P, S):
        s = net.engine(name).status(net.now)
        expected_peer = [mac] if name == target and target != role else []
        assert macs(s.peer_collisions) == expected_peer, name


def test_duplicate_of_the_active_traced_once_and_never_taken_as_a_restart() -> None:
    net = paired()
    t0 = net.now
    third = Third(net, P, MACS[P], S, boot=0xD0B)
    third.start()
    third.run_for(30.0)
    assert_pair_undisturbed(net, t0)
    dup = [t for t in net.node(S).traces() if "duplicate" in t]
    assert dup == [
        f"role collision heard: a duplicate primary {MACS[P]} (boot d0b) talks while this "
        f"node's primary (boot {net.node(P).boot:x}) does; reported to the primary, never "
        "taken as its restart"
    ]
    assert [t for t in net.node(P).traces() if "role collision" in t] == [
        f"role collision: another primary supervisor {MACS[P]} reported by the secondary"
    ]
    # The standby answers only its real active: one response per real request.
    reqs = [e for e in net.node(P).effects(t0) if isinstance(e, eng.Send)]
    resps = [
        e
        for e in net.node(S).effects(t0)
        if isinstance(e, eng.Send) and isinstance(e.msg, HeartbeatResponse)
    ]
    assert len(resps) == len([e for e in reqs if isinstance(e.msg, HeartbeatRequest)])
    # The duplicate's higher epoch (it went active on its own) fences nothing.
    assert net.engine(S).epoch == net.engine(P).epoch == 1


def test_duplicate_of_the_standby_does_not_cost_the_active_its_standby() -> None:
    net = paired()
    t0 = net.now
    third = Third(net, S, MACS[S], P, boot=0xD0B)
    third.start()
    third.run_for(40.0)  # beyond the loss interval: the real standby stays present
    assert_pair_undisturbed(net, t0)
    assert net.engine(P).counters()["control"]["drop_collision"] > 0
    assert macs(net.engine(S).status(net.now).collisions) == [MACS[S]]


# ---- frames from the peer's MAC with an unknown boot id ----------------------


def _from(role: str, msg: object, epoch: int = 50) -> Frame:
    return Frame(role=ROLES[role], mac=MACS[role], epoch=epoch, seq=1, msg=msg)  # type: ignore[arg-type]


def test_unknown_boot_of_the_peer_mac_is_held_then_a_duplicate() -> None:
    net = paired()
    t0 = net.now
    sby = net.engine(S)
    # A request from the active's MAC, another boot, a high epoch and the
    # flags that would move a standby: held (counted stale), nothing acts.
    rogue = HeartbeatRequest(
        state="active", flags=int(Flag.RESET_ORDERED | Flag.SWITCHOVER), boot_id=0xBAD
    )
    assert net.inject(S, _from(P, rogue), Iface.CONTROL) == []
    assert sby.counters()["control"]["drop_stale"] == 1
    assert sby.status(net.now).peer_collisions == ()
    # The real active talks again: the unknown boot interleaved, a duplicate.
    net.run_for(1.0)
    assert macs(sby.status(net.now).peer_collisions) == [MACS[P]]
    # From now on each frame of it is a counted collision, whatever it carries.
    d = Discovery(state="initializing", boot_id=0xBAD)
    assert net.inject(S, _from(P, d), Iface.MGMT) == []
    assert sby.counters()["mgmt"]["drop_collision"] == 1
    net.run_for(3.0)  # the relay reaches the active
    assert macs(net.engine(P).status(net.now).collisions) == [MACS[P]]
    assert_pair_undisturbed(net, t0)
    # The same towards the active: a response from the standby's MAC, unknown boot.
    act = net.engine(P)
    resp = HeartbeatResponse(state="standby", flags=int(Flag.RESET_REQUESTED), boot_id=0xBAD)
    assert net.inject(P, _from(S, resp, epoch=1), Iface.CONTROL) == []
    net.run_for(2.0)
    assert macs(act.status(net.now).peer_collisions) == [MACS[S]]
    assert_pair_undisturbed(net, t0)


def test_frames_queued_together_are_not_an_interleaving() -> None:
    """A receiver that was stopped reads its socket queues at one instant: a new
    boot's frame next to the old boot's last ones is not a duplicate, and once
    the old boot is silent the new one is the peer's restart: at once when it
    names this active (two-way contact), else once the old boot is silent for the
    loss interval (before that it may be a stall of the real standby)."""
    net = paired(FAST)
    act = net.engine(P)
    net.kill(S)
    old = net.node(S).boot
    new = HeartbeatResponse(state="standby", boot_id=0x5EC)
    assert net.inject(P, _from(S, new, epoch=1), Iface.MGMT) == []  # held
    net.inject(P, _from(S, HeartbeatResponse(state="standby", boot_id=old), epoch=1), Iface.CONTROL)
    assert act.status(net.now).peer_collisions == ()
    assert act.counters()["mgmt"]["drop_stale"] == 1
    net.run_for(2 * FAST.heartbeat_interval + 0.01)  # the old boot is silent now
    assert net.inject(P, _from(S, new, epoch=1), Iface.CONTROL) == []  # still held
    assert act.counters()["control"]["drop_stale"] == 1 and act.status(net.now).peer_present
    proven = HeartbeatResponse(state="standby", boot_id=0x5EC, peer_boot=net.node(P).boot)
    out = net.inject(P, _from(S, proven, epoch=1), Iface.CONTROL)
    assert [type(e).__name__ for e in out if isinstance(e, eng.PeerLost | eng.PeerUp)] == [
        "PeerLost",
        "PeerUp",
    ]
    assert act.status(net.now).peer_collisions == () and act.status(net.now).peer_present


# ---- a real restart is still a restart -------------------------------------


@pytest.mark.parametrize("timers", [DEFAULT, FAST], ids=["seed", "fast"])
def test_standby_restart_is_taken_once_its_old_boot_is_silent(timers: Timers) -> None:
    net = paired(timers)
    t0 = net.now
    net.kill(S)
    net.run_for(timers.heartbeat_interval / 2)
    net.restart(S)  # a new boot while the old one was heard half an interval ago
    net.run_for(timers.discovery_window + 4 * timers.heartbeat_interval)
    act = net.engine(P)
    assert act.state is HaState.ACTIVE and act.status(net.now).peer_present
    assert net.engine(S).state is HaState.STANDBY
    # The restarted standby answers a request naming this active: two-way
    # contact, taken at once (the next request after its boot).
    ups = net.node(P).of(eng.PeerUp, t0)
    assert len(ups) == 1 and ups[0][0] - t0 <= 1.5 * timers.heartbeat_interval + 1e-9
    for name in (P, S):
        st = net.engine(name).status(net.now)
        assert st.collisions == () and st.peer_collisions == (), name
        assert not [t for t in net.node(name).traces() if "duplicate" in t]


def test_active_restart_is_taken_once_its_old_boot_is_silent() -> None:
    net = paired()
    net.run_for(0.5)  # the last request of the old boot was half an interval ago
    t0 = net.now
    net.restart(P)  # hamgr restart on the active: new boot id, persisted epoch
    # Its discovery is held, but answered: it is active again at once...
    net.run_for(0.001)
    ((t_active, _),) = net.node(P).of(eng.BecomeActive, t0)
    assert t_active == t0
    assert net.engine(S).counters()["control"]["drop_stale"] >= 1  # held
    # ... and its first request names the standby's boot (it heard the answer):
    # two-way contact, the standby follows it at once, the old boot ran 0.5 s ago.
    ((t_up, _),) = net.node(P).of(eng.PeerUp, t0)
    assert t_up == t0
    net.run_for(5.0)
    assert net.engine(P).state is HaState.ACTIVE and net.engine(P).status(net.now).peer_present
    assert net.engine(S).state is HaState.STANDBY
    assert not net.node(S).of(eng.BecomeActive, t0)
    for name in (P, S):
        st = net.engine(name).status(net.now)
        assert st.collisions == () and st.peer_collisions == (), name


# ---- relay ------------------------------------------------------------------


def test_relay_is_rate_limited_and_carries_only_fresh_entries() -> None:
    net = paired(FAST)
    third = Third(net, P, NEW_MAC, S)
    third.start()
    third.run_for(10.0)  # 100 heartbeats of the third VSM
    relays = [
        e
        for e in net.node(S).effects()
        if isinstance(e, eng.Send) and isinstance(e.msg, HeartbeatResponse) and e.msg.heard
    ]
    assert 8 <= len(relays) <= 11  # about once a second
    assert all(r.msg.heard[0].mac == NEW_MAC for r in relays)  # type: ignore[union-attr]
    # The third VSM stops: its last update is relayed once, then nothing.
    third.running = False

    def count() -> int:
        return len(
            [
                e
                for e in net.node(S).effects()
                if isinstance(e, eng.Send) and isinstance(e.msg, HeartbeatResponse) and e.msg.heard
            ]
        )

    n = len(relays)
    net.run_for(1.5)
    assert count() <= n + 1
    n = count()
    net.run_for(5.0)
    assert count() == n


def test_bad_relay_entries_are_counted_and_dropped() -> None:
    net = paired()
    sby = net.engine(S)
    junk = (
        HeardVsm(mac="not-a-mac", age_ms=0),
        HeardVsm(mac=NEW_MAC, age_ms=-5),
        HeardVsm(mac=NEW_MAC, age_ms=int(EXPIRY * 1000) + 1),
        *(HeardVsm(mac=f"02:ee:00:00:01:{i:02x}", age_ms=10) for i in range(20)),
    )
    req = HeartbeatRequest(state="active", boot_id=net.node(P).boot, heard=junk)
    out = net.inject(S, _from(P, req, epoch=1), Iface.CONTROL)
    assert [e for e in out if isinstance(e, eng.Send)]  # answered as usual
    ctr = sby.counters()["control"]
    assert ctr["drop_malformed"] == len(junk) - (MAX_ENTRIES - 3)
    assert ctr["relay_recv"] == MAX_ENTRIES - 3
    assert len(sby.status(net.now).collisions) == MAX_ENTRIES - 3
    assert sby.state is HaState.STANDBY


# ---- the seed's limits on relayed collisions ----------------------------------


def test_nine_heard_primaries_eight_entries_overwrite_on_both_nodes() -> None:
    net = paired()
    t0 = net.now
    macs9 = [f"02:ee:00:00:00:{i:02x}" for i in range(1, 10)]
    for i, mac in enumerate(macs9):
        req = HeartbeatRequest(state="active", boot_id=1 + i)
        f = Frame(role=SenderRole.PRIMARY, mac=mac, epoch=1, seq=1, msg=req)
        net.inject(S, f, Iface.CONTROL if i % 2 else Iface.MGMT)
        net.run_for(1.5)  # each one relayed on its own, the first the oldest
    net.run_for(2.0)
    heard = net.engine(S).status(net.now)
    assert len(heard.peer_collisions) == MAX_ENTRIES
    assert set(macs(heard.peer_collisions)) == set(macs9[1:])
    ((old, new),) = [(o.old_mac, o.new_mac) for o in heard.peer_overwrites]
    assert (old, new) == (macs9[0], macs9[8])
    mine = net.engine(P).status(net.now)
    assert set(macs(mine.collisions)) == set(macs9[1:])
    assert [(o.old_mac, o.new_mac) for o in mine.overwrites] == [(macs9[0], macs9[8])]
    assert any("overwritten" in t for t in net.node(P).traces())
    assert any("overwritten" in t for t in net.node(S).traces())
    assert_pair_undisturbed(net, t0)


def test_relayed_collision_expires_an_hour_after_it_was_last_heard() -> None:
    net = paired()
    third = Third(net, S, NEW_MAC, P)
    third.start()
    third.run_for(10.0)
    third.running = False
    stopped = net.now
    net.run_for(2.5)  # the last update is relayed
    heard_at = net.engine(P).status(net.now).peer_collisions[0].last_seen
    mine_at = net.engine(S).status(net.now).collisions[0].last_seen
    assert stopped - 1.0 <= heard_at <= stopped
    assert mine_at == pytest.approx(heard_at, abs=0.001)
    net.run_until(mine_at + EXPIRY - 1.0)
    assert macs(net.engine(S).status(net.now).collisions) == [NEW_MAC]
    assert macs(net.engine(P).status(net.now).peer_collisions) == [NEW_MAC]
    net.run_until(heard_at + EXPIRY + 1.0)
    for name in (P, S):
        st = net.engine(name).status(net.now)
        assert st.collisions == () and st.peer_collisions == (), name
    assert any("expired" in t for t in net.node(S).traces())
    assert any("expired" in t for t in net.node(P).traces())
    assert_pair_undisturbed(net, 20.0)


def test_same_role_same_mac_other_boot_is_a_collision_with_our_own_mac() -> None:
    net = paired()
    t0 = net.now
    third = Third(net, P, MACS[P], P, boot=0xC0C0)
    third.start()
    third.run_for(10.0)
    assert macs(net.engine(P).status(net.now).collisions) == [MACS[P]]
    assert_pair_undisturbed(net, t0)


def test_relay_reaches_the_partner_over_mgmt_when_control_is_down() -> None:
    """Degraded pair: the active's requests go on both interfaces and the relay
    rides every one of that round, so the one on mgmt arrives."""
    net = paired()
    net.cut(Iface.CONTROL)
    net.run_for(DEFAULT.degraded_after + 1.0)
    assert net.engine(P).status(net.now).degraded
    t0 = net.now
    third = Third(net, S, NEW_MAC, P)
    third.start()
    third.run_for(10.0)
    assert macs(net.engine(S).status(net.now).collisions) == [NEW_MAC]
    assert net.engine(S).counters()["mgmt"]["relay_recv"] >= 1
    assert not [e for e in net.node(P).effects(t0) if isinstance(e, DISRUPTIONS)]
    assert not [e for e in net.node(S).effects(t0) if isinstance(e, DISRUPTIONS)]


def test_two_way_proof_lets_a_restart_through_but_not_a_known_duplicate() -> None:
    net = paired()
    sby = net.engine(S)
    me = net.node(S).boot
    # A duplicate of the active (no proof: it never heard this standby) ...
    net.inject(S, _from(P, HeartbeatRequest(state="active", boot_id=0xD0B)), Iface.CONTROL)
    net.run_for(1.0)
    assert macs(sby.status(net.now).peer_collisions) == [MACS[P]]
    # ... stays a duplicate even if it later names this standby.
    proof = HeartbeatRequest(state="active", boot_id=0xD0B, peer_boot=me)
    assert net.inject(S, _from(P, proof), Iface.CONTROL) == []
    assert sby.status(net.now).state is HaState.STANDBY
    # A new boot that names this standby while the old one still talks is the
    # active's successor: followed at once, never reported.
    succ = HeartbeatRequest(state="active", boot_id=0x5CC, peer_boot=me)
    out = net.inject(S, _from(P, succ, epoch=2), Iface.CONTROL)
    assert next(e for e in out if isinstance(e, eng.Send)).msg.peer_boot == 0x5CC  # type: ignore[union-attr]
    assert macs(sby.status(net.now).peer_collisions) == [MACS[P]]
    assert sby.counters()["control"]["drop_stale"] == 1  # the duplicate's first frame only


def test_a_boot_held_against_an_old_partner_is_not_judged_against_a_new_one() -> None:
    net = paired()
    sby = net.engine(S)
    # Held against the active's first boot, then that boot and the held one fall
    # silent; the standby takes over, a new standby arrives later: no report.
    net.inject(S, _from(P, HeartbeatRequest(state="active", boot_id=0xDEAD)), Iface.CONTROL)
    net.kill(P)
    net.run_for(DEFAULT.max_loss_interval + 1.0)
    assert sby.state is HaState.ACTIVE
    net.restart(P)
    net.run_for(10.0)
    assert net.engine(P).state is HaState.STANDBY
    for name in (P, S):
        st = net.engine(name).status(net.now)
        assert st.collisions == () and st.peer_collisions == (), name


@pytest.mark.parametrize("timers", [DEFAULT, FAST], ids=["seed", "fast"])
def test_duplicate_during_a_stall_of_the_standby_is_not_its_restart(timers: Timers) -> None:
    """Measured in the lab (chaos seed 6005, fault 137): a same-MAC copy of the
    standby starts beside the pair, aimed at the active; the copy's start (five
    processes on a loaded 2-core machine) stalls the real standby's responses for
    a little over two heartbeat intervals, while the copy's first discovery goes
    straight to the active. The standby is still alive by the active's own rule
    (well within the loss interval), so that boot is held, then found a
    duplicate when the stalled responses arrive: never "standby restarted"."""
    net = paired(timers)
    hb = timers.heartbeat_interval
    net.run_for(hb * 0.05)  # just after a heartbeat round
    t0 = net.now
    net.latency = 2.8 * hb  # the standby (and the active's requests) stall
    net.run_for(2.2 * hb)  # the active's last response is > 2 intervals old
    net.latency = 0.0
    third = Third(net, S, MACS[S], P, boot=0xD0B)
    third.start()
    third.run_for(40 * hb)
    assert_pair_undisturbed(net, t0)
    assert macs(net.engine(P).status(net.now).peer_collisions) == [MACS[S]]
    assert [t for t in net.node(P).traces() if "duplicate" in t] == [
        f"role collision heard: a duplicate secondary {MACS[S]} (boot d0b) talks while this "
        f"node's secondary (boot {net.node(S).boot:x}) does; reported to the secondary, never "
        "taken as its restart"
    ]
