"""``/metrics`` and the live ``/status`` page on a node's REST listener.

Routes (all behind the REST listener's authentication; any valid user,
read-only ones included, since nothing here changes anything):

- ``GET /metrics``: Prometheus text (``openvsm.observe.metrics``).
- ``GET /status``: the page (plain HTML + one small script, no build step).
- ``GET /status/node``: this node's summary as JSON (``NodeSummary``), also
  what the other node's page asks for.
- ``GET /status/events``: server-sent events, one ``DomainView`` JSON every
  ``TICK`` seconds: this node, the peer (asked over HTTP at
  ``observe.peer_status_url`` with the browser's own credentials, so a user
  sees only what the peer lets that user see), the module table, the last
  redundancy trace events and the recent heartbeat gaps.

Degrading: the peer not answering within ``PEER_TIMEOUT`` is shown as
``unreachable`` with the reason; hamgr not answering (restarting) leaves
this node's row ``unknown`` instead of failing the feed. A stream ends when
the browser goes away or the application shuts down (``on_shutdown`` wakes
every stream so cfgmgr never waits on an idle browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import web

from openvsm.observe.export import HamgrMetrics
from openvsm.observe.metrics import NodeMetrics, Pulled, ServicePuller, rest_middleware

TICK: Final = 0.5
PEER_TIMEOUT: Final = 0.4
CACHE_S: Final = 0.25
TRACE_ROWS: Final = 12


class NodeSummary(msgspec.Struct):
    name: str
    role: str
    state: str  # HaState value, or "unknown" (hamgr not answering), "unreachable" (peer)
    epoch: int = 0
    uptime_s: float = 0.0
    state_since: float = 0.0
    sync_state: str = ""
    peer_state: str = ""
    degraded: bool = False
    mode_oper: str = ""
    shared_address_held: bool | None = None
    loss_interval_s: float = 0.0
    heartbeat_interval_s: float = 0.0
    gaps: dict[str, list[tuple[float, float]]] = {}
    error: str = ""


class DomainView(msgspec.Struct):
    served_by: str
    time: float
    nodes: list[NodeSummary]
    modules: list[dict[str, Any]]
    trace: list[dict[str, Any]]


def summarize(name: str, role: str, h: HamgrMetrics | None, wall: float) -> NodeSummary:
    if h is None:
        return NodeSummary(name=name, role=role, state="unknown", error="hamgr is not answering")
    return NodeSummary(
        name=name,
        role=role,
        state=h.state,
        epoch=h.epoch,
        uptime_s=max(0.0, wall - h.started),
        state_since=h.state_since,
        sync_state=h.sync_state,
        peer_state=h.peer_state,
        degraded=h.degraded,
        mode_oper=h.mode_oper,
        shared_address_held=h.shared_address_held,
        loss_interval_s=h.max_loss_interval,
        heartbeat_interval_s=h.heartbeat_interval,
        gaps={
            i.name: [(round(s.time, 3), round(s.gap, 4)) for s in i.recent[-120:]]
            for i in h.interfaces
        },
    )


class NodeObserver:
    """What the routes need from the node; built by cfgmgr with its callables."""

    def __init__(
        self,
        *,
        name: str,
        role: str,
        metrics: NodeMetrics,
        puller: ServicePuller,
        sync_status: Callable[[], dict[str, Any] | None],
        cli_sessions: Callable[[], int | None],
        module_table: Callable[[], Awaitable[dict[str, Any]]],
        peer_status_url: str | None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.role = name, role
        self.metrics = metrics
        self.puller = puller
        self.sync_status = sync_status
        self.cli_sessions = cli_sessions
        self.module_table = module_table
        self.peer_status_url = peer_status_url.rstrip("/") if peer_status_url else None
        self.wall = wall
        self.shutdown = asyncio.Event()
        # One answer per CACHE_S for every open page and the peer's polls: the
        # services are asked at most that often however many browsers watch.
        self._cache: dict[str, tuple[float, Any]] = {}
        self.mono = time.monotonic

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._cache.get(key)
        now = self.mono()
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        value = await fetch()
        self._cache[key] = (self.mono(), value)
        return value

    async def pull(self) -> Pulled:
        return await self.puller.pull(
            self.metrics, sync=self.sync_status, cli_sessions=self.cli_sessions
        )

    async def local(self) -> NodeSummary:
        summary: NodeSummary = await self._cached("local", self._local)
        return summary

    async def _local(self) -> NodeSummary:
        raw = await self.metrics.pull("hamgr", self.puller.hamgr.call("metrics", recent=True))
        h: HamgrMetrics | None = None
        if raw is not None:
            with contextlib.suppress(msgspec.ValidationError):
                h = msgspec.convert(raw, HamgrMetrics)
        return summarize(self.name, self.role, h, self.wall())

    async def peer(self, session: aiohttp.ClientSession, auth: str | None) -> NodeSummary | None:
        if self.peer_status_url is None:
            return None
        peer_role = "secondary" if self.role == "primary" else "primary"
        headers = {"Authorization": auth} if auth else {}
        try:
            async with session.get(
                f"{self.peer_status_url}/status/node",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT),
            ) as resp:
                if resp.status != 200:
                    reason = f"the peer answered {resp.status}"
                    return NodeSummary(peer_role, peer_role, "unreachable", error=reason)
                return msgspec.json.decode(await resp.read(), type=NodeSummary)
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200] or "no answer"
            return NodeSummary(peer_role, peer_role, "unreachable", error=reason)

    async def modules(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._cached("modules", self._modules)
        return rows

    async def _modules(self) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(1.0):
                data = await self.module_table()
        except Exception:
            return []
        info = (data.get("TABLE_modinfo") or {}).get("ROW_modinfo") or []
        srv = {
            r.get("modsrv"): r
            for r in (data.get("TABLE_modsrvinfo") or {}).get("ROW_modsrvinfo") or []
        }
        return [
            {
                "module": r.get("modinf"),
                "type": r.get("modtype", ""),
                "status": r.get("status", ""),
                "ports": r.get("ports", 0),
                "host": (srv.get(r.get("modinf")) or {}).get("srvname", ""),
            }
            for r in info
        ]

    async def trace(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._cached("trace", self._trace)
        return rows

    async def _trace(self) -> list[dict[str, Any]]:
        data = await self.metrics.pull("hamgr", self.puller.hamgr.call("trace"))
        rows = ((data or {}).get("TABLE_trace") or {}).get("ROW_trace") or []
        return [r for r in rows if isinstance(r, dict)][-TRACE_ROWS:]

    async def view(self, session: aiohttp.ClientSession, auth: str | None) -> DomainView:
        local, peer, modules, trace = await asyncio.gather(
            self.local(), self.peer(session, auth), self.modules(), self.trace()
        )
        nodes = [local] + ([peer] if peer is not None else [])
        nodes.sort(key=lambda n: n.role != "primary")
        return DomainView(
            served_by=self.name, time=self.wall(), nodes=nodes, modules=modules, trace=trace
        )


OBSERVER: Final = web.AppKey("openvsm_observer", NodeObserver)


async def _metrics(request: web.Request) -> web.StreamResponse:
    obs = request.app[OBSERVER]
    obs.metrics.set_pulled(await obs.pull())
    return await obs.metrics.render(request)


async def _page(request: web.Request) -> web.StreamResponse:
    html = resources.files("openvsm.observe").joinpath("static/status.html").read_bytes()
    return web.Response(body=html, content_type="text/html", charset="utf-8")


async def _script(request: web.Request) -> web.StreamResponse:
    js = resources.files("openvsm.observe").joinpath("static/status.js").read_bytes()
    return web.Response(body=js, content_type="application/javascript", charset="utf-8")


async def _node(request: web.Request) -> web.StreamResponse:
    summary = await request.app[OBSERVER].local()
    return web.Response(body=msgspec.json.encode(summary), content_type="application/json")


async def _events(request: web.Request) -> web.StreamResponse:
    obs = request.app[OBSERVER]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    auth = request.headers.get("Authorization")
    async with aiohttp.ClientSession() as session:
        while not obs.shutdown.is_set():
            view = await obs.view(session, auth)
            try:
                await resp.write(b"data: " + msgspec.json.encode(view) + b"\n\n")
            except (ConnectionResetError, RuntimeError):
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await obs.shutdown.wait()
    return resp


async def _on_shutdown(app: web.Application) -> None:
    app[OBSERVER].shutdown.set()


def install(app: web.Application, observer: NodeObserver) -> None:
    """Add the routes and the REST request counter to ``app`` (before it starts)."""
    app[OBSERVER] = observer
    app.middlewares.insert(0, rest_middleware(observer.metrics))
    app.on_shutdown.append(_on_shutdown)
    r = app.router
    r.add_get("/metrics", _metrics)
    r.add_get("/status", _page)
    r.add_get("/status/status.js", _script)
    r.add_get("/status/node", _node)
    r.add_get("/status/events", _events)
