"""Attack drivers shared by the attack tests (short) and ``bench/attack.py`` (long).

Each driver attacks a running lab from outside its processes (HTTP clients,
sockets, datagrams) and returns an ``Outcome``: how many tries, what came
back, the counters the target showed. The caller asserts (tests) or prints
(bench). Nothing here fakes the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import requests

from openvsm.wire.codec import _HEADER, HEADER_LEN, TAG_LEN, Codec
from openvsm.wire.keys import tag
from openvsm.wire.messages import (
    Discovery,
    Flag,
    HeartbeatRequest,
    HeartbeatResponse,
    Message,
    SenderRole,
    SwitchRequest,
    VemAttachAck,
    VemHeartbeat,
)

API = "/api/n1k"


@dataclass
class Outcome:
    attack: str
    tries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)

    def fail(self, text: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(text)


# --- operator seat --------------------------------------------------------------------


def cli_text(rundir: str, command: str, timeout: float = 30.0) -> str:
    argv = [sys.executable, "-m", "openvsm", "cli", "--node", rundir, "-c", command]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise AssertionError(f"{command}: {res.stdout}{res.stderr}")
    return res.stdout


def cli_json(rundir: str, command: str) -> Any:
    return json.loads(cli_text(rundir, f"{command} | json"))


def lab_nodes(lab_json: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(doc, active, standby) from a lab's lab.json and the nodes' own word."""
    doc = json.loads(lab_json.read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    for name, node in nodes.items():
        state = cli_json(node["rundir"], "show system redundancy status")
        if state.get("this_sup_rdn_state") == "Active":
            other = next(n for n in nodes if n != name)
            return doc, node, nodes[other]
    raise AssertionError("no active node")


def md5(base: str, auth: tuple[str, str], verify: str | bool) -> str:
    r = requests.get(f"{base}{API}/kvm/config-md5-hashes", auth=auth, verify=verify, timeout=15)
    r.raise_for_status()
    return str(r.json()["md5_hashes"]["properties"]["consolidated_md5"])


# --- REST from the OpenAPI document (schemathesis) --------------------------------------


def rest_schema_fuzz(
    base: str,
    auth: tuple[str, str],
    verify: str | bool,
    *,
    examples: int,
    read_only: bool,
    seed: int = 0,
    label: str = "",
) -> Outcome:
    """Every operation of the served OpenAPI document, positive and negative
    cases (schemathesis), against a real node at ``base``.

    Checked per request: no 5xx, the status code and content type are the
    document's, a 200 body matches its schema. ``read_only`` (a
    network-operator's credentials): every write is 403 and the store's md5
    is unchanged after each one.
    """
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    out = Outcome(f"REST schemathesis {label}".strip())
    doc = requests.get(f"{base}{API}/openapi.json", verify=verify, timeout=15).json()
    schema = schemathesis.openapi.from_dict(doc)
    session = requests.Session()
    session.auth = auth
    session.verify = verify
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    before = md5(base, auth, verify) if read_only else ""
    operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    ctx = _FuzzContext(base, auth, verify, examples, read_only, seed, session, checks, before, out)
    try:
        for op in operations:
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                try:
                    _fuzz_operation(op, mode, ctx)
                except Unsatisfiable:  # no negative case exists (a GET without parameters)
                    pass
    finally:
        session.close()
    return out


@dataclass
class _FuzzContext:
    base: str
    auth: tuple[str, str]
    verify: str | bool
    examples: int
    read_only: bool
    seed: int
    session: requests.Session
    checks: list[Any]
    before: str
    out: Outcome


def _fuzz_operation(op: Any, mode: Any, ctx: _FuzzContext) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out, name = ctx.out, f"{op.method.upper()} {op.path}"
    write = op.method.upper() not in ("GET", "HEAD", "OPTIONS")

    @hseed(ctx.seed)
    @settings(
        max_examples=ctx.examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(op.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        out.tries += 1
        try:
            response = case.call(
                base_url=f"{ctx.base}{API}", session=ctx.session, verify=ctx.verify, timeout=30
            )
        except requests.RequestException as exc:
            out.fail(f"{name}: {type(exc).__name__}: {exc}")
            return
        out.statuses[str(response.status_code)] += 1
        try:
            case.validate_response(response, checks=ctx.checks)
        except Exception as exc:  # a check's failure: collected, reported
            first = str(exc).strip().splitlines()[:8]
            out.fail(f"{name} [{response.status_code}]: " + " | ".join(first))
        if ctx.read_only and write:
            if response.status_code not in (400, 401, 403, 404, 405, 413, 429):
                out.fail(f"operator {name}: {response.status_code}")
            if md5(ctx.base, ctx.auth, ctx.verify) != ctx.before:
                out.fail(f"operator {name} changed the store")

    one()


# --- sockets --------------------------------------------------------------------------


class Flood:
    """Connections to ``addr`` held open, fed junk and trickles until ``stop``."""

    def __init__(self, addr: tuple[str, int], rng: random.Random) -> None:
        self.addr = addr
        self.rng = rng
        self.socks: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.churned = 0

    def open(self, n: int) -> None:
        for i in range(n):
            try:
                s = socket.create_connection(self.addr, timeout=5)
            except OSError:
                continue
            self.socks.append(s)
            with contextlib.suppress(OSError):
                if i % 3 == 0:
                    s.sendall(b"\x16\x03\x01\x00\x05junk")  # a TLS record header, then junk
                elif i % 3 == 1:
                    s.sendall(self.rng.randbytes(self.rng.randint(1, 600)))
                else:
                    s.sendall(b"\x16")  # slow-loris: a ClientHello a byte at a time
                    self.slow.append(s)

    def _trickle(self) -> None:
        while not self.stopping.wait(0.3):
            for s in self.slow:
                with contextlib.suppress(OSError):
                    s.sendall(b"\x03")

    def _churn(self) -> None:
        while not self.stopping.is_set():
            try:
                with socket.create_connection(self.addr, timeout=2) as s:
                    s.sendall(self.rng.randbytes(32))
            except OSError:
                pass
            self.churned += 1

    def start_background(self) -> None:
        for fn in (self._trickle, self._churn):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(10)
        for s in self.socks:
            s.close()
        self.socks.clear()
        self.slow.clear()

    def __enter__(self) -> Flood:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_pid(sysmgr_pid: int, service: str) -> int:
    """The pid of ``python -m openvsm service <service>`` under a node's sysmgr."""
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(sysmgr_pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        pid_s, _, args = line.strip().partition(" ")
        if f"service {service} " in args + " ":
            return int(pid_s)
    raise AssertionError(f"no {service} under sysmgr {sysmgr_pid}: {out}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric_samples(
    node: dict[str, Any], auth: tuple[str, str], name: str, label: str
) -> dict[str, float]:
    """``{label value: sample}`` of one metric family in a node's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(node["rest"] + "/metrics", auth=auth, verify=node["ca"], timeout=10)
    r.raise_for_status()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name == name:
                out[s.labels.get(label, "")] = s.value
    return out


def udp_junk(addr: tuple[str, int], frames: Iterator[bytes], count: int) -> int:
    """Send ``count`` datagrams from ``frames`` to ``addr``; returns how many went out."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            with contextlib.suppress(OSError):
                s.sendto(next(frames), addr)
                sent += 1
    return sent


def ipc_junk(path: Path, rng: random.Random, count: int) -> int:
    """``count`` connections to a Unix socket, each with junk: oversized lengths,
    non-msgpack bodies, well-formed non-requests, random ops and arguments."""
    import msgspec

    sent = 0
    for i in range(count):
        kind = i % 4
        if kind == 0:
            data = struct.pack("!I", 0xFFFFFFF0) + rng.randbytes(16)
        elif kind == 1:
            body = b"\xc1" + rng.randbytes(rng.randint(0, 40))
            data = struct.pack("!I", len(body)) + body
        elif kind == 2:
            body = msgspec.msgpack.encode(rng.choice([[1, 2], {"op": 5}, {"op": "x", "args": [1]}]))
            data = struct.pack("!I", len(body)) + body
        else:
            op = rng.choice(["cli", "modules", "counters", "sync_status", "x" * rng.randint(1, 30)])
            args: dict[str, Any] = {
                rng.choice(["line", "topic", "which", "n"]): rng.choice([1, "x", None, [1], {}])
            }
            body = msgspec.msgpack.encode({"op": op, "args": args, "id": i})
            data = struct.pack("!I", len(body)) + body
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(str(path))
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):
                    while s.recv(65536):
                        pass
            sent += 1
        except OSError:
            pass
    return sent


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- VSM frames forged with a VEM host's key (test_attack_vem_key, bench/attack.py)


def stolen_key(lab_json: dict[str, Any]) -> tuple[str, bytes]:
    """What an attacker on the VEM's host reads: its config and key file."""
    path = Path(lab_json["vems"][0]["config"])
    vem = tomllib.loads(path.read_text())["vem"]
    assert "secret" not in vem, "the host holds the domain secret"
    key = (path.parent / vem["key_file"]).read_text().splitlines()[0].strip()
    return vem["host_uuid"], key.encode()


def with_claim(frame: bytes, host: str, key: bytes) -> bytes:
    """The frame with ``host_uuid`` added to its payload, signed again with ``key``."""
    fields = msgspec.msgpack.decode(frame[HEADER_LEN:-TAG_LEN])
    payload = msgspec.msgpack.encode({**fields, "host_uuid": host})
    head = list(_HEADER.unpack_from(frame))
    head[-1] = len(payload)
    body = _HEADER.pack(*head) + payload
    return body + tag(key, body)


def forged_frames(domain: int, host: str, key: bytes, mac: str) -> list[bytes]:
    codec = Codec(domain, key)
    seq = time.time_ns() // 1000 + 10**9  # "newer" than anything the pair sent
    frames: list[bytes] = []
    ha: list[Message] = [
        Discovery(state="active", boot_id=7, reply=False),
        HeartbeatRequest(state="active", flags=int(Flag.RESET_ORDERED), boot_id=7),
        HeartbeatRequest(state="active", flags=int(Flag.SWITCHOVER), boot_id=7),
        HeartbeatResponse(state="standby", flags=int(Flag.RESET_REQUESTED), boot_id=7),
    ]
    reflected: list[Message] = [
        VemHeartbeat(host_uuid=host, module=3),
        VemAttachAck(host_uuid=host, accepted=True, module=3),
        SwitchRequest(vsm_addr="127.0.0.1:9"),
    ]
    for role in (SenderRole.PRIMARY, SenderRole.SECONDARY):
        for msg in ha + reflected:
            seq += 1
            frame = codec.encode(msg, role=role, mac=mac, epoch=10**6, seq=seq)
            frames.append(frame)
            if msg in ha or isinstance(msg, SwitchRequest):
                frames.append(with_claim(frame, host, key))
    return frames
