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

from openvsm.cli import grammar
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
    last_used: float = 0.0
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
    ) -> None:
        self._hostname = hostname
        self.config_executor = config_executor
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

    # --- execution ----------------------------------------------------------------

    async def handle_ipc(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The ``cli`` op: ``{line, session[, user]}`` -> ``{output, prompt, error}``."""
        line = args.get("line")
        session_id = args.get("session")
        if not isinstance(line, str):
            line = ""
        if not isinstance(session_id, str) or not session_id:
            session_id = f"anonymous-{next(self._anon)}"
        user = args.get("user")
        return await self.execute(line, session_id, user=user if isinstance(user, str) else None)

    async def execute(
        self, line: str, session_id: str, *, user: str | None = None
    ) -> dict[str, Any]:
        """Run ``line`` (maybe several ``;``-separated commands) in a session.

        Returns ``{"output", "prompt", "error"}`` and, when the session ended
        (``exit`` at the exec prompt), ``"exit": True``. Commands run in order
        and stop at the first error; the output holds everything up to it.
        """
        session = self.session(session_id)
        if user:
            session.user = user
        outputs: list[str] = []
        error = False
        for command in grammar.split_commands(line):
            text, error = await self._run_one(command, session)
            outputs.append(_terminated(text))
            if error or session.closed:
                break
        reply: dict[str, Any] = {
            "output": "".join(outputs),
            "prompt": self.prompt(session),
            "error": error,
        }
        if session.closed:
            reply["exit"] = True
            self.close_session(session.id)
        return reply

    async def _run_one(self, command: str, session: CliSession) -> tuple[str, bool]:
        if command.startswith("!"):
            return "", False
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

    async def _dispatch(self, parsed: ParsedCommand, session: CliSession) -> tuple[str, bool]:
        handler = parsed.handler
        if handler in grammar.BUILTIN_HANDLERS and handler != "configure_terminal":
            return self._builtin(handler, session), False
        fn = self._handlers.get(handler)
        if fn is None and handler != "configure_terminal":
            return NOT_AVAILABLE, True
        try:
            result = await fn(dict(parsed.args), session) if fn is not None else None
            if handler == "configure_terminal":
                session.enter_config()
            return self._format(parsed, result), False
        except CliCommandError as exc:
            return exc.text, True
        except Exception as exc:
            log.exception("CLI handler %s failed", handler)
            return f"% Internal error: {type(exc).__name__}: {exc}\n", True

    def _builtin(self, handler: str, session: CliSession) -> str:
        if handler == "exit":
            session.closed = True
        # "end" at the exec prompt and "terminal length/width" change nothing.
        return ""

    @staticmethod
    def _format(parsed: ParsedCommand, result: HandlerResult) -> str:
        if parsed.json:
            if result is None:
                obj: Mapping[str, Any] = {}
            elif isinstance(result, str):
                obj = {"message": result.rstrip("\n")} if result else {}
            else:
                obj = result
            indent = 2 if parsed.pretty else None
            return json.dumps(obj, indent=indent, default=str) + "\n"
        if result is None:
            return ""
        if isinstance(result, str):
            return result
        return render(parsed.handler, result)
