"""Interactive CLI shell (prompt-toolkit) on one ``ShellSession``.

All CLI behaviour is the session's (``openvsm.cli.session``, answered by the
node's CLI server); this module only edits lines and shows answers, as the
SSH server's ``TerminalDriver`` does for a byte stream:

- the prompt is the server's (``switch#``, ``switch(config-port-prof)#``);
- ``?`` anywhere in a line prints the context help for the text before the
  cursor and leaves the line as it was (the ``?`` is not inserted);
- Tab completes from the grammar in every mode (one match: the word and a
  space; several: their common prefix, then the list);
- Ctrl-Z leaves configuration mode (``end``); Ctrl-C abandons the line;
  Ctrl-D leaves the shell;
- a ``(y/n)`` question (``reload``) takes the next line as its answer.

A cfgmgr that goes away mid-session (service restart) is reported and the
shell stays. History lives in ``RUNDIR/cli_history``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output

from openvsm.cli.session import IpcBackend, ShellReply, ShellSession
from openvsm.ipc import IpcError

HISTORY_FILE = "cli_history"
CTRL_Z = "\x1a"


class GrammarCompleter(Completer):
    """Completions asked of the node's grammar for the current mode."""

    def __init__(self, shell: ShellSession) -> None:
        self.shell = shell

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        return []  # only the async path is used (prompt_async)

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        text = document.text_before_cursor
        partial = "" if not text or text[-1].isspace() else text.split()[-1]
        try:
            words = await self.shell.complete(text)
        except IpcError:
            return
        for word in words:
            yield Completion(word + (" " if len(words) == 1 else ""), -len(partial))


def _bindings(shell: ShellSession) -> KeyBindings:
    kb = KeyBindings()

    @kb.add("?")
    async def _help(event: KeyPressEvent) -> None:
        before = event.current_buffer.document.text_before_cursor
        try:
            text = await shell.help(before)
        except IpcError as exc:
            text = f"% {exc}\n"

        def show() -> None:
            print(f"{shell.prompt} {before}?")
            print(text, end="" if text.endswith("\n") else "\n")

        await run_in_terminal(show)

    @kb.add("c-z")
    def _ctrl_z(event: KeyPressEvent) -> None:
        event.app.exit(result=CTRL_Z)

    return kb


async def _answer(shell: ShellSession, line: str) -> ShellReply:
    """Run a line (Ctrl-Z: leave configuration mode)."""
    try:
        return await (shell.ctrl_z() if line == CTRL_Z else shell.run(line))
    except IpcError as exc:
        # cfgmgr restarting: say so and keep the shell; the next line reconnects
        return ShellReply(f"% {exc}\n", shell.prompt, error=True)


async def run_shell(
    rundir: Path, *, input: Input | None = None, output: Output | None = None
) -> int:
    shell = ShellSession(IpcBackend(rundir, line="pts"), interactive=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(rundir / HISTORY_FILE)),
        completer=GrammarCompleter(shell),
        complete_while_typing=False,
        key_bindings=_bindings(shell),
        input=input,
        output=output,
    )
    question = ""
    try:
        await shell.start()
        while True:
            try:
                line = await session.prompt_async(question or f"{shell.prompt} ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if not line.strip() and not question:
                continue
            reply = await _answer(shell, line)
            text, question = reply.output, ""
            if reply.confirm:  # a (y/n) question: its answer is the next line
                question, text = text, ""
            if text:
                session.app.output.write_raw(text if text.endswith("\n") else text + "\n")
                session.app.output.flush()
            if reply.exit:
                return 0
    finally:
        await shell.close()
