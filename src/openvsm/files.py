"""Durable, private file writes (issue 12 point 6).

``write_private(path, data)``: the whole file or the old one, never a torn
one, and readable by its owner only: the data goes to ``path.tmp`` created
0600, is fsynced, renamed over ``path``, and the directory is fsynced so the
rename survives a power cut. Every ``openvsm`` command also runs with umask
077 (``openvsm.main``), so files written elsewhere are private too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes | str) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600, file and directory fsynced)."""
    raw = data.encode() if isinstance(data, str) else data
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
