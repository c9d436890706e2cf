"""A real ``/api/n1k`` server on 127.0.0.1 for tests, and its own tests.

``RestServer`` runs the aiohttp application over a ``StoreRestBackend`` and a
real ``Store`` in a background thread with its own event loop; the store
belongs to that thread, so tests read it through ``server.call(fn)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import requests
from aiohttp import web

from openvsm.api.backend import StoreRestBackend
from openvsm.api.n1kv import K_PORT_PROFILE, openstack_sync_status
from openvsm.api.rest import create_app, rest_state, start_server
from openvsm.passwords import hash_password
from openvsm.store.pss import Change, Op, Store

T = TypeVar("T")

USER = "admin"
PASSWORD = "n1kv-secret"
POLICY_WEB_ID = "c2f3b6e0-4d63-4c55-9d4e-0000000000a1"
POLICY_DB_ID = "c2f3b6e0-4d63-4c55-9d4e-0000000000b2"
OS_KINDS = (
    "os_logical_network",
    "os_network_profile",
    "os_network_segment",
    "os_bridge_domain",
    "os_ip_pool",
    "os_vm_network",
)


def cli_profile(name: str, uid: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": "vethernet",
        "mode": "access",
        "access_vlan": 1,
        "allowed_vlans": [10, 20],
        "enabled": True,
        "shutdown": False,
        "description": "",
        "max_macs": 4,
        "channel_group": 0,
        "lacp_mode": "",
        "owner": "cli",
        "uuid": uid,
        "inherit": "",
        "bridge_domain": "",
        "dynamic": False,
    }
    body.update(over)
    return body


class RestServer:
    """``with RestServer(tmp_path) as srv``: ``srv.url``, ``srv.call(fn)``."""

    def __init__(
        self,
        root: Path,
        *,
        max_body: int = 1 << 20,
        tarpit_s: float = 0.01,
        fail_delay_s: float = 0.01,
    ) -> None:
        self.root = root
        self.tarpit_s = tarpit_s
        self.fail_delay_s = fail_delay_s
        self.max_body = max_body
        self.active = True
        self.active_text = "sup-1 at 192.0.2.10 is the active VSM"
        self.fail_replication: str | None = None
        self.replicated: list[int] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="rest-server", daemon=True)
        self.port = 0
        self._store: Store | None = None
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._backend: StoreRestBackend | None = None

    # --- lifecycle ---

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> RestServer:
        self.thread.start()
        try:
            self._submit(self._setup()).result(timeout=30)
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self.thread.is_alive():
            self._submit(self._teardown()).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        self.loop.close()

    async def _replicate(self, change: Change) -> None:
        if self.fail_replication:
            raise ConnectionError(self.fail_replication)
        self.replicated.append(change.seq)

    async def _setup(self) -> None:
        store = Store(self.root / "pss.db")
        self._store = store
        store.commit(
            [
                Op(
                    "user",
                    USER,
                    {
                        "name": USER,
                        "password_hash": hash_password(PASSWORD),
                        "role": "network-admin",
                    },
                ),
                Op(K_PORT_PROFILE, "web", cli_profile("web", POLICY_WEB_ID)),
                Op(K_PORT_PROFILE, "db", cli_profile("db", POLICY_DB_ID, max_macs=2)),
                Op(K_PORT_PROFILE, "uplink", cli_profile("uplink", "u-1", type="ethernet")),
                Op(K_PORT_PROFILE, "draft", cli_profile("draft", "d-1", enabled=False)),
            ],
            user="setup",
            source="test",
            command="seed",
            time=1.0,
        )
        backend = StoreRestBackend(
            store,
            is_active=lambda: (self.active, self.active_text),
            replicate=self._replicate,
        )
        self._backend = backend
        self._app = create_app(
            backend,
            max_body=self.max_body,
            tarpit_s=self.tarpit_s,
            fail_delay_s=self.fail_delay_s,
        )
        self._runner = await start_server(self._app, "127.0.0.1", 0)
        addresses = self._runner.addresses
        self.port = int(addresses[0][1])

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._backend is not None:
            self._backend.close()
        if self._store is not None:
            self._store.close()

    def _submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    # --- test helpers ---

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/n1k"

    def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the server's thread (the store's owner)."""
        store = self._store
        assert store is not None

        async def run() -> T:
            return fn(store)

        result: T = self._submit(run()).result(timeout=30)
        return result

    def digest(self) -> tuple[str, int]:
        return self.call(lambda s: (s.digest(), s.last_seq))

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.call(lambda s: s.list(kind))

    def sync_status(self) -> dict[str, Any]:
        app = self._app
        assert app is not None
        last = rest_state(app).last_md5_request
        return self.call(lambda s: openstack_sync_status(s, last_md5_request=last))

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        s.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        return s


# --- tests of the harness and of the plumbing ----------------------------------------


def test_openapi_is_public_and_covers_every_route(tmp_path: Path) -> None:
    with RestServer(tmp_path) as srv, requests.Session() as s:
        r = s.get(f"{srv.url}/openapi.json")
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/json")
        doc = r.json()
        assert doc["openapi"].startswith("3.")
        app = srv._app
        assert app is not None
        routes = {
            (route.method.lower(), route.resource.canonical[len("/api/n1k") :])
            for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method == "post":
                    schema = op["requestBody"]["content"]["application/json"]["schema"]
                    assert schema["type"] == "object", path


def test_auth_is_required_and_basic_only(tmp_path: Path) -> None:
    with RestServer(tmp_path) as srv, requests.Session() as s:
        url = f"{srv.url}/network-segment"
        for headers in (
            {},
            {"Authorization": "Bearer abc"},
            {"Authorization": "Basic !!!notbase64"},
            {"Authorization": "Basic " + "YWRtaW4="},  # "admin" without ":"
        ):
            r = s.get(url, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert r.headers["Content-Type"].startswith("text/plain")
            assert "authentication" in r.text
        r = s.get(url, auth=(USER, "wrong"))
        assert r.status_code == 401 and "wrong user name or password" in r.text
        r = s.get(url, auth=("nobody", PASSWORD))
        assert r.status_code == 401
        r = s.get(url, auth=(USER, PASSWORD))
        assert r.status_code == 200 and r.json() == {}
        log = srv.call(lambda st: st.accounting_log())
        assert any("authentication failed" in e.result for e in log)
