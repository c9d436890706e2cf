"""``openvsm vem-sim``: N VEM protocol instances in one process, to load a VSM.

Each instance is the real ``VemCore`` with a memory backend and its own UDP
socket on 127.0.0.1 (``--base-port P`` gives P, P+1, ...; default: any free
port), so the VSM sees N distinct VEMs. One timer task serves all instances
from a heap of their deadlines (an entry is pushed whenever an instance's
deadline may have moved: after its start, each frame it receives and each
tick; an entry whose instance is not due any more when it comes up is
dropped, a newer one stands for it), so a pass costs O(due instances), not
O(N). The sockets are read by ``BatchedUdpEndpoint`` (one ``recvfrom`` per
readiness event, no transport layer per datagram).
Host UUIDs are derived from ``--name`` and the index, so a restarted
simulator comes back as the same modules. Prints a status line whenever the
counts change (at most once a second) and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import math
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from openvsm.config import ConfigError, parse_endpoint, read_secret_file
from openvsm.errors import LocalProtocolError
from openvsm.modules.udpbatch import BatchedUdpEndpoint
from openvsm.vem.agent import VemRunner
from openvsm.vem.core import VemCore
from openvsm.vem.memory import MemoryBackend
from openvsm.wire.codec import Codec
from openvsm.wire.keys import derive_host_key

TICK_S = 0.02


Addr = tuple[str, int]


def _unbound(data: bytes, addr: Addr) -> None:
    """Placeholder receiver until the instance's runner exists."""


class Simulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # --vem-key-file: each simulated host signs with its own derived key
        self.vem_key: bytes | None = args.vem_key.encode() if args.vem_key else None
        self.codec = Codec(args.domain, args.secret.encode()) if args.secret else None
        self.vsms = tuple(parse_endpoint(v, "--vsm").addr for v in args.vsm)
        self.runners: list[VemRunner] = []
        self.endpoints: list[BatchedUdpEndpoint] = []
        self.wake = asyncio.Event()
        self._due: list[tuple[float, int]] = []  # (deadline, runner index), lazily pruned

    async def start(self) -> None:
        a = self.args
        for i in range(a.count):
            host = f"{a.name}-{i + 1}"
            host_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"openvsm-sim/{a.domain}/{host}"))
            core = VemCore(
                host_uuid=host_uuid,
                host_name=host,
                host_ip=a.host_ip,
                vsms=self.vsms,
                heartbeat_interval=a.heartbeat_ms / 1000,
                headless_after=a.headless_ms / 1000,
                version="vem-sim",
            )
            port = a.base_port + i if a.base_port else 0
            endpoint = BatchedUdpEndpoint(("127.0.0.1", port), _unbound, read_batch=1)
            await endpoint.open()
            runner = VemRunner(
                core, self._codec(host_uuid), MemoryBackend(), endpoint.send, name=host
            )
            runner.wake = self.wake
            endpoint.on_datagram = self._receiver(i, runner)
            for p in range(a.ports):
                mac = f"02:5e:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:00:{p & 0xFF:02x}"
                with contextlib.suppress(LocalProtocolError):
                    core.attach_port(f"vm-{host}-{p + 1}", a.port_profile, mac)
            self.runners.append(runner)
            self.endpoints.append(endpoint)
        for i, runner in enumerate(self.runners):
            runner.backend.start()
            runner.start()
            self._push(i, runner)

    def _codec(self, host_uuid: str) -> Codec:
        if self.vem_key is not None:
            return Codec(self.args.domain, derive_host_key(self.vem_key, host_uuid).encode())
        assert self.codec is not None
        return self.codec

    def _push(self, index: int, runner: VemRunner) -> None:
        due = runner.due()
        if math.isfinite(due):
            heapq.heappush(self._due, (due, index))

    def _receiver(self, index: int, runner: VemRunner) -> Callable[[bytes, Addr], None]:
        def on_datagram(data: bytes, addr: Addr) -> None:
            runner.on_datagram(data, addr)
            self._push(index, runner)

        return on_datagram

    def stop(self) -> None:
        for ep in self.endpoints:
            ep.close()

    async def timer_loop(self) -> None:
        # Every TICK_S, the instances whose deadline passed (from the heap).
        # Deadlines set by frames are an interval away, so a pass every
        # TICK_S only adds up to TICK_S to timers, never misses them.
        # The instances due are taken off the heap first and ticked once each:
        # one still due after its tick waits for the next pass (no spinning).
        heap = self._due
        while True:
            now = time.monotonic()
            ready: set[int] = set()
            while heap and heap[0][0] <= now:
                ready.add(heapq.heappop(heap)[1])
            for i in ready:
                runner = self.runners[i]
                if runner.due() <= now:
                    runner.tick()
                    self._push(i, runner)
            await asyncio.sleep(TICK_S)

    def status_line(self) -> str:
        states = Counter(r.core.state.value for r in self.runners)
        modules = sum(1 for r in self.runners if r.core.module)
        return (
            f"vem-sim: {len(self.runners)} VEMs: "
            + ", ".join(f"{k} {states[k]}" for k in sorted(states))
            + f"; modules assigned {modules}"
        )

    async def status_loop(self) -> None:
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                print(line, flush=True)
                last = line
            await asyncio.sleep(1.0)


async def _amain(args: argparse.Namespace) -> int:
    sim = Simulator(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
    except OSError as exc:
        sim.stop()
        print(f"openvsm vem-sim: {exc}", file=sys.stderr)
        return 1
    tasks = [asyncio.create_task(sim.timer_loop()), asyncio.create_task(sim.status_loop())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sim.stop()
    print(sim.status_line(), flush=True)
    return 0


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openvsm vem-sim", description="simulate N VEMs")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--vsm", action="append", required=True, help="ip:port (repeatable)")
    parser.add_argument("--domain", type=int, required=True)
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--vem-key-file",
        help="the domain VEM key: each simulated host signs with its derived host key",
    )
    keys.add_argument(
        "--secret-file", help="one key for every simulated host (old files: the domain secret)"
    )
    parser.add_argument("--ports", type=int, default=2, help="vEth ports per VEM")
    parser.add_argument("--port-profile", default="vm-net")
    parser.add_argument("--base-port", type=int, default=0)
    parser.add_argument("--name", default="sim", help="host name prefix (and UUID seed)")
    parser.add_argument("--host-ip", default="127.0.0.1")
    parser.add_argument("--heartbeat-ms", type=int, default=1000)
    parser.add_argument("--headless-ms", type=int, default=15000)
    args = parser.parse_args(argv)
    if args.count < 1 or args.ports < 0 or not 1 <= args.domain <= 4095:
        print("openvsm vem-sim: --count >= 1, --ports >= 0, --domain 1-4095", file=sys.stderr)
        return 2
    try:
        for v in args.vsm:
            parse_endpoint(v, "--vsm")
        args.secret = args.vem_key = None  # files only, never argv (ps shows it)
        if args.secret_file:
            args.secret = read_secret_file(Path(args.secret_file), "--secret-file")
        else:
            args.vem_key = read_secret_file(Path(args.vem_key_file), "--vem-key-file")
    except ConfigError as exc:
        print(f"openvsm vem-sim: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
