"""``StoreRestBackend``: the REST server's backend over a real ``Store``.

Used by tests and as the base cfgmgr wraps or subclasses: cfgmgr passes its
own ``is_active`` (from hamgr's status) and ``replicate`` (await the
standby's acknowledgement of a committed change). Successful password checks
are cached per (user, stored hash) with a per-process key so that the
driver's requests, each with Basic credentials, do not each pay for scrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from openvsm.store.configcmd import verify_password
from openvsm.store.pss import Change, Op, Store

_CACHE_MAX = 256


class StoreRestBackend:
    """A ``RestBackend`` (openvsm.api.rest) over ``store``."""

    def __init__(
        self,
        store: Store,
        *,
        is_active: Callable[[], tuple[bool, str]] = lambda: (True, ""),
        replicate: Callable[[Change], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        source: str = "rest",
    ) -> None:
        self.store = store
        self.is_active = is_active
        self.replicate = replicate
        self.clock = clock
        self.source = source
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], bytes] = {}

    def role(self) -> tuple[bool, str]:
        return self.is_active()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.store.get(kind, key)

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.store.list(kind)

    async def commit(self, ops: Sequence[Op], *, user: str, command: str) -> int:
        change = self.store.commit(
            ops, user=user, source=self.source, command=command, time=self.clock()
        )
        if self.replicate is not None:
            await self.replicate(change)
        return change.seq

    def verify_user(self, user: str, password: str) -> bool:
        body = self.store.get("user", user)
        stored = body.get("password_hash") if body else None
        if not isinstance(stored, str):
            return False
        tag = hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256)
        cached = self._verified.get((user, stored))
        if cached is not None:
            return hmac.compare_digest(cached, tag.digest())
        if not verify_password(stored, password):
            return False
        if len(self._verified) >= _CACHE_MAX:
            self._verified.clear()
        self._verified[(user, stored)] = tag.digest()
        return True

    def account(self, user: str, command: str, result: str) -> None:
        self.store.account(user=user, command=command, result=result, time=self.clock())
