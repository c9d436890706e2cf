"""A stopped timer loop stops, even when its wake-up and the cancel coincide.

Python 3.11's ``asyncio.wait_for`` returns the inner result when the outer
task is cancelled in the same loop iteration as the inner future completes:
the cancel is lost, a ``while True`` timer loop keeps running and the
``stop()`` that awaits it never returns. That hung vemmgr's unit tests (and a
landing's test run) at random. ``src/`` therefore waits with
``asyncio.timeout``, which keeps the cancel; this file holds both the rule and
the race that motivates it.
"""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

from openvsm.vem.agent import VemRunner
from openvsm.vem.core import VemCore
from openvsm.vem.memory import MemoryBackend
from openvsm.wire.codec import Codec

SRC = Path(__file__).resolve().parents[2] / "src" / "openvsm"


def _runner() -> VemRunner:
    core = VemCore(
        host_uuid="uuid-host-1",
        host_name="host-1",
        host_ip="127.0.0.1",
        vsms=(("127.0.0.1", 9),),
        heartbeat_interval=0.1,
        headless_after=1.0,
    )
    return VemRunner(core, Codec(77, b"unit-secret"), MemoryBackend(), lambda d, a: None)


def test_a_timer_loop_cancelled_as_it_is_woken_ends() -> None:
    async def scenario() -> None:
        runner = _runner()
        task = asyncio.create_task(runner.timer_loop())
        for _ in range(50):
            await asyncio.sleep(0)
            # The wake-up and the cancel in the same iteration: the race.
            runner.wake.set()
            task.cancel()
            async with asyncio.timeout(2.0):
                await asyncio.gather(task, return_exceptions=True)
            assert task.cancelled(), "the cancel was swallowed"
            task = asyncio.create_task(runner.timer_loop())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_the_race_is_real_with_wait_for() -> None:
    """The same loop written with ``wait_for`` loses the cancel (3.11)."""

    async def scenario() -> bool:
        wake = asyncio.Event()

        async def loop() -> None:
            while True:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 1.0)
                except TimeoutError:
                    pass

        task = asyncio.create_task(loop())
        await asyncio.sleep(0)
        wake.set()
        task.cancel()
        try:
            async with asyncio.timeout(0.3):
                await asyncio.gather(task, return_exceptions=True)
        except TimeoutError:
            task.cancel()  # a second cancel ends it
            await asyncio.gather(task, return_exceptions=True)
            return True
        return False

    lost = asyncio.run(scenario())
    if sys.version_info < (3, 12):
        assert lost, "expected 3.11's wait_for to lose the cancel"


def test_src_never_uses_wait_for() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "wait_for"
                and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, f"use asyncio.timeout, not asyncio.wait_for: {found}"
