"""hamgr's ``metrics`` op: heartbeat gaps counted from the peer's heartbeats only,
state changes counted, the answer a valid ``HamgrMetrics`` (virtual time)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openvsm.config import node_config_from_dict
from openvsm.identity import resolve_identity
from openvsm.observe.export import decode_hamgr_metrics
from openvsm.redundancy import engine as eng
from openvsm.redundancy.hamgr import Hamgr
from openvsm.wire.codec import Frame
from openvsm.wire.messages import HeartbeatRequest, SenderRole
from tests.unit.nodedoc import NODE_DOC


def test_metrics_op_counts_peer_heartbeat_gaps_and_state_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = node_config_from_dict(NODE_DOC, base=tmp_path)
    cfg.run_dir.mkdir(parents=True)
    cfg.data_dir.mkdir(parents=True)
    h = Hamgr(resolve_identity(cfg))
    clock = [100.0]
    monkeypatch.setattr(h, "now", lambda: clock[0])

    seqs = iter(range(1, 100))  # each frame a new one (hamgr refuses replays)

    def frame(role: SenderRole) -> Frame:
        msg = HeartbeatRequest(state="active", boot_id=7)
        seq = next(seqs)
        return Frame(role=role, mac="02:00:00:00:00:09", epoch=3, seq=seq, msg=msg, domain=100)

    async def run() -> dict[str, object]:
        h._process(h.engine.start(clock[0]))
        for t in (100.5, 101.5, 103.0):
            clock[0] = t
            h._on_frame(frame(SenderRole.SECONDARY), eng.Iface.CONTROL, ("127.0.0.1", 17101))
            h._on_frame(frame(SenderRole.PRIMARY), eng.Iface.CONTROL, ("127.0.0.1", 17101))
        raw = await h._handle("metrics", {"recent": True})
        if h._timer is not None:
            h._timer.cancel()
        assert isinstance(raw, dict)
        return raw

    m = decode_hamgr_metrics(asyncio.run(run()))
    control = next(i for i in m.interfaces if i.name == "control")
    assert control.gaps is not None
    assert control.gaps.count == 2  # the secondary's three heartbeats; own-role frames ignored
    assert control.max_gap == pytest.approx(1.5)
    assert [s.gap for s in control.recent] == pytest.approx([1.0, 1.5])
    assert m.state == "standby" and m.epoch == 3 and m.role_changes == 1  # epoch learnt
    assert m.max_loss_interval == cfg.timers.max_loss_interval
    assert m.interfaces[1].recent == []
