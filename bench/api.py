"""REST API benchmark (issue: OpenStack REST API, HA part).

A lab pair with an HA standby (every write is committed with
synchronous=FULL on the active and acknowledged by the standby before its
200). Creates one VLAN network profile, ``--networks`` VLAN networks and
``--ports`` ports spread over them through ``POST /kvm/vm-network`` (bodies
of specs/n1kv-rest-api.md): the first ``--sequential`` with one client, the
rest with ``--clients`` concurrent HTTP clients (the active computes
concurrent writes in rounds and commits each round together, so these
measure the grouping as well as queueing); then
times ``GET /kvm/config-md5-hashes`` at that port count (the first request
after the last change apart: it computes the digests once; the others are
served from ``Md5Index``), deletes ``--deletes`` ports, and checks that the
standby's md5 hashes and store equal the active's.

Size independence: the creation rate of the first 1,000 ports of the
concurrent phase and of the last 1,000 are printed with their ratio (goal:
the last within 20 % of the first). Each figure is printed with its goal
(issue 15 point 3) and the figure measured on main before the per-port
layout (issue 15, 10,000 ports), as a ratio.

    .venv/bin/python bench/api.py                      # 10,000 ports, 100 networks
    .venv/bin/python bench/api.py --ports 100000       # the issue's goal size
    .venv/bin/python bench/api.py --ports 2000 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from openvsm.api import n1kv
from openvsm.identity import MAC_FILE
from openvsm.ipc import IpcClient
from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = (
    "the first 1,000 REST port creates (at the smallest size) for the last 1,000, and a "
    "GET of one network segment for the md5 GET, a bulk sync of the setup's store "
    "(the standby's start-up) for the bulk sync at full size"
)
TENANT = "9c5e3a0d2b1a4f6e8d7c6b5a49382716"
NP = "11111111-0000-0000-0000-000000000001"
# issue 15 point 3: goals, and main's figures at 10,000 ports before the per-port layout
GOAL_CREATES_S = 1000.0
GOAL_LAST_FIRST = 0.8
GOAL_MD5_P99_MS = 5.0
GOAL_BULK_S = 5.0
BASE_CREATES_1 = 133.0
BASE_CREATES_4 = 82.0
BASE_MD5_MS = 24.0
WINDOW = 1000


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def line(label: str, lat: list[float], wall: float) -> str:
    ms = [x * 1000 for x in lat]
    return (
        f"  {label:28s} {len(ms):6d} req  {len(ms) / wall:7.1f} req/s  "
        f"p50 {statistics.median(ms):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms  "
        f"max {max(ms):7.2f} ms"
    )


def session(lab: Lab) -> requests.Session:
    s = requests.Session()
    s.auth = ("admin", lab.password)
    s.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
    return s


def post(s: requests.Session, url: str, body: dict[str, Any]) -> None:
    r = s.post(url, json=body, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text}")


def net_id(i: int) -> str:
    return f"22222222-0000-0000-0000-{i:012d}"


def setup(s: requests.Session, base: str, networks: int) -> str:
    post(s, f"{base}/logical-network/{NP}_log_net", {"description": "np-vlan"})
    post(
        s,
        f"{base}/network-segment-pool/{NP}",
        {"name": "np-vlan", "description": "np-vlan", "id": NP, "logicalNetwork": f"{NP}_log_net"},
    )
    for i in range(networks):
        post(
            s,
            f"{base}/network-segment/{net_id(i)}",
            {
                "publishName": net_id(i),
                "description": f"net-{i}",
                "id": net_id(i),
                "tenantId": TENANT,
                "mode": "access",
                "segmentType": "vlan",
                "networkSegmentPool": NP,
                "vlan": 1000 + i,
            },
        )
    # The driver's first sync asks for the hashes (and builds the VSM's index).
    assert s.get(f"{base}/kvm/config-md5-hashes", timeout=30).status_code == 200
    r = s.get(f"{base}/virtual-port-profile", timeout=30)
    return str(r.json()["vm-net"]["properties"]["id"])


def port_body(policy_id: str, n: int, networks: int) -> dict[str, Any]:
    net = net_id(n % networks)
    return {
        "name": f"vmn_{policy_id}_{net}",
        "networkSegmentId": net,
        "networkSegment": net,
        "portProfile": "vm-net",
        "portProfileId": policy_id,
        "tenantId": TENANT,
        "portId": f"44444444-0000-0000-0000-{n:012d}",
        "macAddress": "fa:16:3e:" + ":".join(f"{n >> shift & 0xFF:02x}" for shift in (16, 8, 0)),
        "portType": "compute:nova",
    }


def create_ports(
    lab: Lab, base: str, policy_id: str, start: int, ports: int, networks: int, clients: int
) -> tuple[list[float], float, list[float]]:
    lat: list[float] = []
    done_at: list[float] = []
    lock = threading.Lock()
    todo = iter(range(start, start + ports))
    errors: list[str] = []

    def worker() -> None:
        with session(lab) as s:
            while True:
                with lock:
                    n = next(todo, None)
                if n is None or errors:
                    return
                body = port_body(policy_id, n, networks)
                t0 = time.perf_counter()
                try:
                    post(s, f"{base}/kvm/vm-network", body)
                except Exception as exc:
                    errors.append(str(exc))
                    return
                t1 = time.perf_counter()
                with lock:
                    lat.append(t1 - t0)
                    done_at.append(t1)
                    done = len(lat)
                if done % 10000 == 0:
                    print(f"    {done} ports ...", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    return lat, wall, done_at


def bulk_sync(lab: Lab, active: str, standby: str) -> float:
    """The standby killed, its store wiped (not its system MAC), started: seconds
    until 'Active with HA standby' (the bulk synchronisation of every object)."""
    objects = len(ipc_call(lab.rundir(active) / "cfgmgr.sock", "list", kind=n1kv.K_PORT))
    lab.kill_node(standby)
    wait_for(
        lambda: (lab.status(active) or {}).get("other_sup_rdn_state") == "Not present",
        30,
        "the active to lose its standby",
    )
    datadir = lab.nodes[standby].datadir
    mac = (datadir / MAC_FILE).read_bytes()
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(parents=True)
    (datadir / MAC_FILE).write_bytes(mac)
    t0 = time.perf_counter()
    lab.start_node(standby)
    assert lab.wait_pair(600) == active
    dt = time.perf_counter() - t0
    print(f"  bulk sync to an empty standby, {objects} ports and the rest: {dt:.2f} s")
    return dt


def window_rate(done_at: list[float], first: bool) -> float:
    """Creates/s over the first (or last) WINDOW completions."""
    if len(done_at) < WINDOW + 1:
        return 0.0
    part = done_at[: WINDOW + 1] if first else done_at[-WINDOW - 1 :]
    return WINDOW / (part[-1] - part[0])


def ratio(label: str, value: float, ref: float, what: str) -> str:
    return f"  {label:44s} {value:9.2f}  {what} {ref:g}: x{value / ref:.2f}"


def delete_ports(
    lab: Lab, base: str, policy_id: str, count: int, networks: int
) -> tuple[list[float], float]:
    lat: list[float] = []
    with session(lab) as s:
        t0 = time.perf_counter()
        for n in range(count):
            net = net_id(n % networks)
            pid = port_body(policy_id, n, networks)["portId"]
            url = f"{base}/kvm/vm-network/vmn_{policy_id}_{net}/ports/{pid}"
            t1 = time.perf_counter()
            r = s.delete(url, timeout=60)
            lat.append(time.perf_counter() - t1)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text}")
        return lat, time.perf_counter() - t0


def md5_gets(
    lab: Lab, base: str, count: int, path: str = "kvm/config-md5-hashes"
) -> tuple[float, list[float], float, dict[str, Any]]:
    """(first request s, the others' latencies, their wall time, the answer)."""
    with session(lab) as s:
        t0 = time.perf_counter()
        r = s.get(f"{base}/{path}", timeout=60)
        first = time.perf_counter() - t0
        assert r.status_code == 200
        md5: list[float] = []
        t0 = time.perf_counter()
        for _ in range(count):
            t1 = time.perf_counter()
            r = s.get(f"{base}/{path}", timeout=60)
            md5.append(time.perf_counter() - t1)
            assert r.status_code == 200
        return first, md5, time.perf_counter() - t0, dict(r.json())


class LocalView:
    """The VM networks and ports the preload knows (an ``n1kv.ReadView``)."""

    def __init__(self, vm_networks: dict[str, dict[str, Any]]) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {n1kv.K_VM_NETWORK: vm_networks}

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.objects.get(kind, {}).get(key)

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self.objects.get(kind, {}))


def preload(lab: Lab, active: str, policy_id: str, start: int, count: int, networks: int) -> float:
    """Ports ``start..start+count`` committed through cfgmgr's IPC in changes of
    1,000 ports (the ops ``POST /kvm/vm-network`` computes, by the same code:
    ``n1kv.add_port``), replicated to the standby like any change. Returns
    ports/s. Every VM network exists already (the REST phases made them)."""
    sock = lab.rundir(active) / "cfgmgr.sock"
    vmns = ipc_call(sock, "list", kind=n1kv.K_VM_NETWORK)
    view = LocalView(vmns)

    async def go() -> None:
        client = IpcClient(sock, timeout=120.0)
        try:
            for base in range(start, start + count, 1000):
                ops: dict[tuple[str, str], dict[str, Any] | None] = {}
                for n in range(base, min(base + 1000, start + count)):
                    outcome = n1kv.add_port(view, port_body(policy_id, n, networks))
                    for op in outcome.ops:
                        ops[(op.kind, op.key)] = op.body
                        view.objects.setdefault(op.kind, {})[op.key] = op.body or {}
                await client.call(
                    "commit",
                    ops=[{"kind": k, "key": key, "body": b} for (k, key), b in ops.items()],
                    user="admin",
                    source="rest",
                    command=f"bench preload of ports {base}..",
                )
        finally:
            client.close()

    t0 = time.perf_counter()
    asyncio.run(go())
    return count / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sequential", type=int, default=200, help="first ports, one client")
    parser.add_argument("--md5-gets", type=int, default=200)
    parser.add_argument("--deletes", type=int, default=1000)
    parser.add_argument(
        "--fill",
        choices=("ipc", "rest"),
        default="ipc",
        help="ipc: the ports between the first and the last 1,000 REST creates are "
        "committed through cfgmgr's IPC in changes of 1,000 (minutes, not an hour, "
        "at 100,000); rest: every port through REST",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openvsm-bench-") as tmp:
        lab = Lab(Path(tmp), timers="fast", rest=True)
        try:
            active = lab.start(timeout=180)
            standby = "secondary" if active == "primary" else "primary"
            addr = lab.nodes[active].rest_plain  # the n1kv driver speaks http://
            saddr = lab.nodes[standby].rest_plain
            assert addr is not None and saddr is not None
            base = f"http://{addr[0]}:{addr[1]}/api/n1k"
            sbase = f"http://{saddr[0]}:{saddr[1]}/api/n1k"
            with session(lab) as s:
                policy_id = setup(s, base, args.networks)
            print("empty standby started, store of the setup only (the same-run baseline):")
            small = bulk_sync(lab, active, standby)
            run(lab, args, base, sbase, policy_id, active, standby)
            big = bulk_sync(lab, active, standby)
            print(ratio("bulk sync s", big, GOAL_BULK_S, "goal <"))
            print(same_run_ratio("bulk sync s", big, small, "with the setup's store"))
        finally:
            lab.stop()
    return 0


def run(
    lab: Lab,
    args: argparse.Namespace,
    base: str,
    sbase: str,
    policy_id: str,
    active: str,
    standby: str,
) -> None:
    print(
        f"REST writes with an HA standby: {args.ports} ports over {args.networks} "
        f"networks, {args.clients} clients"
    )
    seq = min(args.sequential, args.ports)
    lat, wall, _ = create_ports(lab, base, policy_id, 0, seq, args.networks, 1)
    print(line("POST /kvm/vm-network 1 client", lat, wall), flush=True)
    one_client = len(lat) / wall
    rest = args.ports - seq
    if args.fill == "ipc" and rest > 3 * WINDOW:
        # First window at the small size, the middle by IPC, last window at full size.
        lat, wall, done_at = create_ports(
            lab, base, policy_id, seq, WINDOW, args.networks, args.clients
        )
        first = len(lat) / wall
        print(line(f"POST {args.clients} clients, first {WINDOW}", lat, wall), flush=True)
        fill = rest - 2 * WINDOW
        rate = preload(lab, active, policy_id, seq + WINDOW, fill, args.networks)
        print(f"  {fill} ports committed through IPC, 1,000 per change: {rate:.0f} ports/s")
        lat2, wall2, done_at = create_ports(
            lab, base, policy_id, args.ports - WINDOW, WINDOW, args.networks, args.clients
        )
        last = len(lat2) / wall2
        print(line(f"POST {args.clients} clients, last {WINDOW}", lat2, wall2), flush=True)
        lat, wall = lat + lat2, wall + wall2
    else:
        lat, wall, done_at = create_ports(
            lab, base, policy_id, seq, rest, args.networks, args.clients
        )
        first, last = window_rate(done_at, True), window_rate(done_at, False)
    print(line(f"POST /kvm/vm-network {args.clients} clients", lat, wall), flush=True)
    first_md5, md5, md5_wall, hashes = md5_gets(lab, base, args.md5_gets)
    print(line(f"GET md5 at {args.ports} ports", md5, md5_wall))
    print(f"  first GET md5 after the last change: {first_md5 * 1000:.1f} ms (digests computed)")
    _, one, one_wall, _ = md5_gets(lab, base, args.md5_gets, f"network-segment/{net_id(0)}")
    print(line("GET one network segment", one, one_wall))
    with session(lab) as s:
        t1 = time.perf_counter()
        r = s.get(f"{base}/kvm/vm-network", timeout=120)
        n = sum(
            len([p for p in v["properties"]["portId"].split(",") if p]) for v in r.json().values()
        )
        print(f"  GET /kvm/vm-network: {n} ports in {(time.perf_counter() - t1) * 1000:.1f} ms")
    deletes = min(args.deletes, args.ports)
    if deletes:
        dlat, dwall = delete_ports(lab, base, policy_id, deletes, args.networks)
        print(line("DELETE port 1 client", dlat, dwall), flush=True)
    _, _, _, after = md5_gets(lab, base, 1)
    _, _, _, standby_hashes = md5_gets(lab, sbase, 1)
    digests = {
        node: ipc_call(lab.rundir(node) / "cfgmgr.sock", "snapshot_digest")["digest"]
        for node in (active, standby)
    }
    print(f"  standby md5 hashes equal to the active's: {standby_hashes == after}")
    if deletes:
        print(f"  md5 hashes changed by the deletes: {after != hashes}")
    print(f"  standby store equal to the active's: {len(set(digests.values())) == 1}")
    p99 = percentile([x * 1000 for x in md5], 0.99)
    rate = len(lat) / wall
    print("\nagainst the goals (issue 15 point 3) and main before the per-port layout:")
    print(ratio(f"creates/s, {args.clients} clients", rate, GOAL_CREATES_S, "goal >="))
    print(ratio(f"creates/s, {args.clients} clients", rate, BASE_CREATES_4, "main (10k ports)"))
    print(ratio("creates/s, 1 client", one_client, BASE_CREATES_1, "main (10k ports)"))
    if last:
        print(
            ratio(
                f"last {WINDOW} / first {WINDOW} creates/s",
                last / first,
                GOAL_LAST_FIRST,
                "goal >=",
            )
        )
        print(f"    (first {WINDOW}: {first:.0f}/s, last {WINDOW}: {last:.0f}/s)")
        print(same_run_ratio(f"last {WINDOW} creates/s", last, first, f"first {WINDOW}"))
    print(
        same_run_ratio(
            f"GET md5 p50 ms at {args.ports} ports",
            statistics.median(md5) * 1000,
            statistics.median(one) * 1000,
            "GET one network segment",
        )
    )
    print(ratio(f"GET md5 p99 ms at {args.ports} ports", p99, GOAL_MD5_P99_MS, "goal <"))
    print(ratio("GET md5 p50 ms", statistics.median(md5) * 1000, BASE_MD5_MS, "main (10k ports)"))


if __name__ == "__main__":
    sys.exit(main())
