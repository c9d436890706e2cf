"""``/metrics`` of a VEM agent: a small aiohttp listener (``[vem] metrics_listen``).

The agent has no users and no REST; the listener serves only ``GET /metrics``
(read-only, no authentication: bind it to a management address). At scrape
time ``VemCollector`` reads the runner's counters and the last LACP report
the poll loop built (never the datapath itself: a scrape takes no datapath
lock and does no OVSDB call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from openvsm import __version__
from openvsm.wire.messages import VemLacpReport

VEM_STATES: Final = ("booting", "attached", "switching", "headless")
LACP_STATUS: Final = {"P": "bundled", "H": "hot-standby", "D": "down", "s": "suspended"}


class VemView(Protocol):
    """What the collector reads from the agent (``VemRunner`` + port rows)."""

    def status_data(self) -> dict[str, Any]: ...

    def ports_data(self) -> list[dict[str, Any]]: ...

    @property
    def last_lacp(self) -> VemLacpReport | None: ...

    @property
    def datapath_errors_total(self) -> int: ...


def _g(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class VemCollector:
    def __init__(self, view: VemView, host: Callable[[], str]) -> None:
        self.view = view
        self.host = host

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        st = self.view.status_data()
        info = GaugeMetricFamily(
            "openvsm_vem_build_info", "Build of this VEM agent (value 1)", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        state = GaugeMetricFamily(
            "openvsm_vem_state", "VEM agent state (state set)", labels=["state"]
        )
        for s in VEM_STATES:
            state.add_metric([s], 1.0 if st.get("state") == s else 0.0)
        yield state
        attached = GaugeMetricFamily(
            "openvsm_vem_attached_vsm",
            "The active VSM this VEM is attached to (value 1; absent when not attached)",
            labels=["vsm", "mac"],
        )
        if st.get("active"):
            attached.add_metric([str(st["active"]), str(st.get("active_mac", ""))], 1)
        yield attached
        yield _g("openvsm_vem_epoch", "Highest VSM epoch this VEM accepted", float(st["epoch"]))
        yield _g("openvsm_vem_headless", "1 while headless", float(bool(st.get("headless"))))
        yield _g("openvsm_vem_module", "Module number given by the VSM", float(st["module"] or 0))
        yield from self._counters(st)
        yield from self._ports()
        yield from self._datapath(st)

    def _counters(self, st: dict[str, Any]) -> Iterator[Metric]:
        c = st.get("counters") or {}
        pairs = (
            ("openvsm_vem_heartbeats_sent", "heartbeats_sent", "Heartbeats sent to the VSM"),
            ("openvsm_vem_heartbeats_received", "heartbeats_received", "Heartbeats from the VSM"),
            ("openvsm_vem_headless_events", "headless_events", "Times this VEM went headless"),
            ("openvsm_vem_switches", "switches", "Switches to a new active VSM"),
        )
        for name, key, doc in pairs:
            yield CounterMetricFamily(name, doc, value=float(c.get(key, 0)))
        drops = CounterMetricFamily(
            "openvsm_vem_frames_dropped", "Frames dropped by the codec", labels=["reason"]
        )
        for reason, n in sorted((st.get("drops") or {}).items()):
            drops.add_metric([str(reason)], float(n))
        yield drops
        refused = CounterMetricFamily(
            "openvsm_vem_frames_refused",
            "VSM frames refused by the VEM core: replayed, stale epoch, unsolicited attach ack",
            labels=["reason"],
        )
        for key in ("replayed", "stale_epoch", "unsolicited_acks", "epoch_limit"):
            refused.add_metric([key], float(c.get(key, 0)))
        yield refused

    def _ports(self) -> Iterator[Metric]:
        counts = {"forwarding": 0, "blocked": 0}
        for p in self.view.ports_data():
            counts["forwarding" if p.get("forwarding") else "blocked"] += 1
        g = GaugeMetricFamily("openvsm_vem_ports", "vEth ports by state", labels=["state"])
        for s, n in counts.items():
            g.add_metric([s], n)
        yield g

    def _datapath(self, st: dict[str, Any]) -> Iterator[Metric]:
        yield _g(
            "openvsm_vem_datapath_errors",
            "Datapath errors present now",
            float(len(st.get("datapath_errors") or [])),
        )
        yield CounterMetricFamily(
            "openvsm_vem_datapath_errors_seen",
            "Datapath errors that appeared since the agent started",
            value=float(self.view.datapath_errors_total),
        )
        members = dict.fromkeys(LACP_STATUS.values(), 0)
        report = self.view.last_lacp
        for ch in report.channels if report is not None else []:
            for m in ch.members:
                key = LACP_STATUS.get(m.status, "down")
                members[key] += 1
        g = GaugeMetricFamily(
            "openvsm_vem_lacp_members", "Port-channel members by LACP state", labels=["state"]
        )
        for s, n in members.items():
            g.add_metric([s], n)
        yield g


async def start_vem_metrics(view: VemView, host: str, port: int) -> web.AppRunner:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VemCollector(view, lambda: host))  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
