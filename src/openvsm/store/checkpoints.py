"""Configuration checkpoints and rollback, sans-IO.

A checkpoint is one store object (kind ``checkpoint``, key = its name) that
holds a copy of every CLI-owned configuration object at the time it was
taken: users, VLANs and port-profiles whose ``owner`` is not ``openstack``
(the Neutron driver's objects are its own; a rollback never touches them).
Taking one is one committed change, so it is replicated to the standby and
survives a switchover like any configuration.

``rollback_ops(view, name)`` is the patch from the running configuration to
the checkpoint: deletions of objects the checkpoint does not have, puts of
objects it has with another body. The caller commits the whole patch as ONE
change (one replicated change, one accounting row): a rollback is applied
entirely or not at all. An empty patch is not an error (nothing to do).

Limits: at most ``MAX_CHECKPOINTS`` checkpoints; names as NX-OS allows
(letters, digits, ``_ - .``, at most 32 characters).

Checkpoint *files* (``checkpoint file NAME``, ``rollback running-config
file NAME``, ``show file NAME``, ``delete NAME``: what NAPALM's nxos_ssh
driver uses for commit and rollback) are the same objects under the key
``file:NAME`` (a ``bootflash:`` prefix is dropped): taking one again
overwrites it, they do not count against the limit, and the summary does
not list them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

from openvsm.store.pss import Op
from openvsm.store.runningconfig import MemoryView, StoreView, running_config_lines

KIND: Final = "checkpoint"
CONFIG_KINDS: Final = ("user", "vlan", "port_profile")
MAX_CHECKPOINTS: Final = 10
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,79}")
FILE_PREFIX: Final = "file:"


def file_key(name: str) -> str:
    """The checkpoint key of a file name (``bootflash:x.cfg`` -> ``file:x.cfg``)."""
    for device in ("bootflash:", "volatile:"):
        if name.startswith(device):
            name = name[len(device) :]
    name = name.lstrip("/")
    if not _FILE.fullmatch(name):
        raise CheckpointError(f"% Invalid file name {name[:80]!r}\n")
    return FILE_PREFIX + name


class CheckpointError(Exception):
    """An operator error; the text is the CLI's answer."""


def _cli_owned(body: dict[str, Any]) -> bool:
    return body.get("owner") != "openstack"


def snapshot(view: StoreView) -> dict[str, dict[str, dict[str, Any]]]:
    """Every CLI-owned configuration object, by kind and key."""
    return {
        kind: {key: body for key, body in view.list(kind).items() if _cli_owned(body)}
        for kind in CONFIG_KINDS
    }


def checkpoint_ops(view: StoreView, name: str, *, user: str, now: float) -> list[Op]:
    """The op that stores checkpoint ``name`` of the running configuration
    (a ``file_key`` name: a checkpoint file, overwritten if it exists)."""
    if name.startswith(FILE_PREFIX):
        body = {"name": name, "created_by": user, "created_at": now, "objects": snapshot(view)}
        return [Op(KIND, name, body)]
    if not _NAME.fullmatch(name):
        raise CheckpointError(
            "% Invalid checkpoint name (letters, digits, _ . -; at most 32 characters)\n"
        )
    existing = {k: v for k, v in view.list(KIND).items() if not k.startswith(FILE_PREFIX)}
    if name in existing:
        raise CheckpointError(f"% Checkpoint name {name} is already in use\n")
    if len(existing) >= MAX_CHECKPOINTS:
        raise CheckpointError(
            f"% Maximum number of checkpoints ({MAX_CHECKPOINTS}) reached; "
            "delete one with 'no checkpoint NAME'\n"
        )
    body = {"name": name, "created_by": user, "created_at": now, "objects": snapshot(view)}
    return [Op(KIND, name, body)]


def _missing(name: str) -> CheckpointError:
    if name.startswith(FILE_PREFIX):
        return CheckpointError(f"% No such file {name[len(FILE_PREFIX) :]}\n")
    return CheckpointError(f"% Checkpoint {name} does not exist\n")


def delete_ops(view: StoreView, name: str) -> list[Op]:
    if view.get(KIND, name) is None:
        raise _missing(name)
    return [Op(KIND, name, None)]


def rollback_ops(view: StoreView, name: str) -> list[Op]:
    """The patch (as ops of one change) from the running config to ``name``."""
    cp = view.get(KIND, name)
    if cp is None:
        raise _missing(name)
    target = cp.get("objects")
    if not isinstance(target, dict):
        raise CheckpointError(f"% Checkpoint {name} is damaged (no objects)\n")
    current = snapshot(view)
    in_use = {str(v.get("port_profile", "")) for v in view.list("veth").values()}
    wanted_profiles = target.get("port_profile") or {}
    busy = sorted(k for k in current["port_profile"] if k not in wanted_profiles and k in in_use)
    if busy:
        raise CheckpointError(
            f"% Rollback would delete port-profile(s) in use by interfaces: {', '.join(busy[:5])};"
            " move those interfaces first\n"
        )
    ops: list[Op] = []
    for kind in CONFIG_KINDS:
        want = target.get(kind) or {}
        have = current[kind]
        # deletions first (port-profiles before the VLANs they may use)
        ops += [Op(kind, key, None) for key in sorted(have) if key not in want]
    for kind in CONFIG_KINDS:
        want = target.get(kind) or {}
        have = current[kind]
        ops += [
            Op(kind, key, dict(body)) for key, body in sorted(want.items()) if have.get(key) != body
        ]
    return ops


def file_lines(view: StoreView, name: str) -> list[str]:
    """``show file NAME`` of a checkpoint: its configuration as running-config lines."""
    cp = view.get(KIND, name)
    if cp is None:
        raise _missing(name)
    raw = cp.get("objects")
    objects: dict[str, Any] = raw if isinstance(raw, dict) else {}
    mem = MemoryView()
    mem.apply(
        Op(kind, key, dict(body))
        for kind, bodies in objects.items()
        if kind in CONFIG_KINDS and isinstance(bodies, dict)
        for key, body in bodies.items()
        if isinstance(body, dict)
    )
    return running_config_lines(mem)


def summary_data(view: StoreView) -> dict[str, Any]:
    """``show checkpoint summary`` data (NX-OS-style keys), oldest first."""
    rows = []
    user_checkpoints = {k: v for k, v in view.list(KIND).items() if not k.startswith(FILE_PREFIX)}
    for name, body in sorted(user_checkpoints.items(), key=lambda kv: kv[1].get("created_at", 0)):
        rows.append(
            {
                "name": name,
                "created_by": str(body.get("created_by", "")),
                "created_at": time.strftime(
                    "%a, %H:%M:%S %d %b %Y", time.localtime(float(body.get("created_at", 0)))
                ),
                "size": len(json.dumps(body.get("objects", {}), sort_keys=True)),
                "description": "None",
            }
        )
    return {"TABLE_ckpt": {"ROW_ckpt": rows}}


__all__ = [
    "CONFIG_KINDS",
    "MAX_CHECKPOINTS",
    "CheckpointError",
    "checkpoint_ops",
    "delete_ops",
    "file_key",
    "file_lines",
    "rollback_ops",
    "snapshot",
    "summary_data",
]
