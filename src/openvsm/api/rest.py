"""The ``/api/n1k`` HTTP server of the OpenStack n1kv driver (DESIGN §6).

A thin aiohttp adapter around the pure model of ``openvsm.api.n1kv``: it
authenticates (HTTP Basic against ``RestBackend.check_login``: the password
check runs in a bounded worker pool; too many failures from a source or for
a user are answered 429 with ``Retry-After`` without any check, after a
tarpit delay of ``TARPIT_S`` (a wrong password's 401 after ``FAIL_DELAY_S``):
the delays cost no CPU and slow a hammering client to a few requests per
second per connection, so that it cannot load cfgmgr's loop), refuses
writes of a ``network-operator`` (403, JSON reason), reads and
decodes the body (size-limited), asks the model for the ops of the request
and commits them through the backend as one change. The answer is sent only
when ``commit`` returned, i.e. when the change is durable and replicated.

Writes go through one ``WriteBatcher`` so that validation and commit see the
same configuration while several writes share one durable commit: the
writes that arrived while the previous round was committing are computed one
after the other, each against the store plus the ops of those before it in
the round (``OverlayView``), then all of the round's changes are committed
at once (cfgmgr groups them into one SQLite transaction and one standby
round trip) and each request gets its own answer. A round starts only when
the previous one is over, so a round never computes against a change whose
commit might still fail. The changes of one round write disjoint objects (a
write that would write an object already written in its round waits for the
next round), so the round's end state does not depend on the order in which
its commits land, and equals the requests applied one by one (in arrival
order, a deferred write after the rest of its round). Each request stays
one change, all or nothing, with its own accounting entry. Reads are
answered by any node; writes only by the active (``role()``), the standby
answers 503 naming the active.

Answers (the driver checks for exactly 200): GET -> ``application/json``;
POST/DELETE -> ``text/plain`` with a short message; every error is a
``text/plain`` sentence (401 carries ``WWW-Authenticate: Basic``), never a
stack trace, except the 403 of a role refusal (JSON ``{"error", "reason",
"user", "role"}``). Nothing is started at import; ``create_app`` builds the
application and ``start_server`` runs it on a host/port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import msgspec
from aiohttp import web

from openvsm.api import n1kv
from openvsm.api.auth import READ_METHODS, may_write
from openvsm.api.n1kv import ApiError, Outcome, ReadView
from openvsm.api.openapi import openapi_document
from openvsm.passwords import Verdict
from openvsm.store.pss import Op

log = logging.getLogger("openvsm.api.rest")

BASE: Final = "/api/n1k"
OPENAPI_PATH: Final = f"{BASE}/openapi.json"
MAX_BODY: Final = 1 << 20  # 1 MiB: far above any body of the driver
REALM: Final = 'Basic realm="openvsm", charset="UTF-8"'
TARPIT_S: Final = 5.0  # a 429 is answered after this long (at most its Retry-After)
FAIL_DELAY_S: Final = 1.0  # a 401 for a wrong password is answered after this long


class RestBackend(Protocol):
    """What the REST server needs from its node (cfgmgr implements it)."""

    def role(self) -> tuple[bool, str]:
        """(this node is active, a text naming the active for 503 answers)."""
        ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def list(self, kind: str) -> dict[str, dict[str, Any]]: ...

    async def commit(self, ops: Sequence[Op], *, user: str, command: str) -> int:
        """Commit one change; return its seq once durable AND replicated, else raise."""
        ...

    async def check_login(self, user: str, password: str, *, source: str) -> Verdict:
        """OK, WRONG (a failure, counted) or LIMITED (refused without work: 429)."""
        ...

    def retry_after(self, user: str, source: str) -> float:
        """Seconds until a LIMITED user or source may try again."""
        ...

    def user_role(self, user: str) -> str:
        """``network-admin`` or ``network-operator`` (openvsm.api.auth)."""
        ...

    def md5_hashes(self) -> dict[str, str]:
        """The driver's five md5 hashes of the configuration as it is now."""
        ...

    async def prepare_write(self) -> None:
        """Called under the write lock before a write is computed (layout upgrades)."""
        ...

    def account(self, user: str, command: str, result: str) -> None:
        """Log a request that changed nothing (refused, failed) in the accounting log."""
        ...


class RestState:
    """Per-application state: the backend, the write lock, the last md5 request."""

    def __init__(
        self,
        backend: RestBackend,
        clock: Callable[[], float],
        max_body: int,
        *,
        tarpit_s: float = TARPIT_S,
        fail_delay_s: float = FAIL_DELAY_S,
    ) -> None:
        self.backend = backend
        self.tarpit_s = tarpit_s
        self.fail_delay_s = fail_delay_s
        self.clock = clock
        self.max_body = max_body
        self.writes = WriteBatcher(backend)
        self.last_md5_request: float | None = None  # wall-clock, this node only
        self.limited = 0  # requests answered 429 (failure limit or busy password pool)


STATE: Final = web.AppKey("n1kv_rest_state", RestState)
_USER: Final = web.RequestKey("n1kv_user", str)


def rest_state(app: web.Application) -> RestState:
    """The state of an application made by ``create_app`` (for ``show openstack sync``)."""
    return app[STATE]


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text.rstrip() + "\n", headers=headers)


def _command(request: web.Request) -> str:
    return f"{request.method} {request.path}"[:300]


# --- authentication ------------------------------------------------------------


def basic_credentials(header: str | None) -> tuple[str, str] | str | None:
    """(user, password) of a Basic header; a str says what is wrong; None: absent."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return "only HTTP Basic authentication is accepted"
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "the Basic credentials are not valid base64"
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    user, sep, password = text.partition(":")
    if not sep or not user:
        return "the Basic credentials are not user:password"
    return user, password


def _unauthorized(reason: str) -> web.Response:
    return _text(401, f"authentication required: {reason}", {"WWW-Authenticate": REALM})


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _text(exc.status, exc.text)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _text(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed})")
    except web.HTTPNotFound:
        return _text(404, f"{request.path[:200]} is not a resource of this API")
    except web.HTTPException as exc:
        return _text(exc.status, exc.reason)
    except Exception:
        log.exception("REST %s failed", _command(request))
        return _text(500, f"internal error while handling {_command(request)}; see the VSM log")


@web.middleware
async def _authenticate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path == OPENAPI_PATH:
        return await handler(request)
    creds = basic_credentials(request.headers.get("Authorization"))
    if creds is None:
        return _unauthorized("send HTTP Basic credentials")
    if isinstance(creds, str):
        return _unauthorized(creds)
    user, password = creds
    state = request.app[STATE]
    backend = state.backend
    source = request.remote or "unknown"
    verdict = await backend.check_login(user, password, source=source)
    if verdict is Verdict.LIMITED:
        state.limited += 1
        wait = max(1, math.ceil(backend.retry_after(user, source)))
        await asyncio.sleep(min(wait, state.tarpit_s))  # costs no CPU; slows a hammering client
        return _text(
            429,
            f"too many failed logins from {source} or for this user; retry in {wait} s",
            {"Retry-After": str(wait)},
        )
    if verdict is not Verdict.OK:
        backend.account(user[:64], _command(request), "FAILURE: authentication failed")
        await asyncio.sleep(state.fail_delay_s)
        return _unauthorized("wrong user name or password")
    request[_USER] = user
    if request.method not in READ_METHODS:
        role = backend.user_role(user)
        if not may_write(role):
            reason = f"user {user} has role {role}, which may not change the configuration"
            backend.account(user, _command(request), f"FAILURE: {reason}")
            return web.json_response(
                {"error": "forbidden", "reason": reason, "user": user, "role": role}, status=403
            )
    return await handler(request)


# --- request plumbing ----------------------------------------------------------------


async def _json_body(request: web.Request, max_body: int) -> Any:
    too_big = f"the request body is larger than {max_body} bytes"
    if request.content_length is not None and request.content_length > max_body:
        raise ApiError(413, too_big)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, too_big) from None
    if not raw.strip():
        raise ApiError(400, "the request needs a JSON object body")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


def _check_active(backend: RestBackend) -> None:
    active, who = backend.role()
    if not active:
        raise ApiError(
            503,
            "this VSM is not the active one and does not accept changes; "
            f"send them to the active VSM ({who or 'the active is not known'})",
        )


Compute = Callable[[ReadView, Any], Outcome]
ROUND_MAX: Final = 64  # writes computed and committed together, at most


class OverlayView:
    """The store as it will be once ``ops`` are committed (a ``ReadView``)."""

    def __init__(self, base: ReadView) -> None:
        self.base = base
        self.ops: dict[tuple[str, str], dict[str, Any] | None] = {}

    def add(self, ops: Sequence[Op]) -> None:
        for op in ops:
            self.ops[(op.kind, op.key)] = op.body

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        if (kind, key) in self.ops:
            return copy.deepcopy(self.ops[(kind, key)])
        return self.base.get(kind, key)

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        found = self.base.list(kind)
        mine = [(key, body) for (k, key), body in self.ops.items() if k == kind]
        if not mine:
            return found
        for key, body in mine:
            if body is None:
                found.pop(key, None)
            else:
                found[key] = copy.deepcopy(body)
        return dict(sorted(found.items()))


class _Write:
    __slots__ = ("body", "command", "compute", "done", "user")

    def __init__(self, compute: Compute, body: Any, user: str, command: str) -> None:
        self.compute = compute
        self.body = body
        self.user = user
        self.command = command
        self.done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():  # a cancelled request is not answered
            self.done.set_exception(exc)

    def answer(self, outcome: Outcome) -> None:
        if not self.done.done():
            self.done.set_result(outcome)


class WriteBatcher:
    """Computes and commits the REST writes in rounds (see the module docstring)."""

    def __init__(self, backend: RestBackend) -> None:
        self.backend = backend
        self._queue: list[_Write] = []
        self._running = False
        self.rounds = 0  # rounds committed (a test and bench figure)

    async def submit(self, compute: Compute, body: Any, *, user: str, command: str) -> Outcome:
        """The request's outcome once its change is committed; or ApiError."""
        write = _Write(compute, body, user, command)
        self._queue.append(write)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._run())
        return await write.done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:ROUND_MAX], self._queue[ROUND_MAX:]
                try:
                    await self._round(batch)
                except Exception as exc:  # a bug or a failed layout upgrade: answer, go on
                    log.exception("REST write round failed")
                    for write in batch:
                        write.fail(exc)
        finally:
            self._running = False

    async def _round(self, batch: list[_Write]) -> None:
        try:
            _check_active(self.backend)
            await self.backend.prepare_write()
        except ApiError as exc:
            for write in batch:
                write.fail(exc)
            return
        view = OverlayView(self.backend)
        todo: list[tuple[_Write, Outcome]] = []
        deferred: list[_Write] = []
        for write in batch:
            if write.done.done():
                continue  # the client went away before its turn: nothing computed
            try:
                outcome = write.compute(view, write.body)
            except Exception as exc:  # ApiError: refused; anything else: a 500, logged
                write.fail(exc)
                continue
            if not outcome.ops:
                write.answer(outcome)
            elif any((op.kind, op.key) in view.ops for op in outcome.ops):
                deferred.append(write)  # writes an object of this round: the next one
            else:
                view.add(outcome.ops)
                todo.append((write, outcome))
        self._queue[:0] = deferred
        if not todo:
            return
        self.rounds += 1
        results = await asyncio.gather(
            *(self.backend.commit(o.ops, user=w.user, command=w.command) for w, o in todo),
            return_exceptions=True,
        )
        for (write, outcome), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("REST %s: commit failed: %s", write.command, result)
                write.fail(ApiError(503, f"the change was not committed on both VSMs: {result}"))
            else:
                write.answer(outcome)


async def _write(request: web.Request, compute: Compute, *, with_body: bool) -> web.Response:
    state = request.app[STATE]
    backend = state.backend
    user = str(request[_USER])
    command = _command(request)
    try:
        _check_active(backend)  # standby: 503 before looking at the body
        body = await _json_body(request, state.max_body) if with_body else None
        outcome = await state.writes.submit(compute, body, user=user, command=command)
    except ApiError as exc:
        backend.account(user, command, f"FAILURE: {exc.text}")
        raise
    return _text(200, outcome.message)


# --- handlers -------------------------------------------------------------------------


def _match(request: web.Request, name: str) -> str:
    return request.match_info[name]


async def _get_policy_profiles(request: web.Request) -> web.Response:
    return web.json_response(n1kv.list_policy_profiles(request.app[STATE].backend))


def _lister(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(n1kv.list_objects(request.app[STATE].backend, kind))

    return handler


async def _get_network(request: web.Request) -> web.Response:
    backend = request.app[STATE].backend
    return web.json_response(n1kv.show_network(backend, _match(request, "id")))


async def _get_vm_networks(request: web.Request) -> web.Response:
    return web.json_response(n1kv.list_vm_networks(request.app[STATE].backend))


async def _get_md5(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.last_md5_request = state.clock()
    return web.json_response(n1kv.md5_response(state.backend.md5_hashes()))


async def _post_logical_network(request: web.Request) -> web.Response:
    name = _match(request, "name")
    return await _write(
        request, lambda v, b: n1kv.create_logical_network(v, name, b), with_body=True
    )


async def _delete_logical_network(request: web.Request) -> web.Response:
    name = n1kv.check_id(_match(request, "name"), "logical network")
    return await _write(request, lambda v, _: n1kv.delete_logical_network(v, name), with_body=False)


async def _post_network_profile(request: web.Request) -> web.Response:
    pid = _match(request, "id")
    return await _write(
        request, lambda v, b: n1kv.create_network_profile(v, pid, b), with_body=True
    )


async def _delete_network_profile(request: web.Request) -> web.Response:
    pid = n1kv.check_id(_match(request, "id"), "network segment pool")
    return await _write(request, lambda v, _: n1kv.delete_network_profile(v, pid), with_body=False)


async def _post_network(request: web.Request) -> web.Response:
    nid = _match(request, "id")
    return await _write(
        request, lambda v, b: n1kv.create_or_update_network(v, nid, b), with_body=True
    )


async def _delete_network(request: web.Request) -> web.Response:
    nid = n1kv.check_id(_match(request, "id"), "network segment")
    return await _write(request, lambda v, _: n1kv.delete_network(v, nid), with_body=False)


async def _post_bridge_domain(request: web.Request) -> web.Response:
    return await _write(request, n1kv.create_bridge_domain, with_body=True)


async def _delete_bridge_domain(request: web.Request) -> web.Response:
    name = n1kv.check_id(_match(request, "name"), "bridge domain")
    return await _write(request, lambda v, _: n1kv.delete_bridge_domain(v, name), with_body=False)


async def _post_ip_pool(request: web.Request) -> web.Response:
    pid = _match(request, "id")
    return await _write(
        request, lambda v, b: n1kv.create_or_update_ip_pool(v, pid, b), with_body=True
    )


async def _delete_ip_pool(request: web.Request) -> web.Response:
    pid = n1kv.check_id(_match(request, "id"), "ip pool template")
    return await _write(request, lambda v, _: n1kv.delete_ip_pool(v, pid), with_body=False)


async def _post_port(request: web.Request) -> web.Response:
    return await _write(request, n1kv.add_port, with_body=True)


async def _delete_port(request: web.Request) -> web.Response:
    vmn = n1kv.check_id(_match(request, "name"), "VM network")
    port = n1kv.check_id(_match(request, "port"), "port")
    return await _write(request, lambda v, _: n1kv.delete_port(v, vmn, port), with_body=False)


async def _post_sync(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return await _write(
        request,
        lambda v, b: n1kv.sync_notification(
            v,
            b,
            now=state.clock(),
            last_md5_request=state.last_md5_request,
            hashes=state.backend.md5_hashes(),
        ),
        with_body=True,
    )


async def _get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(
    backend: RestBackend,
    *,
    max_body: int = MAX_BODY,
    clock: Callable[[], float] = time.time,
    tarpit_s: float = TARPIT_S,
    fail_delay_s: float = FAIL_DELAY_S,
) -> web.Application:
    """The ``/api/n1k`` application over ``backend``; serve it with aiohttp."""
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=max_body)
    app[STATE] = RestState(backend, clock, max_body, tarpit_s=tarpit_s, fail_delay_s=fail_delay_s)
    r = app.router
    r.add_get(OPENAPI_PATH, _get_openapi)
    r.add_get(f"{BASE}/virtual-port-profile", _get_policy_profiles)
    r.add_post(f"{BASE}/logical-network/{{name}}", _post_logical_network)
    r.add_delete(f"{BASE}/logical-network/{{name}}", _delete_logical_network)
    r.add_get(f"{BASE}/network-segment-pool", _lister(n1kv.K_NETWORK_PROFILE))
    r.add_post(f"{BASE}/network-segment-pool/{{id}}", _post_network_profile)
    r.add_delete(f"{BASE}/network-segment-pool/{{id}}", _delete_network_profile)
    r.add_get(f"{BASE}/network-segment", _lister(n1kv.K_NETWORK))
    r.add_get(f"{BASE}/network-segment/{{id}}", _get_network)
    r.add_post(f"{BASE}/network-segment/{{id}}", _post_network)
    r.add_delete(f"{BASE}/network-segment/{{id}}", _delete_network)
    r.add_get(f"{BASE}/kvm/bridge-domain", _lister(n1kv.K_BRIDGE_DOMAIN))
    r.add_post(f"{BASE}/kvm/bridge-domain", _post_bridge_domain)
    r.add_delete(f"{BASE}/kvm/bridge-domain/{{name}}", _delete_bridge_domain)
    r.add_get(f"{BASE}/ip-pool-template", _lister(n1kv.K_IP_POOL))
    r.add_post(f"{BASE}/ip-pool-template/{{id}}", _post_ip_pool)
    r.add_delete(f"{BASE}/ip-pool-template/{{id}}", _delete_ip_pool)
    r.add_get(f"{BASE}/kvm/vm-network", _get_vm_networks)
    r.add_post(f"{BASE}/kvm/vm-network", _post_port)
    r.add_delete(f"{BASE}/kvm/vm-network/{{name}}/ports/{{port}}", _delete_port)
    r.add_get(f"{BASE}/kvm/config-md5-hashes", _get_md5)
    r.add_post(f"{BASE}/sync-notification", _post_sync)
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on host:port; stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
