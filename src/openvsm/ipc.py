"""Local IPC between the services of one node (DESIGN §1).

Unix-domain stream sockets under the node's run directory; each frame is a
4-byte big-endian length and a msgpack body. A connection carries requests
(``{"op", "args"}``) answered in order by replies (``{"ok", "result",
"error"}``), and, after an ``op="subscribe"`` request, events pushed by the
server (``{"event": topic, "data": ...}``).

A server made with ``peer_credentials=True`` (cfgmgr's, for the CLI) adds
``"_peer": {"pid", "uid", "gid"}`` to every request's ``args``: the
connecting process's credentials from the kernel (``SO_PEERCRED``), set over
whatever the client sent. Other servers pass ``args`` as sent.

A handler raises ``IpcError`` for an error meant for the caller (the text is
shown to the operator); any other exception is reported as an internal error
and never takes the server down.

Junk on a socket (a frame over ``MAX_IPC_FRAME``, a body that is not
msgpack: ``read_frame`` raises ``IpcError`` for both) closes that connection
and is counted; a well-formed frame that is not a request is answered with
an error and counted. Every server answers the op ``ipc_counters`` itself
(``connections``, ``drop_oversized``, ``drop_malformed``,
``malformed_requests``, ``handler_errors``, ``bad_args``).

Typed use (openvsm.contracts): each op's arguments and result are a
``Request`` Struct and its ``reply`` type. A client sends one with
``IpcClient.ask(req)`` (the result converted to ``req.reply``; a result of
another shape is an ``IpcError``); a handler decodes its ``args`` with
``decode_args(args, Req)``: unknown or missing fields or a wrong type raise
``IpcBadArgs`` (its text names the op and the field), answered as an error
and counted as ``bad_args``. ``subscribe_typed`` yields a topic's events
converted to their Struct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from openvsm.contracts.base import Request, args_of

log = logging.getLogger(__name__)

MAX_IPC_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct("!I")
_UCRED = struct.Struct("3i")
PEER_KEY = "_peer"
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
R = TypeVar("R", bound=Request[Any])
T = TypeVar("T")


class IpcError(Exception):
    """An error whose text is meant for the caller."""


class IpcUnavailable(IpcError):
    """The service is not reachable (not running, restarting)."""


class IpcOversized(IpcError):
    """A frame's length is above ``MAX_IPC_FRAME``."""


class IpcBadArgs(IpcError):
    """A request's arguments do not match its contract (counted as ``bad_args``)."""


def decode_args(args: dict[str, Any], kind: type[R]) -> R:
    """``args`` (as a handler gets them, ``_peer`` left out) as the Struct ``kind``."""
    body = {k: v for k, v in args.items() if k != PEER_KEY} if PEER_KEY in args else args
    try:
        req: R = msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise IpcBadArgs(f"bad arguments to {kind.op}: {exc}") from None
    return req


def decode_result(op: str, result: Any, kind: type[T]) -> T:
    """A reply's ``result`` as ``kind``; a result of another shape is an IpcError."""
    try:
        return msgspec.convert(result, kind)
    except msgspec.ValidationError as exc:
        raise IpcError(f"malformed reply to {op}: {exc}") from None


async def read_raw_frame(reader: asyncio.StreamReader) -> bytes:
    """One frame's msgpack body, not decoded."""
    head = await reader.readexactly(_LEN.size)
    (length,) = _LEN.unpack(head)
    if length > MAX_IPC_FRAME:
        raise IpcOversized(f"IPC frame of {length} bytes exceeds the limit")
    return await reader.readexactly(length)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    body = await read_raw_frame(reader)
    try:
        return _dec.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise IpcError(f"malformed IPC frame: {exc}") from None


def encode_frame(obj: Any) -> bytes:
    body = _enc.encode(obj)
    return _LEN.pack(len(body)) + body


class IpcServer:
    def __init__(
        self,
        path: Path,
        handler: Handler,
        on_unsubscribe: Callable[[str], None] | None = None,
        *,
        peer_credentials: bool = False,
    ) -> None:
        """``on_unsubscribe(topic)``: a subscriber's connection ended (e.g. its
        process died) while the server runs."""
        self.path = path
        self._handler = handler
        self._on_unsubscribe = on_unsubscribe
        self._peer_credentials = peer_credentials
        self._stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._subscribers: dict[str, set[asyncio.StreamWriter]] = {}
        self._conns: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = dict.fromkeys(
            ("connections", "drop_oversized", "drop_malformed", "malformed_requests"), 0
        )
        self.counters["handler_errors"] = 0
        self.counters["bad_args"] = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._on_conn, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, topic: str, data: Any) -> None:
        frame = encode_frame({"event": topic, "data": data})
        for writer in list(self._subscribers.get(topic, ())):
            if writer.is_closing():
                continue  # its connection's end removes it (and tells on_unsubscribe)
            writer.write(frame)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers.get(topic, ()))

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = peer_credentials(writer) if self._peer_credentials else None
        self.counters["connections"] += 1
        try:
            while True:
                try:
                    req = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except IpcOversized:
                    self.counters["drop_oversized"] += 1
                    return
                except IpcError:
                    self.counters["drop_malformed"] += 1
                    return
                reply = await self._dispatch(req, writer, peer)
                if isinstance(req, dict) and isinstance(req.get("id"), int):
                    reply["id"] = req["id"]  # the client matches replies to requests
                writer.write(encode_frame(reply))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            for topic, subs in self._subscribers.items():
                if writer in subs:
                    subs.discard(writer)
                    self._unsubscribed(topic)
            writer.close()

    def _unsubscribed(self, topic: str) -> None:
        if self._on_unsubscribe is None or self._stopping:
            return
        try:
            self._on_unsubscribe(topic)
        except Exception:
            log.exception("IPC on_unsubscribe(%s) failed", topic)

    async def _dispatch(
        self, req: Any, writer: asyncio.StreamWriter, peer: dict[str, int] | None = None
    ) -> dict[str, Any]:
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            self.counters["malformed_requests"] += 1
            return {"ok": False, "error": "malformed request"}
        args = req.get("args") or {}
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            self.counters["malformed_requests"] += 1
            return {"ok": False, "error": "malformed request arguments"}
        if req["op"] == "ipc_counters":
            return {"ok": True, "result": dict(self.counters)}
        if self._peer_credentials:
            args = {**args, PEER_KEY: peer}  # never what the client claims
        op: str = req["op"]
        if op == "subscribe":
            topic = args.get("topic")
            if not isinstance(topic, str):
                return {"ok": False, "error": "subscribe needs a topic"}
            self._subscribers.setdefault(topic, set()).add(writer)
            try:
                result = await self._handler("subscribed", {"topic": topic})
            except IpcError:
                result = None
            return {"ok": True, "result": result}
        try:
            result = await self._handler(op, args)
        except IpcBadArgs as exc:
            self.counters["bad_args"] += 1
            return {"ok": False, "error": str(exc)}
        except IpcError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            self.counters["handler_errors"] += 1
            log.exception("IPC handler %s failed", op)
            return {"ok": False, "error": f"internal error in {op}: {type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}


def peer_credentials(writer: asyncio.StreamWriter) -> dict[str, int] | None:
    """``{"pid", "uid", "gid"}`` of the process at the other end of a Unix
    socket (``SO_PEERCRED``), or None where the kernel does not tell."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return None
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _UCRED.size))
    except (OSError, struct.error):
        return None
    return {"pid": pid, "uid": uid, "gid": gid}


class IpcClient:
    """A request/reply connection to one service; reconnects on demand."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self.stale_replies = 0

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError, OSError) as exc:
            raise IpcUnavailable(f"service at {self.path.name} is not reachable: {exc}") from None

    async def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        async with self._lock:
            for attempt in range(2):
                if self._writer is None or self._writer.is_closing():
                    await self._connect()
                assert self._reader is not None and self._writer is not None
                self._next_id += 1
                request_id = self._next_id
                try:
                    self._writer.write(encode_frame({"op": op, "args": args, "id": request_id}))
                    await self._writer.drain()
                    async with asyncio.timeout(timeout or self.timeout):
                        reply = await self._read_reply(self._reader, request_id)
                    break
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    self.close()
                    if attempt == 1:
                        raise IpcUnavailable(f"service at {self.path.name} went away") from exc
                except TimeoutError:
                    self.close()
                    raise IpcUnavailable(f"service at {self.path.name} timed out") from None
                except asyncio.CancelledError:
                    # The caller gave up with the request sent: its reply may
                    # still come and would be read as the answer to the next
                    # call on this connection. Never reuse it.
                    self.close()
                    raise
        if not isinstance(reply, dict):
            raise IpcError("malformed reply")
        if not reply.get("ok"):
            raise IpcError(str(reply.get("error")))
        return reply.get("result")

    async def ask(self, req: Request[T], timeout: float | None = None) -> T:
        """Send the typed request ``req``; its result as ``req.reply``."""
        result = await self.call(req.op, timeout, **args_of(req))
        reply: T = decode_result(req.op, result, req.reply)
        return reply

    async def _read_reply(self, reader: asyncio.StreamReader, request_id: int) -> Any:
        """The reply to ``request_id``; a reply to an earlier request is stale: skipped."""
        while True:
            reply = await read_frame(reader)
            if isinstance(reply, dict) and reply.get("id", request_id) != request_id:
                self.stale_replies += 1
                continue
            return reply

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._reader = None


async def subscribe(path: Path, topic: str) -> AsyncIterator[Any]:
    """Yield the events of ``topic`` from the service at ``path``.

    The first item is the server's answer to the subscription (its current
    state, where the service provides one). Ends when the connection ends.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError, OSError) as exc:
        raise IpcUnavailable(f"service at {path.name} is not reachable: {exc}") from None
    try:
        writer.write(encode_frame({"op": "subscribe", "args": {"topic": topic}}))
        await writer.drain()
        reply = await read_frame(reader)
        if isinstance(reply, dict) and reply.get("ok"):
            yield reply.get("result")
        while True:
            try:
                msg = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if isinstance(msg, dict) and msg.get("event") == topic:
                yield msg.get("data")
    finally:
        writer.close()


async def subscribe_raw(path: Path, topic: str) -> AsyncIterator[Any]:
    """``subscribe``, but every item after the first (the decoded answer) is a
    whole frame's msgpack body (``{"event": topic, "data": ...}``), not
    decoded: a subscriber that needs a few fields of big events decodes only
    those (vemmgr and cfgmgr's ``changes``)."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError, OSError) as exc:
        raise IpcUnavailable(f"service at {path.name} is not reachable: {exc}") from None
    try:
        writer.write(encode_frame({"op": "subscribe", "args": {"topic": topic}}))
        await writer.drain()
        reply = await read_frame(reader)
        if isinstance(reply, dict) and reply.get("ok"):
            yield reply.get("result")
        while True:
            try:
                yield await read_raw_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
    finally:
        writer.close()


async def subscribe_typed(path: Path, topic: str, kind: type[T]) -> AsyncIterator[T]:
    """``subscribe`` with each event converted to ``kind``; an event of another
    shape (or a server without a current state) is skipped and logged."""
    async for event in subscribe(path, topic):
        if event is None:
            continue
        try:
            yield msgspec.convert(event, kind)
        except msgspec.ValidationError as exc:
            log.warning("malformed %s event from %s: %s", topic, path.name, exc)
