"""The write-ack gate on virtual time: the rule, and each lost-acknowledgement
finding of the fault campaign replayed as a sequence of the gate's inputs."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.cfgmgr.ackgate import (
    CONFIRM_FRESH_S,
    RETRY_S,
    AckGate,
    AskHamgr,
    DetachStandby,
    Effect,
    Fail,
    FailReason,
    Link,
    MarkOutOfSync,
    Release,
)

TIMEOUT = 3.0


class Harness:
    """Drives one gate on a virtual clock and keeps every write's fate."""

    def __init__(self, ack_timeout: float = TIMEOUT) -> None:
        self.gate = AckGate(ack_timeout=ack_timeout)
        self.now = 0.0
        self.released: list[int] = []
        self.failed: dict[int, FailReason] = {}
        self.asks = 0
        self.out_of_sync: list[int] = []
        self.detached = 0
        self.seq = 0

    def run(self, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            match e:
                case Release(seqs):
                    self.released += seqs
                case Fail(seqs, reason):
                    self.failed.update(dict.fromkeys(seqs, reason))
                case AskHamgr():
                    self.asks += 1
                case MarkOutOfSync(seq):
                    self.out_of_sync.append(seq)
                case DetachStandby():
                    self.detached += 1
        return effects

    def write(self, *, durable: bool = True) -> int:
        """A write is submitted (seq assigned, sent) and, by default, durable here."""
        self.seq += 1
        self.run(self.gate.submit(self.seq, self.now))
        if durable:
            self.run(self.gate.durable(self.seq, self.now))
        return self.seq

    def advance(self, dt: float) -> None:
        """Let virtual time pass, firing the gate's timer as an adapter would."""
        end = self.now + dt
        while True:
            deadline = self.gate.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.run(self.gate.tick(self.now))
        self.now = end
        self.run(self.gate.tick(self.now))

    def link(self) -> Link:
        return self.gate.link

    def hot(self) -> None:
        self.run(self.gate.standby_hot(self.now))

    def ack(self, seq: int) -> None:
        self.run(self.gate.standby_acked(seq, self.now))

    def answer(self, active: bool) -> None:
        self.run(self.gate.hamgr_answer(active=active, now=self.now))

    def status(self, *, active: bool, peer_lost: bool, peer_present: bool) -> None:
        self.run(
            self.gate.ha_status(
                active=active, peer_lost=peer_lost, peer_present=peer_present, now=self.now
            )
        )


# --- the rule -----------------------------------------------------------------------


def test_alone_a_durable_write_is_released_without_asking() -> None:
    h = Harness()
    w = h.write(durable=False)
    assert h.released == []  # not durable here yet (pipelined: sent, fsync running)
    h.run(h.gate.durable(w, h.now))
    assert h.released == [w] and h.asks == 0
    assert h.gate.next_deadline() is None


def test_with_a_standby_a_write_needs_both_durabilities() -> None:
    h = Harness()
    h.hot()
    a = h.write(durable=False)
    h.ack(a)  # the standby was faster than our fsync: not yet
    assert h.released == []
    h.run(h.gate.durable(a, h.now))
    assert h.released == [a]
    b = h.write()
    assert h.released == [a]  # durable here, not acked
    h.ack(b)
    assert h.released == [a, b] and h.asks == 0


def test_acks_are_cumulative_and_release_in_order() -> None:
    h = Harness()
    h.hot()
    seqs = [h.write() for _ in range(5)]
    h.ack(3)
    assert h.released == seqs[:3]
    h.ack(2)  # an old ack changes nothing
    h.ack(5)
    assert h.released == seqs


def test_ack_timeout_asks_hamgr_and_goes_alone_on_its_yes() -> None:
    h = Harness()
    h.hot()
    w = h.write()
    assert h.gate.next_deadline() == TIMEOUT
    h.advance(TIMEOUT - 0.001)
    assert h.asks == 0 and h.released == []
    h.advance(0.001)
    assert h.asks == 1
    h.answer(True)
    assert h.out_of_sync == [w] and h.released == [w]
    assert h.link() is Link.DETACHED
    # Right after, another write rides on the fresh yes; later ones ask again.
    x = h.write()
    assert h.released == [w, x] and h.asks == 1
    h.advance(2 * CONFIRM_FRESH_S)
    y = h.write()
    assert y not in h.released and h.asks == 2
    h.answer(True)
    assert h.released[-1] == y


def test_a_late_ack_before_hamgr_answers_needs_no_reset() -> None:
    h = Harness()
    h.hot()
    w = h.write()
    h.advance(TIMEOUT)
    assert h.asks == 1
    h.ack(w)
    h.answer(True)
    assert h.released == [w] and h.out_of_sync == [] and h.link() is Link.ATTACHED


def test_a_hamgr_answer_is_retried_while_it_says_no() -> None:
    h = Harness()
    h.hot()
    w = h.write()
    h.advance(TIMEOUT)
    for n in range(1, 6):
        assert h.asks == n
        h.answer(False)
        assert h.gate.next_deadline() == h.now + RETRY_S
        h.advance(RETRY_S)
    h.answer(True)
    assert h.released == [w]


# --- findings of the fault campaign -------------------------------------------------


def test_seed_1000_fault_546_ack_timeout_with_hamgr_dead() -> None:
    # hamgr killed on the active and not back in time; the standby took over.
    # The old active's cfgmgr commits a write the standby never acknowledges.
    # After the ack timeout hamgr cannot answer (dead: the adapter answers no);
    # its restarted process first says "not active, no peer", then finds the
    # new active and comes back as standby; the node reloads (cfgmgr stops).
    # The write was acknowledged alone and lost: now it never is.
    h = Harness()
    h.hot()
    w = h.write()
    h.advance(TIMEOUT)
    h.answer(False)  # no hamgr
    h.advance(1.0)
    h.answer(False)
    h.status(active=False, peer_lost=False, peer_present=False)  # restarted, not decided
    h.advance(1.0)
    h.answer(False)
    h.status(active=False, peer_lost=False, peer_present=True)  # standby of the new active
    h.advance(5.0)
    assert h.released == [] and h.out_of_sync == [] and h.detached == 0
    h.run(h.gate.stopped(h.now))  # the reload
    assert h.failed == {w: FailReason.STOPPED}


def test_seed_1000_fault_546_buffer_overflow_with_hamgr_dead() -> None:
    # The same fault, second form: 13 writes released by a sync buffer
    # overflow while hamgr was dead. Out of sync is not an acknowledgement.
    h = Harness()
    h.hot()
    writes = [h.write() for _ in range(13)]
    h.run(h.gate.standby_out_of_sync(h.now))
    assert h.asks == 1 and h.released == []
    h.answer(False)
    h.advance(2.0)
    h.answer(False)
    assert h.released == []
    h.run(h.gate.stopped(h.now))
    assert set(h.failed) == set(writes)
    assert set(h.failed.values()) == {FailReason.STOPPED}


def test_buffer_overflow_with_hamgr_alive_goes_alone() -> None:
    h = Harness()
    h.hot()
    writes = [h.write() for _ in range(3)]
    h.run(h.gate.standby_out_of_sync(h.now))
    h.answer(True)
    assert h.released == writes


def test_a_restarted_hamgr_that_has_not_heard_the_standby_detaches_nothing() -> None:
    # hamgr restarted (stateful resume or not): peer_present false before its
    # first heartbeat is not a loss; only an active hamgr's peer_lost is.
    h = Harness()
    h.hot()
    w = h.write()
    h.status(active=True, peer_lost=False, peer_present=False)
    h.status(active=False, peer_lost=True, peer_present=False)
    assert h.detached == 0 and h.link() is Link.ATTACHED and h.released == []
    h.status(active=True, peer_lost=True, peer_present=False)
    assert h.detached == 1 and h.link() is Link.DETACHED
    assert h.released == [] and h.asks == 1  # going alone still needs hamgr's word now
    h.answer(True)
    assert h.released == [w]


def test_seed_20251125_fault_9_switchover_never_releases_on_detach() -> None:
    # system switchover: hamgr fences cfgmgr, then the standby (becoming
    # active) stops acking and hamgr declares it absent. The waiting writes
    # were released as acknowledged and lost in the reload.
    h = Harness()
    h.hot()
    a, b = h.write(), h.write()
    h.ack(a)
    h.run(h.gate.fence(True, h.now))
    h.status(active=True, peer_lost=True, peer_present=False)
    assert h.detached == 0
    h.advance(TIMEOUT * 2)  # no question to hamgr while fenced
    assert h.asks == 0 and h.released == [a]
    h.run(h.gate.stopped(h.now))
    assert h.failed == {b: FailReason.STOPPED}


def test_fenced_a_write_that_could_only_go_alone_fails_at_once() -> None:
    h = Harness()
    h.hot()
    h.run(h.gate.standby_out_of_sync(h.now))
    h.answer(True)
    h.run(h.gate.fence(True, h.now))
    h.advance(1.0)
    w = h.write()
    assert h.failed == {w: FailReason.HANDING_OVER}


def test_fenced_a_standby_ack_still_releases() -> None:
    h = Harness()
    h.hot()
    w = h.write()
    h.run(h.gate.fence(True, h.now))
    h.answer(True)  # a yes while fenced counts for nothing
    h.ack(w)
    assert h.released == [w]


def test_split_brain_loser_fenced_releases_nothing_alone() -> None:
    # The loser fences before collecting its discarded changes: a write
    # waiting for an absent standby is never acknowledged.
    h = Harness()
    h.hot()
    h.status(active=True, peer_lost=True, peer_present=False)
    h.answer(True)
    w = h.write()
    assert h.released == [w]  # alone, confirmed
    h.run(h.gate.fence(True, h.now))
    x = h.write()
    assert x not in h.released and h.failed[x] is FailReason.HANDING_OVER


def test_restarted_cfgmgr_starts_attached_and_needs_hamgr_to_go_alone() -> None:
    # A restarted cfgmgr on an active with a standby: writes wait for the
    # standby from the first one, and an overflow before its sender is hot
    # again releases nothing without hamgr's word.
    h = Harness()
    h.run(h.gate.start_attached(h.now))
    h.write()
    assert h.released == []
    h.run(h.gate.standby_out_of_sync(h.now))
    assert h.released == [] and h.asks == 1
    h.answer(False)
    assert h.released == []


def test_stopping_is_not_an_acknowledgement() -> None:
    h = Harness()
    h.hot()
    w = h.write()
    h.run(h.gate.stopped(h.now))
    assert h.failed == {w: FailReason.STOPPED}
    x = h.write()
    assert h.failed[x] is FailReason.STOPPED and h.released == []


def test_a_failed_local_commit_fails_its_writes_and_drops_stale_acks() -> None:
    # Pipelined: changes 2-3 reached the standby (acked) but our group commit
    # failed. They fail; seq 2 is assigned again to a new write, which the
    # standby's old ack for 3 must not release; the standby is given up on.
    h = Harness()
    h.hot()
    a = h.write()
    b, c = h.write(durable=False), h.write(durable=False)
    h.ack(c)
    assert h.released == [a]
    h.run(h.gate.commit_failed(b, h.now))
    assert h.failed == {b: FailReason.NOT_SAVED, c: FailReason.NOT_SAVED}
    assert h.out_of_sync == [0] and h.gate.acked_seq == a
    h.seq = a  # the store assigns the seqs again
    again = h.write()
    assert again == b and again not in h.released[1:]
    h.answer(True)
    assert h.released == [a, again]


# --- property -----------------------------------------------------------------------

_events = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.booleans()),
        st.tuples(st.just("durable"), st.integers(0, 3)),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("hot"), st.none()),
        st.tuples(st.just("overflow"), st.none()),
        st.tuples(st.just("answer"), st.booleans()),
        st.tuples(st.just("status"), st.booleans()),
        st.tuples(st.just("fence"), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0.0, 4.0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_a_released_write_is_durable_and_acked_or_confirmed(
    events: list[tuple[str, object]],
) -> None:
    """Whatever the order of inputs: a write is released only when durable here
    and either acked by the standby, or no standby was ever hot, or hamgr said
    "active" within CONFIRM_FRESH_S while not fenced; never released twice."""
    h = Harness()
    durable = 0
    acked = 0
    confirmed_at = -math.inf
    ever_hot = False
    for kind, arg in events:
        before = len(h.released)
        if kind == "write":
            h.write(durable=False)
        elif kind == "durable":
            durable = min(h.seq, durable + int(str(arg)))
            h.run(h.gate.durable(durable, h.now))
        elif kind == "ack":
            acked = min(durable + 1, acked + int(str(arg)), h.seq)
            h.ack(acked)
        elif kind == "hot":
            ever_hot = True
            h.hot()
        elif kind == "overflow":
            h.run(h.gate.standby_out_of_sync(h.now))
        elif kind == "answer":
            if arg and not h.gate.fenced:
                confirmed_at = h.now
            h.answer(bool(arg))
        elif kind == "status":
            h.status(active=bool(arg), peer_lost=True, peer_present=False)
        elif kind == "fence":
            h.run(h.gate.fence(bool(arg), h.now))
        else:
            h.advance(float(str(arg)))
        for seq in h.released[before:]:
            assert seq <= durable
            assert (
                seq <= acked
                or not ever_hot
                or (h.now - confirmed_at < CONFIRM_FRESH_S and not h.gate.fenced)
            ), (seq, kind)
    assert len(set(h.released)) == len(h.released)
    assert not set(h.released) & set(h.failed)
