"""Exec-mode command table and parser (NX-OS style).

Owns the words an operator may type at the ``switch#`` prompt: every exec
command is a token pattern bound to a handler id. Configuration-mode lines
(``port-profile``, ``vlan``, ``username`` ...) are not parsed here; the CLI
server routes them to the configuration session.

Theory of operation: a line is split at ``|`` into the command and its
output modifiers (``json``, ``json-pretty``, ``include RE``, ``exclude RE``,
``begin RE``, ``count``, ``no-more``; several may follow each other, ``json``
first). The command's words are matched
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

import enum
import re
from dataclasses import dataclass, field

from openvsm.cli.tokens import AMBIGUOUS, INCOMPLETE, INVALID, caret
from openvsm.cli.tokens import words as split_words


class FilterKind(enum.Enum):
    """An output modifier after ``|``; the text ones apply line by line."""

    JSON = "json"
    JSON_PRETTY = "json-pretty"
    INCLUDE = "include"
    EXCLUDE = "exclude"
    BEGIN = "begin"
    COUNT = "count"
    NO_MORE = "no-more"


# Modifiers that take a regular expression (the rest of their ``|`` segment).
_PATTERN_FILTERS = frozenset({FilterKind.INCLUDE, FilterKind.EXCLUDE, FilterKind.BEGIN})
_MODIFIERS = tuple(k.value for k in FilterKind)
FILTER_HELP: dict[str, str] = {
    "begin": "Begin with the line that matches",
    "count": "Count number of lines",
    "exclude": "Exclude lines that match",
    "include": "Include lines that match",
    "json": "Output in json format",
    "json-pretty": "Output in json pretty print format",
    "no-more": "Turn-off pagination for command output",
}


@dataclass(frozen=True, slots=True)
class Filter:
    kind: FilterKind
    pattern: str = ""


def apply_filters(text: str, filters: tuple[Filter, ...]) -> str:
    """``text`` through the text modifiers in order (``json`` ones are the caller's)."""
    for f in filters:
        if f.kind in (FilterKind.JSON, FilterKind.JSON_PRETTY, FilterKind.NO_MORE):
            continue
        lines = text.splitlines()
        if f.kind is FilterKind.COUNT:
            text = f"{len(lines)}\n"
            continue
        rx = re.compile(f.pattern)
        if f.kind is FilterKind.INCLUDE:
            kept = [ln for ln in lines if rx.search(ln)]
        elif f.kind is FilterKind.EXCLUDE:
            kept = [ln for ln in lines if not rx.search(ln)]
        else:
            start = next((i for i, ln in enumerate(lines) if rx.search(ln)), len(lines))
            kept = lines[start:]
        text = "".join(ln + "\n" for ln in kept)
    return text


@dataclass(frozen=True, slots=True)
class Keyword:
    word: str


class ArgKind(enum.Enum):
    WORD = "word"
    INT = "int"
    LINE = "line"  # the rest of the line (free text)


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    integer: bool = False
    kind: ArgKind = ArgKind.WORD

    def accepts(self, word: str) -> bool:
        return word.isdigit() if self.integer else True

    @property
    def display(self) -> str:
        """How ``?`` shows the slot (NX-OS: ``WORD``, ``<0-511>``, ``LINE``)."""
        if self.kind is ArgKind.LINE:
            return "LINE"
        return ARG_DISPLAY.get(self.name, "<number>" if self.integer else "WORD")


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
    filters: tuple[Filter, ...] = ()
    text: str = ""  # the command as typed, without its modifiers
    canonical: str = ""  # its keywords in full, with the arguments (accounting)


@dataclass(frozen=True, slots=True)
class CliError:
    """A parse error; ``text`` is the full NX-OS answer (echo, caret, message)."""

    text: str


def _pattern(spec: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    for word in spec.split():
        if word.startswith("<") and word.endswith(">"):
            name, _, kind = word[1:-1].partition(":")
            arg_kind = ArgKind(kind) if kind else ArgKind.WORD
            tokens.append(Argument(name, integer=kind == "int", kind=arg_kind))
        else:
            tokens.append(Keyword(word))
    return tuple(tokens)


def _cmd(spec: str, handler: str, **fixed: str) -> Command:
    return Command(_pattern(spec), handler, tuple(fixed.items()))


# Handlers the CLI server implements itself (session and mode changes).
BUILTIN_HANDLERS = frozenset({"configure_terminal", "exit", "end", "terminal", "show_terminal"})

# Handlers whose change is committed (and so accounted) by the store itself.
SELF_ACCOUNTED = frozenset(
    {"checkpoint", "no_checkpoint", "rollback", "checkpoint_file", "rollback_file", "delete_file"}
)

# Handlers that change the system: refused to a read-only role (``openvsm.roles``).
WRITE_HANDLERS = frozenset(
    {
        "configure_terminal",
        "system_switchover",
        "reload",
        "restart_service",
        "clear_peer_mac",
        "clear_activeactive_accounting_logs",
        "clear_activeactive_redundancy_traces",
        "clear_activeactive_remote_accounting_logs",
        "clear_activeactive_remote_redundancy_traces",
        "copy_running_startup",
        "checkpoint",
        "no_checkpoint",
        "rollback",
        "checkpoint_file",
        "rollback_file",
        "delete_file",
    }
)

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
    _cmd("show interface", "show_interface"),
    _cmd("show interface virtual", "show_interface_virtual"),
    _cmd("show interface brief", "show_interface_brief"),
    _cmd("show interface status", "show_interface_status"),
    _cmd("show interface mgmt0", "show_interface_mgmt0"),
    _cmd("show port-channel summary", "show_port_channel_summary"),
    _cmd("show lacp neighbor", "show_lacp_neighbor"),
    _cmd("show lacp counters", "show_lacp_counters"),
    _cmd("show vlan", "show_vlan_brief"),
    _cmd("show vlan brief", "show_vlan_brief"),
    # configuration
    _cmd("show port-profile", "show_port_profile"),
    _cmd("show port-profile name <name>", "show_port_profile"),
    _cmd("show running-config", "show_running_config"),
    _cmd("show startup-config", "show_startup_config"),
    _cmd("show accounting log", "show_accounting_log"),
    _cmd("show openstack sync", "show_openstack_sync"),
    _cmd("copy running-config startup-config", "copy_running_startup"),
    _cmd("checkpoint <checkpoint>", "checkpoint"),
    _cmd("no checkpoint <checkpoint>", "no_checkpoint"),
    _cmd("show checkpoint summary", "show_checkpoint_summary"),
    _cmd("rollback running-config checkpoint <checkpoint>", "rollback"),
    _cmd("checkpoint file <file>", "checkpoint_file"),
    _cmd("rollback running-config file <file>", "rollback_file"),
    _cmd("show file <file>", "show_file"),
    _cmd("delete <file>", "delete_file"),
    _cmd("configure", "configure_terminal"),
    _cmd("configure terminal", "configure_terminal"),
    # system
    _cmd("show version", "show_version"),
    _cmd("show hostname", "show_hostname"),
    _cmd("show clock", "show_clock"),
    _cmd("show users", "show_users"),
    _cmd("show user-account", "show_user_account"),
    _cmd("show user-account <user>", "show_user_account"),
    _cmd("show inventory", "show_inventory"),
    _cmd("show hosts", "show_hosts"),
    # session (built into the server)
    _cmd("exit", "exit"),
    _cmd("end", "end"),
    _cmd("terminal length <lines:int>", "terminal", setting="length"),
    _cmd("terminal width <columns:int>", "terminal", setting="width"),
    _cmd("terminal dont-ask", "terminal", setting="dont-ask"),
    _cmd("terminal no dont-ask", "terminal", setting="no-dont-ask"),
    _cmd("no terminal dont-ask", "terminal", setting="no-dont-ask"),
    _cmd("show terminal", "show_terminal"),
)

# Help texts of keywords (``?``); a keyword without one shows none.
KEYWORD_HELP: dict[str, str] = {
    "accounting": "Show accounting information",
    "active-active": "Split-brain (active-active) logs and traces",
    "brief": "Show brief information",
    "checkpoint": "Create a checkpoint of the running configuration",
    "clear": "Reset functions",
    "clock": "Display current date",
    "configure": "Enter configuration mode",
    "copy": "Copy from one file to another",
    "counters": "Show counters",
    "dont-ask": "Don't ask for confirmation",
    "end": "Go to exec mode",
    "exit": "Exit from command interpreter",
    "hostname": "Display hostname",
    "hosts": "Show the host name resolution settings",
    "file": "A checkpoint file",
    "delete": "Delete a file",
    "interface": "Display interface information",
    "inventory": "Show physical inventory",
    "lacp": "LACP information",
    "length": "Set number of lines on a screen",
    "mgmt0": "Management interface",
    "module": "Show module information",
    "no": "Negate a command or set its defaults",
    "port-channel": "Port-channel information",
    "port-profile": "Show port-profile information",
    "redundancy": "Redundancy information",
    "reload": "Reboot this supervisor",
    "restart": "Restart a service",
    "rollback": "Rollback configuration",
    "running-config": "Current operating configuration",
    "show": "Show running system information",
    "startup-config": "Contents of startup configuration",
    "status": "Show status",
    "summary": "Summary information",
    "svs": "SVS (VSM/VEM domain) information",
    "switchover": "Switch over to the standby supervisor",
    "system": "System management commands",
    "terminal": "Set terminal line parameters",
    "user-account": "Show the user accounts configured on this switch",
    "users": "Show the current users logged in the system",
    "version": "Show the software and hardware version",
    "openstack": "OpenStack (Neutron driver) information",
    "sync": "Synchronisation state",
    "neighbor": "Neighbor information",
    "virtual": "Virtual (vEthernet) interfaces",
    "domain": "Domain information",
    "neighbors": "Neighbor information",
    "internal": "Internal information",
    "log": "Log information",
    "logs": "Logs",
    "traces": "Traces",
    "trace": "Trace",
    "remote": "The peer supervisor's copy",
    "peer-mac": "The peer supervisor's MAC address",
    "service": "Service",
    "services": "Services",
    "sysmgr": "System manager",
    "name": "Name",
    "vem": "VEM information",
    "vlan": "Vlan commands",
    "width": "Set width of the display terminal",
}

# How ``?`` shows an argument slot, by its name.
ARG_DISPLAY: dict[str, str] = {
    "lines": "<0-511>",
    "columns": "<24-511>",
    "vlan": "<1-4094>",
    "vlans": "WORD",
    "channel": "<1-4096>",
    "maximum": "<1-1025>",
}
ARG_HELP: dict[str, str] = {
    "checkpoint": "Checkpoint name (Max Size 32)",
    "lines": "Number of lines on screen (0 for no pausing)",
    "columns": "Number of columns on screen",
    "name": "Name (Max Size 80)",
    "service": "Service name",
    "user": "User name",
    "file": "File name (bootflash:NAME)",
}

# Every handler id a node may register (the server answers "not available"
# for one of these that nobody registered).
HANDLERS: frozenset[str] = frozenset(c.handler for c in COMMANDS)

_SEPARATOR = re.compile(r"(?:^|\s);(?=\s|$)")


def split_commands(text: str) -> list[str]:
    """Split ``a ; b ; c`` into its commands (NX-OS's ``;`` is a word of its own).

    A ``;`` inside a word (``description a;b``) does not split. Empty pieces
    are dropped; each piece is stripped.
    """
    pieces = _SEPARATOR.split(text.replace("\r", " ").replace("\n", " ; "))
    return [p.strip() for p in pieces if p.strip()]


def _caret(line: str, column: int, message: str) -> CliError:
    return CliError(caret(line, column, message))


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


_NEXT_BAR = re.compile(r"(?<=\s)\|(?=\s|$)")


def _next_bar(line: str, after: int) -> int:
    """The next ``|`` after column ``after`` that is a word of its own (so a
    regular expression may hold ``a|b``), or -1."""
    m = _NEXT_BAR.search(line, after + 1)
    return m.start() if m else -1


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _parse_filters(line: str, bar: int) -> tuple[Filter, ...] | CliError:
    """The modifiers after the first ``|`` of ``line`` (at column ``bar``).

    Later modifiers start at a ``|`` standing alone (`` | ``); a pattern may
    be quoted (``include "vlan 10"``)."""
    filters: list[Filter] = []
    pos = bar
    while pos >= 0:
        nxt = _next_bar(line, pos)
        seg_end = len(line) if nxt < 0 else nxt
        words = split_words(line, pos + 1, seg_end)
        if not words:
            return _caret(line, seg_end if nxt >= 0 else len(line.rstrip()) + 1, INCOMPLETE)
        col, word = words[0]
        lowered = word.lower()
        options = [m for m in _MODIFIERS if m == lowered] or [
            m for m in _MODIFIERS if m.startswith(lowered)
        ]
        if not options:
            return _caret(line, col, INVALID)
        if len(options) > 1:
            return _caret(line, col, AMBIGUOUS)
        kind = FilterKind(options[0])
        if kind in _PATTERN_FILTERS:
            if len(words) < 2:
                return _incomplete(line[:seg_end])
            pattern = _unquote(line[words[1][0] : seg_end].strip())
            try:
                re.compile(pattern)
            except re.error:
                return _caret(line, words[1][0], "% Invalid regular expression")
            filters.append(Filter(kind, pattern))
        else:
            if len(words) > 1:
                return _caret(line, words[1][0], INVALID)
            if kind in (FilterKind.JSON, FilterKind.JSON_PRETTY) and filters:
                return _caret(line, col, "% json must be the first output modifier")
            filters.append(Filter(kind))
        pos = nxt
    return tuple(filters)


def parse(line: str) -> ParsedCommand | CliError:
    """Parse one exec-mode command line (no ``;``)."""
    line = line.rstrip("\r\n")
    bar = line.find("|")
    head_end = len(line) if bar < 0 else bar
    words = split_words(line, 0, head_end)
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
    filters: tuple[Filter, ...] = ()
    if bar >= 0:
        parsed = _parse_filters(line, bar)
        if isinstance(parsed, CliError):
            return parsed
        filters = parsed
    kinds = {f.kind for f in filters}
    as_json = bool(kinds & {FilterKind.JSON, FilterKind.JSON_PRETTY})
    args = dict(found.command.fixed_args)
    args.update(found.args)
    canonical = " ".join(
        t.word if isinstance(t, Keyword) else found.args.get(t.name, "")
        for t in found.command.pattern
    )
    return ParsedCommand(
        found.command.handler,
        args,
        as_json,
        FilterKind.JSON_PRETTY in kinds,
        filters,
        line[:head_end].strip(),
        canonical,
    )


def complete(line: str) -> list[str]:
    """Keywords that may follow ``line`` (or complete its last, partial word).

    For interactive completion: ``"sh sys"`` -> ``["system"]``,
    ``"show "`` -> every keyword after ``show``.
    """
    words = split_words(line.split("|", 1)[0])
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
