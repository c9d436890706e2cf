"""UDP endpoint: "port unreachable" reports for the crash fast path (Linux).

A datagram to a port of a live host where nothing listens earns an ICMP port
unreachable; with ``on_unreachable`` the endpoint reports the destination of
each such datagram, keeps working for ordinary traffic, and never spins on a
non-empty error queue. Real sockets on loopback; waits are on events with a
deadline, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import pytest

from openvsm.wire.udp import UdpEndpoint

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="IP_RECVERR is Linux")


def closed_port() -> tuple[str, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    addr: tuple[str, int] = s.getsockname()
    s.close()
    return addr


async def until(cond: object, timeout: float = 5.0) -> None:
    assert callable(cond)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.001)


async def send_until(ep: UdpEndpoint, to: tuple[str, int], cond: object) -> None:
    """Send to ``to`` every 20 ms until ``cond()``: the kernel rate-limits ICMP
    errors machine-wide (icmp_msgs_per_sec), so one datagram may earn none."""
    assert callable(cond)
    loop = asyncio.get_running_loop()
    end = loop.time() + 5.0
    while not cond():
        assert loop.time() < end, "no report in time"
        ep.send(b"probe", to)
        with contextlib.suppress(AssertionError):
            await until(cond, 0.02)


def test_port_unreachable_is_reported_with_the_destination() -> None:
    async def scenario() -> None:
        dead = closed_port()
        reports: list[tuple[str, int]] = []
        received: list[bytes] = []
        ep = UdpEndpoint(
            ("127.0.0.1", 0), lambda d, a: received.append(d), on_unreachable=reports.append
        )
        peer = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None)
        await ep.open()
        await peer.open()
        try:
            await send_until(ep, dead, lambda: bool(reports))
            assert reports[0] == dead and ep.unreachable >= 1
            # The error queue is drained: the loop is not spinning on it, and
            # ordinary traffic still arrives.
            peer.send(b"hello", ep.local)
            await until(lambda: received == [b"hello"])
            before = len(reports)
            await send_until(ep, dead, lambda: len(reports) > before)
            assert set(reports) == {dead}
        finally:
            ep.close()
            peer.close()

    asyncio.run(scenario())


def test_a_live_port_is_never_reported_and_plain_endpoints_report_nothing() -> None:
    async def scenario() -> None:
        dead = closed_port()
        reports: list[tuple[str, int]] = []
        received: list[bytes] = []
        live = UdpEndpoint(("127.0.0.1", 0), lambda d, a: received.append(d))
        ep = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None, on_unreachable=reports.append)
        plain = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None)
        for e in (live, ep, plain):
            await e.open()
        try:
            for _ in range(3):
                ep.send(b"probe", live.local)
                plain.send(b"probe", dead)
            await until(lambda: len(received) == 3)
            # a report after the live ones arrived: they were not reported
            await send_until(ep, dead, lambda: bool(reports))
            assert set(reports) == {dead}
            assert plain.unreachable == 0
        finally:
            for e in (live, ep, plain):
                e.close()

    asyncio.run(scenario())


def test_a_send_right_after_an_unreachable_one_is_not_lost() -> None:
    # The ICMP for the first datagram is queued before the second send; as the
    # socket's pending error it would fail that send (asyncio drops it).
    async def scenario() -> None:
        dead = closed_port()
        received: list[bytes] = []
        live = UdpEndpoint(("127.0.0.1", 0), lambda d, a: received.append(d))
        ep = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None, on_unreachable=lambda a: None)
        await live.open()
        await ep.open()
        try:
            for i in range(20):
                ep.send(b"probe", dead)
                ep.send(b"%d" % i, live.local)
            await until(lambda: len(received) == 20)
            assert received == [b"%d" % i for i in range(20)]
        finally:
            ep.close()
            live.close()

    asyncio.run(scenario())
