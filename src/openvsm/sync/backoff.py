"""The sync sender's reconnect back-off, sans-IO (virtual-time tests).

The transport reports what happened with its monotonic clock and sleeps until
``next_deadline`` before its next connection attempt:

- a failed attempt waits ``min_s``, then twice as long each time, at most
  ``max_s``; a connection made starts the back-off afresh;
- a connection that ended waits ``min_s`` before the next attempt, or
  ``max_s`` when the standby refused the stream (it would refuse again at once).
"""

from __future__ import annotations


class ReconnectBackoff:
    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._delay = min_s
        self._deadline = -float("inf")  # the first attempt goes at once

    def connect_failed(self, now: float) -> float:
        self._deadline = now + self._delay
        self._delay = min(self._delay * 2, self.max_s)
        return self._deadline

    def connected(self) -> None:
        self._delay = self.min_s

    def closed(self, now: float, *, refused: bool) -> float:
        self._deadline = now + (self.max_s if refused else self.min_s)
        return self._deadline

    def next_deadline(self) -> float:
        """When the next connection attempt is due."""
        return self._deadline


__all__ = ["ReconnectBackoff"]
