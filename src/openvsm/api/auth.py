"""Roles of REST users (issue 12 point 3, REST side).

The rule set is ``openvsm.roles``, shared with the CLI: ``network-admin``
may read and change everything, ``network-operator`` may only read. The
REST server asks ``may_write`` before any request that is not a read
(``READ_METHODS``); a refusal is a 403 with a JSON reason, accounted under
the real user name.
"""

from __future__ import annotations

from typing import Final

from openvsm.roles import Role, may_write, role_of

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

__all__ = ["READ_METHODS", "Role", "may_write", "role_of"]
