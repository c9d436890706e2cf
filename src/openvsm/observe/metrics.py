"""``/metrics`` of a VSM node: Prometheus text served by cfgmgr (issue 14).

Theory of operation: cfgmgr owns one ``NodeMetrics``. Its own counters
(REST requests, commit latency, acknowledged changes, notify hooks) are
prometheus-client metrics updated where the event happens. Everything the
other services know is *pulled at scrape time*: ``NodeMetrics.scrape`` asks
hamgr (``metrics`` op), vemmgr (``counters``, ``neighbors``) and sysmgr
(``services``) over their IPC sockets on connections of its own, each with a
short deadline, stores the answers in a ``Pulled`` snapshot and renders the
registry. hamgr thus only answers a request from counters it already keeps:
a scrape never runs code on its heartbeat path and never makes it wait. A
source that does not answer is skipped (its metrics are absent from that
scrape) and counted in ``openvsm_scrape_errors_total{source}``.

Naming follows Prometheus: ``openvsm_`` prefix, base units (seconds,
bytes), ``_total`` counters, no host label (the scrape target is the node).
The redundancy state is a state set: ``openvsm_redundancy_state{state}`` is
1 for the current state and 0 for the others. The full list is in
docs/observability.md.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from openvsm import __version__
from openvsm.ipc import IpcClient, IpcError
from openvsm.node import RunDir
from openvsm.observe.export import HamgrMetrics, decode_hamgr_metrics

HA_STATES: Final = ("initializing", "active", "standby", "reloading")
SYNC_STATES: Final = ("none", "cold", "warm", "hot")
MODULE_STATUSES: Final = ("ok", "powered-up", "headless", "offline")
PULL_TIMEOUT: Final = 1.0
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
VEM_GAP_BUCKETS: Final = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0)


@dataclass
class Pulled:
    """What one scrape got from the other services (None: did not answer)."""

    hamgr: HamgrMetrics | None = None
    module_counters: dict[str, Any] | None = None
    neighbors: dict[str, Any] | None = None
    services: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    cli_sessions: int | None = None
    ssh_sessions: int | None = None  # the mgmt service's SSH sessions (when it runs)
    notify: dict[str, int] = field(default_factory=dict)


def _rows(data: dict[str, Any] | None, table: str, row: str) -> list[dict[str, Any]]:
    if not data:
        return []
    rows = (data.get(table) or {}).get(row) or []
    if isinstance(rows, dict):
        rows = [rows]
    return [r for r in rows if isinstance(r, dict)]


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


class PulledCollector:
    """Renders the current ``Pulled`` snapshot (a prometheus-client collector)."""

    def __init__(self, domain: int, role: str) -> None:
        self.domain, self.role = domain, role
        self.pulled = Pulled()

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families depend on who answered

    def collect(self) -> Iterator[Metric]:
        p = self.pulled
        info = GaugeMetricFamily(
            "openvsm_build_info",
            "Build of this node (value 1)",
            labels=["version", "role", "domain"],
        )
        info.add_metric([__version__, self.role, str(self.domain)], 1)
        yield info
        if p.hamgr is not None:
            yield from _redundancy(p.hamgr)
            yield from _heartbeats(p.hamgr)
        yield from _sync(p.sync, p.hamgr)
        yield from _modules(p.module_counters, p.neighbors)
        yield from _services(p.services)
        if p.cli_sessions is not None:
            g = GaugeMetricFamily(
                "openvsm_cli_sessions", "Open CLI sessions by transport", labels=["transport"]
            )
            g.add_metric(["local"], p.cli_sessions)
            if p.ssh_sessions is not None:
                g.add_metric(["ssh"], p.ssh_sessions)
            yield g


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _redundancy(h: HamgrMetrics) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "openvsm_redundancy_state", "Redundancy state of this VSM (state set)", labels=["state"]
    )
    for s in HA_STATES:
        state.add_metric([s], 1.0 if h.state == s else 0.0)
    yield state
    yield _gauge("openvsm_redundancy_epoch", "Redundancy epoch of this VSM", h.epoch)
    yield _gauge(
        "openvsm_redundancy_state_since_timestamp_seconds",
        "When this VSM entered its current redundancy state (Unix time)",
        h.state_since,
    )
    yield _gauge(
        "openvsm_redundancy_start_timestamp_seconds",
        "When this node's hamgr started (Unix time)",
        h.started,
    )
    yield CounterMetricFamily(
        "openvsm_redundancy_role_changes",
        "Redundancy state changes seen by this hamgr process",
        value=h.role_changes,
    )
    yield _gauge("openvsm_redundancy_degraded", "1 while control is down", float(h.degraded))
    yield _gauge(
        "openvsm_redundancy_peer_present", "1 while the other VSM is heard", float(h.peer_present)
    )
    sb = CounterMetricFamily(
        "openvsm_split_brain_resolutions",
        "Split-brain resolutions by outcome for this VSM",
        labels=["outcome"],
    )
    sb.add_metric(["won"], h.split_brain_won)
    sb.add_metric(["lost"], h.split_brain_lost)
    yield sb
    yield _gauge("openvsm_redundancy_collisions", "VSM collision entries present now", h.collisions)
    yield _gauge(
        "openvsm_heartbeat_loss_interval_seconds",
        "Configured max heartbeat loss interval",
        h.max_loss_interval,
    )
    yield _gauge(
        "openvsm_heartbeat_interval_seconds", "Configured heartbeat interval", h.heartbeat_interval
    )
    if h.shared_address_held is not None:
        yield _gauge(
            "openvsm_shared_address_holder",
            "1 while this VSM holds the pair's shared management address",
            float(h.shared_address_held),
        )


def _heartbeats(h: HamgrMetrics) -> Iterator[Metric]:
    labels = ["interface"]
    sent = CounterMetricFamily("openvsm_heartbeats_sent", "Heartbeats sent", labels=labels)
    recv = CounterMetricFamily("openvsm_heartbeats_received", "Heartbeats received", labels=labels)
    missed = CounterMetricFamily(
        "openvsm_heartbeats_missed", "Heartbeat requests without a response", labels=labels
    )
    dropped = CounterMetricFamily(
        "openvsm_heartbeat_frames_dropped", "Frames dropped by the codec", labels=labels
    )
    gaps = HistogramMetricFamily(
        "openvsm_heartbeat_gap_seconds",
        "Time between consecutive heartbeats from the peer",
        labels=labels,
    )
    max_gap = GaugeMetricFamily(
        "openvsm_heartbeat_gap_max_seconds",
        "Largest heartbeat gap since hamgr started",
        labels=labels,
    )
    silence = GaugeMetricFamily(
        "openvsm_heartbeat_silence_seconds",
        "Seconds since the last heartbeat from the peer",
        labels=labels,
    )
    for i in h.interfaces:
        sent.add_metric([i.name], i.heartbeats_sent)
        recv.add_metric([i.name], i.heartbeats_received)
        missed.add_metric([i.name], i.heartbeats_missed)
        dropped.add_metric([i.name], i.frames_dropped)
        max_gap.add_metric([i.name], i.max_gap)
        if i.silence is not None:
            silence.add_metric([i.name], i.silence)
        if i.gaps is not None:
            pairs = zip(i.gaps.buckets, i.gaps.cumulative, strict=False)
            buckets = [(_le(b), float(c)) for b, c in pairs]
            buckets.append(("+Inf", float(i.gaps.count)))
            gaps.add_metric([i.name], buckets, i.gaps.sum)
    yield from (sent, recv, missed, dropped, gaps, max_gap, silence)


def _le(bound: float) -> str:
    return repr(float(bound))


def _sync(sync: dict[str, Any] | None, h: HamgrMetrics | None) -> Iterator[Metric]:
    if h is not None:
        st = GaugeMetricFamily(
            "openvsm_sync_state", "Configuration sync state (state set)", labels=["state"]
        )
        for s in SYNC_STATES:
            st.add_metric([s], 1.0 if h.sync_state == s else 0.0)
        yield st
    counters = sync.get("counters") if sync else None
    if isinstance(counters, dict) and counters:
        events = CounterMetricFamily(
            "openvsm_sync_events",
            "Events of this node's sync connections (connects, handshakes dropped, bad frames)",
            labels=["event"],
        )
        for name, value in sorted(counters.items()):
            events.add_metric([str(name)], _num(value))
        yield events
    if not sync or sync.get("role") != "sender":
        return
    last, acked = _num(sync.get("last_seq")), _num(sync.get("acked_seq"))
    yield _gauge(
        "openvsm_sync_lag_changes",
        "Changes committed here and not yet acknowledged by the standby",
        max(0.0, last - acked) if sync.get("attached") else 0.0,
    )
    yield _gauge(
        "openvsm_sync_lag_bytes",
        "Bytes of changes buffered for the standby",
        _num(sync.get("unacked_bytes")),
    )
    yield _gauge(
        "openvsm_sync_buffer_bytes", "Size of the standby's buffer", _num(sync.get("buffer_bytes"))
    )
    yield _gauge(
        "openvsm_sync_standby_attached",
        "1 while an HA standby acknowledges changes",
        float(bool(sync.get("attached"))),
    )


def _modules(counters: dict[str, Any] | None, neighbors: dict[str, Any] | None) -> Iterator[Metric]:
    rows = _rows(counters, "TABLE_vem_counters", "ROW_vem_counters")
    if counters is not None:
        by_status = dict.fromkeys(MODULE_STATUSES, 0)
        missed = 0.0
        for r in rows:
            status = str(r.get("status", ""))
            by_status[status] = by_status.get(status, 0) + 1
            missed += _num(r.get("hb_missed"))
        g = GaugeMetricFamily("openvsm_modules", "VEM modules by status", labels=["status"])
        for status, n in sorted(by_status.items()):
            g.add_metric([status], n)
        yield g
        yield CounterMetricFamily(
            "openvsm_vem_heartbeats_missed", "VEM heartbeats missed (all modules)", value=missed
        )
        drops = CounterMetricFamily(
            "openvsm_vem_frames_dropped",
            "VEM-port frames dropped by vemmgr's codec (bad_host_key, vem_key_vsm_role, ...)",
            labels=["reason"],
        )
        raw = counters.get("drops")
        for reason, n in sorted(raw.items() if isinstance(raw, dict) else ()):
            drops.add_metric([str(reason)], _num(n))
        yield drops
    ages = [
        _num(r.get("last_learnt_s"))
        for r in _rows(neighbors, "TABLE_neighbor", "ROW_neighbor")
        if r.get("last_learnt_s") is not None
    ]
    if neighbors is not None:
        yield _vem_gaps(ages)


def _vem_gaps(ages: list[float]) -> GaugeHistogramMetricFamily:
    hist = GaugeHistogramMetricFamily(
        "openvsm_vem_heartbeat_gap_seconds",
        "Attached VEMs by seconds since their last heartbeat (now)",
    )
    buckets = [(_le(b), float(sum(1 for a in ages if a <= b))) for b in VEM_GAP_BUCKETS]
    buckets.append(("+Inf", float(len(ages))))
    hist.add_metric([], buckets, sum(ages))
    return hist


def _services(services: dict[str, Any] | None) -> Iterator[Metric]:
    if services is None:
        return
    c = CounterMetricFamily(
        "openvsm_service_restarts", "Restarts of a node service by sysmgr", labels=["service"]
    )
    up = GaugeMetricFamily("openvsm_service_up", "1 while the service runs", labels=["service"])
    for r in _rows(services, "TABLE_service", "ROW_service"):
        name = str(r.get("name", ""))
        c.add_metric([name], _num(r.get("restarts")))
        up.add_metric([name], 1.0 if r.get("pid") else 0.0)
    yield c
    yield up


class NodeMetrics:
    """cfgmgr's metrics: its own counters plus the pulled snapshot."""

    def __init__(self, domain: int, role: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.rest_requests = Counter(
            "openvsm_rest_requests",
            "REST requests by endpoint, method and status code",
            ["endpoint", "method", "code"],
            registry=r,
        )
        self.rest_latency = Histogram(
            "openvsm_rest_request_duration_seconds",
            "REST request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "openvsm_commit_latency_seconds",
            "Configuration commit latency (durable and replicated)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.changes_acknowledged = Counter(
            "openvsm_changes_acknowledged", "Changes acknowledged to their writer", registry=r
        )
        self.commit_failures = Counter(
            "openvsm_commit_failures", "Changes refused or not replicated", registry=r
        )
        self.notify_runs = Counter(
            "openvsm_notify_hook_runs",
            "Notify hook runs by state and result (ok, failed, timeout)",
            ["state", "result"],
            registry=r,
        )
        self.scrape_errors = Counter(
            "openvsm_scrape_errors",
            "Services that did not answer a scrape in time",
            ["source"],
            registry=r,
        )
        self.collector = PulledCollector(domain, role)
        r.register(self.collector)  # type: ignore[arg-type]
        self.render = make_aiohttp_handler(r)

    def committed(self, seconds: float) -> None:
        self.commit_latency.observe(seconds)
        self.changes_acknowledged.inc()

    def commit_failed(self) -> None:
        self.commit_failures.inc()

    async def pull(self, source: str, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(PULL_TIMEOUT):
                return await call
        except (IpcError, TimeoutError, OSError):
            self.scrape_errors.labels(source).inc()
            return None

    def set_pulled(self, pulled: Pulled) -> None:
        self.collector.pulled = pulled


class ServicePuller:
    """Connections of the scraper's own to hamgr, vemmgr and sysmgr."""

    def __init__(self, run_dir: Path) -> None:
        rundir = RunDir(run_dir)
        self.hamgr = IpcClient(rundir.hamgr, timeout=PULL_TIMEOUT)
        self.vemmgr = IpcClient(rundir.vemmgr, timeout=PULL_TIMEOUT)
        self.sysmgr = IpcClient(rundir.sysmgr, timeout=PULL_TIMEOUT)
        self.mgmt_path = rundir.mgmt  # only where [ssh] or [mgmt] is configured
        self.mgmt = IpcClient(self.mgmt_path, timeout=PULL_TIMEOUT)

    async def pull(
        self,
        metrics: NodeMetrics,
        *,
        sync: Callable[[], dict[str, Any] | None],
        cli_sessions: Callable[[], int | None],
    ) -> Pulled:
        raw_ha, counters, neighbors, services, mgmt = await asyncio.gather(
            metrics.pull("hamgr", self.hamgr.call("metrics")),
            metrics.pull("vemmgr", self.vemmgr.call("counters")),
            metrics.pull("vemmgr", self.vemmgr_neighbors()),
            metrics.pull("sysmgr", self.sysmgr.call("services")),
            self._mgmt(metrics),
        )
        ha: HamgrMetrics | None = None
        if raw_ha is not None:
            try:
                ha = decode_hamgr_metrics(raw_ha)
            except msgspec.ValidationError:
                metrics.scrape_errors.labels("hamgr").inc()
        ssh_sessions: int | None = None
        if isinstance(mgmt, dict):
            # The shared management address is the mgmt service's (hamgr knows
            # nothing of it): its holder goes into the redundancy view here.
            if ha is not None and mgmt.get("mgmt_address"):
                ha = msgspec.structs.replace(ha, shared_address_held=bool(mgmt.get("holding")))
            sessions = mgmt.get("ssh_sessions")
            if isinstance(sessions, list):
                ssh_sessions = len(sessions)
        return Pulled(
            ssh_sessions=ssh_sessions,
            hamgr=ha,
            module_counters=counters if isinstance(counters, dict) else None,
            neighbors=neighbors if isinstance(neighbors, dict) else None,
            services=services if isinstance(services, dict) else None,
            sync=sync(),
            cli_sessions=cli_sessions(),
        )

    async def _mgmt(self, metrics: NodeMetrics) -> Any:
        if not self.mgmt_path.exists():
            return None  # no mgmt service on this node: nothing to count as an error
        return await metrics.pull("mgmt", self.mgmt.call("status"))

    async def vemmgr_neighbors(self) -> Any:
        return await self.vemmgr.call("neighbors")

    def close(self) -> None:
        for client in (self.hamgr, self.vemmgr, self.sysmgr, self.mgmt):
            client.close()


def endpoint_of(request: web.Request) -> str:
    """The route's template (``/api/n1k/network-segment/{id}``), never the raw path."""
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical


def rest_middleware(metrics: NodeMetrics) -> Any:
    """Counts every answer (401 and 404 included) by endpoint, method and code."""
    import time

    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            endpoint = endpoint_of(request)
            metrics.rest_requests.labels(endpoint, request.method, str(code)).inc()
            metrics.rest_latency.labels(endpoint).observe(time.monotonic() - started)

    return observe


def families(registry: CollectorRegistry) -> Iterable[Metric]:
    """Every family the registry renders (tests)."""
    return registry.collect()
