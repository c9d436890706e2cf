"""The CLI server core that runs inside cfgmgr (op ``cli`` of ``cfgmgr.sock``).

Owns the operator sessions (mode and prompt per session id), splits a line
at ``;``, parses exec-mode commands (``openvsm.cli.grammar``), calls the
handler registered for the command's id, and renders its data as NX-OS text
(``openvsm.cli.render``) or as one JSON object (``| json``). Configuration-mode
lines go to a pluggable ``config_executor``; this module never parses them.

Session modes: ``"exec"`` (prompt ``switch#``) and any configuration mode
name (``"config"``, ``"config-port-prof"`` ... prompt ``switch(config)#``).
``configure terminal`` enters ``"config"``; from then on the config executor
owns the session's mode (it handles ``exit``/``end`` and sets
``session.mode``), except that ``do COMMAND`` and ``show ...`` run as exec
commands from any configuration mode, as on NX-OS.

Requests (``execute``'s ``action``): ``run`` a line; ``help`` (the ``?``
text for the line before the cursor, ``openvsm.cli.help``); ``complete``
(Tab: the words completing the last one); ``close`` (the transport ended the
session). A line ending in ``?`` run as a command answers its help, so
``-c "show ?"`` works as on NX-OS.

Roles (``openvsm.roles``): every session has a user and that user's role,
read from ``role_of`` at each command (a role change applies at once). A
read-only role is refused configuration mode and every handler in
``grammar.WRITE_HANDLERS`` with ``% Permission denied for the role``.
Accounting: ``accountant(user, command, result)`` records every exec
command that is not a ``show`` (configuration lines are recorded by the
config executor), and every refusal, under the session's real user.

Output modifiers: ``| json`` / ``| json-pretty`` render the handler's data
as JSON; ``include``/``exclude``/``begin``/``count`` then filter the text
(``grammar.apply_filters``). Terminal settings (``terminal length|width|
dont-ask``) live in the session and come back in every reply
(``"terminal"``); the transport pages by them. ``reload`` in an interactive
session without ``terminal dont-ask`` asks ``(y/n)?  [n]`` first (reply
``"confirm": True``; the next line is the answer).

Error policy: a handler raises ``CliCommandError(text)`` for an operator
error (the text is the answer); any other exception is logged and answered
``% Internal error: ...``; nothing a line does can take the server down.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openvsm import roles
from openvsm.cli import grammar
from openvsm.cli import help as cli_help
from openvsm.cli.grammar import CliError, ParsedCommand
from openvsm.cli.render import render
from openvsm.masking import mask_secrets

log = logging.getLogger(__name__)

EXEC_MODE = "exec"
CONFIG_MODE = "config"
NOT_AVAILABLE = "% Command not available on this node\n"
CONFIG_NOT_AVAILABLE = "% Configuration is not available on this node\n"


class CliCommandError(Exception):
    """An operator error raised by a handler; its text is the CLI's answer."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(slots=True)
class CliSession:
    """One operator session (an interactive shell or a one-shot ``-c``)."""

    id: str
    mode: str = EXEC_MODE
    user: str = "admin"
    role: str = roles.Role.NETWORK_ADMIN
    last_used: float = 0.0
    started: float = field(default_factory=time.time)  # wall clock, for ``show users``
    line: str = "unix"  # the transport's line name (``pts/0``, ``ssh``, ``unix``)
    origin: str = ""  # where from (an SSH client's address); "" for the local socket
    pid: int = 0  # the client process (local socket), 0 when unknown
    interactive: bool = False
    length: int = 24  # terminal length (0: no paging)
    width: int = 80  # terminal width
    dont_ask: bool = False
    pending: ParsedCommand | None = None  # a command waiting for its (y/n) answer
    # Free slot for the config executor (e.g. its ConfigSession object).
    config_state: Any = None
    closed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_config(self) -> bool:
        return self.mode != EXEC_MODE

    def enter_config(self, mode: str = CONFIG_MODE) -> None:
        self.mode = mode

    def exit_to_exec(self) -> None:
        self.mode = EXEC_MODE
        self.config_state = None


HandlerResult = Mapping[str, Any] | str | None
Handler = Callable[[dict[str, str], CliSession], Awaitable[HandlerResult]]
ConfigExecutor = Callable[[str, CliSession], Awaitable[tuple[str, bool]]]
Accountant = Callable[[str, str, str], None]  # (user, command, result)

# Commands an interactive session confirms unless ``terminal dont-ask``.
CONFIRM: dict[str, str] = {"reload": "This command will reboot the system. (y/n)?  [n] "}
ACTIONS = frozenset({"run", "help", "complete", "close"})


def _terminated(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


class CliServer:
    """Sessions, parsing, dispatch and rendering for the ``cli`` IPC op.

    ``hostname`` is read on every answer (the configuration may change it).
    ``config_executor(line, session) -> (output, error)`` runs configuration
    mode lines; without one, configuration mode only knows ``exit``/``end``.
    """

    def __init__(
        self,
        hostname: Callable[[], str] | str = "switch",
        config_executor: ConfigExecutor | None = None,
        *,
        max_sessions: int = 256,
        session_idle_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        role_of: Callable[[str], str] | None = None,
        accountant: Accountant | None = None,
    ) -> None:
        self._hostname = hostname
        self.config_executor = config_executor
        self._role_of = role_of or (lambda user: roles.role_of(user, None))
        self.accountant = accountant
        self._handlers: dict[str, Handler] = {}
        self._sessions: OrderedDict[str, CliSession] = OrderedDict()
        self._max_sessions = max_sessions
        self._idle_s = session_idle_s
        self._clock = clock
        self._anon = itertools.count(1)

    # --- registration ---------------------------------------------------------

    def register(self, handler_id: str, fn: Handler) -> None:
        """Bind an exec handler id (``openvsm.cli.grammar.HANDLERS``) to ``fn``."""
        if handler_id not in grammar.HANDLERS:
            raise ValueError(f"no exec command has handler id {handler_id!r}")
        if handler_id in grammar.BUILTIN_HANDLERS and handler_id != "configure_terminal":
            raise ValueError(f"{handler_id!r} is built into the CLI server")
        self._handlers[handler_id] = fn

    def registered(self) -> frozenset[str]:
        return frozenset(self._handlers)

    # --- sessions ---------------------------------------------------------------

    def hostname(self) -> str:
        return self._hostname() if callable(self._hostname) else self._hostname

    def prompt(self, session: CliSession) -> str:
        host = self.hostname()
        return f"{host}#" if session.mode == EXEC_MODE else f"{host}({session.mode})#"

    def session(self, session_id: str) -> CliSession:
        """The session ``session_id``, created on first use (LRU, idle expiry)."""
        now = self._clock()
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used <= self._idle_s:
                break
            del self._sessions[oldest.id]
        found = self._sessions.get(session_id)
        if found is None:
            found = CliSession(session_id, last_used=now)
            self._sessions[session_id] = found
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        found.last_used = now
        self._sessions.move_to_end(session_id)
        return found

    def close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def session_count(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[CliSession]:
        """The open sessions, oldest first (``show users``)."""
        return sorted(self._sessions.values(), key=lambda s: s.started)

    # --- execution ----------------------------------------------------------------

    async def handle_ipc(
        self, args: Mapping[str, Any], *, user: str | None = None, pid: int | None = None
    ) -> dict[str, Any]:
        """The ``cli`` op: ``{line, session[, action, interactive, line_name]}``.

        ``user`` comes from the transport (the Unix peer's mapped user), never
        from ``args``: a client cannot choose whom it runs as.
        """
        line = args.get("line")
        session_id = args.get("session")
        if not isinstance(line, str):
            line = ""
        if not isinstance(session_id, str) or not session_id:
            session_id = f"anonymous-{next(self._anon)}"
        action = args.get("action", "run")
        line_name = args.get("line_name")
        return await self.execute(
            line,
            session_id,
            user=user,
            action=action if isinstance(action, str) else "run",
            interactive=args.get("interactive") is True,
            line_name=line_name if isinstance(line_name, str) else None,
            pid=pid,
        )

    async def execute(
        self,
        line: str,
        session_id: str,
        *,
        user: str | None = None,
        action: str = "run",
        interactive: bool = False,
        line_name: str | None = None,
        origin: str | None = None,
        pid: int | None = None,
    ) -> dict[str, Any]:
        """Run ``line`` (maybe several ``;``-separated commands) in a session.

        Returns ``{"output", "prompt", "error", "mode", "terminal"}`` and, when
        the session ended (``exit`` at the exec prompt), ``"exit": True``;
        ``action="complete"`` adds ``"completions"``. Commands run in order and
        stop at the first error; the output holds everything up to it.
        """
        if action == "close":
            self.close_session(session_id)
            return {"output": "", "prompt": "", "error": False, "exit": True}
        session = self.session(session_id)
        if user:
            session.user = user
        session.role = self._role_of(session.user)
        session.interactive = session.interactive or interactive
        if line_name:
            session.line = line_name
        if origin is not None:
            session.origin = origin
        if pid is not None:
            session.pid = pid
        if action == "help":
            return self._reply(session, cli_help.help_text(session.mode, line), False)
        if action == "complete":
            reply = self._reply(session, "", False)
            reply["completions"] = cli_help.completions(session.mode, line)
            return reply
        if action not in ACTIONS:
            return self._reply(session, f"% Unknown CLI action {action[:40]!r}\n", True)
        if session.pending is not None:
            return await self._answer(line, session)
        outputs: list[str] = []
        error = False
        for command in grammar.split_commands(line):
            text, error = await self._run_one(command, session)
            outputs.append(_terminated(text) if session.pending is None else text)
            if error or session.closed or session.pending is not None:
                break
        reply = self._reply(session, "".join(outputs), error)
        if session.closed:
            reply["exit"] = True
            self.close_session(session.id)
        return reply

    def _reply(self, session: CliSession, output: str, error: bool) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "output": output,
            "prompt": self.prompt(session),
            "error": error,
            "mode": session.mode,
            "terminal": {
                "length": session.length,
                "width": session.width,
                "dont_ask": session.dont_ask,
            },
        }
        if session.pending is not None:
            reply["confirm"] = True
        return reply

    async def _answer(self, line: str, session: CliSession) -> dict[str, Any]:
        """The (y/n) answer to a confirmation: run the pending command or not."""
        parsed, session.pending = session.pending, None
        assert parsed is not None
        if line.strip().lower() not in ("y", "yes"):
            return self._reply(session, "", False)
        text, error = await self._dispatch(parsed, session, confirmed=True)
        return self._reply(session, _terminated(text), error)

    def _account(self, session: CliSession, command: str, result: str) -> None:
        if self.accountant is None:
            return
        try:
            self.accountant(session.user, command, result)
        except Exception:
            log.exception("accounting of %r failed", command)

    async def _run_one(self, command: str, session: CliSession) -> tuple[str, bool]:
        if command.startswith("!"):
            return "", False
        if command.endswith("?"):
            return cli_help.help_text(session.mode, command[:-1]), False
        if session.in_config:
            exec_line = grammar.exec_line_in_config(command)
            if exec_line is None:
                return await self._run_config(command, session)
            command = exec_line
        parsed = grammar.parse(command)
        if isinstance(parsed, CliError):
            return parsed.text, True
        return await self._dispatch(parsed, session)

    async def _run_config(self, command: str, session: CliSession) -> tuple[str, bool]:
        first = command.split(None, 1)[0].lower() if command.split() else ""
        leaving = first in ("end", "exit")
        if not leaving and not roles.may_write(session.role):
            # the role changed while in configuration mode: nothing more is applied
            self._account(session, command, "FAILURE")
            return roles.PERMISSION_DENIED + "\n", True
        if self.config_executor is None:
            word = command.split()[0].lower()
            if word in ("end", "exit"):
                session.exit_to_exec()
                return "", False
            return CONFIG_NOT_AVAILABLE, True
        try:
            return await self.config_executor(command, session)
        except CliCommandError as exc:
            return exc.text, True
        except Exception as exc:
            log.exception("configuration line %r failed", mask_secrets(command))
            return f"% Internal error: {type(exc).__name__}: {exc}\n", True

    async def _dispatch(
        self, parsed: ParsedCommand, session: CliSession, *, confirmed: bool = False
    ) -> tuple[str, bool]:
        handler = parsed.handler
        accounted = not (
            handler.startswith("show_")
            or handler in grammar.BUILTIN_HANDLERS
            or handler in grammar.SELF_ACCOUNTED
        )
        if handler in grammar.WRITE_HANDLERS and not roles.may_write(session.role):
            self._account(session, parsed.canonical or parsed.text, "FAILURE")
            return roles.PERMISSION_DENIED + "\n", True
        if handler in grammar.BUILTIN_HANDLERS and handler != "configure_terminal":
            return self._builtin(parsed, session), False
        fn = self._handlers.get(handler)
        if fn is None and handler != "configure_terminal":
            return NOT_AVAILABLE, True
        question = CONFIRM.get(handler)
        if question and session.interactive and not session.dont_ask and not confirmed:
            session.pending = parsed
            return question, False
        try:
            result = await fn(dict(parsed.args), session) if fn is not None else None
            if handler == "configure_terminal":
                session.enter_config()
            text = self._format(parsed, result)
        except CliCommandError as exc:
            if accounted:
                self._account(session, parsed.canonical or parsed.text, "FAILURE")
            return exc.text, True
        except Exception as exc:
            log.exception("CLI handler %s failed", handler)
            return f"% Internal error: {type(exc).__name__}: {exc}\n", True
        if accounted:
            self._account(session, parsed.canonical or parsed.text, "SUCCESS")
        return text, False

    def _builtin(self, parsed: ParsedCommand, session: CliSession) -> str:
        handler = parsed.handler
        if handler == "exit":
            session.closed = True
        elif handler == "terminal":
            return self._terminal(parsed.args, session)
        elif handler == "show_terminal":
            data = {
                "term_type": "vt100" if session.interactive else "dumb",
                "term_length": session.length,
                "term_width": session.width,
                "dont_ask": session.dont_ask,
                "session_user": session.user,
                "session_role": session.role,
            }
            text = (
                f'TTY: {session.line} Type: "{data["term_type"]}"\n'
                f"Length: {session.length} lines, Width: {session.width} columns\n"
                f"Session Timeout: {int(self._idle_s // 60)} minutes\n"
                f"Dont-ask: {'enabled' if session.dont_ask else 'disabled'}\n"
            )
            return self._format(parsed, data, text)
        # "end" at the exec prompt changes nothing.
        return ""

    @staticmethod
    def _terminal(args: dict[str, str], session: CliSession) -> str:
        setting = args.get("setting")
        if setting == "length":
            n = int(args["lines"])
            if not 0 <= n <= 511:
                return "% Terminal length out of range (0-511)\n"
            session.length = n
        elif setting == "width":
            n = int(args["columns"])
            if not 24 <= n <= 511:
                return "% Terminal width out of range (24-511)\n"
            session.width = n
        else:
            session.dont_ask = setting == "dont-ask"
        return ""

    @staticmethod
    def _format(parsed: ParsedCommand, result: HandlerResult, text: str | None = None) -> str:
        if parsed.json:
            if result is None:
                obj: Mapping[str, Any] = {}
            elif isinstance(result, str):
                obj = {"message": result.rstrip("\n")} if result else {}
            else:
                obj = result
            indent = 2 if parsed.pretty else None
            out = json.dumps(obj, indent=indent, default=str) + "\n"
        elif text is not None:
            out = text
        elif result is None:
            out = ""
        elif isinstance(result, str):
            out = result
        else:
            out = render(parsed.handler, result)
        return grammar.apply_filters(out, parsed.filters) if parsed.filters else out
