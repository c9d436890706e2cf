"""Wire codec: round trip of every message type, strict decoding, never raises."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.wire.codec import HEADER_LEN, Codec, Drop, DropReason, Frame
from openvsm.wire.messages import (
    MESSAGE_TYPES,
    HeartbeatRequest,
    SenderRole,
)

SECRET = b"domain-secret-1"
MAC = "02:00:00:00:00:01"


def strategy_for(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    return st.builds(cls, **{f: _field_strategy(cls, f) for f in cls.__struct_fields__})


def _field_strategy(cls: type[msgspec.Struct], name: str) -> st.SearchStrategy[Any]:
    hints = msgspec.structs.fields(cls)
    ftype = next(f.type for f in hints if f.name == name)
    return _type_strategy(ftype)


def _type_strategy(t: Any) -> st.SearchStrategy[Any]:
    from openvsm.wire import messages as m

    if t is str:
        return st.text(max_size=20)
    if t is int:
        return st.integers(min_value=-(2**62), max_value=2**62)
    if t is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if t is bool:
        return st.booleans()
    if t is bytes:
        return st.binary(max_size=40)
    origin = getattr(t, "__origin__", None)
    if origin is list:
        (inner,) = t.__args__
        return st.lists(_type_strategy(inner), max_size=3)
    if origin is tuple and len(t.__args__) == 2 and t.__args__[1] is Ellipsis:
        return st.lists(_type_strategy(t.__args__[0]), max_size=3).map(tuple)
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return strategy_for(t)
    if isinstance(t, str):
        return _type_strategy(getattr(m, t))
    raise AssertionError(f"no strategy for {t!r}")


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip_every_message(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    codec = Codec(100, SECRET)
    msg = data.draw(strategy_for(cls))
    epoch = data.draw(st.integers(min_value=0, max_value=2**63))
    seq = data.draw(st.integers(min_value=0, max_value=2**63))
    wire = codec.encode(msg, role=SenderRole.SECONDARY, mac=MAC, epoch=epoch, seq=seq)  # type: ignore[arg-type]
    frame = codec.decode(wire)
    assert isinstance(frame, Frame)
    assert frame.msg == msg
    assert (frame.role, frame.mac, frame.epoch, frame.seq, frame.domain) == (
        SenderRole.SECONDARY,
        MAC,
        epoch,
        seq,
        100,
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = Codec(100, SECRET).decode(data)
    assert isinstance(result, Drop)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_single_byte_flip_is_dropped(pos: int, xor: int) -> None:
    codec = Codec(100, SECRET)
    wire = bytearray(
        codec.encode(
            HeartbeatRequest(state="active"), role=SenderRole.PRIMARY, mac=MAC, epoch=3, seq=9
        )
    )
    pos %= len(wire)
    wire[pos] ^= xor or 1
    assert isinstance(codec.decode(bytes(wire)), Drop)


def _hb(codec: Codec) -> bytes:
    return codec.encode(
        HeartbeatRequest(state="active"), role=SenderRole.PRIMARY, mac=MAC, epoch=1, seq=1
    )


def test_wrong_domain_is_counted_as_bad_domain() -> None:
    wire = _hb(Codec(101, SECRET))
    result = Codec(100, SECRET).decode(wire)
    assert isinstance(result, Drop) and result.reason is DropReason.BAD_DOMAIN


def test_wrong_secret_is_bad_tag() -> None:
    wire = _hb(Codec(100, b"another-secret"))
    result = Codec(100, SECRET).decode(wire)
    assert isinstance(result, Drop) and result.reason is DropReason.BAD_TAG


def test_wrong_version_is_bad_version() -> None:
    wire = bytearray(_hb(Codec(100, SECRET)))
    wire[2] = 9
    result = Codec(100, SECRET).decode(bytes(wire))
    assert isinstance(result, Drop) and result.reason is DropReason.BAD_VERSION


def test_unknown_type_with_valid_tag_is_bad_type() -> None:
    import hashlib
    import hmac

    codec = Codec(100, SECRET)
    wire = bytearray(_hb(codec))
    wire[3] = 200  # a type number nobody defined
    body = bytes(wire[:-16])
    tag = hmac.new(SECRET, body, hashlib.sha256).digest()[:16]
    result = codec.decode(body + tag)
    assert isinstance(result, Drop) and result.reason is DropReason.BAD_TYPE


def test_payload_of_wrong_shape_is_malformed() -> None:
    import hashlib
    import hmac

    codec = Codec(100, SECRET)
    wire = _hb(codec)
    payload = msgspec.msgpack.encode({"nonsense": 1})
    header = bytearray(wire[:HEADER_LEN])
    struct.pack_into("!I", header, HEADER_LEN - 4, len(payload))
    body = bytes(header) + payload
    tag = hmac.new(SECRET, body, hashlib.sha256).digest()[:16]
    result = codec.decode(body + tag)
    assert isinstance(result, Drop) and result.reason is DropReason.MALFORMED


def test_truncated_frame_is_malformed() -> None:
    wire = _hb(Codec(100, SECRET))
    for cut in (0, 5, HEADER_LEN, len(wire) - 1):
        result = Codec(100, SECRET).decode(wire[:cut])
        assert isinstance(result, Drop) and result.reason is DropReason.MALFORMED


def test_domain_id_range() -> None:
    with pytest.raises(ValueError):
        Codec(0, SECRET)
    with pytest.raises(ValueError):
        Codec(4096, SECRET)


@pytest.mark.parametrize("secret", [b"k" * 8, SECRET, b"s" * 64, b"long-secret" * 12])
def test_the_tag_is_hmac_sha256_of_the_frame_for_any_key_length(secret: bytes) -> None:
    """The precomputed key states give RFC 2104's tag (keys up to and over one block)."""
    import hmac

    codec = Codec(7, secret)
    data = codec.encode(
        HeartbeatRequest(state="active"), role=SenderRole.PRIMARY, mac=MAC, epoch=3, seq=9
    )
    body, tag = data[:-16], data[-16:]
    assert tag == hmac.digest(secret, body, "sha256")[:16]
    assert isinstance(Codec(7, secret).decode(data), Frame)
    assert Codec(7, secret + b"x").decode(data) == Drop(DropReason.BAD_TAG)


def test_cached_mac_texts_still_refuse_a_bad_mac() -> None:
    from openvsm.wire.codec import mac_to_bytes, mac_to_str

    assert mac_to_str(mac_to_bytes(MAC)) == MAC and mac_to_bytes(MAC) == mac_to_bytes(MAC)
    for bad in ("02:00:00:00:00", "02:00:00:00:00:zz", "2:00:00:00:00:01"):
        with pytest.raises(ValueError):
            mac_to_bytes(bad)
        with pytest.raises(ValueError):  # a cached refusal is none: it raises again
            mac_to_bytes(bad)
