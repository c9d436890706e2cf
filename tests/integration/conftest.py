"""Fixtures for integration tests: real processes on loopback, always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.lab.lab import Lab


def _pids_in_dir(root: Path) -> list[int]:
    """Processes whose command line mentions ``root`` (leaks from a test)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid_s, _, args = line.strip().partition(" ")
        if str(root) in args and "openvsm" in args:
            pids.append(int(pid_s))
    return pids


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def factory(**kwargs: Any) -> Lab:
        root = tmp_path / f"lab{len(labs)}"
        lab = Lab(root, **kwargs)
        labs.append(lab)
        return lab

    try:
        yield factory
    finally:
        for lab in labs:
            lab.stop()
        leaked = _pids_in_dir(tmp_path)
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not leaked, f"processes leaked by the test: {leaked}"
