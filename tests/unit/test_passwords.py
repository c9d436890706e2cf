"""openvsm.passwords: failure limits on virtual time, the bounded pool, constant work."""

from __future__ import annotations

import asyncio
import threading

from openvsm.passwords import (
    FailureLimiter,
    PasswordGate,
    Verdict,
    hash_password,
    verify_password,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limiter_window_slides() -> None:
    clock = Clock()
    lim = FailureLimiter(max_failures=3, window_s=10.0, clock=clock)
    for _ in range(2):
        lim.fail("a")
        clock.t += 1
    assert not lim.limited("a")
    lim.fail("a")
    assert lim.limited("a") and not lim.limited("b")
    assert 0 < lim.retry_after("a") <= 10.0
    clock.t += 8.5  # the first failure (t=1000) leaves the window at 1010
    assert not lim.limited("a")
    assert lim.retry_after("a") == 0.0


def test_limiter_is_bounded() -> None:
    lim = FailureLimiter(max_failures=2, window_s=60.0, max_keys=10, clock=Clock())
    for i in range(1000):
        lim.fail(f"k{i}")
    assert len(lim) == 10
    assert lim._failures["k999"] and "k0" not in lim._failures


def _gate(users: dict[str, str], **kw: object) -> tuple[PasswordGate, list[str]]:
    seen: list[str] = []

    def verify(stored: str, password: str) -> bool:
        seen.append(stored)
        return stored == f"hash:{password}"

    gate = PasswordGate(users.get, verify=verify, **kw)  # type: ignore[arg-type]
    return gate, seen


def test_wrong_passwords_are_limited_per_source_and_user() -> None:
    clock = Clock()
    lim = FailureLimiter(max_failures=3, window_s=60.0, clock=clock)
    gate, seen = _gate({"admin": "hash:good"}, limiter=lim)

    async def run() -> None:
        for _ in range(3):
            assert await gate.check("admin", "bad", source="10.0.0.9") is Verdict.WRONG
        # source and user are both limited now: no work, not even for the right password
        assert await gate.check("admin", "good", source="10.0.0.9") is Verdict.LIMITED
        assert await gate.check("admin", "good", source="10.0.0.7") is Verdict.LIMITED
        assert await gate.check("bob", "x", source="10.0.0.9") is Verdict.LIMITED
        assert len(seen) == 3
        clock.t += 61
        assert await gate.check("admin", "good", source="10.0.0.9") is Verdict.OK

    asyncio.run(run())
    gate.close()
    assert gate.counters.limited == 3 and gate.counters.wrong == 3 and gate.counters.ok == 1


def test_a_verified_credential_is_not_locked_out() -> None:
    """The n1kv driver's cached credential keeps working while someone guesses."""
    lim = FailureLimiter(max_failures=2, window_s=60.0, clock=Clock())
    gate, seen = _gate({"admin": "hash:good"}, limiter=lim)

    async def run() -> None:
        assert await gate.check("admin", "good", source="driver") is Verdict.OK
        for _ in range(5):
            await gate.check("admin", "guess", source="attacker")
        assert await gate.check("admin", "good", source="driver") is Verdict.OK

    asyncio.run(run())
    gate.close()
    assert seen.count("hash:good") == 3  # 1 real check + 2 failures; then cache and limit
    assert gate.counters.cached == 1


def test_unknown_user_costs_a_real_check() -> None:
    gate, seen = _gate({})

    async def run() -> None:
        assert await gate.check("nobody", "pw", source="s") is Verdict.WRONG

    asyncio.run(run())
    gate.close()
    assert len(seen) == 1 and seen[0].startswith("scrypt$")  # the dummy hash
    assert gate.counters.unknown_user == 1


def test_pending_checks_are_bounded() -> None:
    release = threading.Event()

    def slow(stored: str, password: str) -> bool:
        release.wait(5)
        return False

    gate = PasswordGate({"u": "h"}.get, workers=1, max_pending=2, verify=slow)

    async def run() -> list[Verdict]:
        tasks = [asyncio.create_task(gate.check("u", "x", source=f"s{i}")) for i in range(2)]
        await asyncio.sleep(0)
        extra = await gate.check("u", "x", source="s9")  # refused at once, no work
        release.set()
        return [extra, *await asyncio.gather(*tasks)]

    verdicts = asyncio.run(run())
    gate.close()
    assert verdicts == [Verdict.LIMITED, Verdict.WRONG, Verdict.WRONG]
    assert gate.counters.busy == 1


def test_the_event_loop_runs_no_scrypt() -> None:
    """A real scrypt check runs in the pool: the loop keeps ticking meanwhile."""
    stored = hash_password("pw")
    gate = PasswordGate({"u": stored}.get)

    async def run() -> tuple[Verdict, int]:
        ticks = 0
        task = asyncio.create_task(gate.check("u", "pw", source="s"))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)
        return task.result(), ticks

    verdict, ticks = asyncio.run(run())
    gate.close()
    assert verdict is Verdict.OK and ticks > 1
    assert verify_password(stored, "pw") and not verify_password(stored, "pW")
