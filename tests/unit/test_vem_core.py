"""VEM core in virtual time: every rule of the seed's "VSM-VEM Communication Loss"."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from openvsm.errors import LocalProtocolError
from openvsm.vem.core import (
    ApplyDatapath,
    Effect,
    Send,
    Trace,
    VemCore,
    VemState,
    desired_state,
)
from openvsm.vem.model import (
    BridgeDomainConfig,
    DesiredState,
    PortProfileConfig,
    VemConfigSnapshot,
)
from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    ConfigDelta,
    Message,
    SenderRole,
    SwitchRequest,
    VemAttach,
    VemAttachAck,
    VemDetach,
    VemHeartbeat,
    VemPortEvent,
    VethPort,
)

A = ("127.0.0.1", 17003)  # original active
B = ("127.0.0.1", 17103)  # the other VSM (new active)
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
UUID = "11111111-2222-3333-4444-555555555555"
HB = 1.0
HEADLESS = 15.0

SNAPSHOT = VemConfigSnapshot(
    config_seq=7,
    vlans=(10, 20),
    port_profiles=(
        PortProfileConfig(name="vm-net", access_vlan=10),
        PortProfileConfig(name="trunk", mode="trunk", allowed_vlans=(10, 20, 30)),
        PortProfileConfig(name="vx", bridge_domain="bd1", max_macs=4),
    ),
    bridge_domains=(BridgeDomainConfig(name="bd1", segment_id=5000),),
    vteps=("10.0.0.2", "10.0.0.3"),
)


_NONCES = itertools.count(1001)
_LAST_NONCE = [0]


def _nonce() -> int:
    """The cores' attach nonces: deterministic; a FakeVsm's ack echoes the newest."""
    _LAST_NONCE[0] = next(_NONCES)
    return _LAST_NONCE[0]


class FakeVsm:
    """Builds authentic-looking frames from one VSM (sequence numbers increase)."""

    def __init__(self, mac: str, epoch: int, role: SenderRole = SenderRole.PRIMARY) -> None:
        self.mac = mac
        self.epoch = epoch
        self.role = role
        self._seq = itertools.count(1)

    def frame(self, msg: Message, seq: int | None = None, epoch: int | None = None) -> Frame:
        return Frame(
            role=self.role,
            mac=self.mac,
            epoch=self.epoch if epoch is None else epoch,
            seq=next(self._seq) if seq is None else seq,
            msg=msg,
        )

    def ack(
        self, module: int = 3, snapshot: VemConfigSnapshot = SNAPSHOT, nonce: int | None = None
    ) -> Frame:
        """An accepted ack of the newest attach a core sent (or of ``nonce``)."""
        return self.frame(
            VemAttachAck(
                host_uuid=UUID,
                accepted=True,
                module=module,
                config=msgspec.msgpack.encode(snapshot),
                config_seq=snapshot.config_seq,
                nonce=_LAST_NONCE[0] if nonce is None else nonce,
            )
        )

    def heartbeat(self) -> Frame:
        return self.frame(VemHeartbeat(host_uuid=UUID, module=3, config_seq=7))

    def switch(self, addr: tuple[str, int]) -> Frame:
        return self.frame(SwitchRequest(vsm_addr=f"{addr[0]}:{addr[1]}"))


def st(core: VemCore) -> VemState:
    """The state, read through a call so mypy does not narrow it between steps."""
    return core.state


def new_core() -> VemCore:
    return VemCore(
        host_uuid=UUID,
        host_name="host-1",
        host_ip="10.0.0.1",
        vsms=(A, B),
        heartbeat_interval=HB,
        headless_after=HEADLESS,
        nonces=_nonce,
    )


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def applies(effects: list[Effect]) -> list[DesiredState]:
    return [e.desired for e in effects if isinstance(e, ApplyDatapath)]


def run_until(core: VemCore, now: float, until: float) -> list[Effect]:
    """Advance virtual time to ``until`` firing every deadline on the way."""
    out: list[Effect] = []
    while core.next_deadline() <= until:
        now = max(now, core.next_deadline())
        out += core.tick(now)
    return out


def attached_core(vsm: FakeVsm, addr: tuple[str, int] = A) -> VemCore:
    core = new_core()
    core.attach_port("vm-1", "vm-net", "02:00:00:00:01:01")
    core.start(0.0)
    core.on_frame(vsm.ack(), addr, 0.1)
    assert st(core) is VemState.ATTACHED
    return core


def test_boot_attaches_to_every_known_vsm_until_an_active_accepts() -> None:
    core = new_core()
    effects = core.start(0.0)
    targets = [s.addr for s in sends(effects) if isinstance(s.msg, VemAttach)]
    assert targets == [A, B]
    assert core.next_deadline() == pytest.approx(HB)
    again = core.tick(HB)
    assert [s.addr for s in sends(again)] == [A, B]
    vsm = FakeVsm(MAC_B, epoch=2)
    effects = core.on_frame(vsm.ack(), B, 1.5)
    assert st(core) is VemState.ATTACHED
    assert core.active_addr == B and core.module == 3 and core.highest_epoch == 2
    hb = [s for s in sends(effects) if isinstance(s.msg, VemHeartbeat)]
    assert hb and hb[0].addr == B
    # From now on: heartbeats only, every interval, to the active.
    effects = core.tick(2.5)
    assert [(s.addr, type(s.msg)) for s in sends(effects)] == [(B, VemHeartbeat)]


def test_refused_attach_is_counted_and_retried() -> None:
    core = new_core()
    core.start(0.0)
    vsm = FakeVsm(MAC_A, 1)
    refusal = vsm.frame(
        VemAttachAck(host_uuid=UUID, accepted=False, reason="module limit 1", nonce=_LAST_NONCE[0])
    )
    effects = core.on_frame(refusal, A, 0.1)
    assert st(core) is VemState.BOOTING
    assert core.counters["attach_refused"] == 1
    assert any("module limit" in e.text for e in effects if isinstance(e, Trace))
    assert sends(core.tick(1.0))


def test_heartbeats_from_a_new_active_without_switch_request_do_not_move_the_vem() -> None:
    a, b = FakeVsm(MAC_A, 1), FakeVsm(MAC_B, 2, SenderRole.SECONDARY)
    core = attached_core(a)
    now = 0.1
    for _ in range(60):  # a minute of heartbeats from both actives
        now += HB
        core.on_frame(a.heartbeat(), A, now)
        assert core.on_frame(b.heartbeat(), B, now) == []
        core.tick(now)
    assert st(core) is VemState.ATTACHED and core.active_addr == A
    assert core.counters["foreign_heartbeats_ignored"] == 60


def test_switch_request_from_new_active_detaches_and_attaches_to_it() -> None:
    a, b = FakeVsm(MAC_A, 1), FakeVsm(MAC_B, 2, SenderRole.SECONDARY)
    core = attached_core(a)
    boot_nonce = _LAST_NONCE[0]  # the boot attach went to A and B; B has not answered
    core.on_frame(b.heartbeat(), B, 1.0)
    effects = core.on_frame(b.switch(B), B, 1.1)
    out = [(s.addr, type(s.msg)) for s in sends(effects)]
    assert (A, VemDetach) in out and (B, VemAttach) in out
    attach = next(s.msg for s in sends(effects) if isinstance(s.msg, VemAttach))
    assert attach.reason == "switch" and [p.name for p in attach.ports] == ["vnet1"]
    assert st(core) is VemState.SWITCHING
    # The old active's heartbeats and acks no longer count.
    assert core.on_frame(a.heartbeat(), A, 1.2) == []
    # An ack of the old active (stale epoch): not taken, answered with a detach.
    stale = sends(core.on_frame(a.ack(nonce=boot_nonce), A, 1.3))
    assert [(x.addr, type(x.msg)) for x in stale] == [(A, VemDetach)]
    assert st(core) is VemState.SWITCHING
    core.on_frame(b.ack(module=3), B, 1.4)
    assert st(core) is VemState.ATTACHED and core.active_addr == B
    assert core.highest_epoch == 2 and core.counters["switches"] == 1


def test_a_second_ack_of_a_headless_round_is_answered_with_a_detach() -> None:
    """Headless (or booting), the VEM asks every VSM; during a split both
    actives accept. The first ack wins; the other VSM is told at once that the
    VEM is not attached to it (it would list the module ``ok`` -- and count it
    for a split-brain resolution -- until its loss time)."""
    a, b = FakeVsm(MAC_A, 3), FakeVsm(MAC_B, 4, SenderRole.SECONDARY)
    core = new_core()
    effects = core.start(0.0)
    assert [s.addr for s in sends(effects)] == [A, B]
    n1 = _LAST_NONCE[0]
    core.tick(HB)
    n2 = _LAST_NONCE[0]
    core.tick(2 * HB)
    n3 = _LAST_NONCE[0]
    assert len({n1, n2, n3}) == 3  # a fresh nonce per attach round
    core.on_frame(a.ack(nonce=n3), A, 2.1)
    assert st(core) is VemState.ATTACHED and core.active_addr == A
    late = sends(core.on_frame(b.ack(nonce=n3), B, 2.12))
    assert [(x.addr, type(x.msg)) for x in late] == [(B, VemDetach)]
    detach = late[0].msg
    assert isinstance(detach, VemDetach) and detach.host_uuid == UUID
    assert detach.reason == f"attached to {A[0]}:{A[1]}"
    assert core.counters["stray_acks_detached"] == 1
    assert st(core) is VemState.ATTACHED and core.active_addr == A
    # The same from a VSM of a lower epoch (chaos: the ack of the split-brain
    # side the VEM had not picked came after it attached to the other).
    old = FakeVsm("02:00:00:00:00:0c", 2)
    stale = sends(core.on_frame(old.ack(nonce=n1), ("127.0.0.1", 17203), 2.125))
    assert [type(x.msg) for x in stale] == [VemDetach]
    assert isinstance(stale[0].msg, VemDetach) and "epoch 2 is stale" in stale[0].msg.reason
    # A refusal from the other VSM needs no answer; the active's re-ack neither.
    no = b.frame(VemAttachAck(host_uuid=UUID, accepted=False, reason="full", nonce=n1))
    assert not sends(core.on_frame(no, B, 2.13))
    assert not [
        x for x in sends(core.on_frame(a.ack(nonce=n2), A, 2.14)) if isinstance(x.msg, VemDetach)
    ]
    # Every attach is answered now: one more ack (a capture replayed under a
    # fresh sequence number, or forged) is dropped, counted, and answered with nothing.
    assert core.on_frame(b.ack(nonce=n3), B, 2.15) == []
    assert core.counters["unsolicited_acks"] == 1


def test_stale_epoch_switch_request_and_ack_are_ignored() -> None:
    a = FakeVsm(MAC_A, 5)
    old = FakeVsm(MAC_B, 4, SenderRole.SECONDARY)
    core = attached_core(a)
    effects = core.on_frame(old.switch(B), B, 1.0)
    assert st(core) is VemState.ATTACHED and core.active_addr == A
    assert not sends(effects)
    assert core.counters["stale_epoch"] == 1
    # Headless later: a stale ack still cannot capture the VEM.
    run_until(core, 1.0, 0.1 + HEADLESS)
    assert st(core) is VemState.HEADLESS
    core.on_frame(old.ack(), B, 20.0)
    assert st(core) is VemState.HEADLESS
    assert core.counters["stale_epoch"] == 2


def test_losing_the_active_goes_headless_at_exactly_the_configured_time() -> None:
    a, b = FakeVsm(MAC_A, 1), FakeVsm(MAC_B, 2, SenderRole.SECONDARY)
    core = attached_core(a)
    last = 3.0
    core.on_frame(a.heartbeat(), A, last)
    assert core.next_deadline() <= last + HEADLESS
    now = last
    # Only the new active is heard: ignored until headless.
    while now + HB < last + HEADLESS:
        now += HB
        core.on_frame(b.heartbeat(), B, now)
        core.tick(now)
        assert st(core) is VemState.ATTACHED
    before = core.tick(last + HEADLESS - 1e-6)
    assert st(core) is VemState.ATTACHED and not any(isinstance(e, Trace) for e in before)
    effects = core.tick(last + HEADLESS)
    assert st(core) is VemState.HEADLESS
    assert core.counters["headless_events"] == 1
    assert {s.addr for s in sends(effects) if isinstance(s.msg, VemAttach)} == {A, B}
    # Now a heartbeat from the new active triggers an immediate attach to it.
    effects = core.on_frame(b.heartbeat(), B, last + HEADLESS + 0.5)
    assert [(s.addr, type(s.msg)) for s in sends(effects)] == [(B, VemAttach)]
    core.on_frame(b.ack(), B, last + HEADLESS + 0.6)
    assert st(core) is VemState.ATTACHED and core.active_addr == B


def test_headless_after_is_configurable() -> None:
    core = new_core()
    core.headless_after = 4.5
    a = FakeVsm(MAC_A, 1)
    core.start(0.0)
    core.on_frame(a.ack(), A, 0.0)
    core.tick(4.4)
    assert st(core) is VemState.ATTACHED
    core.tick(4.5)
    assert st(core) is VemState.HEADLESS


def test_headless_keeps_ports_and_datapath() -> None:
    a = FakeVsm(MAC_A, 1)
    core = attached_core(a)
    applied = core.applied
    assert applied is not None and applied.ports[0].access_vlan == 10
    effects = run_until(core, 0.1, 100.0)  # long headless period
    assert st(core) is VemState.HEADLESS
    assert applies(effects) == []
    assert core.applied == applied and len(core.ports) == 1
    # Reattaching to a VSM with the same configuration changes nothing.
    b = FakeVsm(MAC_B, 2)
    effects = core.on_frame(b.ack(), B, 101.0)
    assert applies(effects) == []


def test_detach_from_active_makes_vem_headless_and_keeps_datapath() -> None:
    a = FakeVsm(MAC_A, 1)
    core = attached_core(a)
    effects = core.on_frame(a.frame(VemDetach(host_uuid=UUID, reason="reload")), A, 1.0)
    assert st(core) is VemState.HEADLESS and applies(effects) == []


def test_replayed_and_duplicated_frames_are_dropped_and_counted() -> None:
    a = FakeVsm(MAC_A, 1)
    core = attached_core(a)
    hb = a.heartbeat()
    core.on_frame(hb, A, 1.0)
    assert core.on_frame(hb, A, 1.1) == []
    assert core.counters["replayed"] == 1
    old = a.frame(VemHeartbeat(host_uuid=UUID), seq=1)
    core.on_frame(old, A, 1.2)
    assert core.counters["replayed"] == 2
    assert core.counters["heartbeats_received"] == 1
    # A lower epoch from the same VSM is stale too.
    core.on_frame(a.frame(VemHeartbeat(host_uuid=UUID), epoch=0), A, 1.3)
    assert core.counters["stale_epoch"] == 1


def test_config_delta_from_active_updates_datapath_and_others_are_ignored() -> None:
    a, b = FakeVsm(MAC_A, 1), FakeVsm(MAC_B, 2)
    core = attached_core(a)
    new = msgspec.structs.replace(
        SNAPSHOT,
        config_seq=8,
        port_profiles=(PortProfileConfig(name="vm-net", access_vlan=20),),
    )
    raw = msgspec.msgpack.encode(new)
    assert core.on_frame(b.frame(ConfigDelta(config_seq=8, config=raw)), B, 1.0) == []
    assert core.counters["config_ignored"] == 1
    effects = core.on_frame(a.frame(ConfigDelta(config_seq=8, config=raw)), A, 1.1)
    (desired,) = applies(effects)
    assert desired.ports[0].access_vlan == 20 and core.config_seq == 8
    bad = core.on_frame(a.frame(ConfigDelta(config_seq=9, config=b"\xc1junk")), A, 1.2)
    assert core.counters["bad_config"] == 1 and applies(bad) == []


def test_ports_are_reported_to_the_active() -> None:
    a = FakeVsm(MAC_A, 1)
    core = attached_core(a)
    name, effects = core.attach_port("vm-2", "trunk", "02:00:00:00:01:02", name="tap9")
    assert name == "tap9"
    (desired,) = applies(effects)
    assert desired.ports[1].trunk_vlans == (10, 20)
    events = [s.msg for s in sends(effects) if isinstance(s.msg, VemPortEvent)]
    assert events and events[0].attached[0].name == "tap9"
    with pytest.raises(LocalProtocolError):
        core.attach_port("vm-2", "trunk", "02:00:00:00:01:02", name="tap9")
    with pytest.raises(LocalProtocolError):
        core.attach_port("vm-3", "trunk", "not-a-mac")
    effects = core.detach_port("tap9")
    assert [s.msg.detached for s in sends(effects) if isinstance(s.msg, VemPortEvent)] == [["tap9"]]
    with pytest.raises(LocalProtocolError):
        core.detach_port("tap9")


def test_desired_state_from_snapshot() -> None:
    ports = [
        VethPort(name="p1", vm="v", mac="02:00:00:00:00:01", port_profile="vm-net"),
        VethPort(name="p2", vm="v", mac="02:00:00:00:00:02", port_profile="trunk"),
        VethPort(name="p3", vm="v", mac="02:00:00:00:00:03", port_profile="vx"),
        VethPort(name="p4", vm="v", mac="02:00:00:00:00:04", port_profile="nope"),
    ]
    desired, errors = desired_state(SNAPSHOT, ports, "10.0.0.1")
    p1, p2, p3, p4 = desired.ports
    assert (p1.mode, p1.access_vlan) == ("access", 10)
    assert p2.trunk_vlans == (10, 20)
    assert (p3.vni, p3.max_macs) == (5000, 4)
    assert p4.access_vlan == 0 and not p4.enabled
    assert desired.vnis == (5000,) and desired.vxlan_peers == ("10.0.0.2", "10.0.0.3")
    assert any("nope" in e for e in errors) and any("30" in e for e in errors)


def test_unknown_profile_is_traced_and_not_forwarding() -> None:
    core = new_core()
    core.start(0.0)
    core.on_frame(FakeVsm(MAC_A, 1).ack(), A, 0.0)
    _, effects = core.attach_port("vm-x", "missing", "02:00:00:00:09:09")
    (desired,) = applies(effects)
    assert desired.ports[0].access_vlan == 0
    assert any("missing" in e.text for e in effects if isinstance(e, Trace))


def test_hours_of_protocol_time_stay_attached_with_heartbeats() -> None:
    a = FakeVsm(MAC_A, 1)
    core = attached_core(a)
    now = 0.1
    sent = 0
    for _ in range(4 * 3600):
        now += HB
        core.on_frame(a.heartbeat(), A, now)
        sent += len(sends(core.tick(now)))
    assert st(core) is VemState.ATTACHED
    assert sent >= 4 * 3600 - 1
