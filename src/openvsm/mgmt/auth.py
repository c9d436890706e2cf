"""Login checks for the SSH server: failure rate limits and password checks off
the event loop.

Theory of operation.

``LoginGuard`` is a sans-IO bookkeeper on an injected clock. Every failed
login is recorded against its source address and its user name; a source or a
user with ``max_failures`` failures inside ``window`` seconds is *limited*:
its next attempts are refused at once without checking the password (the
check would cost a worker for a caller that is guessing) until the oldest
failure leaves the window. A success clears the user's failures (not the
source's: one good login from a shared NAT must not unblock a guesser behind
it). Both tables are bounded (``max_tracked`` keys, least recently failed
dropped first), so a flood of spoofed-looking sources costs bounded memory.

``PasswordChecker`` runs scrypt in a bounded thread pool, never on the event
loop: at most ``workers`` checks run at once and at most ``queue`` wait; a
check beyond that is refused (counted as ``busy``), so a flood of wrong
passwords delays only logins, never the node. An unknown user is checked
against a dummy hash (the same scrypt work), so the answer time does not tell
which users exist. The caller delays every failure (``login_delay``) in its
own connection task: a wrong password costs the guesser time, not the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from openvsm.passwords import hash_password, verify_password


class Verdict(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # wrong password, unknown user or no matching key
    LIMITED = "limited"  # too many recent failures of this source or user
    BUSY = "busy"  # every password worker busy and the queue full


@dataclass
class LoginCounters:
    ok: int = 0
    wrong: int = 0
    unknown_user: int = 0
    limited: int = 0
    busy: int = 0


class LoginGuard:
    """Failure windows per source address and per user (see the module doc)."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        clock: Callable[[], float],
        max_tracked: int = 4096,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_tracked = max_tracked
        self._sources: OrderedDict[str, deque[float]] = OrderedDict()
        self._users: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, table: OrderedDict[str, deque[float]], key: str) -> int:
        times = table.get(key)
        if times is None:
            return 0
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del table[key]
            return 0
        return len(times)

    def limited(self, source: str, user: str) -> bool:
        return (
            self._recent(self._sources, source) >= self.max_failures
            or self._recent(self._users, user) >= self.max_failures
        )

    def failed(self, source: str, user: str) -> None:
        now = self._clock()
        for table, key in ((self._sources, source), (self._users, user)):
            times = table.setdefault(key, deque(maxlen=self.max_failures))
            times.append(now)
            table.move_to_end(key)
            while len(table) > self._max_tracked:
                table.popitem(last=False)

    def succeeded(self, user: str) -> None:
        self._users.pop(user, None)


class PasswordChecker:
    """scrypt checks in a bounded worker pool (see the module doc)."""

    def __init__(self, *, workers: int = 2, queue: int = 16) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ssh-password"
        )
        self._slots = workers + queue
        self._dummy = hash_password("openvsm-unknown-user-dummy")

    async def check(self, stored_hash: str | None, password: str) -> Verdict:
        """OK or WRONG; BUSY without any work when the pool and queue are full."""
        if self._slots <= 0:
            return Verdict.BUSY
        self._slots -= 1
        try:
            target = stored_hash or self._dummy
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._pool, verify_password, target, password)
        finally:
            self._slots += 1
        return Verdict.OK if ok and stored_hash else Verdict.WRONG

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["LoginCounters", "LoginGuard", "PasswordChecker", "Verdict"]
