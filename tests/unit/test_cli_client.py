"""``openvsm cli`` against a real IPC server on a Unix socket (a cfgmgr stand-in).

The stand-in runs ``CliServer`` behind ``openvsm.ipc.IpcServer`` in its own
thread and event loop, exactly as cfgmgr serves op ``cli``; the client is the
code under test and sees only the socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.cli.client import cli_main
from openvsm.cli.server import CliCommandError, CliServer, CliSession, HandlerResult
from openvsm.ipc import IpcError, IpcServer


class Cfgmgr:
    """A cfgmgr stand-in: ``cfgmgr.sock`` answering op ``cli`` with a CliServer."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self.requests: list[dict[str, Any]] = []
        self.config_lines: list[str] = []
        self.cli = CliServer("switch", self._config)
        self.cli.register("show_hostname", self._hostname)
        self.cli.register("show_svs_domain", self._refuse)
        self.cli.register("reload", self._go_away)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _hostname(self, args: dict[str, str], session: CliSession) -> HandlerResult:
        return {"hostname": "switch"}

    async def _refuse(self, args: dict[str, str], session: CliSession) -> HandlerResult:
        raise CliCommandError("% SVS domain not configured")

    async def _config(self, line: str, session: CliSession) -> tuple[str, bool]:
        self.config_lines.append(line)
        if line == "end":
            session.exit_to_exec()
        elif line.startswith("bad"):
            return "% Invalid command", True
        return "", False

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op != "cli":
            raise IpcError(f"unknown op {op}")
        if args.get("action", "run") == "run":
            self.requests.append(dict(args))
        return await self.cli.handle_ipc(args)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        server = IpcServer(self.rundir / "cfgmgr.sock", self._handle)
        self._stop = asyncio.Event()
        await server.start()
        self._ready.set()
        await self._stop.wait()
        await server.stop()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        stop = self._stop
        assert stop is not None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(stop.set)
            self._thread.join(10)

    async def _go_away(self, args: dict[str, str], session: CliSession) -> HandlerResult:
        assert self._stop is not None
        self._stop.set()  # the service stops after answering this request
        return "going away"


@pytest.fixture
def rundir() -> Iterator[Path]:
    # short path: Unix socket paths are limited to ~108 bytes
    with tempfile.TemporaryDirectory(prefix="ovsm-cli-") as d:
        yield Path(d)


@pytest.fixture
def cfgmgr(rundir: Path) -> Iterator[Cfgmgr]:
    node = Cfgmgr(rundir)
    node.start()
    yield node
    node.stop()


def test_one_shot_prints_the_answer(cfgmgr: Cfgmgr, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "show hostname"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("switch\n", "")


def test_json_prints_exactly_one_object(cfgmgr: Cfgmgr, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "show hostname | json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"hostname": "switch"}
    assert out.count("\n") == 1


def test_commands_run_in_order_on_one_session(
    cfgmgr: Cfgmgr, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["--node", str(cfgmgr.rundir), "-c", "configure terminal ; vlan 10 ; end ; show hostname"]
    )
    assert code == 0
    assert capsys.readouterr().out == "switch\n"
    assert cfgmgr.config_lines == ["vlan 10", "end"]
    assert [r["line"] for r in cfgmgr.requests] == [
        "configure terminal",
        "vlan 10",
        "end",
        "show hostname",
    ]
    assert len({r["session"] for r in cfgmgr.requests}) == 1


def test_each_invocation_has_its_own_session(cfgmgr: Cfgmgr) -> None:
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "show hostname"]) == 0
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "show hostname"]) == 0
    assert len({r["session"] for r in cfgmgr.requests}) == 2


def test_first_error_stops_and_exits_1(cfgmgr: Cfgmgr, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["--node", str(cfgmgr.rundir), "-c", "show hostname ; show modle ; show hostname"]
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert out == "switch\nshow modle\n     ^\n% Invalid command at '^' marker.\n"
    assert err == ""
    assert len(cfgmgr.requests) == 2


def test_handler_and_config_errors_exit_1(
    cfgmgr: Cfgmgr, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "show svs domain"]) == 1
    assert capsys.readouterr().out == "% SVS domain not configured\n"
    assert cli_main(["--node", str(cfgmgr.rundir), "-c", "conf t ; bad line ; end"]) == 1
    assert capsys.readouterr().out == "% Invalid command\n"
    assert cfgmgr.config_lines == ["bad line"]


def test_unreachable_node_exits_1_on_stderr(
    rundir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["--node", str(rundir), "-c", "show hostname"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "cfgmgr.sock is not reachable" in err


def test_the_installed_command(cfgmgr: Cfgmgr) -> None:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "openvsm", "cli", "--node", str(cfgmgr.rundir), "-c"]
    ok = subprocess.run([*cmd, "sh hostn | json"], capture_output=True, text=True, env=env)
    assert (ok.returncode, json.loads(ok.stdout)) == (0, {"hostname": "switch"})
    bad = subprocess.run([*cmd, "show"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stdout == "show\n     ^\n% Incomplete command\n"


def test_commands_piped_on_stdin(cfgmgr: Cfgmgr) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openvsm", "cli", "--node", str(cfgmgr.rundir)],
        input="show hostname\nconf t\nend\nshow hostname\n",
        capture_output=True,
        text=True,
    )
    assert (proc.returncode, proc.stdout) == (0, "switch\nswitch\n")


def test_interactive_shell(cfgmgr: Cfgmgr) -> None:
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from openvsm.cli.shell import run_shell

    with create_pipe_input() as pipe:
        pipe.send_text("show hostname\r\r")
        pipe.send_text("conf t\r")
        pipe.send_text("end\r")
        pipe.send_text("\x04")  # Ctrl-D
        code = asyncio.run(run_shell(cfgmgr.rundir, input=pipe, output=DummyOutput()))
    assert code == 0
    assert [r["line"] for r in cfgmgr.requests] == ["", "show hostname", "conf t", "end"]
    history = (cfgmgr.rundir / "cli_history").read_text()
    assert "+show hostname" in history and "+conf t" in history


def test_exit_leaves_the_shell(cfgmgr: Cfgmgr) -> None:
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from openvsm.cli.shell import run_shell

    with create_pipe_input() as pipe:
        pipe.send_text("exit\r")
        code = asyncio.run(run_shell(cfgmgr.rundir, input=pipe, output=DummyOutput()))
    assert code == 0
    assert cfgmgr.cli.session_count() == 0


def test_shell_survives_cfgmgr_going_away(cfgmgr: Cfgmgr) -> None:
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from openvsm.cli.shell import run_shell

    with create_pipe_input() as pipe:
        pipe.send_text("reload\r")
        pipe.send_text("y\r")  # the interactive shell confirms a reload
        pipe.send_text("show hostname\r")  # nobody answers: reported, shell stays
        pipe.send_text("\x04")
        code = asyncio.run(run_shell(cfgmgr.rundir, input=pipe, output=DummyOutput()))
    assert code == 0
    assert [r["line"] for r in cfgmgr.requests] == ["", "reload", "y"]
