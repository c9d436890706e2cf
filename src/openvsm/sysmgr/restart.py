"""sysmgr's restart policy for one service, sans-IO (virtual-time tests).

sysmgr (the adapter) reports a service's start and exits with its monotonic
clock; the policy answers ``Restart(at)`` (sysmgr sleeps until ``at``, which is
also ``next_deadline``) or ``CrashLoop(reason)`` (sysmgr reloads the node).

- A crash is an exit that was not asked for (``manual``: an operator's
  ``restart_service``, SIGHUP for mgmt). ``CRASH_LOOP_COUNT`` crashes within
  ``CRASH_LOOP_WINDOW`` seconds are a crash loop; older crashes are forgotten.
- The first crash in the window restarts at once; later exits wait a back-off
  that starts at ``BACKOFF_START`` and doubles up to ``BACKOFF_MAX``; a service
  that ran more than ``STABLE_AFTER`` seconds starts the back-off afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

CRASH_LOOP_COUNT: Final = 5
CRASH_LOOP_WINDOW: Final = 60.0
BACKOFF_START: Final = 0.05
BACKOFF_MAX: Final = 5.0
STABLE_AFTER: Final = 30.0


@dataclass(frozen=True)
class Restart:
    at: float  # monotonic: start the service again then


@dataclass(frozen=True)
class CrashLoop:
    reason: str


@dataclass
class RestartPolicy:
    name: str
    started_at: float = 0.0
    crashes: list[float] = field(default_factory=list)
    backoff: float = BACKOFF_START
    restart_at: float = float("inf")

    def started(self, now: float) -> None:
        self.started_at = now
        self.restart_at = float("inf")

    def exited(self, now: float, *, manual: bool = False) -> Restart | CrashLoop:
        if not manual:
            self.crashes = [t for t in self.crashes if now - t < CRASH_LOOP_WINDOW] + [now]
            if len(self.crashes) >= CRASH_LOOP_COUNT:
                n = len(self.crashes)
                return CrashLoop(f"{self.name} crashed {n} times in {CRASH_LOOP_WINDOW:.0f} s")
        if now - self.started_at > STABLE_AFTER:
            self.backoff = BACKOFF_START
        delay = 0.0 if len(self.crashes) <= 1 else self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.restart_at = now + delay
        return Restart(self.restart_at)

    def next_deadline(self) -> float:
        """When the service is due to start again (inf: not waiting)."""
        return self.restart_at


__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "CRASH_LOOP_COUNT",
    "CRASH_LOOP_WINDOW",
    "CrashLoop",
    "Restart",
    "RestartPolicy",
]
