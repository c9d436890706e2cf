"""MAC addresses: the one place they are parsed and formatted.

The wire form and every configuration and show field use ``aa:bb:cc:dd:ee:ff``
(six pairs of hex digits); NX-OS shows use the dotted form ``aabb.ccdd.eeff``.
A leaf module: it imports nothing from openvsm.
"""

from __future__ import annotations

import secrets


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (either case) -> its six bytes; ValueError if it is not that."""
    parts = text.split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r}") from None


def is_mac(text: str) -> bool:
    try:
        parse_mac(text)
    except ValueError:
        return False
    return True


def format_mac(raw: bytes) -> str:
    """Six bytes -> ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in raw)


def dotted_mac(mac: str) -> str:
    """``02:00:5e:10:00:01`` -> ``0200.5e10.0001`` (NX-OS)."""
    hexes = mac.replace(":", "").replace("-", "").lower()
    return ".".join(hexes[i : i + 4] for i in range(0, 12, 4))


def is_multicast(mac: str) -> bool:
    return bool(parse_mac(mac)[0] & 0x01)


def local_unicast(raw: bytes) -> str:
    """The first six bytes of ``raw`` as a locally administered unicast MAC."""
    first = (raw[0] & 0xFC) | 0x02
    return format_mac(bytes([first]) + raw[1:6])


def random_mac() -> str:
    """A random locally administered unicast MAC."""
    return local_unicast(secrets.token_bytes(6))
