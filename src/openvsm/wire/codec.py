"""Frame codec: header, msgpack payload, HMAC-SHA256 tag (DESIGN §2).

Layout (network byte order)::

    magic "OV" | version u8 | type u8 | domain u16 | role u8 | mac 6s |
    epoch u64 | seq u64 | payload_len u32 | payload | tag 16s

The tag is HMAC-SHA256 over everything before it, truncated to 16 bytes,
keyed as the codec's ``FrameKeys`` policy says (``openvsm.wire.keys``: the
pair key for VSM frames, each host's own key for VEM frames; one shared key
for old files and for a VEM). ``decode`` never raises: a frame that is not
acceptable comes back as a ``Drop`` with its reason, which the caller counts
(``show system internal redundancy counters``, ``show module vem counters``).
Each key keeps its inner and outer SHA-256 states (RFC 2104,
``openvsm.wire.keys.KeyTag``) and copies them per frame: the same tag as
``hmac.digest`` at half its cost. MAC texts are cached both ways (a VSM
hears the same few thousand VEM MACs every second), bounded by ``MAC_CACHE``.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from openvsm.macs import format_mac, parse_mac
from openvsm.wire import keys as _keys
from openvsm.wire.keys import FrameKeys, KeyTag, SharedKey, VsmKeys
from openvsm.wire.messages import MESSAGE_TYPES, TYPE_NUMBERS, Message, SenderRole

MAGIC: Final = b"OV"
VERSION: Final = 1
TAG_LEN: Final = 16
_HEADER = struct.Struct("!2sBBHB6sQQI")
HEADER_LEN: Final = _HEADER.size
MAX_FRAME: Final = 65507  # largest UDP payload
MAC_CACHE: Final = 1 << 15  # MAC texts cached per direction (10,000 VEMs fit)


class DropReason(enum.Enum):
    MALFORMED = "malformed"
    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    BAD_DOMAIN = "bad_domain"
    BAD_TAG = "bad_tag"
    BAD_TYPE = "bad_type"
    BAD_MAC = "bad_mac"
    STALE = "stale"
    BAD_HOST_KEY = _keys.BAD_HOST_KEY  # a VEM frame without its claimed host's tag
    NO_HOST = _keys.NO_HOST  # a VEM frame naming no host UUID (keyed VSMs)
    VEM_KEY_VSM_ROLE = _keys.VEM_KEY_VSM_ROLE  # a VSM-role frame signed with a host key


@dataclass(frozen=True, slots=True)
class Frame:
    role: SenderRole
    mac: str  # "aa:bb:cc:dd:ee:ff"
    epoch: int
    seq: int
    msg: Message
    domain: int = 0
    host: str = ""  # the host UUID whose key verified it ("" = the pair/shared key)
    key_gen: int = 0  # which key generation (0 current, 1 ``vem_key_next``/``pair_key_next``)


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    detail: str = ""


@functools.lru_cache(maxsize=MAC_CACHE)
def mac_to_bytes(mac: str) -> bytes:
    """``openvsm.macs.parse_mac``, cached: the same few MACs are on every frame."""
    return parse_mac(mac)


@functools.lru_cache(maxsize=MAC_CACHE)
def mac_to_str(raw: bytes) -> str:
    return format_mac(raw)


_ROLES: Final = {int(r): r for r in SenderRole}
_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: Final[dict[int, msgspec.msgpack.Decoder[msgspec.Struct]]] = {
    num: msgspec.msgpack.Decoder(cls) for num, cls in MESSAGE_TYPES.items()
}


class Codec:
    """Encodes and decodes frames for one domain.

    ``Codec(domain, secret)``: one shared key; ``Codec(domain, keys=policy)``:
    the keys a ``FrameKeys`` policy chooses (``openvsm.wire.keys.VsmKeys``)."""

    def __init__(
        self, domain_id: int, secret: bytes | None = None, *, keys: FrameKeys | None = None
    ) -> None:
        if not 1 <= domain_id <= 4095:
            raise ValueError("domain id must be 1-4095")
        if (secret is None) == (keys is None):
            raise ValueError("a codec takes a secret or a keys policy")
        self.domain_id = domain_id
        self.keys: FrameKeys = keys if keys is not None else SharedKey(secret or b"")

    @classmethod
    def for_vsm(
        cls,
        domain_id: int,
        pair: bytes,
        vem_keys: Sequence[bytes],
        pair_next: bytes | None = None,
    ) -> Codec:
        """A VSM's codec (hamgr, vemmgr): the pair key (and, during a rotation
        overlap, ``pair_next``) and the VEM keys (``VsmKeys``); without VEM keys
        (old files) the pair key signs everything."""
        if vem_keys:
            return cls(domain_id, keys=VsmKeys(pair, vem_keys, pair_next=pair_next))
        if pair_next is not None:
            raise ValueError("a second pair key needs the VEM keys (keys.vem_key)")
        return cls(domain_id, pair)

    def encode(
        self,
        msg: Message,
        *,
        role: SenderRole,
        mac: str,
        epoch: int,
        seq: int,
        host: str = "",
        key: KeyTag | None = None,
    ) -> bytes:
        """One frame; signed with ``key``, else the policy's first key for ``host``
        ("" = a VSM frame, the pair key)."""
        payload = _ENCODER.encode(msg)
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            TYPE_NUMBERS[type(msg)],
            self.domain_id,
            int(role),
            mac_to_bytes(mac),
            epoch,
            seq,
            len(payload),
        )
        body = header + payload
        return body + (key if key is not None else self.keys.sign_keys(host)[0]).tag(body)

    def decode(self, data: bytes) -> Frame | Drop:
        """Decode one frame; never raises on any input."""
        try:
            return self._decode(data)
        except Exception as exc:  # untrusted input must never escape
            return Drop(DropReason.MALFORMED, f"{type(exc).__name__}")

    def _decode(self, data: bytes) -> Frame | Drop:
        if len(data) < HEADER_LEN + TAG_LEN:
            return Drop(DropReason.MALFORMED, "short frame")
        magic, version, mtype, domain, role, mac, epoch, seq, plen = _HEADER.unpack_from(data)
        if magic != MAGIC:
            return Drop(DropReason.BAD_MAGIC)
        if version != VERSION:
            return Drop(DropReason.BAD_VERSION, f"version {version}")
        if HEADER_LEN + plen + TAG_LEN != len(data):
            return Drop(DropReason.MALFORMED, "length mismatch")
        if domain != self.domain_id:
            return Drop(DropReason.BAD_DOMAIN, f"domain {domain}")
        body = data[: HEADER_LEN + plen]
        verdict = self.keys.verify(
            role, mac, body, data[HEADER_LEN + plen :], data[HEADER_LEN : HEADER_LEN + plen]
        )
        if isinstance(verdict, str):
            return Drop(DropReason(verdict))
        decoder = _DECODERS.get(mtype)
        if decoder is None:
            return Drop(DropReason.BAD_TYPE, f"type {mtype}")
        sender = _ROLES.get(role)
        if sender is None:
            return Drop(DropReason.MALFORMED, f"role {role}")
        try:
            msg = decoder.decode(data[HEADER_LEN : HEADER_LEN + plen])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Drop(DropReason.MALFORMED, str(exc)[:80])
        return Frame(
            role=sender,
            mac=mac_to_str(mac),
            epoch=epoch,
            seq=seq,
            msg=msg,  # type: ignore[arg-type]
            domain=domain,
            host=verdict[0],
            key_gen=verdict[1],
        )
