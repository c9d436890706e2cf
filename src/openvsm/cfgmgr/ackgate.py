"""When may a configuration write be acknowledged? One sans-IO state machine.

Theory of operation
-------------------
The guarantee (DESIGN §4, docs/ENGINEERING.md): a write is acknowledged to
its client only when it is durable in the active's store and, with an HA
standby attached, durable in the standby's store (its ack); the active goes
on alone only on hamgr's word, asked at that moment, that this node is the
active; never while fenced (handing over, losing a split-brain). The gate
holds every write from its submission (sequence number assigned, maybe sent
to the standby already: pipelined commit) until it is released or failed.

Inputs (each takes ``now``, seconds on any monotonic clock; virtual time in
tests): ``submit(seq)``, ``durable(upto)`` / ``commit_failed(from_seq)`` (the
local store), ``standby_acked(seq)`` (cumulative), ``standby_hot()`` /
``standby_out_of_sync()`` (the sync stream), ``ha_status(...)`` (hamgr's
topic), ``hamgr_answer(active)`` (the answer to ``AskHamgr``),
``fence(on)``, ``stopped()``, ``tick()``. Each returns the effects to carry
out, in order: ``Release(seqs)``, ``Fail(seqs, reason)``, ``AskHamgr``,
``MarkOutOfSync`` (give up on the standby: reset + bulk sync),
``DetachStandby`` (hamgr declared it lost). ``next_deadline`` says when to
call ``tick`` (the ack timeout, the retry of a question to hamgr).

The standby link (``Link``)::

    ALONE --standby_hot / start_attached--> ATTACHED
    ATTACHED --standby_out_of_sync / ack timeout + hamgr's yes / hamgr
               declared it lost / commit_failed--> DETACHED
    DETACHED --standby_hot--> ATTACHED

A write submitted while ATTACHED *waits* for the standby's ack; leaving
ATTACHED stops every write waiting. A durable write is released when:

1. the standby acked its seq (always: the standby has it, even fenced), or
2. it does not wait and no standby was ever hot for this active (ALONE), or
3. it does not wait, a standby was hot once, and hamgr said "active" within
   ``CONFIRM_FRESH_S`` (one question at a time for all writes, retried every
   ``RETRY_S`` while the answer is no or missing: hamgr dead or restarting,
   the standby may be taking over; seed 1000 fault 546, twice).

A waiting write unacked ``ack_timeout`` after submission asks hamgr; on a
yes the standby is marked out of sync (``MarkOutOfSync``) and the writes go
on alone (rule 3); on a no they keep waiting (a partitioned active whose
hamgr is dead must not acknowledge alone). Fenced: ``ha_status`` detaches
nothing, hamgr's yes is ignored, writes that could only be released by rule
3 fail (outcome unknown); writes waiting for the standby keep waiting.
``stopped`` fails every held write (cfgmgr stopping is not an ack).
``commit_failed`` fails the writes from that seq on (the store reuses those
seqs: the standby's acks for them no longer count, and a standby that may
have received them is given up: ``MarkOutOfSync``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

# A confirmation by hamgr that this node is active is reused this long (s),
# far below the shortest loss interval (600 ms) after which a standby takes over.
CONFIRM_FRESH_S = 0.05
# A question to hamgr that got no or no answer is asked again after this (s).
RETRY_S = 0.1


class Link(enum.Enum):
    ALONE = "alone"  # no standby was ever hot for this active
    ATTACHED = "attached"  # writes wait for the standby's ack
    DETACHED = "detached"  # a standby was hot once; now going alone needs hamgr's word


class FailReason(enum.Enum):
    NOT_SAVED = "not_saved"  # the local commit failed
    HANDING_OVER = "handing_over"  # fenced: no ack without the standby's
    STOPPED = "stopped"  # cfgmgr stopped before the standby acked


@dataclass(frozen=True, slots=True)
class Release:
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Fail:
    seqs: tuple[int, ...]
    reason: FailReason


@dataclass(frozen=True, slots=True)
class AskHamgr:
    pass


@dataclass(frozen=True, slots=True)
class MarkOutOfSync:
    seq: int  # the oldest write the standby did not acknowledge in time (0: commit failure)


@dataclass(frozen=True, slots=True)
class DetachStandby:
    pass


Effect = Release | Fail | AskHamgr | MarkOutOfSync | DetachStandby


@dataclass(slots=True)
class _Write:
    seq: int
    submitted: float
    waits: bool
    durable: bool = False


class AckGate:
    """The write-acknowledgement rule (module docstring)."""

    def __init__(self, *, ack_timeout: float) -> None:
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        self.ack_timeout = ack_timeout
        self.link = Link.ALONE
        self.had_standby = False
        self.fenced = False
        self.stopped_ = False
        self.acked_seq = 0
        self.durable_seq = 0
        self._writes: dict[int, _Write] = {}  # seq order (seqs only grow between failures)
        self._confirmed_at = -math.inf
        self._asking = False
        self._retry_at: float | None = None
        self._now = -math.inf  # the latest time an input carried
        self.counters: dict[str, int] = {}

    # --- queries ---

    @property
    def held(self) -> int:
        """Writes submitted and neither released nor failed."""
        return len(self._writes)

    def next_deadline(self) -> float | None:
        """When ``tick`` must be called next (None: no timer needed)."""
        times: list[float] = []
        oldest = self._oldest_waiting()
        if oldest is not None and not self._overdue(oldest, self._now):
            times.append(oldest.submitted + self.ack_timeout)
        if self._retry_at is not None and not self._asking:
            times.append(self._retry_at)
        return min(times) if times else None

    # --- inputs ---

    def start_attached(self, now: float) -> list[Effect]:
        """A restarted cfgmgr on an active that has a standby: that standby was
        attached to the previous process; writes wait for it from the start."""
        self.link = Link.ATTACHED
        self.had_standby = True
        return self._step(now)

    def submit(self, seq: int, now: float) -> list[Effect]:
        if self.stopped_:
            return [Fail((seq,), FailReason.STOPPED)]
        if seq in self._writes:
            raise ValueError(f"write {seq} submitted twice")
        self._writes[seq] = _Write(seq, now, waits=self.link is Link.ATTACHED)
        return self._step(now)

    def durable(self, upto: int, now: float) -> list[Effect]:
        self.durable_seq = max(self.durable_seq, upto)
        for w in self._writes.values():
            if w.seq <= upto:
                w.durable = True
        return self._step(now)

    def commit_failed(self, from_seq: int, now: float) -> list[Effect]:
        failed = tuple(s for s in self._writes if s >= from_seq)
        for s in failed:
            del self._writes[s]
        self.acked_seq = min(self.acked_seq, from_seq - 1)
        out: list[Effect] = [Fail(failed, FailReason.NOT_SAVED)] if failed else []
        if self.link is Link.ATTACHED:
            self._leave_attached()
        out.append(MarkOutOfSync(0))
        return out + self._step(now)

    def standby_acked(self, seq: int, now: float) -> list[Effect]:
        if seq > self.acked_seq:
            self.acked_seq = seq
        return self._step(now)

    def standby_hot(self, now: float) -> list[Effect]:
        self.link = Link.ATTACHED
        self.had_standby = True
        return self._step(now)

    def standby_out_of_sync(self, now: float) -> list[Effect]:
        """The stream gave up on the standby (its buffer overflowed)."""
        if self.link is Link.ATTACHED:
            self._leave_attached()
        return self._step(now)

    def ha_status(
        self, *, active: bool, peer_lost: bool, peer_present: bool, now: float
    ) -> list[Effect]:
        """hamgr's status topic. Only an active hamgr that declared the standby
        lost detaches it: a restarted hamgr that has not heard it yet, or one
        that is not active (it may come back as standby), does not."""
        out: list[Effect] = []
        if (
            not self.fenced
            and active
            and peer_lost
            and not peer_present
            and self.link is Link.ATTACHED
        ):
            self._leave_attached()
            out.append(DetachStandby())
        return out + self._step(now)

    def hamgr_answer(self, *, active: bool, now: float) -> list[Effect]:
        self._asking = False
        out: list[Effect] = []
        if active and not self.fenced:
            self._confirmed_at = now
            self._retry_at = None
            oldest = self._oldest_waiting()
            if oldest is not None and self._overdue(oldest, now):
                self._count("ack_timeouts")
                self._leave_attached()
                out.append(MarkOutOfSync(oldest.seq))
        else:
            self._count("hamgr_no")
            self._retry_at = now + RETRY_S
        return out + self._step(now)

    def fence(self, on: bool, now: float) -> list[Effect]:
        self.fenced = on
        return self._step(now)

    def stopped(self, now: float) -> list[Effect]:
        self.stopped_ = True
        held = tuple(self._writes)
        self._writes.clear()
        return [Fail(held, FailReason.STOPPED)] if held else []

    def tick(self, now: float) -> list[Effect]:
        return self._step(now)

    # --- the rule ---

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _leave_attached(self) -> None:
        self.link = Link.DETACHED
        for w in self._writes.values():
            w.waits = False

    def _oldest_waiting(self) -> _Write | None:
        for w in self._writes.values():
            if w.waits and w.seq > self.acked_seq:
                return w
        return None

    def _overdue(self, w: _Write, now: float) -> bool:
        return now >= w.submitted + self.ack_timeout

    def _step(self, now: float) -> list[Effect]:
        self._now = max(self._now, now)
        if self.stopped_:
            return []
        released: list[int] = []
        failed: list[int] = []
        need_word = False
        fresh = now - self._confirmed_at < CONFIRM_FRESH_S and not self.fenced
        for w in self._writes.values():
            if not w.durable:
                continue
            if w.seq <= self.acked_seq or not (w.waits or self.had_standby):
                released.append(w.seq)
            elif w.waits:
                continue
            elif self.fenced:
                failed.append(w.seq)
            elif fresh:
                released.append(w.seq)
            else:
                need_word = True
        oldest = self._oldest_waiting()
        if oldest is not None and self._overdue(oldest, now) and not self.fenced:
            need_word = True
        for s in released + failed:
            del self._writes[s]
        out: list[Effect] = []
        if released:
            out.append(Release(tuple(released)))
        if failed:
            out.append(Fail(tuple(failed), FailReason.HANDING_OVER))
        if not need_word:
            self._retry_at = None
        elif not self._asking and (self._retry_at is None or now >= self._retry_at):
            self._asking = True
            self._count("hamgr_asked")
            out.append(AskHamgr())
        return out
