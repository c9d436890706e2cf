"""A line discipline for byte-stream terminals (an SSH PTY channel) over a
``ShellSession``: keystrokes in, screen text out.

Theory of operation: ``feed(text)`` takes whatever the client typed (any
chunking: one key, a pasted block, ``cmd\\r\\n`` from automation) and
processes it key by key through a small state machine (``State``):

- ``LINE``: printable keys edit the line (echoed); Backspace/DEL erase;
  Enter runs the line and prints its output and the new prompt; ``?``
  prints the help for the line so far and redraws it (the ``?`` is not kept,
  as on NX-OS); Tab completes (a unique word, or the common prefix, or the
  list of choices and a redraw); Ctrl-C abandons the line; Ctrl-Z leaves
  configuration mode (``end``); Ctrl-U erases the line; Ctrl-D on an empty
  line ends the session; Up/Down walk the history.
- ``MORE``: output longer than ``terminal length`` stops at ``--More--``;
  Space shows the next screen, Enter one more line, ``q`` or Ctrl-C stops.
- ``ESCAPE``: inside an ANSI escape sequence (arrow keys); other sequences
  are swallowed.

Output uses ``\\r\\n``. ``write`` is called with text to send; ``done`` turns
true when the session ended (``exit``, Ctrl-D) and the transport should
close. With ``echo=False`` (a channel without a PTY) keys are not echoed.
Calls of ``feed`` must not overlap: await each before feeding more (keys
that arrive meanwhile wait in the transport's buffer, as on a terminal).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from openvsm.cli.session import ShellSession

MORE = " --More-- "
_ERASE_MORE = "\r" + " " * len(MORE) + "\r"
MAX_LINE = 4096
MAX_HISTORY = 100


class State(enum.Enum):
    LINE = "line"
    MORE = "more"
    ESCAPE = "escape"


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


class TerminalDriver:
    def __init__(
        self, shell: ShellSession, write: Callable[[str], None], *, echo: bool = True
    ) -> None:
        self.shell = shell
        self._write = write
        self.echo = echo
        self.line = ""
        self.state = State.LINE
        self.done = False
        self._pending: list[str] = []  # output lines still behind --More--
        self._escape = ""
        self._last_cr = False
        self._history: list[str] = []
        self._hist_pos = 0

    async def start(self) -> None:
        """Open the session and show the first prompt."""
        await self.shell.start()
        self._prompt()

    def _prompt(self) -> None:
        self._write(f"{self.shell.prompt} ")

    def _redraw(self) -> None:
        self._write(f"{self.shell.prompt} {self.line}")

    async def feed(self, data: str) -> None:
        for key in data:
            if self.done:
                return
            await self._key(key)

    async def _key(self, key: str) -> None:
        if self.state is State.ESCAPE:
            self._escape_key(key)
            return
        if self.state is State.MORE:
            self._more_key(key)
            return
        if key == "\n" and self._last_cr:
            self._last_cr = False
            return
        self._last_cr = key == "\r"
        if key in "\r\n":
            await self._enter()
        elif key == "?":
            self._write("?\r\n" if self.echo else "")
            self._write(crlf(await self.shell.help(self.line)))
            self._redraw()
        elif key == "\t":
            await self._tab()
        elif key in "\x7f\x08":
            if self.line:
                self.line = self.line[:-1]
                if self.echo:
                    self._write("\b \b")
        elif key == "\x03":
            self.line = ""
            self._write("^C\r\n")
            self._prompt()
        elif key == "\x1a":
            self.line = ""
            self._write("^Z\r\n")
            reply = await self.shell.ctrl_z()
            self._write(crlf(reply.output))
            self._prompt()
        elif key == "\x15":
            if self.echo:
                self._write("\b \b" * len(self.line))
            self.line = ""
        elif key == "\x04":
            if not self.line:
                self._write("\r\n")
                await self.shell.close()
                self.done = True
        elif key == "\x1b":
            self.state, self._escape = State.ESCAPE, ""
        elif key.isprintable() and len(self.line) < MAX_LINE:
            self.line += key
            if self.echo:
                self._write(key)

    def _escape_key(self, key: str) -> None:
        self._escape += key
        if self._escape == "[" or (len(self._escape) < 8 and not key.isalpha() and key != "~"):
            return
        self.state = State.LINE
        if self._escape in ("[A", "[B") and self._history:
            step = -1 if self._escape == "[A" else 1
            self._hist_pos = max(0, min(len(self._history), self._hist_pos + step))
            new = self._history[self._hist_pos] if self._hist_pos < len(self._history) else ""
            if self.echo:
                self._write("\b \b" * len(self.line) + new)
            self.line = new

    async def _tab(self) -> None:
        new = await self.shell.tab(self.line)
        if new is not None and new != self.line:
            if self.echo:
                self._write(new[len(self.line) :] if new.startswith(self.line) else "")
            self.line = new
            return
        words = await self.shell.complete(self.line)
        if len(words) > 1:
            self._write("\r\n" + "  ".join(words) + "\r\n")
            self._redraw()

    async def _enter(self) -> None:
        line, self.line = self.line, ""
        self._write("\r\n")
        if line.strip() and (not self._history or self._history[-1] != line):
            self._history = [*self._history, line][-MAX_HISTORY:]
        self._hist_pos = len(self._history)
        if not line.strip():
            self._prompt()
            return
        reply = await self.shell.run(line)
        if reply.confirm:
            self._write(crlf(reply.output))
            return
        if reply.exit:
            self._write(crlf(reply.output))
            await self.shell.close()
            self.done = True
            return
        pages = self.shell.page(reply.output)
        if len(pages) > 1:
            self._pending = "".join(pages[1:]).splitlines(keepends=True)
            self._write(crlf(pages[0]) + MORE)
            self.state = State.MORE
            return
        self._write(crlf(reply.output))
        self._prompt()

    def _more_key(self, key: str) -> None:
        self._write(_ERASE_MORE)
        if key in ("q", "Q", "\x03"):
            self._pending = []
        elif key in "\r\n":
            self._write(crlf("".join(self._pending[:1])))
            self._pending = self._pending[1:]
        else:
            step = max(1, self.shell.terminal.length - 1)
            self._write(crlf("".join(self._pending[:step])))
            self._pending = self._pending[step:]
        if self._pending:
            self._write(MORE)
            return
        self.state = State.LINE
        self._prompt()


__all__ = ["MORE", "State", "TerminalDriver", "crlf"]
