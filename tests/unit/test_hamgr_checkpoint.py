"""hamgr's run-dir checkpoint (stateful restart): written only while settled,
read back with the predecessor's exit time, and never trusted blindly: a bad
or foreign file means discovery, not a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from openvsm.config import node_config_from_dict
from openvsm.identity import resolve_identity
from openvsm.node import HAMGR_CHECKPOINT, PREVIOUS_EXIT_ENV
from openvsm.redundancy import engine as eng
from openvsm.redundancy.hamgr import Hamgr, HamgrCheckpoint
from tests.unit.nodedoc import NODE_DOC

NODE: dict[str, Any] = NODE_DOC


@pytest.fixture
def hamgr(tmp_path: Path) -> Hamgr:
    cfg = node_config_from_dict(NODE, base=tmp_path)
    cfg.run_dir.mkdir(parents=True)
    cfg.data_dir.mkdir(parents=True)
    return Hamgr(resolve_identity(cfg))


def active_alone(h: Hamgr) -> None:
    """Discovery with nobody around; the epoch made durable as hamgr does."""
    h.engine.start(0.0)
    for effect in h.engine.tick(h.cfg.timers.discovery_window):
        if isinstance(effect, eng.PersistFacts):
            h._persist(effect.facts)
    assert h.engine.state is eng.HaState.ACTIVE


def test_written_while_settled_and_removed_when_not(hamgr: Hamgr) -> None:
    path = hamgr.cfg.run_dir / HAMGR_CHECKPOINT
    hamgr._keep_checkpoint()
    assert not path.exists()  # initializing: nothing to resume
    active_alone(hamgr)
    hamgr.switch_seq = 4
    hamgr._keep_checkpoint()
    cp = msgspec.json.decode(path.read_bytes(), type=HamgrCheckpoint)
    assert cp.engine.state is eng.HaState.ACTIVE and cp.engine.epoch == 1
    assert cp.engine.boot_id == hamgr.engine.config.boot_id and cp.switch_seq == 4
    written = path.stat().st_mtime_ns
    hamgr._keep_checkpoint()
    assert path.stat().st_mtime_ns == written  # unchanged: not rewritten
    hamgr.engine.request_reload(1.0)
    hamgr._keep_checkpoint()
    assert not path.exists()  # reloading: the next process must not resume


def test_read_back_with_the_predecessors_exit_time(
    hamgr: Hamgr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    active_alone(hamgr)
    hamgr.peer_lost = True
    hamgr._keep_checkpoint()
    monkeypatch.setenv(PREVIOUS_EXIT_ENV, repr(hamgr.now() + 5.0))
    successor = Hamgr(hamgr.cfg)
    point = successor._load_checkpoint()
    assert point is not None and point.state is eng.HaState.ACTIVE
    assert point.alive_at >= hamgr.now() + 4.0  # raised to the exit time
    assert successor.engine.config.boot_id != point.boot_id  # until it resumes
    successor.engine.resume(point, successor.now())
    assert successor.engine.resuming
    assert not successor.peer_lost  # hamgr's own facts only once resumed


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b'{"role": "primary"}',
        b'{"role": "primary", "system_mac": "x", "engine": {"state": "bogus"}}',
        b"\xff\xfe",
    ],
)
def test_a_bad_checkpoint_means_discovery(hamgr: Hamgr, content: bytes) -> None:
    (hamgr.cfg.run_dir / HAMGR_CHECKPOINT).write_bytes(content)
    assert hamgr._load_checkpoint() is None


def test_a_checkpoint_of_another_role_or_mac_is_ignored(hamgr: Hamgr) -> None:
    active_alone(hamgr)
    hamgr._keep_checkpoint()
    path = hamgr.cfg.run_dir / HAMGR_CHECKPOINT
    raw = json.loads(path.read_text())
    for key, value in (("role", "secondary"), ("system_mac", "02:00:00:00:00:99")):
        path.write_text(json.dumps({**raw, key: value}))
        assert hamgr._load_checkpoint() is None
