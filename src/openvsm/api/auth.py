"""Roles of REST users (issue 12 point 3, REST side).

Two roles, as on NX-OS: ``network-admin`` may read and change everything,
``network-operator`` may only read. A user body without a role is an
operator (``configcmd.DEFAULT_ROLE``). The REST server asks ``may_write``
before any request that is not a read; a refusal is a 403 with a JSON
reason, accounted under the real user name.
"""

from __future__ import annotations

from typing import Any, Final

ADMIN_ROLE: Final = "network-admin"
OPERATOR_ROLE: Final = "network-operator"
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def role_of(body: dict[str, Any] | None) -> str:
    """The role of a stored ``user`` body (operator when absent or unknown)."""
    role = body.get("role") if body else None
    return ADMIN_ROLE if role == ADMIN_ROLE else OPERATOR_ROLE


def may_write(role: str) -> bool:
    """True when ``role`` may change the configuration or the system."""
    return role == ADMIN_ROLE
