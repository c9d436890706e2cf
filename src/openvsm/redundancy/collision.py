"""Role collision table (seed: "VSM Role Collision Detection").

A VSM that sends HA frames with *our* role from another MAC collides with us.
The table keeps, per colliding MAC, the interfaces it was seen on and the
latest collision time (monotonic seconds; the adapter converts to wall clock
for display). At most ``MAX_ENTRIES`` MACs are kept; a new MAC when the table
is full overwrites the entry with the oldest latest-collision time, and the
overwrite is kept for display (``Overwritten: <old> by <new> at <time>``).
Entries and overwrite records expire ``EXPIRY`` seconds after their last
collision. Pure data: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

MAX_ENTRIES: Final = 8
EXPIRY: Final = 3600.0  # seed: "After an hour elapses since the last collision"


@dataclass(frozen=True)
class CollisionEntry:
    mac: str
    last_seen: float  # monotonic time of the latest collision
    first_seen: float
    ifaces: frozenset[str]  # "control" / "mgmt"


@dataclass(frozen=True)
class Overwrite:
    old_mac: str
    new_mac: str
    time: float  # monotonic


@dataclass(frozen=True)
class Recorded:
    """What ``CollisionTable.record`` did: a new MAC, and maybe an overwrite."""

    new: bool
    overwrite: Overwrite | None = None


class CollisionTable:
    def __init__(self) -> None:
        self._entries: list[CollisionEntry] = []
        self._overwrites: list[Overwrite] = []

    @property
    def entries(self) -> tuple[CollisionEntry, ...]:
        return tuple(self._entries)

    @property
    def overwrites(self) -> tuple[Overwrite, ...]:
        return tuple(self._overwrites)

    def record(self, mac: str, iface: str, now: float) -> Recorded:
        for i, entry in enumerate(self._entries):
            if entry.mac == mac:
                self._entries[i] = replace(entry, last_seen=now, ifaces=entry.ifaces | {iface})
                return Recorded(new=False)
        fresh = CollisionEntry(mac=mac, last_seen=now, first_seen=now, ifaces=frozenset({iface}))
        if len(self._entries) < MAX_ENTRIES:
            self._entries.append(fresh)
            return Recorded(new=True)
        # Oldest = earliest latest-collision time; the first such entry on a tie.
        victim = min(range(len(self._entries)), key=lambda i: self._entries[i].last_seen)
        ow = Overwrite(old_mac=self._entries[victim].mac, new_mac=mac, time=now)
        self._entries[victim] = fresh
        self._overwrites.append(ow)
        del self._overwrites[:-MAX_ENTRIES]
        return Recorded(new=True, overwrite=ow)

    def expire(self, now: float) -> list[CollisionEntry]:
        """Remove entries (and overwrite records) an hour past their last collision."""
        gone = [e for e in self._entries if now >= e.last_seen + EXPIRY]
        self._entries = [e for e in self._entries if now < e.last_seen + EXPIRY]
        self._overwrites = [o for o in self._overwrites if now < o.time + EXPIRY]
        return gone

    def live(self, now: float) -> tuple[tuple[CollisionEntry, ...], tuple[Overwrite, ...]]:
        """Entries and overwrites not yet expired at ``now`` (no mutation)."""
        return (
            tuple(e for e in self._entries if now < e.last_seen + EXPIRY),
            tuple(o for o in self._overwrites if now < o.time + EXPIRY),
        )

    def next_expiry(self) -> float:
        times = [e.last_seen + EXPIRY for e in self._entries]
        times += [o.time + EXPIRY for o in self._overwrites]
        return min(times, default=float("inf"))
