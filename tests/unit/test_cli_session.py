"""ShellSession and TerminalDriver over an in-process CLI server with the real
configuration language (ConfigSession on a memory store view)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from openvsm.cfgmgr.configsession import ConfigSession, Mode
from openvsm.cli.server import CliServer, CliSession, HandlerResult
from openvsm.cli.session import ServerBackend, ShellSession
from openvsm.cli.terminal import MORE, TerminalDriver
from openvsm.roles import Role
from openvsm.store.runningconfig import MemoryView

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class MemoryConfig:
    """Config executor: the real configuration language on a memory view."""

    def __init__(self) -> None:
        self.view = MemoryView()

    async def __call__(self, line: str, session: CliSession) -> tuple[str, bool]:
        cs = session.config_state
        if not isinstance(cs, ConfigSession):
            cs = session.config_state = ConfigSession(
                self.view, user=session.user, mode=Mode.CONFIG
            )
        result = cs.execute(line)
        if result.error is not None:
            return result.error, True
        self.view.apply(result.ops)
        if cs.mode is Mode.EXEC:
            session.exit_to_exec()
        else:
            session.mode = cs.mode.value
        return result.output, False


async def many_lines(args: dict[str, str], session: CliSession) -> HandlerResult:
    return "".join(f"line {i}\n" for i in range(1, 31))


async def reload(args: dict[str, str], session: CliSession) -> HandlerResult:
    RELOADS.append(session.user)
    return "Reloading this supervisor."


RELOADS: list[str] = []


def make_server(users: dict[str, str] | None = None) -> tuple[CliServer, list[tuple[str, ...]]]:
    known = users or {}
    acct: list[tuple[str, ...]] = []
    server = CliServer(
        "sw1",
        MemoryConfig(),
        role_of=lambda u: Role.NETWORK_ADMIN if u == "admin" else known.get(u, "network-operator"),
        accountant=lambda user, command, result: acct.append((user, command, result)),
    )
    server.register("show_running_config", many_lines)
    server.register("reload", reload)
    return server, acct


def shell(server: CliServer, user: str = "admin", interactive: bool = True) -> ShellSession:
    return ShellSession(ServerBackend(server, user=user), interactive=interactive)


def test_modes_end_exit_and_ctrl_z() -> None:
    async def go() -> list[str]:
        sh = shell(make_server()[0])
        prompts = [await sh.start()]
        for line in ("conf t", "port-profile web", "vlan 10", "exit", "port-profile web"):
            prompts.append((await sh.run(line)).prompt)
        prompts.append((await sh.run("end")).prompt)
        await sh.run("configure terminal ; vlan 20")
        prompts.append(sh.prompt)
        prompts.append((await sh.ctrl_z()).prompt)
        prompts.append((await sh.ctrl_z()).prompt)  # nothing in exec mode
        reply = await sh.run("exit")
        assert reply.exit and sh.closed
        return prompts

    assert run(go()) == [
        "sw1#",
        "sw1(config)#",
        "sw1(config-port-prof)#",
        "sw1(config-vlan)#",
        "sw1(config)#",
        "sw1(config-port-prof)#",
        "sw1#",
        "sw1(config-vlan)#",
        "sw1#",
        "sw1#",
    ]


def test_help_and_completion_in_every_mode() -> None:
    async def go() -> None:
        sh = shell(make_server()[0])
        await sh.start()
        assert "  version         Show the software and hardware version\n" in await sh.help(
            "show "
        )
        assert await sh.complete("sh ver") == ["version"]
        assert await sh.tab("sh ver") == "sh version "
        assert await sh.tab("show ") is None  # many choices, no common prefix beyond ""
        await sh.run("conf t ; port-profile web")
        assert await sh.complete("sw") == ["switchport"]
        assert await sh.tab("switchport mo") == "switchport mode "
        assert "  trunk" in await sh.help("switchport mode ")
        assert "<CR>" in await sh.help("switchport mode trunk ")
        assert await sh.complete("do show mod") == ["module"]
        # "?" at the end of a run line is help, not an error, and changes nothing
        reply = await sh.run("switchport mode ?")
        assert not reply.error and "access" in reply.output
        assert sh.prompt == "sw1(config-port-prof)#"

    run(go())


def test_filters_and_json() -> None:
    async def go() -> None:
        sh = shell(make_server()[0])
        await sh.start()
        assert (await sh.run("show running-config | include line 2")).output == "".join(
            f"line {n}\n" for n in (2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29)
        )
        assert (await sh.run("sh run | ex line [12] | count")).output == "8\n"
        assert (await sh.run("sh run | begin line 29")).output == "line 29\nline 30\n"
        assert (await sh.run("show terminal | json")).output.startswith('{"term_type"')
        bad = await sh.run("show running-config | include (")
        assert bad.error and "% Invalid regular expression" in bad.output

    run(go())


def test_terminal_settings_and_paging() -> None:
    async def go() -> None:
        sh = shell(make_server()[0])
        await sh.start()
        assert len(sh.page("".join(f"{i}\n" for i in range(30)))) == 2
        await sh.run("terminal length 0 ; terminal width 511 ; terminal dont-ask")
        assert (sh.terminal.length, sh.terminal.width, sh.terminal.dont_ask) == (0, 511, True)
        assert len(sh.page("".join(f"{i}\n" for i in range(30)))) == 1
        assert "Length: 0 lines, Width: 511 columns" in (await sh.run("show terminal")).output
        await sh.window(rows=40, columns=9999)
        assert (sh.terminal.length, sh.terminal.width) == (40, 511)
        bad = await sh.run("terminal width 5")
        assert bad.output.startswith("% Terminal width out of range")

    run(go())


def test_read_only_role_is_refused_and_accounted() -> None:
    async def go() -> None:
        server, acct = make_server({"olga": "network-operator", "ann": "network-admin"})
        op = shell(server, "olga")
        await op.start()
        reply = await op.run("configure terminal")
        assert reply.error and reply.output == "% Permission denied for the role\n"
        assert op.prompt == "sw1#"
        assert (await op.run("rel")).output == "% Permission denied for the role\n"
        assert not (await op.run("show running-config")).error
        ann = shell(server, "ann", interactive=False)
        await ann.start()
        assert (await ann.run("conf t ; vlan 30 ; end")).prompt == "sw1#"
        assert (await ann.run("reload")).output == "Reloading this supervisor.\n"
        assert acct == [
            ("olga", "configure terminal", "FAILURE"),
            ("olga", "reload", "FAILURE"),
            ("ann", "reload", "SUCCESS"),
        ]

    RELOADS.clear()
    run(go())
    assert RELOADS == ["ann"]


def test_reload_asks_in_an_interactive_session_unless_dont_ask() -> None:
    async def go() -> None:
        sh = shell(make_server()[0])
        await sh.start()
        q = await sh.run("reload")
        assert q.confirm and q.output.endswith("(y/n)?  [n] ")
        assert (await sh.run("n")).output == "" and RELOADS == []
        await sh.run("reload")
        assert (await sh.run("y")).output == "Reloading this supervisor.\n"
        await sh.run("terminal dont-ask")
        assert not (await sh.run("reload")).confirm

    RELOADS.clear()
    run(go())
    assert RELOADS == ["admin", "admin"]


def test_users_listed_and_closed_sessions_go() -> None:
    async def go() -> None:
        server, _ = make_server()
        a, b = shell(server), shell(server, "bob")
        await a.start()
        await b.start()
        assert [s.user for s in server.sessions()] == ["admin", "bob"]
        await b.close()
        assert [s.user for s in server.sessions()] == ["admin"]

    run(go())


class Screen:
    def __init__(self) -> None:
        self.text = ""

    def write(self, data: str) -> None:
        self.text += data


def test_terminal_driver_keys() -> None:
    async def go() -> Screen:
        screen = Screen()
        term = TerminalDriver(shell(make_server()[0]), screen.write)
        await term.start()
        await term.feed("conf t\r\n")
        await term.feed("port-pro\tweb\r")
        await term.feed("sw?")
        assert (
            "switchport  Configure switchport parameters\r\nsw1(config-port-prof)# sw"
            in screen.text
        )
        await term.feed("\x7f\x7f\x1a")
        assert screen.text.endswith("^Z\r\nsw1# ")
        await term.feed("show running-config\r")
        assert screen.text.endswith(MORE)
        await term.feed(" ")
        assert screen.text.endswith("line 30\r\nsw1# ")
        await term.feed("shx\x03")
        assert screen.text.endswith("^C\r\nsw1# ")
        await term.feed("\x1b[A")  # history: the last line
        assert term.line == "show running-config"
        await term.feed("\x15exit\r")
        assert term.done
        return screen

    screen = run(go())
    assert "sw1(config)# port-profile web\r\nsw1(config-port-prof)# " in screen.text


def test_run_script_stops_at_the_first_error() -> None:
    async def go() -> tuple[int, int, list[str]]:
        out: list[str] = []
        sh = shell(make_server()[0], interactive=False)
        ok = await sh.run_script("terminal length 0\nshow terminal | count", out.append)
        bad = await sh.run_script("show terminal | count ; show modle ; show terminal", out.append)
        return ok, bad, out

    ok, bad, out = run(go())
    assert (ok, bad) == (0, 1)
    assert out[:2] == ["4\n", "4\n"] and "% Invalid command" in out[2] and len(out) == 3


def test_terminal_driver_takes_automation_input_in_one_chunk() -> None:
    """What netmiko/Ansible send: whole lines with CR LF, several at once."""

    async def go() -> str:
        screen = Screen()
        term = TerminalDriver(shell(make_server()[0]), screen.write)
        await term.start()
        await term.feed("terminal length 0\r\nterminal width 511\r\n\r\nshow running-config\r\n")
        await term.feed("configure terminal\nvlan 40\nend\n")
        return screen.text

    text = run(go())
    assert MORE not in text  # terminal length 0: no paging
    assert text.count("sw1# ") == 6 and "sw1(config-vlan)# " in text
    assert "show running-config\r\nline 1\r\n" in text and "line 30\r\nsw1# " in text
