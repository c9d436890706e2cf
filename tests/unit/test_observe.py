"""Observability parts on virtual time and plain data (issue 14): heartbeat-gap
histograms, the JSON-lines trace and its rotation, the Prometheus rendering of
a pulled snapshot, the notify core and runner, the [observe] configuration."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from openvsm.config import ConfigError, ObserveConfig, node_config_from_dict
from openvsm.contracts.hamgr import HaStatus
from openvsm.observe.export import (
    HamgrMetrics,
    InterfaceMetrics,
    decode_hamgr_metrics,
    encode_hamgr_metrics,
)
from openvsm.observe.gaps import HeartbeatGaps
from openvsm.observe.metrics import NodeMetrics, Pulled
from openvsm.observe.notify import HookResult, NotifyCore, NotifyRunner, NotifyState
from openvsm.observe.tracelog import JsonlTrace, iso_utc
from openvsm.observe.vem import VemCollector
from openvsm.wire.messages import LacpMemberInfo, PortChannelInfo, VemLacpReport
from tests.unit.nodedoc import NODE_DOC


def _ha(status: dict[str, Any]) -> HaStatus:
    """A hamgr status event as the subscription decodes it."""
    return msgspec.convert(status, HaStatus)


ROOT = Path(__file__).resolve().parents[2]

# --- heartbeat gaps ---------------------------------------------------------------


def test_gaps_histogram_counts_each_gap_in_its_bucket_cumulatively() -> None:
    gaps = HeartbeatGaps(("control", "mgmt"), reset_after=15.0)
    for t in (0.0, 1.0, 2.0, 2.4, 9.9):
        gaps.heard("control", t, 1000.0 + t)
    snap = gaps.snapshot("control")
    assert snap.count == 4  # the first heartbeat starts the run
    assert snap.sum == pytest.approx(1.0 + 1.0 + 0.4 + 7.5)
    le = dict(zip(snap.buckets, snap.cumulative, strict=True))
    assert le[0.3] == 0 and le[0.5] == 1 and le[1.0] == 3 and le[7.5] == 4
    assert gaps.max_gap["control"] == pytest.approx(7.5)
    assert [s.gap for s in gaps.recent["control"]] == pytest.approx([1.0, 1.0, 0.4, 7.5])
    assert gaps.snapshot("mgmt").count == 0


def test_a_silence_longer_than_the_loss_interval_starts_a_new_run() -> None:
    gaps = HeartbeatGaps(("control",), reset_after=0.6)
    gaps.heard("control", 0.0, 0.0)
    gaps.heard("control", 0.1, 0.1)
    gaps.heard("control", 30.0, 30.0)  # the peer was gone: not a 29.9 s gap
    gaps.heard("control", 30.1, 30.1)
    assert gaps.snapshot("control").count == 2
    assert gaps.max_gap["control"] == pytest.approx(0.1)
    assert gaps.silence("control", 31.0) == pytest.approx(0.9)
    gaps.heard("bogus", 1.0, 1.0)  # unknown interface: ignored, no crash


# --- JSON-lines trace ---------------------------------------------------------------


def test_jsonl_trace_has_stable_keys_and_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "redundancy-trace.jsonl"
    tr = JsonlTrace(path, node="primary", role="primary", domain=100, max_bytes=600, keep=2)
    for i in range(20):
        tr.record(1_796_000_000.25 + i, f"event {i}", state="active", epoch=3)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "redundancy-trace.jsonl",
        "redundancy-trace.jsonl.1",
        "redundancy-trace.jsonl.2",
    ]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 600
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert set(lines[-1]) == {
        "timestamp",
        "time",
        "node",
        "role",
        "domain",
        "state",
        "epoch",
        "event",
    }
    assert lines[-1]["event"] == "event 19" and lines[-1]["epoch"] == 3
    assert lines[-1]["timestamp"] == iso_utc(1_796_000_019.25)
    assert iso_utc(0.9996) == "1970-01-01T00:00:01.000Z"
    assert tr.rotations >= 2 and tr.errors == 0


def test_jsonl_trace_counts_io_errors(tmp_path: Path) -> None:
    tr = JsonlTrace(tmp_path / "missing-dir" / "t.jsonl", node="n", role="primary", domain=1)
    tr.record(0.0, "x", state="active", epoch=1)
    assert tr.errors == 1


# --- /metrics rendering -----------------------------------------------------------


def hamgr_metrics(state: str = "active") -> HamgrMetrics:
    gaps = HeartbeatGaps(("control", "mgmt"), reset_after=15.0)
    for t in (0.0, 1.0, 2.0):
        gaps.heard("control", t, t)
    ifaces = [
        InterfaceMetrics(
            name=n,
            heartbeats_sent=10,
            heartbeats_received=9,
            heartbeats_missed=1,
            gaps=gaps.snapshot(n),
            max_gap=gaps.max_gap[n],
            silence=gaps.silence(n, 2.5),
            recent=list(gaps.recent[n]),
        )
        for n in ("control", "mgmt")
    ]
    return HamgrMetrics(
        role="primary",
        state=state,
        epoch=4,
        degraded=False,
        peer_present=True,
        peer_state="Standby",
        sync_state="hot",
        state_since=100.0,
        started=50.0,
        role_changes=1,
        split_brain_won=2,
        split_brain_lost=0,
        collisions=0,
        max_loss_interval=15.0,
        heartbeat_interval=1.0,
        interfaces=ifaces,
        shared_address_held=True,
    )


def full_snapshot() -> Pulled:
    return Pulled(
        hamgr=decode_hamgr_metrics(encode_hamgr_metrics(hamgr_metrics())),
        module_counters={
            "TABLE_vem_counters": {
                "ROW_vem_counters": [
                    {"module": 3, "status": "ok", "hb_missed": 2},
                    {"module": 4, "status": "headless", "hb_missed": 5},
                ]
            },
            "drops": {"bad_host_key": 4, "vem_key_vsm_role": 2},
        },
        neighbors={"TABLE_neighbor": {"ROW_neighbor": [{"last_learnt_s": 0.4}]}},
        services={"TABLE_service": {"ROW_service": [{"name": "hamgr", "pid": 9, "restarts": 3}]}},
        sync={
            "role": "sender",
            "last_seq": 20,
            "acked_seq": 15,
            "attached": True,
            "unacked_bytes": 900,
        },
        cli_sessions=2,
    )


def render(m: NodeMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = generate_latest(m.registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_node_metrics_render_the_pulled_snapshot_with_prometheus_names() -> None:
    m = NodeMetrics(domain=100, role="primary")
    m.set_pulled(full_snapshot())
    m.committed(0.004)
    got = render(m)
    assert got["openvsm_redundancy_state"][(("state", "active"),)] == 1.0
    assert got["openvsm_redundancy_state"][(("state", "standby"),)] == 0.0
    assert got["openvsm_redundancy_epoch"][()] == 4.0
    assert got["openvsm_split_brain_resolutions_total"][(("outcome", "won"),)] == 2.0
    assert got["openvsm_heartbeats_missed_total"][(("interface", "control"),)] == 1.0
    assert got["openvsm_heartbeat_gap_seconds_count"][(("interface", "control"),)] == 2.0
    assert (
        got["openvsm_heartbeat_gap_seconds_bucket"][(("interface", "control"), ("le", "1.0"))]
        == 2.0
    )
    assert got["openvsm_sync_lag_changes"][()] == 5.0
    assert got["openvsm_sync_lag_bytes"][()] == 900.0
    assert got["openvsm_modules"][(("status", "headless"),)] == 1.0
    assert got["openvsm_modules"][(("status", "powered-up"),)] == 0.0
    assert got["openvsm_vem_heartbeats_missed_total"][()] == 7.0
    frames = got["openvsm_vem_frames_dropped_total"]
    assert frames[(("reason", "bad_host_key"),)] == 4.0
    assert frames[(("reason", "vem_key_vsm_role"),)] == 2.0
    assert got["openvsm_service_restarts_total"][(("service", "hamgr"),)] == 3.0
    assert got["openvsm_shared_address_holder"][()] == 1.0
    assert got["openvsm_changes_acknowledged_total"][()] == 1.0
    assert got["openvsm_cli_sessions"][(("transport", "local"),)] == 2.0
    for name, series in got.items():
        assert name.startswith("openvsm_"), name
        assert not name.endswith("_created"), name
        for labels in series:
            assert "host" not in dict(labels) and "hostname" not in dict(labels), name


def test_a_source_that_did_not_answer_is_absent_not_zero() -> None:
    m = NodeMetrics(domain=1, role="secondary")
    m.set_pulled(Pulled())
    got = render(m)
    assert "openvsm_redundancy_state" not in got and "openvsm_modules" not in got
    assert got["openvsm_build_info"][(("domain", "1"), ("role", "secondary"), ("version", "0.1.0"))]


def test_a_malformed_hamgr_answer_is_refused() -> None:
    raw = encode_hamgr_metrics(hamgr_metrics())
    raw["epoch"] = "four"
    with pytest.raises(Exception, match="epoch"):
        decode_hamgr_metrics(raw)


class FakeVem:
    last_lacp = VemLacpReport(
        host_uuid="u",
        channels=[
            PortChannelInfo(
                group=1,
                status="U",
                protocol="LACP",
                members=[
                    LacpMemberInfo(port="eth1", status="P"),
                    LacpMemberInfo(port="eth2", status="H"),
                ],
            )
        ],
    )
    datapath_errors_total = 3

    def status_data(self) -> dict[str, Any]:
        return {
            "state": "attached",
            "headless": False,
            "active": "127.0.0.1:1",
            "active_mac": "02:00:00:00:00:01",
            "epoch": 5,
            "module": 3,
            "counters": {"heartbeats_sent": 7, "replayed": 4},
            "drops": {"bad_hmac": 2},
            "datapath_errors": ["x"],
        }

    def ports_data(self) -> list[dict[str, Any]]:
        return [{"forwarding": True}, {"forwarding": False}, {"forwarding": True}]


def vem_render() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(VemCollector(FakeVem(), lambda: "h"))  # type: ignore[arg-type]
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_vem_metrics() -> None:
    got = vem_render()
    assert got["openvsm_vem_state"][(("state", "attached"),)] == 1.0
    assert (
        got["openvsm_vem_attached_vsm"][(("mac", "02:00:00:00:00:01"), ("vsm", "127.0.0.1:1"))] == 1
    )
    assert got["openvsm_vem_epoch"][()] == 5.0
    assert got["openvsm_vem_ports"][(("state", "forwarding"),)] == 2.0
    assert got["openvsm_vem_lacp_members"][(("state", "bundled"),)] == 1.0
    assert got["openvsm_vem_lacp_members"][(("state", "hot-standby"),)] == 1.0
    assert got["openvsm_vem_datapath_errors"][()] == 1.0
    assert got["openvsm_vem_datapath_errors_seen_total"][()] == 3.0
    assert got["openvsm_vem_frames_dropped_total"][(("reason", "bad_hmac"),)] == 2.0
    assert got["openvsm_vem_frames_refused_total"][(("reason", "replayed"),)] == 4.0


def exported_names() -> set[str]:
    m = NodeMetrics(domain=100, role="primary")
    m.set_pulled(full_snapshot())
    m.rest_requests.labels("/x", "GET", "200").inc()
    m.rest_latency.labels("/x").observe(0.1)
    m.notify_runs.labels("ACTIVE", "ok").inc()
    m.scrape_errors.labels("hamgr").inc()
    names = set(render(m)) | set(vem_render())
    return names | {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_every_metric_in_the_alert_rules_and_dashboard_is_exported() -> None:
    names = exported_names() | {"up"}
    rules = (ROOT / "packaging/prometheus/alerts.yml").read_text()
    dash = (ROOT / "packaging/grafana/openvsm-domain.json").read_text()
    used = set(re.findall(r"\b(openvsm_[a-z_]+)", rules + dash))
    assert used, "no metric found in the rules"
    missing = {n for n in used if n not in names}
    assert not missing, f"rules or dashboard use metrics /metrics does not export: {missing}"


def test_dashboard_is_valid_json_with_panels() -> None:
    dash = json.loads((ROOT / "packaging/grafana/openvsm-domain.json").read_text())
    assert dash["uid"] == "openvsm-domain" and len(dash["panels"]) >= 10
    assert all(p["targets"] for p in dash["panels"])


# --- notify --------------------------------------------------------------------------


def core(**hooks: str) -> NotifyCore:
    return NotifyCore(ObserveConfig(**hooks), domain=100, node="primary", last=None)  # type: ignore[arg-type]


def test_notify_core_runs_on_settled_transitions_only_once_each() -> None:
    c = core(notify="/n", notify_active="/a")
    assert c.on_status(_ha({"state": "initializing", "epoch": 0, "boot_id": 1})) is None
    job = c.on_status(_ha({"state": "active", "epoch": 2, "boot_id": 1}))
    assert job is not None and job.state is NotifyState.ACTIVE
    assert job.programs == ("/a", "/n")  # the per-state hook, then the generic one
    assert job.argv_tail == ("100", "primary", "ACTIVE", "2")
    assert c.on_status(_ha({"state": "active", "epoch": 2, "boot_id": 1, "degraded": True})) is None
    fault = c.on_status(_ha({"state": "reloading", "epoch": 2, "boot_id": 1}))
    assert fault is not None and fault.programs == ("/n",) and fault.state is NotifyState.FAULT
    # a new hamgr boot in the same state and epoch is a new transition
    assert c.on_status(_ha({"state": "reloading", "epoch": 2, "boot_id": 2})) is not None
    with pytest.raises(msgspec.ValidationError):  # dropped at the subscription
        _ha({"state": "standby", "epoch": "bad"})


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_notify_runner_runs_in_order_one_at_a_time_with_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ok = script(
        tmp_path, "ok.sh", f'echo "start $3 $4" >> {log}; sleep 0.05; echo "end $3 $4" >> {log}'
    )
    slow = script(tmp_path, "slow.sh", "exec sleep 30")
    bad = script(tmp_path, "bad.sh", "echo oops >&2; exit 3")
    cfg = ObserveConfig(notify=ok, notify_standby=bad, notify_fault=slow, notify_timeout_s=0.3)
    counted: list[tuple[NotifyState, HookResult]] = []

    async def run() -> None:
        runner = NotifyRunner(
            cfg,
            domain=7,
            node="secondary",
            run_dir=tmp_path,
            count=lambda s, r: counted.append((s, r)),
        )
        worker = asyncio.create_task(runner.work())
        runner.on_status(_ha({"state": "standby", "epoch": 1, "boot_id": 1}))
        runner.on_status(_ha({"state": "active", "epoch": 2, "boot_id": 1}))
        runner.on_status(_ha({"state": "reloading", "epoch": 2, "boot_id": 1}))
        await asyncio.wait_for(runner.idle.wait(), 20)
        worker.cancel()
        # restarted cfgmgr: the last transition is not announced again
        again = NotifyRunner(
            cfg, domain=7, node="secondary", run_dir=tmp_path, count=lambda s, r: None
        )
        again.on_status(_ha({"state": "reloading", "epoch": 2, "boot_id": 1}))
        assert not again.queue

    asyncio.run(run())
    assert counted == [
        (NotifyState.STANDBY, HookResult.FAILED),
        (NotifyState.STANDBY, HookResult.OK),
        (NotifyState.ACTIVE, HookResult.OK),
        (NotifyState.FAULT, HookResult.TIMEOUT),
        (NotifyState.FAULT, HookResult.OK),
    ]
    assert log.read_text().splitlines() == [
        "start STANDBY 1",
        "end STANDBY 1",
        "start ACTIVE 2",
        "end ACTIVE 2",
        "start FAULT 2",
        "end FAULT 2",
    ]


def test_a_missing_hook_program_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    counted: list[HookResult] = []

    async def run() -> None:
        cfg = ObserveConfig(notify=str(tmp_path / "absent"))
        runner = NotifyRunner(
            cfg, domain=1, node="n", run_dir=tmp_path, count=lambda s, r: counted.append(r)
        )
        worker = asyncio.create_task(runner.work())
        runner.on_status(_ha({"state": "active", "epoch": 1}))
        await asyncio.wait_for(runner.idle.wait(), 10)
        worker.cancel()

    asyncio.run(run())
    assert counted == [HookResult.FAILED]


# --- configuration -----------------------------------------------------------------------


def with_observe(section: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(NODE_DOC)
    doc["observe"] = section
    return doc


def test_observe_section_parses_and_rejects_bad_values() -> None:
    cfg = node_config_from_dict(
        with_observe(
            {"notify": "/bin/true", "notify_timeout_s": 2, "peer_status_url": "http://x:1"}
        ),
        base=Path("/tmp"),
    )
    assert cfg.observe.notify == "/bin/true" and cfg.observe.notify_timeout_s == 2.0
    assert (
        node_config_from_dict(copy.deepcopy(NODE_DOC), base=Path("/tmp")).observe == ObserveConfig()
    )
    for bad, key in (
        ({"notfy": "/x"}, "observe.notfy"),
        ({"notify_timeout_s": 0}, "observe.notify_timeout_s"),
        ({"peer_status_url": "x:1"}, "observe.peer_status_url"),
        ({"notify": " "}, "observe.notify"),
        ({"trace_keep": 0}, "observe.trace_keep"),
    ):
        with pytest.raises(ConfigError, match=re.escape(key)):
            node_config_from_dict(with_observe(bad), base=Path("/tmp"))


# --- status page data -------------------------------------------------------------------


class FakeHamgr:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    async def call(self, op: str, **args: Any) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer if op == "metrics" else {"TABLE_trace": {"ROW_trace": []}}


class FakePuller:
    def __init__(self, hamgr: FakeHamgr) -> None:
        self.hamgr = hamgr


def observer(hamgr: FakeHamgr, peer_url: str | None = None) -> Any:
    from openvsm.observe.status import NodeObserver

    async def modules() -> dict[str, Any]:
        return {}

    return NodeObserver(
        name="primary",
        role="primary",
        metrics=NodeMetrics(domain=1, role="primary"),
        puller=FakePuller(hamgr),  # type: ignore[arg-type]
        sync_status=lambda: None,
        cli_sessions=lambda: None,
        module_table=modules,
        peer_status_url=peer_url,
        wall=lambda: 200.0,
    )


def test_status_summary_is_cached_briefly_and_degrades_when_hamgr_is_silent() -> None:
    from openvsm.ipc import IpcError
    from openvsm.observe.status import CACHE_S

    good = FakeHamgr(encode_hamgr_metrics(hamgr_metrics()))
    obs = observer(good)
    clock = [10.0]
    obs.mono = lambda: clock[0]

    async def run() -> tuple[Any, Any, Any]:
        a = await obs.local()
        b = await obs.local()
        clock[0] += CACHE_S
        c = await obs.local()
        return a, b, c

    a, b, c = asyncio.run(run())
    assert good.calls == 2 and a is b and c is not a
    assert a.state == "active" and a.uptime_s == 150.0 and a.gaps["control"]
    silent = observer(FakeHamgr(IpcError("hamgr is restarting")))
    down = asyncio.run(silent.local())
    assert down.state == "unknown" and "hamgr" in down.error


def test_an_unreachable_peer_is_shown_as_such() -> None:
    import aiohttp

    from openvsm.lab.common import free_port

    obs = observer(
        FakeHamgr(encode_hamgr_metrics(hamgr_metrics())), f"http://127.0.0.1:{free_port()}"
    )

    async def run() -> Any:
        async with aiohttp.ClientSession() as session:
            return await obs.view(session, None)

    view = asyncio.run(run())
    assert [(n.role, n.state) for n in view.nodes] == [
        ("primary", "active"),
        ("secondary", "unreachable"),
    ]
    assert view.nodes[1].error


def test_the_mgmt_service_gives_the_shared_address_holder_and_ssh_sessions(
    tmp_path: Path,
) -> None:
    """Real IPC sockets: hamgr answers its metrics, the mgmt service its status
    (holding the shared address, one SSH session); vemmgr and sysmgr are
    absent (counted as scrape errors). A node without the mgmt service is not
    an error."""
    from openvsm.ipc import IpcServer
    from openvsm.observe.metrics import ServicePuller

    raw_ha = encode_hamgr_metrics(
        msgspec.structs.replace(hamgr_metrics(), shared_address_held=None)
    )

    async def hamgr(op: str, args: dict[str, Any]) -> Any:
        return raw_ha

    async def mgmt(op: str, args: dict[str, Any]) -> Any:
        return {"mgmt_address": "10.1.0.10/24", "holding": True, "ssh_sessions": [{"id": 1}]}

    async def main() -> tuple[Pulled, Pulled]:
        servers = [
            IpcServer(tmp_path / "hamgr.sock", hamgr),
            IpcServer(tmp_path / "mgmt.sock", mgmt),
        ]
        for s in servers:
            await s.start()
        m = NodeMetrics(domain=100, role="primary")
        puller = ServicePuller(tmp_path)
        try:
            with_mgmt = await puller.pull(m, sync=lambda: None, cli_sessions=lambda: 0)
            await servers[1].stop()
            (tmp_path / "mgmt.sock").unlink(missing_ok=True)
            without = await puller.pull(m, sync=lambda: None, cli_sessions=lambda: 0)
        finally:
            puller.close()
            for s in servers:
                await s.stop()
        m.set_pulled(with_mgmt)
        got = render(m)
        assert got["openvsm_shared_address_holder"][()] == 1.0
        assert got["openvsm_cli_sessions"][(("transport", "ssh"),)] == 1.0
        assert ("source", "mgmt") not in {k for s in got["openvsm_scrape_errors_total"] for k in s}
        return with_mgmt, without

    with_mgmt, without = asyncio.run(main())
    assert with_mgmt.hamgr is not None and with_mgmt.hamgr.shared_address_held is True
    assert without.hamgr is not None and without.hamgr.shared_address_held is None
    assert without.ssh_sessions is None
