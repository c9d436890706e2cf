"""REST authentication and roles against a real server (issue 12 points 3 and 4).

An operator's view: a ``network-operator`` reads but cannot write (403 with a
JSON reason, accounted under the real user), wrong passwords are answered
429 once a source or a user has failed too often, and the credential the
n1kv driver already proved keeps working meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from openvsm.passwords import hash_password
from openvsm.store.pss import Op
from tests.unit.test_api_harness import PASSWORD, USER, RestServer

pytestmark = pytest.mark.integration

OPERATOR, OPERATOR_PW = "watcher", "W4tcher-pass"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestServer]:
    with RestServer(tmp_path, tarpit_s=0.3, fail_delay_s=0.1) as srv:
        body = {"name": OPERATOR, "password_hash": hash_password(OPERATOR_PW)}
        srv.call(
            lambda s: s.commit(
                [Op("user", OPERATOR, {**body, "role": "network-operator"})],
                user="setup",
                source="test",
                command="seed",
                time=2.0,
            )
        )
        yield srv


def test_operator_reads_but_may_not_write(server: RestServer) -> None:
    base = server.url
    auth = (OPERATOR, OPERATOR_PW)
    assert requests.get(f"{base}/network-segment-pool", auth=auth, timeout=10).status_code == 200
    before = server.digest()
    for method, path in (
        ("POST", "/logical-network/x_log_net"),
        ("DELETE", "/network-segment-pool/abc"),
        ("POST", "/sync-notification"),
    ):
        r = requests.request(
            method, f"{base}{path}", json={"description": "x"}, auth=auth, timeout=10
        )
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert r.json()["role"] == "network-operator"
        assert "may not change the configuration" in r.json()["reason"]
    assert server.digest() == before
    log = server.call(lambda s: s.accounting_log())
    refused = [e for e in log if e.result.startswith("FAILURE: user watcher has role")]
    assert len(refused) == 3 and all(e.user == OPERATOR for e in refused)
    # the admin writes, and the accounting log names the admin
    r = requests.post(
        f"{base}/logical-network/y_log_net",
        json={"description": "y"},
        auth=(USER, PASSWORD),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    last = server.call(lambda s: s.accounting_log())[-1]
    assert last.user == USER and last.command == "POST /api/n1k/logical-network/y_log_net"


def test_wrong_passwords_are_limited_but_the_driver_keeps_working(server: RestServer) -> None:
    base = server.url
    driver = requests.Session()
    driver.auth = (USER, PASSWORD)
    assert driver.get(f"{base}/network-segment-pool", timeout=10).status_code == 200
    codes = [
        requests.get(
            f"{base}/network-segment-pool", auth=(USER, f"guess{i}"), timeout=10
        ).status_code
        for i in range(8)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3, codes
    t0 = time.monotonic()
    r = requests.get(f"{base}/network-segment-pool", auth=(USER, "guess"), timeout=10)
    assert time.monotonic() - t0 >= 0.3  # the tarpit: a hammering client is slowed down
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "too many failed logins" in r.text
    # another user from the same source is limited too (per source) ...
    r = requests.get(f"{base}/network-segment-pool", auth=(OPERATOR, OPERATOR_PW), timeout=10)
    assert r.status_code == 429
    # ... but the driver's proven credential is not locked out
    assert driver.get(f"{base}/network-segment-pool", timeout=10).status_code == 200
    r = driver.post(f"{base}/logical-network/z_log_net", json={"description": "z"}, timeout=10)
    assert r.status_code == 200, r.text
    # only the five real failures were accounted: the 429s cost no row
    log = server.call(lambda s: s.accounting_log())
    assert sum(e.result == "FAILURE: authentication failed" for e in log) == 5
    driver.close()
