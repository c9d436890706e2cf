"""The node: what a VSM's services (and a VEM) share, and nothing else.

Every service of a VSM node imports this module; it imports nothing of
openvsm, so no service has to import another to learn how to exit, where a
socket lives or which services the node runs.

- Exit codes a service process reports to sysmgr (``RELOAD_EXIT``,
  ``FATAL_EXIT``) and the exceptions that produce them (``NodeReload``,
  ``NodeFatal``; mapped by ``sysmgr.service``).
- The service registry: the services sysmgr runs, in start order
  (``SERVICES``, ``OPTIONAL_SERVICES``, ``node_services``); each one's entry
  coroutine is imported by ``sysmgr.service`` in that service's own process.
- ``RunDir``: the name of every socket and run file in a node's (or a VEM's)
  run directory. Nothing else in ``src/`` spells those names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

RELOAD_EXIT: Final = 75
FATAL_EXIT: Final = 78  # EX_CONFIG: sysmgr stops the node with the reason in its log and console

# sysmgr tells a restarted service when (time.monotonic()) its predecessor exited.
PREVIOUS_EXIT_ENV: Final = "OPENVSM_PREVIOUS_EXIT"

# hamgr keeps its split-brain resolution inputs here for one node boot.
RESOLUTION_FACTS: Final = "resolution-facts.json"
# hamgr's checkpoint for a stateful restart (its redundancy state), one node boot.
HAMGR_CHECKPOINT: Final = "hamgr-checkpoint.json"
# vemmgr keeps the module statuses of the current activation here for one node boot.
VEMMGR_ATTACHMENTS: Final = "vemmgr-attachments.json"
# Run files that live for one node boot: sysmgr removes them when the node boots.
BOOT_LIVED: Final = (RESOLUTION_FACTS, HAMGR_CHECKPOINT, VEMMGR_ATTACHMENTS)

SERVICES: Final = ("hamgr", "cfgmgr", "vemmgr")
# The remote management service (SSH server, shared management address): started
# last, stopped first (its address goes before the node's other services stop).
OPTIONAL_SERVICES: Final = ("mgmt",)


class RemoteManaged(Protocol):
    """The part of a node's configuration that decides whether mgmt runs."""

    @property
    def ssh(self) -> object: ...

    @property
    def shared_mgmt(self) -> object: ...


def node_services(cfg: RemoteManaged) -> tuple[str, ...]:
    """The services sysmgr runs for ``cfg``, in start order."""
    if cfg.ssh is not None or cfg.shared_mgmt is not None:
        return (*SERVICES, "mgmt")
    return SERVICES


class NodeFatal(Exception):
    """Raised by a service that must not run (and must not be restarted)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NodeReload(Exception):
    """Raised by a service that needs the whole node to reload."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Every IPC socket of a node (the VSM services) or of a VEM agent ("vem").
SOCKET_OWNERS: Final = ("sysmgr", *SERVICES, *OPTIONAL_SERVICES, "vem")


class RunDir:
    """A run directory (``node.run_dir`` of a VSM, ``vem.run_dir`` of a VEM) and
    the names of its sockets and run files."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def socket(self, owner: str) -> Path:
        """The IPC socket of ``owner`` (a service name, ``sysmgr`` or ``vem``)."""
        if owner not in SOCKET_OWNERS:
            raise ValueError(f"no socket for {owner!r}")
        return self.path / f"{owner}.sock"

    @property
    def sysmgr(self) -> Path:
        return self.socket("sysmgr")

    @property
    def hamgr(self) -> Path:
        return self.socket("hamgr")

    @property
    def cfgmgr(self) -> Path:
        return self.socket("cfgmgr")

    @property
    def vemmgr(self) -> Path:
        return self.socket("vemmgr")

    @property
    def mgmt(self) -> Path:
        return self.socket("mgmt")

    @property
    def vem(self) -> Path:
        return self.socket("vem")

    def log(self, name: str) -> Path:
        """The log of a service, of sysmgr or of a VEM agent (``name.log``)."""
        return self.path / f"{name}.log"

    @property
    def reload_reason(self) -> Path:
        """Why the node reloads: written by the service (or sysmgr) asking for it."""
        return self.path / "reload-reason"

    @property
    def fatal_reason(self) -> Path:
        """Why the node cannot run: written by the service that found it."""
        return self.path / "fatal-reason"

    @property
    def sysmgr_lock(self) -> Path:
        return self.path / "sysmgr.lock"

    @property
    def sysmgr_pid(self) -> Path:
        return self.path / "sysmgr.pid"

    @property
    def resolution_facts(self) -> Path:
        return self.path / RESOLUTION_FACTS

    @property
    def hamgr_checkpoint(self) -> Path:
        return self.path / HAMGR_CHECKPOINT

    @property
    def vemmgr_attachments(self) -> Path:
        return self.path / VEMMGR_ATTACHMENTS

    @property
    def notify_last(self) -> Path:
        """When each notify hook last fired (its minimum interval survives a restart)."""
        return self.path / "notify-last.json"

    @property
    def boot_lived(self) -> tuple[Path, ...]:
        """The run files that must not outlive the node's boot."""
        return tuple(self.path / name for name in BOOT_LIVED)
