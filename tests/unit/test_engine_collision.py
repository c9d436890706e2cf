"""Role collisions and peer MAC validation (seed SV3(1.1) note, collision chapter)."""

from __future__ import annotations

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.redundancy.collision import EXPIRY, MAX_ENTRIES
from openvsm.redundancy.engine import HaState, Iface
from openvsm.wire.codec import Frame
from openvsm.wire.messages import Discovery, HeartbeatRequest, SenderRole

from .enginesim import MACS, SimNet

DEFAULT = Timers(1.0, 15.0, 5.0)
P, S = "primary", "secondary"


def fake_mac(i: int) -> str:
    return f"00:50:56:97:02:{i:02x}"


def hb(role: SenderRole, mac: str, epoch: int = 1) -> Frame:
    return Frame(role=role, mac=mac, epoch=epoch, seq=1, msg=HeartbeatRequest(state="active"))


def test_collision_recorded_traced_and_state_unchanged() -> None:
    net = SimNet(DEFAULT)
    net.start_all()
    net.run_until(10.0)
    sec = net.engine(S)
    out = net.inject(S, hb(SenderRole.SECONDARY, fake_mac(0x3B)), Iface.CONTROL)
    assert out == [
        eng.Trace(
            "role collision: another secondary supervisor 00:50:56:97:02:3b detected on control"
        ),
        eng.StatusChanged(),
    ]
    # the same MAC again (on mgmt): time updated, no new trace
    net.run_for(5.0)
    assert net.inject(S, hb(SenderRole.SECONDARY, fake_mac(0x3B)), Iface.MGMT) == []
    (entry,) = sec.status(net.now).collisions
    assert (entry.mac, entry.last_seen, entry.first_seen) == (fake_mac(0x3B), 15.0, 10.0)
    assert entry.ifaces == frozenset({"control", "mgmt"})
    assert sec.counters()["control"]["drop_collision"] == 1
    assert sec.counters()["mgmt"]["drop_collision"] == 1
    # a colliding "active" never moves this node: standby stays standby, active stays active
    for _ in range(3):
        net.inject(P, hb(SenderRole.PRIMARY, fake_mac(0x2F), epoch=99), Iface.CONTROL)
        d = Discovery(state="initializing", boot_id=5)
        net.inject(
            P,
            Frame(role=SenderRole.PRIMARY, mac=fake_mac(0x2F), epoch=99, seq=1, msg=d),
            Iface.MGMT,
        )
    net.run_for(30.0)
    assert sec.state is HaState.STANDBY and net.engine(P).state is HaState.ACTIVE
    assert net.engine(P).epoch == 1
    assert [c.mac for c in net.engine(P).status(net.now).collisions] == [fake_mac(0x2F)]
    # our own looped-back frames (our MAC, our boot) are neither collisions nor counted
    own = HeartbeatRequest(state="active", boot_id=net.node(S).boot)
    loop = Frame(role=SenderRole.SECONDARY, mac=MACS[S], epoch=1, seq=1, msg=own)
    assert net.inject(S, loop, Iface.CONTROL) == []
    assert sec.counters()["control"]["drop_collision"] == 1


def test_collision_limit_overwrite_and_expiry() -> None:
    e = eng.Engine(
        eng.EngineConfig(role=S, system_mac=MACS[S], timers=DEFAULT, boot_id=1),
        eng.PersistedFacts(),
    )
    e.start(0.0)
    for i in range(MAX_ENTRIES):
        e.on_frame(hb(SenderRole.SECONDARY, fake_mac(i)), Iface.CONTROL, 100.0 + i)
    # refresh entry 0 so that entry 1 is now the oldest
    e.on_frame(hb(SenderRole.SECONDARY, fake_mac(0)), Iface.MGMT, 200.0)
    out = e.on_frame(hb(SenderRole.SECONDARY, fake_mac(0x99)), Iface.MGMT, 300.0)
    assert out[-1] == eng.Trace(
        f"role collision table full: entry {fake_mac(1)} overwritten by {fake_mac(0x99)}"
    )
    st = e.status(300.0)
    macs = [c.mac for c in st.collisions]
    assert len(macs) == MAX_ENTRIES
    assert fake_mac(1) not in macs and fake_mac(0x99) in macs and fake_mac(0) in macs
    ((old, new, t),) = [(o.old_mac, o.new_mac, o.time) for o in st.overwrites]
    assert (old, new, t) == (fake_mac(1), fake_mac(0x99), 300.0)
    # expiry: one hour after the last collision, not before
    assert fake_mac(2) in [c.mac for c in e.status(102.0 + EXPIRY - 0.001).collisions]
    gone = [x for x in e.tick(102.0 + EXPIRY) if isinstance(x, eng.Trace) and "expired" in x.text]
    assert gone == [eng.Trace(f"role collision entry expired: {fake_mac(2)} (silent for 1 hour)")]
    # entries are removed one by one as their hour passes; the refreshed ones last longer
    macs = [c.mac for c in e.status(200.0 + EXPIRY - 0.001).collisions]
    assert macs == [fake_mac(0), fake_mac(0x99)]
    e.tick(200.0 + EXPIRY)
    assert [c.mac for c in e.status(200.0 + EXPIRY).collisions] == [fake_mac(0x99)]
    assert e.status(200.0 + EXPIRY).overwrites  # the overwrite line lives its own hour
    assert e.next_deadline() <= 300.0 + EXPIRY
    e.tick(300.0 + EXPIRY)
    st = e.status(300.0 + EXPIRY)
    assert st.collisions == () and st.overwrites == ()


# ---- peer MAC validation ----------------------------------------------------


def test_peer_mac_learnt_per_iface_then_enforced() -> None:
    e = eng.Engine(
        eng.EngineConfig(role=P, system_mac=MACS[P], timers=DEFAULT, boot_id=1),
        eng.PersistedFacts(),
    )
    e.start(0.0)
    d = Discovery(state="active", boot_id=3)
    good = Frame(role=SenderRole.SECONDARY, mac="02:00:00:00:00:02", epoch=1, seq=1, msg=d)
    out = e.on_frame(good, Iface.CONTROL, 0.5, src_mac="02:00:00:00:aa:02")
    assert out[:2] == [
        eng.Trace("peer MAC learnt: secondary 02:00:00:00:aa:02 on control"),
        eng.PersistFacts(eng.PersistedFacts(0, {"control": "02:00:00:00:aa:02"})),
    ]
    assert e.state is HaState.STANDBY
    # another MAC with the peer role on that iface: dropped, counted, reported as heard
    out = e.on_frame(hb(SenderRole.SECONDARY, "02:00:00:00:00:02"), Iface.CONTROL, 1.0)
    assert out == [
        eng.Trace(
            "role collision heard: a secondary supervisor 02:00:00:00:00:02 that is not the "
            "learnt secondary sends on control; reported to the secondary"
        ),
        eng.StatusChanged(),
    ]
    assert e.counters()["control"]["drop_bad_mac"] == 1
    assert [c.mac for c in e.status(1.0).peer_collisions] == ["02:00:00:00:00:02"]
    assert e.state is HaState.STANDBY
    assert e.next_deadline() == 0.5 + 15.0  # the rejected heartbeat did not count
    # mgmt learns its own
    out = e.on_frame(hb(SenderRole.SECONDARY, "02:00:00:00:bb:02"), Iface.MGMT, 1.0)
    assert out[1] == eng.PersistFacts(
        eng.PersistedFacts(1, {"control": "02:00:00:00:aa:02", "mgmt": "02:00:00:00:bb:02"})
    )
    # clearing forgets them (VSM replaced)
    out = e.clear_peer_macs()
    assert out[1] == eng.PersistFacts(eng.PersistedFacts(1, {}))
    assert e.on_frame(hb(SenderRole.SECONDARY, "02:00:00:00:00:02"), Iface.CONTROL, 2.0)[0] == (
        eng.Trace("peer MAC learnt: secondary 02:00:00:00:00:02 on control")
    )


def test_persisted_peer_mac_enforced_from_boot() -> None:
    e = eng.Engine(
        eng.EngineConfig(role=P, system_mac=MACS[P], timers=DEFAULT, boot_id=1),
        eng.PersistedFacts(peer_macs={"control": "02:00:00:00:00:02"}),
    )
    e.start(0.0)
    d = Discovery(state="active", boot_id=3)
    rogue = Frame(role=SenderRole.SECONDARY, mac="02:00:00:00:00:66", epoch=9, seq=1, msg=d)
    out = e.on_frame(rogue, Iface.CONTROL, 0.5)
    assert not [x for x in out if not isinstance(x, eng.Trace | eng.StatusChanged)]
    assert e.state is HaState.INITIALIZING
    assert e.counters()["control"]["drop_bad_mac"] == 1
    assert e.status(0.5).peer_macs == {"control": "02:00:00:00:00:02"}


def test_vem_frames_are_unexpected() -> None:
    e = eng.Engine(
        eng.EngineConfig(role=P, system_mac=MACS[P], timers=DEFAULT, boot_id=1),
        eng.PersistedFacts(),
    )
    e.start(0.0)
    f = Frame(
        role=SenderRole.VEM,
        mac="02:00:00:00:00:09",
        epoch=0,
        seq=1,
        msg=hb(SenderRole.VEM, "x").msg,
    )
    assert e.on_frame(f, Iface.CONTROL, 0.1) == []
    assert e.counters()["control"]["drop_unexpected"] == 1
