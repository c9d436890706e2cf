"""vemmgr's IPC and UDP behaviour against tiny stand-ins for hamgr and cfgmgr.

hamgr and cfgmgr are separate services; here each is a few lines of
IpcServer speaking the documented ops (docs/CONTRACTS.md). The VEM is the
real core and runner over UDP on 127.0.0.1. Waits are on conditions with
deadlines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from openvsm.config import node_config_from_dict, parse_endpoint
from openvsm.contracts.base import Request, args_of
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import IpcClient, IpcError, IpcServer, decode_result
from openvsm.modules.table import Commit, StoreOp
from openvsm.modules.vemmgr import Vemmgr, merge_commits
from openvsm.vem.agent import VemRunner
from openvsm.vem.core import VemCore, VemState
from openvsm.vem.memory import MemoryBackend
from openvsm.wire.codec import Codec
from openvsm.wire.keys import derive_host_key, vem_mac
from openvsm.wire.messages import SenderRole, VemHeartbeat
from openvsm.wire.udp import UdpEndpoint

DOMAIN = 77
SECRET = "unit-secret"


class FakeHamgr:
    def __init__(self, path: Path) -> None:
        self.status: dict[str, Any] = {"state": "standby", "role": "primary", "epoch": 2}
        self.counts: list[int] = []
        self.server = IpcServer(path, self.handle)

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op in ("status", "subscribed"):
            return self.status
        if op == "set_module_count":
            self.counts.append(int(args["count"]))
            return {"ok": True}
        raise IpcError(f"unknown op {op}")

    def set(self, **changes: Any) -> None:
        self.status = {**self.status, **changes}
        self.server.publish("status", self.status)


class FakeCfgmgr:
    def __init__(self, path: Path) -> None:
        self.store: dict[str, dict[str, Any]] = {
            "port_profile": {"vm-net": {"name": "vm-net", "type": "vethernet", "access_vlan": 10}},
            "vlan": {"10": {"id": 10}, "20": {"id": 20}},
        }
        self.commits: list[dict[str, Any]] = []
        self.seq = 0
        self.server = IpcServer(path, self.handle)

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "subscribed":
            return None
        if op == "list":
            return dict(self.store.get(args["kind"], {}))
        if op == "commit":
            self.commit(args["ops"])
            self.commits.append(args)
            return {"seq": self.seq}
        raise IpcError(f"unknown op {op}")

    def commit(self, ops: list[dict[str, Any]]) -> None:
        for op in ops:
            objs = self.store.setdefault(op["kind"], {})
            if op["body"] is None:
                objs.pop(op["key"], None)
            else:
                objs[op["key"]] = op["body"]
        self.seq += 1
        self.server.publish("changes", {"seq": self.seq, "ops": ops})


async def wait_until(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def deployment(
    vem_key: bytes | None = None,
) -> AsyncIterator[tuple[Vemmgr, FakeHamgr, FakeCfgmgr, VemRunner, Path]]:
    """vemmgr and one VEM; ``vem_key``: the VSM holds that VEM key (``[keys]``)
    and the VEM only its derived host key, else both the old shared secret."""
    root = Path(tempfile.mkdtemp(prefix="ovvm"))
    run = root / "run"
    cfg = node_config_from_dict(
        {
            "node": {
                "domain_id": DOMAIN,
                "role": "primary",
                "secret": SECRET,
                "system_mac": "02:00:00:00:00:01",
                "data_dir": str(root / "data"),
                "run_dir": str(run),
            },
            "interfaces": {
                "control": {"local": "127.0.0.1:0"},
                "mgmt": {"local": "127.0.0.1:0"},
            },
            "timers": {"heartbeat_interval_ms": 100, "max_loss_interval_ms": 1000},
            "vem": {"listen": "127.0.0.1:0", "module_limit": 8},
        }
    )
    hamgr = FakeHamgr(run / "hamgr.sock")
    cfgmgr = FakeCfgmgr(run / "cfgmgr.sock")
    await hamgr.server.start()
    await cfgmgr.server.start()
    vem_secret = SECRET.encode()
    if vem_key is not None:
        cfg = dataclasses.replace(cfg, vem_keys=(vem_key,))
        vem_secret = derive_host_key(vem_key, "uuid-host-1").encode()
    mgr = Vemmgr(cfg)
    vem_ep: UdpEndpoint | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await mgr.start()
        vsm_addr = mgr.endpoint.local
        core = VemCore(
            host_uuid="uuid-host-1",
            host_name="host-1",
            host_ip="127.0.0.1",
            vsms=(vsm_addr,),
            heartbeat_interval=0.1,
            headless_after=1.0,
        )
        vem_ep = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None)
        await vem_ep.open()
        runner = VemRunner(core, Codec(DOMAIN, vem_secret), MemoryBackend(), vem_ep.send)
        vem_ep.on_datagram = runner.on_datagram
        core.attach_port("vm-a", "vm-net", "02:00:00:00:00:aa")
        runner.start()
        tasks.append(asyncio.create_task(runner.timer_loop()))
        yield mgr, hamgr, cfgmgr, runner, run
    finally:
        for task in tasks:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if vem_ep is not None:
            vem_ep.close()
        await mgr.stop()
        await hamgr.server.stop()
        await cfgmgr.server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def call(run: Path, op: str) -> Any:
    client = IpcClient(run / "vemmgr.sock", timeout=5.0)
    try:
        return await client.call(op)
    finally:
        client.close()


def test_vemmgr_serves_vems_only_when_active_and_commits_modules() -> None:
    async def scenario() -> None:
        async with deployment() as (mgr, hamgr, cfgmgr, runner, run):
            core = runner.core
            # Standby: the VEM's attach requests are dropped, not answered.
            await wait_until(lambda: mgr.table.counters["not_active"] >= 2, "dropped attaches")
            assert core.state is VemState.BOOTING
            hamgr.set(state="active", epoch=3)
            await wait_until(lambda: core.state is VemState.ATTACHED, "VEM attached")
            assert core.module == 3 and core.highest_epoch == 3
            # The module may be committed in steps (its row, then its status):
            # wait for the attached state, not for the first commit.
            await wait_until(
                lambda: (
                    cfgmgr.store.get("module", {}).get("uuid-host-1", {}).get("status") == "ok"
                    and "Vethernet1" in cfgmgr.store.get("veth", {})
                ),
                "module and vEth committed",
            )
            body = cfgmgr.store["module"]["uuid-host-1"]
            assert body["module"] == 3
            assert cfgmgr.store["veth"]["Vethernet1"]["vm"] == "vm-a"
            assert cfgmgr.commits[0]["user"] == "vemmgr"
            await wait_until(lambda: hamgr.counts and hamgr.counts[-1] == 1, "module count")
            applied = core.applied
            assert applied is not None and applied.ports[0].access_vlan == 10

            mods = await call(run, "modules")
            assert mods["TABLE_modinfo"]["ROW_modinfo"] == [
                {
                    "modinf": 3,
                    "ports": 1,
                    "modtype": "Virtual Ethernet Module",
                    "model": "NA",
                    "status": "ok",
                }
            ]
            (vif,) = (await call(run, "interfaces"))["TABLE_vif"]["ROW_vif"]
            assert (vif["interface"], vif["owner"], vif["status"]) == ("Vethernet1", "vm-a", "up")
            await wait_until(
                lambda: (
                    mgr.table.modules["uuid-host-1"].hb_received > 0
                    and mgr.table.modules["uuid-host-1"].hb_sent > 0
                ),
                "heartbeats both ways",
            )
            counters = await call(run, "counters")
            row = counters["TABLE_vem_counters"]["ROW_vem_counters"][0]
            assert row["hb_sent"] > 0 and row["config_pushes"] >= 1
            neighbors = await call(run, "neighbors")
            assert neighbors["TABLE_neighbor"]["ROW_neighbor"][0]["node_id"] == 3

            # A configuration change reaches the VEM's datapath.
            cfgmgr.commit(
                [
                    {
                        "kind": "port_profile",
                        "key": "vm-net",
                        "body": {"name": "vm-net", "access_vlan": 20},
                    }
                ]
            )

            def moved() -> bool:
                state = core.applied
                return state is not None and state.ports[0].access_vlan == 20

            await wait_until(moved, "config pushed")

            # Standby again: show module comes from the replicated store objects.
            hamgr.set(state="standby")
            await wait_until(lambda: not mgr.table.active, "vemmgr standby")
            mods = await call(run, "modules")
            assert mods["active"] is False
            assert mods["TABLE_modsrvinfo"]["ROW_modsrvinfo"][0]["srvuuid"] == "uuid-host-1"

    asyncio.run(scenario())


def test_new_epoch_broadcasts_switch_request_and_vem_follows() -> None:
    async def scenario() -> None:
        async with deployment() as (mgr, hamgr, _cfgmgr, runner, _run):
            core = runner.core
            hamgr.set(state="active", epoch=3)
            await wait_until(lambda: core.state is VemState.ATTACHED, "VEM attached")
            attaches = mgr.table.modules["uuid-host-1"].attaches
            # A new active epoch (e.g. failover back to this node): switch request to all.
            hamgr.set(state="active", epoch=4)
            await wait_until(lambda: core.highest_epoch == 4, "VEM took the new epoch")
            assert mgr.table.counters["switch_requests_sent"] == 1
            assert core.state is VemState.ATTACHED
            assert mgr.table.modules["uuid-host-1"].attaches == attaches

    asyncio.run(scenario())


def test_a_keyed_vemmgr_binds_each_frame_to_the_key_of_the_host_it_claims() -> None:
    vem_key = b"unit-vem-key-0123456789"

    async def scenario() -> None:
        async with deployment(vem_key) as (mgr, hamgr, cfgmgr, runner, run):
            hamgr.set(state="active", epoch=3)
            core = runner.core
            await wait_until(lambda: core.state is VemState.ATTACHED, "VEM attached")
            # Host 2 holding host 1's key (a copied key file): never attached, counted.
            stolen = Codec(DOMAIN, derive_host_key(vem_key, "uuid-host-1").encode())
            intruder = VemCore(
                host_uuid="uuid-host-2",
                host_name="host-2",
                host_ip="127.0.0.1",
                vsms=(mgr.endpoint.local,),
                heartbeat_interval=0.1,
                headless_after=1.0,
            )
            ep = UdpEndpoint(("127.0.0.1", 0), lambda d, a: None)
            await ep.open()
            other = VemRunner(intruder, stolen, MemoryBackend(), ep.send)
            ep.on_datagram = other.on_datagram
            other.start()
            task = asyncio.create_task(other.timer_loop())
            try:
                drops = mgr.drops
                await wait_until(lambda: drops.get("bad_host_key", 0) >= 2, "refused attaches")
                # Host 1 forging a VSM's frame with its own key: dropped, named.
                forged = stolen.encode(
                    VemHeartbeat(host_uuid="uuid-host-1"),
                    role=SenderRole.SECONDARY,
                    mac=vem_mac("uuid-host-1"),
                    epoch=4,
                    seq=time.time_ns(),
                )
                ep.send(forged, mgr.endpoint.local)
                await wait_until(lambda: drops.get("vem_key_vsm_role", 0) == 1, "forged frame")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                ep.close()
            assert intruder.state is VemState.BOOTING and intruder.module == 0
            assert list(mgr.table.modules) == ["uuid-host-1"]
            counters = await call(run, "counters")
            assert counters["drops"]["bad_host_key"] >= 2
            assert counters["drops"]["vem_key_vsm_role"] == 1
            assert core.state is VemState.ATTACHED  # the real host is untouched
            assert list(cfgmgr.store["module"]) == ["uuid-host-1"]

    asyncio.run(scenario())


def test_merge_commits_keeps_last_body_per_object() -> None:
    ops, command = merge_commits(
        [
            Commit((StoreOp("module", "u1", {"status": "ok"}),), "module 3 attach"),
            Commit((StoreOp("veth", "Vethernet1", {"vm": "a"}),), "module 3 ports"),
            Commit((StoreOp("module", "u1", {"status": "offline"}),), "module offline"),
        ]
    )
    assert ops == [
        {"kind": "veth", "key": "Vethernet1", "body": {"vm": "a"}},
        {"kind": "module", "key": "u1", "body": {"status": "offline"}},
    ]
    assert "module 3 attach" in command


def udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _vem_statuses(mods: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["modinf"], r["status"]) for r in mods["TABLE_modinfo"]["ROW_modinfo"]]


async def restart_vemmgr(
    cfg: Any, hamgr: FakeHamgr, run: Path, runner: VemRunner
) -> tuple[list[Any], list[int]]:
    """A new vemmgr process on the same node: ``show module`` VEM rows right
    after it is active and after the VEM's next heartbeat, and the counts it
    reported to hamgr. The VEM is muted until the first rows are read, so "right
    after" is before any heartbeat however slow the machine is."""
    host, port = cfg.vem_listen.addr
    await wait_until(lambda: udp_port_free(host, port), "the VEM port to be free")
    mgr = Vemmgr(cfg)
    reports = len(hamgr.counts)
    seen: list[Any] = []
    send = runner.send_raw
    runner.send_raw = lambda data, addr: None
    await mgr.start()
    try:
        await wait_until(lambda: mgr.table.active, "active again")
        seen.append(_vem_statuses(await call(run, "modules")))
        runner.send_raw = send
        await wait_until(
            lambda: mgr.table.modules["uuid-host-1"].hb_received > 0, "a VEM heartbeat"
        )
        seen.append(_vem_statuses(await call(run, "modules")))
        await wait_until(lambda: hamgr.counts[reports:][-1:] == [1], "count 1 reported")
    finally:
        runner.send_raw = send
        await mgr.stop()
    return seen, hamgr.counts[reports:]


def test_a_restarted_vemmgr_resumes_the_module_statuses_of_its_activation() -> None:
    """SIGKILL-like restart of vemmgr on the active (same epoch): the new process
    shows the same rows at once -- no powered-up spell -- from its checkpoint.
    Without the checkpoint the same store is a takeover: powered-up until the
    VEM's next heartbeat."""

    async def scenario() -> None:
        async with deployment() as (mgr, hamgr, _cfgmgr, runner, run):
            hamgr.set(state="active", epoch=3)
            await wait_until(lambda: runner.core.state is VemState.ATTACHED, "VEM attached")
            await wait_until(
                lambda: mgr.table.attachment_version == mgr._saved_version, "checkpoint written"
            )
            before = _vem_statuses(await call(run, "modules"))
            assert before == [(3, "ok")]
            # The next process listens where the VEM sends (the same configured port).
            host, port = mgr.endpoint.local
            cfg = dataclasses.replace(mgr.cfg, vem_listen=parse_endpoint(f"{host}:{port}", "vem"))
            await mgr.stop()  # the old process is gone (its sockets too)
            seen, counts = await restart_vemmgr(cfg, hamgr, run, runner)
            assert seen == [before, before]
            assert set(counts) == {1}, counts  # hamgr's split-brain input never went to 0
            mgr.checkpoint_path.unlink()
            seen, counts = await restart_vemmgr(cfg, hamgr, run, runner)
            assert seen == [[(3, "powered-up")], before]

    asyncio.run(scenario())


def test_hamgr_initializing_between_two_epochs_keeps_the_statuses() -> None:
    """hamgr restarts on the active: status initializing, then active with the
    next epoch. vemmgr keeps what it observed; a standby status forgets it
    (and removes the checkpoint)."""

    async def scenario() -> None:
        async with deployment() as (mgr, hamgr, _cfgmgr, runner, run):
            hamgr.set(state="active", epoch=3)
            await wait_until(lambda: runner.core.state is VemState.ATTACHED, "VEM attached")
            await wait_until(lambda: mgr.checkpoint_path.exists(), "checkpoint written")
            hamgr.set(state="initializing")
            await wait_until(lambda: not mgr.table.active, "not serving")
            hamgr.set(state="active", epoch=4)
            await wait_until(lambda: mgr.table.active and mgr.table.epoch == 4, "epoch 4")
            assert _vem_statuses(await call(run, "modules")) == [(3, "ok")]
            assert mgr.table.attached_count() == 1
            hamgr.set(state="standby")
            await wait_until(lambda: not mgr.table.active, "standby")
            await wait_until(lambda: not mgr.checkpoint_path.exists(), "checkpoint removed")
            assert not any(m.observed for m in mgr.table.modules.values())

    asyncio.run(scenario())


def test_an_unreadable_checkpoint_is_ignored() -> None:
    async def scenario() -> None:
        async with deployment() as (mgr, hamgr, _cfgmgr, runner, _run):
            mgr.checkpoint_path.write_bytes(b"\xff not json")
            hamgr.set(state="active", epoch=3)
            await wait_until(lambda: runner.core.state is VemState.ATTACHED, "VEM attached")
            assert any("invalid" in t and "ignored" in t for t in mgr.traces)

    asyncio.run(scenario())


class SlowStore:
    """cfgmgr's ``list`` as a stand-in client: ``module`` answers only when
    released, so a ``modules`` request can straddle an activation."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.modules = modules
        self.listing = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        assert op == "list"
        if args["kind"] == "module":
            self.listing.set()
            await self.release.wait()
            return dict(self.modules)
        return {}

    async def ask(self, req: Request[Any], timeout: float | None = None) -> Any:
        return decode_result(req.op, await self.call(req.op, timeout, **args_of(req)), req.reply)


def secondary_config(root: Path) -> Any:
    return node_config_from_dict(
        {
            "node": {
                "domain_id": DOMAIN,
                "role": "secondary",
                "secret": SECRET,
                "system_mac": "02:00:00:00:00:02",
                "data_dir": str(root / "data"),
                "run_dir": str(root / "run"),
            },
            "interfaces": {
                "control": {"local": "127.0.0.1:0"},
                "mgmt": {"local": "127.0.0.1:0"},
            },
            "vem": {"listen": "127.0.0.1:0", "module_limit": 8},
        }
    )


def test_an_activation_hamgr_left_while_the_store_was_read_is_dropped() -> None:
    """Chaos campaign, a split-brain loser: hamgr went active, lost the
    resolution and said ``reloading`` while vemmgr read the store. The status
    cancels the activation, but Python 3.11's ``asyncio.wait_for`` can lose a
    cancellation that races with the reply: the activation then completed and
    the reloading node sent every VEM a switch request. Here the activation
    runs without the cancellation (the lost case); it must see hamgr's state."""
    stored = {"uuid-host-1": {"module": 3, "host_name": "host-1", "status": "ok", "addr": ""}}

    async def scenario() -> Vemmgr:
        root = Path(tempfile.mkdtemp(prefix="ovvm"))
        try:
            mgr = Vemmgr(secondary_config(root), clock=lambda: 100.0)
            store = SlowStore(stored)
            mgr.cfgmgr = store  # type: ignore[assignment]
            mgr.on_ha_status(HaStatus(state="active", epoch=2))
            assert mgr._activation is not None
            mgr._activation.cancel()  # stands for the task on_ha_status started
            lost = asyncio.create_task(mgr._become_active(2))  # never cancelled
            await store.listing.wait()
            mgr.on_ha_status(HaStatus(state="reloading", epoch=2))
            store.release.set()
            await lost
            return mgr
        finally:
            shutil.rmtree(root, ignore_errors=True)

    mgr = asyncio.run(scenario())
    assert not mgr.table.active
    assert mgr.table.counters["switch_requests_sent"] == 0
    assert any("activation for epoch 2 dropped: hamgr is reloading" in t for t in mgr.traces)


def test_a_store_view_read_across_the_takeover_is_not_the_actives_table() -> None:
    """``modules`` on a node that is not serving yet reads the store (the
    previous active's view: ``ok``). If the activation completes while that
    read is under way, the answer must still say it is not the active's table
    (cfgmgr then shows the takeover view); it used to say ``active`` with the
    previous active's ``ok`` rows (chaos campaign: ``show module`` on a new
    active listed VEMs attached to the other VSM as ``ok``)."""
    stored = {
        "uuid-host-1": {"module": 3, "host_name": "host-1", "status": "ok", "addr": ""},
    }

    async def scenario() -> dict[str, Any]:
        root = Path(tempfile.mkdtemp(prefix="ovvm"))
        try:
            mgr = Vemmgr(secondary_config(root), clock=lambda: 100.0)
            store = SlowStore(stored)
            mgr.cfgmgr = store  # type: ignore[assignment]
            request = asyncio.create_task(mgr.handle("modules", {}))
            await store.listing.wait()
            # The takeover completes meanwhile (what _become_active does).
            mgr.table.load(stored, {})
            mgr.process(mgr.table.became_active(5, 100.0))
            assert _vem_statuses(mgr.table.modules_data()) == [(3, "powered-up")]
            store.release.set()
            return dict(await request)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    data = asyncio.run(scenario())
    assert not (data["active"] and ("ok" in {s for _, s in _vem_statuses(data)})), data
    assert data["active"] is False
