"""The store's writer thread: groups, order, and a failed group (real SQLite, no sleeps)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from openvsm.store import pss
from openvsm.store.pss import Change, Op, Store
from openvsm.store.writer import StoreWriter

Done = tuple[int, int, int, BaseException | None]


def prepare(store: Store, n: int) -> Change:
    return store.prepare(
        [Op("vlan", str(n), {"id": n, "name": f"v{n}", "owner": "cli"})],
        user="admin",
        source="cli",
        command=f"vlan {n}",
        time=1_700_000_000.0 + n,
    )


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.001)


def test_groups_commit_in_order_and_reads_see_them(tmp_path: Path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "pss.db")
        done: list[Done] = []
        writer = StoreWriter(store.path, lambda *d: done.append(d), loop=asyncio.get_running_loop())
        try:
            changes = [prepare(store, n) for n in range(1, 201)]
            assert store.head_seq == 200 and store.last_seq == 0
            # In flight: a tail already includes them (pipelined sync sender).
            assert [c.seq for c in store.changes_since(0)] == list(range(1, 201))
            for c in changes:
                writer.enqueue(c)
            await until(lambda: bool(done) and done[-1][1] == 200)
            assert all(err is None for *_, err in done)
            firsts = [d[0] for d in done]
            assert firsts == sorted(firsts) and len(done) == writer.groups
            assert writer.groups < 200  # grouped: fewer transactions than changes
            store.durable(200)
            assert store.in_flight == 0 and store.last_seq == 200
            assert store.get("vlan", "200") == {"id": 200, "name": "v200", "owner": "cli"}
            assert store.snapshot().last_seq == 200
        finally:
            writer.close()
            store.close()

    asyncio.run(main())


def test_a_failed_group_drops_the_rest_of_its_generation(tmp_path: Path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "pss.db")
        done: list[Done] = []
        writer = StoreWriter(store.path, lambda *d: done.append(d), loop=asyncio.get_running_loop())
        try:
            # Another writer took seq 1 in the file: the group holding 1 fails.
            other = sqlite3.connect(store.path, isolation_level=None)
            other.execute(
                "INSERT INTO changes (seq, time, user, source, command, ops, epoch)"
                " VALUES (1, 0, '', '', '', x'', 0)"
            )
            other.close()
            first = prepare(store, 1)
            writer.enqueue(first)
            await until(lambda: bool(done))
            assert done[0][:3] == (1, 1, 0) and isinstance(done[0][3], sqlite3.Error)
            later = prepare(store, 2)  # same generation: never written (no gap)
            writer.enqueue(later)
            store.abandon(1)
            assert store.head_seq == 0 and store.in_flight == 0
            generation = writer.restart()
            sqlite3.connect(store.path, isolation_level=None).execute(
                "DELETE FROM changes WHERE seq = 1"
            ).connection.close()
            again = prepare(store, 3)
            assert again.seq == 1
            writer.enqueue(again)
            await until(lambda: len(done) == 2)
            assert done[1] == (1, 1, generation, None)
            assert store.get("vlan", "2") is None and store.get("vlan", "3") is not None
        finally:
            writer.close()
            store.close()

    asyncio.run(main())


def _rows(path: Path) -> list[list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    try:
        out: list[list[tuple[object, ...]]] = []
        for table, order in (
            ("objects", "kind, key"),
            ("changes", "seq"),
            ("accounting", "id"),
            ("meta", "name"),
            ("facts", "name"),
        ):
            out.append(db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall())
        return out
    finally:
        db.close()


def test_write_group_writes_the_rows_of_one_change_at_a_time(tmp_path: Path) -> None:
    """The writer's executemany group write equals write_ops + append_change per
    change: puts and deletes of one key in order, the last config time of a
    group ending in a state change, and trims inside a group (max_changes 7)."""
    changes = []
    for n in range(1, 41):
        ops = [Op("vlan", str(n % 5), {"id": n, "owner": "cli"})]
        if n % 3 == 0:
            ops += [Op("vlan", str(n % 5), None), Op("vlan", "x", {"n": n, "owner": "cli"})]
        source = "vemmgr" if n % 4 == 0 else "cli"
        changes.append(Change(n, 1000.0 + n, "admin", source, f"c{n}", tuple(ops)))
    one, grouped = tmp_path / "one.db", tmp_path / "grouped.db"
    for path in (one, grouped):
        Store(path, max_changes=7).close()
    db = sqlite3.connect(one, isolation_level=None)
    for c in changes:
        db.execute("BEGIN")
        pss.write_ops(db, c.ops)
        pss.append_change(db, c, 7)
        db.execute("COMMIT")
    db.close()
    db = sqlite3.connect(grouped, isolation_level=None)
    for lo, hi in ((0, 1), (1, 12), (12, 36), (36, 40)):
        db.execute("BEGIN")
        pss.write_group(db, changes[lo:hi], 7)
        db.execute("COMMIT")
    db.close()
    assert _rows(grouped) == _rows(one)
    assert len(_rows(one)[1]) < len(changes)  # the change log was trimmed
