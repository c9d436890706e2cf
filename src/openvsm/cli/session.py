"""The transport-neutral NX-OS shell session: one implementation for every shell.

The local interactive shell (``openvsm cli``), one-shot ``openvsm cli -c``
and the SSH server all drive a ``ShellSession``; a transport only moves
bytes or lines and renders what the session returns. All CLI behaviour
(modes, prompts, ``end``/``exit``, abbreviations, ``?`` help, completion,
output modifiers, terminal settings, roles, accounting) lives behind it in
the node's ``CliServer`` (``openvsm.cli.server``).

API (stable; the SSH server builds on it)::

    backend = ServerBackend(cfgmgr.cli, user="alice", line="ssh", origin="10.0.0.5")
    # or IpcBackend(rundir) from a process outside cfgmgr (the local socket:
    # the user is the Unix peer, mapped by cfgmgr; ``user`` is ignored)
    shell = ShellSession(backend, interactive=True)
    prompt = await shell.start()              # "switch#"
    reply = await shell.run("show module")    # ShellReply(output, prompt, error, exit, ...)
    text = await shell.help("show mod")       # what "?" shows after "show mod"
    words = await shell.complete("sh mod")    # ["module"]
    line = await shell.tab("sh mod")          # "sh module " (the line after Tab), or None
    await shell.window(rows=40, columns=132)  # PTY size -> terminal length/width
    reply = await shell.ctrl_z()              # back to exec (like "end"), no-op in exec
    status = await shell.run_script("show version ; show module", write)
                                              # an SSH exec channel / -c: each answer
                                              # to write(); 0, or 1 at the first error
    await shell.close()                       # ends the session on the node

Calls on one session must not overlap (await each): the node runs a
session's lines in order.

``ShellReply.confirm`` means the output is a question (``(y/n)?  [n]``) and
the next ``run`` line is its answer. ``shell.terminal`` holds the session's
``terminal length/width/dont-ask`` after every reply; ``page(text)`` splits
output into screens by it (``[text]`` when the length is 0). Output and
prompts use ``\\n``; a terminal transport converts to ``\\r\\n``
(``openvsm.cli.terminal.TerminalDriver`` does all of that for a byte
stream, e.g. an SSH PTY channel).

Errors: a node that cannot be reached raises ``IpcError`` from ``run`` and
friends (``IpcBackend``); the caller reports it and may retry (the session
id stays, so the mode survives a cfgmgr restart only if the server kept it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from openvsm.cli.grammar import split_commands
from openvsm.ipc import IpcClient, IpcError
from openvsm.node import RunDir


def new_session_id(prefix: str = "cli") -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class TerminalSettings:
    length: int = 24
    width: int = 80
    dont_ask: bool = False


@dataclass(frozen=True, slots=True)
class ShellReply:
    """One answer of the node: output text (``\\n`` lines) and the new prompt."""

    output: str
    prompt: str
    error: bool = False
    exit: bool = False  # the session ended (``exit`` at the exec prompt)
    confirm: bool = False  # output is a (y/n) question; the next line answers it
    mode: str = "exec"
    completions: tuple[str, ...] = ()


class CliBackend(Protocol):
    """Carries one request of a session to the node's CLI server."""

    async def request(
        self, action: str, line: str, session: str, interactive: bool
    ) -> Mapping[str, Any]: ...

    async def aclose(self) -> None: ...


class ServerBackend:
    """In-process: the ``CliServer`` of this cfgmgr (the SSH server's case).

    ``user`` is the authenticated user (the SSH login); ``line``/``origin``
    show in ``show users``.
    """

    def __init__(self, server: Any, *, user: str, line: str = "ssh", origin: str = "") -> None:
        self.server = server
        self.user = user
        self.line = line
        self.origin = origin

    async def request(
        self, action: str, line: str, session: str, interactive: bool
    ) -> Mapping[str, Any]:
        result: Mapping[str, Any] = await self.server.execute(
            line,
            session,
            user=self.user,
            action=action,
            interactive=interactive,
            line_name=self.line,
            origin=self.origin,
        )
        return result

    async def aclose(self) -> None:
        return None


class IpcBackend:
    """Over ``RUNDIR/cfgmgr.sock`` (op ``cli``); cfgmgr maps the Unix peer to a user."""

    def __init__(self, rundir: Path, *, timeout: float = 60.0, line: str = "unix") -> None:
        self.rundir = rundir
        self.line = line
        self._ipc = IpcClient(RunDir(rundir).cfgmgr, timeout=timeout)

    async def request(
        self, action: str, line: str, session: str, interactive: bool
    ) -> Mapping[str, Any]:
        result = await self._ipc.call(
            "cli",
            line=line,
            session=session,
            action=action,
            interactive=interactive,
            line_name=self.line,
        )
        if not isinstance(result, dict) or not isinstance(result.get("output", ""), str):
            raise IpcError("malformed reply from cfgmgr")
        return result

    async def aclose(self) -> None:
        self._ipc.close()


@dataclass(slots=True)
class ShellSession:
    """One operator's shell on a node, whatever carries it."""

    backend: CliBackend
    interactive: bool = False
    session_id: str = field(default_factory=new_session_id)
    prompt: str = "switch#"
    mode: str = "exec"
    terminal: TerminalSettings = field(default_factory=TerminalSettings)
    closed: bool = False

    async def _call(self, action: str, line: str) -> ShellReply:
        raw = await self.backend.request(action, line, self.session_id, self.interactive)
        term = raw.get("terminal")
        if isinstance(term, Mapping):
            self.terminal = TerminalSettings(
                int(term.get("length", 24)), int(term.get("width", 80)), bool(term.get("dont_ask"))
            )
        reply = ShellReply(
            output=str(raw.get("output", "")),
            prompt=str(raw.get("prompt") or self.prompt),
            error=bool(raw.get("error")),
            exit=bool(raw.get("exit")),
            confirm=bool(raw.get("confirm")),
            mode=str(raw.get("mode", self.mode)),
            completions=tuple(str(w) for w in raw.get("completions") or ()),
        )
        if action != "close":
            self.prompt, self.mode = reply.prompt, reply.mode
        if reply.exit:
            self.closed = True
        return reply

    async def start(self) -> str:
        """Open the session on the node; its first prompt."""
        await self._call("run", "")
        return self.prompt

    async def run(self, line: str) -> ShellReply:
        """Run one line (``;`` separates commands; a trailing ``?`` asks help)."""
        return await self._call("run", line)

    async def run_script(self, text: str, write: Callable[[str], None]) -> int:
        """Run ``text`` (commands separated by newlines or `` ; ``) as
        ``openvsm cli -c`` does: each command's output to ``write`` (newline
        terminated); stop at the first error and return 1, else 0."""
        for command in split_commands(text):
            reply = await self.run(command)
            if reply.output:
                write(reply.output if reply.output.endswith("\n") else reply.output + "\n")
            if reply.error:
                return 1
            if reply.exit:
                break
        return 0

    async def window(self, rows: int, columns: int) -> None:
        """The client's terminal size (SSH ``pty-req`` / ``window-change``):
        sets ``terminal length`` and ``terminal width`` (clamped to NX-OS's
        ranges; rows 0 = no paging)."""
        length = max(0, min(511, rows))
        width = max(24, min(511, columns))
        await self.run(f"terminal length {length} ; terminal width {width}")

    async def help(self, before_cursor: str) -> str:
        """The ``?`` text for the line typed so far (``?`` itself not included)."""
        return (await self._call("help", before_cursor)).output

    async def complete(self, before_cursor: str) -> list[str]:
        """Words completing the last (partial) word of the line."""
        return list((await self._call("complete", before_cursor)).completions)

    async def tab(self, before_cursor: str) -> str | None:
        """The line after Tab: the partial word completed (with a space when
        unique, to the common prefix otherwise); None when nothing fits."""
        words = await self.complete(before_cursor)
        if not words:
            return None
        partial = (
            "" if not before_cursor or before_cursor[-1].isspace() else (before_cursor.split()[-1])
        )
        stem = before_cursor[: len(before_cursor) - len(partial)]
        if len(words) == 1:
            return stem + words[0] + " "
        common = min(words)
        while not all(w.startswith(common) for w in words):
            common = common[:-1]
        return stem + common if len(common) > len(partial) else None

    async def ctrl_z(self) -> ShellReply:
        """Ctrl-Z: leave configuration mode (as ``end``); nothing in exec mode."""
        if self.mode == "exec":
            return ShellReply("", self.prompt, mode=self.mode)
        return await self._call("run", "end")

    def page(self, text: str) -> list[str]:
        """``text`` cut into screens of ``terminal length - 1`` lines (one for
        ``--More--``); one piece when the length is 0."""
        length = self.terminal.length
        lines = text.splitlines(keepends=True)
        if length <= 1 or len(lines) < length:
            return [text] if text else []
        step = length - 1
        return ["".join(lines[i : i + step]) for i in range(0, len(lines), step)]

    async def close(self) -> None:
        """End the session on the node (idempotent) and release the transport."""
        if not self.closed:
            self.closed = True
            try:
                await self._call("close", "")
            except IpcError:
                pass
        await self.backend.aclose()


__all__ = [
    "CliBackend",
    "IpcBackend",
    "ServerBackend",
    "ShellReply",
    "ShellSession",
    "TerminalSettings",
    "new_session_id",
]
