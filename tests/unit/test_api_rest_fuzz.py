"""Hypothesis against the real server: random paths, methods and bodies.

Whatever arrives, the answer is never a 5xx, errors are text sentences, and
a refused request leaves the store exactly as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_rest_n1kv import (
    NET_NATIVE,
    NET_TRUNK,
    NET_VLAN,
    NP_VLAN,
    PORTS,
    SUB_VLAN,
    bd_body,
    build_everything,
    network_body,
    port_body,
    subnet_body,
)
from tests.unit.test_api_harness import POLICY_WEB_ID, RestServer

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
IDS = st.sampled_from(
    [NET_VLAN, NET_NATIVE, NET_TRUNK, NP_VLAN, SUB_VLAN, f"{NP_VLAN}_log_net", "new-id", "x"]
) | st.text(min_size=1, max_size=12)

VALID_BODIES: list[tuple[str, dict[str, Any]]] = [
    (f"/network-segment/{NET_VLAN}", network_body(NET_VLAN, NP_VLAN, "vlan", vlan=100)),
    ("/network-segment/new-id", network_body("new-id", NP_VLAN, "vlan", vlan=200)),
    (f"/network-segment/{NET_VLAN}", {"description": "d", "tenantId": "0"}),
    ("/kvm/bridge-domain", bd_body("new-id", 7000, native=True)),
    ("/ip-pool-template/new-id", subnet_body("new-id", NET_TRUNK, "10.7.7")),
    (f"/ip-pool-template/{SUB_VLAN}", {"description": "x", "dhcp": True, "dnsServersList": []}),
    ("/kvm/vm-network", port_body("new-port", "web", POLICY_WEB_ID, NET_TRUNK, 9, None)),
    (
        "/network-segment-pool/new-id",
        {"name": "n", "description": "n", "id": "new-id", "logicalNetwork": f"{NP_VLAN}_log_net"},
    ),
    ("/logical-network/new-id_log_net", {"description": "d"}),
    ("/sync-notification", {"status": "start"}),
]
PATHS = [
    "/virtual-port-profile",
    "/logical-network/{a}",
    "/network-segment-pool",
    "/network-segment-pool/{a}",
    "/network-segment",
    "/network-segment/{a}",
    "/kvm/bridge-domain",
    "/kvm/bridge-domain/{a}",
    "/ip-pool-template",
    "/ip-pool-template/{a}",
    "/kvm/vm-network",
    "/kvm/vm-network/{a}/ports/{b}",
    "/kvm/config-md5-hashes",
    "/sync-notification",
    "/{a}",
    "/kvm/{a}/{b}",
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid request with one or two fields broken, removed or added."""
    path, body = draw(st.sampled_from(VALID_BODIES))
    body = dict(body)
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop" and body:
            body.pop(draw(st.sampled_from(sorted(body))))
        elif action == "set" and body:
            body[draw(st.sampled_from(sorted(body)))] = draw(JSON)
        else:
            body[draw(st.text(max_size=8))] = draw(JSON)
    return path, json.dumps(body).encode()


@st.composite
def fuzz_request(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        path, mutated_body = draw(mutated())
        return "POST", path, mutated_body
    template = draw(st.sampled_from(PATHS))
    path = template.format(a=quote(draw(IDS), safe=""), b=quote(draw(IDS), safe=""))
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
    data: bytes | None = None
    if method in ("POST", "PUT"):
        data = draw(
            st.one_of(
                JSON.map(lambda v: json.dumps(v).encode()),
                st.binary(max_size=40),
                st.just(b""),
            )
        )
    return method, path, data


def test_random_requests_never_5xx_and_refusals_change_nothing(tmp_path: Path) -> None:
    with RestServer(tmp_path) as srv, srv.session() as api:
        build_everything(api, srv.url)

        @settings(
            max_examples=250,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(fuzz_request())
        def one(req: tuple[str, str, bytes | None]) -> None:
            method, path, data = req
            before = srv.digest()
            r = api.request(method, srv.url + path, data=data)
            assert r.status_code < 500, (method, path, data, r.status_code, r.text)
            content_type = r.headers.get("Content-Type", "")
            if r.status_code == 200:
                if method == "GET":
                    assert content_type.startswith("application/json")
                    r.json()
                else:
                    assert content_type.startswith("text/plain")
            else:
                assert content_type.startswith("text/plain"), content_type
                assert r.text.strip() and "Traceback" not in r.text
                assert srv.digest() == before, (method, path, data, r.text)

        one()

        # Afterwards the server still answers the driver's md5 request.
        r = api.get(f"{srv.url}/kvm/config-md5-hashes")
        assert r.status_code == 200 and "consolidated_md5" in r.json()["md5_hashes"]["properties"]


def test_ports_survive_fuzz_of_their_deletes(tmp_path: Path) -> None:
    """Deleting a port by a wrong VM network name is a no-op, never a removal."""
    with RestServer(tmp_path) as srv, srv.session() as api:
        build_everything(api, srv.url)
        before = srv.digest()
        pid = PORTS[0][0]
        for vmn in (f"vmn_{POLICY_WEB_ID}_{NET_TRUNK}", f"vmn_x_{NET_VLAN}"):
            r = api.delete(f"{srv.url}/kvm/vm-network/{vmn}/ports/{pid}")
            assert r.status_code == 200 and "nothing deleted" in r.text
        assert srv.digest() == before
        r = requests.get(f"{srv.url}/kvm/vm-network", timeout=10)
        r.close()
        assert r.status_code == 401
