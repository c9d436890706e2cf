"""Exec-mode command table and parser (NX-OS style).

Owns the words an operator may type at the ``switch#`` prompt: every exec
command is a token pattern bound to a handler id. Configuration-mode lines
(``port-profile``, ``vlan``, ``username`` ...) are not parsed here; the CLI
server routes them to the configuration session.

Theory of operation: a line is split at ``|`` into the command and its
output modifier (``json`` / ``json-pretty``). The command's words are matched
left to right against all patterns still alive. At each position a word
selects a keyword when it is the keyword itself or a unique prefix of the
keywords possible there (``sh sys red st``); an exact keyword beats a longer
one it prefixes; two or more keywords it prefixes make it ambiguous. Where
no keyword fits, an argument slot (``<name>``, ``<n:int>``) takes the word.
The first word nothing accepts gets the caret. Running out of words before a
pattern ends is an incomplete command.

Errors are NX-OS's, with the input echoed and a caret under the failing
word::

    show modle
         ^
    % Invalid command at '^' marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INVALID = "% Invalid command at '^' marker."
AMBIGUOUS = "% Ambiguous command at '^' marker."
INCOMPLETE = "% Incomplete command"

# Pipe modifiers accepted after ``|``.
_MODIFIERS = ("json", "json-pretty")


@dataclass(frozen=True, slots=True)
class Keyword:
    word: str


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    integer: bool = False

    def accepts(self, word: str) -> bool:
        return word.isdigit() if self.integer else True


Token = Keyword | Argument


@dataclass(frozen=True, slots=True)
class Command:
    """One exec command: its pattern, handler id and constant arguments."""

    pattern: tuple[Token, ...]
    handler: str
    fixed_args: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return " ".join(t.word if isinstance(t, Keyword) else f"<{t.name}>" for t in self.pattern)


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    handler: str
    args: dict[str, str] = field(default_factory=dict)
    json: bool = False
    pretty: bool = False


@dataclass(frozen=True, slots=True)
class CliError:
    """A parse error; ``text`` is the full NX-OS answer (echo, caret, message)."""

    text: str


def _pattern(spec: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    for word in spec.split():
        if word.startswith("<") and word.endswith(">"):
            name, _, kind = word[1:-1].partition(":")
            tokens.append(Argument(name, integer=kind == "int"))
        else:
            tokens.append(Keyword(word))
    return tuple(tokens)


def _cmd(spec: str, handler: str, **fixed: str) -> Command:
    return Command(_pattern(spec), handler, tuple(fixed.items()))


# Handlers the CLI server implements itself (session and mode changes).
BUILTIN_HANDLERS = frozenset({"configure_terminal", "exit", "end", "terminal"})

_AA = "show system internal active-active"

COMMANDS: tuple[Command, ...] = (
    # redundancy (seed)
    _cmd("show system redundancy status", "show_redundancy_status"),
    _cmd("show system internal redundancy trace", "show_redundancy_trace"),
    _cmd("show system internal redundancy counters", "show_redundancy_counters"),
    _cmd(
        f"{_AA} accounting logs",
        "show_activeactive_accounting_logs",
        which="accounting",
    ),
    _cmd(
        f"{_AA} redundancy traces",
        "show_activeactive_redundancy_traces",
        which="traces",
    ),
    _cmd(
        f"{_AA} remote accounting logs",
        "show_activeactive_remote_accounting_logs",
        which="remote accounting",
    ),
    _cmd(
        f"{_AA} remote redundancy traces",
        "show_activeactive_remote_redundancy_traces",
        which="remote traces",
    ),
    _cmd(
        "clear active-active accounting logs",
        "clear_activeactive_accounting_logs",
        which="accounting",
    ),
    _cmd(
        "clear active-active redundancy traces",
        "clear_activeactive_redundancy_traces",
        which="traces",
    ),
    _cmd(
        "clear active-active remote accounting logs",
        "clear_activeactive_remote_accounting_logs",
        which="remote accounting",
    ),
    _cmd(
        "clear active-active remote redundancy traces",
        "clear_activeactive_remote_redundancy_traces",
        which="remote traces",
    ),
    _cmd("clear system redundancy peer-mac", "clear_peer_mac"),
    _cmd("system switchover", "system_switchover"),
    _cmd("reload", "reload"),
    _cmd("restart service <service>", "restart_service"),
    _cmd("show system internal sysmgr services", "show_sysmgr_services"),
    # modules and the VSM/VEM domain
    _cmd("show module", "show_module"),
    _cmd("show module vem counters", "show_module_vem_counters"),
    _cmd("show svs domain", "show_svs_domain"),
    _cmd("show svs neighbors", "show_svs_neighbors"),
    _cmd("show interface virtual", "show_interface_virtual"),
    _cmd("show port-channel summary", "show_port_channel_summary"),
    _cmd("show lacp neighbor", "show_lacp_neighbor"),
    _cmd("show lacp counters", "show_lacp_counters"),
    # configuration
    _cmd("show port-profile", "show_port_profile"),
    _cmd("show port-profile name <name>", "show_port_profile"),
    _cmd("show running-config", "show_running_config"),
    _cmd("show accounting log", "show_accounting_log"),
    _cmd("show openstack sync", "show_openstack_sync"),
    _cmd("copy running-config startup-config", "copy_running_startup"),
    _cmd("configure", "configure_terminal"),
    _cmd("configure terminal", "configure_terminal"),
    # system
    _cmd("show version", "show_version"),
    _cmd("show hostname", "show_hostname"),
    # session (built into the server)
    _cmd("exit", "exit"),
    _cmd("end", "end"),
    _cmd("terminal length <lines:int>", "terminal"),
    _cmd("terminal width <columns:int>", "terminal"),
)

# Every handler id a node may register (the server answers "not available"
# for one of these that nobody registered).
HANDLERS: frozenset[str] = frozenset(c.handler for c in COMMANDS)

_WORD = re.compile(r"\S+")
_SEPARATOR = re.compile(r"(?:^|\s);(?=\s|$)")


def split_commands(text: str) -> list[str]:
    """Split ``a ; b ; c`` into its commands (NX-OS's ``;`` is a word of its own).

    A ``;`` inside a word (``description a;b``) does not split. Empty pieces
    are dropped; each piece is stripped.
    """
    pieces = _SEPARATOR.split(text.replace("\r", " ").replace("\n", " ; "))
    return [p.strip() for p in pieces if p.strip()]


def _caret(line: str, column: int, message: str) -> CliError:
    return CliError(f"{line}\n{' ' * column}^\n{message}\n")


def _words(line: str, start: int = 0, end: int | None = None) -> list[tuple[int, str]]:
    stop = len(line) if end is None else end
    return [(m.start(), m.group()) for m in _WORD.finditer(line, start, stop)]


@dataclass(slots=True)
class _Candidate:
    command: Command
    args: dict[str, str]


def _match(
    line: str, words: list[tuple[int, str]], commands: tuple[Command, ...]
) -> ParsedCommand | CliError | list[_Candidate]:
    """Match ``words`` against ``commands``; the survivors, or an error."""
    alive = [_Candidate(c, {}) for c in commands]
    for i, (col, word) in enumerate(words):
        here = [c for c in alive if len(c.command.pattern) > i]
        lowered = word.lower()
        exact: list[_Candidate] = []
        prefixed: list[_Candidate] = []
        by_arg: list[_Candidate] = []
        for cand in here:
            tok = cand.command.pattern[i]
            if isinstance(tok, Keyword):
                if tok.word == lowered:
                    exact.append(cand)
                elif tok.word.startswith(lowered):
                    prefixed.append(cand)
            elif tok.accepts(word):
                by_arg.append(_Candidate(cand.command, {**cand.args, tok.name: word}))
        if exact:
            alive = exact
        elif prefixed:
            keywords = {c.command.pattern[i] for c in prefixed}
            if len(keywords) > 1:
                return _caret(line, col, AMBIGUOUS)
            alive = prefixed
        elif by_arg:
            alive = by_arg
        else:
            return _caret(line, col, INVALID)
    return alive


def _incomplete(line: str) -> CliError:
    return _caret(line, len(line.rstrip()) + 1, INCOMPLETE)


def parse(line: str) -> ParsedCommand | CliError:
    """Parse one exec-mode command line (no ``;``)."""
    line = line.rstrip("\r\n")
    bar = line.find("|")
    head_end = len(line) if bar < 0 else bar
    words = _words(line, 0, head_end)
    if not words:
        if bar >= 0:
            return _caret(line, bar, INVALID)
        return _incomplete(line)
    matched = _match(line, words, COMMANDS)
    if not isinstance(matched, list):
        return matched
    complete = [c for c in matched if len(c.command.pattern) == len(words)]
    if not complete:
        return _caret(line, len(line[:head_end].rstrip()) + 1, INCOMPLETE)
    found = complete[0]
    as_json = pretty = False
    if bar >= 0:
        modifier = _words(line, bar + 1)
        if not modifier:
            return _incomplete(line)
        col, word = modifier[0]
        lowered = word.lower()
        options = [m for m in _MODIFIERS if m == lowered] or [
            m for m in _MODIFIERS if m.startswith(lowered)
        ]
        if not options:
            return _caret(line, col, INVALID)
        if len(options) > 1:
            return _caret(line, col, AMBIGUOUS)
        if len(modifier) > 1:
            return _caret(line, modifier[1][0], INVALID)
        as_json, pretty = True, options[0] == "json-pretty"
    args = dict(found.command.fixed_args)
    args.update(found.args)
    return ParsedCommand(found.command.handler, args, as_json, pretty)


def complete(line: str) -> list[str]:
    """Keywords that may follow ``line`` (or complete its last, partial word).

    For interactive completion: ``"sh sys"`` -> ``["system"]``,
    ``"show "`` -> every keyword after ``show``.
    """
    words = _words(line.split("|", 1)[0])
    partial = ""
    if words and not line[-1:].isspace():
        partial = words.pop()[1].lower()
    matched = _match(line, words, COMMANDS)
    if not isinstance(matched, list):
        return []
    pos = len(words)
    options: list[str] = []
    for cand in matched:
        if len(cand.command.pattern) > pos:
            tok = cand.command.pattern[pos]
            if (
                isinstance(tok, Keyword)
                and tok.word.startswith(partial)
                and tok.word not in options
            ):
                options.append(tok.word)
    return sorted(options)


def exec_line_in_config(line: str) -> str | None:
    """The exec command a configuration-mode line runs, if any.

    NX-OS runs ``do COMMAND`` and any ``show ...`` from every configuration
    mode; everything else belongs to the configuration session. Only the full
    words ``do`` and ``show`` count here, so that an abbreviation such as
    ``sh`` stays free for the mode's own commands (``shutdown``).
    """
    words = line.split(None, 1)
    if not words:
        return None
    first = words[0].lower()
    if first == "do":
        return words[1] if len(words) > 1 else ""
    if first == "show":
        return line.strip()
    return None
