"""VLAN ids and VLAN lists, the one home of their rules.

A VLAN list is what an operator types and what the running configuration and
``show`` print: ``10,20-25`` (ids ascending, each run of consecutive ids
folded to ``lo-hi``). Ids are 1-4094; 3968-4047 are reserved for internal
use, as on NX-OS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

VLAN_MIN: Final = 1
VLAN_MAX: Final = 4094
RESERVED_VLANS: Final = range(3968, 4048)  # 3968-4047, internal use (NX-OS)


class VlanListError(Exception):
    """A well-formed VLAN list the rules refuse; ``text`` is the CLI's answer."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def format_vlan_list(vlans: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3,5"``."""
    ids = sorted(set(vlans))
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def _vlan_id(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    n = int(text)
    if not VLAN_MIN <= n <= VLAN_MAX:
        raise VlanListError(f"% VLAN {n} is out of range ({VLAN_MIN}-{VLAN_MAX})\n")
    return n


def parse_vlan_list(text: str) -> list[int]:
    """``"10,20-25"`` -> sorted ids. ``ValueError``: malformed; ``VlanListError``: out of range."""
    out: list[int] = []
    for part in text.split(","):
        lo_s, sep, hi_s = part.partition("-")
        lo = _vlan_id(lo_s)
        hi = _vlan_id(hi_s) if sep else lo
        if hi < lo:
            raise VlanListError(f"% VLAN range {part} is reversed\n")
        for n in range(lo, hi + 1):
            if n in RESERVED_VLANS:
                raise VlanListError(
                    f"% VLAN {n} is reserved ({RESERVED_VLANS.start}-{RESERVED_VLANS.stop - 1})\n"
                )
        out.extend(range(lo, hi + 1))
    seen: set[int] = set()
    for n in out:
        if n in seen:
            raise VlanListError(f"% VLAN {n} appears more than once in '{text}'\n")
        seen.add(n)
    return sorted(out)


def default_vlan_name(n: int) -> str:
    return "default" if n == 1 else f"VLAN{n:04d}"
