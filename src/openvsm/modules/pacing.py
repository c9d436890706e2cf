"""Paced switch requests at a takeover (sans-IO, vemmgr's ``ModuleTable``).

Theory of operation. A VSM that becomes active asks every VEM it knows to
switch to it (``SwitchRequest``); each VEM then attaches (seed: a VEM
switches only on a switch request or after going headless, never on its
own). Asked all at once, 10,000 VEMs answer within a millisecond: their
attaches overflow the VSM's socket receive buffer, the lost ones come again
a heartbeat interval later (the VEM retries every interval while it
switches), and every retry queues behind the others. So the requests are
paced: ``SwitchPacer`` keeps at most ``window`` of them outstanding
(1,000), in the order given (module numbers). An answer (any frame of that
VEM: its attach, or a heartbeat where it was attached here already) frees
its slot at once and the next VEM is asked; a request unanswered for
``timeout`` (0.5 s) frees its slot too. As before pacing, a VEM is asked
once per activation (``max_asks`` 1): one that did not come (the request or
its attach lost, or it cannot reach this VSM) stays with its VSM until it
goes headless, and this VSM's loss time takes its module offline. With
``max_asks`` above 1 an unanswered VEM goes to the back of the queue, to be
asked again up to that many times in all.

Rules the tests hold it to:

- at most ``window`` requests are outstanding at any time;
- a VEM is never asked again while its request is outstanding (a window):
  a second ask comes only after ``timeout`` without an answer;
- VEMs are first asked in the order given; every one of them is first asked
  within ``ceil(n / window) * timeout`` of the start, however few answer;
- an answered VEM is never asked again in this activation.

Only whom to ask and when is decided here; the table turns the host UUIDs
released into ``SwitchRequest`` frames to their modules' addresses.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

SWITCH_WINDOW: Final = 1000  # switch requests outstanding at most
SWITCH_TIMEOUT_S: Final = 0.5  # an unanswered request frees its slot after this
SWITCH_MAX_ASKS: Final = 1  # requests per VEM and activation (the seed's: one)


@dataclass
class SwitchPacer:
    window: int = SWITCH_WINDOW
    timeout: float = SWITCH_TIMEOUT_S
    max_asks: int = SWITCH_MAX_ASKS
    _queue: deque[str] = field(default_factory=deque)  # to ask, in order
    _outstanding: dict[str, float] = field(default_factory=dict)  # asked (insertion = time order)
    _asks: dict[str, int] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)  # answered: never asked again
    asked: int = 0  # requests released (for the table's counter)

    def start(self, hosts: Iterable[str]) -> None:
        """A new activation: ``hosts`` (in order) are to be asked; anything
        left from a previous activation is dropped."""
        self.stop()
        for host in hosts:
            if host not in self._asks:
                self._asks[host] = 0
                self._queue.append(host)

    def stop(self) -> None:
        self._queue.clear()
        self._outstanding.clear()
        self._asks.clear()
        self._done.clear()

    @property
    def busy(self) -> bool:
        """Some VEM is still to be asked or has not answered yet."""
        return bool(self._queue or self._outstanding)

    def outstanding(self) -> int:
        return len(self._outstanding)

    def answered(self, host: str) -> bool:
        """A frame of ``host`` came: its slot is free; True if it held one
        (or was still queued), i.e. this may release another request."""
        if host not in self._asks or host in self._done:
            return False
        self._done.add(host)
        self._outstanding.pop(host, None)
        return True

    def release(self, now: float) -> list[str]:
        """The hosts to ask now (expired requests first make room)."""
        self._expire(now)
        out: list[str] = []
        queue, outstanding = self._queue, self._outstanding
        while queue and len(outstanding) < self.window:
            host = queue.popleft()
            if host in self._done or host in outstanding:
                continue
            outstanding[host] = now
            self._asks[host] += 1
            out.append(host)
        self.asked += len(out)
        return out

    def _expire(self, now: float) -> None:
        outstanding = self._outstanding
        while outstanding:
            host, asked_at = next(iter(outstanding.items()))
            if now < asked_at + self.timeout:
                return  # insertion order is time order: the rest are younger
            del outstanding[host]
            if self._asks[host] < self.max_asks:
                self._queue.append(host)

    def next_deadline(self) -> float:
        """When ``release`` has something to do without an answer coming."""
        if not self._outstanding:
            return math.inf  # a non-empty queue with free slots is released at once
        return next(iter(self._outstanding.values())) + self.timeout
