"""``openvsm lab``: the loopback lab (``lab.lab.Lab``) or, as root, the netns
lab (``lab.netns.NetnsLab``), then the CLI shell or, with ``--no-shell``, a
wait for SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from openvsm.lab.common import LabError
from openvsm.lab.lab import TIMER_PROFILES, Lab
from openvsm.lab.netns import NetnsLab, unavailable_reason


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openvsm lab", description="VSM pair + VEMs on loopback")
    parser.add_argument("--dir", type=Path, help="lab directory (default: a temporary one)")
    parser.add_argument("--no-shell", action="store_true", help="run until SIGINT/SIGTERM")
    parser.add_argument("--vems", type=int, default=4)
    parser.add_argument("--timers", choices=sorted(TIMER_PROFILES), default="default")
    parser.add_argument("--proxy", action="store_true", help="route the pair through a fault proxy")
    parser.add_argument(
        "--netns",
        action="store_true",
        help="root: VSMs, hosts (private OVS + VEM agent, backend ovs), VMs and an "
        "upstream LACP switch in network namespaces (--vems = hosts, default 2)",
    )
    args = parser.parse_args(argv)
    if args.vems < 0:
        print("openvsm lab: --vems must be >= 0", file=sys.stderr)
        return 2
    tmp = None
    if args.dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="openvsm-lab-"))
        root = tmp
    else:
        root = args.dir.resolve()
    if args.netns:
        reason = unavailable_reason()
        if reason:
            print(f"openvsm lab --netns: {reason}", file=sys.stderr)
            return 2
        hosts = args.vems if "--vems" in argv else 2
        lab: Lab = NetnsLab(root, hosts=max(hosts, 1), timers=args.timers)
    else:
        lab = Lab(root, vems=args.vems, timers=args.timers, proxy=args.proxy, ssh=True)
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(
            f"openvsm lab in {root} (timers: {args.timers}); starting the VSM pair ...", flush=True
        )
        active = lab.start()
        print(f"pair up: {active} is active with an HA standby; {len(lab.vems)} VEMs attached")
        for node in lab.nodes.values():
            print(f"  {node.name:9s} openvsm cli --node {node.rundir}")
            if node.ssh is not None:
                print(f"  {'':9s} ssh -p {node.ssh[1]} admin@{node.ssh[0]}")
        print(f"  lab.json: {root / 'lab.json'}", flush=True)
        if args.no_shell:
            while not stop_requested:
                time.sleep(0.5)
        else:
            from openvsm.cli.shell import run_shell

            asyncio.run(run_shell(lab.nodes[active].rundir))
    except KeyboardInterrupt:
        pass
    except LabError as exc:
        print(f"openvsm lab: {exc}", file=sys.stderr)
        lab.stop()
        return 1
    finally:
        lab.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
