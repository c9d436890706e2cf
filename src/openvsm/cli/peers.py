"""Who is at the other end of the local CLI socket: Unix user -> CLI user.

cfgmgr learns the connecting process's uid from the kernel (``SO_PEERCRED``,
``openvsm.ipc``) and maps it to a configured CLI user, whose role then
applies (``openvsm.roles``) and under whose name every command is
accounted. The mapping comes from the node's TOML::

    [cli]
    # Unix user name -> CLI user name; "*" is the fallback for the others
    users = { root = "admin", alice = "alice", "*" = "guest" }

Without an entry: ``root`` and the Unix user that runs the node are
``admin``; any other Unix user is the CLI user of the same name (a name the
store does not know gets the read-only role). A uid without a name in the
password database is ``uid-N``. ``cfgmgr.sock`` is created 0600, so only
root and the node's own user can connect unless an operator widens it.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

FALLBACK = "*"


def user_map(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """``[cli] users`` of a node's TOML; bad entries are logged and ignored."""
    section = raw.get("cli") if isinstance(raw, Mapping) else None
    table = section.get("users") if isinstance(section, Mapping) else None
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        log.error("cli.users: expected a table of Unix user = CLI user; ignored")
        return {}
    out: dict[str, str] = {}
    for unix, cli in table.items():
        if isinstance(unix, str) and isinstance(cli, str) and cli.strip():
            out[unix] = cli.strip()
        else:
            log.error("cli.users: entry %r = %r is not a user name; ignored", unix, cli)
    return out


def unix_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def cli_user(uid: int | None, mapping: Mapping[str, str], *, own_uid: int | None = None) -> str:
    """The CLI user of a local peer with ``uid`` (None: unknown -> ``admin``
    only if the socket could not tell, which Linux always can)."""
    if uid is None:
        return mapping.get(FALLBACK, "admin")
    name = unix_name(uid)
    if name in mapping:
        return mapping[name]
    if uid == 0 or uid == (os.getuid() if own_uid is None else own_uid):
        return "admin"
    return mapping.get(FALLBACK, name)


__all__ = ["cli_user", "unix_name", "user_map"]
