"""asyncio UDP endpoint: bytes in, bytes out; the protocol logic lives elsewhere.

ICMP errors (peer port closed) surface as ``error_received`` and are counted,
never raised: a dead peer is normal in an HA pair.

Port unreachable, reported (``on_unreachable``, Linux): a plain unconnected
UDP socket never hears of ICMP errors. With ``on_unreachable`` the socket
sets ``IP_RECVERR`` (``IPV6_RECVERR``): the kernel queues each ICMP error on
the socket's error queue with the destination of the datagram that caused
it, and the next receive fails with that error (asyncio's
``error_received``). The endpoint then drains the whole error queue
(``MSG_ERRQUEUE``; a non-empty queue keeps the socket readable, so it must be
emptied every time; it is also drained before each send, since the pending
error would fail that send) and calls ``on_unreachable(destination)`` for every
"port unreachable" (``ECONNREFUSED``) among them: positive evidence that
nothing listens on that port of a host that is up. hamgr's crash fast path
uses it (DESIGN §3). Other ICMP errors (host or network unreachable) are
only counted.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

Receiver = Callable[[bytes, tuple[str, int]], None]
Unreachable = Callable[[tuple[str, int]], None]

# Linux values (the socket module does not export them).
IP_RECVERR = 11
IPV6_RECVERR = 25
MSG_ERRQUEUE = 0x2000
# struct sock_extended_err: ee_errno u32, ee_origin u8, ee_type u8, ee_code u8,
# ee_pad u8, ee_info u32, ee_data u32 (then the offender's sockaddr).
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_ERRQUEUE_DRAIN_MAX = 64  # per error_received; the queue is bounded by rcvbuf anyway


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
        self.endpoint.drain_error_queue()


class UdpEndpoint:
    def __init__(
        self,
        local: tuple[str, int],
        on_datagram: Receiver,
        *,
        on_unreachable: Unreachable | None = None,
    ) -> None:
        self.local = local
        self.on_datagram = on_datagram
        self.on_unreachable = on_unreachable
        self.errors = 0
        self.sent = 0
        self.send_errors = 0
        self.unreachable = 0  # "port unreachable" reports drained from the error queue
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None  # set when the error queue is read

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.on_unreachable is None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=self.local, reuse_port=False
            )
        else:
            sock = await self._recverr_socket(loop)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.local = (str(sockname[0]), int(sockname[1]))

    async def _recverr_socket(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        host, port = self.local
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
            level, opt = (
                (socket.IPPROTO_IPV6, IPV6_RECVERR)
                if family == socket.AF_INET6
                else (socket.IPPROTO_IP, IP_RECVERR)
            )
            try:
                sock.setsockopt(level, opt, 1)
                self._sock = sock
            except OSError as exc:  # not Linux: no reports, the socket still works
                log.info("no ICMP error reports on %s: %s", self.local, exc)
        except BaseException:
            sock.close()
            raise
        return sock

    def drain_error_queue(self) -> None:
        """Read every queued ICMP error; report each "port unreachable"."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(_ERRQUEUE_DRAIN_MAX):
            try:
                _, ancdata, _, addr = sock.recvmsg(1, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            for _level, _type, data in ancdata:
                if len(data) < _EXTENDED_ERR.size:
                    continue
                ee_errno = _EXTENDED_ERR.unpack_from(data)[0]
                if ee_errno == errno.ECONNREFUSED and isinstance(addr, tuple) and addr:
                    self.unreachable += 1
                    if self.on_unreachable is not None:
                        try:
                            self.on_unreachable((str(addr[0]), int(addr[1])))
                        except Exception:
                            log.exception("unreachable handler failed")

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            self.send_errors += 1
            return
        # A queued ICMP error is also the socket's pending error, which the
        # kernel returns to the next send instead of sending it (asyncio then
        # drops the datagram): on loopback the ICMP for one datagram is queued
        # before the next send. Reading the queue clears it.
        self.drain_error_queue()
        try:
            self._transport.sendto(data, addr)
            self.sent += 1
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._sock = None
