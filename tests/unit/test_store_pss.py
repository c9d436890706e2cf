"""PSS: change log, replication apply, snapshots, accounting, facts, schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from openvsm.store.pss import (
    APPLICATION_ID,
    SCHEMA_V1,
    SCHEMA_VERSION,
    Change,
    ChangeLogTrimmed,
    Op,
    Store,
    StoreError,
)


def vlan(n: int, name: str = "", owner: str = "cli") -> Op:
    return Op("vlan", str(n), {"id": n, "name": name, "owner": owner})


def commit(store: Store, *ops: Op, t: float = 1000.0, command: str = "cmd") -> Change:
    return store.commit(ops, user="admin", source="cli", command=command, time=t)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pss.db")
    yield s
    s.close()


def test_commit_get_list_delete(store: Store) -> None:
    assert store.last_seq == 0
    c1 = commit(store, vlan(10, "web"), vlan(20))
    assert (c1.seq, store.last_seq) == (1, 1)
    assert store.get("vlan", "10") == {"id": 10, "name": "web", "owner": "cli"}
    assert list(store.list("vlan")) == ["10", "20"]
    c2 = commit(store, Op("vlan", "10", None))
    assert c2.seq == 2
    assert store.get("vlan", "10") is None
    assert store.list("nothing") == {}


def test_change_log_order_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as s:
        for i in range(1, 51):
            commit(s, vlan(i), t=1000.0 + i, command=f"vlan {i}")
        assert s.get_fact("last_config_time") == 1050.0
    with Store(path) as s:
        assert s.last_seq == 50
        changes = s.changes_since(40)
        assert [c.seq for c in changes] == list(range(41, 51))
        assert changes[0].command == "vlan 41"
        assert changes[0].ops == (vlan(41),)
        assert [c.seq for c in s.changes_since(0, limit=3)] == [1, 2, 3]
        assert s.changes_since(50) == []
        assert [c.seq for c in s.changes_after_time(1048.0)] == [49, 50]


def test_commit_is_all_or_nothing(store: Store) -> None:
    commit(store, vlan(1))
    with pytest.raises(StoreError):
        store.commit(
            [vlan(2), Op("vlan", "3", {"bad": object()})],
            user="u",
            source="cli",
            command="x",
            time=1.0,
        )
    assert store.last_seq == 1
    assert store.get("vlan", "2") is None
    assert [e.command for e in store.accounting_log()] == ["cmd"]


def test_body_is_normalised_to_json(store: Store) -> None:
    c = commit(store, Op("port_profile", "p", {"allowed_vlans": (1, 2)}))
    assert c.ops[0].body == {"allowed_vlans": [1, 2]}
    assert store.get("port_profile", "p") == {"allowed_vlans": [1, 2]}


def test_apply_replicated_in_order_and_idempotent(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as active, Store(tmp_path / "s.db") as standby:
        changes = [commit(active, vlan(i), t=float(i)) for i in range(1, 6)]
        assert standby.apply_replicated(changes[0]) is True
        assert standby.apply_replicated(changes[1]) is True
        # re-sent after a reconnect: applied once
        assert standby.apply_replicated(changes[0]) is False
        assert standby.apply_replicated(changes[1]) is False
        with pytest.raises(StoreError, match="does not follow"):
            standby.apply_replicated(changes[3])
        assert standby.last_seq == 2
        for c in changes[2:]:
            assert standby.apply_replicated(c) is True
        assert standby.digest() == active.digest()
        assert standby.changes_since(0) == active.changes_since(0)
        assert standby.accounting_log() == active.accounting_log()
        assert standby.get_fact("last_config_time") == 5.0


def test_snapshot_plus_tail_equals_active(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as active, Store(tmp_path / "s.db") as standby:
        for i in range(1, 21):
            commit(active, vlan(i), t=float(i))
        commit(active, Op("vlan", "5", None))
        active.account(user="bob", command="vlan 0", result="FAILURE", time=30.0)
        standby.account(user="eve", command="local thing", result="FAILURE", time=1.0)
        commit(standby, vlan(999))  # stale state the snapshot replaces
        snap = active.snapshot()
        assert snap.last_seq == 21
        assert all(e.result == "SUCCESS" for e in snap.accounting)
        for i in range(21, 26):
            commit(active, vlan(i, "tail"), t=100.0 + i)
        standby.load_snapshot(snap)
        assert standby.last_seq == 21
        assert standby.get("vlan", "999") is None
        for c in active.changes_since(standby.last_seq):
            assert standby.apply_replicated(c)
        assert standby.digest() == active.digest()
        assert standby.last_seq == active.last_seq
        log = [e.command for e in standby.accounting_log()]
        assert "local thing" in log and "vlan 0" not in log


def test_digest_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        commit(a, vlan(1), vlan(2))
        commit(b, vlan(2))
        commit(b, vlan(1))
        assert a.digest() == b.digest()
        commit(b, vlan(1, "x"))
        assert a.digest() != b.digest()


def test_change_log_trim(tmp_path: Path) -> None:
    with Store(tmp_path / "pss.db", max_changes=10) as s:
        for i in range(1, 46):
            commit(s, vlan(i))
        assert s.first_seq > 1
        assert s.changes_since(44)[0].seq == 45
        with pytest.raises(ChangeLogTrimmed):
            s.changes_since(0)
        assert [c.seq for c in s.changes_since(s.first_seq - 1)][-1] == 45
        assert len(s.accounting_log(limit=1000)) <= 20


def test_accounting_log(store: Store) -> None:
    commit(store, vlan(1), t=10.0, command="configure terminal ; vlan 1")
    store.account(user="bob", command="vlan 0", result="FAILURE", time=11.0)
    log = store.accounting_log()
    assert [(e.user, e.command, e.result, e.seq) for e in log] == [
        ("admin", "configure terminal ; vlan 1", "SUCCESS", 1),
        ("bob", "vlan 0", "FAILURE", 0),
    ]
    assert [e.command for e in store.accounting_log(limit=1)] == ["vlan 0"]


def test_facts(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as s:
        assert s.get_fact("epoch") is None
        s.set_fact("epoch", 7)
        s.set_fact("peer_macs", {"control": "00:50:56:00:00:01"})
        s.set_fact("gone", 1)
        s.set_fact("gone", None)
    with Store(path) as s:
        assert s.get_fact("epoch") == 7
        assert s.get_fact("peer_macs") == {"control": "00:50:56:00:00:01"}
        assert "gone" not in s.facts()


def test_durability_pragmas(store: Store) -> None:
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


# --- schema --------------------------------------------------------------------


def make_v1(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.executescript(SCHEMA_V1)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute(
        "INSERT INTO objects VALUES ('port_profile', 'web', "
        '\'{"owner": "openstack", "name": "web"}\')'
    )
    db.execute("INSERT INTO objects VALUES ('vlan', '10', '{\"id\": 10}')")
    db.execute(
        "INSERT INTO changes VALUES (1, 5.0, 'admin', 'cli', 'vlan 10', ?)",
        (msgspec.msgpack.encode([vlan(10)]),),
    )
    db.execute(
        "INSERT INTO accounting (time, user, command, result, seq) "
        "VALUES (5.0, 'admin', 'vlan 10', 'SUCCESS', 1)"
    )
    db.execute("INSERT INTO accounting (time, user, command, result) VALUES (6, 'x', 'y', 'FAIL')")
    db.commit()
    db.close()


def test_migrates_v1(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    make_v1(path)
    with Store(path) as s:
        assert s.schema_version == 2
        assert s.last_seq == 1
        assert s.get("port_profile", "web") == {"owner": "openstack", "name": "web"}
        owners = dict(s._db.execute("SELECT key, owner FROM objects").fetchall())
        assert owners == {"web": "openstack", "10": ""}
        assert s.changes_since(0)[0].epoch == 0
        assert [e.seq for e in s.snapshot().accounting] == [1]
        commit(s, vlan(11))
        assert s.last_seq == 2
    with Store(tmp_path / "fresh.db") as fresh:
        fresh.commit(
            [
                Op("port_profile", "web", {"name": "web", "owner": "openstack"}),
                Op("vlan", "10", {"id": 10}),
                vlan(11),
            ],
            user="a",
            source="cli",
            command="c",
            time=1.0,
        )
        with Store(path) as s:
            assert s.digest() == fresh.digest()


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store(path)
    # refused, not reinitialised
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 99
    db.close()


def test_refuses_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="refusing"):
        Store(path)
    assert path.read_bytes().startswith(b"this is not")


def test_refuses_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as s:
        for i in range(1, 300):
            commit(s, vlan(i, "x" * 200))
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="refusing"):
        Store(path)


def test_refuses_corrupted_pages(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as s:
        for i in range(1, 300):
            commit(s, vlan(i, "x" * 200))
    data = bytearray(path.read_bytes())
    for off in range(4096 + 100, len(data), 4096):  # scribble over every page but the first
        data[off : off + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="refusing"):
        Store(path)


def test_refuses_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not an openvsm store"):
        Store(path)


def test_module_bookkeeping_is_not_configuration(tmp_path: Path) -> None:
    # Split-brain rule 2 compares the time of the last *configuration*: a VEM
    # attaching (vemmgr's module commit) must not make a VSM look configured later.
    module = Op("module", "h1", {"module": 3, "host_uuid": "h1", "status": "ok"})
    with Store(tmp_path / "a.db") as active, Store(tmp_path / "s.db") as standby:
        configured = commit(active, vlan(10), t=100.0)
        attached = active.commit([module], user="vemmgr", source="vemmgr", command="x", time=200.0)
        assert active.get_fact("last_config_time") == 100.0
        for change in (configured, attached):
            standby.apply_replicated(change)
        assert standby.get_fact("last_config_time") == 100.0
        commit(active, vlan(11), t=300.0)
        assert active.get_fact("last_config_time") == 300.0


@pytest.mark.parametrize("size", [0, 100])
def test_empty_or_truncated_file_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "pss.db"
    path.write_bytes(b"SQLite format 3\x00".ljust(size, b"\x00")[:size])
    with pytest.raises(StoreError, match="empty or truncated"):
        Store(path)
    assert path.stat().st_size == size  # left as it was for the operator


def test_local_accounting_has_its_own_trim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvsm.store.pss as pss

    monkeypatch.setattr(pss, "MAX_LOCAL_ACCOUNTING", 150)
    with Store(tmp_path / "pss.db") as s:
        commit(s, vlan(1), t=1.0, command="vlan 1")
        for i in range(1000):
            s.account(user="eve", command=f"login {i}", result="FAILURE", time=2.0)
        log = s.accounting_log(limit=5000)
    local = [e for e in log if e.seq == 0]
    assert 150 <= len(local) < 150 + 100
    assert local[-1].command == "login 999"
    assert log[0].seq == 1  # the replicated entry of the change is kept
