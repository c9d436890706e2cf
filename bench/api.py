"""REST API benchmark (issue: OpenStack REST API, HA part).

A lab pair with an HA standby (every write is committed with
synchronous=FULL on the active and acknowledged by the standby before its
200). Creates one VLAN network profile, ``--networks`` VLAN networks and
``--ports`` ports spread over them through ``POST /kvm/vm-network`` (bodies
of specs/n1kv-rest-api.md): the first ``--sequential`` with one client, the
rest with ``--clients`` concurrent HTTP clients (REST writes are serialised
on the active, so these measure queueing as well); then
times ``GET /kvm/config-md5-hashes`` at that port count.

    .venv/bin/python bench/api.py                      # 10,000 ports, 100 networks
    .venv/bin/python bench/api.py --ports 2000 --clients 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from openvsm.lab.lab import Lab, ipc_call

TENANT = "9c5e3a0d2b1a4f6e8d7c6b5a49382716"
NP = "11111111-0000-0000-0000-000000000001"


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
    r = s.get(f"{base}/virtual-port-profile", timeout=30)
    return str(r.json()["vm-net"]["properties"]["id"])


def create_ports(
    lab: Lab, base: str, policy_id: str, start: int, ports: int, networks: int, clients: int
) -> tuple[list[float], float]:
    lat: list[float] = []
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
                net = net_id(n % networks)
                body = {
                    "name": f"vmn_{policy_id}_{net}",
                    "networkSegmentId": net,
                    "networkSegment": net,
                    "portProfile": "vm-net",
                    "portProfileId": policy_id,
                    "tenantId": TENANT,
                    "portId": f"44444444-0000-0000-0000-{n:012d}",
                    "macAddress": "fa:16:3e:"
                    + ":".join(f"{n >> shift & 0xFF:02x}" for shift in (16, 8, 0)),
                    "portType": "compute:nova",
                }
                t0 = time.perf_counter()
                try:
                    post(s, f"{base}/kvm/vm-network", body)
                except Exception as exc:
                    errors.append(str(exc))
                    return
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    done = len(lat)
                if done % 1000 == 0:
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
    return lat, wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sequential", type=int, default=200, help="first ports, one client")
    parser.add_argument("--md5-gets", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openvsm-bench-") as tmp:
        lab = Lab(Path(tmp), timers="fast", rest=True)
        try:
            active = lab.start(timeout=180)
            standby = "secondary" if active == "primary" else "primary"
            addr = lab.nodes[active].rest_plain  # the n1kv driver speaks http://
            assert addr is not None
            base = f"http://{addr[0]}:{addr[1]}/api/n1k"
            with session(lab) as s:
                policy_id = setup(s, base, args.networks)
            print(
                f"REST writes with an HA standby: {args.ports} ports over {args.networks} "
                f"networks, {args.clients} clients"
            )
            seq = min(args.sequential, args.ports)
            lat, wall = create_ports(lab, base, policy_id, 0, seq, args.networks, 1)
            print(line("POST /kvm/vm-network 1 client", lat, wall), flush=True)
            lat, wall = create_ports(
                lab, base, policy_id, seq, args.ports - seq, args.networks, args.clients
            )
            print(line(f"POST /kvm/vm-network {args.clients} clients", lat, wall), flush=True)
            with session(lab) as s:
                md5: list[float] = []
                t0 = time.perf_counter()
                for _ in range(args.md5_gets):
                    t1 = time.perf_counter()
                    r = s.get(f"{base}/kvm/config-md5-hashes", timeout=60)
                    md5.append(time.perf_counter() - t1)
                    assert r.status_code == 200
                wall = time.perf_counter() - t0
                print(line(f"GET md5 at {args.ports} ports", md5, wall))
                t1 = time.perf_counter()
                r = s.get(f"{base}/kvm/vm-network", timeout=60)
                n = sum(
                    len([p for p in v["properties"]["portId"].split(",") if p])
                    for v in r.json().values()
                )
                ms = (time.perf_counter() - t1) * 1000
                print(f"  GET /kvm/vm-network: {n} ports in {ms:.1f} ms")
            digests = {
                node: ipc_call(lab.rundir(node) / "cfgmgr.sock", "snapshot_digest")["digest"]
                for node in (active, standby)
            }
            print(f"  standby store equal to the active's: {len(set(digests.values())) == 1}")
        finally:
            lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
