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
from typing import TYPE_CHECKING

from aiohttp import web

from openvsm.api.backend import StoreRestBackend
from openvsm.api.rest import create_app
from openvsm.credentials import rest_server_context
from openvsm.store.pss import Op

if TYPE_CHECKING:
    from openvsm.cfgmgr.service import Cfgmgr


class CfgmgrRestBackend(StoreRestBackend):
    def __init__(self, cm: Cfgmgr) -> None:
        super().__init__(cm.store, is_active=self._role, clock=cm.wall)
        self.cm = cm

    def _role(self) -> tuple[bool, str]:
        if self.cm.is_active():
            return True, ""
        return False, self.cm.not_active_text().lstrip("% ")

    async def commit(self, ops: Sequence[Op], *, user: str, command: str) -> int:
        change = await self.cm.commit(list(ops), user=user, source="rest", command=command)
        return change.seq


async def start_rest(cm: Cfgmgr) -> web.AppRunner:
    """One application, served on HTTPS (``rest.listen``) and, when configured, plain HTTP."""
    cfg = cm.cfg
    app = create_app(CfgmgrRestBackend(cm))
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
