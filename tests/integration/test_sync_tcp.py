"""Replication over real TCP on 127.0.0.1: two stores, one process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.cfgmgr.ackgate import AckGate, FailReason
from openvsm.cfgmgr.acks import WriteAcks, WriteFailed
from openvsm.store.pss import Change, Op, Store
from openvsm.store.writer import StoreWriter
from openvsm.sync.stream import ReceiverState, ReplicationSender
from openvsm.sync.transport import SyncReceiver, SyncSender

pytestmark = pytest.mark.integration

SECRET = b"integration-secret"
# The standby commits in its receive loop, or on a writer thread (cfgmgr's way).
PIPELINED = pytest.mark.parametrize("pipelined", [False, True], ids=["inline", "writer"])


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """Stores on tmpfs when there is one: fsync (synchronous=FULL) is what a
    loaded CI disk makes slow, and these tests are about the stream."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="openvsm-sync-") as d:
        yield Path(d)


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def guarded() -> None:
        await asyncio.wait_for(coro, 120.0)

    asyncio.run(guarded())


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait on a condition with a deadline (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def commit(store: Store, i: int) -> Change:
    n = i % 3000 + 1
    return store.commit(
        [Op("vlan", str(n), {"id": n, "name": f"v{i}", "owner": "cli"})],
        user="admin",
        source="cli",
        command=f"vlan {n} ; name v{i}",
        time=1_700_000_000.0 + i,
    )


class Pair:
    def __init__(self, tmp: Path, *, pipelined: bool = False, **sender_kw: Any) -> None:
        self.active = Store(tmp / "active.db")
        self.standby = Store(tmp / "standby.db")
        # Pipelined: the standby commits on its writer thread, as cfgmgr's does.
        self.writer = (
            StoreWriter(
                tmp / "standby.db",
                lambda *done: self.receiver.written(*done),
                loop=asyncio.get_running_loop(),
            )
            if pipelined
            else None
        )
        self.resets: list[tuple[str, bool]] = []  # (reason, the stream was hot)
        self.applied: list[int] = []
        self.states: list[dict[str, Any]] = []
        self.receiver = SyncReceiver(
            ("127.0.0.1", 0),
            self.standby,
            SECRET,
            epoch=1,
            boot_id=2,
            on_reset=lambda reason, hot: self.resets.append((reason, hot)),
            on_applied=lambda cs: self.applied.extend(c.seq for c in cs),
            writer=self.writer,
        )
        self.sender_kw = sender_kw
        self.sender: SyncSender | None = None
        self.acks: WriteAcks | None = None

    async def replicate(self, change: Change) -> None:
        """cfgmgr's write path for a change already committed here: the ack gate
        (hamgr stubbed: always confirms this node is active) releases it."""
        assert self.sender is not None and self.acks is not None
        acked = self.acks.submit(change.seq)
        self.sender.send(change)
        self.acks.durable(change.seq)
        await acked

    def wire(self, sender: SyncSender) -> None:
        """Feed ``sender``'s acks and progress to an ack gate, as cfgmgr does."""

        async def confirm() -> bool:
            return True

        acks = self.acks = WriteAcks(AckGate(ack_timeout=30.0), confirm)

        def on_state(st: dict[str, Any]) -> None:
            self.states.append(st)
            if st["out_of_sync"]:
                acks.standby_out_of_sync()
            elif st["state"] == "hot":
                acks.standby_hot()

        sender.on_state = on_state
        sender.on_acked = acks.standby_acked
        acks.standby = sender
        self.sender = sender

    async def start(self) -> SyncSender:
        await self.receiver.start()
        sender = SyncSender(
            self.active,
            self.receiver.bound,
            SECRET,
            epoch=1,
            reconnect_min_s=0.01,
            reconnect_max_s=0.1,
            **self.sender_kw,
        )
        self.wire(sender)
        await sender.start()
        return sender

    async def hot(self) -> None:
        assert self.sender is not None
        sender = self.sender
        await until(lambda: sender.status()["state"] == "hot")

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.stop()
        if self.acks is not None:
            self.acks.stop()
        await self.receiver.stop()
        if self.writer is not None:
            self.writer.close()
        self.active.close()
        self.standby.close()


def pair_test(
    body: Callable[[Pair], Awaitable[None]], tmp: Path, pipelined: bool = False, **sender_kw: Any
) -> None:
    async def main() -> None:
        pair = Pair(tmp, pipelined=pipelined, **sender_kw)
        try:
            await body(pair)
        finally:
            await pair.close()

    run(main())


@PIPELINED
def test_thousands_of_commits_replicate(tmp_path: Path, pipelined: bool) -> None:
    async def body(p: Pair) -> None:
        for i in range(1, 201):  # before the standby connects: tail on connect
            commit(p.active, i)
        await p.start()
        await p.hot()
        for i in range(201, 3001):
            await p.replicate(commit(p.active, i))
            # acknowledged => applied on the standby
            assert p.standby.last_seq >= p.active.last_seq
        assert p.standby.digest() == p.active.digest()
        assert p.standby.accounting_log(5) == p.active.accounting_log(5)
        assert p.applied == list(range(1, 3001))
        assert [s["state"] for s in p.states][-1] == "hot"

    pair_test(body, tmp_path, pipelined)


@PIPELINED
def test_concurrent_writers_all_acknowledged(tmp_path: Path, pipelined: bool) -> None:
    async def body(p: Pair) -> None:
        await p.start()
        await p.hot()

        async def writer(k: int) -> None:
            for i in range(100):
                await p.replicate(commit(p.active, k * 1000 + i))

        await asyncio.gather(*(writer(k) for k in range(10)))
        assert p.standby.last_seq == p.active.last_seq == 1000
        assert p.standby.digest() == p.active.digest()

    pair_test(body, tmp_path, pipelined)


@PIPELINED
def test_connection_killed_mid_stream_then_equal(tmp_path: Path, pipelined: bool) -> None:
    async def body(p: Pair) -> None:
        sender = await p.start()
        await p.hot()
        kills = 0
        for i in range(1, 1501):
            change = commit(p.active, i)
            if i % 300 == 0:
                sender.kick()  # the connection dies with changes in flight
                kills += 1
            await p.replicate(change)
        await until(lambda: p.standby.last_seq == p.active.last_seq)
        assert p.standby.digest() == p.active.digest()
        assert sender.counters["connects"] >= kills + 1
        assert p.receiver.status()["duplicates"] >= 0
        assert p.applied == list(range(1, 1501))  # each change applied exactly once

    pair_test(body, tmp_path, pipelined)


@PIPELINED
def test_standby_restart_gets_snapshot_when_log_is_gone(tmp_path: Path, pipelined: bool) -> None:
    async def body(p: Pair) -> None:
        p.active.close()
        p.active = Store(tmp_path / "active.db", max_changes=100)
        for i in range(1, 2001):
            commit(p.active, i)
        sender = await p.start()
        await p.hot()
        assert sender.status()["snapshots_sent"] == 1
        assert p.standby.digest() == p.active.digest()
        await p.replicate(commit(p.active, 5000))
        assert p.standby.digest() == p.active.digest()

    pair_test(body, tmp_path, pipelined)


def test_corrupted_frame_is_counted_and_dropped(tmp_path: Path) -> None:
    async def body(p: Pair) -> None:
        await p.receiver.start()
        host, port = p.receiver.bound
        # An unauthenticated peer: the receiver reads our junk, counts it, closes.
        reader, writer = await asyncio.open_connection(host, port)
        await reader.read(1024)  # its challenge
        writer.write(b"\x00\x00\x00\x05hello" + b"\x00" * 16)
        await writer.drain()
        assert await reader.read(1024) == b""  # dropped by the receiver
        await close(writer)
        await until(lambda: p.receiver.counters.get("bad_frame_bad_tag", 0) == 1)
        # A truncated frame, then EOF: a half-done handshake, counted; no reset
        # (the crash fast path hears only of connections that proved the key).
        reader, writer = await asyncio.open_connection(host, port)
        await reader.read(1024)
        writer.write(b"\x00\x00\x10\x00abc")
        await writer.drain()
        await close(writer)
        await until(lambda: p.receiver.counters.get("handshake_incomplete", 0) == 1)
        assert p.resets == [] and p.receiver.counters.get("connections", 0) == 0
        # The real active still gets through and replicates.
        await p.start()
        await p.hot()
        for i in range(1, 51):
            await p.replicate(commit(p.active, i))
        assert p.standby.digest() == p.active.digest()

    pair_test(body, tmp_path)


def test_sender_drops_bad_frames_from_a_fake_standby(tmp_path: Path) -> None:
    async def body(p: Pair) -> None:
        server_conns: list[asyncio.StreamWriter] = []

        async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server_conns.append(writer)
            writer.write(b"\x00\x00\x00\x02xx" + b"\xff" * 16)
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()

        server = await asyncio.start_server(fake, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = SyncSender(p.active, ("127.0.0.1", port), SECRET, epoch=1, reconnect_min_s=0.01)
        p.wire(sender)
        await sender.start()
        try:
            await until(lambda: sender.counters.get("bad_frame_bad_tag", 0) >= 2)
            # no standby attached: writes are acknowledged at once
            await asyncio.wait_for(p.replicate(commit(p.active, 1)), 1.0)
        finally:
            await sender.stop()
            server.close()
            await server.wait_closed()

    pair_test(body, tmp_path)


_LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER 0: close sends an RST


async def _raw_connect(addr: tuple[str, int]) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, addr)
    return sock


def test_active_crash_resets_connection(tmp_path: Path) -> None:
    async def body(p: Pair) -> None:
        await p.receiver.start()
        loop = asyncio.get_running_loop()
        # A connection that never proved the pair key: its RST is no reset.
        sock = await _raw_connect(p.receiver.bound)
        try:
            await loop.sock_recv(sock, 1024)  # the standby's challenge
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        finally:
            sock.close()
        await until(lambda: p.receiver.counters.get("handshake_incomplete", 0) == 1)
        # A proven connection (the active's core over a raw socket) that is
        # reset before the bulk sync: a reset, not hot (an RST, as a kernel
        # sends for a killed process with unread data).
        core = ReplicationSender(p.active, SECRET, epoch=1)
        core.connection_made()
        sock = await _raw_connect(p.receiver.bound)
        try:
            await loop.sock_sendall(sock, core.receive(await loop.sock_recv(sock, 1024)))
            await until(lambda: p.receiver.core.state is ReceiverState.HELLO_SENT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        finally:
            sock.close()
        await until(lambda: bool(p.resets))
        reason, hot = p.resets[0]
        assert reason in ("rst", "eof")
        assert not hot  # this connection never reached streaming

    pair_test(body, tmp_path)


def test_replayed_or_half_done_handshake_never_replaces_the_stream(tmp_path: Path) -> None:
    """Capture the active's bytes of a real connection, replay them on new ones
    while the live stream runs; and connections that stop mid-handshake:
    counted, the live stream keeps streaming, no reset, nothing applied."""

    async def body(p: Pair) -> None:
        loop = asyncio.get_running_loop()
        await p.receiver.start()
        # Capture: a proven connection of a real active core, then closed.
        core = ReplicationSender(p.active, SECRET, epoch=1)
        core.connection_made()
        sock = await _raw_connect(p.receiver.bound)
        try:
            captured = core.receive(await loop.sock_recv(sock, 1024))  # the Response
            await loop.sock_sendall(sock, captured)
            await until(lambda: p.receiver.core.state is ReceiverState.HELLO_SENT)
            welcome = core.receive(await loop.sock_recv(sock, 4096))  # Welcome + tail
            captured += welcome
            await loop.sock_sendall(sock, welcome)
            await until(lambda: p.receiver.core.state is ReceiverState.STREAMING)
        finally:
            sock.close()
        await until(lambda: len(p.resets) == 1)
        sender = await p.start()
        await p.hot()
        await p.replicate(commit(p.active, 1))
        connections = p.receiver.counters["connections"]
        for attempt in range(3):
            replay = await _raw_connect(p.receiver.bound)
            try:
                await loop.sock_recv(replay, 1024)  # a fresh challenge
                await loop.sock_sendall(replay, captured)
                with contextlib.suppress(ConnectionError):
                    assert await loop.sock_recv(replay, 1024) == b""  # refused
            finally:
                replay.close()
            half = await _raw_connect(p.receiver.bound)
            try:
                await loop.sock_recv(half, 1024)
                half.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            finally:
                half.close()
            await p.replicate(commit(p.active, 2 + attempt))  # the live stream still acks
        await until(lambda: p.receiver.counters.get("handshake_incomplete", 0) == 3)
        assert p.receiver.counters["bad_frame_bad_proof"] == 3
        assert p.receiver.counters["connections"] == connections
        assert sender.counters["connects"] == 1
        assert len(p.resets) == 1  # only the capture's own end
        assert p.standby.digest() == p.active.digest()

    pair_test(body, tmp_path)


def test_reset_of_a_hot_stream_says_hot(tmp_path: Path) -> None:
    # The crash fast path hangs on this flag: it is taken from the connection
    # that was reset, before the receiver forgets it (and reports "cold").
    async def body(p: Pair) -> None:
        sender = await p.start()
        await p.hot()
        await p.replicate(commit(p.active, 1))
        assert p.resets == []
        sender.kick()  # the active's end goes away: a FIN, as from a SIGKILLed idle cfgmgr
        await until(lambda: bool(p.resets))
        assert p.resets[0] == ("eof", True)

    pair_test(body, tmp_path)


def test_standby_with_newer_epoch_is_refused(tmp_path: Path) -> None:
    async def body(p: Pair) -> None:
        p.receiver.core.epoch = 5
        sender = await p.start()
        await until(lambda: sender.status()["refused"] is not None)
        assert "newer" in str(sender.status()["refused"])
        await asyncio.wait_for(p.replicate(commit(p.active, 1)), 1.0)
        assert p.standby.last_seq == 0

    pair_test(body, tmp_path)


def test_out_of_sync_while_standby_away(tmp_path: Path) -> None:
    async def body(p: Pair) -> None:
        sender = await p.start()
        await p.hot()
        await p.replicate(commit(p.active, 1))
        await p.receiver.stop()  # the standby goes away
        await until(lambda: sender.status()["state"] == "none")
        pending = [asyncio.create_task(p.replicate(commit(p.active, i))) for i in range(2, 400)]
        await until(lambda: sender.status()["out_of_sync"] is True)
        await asyncio.wait_for(asyncio.gather(*pending), 5.0)  # released by the overflow
        assert any(s["out_of_sync"] for s in p.states)
        # the standby is reset and comes back: bulk sync, then in sync again
        p.receiver = SyncReceiver(sender.peer, p.standby, SECRET, epoch=1, boot_id=3)
        await p.receiver.start()
        await p.hot()
        assert sender.status()["snapshots_sent"] == 1
        assert p.standby.digest() == p.active.digest()

    pair_test(body, tmp_path, buffer_bytes=20_000)


def test_stopping_the_sender_is_not_an_acknowledgement(tmp_path: Path) -> None:
    # A write waiting for the standby's ack when the sender stops (cfgmgr
    # shutting down) must fail: the standby never acknowledged it.
    async def body(p: Pair) -> None:
        sender = await p.start()
        await p.hot()
        await p.replicate(commit(p.active, 1))
        await p.receiver.stop()  # the standby goes away: nothing acks now
        await until(lambda: sender.status()["state"] == "none")
        waiting = asyncio.create_task(p.replicate(commit(p.active, 2)))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await sender.stop()
        assert p.acks is not None
        p.acks.stop()  # cfgmgr stopping
        with pytest.raises(WriteFailed) as failed:
            await asyncio.wait_for(waiting, 1.0)
        assert failed.value.reason is FailReason.STOPPED

    pair_test(body, tmp_path)


def test_a_busy_sync_port_is_retried_until_free(tmp_path: Path) -> None:
    """The standby's sync port held by another socket when the standby starts
    (chaos seed 1000 fault 377: a restarted cfgmgr found its port taken and its
    role task died, so the standby never synced again): the receiver counts
    ``listen_errors``, keeps retrying, and the stream runs once the port is free."""

    async def body(pair: Pair) -> None:
        blocker = socket.create_server(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        pair.receiver.listen = ("127.0.0.1", port)
        try:
            await pair.receiver.start()  # returns: the retry runs in the background
            assert pair.receiver.counters.get("listen_errors", 0) >= 1
            assert not pair.receiver.listening
            await until(lambda: pair.receiver.counters.get("listen_errors", 0) >= 3)
        finally:
            blocker.close()
        await until(lambda: pair.receiver.listening and pair.receiver.bound[1] == port)
        sender = SyncSender(pair.active, ("127.0.0.1", port), SECRET, epoch=1,
                            reconnect_min_s=0.01, reconnect_max_s=0.1)  # fmt: skip
        pair.wire(sender)
        await sender.start()
        await pair.hot()
        await pair.replicate(commit(pair.active, 1))
        await until(lambda: pair.standby.last_seq == pair.active.last_seq == 1)

    pair_test(body, tmp_path)
