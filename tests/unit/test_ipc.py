"""Local IPC: a reply always answers the request it is read for.

A caller that is cancelled after sending its request (vemmgr's activation
task is cancelled when a newer epoch arrives) must not leave the reply on
the connection for the next call to read: the fault campaign saw vemmgr load
the VLAN list as its module table that way and renumber every VEM.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from openvsm.ipc import IpcClient, IpcServer, encode_frame, read_frame


async def _serve(path: Path) -> IpcServer:
    async def handler(op: str, args: dict[str, Any]) -> Any:
        if op == "slow":
            await asyncio.sleep(0.2)
        return {"op": op, "n": args.get("n")}

    server = IpcServer(path, handler)
    await server.start()
    return server


def test_a_cancelled_call_does_not_leave_its_reply_for_the_next(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await _serve(tmp_path / "svc.sock")
        client = IpcClient(tmp_path / "svc.sock", timeout=5.0)
        try:
            task = asyncio.create_task(client.call("slow", n=1))
            await asyncio.sleep(0.05)  # the request is in the server's hands
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for n in range(2, 5):
                assert await client.call("fast", n=n) == {"op": "fast", "n": n}
            await asyncio.sleep(0.3)  # the slow reply has come by now
            assert await client.call("fast", n=5) == {"op": "fast", "n": 5}
        finally:
            client.close()
            await server.stop()

    asyncio.run(scenario())


def test_a_stale_reply_on_the_connection_is_skipped(tmp_path: Path) -> None:
    # Defence in depth: replies carry the request id and an older one is skipped.
    async def scenario() -> None:
        path = tmp_path / "svc.sock"
        done = asyncio.Event()

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                req = await read_frame(reader)
                writer.write(encode_frame({"ok": True, "result": "stale", "id": req["id"] - 1}))
                writer.write(encode_frame({"ok": True, "result": "fresh", "id": req["id"]}))
                await writer.drain()
                await reader.read()  # until the client closes
            finally:
                writer.close()
                await writer.wait_closed()
                done.set()

        server = await asyncio.start_unix_server(on_conn, path=str(path))
        client = IpcClient(path, timeout=5.0)
        try:
            assert await client.call("x") == "fresh"
            assert client.stale_replies == 1
        finally:
            client.close()
            await asyncio.wait_for(done.wait(), 5.0)
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_peer_credentials_come_from_the_kernel_not_the_client(tmp_path: Path) -> None:
    import os

    async def go() -> tuple[Any, Any]:
        async def handler(op: str, args: dict[str, Any]) -> Any:
            return args

        with_peer = IpcServer(tmp_path / "a.sock", handler, peer_credentials=True)
        plain = IpcServer(tmp_path / "b.sock", handler)
        await with_peer.start()
        await plain.start()
        a, b = IpcClient(tmp_path / "a.sock"), IpcClient(tmp_path / "b.sock")
        try:
            forged = {"pid": 1, "uid": 0, "gid": 0}
            return await a.call("x", _peer=forged), await b.call("x", n=1)
        finally:
            a.close()
            b.close()
            await with_peer.stop()
            await plain.stop()

    told, untouched = asyncio.run(go())
    assert told["_peer"] == {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}
    assert untouched == {"n": 1}  # other servers see exactly what was sent
