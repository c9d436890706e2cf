"""Secrets out of every log (issue 12 point 6): mask by parse position.

``mask_secrets(line)`` returns a configuration line with its secret words
replaced by ``********``, found the way the configuration parser finds them
(``openvsm.cfgmgr.configsession``: keywords may be abbreviated to any prefix),
not by matching the full word: ``user bob pass hunter2``, ``usern bob p 0
hunter2`` and ``username bob password 5 <hash>`` are all masked. A line
whose first word selects ``username`` but whose shape is not understood has
everything after the user name masked: a log may lose a word, never leak
one. Used for the accounting log, the change log's command text, traces and
split-brain logs.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "********"
_WORD = re.compile(r"\S+")


def _selects(word: str, keyword: str) -> bool:
    return bool(word) and keyword.startswith(word.lower())


def mask_secrets(line: str) -> str:
    """``line`` with the password of a ``username`` command masked (any abbreviation)."""
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(line)]
    if len(words) < 3 or not _selects(words[0][2], "username"):
        return line
    secret: list[int] = []  # indexes of words to mask
    if _selects(words[2][2], "password"):
        i = 3
        kind_word = i + 1 < len(words) and words[i][2] in ("0", "5")
        if kind_word and not _selects(words[i + 1][2], "role"):
            i += 1
        if i < len(words):
            secret.append(i)
    else:
        secret.extend(range(2, len(words)))
    out, pos = [], 0
    for i in secret:
        start, end, _ = words[i]
        out.append(line[pos:start])
        out.append(MASK)
        pos = end
    out.append(line[pos:])
    return "".join(out)
