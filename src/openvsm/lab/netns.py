"""The netns lab: hosts, VMs and an upstream switch as network namespaces (root only).

Builds data-plane topologies for tests and benchmarks and tears them down
whole: every namespace, veth, OVS daemon and directory it created carries the
run's prefix (``ovsm<pid>`` by default), so leftovers from a crashed run are
identifiable and ``cleanup_prefix`` removes them.

- ``Topology.add_host(name)``: a namespace with a private OVS instance
  (``OvsInstance``, userspace datapath); ``host.backend(...)`` gives the
  ``OvsBackend`` the VEM agent would use there.
- ``Topology.add_vm(name, host, port, ip)``: a "VM" namespace whose ``eth0``
  is a veth whose peer ``port`` sits in the host namespace (the vEth).
- ``Topology.link(a, dev_a, b, dev_b)``: a "physical" veth between two
  namespaces (host uplinks, LACP members to the upstream switch).
- ``Topology.add_switch(name)``: an "upstream switch" namespace with its own
  OVS (e.g. holding an LACP bond towards a host).

Traffic helpers run small Python UDP programs inside namespaces (there is no
``ping`` here): ``udp_exchange`` (echo, count replies) and ``UdpStream`` (a
steady numbered stream; counts lost datagrams and the longest gap).

``python -m openvsm.lab.netns`` runs a smoke: two hosts, two VMs on VLAN 10,
one UDP exchange, full teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.config import render_vem_toml
from openvsm.credentials import generate_pair_credentials
from openvsm.lab.common import LabError, ipc_call, wait_for
from openvsm.lab.lab import Lab, NodeHandle, VemHandle
from openvsm.node import RunDir
from openvsm.vem.ovs import OvsBackend
from openvsm.vem.ovsinstance import OvsInstance, missing_binaries

PREFIX_BASE = "ovsm"


def unavailable_reason() -> str | None:
    """Why the netns lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not found"
    missing = missing_binaries()
    if missing:
        return f"Open vSwitch binaries missing: {', '.join(missing)} (apt-get openvswitch-switch)"
    return None


def sh(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def netns_exec(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@dataclass
class Host:
    name: str
    ns: str
    ovs: OvsInstance
    topology: Topology

    @property
    def ovsdb(self) -> str:
        return self.ovs.remote

    def backend(self, uplinks: tuple[str, ...] = (), **kwargs: Any) -> OvsBackend:
        """The OvsBackend a VEM agent on this host would construct."""
        backend = OvsBackend(
            bridge="br-int",
            ovsdb=self.ovs.remote,
            uplinks=uplinks,
            rundir=str(self.ovs.directory),
            netns=self.ns,
            **kwargs,
        )
        backend.start()
        self.topology._backends.append(backend)
        return backend

    def ip(self, *args: str, check: bool = True) -> str:
        return sh("ip", "-n", self.ns, *args, check=check)


@dataclass
class Vm:
    name: str
    ns: str
    ip: str
    mac: str
    port: str  # the vEth device in the host namespace


@dataclass
class Topology:
    prefix: str = field(default_factory=lambda: f"{PREFIX_BASE}{os.getpid()}")
    workdir: Path | None = None
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)
    _instances: list[OvsInstance] = field(default_factory=list)
    _backends: list[OvsBackend] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.workdir is None:
            self.workdir = Path("/tmp") / self.prefix
        self.workdir.mkdir(parents=True, exist_ok=True)

    def namespace(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def add_host(self, name: str) -> Host:
        ns = self.namespace(name)
        assert self.workdir is not None
        ovs = OvsInstance(self.workdir / name, netns=ns)
        self._instances.append(ovs)
        ovs.start()
        ovs.vsctl("--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int",
                  "datapath_type=netdev")  # fmt: skip
        sh("ip", "-n", ns, "link", "set", "br-int", "up")
        host = Host(name=name, ns=ns, ovs=ovs, topology=self)
        self.hosts[name] = host
        return host

    def add_switch(self, name: str) -> Host:
        """An upstream switch: same as a host (a namespace with its own OVS)."""
        return self.add_host(name)

    def link(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str, up: bool = True) -> None:
        sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth",
           "peer", "name", dev_b, "netns", ns_b)  # fmt: skip
        for ns, dev in ((ns_a, dev_a), (ns_b, dev_b)):
            # No tx checksum offload: OVS 3.1's userspace datapath drops packets
            # with partial checksums that go into a tunnel.
            sh(*netns_exec(ns, _python(), "-c", _NO_TX_CSUM, dev))
            if up:
                sh("ip", "-n", ns, "link", "set", dev, "up")

    def add_vm(self, name: str, host: Host, port: str, ip: str, mac: str = "") -> Vm:
        ns = self.namespace(name)
        if not mac:
            mac = "02:00:" + ":".join(f"{int(x):02x}" for x in ip.split("/")[0].split("."))
        self.link(ns, "eth0", host.ns, port)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", ns, "addr", "add", ip if "/" in ip else f"{ip}/24", "dev", "eth0")
        vm = Vm(name=name, ns=ns, ip=ip.split("/")[0], mac=mac, port=port)
        self.vms[name] = vm
        return vm

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            netns_exec(ns, *argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def teardown(self) -> None:
        """Stop everything this topology started; never raises."""
        for backend in self._backends:
            with contextlib.suppress(Exception):
                backend.stop()
        for proc in self._procs:
            with contextlib.suppress(Exception):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=5)  # reaps it and closes its pipe
        for ovs in self._instances:
            with contextlib.suppress(Exception):
                ovs.stop(remove=True)
        for ns in reversed(self.namespaces):
            _kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def _kill_ns_pids(ns: str) -> None:
    out = sh("ip", "netns", "pids", ns, check=False)
    for pid in out.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def cleanup_prefix(prefix: str) -> list[str]:
    """Remove namespaces and directories left by a run with ``prefix``; return what went."""
    removed = []
    for line in sh("ip", "netns", "list", check=False).splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(prefix):
            _kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    path = Path("/tmp") / prefix
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


# -- UDP traffic inside namespaces ------------------------------------------------

_NO_TX_CSUM = """
import array, fcntl, socket, struct, sys
cmd = array.array("B", struct.pack("II", 0x17, 0))  # ETHTOOL_STXCSUM, off
ifr = struct.pack("16sP", sys.argv[1].encode(), cmd.buffer_info()[0]).ljust(40, b"\\0")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(sock.fileno(), 0x8946, ifr)
"""

_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""

_CLIENT = """
import json, socket, sys, time
dst, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
got = set()
deadline = time.monotonic() + timeout
while time.monotonic() < deadline and len(got) < count:
    for i in range(count):
        if i not in got:
            s.sendto(str(i).encode(), (dst, port))
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        try:
            data, _ = s.recvfrom(2048)
            got.add(int(data))
        except (socket.timeout, ValueError):
            break
        except OSError:
            time.sleep(0.05)
            break
print(json.dumps({"replies": len(got)}))
"""

_SINK = """
import json, signal, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
seen, last, gap = set(), None, 0.0
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
print("ready", flush=True)
while not stop:
    try:
        data, _ = s.recvfrom(2048)
    except socket.timeout:
        continue
    now = time.monotonic()
    if last is not None:
        gap = max(gap, now - last)
    last = now
    seen.add(int(data.split(b" ")[0]))
result = {"received": len(seen), "max_gap_ms": gap * 1000}
print(json.dumps(result), flush=True)
"""

_SENDER = """
import json, socket, sys, time
dst, port, rate, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
interval = 1.0 / rate
start = time.monotonic()
n = 0
while time.monotonic() - start < duration:
    try:
        s.sendto(b"%d x" % n, (dst, port))
    except OSError:
        pass
    n += 1
    target = start + n * interval
    delay = target - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(json.dumps({"sent": n}), flush=True)
"""


def _python() -> str:
    return sys.executable


def udp_exchange(
    topo: Topology, src: Vm, dst: Vm, count: int = 3, timeout: float = 3.0, port: int = 7000
) -> int:
    """Send ``count`` datagrams src -> dst's echo server; return how many came back."""
    server = topo.spawn(dst.ns, _python(), "-c", _ECHO, str(port))
    try:
        assert server.stdout is not None
        server.stdout.readline()
        out = sh(*netns_exec(src.ns, _python(), "-c", _CLIENT, dst.ip, str(port), str(count),
                             str(timeout)))  # fmt: skip
        replies: int = json.loads(out)["replies"]
        return replies
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.communicate()


@dataclass
class StreamResult:
    sent: int
    received: int
    max_gap_ms: float

    @property
    def lost(self) -> int:
        return self.sent - self.received


class UdpStream:
    """A steady numbered UDP stream src -> dst (``rate`` datagrams/s for ``duration`` s)."""

    def __init__(
        self, topo: Topology, src: Vm, dst: Vm, rate: float, duration: float, port: int = 7100
    ) -> None:
        self.topo = topo
        self.sink = topo.spawn(dst.ns, _python(), "-c", _SINK, str(port))
        assert self.sink.stdout is not None
        self.sink.stdout.readline()
        self.sender = topo.spawn(
            src.ns, _python(), "-c", _SENDER, dst.ip, str(port), str(rate), str(duration)
        )

    def result(self, timeout: float = 60.0) -> StreamResult:
        out, _ = self.sender.communicate(timeout=timeout)
        sent = json.loads(out)["sent"]
        time.sleep(0.3)  # datagrams in flight
        self.sink.send_signal(signal.SIGTERM)
        sink_out, _ = self.sink.communicate(timeout=10)
        data = json.loads(sink_out)
        return StreamResult(sent=sent, received=data["received"], max_gap_ms=data["max_gap_ms"])


# -- VEM agents with the ovs backend ------------------------------------------------


def ovs_vem_toml(
    host: Host,
    *,
    host_uuid: str,
    host_ip: str,
    domain_id: int,
    local: str,
    vsms: list[str],
    secret: str | None = None,
    key_file: str | None = None,
    uplinks: Sequence[tuple[str, str]] = (),
    heartbeat_ms: int = 1000,
    headless_ms: int = 15000,
    in_namespace: bool = False,
) -> str:
    """A VEM agent config (backend ``ovs``) for the private OVS of ``host``.

    ``key_file``: the host's key file (``Lab.vem_values`` writes it); ``secret``:
    the old domain secret instead. ``in_namespace``: the agent runs inside the
    host's namespace (the lab); otherwise it runs in ours and reaches the host's
    devices with ``ip -n`` (the OVS sockets are files, reachable from any namespace)."""
    if (secret is None) == (key_file is None):
        raise ValueError("ovs_vem_toml takes key_file or secret")
    return render_vem_toml(
        {
            "host_uuid": host_uuid,
            "host_name": host.name,
            "host_ip": host_ip,
            "domain_id": domain_id,
            "key_file": key_file,
            "secret": secret,
            "local": local,
            "vsms": vsms,
            "run_dir": "run",
            "data_dir": "data",
            "backend": "ovs",
            "ovs_run_dir": str(host.ovs.directory),
            "bridge": "br-int",
            "heartbeat_interval_ms": heartbeat_ms,
            "headless_after_ms": headless_ms,
            "ovs_netns": None if in_namespace else host.ns,
            "uplinks": [{"device": d, "port_profile": p} for d, p in uplinks],
        }
    )


# -- openvsm lab --netns --------------------------------------------------------------

UPLINK_PROFILE = "uplink-lacp"
MGMT_NET = "10.99.0"  # VSM mgmt + VEM control (a Linux bridge in the "mgmt" namespace)
CONTROL_NET = "10.98.0"  # VSM <-> VSM control link (point to point)
SHARED_MGMT = f"{MGMT_NET}.10"  # the pair's shared management address (the active holds it)
CLIENT_IP = f"{MGMT_NET}.200"  # the client namespace on the mgmt bridge


class NetnsLab(Lab):
    """The loopback lab's VSM pair and VEMs, in network namespaces with real OVS.

    - ``vsm-primary``/``vsm-secondary``: one VSM node each; control on a
      point-to-point veth (10.98.0.1/.2), mgmt (HA heartbeats when degraded,
      REST, and the VEM control protocol) on the ``mgmt`` namespace's
      Linux bridge (10.99.0.1/.2);
    - ``h<N>``: a host with a private OVS (userspace datapath) and an
      ``openvsm vem`` agent (backend ovs) at 10.99.0.1<N> on the mgmt bridge;
      uplinks ``eth1..`` to the upstream switch, all in the uplink port
      profile ``uplink-lacp`` (``channel-group auto mode active``);
    - ``vm<N>-<M>``: VM namespaces (eth0 = a vEth on host N, profile
      ``vm-net``, VLAN 10, 10.10.<N>.<M>);
    - ``sw``: the upstream switch, an OVS with one LACP bond per host
      (none with ``hosts=0``);
    - ``client``: an operator's machine on the mgmt bridge (10.99.0.200);
      the pair's shared management address is 10.99.0.10 (``[mgmt]``,
      device ``mgmt0``, SSH on port 22 there; each node's own SSH server
      on its mgmt address, port 2222).
    """

    def __init__(
        self,
        root: Path,
        *,
        hosts: int = 2,
        vms_per_host: int = 1,
        uplinks: int = 2,
        timers: str = "default",
        prefix: str | None = None,
    ) -> None:
        self.topo = Topology(prefix=prefix) if prefix else Topology()
        self.nhosts = hosts
        self.vms_per_host = vms_per_host
        self.nuplinks = uplinks
        self.node_ns: dict[str, str] = {}
        self.host_objs: dict[str, Host] = {}
        self._spawn_ns: str | None = None
        super().__init__(
            root,
            vems=0,
            timers=timers,
            rest=True,
            ssh=True,
            extra_node_toml=(
                f'\n[mgmt]\naddress = "{SHARED_MGMT}/24"\ndevice = "mgmt0"\nssh_port = 22\n'
            ),
        )

    def _plan(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # the pair certificate names both management addresses (REST over HTTPS)
        mgmt_ips = [f"{MGMT_NET}.1", f"{MGMT_NET}.2"]
        self.credentials = generate_pair_credentials(self.root / "pki", hosts=mgmt_ips)
        self._write_keys()
        topo = self.topo
        self.mgmt_ns = topo.namespace("mgmt")
        sh("ip", "-n", self.mgmt_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.mgmt_ns, "link", "set", "br0", "up")
        ns = {r: topo.namespace(f"vsm-{r}") for r in ("primary", "secondary")}
        topo.link(ns["primary"], "ctl0", ns["secondary"], "ctl0")
        for i, role in enumerate(("primary", "secondary")):
            sh("ip", "-n", ns[role], "addr", "add", f"{CONTROL_NET}.{i + 1}/24", "dev", "ctl0")
            self._mgmt_port(ns[role], f"m-{role[:3]}", f"{MGMT_NET}.{i + 1}")
        self.client_ns = topo.namespace("client")
        self._mgmt_port(self.client_ns, "m-client", CLIENT_IP, dev="eth0")
        from openvsm.mgmt.sshd import generate_host_key

        generate_host_key(self.host_key)
        for i, role in enumerate(("primary", "secondary")):
            ctl, mgmt = f"{CONTROL_NET}.{i + 1}", f"{MGMT_NET}.{i + 1}"
            peer_ctl, peer_mgmt = f"{CONTROL_NET}.{2 - i}", f"{MGMT_NET}.{2 - i}"
            node = NodeHandle(
                name=role,
                role=role,
                dir=self.root / role,
                config=self.root / role / "node.toml",
                control=(ctl, 7001),
                mgmt=(mgmt, 7002),
                vem=(mgmt, 7003),
                rest=(mgmt, 8443),
                rest_plain=(mgmt, 8080),  # the n1kv driver's plain HTTP
                peer_control=(peer_ctl, 7001),
                peer_mgmt=(peer_mgmt, 7002),
                ssh=(mgmt, 2222),
            )
            self.nodes[role] = node
            self.node_ns[role] = ns[role]
            self._write_node_config(node)

    def _mgmt_port(self, ns: str, bridge_side: str, ip: str, dev: str = "mgmt0") -> None:
        self.topo.link(ns, dev, self.mgmt_ns, bridge_side)
        sh("ip", "-n", self.mgmt_ns, "link", "set", bridge_side, "master", "br0")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        prefix = ["ip", "netns", "exec", self._spawn_ns] if self._spawn_ns else []
        with log.open("ab") as out:
            return subprocess.Popen(
                [*prefix, sys.executable, "-m", "openvsm", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_node(self, name: str) -> None:
        self._spawn_ns = self.node_ns[name]
        try:
            super().start_node(name)
        finally:
            self._spawn_ns = None

    def start_vem(self, vem: VemHandle) -> None:
        self._spawn_ns = self.host_objs[vem.host].ns
        try:
            super().start_vem(vem)
        finally:
            self._spawn_ns = None

    def start(self, timeout: float | None = None) -> str:
        active: str = super().start(timeout)
        for line in (
            "configure terminal",
            f"port-profile type ethernet {UPLINK_PROFILE}",
            "switchport mode trunk",
            "switchport trunk allowed vlan 10,20",
            "channel-group auto mode active",
            "state enabled",
            "no shutdown",
            "end",
        ):
            res = self.cli(active, line)
            if res.get("error"):
                raise LabError(f"uplink profile: {line!r}: {res.get('output')}")
        self._build_hosts()
        self.write_lab_json()
        return active

    def _build_hosts(self) -> None:
        topo = self.topo
        if self.nhosts == 0:
            return
        sw = topo.add_switch("sw")
        vsms = [f"{n.vem[0]}:{n.vem[1]}" for n in self.nodes.values()]
        for n in range(1, self.nhosts + 1):
            name = f"h{n}"
            host = topo.add_host(name)
            self.host_objs[name] = host
            ip = f"{MGMT_NET}.{10 + n}"
            self._mgmt_port(host.ns, f"m-{name}", ip)
            members = []
            for j in range(1, self.nuplinks + 1):
                topo.link(host.ns, f"eth{j}", sw.ns, f"h{n}e{j}")
                members.append(f"h{n}e{j}")
            sw.ovs.vsctl("add-bond", "br-int", f"po{n}", *members, "lacp=active",
                         "bond_mode=balance-tcp", "other_config:lacp-time=fast")  # fmt: skip
            vem = VemHandle(
                host=name,
                uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.root}/{name}")),
                dir=self.root / "vems" / name,
                config=self.root / "vems" / name / "vem.toml",
                addr=(ip, 18000),
            )
            key = self.vem_values(vem, [])  # writes vems/NAME/host.secret
            vem.config.write_text(
                ovs_vem_toml(
                    host,
                    host_uuid=vem.uuid,
                    host_ip=ip,
                    domain_id=self.domain_id,
                    secret=key.get("secret"),
                    key_file=key.get("key_file"),
                    local=f"{ip}:18000",
                    vsms=vsms,
                    uplinks=[(f"eth{j}", UPLINK_PROFILE) for j in range(1, self.nuplinks + 1)],
                    heartbeat_ms=self.timers["vem_heartbeat_ms"],
                    headless_ms=self.timers["vem_headless_ms"],
                    in_namespace=True,
                )
            )
            self.vems.append(vem)
            self.start_vem(vem)
            sock = RunDir(vem.rundir).vem
            wait_for(sock.exists, 30, f"{name} agent control socket")
            for m in range(1, self.vms_per_host + 1):
                vm = topo.add_vm(f"vm{n}-{m}", host, f"v{n}-{m}", f"10.10.{n}.{m}/16")
                ipc_call(sock, "attach_port", vm=vm.name, port_profile="vm-net",
                         mac=vm.mac, name=vm.port)  # fmt: skip
                vem.ports.append(vm.port)

    def lab_json(self) -> dict[str, Any]:
        data: dict[str, Any] = super().lab_json()
        for node in data["nodes"]:
            node["netns"] = self.node_ns[node["name"]]
        for vem in data["vems"]:
            vem["netns"] = self.host_objs[vem["host"]].ns
        data["netns"] = {
            "prefix": self.topo.prefix,
            "mgmt": self.mgmt_ns,
            "vms": [
                {"name": v.name, "netns": v.ns, "ip": v.ip, "mac": v.mac, "port": v.port}
                for v in self.topo.vms.values()
            ],
            "switch": f"{self.topo.prefix}-sw",
            "client": self.client_ns,
            "client_ip": CLIENT_IP,
        }
        data["mgmt_address"] = SHARED_MGMT
        data["client_netns"] = self.client_ns
        return data

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.topo.teardown()


def _smoke() -> int:
    from openvsm.vem.model import DesiredState, VethState

    reason = unavailable_reason()
    if reason:
        print(f"netns smoke skipped: {reason}")
        return 0
    with Topology() as topo:
        h1, h2 = topo.add_host("h1"), topo.add_host("h2")
        topo.link(h1.ns, "eth1", h2.ns, "eth1")
        a = topo.add_vm("a", h1, "vetha", "10.10.0.1")
        b = topo.add_vm("b", h2, "vethb", "10.10.0.2")
        for host, vm in ((h1, a), (h2, b)):
            backend = host.backend(uplinks=("eth1",))
            port = VethState(name=vm.port, vm=vm.name, mac=vm.mac, port_profile="p10",
                             access_vlan=10)  # fmt: skip
            errors = backend.apply(DesiredState(ports=(port,)))
            print(f"{host.name}: apply errors {errors}")
        print(f"UDP replies a->b: {udp_exchange(topo, a, b)}/3")
    return 0


if __name__ == "__main__":
    raise SystemExit(_smoke())
