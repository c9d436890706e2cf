"""The n1kv REST API served by cfgmgr on the mgmt address (DESIGN §6).

Writes go through ``Cfgmgr.commit``: committed, published to vemmgr and
replicated before the driver gets its 200. The standby answers writes with
503 naming the active. Served over HTTPS with the pair certificate on
``rest.listen`` and, only when configured, over plain HTTP on
``rest.plain_listen`` (the n1kv driver speaks ``http://``; bind it to the
management network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from openvsm.api.backend import StoreRestBackend
from openvsm.api.rest import create_app
from openvsm.cfgmgr.host import RestHost
from openvsm.credentials import rest_server_context
from openvsm.observe.metrics import ServicePuller
from openvsm.observe.status import NodeObserver
from openvsm.observe.status import install as install_observe
from openvsm.store.pss import Op


class CfgmgrRestBackend(StoreRestBackend):
    def __init__(self, cm: RestHost) -> None:
        super().__init__(cm.store, is_active=self._role, clock=cm.wall)
        self.cm = cm

    def _role(self) -> tuple[bool, str]:
        if self.cm.is_active():
            return True, ""
        return False, self.cm.not_active_text().lstrip("% ")

    async def commit(self, ops: Sequence[Op], *, user: str, command: str) -> int:
        change = await self.cm.commit(list(ops), user=user, source="rest", command=command)
        self.committed(change)
        return change.seq


def _observer(cm: RestHost) -> NodeObserver:
    from openvsm.cfgmgr.modules import show_module_data

    def sync_status() -> dict[str, Any] | None:
        return cm.sync.status() if cm.sync is not None else None

    def cli_sessions() -> int | None:
        return cm.cli.session_count() if cm.cli is not None else None

    return NodeObserver(
        name=cm.cfg.name,
        role=cm.cfg.role,
        metrics=cm.metrics,
        puller=ServicePuller(cm.cfg.run_dir),
        sync_status=sync_status,
        cli_sessions=cli_sessions,
        module_table=lambda: show_module_data(cm),
        peer_status_url=cm.cfg.observe.peer_status_url,
        wall=cm.wall,
    )


async def start_rest(cm: RestHost) -> web.AppRunner:
    """One application, served on HTTPS (``rest.listen``) and, when configured, plain HTTP."""
    cfg = cm.cfg
    app = create_app(CfgmgrRestBackend(cm))
    install_observe(app, _observer(cm))  # /metrics, /status (docs/observability.md)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        if cfg.rest_listen is not None:
            assert cfg.tls_cert is not None and cfg.tls_key is not None  # config.py checks
            tls = rest_server_context(cfg.tls_cert, cfg.tls_key)
            listen = cfg.rest_listen
            site = web.TCPSite(
                runner, listen.host, listen.port, ssl_context=tls, reuse_address=True
            )
            await site.start()
        if cfg.rest_plain_listen is not None:
            plain = cfg.rest_plain_listen
            await web.TCPSite(runner, plain.host, plain.port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
