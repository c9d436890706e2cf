"""Interactive CLI shell (prompt-toolkit) on one cfgmgr session.

The prompt is the one the server returns (``switch#``, ``switch(config)#``
...); the server's session handles ``exit``/``end`` and mode changes, and
tells the shell when the session ended. A cfgmgr that goes away mid-session
(service restart) is reported and the shell stays. History lives in
``RUNDIR/cli_history``. Ctrl-D leaves, Ctrl-C abandons the current line.
Tab completes exec-mode keywords from the local grammar.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from openvsm.cli.client import CliConnection
from openvsm.cli.grammar import complete
from openvsm.ipc import IpcError

HISTORY_FILE = "cli_history"


class ExecCompleter(Completer):
    """Completes exec-mode keywords while the prompt is an exec prompt."""

    def __init__(self) -> None:
        self.exec_mode = True

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        if not self.exec_mode:
            return
        text = document.text_before_cursor
        partial = "" if not text or text[-1].isspace() else text.split()[-1]
        for word in complete(text):
            yield Completion(word, start_position=-len(partial))


async def run_shell(
    rundir: Path, *, input: Input | None = None, output: Output | None = None
) -> int:
    conn = CliConnection(rundir)
    completer = ExecCompleter()
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(rundir / HISTORY_FILE)),
        completer=completer,
        input=input,
        output=output,
    )
    try:
        prompt = (await conn.run(""))["prompt"]
        while True:
            completer.exec_mode = "(" not in prompt
            try:
                line = await session.prompt_async(f"{prompt} ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if not line.strip():
                continue
            try:
                result = await conn.run(line)
            except IpcError as exc:
                # cfgmgr restarting: say so and keep the shell; the next line reconnects
                result = {"output": f"% {exc}\n", "prompt": prompt, "error": True}
            text = str(result["output"])
            if text:
                session.app.output.write_raw(text if text.endswith("\n") else text + "\n")
                session.app.output.flush()
            prompt = str(result["prompt"])
            if result.get("exit"):
                return 0
    finally:
        conn.close()
