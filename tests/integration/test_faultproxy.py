"""The fault proxy as a separate process, driven over its control socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.ipc import IpcClient, IpcUnavailable
from openvsm.lab.common import free_port
from openvsm.lab.lab import Lab

from ..unit.test_faultproxy import DEADLINE, LO, Node, Server, client, run, wait_until

pytestmark = pytest.mark.integration


def proxy_argv(control: Path, config: Path, module: str = "openvsm.lab.faultproxy") -> list[str]:
    command = ["faultproxy"] if module == "openvsm" else []
    return [
        sys.executable,
        "-m",
        module,
        *command,
        "--control",
        str(control),
        "--config",
        str(config),
    ]


@contextlib.contextmanager
def proxy_process(control: Path, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (control.parent / "proxy.log").open("ab") as log:
        proc = subprocess.Popen(
            proxy_argv(control, config),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.asynccontextmanager
async def control_client(control: Path, proc: subprocess.Popen[bytes]) -> AsyncIterator[IpcClient]:
    ipc = IpcClient(control, timeout=5.0)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                await ipc.call("links")
                break
            except IpcUnavailable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        yield ipc
    finally:
        ipc.close()


async def wait_stats(ipc: IpcClient, name: str, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        stats: dict[str, Any] = await ipc.call("stats", name=name)
        if check(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {stats}")
        await asyncio.sleep(0.01)


def test_process_mode_driven_over_the_control_socket(tmp_path: Path) -> None:
    control = tmp_path / "proxy.sock"
    config = tmp_path / "links.json"

    async def main() -> None:
        a, b, server = Node(), Node(), Server()
        try:
            await a.open()
            await b.open()
            await server.start()
            a_listen, b_listen, tcp_listen = (LO, free_port()), (LO, free_port()), (LO, free_port())
            config.write_text(
                json.dumps(
                    {
                        "udp": [
                            {
                                "name": "control",
                                "a": list(a.addr),
                                "b": list(b.addr),
                                "a_listen": list(a_listen),
                                "b_listen": list(b_listen),
                            }
                        ],
                        "tcp": [
                            {
                                "name": "sync",
                                "listen": list(tcp_listen),
                                "target": list(server.addr),
                            }
                        ],
                    }
                )
            )
            with proxy_process(control, config) as proc:
                async with control_client(control, proc) as ipc:
                    links = await ipc.call("links")
                    assert [(x["name"], x["kind"]) for x in links] == [
                        ("control", "udp"),
                        ("sync", "tcp"),
                    ]
                    # UDP both ways.
                    a.send(b"hb-a", a_listen)
                    assert await b.recv() == (b"hb-a", b_listen)
                    b.send(b"hb-b", b_listen)
                    assert await a.recv() == (b"hb-b", a_listen)
                    # One-way loss, then heal.
                    await ipc.call("drop", name="control", direction="a->b")
                    a.send(b"lost", a_listen)
                    await wait_stats(
                        ipc, "control", lambda s: s["a->b"]["dropped_packets"] == 1, "the drop"
                    )
                    b.send(b"up", b_listen)
                    assert (await a.recv())[0] == b"up"
                    assert b.inbox.empty()
                    await ipc.call("heal", name="control")
                    a.send(b"healed", a_listen)
                    assert (await b.recv())[0] == b"healed"
                    assert await ipc.call("drop_ratio", name="control", p=0.0, seed=5) == {
                        "seed": 5
                    }
                    await ipc.call("delay", name="control", seconds=0.0, direction="b->a")
                    # TCP through, then a reset from the control socket.
                    async with client(tcp_listen) as (reader, writer):
                        writer.write(b"sync")
                        await wait_until(lambda: server.conns, "the connection at the server")
                        s_reader, s_writer = server.conns[0]
                        assert await asyncio.wait_for(s_reader.readexactly(4), DEADLINE) == b"sync"
                        s_writer.write(b"ack")
                        assert await asyncio.wait_for(reader.readexactly(3), DEADLINE) == b"ack"
                        assert await ipc.call("reset", name="sync") == {"reset": 1}
                        with pytest.raises(ConnectionResetError):
                            await asyncio.wait_for(reader.read(1), DEADLINE)
                    stats = await ipc.call("stats")
                    assert stats["sync"]["resets"] == 1
                    assert stats["sync"]["a->b"]["forwarded_bytes"] == 4
                    assert stats["control"]["a->b"]["forwarded_packets"] == 2
                    with pytest.raises(Exception, match="no link"):
                        await ipc.call("drop", name="nope")
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, DEADLINE) == 0
                assert not control.exists()
        finally:
            a.close()
            b.close()
            await server.close()

    run(main())


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("{not json", b"Expecting property name"),
        ('{"tcp": [{"name": "t", "listen": "127.0.0.1:1"}]}', b"missing 'target'"),
    ],
)
def test_process_mode_rejects_a_bad_config(
    tmp_path: Path, config_text: str, message: bytes
) -> None:
    config = tmp_path / "links.json"
    config.write_text(config_text)
    done = subprocess.run(
        proxy_argv(tmp_path / "c.sock", config, module="openvsm"),
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "c.sock").exists()


def test_process_mode_fails_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((LO, 0))
        busy.listen()
        config = tmp_path / "links.json"
        target = [LO, free_port()]
        config.write_text(
            json.dumps(
                {"tcp": [{"name": "t", "listen": list(busy.getsockname()), "target": target}]}
            )
        )
        done = subprocess.run(
            proxy_argv(tmp_path / "c.sock", config),
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
    assert done.returncode == 1
    assert b"address already in use" in done.stderr.lower()


def test_the_lab_topology_through_the_proxy(tmp_path: Path) -> None:
    """Each node sends to its configured peer and hears the other from it."""
    lab = Lab(tmp_path / "lab", proxy=True, rest=False)
    try:
        lab.start_proxy()
        p, s = lab.nodes["primary"], lab.nodes["secondary"]

        async def main() -> None:
            nodes = {name: Node() for name in ("p-control", "p-mgmt", "s-control", "s-mgmt")}
            listener = Server()
            try:
                await nodes["p-control"].open(p.control[1])
                await nodes["p-mgmt"].open(p.mgmt[1])
                await nodes["s-control"].open(s.control[1])
                await nodes["s-mgmt"].open(s.mgmt[1])
                for iface, p_peer, s_peer in (
                    ("control", p.peer_control, s.peer_control),
                    ("mgmt", p.peer_mgmt, s.peer_mgmt),
                ):
                    nodes[f"p-{iface}"].send(b"from-p", p_peer)
                    assert await nodes[f"s-{iface}"].recv() == (b"from-p", s_peer)
                    nodes[f"s-{iface}"].send(b"from-s", s_peer)
                    assert await nodes[f"p-{iface}"].recv() == (b"from-s", p_peer)
                # The sync stream: the primary connects to its control peer
                # and reaches the secondary's control port.
                await listener.start(s.control[1])
                async with client(p.peer_control) as (_reader, writer):
                    writer.write(b"sync")
                    await wait_until(lambda: listener.conns, "the sync connection")
                    s_reader, _ = listener.conns[0]
                    assert await asyncio.wait_for(s_reader.readexactly(4), DEADLINE) == b"sync"
                ipc = IpcClient(lab.proxy_ctl)
                try:
                    stats = await ipc.call("stats")
                finally:
                    ipc.close()
                assert stats["control"]["a->b"]["forwarded_packets"] == 1
                assert stats["mgmt"]["b->a"]["forwarded_packets"] == 1
                assert stats["control-tcp-p2s"]["a->b"]["forwarded_bytes"] == 4
            finally:
                for node in nodes.values():
                    node.close()
                await listener.close()

        run(main())
    finally:
        lab.stop()
