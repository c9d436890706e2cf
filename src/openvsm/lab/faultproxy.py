"""Fault-injecting UDP/TCP proxy on loopback: the "network" of the lab and the tests.

DESIGN §9 asks for real faults, not mocks; this proxy is how two processes on
one host get a network that can lose, delay and partition their traffic. One
``FaultProxy`` owns many named links; each link has two directions, ``a->b``
and ``b->a``, and each direction carries its own faults and counters.

UDP link (``add_udp_link``): two proxy sockets and the real addresses of the
two nodes, A and B. Each node sends to one proxy socket (its configured
peer); the proxy tells the direction by the *sender's* address (a datagram
from A goes ``a->b``, from B goes ``b->a``) and sends it on from the link's
*other* socket, so the receiver sees it come from the address it sends its
own traffic to. Routing by sender means the two proxy sockets are
interchangeable; a datagram from any other address is counted
(``unknown_senders``) and dropped. A node that is down costs nothing but
counted socket errors; the link carries on when it comes back.

TCP link (``add_tcp_link``): accepts connections on ``listen`` and opens one
to ``target`` per client; ``a->b`` is client-to-server bytes, ``b->a``
server-to-client. The connection to the target is opened only while both
directions pass (in a partition the SYN would not get through either; the
client's bytes wait in the proxy). FIN and RST travel through: a half-close
is forwarded as a half-close, a reset as a reset.

Faults, per direction:

- ``drop``: UDP datagrams are discarded (also those delayed and not yet
  sent; and, as on a real network, any that find the send queue full).
  TCP bytes are held, in order, and once the proxy's buffer
  (``TCP_HOLD_CHUNKS`` reads) is full it stops reading, so the sender feels
  TCP backpressure. ``heal`` delivers them.
- ``delay``: every datagram / chunk is delivered ``seconds`` after it
  arrived (order kept for a constant delay).
- ``drop_ratio`` (UDP only): each datagram that reaches the loss stage costs
  one draw of a ``random.Random(seed)`` owned by the direction; it is lost
  when the draw is below ``p``. The seed is reported by ``stats`` (a random
  one is chosen and reported when none is given).
- ``heal`` removes every fault of the direction (drop, delay and loss).
- ``reset`` (TCP only): closes every open connection of the link with RST
  (SO_LINGER 0) on both sides; bytes held for them are counted as dropped.

Control: the in-process API below, or ``openvsm faultproxy --control SOCK
[--config links.json]`` (also ``python -m openvsm.lab.faultproxy``), whose
control socket speaks ``openvsm.ipc`` with the ops ``drop``, ``heal``,
``delay``, ``drop_ratio``, ``reset``, ``stats`` and ``links``. The control
socket answers only once every configured link is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import ipaddress
import itertools
import json
import logging
import random
import signal
import socket
import struct
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from openvsm.ipc import PEER_KEY, Handler, IpcError, IpcServer

log = logging.getLogger(__name__)

Address = tuple[str, int]

TCP_CHUNK = 64 * 1024
TCP_HOLD_CHUNKS = 16
TCP_CONNECT_TIMEOUT = 10.0
MAX_DELAY = 3600.0


class LinkError(ValueError):
    """A bad request from the caller: unknown link, wrong kind, bad argument."""


class Direction(enum.Enum):
    A_TO_B = "a->b"
    B_TO_A = "b->a"


def parse_direction(direction: str) -> tuple[Direction, ...]:
    """``"both"``, ``"a->b"`` or ``"b->a"`` as the directions it names."""
    if direction == "both":
        return (Direction.A_TO_B, Direction.B_TO_A)
    try:
        return (Direction(direction),)
    except ValueError:
        raise LinkError(f"direction must be both, a->b or b->a, not {direction!r}") from None


def parse_address(value: Any, what: str) -> Address:
    """An ``(ip, port)`` from ``[ip, port]``, ``(ip, port)`` or ``"ip:port"``."""
    host: Any
    port: Any
    if isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise LinkError(f"{what}: expected ip:port, got {value!r}")
        host = host.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            raise LinkError(f"{what}: bad port in {value!r}") from None
    elif isinstance(value, list | tuple) and len(value) == 2:
        host, port = value
    else:
        raise LinkError(f"{what}: expected [ip, port] or 'ip:port', got {value!r}")
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise LinkError(f"{what}: expected [ip, port], got {value!r}")
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        raise LinkError(f"{what}: {host!r} is not an IP address") from None
    if not 0 <= port <= 65535:
        raise LinkError(f"{what}: port {port} out of range")
    return (ip, port)


@dataclass
class DirectionCounters:
    """What one direction of a link did. ``held_bytes`` is in the proxy now
    (delayed or partitioned); for TCP, ``dropped_*`` counts bytes discarded
    when a connection was reset while they were held."""

    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0
    held_bytes: int = 0
    send_errors: int = 0


class _DirectionState:
    """Faults and counters of one direction of one link."""

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.counters = DirectionCounters()
        self.dropped = False
        self.delay = 0.0
        self.loss = 0.0
        self.seed: int | None = None
        self._rng = random.Random(0)
        # Set while the direction passes; TCP forwarding waits on it.
        self.passing = asyncio.Event()
        self.passing.set()

    def set_dropped(self, dropped: bool) -> None:
        self.dropped = dropped
        if dropped:
            self.passing.clear()
        else:
            self.passing.set()

    def set_loss(self, p: float, seed: int) -> None:
        self.loss = p
        self.seed = seed
        self._rng = random.Random(seed)

    def heal(self) -> None:
        self.set_dropped(False)
        self.delay = 0.0
        self.loss = 0.0
        self.seed = None

    def lost(self) -> bool:
        """One draw of the loss process (only while a ratio is set)."""
        return self.loss > 0.0 and self._rng.random() < self.loss

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self.counters)
        data["faults"] = {
            "drop": self.dropped,
            "delay": self.delay,
            "drop_ratio": self.loss,
            "seed": self.seed,
        }
        return data


class _Link:
    kind = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.directions = {d: _DirectionState(d) for d in Direction}

    def counters(self, direction: str) -> DirectionCounters:
        (d,) = parse_direction(direction)
        return self.directions[d].counters

    def drop(self, directions: tuple[Direction, ...]) -> None:
        for d in directions:
            self.directions[d].set_dropped(True)

    def heal(self, directions: tuple[Direction, ...]) -> None:
        for d in directions:
            self.directions[d].heal()

    def delay(self, seconds: float, directions: tuple[Direction, ...]) -> None:
        for d in directions:
            self.directions[d].delay = seconds

    def drop_ratio(self, p: float, seed: int, directions: tuple[Direction, ...]) -> None:
        raise LinkError(f"link {self.name!r} is {self.kind}: drop_ratio applies to UDP links")

    def reset(self) -> int:
        raise LinkError(f"link {self.name!r} is {self.kind}: reset applies to TCP links")

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for d, state in self.directions.items():
            data[d.value] = state.snapshot()
        return data

    async def close(self) -> None:
        raise NotImplementedError


# ---- UDP -----------------------------------------------------------------


class _UdpSocket(asyncio.DatagramProtocol):
    def __init__(self, link: UdpLink, index: int) -> None:
        self.link = link
        self.index = index
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        # Set while the kernel will not take more and the transport buffers.
        self.backlogged = False

    def itself(self) -> _UdpSocket:
        return self

    def pause_writing(self) -> None:
        self.backlogged = True

    def resume_writing(self) -> None:
        self.backlogged = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.link.on_datagram(self.index, data, (str(addr[0]), int(addr[1])))
        except Exception:  # a bug here must not stop the socket
            log.exception("fault proxy: link %s: datagram handling failed", self.link.name)

    def error_received(self, exc: Exception) -> None:
        # An error reported by the socket (an ICMP unreachable from a node that
        # is down, where the OS reports it): normal here, counted.
        self.link.socket_errors += 1
        self.drain_errors()

    def drain_errors(self) -> None:
        """Empty the socket's error queue (IP_RECVERR).

        Each ICMP error is queued with a copy of the datagram that caused it,
        charged to the socket's receive buffer, until read with
        ``MSG_ERRQUEUE``. Left there (a node down for a while: every datagram
        sent to it comes back as "port unreachable") they fill the buffer
        and the kernel then drops arriving datagrams that no longer fit --
        the large ones first (a VEM's attach ack), silently. Every new ICMP
        error is also the socket's pending error, which the next receive or
        send reports (``error_received``): the queue is emptied then.
        """
        sock = self.sock
        if sock is None:
            return
        for _ in range(_ERRQUEUE_DRAIN_MAX):
            try:
                sock.recvmsg(1, 512, _MSG_ERRQUEUE)
            except OSError:  # empty (EAGAIN), or the socket is gone
                return
            self.link.queued_errors += 1


# Linux tells an unconnected UDP socket about ICMP errors only with
# IP_RECVERR; the proxy asks for them so that a dead node shows in the
# counters (and so that the error path is exercised, not dormant).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11 if sys.platform.startswith("linux") else None)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25 if sys.platform.startswith("linux") else None)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_ERRQUEUE_DRAIN_MAX = 4096  # per call; the queue is bounded by the receive buffer


def _report_icmp_errors(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET:
        level, option = socket.IPPROTO_IP, _IP_RECVERR
    else:
        level, option = socket.IPPROTO_IPV6, _IPV6_RECVERR
    if option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, 1)


class UdpLink(_Link):
    """Two proxy sockets between nodes A and B; see the module docstring."""

    kind = "udp"

    def __init__(
        self, name: str, a_listen: Address, b_target: Address, b_listen: Address, a_target: Address
    ) -> None:
        super().__init__(name)
        self.a_target = a_target
        self.b_target = b_target
        self.listen = [a_listen, b_listen]
        self.unknown_senders = 0
        self.socket_errors = 0
        self.queued_errors = 0  # ICMP errors read from the sockets' error queues
        self._sockets: list[_UdpSocket] = []
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_ids = itertools.count()
        self._closed = False

    @property
    def a_listen(self) -> Address:
        return self.listen[0]

    @property
    def b_listen(self) -> Address:
        return self.listen[1]

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for index, local in enumerate(self.listen):
                proto = _UdpSocket(self, index)
                self._sockets.append(proto)
                family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
                proto.sock = socket.socket(family, socket.SOCK_DGRAM)
                proto.sock.setblocking(False)
                _report_icmp_errors(proto.sock)
                proto.sock.bind(local)
                bound = proto.sock.getsockname()
                self.listen[index] = (str(bound[0]), int(bound[1]))
                transport, _ = await loop.create_datagram_endpoint(proto.itself, sock=proto.sock)
                proto.transport = transport
        except BaseException:
            await self.close()
            raise

    def on_datagram(self, index: int, data: bytes, sender: Address) -> None:
        if self._closed:
            return
        if sender == self.a_target:
            state, dest = self.directions[Direction.A_TO_B], self.b_target
        elif sender == self.b_target:
            state, dest = self.directions[Direction.B_TO_A], self.a_target
        else:
            self.unknown_senders += 1
            return
        egress = self._sockets[1 - index]
        if state.dropped or state.lost():
            state.counters.dropped_packets += 1
            state.counters.dropped_bytes += len(data)
            return
        if state.delay > 0.0:
            state.counters.held_bytes += len(data)
            key = next(self._timer_ids)
            self._timers[key] = asyncio.get_running_loop().call_later(
                state.delay, self._deliver_later, key, state, egress, data, dest
            )
            return
        self._deliver(state, egress, data, dest)

    def _deliver_later(
        self, key: int, state: _DirectionState, egress: _UdpSocket, data: bytes, dest: Address
    ) -> None:
        self._timers.pop(key, None)
        state.counters.held_bytes -= len(data)
        self._deliver(state, egress, data, dest)

    def _deliver(
        self, state: _DirectionState, egress: _UdpSocket, data: bytes, dest: Address
    ) -> None:
        counters = state.counters
        transport = egress.transport
        # A drop set while a datagram was delayed applies to it too; and like a
        # real network the proxy drops when its send queue is full.
        if state.dropped or egress.backlogged:
            counters.dropped_packets += 1
            counters.dropped_bytes += len(data)
            return
        if transport is None or transport.is_closing():
            counters.send_errors += 1
            return
        try:
            if data:
                transport.sendto(data, dest)
            else:
                # asyncio's sendto silently skips empty datagrams; they are
                # valid traffic, so they go straight to the socket.
                assert egress.sock is not None
                egress.sock.sendto(data, dest)
        except OSError:
            counters.send_errors += 1
            return
        counters.forwarded_packets += 1
        counters.forwarded_bytes += len(data)

    def drop_ratio(self, p: float, seed: int, directions: tuple[Direction, ...]) -> None:
        for d in directions:
            self.directions[d].set_loss(p, seed)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "a": list(self.a_target),
            "b": list(self.b_target),
            "a_listen": list(self.a_listen),
            "b_listen": list(self.b_listen),
        }

    def stats(self) -> dict[str, Any]:
        data = super().stats()
        data["unknown_senders"] = self.unknown_senders
        data["socket_errors"] = self.socket_errors
        data["queued_errors"] = self.queued_errors
        return data

    async def close(self) -> None:
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for state in self.directions.values():
            state.counters.held_bytes = 0
        for sock in self._sockets:
            if sock.transport is not None:
                sock.transport.close()
            elif sock.sock is not None:
                sock.sock.close()
        self._sockets.clear()
        await asyncio.sleep(0)  # let the transports finish closing


# ---- TCP -----------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    due: float
    data: bytes


class _Refused(Exception):
    """The target did not accept the connection."""


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _TcpConnection:
    """One client connection and its connection to the target."""

    def __init__(
        self, link: TcpLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.link = link
        self._client_reader = reader
        self._client = writer
        self._upstream: asyncio.StreamWriter | None = None
        self._upstream_ready = asyncio.Event()
        self._queues: dict[Direction, asyncio.Queue[_Chunk | None]] = {
            d: asyncio.Queue(maxsize=TCP_HOLD_CHUNKS) for d in Direction
        }
        self._held = dict.fromkeys(Direction, 0)
        self._aborted = False

    def abort(self) -> None:
        """Reset both sides now (RST)."""
        self._aborted = True
        for writer in (self._client, self._upstream):
            if writer is not None:
                _abort_with_rst(writer)

    async def run(self) -> None:
        graceful = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump_in(self._client_reader, Direction.A_TO_B))
                tg.create_task(self._pump_out(Direction.A_TO_B))
                tg.create_task(self._connect_and_pump_in())
                tg.create_task(self._pump_out(Direction.B_TO_A))
            graceful = not self._aborted
        except* _Refused:
            self.link.connect_failures += 1
        except* (OSError, EOFError):
            pass  # a reset or error on one side resets the other
        finally:
            await self._finish(graceful)

    async def _finish(self, graceful: bool) -> None:
        for d, held in self._held.items():
            counters = self.link.directions[d].counters
            counters.held_bytes -= held
            if not graceful:
                counters.dropped_bytes += held
            self._held[d] = 0
        writers = [w for w in (self._client, self._upstream) if w is not None]
        if graceful:
            for writer in writers:
                writer.close()
        else:
            self.abort()
        for writer in writers:
            try:
                async with asyncio.timeout(2.0):
                    await writer.wait_closed()
            except (TimeoutError, OSError):
                writer.transport.abort()
            except asyncio.CancelledError:
                writer.transport.abort()
                raise

    async def _connect_and_pump_in(self) -> None:
        directions = self.link.directions.values()
        while not all(state.passing.is_set() for state in directions):
            for state in directions:
                await state.passing.wait()
        try:
            async with asyncio.timeout(TCP_CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(*self.link.target)
        except (OSError, TimeoutError) as exc:
            raise _Refused(str(exc)) from None
        self._upstream = writer
        if self._aborted:
            _abort_with_rst(writer)
            return
        self._upstream_ready.set()
        await self._pump_in(reader, Direction.B_TO_A)

    async def _pump_in(self, reader: asyncio.StreamReader, direction: Direction) -> None:
        state = self.link.directions[direction]
        queue = self._queues[direction]
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(TCP_CHUNK)
            if not data:
                await queue.put(None)
                return
            self._held[direction] += len(data)
            state.counters.held_bytes += len(data)
            await queue.put(_Chunk(loop.time() + state.delay, data))

    async def _pump_out(self, direction: Direction) -> None:
        state = self.link.directions[direction]
        queue = self._queues[direction]
        loop = asyncio.get_running_loop()
        if direction is Direction.A_TO_B:
            await self._upstream_ready.wait()
            assert self._upstream is not None
            writer = self._upstream
        else:
            writer = self._client
        while True:
            chunk = await queue.get()
            if chunk is not None and chunk.due > loop.time():
                await asyncio.sleep(chunk.due - loop.time())
            await state.passing.wait()
            if chunk is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk.data)
            await writer.drain()
            self._held[direction] -= len(chunk.data)
            state.counters.held_bytes -= len(chunk.data)
            state.counters.forwarded_packets += 1
            state.counters.forwarded_bytes += len(chunk.data)


class TcpLink(_Link):
    """Connections accepted on ``listen`` are forwarded to ``target``."""

    kind = "tcp"

    def __init__(self, name: str, listen: Address, target: Address) -> None:
        super().__init__(name)
        self.listen = listen
        self.target = target
        self.accepted = 0
        self.connect_failures = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._conns: dict[_TcpConnection, asyncio.Task[None]] = {}
        self._closed = False

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self.listen[0], self.listen[1], reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.listen = (str(bound[0]), int(bound[1]))

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed:
            _abort_with_rst(writer)
            return
        self.accepted += 1
        conn = _TcpConnection(self, reader, writer)
        task = asyncio.get_running_loop().create_task(conn.run())
        self._conns[conn] = task
        task.add_done_callback(lambda t: self._connection_done(conn, t))

    def _connection_done(self, conn: _TcpConnection, task: asyncio.Task[None]) -> None:
        self._conns.pop(conn, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "fault proxy: link %s: connection failed", self.name, exc_info=task.exception()
            )

    def reset(self) -> int:
        conns = list(self._conns.items())
        for conn, task in conns:
            conn.abort()
            task.cancel()
        self.resets += len(conns)
        return len(conns)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "listen": list(self.listen),
            "target": list(self.target),
        }

    def stats(self) -> dict[str, Any]:
        data = super().stats()
        data["connections"] = len(self._conns)
        data["accepted"] = self.accepted
        data["connect_failures"] = self.connect_failures
        data["resets"] = self.resets
        return data

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._conns.values())
        for conn in list(self._conns):
            conn.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


# ---- the proxy -------------------------------------------------------------


@dataclass(frozen=True)
class UdpLinkSpec:
    name: str
    a_listen: Address
    b_target: Address
    b_listen: Address
    a_target: Address


@dataclass(frozen=True)
class TcpLinkSpec:
    name: str
    listen: Address
    target: Address


LinkSpec = UdpLinkSpec | TcpLinkSpec


class FaultProxy:
    """Many named links and their faults. ``async with FaultProxy() as p`` or
    ``await p.close()``: closing ends every socket and task it owns."""

    def __init__(self) -> None:
        self._links: dict[str, _Link] = {}

    async def __aenter__(self) -> FaultProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_new(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise LinkError("a link needs a non-empty name")
        if name in self._links:
            raise LinkError(f"link {name!r} already exists")

    async def add_udp_link(
        self, name: str, a_listen: Address, b_target: Address, b_listen: Address, a_target: Address
    ) -> UdpLink:
        """Bind the link's two sockets (port 0 picks one; read ``link.a_listen``).

        A (at ``a_target``) is meant to send to ``a_listen`` and B (at
        ``b_target``) to ``b_listen``; each datagram leaves from the other
        socket. The proxy routes by sender, so the two sockets may be swapped.
        """
        self._check_new(name)
        a_listen = parse_address(a_listen, "a_listen")
        b_listen = parse_address(b_listen, "b_listen")
        a_target = parse_address(a_target, "a_target")
        b_target = parse_address(b_target, "b_target")
        if a_target == b_target:
            raise LinkError(f"link {name!r}: A and B cannot be the same address")
        if a_listen == b_listen and a_listen[1] != 0:
            raise LinkError(f"link {name!r}: the two proxy sockets need different ports")
        link = UdpLink(name, a_listen, b_target, b_listen, a_target)
        await link.open()
        self._links[name] = link
        return link

    async def add_tcp_link(self, name: str, listen: Address, target: Address) -> TcpLink:
        """Listen on ``listen`` (port 0 picks one; read ``link.listen``)."""
        self._check_new(name)
        link = TcpLink(name, parse_address(listen, "listen"), parse_address(target, "target"))
        await link.open()
        self._links[name] = link
        return link

    async def add_links(self, specs: Iterable[LinkSpec]) -> None:
        for spec in specs:
            if isinstance(spec, UdpLinkSpec):
                await self.add_udp_link(
                    spec.name, spec.a_listen, spec.b_target, spec.b_listen, spec.a_target
                )
            else:
                await self.add_tcp_link(spec.name, spec.listen, spec.target)

    def link(self, name: str) -> _Link:
        try:
            return self._links[name]
        except (KeyError, TypeError):
            raise LinkError(f"no link named {name!r}") from None

    def drop(self, name: str, direction: str = "both") -> None:
        self.link(name).drop(parse_direction(direction))

    def heal(self, name: str, direction: str = "both") -> None:
        self.link(name).heal(parse_direction(direction))

    def delay(self, name: str, seconds: float, direction: str = "both") -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0.0 <= seconds <= MAX_DELAY
        ):
            raise LinkError(f"delay must be between 0 and {MAX_DELAY:g} seconds, not {seconds!r}")
        self.link(name).delay(float(seconds), parse_direction(direction))

    def drop_ratio(
        self, name: str, p: float, seed: int | None = None, direction: str = "both"
    ) -> int:
        """Lose a fraction ``p`` of the datagrams; returns the seed in use."""
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise LinkError(f"drop ratio must be between 0 and 1, not {p!r}")
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise LinkError(f"seed must be an integer, not {seed!r}")
        self.link(name).drop_ratio(float(p), seed, parse_direction(direction))
        return seed

    def reset(self, name: str) -> int:
        """Reset every open connection of a TCP link; returns how many."""
        return self.link(name).reset()

    def stats(self, name: str | None = None) -> dict[str, Any]:
        """Counters and faults of one link, or ``{name: ...}`` of all of them."""
        if name is not None:
            return self.link(name).stats()
        return {n: link.stats() for n, link in self._links.items()}

    def links(self) -> list[dict[str, Any]]:
        return [link.describe() for link in self._links.values()]

    async def close(self) -> None:
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            await link.close()


# ---- configuration file and control socket -------------------------------


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise LinkError(f"{where}: missing {key!r}")
    return entry[key]


def specs_from_config(data: Any) -> list[LinkSpec]:
    """Links of a config document: ``{"udp": [{"name", "a", "b", "a_listen",
    "b_listen"}], "tcp": [{"name", "listen", "target"}]}``; addresses are
    ``[ip, port]`` or ``"ip:port"``. ``a``/``b`` are the nodes' own sockets."""
    if not isinstance(data, dict):
        raise LinkError("config: expected an object with 'udp' and/or 'tcp' lists")
    unknown = set(data) - {"udp", "tcp"}
    if unknown:
        raise LinkError(f"config: unknown keys {sorted(unknown)}")
    specs: list[LinkSpec] = []
    names: set[str] = set()
    for kind in ("udp", "tcp"):
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise LinkError(f"config: {kind!r} must be a list")
        for i, entry in enumerate(entries):
            where = f"config: {kind}[{i}]"
            if not isinstance(entry, dict):
                raise LinkError(f"{where}: expected an object")
            name = _require(entry, "name", where)
            if not isinstance(name, str) or not name:
                raise LinkError(f"{where}: 'name' must be a non-empty string")
            if name in names:
                raise LinkError(f"{where}: duplicate link name {name!r}")
            names.add(name)
            where = f"config: {kind} link {name!r}"
            if kind == "udp":
                allowed = {"name", "a", "b", "a_listen", "b_listen"}
            else:
                allowed = {"name", "listen", "target"}
            extra = set(entry) - allowed
            if extra:
                raise LinkError(f"{where}: unknown keys {sorted(extra)}")

            def addr(key: str, where: str = where, entry: dict[str, Any] = entry) -> Address:
                return parse_address(_require(entry, key, where), f"{where}: {key}")

            if kind == "udp":
                specs.append(
                    UdpLinkSpec(
                        name=name,
                        a_listen=addr("a_listen"),
                        b_target=addr("b"),
                        b_listen=addr("b_listen"),
                        a_target=addr("a"),
                    )
                )
            else:
                specs.append(TcpLinkSpec(name=name, listen=addr("listen"), target=addr("target")))
    return specs


def _arg(args: dict[str, Any], key: str, types: type | tuple[type, ...], default: Any) -> Any:
    if key not in args:
        return default
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise IpcError(f"argument {key!r} has the wrong type: {value!r}")
    return value


_OP_ARGS: dict[str, set[str]] = {
    "drop": {"name", "direction"},
    "heal": {"name", "direction"},
    "delay": {"name", "seconds", "direction"},
    "drop_ratio": {"name", "p", "seed", "direction"},
    "reset": {"name"},
    "stats": {"name"},
    "links": set(),
}

_MISSING = object()


def control_handler(proxy: FaultProxy) -> Handler:
    """The ``openvsm.ipc`` handler that drives ``proxy``.

    Ops and arguments: ``drop``/``heal`` (name, direction="both"), ``delay``
    (name, seconds, direction="both"), ``drop_ratio`` (name, p, seed=None,
    direction="both"; returns ``{"seed": s}``), ``reset`` (name; returns
    ``{"reset": n}``), ``stats`` (name=None), ``links``.
    """

    async def handle(op: str, args: dict[str, Any]) -> Any:
        if op not in _OP_ARGS:
            raise IpcError(f"unknown op {op!r} (ops: {', '.join(sorted(_OP_ARGS))})")
        # PEER_KEY: the caller's credentials, added by the IPC server (SO_PEERCRED).
        extra = set(args) - _OP_ARGS[op] - {PEER_KEY}
        if extra:
            raise IpcError(f"{op}: unknown arguments {sorted(extra)}")
        needs_name = op not in ("stats", "links")
        name = _arg(args, "name", str, _MISSING)
        if needs_name and name is _MISSING:
            raise IpcError(f"{op}: missing argument 'name'")
        direction = _arg(args, "direction", str, "both")
        try:
            if op == "drop":
                proxy.drop(name, direction)
                return None
            if op == "heal":
                proxy.heal(name, direction)
                return None
            if op == "delay":
                seconds = _arg(args, "seconds", (int, float), _MISSING)
                if seconds is _MISSING:
                    raise IpcError("delay: missing argument 'seconds'")
                proxy.delay(name, seconds, direction)
                return None
            if op == "drop_ratio":
                p = _arg(args, "p", (int, float), _MISSING)
                if p is _MISSING:
                    raise IpcError("drop_ratio: missing argument 'p'")
                seed = _arg(args, "seed", (int, type(None)), None)
                return {"seed": proxy.drop_ratio(name, p, seed, direction)}
            if op == "reset":
                return {"reset": proxy.reset(name)}
            if op == "stats":
                return proxy.stats(None if name is _MISSING else name)
            return proxy.links()
        except LinkError as exc:
            raise IpcError(str(exc)) from None

    return handle


async def serve(control: Path, specs: list[LinkSpec], stop: asyncio.Event) -> None:
    """Run a proxy with ``specs`` and its control socket until ``stop`` is set."""
    async with FaultProxy() as proxy:
        await proxy.add_links(specs)
        server = IpcServer(control, control_handler(proxy))
        await server.start()
        try:
            log.info("fault proxy ready: %s", json.dumps(proxy.links()))
            await stop.wait()
        finally:
            await server.stop()


async def _serve_until_signal(control: Path, specs: list[LinkSpec]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(control, specs, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openvsm faultproxy",
        description="fault-injecting UDP/TCP proxy on loopback, driven over a control socket",
    )
    parser.add_argument(
        "--control", type=Path, required=True, help="control socket (openvsm IPC) to create"
    )
    parser.add_argument("--config", type=Path, help="links.json: {'udp': [...], 'tcp': [...]}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s faultproxy %(levelname)s %(message)s"
    )
    specs: list[LinkSpec] = []
    try:
        if args.config is not None:
            specs = specs_from_config(json.loads(args.config.read_text()))
        asyncio.run(_serve_until_signal(args.control, specs))
    except (LinkError, OSError, json.JSONDecodeError) as exc:
        print(f"openvsm faultproxy: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "Direction",
    "DirectionCounters",
    "FaultProxy",
    "LinkError",
    "LinkSpec",
    "TcpLink",
    "TcpLinkSpec",
    "UdpLink",
    "UdpLinkSpec",
    "cli_main",
    "control_handler",
    "parse_address",
    "parse_direction",
    "serve",
    "specs_from_config",
]

if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
