"""The fault proxy, in process, with real sockets on 127.0.0.1.

Negative checks ("nothing arrived") wait on the proxy's own counters: the
proxy handles datagrams and bytes in order, so once it has counted a datagram
as dropped (or bytes as held) it will not deliver them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from openvsm.ipc import IpcError
from openvsm.lab.faultproxy import (
    TCP_CHUNK,
    TCP_HOLD_CHUNKS,
    FaultProxy,
    LinkError,
    TcpLink,
    TcpLinkSpec,
    UdpLink,
    UdpLinkSpec,
    control_handler,
    parse_address,
    specs_from_config,
)

Address = tuple[str, int]
LO = "127.0.0.1"
DEADLINE = 10.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def guarded() -> None:
        await asyncio.wait_for(coro, 30.0)

    asyncio.run(guarded())


async def wait_until(cond: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Node(asyncio.DatagramProtocol):
    """A UDP node with one fixed local socket, like a VSM interface."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.addr: Address = (LO, 0)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.inbox.put_nowait((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        pass

    async def open(self, port: int = 0) -> Node:
        self.sock = sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((LO, port))
        sockname = sock.getsockname()
        self.addr = (str(sockname[0]), int(sockname[1]))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.transport = transport
        return self

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None and self.sock is not None
        # asyncio skips empty datagrams; the socket does not.
        self.sock.sendto(data, to)

    async def recv(self, timeout: float = DEADLINE) -> tuple[bytes, Address]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


@contextlib.asynccontextmanager
async def udp_pair() -> AsyncIterator[tuple[FaultProxy, UdpLink, Node, Node]]:
    nodes: list[Node] = []
    try:
        a = await Node().open()
        nodes.append(a)
        b = await Node().open()
        nodes.append(b)
        async with FaultProxy() as proxy:
            link = await proxy.add_udp_link("ctl", (LO, 0), b.addr, (LO, 0), a.addr)
            yield proxy, link, a, b
    finally:
        for node in nodes:
            node.close()
        await asyncio.sleep(0)


# ---- UDP -----------------------------------------------------------------


def test_udp_passes_both_ways_with_the_source_rewritten() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            a.send(b"hello", link.a_listen)
            assert await b.recv() == (b"hello", link.b_listen)
            b.send(b"hi", link.b_listen)
            assert await a.recv() == (b"hi", link.a_listen)
            stats = proxy.stats("ctl")
            assert stats["a->b"]["forwarded_packets"] == 1
            assert stats["a->b"]["forwarded_bytes"] == 5
            assert stats["b->a"]["forwarded_packets"] == 1
            assert stats["b->a"]["forwarded_bytes"] == 2

    run(main())


def test_udp_routes_by_sender_so_the_proxy_sockets_are_interchangeable() -> None:
    async def main() -> None:
        async with udp_pair() as (_proxy, link, a, b):
            a.send(b"x", link.b_listen)
            assert await b.recv() == (b"x", link.a_listen)
            b.send(b"y", link.a_listen)
            assert await a.recv() == (b"y", link.b_listen)

    run(main())


def test_udp_drop_one_direction_then_heal() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            proxy.drop("ctl", "a->b")
            a.send(b"lost", link.a_listen)
            await wait_until(lambda: link.counters("a->b").dropped_packets == 1, "the drop")
            b.send(b"still-up", link.b_listen)
            assert (await a.recv())[0] == b"still-up"
            assert b.inbox.empty()
            assert proxy.stats("ctl")["a->b"]["faults"]["drop"] is True
            proxy.heal("ctl", "a->b")
            a.send(b"back", link.a_listen)
            assert (await b.recv())[0] == b"back"
            assert link.counters("a->b").dropped_bytes == 4

    run(main())


def test_udp_drop_both_directions() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            proxy.drop("ctl")
            a.send(b"1", link.a_listen)
            b.send(b"2", link.b_listen)
            await wait_until(
                lambda: (
                    link.counters("a->b").dropped_packets == 1
                    and link.counters("b->a").dropped_packets == 1
                ),
                "both drops",
            )
            assert a.inbox.empty() and b.inbox.empty()
            proxy.heal("ctl")
            b.send(b"3", link.b_listen)
            assert (await a.recv())[0] == b"3"

    run(main())


def test_udp_delay_is_per_direction() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            proxy.delay("ctl", 0.3, "a->b")
            start = time.monotonic()
            a.send(b"slow", link.a_listen)
            b.send(b"fast", link.b_listen)
            assert (await a.recv())[0] == b"fast"
            fast = time.monotonic() - start
            assert link.counters("a->b").held_bytes == 4
            assert (await b.recv())[0] == b"slow"
            slow = time.monotonic() - start
            assert 0.3 <= slow < 3.0
            assert fast < 0.3
            assert link.counters("a->b").held_bytes == 0
            proxy.heal("ctl", "a->b")
            assert proxy.stats("ctl")["a->b"]["faults"]["delay"] == 0.0

    run(main())


def test_udp_drop_set_while_delayed_applies() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, _b):
            # Held long enough that a slow poll still sees it held (the drop applies on release).
            proxy.delay("ctl", 2.0, "a->b")
            a.send(b"in-flight", link.a_listen)
            await wait_until(lambda: link.counters("a->b").held_bytes == 9, "the hold")
            proxy.drop("ctl", "a->b")
            await wait_until(lambda: link.counters("a->b").dropped_packets == 1, "the drop")
            assert link.counters("a->b").forwarded_packets == 0

    run(main())


def test_udp_drop_ratio_follows_the_seed() -> None:
    total, p, seed = 600, 0.3, 1234

    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            assert proxy.drop_ratio("ctl", p, seed, "a->b") == seed
            rng = random.Random(seed)
            expected = [i for i in range(total) if not rng.random() < p]
            # In batches, so that the kernel never drops for us.
            c = link.counters("a->b")
            sent = [0]
            for start in range(0, total, 25):
                for i in range(start, start + 25):
                    a.send(i.to_bytes(2, "big"), link.a_listen)
                sent[0] += 25
                await wait_until(
                    lambda: c.forwarded_packets + c.dropped_packets == sent[0], "a batch"
                )
            got = [int.from_bytes((await b.recv())[0], "big") for _ in expected]
            assert got == expected
            c = link.counters("a->b")
            assert c.dropped_packets == total - len(expected)
            assert 0.2 * total < c.dropped_packets < 0.4 * total
            faults = proxy.stats("ctl")["a->b"]["faults"]
            assert faults["drop_ratio"] == p and faults["seed"] == seed
            assert proxy.stats("ctl")["b->a"]["faults"]["drop_ratio"] == 0.0

    run(main())


def test_udp_drop_ratio_without_seed_reports_one() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, _link, _a, _b):
            seed = proxy.drop_ratio("ctl", 0.5)
            assert isinstance(seed, int)
            assert proxy.stats("ctl")["b->a"]["faults"]["seed"] == seed

    run(main())


def test_udp_unknown_sender_is_counted_not_forwarded() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            stranger = await Node().open()
            try:
                stranger.send(b"who", link.a_listen)
                await wait_until(lambda: proxy.stats("ctl")["unknown_senders"] == 1, "the count")
                a.send(b"ok", link.a_listen)
                assert (await b.recv())[0] == b"ok"
                assert stranger.inbox.empty()
            finally:
                stranger.close()

    run(main())


def test_udp_huge_and_empty_datagrams_pass() -> None:
    async def main() -> None:
        async with udp_pair() as (_proxy, link, a, b):
            big = bytes(range(256)) * 255 + b"x" * 227  # 65507: the IPv4 maximum
            assert len(big) == 65507
            a.send(big, link.a_listen)
            assert (await b.recv())[0] == big
            b.send(b"", link.b_listen)
            assert (await a.recv())[0] == b""

    run(main())


def test_udp_target_down_does_not_kill_the_link() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            port = b.addr[1]
            b.close()
            for _ in range(5):
                a.send(b"anyone?", link.a_listen)
            await wait_until(lambda: link.counters("a->b").forwarded_packets == 5, "sends")
            if sys.platform.startswith("linux"):  # reported with IP_RECVERR
                await wait_until(lambda: proxy.stats("ctl")["socket_errors"] >= 1, "an error")
            b2 = await Node().open(port)
            try:
                a.send(b"back", link.a_listen)
                assert (await b2.recv())[0] == b"back"
                b2.send(b"reply", link.b_listen)
                assert (await a.recv())[0] == b"reply"
            finally:
                b2.close()

    run(main())


def test_udp_link_argument_errors() -> None:
    async def main() -> None:
        async with FaultProxy() as proxy:
            with pytest.raises(LinkError, match="same address"):
                await proxy.add_udp_link("x", (LO, 0), (LO, 9), (LO, 0), (LO, 9))
            with pytest.raises(LinkError, match="not an IP"):
                await proxy.add_udp_link("x", ("localhost", 0), (LO, 9), (LO, 0), (LO, 8))
            link = await proxy.add_udp_link("x", (LO, 0), (LO, 9), (LO, 0), (LO, 8))
            with pytest.raises(LinkError, match="already exists"):
                await proxy.add_tcp_link("x", (LO, 0), (LO, 9))
            with pytest.raises(LinkError, match="no link"):
                proxy.drop("nope")
            with pytest.raises(LinkError, match="direction"):
                proxy.drop("x", "sideways")
            with pytest.raises(LinkError, match="between 0 and 1"):
                proxy.drop_ratio("x", 1.5)
            with pytest.raises(LinkError, match="delay"):
                proxy.delay("x", -1)
            with pytest.raises(LinkError, match="TCP links"):
                proxy.reset("x")
            assert proxy.links() == [
                {
                    "name": "x",
                    "kind": "udp",
                    "a": [LO, 8],
                    "b": [LO, 9],
                    "a_listen": list(link.a_listen),
                    "b_listen": list(link.b_listen),
                }
            ]

    run(main())


def test_a_port_in_use_fails_cleanly() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind((LO, 0))
            taken = busy.getsockname()
            async with FaultProxy() as proxy:
                with pytest.raises(OSError):
                    await proxy.add_udp_link("x", (LO, 0), (LO, 9), taken, (LO, 8))
                assert proxy.links() == []

    run(main())


def test_close_releases_every_port() -> None:
    async def main() -> None:
        proxy = FaultProxy()
        udp = await proxy.add_udp_link("u", (LO, 0), (LO, 9), (LO, 0), (LO, 8))
        tcp = await proxy.add_tcp_link("t", (LO, 0), (LO, 9))
        await proxy.close()
        assert proxy.links() == []
        for addr in (udp.a_listen, udp.b_listen):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(addr)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(tcp.listen)

    run(main())


# ---- TCP -----------------------------------------------------------------


class Server:
    """A TCP server that records what each connection sends."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self.addr: Address = (LO, 0)

    async def start(self, port: int = 0) -> Server:
        self._server = await asyncio.start_server(self._on_conn, LO, port)
        sockname = self._server.sockets[0].getsockname()
        self.addr = (str(sockname[0]), int(sockname[1]))
        return self

    def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append((reader, writer))

    async def close(self) -> None:
        for _, writer in self.conns:
            writer.close()
        for _, writer in self.conns:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def tcp_link(
    server_up: bool = True,
) -> AsyncIterator[tuple[FaultProxy, TcpLink, Server]]:
    server = Server()
    if server_up:
        await server.start()
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LO, 0))
            server.addr = (LO, int(s.getsockname()[1]))
    try:
        async with FaultProxy() as proxy:
            link = await proxy.add_tcp_link("sync", (LO, 0), server.addr)
            yield proxy, link, server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def client(addr: Address) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_tcp_stream_passes_both_ways_and_half_close_travels() -> None:
    request = bytes(random.Random(1).randbytes(1 << 20))
    answer = bytes(random.Random(2).randbytes(1 << 20))

    async def main() -> None:
        async with tcp_link() as (proxy, link, server), client(link.listen) as (reader, writer):
            writer.write(request)
            await writer.drain()
            writer.write_eof()
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, s_writer = server.conns[0]
            assert await asyncio.wait_for(s_reader.read(), DEADLINE) == request
            s_writer.write(answer)
            await s_writer.drain()
            s_writer.close()
            assert await asyncio.wait_for(reader.read(), DEADLINE) == answer
            await wait_until(lambda: proxy.stats("sync")["connections"] == 0, "the close")
            stats = proxy.stats("sync")
            assert stats["a->b"]["forwarded_bytes"] == len(request)
            assert stats["b->a"]["forwarded_bytes"] == len(answer)
            assert stats["a->b"]["held_bytes"] == stats["b->a"]["held_bytes"] == 0
            assert stats["accepted"] == 1

    run(main())


def test_tcp_partition_holds_bytes_and_heal_delivers_them_in_order() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, server), client(link.listen) as (reader, writer):
            writer.write(b"before;")
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, s_writer = server.conns[0]
            assert await asyncio.wait_for(s_reader.readexactly(7), DEADLINE) == b"before;"
            proxy.drop("sync")
            sent = b"".join(b"%d;" % i for i in range(1000))
            for i in range(0, len(sent), 100):
                writer.write(sent[i : i + 100])
                await writer.drain()
            s_writer.write(b"reply")
            await s_writer.drain()
            c_ab, c_ba = link.counters("a->b"), link.counters("b->a")
            await wait_until(
                lambda: c_ab.held_bytes == len(sent) and c_ba.held_bytes == 5, "the hold"
            )
            assert c_ab.forwarded_bytes == 7 and c_ba.forwarded_bytes == 0
            proxy.heal("sync", "a->b")
            assert await asyncio.wait_for(s_reader.readexactly(len(sent)), DEADLINE) == sent
            assert c_ba.held_bytes == 5
            proxy.heal("sync", "b->a")
            assert await asyncio.wait_for(reader.readexactly(5), DEADLINE) == b"reply"

    run(main())


def test_tcp_partition_before_connect_defers_the_connection() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, server):
            proxy.drop("sync")
            async with client(link.listen) as (reader, writer):
                writer.write(b"hello")
                await wait_until(lambda: link.counters("a->b").held_bytes == 5, "the hold")
                assert server.conns == []
                proxy.heal("sync")
                await wait_until(lambda: server.conns, "the connection at the server")
                s_reader, s_writer = server.conns[0]
                assert await asyncio.wait_for(s_reader.readexactly(5), DEADLINE) == b"hello"
                s_writer.write(b"world")
                assert await asyncio.wait_for(reader.readexactly(5), DEADLINE) == b"world"

    run(main())


def test_tcp_partition_backpressures_the_sender() -> None:
    payload = bytes(random.Random(3).randbytes(48 << 20))

    async def main() -> None:
        async with tcp_link() as (proxy, link, server), client(link.listen) as (_reader, writer):
            writer.write(b"x")
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, _ = server.conns[0]
            assert await asyncio.wait_for(s_reader.readexactly(1), DEADLINE) == b"x"
            proxy.drop("sync", "a->b")
            writer.write(payload)
            drain = asyncio.ensure_future(writer.drain())
            done, _ = await asyncio.wait({drain}, timeout=0.5)
            assert not done, "the sender should be blocked by the partition"
            held = link.counters("a->b").held_bytes
            # The proxy's queue, plus one chunk being read and one being written.
            assert 0 < held <= (TCP_HOLD_CHUNKS + 2) * TCP_CHUNK
            proxy.heal("sync", "a->b")
            got = await asyncio.wait_for(s_reader.readexactly(len(payload)), 30.0)
            assert got == payload
            await asyncio.wait_for(drain, DEADLINE)

    run(main())


def test_tcp_reset_gives_the_client_connection_reset_error() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, server), client(link.listen) as (reader, writer):
            writer.write(b"ping")
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, _ = server.conns[0]
            assert await asyncio.wait_for(s_reader.readexactly(4), DEADLINE) == b"ping"
            assert proxy.reset("sync") == 1
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), DEADLINE)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(s_reader.read(1), DEADLINE)
            await wait_until(lambda: proxy.stats("sync")["connections"] == 0, "the cleanup")
            assert proxy.stats("sync")["resets"] == 1
            async with client(link.listen) as (reader2, writer2):
                writer2.write(b"again")
                await wait_until(lambda: len(server.conns) == 2, "a new connection")
                s_reader2, s_writer2 = server.conns[1]
                assert await asyncio.wait_for(s_reader2.readexactly(5), DEADLINE) == b"again"
                s_writer2.write(b"ok")
                assert await asyncio.wait_for(reader2.readexactly(2), DEADLINE) == b"ok"

    run(main())


def test_tcp_reset_during_partition_counts_held_bytes_as_dropped() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, _server), client(link.listen) as (reader, writer):
            proxy.drop("sync")
            writer.write(b"held")
            await wait_until(lambda: link.counters("a->b").held_bytes == 4, "the hold")
            assert proxy.reset("sync") == 1
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), DEADLINE)
            await wait_until(lambda: proxy.stats("sync")["connections"] == 0, "the cleanup")
            c = link.counters("a->b")
            assert (c.held_bytes, c.dropped_bytes, c.forwarded_bytes) == (0, 4, 0)

    run(main())


def test_tcp_target_down_resets_the_client_and_the_link_survives() -> None:
    async def main() -> None:
        async with tcp_link(server_up=False) as (proxy, link, server):
            async with client(link.listen) as (reader, _writer):
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(reader.read(1), DEADLINE)
            await wait_until(lambda: proxy.stats("sync")["connect_failures"] == 1, "the count")
            await server.start(server.addr[1])
            async with client(link.listen) as (reader, writer):
                writer.write(b"up")
                await wait_until(lambda: server.conns, "the connection at the server")
                s_reader, _ = server.conns[0]
                assert await asyncio.wait_for(s_reader.readexactly(2), DEADLINE) == b"up"

    run(main())


def test_tcp_delay_is_measured() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, server), client(link.listen) as (reader, writer):
            writer.write(b"a")
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, s_writer = server.conns[0]
            await asyncio.wait_for(s_reader.readexactly(1), DEADLINE)
            proxy.delay("sync", 0.3, "b->a")
            start = time.monotonic()
            s_writer.write(b"slow")
            writer.write(b"fast")
            assert await asyncio.wait_for(s_reader.readexactly(4), DEADLINE) == b"fast"
            fast = time.monotonic() - start
            assert await asyncio.wait_for(reader.readexactly(4), DEADLINE) == b"slow"
            slow = time.monotonic() - start
            assert fast < 0.3 <= slow < 3.0

    run(main())


def test_tcp_client_reset_propagates_to_the_server() -> None:
    async def main() -> None:
        async with tcp_link() as (proxy, link, server):
            _reader, writer = await asyncio.open_connection(*link.listen)
            writer.write(b"hi")
            await wait_until(lambda: server.conns, "the connection at the server")
            s_reader, _ = server.conns[0]
            await asyncio.wait_for(s_reader.readexactly(2), DEADLINE)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            writer.transport.abort()
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(s_reader.read(1), DEADLINE)
            await wait_until(lambda: proxy.stats("sync")["connections"] == 0, "the cleanup")

    run(main())


def test_tcp_rejects_udp_only_faults() -> None:
    async def main() -> None:
        async with FaultProxy() as proxy:
            await proxy.add_tcp_link("t", (LO, 0), (LO, 9))
            with pytest.raises(LinkError, match="UDP links"):
                proxy.drop_ratio("t", 0.5)

    run(main())


# ---- configuration and control ------------------------------------------


def test_config_in_the_lab_format() -> None:
    doc = {
        "udp": [
            {
                "name": "control",
                "a": ["127.0.0.1", 1001],
                "a_listen": ["127.0.0.1", 2001],
                "b": "127.0.0.1:1002",
                "b_listen": ["127.0.0.1", 2002],
            }
        ],
        "tcp": [{"name": "sync", "listen": ["127.0.0.1", 2003], "target": ["127.0.0.1", 1001]}],
    }
    assert specs_from_config(doc) == [
        UdpLinkSpec(
            name="control",
            a_listen=(LO, 2001),
            b_target=(LO, 1002),
            b_listen=(LO, 2002),
            a_target=(LO, 1001),
        ),
        TcpLinkSpec(name="sync", listen=(LO, 2003), target=(LO, 1001)),
    ]
    assert specs_from_config({}) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected an object"),
        ({"udp": [], "icmp": []}, "unknown keys"),
        ({"tcp": {}}, "must be a list"),
        ({"tcp": [{"listen": [LO, 1], "target": [LO, 2]}]}, "missing 'name'"),
        ({"tcp": [{"name": "t", "listen": [LO, 1]}]}, "link 't': missing 'target'"),
        ({"tcp": [{"name": "t", "listen": [LO, 1], "target": [LO, 2], "x": 1}]}, "'x'"),
        ({"tcp": [{"name": "t", "listen": [LO, 70000], "target": [LO, 2]}]}, "out of range"),
        (
            {"tcp": [{"name": "t", "listen": [LO, 1], "target": [LO, 2]}] * 2},
            "duplicate link name",
        ),
    ],
)
def test_config_errors_name_the_problem(doc: Any, message: str) -> None:
    with pytest.raises(LinkError, match=message):
        specs_from_config(doc)


def test_parse_address_forms() -> None:
    assert parse_address("127.0.0.1:5", "x") == (LO, 5)
    assert parse_address([LO, 5], "x") == (LO, 5)
    assert parse_address("[::1]:5", "x") == ("::1", 5)
    for bad in ("127.0.0.1", [LO, "5"], [LO, True], "host:5", 5):
        with pytest.raises(LinkError):
            parse_address(bad, "x")


def test_control_handler_ops() -> None:
    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            await proxy.add_tcp_link("sync", (LO, 0), b.addr)
            handle = control_handler(proxy)
            assert await handle("drop", {"name": "ctl", "direction": "b->a"}) is None
            assert proxy.stats("ctl")["b->a"]["faults"]["drop"] is True
            assert await handle("delay", {"name": "ctl", "seconds": 0.25}) is None
            assert await handle("drop_ratio", {"name": "ctl", "p": 0.1, "seed": 7}) == {"seed": 7}
            faults = proxy.stats("ctl")["a->b"]["faults"]
            assert faults == {"drop": False, "delay": 0.25, "drop_ratio": 0.1, "seed": 7}
            assert await handle("heal", {"name": "ctl"}) is None
            for d in ("a->b", "b->a"):
                assert proxy.stats("ctl")[d]["faults"] == {
                    "drop": False,
                    "delay": 0.0,
                    "drop_ratio": 0.0,
                    "seed": None,
                }
            assert await handle("reset", {"name": "sync"}) == {"reset": 0}
            assert set(await handle("stats", {})) == {"ctl", "sync"}
            assert (await handle("stats", {"name": "sync"}))["kind"] == "tcp"
            assert [x["name"] for x in await handle("links", {})] == ["ctl", "sync"]
            a.send(b"still works", link.a_listen)
            assert (await b.recv())[0] == b"still works"
            cases: list[tuple[str, dict[str, Any], str]] = [
                ("explode", {}, "unknown op"),
                ("drop", {}, "missing argument 'name'"),
                ("drop", {"name": "ctl", "dir": "a->b"}, "unknown arguments"),
                ("drop", {"name": 3}, "wrong type"),
                ("drop", {"name": "nope"}, "no link"),
                ("delay", {"name": "ctl"}, "missing argument 'seconds'"),
                ("delay", {"name": "ctl", "seconds": True}, "wrong type"),
                ("drop_ratio", {"name": "ctl", "p": 2}, "between 0 and 1"),
                ("drop_ratio", {"name": "ctl", "p": 0.1, "seed": "x"}, "wrong type"),
                ("reset", {"name": "ctl"}, "TCP links"),
                ("heal", {"name": "ctl", "direction": "up"}, "direction"),
            ]
            for op, args, message in cases:
                with pytest.raises(IpcError, match=message):
                    await handle(op, args)

    run(main())


def test_udp_icmp_errors_of_a_node_that_was_down_do_not_starve_its_large_datagrams() -> None:
    """B is down while A keeps sending: every datagram comes back to the proxy
    as an ICMP "port unreachable", queued on the proxy socket's error queue and
    charged to its receive buffer. Undrained, that queue filled the buffer and
    the kernel silently dropped B's large datagrams once B was back (a VSM's
    attach ack to a VEM): the campaign's VEMs stayed headless for good."""

    async def main() -> None:
        async with udp_pair() as (proxy, link, a, b):
            port = b.addr[1]
            b.close()
            for i in range(1200):  # A keeps talking to B, which is down
                a.send(b"heartbeat %d" % i, link.a_listen)
                if i % 50 == 49:
                    await asyncio.sleep(0.06)  # the kernel's ICMP burst budget refills
            await wait_until(
                lambda: proxy.stats("ctl")["a->b"]["forwarded_packets"] == 1200, "A's datagrams"
            )
            back = await Node().open(port)  # B is up again, same port
            try:
                big = bytes(12_000)
                for _ in range(3):
                    back.send(big, link.b_listen)
                    data, _src = await a.recv(timeout=2.0)
                    assert len(data) == len(big)
                assert proxy.stats("ctl")["queued_errors"] > 0
            finally:
                back.close()

    run(main())
