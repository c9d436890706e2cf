"""``Md5Index``: the driver's md5 hashes kept from the change stream.

Theory of operation. The n1kv driver asks ``GET /kvm/config-md5-hashes``
every sync interval and compares each hash with its own: per kind, the md5
of the sorted ids concatenated (specs/n1kv-rest-api.md). md5 does not
compose, so a digest over a sorted concatenation cannot be patched when one
id is inserted in the middle; what can be kept is everything before the
digest:

- per hashed kind, the ids as a sorted list (``bisect``: O(log n) search,
  one memmove per change) and a set;
- per kind, the digest of the last request, dropped when an id of that kind
  comes or goes (a change to a body keeps its id, and keeps the digest).

So a request after no change costs O(1) (the cached digests), and the first
request after changes costs one md5 pass over the changed kinds only (about
10 ms per 100,000 port ids on this machine), never a store scan or a sort.

The index follows a store through its change log (``sync``): it remembers the
``last_seq`` it reflects and applies the ops of the changes after it, whoever
committed them: a REST write, the CLI, or replication on the standby
(``apply_replicated``). It rebuilds from the objects when it cannot follow:
at first use, when the change log no longer has the changes it needs
(``ChangeLogTrimmed``: a bulk synchronisation replaced the store, or it fell
too far behind), or when the store went back (``last_seq`` below its own) or
was replaced at the same seq (its change log emptied). Ports held in legacy
VM network bodies (the layout before ``os_port``) are indexed too, per VM
network, so the hashes are right before the layout conversion.

Not thread-safe: it belongs to the thread of its store.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Final, Protocol

from openvsm.api import n1kv
from openvsm.store.pss import Change, ChangeLogTrimmed, Op

_EMPTY: Final = hashlib.md5(b"", usedforsecurity=False).hexdigest()
REBUILD_AFTER: Final = 20_000  # more changes to catch up than this: rebuild instead


class ChangeSource(n1kv.ReadView, Protocol):
    """What the index follows: a ``Store``."""

    @property
    def last_seq(self) -> int: ...

    @property
    def first_seq(self) -> int: ...

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]: ...


class SortedIds:
    """Sorted unique ids and the md5 of their concatenation, cached."""

    __slots__ = ("_digest", "_ids", "_set")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._set = set(ids)
        self._ids = sorted(self._set)
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> None:
        if item not in self._set:
            self._set.add(item)
            bisect.insort(self._ids, item)
            self._digest = None

    def discard(self, item: str) -> None:
        if item in self._set:
            self._set.remove(item)
            del self._ids[bisect.bisect_left(self._ids, item)]
            self._digest = None

    def digest(self) -> str:
        if self._digest is None:
            if self._ids:
                data = "".join(self._ids).encode()
                self._digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            else:
                self._digest = _EMPTY
        return self._digest


class Md5Index:
    """The five md5 hashes of a store, maintained from its changes."""

    def __init__(self) -> None:
        self._ids: dict[str, SortedIds] = {kind: SortedIds() for _n, kind in n1kv.MD5_KINDS}
        self._legacy: dict[str, tuple[str, ...]] = {}  # VM network -> ports in its body
        self._legacy_refs: Counter[str] = Counter()  # port id -> legacy VM networks with it
        self._port_objects: set[str] = set()  # ids of os_port objects
        self.seq = -1  # the store's last_seq this index reflects; -1: never built
        self._log_empty = True
        self.rebuilds = 0

    def rebuild(self, store: ChangeSource) -> None:
        """Index every object of ``store`` (O(objects))."""
        seq = store.last_seq
        self._port_objects = set(store.list(n1kv.K_PORT))
        self._ids = {kind: SortedIds(store.list(kind)) for _n, kind in n1kv.MD5_KINDS[:-1]}
        self._ids[n1kv.K_PORT] = SortedIds(self._port_objects)
        self._legacy = {}
        self._legacy_refs = Counter()
        for name, body in store.list(n1kv.K_VM_NETWORK).items():
            self._set_legacy(name, tuple(n1kv.legacy_port_ids(body)))
        self.seq = seq
        self._log_empty = store.first_seq > seq
        self.rebuilds += 1

    def apply(self, seq: int, ops: Iterable[Op]) -> None:
        """The ops of change ``seq`` (the one after ``self.seq``)."""
        for op in ops:
            if op.kind == n1kv.K_PORT:
                if op.body is None:
                    self._port_objects.discard(op.key)
                else:
                    self._port_objects.add(op.key)
                self._port_presence(op.key)
                continue
            ids = self._ids.get(op.kind)
            if ids is not None:
                if op.body is None:
                    ids.discard(op.key)
                else:
                    ids.add(op.key)
            elif op.kind == n1kv.K_VM_NETWORK:
                body = op.body or {}
                self._set_legacy(op.key, tuple(n1kv.legacy_port_ids(body)))
        self.seq = seq
        self._log_empty = False

    def _set_legacy(self, vmn: str, ports: tuple[str, ...]) -> None:
        old = self._legacy.pop(vmn, ())
        if ports:
            self._legacy[vmn] = ports
        for pid in ports:
            self._legacy_refs[pid] += 1
        for pid in old:
            self._legacy_refs[pid] -= 1
            if self._legacy_refs[pid] <= 0:
                del self._legacy_refs[pid]
        for pid in {*old, *ports}:
            self._port_presence(pid)

    def _port_presence(self, pid: str) -> None:
        """A port id is hashed while an ``os_port`` or a legacy VM network has it."""
        ids = self._ids[n1kv.K_PORT]
        if pid in self._port_objects or pid in self._legacy_refs:
            ids.add(pid)
        else:
            ids.discard(pid)

    def sync(self, store: ChangeSource) -> None:
        """Catch up with ``store``: apply its new changes, or rebuild."""
        last = store.last_seq
        if last == self.seq:
            if self._log_empty or store.first_seq <= last:
                return
            self.rebuild(store)  # replaced at the same seq: its change log went
            return
        if self.seq < 0 or last < self.seq or last - self.seq > REBUILD_AFTER:
            self.rebuild(store)
            return
        try:
            changes = store.changes_since(self.seq)
        except ChangeLogTrimmed:
            self.rebuild(store)
            return
        for change in changes:
            self.apply(change.seq, change.ops)

    def hashes(self) -> dict[str, str]:
        return n1kv.consolidate({name: self._ids[kind].digest() for name, kind in n1kv.MD5_KINDS})

    def count(self, kind: str) -> int:
        return len(self._ids[kind])
