"""The n1kv REST API served by cfgmgr on the mgmt address (DESIGN §6).

Writes go through ``Cfgmgr.commit``: committed, published to vemmgr and
replicated before the driver gets its 200. The standby answers writes with
503 naming the active.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from openvsm.api.backend import StoreRestBackend
from openvsm.api.rest import create_app
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
        self.committed(change)
        return change.seq


async def start_rest(cm: Cfgmgr) -> web.AppRunner:
    listen = cm.cfg.rest_listen
    assert listen is not None
    app = create_app(CfgmgrRestBackend(cm))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
    await site.start()
    return runner
