"""Pair credentials: files private, contexts accept the pair and refuse a stranger."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest

from openvsm.credentials import (
    generate_pair_credentials,
    sync_client_context,
    sync_server_context,
)


def test_generated_files_are_private(tmp_path: Path) -> None:
    creds = generate_pair_credentials(tmp_path / "pki", hosts=["10.0.0.5"])
    for path in (creds.cert, creds.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    assert not list((tmp_path / "pki").glob(".pair-*"))  # no temporary left


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        data = await reader.read(5)
        writer.close()
        return data
    finally:
        srv.close()
        await srv.wait_closed()


def test_sync_mutual_tls_admits_the_pair_only(tmp_path: Path) -> None:
    pair = generate_pair_credentials(tmp_path / "pair")
    other = generate_pair_credentials(tmp_path / "other")
    server = sync_server_context(pair.cert, pair.key)
    assert asyncio.run(_handshake(server, sync_client_context(pair.cert, pair.key))) == b"hello"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(server, sync_client_context(other.cert, other.key)))
