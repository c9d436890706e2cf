"""The redundancy trace as JSON lines in the node's log directory.

One object per event, with stable keys (docs/observability.md)::

    {"timestamp": "2026-12-02T03:58:01.123Z", "time": 1796183881.123,
     "node": "primary", "role": "primary", "domain": 100,
     "state": "active", "epoch": 7, "event": "became active (epoch 7): ..."}

The file is ``RUNDIR/redundancy-trace.jsonl``; when a write would take it past
``max_bytes`` it is renamed to ``.1`` (``.1`` to ``.2`` ... up to ``keep``
files, the oldest dropped) and a new one started. Writes happen on trace
events only (state changes, rare), never on the heartbeat path; an I/O error
is counted (``errors``) and the event stays in hamgr's memory and data-dir
trace.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Final

TRACE_JSONL: Final = "redundancy-trace.jsonl"
DEFAULT_MAX_BYTES: Final = 1 << 20
DEFAULT_KEEP: Final = 3


def iso_utc(t: float) -> str:
    """``t`` (seconds since the epoch) as ISO 8601 UTC with milliseconds."""
    whole = int(t)
    ms = round((t - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


class JsonlTrace:
    """Appends trace events to a size-rotated JSON-lines file."""

    def __init__(
        self,
        path: Path,
        *,
        node: str,
        role: str,
        domain: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.path = path
        self.node, self.role, self.domain = node, role, domain
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.errors = 0
        self.rotations = 0

    def record(self, t: float, event: str, *, state: str, epoch: int) -> dict[str, object]:
        entry: dict[str, object] = {
            "timestamp": iso_utc(t),
            "time": round(t, 3),
            "node": self.node,
            "role": self.role,
            "domain": self.domain,
            "state": state,
            "epoch": epoch,
            "event": event,
        }
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        try:
            self._rotate_if_needed(len(line))
            with self.path.open("ab") as fh:
                fh.write(line)
        except OSError:
            self.errors += 1
        return entry

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        if oldest.exists():
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1
