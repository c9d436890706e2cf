"""vemmgr's batched UDP endpoint: many datagrams per wake-up, order kept on a
full send buffer, errors counted. Real sockets on loopback; waits are on
conditions with a deadline."""

from __future__ import annotations

import asyncio
import socket

import pytest

from openvsm.modules import udpbatch
from openvsm.modules.udpbatch import BatchedUdpEndpoint
from tests.unit.test_udp import until

N = 200  # fits a default loopback receive buffer (no kernel drops)


def test_a_burst_is_read_in_few_wakeups_and_answered() -> None:
    async def scenario() -> None:
        got: list[bytes] = []

        def echo(data: bytes, addr: tuple[str, int]) -> None:
            got.append(data)
            ep.send(data, addr)

        ep = BatchedUdpEndpoint(("127.0.0.1", 0), echo)
        await ep.open()
        ep.set_receive_buffer(1 << 20)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        try:
            for i in range(N):  # all queued in the kernel before the loop looks
                peer.sendto(b"%d" % i, ep.local)
            await until(lambda: len(got) == N)
            assert got == [b"%d" % i for i in range(N)]
            assert ep.reads <= N // udpbatch.READ_BATCH + 2 < N  # not one wake per datagram
            echoed: list[bytes] = []

            def drain() -> bool:
                while True:
                    try:
                        echoed.append(peer.recvfrom(100)[0])
                    except BlockingIOError:
                        return len(echoed) == N

            await until(drain)
            assert ep.sent == N and ep.send_errors == 0
        finally:
            peer.close()
            ep.close()
        ep.send(b"late", ("127.0.0.1", 9))  # after close: counted, not raised
        assert ep.send_errors == 1

    asyncio.run(scenario())


class FullSocket:
    """The endpoint's socket, answering "buffer full" to sends while ``full``."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.full = True

    def fileno(self) -> int:
        return self.real.fileno()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if self.full:
            raise BlockingIOError
        return self.real.sendto(data, addr)


def test_a_full_send_buffer_queues_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udpbatch, "SEND_BACKLOG", 4)

    async def scenario() -> None:
        ep = BatchedUdpEndpoint(("127.0.0.1", 0), lambda d, a: None)
        await ep.open()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        real = ep._sock
        assert real is not None
        fake = FullSocket(real)
        ep._sock = fake  # type: ignore[assignment]
        try:
            for i in range(6):  # 4 queued, 2 dropped: the backlog is bounded
                ep.send(b"%d" % i, peer.getsockname())
            assert len(ep._backlog) == 4 and ep.send_dropped == 2 and ep.sent == 0
            fake.full = False
            seen: list[bytes] = []

            def drain() -> bool:
                while True:
                    try:
                        seen.append(peer.recvfrom(100)[0])
                    except BlockingIOError:
                        return len(seen) == 4

            await until(drain)
            assert seen == [b"0", b"1", b"2", b"3"] and ep.sent == 4 and not ep._backlog
            ep.send(b"direct", peer.getsockname())  # writable again: straight to the socket
            await until(lambda: drain() or seen[-1] == b"direct")
            assert ep.sent == 5
        finally:
            ep._sock = real
            peer.close()
            ep.close()

    asyncio.run(scenario())
