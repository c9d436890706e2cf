"""The md5 index follows a real store: its own commits, the CLI's, replicated
changes on a standby, bulk synchronisation, and the legacy port layout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from openvsm.api import n1kv
from openvsm.api.backend import StoreRestBackend
from openvsm.api.digests import Md5Index
from openvsm.store.pss import Op, Store
from tests.unit.test_api_harness import POLICY_WEB_ID, cli_profile


def commit(store: Store, *ops: Op) -> None:
    store.commit(ops, user="u", source="cli", command="c", time=1.0)


def port_op(pid: str, vmn: str = "vmn_x") -> Op:
    return Op(n1kv.K_PORT, pid, {"id": pid, "vmNetwork": vmn, "owner": n1kv.OWNER})


def test_index_follows_commits_replication_and_bulk_sync(tmp_path: Path) -> None:
    active, standby = Store(tmp_path / "a.db"), Store(tmp_path / "s.db")
    try:
        index, standby_index = Md5Index(), Md5Index()
        assert index.hashes() == n1kv.md5_hashes(active)  # empty store: md5 of nothing
        commit(active, Op(n1kv.K_NETWORK, "n1", {"id": "n1"}), port_op("p2"), port_op("p1"))
        commit(active, port_op("p3"), Op(n1kv.K_IP_POOL, "s1", {"id": "s1"}))
        for change in active.changes_since(0):
            standby.apply_replicated(change)
        for ix, store in ((index, active), (standby_index, standby)):
            ix.sync(store)
            assert ix.hashes() == n1kv.md5_hashes(store)
        assert index.rebuilds == standby_index.rebuilds == 1
        # Later changes are applied from the change log, not rebuilt.
        commit(active, Op(n1kv.K_PORT, "p1", None), Op(n1kv.K_NETWORK, "n2", {"id": "n2"}))
        standby.apply_replicated(active.changes_since(2)[0])
        for ix, store in ((index, active), (standby_index, standby)):
            ix.sync(store)
            assert ix.hashes() == n1kv.md5_hashes(store)
            assert ix.rebuilds == 1 and ix.count(n1kv.K_PORT) == 2
        # A body change keeps the id and the cached digest.
        before = index.hashes()
        commit(active, Op(n1kv.K_PORT, "p2", {"id": "p2", "vmNetwork": "other"}))
        index.sync(active)
        assert index.hashes() == before
        # Bulk synchronisation replaces the standby's store at the same seq:
        # its change log empties and the index notices.
        other = Store(tmp_path / "o.db")
        try:
            for pid in ("z1", "z2", "z3"):  # three changes: seq 3, like the standby
                commit(other, port_op(pid))
            snap = other.snapshot()
        finally:
            other.close()
        standby.load_snapshot(snap)
        assert standby.last_seq == standby_index.seq
        standby_index.sync(standby)
        assert standby_index.hashes() == n1kv.md5_hashes(standby)
        assert standby_index.count(n1kv.K_PORT) == 3 and standby_index.rebuilds == 2
    finally:
        active.close()
        standby.close()


def test_index_rebuilds_when_the_change_log_is_trimmed(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db", max_changes=5)
    try:
        index = Md5Index()
        commit(store, port_op("a"))
        index.sync(store)
        for i in range(12):
            commit(store, port_op(f"p{i:02d}"))
        assert store.first_seq > index.seq + 1
        index.sync(store)
        assert index.rebuilds == 2 and index.hashes() == n1kv.md5_hashes(store)
    finally:
        store.close()


def legacy_vmn(ports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "vmn_x",
        "networkSegment": "n1",
        "networkSegmentId": "n1",
        "portProfile": "web",
        "portProfileId": POLICY_WEB_ID,
        "dynamicPortProfile": "web_100",
        "tenantId": "t",
        "ports": ports,
        "owner": n1kv.OWNER,
    }


def test_legacy_layout_is_read_then_converted_before_the_first_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    try:
        legacy = {
            "a": {"macAddress": "fa:16:3e:00:00:01", "tenantId": "t"},
            "b": {"macAddress": "fa:16:3e:00:00:02", "tenantId": "t"},
        }
        commit(
            store,
            Op("port_profile", "web", cli_profile("web", POLICY_WEB_ID)),
            Op(n1kv.K_VM_NETWORK, "vmn_x", legacy_vmn(legacy)),
        )
        backend = StoreRestBackend(store)
        hashes = backend.md5_hashes()
        assert hashes["port_md5"] == n1kv.md5_of_ids(["a", "b"])
        assert n1kv.list_vm_networks(store)["vmn_x"]["properties"]["portId"] == "a,b"
        assert "ports" not in n1kv.list_vm_networks(store)["vmn_x"]["properties"]
        asyncio.run(backend.prepare_write())
        vmn = store.get(n1kv.K_VM_NETWORK, "vmn_x")
        assert vmn is not None and "ports" not in vmn and vmn["portCount"] == 2
        assert sorted(store.list(n1kv.K_PORT)) == ["a", "b"]
        assert backend.md5_hashes() == hashes == n1kv.md5_hashes(store)
        assert n1kv.port_count(store) == 2
        # The converted layout behaves: the last port's delete takes the VM network.
        for pid in ("a", "b"):
            out = n1kv.delete_port(store, "vmn_x", pid)
            commit(store, *out.ops)
        assert store.list(n1kv.K_VM_NETWORK) == {} and store.list(n1kv.K_PORT) == {}
        asyncio.run(backend.prepare_write())  # nothing left to convert: no change
        assert backend.md5_hashes() == n1kv.md5_hashes(store)
    finally:
        store.close()
