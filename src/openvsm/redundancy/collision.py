"""Role collisions and duplicate incarnations (seed: "VSM Role Collision Detection").

``CollisionTable``: a VSM that sends HA frames with *our* role from another
MAC (or from our MAC with another boot id) collides with us. The table keeps,
per colliding MAC, where it was seen (``control``/``mgmt``, or ``relayed``
when the peer heard it) and the latest collision time (monotonic seconds; the
adapter converts to wall clock for display). At most ``MAX_ENTRIES`` MACs are
kept; a new MAC when the table is full overwrites the entry with the oldest
latest-collision time, and the overwrite is kept for display
(``Overwritten: <old> by <new> at <time>``). Entries and overwrite records
expire ``EXPIRY`` seconds after their last collision. The engine keeps a
second table of the same kind for the *peer's* role: VSMs it heard that are
not its partner, relayed to the partner.

``Incarnations``: which boot ids of the learnt peer MAC are the partner, a
restart of it, or a duplicate (a second VSM with the same MAC and role).
Rule, for a frame that carries a boot id ``b`` while this node is bound to a
partner boot ``c`` last heard at ``t_c``:

- ``b == c``: it passes; every boot first heard at least ``separation``
  before it is now a *duplicate* (both boots talk: interleaving).
- ``b`` a known duplicate: dropped (the collision time is refreshed).
- ``b`` proves two-way contact (its frame names *our* boot id: it heard this
  node at the partner's address, which a third VSM aimed at us never does):
  it passes, as ``c``'s successor (a restart).
- ``c`` heard within ``live_window``: ``b`` is *held* (dropped, not yet
  judged). A restart never interleaves: the old boot falls silent.
- ``c`` silent for ``live_window``: ``b`` passes (it may be ``c``'s
  successor: a restart, judged by the engine's normal flows).

The engine's window is the loss interval for the standby an active has and
the active a standby follows (alive by its own rule: a stall of the real
partner is not a restart), two heartbeat intervals for an active it is
resolving a split-brain with.

The separation keeps frames that sat in a socket queue together (a stopped
receiver) from looking interleaved. Duplicates are forgotten ``EXPIRY``
after they were last heard. Pure data: no clock, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final

MAX_ENTRIES: Final = 8
EXPIRY: Final = 3600.0  # seed: "After an hour elapses since the last collision"
MAX_BOOTS: Final = 16  # duplicate and held boot ids remembered


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
        """A collision with ``mac`` at ``now`` (a relayed one may be in the past)."""
        for i, entry in enumerate(self._entries):
            if entry.mac == mac:
                latest = max(entry.last_seen, now)
                self._entries[i] = replace(entry, last_seen=latest, ifaces=entry.ifaces | {iface})
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


class Verdict(enum.Enum):
    PASS = "pass"  # the partner, its successor, or nothing to compare with
    HELD = "held"  # a new boot while the partner still talks: not judged yet
    DUPLICATE = "duplicate"  # a boot known to interleave with the partner


@dataclass(frozen=True)
class Screened:
    verdict: Verdict
    # Boots this frame proved to be duplicates: (boot id, when last heard).
    found: tuple[tuple[int, float], ...] = ()


class Incarnations:
    """Held and duplicate boot ids of the learnt peer MAC (rule: module docstring)."""

    def __init__(self, live_window: float, separation: float) -> None:
        self.live_window = live_window
        self.separation = separation
        self._held: dict[int, tuple[float, float]] = {}  # boot -> (first, last) heard
        self._duplicates: dict[int, float] = {}  # boot -> last heard
        self._bound: int | None = None  # the partner boot the held ones were judged against

    @property
    def duplicates(self) -> dict[int, float]:
        return dict(self._duplicates)

    def screen(
        self,
        boot: int,
        partner: tuple[int, float] | None,
        now: float,
        *,
        proven: bool = False,
        live_window: float | None = None,
    ) -> Screened:
        """Judge a frame from boot ``boot``; ``partner`` is (boot, last heard) or
        None; ``proven``: the frame shows it heard this node (two-way contact);
        ``live_window``: how long the partner counts as alive after it was last
        heard, when not the default."""
        window = self.live_window if live_window is None else live_window
        if boot in self._duplicates:
            self._duplicates[boot] = now
            return Screened(Verdict.DUPLICATE)
        if partner is None:
            self._held.pop(boot, None)
            return Screened(Verdict.PASS)
        partner_boot, last = partner
        if partner_boot != self._bound:
            # A new partner: boots held against the old one prove nothing now.
            self._bound = partner_boot
            self._held.clear()
        if boot == partner_boot:
            found = tuple(
                (b, seen)
                for b, (first, seen) in self._held.items()
                if now >= first + self.separation
            )
            for b, seen in found:
                del self._held[b]
                self._remember(self._duplicates, b, seen)
            return Screened(Verdict.PASS, found)
        if now - last < window and not proven:
            first, _ = self._held.get(boot, (now, now))
            self._held.pop(boot, None)
            self._held[boot] = (first, now)
            while len(self._held) > MAX_BOOTS:
                del self._held[next(iter(self._held))]
            return Screened(Verdict.HELD)
        self._held.pop(boot, None)
        return Screened(Verdict.PASS)

    @staticmethod
    def _remember(table: dict[int, float], boot: int, seen: float) -> None:
        table[boot] = seen
        while len(table) > MAX_BOOTS:
            del table[min(table, key=table.__getitem__)]

    def expire(self, now: float) -> None:
        self._duplicates = {b: t for b, t in self._duplicates.items() if now < t + EXPIRY}
        self._held = {b: v for b, v in self._held.items() if now < v[1] + EXPIRY}
