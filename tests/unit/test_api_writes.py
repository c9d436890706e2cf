"""The REST write batcher: concurrent writes share rounds, rounds write
disjoint objects, each request keeps its own answer (no sockets, no clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from openvsm.api import n1kv
from openvsm.api.n1kv import ApiError, Outcome, ReadView
from openvsm.api.rest import WriteBatcher
from openvsm.passwords import Verdict
from openvsm.store.pss import Op
from tests.unit.test_api_harness import POLICY_WEB_ID
from tests.unit.test_api_n1kv import DictView, base, port, run, vlan_net


class FakeBackend:
    """A ``RestBackend`` over a ``DictView``; commits yield to the loop (as a
    real one waits for its fsync and the standby) and count what overlaps."""

    def __init__(self) -> None:
        self.view = DictView()
        self.active = True
        self.fail_command: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.commands: list[str] = []

    def role(self) -> tuple[bool, str]:
        return self.active, "sup-2"

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.view.get(kind, key)

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.view.list(kind)

    async def commit(self, ops: Sequence[Op], *, user: str, command: str) -> int:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # a yield, not a wait: other commits run meanwhile
            if command == self.fail_command:
                raise ConnectionError("standby went away")
            self.view.apply(tuple(ops))
            self.commands.append(command)
            return len(self.commands)
        finally:
            self.in_flight -= 1

    async def check_login(self, user: str, password: str, *, source: str) -> Verdict:
        return Verdict.OK

    def retry_after(self, user: str, source: str) -> float:
        return 0.0

    def user_role(self, user: str) -> str:
        return "network-admin"

    def account(self, user: str, command: str, result: str) -> None:
        pass

    def md5_hashes(self) -> dict[str, str]:
        return n1kv.md5_hashes(self.view)

    async def prepare_write(self) -> None:
        pass


def prepared() -> FakeBackend:
    backend = FakeBackend()
    base(backend.view)
    run(backend.view, lambda v: n1kv.create_or_update_network(v, "n1", vlan_net("n1", 100)))
    run(backend.view, lambda v: n1kv.create_or_update_network(v, "n2", vlan_net("n2", 200)))
    return backend


def add(pid: str, net: str, mac: int) -> tuple[str, Any]:
    return f"POST {pid}", lambda v, _b: n1kv.add_port(v, port(pid, "web", POLICY_WEB_ID, net, mac))


async def submit_all(
    batcher: WriteBatcher, writes: list[tuple[str, Any]]
) -> list[Outcome | BaseException]:
    tasks = [batcher.submit(fn, None, user="u", command=cmd) for cmd, fn in writes]
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def test_concurrent_ports_share_rounds_and_keep_counts() -> None:
    backend = prepared()
    batcher = WriteBatcher(backend)
    writes = [add(f"a{i}", "n1", i) for i in range(3)] + [
        add(f"b{i}", "n2", 10 + i) for i in range(3)
    ]
    results = asyncio.run(submit_all(batcher, writes))
    assert all(isinstance(r, Outcome) for r in results), results
    # Ports of one VM network write its portCount: one per round; the two VM
    # networks' ports go together, their commits overlapping.
    assert batcher.rounds == 3 and backend.max_in_flight == 2
    for net, prefix in (("n1", "a"), ("n2", "b")):
        vmn = backend.view.get(n1kv.K_VM_NETWORK, n1kv.vm_network_name(POLICY_WEB_ID, net))
        assert vmn is not None and vmn["portCount"] == 3
        listed = n1kv.list_vm_networks(backend.view)[vmn["name"]]["properties"]["portId"]
        assert listed == ",".join(f"{prefix}{i}" for i in range(3))
    # Re-sent requests (the driver lost the answers): nothing more to commit.
    before = len(backend.commands)
    again = asyncio.run(submit_all(batcher, writes))
    assert all(isinstance(r, Outcome) and not r.ops for r in again)
    assert len(backend.commands) == before


def test_a_refusal_or_failed_commit_answers_only_its_request() -> None:
    backend = prepared()
    batcher = WriteBatcher(backend)
    backend.fail_command = "POST b0"
    writes = [add("a0", "n1", 1), add("b0", "n2", 2), add("a0", "n2", 3), add("c0", "n2", 4)]
    results = asyncio.run(submit_all(batcher, writes))
    assert isinstance(results[0], Outcome)
    assert isinstance(results[1], ApiError) and results[1].status == 503
    # a0 is in n1's VM network already (computed against the round's overlay)
    assert isinstance(results[2], ApiError) and results[2].status == 409
    assert isinstance(results[3], Outcome)  # deferred behind b0, then computed afresh
    assert backend.view.get(n1kv.K_PORT, "b0") is None
    assert sorted(backend.view.list(n1kv.K_PORT)) == ["a0", "c0"]


def test_standby_refuses_the_whole_round() -> None:
    backend = prepared()
    backend.active = False
    batcher = WriteBatcher(backend)
    results = asyncio.run(submit_all(batcher, [add("a0", "n1", 1), add("b0", "n2", 2)]))
    for r in results:
        assert isinstance(r, ApiError) and r.status == 503 and "sup-2" in r.text
    assert backend.commands == []


def test_a_crashing_compute_is_answered_and_the_batcher_goes_on() -> None:
    backend = prepared()
    batcher = WriteBatcher(backend)

    def boom(view: ReadView, body: Any) -> Outcome:
        raise RuntimeError("bug")

    async def scenario() -> list[Outcome | BaseException]:
        first = await submit_all(batcher, [("POST boom", boom), add("a0", "n1", 1)])
        return first + await submit_all(batcher, [add("a1", "n1", 2)])

    results = asyncio.run(scenario())
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[1], Outcome) and isinstance(results[2], Outcome)
    assert sorted(backend.view.list(n1kv.K_PORT)) == ["a0", "a1"]
