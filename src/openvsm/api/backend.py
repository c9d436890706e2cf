"""``StoreRestBackend``: the REST server's backend over a real ``Store``.

Used by tests and as the base cfgmgr wraps or subclasses: cfgmgr passes its
own ``is_active`` (from hamgr's status) and ``replicate`` (await the
standby's acknowledgement of a committed change). Password checks go through
an ``openvsm.passwords.PasswordGate``: scrypt in a bounded worker pool (never
on the event loop), failures limited per source and per user, verified
credentials cached so that the driver's requests, each with Basic
credentials, do not each pay for scrypt.

The backend keeps the md5 hashes of the store (``md5_hashes``) in an
``Md5Index`` that follows the store's change log, and, before its first
write, moves ports of the layout before ``os_port`` out of their VM network
bodies (``prepare_write``: one change, replicated like any other).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from openvsm.api import n1kv
from openvsm.api.auth import role_of
from openvsm.api.digests import Md5Index
from openvsm.passwords import FailureLimiter, PasswordGate, Verdict
from openvsm.store.pss import Change, Op, Store


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
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.store = store
        self.is_active = is_active
        self.replicate = replicate
        self.clock = clock
        self.source = source
        self.md5_index = Md5Index()
        self._layout_checked = False
        self.gate = PasswordGate(self._stored_hash, limiter=limiter)

    def _stored_hash(self, user: str) -> str | None:
        body = self.store.get("user", user)
        stored = body.get("password_hash") if body else None
        return stored if isinstance(stored, str) else None

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
        self.committed(change)
        if self.replicate is not None:
            await self.replicate(change)
        return change.seq

    def committed(self, change: Change) -> None:
        """Feed a change this backend committed to the md5 index (it would read
        it back from the change log otherwise)."""
        if change.seq == self.md5_index.seq + 1:
            self.md5_index.apply(change.seq, change.ops)

    def md5_hashes(self) -> dict[str, str]:
        """The driver's five hashes of the store as it is now (O(1) when unchanged)."""
        self.md5_index.sync(self.store)
        return self.md5_index.hashes()

    async def prepare_write(self) -> None:
        """Before the first write: convert a store of the old port layout."""
        if self._layout_checked:
            return
        outcome = n1kv.convert_legacy_ports(self)
        if outcome.ops:
            await self.commit(outcome.ops, user="openvsm", command="convert n1kv port layout")
        self._layout_checked = True

    async def check_login(self, user: str, password: str, *, source: str) -> Verdict:
        return await self.gate.check(user, password, source=source)

    def retry_after(self, user: str, source: str) -> float:
        return self.gate.retry_after(user, source)

    def user_role(self, user: str) -> str:
        return role_of(user, self.store).value

    def account(self, user: str, command: str, result: str) -> None:
        self.store.account(user=user, command=command, result=result, time=self.clock())

    def close(self) -> None:
        self.gate.close()
