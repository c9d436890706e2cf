"""cfgmgr's ``show module`` when vemmgr cannot give its live table: never the
previous active's ``ok`` on a new active, the checkpoint on the same active,
the replicated view on a standby."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec

from openvsm.cfgmgr.modules import show_module_data
from openvsm.contracts.base import Request
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import IpcError, IpcUnavailable, decode_result
from openvsm.modules.checkpoint import write_attachments
from openvsm.modules.table import Attachment, AttachmentCheckpoint
from openvsm.node import VEMMGR_ATTACHMENTS, RunDir

STORE: dict[str, dict[str, dict[str, Any]]] = {
    "module": {
        "u1": {"module": 3, "host_uuid": "u1", "host_name": "h1", "status": "ok"},
        "u2": {"module": 4, "host_uuid": "u2", "host_name": "h2", "status": "ok"},
        "u3": {"module": 5, "host_uuid": "u3", "host_name": "h3", "status": "offline"},
    },
    "veth": {"Vethernet1": {"host_uuid": "u1", "port": "vnet1", "vm": "vm-1"}},
}


@dataclass
class Peer:
    """A stand-in IpcClient: a fixed answer, or an error."""

    answer: Any = None
    error: IpcError | None = None
    calls: list[str] = field(default_factory=list)

    async def call(self, op: str, timeout: float = 0.0, **args: Any) -> Any:
        self.calls.append(op)
        if self.error is not None:
            raise self.error
        return self.answer

    async def ask(self, req: Request[Any], timeout: float = 0.0) -> Any:
        return decode_result(req.op, await self.call(req.op, timeout), req.reply)


def fake_cfgmgr(run_dir: Path, *, hamgr: Peer, vemmgr: Peer, ha: dict[str, Any]) -> Any:
    def objects(kind: str) -> dict[str, dict[str, Any]]:
        return dict(STORE.get(kind, {}))

    store = SimpleNamespace(list=objects)
    cfg = SimpleNamespace(
        sup_number=1,
        run_dir=run_dir,
        rundir=RunDir(run_dir),
        module_limit=16,
        mgmt=SimpleNamespace(local=SimpleNamespace(host="127.0.0.1")),
    )
    status = msgspec.convert(ha, HaStatus)
    return cast(Any, SimpleNamespace(cfg=cfg, ha=status, store=store, hamgr=hamgr, vemmgr=vemmgr))


def vem_statuses(data: dict[str, Any]) -> dict[int, str]:
    return {
        r["modinf"]: r["status"]
        for r in data["TABLE_modinfo"]["ROW_modinfo"]
        if r["modtype"] == "Virtual Ethernet Module"
    }


def run(cm: Any) -> dict[str, Any]:
    return asyncio.run(show_module_data(cm))


ACTIVE = {"state": "active", "epoch": 7, "peer_present": False}
STANDBY = {"state": "standby", "epoch": 6, "peer_present": True, "peer_state": "active"}
DOWN = IpcUnavailable("vemmgr.sock is not reachable")


def test_a_new_active_whose_vemmgr_has_not_taken_over_shows_powered_up() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        not_yet = Peer(answer={"active": False, "TABLE_modinfo": {"ROW_modinfo": []}})
        for vemmgr in (not_yet, Peer(error=DOWN)):
            cm = fake_cfgmgr(Path(tmp), hamgr=Peer(answer=ACTIVE), vemmgr=vemmgr, ha=STANDBY)
            data = run(cm)
            # hamgr's current word (active), not cfgmgr's last event (standby).
            assert data["TABLE_modinfo"]["ROW_modinfo"][0]["status"] == "active *"
            assert vem_statuses(data) == {3: "powered-up", 4: "powered-up", 5: "offline"}


def test_the_same_active_shows_its_checkpointed_statuses_while_vemmgr_restarts() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        saved = AttachmentCheckpoint(
            epoch=6,  # hamgr restarted on this active since: still this activation
            modules={"u1": Attachment(status="ok"), "u2": Attachment(status="powered-up")},
        )
        write_attachments(Path(tmp) / VEMMGR_ATTACHMENTS, saved)
        cm = fake_cfgmgr(Path(tmp), hamgr=Peer(answer=ACTIVE), vemmgr=Peer(error=DOWN), ha=ACTIVE)
        assert vem_statuses(run(cm)) == {3: "ok", 4: "powered-up", 5: "offline"}
        # A bad file is no checkpoint: the takeover rule.
        (Path(tmp) / VEMMGR_ATTACHMENTS).write_text("{not json")
        assert vem_statuses(run(cm)) == {3: "powered-up", 4: "powered-up", 5: "offline"}


def test_a_standby_mirrors_the_replicated_view_and_hamgr_down_uses_the_last_status() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hamgr_down = Peer(error=IpcUnavailable("hamgr.sock is not reachable"))
        cm = fake_cfgmgr(Path(tmp), hamgr=hamgr_down, vemmgr=Peer(error=DOWN), ha=STANDBY)
        data = run(cm)
        assert vem_statuses(data) == {3: "ok", 4: "ok", 5: "offline"}
        rows = data["TABLE_modinfo"]["ROW_modinfo"]
        assert [(r["modinf"], r["status"]) for r in rows[:2]] == [
            (1, "ha-standby *"),
            (2, "active"),
        ]
        assert hamgr_down.calls == ["status"]
        # The live answer of an active vemmgr is passed through as it is.
        live = {"active": True, "TABLE_modinfo": {"ROW_modinfo": [{"modinf": 3, "status": "ok"}]}}
        cm = fake_cfgmgr(Path(tmp), hamgr=Peer(answer=ACTIVE), vemmgr=Peer(answer=live), ha=ACTIVE)
        assert run(cm)["TABLE_modinfo"]["ROW_modinfo"][1] == {"modinf": 3, "status": "ok"}
