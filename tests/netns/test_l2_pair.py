"""A real VSM pair over the raw L2 transport, each node in its own network namespace (root).

Two namespaces, each running ``openvsm vsm`` (sysmgr + hamgr + cfgmgr + vemmgr),
joined by two veth pairs: control (heartbeats and the TCP sync stream) and
mgmt (heartbeats). Both interfaces use ``transport = "l2"`` (AF_PACKET,
ethertype 0x88B5). The test reaches each node's CLI over its Unix socket on
the shared filesystem. Faults are nftables rules on the veths' netdev ingress
hook; a spoofed frame is injected with a raw socket from inside a namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openvsm.identity import load_node
from openvsm.ipc import IpcError
from openvsm.lab.common import ipc_call

ETHERTYPE = 0x88B5
IFACES = {"control": "veth-c0", "mgmt": "veth-m0"}
SUBNETS = {"control": "10.77.1", "mgmt": "10.77.2"}
HOST = {"primary": 1, "secondary": 2}
TABLE = "ovsmtest"


def netns_exec(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def _reason() -> str | None:
    if sys.platform != "linux":
        return "needs Linux (network namespaces, AF_PACKET)"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, raw sockets)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool!r} not found (apt-get install iproute2 nftables)"
    return None


REASON = _reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def sh(*argv: str, check: bool = True) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


def wait_for(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except (IpcError, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last})" if last else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(poll)


@dataclass
class Node:
    name: str
    ns: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    macs: dict[str, str] = field(default_factory=dict)  # iface -> veth MAC
    system_mac: str = ""

    @property
    def rundir(self) -> Path:
        return self.dir / "run"

    def cli(self, line: str) -> dict[str, Any]:
        res: dict[str, Any] = ipc_call(
            self.rundir / "cfgmgr.sock", "cli", timeout=5.0, line=line, session="l2test"
        )
        return res

    def cli_json(self, line: str) -> dict[str, Any]:
        res = self.cli(line + " | json")
        assert not res.get("error"), res.get("output")
        data: dict[str, Any] = json.loads(res["output"])
        return data

    def status(self) -> dict[str, Any] | None:
        try:
            return self.cli_json("show system redundancy status")
        except (IpcError, OSError, ValueError, AssertionError):
            return None

    def ha(self) -> dict[str, Any]:
        res: dict[str, Any] = ipc_call(self.rundir / "hamgr.sock", "status", timeout=5.0)
        return res

    def counters(self, iface: str) -> dict[str, Any]:
        rows = self.cli_json("show system internal redundancy counters")["TABLE_counters"]
        row: dict[str, Any] = next(r for r in rows["ROW_counters"] if r["interface"] == iface)
        return row

    def facts(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "data" / "ha-facts.json").read_text())
        return data

    def nft(self, *args: str) -> str:
        return sh("ip", "netns", "exec", self.ns, "nft", *args)


@dataclass
class Pair:
    nodes: dict[str, Node]
    secret: str
    domain_id: int

    def states(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name, node in self.nodes.items():
            st = node.status()
            out[name] = st.get("this_sup_internal_state") if st else None
        return out

    def formed(self) -> tuple[Node, Node] | None:
        """(active, standby) once the pair is 'Active with HA standby' / 'HA standby'."""
        st = self.states()
        for a, s in (("primary", "secondary"), ("secondary", "primary")):
            if st[a] == "Active with HA standby" and st[s] == "HA standby":
                return self.nodes[a], self.nodes[s]
        return None

    def wait_formed(self, timeout: float = 25.0) -> tuple[Node, Node]:
        pair: tuple[Node, Node] = wait_for(self.formed, timeout, "the pair to form", poll=0.1)
        return pair

    def cut(self) -> None:
        for node in self.nodes.values():
            for dev in IFACES.values():
                node.nft(
                    f"add rule netdev {TABLE} cut-{dev} ether type {ETHERTYPE:#x} counter drop"
                )

    def heal(self) -> None:
        for node in self.nodes.values():
            for dev in IFACES.values():
                node.nft("flush", "chain", "netdev", TABLE, f"cut-{dev}")

    def ha_frames(self, node: Node, dev: str) -> tuple[int, int]:
        """(broadcast, all) HA frames that arrived on ``dev`` of ``node`` (nft counters)."""
        out = json.loads(node.nft("-j", "list", "chain", "netdev", TABLE, f"count-{dev}"))
        counts = [
            item["rule"]["expr"][-1]["counter"]["packets"]
            for item in out["nftables"]
            if "rule" in item
        ]
        return counts[0], counts[1]

    def cut_drops(self, node: Node, dev: str) -> int:
        out = json.loads(node.nft("-j", "list", "chain", "netdev", TABLE, f"cut-{dev}"))
        return sum(
            item["rule"]["expr"][-2]["counter"]["packets"]
            for item in out["nftables"]
            if "rule" in item
        )


def _node_toml(name: str, secret: str, domain_id: int) -> str:
    me, peer = HOST[name], 3 - HOST[name]
    ifaces = ""
    for iface, dev in IFACES.items():
        port = 17001 if iface == "control" else 17002
        net = SUBNETS[iface]
        ifaces += f"""
[interfaces.{iface}]
transport = "l2"
device = "{dev}"
local = "{net}.{me}:{port}"
peer = "{net}.{peer}:{port}"
"""
    return f"""[node]
name = "{name}"
domain_id = {domain_id}
role = "{name}"
secret = "{secret}"
data_dir = "data"
run_dir = "run"
{ifaces}
[timers]
heartbeat_interval_ms = 100
max_loss_interval_ms = 600
discovery_window_ms = 400

[vem]
listen = "127.0.0.1:17003"
"""


def _setup_nft(node: Node) -> None:
    """Per veth: a chain that drops (empty until ``cut``) and one that counts HA frames."""
    node.nft(f"add table netdev {TABLE}")
    for dev in IFACES.values():
        for chain, prio in ((f"cut-{dev}", -10), (f"count-{dev}", 0)):
            node.nft(
                f"add chain netdev {TABLE} {chain} "
                f"{{ type filter hook ingress device {dev} priority {prio}; policy accept; }}"
            )
        ha = f"add rule netdev {TABLE} count-{dev} ether type {ETHERTYPE:#x}"
        node.nft(f"{ha} ether daddr ff:ff:ff:ff:ff:ff counter")
        node.nft(f"{ha} counter")


def _link_mac(ns: str, dev: str) -> str:
    data = json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))
    mac: str = data[0]["address"]
    return mac.lower()


def _stop(node: Node) -> None:
    if node.proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(10)
        node.proc = None
    for pid in sh("ip", "netns", "pids", node.ns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    root = Path(tempfile.mkdtemp(prefix=f"ovl2-{tag}-"))
    secret = secrets.token_hex(16)
    nodes = {
        name: Node(name=name, ns=f"ovl2-{tag}-{name[0]}", dir=root / name)
        for name in ("primary", "secondary")
    }
    created: list[str] = []
    try:
        for node in nodes.values():
            sh("ip", "netns", "add", node.ns)
            created.append(node.ns)
            sh("ip", "-n", node.ns, "link", "set", "lo", "up")
        p, s = nodes["primary"], nodes["secondary"]
        for iface, dev in IFACES.items():
            sh(*f"ip link add {dev} netns {p.ns} type veth peer name {dev} netns {s.ns}".split())
            for node in (p, s):
                addr = f"{SUBNETS[iface]}.{HOST[node.name]}/24"
                sh("ip", "-n", node.ns, "addr", "add", addr, "dev", dev)
                sh("ip", "-n", node.ns, "link", "set", dev, "up")
                node.macs[iface] = _link_mac(node.ns, dev)
        for node in nodes.values():
            _setup_nft(node)
            node.dir.mkdir(parents=True)
            cfg = node.dir / "node.toml"
            cfg.write_text(_node_toml(node.name, secret, 100))
            node.system_mac = load_node(cfg).system_mac  # generated in its data dir
            with (node.dir / "console.log").open("ab") as log:
                node.proc = subprocess.Popen(
                    [
                        *netns_exec(node.ns),
                        sys.executable,
                        "-m",
                        "openvsm",
                        "vsm",
                        "--config",
                        str(cfg),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield Pair(nodes=nodes, secret=secret, domain_id=100)
    finally:
        for node in nodes.values():
            with contextlib.suppress(Exception):
                _stop(node)
        for ns in created:
            sh("ip", "netns", "del", ns, check=False)
        if not os.environ.get("OPENVSM_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def test_pair_forms_over_l2(pair: Pair) -> None:
    t0 = time.monotonic()
    active, _ = pair.wait_formed()
    print(f"\npair formed over L2 in {time.monotonic() - t0:.2f} s: active {active.name}")
    # Which one is active depends on which booted first (seed: the primary wins only
    # when both are initializing); what matters is that they found each other on L2.
    st = active.cli_json("show system redundancy status")
    assert st["other_sup_rdn_state"] == "Standby"
    # Heartbeats really flow over L2 on control (the UDP sockets were never opened).
    row = active.counters("control")
    assert row["hb_sent"] > 0 and row["hb_recv"] > 0
    assert row.get("socket_errors", 0) == 0


def test_learnt_peer_mac_is_the_veths_real_mac(pair: Pair) -> None:
    active, standby = pair.wait_formed()
    for me, peer in ((active, standby), (standby, active)):
        learnt = me.facts()["peer_macs"]
        assert learnt["control"] == peer.macs["control"]
        # Not the system MAC that the codec header claims.
        assert learnt["control"] != peer.system_mac
        if "mgmt" in learnt:
            assert learnt["mgmt"] == peer.macs["mgmt"]
        trace = me.cli_json("show system internal redundancy trace")
        events = [r["event"] for r in trace["TABLE_trace"]["ROW_trace"]]
        assert any(peer.macs["control"] in e and "peer MAC learnt" in e for e in events), events


def test_heartbeats_are_unicast_once_the_peer_is_known(pair: Pair) -> None:
    active, standby = pair.wait_formed()
    dev = IFACES["control"]
    before = {n.name: pair.ha_frames(n, dev) for n in (active, standby)}
    time.sleep(1.0)
    after = {n.name: pair.ha_frames(n, dev) for n in (active, standby)}
    for name in before:
        bcast = after[name][0] - before[name][0]
        total = after[name][1] - before[name][1]
        print(f"\n{name} received on {dev} in 1 s: {total} HA frames, {bcast} broadcast")
        assert total >= 5  # 100 ms heartbeats (requests one way, responses the other)
        assert bcast == 0


def _inject(node: Node, pair: Pair, system_mac: str, src_mac: str, dst_mac: str) -> None:
    """From inside ``node``'s namespace, send a well-signed HA frame with a forged source MAC."""
    script = f"""
import socket
from openvsm.wire.codec import Codec
from openvsm.wire.l2 import build_frame, mac_bytes
from openvsm.wire.messages import Discovery, Flag, HeartbeatRequest, SenderRole
codec = Codec({pair.domain_id}, {pair.secret.encode()!r})
role = SenderRole[{node.name.upper()!r}]
msgs = [
    HeartbeatRequest(state="active", flags=int(Flag.RESET_ORDERED), change_seq=10**9),
    HeartbeatRequest(state="active", flags=int(Flag.SWITCHOVER)),
    Discovery(state="active", boot_id=1, reply=True),
]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons({ETHERTYPE}))
s.bind(({IFACES["control"]!r}, {ETHERTYPE}))
for i, msg in enumerate(msgs * 3):
    data = codec.encode(msg, role=role, mac={system_mac!r}, epoch=10**6, seq=2**62 + i)
    s.send(build_frame(mac_bytes({dst_mac!r}), mac_bytes({src_mac!r}), data))
print("sent", len(msgs) * 3)
"""
    out = sh("ip", "netns", "exec", node.ns, sys.executable, "-c", script)
    assert out.startswith("sent 9")


def test_spoofed_source_mac_is_dropped_and_counted(pair: Pair) -> None:
    active, standby = pair.wait_formed()
    spoof = "02:5e:00:00:be:ef"
    boot = {n.name: n.ha()["boot_id"] for n in (active, standby)}
    epoch = {n.name: n.ha()["epoch"] for n in (active, standby)}
    bad_before = {n.name: n.counters("control").get("drop_bad_mac", 0) for n in (active, standby)}
    # Frames on the wire from the active's side claiming to be the active (its role,
    # its system MAC, the right secret), but from another source MAC; and the same
    # towards the active claiming to be the standby.
    for sender, receiver in ((active, standby), (standby, active)):
        claimed = receiver.facts()["peer_macs"]["control"]
        assert claimed == sender.macs["control"]
        _inject(sender, pair, sender.system_mac, spoof, receiver.macs["control"])
        _inject(sender, pair, sender.system_mac, spoof, "ff:ff:ff:ff:ff:ff")
    wait_for(
        lambda: all(
            n.counters("control").get("drop_bad_mac", 0) - bad_before[n.name] >= 18
            for n in (active, standby)
        ),
        5.0,
        "the spoofed frames to be counted as bad_mac",
    )
    time.sleep(1.0)  # a RESET_ORDERED or SWITCHOVER, had it been accepted, acts at once
    assert pair.formed() == (active, standby)
    for n in (active, standby):
        ha = n.ha()
        assert ha["boot_id"] == boot[n.name], f"{n.name} reloaded"
        assert ha["epoch"] == epoch[n.name]
        assert n.facts()["peer_macs"]["control"] != spoof
        print(f"\n{n.name}: drop_bad_mac {n.counters('control').get('drop_bad_mac')}")


def test_cut_both_links_split_brain_then_heal(pair: Pair) -> None:
    active, standby = pair.wait_formed()
    boot = {n.name: n.ha()["boot_id"] for n in (active, standby)}
    t0 = time.monotonic()
    pair.cut()
    try:

        def both_active() -> bool:
            return all(
                (st := n.status()) is not None and st.get("this_sup_rdn_state") == "Active"
                for n in (active, standby)
            )

        wait_for(both_active, 10.0, "split-brain (both active)")
        split_s = time.monotonic() - t0
        time.sleep(0.5)
        assert both_active()
        # The heartbeats were really dropped on L2 by the rule (and kept coming).
        assert all(pair.cut_drops(n, dev) > 0 for n in (active, standby) for dev in IFACES.values())
    finally:
        pair.heal()
    t1 = time.monotonic()
    new_active, new_standby = pair.wait_formed(timeout=30.0)
    heal_s = time.monotonic() - t1
    print(
        f"\nsplit-brain {split_s:.2f} s after the cut; pair re-formed {heal_s:.2f} s after "
        f"the heal: active {new_active.name}, standby {new_standby.name}"
    )
    # Exactly one active; the other went through a reload (new boot id) into standby.
    states = pair.states()
    assert sorted(s or "" for s in states.values()) == ["Active with HA standby", "HA standby"]
    assert new_standby.ha()["boot_id"] != boot[new_standby.name]
    assert new_active.ha()["boot_id"] == boot[new_active.name]
    trace = new_active.cli_json("show system internal redundancy trace")
    events = " | ".join(r["event"] for r in trace["TABLE_trace"]["ROW_trace"])
    assert "split-brain resolution: this supervisor stays active" in events
    # The loser's logs (fragmented on L2 above the MTU) reached the winner before it reloaded.
    remote = ipc_call(new_active.rundir / "hamgr.sock", "activeactive", which="remote traces")
    assert remote.get("traces"), remote
    print(f"winner holds {len(remote['traces'])} remote redundancy traces from {remote['from']}")
