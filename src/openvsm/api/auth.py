"""Password hashes of the ``user`` objects: scrypt, never clear text.

Format of ``password_hash``: ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``.
Verification refuses (False) anything malformed or with parameters beyond
what this node is willing to spend memory on, rather than raising.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

SCHEME: Final = "scrypt"
DEFAULT_N: Final = 2**14
DEFAULT_R: Final = 8
DEFAULT_P: Final = 1
_SALT_BYTES: Final = 16
_DKLEN: Final = 32
_MAX_N: Final = 2**17
_MAX_R: Final = 32
_MAX_P: Final = 16


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=128 * r * (n + p + 2) + (1 << 20),
    )


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, _DKLEN)
    return f"{SCHEME}${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches the ``stored`` hash (constant-time compare)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = bytes.fromhex(parts[4])
        expected = bytes.fromhex(parts[5])
    except ValueError:
        return False
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return False
    if not salt or not 16 <= len(expected) <= 64:
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)
