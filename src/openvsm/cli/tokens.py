"""The CLI's tokenizer and error texts, shared by every parser of a CLI line.

Exec-mode lines (``cli/grammar.py``), ``?``/Tab help (``cli/help.py``) and
configuration-mode lines (``cfgmgr/configsession.py``) split a line the same
way: into words with their columns (``words``), keywords matched by a unique
prefix (``sw mo tr``), and errors as NX-OS shows them, the line echoed with a
caret under the failing word (``caret``)::

    show modle
         ^
    % Invalid command at '^' marker.
"""

from __future__ import annotations

import re
from typing import Final

INVALID: Final = "% Invalid command at '^' marker."
AMBIGUOUS: Final = "% Ambiguous command at '^' marker."
INCOMPLETE: Final = "% Incomplete command"

_WORD = re.compile(r"\S+")


def words(line: str, start: int = 0, end: int | None = None) -> list[tuple[int, str]]:
    """The words of ``line[start:end]``, each with its column in ``line``."""
    stop = len(line) if end is None else end
    return [(m.start(), m.group()) for m in _WORD.finditer(line, start, stop)]


def caret(line: str, column: int, message: str) -> str:
    """The NX-OS error text: ``line``, a caret under ``column``, ``message``."""
    return f"{line}\n{' ' * column}^\n{message}\n"


class LineError(Exception):
    """A refused line; ``text`` is the CLI's whole answer (newline-terminated)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Line:
    """Words of one line with their columns, read left to right; keywords
    match by unique prefix. Every refusal raises ``LineError``."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.words = words(line)
        self.i = 0

    def fail(self, message: str = INVALID, at: int | None = None) -> LineError:
        index = self.i if at is None else at
        col = self.words[index][0] if index < len(self.words) else len(self.line.rstrip()) + 1
        return LineError(caret(self.line, col, message))

    def at_end(self) -> bool:
        return self.i >= len(self.words)

    def peek(self, *choices: str) -> str | None:
        """The keyword the next word selects, or None (no word / no match)."""
        if self.at_end():
            return None
        word = self.words[self.i][1].lower()
        if word in choices:
            return word
        hits = [c for c in choices if c.startswith(word)]
        if len(hits) > 1:
            raise self.fail(AMBIGUOUS)
        return hits[0] if hits else None

    def keyword(self, *choices: str) -> str:
        if self.at_end():
            raise self.fail(INCOMPLETE)
        hit = self.peek(*choices)
        if hit is None:
            raise self.fail()
        self.i += 1
        return hit

    def arg(self) -> str:
        if self.at_end():
            raise self.fail(INCOMPLETE)
        word = self.words[self.i][1]
        self.i += 1
        return word

    def int_arg(self, lo: int, hi: int, what: str) -> int:
        index = self.i
        word = self.arg()
        if not word.isdigit():
            raise self.fail(at=index)
        n = int(word)
        if not lo <= n <= hi:
            raise LineError(f"% {what} {n} is out of range ({lo}-{hi})\n")
        return n

    def rest(self) -> str:
        """The raw remainder of the line (free text), at least one word."""
        if self.at_end():
            raise self.fail(INCOMPLETE)
        text = self.line[self.words[self.i][0] :].strip()
        self.i = len(self.words)
        return text

    def end(self) -> None:
        if not self.at_end():
            raise self.fail()
