"""Split-brain resolution benchmark: time from heal to a single active with all
VEMs attached to it.

One loopback lab (fast timers, fault proxy between the VSMs) and 100 VEMs
simulated by two ``openvsm vem-sim`` processes (60 + 40, consecutive UDP
ports). Each run (seeded: the seed picks which VSM gets the 60):

1. nftables rules (own table, loopback output hook; needs root) cut the 60
   off VSM Y and the 40 off VSM X;
2. both VSM interfaces are cut through the proxy: both become active, each
   with its own VEMs (60 on X, 40 on Y);
3. heal the pair and delete the rules at once (t0); wait until one VSM is
   active with an HA standby and all 100 VEMs "ok" in its ``show module``
   (t1). The side with 60 must win (module count).

Prints every run and min/median/max of t1 - t0. Usage:

    sudo .venv/bin/python bench/splitbrain.py [--runs 20] [--seed 1] [--vems 100]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = "the cold start of the same lab until all VEMs attached"

POLL = 0.02


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


class Rules:
    def __init__(self) -> None:
        self.table = f"openvsm_sb_{os.getpid()}"
        nft(f"add table inet {self.table}\n")
        nft(
            f"add chain inet {self.table} out "
            "{ type filter hook output priority 0 ; policy accept ; }\n"
        )

    def block(self, ranges: list[tuple[tuple[int, int], int]]) -> None:
        lines = [f"flush chain inet {self.table} out"]
        for (lo, hi), port in ranges:
            lines.append(
                f"add rule inet {self.table} out udp sport {lo}-{hi} udp dport {port} drop"
            )
            lines.append(
                f"add rule inet {self.table} out udp sport {port} udp dport {lo}-{hi} drop"
            )
        nft("\n".join(lines) + "\n")

    def clear(self) -> None:
        nft(f"flush chain inet {self.table} out\n")

    def close(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet", self.table], check=False)


def port_block(n: int, rng: random.Random) -> int:
    """A base port with n consecutive free ports (UDP+TCP) on loopback."""
    for _ in range(200):
        base = rng.randrange(20000, 60000 - n)
        ok = True
        for p in range(base, base + n):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
                break
        if ok:
            return base
    raise RuntimeError("no free port block")


def vem_rows_ok(lab: Lab, node: str) -> int:
    data = lab.cli_json(node, "show module")
    rows = data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
    return sum(
        1 for r in rows if r.get("modtype") == "Virtual Ethernet Module" and r.get("status") == "ok"
    )


def state(lab: Lab, node: str) -> dict[str, Any]:
    return lab.status(node) or {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vems", type=int, default=100)
    ap.add_argument("--vem-heartbeat-ms", type=int, default=250)
    ap.add_argument("--vem-loss-ms", type=int, default=3000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/splitbrain.py: needs root (nftables on loopback)", file=sys.stderr)
        return 2
    big = args.vems * 6 // 10
    small = args.vems - big
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="openvsm-sb-bench-"))
    # VSM pair on the fast profile; 100 VEMs at 100 ms heartbeats would swamp a
    # small shared machine, so VEM<->VSM heartbeats are 250 ms, module loss and
    # VEM headless 3 s (the VEM rule of the seed, scaled).
    vem_hb, vem_loss = args.vem_heartbeat_ms, args.vem_loss_ms
    lab = Lab(
        root,
        timers="fast",
        proxy=True,
        rest=False,
        extra_node_toml=f"heartbeat_interval_ms = {vem_hb}\nloss_ms = {vem_loss}\n",
    )
    rules = Rules()
    sims: list[subprocess.Popen[bytes]] = []
    results: list[float] = []
    cold = 0.0
    try:
        lab.start()
        bases = {"big": port_block(big, rng), "small": port_block(small, rng)}
        for name, count in (("big", big), ("small", small)):
            cmd = [sys.executable, "-m", "openvsm", "vem-sim", "--count", str(count)]
            for node in lab.nodes.values():
                cmd += ["--vsm", f"{node.vem[0]}:{node.vem[1]}"]
            cmd += [
                "--domain", str(lab.domain_id), "--vem-key-file", str(lab.vem_key_file),
                "--ports", "1",
                "--base-port", str(bases[name]), "--name", f"sb-{name}",
                "--heartbeat-ms", str(vem_hb), "--headless-ms", str(vem_loss),
            ]  # fmt: skip
            log = (root / f"sim-{name}.log").open("ab")
            sims.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            log.close()
        started = time.monotonic()
        active = wait_for(lab.active, 60, "an active")
        wait_for(lambda: vem_rows_ok(lab, active) == args.vems, 120, "all VEMs to attach")
        cold = time.monotonic() - started  # the same-run baseline
        rng_runs = random.Random(args.seed)
        for run in range(args.runs):
            x = rng_runs.choice(("primary", "secondary"))  # gets the 60
            y = other(x)
            xs, ys = lab.nodes[x].vem[1], lab.nodes[y].vem[1]
            rules.block(
                [
                    ((bases["big"], bases["big"] + big - 1), ys),
                    ((bases["small"], bases["small"] + small - 1), xs),
                ]
            )
            lab.cut("control")
            lab.cut("mgmt")

            def split(x: str = x, y: str = y) -> bool:
                return all(state(lab, n).get("this_sup_rdn_state") == "Active" for n in (x, y))

            def sides(x: str = x, y: str = y) -> bool:
                return bool(vem_rows_ok(lab, x) == big and vem_rows_ok(lab, y) == small)

            wait_for(split, 60, "split-brain")
            wait_for(sides, 60, f"{big} VEMs on {x}, {small} on {y}")
            t0 = time.monotonic()
            lab.heal("control")
            lab.heal("mgmt")
            rules.clear()

            def done(x: str = x, y: str = y) -> bool:
                sx, sy = state(lab, x), state(lab, y)
                return (
                    sx.get("this_sup_internal_state") == "Active with HA standby"
                    and sy.get("this_sup_rdn_state") == "Standby"
                    and vem_rows_ok(lab, x) == args.vems
                )

            try:
                wait_for(done, 60, f"{x} active with all {args.vems} VEMs", interval=POLL)
            except Exception:
                for n in (x, y):
                    st = state(lab, n)
                    print(n, st.get("this_sup_internal_state"), vem_rows_ok(lab, n))
                print(lab.cli(x, "show module")["output"][:3000])
                raise
            dt = time.monotonic() - t0
            results.append(dt)
            print(f"run {run + 1:2d}: {big} VEMs on {x}, {small} on {y}: {dt:.3f} s", flush=True)
            # The standby must be fully back (hot sync) before the next split.
            time.sleep(1.0)
    finally:
        for p in sims:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        lab.stop()
        rules.close()
    if results:
        print(
            f"heal -> single active with all {args.vems} VEMs, {len(results)} runs "
            f"(seed {args.seed}): min {min(results):.3f} s, "
            f"median {statistics.median(results):.3f} s, max {max(results):.3f} s"
        )
        print(same_run_ratio("median heal s", statistics.median(results), cold, "cold attach"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
