"""Freshness of VEM frames both ways, attach nonces, the echo rule (issue 12 point 2).

Virtual time: a ``VemCore`` and an active ``ModuleTable`` exchange frames
through ``Exchange`` (no sockets); every frame is captured, then replayed or
reordered into either side.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.modules.table import ModuleTable
from openvsm.modules.table import Send as TableSend
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface
from openvsm.vem.core import Send as VemSend
from openvsm.vem.core import VemCore, VemState
from openvsm.wire.codec import Frame
from openvsm.wire.freshness import OutstandingRequests, new_nonce
from openvsm.wire.messages import (
    LivenessAck,
    LivenessProbe,
    Message,
    SenderRole,
    VemAttach,
    VemAttachAck,
    VemHeartbeat,
)

from .enginesim import MACS
from .test_engine import paired
from .test_modules_table import BDS, PROFILES, VLANS

VSM = ("127.0.0.1", 17003)
VEM = ("127.0.0.1", 18001)
VSM_MAC = "02:00:00:00:00:0a"
VEM_MAC = "02:00:00:00:99:01"
UUID = "11111111-2222-3333-4444-555555555555"
T0 = 1_700_000_000_000_000  # senders number frames from the wall clock in microseconds


def new_table() -> ModuleTable:
    table = ModuleTable(
        module_limit=16,
        listen=f"{VSM[0]}:{VSM[1]}",
        heartbeat_interval=1.0,
        loss_time=15.0,
        wall=lambda: 1e9,
        boot_id=77,
    )
    table.load_config(PROFILES, VLANS, BDS)
    table.became_active(epoch=3, now=0.0)
    return table


def new_core(boot: int = 5, nonces: Any = None) -> VemCore:
    core = VemCore(
        host_uuid=UUID,
        host_name="host-1",
        host_ip="10.0.0.1",
        vsms=(VSM,),
        heartbeat_interval=1.0,
        headless_after=15.0,
        boot_id=boot,
        nonces=nonces or itertools.count(900 + boot * 1000).__next__,
    )
    core.attach_port("vm-1", "vm-net", "02:00:00:00:01:01")
    return core


@dataclass
class Exchange:
    """A VEM core and an active module table on a lossless wire, in virtual time."""

    core: VemCore = field(default_factory=new_core)
    table: ModuleTable = field(default_factory=new_table)
    now: float = 0.0
    vem_seq: int = T0
    vsm_seq: int = T0 + 500
    to_vsm: list[Frame] = field(default_factory=list)  # every frame captured, each way
    to_vem: list[Frame] = field(default_factory=list)

    def vem_frame(self, msg: Message) -> Frame:
        self.vem_seq += 1
        mac = VEM_MAC
        return Frame(SenderRole.VEM, mac, self.core.highest_epoch, self.vem_seq, msg)

    def vsm_frame(self, msg: Message) -> Frame:
        self.vsm_seq += 1
        return Frame(SenderRole.PRIMARY, VSM_MAC, self.table.epoch, self.vsm_seq, msg)

    def from_vem(self, effects: list[Any]) -> None:
        queue = [e for e in effects if isinstance(e, VemSend)]
        while queue:
            send = queue.pop(0)
            frame = self.vem_frame(send.msg)
            self.to_vsm.append(frame)
            for back in self.table.on_frame(frame, VEM, self.now):
                if isinstance(back, TableSend):
                    reply = self.vsm_frame(back.msg)
                    self.to_vem.append(reply)
                    queue += [
                        e
                        for e in self.core.on_frame(reply, VSM, self.now)
                        if isinstance(e, VemSend)
                    ]

    def run(self, until: float, step: float = 0.25) -> None:
        while self.now < until:
            self.now += step
            self.from_vem(self.core.tick(self.now))
            for back in self.table.tick(self.now):
                if isinstance(back, TableSend):
                    reply = self.vsm_frame(back.msg)
                    self.to_vem.append(reply)
                    self.from_vem(self.core.on_frame(reply, VSM, self.now))

    def start(self) -> Exchange:
        self.from_vem(self.core.start(self.now))
        self.run(3.0)
        assert self.core.state is VemState.ATTACHED
        return self


def table_state(table: ModuleTable) -> Any:
    counters = {k: v for k, v in table.counters.items() if k not in ("replayed", "epoch_limit")}
    rows = [
        (m.number, m.host_uuid, m.status, m.addr, m.vem_mac, m.attaches, m.pushed_seq)
        for m in table.modules.values()
    ]
    return rows, sorted(table.veths.of_host(UUID)), counters, table.modules_data()


def core_state(core: VemCore) -> Any:
    status = core.status()
    status.pop("counters")
    timers = (core.next_deadline(), core._timers.last_heard)
    return status, core.active_epoch, core.config, core.switch_target, core.applied, timers


# ---- VEM -> VSM ---------------------------------------------------------------


def test_the_table_drops_and_counts_replayed_vem_frames() -> None:
    ex = Exchange().start()
    before = table_state(ex.table)
    for frame in ex.to_vsm:
        assert ex.table.on_frame(frame, VEM, ex.now) == []
    assert ex.table.counters["replayed"] == len(ex.to_vsm)
    assert table_state(ex.table) == before


def test_the_table_takes_reordered_frames_within_the_window_once() -> None:
    table = new_table()
    ex = Exchange(table=table)
    attach = ex.vem_frame(ex.core._attach_msg("boot", 1))
    late = ex.vem_frame(VemHeartbeat(host_uuid=UUID, boot_id=5))
    newer = ex.vem_frame(VemHeartbeat(host_uuid=UUID, boot_id=5))
    assert table.on_frame(attach, VEM, 0.1)
    table.on_frame(newer, VEM, 0.2)
    table.on_frame(late, VEM, 0.3)  # overtaken on the wire: still fresh
    assert table.counters["replayed"] == 0
    assert table.modules[UUID].hb_received == 2
    table.on_frame(late, VEM, 0.4)
    assert table.counters["replayed"] == 1 and table.modules[UUID].hb_received == 2


def test_a_vem_reboot_is_accepted_its_old_boot_is_not() -> None:
    ex = Exchange().start()
    old_attach = next(f for f in ex.to_vsm if isinstance(f.msg, VemAttach))
    # The agent restarts: new boot id; its numbers continue from the wall clock.
    ex.core = new_core(boot=6)
    ex.vem_seq += 1_000_000
    ex.from_vem(ex.core.start(ex.now))
    ex.run(ex.now + 2.0)
    assert ex.core.state is VemState.ATTACHED and ex.core.module == 3
    assert ex.table.modules[UUID].attaches == 2
    ex.table.on_frame(old_attach, VEM, ex.now)  # the old boot's attach, replayed
    assert ex.table.modules[UUID].attaches == 2
    assert ex.table.counters["replayed"] == 1


def test_the_ack_echoes_the_attach_nonce_and_carries_the_vsm_boot() -> None:
    ex = Exchange().start()
    attaches = [f.msg for f in ex.to_vsm if isinstance(f.msg, VemAttach)]
    acks = [f.msg for f in ex.to_vem if isinstance(f.msg, VemAttachAck)]
    assert [a.nonce for a in acks] == [a.nonce for a in attaches] and acks[0].nonce
    assert {a.boot_id for a in acks} == {77} and {a.boot_id for a in attaches} == {5}


# ---- VSM -> VEM ---------------------------------------------------------------


def test_the_vem_drops_and_counts_replayed_vsm_frames() -> None:
    ex = Exchange().start()
    before = core_state(ex.core)
    for frame in ex.to_vem:
        assert ex.core.on_frame(frame, VSM, ex.now) == []
    assert ex.core.counters["replayed"] == len(ex.to_vem)
    assert core_state(ex.core) == before


def test_a_vsm_frame_from_before_the_first_heard_is_refused() -> None:
    core = new_core()
    core.start(0.0)
    msg = VemHeartbeat(host_uuid=UUID, boot_id=1)
    hb = Frame(SenderRole.PRIMARY, VSM_MAC, 3, T0 + 10, msg)
    withheld = Frame(SenderRole.PRIMARY, VSM_MAC, 3, T0 + 9, msg)
    core.on_frame(hb, VSM, 0.1)
    assert core.on_frame(withheld, VSM, 0.2) == []
    assert core.counters["replayed"] == 1


def test_a_vemmgr_restart_is_accepted() -> None:
    ex = Exchange().start()
    seen = ex.core.counters["heartbeats_received"]
    # vemmgr restarts on the same active: new boot id, numbers from the wall clock.
    ex.table.boot_id = 78
    ex.vsm_seq += 1_000_000
    ex.run(ex.now + 3.0)
    assert ex.core.counters["heartbeats_received"] > seen
    assert ex.core.counters["replayed"] == 0 and ex.core.state is VemState.ATTACHED


def test_a_replayed_attach_ack_never_attaches_the_vem() -> None:
    """An ack captured earlier (an old VSM, an old epoch, or this very VSM) and
    replayed -- under its own or a fresh sequence number, before or after a VEM
    reboot -- is dropped and counted; the VEM stays as it is."""
    ex = Exchange().start()
    (ack,) = [f for f in ex.to_vem if isinstance(f.msg, VemAttachAck)]
    # Under a fresh sequence number (the window cannot stop it): the echo rule does.
    fresh = ex.vsm_frame(ack.msg)
    before = core_state(ex.core)
    assert ex.core.on_frame(fresh, VSM, ex.now) == []
    assert ex.core.counters["unsolicited_acks"] == 1 and core_state(ex.core) == before
    # A rebooted VEM (booting, attaching) is not captured by the old ack either.
    core = new_core(boot=9)
    core.start(100.0)
    for t, frame in enumerate((ack, fresh, ex.vsm_frame(ack.msg))):
        assert core.on_frame(frame, VSM, 100.1 + t) == []
    assert core.state is VemState.BOOTING
    assert core.counters["unsolicited_acks"] >= 2
    # Headless with the old active's epoch higher: still no.
    old_epoch = Frame(
        SenderRole.SECONDARY, "02:00:00:00:00:0b", 1, T0 + 9_999, ack.msg
    )  # another VSM, a lower epoch
    assert core.on_frame(old_epoch, ("127.0.0.1", 17103), 104.0) == []
    assert core.state is VemState.BOOTING


def test_an_ack_of_an_old_vem_without_a_nonce_is_refused() -> None:
    core = new_core()
    core.start(0.0)
    zero = VemAttachAck(host_uuid=UUID, accepted=True, module=3, config_seq=1)
    assert zero.nonce == 0  # msgspec default: what an old VSM sends
    core.on_frame(Frame(SenderRole.PRIMARY, VSM_MAC, 3, T0, zero), VSM, 0.1)
    assert core.state is VemState.BOOTING and core.counters["unsolicited_acks"] == 1


def test_nonces_are_fresh_and_each_answer_counts_once() -> None:
    assert len({new_nonce() for _ in range(1000)}) == 1000 and 0 not in {new_nonce()}
    out = OutstandingRequests(keep=4)
    out.sent(11, times=2)  # one attach to two VSMs: each may answer once
    assert out.answered(11) and out.answered(11) and not out.answered(11)
    for n in range(20, 30):
        out.sent(n)
    assert not out.answered(20) and out.answered(29)  # bounded: the oldest forgotten


# ---- property: no replay or reordering changes a state ------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_no_replayed_or_reordered_capture_changes_a_state(data: st.DataObject) -> None:
    ex = Exchange().start()
    ex.run(ex.now + 2.0)
    t_state, c_state = table_state(ex.table), core_state(ex.core)
    frames = data.draw(
        st.lists(
            st.tuples(st.booleans(), st.integers(0, 10_000)),
            min_size=1,
            max_size=40,
        )
    )
    for to_vsm, pick in frames:
        if to_vsm:
            frame = ex.to_vsm[pick % len(ex.to_vsm)]
            assert ex.table.on_frame(frame, VEM, ex.now) == []
        else:
            frame = ex.to_vem[pick % len(ex.to_vem)]
            assert ex.core.on_frame(frame, VSM, ex.now) == []
    assert table_state(ex.table) == t_state
    assert core_state(ex.core) == c_state


# ---- LivenessAck: a fresh nonce, echoed --------------------------------------


def probe_nonces(effects: list[eng.Effect]) -> set[int]:
    return {
        e.msg.nonce for e in effects if isinstance(e, eng.Send) and isinstance(e.msg, LivenessProbe)
    }


def test_liveness_probes_carry_a_fresh_nonce_and_an_old_ack_proves_nothing() -> None:
    net = paired()
    standby = net.engine("secondary")
    t = net.now
    (first,) = probe_nonces(standby.on_sync_reset(t, stream_hot=True))
    ack = Frame(
        SenderRole.PRIMARY,
        MACS["primary"],
        net.engine("primary").epoch,
        T0,
        LivenessAck(nonce=first, state="active"),
    )
    standby.on_frame(ack, Iface.CONTROL, t + 0.001)  # the active answers: episode over
    net.kill("primary")
    t2 = t + 0.002
    (second,) = probe_nonces(standby.on_sync_reset(t2, stream_hot=True))
    assert second not in (first, first + 1, 0)
    # The first episode's ack, captured and replayed: not the answer to this probe.
    replay = Frame(ack.role, ack.mac, ack.epoch, T0 + 1, ack.msg)
    standby.on_frame(replay, Iface.CONTROL, t2 + 0.001)
    out = standby.tick(t2 + DEFAULT_PROBE)
    assert any(isinstance(e, eng.BecomeActive) for e in out)
    assert standby.state is HaState.ACTIVE


DEFAULT_PROBE = 0.05  # EngineConfig.probe_timeout's default
