"""vemmgr's checkpoint file: the module statuses of the node's current activation.

``RUNDIR/vemmgr-attachments.json`` (``node.RunDir.vemmgr_attachments``) holds
an ``AttachmentCheckpoint``. It lives for one node boot: sysmgr removes it
when the node starts or reloads, vemmgr when hamgr reports standby. vemmgr
writes it (atomic rename, no fsync: it only has to outlive a vemmgr process)
and reads it when it becomes active again in the same boot; cfgmgr reads it
to answer ``show module`` the way vemmgr will while vemmgr is down or not
active yet (``takeover_view``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from openvsm.modules.table import AttachmentCheckpoint, ModuleTable


class CheckpointError(Exception):
    """The file exists but cannot be used (unreadable or not a checkpoint)."""


def read_attachments(path: Path) -> AttachmentCheckpoint | None:
    """The checkpoint, or None when there is none; CheckpointError when it is bad."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path.name} unreadable: {exc}") from None
    try:
        return msgspec.json.decode(raw, type=AttachmentCheckpoint)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CheckpointError(f"{path.name} invalid: {exc}") from None


def write_attachments(path: Path, saved: AttachmentCheckpoint) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(saved))
    os.replace(tmp, path)


def usable(saved: AttachmentCheckpoint | None, epoch: int) -> AttachmentCheckpoint | None:
    """The checkpoint if it belongs to this activation: its epoch, or a lower
    one (hamgr restarted on this same active; the file exists only while this
    node has been active in its boot)."""
    return saved if saved is not None and saved.epoch <= epoch else None


def takeover_view(
    modules: Mapping[str, Any],
    veths: Mapping[str, Any],
    saved: AttachmentCheckpoint | None,
    epoch: int,
    *,
    module_limit: int,
) -> ModuleTable:
    """The table an active's vemmgr will show once active: the store objects,
    the checkpointed statuses of this activation, the takeover rule for the
    rest (``powered-up``). A scratch table: its effects are dropped."""
    table = ModuleTable(module_limit=module_limit)
    table.load(modules, veths)
    ok = usable(saved, epoch)
    if ok is not None:
        table.restore_attachments(ok)
    table.became_active(epoch, 0.0)
    return table
