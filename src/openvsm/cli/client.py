"""``openvsm cli --node RUNDIR [-c "COMMANDS"]``: the operator's CLI client.

Talks only to ``RUNDIR/cfgmgr.sock`` (op ``cli``) on one ``ShellSession``
per invocation (``openvsm.cli.session``: the same core as the interactive
and SSH shells); cfgmgr runs it as the CLI user the connecting Unix user
maps to (``openvsm.cli.peers``). One-shot (``-c``, or commands piped on stdin): runs each command
in order, prints each answer to stdout, and stops at the first error with
exit status 1 (the error text goes to stdout, as NX-OS prints it); exit 0
otherwise. ``COMMAND | json`` prints exactly one JSON object per command.
Without ``-c`` on a terminal it opens the interactive shell
(``openvsm.cli.shell``). A node that cannot be reached is reported on stderr
with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from openvsm.cli.grammar import split_commands
from openvsm.cli.session import IpcBackend, ShellSession
from openvsm.ipc import IpcClient, IpcError
from openvsm.node import RunDir


def new_session_id() -> str:
    return f"cli-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class CliConnection:
    """One CLI session on a node's cfgmgr."""

    def __init__(self, rundir: Path, timeout: float = 60.0) -> None:
        self.rundir = rundir
        self.session = new_session_id()
        self._ipc = IpcClient(RunDir(rundir).cfgmgr, timeout=timeout)

    async def run(self, line: str) -> dict[str, Any]:
        """Send one line; the server's ``{output, prompt, error[, exit]}``."""
        result = await self._ipc.call("cli", line=line, session=self.session)
        if not isinstance(result, dict) or not isinstance(result.get("output"), str):
            raise IpcError("malformed reply from cfgmgr")
        return result

    def close(self) -> None:
        self._ipc.close()


def write_output(text: str, stream: TextIO) -> None:
    if text:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()


async def run_commands(rundir: Path, commands: list[str], stdout: TextIO) -> int:
    """Run ``commands`` in order on one ``ShellSession``; 0, or 1 at the first error."""
    shell = ShellSession(IpcBackend(rundir))

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    try:
        return await shell.run_script(" ; ".join(commands), write)
    finally:
        await shell.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openvsm cli", description="NX-OS CLI of an openvsm node")
    parser.add_argument("--node", required=True, type=Path, help="the node's run directory")
    parser.add_argument(
        "-c",
        dest="commands",
        metavar="COMMANDS",
        help='commands to run, separated by " ; "; exit 1 at the first error',
    )
    return parser


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    rundir: Path = args.node
    try:
        if args.commands is not None:
            return asyncio.run(run_commands(rundir, split_commands(args.commands), sys.stdout))
        if not sys.stdin.isatty():
            return asyncio.run(run_commands(rundir, split_commands(sys.stdin.read()), sys.stdout))
        from openvsm.cli.shell import run_shell

        return asyncio.run(run_shell(rundir))
    except IpcError as exc:
        print(f"openvsm cli: {rundir}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
