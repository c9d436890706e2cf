"""The raw L2 transport's framing, filtering and reassembly (pure; no sockets, no root)."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openvsm.config import ConfigError
from openvsm.wire.l2 import (
    BROADCAST_MAC,
    ETH_HEADER,
    ETH_MIN_FRAME,
    ETH_P_OPENVSM,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
    SHIM,
    L2Endpoint,
    L2Error,
    L2Frame,
    Reassembler,
    build_frame,
    fragment,
    is_own,
    mac_bytes,
    mac_str,
    parse_frame,
)

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


def test_mac_round_trip_and_rejects() -> None:
    assert mac_str(mac_bytes("AA:bb:CC:00:01:ff")) == "aa:bb:cc:00:01:ff"
    for bad in ("", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:gg", "aaa:bb:cc:dd:ee:f", "1:2:3:4:5:6"):
        with pytest.raises(ValueError):
            mac_bytes(bad)


def test_header_build_and_parse() -> None:
    frame = build_frame(mac_bytes(B), mac_bytes(A), b"hello world" * 10, msg_id=7)
    dst, src, etype = ETH_HEADER.unpack_from(frame)
    assert (mac_str(dst), mac_str(src), etype) == (B, A, ETH_P_OPENVSM)
    assert SHIM.unpack_from(frame, ETH_HEADER.size) == (110, 7, 0, 1)
    parsed = parse_frame(frame)
    assert parsed == L2Frame(dst=B, src=A, msg_id=7, index=0, count=1, data=b"hello world" * 10)


def test_short_frames_are_padded_and_the_padding_stripped() -> None:
    frame = build_frame(mac_bytes(BROADCAST_MAC), mac_bytes(A), b"hi")
    assert len(frame) == ETH_MIN_FRAME
    parsed = parse_frame(frame)
    assert parsed is not None and parsed.data == b"hi"
    # A NIC or switch may pad further (and some append the FCS): still stripped.
    parsed = parse_frame(frame + bytes(30))
    assert parsed is not None and parsed.data == b"hi"
    empty = parse_frame(build_frame(mac_bytes(B), mac_bytes(A), b""))
    assert empty is not None and empty.data == b""


def test_parse_rejects_what_is_not_ours() -> None:
    good = build_frame(mac_bytes(B), mac_bytes(A), b"x" * 100)
    assert parse_frame(good[:15]) is None  # shorter than the headers
    assert parse_frame(good[:60]) is None  # truncated: length says 100
    assert parse_frame(good, ethertype=0x0800) is None
    other = good[:12] + (0x0800).to_bytes(2, "big") + good[14:]
    assert parse_frame(other) is None
    bad_index = good[:18] + bytes([3, 2]) + good[20:]  # fragment 3 of 2
    assert parse_frame(bad_index) is None


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_parse_never_raises(junk: bytes, etype: int) -> None:
    parse_frame(junk, etype)


def test_own_frames_are_recognised() -> None:
    frame = parse_frame(build_frame(mac_bytes(BROADCAST_MAC), mac_bytes(A), b"x"))
    assert frame is not None
    assert is_own(frame, A)
    assert is_own(frame, A.upper())
    assert not is_own(frame, B)
    assert not is_own(frame, None)


@pytest.mark.parametrize("size", [0, 1, 1400, 1494, 1495, 1496, 3000, 48_000, 65_535])
def test_fragment_and_reassemble(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    frames = fragment(mac_bytes(B), mac_bytes(A), payload, mtu=1500, msg_id=42)
    assert all(len(f) - ETH_HEADER.size <= 1500 for f in frames)
    assert len(frames) == max(1, -(-size // (1500 - SHIM.size)))
    r = Reassembler()
    out = [r.add(p, 0.0) for p in map(parse_frame, reversed(frames)) if p is not None]
    assert out[:-1] == [None] * (len(frames) - 1)
    assert out[-1] == payload
    assert r.pending == 0 and r.dropped == 0


def test_fragment_limits() -> None:
    with pytest.raises(ValueError):
        fragment(mac_bytes(B), mac_bytes(A), bytes(65_536), mtu=1500, msg_id=1)
    with pytest.raises(ValueError):
        fragment(mac_bytes(B), mac_bytes(A), bytes(100), mtu=40, msg_id=1)
    with pytest.raises(ValueError):  # 255 fragments at most
        fragment(mac_bytes(B), mac_bytes(A), bytes(65_000), mtu=200, msg_id=1)


def _frags(src: str, payload: bytes, msg_id: int) -> list[L2Frame]:
    raw = fragment(mac_bytes(B), mac_bytes(src), payload, mtu=576, msg_id=msg_id)
    return [f for f in map(parse_frame, raw) if f is not None]


def test_reassembly_keeps_senders_and_ids_apart_and_expires() -> None:
    r = Reassembler(slots=2, timeout=1.0)
    a, b = _frags(A, b"a" * 2000, 1), _frags(B, b"b" * 2000, 1)
    for fa, fb in zip(a[:-1], b[:-1], strict=True):
        assert r.add(fa, 0.0) is None
        assert r.add(fb, 0.0) is None
    assert r.add(a[-1], 0.1) == b"a" * 2000
    assert r.add(b[-1], 0.1) == b"b" * 2000
    # An incomplete message is given up after the timeout...
    c = _frags(A, b"c" * 2000, 2)
    assert r.add(c[0], 1.0) is None
    assert r.add(_frags(A, b"d" * 2000, 3)[0], 2.5) is None
    assert r.dropped == 1
    # ... and the oldest is evicted when the slots are full.
    assert r.add(_frags(A, b"e" * 2000, 4)[0], 2.6) is None
    assert r.add(_frags(A, b"f" * 2000, 5)[0], 2.7) is None
    assert r.dropped == 2 and r.pending == 2


def _endpoint() -> tuple[L2Endpoint, list[tuple[bytes, str]]]:
    got: list[tuple[bytes, str]] = []
    ep = L2Endpoint("veth-c0", on_datagram=lambda data, mac: got.append((data, mac)))
    ep.mac = A  # as if opened on a device whose MAC is A
    return ep, got


def test_endpoint_delivers_the_payload_with_the_real_source_mac() -> None:
    ep, got = _endpoint()
    ep.handle_frame(build_frame(mac_bytes(A), mac_bytes(B), b"codec frame"), 0, 0.0)
    assert got == [(b"codec frame", B)]
    assert ep.received == 1 and ep.errors == 0


def test_endpoint_ignores_its_own_frames_and_outgoing_copies() -> None:
    ep, got = _endpoint()
    own = build_frame(mac_bytes(BROADCAST_MAC), mac_bytes(A), b"mine")
    ep.handle_frame(own, 1, 0.0)  # looped back (reflecting switch, second socket)
    ep.handle_frame(build_frame(mac_bytes(B), mac_bytes(B), b"x"), PACKET_OUTGOING, 0.0)
    ep.handle_frame(build_frame(mac_bytes(B), mac_bytes(B), b"x"), PACKET_OTHERHOST, 0.0)
    assert got == []
    assert ep.ignored_own == 2 and ep.errors == 0


def test_endpoint_counts_malformed_frames_and_survives_a_failing_handler() -> None:
    ep, got = _endpoint()
    ep.handle_frame(b"\x00" * 10, 0, 0.0)
    assert ep.errors == 1 and got == []

    def boom(data: bytes, mac: str) -> None:
        raise RuntimeError("handler bug")

    ep.on_datagram = boom
    ep.handle_frame(build_frame(mac_bytes(A), mac_bytes(B), b"x"), 0, 0.0)
    assert ep.received == 1


def test_endpoint_send_when_closed_is_counted_not_raised() -> None:
    ep, _ = _endpoint()
    ep.send(b"x", B)
    assert ep.send_errors == 1 and ep.sent == 0


def test_l2_error_is_a_config_error() -> None:
    assert issubclass(L2Error, ConfigError)
    with pytest.raises(L2Error, match="Ethernet II"):
        L2Endpoint("eth0", 0x0100, on_datagram=lambda d, m: None)


def _open_error(device: str) -> str:
    ep = L2Endpoint(device, on_datagram=lambda d, m: None)
    with pytest.raises(L2Error) as info:
        ep._open_socket()  # what open() does before it registers the reader
    assert ep.mac is None
    return str(info.value)


def test_open_reports_a_bad_device_name_clearly() -> None:
    assert "not a valid interface name" in _open_error("this-name-is-too-long")


def test_open_reports_missing_privilege_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", denied)
    msg = _open_error("veth-c0")
    assert "not permitted" in msg and "CAP_NET_RAW" in msg and "'veth-c0'" in msg


def test_open_reports_a_missing_device_clearly() -> None:
    msg = _open_error("nosuchdev0")
    if os.geteuid() == 0:
        assert "no such device" in msg
    else:  # without CAP_NET_RAW the privilege is what is missing first
        assert "CAP_NET_RAW" in msg
