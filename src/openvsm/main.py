"""The ``openvsm`` command: subcommands for the node daemon, CLI, lab and VEM agent."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import os

    from openvsm.commands import run

    # Configurations, stores, keys, lab.json, traces: nothing for other users to read.
    os.umask(0o077)

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
