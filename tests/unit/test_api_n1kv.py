"""The n1kv model as pure functions over an in-memory view.

Example tests pin single rules; a Hypothesis test drives random request
sequences (small id universes, so that they collide) and checks after every
accepted request that the configuration is consistent and that re-sending
the request changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvsm.api import n1kv
from openvsm.api.digests import Md5Index
from openvsm.api.n1kv import ApiError, Outcome
from openvsm.store.pss import Op
from tests.unit.test_api_harness import POLICY_DB_ID, POLICY_WEB_ID, cli_profile


class DictView:
    """A store stand-in: ``{kind: {key: body}}``, ops applied like ``commit``."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.apply(
            (
                Op("port_profile", "web", cli_profile("web", POLICY_WEB_ID)),
                Op("port_profile", "db", cli_profile("db", POLICY_DB_ID)),
                Op("vlan", "7", {"id": 7, "name": "cli7", "owner": "cli"}),
            )
        )

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        body = self.data.get(kind, {}).get(key)
        return copy.deepcopy(body) if body is not None else None

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(dict(sorted(self.data.get(kind, {}).items())))

    def apply(self, ops: tuple[Op, ...]) -> None:
        for op in ops:
            objects = self.data.setdefault(op.kind, {})
            if op.body is None:
                objects.pop(op.key, None)
            else:
                objects[op.key] = copy.deepcopy(op.body)


def refuse(fn: Callable[[], Outcome], status: int, needle: str) -> None:
    with pytest.raises(ApiError) as info:
        fn()
    assert info.value.status == status, info.value.text
    assert needle in info.value.text, info.value.text


def run(view: DictView, fn: Callable[[DictView], Outcome]) -> Outcome:
    out = fn(view)
    view.apply(out.ops)
    return out


def base(view: DictView) -> None:
    run(view, lambda v: n1kv.create_logical_network(v, "p1_log_net", {"description": "np"}))
    body = {"name": "np", "description": "np", "id": "p1", "logicalNetwork": "p1_log_net"}
    run(view, lambda v: n1kv.create_network_profile(v, "p1", body))


def vlan_net(net: str, vlan: int, pool: str = "p1") -> dict[str, Any]:
    return {
        "publishName": net,
        "description": net,
        "id": net,
        "tenantId": "t",
        "mode": "access",
        "segmentType": "vlan",
        "networkSegmentPool": pool,
        "vlan": vlan,
    }


def port(pid: str, policy: str, policy_id: str, net: str, mac: int = 1) -> dict[str, Any]:
    return {
        "name": f"vmn_{policy_id}_{net}",
        "networkSegmentId": net,
        "networkSegment": net,
        "portProfile": policy,
        "portProfileId": policy_id,
        "tenantId": "t",
        "portId": pid,
        "macAddress": f"fa:16:3e:00:00:{mac:02x}",
        "portType": "compute:nova",
    }


def test_reserved_and_out_of_range_vlans() -> None:
    view = DictView()
    base(view)
    for vlan in (3968, 4000, 4047):
        refuse(
            partial(n1kv.create_or_update_network, view, "n1", vlan_net("n1", vlan)),
            400,
            f"VLAN {vlan} is reserved (3968-4047)",
        )
    for vlan in (0, 4095):
        refuse(
            partial(n1kv.create_or_update_network, view, "n1", vlan_net("n1", vlan)),
            400,
            "out of range",
        )
    for vlan in (1, 3967, 4048, 4094):
        assert n1kv.create_or_update_network(view, "n1", vlan_net("n1", vlan)).ops


def test_vlan_network_reuses_a_cli_vlan_and_owns_a_new_one() -> None:
    view = DictView()
    base(view)
    out = run(view, lambda v: n1kv.create_or_update_network(v, "n7", vlan_net("n7", 7)))
    assert [op.kind for op in out.ops] == ["os_network_segment"]  # VLAN 7 is the CLI's
    out = run(view, lambda v: n1kv.create_or_update_network(v, "n8", vlan_net("n8", 8)))
    assert view.get("vlan", "8") == {"id": 8, "name": "VLAN0008", "owner": "openstack"}
    run(view, lambda v: n1kv.delete_network(v, "n7"))
    run(view, lambda v: n1kv.delete_network(v, "n8"))
    assert view.get("vlan", "7") is not None and view.get("vlan", "8") is None


def test_dynamic_port_profile_lifecycle() -> None:
    view = DictView()
    base(view)
    run(view, lambda v: n1kv.create_or_update_network(v, "n1", vlan_net("n1", 100)))
    first = run(view, lambda v: n1kv.add_port(v, port("a", "web", POLICY_WEB_ID, "n1", 1)))
    assert {op.kind for op in first.ops} == {"port_profile", "os_vm_network", "os_port"}
    profile = view.get("port_profile", "web_100")
    assert profile is not None
    assert (profile["inherit"], profile["access_vlan"], profile["dynamic"], profile["owner"]) == (
        "web",
        100,
        True,
        "openstack",
    )
    assert profile["max_macs"] == 4  # the policy profile's settings carried along
    second = run(view, lambda v: n1kv.add_port(v, port("b", "web", POLICY_WEB_ID, "n1", 2)))
    assert [op.kind for op in second.ops] == ["os_port", "os_vm_network"]  # reused
    vmn = n1kv.list_vm_networks(view)[f"vmn_{POLICY_WEB_ID}_n1"]["properties"]
    assert vmn["portId"] == "a,b" and vmn["dynamicPortProfile"] == "web_100"
    run(view, lambda v: n1kv.delete_port(v, f"vmn_{POLICY_WEB_ID}_n1", "a"))
    assert view.get("port_profile", "web_100") is not None
    run(view, lambda v: n1kv.delete_port(v, f"vmn_{POLICY_WEB_ID}_n1", "b"))
    assert view.get("port_profile", "web_100") is None
    assert view.list("os_vm_network") == {}


def test_dynamic_profile_name_taken_by_cli_is_refused() -> None:
    view = DictView()
    base(view)
    run(view, lambda v: n1kv.create_or_update_network(v, "n1", vlan_net("n1", 100)))
    view.apply((Op("port_profile", "web_100", cli_profile("web_100", "x-1")),))
    refuse(
        lambda: n1kv.add_port(view, port("a", "web", POLICY_WEB_ID, "n1")),
        409,
        "not a dynamic OpenStack profile",
    )


def test_disabled_ethernet_and_dynamic_profiles_are_not_policy_profiles() -> None:
    view = DictView()
    view.apply(
        (
            Op("port_profile", "off", cli_profile("off", "o-1", enabled=False)),
            Op("port_profile", "up", cli_profile("up", "u-1", type="ethernet")),
            Op("port_profile", "dyn", cli_profile("dyn", "d-1", dynamic=True)),
            Op("port_profile", "nouuid", cli_profile("nouuid", "")),
        )
    )
    listed = n1kv.list_policy_profiles(view)
    assert set(listed) == {"db", "web", "nouuid"}
    nouuid = listed["nouuid"]["properties"]["id"]
    assert nouuid and nouuid == n1kv.list_policy_profiles(view)["nouuid"]["properties"]["id"]


def test_ipv6_subnet_with_netmask_form() -> None:
    view = DictView()
    base(view)
    run(view, lambda v: n1kv.create_or_update_network(v, "n1", vlan_net("n1", 100)))
    body: dict[str, Any] = {
        "addressRangeStart": None,
        "addressRangeEnd": None,
        "ipAddressSubnet": "ffff:ffff:ffff:ffff::",
        "description": "v6",
        "gateway": "2001:db8::1",
        "dhcp": False,
        "dnsServersList": [],
        "networkAddress": "2001:db8::",
        "netSegmentName": "n1",
        "id": "s6",
        "tenantId": "t",
    }
    run(view, lambda v: n1kv.create_or_update_ip_pool(v, "s6", body))
    assert view.get("os_ip_pool", "s6") is not None


def test_sync_status_follows_notifications_and_changes() -> None:
    view = DictView()
    assert not n1kv.openstack_sync_status(view)["in_sync"]
    run(
        view,
        lambda v: n1kv.sync_notification(
            v, {"status": "no-change"}, now=10.0, last_md5_request=9.0
        ),
    )
    status = n1kv.openstack_sync_status(view)
    assert status["in_sync"] and status["last_check_no_change"]
    assert not n1kv.openstack_sync_status(view, last_md5_request=11.0)["last_check_no_change"]
    base(view)
    status = n1kv.openstack_sync_status(view)
    assert not status["in_sync"] and "changed" in status["reason"]
    for i in range(n1kv.SYNC_HISTORY + 5):
        run(
            view,
            partial(
                n1kv.sync_notification,
                raw={"status": "end"},
                now=20.0 + i,
                last_md5_request=None,
            ),
        )
    status = n1kv.openstack_sync_status(view)
    assert status["in_sync"] and len(status["notifications"]) == n1kv.SYNC_HISTORY


# --- random request sequences ------------------------------------------------------------

IDS = st.sampled_from(["a", "b", "c"])
VLANS = st.sampled_from([1, 7, 100, 100, 4000, 4095])
VXLANS = st.sampled_from([4095, 5000, 5000, 5001])
POLICIES = st.sampled_from([("web", POLICY_WEB_ID), ("db", POLICY_DB_ID), ("x", "nope")])

Request = tuple[str, Callable[[DictView], Outcome]]


@st.composite
def requests_(draw: st.DrawFn) -> Request:
    i, j = draw(IDS), draw(IDS)
    choice = draw(st.integers(0, 13))
    body: dict[str, Any]
    seg = draw(st.sampled_from(["vlan", "vxlan", "trunk"]))
    if choice == 0:
        return "create", lambda v: n1kv.create_logical_network(v, f"{i}_log_net", {})
    if choice == 1:
        body = {"name": i, "description": i, "id": i, "logicalNetwork": f"{j}_log_net"}
        return "create", lambda v: n1kv.create_network_profile(v, i, body)
    if choice == 2:
        body = {
            "id": i,
            "segmentType": seg,
            "networkSegmentPool": j,
            "description": "d",
            "tenantId": "t",
        }
        if seg == "vlan":
            body["vlan"] = draw(VLANS)
        if seg == "vxlan":
            body["bridgeDomain"] = f"{draw(IDS)}_bd"
        return "create", lambda v: n1kv.create_or_update_network(v, i, body)
    if choice == 3:
        body = {"name": f"{i}_bd", "segmentId": draw(VXLANS), "subType": "unicast"}
        return "create", lambda v: n1kv.create_bridge_domain(v, body)
    if choice == 4:
        body = {
            "addressRangeStart": "10.0.0.2",
            "addressRangeEnd": "10.0.0.9",
            "ipAddressSubnet": "255.255.255.0",
            "networkAddress": "10.0.0.0",
            "gateway": "10.0.0.1",
            "dhcp": True,
            "dnsServersList": [],
            "netSegmentName": j,
            "id": i,
            "description": "",
            "tenantId": "t",
        }
        return "create", lambda v: n1kv.create_or_update_ip_pool(v, i, body)
    if choice in (5, 6, 7):
        name, pid = draw(POLICIES)
        body = port(draw(IDS) + draw(IDS), name, pid, j, draw(st.integers(1, 3)))
        return "create", lambda v: n1kv.add_port(v, body)
    if choice == 8:
        name, pid = draw(POLICIES)
        vmn, p = f"vmn_{pid}_{j}", draw(IDS) + draw(IDS)
        return "delete", lambda v: n1kv.delete_port(v, vmn, p)
    deletes: list[Callable[[DictView], Outcome]] = [
        lambda v: n1kv.delete_logical_network(v, f"{i}_log_net"),
        lambda v: n1kv.delete_network_profile(v, i),
        lambda v: n1kv.delete_network(v, i),
        lambda v: n1kv.delete_bridge_domain(v, f"{i}_bd"),
        lambda v: n1kv.delete_ip_pool(v, i),
    ]
    return "delete", deletes[choice - 9]


def check_consistent(view: DictView) -> None:
    lns = view.list("os_logical_network")
    pools = view.list("os_network_profile")
    nets = view.list("os_network_segment")
    bds = view.list("os_bridge_domain")
    vmns = view.list("os_vm_network")
    pps = view.list("port_profile")
    assert all(p["logicalNetwork"] in lns for p in pools.values())
    assert all(n["networkSegmentPool"] in pools for n in nets.values())
    assert all(s["netSegmentName"] in nets for s in view.list("os_ip_pool").values())
    vlans = [n["vlan"] for n in nets.values() if n["segmentType"] == "vlan"]
    assert len(vlans) == len(set(vlans))
    assert all(1 <= x <= 4094 and not 3968 <= x <= 4047 for x in vlans)
    segments = [b["segmentId"] for b in bds.values()]
    assert len(segments) == len(set(segments))
    used_bds = [n["bridgeDomain"] for n in nets.values() if n["segmentType"] == "vxlan"]
    assert len(used_bds) == len(set(used_bds))
    for pool_id in pools:
        assert (
            len({n["segmentType"] for n in nets.values() if n["networkSegmentPool"] == pool_id})
            <= 1
        )
    policies = n1kv.policy_profiles(view)
    port_ids: list[str] = []
    ports = view.list("os_port")
    for name, vmn in vmns.items():
        mine = [pid for pid, p in ports.items() if p["vmNetwork"] == name]
        assert mine and vmn["portCount"] == len(mine), name
        port_ids.extend(mine)
        assert vmn["networkSegment"] in nets
        assert policies.get(vmn["portProfile"]) == vmn["portProfileId"]
        dyn = pps[vmn["dynamicPortProfile"]]
        assert dyn["dynamic"] and dyn["inherit"] == vmn["portProfile"]
        net = nets[vmn["networkSegment"]]
        if net["segmentType"] == "vxlan":
            assert net["bridgeDomain"] in bds and dyn["bridge_domain"] == net["bridgeDomain"]
    assert len(port_ids) == len(set(port_ids)) == len(ports)
    dynamic = {n for n, b in pps.items() if b["dynamic"]}
    assert dynamic == {v["dynamicPortProfile"] for v in vmns.values()}
    owned_vlans = {k for k, b in view.list("vlan").items() if b["owner"] == "openstack"}
    assert owned_vlans == {str(x) for x in vlans} - {"7"}


def prebuilt() -> DictView:
    """Profiles a, b, c; networks a (VLAN 100), b (VXLAN 5000), c (trunk)."""
    view = DictView()
    for i in "abc":
        run(view, partial(n1kv.create_logical_network, name=f"{i}_log_net", raw={}))
        body = {"name": i, "description": i, "id": i, "logicalNetwork": f"{i}_log_net"}
        run(view, partial(n1kv.create_network_profile, profile_id=i, raw=body))
    run(view, lambda v: n1kv.create_or_update_network(v, "a", vlan_net("a", 100, "a")))
    bd = {"name": "b_bd", "segmentId": 5000, "subType": "native_vxlan", "groupIp": "239.0.0.1"}
    run(view, lambda v: n1kv.create_bridge_domain(v, bd))
    body = {"id": "b", "segmentType": "vxlan", "networkSegmentPool": "b", "bridgeDomain": "b_bd"}
    run(view, lambda v: n1kv.create_or_update_network(v, "b", body))
    body = {"id": "c", "segmentType": "trunk", "networkSegmentPool": "c"}
    run(view, lambda v: n1kv.create_or_update_network(v, "c", body))
    check_consistent(view)
    return view


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(requests_(), min_size=1, max_size=40))
def test_random_sequences_keep_the_configuration_consistent(
    start_built: bool, seq: list[Request]
) -> None:
    view = prebuilt() if start_built else DictView()
    index = Md5Index()  # follows the ops: equals the hashes computed from the objects
    index.seq = 0
    for kind in ("os_network_profile", "os_ip_pool", "os_network_segment"):
        index.apply(0, [Op(kind, key, body) for key, body in view.list(kind).items()])
    for what, request in seq:
        before = copy.deepcopy(view.data)
        try:
            out = request(view)
        except ApiError as exc:
            assert 400 <= exc.status < 500 and exc.text
            assert view.data == before
            continue
        view.apply(out.ops)
        check_consistent(view)
        index.apply(index.seq + 1, out.ops)
        assert index.hashes() == n1kv.md5_hashes(view), what
        # The driver may re-send anything whose answer it lost: same result.
        again = request(view)
        assert again.ops == (), (what, out.message, again)
