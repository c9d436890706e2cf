"""``BatchedUdpEndpoint``: vemmgr's VEM socket, read and written in batches.

Theory of operation. asyncio's datagram transport reads one datagram per
event-loop iteration and readiness event: with 10,000 VEMs heartbeating every
second that is 10,000 loop iterations a second, each paying the selector
call, the callback scheduling and the transport's checks, more than the
frame's own work. This endpoint registers the socket with ``add_reader``
itself and, on each readiness event, drains up to ``READ_BATCH`` (64) datagrams
with plain ``recvfrom`` calls before it returns to the loop (so timers and
IPC still run between batches). ``read_batch=1`` suits a socket that hears
a datagram now and then (one of vem-sim's many): one ``recvfrom`` per
readiness event, no second call to learn that the queue is empty.

Sends go straight to ``sendto`` on the non-blocking socket (no transport
bookkeeping per datagram). When the kernel buffer is full
(``BlockingIOError``) the datagram is queued and the queue is flushed from an
``add_writer`` callback, in order; datagrams sent meanwhile join the queue
so that order is kept. The queue is bounded (``SEND_BACKLOG``): beyond it a
datagram is dropped and counted (UDP may lose it anyway; every VEM protocol
message is retried or periodic). Any other ``OSError`` on a send or a
receive is counted, never raised (a VEM that went away is normal).

Same surface as ``openvsm.wire.udp.UdpEndpoint`` for what vemmgr uses:
``open``, ``send``, ``close``, ``local``, ``on_datagram``, ``sent``,
``send_errors``, ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

Receiver = Callable[[bytes, tuple[str, int]], None]

READ_BATCH: Final = 64  # datagrams read per readiness event, at most (bounds loop latency)
SEND_BACKLOG: Final = 65536  # datagrams queued while the socket buffer is full
MAX_DATAGRAM: Final = 65535


class BatchedUdpEndpoint:
    def __init__(
        self, local: tuple[str, int], on_datagram: Receiver, *, read_batch: int = READ_BATCH
    ) -> None:
        self.local = local
        self.read_batch = max(1, read_batch)
        self.on_datagram = on_datagram
        self.errors = 0  # receive errors
        self.sent = 0
        self.send_errors = 0
        self.send_dropped = 0  # backlog full
        self.reads = 0  # readiness events served (datagrams / reads = batching)
        self.received = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.local
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        name = sock.getsockname()
        self.local = (str(name[0]), int(name[1]))
        self._sock = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def set_receive_buffer(self, size: int) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self.reads += 1
        recv = sock.recvfrom
        handler = self.on_datagram
        for _ in range(self.read_batch):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                continue
            self.received += 1
            try:
                handler(data, (str(addr[0]), int(addr[1])))
            except Exception:  # a bug in a handler must not stop the socket
                log.exception("datagram handler failed")

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        sock = self._sock
        if sock is None:
            self.send_errors += 1
            return
        if self._backlog:
            self._queue(data, addr)
            return
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            if self._loop is not None:
                self._loop.add_writer(sock.fileno(), self._writable)
            return
        except OSError:
            self.send_errors += 1
            return
        self.sent += 1

    def _queue(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self._backlog) >= SEND_BACKLOG:
            self.send_dropped += 1
            return
        self._backlog.append((data, addr))

    def _writable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while self._backlog:
            data, addr = self._backlog[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return  # still full: wait for the next writable event
            except OSError:
                self.send_errors += 1
            else:
                self.sent += 1
            self._backlog.popleft()
        if self._loop is not None:
            self._loop.remove_writer(sock.fileno())

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
        self._backlog.clear()
        sock.close()
