"""Raw layer-2 endpoint (AF_PACKET): the seed's "layer 2 only" VSM<->VSM transport.

Mirrors ``UdpEndpoint``: bytes in, bytes out, the protocol logic lives
elsewhere. The codec frame (with its HMAC) is carried as the payload of an
Ethernet frame of our own ethertype (default 0x88B5, IEEE "local
experimental"); the receiver gets ``on_datagram(payload, src_mac)`` where
``src_mac`` is the Ethernet source address of the frame as it arrived: the
real sender's interface MAC, which is what peer MAC validation uses in L2 mode
(not the system MAC that the codec header claims).

Layout of one Ethernet frame::

    dst 6s | src 6s | ethertype u16 | length u16 | msg_id u16 | index u8 | count u8 |
    data (length bytes) | padding up to the 60-byte Ethernet minimum

``length`` lets the receiver strip the padding that Ethernet adds to short
frames. A payload larger than the device's MTU (split-brain resolution logs
reach ~48 kB) is cut into ``count`` fragments that share ``msg_id``; the
receiver reassembles them (bounded: a few messages in flight, each for at
most ``REASSEMBLY_TIMEOUT`` seconds). Most frames are a single fragment.

The socket is bound to the device *and* the ethertype: the kernel then
delivers it our frames only, after the netdev ingress hook (an nftables rule
there drops them, as a cut link would), and never our own transmissions.
Frames carrying our own source MAC are ignored all the same (a loop or a
reflecting switch). Malformed frames and socket errors are counted
(``errors``, ``send_errors``), never raised. Opening needs CAP_NET_RAW and an
existing device; otherwise ``open`` raises ``L2Error`` (a ``ConfigError``)
with a message that says which.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from openvsm.config import ConfigError
from openvsm.macs import format_mac, parse_mac

log = logging.getLogger(__name__)

ETH_P_OPENVSM: Final = 0x88B5  # IEEE 802 local experimental ethertype 1
BROADCAST_MAC: Final = "ff:ff:ff:ff:ff:ff"
ETH_HEADER: Final = struct.Struct("!6s6sH")
SHIM: Final = struct.Struct("!HHBB")  # length, msg_id, index, count
ETH_MIN_FRAME: Final = 60  # without the FCS
MAX_PAYLOAD: Final = 65535
MAX_FRAGMENTS: Final = 255
REASSEMBLY_TIMEOUT: Final = 2.0
REASSEMBLY_SLOTS: Final = 16
RECV_BATCH: Final = 64
DEFAULT_MTU: Final = 1500

# sockaddr_ll.sll_pkttype
PACKET_HOST: Final = 0
PACKET_BROADCAST: Final = 1
PACKET_MULTICAST: Final = 2
PACKET_OTHERHOST: Final = 3
PACKET_OUTGOING: Final = 4

_SIOCGIFMTU: Final = 0x8921

L2Receiver = Callable[[bytes, str], None]


class L2Error(ConfigError):
    """The L2 transport cannot be used here (no CAP_NET_RAW, no such device, ...)."""


mac_bytes = parse_mac
mac_str = format_mac


@dataclass(frozen=True, slots=True)
class L2Frame:
    """One received Ethernet frame of our ethertype, padding stripped."""

    dst: str
    src: str
    msg_id: int
    index: int
    count: int
    data: bytes


def build_frame(
    dst: bytes,
    src: bytes,
    data: bytes,
    *,
    ethertype: int = ETH_P_OPENVSM,
    msg_id: int = 0,
    index: int = 0,
    count: int = 1,
) -> bytes:
    """One Ethernet frame carrying ``data`` (one fragment), padded to the minimum size."""
    if len(dst) != 6 or len(src) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    if len(data) > 0xFFFF:
        raise ValueError("fragment too long")
    if not 0 <= index < count <= MAX_FRAGMENTS:
        raise ValueError(f"bad fragment {index}/{count}")
    frame = (
        ETH_HEADER.pack(dst, src, ethertype)
        + SHIM.pack(len(data), msg_id & 0xFFFF, index, count)
        + data
    )
    if len(frame) < ETH_MIN_FRAME:
        frame += bytes(ETH_MIN_FRAME - len(frame))
    return frame


def parse_frame(frame: bytes, ethertype: int = ETH_P_OPENVSM) -> L2Frame | None:
    """Parse one received frame; None when it is not a well-formed frame of ours.

    Trailing bytes beyond ``length`` (Ethernet padding) are ignored.
    """
    head = ETH_HEADER.size + SHIM.size
    if len(frame) < head:
        return None
    dst, src, etype = ETH_HEADER.unpack_from(frame)
    if etype != ethertype:
        return None
    length, msg_id, index, count = SHIM.unpack_from(frame, ETH_HEADER.size)
    if len(frame) < head + length or not 0 <= index < count:
        return None
    return L2Frame(mac_str(dst), mac_str(src), msg_id, index, count, frame[head : head + length])


def fragment(
    dst: bytes,
    src: bytes,
    payload: bytes,
    mtu: int,
    msg_id: int,
    ethertype: int = ETH_P_OPENVSM,
) -> list[bytes]:
    """The Ethernet frames that carry ``payload`` over a device of ``mtu`` bytes."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is too long (max {MAX_PAYLOAD})")
    room = mtu - SHIM.size
    if room < 64:
        raise ValueError(f"MTU {mtu} is too small")
    pieces = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    if len(pieces) > MAX_FRAGMENTS:
        raise ValueError(f"payload needs {len(pieces)} fragments (max {MAX_FRAGMENTS})")
    return [
        build_frame(dst, src, piece, ethertype=ethertype, msg_id=msg_id, index=i, count=len(pieces))
        for i, piece in enumerate(pieces)
    ]


def is_own(frame: L2Frame, own_mac: str | None) -> bool:
    """A frame we sent ourselves (looped back by a switch or a second socket)."""
    return own_mac is not None and frame.src == own_mac.lower()


class Reassembler:
    """Collects the fragments of multi-frame messages (bounded in slots and time)."""

    def __init__(self, slots: int = REASSEMBLY_SLOTS, timeout: float = REASSEMBLY_TIMEOUT) -> None:
        self.slots = slots
        self.timeout = timeout
        self.dropped = 0  # incomplete messages given up (timeout, eviction, inconsistency)
        self._pending: collections.OrderedDict[
            tuple[str, int], tuple[float, int, dict[int, bytes]]
        ] = collections.OrderedDict()

    def add(self, frame: L2Frame, now: float) -> bytes | None:
        """The whole payload once its last fragment arrived, else None."""
        if frame.count == 1:
            return frame.data
        self._expire(now)
        key = (frame.src, frame.msg_id)
        entry = self._pending.get(key)
        if entry is not None and entry[1] != frame.count:
            del self._pending[key]
            self.dropped += 1
            entry = None
        if entry is None:
            if len(self._pending) >= self.slots:
                self._pending.popitem(last=False)
                self.dropped += 1
            entry = (now, frame.count, {})
            self._pending[key] = entry
        parts = entry[2]
        parts[frame.index] = frame.data
        if len(parts) < frame.count:
            return None
        del self._pending[key]
        return b"".join(parts[i] for i in range(frame.count))

    def _expire(self, now: float) -> None:
        while self._pending:
            key, (started, _, _) = next(iter(self._pending.items()))
            if now - started <= self.timeout:
                break
            del self._pending[key]
            self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._pending)


def device_mtu(sock: socket.socket, device: str) -> int:
    ifreq = struct.pack("16si", device.encode(), 0).ljust(40, b"\0")
    try:
        res = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, ifreq)
    except OSError:
        return DEFAULT_MTU
    mtu: int = struct.unpack_from("16si", res)[1]
    return mtu if mtu >= 68 else DEFAULT_MTU


class L2Endpoint:
    """An AF_PACKET socket on one device, one ethertype, integrated with asyncio."""

    def __init__(
        self, device: str, ethertype: int = ETH_P_OPENVSM, *, on_datagram: L2Receiver
    ) -> None:
        if not 0x0600 <= ethertype <= 0xFFFF:
            raise L2Error(f"ethertype 0x{ethertype:04x} is not an Ethernet II type (>= 0x0600)")
        self.device = device
        self.ethertype = ethertype
        self.on_datagram = on_datagram
        self.mac: str | None = None  # the device's MAC, known once open
        self.mtu = DEFAULT_MTU
        self.sent = 0
        self.received = 0
        self.errors = 0  # malformed frames, incomplete messages, receive errors
        self.send_errors = 0
        self.ignored_own = 0
        self.reassembler = Reassembler()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._msg_id = 0

    # ---- lifecycle --------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = self._open_socket()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _open_socket(self) -> socket.socket:
        where = f"L2 transport on device {self.device!r}"
        if not self.device or len(self.device.encode()) > 15 or "/" in self.device:
            raise L2Error(f"{where}: not a valid interface name")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ethertype))
        except PermissionError:
            raise L2Error(
                f"{where}: raw sockets are not permitted (needs CAP_NET_RAW: run as root "
                'or grant the capability, or use transport = "udp")'
            ) from None
        except OSError as exc:
            raise L2Error(f"{where}: cannot open a raw socket: {exc.strerror}") from None
        try:
            sock.bind((self.device, self.ethertype))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise L2Error(f"{where}: no such device in this network namespace") from None
            raise L2Error(f"{where}: cannot bind: {exc.strerror}") from None
        sock.setblocking(False)
        hwaddr = sock.getsockname()[4]
        if len(hwaddr) != 6:
            sock.close()
            raise L2Error(f"{where}: not an Ethernet device (hardware address {hwaddr.hex()})")
        self.mac = mac_str(hwaddr)
        self.mtu = device_mtu(sock, self.device)
        return sock

    def close(self) -> None:
        if self._sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    # ---- send -------------------------------------------------------------
    def send(self, data: bytes, dst_mac: str) -> None:
        sock, mac = self._sock, self.mac
        if sock is None or mac is None:
            self.send_errors += 1
            return
        self._msg_id = (self._msg_id + 1) & 0xFFFF
        try:
            frames = fragment(
                mac_bytes(dst_mac), mac_bytes(mac), data, self.mtu, self._msg_id, self.ethertype
            )
        except ValueError as exc:
            log.warning("l2 %s: not sent: %s", self.device, exc)
            self.send_errors += 1
            return
        for frame in frames:
            try:
                sock.send(frame)
            except OSError as exc:  # ENOBUFS/EAGAIN, ENETDOWN, EMSGSIZE, ...
                self.send_errors += 1
                if exc.errno == errno.EMSGSIZE:
                    self.mtu = device_mtu(sock, self.device)
                return
        self.sent += 1

    # ---- receive ----------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self._sock
        for _ in range(RECV_BATCH):
            if sock is None:
                return
            try:
                frame, addr = sock.recvfrom(MAX_PAYLOAD + 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                return
            pkttype = int(addr[2]) if len(addr) > 2 else PACKET_HOST
            self.handle_frame(frame, pkttype, time.monotonic())
            sock = self._sock

    def handle_frame(self, raw: bytes, pkttype: int, now: float) -> None:
        """One received frame: filter, reassemble, deliver. Never raises."""
        if pkttype in (PACKET_OUTGOING, PACKET_OTHERHOST):
            self.ignored_own += pkttype == PACKET_OUTGOING
            return
        frame = parse_frame(raw, self.ethertype)
        if frame is None:
            self.errors += 1
            return
        if is_own(frame, self.mac):
            self.ignored_own += 1
            return
        before = self.reassembler.dropped
        payload = self.reassembler.add(frame, now)
        self.errors += self.reassembler.dropped - before
        if payload is None:
            return
        self.received += 1
        try:
            self.on_datagram(payload, frame.src)
        except Exception:  # a bug in a handler must not stop the socket
            log.exception("l2 frame handler failed")
