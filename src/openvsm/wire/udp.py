"""asyncio UDP endpoint: bytes in, bytes out; the protocol logic lives elsewhere.

ICMP errors (peer port closed) surface as ``error_received`` and are counted,
never raised: a dead peer is normal in an HA pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Receiver = Callable[[bytes, tuple[str, int]], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: UdpEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            self.endpoint.on_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # a bug in a handler must not stop the socket
            log.exception("datagram handler failed")

    def error_received(self, exc: Exception) -> None:
        self.endpoint.errors += 1


class UdpEndpoint:
    def __init__(self, local: tuple[str, int], on_datagram: Receiver) -> None:
        self.local = local
        self.on_datagram = on_datagram
        self.errors = 0
        self.sent = 0
        self.send_errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.local, reuse_port=False
        )
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        if sock:
            self.local = (str(sock[0]), int(sock[1]))

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            self.send_errors += 1
            return
        try:
            self._transport.sendto(data, addr)
            self.sent += 1
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
