"""The bases every IPC contract derives from.

A ``Request`` names its op (``op``) and the type of its result (``reply``);
its fields are the op's arguments. Servers decode the arguments with
``openvsm.ipc.decode_args`` (unknown or missing fields, wrong types: an
``IpcBadArgs`` whose text names the op and the field, counted as
``bad_args``); clients send them with ``IpcClient.ask``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Request(msgspec.Struct, Generic[T], frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An IPC request: the op's name and its arguments; ``T`` (and, at run
    time, ``reply``) the type of its result."""

    op: ClassVar[str]
    reply: ClassVar[Any]


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """An IPC reply or topic event. Unknown fields are ignored (a newer server)."""


class Ok(Reply, frozen=True, kw_only=True):
    """The result of an op that only acknowledges."""

    ok: bool = True


class Topic(msgspec.Struct, frozen=True):
    """A topic a service publishes on ``subscribe``: its name and event type."""

    name: str
    event: Any
    doc: str


def args_of(req: Request[Any]) -> dict[str, Any]:
    """The request's arguments as IPC builtins (unset optional fields left out)."""
    out = msgspec.to_builtins(req)
    assert isinstance(out, dict)
    return out
