"""Typed IPC contracts (openvsm.contracts): a request is a Struct sent with
``IpcClient.ask`` and decoded by the server with ``decode_args``; arguments of
another shape are refused with a clear error and counted, never a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from openvsm.config import node_config_from_dict
from openvsm.contracts import hamgr as api
from openvsm.contracts.base import Ok
from openvsm.contracts.hamgr import HaStatus
from openvsm.identity import resolve_identity
from openvsm.ipc import IpcBadArgs, IpcClient, IpcError, IpcServer, decode_args
from openvsm.redundancy.hamgr import Hamgr
from tests.unit.nodedoc import NODE_DOC


def test_ask_sends_the_struct_and_decodes_the_reply(tmp_path: Path) -> None:
    seen: list[api.SyncState] = []

    async def handler(op: str, args: dict[str, Any]) -> Any:
        if op == api.SyncState.op:
            seen.append(decode_args(args, api.SyncState))
            return Ok()
        if op == api.Status.op:
            return HaStatus(state="active", epoch=3, peer_lost=True, boot_id=7)
        return {"state": 5}  # a reply of another shape

    async def scenario() -> None:
        server = IpcServer(tmp_path / "h.sock", handler)
        await server.start()
        client = IpcClient(tmp_path / "h.sock", timeout=5.0)
        try:
            assert await client.ask(api.SyncState(state="hot")) == Ok()
            status = await client.ask(api.Status())
            assert (status.state, status.epoch, status.peer_lost, status.boot_id) == (
                "active",
                3,
                True,
                7,
            )
            with pytest.raises(IpcError, match="malformed reply to other: Expected `str`"):
                await client.ask(_BadStatus())
            # Unknown and missing fields, wrong types: a clear error, counted.
            bad = r"bad arguments to sync_state.*unknown field `hott`"
            with pytest.raises(IpcError, match=bad):
                await client.call("sync_state", state="hot", hott=True)
            with pytest.raises(IpcError, match="missing required field `state`"):
                await client.call("sync_state")
            with pytest.raises(IpcError, match="Expected `bool`"):
                await client.call("sync_state", state="hot", out_of_sync="yes")
            assert server.counters["bad_args"] == 3
            assert server.counters["handler_errors"] == 0
            assert seen == [api.SyncState(state="hot")]
        finally:
            client.close()
            await server.stop()

    asyncio.run(scenario())


class _BadStatus(api.Status, frozen=True, kw_only=True):
    op = "other"  # answered with {"state": 5}: not an HaStatus


def _hamgr(tmp_path: Path) -> Hamgr:
    cfg = node_config_from_dict(NODE_DOC, base=tmp_path)
    cfg.run_dir.mkdir(parents=True)
    cfg.data_dir.mkdir(parents=True)
    return Hamgr(resolve_identity(cfg))


def test_hamgr_status_is_the_documented_struct(tmp_path: Path) -> None:
    h = _hamgr(tmp_path)
    h.peer_lost = True
    status = asyncio.run(h._handle("status", {}))
    assert isinstance(status, HaStatus)
    assert status.peer_lost and status.boot_id == h.engine.config.boot_id
    wire = msgspec.to_builtins(status)
    assert set(wire) == set(HaStatus.__struct_fields__)
    assert msgspec.convert(wire, HaStatus) == status  # the subscribers' decoding


def test_hamgr_decodes_its_requests(tmp_path: Path) -> None:
    h = _hamgr(tmp_path)

    async def scenario() -> None:
        assert await h._handle("set_facts", {"module_count": 4}) == Ok()
        assert await h._handle("set_module_count", {"count": 2}) == Ok()
        for op, args in (
            ("set_module_count", {"cnt": 2}),
            ("set_module_count", {}),
            ("set_facts", {"module_count": "many"}),
            ("sync_state", {"state": "lukewarm"}),
            ("sync_reset", {"reason": "rst", "hot": True, "extra": 1}),
            ("metrics", {"recent": 1}),
            ("activeactive", {}),
        ):
            with pytest.raises(IpcBadArgs, match=f"bad arguments to {op}"):
                await h._handle(op, args)

    asyncio.run(scenario())
    assert h.module_count == 2
    assert h.ha_status().module_count == 2
