"""The store's writer thread: group commit off the event loop.

Theory of operation: the loop ``prepare``s changes in its ``Store`` (seq
assigned, in flight) and ``enqueue``s them here with the current
*generation*. The thread takes everything queued at once and commits it in
one SQLite transaction on its own connection (WAL, ``synchronous=FULL``;
``write_group``: one ``executemany`` per statement for the whole group):
one fsync for the whole group, while the loop goes on (sending the same
changes to the standby: pipelined). It then calls ``on_done(first, last,
generation, error)`` on the loop, in order (one ``call_soon_threadsafe``
wake-up for every group done since the loop last ran).

A failed group (disk full, I/O error) is rolled back whole; every later
change of the same generation is then dropped unwritten (it would leave a
gap in the change log) until the loop, told of the failure, abandons those
changes (``Store.abandon``) and starts a new generation (``restart``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from openvsm.store.pss import DEFAULT_MAX_CHANGES, Change, write_group

log = logging.getLogger(__name__)

# (first seq, last seq, generation, error or None)
DoneCallback = Callable[[int, int, int, BaseException | None], None]


class StoreWriter:
    """One thread committing groups of prepared changes (module docstring)."""

    def __init__(
        self,
        path: Path,
        on_done: DoneCallback,
        *,
        loop: asyncio.AbstractEventLoop,
        max_changes: int = DEFAULT_MAX_CHANGES,
    ) -> None:
        self.path = path
        self.max_changes = max_changes
        self.generation = 0
        self.groups = 0
        self.changes = 0
        self.largest_group = 0
        self._on_done = on_done
        self._loop = loop
        self._queue: list[tuple[Change, int]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._failed_generation = -1
        self._done: list[tuple[int, int, int, BaseException | None]] = []  # for the loop
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def enqueue(self, change: Change) -> None:
        with self._cond:
            self._queue.append((change, self.generation))
            self._cond.notify()

    def restart(self) -> int:
        """The loop abandoned the failed generation's changes: a new one starts."""
        with self._cond:
            self.generation += 1
            return self.generation

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(30.0)

    def status(self) -> dict[str, int]:
        return {
            "groups": self.groups,
            "changes": self.changes,
            "largest_group": self.largest_group,
            "generation": self.generation,
        }

    # --- the thread ---

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=FULL")
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    group, self._queue = self._queue, []
                    closing = self._closing
                group = [(c, g) for c, g in group if g > self._failed_generation]
                if group:
                    self._commit(db, group)
                if closing and not group:
                    return
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, group: list[tuple[Change, int]]) -> None:
        changes = [c for c, _ in group]
        generation = group[-1][1]
        error: BaseException | None = None
        try:
            db.execute("BEGIN IMMEDIATE")
            write_group(db, changes, self.max_changes)  # executemany per statement
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            error = exc
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._failed_generation = max(g for _, g in group)
        self.groups += 1
        self.changes += len(changes)
        self.largest_group = max(self.largest_group, len(changes))
        with self._cond:
            wake = not self._done  # one wake-up of the loop for any number of groups
            self._done.append((changes[0].seq, changes[-1].seq, generation, error))
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """On the loop: report every group done since the last wake-up, in order."""
        with self._cond:
            done, self._done = self._done, []
        for first, last, generation, error in done:
            try:
                self._on_done(first, last, generation, error)
            except Exception:
                log.exception("store writer: on_done failed for changes %d-%d", first, last)
