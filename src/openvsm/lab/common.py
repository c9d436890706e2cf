"""What every lab shares: its error, free ports, polling with a deadline,
IPC calls and process-group signals (``lab.lab``, ``lab.netns``, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openvsm.ipc import IpcClient


class LabError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise LabError("no free port")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``cond`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise LabError(f"timed out after {timeout:.1f} s waiting for {what}{extra}")
        time.sleep(interval)


def ipc_call(sock: Path, op: str, timeout: float = 10.0, **args: Any) -> Any:
    async def _call() -> Any:
        client = IpcClient(sock, timeout=timeout)
        try:
            return await client.call(op, **args)
        finally:
            client.close()

    return asyncio.run(_call())


def signal_group(proc: subprocess.Popen[bytes] | None, sig: int) -> bool:
    """Signal a process group; for SIGKILL/SIGTERM wait until it is gone (SIGKILL
    after 10 s) and return True: the process is stopped and reaped."""
    if proc is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    if sig not in (signal.SIGKILL, signal.SIGTERM):
        return False
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    # The group may still hold children that outlived their parent for a moment.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return True
