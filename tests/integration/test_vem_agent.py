"""The real ``openvsm vem`` process against a tiny in-test VSM over UDP on loopback.

The stand-in VSM speaks the protocol with the real codec: it accepts the
attach, pushes a configuration, heartbeats, and records what the VEM sends.
``openvsm vem-ctl`` attaches a port; the VEM reports it to the VSM and
programs its (memory) datapath. Every process and directory is cleaned up,
also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from openvsm.lab.common import signal_group
from openvsm.vem.model import PortProfileConfig, VemConfigSnapshot
from openvsm.wire.codec import Codec, Frame
from openvsm.wire.messages import (
    Message,
    SenderRole,
    VemAttach,
    VemAttachAck,
    VemHeartbeat,
    VemPortEvent,
)

pytestmark = pytest.mark.integration

DOMAIN = 321
SECRET = "integration-secret"
VSM_MAC = "02:00:00:00:03:21"
SNAPSHOT = VemConfigSnapshot(
    config_seq=1,
    vlans=(10,),
    port_profiles=(PortProfileConfig(name="vm-net", access_vlan=10),),
)


class StandInVsm:
    """An active VSM reduced to what a VEM needs: ack, heartbeats, a record."""

    def __init__(self) -> None:
        self.codec = Codec(DOMAIN, SECRET.encode())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.received: list[Frame] = []
        self.vem_addr: tuple[str, int] | None = None
        self.heartbeats = True
        self.answering = True
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def send(self, msg: Message, addr: tuple[str, int]) -> None:
        self._seq += 1
        data = self.codec.encode(msg, role=SenderRole.PRIMARY, mac=VSM_MAC, epoch=1, seq=self._seq)
        self.sock.sendto(data, addr)

    def messages(self, kind: type[Any]) -> list[Any]:
        with self._lock:
            return [f.msg for f in self.received if isinstance(f.msg, kind)]

    def _run(self) -> None:
        next_hb = time.monotonic()
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                data, addr = b"", None
            except OSError:
                return
            if data and addr is not None and self.answering:
                frame = self.codec.decode(data)
                if isinstance(frame, Frame):
                    with self._lock:
                        self.received.append(frame)
                    if isinstance(frame.msg, VemAttach):
                        self.vem_addr = (str(addr[0]), int(addr[1]))
                        self.send(
                            VemAttachAck(
                                host_uuid=frame.msg.host_uuid,
                                accepted=True,
                                module=3,
                                config=msgspec.msgpack.encode(SNAPSHOT),
                                config_seq=1,
                                nonce=frame.msg.nonce,  # the VEM takes only an echo
                            ),
                            self.vem_addr,
                        )
            if self.vem_addr and self.heartbeats and time.monotonic() >= next_hb:
                next_hb = time.monotonic() + 0.1
                self.send(VemHeartbeat(host_uuid="", module=3, config_seq=1), self.vem_addr)


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the thing is up
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def openvsm(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openvsm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def vem_host() -> Iterator[tuple[StandInVsm, Path, subprocess.Popen[bytes]]]:
    root = Path(tempfile.mkdtemp(prefix="ovvem"))
    vsm = StandInVsm()
    proc: subprocess.Popen[bytes] | None = None
    try:
        vsm.start()
        config = root / "vem.toml"
        config.write_text(
            f"""[vem]
host_uuid = "6f1c1d2e-0000-4000-8000-000000000001"
host_name = "itest-host"
host_ip = "127.0.0.1"
domain_id = {DOMAIN}
secret = "{SECRET}"
local = "127.0.0.1:{free_udp_port()}"
vsms = ["{vsm.addr[0]}:{vsm.addr[1]}"]
run_dir = "run"
data_dir = "data"
backend = "memory"
heartbeat_interval_ms = 100
headless_after_ms = 1000
"""
        )
        with (root / "console.log").open("wb") as console:
            proc = subprocess.Popen(
                [sys.executable, "-m", "openvsm", "vem", "--config", str(config)],
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield vsm, root, proc
    finally:
        if proc is not None and proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
        vsm.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_vem_attaches_and_reports_ports(
    vem_host: tuple[StandInVsm, Path, subprocess.Popen[bytes]],
) -> None:
    vsm, root, proc = vem_host
    run = root / "run"
    attach = wait_for(lambda: vsm.messages(VemAttach), "VemAttach from the agent")[0]
    assert attach.host_name == "itest-host" and attach.reason == "boot"
    wait_for(lambda: vsm.messages(VemHeartbeat), "heartbeats from the attached VEM")
    wait_for((run / "vem.sock").exists, "the control socket")

    res = openvsm(
        "vem-ctl",
        "--run-dir",
        str(run),
        "attach-port",
        "--vm",
        "vm-1",
        "--port-profile",
        "vm-net",
        "--mac",
        "02:00:00:00:10:01",
    )
    assert res.returncode == 0, res.stderr
    name = res.stdout.strip()
    assert name

    def reported() -> bool:
        return any(
            p.name == name and p.vm == "vm-1"
            for ev in vsm.messages(VemPortEvent)
            for p in ev.attached
        )

    wait_for(reported, "the port event at the VSM")
    status = json.loads(openvsm("vem-ctl", "--run-dir", str(run), "status").stdout)
    assert status["state"] == "attached" and status["module"] == 3 and status["ports"] == 1
    ports = json.loads(openvsm("vem-ctl", "--run-dir", str(run), "ports").stdout)["ports"]
    assert ports[0]["name"] == name and ports[0]["access_vlan"] == 10 and ports[0]["forwarding"]

    bad = openvsm("vem-ctl", "--run-dir", str(run), "detach-port", "nope")
    assert bad.returncode == 1 and "no port" in bad.stderr

    # What the datapath would do with a frame, asked as an operator would.
    ctl = ("vem-ctl", "--run-dir", str(run))
    res = openvsm(*ctl, "attach-port", "--vm", "vm-2", "--port-profile", "vm-net",
                  "--mac", "02:00:00:00:10:02")  # fmt: skip
    assert res.returncode == 0, res.stderr
    other = res.stdout.strip()

    def trace(*frame: str) -> Any:
        out = openvsm(*ctl, "trace", "--in-port", name, "--src", "02:00:00:00:10:01", *frame)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["egress"]

    wait_for(lambda: trace() == [{"port": other, "tag": 0}], "a broadcast flooded in VLAN 10")
    assert trace("--vlan", "10") == []  # tagged on an access port: dropped
    for frame in (("--src", "zz"), ("--vlan", "5000")):
        bad = openvsm(*ctl, "trace", "--in-port", name, "--src", "02:00:00:00:10:01", *frame)
        assert bad.returncode == 1 and "bad frame" in bad.stderr, bad

    # The VSM goes silent: headless after the configured time, ports kept.
    vsm.answering = False
    vsm.heartbeats = False

    def headless() -> bool:
        out = openvsm("vem-ctl", "--run-dir", str(run), "status").stdout
        return bool(json.loads(out)["headless"])

    wait_for(headless, "headless mode")
    ports = json.loads(openvsm("vem-ctl", "--run-dir", str(run), "ports").stdout)["ports"]
    assert ports[0]["forwarding"]
    assert proc.poll() is None

    # Clean stop on SIGTERM.
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not (run / "vem.sock").exists()
