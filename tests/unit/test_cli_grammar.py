"""Exec-mode grammar: abbreviations, arguments, carets, json suffix, ``;``."""

from __future__ import annotations

import pytest

from openvsm.cli.grammar import (
    COMMANDS,
    HANDLERS,
    CliError,
    ParsedCommand,
    complete,
    exec_line_in_config,
    parse,
    split_commands,
)
from openvsm.cli.tokens import AMBIGUOUS, INCOMPLETE, INVALID


def ok(line: str) -> ParsedCommand:
    result = parse(line)
    assert isinstance(result, ParsedCommand), result
    return result


def err(line: str) -> str:
    result = parse(line)
    assert isinstance(result, CliError), result
    return result.text


@pytest.mark.parametrize(
    ("line", "handler"),
    [
        ("show system redundancy status", "show_redundancy_status"),
        ("sh sys red st", "show_redundancy_status"),
        ("SHOW System Redundancy STATUS", "show_redundancy_status"),
        ("show system internal redundancy trace", "show_redundancy_trace"),
        ("sh sys int red tr", "show_redundancy_trace"),
        ("sh sys int red co", "show_redundancy_counters"),
        ("show system internal sysmgr services", "show_sysmgr_services"),
        ("show module", "show_module"),
        ("sh mod", "show_module"),
        ("sh mod vem co", "show_module_vem_counters"),
        ("show svs domain", "show_svs_domain"),
        ("sh svs nei", "show_svs_neighbors"),
        ("sh int virt", "show_interface_virtual"),
        ("show port-profile", "show_port_profile"),
        ("sh running", "show_running_config"),
        ("sh acc log", "show_accounting_log"),
        ("sh opens sync", "show_openstack_sync"),
        ("sh port-c sum", "show_port_channel_summary"),
        ("sh lacp nei", "show_lacp_neighbor"),
        ("sh lacp cou", "show_lacp_counters"),
        ("system switchover", "system_switchover"),
        ("reload", "reload"),
        ("clear system redundancy peer-mac", "clear_peer_mac"),
        ("conf t", "configure_terminal"),
        ("configure", "configure_terminal"),
        ("copy run start", "copy_running_startup"),
        ("show version", "show_version"),
        ("sh hostn", "show_hostname"),
        ("  show   module  ", "show_module"),
    ],
)
def test_commands_and_abbreviations(line: str, handler: str) -> None:
    parsed = ok(line)
    assert parsed.handler == handler
    assert parsed.json is False


# ``which`` uses hamgr's names for its active-active stores (op activeactive).
AA_STORES = [
    ("accounting logs", "accounting_logs", "accounting"),
    ("redundancy traces", "redundancy_traces", "traces"),
    ("remote accounting logs", "remote_accounting_logs", "remote accounting"),
    ("remote redundancy traces", "remote_redundancy_traces", "remote traces"),
]


@pytest.mark.parametrize(("words", "suffix", "which"), AA_STORES)
def test_active_active_show_commands_carry_which(words: str, suffix: str, which: str) -> None:
    parsed = ok(f"show system internal active-active {words}")
    assert parsed.handler == f"show_activeactive_{suffix}"
    assert parsed.args == {"which": which}


def test_active_active_abbreviated() -> None:
    assert ok("sh sys int act rem acc log").args == {"which": "remote accounting"}


@pytest.mark.parametrize(("words", "suffix", "which"), AA_STORES)
def test_active_active_clear_commands(words: str, suffix: str, which: str) -> None:
    parsed = ok(f"clear active-active {words}")
    assert parsed.handler == f"clear_activeactive_{suffix}"
    assert parsed.args == {"which": which}


def test_arguments_keep_their_case() -> None:
    assert ok("show port-profile name Web-Tier").args == {"name": "Web-Tier"}
    assert ok("sh port-p n web").args == {"name": "web"}
    assert ok("restart service hamgr").args == {"service": "hamgr"}
    assert ok("terminal length 0").handler == "terminal"


def test_integer_argument_rejects_words() -> None:
    assert (
        err("terminal length many") == "terminal length many\n                ^\n" + INVALID + "\n"
    )


def test_invalid_word_gets_the_caret() -> None:
    assert err("show modle") == "show modle\n     ^\n% Invalid command at '^' marker.\n"
    assert err("sh sys red bogus") == "sh sys red bogus\n           ^\n" + INVALID + "\n"
    assert err("frobnicate") == "frobnicate\n^\n" + INVALID + "\n"


def test_extra_word_after_a_complete_command_is_invalid() -> None:
    assert err("show module extra") == "show module extra\n            ^\n" + INVALID + "\n"
    assert err("reload now") == "reload now\n       ^\n" + INVALID + "\n"


def test_incomplete_command() -> None:
    assert err("show") == "show\n     ^\n% Incomplete command\n"
    assert err("sh sys red") == "sh sys red\n           ^\n" + INCOMPLETE + "\n"
    assert err("restart service") == "restart service\n                ^\n" + INCOMPLETE + "\n"
    assert err("show module vem") == "show module vem\n                ^\n" + INCOMPLETE + "\n"
    assert err("") == "\n ^\n" + INCOMPLETE + "\n"


def test_ambiguous_prefix() -> None:
    assert err("sh port") == "sh port\n   ^\n% Ambiguous command at '^' marker.\n"
    assert err("co t") == "co t\n^\n" + AMBIGUOUS + "\n"
    assert err("s") == "s\n^\n" + AMBIGUOUS + "\n"


def test_exact_keyword_beats_a_longer_one() -> None:
    # "configure" is both a command and a prefix of nothing else; "end"/"exit"
    # share "e": the exact word wins, the prefix is ambiguous.
    assert ok("end").handler == "end"
    assert ok("exit").handler == "exit"
    assert isinstance(parse("e"), CliError)


def test_json_suffix() -> None:
    parsed = ok("show module | json")
    assert (parsed.handler, parsed.json, parsed.pretty) == ("show_module", True, False)
    assert ok("sh sys red st|json").json is True
    pretty = ok("show module | json-pretty")
    assert pretty.json and pretty.pretty
    assert ok("show module | json-p").pretty
    assert ok("sh port-p name web | json").args == {"name": "web"}


def test_bad_pipe_modifiers() -> None:
    assert err("show module | xml") == "show module | xml\n              ^\n" + INVALID + "\n"
    assert err("show module | js") == "show module | js\n              ^\n" + AMBIGUOUS + "\n"
    assert err("show module |") == "show module |\n              ^\n" + INCOMPLETE + "\n"
    assert (
        err("show module | json x")
        == "show module | json x\n                   ^\n" + INVALID + "\n"
    )
    assert err("| json") == "| json\n^\n" + INVALID + "\n"
    assert err("show | json") == "show | json\n     ^\n" + INCOMPLETE + "\n"


def test_split_commands() -> None:
    assert split_commands("configure terminal ; vlan 10 ; end") == [
        "configure terminal",
        "vlan 10",
        "end",
    ]
    assert split_commands("show module") == ["show module"]
    assert split_commands(" ; ; show module ;") == ["show module"]
    # a ";" inside a word is text, not a separator
    assert split_commands("description a;b ; end") == ["description a;b", "end"]
    assert split_commands("show module\nshow svs domain\n") == ["show module", "show svs domain"]
    assert split_commands("") == []


def test_every_command_parses_from_its_own_text() -> None:
    for command in COMMANDS:
        line = " ".join("7" if word.startswith("<") else word for word in command.text.split())
        assert ok(line).handler == command.handler
    assert "show_redundancy_status" in HANDLERS


def test_completion() -> None:
    assert complete("sh sys") == ["system"]
    assert "module" in complete("show ")
    assert complete("show system internal a") == ["active-active"]
    assert complete("show module ") == ["vem"]
    assert complete("bogus ") == []


def test_exec_lines_in_config_mode() -> None:
    assert exec_line_in_config("do show module") == "show module"
    assert exec_line_in_config("show running-config") == "show running-config"
    assert exec_line_in_config("sh run") is None  # "sh" may be "shutdown" there
    assert exec_line_in_config("vlan 10") is None
    assert exec_line_in_config("") is None


def test_output_modifiers_chain_and_keep_regex_alternation() -> None:
    from openvsm.cli.grammar import Filter, FilterKind, apply_filters

    parsed = ok('sh run | inc vlan|port-profile | ex "name db" | count')
    assert parsed.filters == (
        Filter(FilterKind.INCLUDE, "vlan|port-profile"),
        Filter(FilterKind.EXCLUDE, "name db"),
        Filter(FilterKind.COUNT),
    )
    assert not parsed.json
    text = "vlan 10\n  name db tier\nport-profile web\nusername bob\n"
    assert apply_filters(text, parsed.filters) == "2\n"
    begin = ok("show running-config | begin port").filters
    assert apply_filters(text, begin) == "port-profile web\nusername bob\n"
    assert ok("show version | json-pretty").pretty
    assert ok("show version | no-more").filters == (Filter(FilterKind.NO_MORE),)


def test_bad_output_modifiers_are_caret_errors() -> None:
    assert "% Incomplete command" in err("show version | include")
    assert "% Invalid command at '^' marker." in err("show version | grep x")
    assert "% Invalid regular expression" in err("show version | include (")
    assert "json must be the first" in err("show version | include x | json")
    assert "% Ambiguous command" in err("show version | js")
