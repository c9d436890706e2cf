"""``Store.batch``: several writes in one SQLite transaction (one fsync)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvsm.store.pss import Change, Op, Store, StoreError


def change(seq: int, key: str) -> Change:
    return Change(
        seq=seq,
        time=float(seq),
        user="admin",
        source="sync",
        command=f"vlan {key}",
        ops=(Op("vlan", key, {"id": int(key), "name": "", "owner": "cli"}),),
    )


def test_batch_commits_everything_once(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as store:
        with store.batch():
            for i in range(1, 51):
                assert store.apply_replicated(change(i, str(100 + i)))
            with store.batch():  # nested: joins the outer one
                store.commit(
                    [Op("vlan", "7", {"id": 7})], user="u", source="s", command="c", time=9
                )
            assert store.last_seq == 51
        digest = store.digest()
    with Store(path) as again:
        assert again.last_seq == 51
        assert again.digest() == digest
        assert [c.seq for c in again.changes_since(49)] == [50, 51]


def test_failed_write_in_a_batch_rolls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "pss.db"
    with Store(path) as store:
        with pytest.raises(StoreError), store.batch():
            assert store.apply_replicated(change(1, "101"))
            with pytest.raises(StoreError):
                store.apply_replicated(change(3, "103"))  # gap: refused, nothing written
            assert store.apply_replicated(change(2, "102"))
            raise StoreError("the connection broke here")
        assert store.last_seq == 2
    with Store(path) as again:
        assert again.last_seq == 2
        assert set(again.list("vlan")) == {"101", "102"}
