"""CLI server core: routing, rendering, json, errors, sessions, config mode."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from openvsm.cli.server import (
    CONFIG_NOT_AVAILABLE,
    NOT_AVAILABLE,
    CliCommandError,
    CliServer,
    CliSession,
    HandlerResult,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def core(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply without its session details (mode, terminal settings)."""
    return {k: reply[k] for k in ("output", "prompt", "error", "exit") if k in reply}


HOSTNAME = {"value": "switch"}


async def show_hostname(args: dict[str, str], session: CliSession) -> HandlerResult:
    return {"hostname": HOSTNAME["value"]}


async def show_port_profile(args: dict[str, str], session: CliSession) -> HandlerResult:
    name = args.get("name")
    if name is not None and name != "web":
        raise CliCommandError(f"ERROR: port-profile {name} does not exist")
    return {
        "TABLE_port_profile": {
            "ROW_port_profile": [
                {
                    "profile_name": "web",
                    "type": "Vethernet",
                    "description": "",
                    "status": "enabled",
                    "inherit": "",
                    "owner": "cli",
                    "config_attributes": ["switchport mode access"],
                    "assigned_interfaces": [],
                }
            ]
        }
    }


async def broken(args: dict[str, str], session: CliSession) -> HandlerResult:
    raise RuntimeError("store closed")


class FakeConfig:
    """A stand-in config executor: records lines, knows vlan/exit/end/hostname."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    async def __call__(self, line: str, session: CliSession) -> tuple[str, bool]:
        self.lines.append((session.id, session.mode, line))
        words = line.split()
        if words[0] == "end":
            session.exit_to_exec()
        elif words[0] == "exit":
            if session.mode == "config":
                session.exit_to_exec()
            else:
                session.enter_config("config")
        elif words[0] == "vlan":
            session.enter_config("config-vlan")
        elif words[0] == "hostname":
            HOSTNAME["value"] = words[1]
        else:
            return f"{line}\n^\n% Invalid command at '^' marker.", True
        return "", False


def make(config: FakeConfig | None = None, **kw: Any) -> CliServer:
    HOSTNAME["value"] = "switch"
    server = CliServer(lambda: HOSTNAME["value"], config, **kw)
    server.register("show_hostname", show_hostname)
    server.register("show_port_profile", show_port_profile)
    server.register("show_module", broken)
    return server


def test_exec_command_renders_text() -> None:
    reply = run(make().execute("sh hostn", "s1"))
    assert core(reply) == {"output": "switch\n", "prompt": "switch#", "error": False}


def test_json_is_one_object_in_insertion_order() -> None:
    reply = run(make().execute("show port-profile | json", "s1"))
    assert reply["error"] is False
    assert reply["output"].count("\n") == 1
    obj = json.loads(reply["output"])
    assert list(obj["TABLE_port_profile"]["ROW_port_profile"][0])[:2] == ["profile_name", "type"]
    pretty = run(make().execute("show hostname | json-pretty", "s1"))["output"]
    assert pretty == '{\n  "hostname": "switch"\n}\n'


def test_arguments_reach_the_handler_and_command_errors_are_answers() -> None:
    server = make()
    assert "port-profile web" in run(server.execute("sh port-p name web", "s"))["output"]
    reply = run(server.execute("show port-profile name db", "s"))
    assert core(reply) == {
        "output": "ERROR: port-profile db does not exist\n",
        "prompt": "switch#",
        "error": True,
    }


def test_parse_errors_are_answered_with_the_caret() -> None:
    reply = run(make().execute("show modle", "s"))
    assert reply["error"] is True
    assert reply["output"] == "show modle\n     ^\n% Invalid command at '^' marker.\n"


def test_unregistered_handler_is_not_available() -> None:
    reply = run(make().execute("show svs domain", "s"))
    assert core(reply) == {"output": NOT_AVAILABLE, "prompt": "switch#", "error": True}
    assert reply["output"] == "% Command not available on this node\n"


def test_handler_crash_is_an_internal_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    server = make()
    with caplog.at_level(logging.ERROR, logger="openvsm.cli.server"):
        reply = run(server.execute("show module", "s"))
    assert reply["error"] is True
    assert reply["output"] == "% Internal error: RuntimeError: store closed\n"
    assert "show_module" in caplog.text
    # the server keeps answering
    assert run(server.execute("show hostname", "s"))["output"] == "switch\n"


def test_bad_data_from_a_handler_is_an_internal_error() -> None:
    server = make()

    async def bad(args: dict[str, str], session: CliSession) -> HandlerResult:
        return {"wrong": "keys"}

    server.register("show_svs_domain", bad)
    reply = run(server.execute("show svs domain", "s"))
    assert reply["error"] is True and reply["output"].startswith("% Internal error: KeyError")


def test_register_rejects_unknown_and_builtin_ids() -> None:
    server = make()
    with pytest.raises(ValueError):
        server.register("show_nothing", show_hostname)
    with pytest.raises(ValueError):
        server.register("exit", show_hostname)


def test_semicolons_run_in_order_and_stop_at_the_first_error() -> None:
    server = make()
    reply = run(server.execute("show hostname ; show bogus ; show hostname", "s"))
    assert reply["error"] is True
    assert reply["output"] == "switch\nshow bogus\n     ^\n% Invalid command at '^' marker.\n"


def test_string_results_and_messages() -> None:
    server = make()

    async def reload(args: dict[str, str], session: CliSession) -> HandlerResult:
        return "This command will reboot the system"

    async def clear(args: dict[str, str], session: CliSession) -> HandlerResult:
        assert args == {"which": "remote traces"}
        return None

    server.register("reload", reload)
    server.register("clear_activeactive_remote_redundancy_traces", clear)
    assert run(server.execute("reload", "s"))["output"] == "This command will reboot the system\n"
    assert json.loads(run(server.execute("reload | json", "s"))["output"]) == {
        "message": "This command will reboot the system"
    }
    assert core(run(server.execute("clear active-active remote redundancy traces", "s"))) == {
        "output": "",
        "prompt": "switch#",
        "error": False,
    }
    assert run(server.execute("clear act rem red tr | json", "s"))["output"] == "{}\n"


def test_configure_terminal_routes_lines_to_the_config_executor() -> None:
    config = FakeConfig()
    server = make(config)
    reply = run(server.execute("configure terminal ; vlan 10", "a"))
    assert core(reply) == {"output": "", "prompt": "switch(config-vlan)#", "error": False}
    # show and do-commands run as exec commands from any config mode
    assert run(server.execute("show hostname", "a"))["output"] == "switch\n"
    assert run(server.execute("do sh hostn", "a"))["output"] == "switch\n"
    assert run(server.execute("exit", "a"))["prompt"] == "switch(config)#"
    assert run(server.execute("hostname n1kv ; end", "a"))["prompt"] == "n1kv#"
    assert config.lines == [
        ("a", "config", "vlan 10"),
        ("a", "config-vlan", "exit"),
        ("a", "config", "hostname n1kv"),
        ("a", "config", "end"),
    ]


def test_config_errors_stop_the_sequence() -> None:
    config = FakeConfig()
    server = make(config)
    reply = run(server.execute("conf t ; bogus ; vlan 10", "a"))
    assert reply["error"] is True
    assert reply["prompt"] == "switch(config)#"
    assert [line for _, _, line in config.lines] == ["bogus"]


def test_configure_terminal_guard_can_refuse() -> None:
    server = make(FakeConfig())

    async def standby_refuses(args: dict[str, str], session: CliSession) -> HandlerResult:
        raise CliCommandError("% Configuration is not allowed on the standby supervisor")

    server.register("configure_terminal", standby_refuses)
    reply = run(server.execute("conf t", "a"))
    assert reply["error"] is True and reply["prompt"] == "switch#"


def test_config_executor_crash_is_contained() -> None:
    async def crash(line: str, session: CliSession) -> tuple[str, bool]:
        raise ValueError("boom")

    server = make()
    server.config_executor = crash
    reply = run(server.execute("conf t ; vlan 10", "a"))
    assert reply["error"] is True
    assert reply["output"] == "% Internal error: ValueError: boom\n"


def test_without_config_executor_only_exit_and_end_work() -> None:
    server = make()
    assert run(server.execute("conf t", "a"))["prompt"] == "switch(config)#"
    reply = run(server.execute("vlan 10", "a"))
    assert reply["error"] is True and reply["output"] == CONFIG_NOT_AVAILABLE
    assert run(server.execute("end", "a"))["prompt"] == "switch#"


def test_sessions_are_independent() -> None:
    server = make(FakeConfig())
    run(server.execute("conf t", "a"))
    assert run(server.execute("", "b"))["prompt"] == "switch#"
    assert run(server.execute("", "a"))["prompt"] == "switch(config)#"


def test_exit_at_exec_prompt_ends_the_session() -> None:
    server = make()
    run(server.execute("show hostname", "a"))
    reply = run(server.execute("exit", "a"))
    assert core(reply) == {"output": "", "prompt": "switch#", "error": False, "exit": True}
    assert server.session_count() == 0


def test_blank_and_comment_lines_do_nothing() -> None:
    assert core(run(make().execute("   ", "a"))) == {
        "output": "",
        "prompt": "switch#",
        "error": False,
    }
    assert run(make().execute("! a comment", "a"))["error"] is False
    assert run(make().execute("terminal length 0 ; end", "a"))["error"] is False


def test_idle_sessions_expire_and_the_count_is_bounded() -> None:
    now = [0.0]
    server = make(FakeConfig(), max_sessions=3, session_idle_s=10.0, clock=lambda: now[0])
    run(server.execute("conf t", "old"))
    now[0] = 20.0
    assert run(server.execute("", "old"))["prompt"] == "switch#"  # expired: fresh session
    for i in range(5):
        run(server.execute("", f"s{i}"))
    assert server.session_count() == 3


def test_handle_ipc_validates_its_arguments() -> None:
    server = make()
    reply = run(server.handle_ipc({"line": "show hostname", "session": "x", "user": "bob"}))
    assert reply["output"] == "switch\n"
    assert run(server.handle_ipc({"line": 5}))["error"] is False
    assert run(server.handle_ipc({}))["prompt"] == "switch#"
