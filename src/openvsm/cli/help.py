"""Context help (``?``) and Tab completion for every CLI mode, from the grammar.

Exec mode reads the exec command table (``openvsm.cli.grammar.COMMANDS``).
Configuration modes read ``CONFIG_COMMANDS`` below: the configuration
language is parsed by ``openvsm.cfgmgr.configsession`` (hand-written, sans-IO),
and this table describes the same words for help and completion only; a
unit test runs every pattern of it through ``ConfigSession`` so the two
cannot drift apart. In a configuration mode ``do ...`` and ``show ...`` are
helped from the exec table, as they run there.

Theory of operation: the words before the cursor are matched against the
mode's patterns as the parser does (a unique prefix selects a keyword, an
exact keyword beats longer ones, an argument slot takes any word, a ``LINE``
slot takes the rest). Then:

- the last word is partial (no space before the cursor): ``?`` lists the
  keywords it begins (``word  help``, unindented, NX-OS style) and Tab
  completes it;
- otherwise ``?`` lists what may come next, indented: ``<CR>`` when the
  words already form a command, argument slots (``WORD``, ``<1-4094>``,
  ``LINE``), keywords, and ``|`` after a complete exec command;
- after ``|`` the output modifiers are helped and completed.

Nothing here raises on operator input: a word nothing accepts gives the
NX-OS caret error as help text and no completions.
"""

from __future__ import annotations

from dataclasses import dataclass

from openvsm.cli import grammar
from openvsm.cli.grammar import (
    ARG_HELP,
    FILTER_HELP,
    KEYWORD_HELP,
    ArgKind,
    Argument,
    Command,
    Keyword,
)
from openvsm.cli.tokens import AMBIGUOUS, INVALID
from openvsm.cli.tokens import words as split_words

EXEC_MODE = "exec"


def _c(spec: str) -> Command:
    return grammar._cmd(spec, "config")


def _pp_type(spec: str) -> tuple[Command, ...]:
    return (
        _c(spec.format("")),
        _c(spec.format("type vethernet ")),
        _c(spec.format("type ethernet ")),
    )


_MODE_EXITS: tuple[Command, ...] = (
    _c("end"),
    _c("exit"),
    _c("do <command:line>"),
    _c("show <command:line>"),
)

_CONFIG_LEVEL: tuple[Command, ...] = (
    *_pp_type("port-profile {}<name>"),
    *_pp_type("no port-profile {}<name>"),
    _c("vlan <vlans>"),
    _c("no vlan <vlans>"),
    *(
        _c(f"username <user> password {kind}<password>{role}")
        for kind in ("", "0 ", "5 ")
        for role in ("", " role network-admin", " role network-operator")
    ),
    _c("no username <user>"),
)

_PORT_PROFILE: tuple[Command, ...] = (
    _c("description <text:line>"),
    _c("no description"),
    _c("switchport mode access"),
    _c("switchport mode trunk"),
    _c("no switchport mode"),
    _c("switchport access vlan <vlan>"),
    _c("no switchport access vlan"),
    _c("switchport trunk allowed vlan <vlans>"),
    _c("switchport trunk allowed vlan add <vlans>"),
    _c("switchport trunk allowed vlan remove <vlans>"),
    _c("switchport trunk allowed vlan all"),
    _c("no switchport trunk allowed vlan"),
    _c("switchport port-security maximum <maximum:int>"),
    _c("no switchport port-security maximum"),
    _c("state enabled"),
    _c("no state enabled"),
    _c("shutdown"),
    _c("no shutdown"),
    _c("channel-group auto"),
    *(_c(f"channel-group auto mode {m}") for m in ("active", "passive", "on")),
    _c("channel-group <channel:int>"),
    *(_c(f"channel-group <channel:int> mode {m}") for m in ("active", "passive", "on")),
    _c("no channel-group"),
)

_VLAN: tuple[Command, ...] = (_c("name <text:line>"), _c("no name"))

# Per configuration mode: what may be typed there (a sub-mode also takes the
# configuration-level commands, which leave it, as on NX-OS).
CONFIG_COMMANDS: dict[str, tuple[Command, ...]] = {
    "config": (*_CONFIG_LEVEL, *_MODE_EXITS),
    "config-port-prof": (*_PORT_PROFILE, *_CONFIG_LEVEL, *_MODE_EXITS),
    "config-vlan": (*_VLAN, *_CONFIG_LEVEL, *_MODE_EXITS),
}

CONFIG_HELP: dict[str, str] = {
    "access": "Set access mode characteristics of the interface",
    "active": "Set channeling mode to ACTIVE",
    "add": "Add VLANs to the current list",
    "all": "All VLANs",
    "allowed": "Set allowed VLAN characteristics when interface is in trunking mode",
    "auto": "Pick a free channel-group number",
    "channel-group": "Configure port channel parameters",
    "description": "Enter description of maximum 80 characters",
    "do": "EXEC command",
    "enabled": "Enable the port-profile",
    "ethernet": "Ethernet (uplink) type",
    "maximum": "Max secure addresses",
    "mode": "Set mode",
    "name": "Ascii name of the VLAN",
    "network-admin": "System configured role",
    "network-operator": "System configured role (read-only)",
    "on": "Set channeling mode to ON",
    "passive": "Set channeling mode to PASSIVE",
    "password": "Password for the user",
    "port-profile": "Configure a port-profile",
    "port-security": "Configure port security",
    "remove": "Remove VLANs from the current list",
    "role": "Role which the user is to be assigned to",
    "shutdown": "Disable the ports of the port-profile",
    "state": "Configure the state of the port-profile",
    "switchport": "Configure switchport parameters",
    "trunk": "Set trunking mode characteristics of the interface",
    "type": "Port-profile type",
    "username": "Configure user information.",
    "vethernet": "Vethernet type",
    "vlan": "Vlan commands",
    "0": "Indicates that the password that follows should be in clear text",
    "5": "Indicates that the password that follows is encrypted",
}

_CONFIG_ARG_HELP: dict[str, str] = {
    "command": "EXEC command line",
    "password": "Password (at least 4 characters)",
    "text": "Text",
    "vlans": "VLAN list, e.g. 10,20-25",
    "vlan": "VLAN ID",
    "channel": "Channel group number",
    "maximum": "Maximum number of secure MAC addresses",
}


@dataclass(slots=True)
class _Cand:
    command: Command
    pos: int = 0
    line_taken: bool = False  # a LINE slot at ``pos`` has taken at least one word

    @property
    def complete(self) -> bool:
        pattern = self.command.pattern
        return self.pos >= len(pattern) or (self.line_taken and self.pos == len(pattern) - 1)

    def token(self) -> Keyword | Argument | None:
        pattern = self.command.pattern
        return pattern[self.pos] if self.pos < len(pattern) else None


def _step(cands: list[_Cand], word: str) -> list[_Cand] | str:
    """The candidates that take ``word`` (advanced), or an error message."""
    lowered = word.lower()
    exact: list[_Cand] = []
    prefixed: list[_Cand] = []
    by_arg: list[_Cand] = []
    for cand in cands:
        tok = cand.token()
        if tok is None:
            continue
        if isinstance(tok, Keyword):
            if tok.word == lowered:
                exact.append(_Cand(cand.command, cand.pos + 1))
            elif tok.word.startswith(lowered):
                prefixed.append(_Cand(cand.command, cand.pos + 1))
        elif tok.kind is ArgKind.LINE:
            by_arg.append(_Cand(cand.command, cand.pos, line_taken=True))
        elif tok.accepts(word):
            by_arg.append(_Cand(cand.command, cand.pos + 1))
    if exact:
        return exact
    if prefixed:
        if len({c.command.pattern[c.pos - 1] for c in prefixed}) > 1:
            return AMBIGUOUS
        return prefixed
    if by_arg:
        return by_arg
    return INVALID


def _scope(mode: str, line: str) -> tuple[tuple[Command, ...], int, bool]:
    """The command table for ``line`` in ``mode``, where its words start, and
    whether it is an exec command (pipes allowed)."""
    if mode == EXEC_MODE:
        return grammar.COMMANDS, 0, True
    words = split_words(line)
    if words and (len(words) > 1 or line[-1:].isspace()):
        first = words[0][1].lower()
        if first == "do":
            start = words[1][0] if len(words) > 1 else len(line)
            return grammar.COMMANDS, start, True
        if first == "show":
            return grammar.COMMANDS, words[0][0], True
    return CONFIG_COMMANDS.get(mode, CONFIG_COMMANDS["config"]), 0, False


def _describe(tok: Keyword | Argument, exec_table: bool) -> tuple[str, str]:
    if isinstance(tok, Keyword):
        help_text = KEYWORD_HELP.get(tok.word, "") if exec_table else ""
        help_text = help_text or CONFIG_HELP.get(tok.word, "") or KEYWORD_HELP.get(tok.word, "")
        return tok.word, help_text
    text = ARG_HELP.get(tok.name, "") if exec_table else ""
    return tok.display, text or _CONFIG_ARG_HELP.get(tok.name, "") or ARG_HELP.get(tok.name, "")


def _table(rows: list[tuple[str, str]], indent: str) -> str:
    if not rows:
        return ""
    width = max(len(word) for word, _ in rows)
    return "".join(
        f"{indent}{word.ljust(width)}  {text}".rstrip() + "\n" if text else f"{indent}{word}\n"
        for word, text in rows
    )


def _caret(line: str, column: int, message: str) -> str:
    return f"{line}\n{' ' * column}^\n{message}\n"


@dataclass(frozen=True, slots=True)
class _Position:
    """Where the cursor stands: the live candidates and the partial word."""

    cands: list[_Cand]
    partial: str
    exec_table: bool


def _position(mode: str, line: str) -> _Position | str:
    table, start, exec_table = _scope(mode, line)
    words = split_words(line, start)
    partial = ""
    if words and not line[-1:].isspace():
        partial = words.pop()[1]
    cands = [_Cand(c) for c in table]
    for col, word in words:
        stepped = _step(cands, word)
        if isinstance(stepped, str):
            return _caret(line, col, stepped)
        cands = stepped
    return _Position(cands, partial, exec_table)


def _next_tokens(pos: _Position) -> list[Keyword | Argument]:
    seen: list[Keyword | Argument] = []
    for cand in pos.cands:
        tok = cand.token()
        if tok is not None and tok not in seen:
            seen.append(tok)
    return seen


def _last_bar(line: str, bar: int) -> int:
    last = bar
    while (nxt := grammar._next_bar(line, last)) >= 0:
        last = nxt
    return last


def _pipe_help(line: str, bar: int) -> str:
    last = _last_bar(line, bar)
    tail = line[last + 1 :]
    words = split_words(tail)
    if not words or (len(words) == 1 and not tail[-1:].isspace()):
        partial = words[0][1].lower() if words else ""
        rows = [(m, FILTER_HELP[m]) for m in sorted(FILTER_HELP) if m.startswith(partial)]
        if not rows:
            return _caret(line, last + 1 + words[0][0], INVALID)
        return _table(rows, "" if partial else "  ")
    if words[0][1].lower() in ("include", "exclude", "begin") or any(
        m.startswith(words[0][1].lower()) and m in ("include", "exclude", "begin")
        for m in FILTER_HELP
    ):
        return _table([("WORD", "Search string (regular expression)")], "  ")
    return _table([("<CR>", ""), ("|", "Pipe command output to filter")], "  ")


def help_text(mode: str, line: str) -> str:
    """What ``?`` typed after ``line`` shows in ``mode``."""
    bar = line.find("|")
    _, start, exec_table = _scope(mode, line)
    if bar >= 0 and exec_table:
        return _pipe_help(line, bar)
    pos = _position(mode, line)
    if isinstance(pos, str):
        return pos
    rows: list[tuple[str, str]]
    if pos.partial:
        lowered = pos.partial.lower()
        rows = [
            _describe(tok, pos.exec_table)
            for tok in _next_tokens(pos)
            if isinstance(tok, Keyword) and tok.word.startswith(lowered)
        ]
        if not rows:
            args = [
                t for t in _next_tokens(pos) if isinstance(t, Argument) and t.accepts(pos.partial)
            ]
            rows = [_describe(tok, pos.exec_table) for tok in args[:1]]
        if not rows:
            return _caret(line, len(line) - len(pos.partial), INVALID)
        return _table(sorted(rows), "")
    rows = []
    if any(c.complete for c in pos.cands) and (start < len(line) or split_words(line, start)):
        rows.append(("<CR>", ""))
    tokens = _next_tokens(pos)
    rows += [_describe(t, pos.exec_table) for t in tokens if isinstance(t, Argument)]
    rows += sorted(_describe(t, pos.exec_table) for t in tokens if isinstance(t, Keyword))
    if pos.exec_table and any(c.complete for c in pos.cands):
        rows.append(("|", "Pipe command output to filter"))
    if not rows:
        return _caret(line, len(line.rstrip()) + 1, INVALID)
    return _table(rows, "  ")


def completions(mode: str, line: str) -> list[str]:
    """Words that complete the partial last word of ``line`` (or may follow it)."""
    bar = line.find("|")
    _, _, exec_table = _scope(mode, line)
    if bar >= 0 and exec_table:
        tail = line[_last_bar(line, bar) + 1 :]
        words = split_words(tail)
        if len(words) > 1 or (words and tail[-1:].isspace()):
            return []
        partial = words[0][1].lower() if words else ""
        return sorted(m for m in FILTER_HELP if m.startswith(partial))
    pos = _position(mode, line)
    if isinstance(pos, str):
        return []
    lowered = pos.partial.lower()
    return sorted(
        {t.word for t in _next_tokens(pos) if isinstance(t, Keyword) and t.word.startswith(lowered)}
    )


__all__ = ["CONFIG_COMMANDS", "completions", "help_text"]
