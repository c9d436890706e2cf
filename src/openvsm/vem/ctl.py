"""``openvsm vem-ctl --run-dir D COMMAND``: attach/detach vEth ports on a VEM host.

Talks to the agent's control socket ``D/vem.sock``::

    attach-port --vm X --port-profile P --mac M [--name N]   prints the port name
    detach-port NAME
    status                                                    JSON
    ports                                                     JSON
    trace --in-port P --src M [--dst M] [--vlan V] [--vni N]  JSON: where the
        datapath would send that frame (``egress``: port and 802.1Q tag, or VNI
        on a VXLAN port; empty = dropped); nothing is sent
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from openvsm.ipc import IpcClient, IpcError
from openvsm.node import RunDir


async def _call(sock: Path, op: str, **args: Any) -> Any:
    client = IpcClient(sock, timeout=10.0)
    try:
        return await client.call(op, **args)
    finally:
        client.close()


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openvsm vem-ctl", description="control a VEM agent")
    parser.add_argument("--run-dir", required=True, type=Path, help="the agent's run directory")
    sub = parser.add_subparsers(dest="command", required=True)
    attach = sub.add_parser("attach-port", help="attach a vEth port")
    attach.add_argument("--vm", required=True)
    attach.add_argument("--port-profile", required=True)
    attach.add_argument("--mac", required=True)
    attach.add_argument("--name", default=None)
    detach = sub.add_parser("detach-port", help="detach a vEth port")
    detach.add_argument("name")
    sub.add_parser("status", help="attachment state and counters (JSON)")
    sub.add_parser("ports", help="vEth ports and their datapath state (JSON)")
    trace = sub.add_parser("trace", help="where the datapath would send a frame (JSON)")
    trace.add_argument("--in-port", required=True)
    trace.add_argument("--src", required=True)
    trace.add_argument("--dst", default="ff:ff:ff:ff:ff:ff")
    trace.add_argument("--vlan", type=int, default=0)
    trace.add_argument("--vni", type=int, default=0)
    args = parser.parse_args(argv)
    sock = RunDir(args.run_dir).vem
    try:
        if args.command == "attach-port":
            kwargs: dict[str, Any] = {
                "vm": args.vm,
                "port_profile": args.port_profile,
                "mac": args.mac,
            }
            if args.name:
                kwargs["name"] = args.name
            result = asyncio.run(_call(sock, "attach_port", **kwargs))
            print(result["name"])
        elif args.command == "detach-port":
            asyncio.run(_call(sock, "detach_port", name=args.name))
        elif args.command == "trace":
            frame = {"in_port": args.in_port, "src": args.src, "dst": args.dst}
            frame.update(vlan=args.vlan, vni=args.vni)
            result = asyncio.run(_call(sock, "trace", **frame))
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            result = asyncio.run(_call(sock, args.command))
            print(json.dumps(result, indent=2, sort_keys=True))
    except IpcError as exc:
        print(f"openvsm vem-ctl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
