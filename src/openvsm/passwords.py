"""Password hashing, and password checks kept off the event loop (issue 12 point 4).

``hash_password`` / ``verify_password``: self-describing scrypt strings
(``scrypt$N$r$p$salt$hash``, base64), bounded parameters so that a forged
hash cannot make a check eat memory or time. Blocking; call them from a
worker (``PasswordGate``) or at configuration time.

``PasswordGate`` is what a server (REST, SSH) asks "is this user:password
right?" (``check``; ``check_stored`` when the caller looked the hash up
itself, as the SSH server does over IPC). Theory of operation, per check, in this order:

1. **Cache.** A credential that was verified before (same user, same stored
   hash) is recognised by an HMAC with a per-process key: no scrypt, no
   limit. The n1kv driver sends Basic credentials on every request and must
   not pay scrypt each time, nor be locked out by an attacker guessing the
   same user name's password.
2. **Failure limit** (``FailureLimiter``, sans-IO, injected clock). Every
   source address and every user name has a sliding window of failures;
   a key with ``max_failures`` failures within ``window_s`` is refused at
   once (``Verdict.LIMITED``: REST 429, CLI ``% Too many failures``) until
   its oldest failure leaves the window. The table of keys is bounded
   (oldest key evicted).
3. **Bounded pool.** The scrypt runs in a ``ThreadPoolExecutor`` of
   ``workers`` threads (hashlib's scrypt releases the GIL); at most
   ``max_pending`` checks may wait or run, a check beyond that is refused
   (``LIMITED``) without work. The event loop never runs scrypt.
4. **Constant work.** An unknown user (or a user without a usable hash)
   is checked against a dummy hash of the same parameters, so that the
   answer takes as long as for a known user and is then WRONG.

Verdicts: ``OK``, ``WRONG`` (counted as a failure for source and user),
``LIMITED`` (no work done; not counted again).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_CACHE_MAX: Final = 256


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): self-describing, random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=32,
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(N, r, p, salt, digest) of a well-formed, bounded scrypt string, else None."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    # Bounds keep a forged hash from making verification eat memory or time.
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    if n * r * 128 > 256 * 1024 * 1024 or not salt or len(digest) < 16:
        return None
    return n, r, p, salt, digest


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored`` (a ``hash_password`` string). Blocking."""
    parsed = parse_hash(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    candidate = hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=len(digest),
        maxmem=n * r * 128 + 1024 * 1024,
    )
    return hmac.compare_digest(candidate, digest)


# A hash nobody's password matches (random salt and digest), with the default
# parameters: unknown users cost the same scrypt as known ones.
_DUMMY_HASH: Final = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"
    f"{base64.b64encode(secrets.token_bytes(16)).decode()}$"
    f"{base64.b64encode(secrets.token_bytes(32)).decode()}"
)


class Verdict(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LIMITED = "limited"


class FailureLimiter:
    """Sliding-window failure counts per key (a source address, a user name). Sans-IO."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _window(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self.clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def limited(self, key: str) -> bool:
        """True while ``key`` has ``max_failures`` failures inside the window."""
        times = self._window(key)
        return times is not None and len(times) >= self.max_failures

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` is no longer limited (0 when it is not)."""
        times = self._window(key)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[-self.max_failures] + self.window_s - self.clock())

    def fail(self, key: str) -> None:
        times = self._window(key)
        if times is None:
            times = deque(maxlen=self.max_failures)
            self._failures[key] = times
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(self.clock())

    def clear(self, key: str) -> None:
        """Forget ``key``'s failures (a user who logged in)."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass
class GateCounters:
    ok: int = 0
    cached: int = 0
    wrong: int = 0
    limited: int = 0
    busy: int = 0
    unknown_user: int = 0


class PasswordGate:
    """Asynchronous password checks: cache, failure limits, bounded worker pool."""

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        *,
        workers: int = 1,
        max_pending: int = 8,
        limiter: FailureLimiter | None = None,
        verify: Callable[[str, str], bool] = verify_password,
    ) -> None:
        self.lookup = lookup  # user name -> stored hash, or None when unknown
        self.limiter = limiter if limiter is not None else FailureLimiter()
        self.max_pending = max_pending
        self.counters = GateCounters()
        self._verify = verify
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password")
        self._pending = 0
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], bytes] = {}

    def _tag(self, password: str) -> bytes:
        data = password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def retry_after(self, user: str, source: str) -> float:
        lim = self.limiter
        return max(lim.retry_after(f"src:{source}"), lim.retry_after(f"user:{user}"))

    def limited(self, user: str, source: str) -> bool:
        """Whether ``source`` or ``user`` is refused at once (too many failures)."""
        lim = self.limiter
        return lim.limited(f"src:{source}") or lim.limited(f"user:{user}")

    def failed(self, user: str, source: str) -> None:
        """Count a failure against ``source`` and ``user``."""
        self.limiter.fail(f"src:{source}")
        self.limiter.fail(f"user:{user}")

    def succeeded(self, user: str) -> None:
        """``user`` logged in: its failures are forgotten (not its source's: one
        good login from a shared NAT must not unblock a guesser behind it)."""
        self.limiter.clear(f"user:{user}")

    async def check(self, user: str, password: str, *, source: str) -> Verdict:
        """The verdict on ``user:password`` sent from ``source`` (an address)."""
        return await self.check_stored(user, self.lookup(user), password, source=source)

    async def check_stored(
        self, user: str, stored: str | None, password: str, *, source: str
    ) -> Verdict:
        """``check`` with the user's stored hash already looked up (None: unknown)."""
        if stored is not None:
            cached = self._verified.get((user, stored))
            if cached is not None and hmac.compare_digest(cached, self._tag(password)):
                self.counters.cached += 1
                return Verdict.OK
        if self.limited(user, source):
            self.counters.limited += 1
            return Verdict.LIMITED
        if self._pending >= self.max_pending:
            self.counters.busy += 1
            return Verdict.LIMITED
        if stored is None:
            self.counters.unknown_user += 1
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            target = stored if stored is not None else _DUMMY_HASH
            good = await loop.run_in_executor(self._pool, self._verify, target, password)
        finally:
            self._pending -= 1
        if good and stored is not None:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified[(user, stored)] = self._tag(password)
            self.counters.ok += 1
            return Verdict.OK
        self.failed(user, source)
        self.counters.wrong += 1
        return Verdict.WRONG

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
