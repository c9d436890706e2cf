"""asyncio TCP adapter of the replication stream (DESIGN §4).

Owns the sockets, tasks and futures around the sans-IO cores of
``openvsm.sync.stream``:

- ``SyncSender`` (active): connects to the standby's control ``ip:port``
  over TCP and keeps reconnecting (back-off ``reconnect_min_s`` ..
  ``reconnect_max_s``) until stopped. ``send(change)`` streams a change
  (pipelined: before it is durable here). It decides no acknowledgement:
  ``on_acked(seq)`` reports the standby's cumulative ack after every read
  and ``on_state(status)`` every change of progress (``none``/``cold``/
  ``warm``/``hot``, ``out_of_sync``), for the ack gate
  (``openvsm.cfgmgr.ackgate``) and for hamgr (``sync_state``: it orders the
  standby's reset after an overflow).
- ``SyncReceiver`` (standby): listens on the control ``ip:port``, serves one
  active at a time, applies and acks. A new connection replaces the live
  one only once it passed the challenge-response (``stream.Handshake``: the
  active proved the pair key over this standby's fresh nonce, within
  ``HANDSHAKE_TIMEOUT_S``); a replayed, wrong or half-done handshake is
  counted (``bad_frame_bad_proof``, ``bad_frame_handshake``,
  ``handshake_incomplete``, ``handshake_timeout``) and touches nothing.
  ``on_reset(reason, hot)`` fires when the active's end of a proven
  connection goes away without us closing it (``"rst"`` or ``"eof"``; a
  SIGKILLed idle active closes with a FIN, so "eof" is the usual one):
  hamgr's crash fast path. ``hot`` says whether that connection had reached
  streaming (the bulk sync was done), taken before the connection is
  forgotten: the state the receiver reports afterwards is "cold". It fires
  as soon as the end is read, before this side's close completes: every
  millisecond here is a millisecond of the takeover.

With an ``ssl_context`` (mutual TLS with the pair certificate,
``openvsm.credentials``) the stream is encrypted, and a connection is handed
to the receiver only once its handshake proved it holds the pair key: a
connect without it, or junk, never replaces the live stream (asyncio calls
``_on_conn`` after the handshake; a handshake that does not finish within
``HANDSHAKE_TIMEOUT_S`` is dropped). At most ``MAX_PENDING_HANDSHAKES``
connections wait in their handshake at once: beyond that the oldest waiting
one is dropped and counted ``handshake_evicted`` (a flood of connects, or
slow-loris clients that never finish, holds a bounded number of file
descriptors; a real active's handshake takes milliseconds, so it is never
the oldest). ``handshake_failed`` and ``handshake_timeout`` count the others
that never reached the receiver.
The challenge-response runs inside TLS too (and is the only authentication
of a plain-TCP stream).

A bad frame (``RemoteProtocolError``) is counted under its reason in
``counters`` and closes that connection; it never escapes a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from openvsm.errors import LocalProtocolError, RemoteProtocolError
from openvsm.store.pss import Change, Store
from openvsm.store.writer import StoreWriter
from openvsm.sync.backoff import ReconnectBackoff
from openvsm.sync.stream import (
    DEFAULT_BUFFER_BYTES,
    ChangeSource,
    Confirm,
    FrameCodec,
    Handshake,
    PairKeys,
    ReceiverState,
    ReplicationReceiver,
    ReplicationSender,
)

log = logging.getLogger(__name__)


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on the monotonic clock (a core's ``next_deadline``)."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


_READ_SIZE = 256 * 1024
_HANDSHAKE_MAX_FRAME = 4096  # before the proof nothing bigger is read
HANDSHAKE_TIMEOUT_S = 5.0  # a connect that does not finish its TLS handshake by then is dropped
MAX_PENDING_HANDSHAKES = 16  # connections accepted and still in their handshake, at most


def _tune(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _count(counters: dict[str, int], name: str) -> None:
    counters[name] = counters.get(name, 0) + 1


class SyncSender:
    """Active side: stream committed changes to the standby at ``peer``."""

    def __init__(
        self,
        store: ChangeSource,
        peer: tuple[str, int],
        secret: PairKeys,
        *,
        epoch: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reconnect_min_s: float = 0.05,
        reconnect_max_s: float = 1.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        on_acked: Callable[[int], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.peer = peer
        self.ssl_context = ssl_context
        self.core = ReplicationSender(store, secret, epoch=epoch, buffer_bytes=buffer_bytes)
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.on_state = on_state
        self.on_acked = on_acked
        self.counters: dict[str, int] = {}
        self._out = bytearray()  # change frames for the next socket write
        self._flush_soon = False
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_reported: tuple[str, bool] | None = None
        self._stopping = False

    # --- lifecycle ---

    async def start(self) -> None:
        self.start_soon()

    def start_soon(self) -> None:
        """Start connecting (idempotent; needs a running loop)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="sync-sender")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close()
        self.core.detach()

    def kick(self) -> None:
        """Drop the current connection (tests, operator 'resync'); it reconnects."""
        self._close()

    def attach(self) -> None:
        """The standby counts as attached (a restarted cfgmgr on an active with one)."""
        self.core.attach()
        self._report()

    def detach(self) -> None:
        """hamgr declared the standby absent: stop tracking what it has not acked."""
        self.core.detach()
        self._report()

    def mark_out_of_sync(self) -> None:
        """Give up on the standby (e.g. no ack in time): it must be reset and bulk-synced."""
        self.core.mark_out_of_sync()
        self._report()

    def raise_epoch(self, epoch: int) -> None:
        """hamgr's epoch moved on: the next Welcome carries it (never goes back)."""
        self.core.epoch = max(self.core.epoch, epoch)

    def stream_status(self) -> dict[str, Any]:
        """The stream's own state (``status`` without the transport counters)."""
        return self.core.status()

    @property
    def sending(self) -> bool:
        """A standby receives the changes sent now (its Hello was answered)."""
        return self._writer is not None and self.core.streaming

    def status(self) -> dict[str, Any]:
        return {**self.core.status(), "counters": dict(self.counters)}

    # --- writes ---

    def send(self, change: Change) -> None:
        """Stream ``change`` (assigned, maybe not yet durable here: pipelined
        commit). Whether a write may be acknowledged is the ack gate's
        decision (``openvsm.cfgmgr.ackgate``), fed by ``on_acked``/``on_state``."""
        data = self.core.append(change)
        if data and self._writer is not None:
            # One socket write per loop iteration for every change committed in
            # it: the standby reads them together and commits them as one group.
            self._out += data
            if not self._flush_soon:
                self._flush_soon = True
                asyncio.get_running_loop().call_soon(self._flush)
            _count(self.counters, "changes_sent")
        self._report()

    def _flush(self) -> None:
        self._flush_soon = False
        data, self._out = bytes(self._out), bytearray()
        if data and self._writer is not None:
            self._writer.write(data)

    def _acked(self) -> None:
        if self.on_acked is not None:
            try:
                self.on_acked(self.core.acked_seq)
            except Exception:
                log.exception("sync on_acked callback failed")

    def _report(self) -> None:
        key = (self.core.state.value, self.core.out_of_sync)
        if key != self._last_reported:
            self._last_reported = key
            if self.on_state is not None:
                try:
                    self.on_state(self.status())
                except Exception:
                    log.exception("sync on_state callback failed")

    # --- connection ---

    def _close(self) -> None:
        self._out.clear()  # those changes are in the next connection's tail
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def _run(self) -> None:
        # The back-off is the core's; this loop only sleeps until its deadline.
        backoff = ReconnectBackoff(self.reconnect_min_s, self.reconnect_max_s)
        while not self._stopping:
            try:
                reader, writer = await asyncio.open_connection(
                    *self.peer,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self.ssl_context else None,
                )
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                if isinstance(exc, ssl.SSLError):
                    _count(self.counters, "tls_failures")
                await _sleep_until(backoff.connect_failed(time.monotonic()))
                continue
            backoff.connected()
            _count(self.counters, "connects")
            try:
                await self._serve(reader, writer)
            finally:
                self.core.connection_lost()
                if self._writer is writer:
                    self._writer = None
                    self._out.clear()
                await _close(writer)
                self._report()
            if self.core.refused is not None:
                log.error("sync: %s", self.core.refused)
            refused = self.core.refused is not None
            await _sleep_until(backoff.closed(time.monotonic(), refused=refused))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _tune(writer)
        self.core.connection_made()
        self._writer = writer
        self._report()
        try:
            while self._writer is writer:
                data = await reader.read(_READ_SIZE)
                if not data:
                    _count(self.counters, "peer_closed")
                    return
                _count(self.counters, "reads")
                out = self.core.receive(data)
                if out:
                    self._flush()  # keep the stream's order
                    writer.write(out)
                    await writer.drain()
                if self.core.refused is not None:
                    _count(self.counters, "refused")
                    return
                self._acked()
                self._report()
        except RemoteProtocolError as exc:
            _count(self.counters, f"bad_frame_{exc.reason}")
            log.warning("sync: dropping the connection to the standby: %s", exc)
        except (ConnectionError, OSError) as exc:
            _count(self.counters, "connection_errors")
            log.info("sync: connection to the standby lost: %s", exc)


class SyncReceiver:
    """Standby side: accept the active's stream on ``listen`` and apply it to ``store``."""

    def __init__(
        self,
        listen: tuple[str, int],
        store: Store,
        secret: PairKeys,
        *,
        epoch: int = 0,
        boot_id: int = 0,
        on_applied: Callable[[list[Change]], None] | None = None,
        on_reset: Callable[[str, bool], None] | None = None,
        on_snapshot: Callable[[int], None] | None = None,
        writer: StoreWriter | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.listen = listen
        self.ssl_context = ssl_context
        self.store = store
        self.writer = writer
        self._secret = secret
        self.core = ReplicationReceiver(
            store, secret, epoch=epoch, boot_id=boot_id, pipelined=writer is not None
        )
        self._drained = asyncio.Event()  # nothing in flight to the writer thread
        self._drained.set()
        self.on_applied = on_applied
        self.on_reset = on_reset
        self.on_snapshot = on_snapshot
        self.counters: dict[str, int] = {}
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        # In their handshake, oldest first; the accepted socket until its task
        # has started (then the task's transport owns it).
        self._pending: dict[asyncio.Task[None], socket.socket | None] = {}
        self._conn: asyncio.Task[None] | None = None
        self._conn_writer: asyncio.StreamWriter | None = None

    @property
    def last_applied_seq(self) -> int:
        return self.core.last_applied_seq

    @property
    def state(self) -> ReceiverState:
        """The stream's state (idle, hello sent, snapshot, streaming, refused)."""
        return self.core.state

    @property
    def bound(self) -> tuple[str, int]:
        """The address actually bound (``listen`` may ask for port 0)."""
        if self._listener is None:
            return self.listen
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        if self._listener is not None:
            return
        host, port = self.listen
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
        sock.setblocking(False)
        self._listener = sock
        self._accepting = asyncio.create_task(self._accept_loop(sock), name="sync-accept")

    async def stop(self) -> None:
        tasks = [t for t in (self._accepting, *self._pending) if t is not None]
        self._accepting = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self._drop_current()
        # What the writer thread holds is durable before anyone reads the store
        # as the new active's (or this process ends).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30.0):
                await self._drained.wait()

    def written(self, first: int, last: int, generation: int, error: BaseException | None) -> None:
        """The writer thread committed (or failed) changes ``first..last``."""
        if self.writer is None or generation != self.writer.generation:
            return
        if error is not None:
            # Not durable: never acked. The active reconnects and sends the tail
            # from what is durable here.
            log.error("sync: cannot commit replicated changes %d-%d: %s", first, last, error)
            self.store.abandon(first)
            self.writer.restart()
            self.core.to_persist.clear()
            self._mark_drained()
            if self._conn_writer is not None:
                self._conn_writer.close()
            return
        changes = self.store.changes_since(first - 1, limit=last - first + 1)
        snapshots = self.core.snapshots_loaded
        out = self.core.persisted(changes)
        self._mark_drained()
        if out and self._conn_writer is not None:
            self._conn_writer.write(out)
        self._deliver(snapshots)

    def _mark_drained(self) -> None:
        if self.store.in_flight:
            self._drained.clear()
        else:
            self._drained.set()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.core.state.value,
            "last_applied_seq": self.last_applied_seq,
            "refused": self.core.refused,
            "snapshots_loaded": self.core.snapshots_loaded,
            "duplicates": self.core.duplicates,
            "counters": dict(self.counters),
        }

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: count, breathe, go on
                _count(self.counters, "accept_errors")
                log.warning("sync: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            while len(self._pending) >= MAX_PENDING_HANDSHAKES:
                self._evict_oldest()
            task = asyncio.create_task(self._handshake(conn), name="sync-handshake")
            self._pending[task] = conn
            del conn, task

    def _evict_oldest(self) -> None:
        """Drop the oldest connection waiting in its handshake.

        Under a flood the accept loop accepts many sockets without yielding, so
        the oldest task may not have started: cancelling it then runs none of
        its code, and its socket stayed open (referenced by the cancelled
        task's traceback) with nobody reading it. Such a socket is closed here.
        """
        oldest = next(iter(self._pending))
        conn = self._pending.pop(oldest)
        oldest.cancel()
        if conn is not None:
            conn.close()
        _count(self.counters, "handshake_evicted")

    async def _handshake(self, conn: socket.socket) -> None:
        """Finish the TLS handshake of an accepted socket, then serve it."""
        task = asyncio.current_task()
        if task in self._pending:
            self._pending[task] = None  # from here asyncio closes ``conn`` on any failure
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        tls = self.ssl_context
        try:
            # On any failure asyncio closes the transport, hence ``conn``.
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=tls,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if tls is not None else None,
                # A handshake that fails, times out or is evicted (cancelled) is
                # closed by asyncio with a TLS shutdown that waits for the peer's
                # close_notify: 30 s by default, the descriptor held all along
                # (a flood kept them). Bounded like every other close here.
                ssl_shutdown_timeout=CLOSE_WAIT_S if tls is not None else None,
            )
        except ConnectionAbortedError:  # asyncio's handshake timeout
            _count(self.counters, "handshake_timeout")
            return
        except (OSError, ssl.SSLError):
            _count(self.counters, "handshake_failed")
            return
        finally:
            self._pending.pop(task, None)  # type: ignore[arg-type]
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._on_conn(reader, writer)

    async def _drop_current(self) -> None:
        task, self._conn = self._conn, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _prove(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Handshake | None:
        """Run the challenge-response of a new connection; its handshake once the
        active proved the pair key, else None (counted; nothing else touched)."""
        hs = Handshake(self._secret, "standby")
        codec = FrameCodec(self._secret, max_frame=_HANDSHAKE_MAX_FRAME)
        confirm: Confirm | None = None
        try:
            writer.write(codec.encode(hs.start()))
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                while confirm is None:
                    data = await reader.read(_HANDSHAKE_MAX_FRAME)
                    if not data:
                        _count(self.counters, "handshake_incomplete")
                        return None
                    for msg in codec.feed(data):
                        hs.use_key(codec.key)
                        answer = hs.on_message(msg)
                        confirm = answer if isinstance(answer, Confirm) else None
            if codec.pending:
                raise RemoteProtocolError("handshake", "data after the active's response")
            writer.write(codec.encode(confirm))
            return hs
        except TimeoutError:
            _count(self.counters, "handshake_timeout")
        except RemoteProtocolError as exc:
            _count(self.counters, f"bad_frame_{exc.reason}")
            log.warning("sync: handshake refused: %s", exc)
        except (ConnectionError, OSError):
            _count(self.counters, "handshake_incomplete")
        return None

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Only a connection whose active proved the pair key replaces the live
        # one (the newest such wins); anything else is closed untouched.
        _tune(writer)
        handshake = await self._prove(reader, writer)
        if handshake is None or self._listener is None:  # refused, or stopped meanwhile
            writer.close()
            await _close(writer)
            return
        # Its Hello names what is durable here: the writer thread's changes first.
        await self._drop_current()
        self._conn = asyncio.current_task()
        await self._drained.wait()
        _count(self.counters, "connections")
        reason: str | None = None
        try:
            reason = await self._serve(reader, writer, handshake)
        except asyncio.CancelledError:
            reason = None
        finally:
            hot = self.core.state is ReceiverState.STREAMING
            truncated = self.core.connection_lost()
            if truncated:
                _count(self.counters, "truncated_frames")
            if self._conn_writer is writer:
                self._conn_writer = None
            writer.close()
            if reason is not None and self.on_reset is not None:
                try:
                    self.on_reset(reason, hot)
                except Exception:
                    log.exception("sync on_reset callback failed")
            await _close(writer)
            if self._conn is asyncio.current_task():
                self._conn = None

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: Handshake
    ) -> str | None:
        """Run one proven connection; the peer-side reason it ended ("rst"/"eof"), else None."""
        self._conn_writer = writer
        try:
            writer.write(self.core.connection_made(handshake))
            await writer.drain()
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    _count(self.counters, "peer_eof")
                    return "eof"
                snapshots = self.core.snapshots_loaded
                try:
                    out = self.core.receive(data)
                finally:
                    self._persist()
                    self._deliver(snapshots)
                if out:
                    writer.write(out)
                    await writer.drain()
                if self.core.is_refused:
                    _count(self.counters, "refused")
                    log.error("sync: refused the active: %s", self.core.refused)
                    return None
        except RemoteProtocolError as exc:
            _count(self.counters, f"bad_frame_{exc.reason}")
            log.warning("sync: dropping the connection from the active: %s", exc)
            return None
        except ConnectionResetError:
            _count(self.counters, "peer_rst")
            return "rst"
        except (ConnectionError, OSError) as exc:
            _count(self.counters, "connection_errors")
            log.info("sync: connection from the active failed: %s", exc)
            return None
        except LocalProtocolError:
            log.exception("sync receiver bug")
            return None

    def _persist(self) -> None:
        if self.writer is None:
            return
        for change in self.core.pop_to_persist():
            self.writer.enqueue(change)
        self._mark_drained()

    def _deliver(self, snapshots_before: int) -> None:
        if self.core.snapshots_loaded != snapshots_before and self.on_snapshot is not None:
            try:
                self.on_snapshot(self.last_applied_seq)
            except Exception:
                log.exception("sync on_snapshot callback failed")
        applied = self.core.pop_applied()
        if applied and self.on_applied is not None:
            try:
                self.on_applied(applied)  # one call per group (one ``changes`` event)
            except Exception:
                log.exception("sync on_applied callback failed")


CLOSE_WAIT_S = 0.5


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a connection without waiting on the peer for long.

    A TLS close waits for the peer's close_notify; a peer cut off by a
    partition never sends it, and asyncio would wait its SSL shutdown timeout
    (30 s) -- a standby taking over stops its receiver this way, so its writes
    were refused ("becoming active") for that long. After ``CLOSE_WAIT_S`` the
    connection is aborted.
    """
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_WAIT_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except Exception:  # reset, broken pipe: closed either way
        pass
