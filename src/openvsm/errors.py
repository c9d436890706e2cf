"""One error scheme for the sans-IO cores and their adapters.

- ``ProtocolError``: a core was given something it cannot take.

  - ``RemoteProtocolError``: the peer's fault (a malformed, unauthenticated
    or out-of-turn message). ``reason`` is a counter name: the adapter counts
    the drop (and closes the connection for a stream) and goes on.
  - ``LocalProtocolError``: this side's fault: a local caller asked for
    something the core's state or its arguments forbid (a port that does not
    exist, ``start`` twice, a sync state that does not exist).

- ``ImpossibleTransition`` (a ``LocalProtocolError``): a core tried a state
  change its transition table does not list. Always a bug, never caught.
- ``OperatorRefused``: an operator request the current state does not allow
  (``system switchover`` without a standby in HA standby state ...). Not a
  protocol error: its text is shown to the operator as it is (``% <text>``).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A core cannot take what it was given (see the subclasses)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something unacceptable; ``reason`` is a counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """This side used a core in a way its state or its arguments forbid."""


class ImpossibleTransition(LocalProtocolError):
    """A core tried a state change its transition table does not list (a bug)."""


class OperatorRefused(Exception):
    """An operator request the current state does not allow (shown as ``% <text>``)."""


__all__ = [
    "ImpossibleTransition",
    "LocalProtocolError",
    "OperatorRefused",
    "ProtocolError",
    "RemoteProtocolError",
]
