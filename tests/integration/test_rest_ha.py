"""The n1kv REST API across a failover (DESIGN §4, §6): everything the driver
got a 200 for on the active is served by the new active after a SIGKILL,
with the same md5 hashes; the standby answers writes with 503 naming the
active. Bodies are those of specs/n1kv-rest-api.md."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from openvsm.api.n1kv import md5_of_ids
from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

SETTLE = 15.0
TENANT = "9c5e3a0d2b1a4f6e8d7c6b5a49382716"
POLICY = "vm-net"  # the lab's default enabled vethernet profile
NP_VLAN = "11111111-0000-0000-0000-000000000001"
NP_TRUNK = "11111111-0000-0000-0000-000000000002"
NETS = [f"22222222-0000-0000-0000-{i:012d}" for i in range(1, 5)]
NET_TRUNK = "22222222-0000-0000-0000-000000000099"
SUBNETS = [f"33333333-0000-0000-0000-{i:012d}" for i in range(1, 5)]
READS = [
    "/virtual-port-profile",
    "/network-segment-pool",
    "/network-segment",
    "/ip-pool-template",
    "/kvm/bridge-domain",
    "/kvm/vm-network",
    "/kvm/config-md5-hashes",
    *[f"/network-segment/{n}" for n in NETS],
]


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def base(lab: Lab, node: str) -> str:
    addr = lab.nodes[node].rest_plain  # the n1kv driver speaks http://
    assert addr is not None
    return f"http://{addr[0]}:{addr[1]}/api/n1k"


@pytest.fixture
def api() -> Iterator[Callable[[Lab], requests.Session]]:
    sessions: list[requests.Session] = []

    def make(lab: Lab) -> requests.Session:
        s = requests.Session()
        s.auth = ("admin", lab.password)
        s.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        sessions.append(s)
        return s

    yield make
    for s in sessions:
        s.close()


def post(s: requests.Session, url: str, body: dict[str, Any]) -> None:
    r = s.post(url, json=body, timeout=15)
    assert r.status_code == 200, (url, r.status_code, r.text)


def get(s: requests.Session, url: str) -> Any:
    r = s.get(url, timeout=15)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def port_body(port_id: str, policy_id: str, net: str, n: int) -> dict[str, Any]:
    return {
        "name": f"vmn_{policy_id}_{net}",
        "networkSegmentId": net,
        "networkSegment": net,
        "portProfile": POLICY,
        "portProfileId": policy_id,
        "tenantId": TENANT,
        "portId": port_id,
        "macAddress": f"fa:16:3e:00:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}",
        "portType": "compute:nova",
    }


def build(s: requests.Session, url: str, policy_id: str) -> list[str]:
    """Network profiles, networks, subnets and ports as the driver creates them."""
    for np_id, name in ((NP_VLAN, "np-vlan"), (NP_TRUNK, "np-trunk")):
        post(s, f"{url}/logical-network/{np_id}_log_net", {"description": name})
        post(
            s,
            f"{url}/network-segment-pool/{np_id}",
            {"name": name, "description": name, "id": np_id, "logicalNetwork": f"{np_id}_log_net"},
        )
    for i, net in enumerate(NETS):
        post(
            s,
            f"{url}/network-segment/{net}",
            {
                "publishName": net,
                "description": f"net-{i}",
                "id": net,
                "tenantId": TENANT,
                "mode": "access",
                "segmentType": "vlan",
                "networkSegmentPool": NP_VLAN,
                "vlan": 400 + i,
            },
        )
    post(
        s,
        f"{url}/network-segment/{NET_TRUNK}",
        {
            "publishName": NET_TRUNK,
            "description": "trunk",
            "id": NET_TRUNK,
            "tenantId": TENANT,
            "mode": "access",
            "segmentType": "trunk",
            "networkSegmentPool": NP_TRUNK,
        },
    )
    for i, (sub, net) in enumerate(zip(SUBNETS, NETS, strict=True)):
        prefix = f"10.{i}.0"
        post(
            s,
            f"{url}/ip-pool-template/{sub}",
            {
                "addressRangeStart": f"{prefix}.2",
                "addressRangeEnd": f"{prefix}.254",
                "ipAddressSubnet": "255.255.255.0",
                "description": f"subnet-{i}",
                "gateway": f"{prefix}.1",
                "dhcp": True,
                "dnsServersList": ["8.8.8.8"],
                "networkAddress": f"{prefix}.0",
                "netSegmentName": net,
                "id": sub,
                "tenantId": TENANT,
            },
        )
    ports = []
    for n in range(24):
        port = f"44444444-0000-0000-0000-{n:012d}"
        post(s, f"{url}/kvm/vm-network", port_body(port, policy_id, NETS[n % len(NETS)], n))
        ports.append(port)
    return ports


def port_ids(vm_networks: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for vmn in vm_networks.values():
        ids = vmn["properties"].get("portId", "")
        out.update(i for i in ids.split(",") if i)
    return out


def test_rest_state_survives_failover_and_standby_refuses(
    make_lab: Callable[..., Lab], api: Callable[[Lab], requests.Session]
) -> None:
    lab = make_lab(timers="fast", rest=True)
    active = lab.start()
    standby = other(active)
    s = api(lab)
    url = base(lab, active)
    policy_id = get(s, f"{url}/virtual-port-profile")[POLICY]["properties"]["id"]
    ports = build(s, url, policy_id)
    before = {path: get(s, f"{url}{path}") for path in READS}
    assert port_ids(before["/kvm/vm-network"]) == set(ports)

    # The standby serves reads and refuses writes, naming the active.
    sbase = base(lab, standby)
    wait_for(
        lambda: get(s, f"{sbase}/kvm/config-md5-hashes") == before["/kvm/config-md5-hashes"],
        SETTLE,
        "the standby to serve the same md5 hashes",
    )
    r = s.post(f"{sbase}/kvm/vm-network", json=port_body("p-refused", policy_id, NETS[0], 999))
    assert r.status_code == 503, (r.status_code, r.text)
    assert active in r.text and "active" in r.text, r.text

    # A driver keeps adding ports while the active is SIGKILLed.
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def driver() -> None:
        with requests.Session() as d:
            d.auth = ("admin", lab.password)
            n = 100
            while not stop.is_set():
                port = f"55555555-0000-0000-0000-{n:012d}"
                sent.append(port)
                try:
                    r = d.post(
                        f"{url}/kvm/vm-network",
                        json=port_body(port, policy_id, NETS[n % len(NETS)], n),
                        timeout=10,
                    )
                except requests.RequestException:
                    return  # the active is gone: the driver would retry elsewhere
                if r.status_code == 200:
                    acked.append(port)
                n += 1

    t = threading.Thread(target=driver)
    t.start()
    wait_for(lambda: len(acked) >= 10, SETTLE, "ports created during the run")
    lab.kill_node(active)
    t_kill = time.monotonic()
    stop.set()
    t.join(30)
    wait_for(
        lambda: (lab.status(standby) or {}).get("this_sup_rdn_state") == "Active",
        SETTLE,
        "the standby to take over",
    )
    print(f"{len(acked)} ports acked, {len(sent)} sent; takeover after kill")
    new = base(lab, standby)

    # Everything that got a 200 is served by the new active.
    after = {path: get(s, f"{new}{path}") for path in READS}
    now_ports = port_ids(after["/kvm/vm-network"])
    assert set(ports) | set(acked) <= now_ports
    assert now_ports <= set(ports) | set(sent)
    for path in READS:
        if path not in ("/kvm/vm-network", "/kvm/config-md5-hashes"):
            assert after[path] == before[path], path
    # md5 hashes: the driver's port set on the new active decides them.
    hashes = after["/kvm/config-md5-hashes"]["md5_hashes"]["properties"]
    old = before["/kvm/config-md5-hashes"]["md5_hashes"]["properties"]
    for key in ("network_profile_md5", "subnet_md5", "network_md5"):
        assert hashes[key] == old[key], key
    if now_ports == set(ports):
        assert hashes == old
    assert time.monotonic() - t_kill < 60

    # The new active takes writes; the restarted node is standby and refuses them.
    post(
        s,
        f"{new}/kvm/vm-network",
        port_body("66666666-0000-0000-0000-000000000001", policy_id, NETS[1], 7),
    )
    lab.start_node(active)
    assert lab.wait_pair(SETTLE * 2) == standby
    r = s.post(f"{url}/network-segment/{NETS[0]}", json={"description": "x", "tenantId": "0"})
    assert r.status_code == 503 and standby in r.text, (r.status_code, r.text)
    final = get(s, f"{new}/kvm/config-md5-hashes")
    wait_for(
        lambda: get(s, f"{url}/kvm/config-md5-hashes") == final,
        SETTLE,
        "the restarted standby to serve the new active's md5 hashes",
    )


def test_concurrent_drivers_get_one_change_each_and_both_nodes_hash_them(
    make_lab: Callable[..., Lab], api: Callable[[Lab], requests.Session]
) -> None:
    """Several clients add and delete ports at once (the REST write rounds):
    every 200 is a port both VSMs list, each VM network's ports are exactly
    the acknowledged ones, and both VSMs' md5 hashes are the driver's own
    computation over them (the standby's from the replicated changes)."""
    lab = make_lab(timers="fast", rest=True)
    active = lab.start()
    standby = other(active)
    s = api(lab)
    url = base(lab, active)
    policy_id = get(s, f"{url}/virtual-port-profile")[POLICY]["properties"]["id"]
    initial = set(build(s, url, policy_id))
    get(s, f"{base(lab, standby)}/kvm/config-md5-hashes")  # the standby's index is built
    errors: list[str] = []
    created: dict[str, str] = {}  # port -> network

    def client(c: int) -> None:
        with requests.Session() as d:
            d.auth = ("admin", lab.password)
            for k in range(15):
                n = 1000 + c * 100 + k
                port, net = f"77777777-0000-0000-0000-{n:012d}", NETS[(c + k) % 2]
                r = d.post(f"{url}/kvm/vm-network", json=port_body(port, policy_id, net, n))
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                    continue
                created[port] = net
                if k % 5 == 4:  # and delete some again, concurrently with the others
                    r = d.delete(f"{url}/kvm/vm-network/vmn_{policy_id}_{net}/ports/{port}")
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text}")
                    else:
                        created.pop(port)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    expected = initial | set(created)
    assert len(expected) == len(initial) + 6 * 12
    ids = sorted(expected)
    want_md5 = md5_of_ids(ids)

    def port_md5(b: str) -> str:
        return str(get(s, f"{b}/kvm/config-md5-hashes")["md5_hashes"]["properties"]["port_md5"])

    for node in (active, standby):
        nbase = base(lab, node)

        def hashed(b: str = nbase) -> bool:
            return port_md5(b) == want_md5

        wait_for(hashed, SETTLE, f"{node} to hash the acknowledged ports")
        vmns = get(s, f"{nbase}/kvm/vm-network")
        assert port_ids(vmns) == expected, node
        for net in NETS[:2]:
            listed = vmns[f"vmn_{policy_id}_{net}"]["properties"]["portId"].split(",")
            mine = sorted(p for p, n in created.items() if n == net)
            assert set(mine) <= set(listed) and listed == sorted(listed), node
