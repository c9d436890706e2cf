"""Durable private writes (openvsm.files, issue 12 point 6): the VEM agent's
state files (ports.json, config.msgpack), identity and key files go through
``write_private``: 0600 whatever the umask, file and directory fsynced, and
a write that fails half way leaves the old file whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from openvsm import files
from openvsm.files import write_private


def test_private_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "ports.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ports.json").stat().st_mode) == 0o600
    assert (tmp_path / "ports.json").read_bytes() == b"{}"
    assert not (tmp_path / "ports.json.tmp").exists()


def test_the_file_and_its_directory_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    write_private(tmp_path / "config.msgpack", b"x" * 100_000)
    # the data before the rename (the temporary file), the rename after it (the directory)
    assert synced == [str(tmp_path / "config.msgpack.tmp"), str(tmp_path)]


def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ports.json"
    write_private(path, b'{"old": true}')

    def disk_full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError):
        write_private(path, b'{"new": true}')
    assert path.read_bytes() == b'{"old": true}'


def test_the_vem_agent_writes_its_state_files_privately() -> None:
    src = (Path(files.__file__).parent / "vem" / "agent.py").read_text()
    assert "write_private(self._config_file" in src and "write_private(self._ports_file" in src
    assert "write_text(" not in src and "write_bytes(" not in src
