"""The OpenStack n1kv driver's whole workflow against a real server.

Bodies are exactly those of specs/n1kv-rest-api.md (as the driver's client
builds them), sent with ``requests`` to a server on 127.0.0.1 over a real
store. Every refused request must leave the store unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from openvsm.api.n1kv import md5_of_ids
from tests.unit.test_api_harness import (
    OS_KINDS,
    PASSWORD,
    POLICY_DB_ID,
    POLICY_WEB_ID,
    USER,
    RestServer,
)

pytestmark = pytest.mark.integration

TENANT = "9c5e3a0d2b1a4f6e8d7c6b5a49382716"

NP = {  # network profiles: id -> (name, segment type, sub type)
    "11111111-0000-0000-0000-000000000001": ("np-vlan", "vlan", ""),
    "11111111-0000-0000-0000-000000000002": ("np-vxlan-native", "vxlan", "native"),
    "11111111-0000-0000-0000-000000000003": ("np-vxlan-enhanced", "vxlan", "enhanced"),
    "11111111-0000-0000-0000-000000000004": ("np-trunk", "trunk", ""),
}
NP_VLAN, NP_NATIVE, NP_ENH, NP_TRUNK = list(NP)
NET_VLAN = "22222222-0000-0000-0000-000000000001"
NET_NATIVE = "22222222-0000-0000-0000-000000000002"
NET_ENH = "22222222-0000-0000-0000-000000000003"
NET_TRUNK = "22222222-0000-0000-0000-000000000004"
SUB_VLAN = "33333333-0000-0000-0000-000000000001"
SUB_NATIVE = "33333333-0000-0000-0000-000000000002"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestServer]:
    with RestServer(tmp_path) as srv:
        yield srv


@pytest.fixture
def api(server: RestServer) -> Iterator[requests.Session]:
    with server.session() as s:
        yield s


def ok(r: requests.Response) -> requests.Response:
    assert r.status_code == 200, (r.request.method, r.request.url, r.status_code, r.text)
    return r


def post(api: requests.Session, url: str, body: dict[str, Any]) -> requests.Response:
    r = ok(api.post(url, json=body))
    assert r.headers["Content-Type"].startswith("text/plain")
    return r


def get(api: requests.Session, url: str) -> Any:
    r = ok(api.get(url))
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


# --- driver's request builders (n1kv client shapes) ---------------------------------


def create_network_profile(api: requests.Session, base: str, np_id: str) -> None:
    name = NP[np_id][0]
    post(api, f"{base}/logical-network/{np_id}_log_net", {"description": name})
    post(
        api,
        f"{base}/network-segment-pool/{np_id}",
        {"name": name, "description": name, "id": np_id, "logicalNetwork": f"{np_id}_log_net"},
    )


def network_body(net_id: str, np_id: str, seg_type: str, **extra: Any) -> dict[str, Any]:
    body = {
        "publishName": net_id,
        "description": f"net-{net_id[-1]}",
        "id": net_id,
        "tenantId": TENANT,
        "mode": "access",
        "segmentType": seg_type,
        "networkSegmentPool": np_id,
    }
    body.update(extra)
    return body


def bd_body(net_id: str, segment: int, native: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{net_id}_bd",
        "segmentId": segment,
        "subType": "native_vxlan" if native else "unicast",
        "tenantId": TENANT,
    }
    if native:
        body["groupIp"] = "239.1.1.1"  # start of the profile's 239.1.1.1-239.1.1.100
    return body


def subnet_body(sub_id: str, net_id: str, prefix: str) -> dict[str, Any]:
    return {
        "addressRangeStart": f"{prefix}.2",
        "addressRangeEnd": f"{prefix}.254",
        "ipAddressSubnet": "255.255.255.0",
        "description": f"subnet-{sub_id[-1]}",
        "gateway": f"{prefix}.1",
        "dhcp": True,
        "dnsServersList": ["8.8.8.8", "2001:4860:4860::8888"],
        "networkAddress": f"{prefix}.0",
        "netSegmentName": net_id,
        "id": sub_id,
        "tenantId": TENANT,
    }


def port_body(
    port_id: str, policy: str, policy_id: str, net_id: str, n: int, subnet: str | None
) -> dict[str, Any]:
    body = {
        "name": f"vmn_{policy_id}_{net_id}",
        "networkSegmentId": net_id,
        "networkSegment": net_id,
        "portProfile": policy,
        "portProfileId": policy_id,
        "tenantId": TENANT,
        "portId": port_id,
        "macAddress": f"fa:16:3e:00:00:{n:02x}",
        "portType": "compute:nova",
    }
    if subnet is not None:
        body["ipAddress"] = f"10.0.{1 if subnet == SUB_VLAN else 2}.{10 + n}"
        body["subnetId"] = subnet
    return body


PORTS = [  # (port id, policy name, policy id, network, subnet)
    ("44444444-0000-0000-0000-000000000001", "web", POLICY_WEB_ID, NET_VLAN, SUB_VLAN),
    ("44444444-0000-0000-0000-000000000002", "web", POLICY_WEB_ID, NET_VLAN, SUB_VLAN),
    ("44444444-0000-0000-0000-000000000003", "db", POLICY_DB_ID, NET_VLAN, SUB_VLAN),
    ("44444444-0000-0000-0000-000000000004", "web", POLICY_WEB_ID, NET_NATIVE, SUB_NATIVE),
    ("44444444-0000-0000-0000-000000000005", "db", POLICY_DB_ID, NET_ENH, None),
    ("44444444-0000-0000-0000-000000000006", "db", POLICY_DB_ID, NET_TRUNK, None),
]


def neutron_md5(
    profiles: list[str], subnets: list[str], networks: list[str], ports: list[str]
) -> dict[str, str]:
    """What the driver computes on its side (n1kv_sync._compute_resource_md5)."""

    def res(ids: list[str]) -> str:
        h = hashlib.md5(usedforsecurity=False)
        for i in sorted(ids):
            h.update(i.encode())
        return h.hexdigest()

    out = {
        "network_profile_md5": res(profiles),
        "subnet_md5": res(subnets),
        "network_md5": res(networks),
        "port_md5": res(ports),
    }
    c = hashlib.md5(usedforsecurity=False)
    for k in ("network_profile_md5", "subnet_md5", "network_md5", "port_md5"):
        c.update(out[k].encode())
    out["consolidated_md5"] = c.hexdigest()
    return out


def build_everything(api: requests.Session, base: str) -> None:
    for np_id in NP:
        create_network_profile(api, base, np_id)
    post(
        api, f"{base}/network-segment/{NET_VLAN}", network_body(NET_VLAN, NP_VLAN, "vlan", vlan=100)
    )
    # VXLAN: the driver creates the bridge domain first, then the segment.
    post(api, f"{base}/kvm/bridge-domain", bd_body(NET_NATIVE, 5000, native=True))
    post(
        api,
        f"{base}/network-segment/{NET_NATIVE}",
        network_body(NET_NATIVE, NP_NATIVE, "vxlan", bridgeDomain=f"{NET_NATIVE}_bd"),
    )
    post(api, f"{base}/kvm/bridge-domain", bd_body(NET_ENH, 5001, native=False))
    post(
        api,
        f"{base}/network-segment/{NET_ENH}",
        network_body(NET_ENH, NP_ENH, "vxlan", bridgeDomain=f"{NET_ENH}_bd"),
    )
    post(api, f"{base}/network-segment/{NET_TRUNK}", network_body(NET_TRUNK, NP_TRUNK, "trunk"))
    post(api, f"{base}/ip-pool-template/{SUB_VLAN}", subnet_body(SUB_VLAN, NET_VLAN, "10.0.1"))
    post(
        api, f"{base}/ip-pool-template/{SUB_NATIVE}", subnet_body(SUB_NATIVE, NET_NATIVE, "10.0.2")
    )
    for n, (pid, policy, policy_id, net, subnet) in enumerate(PORTS):
        post(api, f"{base}/kvm/vm-network", port_body(pid, policy, policy_id, net, n, subnet))


def test_driver_workflow(server: RestServer, api: requests.Session) -> None:
    base = server.url

    # Policy profiles: the enabled, non-dynamic vethernet port profiles.
    profiles = get(api, f"{base}/virtual-port-profile")
    assert profiles == {
        "db": {"properties": {"name": "db", "id": POLICY_DB_ID}},
        "web": {"properties": {"name": "web", "id": POLICY_WEB_ID}},
    }

    empty = get(api, f"{base}/kvm/config-md5-hashes")["md5_hashes"]["properties"]
    assert empty == neutron_md5([], [], [], [])
    assert empty["network_md5"] == hashlib.md5(b"", usedforsecurity=False).hexdigest()

    build_everything(api, base)

    # Every object is there, owned by OpenStack.
    assert set(get(api, f"{base}/network-segment-pool")) == set(NP)
    assert set(get(api, f"{base}/network-segment")) == {NET_VLAN, NET_NATIVE, NET_ENH, NET_TRUNK}
    assert set(get(api, f"{base}/ip-pool-template")) == {SUB_VLAN, SUB_NATIVE}
    bds = get(api, f"{base}/kvm/bridge-domain")
    assert bds[f"{NET_NATIVE}_bd"]["properties"]["groupIp"] == "239.1.1.1"
    assert bds[f"{NET_ENH}_bd"]["properties"]["subType"] == "unicast"
    for kind in OS_KINDS:
        for body in server.objects(kind).values():
            assert body["owner"] == "openstack", kind
    shown = get(api, f"{base}/network-segment/{NET_VLAN}")["properties"]
    assert shown["segmentType"] == "vlan" and shown["vlan"] == 100
    assert server.objects("vlan")["100"]["owner"] == "openstack"

    # VM networks: one per (policy, network); ports listed as the driver parses them.
    vmns = get(api, f"{base}/kvm/vm-network")
    web_vlan = f"vmn_{POLICY_WEB_ID}_{NET_VLAN}"
    assert set(vmns) == {
        web_vlan,
        f"vmn_{POLICY_DB_ID}_{NET_VLAN}",
        f"vmn_{POLICY_WEB_ID}_{NET_NATIVE}",
        f"vmn_{POLICY_DB_ID}_{NET_ENH}",
        f"vmn_{POLICY_DB_ID}_{NET_TRUNK}",
    }
    assert vmns[web_vlan]["properties"]["portId"].split(",") == [PORTS[0][0], PORTS[1][0]]

    # Dynamic port profiles: one per VM network, binding the segment.
    pps = server.objects("port_profile")
    dynamic = {n: b for n, b in pps.items() if b["dynamic"]}
    assert set(dynamic) == {"web_100", "db_100", "web_5000", "db_5001", f"db_trunk_{NET_TRUNK}"}
    assert dynamic["web_100"]["access_vlan"] == 100 and dynamic["web_100"]["inherit"] == "web"
    assert dynamic["web_5000"]["bridge_domain"] == f"{NET_NATIVE}_bd"
    assert dynamic[f"db_trunk_{NET_TRUNK}"]["mode"] == "trunk"
    assert all(b["owner"] == "openstack" and b["uuid"] for b in dynamic.values())
    assert set(get(api, f"{base}/virtual-port-profile")) == {"db", "web"}  # not policies

    # md5: the driver's own computation from its ids equals the VSM's.
    mine = neutron_md5(
        list(NP),
        [SUB_VLAN, SUB_NATIVE],
        [NET_VLAN, NET_NATIVE, NET_ENH, NET_TRUNK],
        [p[0] for p in PORTS],
    )
    assert get(api, f"{base}/kvm/config-md5-hashes") == {"md5_hashes": {"properties": mine}}

    # Sync: md5 check then "no-change"; then a start/end cycle.
    post(api, f"{base}/sync-notification", {"status": "no-change"})
    status = server.sync_status()
    assert status["in_sync"] and status["last_check_no_change"]
    assert status["md5_hashes"] == mine
    post(api, f"{base}/sync-notification", {"status": "start"})
    assert not server.sync_status()["in_sync"]
    post(api, f"{base}/sync-notification", {"status": "end"})
    status = server.sync_status()
    assert status["in_sync"] and not status["last_check_no_change"]
    assert [n["status"] for n in status["notifications"]] == ["no-change", "start", "end"]

    # Resends of identical creates (lost answers) are 200 and change nothing.
    before = server.digest()
    create_network_profile(api, base, NP_VLAN)
    post(
        api, f"{base}/network-segment/{NET_VLAN}", network_body(NET_VLAN, NP_VLAN, "vlan", vlan=100)
    )
    post(api, f"{base}/kvm/bridge-domain", bd_body(NET_NATIVE, 5000, native=True))
    post(api, f"{base}/ip-pool-template/{SUB_VLAN}", subnet_body(SUB_VLAN, NET_VLAN, "10.0.1"))
    post(api, f"{base}/kvm/vm-network", port_body(*PORTS[0][:4], 0, PORTS[0][4]))
    assert server.digest() == before

    # Updates (driver's update bodies).
    post(api, f"{base}/network-segment/{NET_VLAN}", {"description": "renamed", "tenantId": "0"})
    net = get(api, f"{base}/network-segment/{NET_VLAN}")["properties"]
    assert net["description"] == "renamed" and net["tenantId"] == "0" and net["vlan"] == 100
    post(
        api,
        f"{base}/ip-pool-template/{SUB_VLAN}",
        {"description": "sub-renamed", "dhcp": False, "dnsServersList": ["1.1.1.1"]},
    )
    sub = get(api, f"{base}/ip-pool-template")[SUB_VLAN]["properties"]
    assert (sub["description"], sub["dhcp"], sub["dnsServersList"]) == (
        "sub-renamed",
        False,
        ["1.1.1.1"],
    )
    status = server.sync_status()
    assert status["in_sync"]  # updates change no id: the hashes are the same

    # Delete in reverse order: ports, subnets, networks (BD first), profiles.
    api_delete = api.delete
    for pid, _policy, policy_id, net_id, _subnet in PORTS:
        r = ok(api_delete(f"{base}/kvm/vm-network/vmn_{policy_id}_{net_id}/ports/{pid}"))
        assert r.headers["Content-Type"].startswith("text/plain")
        if pid == PORTS[0][0]:  # web_100 still has port 2
            assert "web_100" in server.objects("port_profile")
    assert get(api, f"{base}/kvm/vm-network") == {}
    assert not any(b["dynamic"] for b in server.objects("port_profile").values())
    for sub_id in (SUB_NATIVE, SUB_VLAN):
        ok(api_delete(f"{base}/ip-pool-template/{sub_id}"))
    for net_id in (NET_TRUNK, NET_ENH, NET_NATIVE, NET_VLAN):
        if net_id in (NET_ENH, NET_NATIVE):
            ok(api_delete(f"{base}/kvm/bridge-domain/{net_id}_bd"))
        ok(api_delete(f"{base}/network-segment/{net_id}"))
    for np_id in reversed(NP):
        ok(api_delete(f"{base}/network-segment-pool/{np_id}"))
        ok(api_delete(f"{base}/logical-network/{np_id}_log_net"))
    for kind in OS_KINDS:
        assert server.objects(kind) == {}, kind
    assert "100" not in server.objects("vlan")
    assert set(server.objects("port_profile")) == {"web", "db", "uplink", "draft"}
    assert get(api, f"{base}/kvm/config-md5-hashes")["md5_hashes"]["properties"] == empty

    # A DELETE resent after its answer was lost is a 200 that changes nothing.
    before = server.digest()
    ok(api_delete(f"{base}/network-segment/{NET_VLAN}"))
    ok(api_delete(f"{base}/kvm/vm-network/vmn_{POLICY_WEB_ID}_{NET_VLAN}/ports/{PORTS[0][0]}"))
    assert server.digest() == before

    # Every change was replicated before it was acknowledged; accounting has them.
    assert server.replicated == sorted(server.replicated) and len(server.replicated) > 30
    log = server.call(lambda s: s.accounting_log())
    assert any(e.user == USER and "/network-segment/" in e.command for e in log)


def test_md5_helper_matches_driver_algorithm() -> None:
    ids = ["b", "a", "c"]
    assert md5_of_ids(ids) == hashlib.md5(b"abc", usedforsecurity=False).hexdigest()


# --- refused requests: a clear 4xx and nothing changed --------------------------------


def _digest_auth(r: Any) -> Any:
    r.headers["Authorization"] = 'Digest username="admin"'
    return r


def refused(
    server: RestServer,
    api: requests.Session,
    method: str,
    path: str,
    status: int,
    needle: str,
    **kwargs: Any,
) -> None:
    before = server.digest()
    r = api.request(method, f"{server.url}{path}", **kwargs)
    assert r.status_code == status, (method, path, r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert needle in r.text, r.text
    assert "Traceback" not in r.text
    assert server.digest() == before


def test_bad_input_is_refused_and_changes_nothing(
    server: RestServer, api: requests.Session
) -> None:
    base = server.url
    build_everything(api, base)
    new_net = "22222222-0000-0000-0000-0000000000ff"

    def net(**extra: Any) -> dict[str, Any]:
        return network_body(new_net, NP_VLAN, "vlan", **extra)

    # Malformed requests.
    refused(server, api, "POST", "/logical-network/x_log_net", 400, "not valid JSON", data="{no")
    refused(server, api, "POST", "/logical-network/x_log_net", 400, "JSON object", data="[1, 2]")
    refused(server, api, "POST", "/logical-network/x_log_net", 400, "JSON object body", data="")
    refused(server, api, "POST", f"/network-segment/{new_net}", 400, "$.vlan", json=net(vlan="7"))
    refused(server, api, "POST", f"/network-segment/{new_net}", 400, "$.vlan", json=net(vlan=True))
    refused(
        server,
        api,
        "POST",
        f"/network-segment-pool/{NP_VLAN}x",
        400,
        "logicalNetwork",
        json={"name": "x", "description": "x", "id": f"{NP_VLAN}x"},
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        400,
        "invalidKey",
        json=net(vlan=7, invalidKey="catchMeIfYouCan"),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        400,
        "differs",
        json={**net(vlan=7), "id": "other"},
    )
    refused(server, api, "POST", "/network-segment/bad%20id", 400, "not a valid id", json=net())
    refused(server, api, "POST", "/sync-notification", 400, "$.status", json={"status": "maybe"})

    # Ranges and reserved ids.
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        400,
        "VLAN 4000 is reserved (3968-4047)",
        json=net(vlan=4000),
    )
    for vlan in (0, 4095, -1):
        refused(
            server,
            api,
            "POST",
            f"/network-segment/{new_net}",
            400,
            "out of range",
            json=net(vlan=vlan),
        )
    refused(server, api, "POST", f"/network-segment/{new_net}", 400, "needs vlan", json=net())
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        400,
        "out of range",
        json=bd_body(new_net, 4095, native=False),
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        400,
        "out of range",
        json=bd_body(new_net, 16_000_001, native=False),
    )
    no_group = bd_body(new_net, 6000, native=True)
    del no_group["groupIp"]
    refused(server, api, "POST", "/kvm/bridge-domain", 400, "groupIp", json=no_group)
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        400,
        "not a multicast",
        json={**bd_body(new_net, 6000, native=True), "groupIp": "10.1.1.1"},
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        400,
        "subType",
        json={**bd_body(new_net, 6000, native=False), "subType": "flood"},
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        400,
        "segmentType",
        json=network_body(new_net, NP_VLAN, "gre"),
    )

    # Duplicate segment ids and conflicting re-creates.
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        409,
        f"VLAN 100 is already used by network segment {NET_VLAN}",
        json=net(vlan=100),
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        409,
        "VXLAN segment 5000 is already used",
        json=bd_body(new_net, 5000, native=False),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{NET_VLAN}",
        409,
        "exists as VLAN 100",
        json=network_body(NET_VLAN, NP_VLAN, "vlan", vlan=101),
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/bridge-domain",
        409,
        "exists with segment 5000",
        json=bd_body(NET_NATIVE, 5002, native=True),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        409,
        "holds vlan segments",
        json=network_body(new_net, NP_VLAN, "trunk"),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        409,
        "already used by network",
        json=network_body(new_net, NP_ENH, "vxlan", bridgeDomain=f"{NET_ENH}_bd"),
    )

    # Unknown ids (references and updates).
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        409,
        "does not exist",
        json=network_body(new_net, "no-such-profile", "vlan", vlan=7),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        409,
        "bridge domain",
        json=network_body(new_net, NP_NATIVE, "vxlan", bridgeDomain="nobd_bd"),
    )
    refused(
        server,
        api,
        "POST",
        f"/network-segment/{new_net}",
        404,
        "does not exist",
        json={"description": "x", "tenantId": "0"},
    )
    refused(server, api, "GET", f"/network-segment/{new_net}", 404, "does not exist")
    refused(
        server,
        api,
        "POST",
        "/network-segment-pool/p-9",
        409,
        "logical network",
        json={"name": "p", "description": "p", "id": "p-9", "logicalNetwork": "no_log_net"},
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        409,
        "does not exist",
        json=subnet_body("s-9", new_net, "10.9.9"),
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        404,
        "does not exist",
        json={"description": "x", "dhcp": True, "dnsServersList": []},
    )
    port = port_body("p-new", "web", POLICY_WEB_ID, NET_TRUNK, 77, None)
    refused(
        server,
        api,
        "POST",
        "/kvm/vm-network",
        409,
        "policy profile",
        json={**port, "portProfileId": "no-such", "name": f"vmn_no-such_{NET_TRUNK}"},
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/vm-network",
        409,
        "network segment",
        json=port_body("p-new", "web", POLICY_WEB_ID, new_net, 77, None),
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/vm-network",
        409,
        "named web, not db",
        json={**port, "portProfile": "db"},
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/vm-network",
        409,
        "already belongs",
        json={**port, "portId": PORTS[0][0]},
    )
    refused(
        server, api, "POST", "/kvm/vm-network", 400, "should be", json={**port, "name": "vmn_x_y"}
    )
    refused(
        server,
        api,
        "POST",
        "/kvm/vm-network",
        400,
        "not a MAC",
        json={**port, "macAddress": "fa:16:3e:zz:00:01"},
    )

    # Subnets: addresses validated.
    sub = subnet_body("s-9", NET_TRUNK, "10.9.9")
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        400,
        "outside the subnet",
        json={**sub, "gateway": "10.9.10.1"},
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        400,
        "not a valid netmask",
        json={**sub, "ipAddressSubnet": "255.0.255.0"},
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        400,
        "not the network address",
        json={**sub, "networkAddress": "10.9.9.7"},
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        400,
        "start after end",
        json={**sub, "addressRangeStart": "10.9.9.200", "addressRangeEnd": "10.9.9.100"},
    )
    refused(
        server,
        api,
        "POST",
        "/ip-pool-template/s-9",
        400,
        "DNS server",
        json={**sub, "dnsServersList": ["dns.example"]},
    )
    refused(
        server, api, "POST", "/ip-pool-template/s-9", 400, "$.dhcp", json={**sub, "dhcp": "yes"}
    )

    # Deleting what is still referenced.
    refused(server, api, "DELETE", f"/network-segment-pool/{NP_VLAN}", 409, NET_VLAN)
    refused(server, api, "DELETE", f"/logical-network/{NP_VLAN}_log_net", 409, NP_VLAN)
    refused(server, api, "DELETE", f"/network-segment/{NET_VLAN}", 409, SUB_VLAN)
    refused(server, api, "DELETE", f"/network-segment/{NET_TRUNK}", 409, "VM network")
    refused(server, api, "DELETE", f"/kvm/bridge-domain/{NET_NATIVE}_bd", 409, "in use")

    # Size, credentials, paths, methods.
    refused(
        server,
        api,
        "POST",
        "/logical-network/big_log_net",
        413,
        "larger than",
        data=b'{"description": "' + b"x" * (2 << 20) + b'"}',
    )
    refused(
        server,
        api,
        "POST",
        "/logical-network/x_log_net",
        401,
        "wrong user name",
        json={"description": "x"},
        auth=(USER, PASSWORD + "x"),
    )
    refused(
        server,
        api,
        "POST",
        "/logical-network/x_log_net",
        401,
        "Basic",
        json={"description": "x"},
        auth=_digest_auth,
    )
    refused(server, api, "GET", "/no-such-thing", 404, "not a resource")
    refused(server, api, "PUT", "/network-segment", 405, "not allowed")

    # Every refused write is in the accounting log, with its reason.
    log = server.call(lambda s: s.accounting_log())
    assert any(e.result.startswith("FAILURE: VLAN 4000 is reserved") for e in log)


def test_standby_refuses_writes_but_serves_reads(server: RestServer, api: requests.Session) -> None:
    base = server.url
    create_network_profile(api, base, NP_VLAN)
    server.active = False
    before = server.digest()
    for method, path, body in (
        ("POST", f"/logical-network/{NP_TRUNK}_log_net", {"description": "x"}),
        ("DELETE", f"/network-segment-pool/{NP_VLAN}", None),
        ("POST", "/sync-notification", {"status": "no-change"}),
        ("POST", "/network-segment/x", "not even json"),
    ):
        r = api.request(method, f"{base}{path}", json=body)
        assert r.status_code == 503, (path, r.text)
        assert "sup-1 at 192.0.2.10 is the active VSM" in r.text
        assert r.headers["Content-Type"].startswith("text/plain")
    assert set(get(api, f"{base}/network-segment-pool")) == {NP_VLAN}
    get(api, f"{base}/kvm/config-md5-hashes")
    assert server.digest() == before
    server.active = True
    create_network_profile(api, base, NP_TRUNK)


def test_commit_failure_is_a_clear_503(server: RestServer, api: requests.Session) -> None:
    server.fail_replication = "standby did not acknowledge within 5 s"
    r = api.post(f"{server.url}/logical-network/a_log_net", json={"description": "x"})
    assert r.status_code == 503
    assert "not committed on both VSMs: standby did not acknowledge" in r.text
    server.fail_replication = None
    # The driver's resend of the same request completes it.
    ok(api.post(f"{server.url}/logical-network/a_log_net", json={"description": "x"}))
