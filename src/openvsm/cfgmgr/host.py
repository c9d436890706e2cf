"""What cfgmgr's parts need from the process that hosts them.

``Cfgmgr`` (``cfgmgr/service.py``) owns the store, the IPC clients and the
commit path, and builds its parts: the CLI handlers (``cli``, ``configmode``,
``shows``, ``modules``), the REST wiring (``rest``) and the replication glue
(``replication``). Each part names here the narrow view of ``Cfgmgr`` it uses,
so no part imports the service (no import cycle) and a test can hand a part a
small stand-in instead of a whole service.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from openvsm.cfgmgr.acks import WriteAcks
from openvsm.cli.server import CliServer
from openvsm.config import NodeConfig
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import IpcClient, IpcServer
from openvsm.observe.metrics import NodeMetrics
from openvsm.store.pss import Change, Op, Store
from openvsm.store.writer import StoreWriter


class NodeView(Protocol):
    """The node's configuration, its store and hamgr's last status (read only)."""

    @property
    def cfg(self) -> NodeConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def ha(self) -> HaStatus: ...

    def wall(self) -> float:
        """The node's wall clock (``time.time()`` plus the configured offset)."""
        ...


class ModuleSources(NodeView, Protocol):
    """``show module`` and friends: hamgr's current word and vemmgr's table."""

    @property
    def hamgr(self) -> IpcClient: ...

    @property
    def vemmgr(self) -> IpcClient: ...


class Committer(NodeView, Protocol):
    """The write path: one replicated change per call, and the accounting log."""

    async def commit(self, ops: list[Op], *, user: str, source: str, command: str) -> Change: ...

    def account(self, *, user: str, command: str, result: str) -> None: ...


class SyncView(Protocol):
    """The replication stream as the status page sees it."""

    def status(self) -> dict[str, Any]: ...


class RestHost(Committer, ModuleSources, Protocol):
    """The REST API and the observability pages (``cfgmgr/rest.py``)."""

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def sync(self) -> SyncView | None: ...

    @property
    def cli(self) -> CliServer | None: ...

    def is_active(self) -> bool: ...

    def not_active_text(self) -> str: ...


class CliHost(Committer, ModuleSources, Protocol):
    """The exec commands (``cfgmgr/cli.py``)."""

    @property
    def sysmgr(self) -> IpcClient: ...

    @property
    def rest(self) -> web.AppRunner | None: ...

    async def ensure_active(self) -> None:
        """Raise ``IpcError`` (an operator's message) unless this node serves writes."""
        ...


class ReplicationHost(NodeView, Protocol):
    """The replication glue (``cfgmgr/replication.py``)."""

    @property
    def hamgr(self) -> IpcClient: ...

    @property
    def ipc(self) -> IpcServer: ...

    @property
    def acks(self) -> WriteAcks: ...

    @property
    def writer(self) -> StoreWriter | None: ...

    def on_replicated(self, changes: list[Change]) -> None: ...
