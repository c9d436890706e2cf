"""Hypothesis fuzz of every wire format a daemon reads (issue 12 point 7).

For every HA/VEM message type (``openvsm.wire.codec``) and every sync stream
message (``openvsm.sync.stream``): valid frames mutated (bytes flipped,
inserted, removed), truncated, extended and oversized, and frames whose
payload is replaced by random msgpack and signed again with the right key
(an insider's frames: past the tag, into the decoders and the standby's
receiver). The only outcomes allowed: a ``Drop`` with a reason (codec), a
``RemoteProtocolError`` with a counter name (sync), an ``IpcError`` (local
IPC frames), or a decoded message. Never another exception.

``FUZZ_EXAMPLES`` (environment) raises the number of examples:
``bench/attack.py`` runs these with many more.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvsm.errors import RemoteProtocolError
from openvsm.ipc import MAX_IPC_FRAME, IpcError, IpcServer, encode_frame, read_frame
from openvsm.store.pss import Store
from openvsm.sync import stream
from openvsm.sync.stream import FrameCodec, ReplicationReceiver
from openvsm.wire.codec import HEADER_LEN, MAX_FRAME, TAG_LEN, Codec, Drop, DropReason, Frame
from openvsm.wire.messages import MESSAGE_TYPES, HeartbeatRequest, SenderRole

SECRET = b"domain-secret-fuzz"
MAC = "02:00:00:00:00:07"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=16)
    | st.binary(max_size=16),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)
HOSTILE_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(
    [0, -1, 1, 2**31, 2**32, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
)


def value_of(t: Any, ns: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value of type ``t`` (hostile ranges: the decoders accept them)."""
    if isinstance(t, str):
        return value_of(eval(t, ns), ns)  # a forward reference of the module
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any:
        return ANY
    if t is type(None):
        return st.none()
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=24),
        int: HOSTILE_INT,
        float: st.floats(allow_nan=False),
        bool: st.booleans(),
        bytes: st.binary(max_size=48),
    }
    if t in simple:
        return simple[t]
    if origin in (typing.Union, types.UnionType):
        return st.one_of([value_of(a, ns) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(value_of(args[0], ns), max_size=3)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(value_of(args[0], ns), max_size=3).map(tuple)
        return st.tuples(*[value_of(a, ns) for a in args])
    if origin is dict:
        return st.dictionaries(value_of(args[0], ns), value_of(args[1], ns), max_size=3)
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return struct_of(t)
    raise AssertionError(f"no strategy for {t!r}")


def struct_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    import sys

    ns = vars(sys.modules[cls.__module__])
    hints = typing.get_type_hints(cls, globalns=ns)
    fields = {f.name: value_of(hints[f.name], ns) for f in msgspec.structs.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


@st.composite
def mutated(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with 1-4 edits: flip, insert, delete, truncate, extend."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
        else:
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def resign(codec_secret: bytes, header: bytes, payload: bytes) -> bytes:
    header = header[: HEADER_LEN - 4] + struct.pack("!I", len(payload))
    body = header + payload
    return body + hmac.new(codec_secret, body, hashlib.sha256).digest()[:TAG_LEN]


MESSAGE_CLASSES = list(MESSAGE_TYPES.values())


# --- HA and VEM frames (UDP) ---------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
@FUZZ
@given(data=st.data())
def test_mutated_frames_of_every_type_are_dropped_with_a_reason(
    cls: type[msgspec.Struct], data: st.DataObject
) -> None:
    codec = Codec(100, SECRET)
    msg = data.draw(struct_of(cls))
    role = data.draw(st.sampled_from(list(SenderRole)))
    wire = codec.encode(msg, role=role, mac=MAC, epoch=5, seq=9)  # type: ignore[arg-type]
    assert isinstance(codec.decode(wire), Frame)
    bad = data.draw(mutated(wire))
    result = codec.decode(bad)
    if bad != wire:
        # Without the key nothing changed gets through (the tag covers it all).
        assert isinstance(result, Drop) and isinstance(result.reason, DropReason), result


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
@FUZZ
@given(data=st.data())
def test_resigned_junk_payloads_of_every_type_decode_or_drop(
    cls: type[msgspec.Struct], data: st.DataObject
) -> None:
    """Past the tag (an insider's key): random msgpack, wrong shapes, header fields."""
    codec = Codec(100, SECRET)
    wire = codec.encode(data.draw(struct_of(cls)), role=SenderRole.PRIMARY, mac=MAC, epoch=1, seq=1)  # type: ignore[arg-type]
    header = bytearray(wire[:HEADER_LEN])
    payload = wire[HEADER_LEN:-TAG_LEN]
    choice = data.draw(st.integers(0, 3))
    if choice == 0:
        payload = msgspec.msgpack.encode(data.draw(ANY))
    elif choice == 1:
        payload = data.draw(mutated(payload))
    elif choice == 2:
        header[3] = data.draw(st.integers(0, 255))  # another type's decoder
    else:
        header[6] = data.draw(st.integers(0, 255))  # the sender role byte
    result = codec.decode(resign(SECRET, bytes(header), payload))
    assert isinstance(result, Frame | Drop), result


@FUZZ
@given(st.integers(MAX_FRAME - 64, 4 * MAX_FRAME), st.booleans())
def test_oversized_frames_are_dropped(size: int, signed: bool) -> None:
    codec = Codec(100, SECRET)
    wire = codec.encode(
        HeartbeatRequest(state="active"),
        role=SenderRole.PRIMARY,
        mac=MAC,
        epoch=1,
        seq=1,
    )
    header = wire[:HEADER_LEN]
    payload = b"\xc4" + b"\x00" * size  # not one msgpack value of the type
    frame = resign(SECRET, header, payload) if signed else header + payload + b"\x00" * TAG_LEN
    result = codec.decode(frame)
    assert isinstance(result, Drop), result


# --- the sync stream ------------------------------------------------------------------

SYNC_CLASSES = list(typing.get_args(stream.SyncMessage))


def _sync_frame(secret: bytes, payload: bytes) -> bytes:
    body = struct.pack("!I", len(payload)) + payload
    return body + hmac.new(secret, body, hashlib.sha256).digest()[:TAG_LEN]


@pytest.mark.parametrize("cls", SYNC_CLASSES, ids=lambda c: c.__name__)
@FUZZ
@given(data=st.data())
def test_sync_frames_mutated_or_resigned_raise_only_remote_protocol_errors(
    cls: type[msgspec.Struct], data: st.DataObject
) -> None:
    msg = data.draw(struct_of(cls))
    wire = FrameCodec(SECRET).encode(msg)
    assert FrameCodec(SECRET).feed(wire) == [msg]
    if data.draw(st.booleans()):
        junk = data.draw(mutated(wire))
    else:
        junk = _sync_frame(SECRET, data.draw(mutated(wire[4:-TAG_LEN])))
    codec = FrameCodec(SECRET, max_frame=1 << 20)
    try:
        codec.feed(junk)
    except RemoteProtocolError as exc:
        assert exc.reason in ("too_large", "bad_tag", "malformed"), exc.reason


@pytest.fixture(scope="module")
def receiver_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("fuzz") / "standby.db")


@FUZZ
@given(data=st.data())
def test_standby_receiver_survives_any_signed_message_sequence(
    receiver_store: Store, data: st.DataObject
) -> None:
    """The standby's core fed signed messages of any type, in any order."""
    receiver = ReplicationReceiver(receiver_store, SECRET, epoch=3, boot_id=1)
    codec = FrameCodec(SECRET)
    receiver.connection_made()
    start = data.draw(
        st.sampled_from([[], [stream.Welcome("tail", 3)], [stream.Welcome("snapshot", 4)]])
    )
    msgs = start + data.draw(st.lists(st.sampled_from(SYNC_CLASSES).flatmap(struct_of), max_size=6))
    try:
        for msg in msgs:
            if isinstance(msg, stream.ChangeMsg) and data.draw(st.booleans()):
                # the next seq: past the gap check, into the store
                change = msgspec.structs.replace(msg.change, seq=receiver_store.last_seq + 1)
                msg = stream.ChangeMsg(change)
            receiver.receive(codec.encode(msg))
            if receiver.is_refused:
                break
    except RemoteProtocolError as exc:
        assert exc.reason and isinstance(exc.reason, str)
    finally:
        receiver.connection_lost()


# --- local IPC frames -----------------------------------------------------------------


async def _read_all(data: bytes) -> list[Any]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while True:
        try:
            out.append(await read_frame(reader))
        except asyncio.IncompleteReadError:  # the stream ended (or a truncated frame)
            return out


@FUZZ
@given(data=st.data())
def test_ipc_frames_mutated_raise_only_ipc_errors(data: st.DataObject) -> None:
    wire = encode_frame({"op": "cli", "args": {"line": "show module"}, "id": 3})
    junk = data.draw(mutated(wire) | st.binary(max_size=64))
    if data.draw(st.booleans()):
        junk = struct.pack("!I", MAX_IPC_FRAME + data.draw(st.integers(1, 2**20))) + junk
    try:
        asyncio.run(_read_all(junk))
    except IpcError:
        pass


def test_ipc_server_counts_junk_and_keeps_answering(tmp_path: Path) -> None:
    """Junk on a real server socket: counted, the connection closed, others served."""
    calls: list[tuple[str, dict[str, Any]]] = []

    async def handler(op: str, args: dict[str, Any]) -> Any:
        calls.append((op, args))
        return {"op": op}

    async def send(path: Path, data: bytes) -> bytes:
        """The reply frame's body, or b"" when the server closed the connection."""
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(data)
        await writer.drain()
        try:
            return repr(await asyncio.wait_for(read_frame(reader), 5)).encode()
        except asyncio.IncompleteReadError as exc:
            assert exc.partial == b""
            return b""
        finally:
            writer.close()

    async def scenario() -> dict[str, int]:
        path = tmp_path / "svc.sock"
        server = IpcServer(path, handler)
        await server.start()
        try:
            assert await send(path, struct.pack("!I", MAX_IPC_FRAME + 1)) == b""
            assert await send(path, struct.pack("!I", 3) + b"\xc1\xc1\xc1") == b""
            for bad in ([1, 2], {"op": 5}, {"op": "x", "args": [1]}, {"op": "x", "args": {1: 2}}):
                reply = await send(path, encode_frame(bad))
                assert b"malformed" in reply, reply
            ok = await send(path, encode_frame({"op": "ipc_counters", "id": 1}))
            assert ok, ok
            reply = await send(path, encode_frame({"op": "hello", "args": {}, "id": 2}))
            assert b"hello" in reply
            return dict(server.counters)
        finally:
            await server.stop()

    counters = asyncio.run(scenario())
    assert counters["drop_oversized"] == 1 and counters["drop_malformed"] == 1, counters
    assert counters["malformed_requests"] == 4, counters
    assert calls == [("hello", {})]
