"""The attack suite's long version (issue 12 point 7): each attack against a
real lab pair from outside its processes, with the commit latency during it.

For every attack: CLI configuration commits on the active (acknowledged
after the standby's ack) while the attack runs in background threads; then
the pair must still be Active with HA standby / HA standby with the same
service pids. Prints a table: attack, tries, outcome, counters, commit
median during the attack and its ratio to the quiet median of the same run.

    nice -n 10 .venv/bin/python bench/attack.py
    nice -n 10 .venv/bin/python bench/attack.py --commits 60 --examples 20
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.attacks import (
    Flood,
    forged_frames,
    ipc_junk,
    lab_nodes,
    metric_samples,
    rest_schema_fuzz,
    service_pid,
    stolen_key,
    udp_junk,
)

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import ipc_call
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = "the median of CLI commits on the quiet pair before the attacks"

Attack = Callable[[threading.Event], tuple[int, str]]  # stop -> (tries, counters text)


def commits(lab: Lab, active: str, n: int, first_vlan: int) -> list[float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        res = lab.cli(active, f"configure terminal ; vlan {first_vlan + i} ; end", timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
        assert not res["error"], res
    return lat


def sync_flood(addr: tuple[str, int], standby: dict[str, Any], auth: tuple[str, str]) -> Attack:
    def run(stop: threading.Event) -> tuple[int, str]:
        with Flood(addr, random.Random(7)) as flood:
            flood.start_background()
            opened = 0
            while not stop.is_set():
                flood.open(100)
                opened += 100
                stop.wait(1.0)
                for s in flood.socks:
                    s.close()
                flood.socks.clear()
                flood.slow.clear()
            tries = opened + flood.churned
        ev = metric_samples(standby, auth, "openvsm_sync_events_total", "event")
        keys = ("handshake_evicted", "handshake_failed", "handshake_timeout")
        return tries, ", ".join(f"{k} {ev.get(k, 0):.0f}" for k in keys)

    return run


def brute_force(url: str, ca: str, clients: int) -> Attack:
    def run(stop: threading.Event) -> tuple[int, str]:
        codes: dict[int, int] = {}
        lock = threading.Lock()

        def one() -> None:
            with requests.Session() as s:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        code = s.get(url, auth=("admin", f"bad-{i}"), verify=ca, timeout=10)
                        status = code.status_code
                    except requests.RequestException:
                        status = 0
                    with lock:
                        codes[status] = codes.get(status, 0) + 1

        threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(codes.values()), ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))

    return run


def schemathesis_run(base: str, auth: tuple[str, str], ca: str, examples: int) -> Attack:
    def run(stop: threading.Event) -> tuple[int, str]:
        tries, fails = 0, 0
        statuses: dict[str, int] = {}
        seed = 0
        while not stop.is_set():
            got = rest_schema_fuzz(base, auth, ca, examples=examples, read_only=False, seed=seed)
            seed += 1
            tries += got.tries
            fails += len(got.failures)
            for k, v in got.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
            for f in got.failures[:3]:
                print("  schemathesis:", f)
        text = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        return tries, f"{text}; check failures {fails}"

    return run


def udp_flood(lab: Lab, name: str) -> Attack:
    node = lab.nodes[name]

    def run(stop: threading.Event) -> tuple[int, str]:
        rng = random.Random(11)

        def frames() -> Any:
            while True:
                head = b"OV\x01" + bytes([rng.randint(0, 30)]) + rng.randbytes(31)
                yield head + rng.randbytes(rng.randint(0, 200))

        sent, gen = 0, frames()
        while not stop.is_set():
            for addr in (node.control, node.mgmt, node.vem):
                sent += udp_junk(addr, gen, 200)
            stop.wait(0.02)
        ctr = lab.cli_json(name, "show system internal redundancy counters")
        drops: dict[str, int] = {}
        for row in ctr.get("TABLE_counters", {}).get("ROW_counters", []):
            for k, v in row.items():
                if k.startswith("drop_") and isinstance(v, int):
                    drops[k] = drops.get(k, 0) + v
        return sent, "hamgr " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items()) if v)

    return run


def hamgr_drops(lab: Lab, name: str) -> dict[str, int]:
    ctr = lab.cli_json(name, "show system internal redundancy counters")
    drops: dict[str, int] = {}
    for row in ctr.get("TABLE_counters", {}).get("ROW_counters", []):
        for k, v in row.items():
            if k.startswith("drop_") and isinstance(v, int):
                drops[k] = drops.get(k, 0) + v
    return drops


def drops_text(before: dict[str, int], after: dict[str, int]) -> str:
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    return "hamgr " + ", ".join(f"{k} +{v}" for k, v in sorted(grown.items()))


def vem_key_forgery(lab: Lab, name: str, active: str) -> Attack:
    """VSM frames signed with a VEM host's key (read from its config, as on the
    host): Discovery as active, reset/switchover requests, reflected VEM frames."""
    node = lab.nodes[name]
    info = json.loads((lab.root / "lab.json").read_text())
    host, key = stolen_key(info)
    trace = lab.cli_json(active, "show system internal redundancy trace")["TABLE_trace"]
    macs = [re.search(r"system MAC ([0-9a-f:]{17})", r["event"]) for r in trace["ROW_trace"]]
    mac = next(m.group(1) for m in macs if m)
    frames = forged_frames(int(info["domain_id"]), host, key, mac)

    def run(stop: threading.Event) -> tuple[int, str]:
        before, sent = hamgr_drops(lab, name), 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set():
                for addr in (node.control, node.mgmt, node.vem):
                    for frame in frames:
                        sock.sendto(frame, addr)
                        sent += 1
                stop.wait(0.01)
        return sent, drops_text(before, hamgr_drops(lab, name))

    return run


def capture_lo(ports: set[int], seconds: float) -> list[tuple[int, bytes]]:
    """UDP payloads to ``ports`` seen on the loopback device (AF_PACKET: root)."""
    got: list[tuple[int, bytes]] = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as raw:
        raw.bind(("lo", 0))
        raw.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                pkt = raw.recv(65535)
            except TimeoutError:
                continue
            ip = pkt[14:]
            if len(ip) < 28 or ip[9] != 17:
                continue
            udp = ip[(ip[0] & 0x0F) * 4 :]
            dport = int.from_bytes(udp[2:4], "big")
            if dport in ports:
                got.append((dport, bytes(udp[8:])))
    return got


def replay(lab: Lab, name: str) -> Attack:
    """HA frames to ``name`` sniffed on loopback, then replayed (each many times)."""
    node = lab.nodes[name]
    ports = {node.control[1]: node.control, node.mgmt[1]: node.mgmt}

    captured = capture_lo(set(ports), 3.0)  # before the attack: a few heartbeat rounds

    def run(stop: threading.Event) -> tuple[int, str]:
        before, sent = hamgr_drops(lab, name), 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set() and captured:
                for port, payload in captured:
                    sock.sendto(payload, ports[port])
                    sent += 1
                stop.wait(0.02)
        return sent, f"{len(captured)} captured; " + drops_text(before, hamgr_drops(lab, name))

    return run


def ipc_flood(lab: Lab, name: str) -> Attack:
    path = lab.nodes[name].rundir / "cfgmgr.sock"

    def run(stop: threading.Event) -> tuple[int, str]:
        rng, sent = random.Random(13), 0
        while not stop.is_set():
            sent += ipc_junk(path, rng, 40)
        ctr = ipc_call(path, "ipc_counters")
        return sent, ", ".join(f"{k} {v}" for k, v in sorted(ctr.items()))

    return run


def measure(
    lab: Lab, active: str, attack: Attack, n: int, vlan: int
) -> tuple[list[float], int, str]:
    stop = threading.Event()
    result: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: result.append(attack(stop)), daemon=True)
    t.start()
    time.sleep(1.0)  # the attack reaches its pace
    try:
        lat = commits(lab, active, n, vlan)
    finally:
        stop.set()
        t.join(120)
    tries, counters = result[0] if result else (0, "attack did not finish")
    return lat, tries, counters


def pair_ok(lab: Lab, active: str, standby: str, pids: dict[str, int]) -> str:
    a = lab.status(active) or {}
    s = lab.status(standby) or {}
    states = (a.get("this_sup_internal_state"), s.get("this_sup_internal_state"))
    same = all(
        service_pid(int(lab.nodes[n].pid or 0), svc) == pid
        for (n, svc), pid in ((tuple(k.split("/")), v) for k, v in pids.items())
    )
    ok = states == ("Active with HA standby", "HA standby") and same
    return "pair in sync, no restart" if ok else f"DISTURBED {states} same pids {same}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--commits", type=int, default=40)
    ap.add_argument("--examples", type=int, default=10, help="schemathesis per operation and mode")
    ap.add_argument("--clients", type=int, default=20, help="brute-force threads")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="openvsm-attack-") as tmp:
        lab = Lab(Path(tmp), vems=1, timers="fast", rest=True)  # a host key to steal
        try:
            return run_all(lab, args)
        finally:
            lab.stop()


def run_all(lab: Lab, args: argparse.Namespace) -> int:
    active = lab.start()
    doc, anode, snode = lab_nodes(lab.root / "lab.json")
    standby = snode["name"]
    auth = (doc["user"], doc["password"])
    ca = anode["ca"]
    pids = {
        f"{n}/{svc}": service_pid(int(lab.nodes[n].pid or 0), svc)
        for n in (active, standby)
        for svc in ("hamgr", "cfgmgr", "vemmgr")
    }
    host, port = snode["control"].rsplit(":", 1)
    attacks: list[tuple[str, Attack]] = [
        (
            "sync port flood (connects, junk, slow-loris, churn)",
            sync_flood((host, int(port)), snode, auth),
        ),
        (
            "REST brute force (wrong passwords)",
            brute_force(f"{anode['rest']}/api/n1k/network-segment", ca, args.clients),
        ),
        (
            "REST schemathesis as admin (HTTPS)",
            schemathesis_run(anode["rest"], auth, ca, args.examples),
        ),
        ("UDP junk to the standby's hamgr/vemmgr ports", udp_flood(lab, standby)),
        ("HA frames to the standby sniffed on lo, replayed", replay(lab, standby)),
        (
            "VSM frames forged with a VEM host's key, to the standby",
            vem_key_forgery(lab, standby, active),
        ),
        ("IPC junk to the active's cfgmgr socket", ipc_flood(lab, active)),
    ]
    commits(lab, active, 10, 100)  # warm up
    quiet = statistics.median(commits(lab, active, args.commits, 200))
    rows = []
    vlan = 400
    for name, attack in attacks:
        lat, tries, counters = measure(lab, active, attack, args.commits, vlan)
        vlan += args.commits + 10
        med = statistics.median(lat)
        rows.append((name, tries, pair_ok(lab, active, standby, pids), counters, med, med / quiet))
    print(f"quiet commit median: {quiet:.1f} ms ({args.commits} commits)")
    print("| attack | tries | outcome | counters | commit median | ratio |")
    print("|---|---|---|---|---|---|")
    for name, tries, outcome, counters, med, ratio in rows:
        print(f"| {name} | {tries} | {outcome} | {counters} | {med:.1f} ms | {ratio:.2f} |")
    for name, _tries, _outcome, _counters, med, _ratio in rows:
        print(same_run_ratio(f"commit median ms, {name}", med, quiet, "quiet"))
    return 0 if all(r[2].startswith("pair in sync") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
