"""Generate docs/CONTRACTS.md from the contract Structs.

``python -m openvsm.contracts.doc > docs/CONTRACTS.md`` renders the template
``docs/CONTRACTS.in.md`` (the prose) with its markers replaced by tables built
from the Structs: ``@@hamgr@@`` (hamgr's ops, topics and ``HaStatus``) and
``@@cfgmgr@@`` (cfgmgr's ops but the CLI's) and ``@@objects@@`` (the store
object kinds). A field's description is the comment
on or above its line in the Struct's source. tests/unit/test_contracts_doc.py
fails when the file differs from what this prints.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any, get_args

from openvsm.contracts import cfgmgr, hamgr, objects
from openvsm.contracts.base import Request

TEMPLATE = Path(__file__).resolve().parents[3] / "docs" / "CONTRACTS.in.md"
_FIELD = re.compile(r"^    (\w+): ([^=#]+?)(?: = ([^#]+?))?\s*(?:#\s*(.*))?$")
_COMMENT = re.compile(r"^    #\s?(.*)$")


def field_notes(cls: type[Any]) -> dict[str, tuple[str, str, str]]:
    """Field -> (type, default, description) as written in ``cls``'s source."""
    notes: dict[str, tuple[str, str, str]] = {}
    above: list[str] = []
    in_doc = False
    for line in inspect.getsource(cls).splitlines()[1:]:
        quotes = line.count('"""')
        if in_doc or quotes:
            in_doc = in_doc != (quotes % 2 == 1)
            continue
        comment = _COMMENT.match(line)
        if comment:
            above.append(comment.group(1))
            continue
        m = _FIELD.match(line)
        if m is None or m.group(2).startswith("ClassVar"):
            above = []
            continue
        name, annotation, default, trailing = m.groups()
        text = " ".join([*above, trailing or ""]).strip()
        notes[name] = (annotation.strip(), (default or "").strip(), text)
        above = []
    return notes


def _wire_name(cls: type[Any], field: str) -> str:
    names = dict(zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True))
    return str(names.get(field, field))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def fields_table(cls: type[Any]) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, (annotation, default, text) in field_notes(cls).items():
        shown = "(required)" if not default else f"`{_cell(default)}`"
        rows.append(
            f"| `{_wire_name(cls, name)}` | `{_cell(annotation)}` | {shown} | {_cell(text)} |"
        )
    return "\n".join(rows)


def _aliases(*pairs: tuple[str, Any]) -> str:
    return "\n".join(
        f"- `{name}`: " + " \\| ".join(f'`"{v}"`' for v in get_args(alias)) for name, alias in pairs
    )


def _first_line(cls: type[Any]) -> str:
    return " ".join((inspect.getdoc(cls) or "").split())


def _reply_name(req: type[Request[Any]]) -> str:
    reply = req.reply
    return reply.__name__ if isinstance(reply, type) else str(reply).replace("typing.", "")


def _args(req: type[Request[Any]]) -> str:
    notes = field_notes(req)
    if not notes:
        return "-"
    return ", ".join(f"`{n}`: `{t}`" + (f" = `{d}`" if d else "") for n, (t, d, _) in notes.items())


def hamgr_section() -> str:
    out = [
        "Ops of `RUNDIR/hamgr.sock` (`openvsm.contracts.hamgr`; request Struct, its",
        "arguments, its result):",
        "",
        "| op | Struct | arguments | result | meaning |",
        "|---|---|---|---|---|",
    ]
    for req in hamgr.REQUESTS:
        out.append(
            f"| `{req.op}` | `{req.__name__}` | {_cell(_args(req))} | "
            f"`{_cell(_reply_name(req))}` | {_cell(_first_line(req))} |"
        )
    out += ["", "Topics (`subscribe` / `subscribe_typed`):", ""]
    for topic in hamgr.TOPICS:
        event = getattr(topic.event, "__name__", "-")
        out.append(f"- `{topic.name}` (`{event}`): {topic.doc}")
    out += ["", f"`HaStatus`: {_first_line(hamgr.HaStatus)}", "", fields_table(hamgr.HaStatus)]
    aliases = (("HaStateName", hamgr.HaStateName), ("SyncStateName", hamgr.SyncStateName))
    out += ["", _aliases(*aliases)]
    return "\n".join(out)


def service_section(module: Any, sock: str) -> str:
    """The ops table of a service API module (``REQUESTS``, ``TOPICS``)."""
    out = [
        f"Ops of `{sock}` (`{module.__name__}`; request Struct, its arguments, its result):",
        "",
        "| op | Struct | arguments | result | meaning |",
        "|---|---|---|---|---|",
    ]
    for req in module.REQUESTS:
        out.append(
            f"| `{req.op}` | `{req.__name__}` | {_cell(_args(req))} | "
            f"`{_cell(_reply_name(req))}` | {_cell(_first_line(req))} |"
        )
    out += ["", "Topics:", ""]
    for topic in module.TOPICS:
        out.append(f"- `{topic.name}`: {topic.doc}")
    return "\n".join(out)


def objects_section() -> str:
    out: list[str] = [_aliases(("Owner", objects.Owner)), ""]
    for kind, cls in objects.KINDS.items():
        out += [f"### `{kind}` (`{cls.__name__}`)", "", _first_line(cls), "", fields_table(cls), ""]
    return "\n".join(out).rstrip()


def render(template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template
    cfgmgr_ops = service_section(cfgmgr, "RUNDIR/cfgmgr.sock")
    return (
        text.replace("@@hamgr@@", hamgr_section())
        .replace("@@cfgmgr@@", cfgmgr_ops)
        .replace("@@objects@@", objects_section())
    )


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
