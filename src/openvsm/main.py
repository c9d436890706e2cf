"""The ``openvsm`` command: subcommands for the node daemon, CLI, lab and VEM agent."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from openvsm.commands import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
