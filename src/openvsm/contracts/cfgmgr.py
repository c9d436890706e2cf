"""cfgmgr's IPC API (``RUNDIR/cfgmgr.sock``) but its CLI ops (``cli``,
``ssh_cli``: docs/cli.md): requests and replies."""

from __future__ import annotations

from typing import Any

from openvsm.contracts.base import Reply, Request, Topic


class OpArg(Reply, frozen=True, kw_only=True):
    """One store op of a change: ``body`` None deletes (docs: store object kinds)."""

    kind: str
    key: str
    body: dict[str, Any] | None = None


class CommitResult(Reply, frozen=True, kw_only=True):
    seq: int  # the change's sequence number


class Commit(Request[CommitResult], frozen=True, kw_only=True):
    """Commit ``ops`` as one change (the active only; replicated, acknowledged
    once the standby has it). A body that does not match its kind's contract is
    refused: ``% Configuration not saved: invalid op KIND/KEY: ...``."""

    op = "commit"
    reply = CommitResult
    ops: list[OpArg]
    user: str = "admin"
    source: str = "ipc"
    command: str = ""


class List(Request[dict[str, dict[str, Any]]], frozen=True, kw_only=True):
    """Every object of ``kind``: {key: body}."""

    op = "list"
    reply = dict[str, dict[str, Any]]
    kind: str


class Get(Request[dict[str, Any] | None], frozen=True, kw_only=True):
    """One object's body, or None."""

    op = "get"
    reply = dict[str, Any] | None
    kind: str
    key: str


class Digest(Reply, frozen=True, kw_only=True):
    digest: str
    seq: int


class SnapshotDigest(Request[Digest], frozen=True, kw_only=True):
    """The store's digest and last sequence number (the pair compares them)."""

    op = "snapshot_digest"
    reply = Digest


class AccountingRow(Reply, frozen=True, kw_only=True):
    time: float
    user: str
    command: str
    result: str
    seq: int


class Accounting(Request[list[AccountingRow]], frozen=True, kw_only=True):
    """The newest ``limit`` entries of the accounting log."""

    op = "accounting"
    reply = list[AccountingRow]
    limit: int = 1000


class ChangesSinceTime(Request[list[AccountingRow]], frozen=True, kw_only=True):
    """Changes committed here after ``time`` (wall clock), as accounting rows
    with result DISCARDED: a split-brain loser's list; ``fence`` first makes
    cfgmgr refuse writes, so every change it acknowledged is in the list."""

    op = "changes_since_time"
    reply = list[AccountingRow]
    time: float = 0.0
    fence: bool = False


class Fenced(Reply, frozen=True, kw_only=True):
    fenced: bool
    seq: int


class Fence(Request[Fenced], frozen=True, kw_only=True):
    """hamgr, before a switchover or reload: acknowledge no change the standby
    may not have (pending ones stay pending); ``fenced=False`` lifts it."""

    op = "fence"
    reply = Fenced
    fenced: bool = True


class SyncStatus(Request[dict[str, Any]], frozen=True, kw_only=True):
    """The replication stream's state: {role: sender|receiver|none, state, ...}."""

    op = "sync_status"
    reply = dict[str, Any]


REQUESTS: tuple[type[Request[Any]], ...] = (
    Commit,
    List,
    Get,
    SnapshotDigest,
    Accounting,
    ChangesSinceTime,
    Fence,
    SyncStatus,
)
TOPICS = (Topic("changes", None, "{seq, ops} of every committed change ({seq} on subscribing)"),)
