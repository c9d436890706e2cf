"""asyncio adapter of the write-acknowledgement gate (``openvsm.cfgmgr.ackgate``).

Holds one future per submitted write, feeds the gate its inputs (the local
store's durability, the sync sender's acks and progress, hamgr's status and
answers, fences) on the loop's clock, carries out its effects (resolve or
fail the futures, ask hamgr, give up on or detach the standby) and keeps one
timer armed at the gate's ``next_deadline``. No rule lives here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from openvsm.cfgmgr.ackgate import (
    AckGate,
    AskHamgr,
    DetachStandby,
    Effect,
    Fail,
    FailReason,
    MarkOutOfSync,
    Release,
)
from openvsm.ipc import IpcError

log = logging.getLogger("cfgmgr.acks")

_TEXTS = {
    FailReason.HANDING_OVER: (
        "% The change was committed on this supervisor but it is handing over: its outcome "
        "is unknown, check 'show running-config' on the active"
    ),
    FailReason.STOPPED: (
        "% The change was committed on this supervisor but cfgmgr stopped before the "
        "standby acknowledged it: its outcome is unknown, check 'show running-config' on "
        "the active"
    ),
}


class WriteFailed(IpcError):
    """A write the gate failed; ``reason`` says why (the text is for the operator)."""

    def __init__(self, reason: FailReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class StandbyControl(Protocol):
    """What the gate's effects do to the sync sender."""

    def mark_out_of_sync(self) -> None: ...

    def detach(self) -> None: ...


class WriteAcks:
    """One active's held writes (module docstring)."""

    def __init__(self, gate: AckGate, confirm: Callable[[], Awaitable[bool]]) -> None:
        self.gate = gate
        self.confirm = confirm
        self.standby: StandbyControl | None = None
        self._futures: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._asker: asyncio.Task[None] | None = None
        self._not_saved = "% Configuration not saved: the store cannot be written"

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # --- inputs ---

    def submit(self, seq: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[seq] = fut
        self._run(self.gate.submit(seq, self._now()))
        return fut

    def start_attached(self) -> None:
        self._run(self.gate.start_attached(self._now()))

    def durable(self, upto: int) -> None:
        self._run(self.gate.durable(upto, self._now()))

    def commit_failed(self, from_seq: int, error: BaseException, *, sent: bool) -> None:
        self._not_saved = f"% Configuration not saved: the store cannot be written ({error})"
        if sent:
            self._not_saved += (
                "; the standby may have received it and is being resynchronised from this "
                "supervisor: check 'show running-config' on the active"
            )
        self._run(self.gate.commit_failed(from_seq, self._now()))

    def standby_acked(self, seq: int) -> None:
        if seq > self.gate.acked_seq:
            self._run(self.gate.standby_acked(seq, self._now()))

    def standby_hot(self) -> None:
        self._run(self.gate.standby_hot(self._now()))

    def standby_out_of_sync(self) -> None:
        self._run(self.gate.standby_out_of_sync(self._now()))

    def ha_status(self, *, active: bool, peer_lost: bool, peer_present: bool) -> None:
        self._run(
            self.gate.ha_status(
                active=active, peer_lost=peer_lost, peer_present=peer_present, now=self._now()
            )
        )

    def fence(self, on: bool) -> None:
        self._run(self.gate.fence(on, self._now()))

    def stop(self) -> None:
        self._run(self.gate.stopped(self._now()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._asker is not None:
            self._asker.cancel()

    # --- effects ---

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Release(seqs):
                    for seq in seqs:
                        fut = self._futures.pop(seq, None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)
                case Fail(seqs, reason):
                    text = self._not_saved if reason is FailReason.NOT_SAVED else _TEXTS[reason]
                    for seq in seqs:
                        fut = self._futures.pop(seq, None)
                        if fut is not None and not fut.done():
                            fut.set_exception(WriteFailed(reason, text))
                            # Retrieved even when its caller is gone: no orphan error.
                            fut.exception()
                case AskHamgr():
                    self._asker = asyncio.get_running_loop().create_task(self._ask())
                case MarkOutOfSync(seq):
                    if seq:
                        log.warning(
                            "sync: the standby did not acknowledge change %d within %.1f s and "
                            "hamgr confirms this node is active: marking it out of sync, "
                            "continuing alone",
                            seq,
                            self.gate.ack_timeout,
                        )
                    if self.standby is not None:
                        self.standby.mark_out_of_sync()
                case DetachStandby():
                    if self.standby is not None:
                        self.standby.detach()
        self._arm()

    async def _ask(self) -> None:
        try:
            active = await self.confirm()
        except (IpcError, OSError):
            active = False
        except Exception:
            # Never leave the gate waiting for an answer: no answer is a no.
            log.exception("asking hamgr whether this node is active failed")
            active = False
        self._run(self.gate.hamgr_answer(active=active, now=self._now()))

    def _arm(self) -> None:
        deadline = self.gate.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.gate.tick(self._now()))
