"""Context help and completion (cli/help.py): NX-OS layout, every mode, and
the configuration-mode table kept in step with the real parser."""

from __future__ import annotations

import pytest

from openvsm.cfgmgr.configsession import ConfigSession, Mode
from openvsm.cli.grammar import Argument, Command, Keyword
from openvsm.cli.help import CONFIG_COMMANDS, completions, help_text
from openvsm.store.runningconfig import MemoryView

SAMPLES = {
    "name": "web",
    "user": "bob",
    "password": "pass-word-1",
    "vlans": "10",
    "vlan": "10",
    "text": "some text",
    "channel": "7",
    "maximum": "4",
}
PARSE_ERRORS = ("Invalid command", "Incomplete command", "Ambiguous command")


def _instance(command: Command) -> str | None:
    words: list[str] = []
    for tok in command.pattern:
        if isinstance(tok, Keyword):
            words.append(tok.word)
        elif tok.name in SAMPLES:
            words.append(SAMPLES[tok.name])
        else:
            return None  # do/show: exec commands, helped from the exec table
    if words[-1:] != ["5"] and "5" in words:  # "password 5 HASH" needs a real hash
        return None
    return " ".join(words)


def _session(mode: str) -> ConfigSession:
    view = MemoryView()
    cs = ConfigSession(view, mode=Mode.CONFIG)
    view.apply(cs.execute("vlan 10").ops)
    cs.execute("exit")
    if mode == "config-port-prof":
        view.apply(cs.execute("port-profile type ethernet up").ops)
    elif mode == "config-vlan":
        cs.execute("vlan 10")
    assert cs.mode.value == mode
    return cs


@pytest.mark.parametrize("mode", sorted(CONFIG_COMMANDS))
def test_every_helped_configuration_command_parses(mode: str) -> None:
    """What ? offers in a configuration mode is what the parser takes."""
    checked = 0
    for command in CONFIG_COMMANDS[mode]:
        line = _instance(command)
        if line is None:
            continue
        result = _session(mode).execute(line)
        assert not any(e in (result.error or "") for e in PARSE_ERRORS), (line, result.error)
        checked += 1
    assert checked >= 10 if mode != "config-vlan" else checked >= 8


def test_help_layout_is_nxos() -> None:
    assert help_text("exec", "sh") == "show  Show running system information\n"
    text = help_text("exec", "show version ")
    assert text == "  <CR>\n  |     Pipe command output to filter\n"
    lines = help_text("exec", "terminal length ")
    assert lines == "  <0-511>  Number of lines on screen (0 for no pausing)\n"
    assert help_text("exec", "show modle ") == (
        "show modle \n     ^\n% Invalid command at '^' marker.\n"
    )
    pipe = help_text("exec", "show version | ")
    assert "  include      Include lines that match\n" in pipe
    assert (
        help_text("exec", "show run | include ") == "  WORD  Search string (regular expression)\n"
    )


def test_help_in_configuration_modes() -> None:
    config = help_text("config", "")
    assert "  port-profile  Configure a port-profile\n" in config and "  end " in config
    assert "  WORD  Name (Max Size 80)\n" in help_text("config", "port-profile ")
    pp = help_text("config-port-prof", "switchport ")
    assert [ln.split()[0] for ln in pp.splitlines()] == [
        "access",
        "mode",
        "port-security",
        "trunk",
    ]
    assert help_text("config-port-prof", "description ") == "  LINE  Text\n"
    assert "<CR>" in help_text("config-vlan", "name db tier ")
    # do / show in a configuration mode are exec commands
    assert "version" in help_text("config-vlan", "do show ")
    assert "version" in help_text("config", "show ")


@pytest.mark.parametrize(
    ("mode", "line", "words"),
    [
        ("exec", "sh mod", ["module"]),
        ("exec", "conf", ["configure"]),
        ("exec", "show interface ", ["brief", "mgmt0", "status", "virtual"]),
        ("exec", "show version | j", ["json", "json-pretty"]),
        ("exec", "show modle ", []),
        ("config", "port", ["port-profile"]),
        ("config", "no ", ["port-profile", "username", "vlan"]),
        ("config-port-prof", "sw", ["switchport"]),
        ("config-port-prof", "switchport trunk allowed vlan ", ["add", "all", "remove"]),
        ("config-port-prof", "channel-group auto mode ", ["active", "on", "passive"]),
        ("config-vlan", "n", ["name", "no"]),
        ("config", "do sh", ["show"]),
    ],
)
def test_completion_in_every_mode(mode: str, line: str, words: list[str]) -> None:
    assert completions(mode, line) == words


def test_arguments_show_their_form() -> None:
    assert Argument("vlan").display == "<1-4094>"
    assert Argument("x", integer=True).display == "<number>"
