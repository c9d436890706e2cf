"""A VSM's identity: its system MAC belongs to its installation (DESIGN §2).

The MAC a node sends in every frame header, and that its peer learns and
enforces (seed SV3(1.1) note), is resolved once at node start:

1. ``node.system_mac`` in the config file, when the operator pins it;
2. otherwise the MAC kept in ``DATA_DIR/system-mac`` (one line, mode 0600);
3. otherwise, at the first boot of the data directory, a random locally
   administered unicast MAC (first octet: bit 0x02 set, bit 0x01 clear),
   written there atomically (temporary file, fsync, ``link`` that never
   overwrites, directory fsync) before any service sends a frame.

It never comes from the config file's contents, so a copied config file
(new ports, new data directory: the cloned-VM mistake) is a different VSM
and is reported as a role collision, not mistaken for its original.

Migration: a data directory that has been running before this rule (it
holds ``ha-facts.json`` or ``pss.db`` but no ``system-mac``) keeps the MAC it
has been using, the one earlier versions derived from domain id and node
name; it is written to ``system-mac`` so that it never changes again. A pinned
MAC is recorded there too (the directory remembers the MAC it last used, so
removing the pin later keeps it).

sysmgr resolves the MAC before it starts any service; every service process
resolves again from the same file and gets the same value. A ``system-mac``
file that cannot be read or is not a unicast MAC stops the node with its
path (``ConfigError``): a fresh identity would make the peer drop this VSM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
from pathlib import Path

from openvsm import macs
from openvsm.config import ConfigError, NodeConfig, derived_mac, load_node_config, unicast_mac

log = logging.getLogger("identity")

MAC_FILE = "system-mac"
# Files that prove a data directory ran before system-mac existed.
STATE_FILES = ("ha-facts.json", "pss.db")


class MacSource(enum.Enum):
    CONFIGURED = "configured"  # node.system_mac
    KEPT = "kept"  # DATA_DIR/system-mac
    GENERATED = "generated"  # first boot of the data directory
    MIGRATED = "migrated"  # a data directory from before: its derived MAC


random_mac = macs.random_mac


def read_mac_file(data_dir: Path) -> str | None:
    """The MAC kept in the data directory; None when there is no file."""
    path = data_dir / MAC_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); refusing to start") from None
    try:
        return unicast_mac(text, str(path))
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; refusing to start (restore the file, or pin node.system_mac)"
        ) from None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_mac_file(data_dir: Path, mac: str, *, replace: bool) -> str:
    """Write ``mac`` durably; without ``replace`` an existing file wins (returned)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / MAC_FILE
    tmp = data_dir / f"{MAC_FILE}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{mac}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            tmp.replace(final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                # Another process of this node resolved first: its MAC is the one.
                kept = read_mac_file(data_dir)
                if kept is not None:
                    return kept
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(data_dir)
    return mac


def resolve_mac(cfg: NodeConfig) -> tuple[str, MacSource]:
    """The node's system MAC and where it came from; writes the file when needed."""
    kept = read_mac_file(cfg.data_dir)
    if cfg.configured_mac is not None:
        if kept != cfg.configured_mac:
            _write_mac_file(cfg.data_dir, cfg.configured_mac, replace=True)
        return cfg.configured_mac, MacSource.CONFIGURED
    if kept is not None:
        return kept, MacSource.KEPT
    if any((cfg.data_dir / name).exists() for name in STATE_FILES):
        mac, source = derived_mac(f"{cfg.domain_id}/{cfg.name}"), MacSource.MIGRATED
    else:
        mac, source = random_mac(), MacSource.GENERATED
    written = _write_mac_file(cfg.data_dir, mac, replace=False)
    return written, source if written == mac else MacSource.KEPT


def resolve_identity(cfg: NodeConfig) -> NodeConfig:
    """``cfg`` with its system MAC resolved (the one place that decides it)."""
    mac, source = resolve_mac(cfg)
    if source in (MacSource.GENERATED, MacSource.MIGRATED):
        log.warning("system MAC %s %s for data directory %s", mac, source.value, cfg.data_dir)
    return dataclasses.replace(cfg, resolved_mac=mac)


def load_node(path: Path) -> NodeConfig:
    """Parse a VSM node file and resolve its identity (sysmgr and every service)."""
    return resolve_identity(load_node_config(path))
