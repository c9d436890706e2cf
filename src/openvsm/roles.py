"""Operator roles, shared by the CLI and the REST API (one small rule set).

Two roles, as on NX-OS: ``network-admin`` may do everything;
``network-operator`` may only read (``show``, ``GET``). The built-in user
``admin`` is always ``network-admin``; a user the store does not know (or
whose record has no valid role) gets the read-only role.

Callers: ``role_of(user, store)`` for a user's role, ``may_write(role)``
before any change (configuration mode, ``system switchover``, ``reload``,
``clear ...``, REST writes), and ``PERMISSION_DENIED`` as the CLI's answer.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Protocol


class Role(enum.StrEnum):
    NETWORK_ADMIN = "network-admin"
    NETWORK_OPERATOR = "network-operator"


BUILTIN_ADMIN: Final = "admin"
PERMISSION_DENIED: Final = "% Permission denied for the role"


class UserStore(Protocol):
    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...


def role_of(user: str, store: UserStore | None) -> Role:
    """The role of ``user``: its stored role, ``network-admin`` for ``admin``."""
    if user == BUILTIN_ADMIN:
        return Role.NETWORK_ADMIN
    body = store.get("user", user) if store is not None else None
    try:
        return Role(str((body or {}).get("role", "")))
    except ValueError:
        return Role.NETWORK_OPERATOR


def may_write(role: str) -> bool:
    """Whether ``role`` may change the system (configuration or actions)."""
    return role == Role.NETWORK_ADMIN


__all__ = ["BUILTIN_ADMIN", "PERMISSION_DENIED", "Role", "may_write", "role_of"]
