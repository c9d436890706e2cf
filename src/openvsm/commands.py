"""Subcommands of the ``openvsm`` program.

Each subcommand lives with the code it runs; this module only dispatches, so
that starting one piece never imports the others.
"""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: openvsm COMMAND [ARGS]

commands:
  vsm --config FILE          run a VSM node (sysmgr and its services)
  init --domain ID --hosts N --out DIR
                             write a new pair's and its VEM hosts' configs and secrets
  keys new|host --out FILE ... make a frame key, or derive a VEM host's key
  cli --node RUNDIR [-c CMD] the NX-OS CLI of a node (interactive, or one-shot)
  lab [--dir D] [--no-shell] [--vems N] [--timers default|fast]
                             a VSM pair and VEMs on loopback
  vem --config FILE          run a VEM agent
  vem-ctl --run-dir D ...    attach/detach vEth ports on a VEM host
  vem-sim --count N ...      simulate N VEMs in one process
  faultproxy ...             fault-injecting UDP/TCP proxy
  chaos ...                  seeded fault campaign against a loopback deployment
  service NAME --config FILE (internal) run one service of a node
"""

_COMMANDS = {
    "vsm": "openvsm.sysmgr.sysmgr",
    "init": "openvsm.init",
    "keys": "openvsm.credentials",
    "service": "openvsm.sysmgr.service",
    "cli": "openvsm.cli.client",
    "lab": "openvsm.lab.command",
    "vem": "openvsm.vem.agent",
    "vem-ctl": "openvsm.vem.ctl",
    "vem-sim": "openvsm.vem.sim",
    "faultproxy": "openvsm.lab.faultproxy",
    "chaos": "openvsm.lab.chaos",
}


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    module_name = _COMMANDS.get(name)
    if module_name is None:
        print(f"openvsm: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    result: int = module.cli_main(rest)
    return result
