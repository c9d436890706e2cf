"""Frame keys per channel and per host (issue 12 point 1): who signs what.

Three kinds of key (docs/security.md "Keys"):

- the **pair key**: VSM<->VSM frames (heartbeats, discovery, resolution
  info and logs) and the replication stream. Only the two VSMs hold it
  (``[keys] pair_key``, or the old ``[node] secret``). During a rotation
  overlap a second pair key (``[keys] pair_key_next``) is accepted too; frames
  are signed with the first.
- the domain **VEM key**: held only by the two VSMs (``[keys] vem_key``);
  never on a host.
- a **host key** per VEM host: ``derive_host_key(VEM key, host UUID)`` =
  hex(HMAC-SHA256(VEM key, "openvsm-vem-host" || host UUID)). A host holds
  only its own (``[vem] key_file``); it signs that host's frames both ways
  (VEM->VSM and VSM->VEM), so a host can neither speak for another host nor
  for a VSM.

Every key is used as the bytes of its text (a file holds the text), so a host
key file holds the 64 hex characters ``derive_host_key`` returns.

The codec asks a ``FrameKeys`` policy which key signs a frame and whether a
received tag is good; the policies:

- ``SharedKey``: one key for every frame. A VEM (its host key, or the old
  domain secret) and every domain whose files name only ``[node] secret``
  (old files: then the VSMs sign VEM frames with it too, as before).
- ``VsmKeys``: hamgr and vemmgr of a VSM with a VEM key. A frame of role VEM
  claims a host (the ``host_uuid`` of its payload; every VEM->VSM message has
  one) and must carry that host's tag under the VEM key or, during a rotation
  overlap, under the second VEM key (``vem_key_next``): else ``bad_host_key``.
  A frame of a VSM role must carry the pair key's tag; one that carries
  instead the tag of the host it claims is ``vem_key_vsm_role`` (a host
  forging VSM frames), otherwise ``bad_tag``. Derived keys are cached per
  host UUID once they verified a frame (bounded), so a frame costs one
  payload field lookup and one HMAC; a frame of an unknown or forged UUID
  costs at most two derivations more, and nothing is kept for it.

A VEM frame's header MAC must also be the host's (``vem_mac``), so that no
host moves another host's sequence window (``bad_mac``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

HOST_KEY_LABEL: Final = b"openvsm-vem-host"
TAG_LEN: Final = 16
MAX_HOST_UUID: Final = 128
_BLOCK: Final = 64  # SHA-256 block size (HMAC key padding)
CACHE_LIMIT: Final = 16384  # hosts whose derived keys are kept (far above a module limit)
_VEM_ROLE: Final = 3  # SenderRole.VEM on the wire

# Drop reasons this module returns (values of ``codec.DropReason``).
BAD_TAG: Final = "bad_tag"
BAD_HOST_KEY: Final = "bad_host_key"
VEM_KEY_VSM_ROLE: Final = "vem_key_vsm_role"
NO_HOST: Final = "no_host"

# (host UUID the key verified, or "" for the pair/shared key; key generation: 0 current)
Verified = tuple[str, int]


def tag(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")[:TAG_LEN]


class KeyTag:
    """One key's HMAC-SHA256 tags from its precomputed inner and outer SHA-256
    states (RFC 2104): the same tag as ``tag`` at half the cost per frame."""

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        pad = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
        pad = pad.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in pad))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in pad))

    def tag(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_LEN]

    def check(self, data: bytes, got: bytes) -> bool:
        return hmac.compare_digest(self.tag(data), got)


def derive_host_key(vem_key: bytes, host_uuid: str) -> str:
    """The key of one host: hex(HMAC-SHA256(VEM key, "openvsm-vem-host" || host UUID))."""
    return hmac.digest(vem_key, HOST_KEY_LABEL + host_uuid.encode(), "sha256").hex()


def vem_mac(host_uuid: str) -> str:
    """The system MAC in a VEM's frames: locally administered, from its host UUID
    (``openvsm.config.derived_mac("vem/" + uuid)``)."""
    raw = bytearray(hashlib.sha256(f"vem/{host_uuid}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


class _HostClaim(msgspec.Struct):
    """The host a payload names (unknown fields ignored: any message's map)."""

    host_uuid: str = ""


_CLAIM = msgspec.msgpack.Decoder(_HostClaim)


def claimed_host(payload: bytes) -> str:
    """The ``host_uuid`` a payload names, "" if none (never raises)."""
    try:
        host = _CLAIM.decode(payload).host_uuid
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    return host if 0 < len(host) <= MAX_HOST_UUID else ""


class FrameKeys(Protocol):
    """The codec's keying hook."""

    def sign_keys(self, host: str) -> Sequence[KeyTag]:
        """Keys to sign a frame for ``host`` with ("" = a VSM frame); the first
        is used unless the caller sends one copy per key (a rotation overlap)."""
        ...

    def verify(
        self, role: int, mac: bytes, body: bytes, got: bytes, payload: bytes
    ) -> Verified | str:
        """``(host, generation)`` when the tag ``got`` of ``body`` is good, else a drop reason."""
        ...


class SharedKey:
    """One key signs and verifies every frame."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a frame key must not be empty")
        self.key = key
        self._keys = (KeyTag(key),)

    def sign_keys(self, host: str) -> Sequence[KeyTag]:
        return self._keys

    def verify(
        self, role: int, mac: bytes, body: bytes, got: bytes, payload: bytes
    ) -> Verified | str:
        return ("", 0) if self._keys[0].check(body, got) else BAD_TAG


class _Host:
    __slots__ = ("gen", "keys", "mac")

    def __init__(self, keys: tuple[KeyTag, ...], mac: bytes) -> None:
        self.keys = keys
        self.mac = mac
        self.gen: int | None = None  # the generation its last good frame used


class VsmKeys:
    """A VSM's keys: the pair key and the VEM key(s) (see the module doc)."""

    def __init__(
        self,
        pair: bytes,
        vem: Sequence[bytes],
        *,
        pair_next: bytes | None = None,
        cache_limit: int = CACHE_LIMIT,
    ) -> None:
        if not pair or not vem or not all(vem) or pair_next == b"":
            raise ValueError("VsmKeys needs the pair key and at least one VEM key")
        self.pair = pair
        self.vem = tuple(vem)
        # signing uses the first; a rotation overlap accepts the second as well
        self._pair_keys = (KeyTag(pair),) + ((KeyTag(pair_next),) if pair_next else ())
        self._hosts: dict[str, _Host] = {}
        self.cache_limit = cache_limit

    def _derive(self, host: str) -> _Host:
        found = self._hosts.get(host)
        if found is not None:
            return found
        keys = tuple(KeyTag(derive_host_key(k, host).encode()) for k in self.vem)
        return _Host(keys, bytes.fromhex(vem_mac(host).replace(":", "")))

    def _keep(self, host: str, entry: _Host) -> None:
        if host in self._hosts:
            return
        if len(self._hosts) >= self.cache_limit:
            del self._hosts[next(iter(self._hosts))]  # the oldest
        self._hosts[host] = entry

    def host_key(self, host: str, generation: int = 0) -> bytes:
        return self._derive(host).keys[generation].key

    def generation(self, host: str) -> int | None:
        """The VEM key generation the host's last good frame used (None: not heard)."""
        entry = self._hosts.get(host)
        return entry.gen if entry is not None else None

    def sign_keys(self, host: str) -> Sequence[KeyTag]:
        if not host:
            return self._pair_keys[:1]
        entry = self._derive(host)
        if entry.gen is not None:
            return entry.keys[entry.gen : entry.gen + 1]
        return entry.keys  # not heard yet: one copy per accepted generation

    def verify(
        self, role: int, mac: bytes, body: bytes, got: bytes, payload: bytes
    ) -> Verified | str:
        if role != _VEM_ROLE:
            for pair_gen, key in enumerate(self._pair_keys):
                if key.check(body, got):
                    return ("", pair_gen)
            host = claimed_host(payload)
            if host and self._match(self._derive(host), body, got) is not None:
                return VEM_KEY_VSM_ROLE
            return BAD_TAG
        host = claimed_host(payload)
        if not host:
            return NO_HOST
        entry = self._derive(host)
        gen = self._match(entry, body, got)
        if gen is None:
            return BAD_HOST_KEY
        if mac != entry.mac:
            return "bad_mac"
        entry.gen = gen
        self._keep(host, entry)
        return (host, gen)

    @staticmethod
    def _match(entry: _Host, body: bytes, got: bytes) -> int | None:
        for gen, key in enumerate(entry.keys):
            if key.check(body, got):
                return gen
        return None


__all__ = [
    "BAD_HOST_KEY",
    "BAD_TAG",
    "HOST_KEY_LABEL",
    "NO_HOST",
    "VEM_KEY_VSM_ROLE",
    "FrameKeys",
    "KeyTag",
    "SharedKey",
    "Verified",
    "VsmKeys",
    "claimed_host",
    "derive_host_key",
    "tag",
    "vem_mac",
]
