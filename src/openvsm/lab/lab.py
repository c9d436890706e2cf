"""The loopback lab: a VSM pair and VEM agents as real processes (DESIGN §8).

``openvsm lab --dir D --no-shell [--vems N] [--timers default|fast]`` runs in
the foreground until SIGINT/SIGTERM and writes ``D/lab.json`` once the pair
is "Active with HA standby" and the VEMs are attached. Each VSM node and each
VEM runs in its own process group, so ``kill -9 -<pgid>`` kills one whole.
Without ``--no-shell`` the lab opens the CLI of the active and stops
everything when the shell exits.

The ``Lab`` class is also the harness of the integration tests and of the
benchmarks; with ``proxy=True`` the two nodes reach each other only through a
fault-injecting proxy process (control UDP+TCP, mgmt UDP), so tests can cut
one interface, one direction, or both.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.config import render_vem_toml
from openvsm.credentials import generate_pair_credentials
from openvsm.files import write_private
from openvsm.ipc import IpcError

# The shared helpers live in lab/common.py; named here too for tests written
# against ``openvsm.lab.lab`` (import them from lab.common in new code).
from openvsm.lab.common import LabError as LabError
from openvsm.lab.common import free_port as free_port
from openvsm.lab.common import ipc_call as ipc_call
from openvsm.lab.common import signal_group as signal_group
from openvsm.lab.common import wait_for as wait_for
from openvsm.node import RunDir
from openvsm.wire.keys import derive_host_key

TIMER_PROFILES: dict[str, dict[str, int]] = {
    "default": {
        "heartbeat_interval_ms": 1000,
        "max_loss_interval_ms": 15000,
        "discovery_window_ms": 3000,
        "vem_heartbeat_ms": 1000,
        "vem_headless_ms": 15000,
    },
    "fast": {
        "heartbeat_interval_ms": 100,
        "max_loss_interval_ms": 600,
        "discovery_window_ms": 400,
        "vem_heartbeat_ms": 100,
        "vem_headless_ms": 1500,
    },
}


@dataclass
class NodeHandle:
    name: str
    role: str
    dir: Path
    config: Path
    control: tuple[str, int]
    mgmt: tuple[str, int]
    vem: tuple[str, int]
    rest: tuple[str, int] | None  # HTTPS
    peer_control: tuple[str, int]
    peer_mgmt: tuple[str, int]
    proc: subprocess.Popen[bytes] | None = None
    ssh: tuple[str, int] | None = None
    rest_plain: tuple[str, int] | None = None  # plain HTTP for the n1kv driver

    @property
    def rest_url(self) -> str | None:
        return f"https://{self.rest[0]}:{self.rest[1]}" if self.rest else None

    @property
    def rest_plain_url(self) -> str | None:
        return f"http://{self.rest_plain[0]}:{self.rest_plain[1]}" if self.rest_plain else None

    @property
    def rundir(self) -> Path:
        return self.dir / "run"

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass
class VemHandle:
    host: str
    uuid: str
    dir: Path
    config: Path
    addr: tuple[str, int]
    proc: subprocess.Popen[bytes] | None = None
    ports: list[str] = field(default_factory=list)
    metrics: tuple[str, int] | None = None  # [vem] metrics_listen
    # node name -> fault proxy link between this VEM and that node (vem_proxy labs)
    links: dict[str, str] = field(default_factory=dict)
    via: dict[str, tuple[str, int]] = field(default_factory=dict)  # node -> address the VEM uses
    key_file: Path | None = None  # its host key (0600; None: the old domain secret in vem.toml)

    @property
    def rundir(self) -> Path:
        return self.dir / "run"


class Lab:
    def __init__(
        self,
        root: Path,
        *,
        vems: int = 0,
        timers: str = "default",
        timer_overrides: dict[str, int] | None = None,
        proxy: bool = False,
        domain_id: int = 100,
        rest: bool = True,
        sync_buffer_bytes: int = 4 << 20,
        module_limit: int = 1024,
        extra_node_toml: str = "",
        vem_proxy: int = 0,
        observe_toml: str = "",
        ssh: bool = False,
        ssh_write_timeout: int = 30,
        keys: bool = True,
    ) -> None:
        if timers not in TIMER_PROFILES:
            raise LabError(f"unknown timer profile {timers!r} (default | fast)")
        self.root = root
        self.timers = {**TIMER_PROFILES[timers], **(timer_overrides or {})}
        self.timer_profile = timers
        self.domain_id = domain_id
        # The pair key (old files: the one domain secret); with ``keys`` (the default)
        # a separate VEM key, and each VEM holds only its derived host key.
        self.secret = secrets.token_hex(16)
        self.keys = keys
        self.vem_key = secrets.token_hex(32)
        self.password = secrets.token_urlsafe(12)
        self.use_proxy = proxy
        self.nvems = vems
        self.rest = rest
        # The SSH server (the node's mgmt service): one host key for the pair.
        self.ssh = ssh
        self.host_key = root / "ssh_host_ed25519_key"
        self.ssh_write_timeout = ssh_write_timeout
        self.sync_buffer_bytes = sync_buffer_bytes
        self.module_limit = module_limit
        self.extra_node_toml = extra_node_toml
        self.observe_toml = observe_toml  # lines of the nodes' [observe] section
        if vem_proxy and not proxy:
            raise LabError("vem_proxy needs proxy=True")
        self.nodes: dict[str, NodeHandle] = {}
        self.vems: list[VemHandle] = []
        # VEMs whose traffic to each node goes through the fault proxy (planned
        # with the proxy's links, started with ``launch_vems``).
        self.proxied_vems: list[VemHandle] = []
        self._vem_links: list[dict[str, Any]] = []
        self._nproxied = vem_proxy
        self.proxy_proc: subprocess.Popen[bytes] | None = None
        self.proxy_ctl = root / "proxy.sock"
        self._plan()

    # ---- topology -------------------------------------------------------
    def _plan(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        host = "127.0.0.1"
        # One certificate for the pair (REST HTTPS, mutual TLS of the sync stream).
        self.credentials = generate_pair_credentials(self.root / "pki", hosts=[host])
        self._write_keys()
        ports = {
            role: {
                k: free_port(host) for k in ("control", "mgmt", "vem", "rest", "rest_plain", "ssh")
            }
            for role in ("primary", "secondary")
        }
        self.proxy_ports: dict[str, dict[str, int]] = {}
        if self.use_proxy:
            # Each node's peer address is a proxy port; the proxy forwards to the
            # other node's real socket.
            self.proxy_ports = {
                role: {"control": free_port(host), "mgmt": free_port(host)}
                for role in ("primary", "secondary")
            }
        if self.ssh and not self.host_key.exists():
            from openvsm.mgmt.sshd import generate_host_key

            generate_host_key(self.host_key)
        for role in ("primary", "secondary"):
            other = "secondary" if role == "primary" else "primary"
            p = ports[role]
            if self.use_proxy:
                peer_c = (host, self.proxy_ports[role]["control"])
                peer_m = (host, self.proxy_ports[role]["mgmt"])
            else:
                peer_c = (host, ports[other]["control"])
                peer_m = (host, ports[other]["mgmt"])
            node = NodeHandle(
                name=role,
                role=role,
                dir=self.root / role,
                config=self.root / role / "node.toml",
                control=(host, p["control"]),
                mgmt=(host, p["mgmt"]),
                vem=(host, p["vem"]),
                rest=(host, p["rest"]) if self.rest else None,
                rest_plain=(host, p["rest_plain"]) if self.rest else None,
                peer_control=peer_c,
                peer_mgmt=peer_m,
                ssh=(host, p["ssh"]) if self.ssh else None,
            )
            self.nodes[role] = node
        for node in self.nodes.values():
            self._write_node_config(node)
        for _ in range(self._nproxied):
            self._plan_proxied_vem()

    def _write_keys(self) -> None:
        """The pair key (``domain.key``: also for tools taking the old one secret)
        and the VEM key (``vem.key``), 0600, never on argv (vem-sim reads them)."""
        self.secret_file = self.root / "pki" / "domain.key"
        write_private(self.secret_file, self.secret + "\n")
        self.vem_key_file = self.root / "pki" / "vem.secret"
        if self.keys:
            write_private(self.vem_key_file, self.vem_key + "\n")

    def vem_host_key(self, host_uuid: str) -> str:
        """The key a VEM of this lab signs with (its derived host key, or the old secret)."""
        if not self.keys:
            return self.secret
        return derive_host_key(self.vem_key.encode(), host_uuid)

    def _keys_toml(self) -> str:
        if not self.keys:
            return ""
        return f'\n[keys]\npair_key = "{self.secret_file}"\nvem_key = "{self.vem_key_file}"\n'

    def _plan_proxied_vem(self) -> VemHandle:
        """A VEM that reaches each node through its own proxy link, so a test can
        cut one VEM off one node (``cut_vem``) while it still reaches the other."""
        host = "127.0.0.1"
        index = len(self.proxied_vems) + 1
        name = f"pxhost-{index}"
        vem = VemHandle(
            host=name,
            uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.root}/{name}")),
            dir=self.root / "vems" / name,
            config=self.root / "vems" / name / "vem.toml",
            addr=(host, free_port()),
        )
        targets = []
        for node in self.nodes.values():
            link = f"vem-{name}-{node.name}"
            vem_side, node_side = free_port(), free_port()
            # The VEM sends to b_listen; the node sees (and answers) a_listen.
            self._vem_links.append(
                {
                    "name": link,
                    "a": list(vem.addr),
                    "a_listen": [host, node_side],
                    "b": list(node.vem),
                    "b_listen": [host, vem_side],
                }
            )
            vem.links[node.name] = link
            vem.via[node.name] = (host, vem_side)
            targets.append((host, vem_side))
        self._write_vem_config(vem, targets)
        self.proxied_vems.append(vem)
        return vem

    def cut_vem(self, vem: VemHandle, node: str) -> None:
        """Drop all traffic between one proxied VEM and one node."""
        self.proxy("drop", name=vem.links[node], direction="both")

    def heal_vem(self, vem: VemHandle, node: str) -> None:
        self.proxy("heal", name=vem.links[node], direction="both")

    def launch_vems(self, vems: list[VemHandle], ports_per_vem: int = 2) -> None:
        """Start planned (proxied) VEMs and attach their ports; does not wait for
        them to attach (with a partition, the caller knows where they should go)."""
        for vem in vems:
            self.start_vem(vem)
            if vem not in self.vems:
                self.vems.append(vem)
        for vem in vems:
            self._attach_ports(vem, ports_per_vem, 60.0)

    def _write_node_config(self, node: NodeHandle) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        t = self.timers
        rest = ""
        if node.rest and node.rest_plain:
            rest = (
                f'\n[rest]\nlisten = "{node.rest[0]}:{node.rest[1]}"\n'
                f'plain_listen = "{node.rest_plain[0]}:{node.rest_plain[1]}"\n'
            )
        peer = self.nodes.get("secondary" if node.role == "primary" else "primary")
        observe = "\n[observe]\n"
        # the status page's peer poll (plain HTTP, loopback)
        if peer is not None and peer.rest_plain is not None:
            observe += f'peer_status_url = "http://{peer.rest_plain[0]}:{peer.rest_plain[1]}"\n'
        observe += self.observe_toml.strip() + "\n" if self.observe_toml.strip() else ""
        if node.ssh is not None:
            rest += (
                f'\n[ssh]\nlisten = ["{node.ssh[0]}:{node.ssh[1]}"]\nhost_key = "{self.host_key}"\n'
                f"write_timeout_s = {self.ssh_write_timeout}\n"
            )
        creds = self.credentials
        write_private(
            node.config,
            f"""# openvsm lab node {node.name}
[node]
name = "{node.name}"
domain_id = {self.domain_id}
role = "{node.role}"
{"" if self.keys else f'secret = "{self.secret}"'}
data_dir = "data"
run_dir = "run"
hostname = "switch"

[tls]
cert = "{creds.cert}"
key = "{creds.key}"

[interfaces.control]
local = "{node.control[0]}:{node.control[1]}"
peer = "{node.peer_control[0]}:{node.peer_control[1]}"

[interfaces.mgmt]
local = "{node.mgmt[0]}:{node.mgmt[1]}"
peer = "{node.peer_mgmt[0]}:{node.peer_mgmt[1]}"

[timers]
heartbeat_interval_ms = {t["heartbeat_interval_ms"]}
max_loss_interval_ms = {t["max_loss_interval_ms"]}
discovery_window_ms = {t["discovery_window_ms"]}

[sync]
buffer_bytes = {self.sync_buffer_bytes}
{observe}
[vem]
listen = "{node.vem[0]}:{node.vem[1]}"
module_limit = {self.module_limit}
{self._keys_toml()}{rest}{self.extra_node_toml}""",
        )

    def proxy_links(self) -> dict[str, Any]:
        """Links of the fault proxy: per interface, both directions of UDP, and TCP
        (sync) in both connection directions."""
        p, s = self.nodes["primary"], self.nodes["secondary"]
        pp, sp = self.proxy_ports["primary"], self.proxy_ports["secondary"]
        links: dict[str, Any] = {"udp": [], "tcp": []}
        for iface in ("control", "mgmt"):
            p_addr = p.control if iface == "control" else p.mgmt
            s_addr = s.control if iface == "control" else s.mgmt
            # primary sends to pp[iface] -> secondary; secondary sends to sp[iface] -> primary
            links["udp"].append(
                {
                    "name": iface,
                    "a": list(p_addr),
                    "a_listen": ["127.0.0.1", sp[iface]],
                    "b": list(s_addr),
                    "b_listen": ["127.0.0.1", pp[iface]],
                }
            )
        links["tcp"].append(
            {
                "name": "control-tcp-p2s",
                "listen": ["127.0.0.1", pp["control"]],
                "target": list(s.control),
            }
        )
        links["tcp"].append(
            {
                "name": "control-tcp-s2p",
                "listen": ["127.0.0.1", sp["control"]],
                "target": list(p.control),
            }
        )
        links["udp"] += self._vem_links
        return links

    # ---- processes ------------------------------------------------------
    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "openvsm", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_proxy(self) -> None:
        if not self.use_proxy or self.proxy_proc is not None:
            return
        cfg = self.root / "proxy.json"
        cfg.write_text(json.dumps(self.proxy_links()))
        self.proxy_proc = self._spawn(
            ["faultproxy", "--control", str(self.proxy_ctl), "--config", str(cfg)],
            self.root / "proxy.log",
        )
        wait_for(lambda: self.proxy("stats") is not None, 15, "fault proxy to start")

    def proxy(self, op: str, **args: Any) -> Any:
        return ipc_call(self.proxy_ctl, op, **args)

    def _links_for(self, iface: str, direction: str) -> list[tuple[str, str]]:
        """(link, proxy direction) pairs for an interface and a node-to-node direction."""
        if direction not in ("both", "p->s", "s->p"):
            raise LabError(f"direction must be both, p->s or s->p, not {direction!r}")
        fwd = {"both": "both", "p->s": "a->b", "s->p": "b->a"}[direction]
        # TCP client->server is a->b: on p2s the primary is the client, on s2p the secondary.
        rev = {"both": "both", "p->s": "b->a", "s->p": "a->b"}[direction]
        links = [(iface, fwd)]
        if iface == "control":
            links += [("control-tcp-p2s", fwd), ("control-tcp-s2p", rev)]
        return links

    def cut(self, iface: str, direction: str = "both") -> None:
        """Drop an interface's traffic between the nodes (UDP and, for control, TCP sync)."""
        for name, d in self._links_for(iface, direction):
            self.proxy("drop", name=name, direction=d)

    def heal(self, iface: str, direction: str = "both") -> None:
        for name, d in self._links_for(iface, direction):
            self.proxy("heal", name=name, direction=d)

    def start_node(self, name: str) -> None:
        node = self.nodes[name]
        if node.pid is not None:
            return
        node.proc = self._spawn(["vsm", "--config", str(node.config)], node.dir / "console.log")

    def kill_node(self, name: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[name]
        if signal_group(node.proc, sig):
            node.proc = None

    def start(self, timeout: float | None = None) -> str:
        """Start everything; returns the name of the active node."""
        self.start_proxy()
        for name in ("primary", "secondary"):
            self.start_node(name)
        active = self.wait_pair(timeout)
        self.configure_defaults(active)
        if self.nvems:
            self.start_vems(self.nvems)
        self.write_lab_json()
        return active

    def wait_pair(self, timeout: float | None = None) -> str:
        if timeout is None:
            timeout = 60.0 if self.timer_profile == "default" else 30.0

        def ready() -> str | None:
            # Both sides must agree: each learns "hot" from its own end of the
            # sync stream, so the active may see it a moment before the standby.
            for name, peer in (("primary", "secondary"), ("secondary", "primary")):
                st = self.status(name)
                if st and st.get("this_sup_internal_state") == "Active with HA standby":
                    other = self.status(peer)
                    if other and other.get("this_sup_internal_state") == "HA standby":
                        return name
            return None

        active: str = wait_for(
            ready, timeout, "the pair to reach 'Active with HA standby' / 'HA standby'"
        )
        return active

    def rundir(self, name: str) -> Path:
        return self.nodes[name].rundir

    def cli(self, name: str, command: str, timeout: float = 15.0) -> dict[str, Any]:
        """Run one CLI line on a node; returns {output, prompt, error}."""
        result: dict[str, Any] = ipc_call(
            RunDir(self.nodes[name].rundir).cfgmgr,
            "cli",
            timeout=timeout,
            line=command,
            session=f"lab-{os.getpid()}",
        )
        return result

    def cli_json(self, name: str, command: str) -> dict[str, Any]:
        res = self.cli(name, command + " | json")
        if res.get("error"):
            raise LabError(f"{name}: {command}: {res.get('output')}")
        data: dict[str, Any] = json.loads(res["output"])
        return data

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            return self.cli_json(name, "show system redundancy status")
        except (IpcError, LabError, OSError, ValueError):
            return None

    def active(self) -> str | None:
        for name in ("primary", "secondary"):
            st = self.status(name)
            if st and st.get("this_sup_rdn_state") == "Active":
                return name
        return None

    def configure_defaults(self, active: str) -> None:
        """Admin user for REST (lab.json carries its password) and a default profile."""
        for line in (
            "configure terminal",
            f"username admin password {self.password} role network-admin",
            "vlan 10",
            "vlan 20",
            "port-profile type vethernet vm-net",
            "switchport mode access",
            "switchport access vlan 10",
            "state enabled",
            "no shutdown",
            "end",
        ):
            res = self.cli(active, line)
            if res.get("error"):
                raise LabError(f"lab default configuration failed at {line!r}: {res.get('output')}")

    def _write_vem_config(
        self, vem: VemHandle, targets: list[tuple[str, int]] | None = None
    ) -> None:
        if targets is None:
            targets = [n.vem for n in self.nodes.values()]
        if vem.metrics is None:
            vem.metrics = ("127.0.0.1", free_port())
        vem.dir.mkdir(parents=True, exist_ok=True)
        write_private(
            vem.config,
            render_vem_toml(self.vem_values(vem, targets), comment=f"openvsm lab VEM {vem.host}"),
        )

    def vem_values(self, vem: VemHandle, targets: list[tuple[str, int]]) -> dict[str, Any]:
        """The ``[vem]`` keys of a lab VEM (``render_vem_toml``); writes its host key
        file first (``vem.key_file``)."""
        key: dict[str, Any] = {"secret": self.secret}
        if self.keys:
            vem.key_file = vem.dir / "host.secret"
            vem.dir.mkdir(parents=True, exist_ok=True)
            write_private(vem.key_file, self.vem_host_key(vem.uuid) + "\n")
            key = {"key_file": vem.key_file.name}
        return {
            "host_uuid": vem.uuid,
            "host_name": vem.host,
            "host_ip": "127.0.0.1",
            "domain_id": self.domain_id,
            **key,
            "local": f"{vem.addr[0]}:{vem.addr[1]}",
            "vsms": [f"{t[0]}:{t[1]}" for t in targets],
            "run_dir": "run",
            "data_dir": "data",
            "backend": "memory",
            "heartbeat_interval_ms": self.timers["vem_heartbeat_ms"],
            "headless_after_ms": self.timers["vem_headless_ms"],
            "metrics_listen": f"{vem.metrics[0]}:{vem.metrics[1]}" if vem.metrics else None,
        }

    def add_vem(self, index: int) -> VemHandle:
        host = f"host-{index}"
        vem = VemHandle(
            host=host,
            uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.root}/{host}")),
            dir=self.root / "vems" / host,
            config=self.root / "vems" / host / "vem.toml",
            addr=("127.0.0.1", free_port()),
        )
        self._write_vem_config(vem)
        self.vems.append(vem)
        return vem

    def start_vem(self, vem: VemHandle) -> None:
        vem.proc = self._spawn(["vem", "--config", str(vem.config)], vem.dir / "console.log")

    def start_vems(self, n: int, ports_per_vem: int = 2, timeout: float = 60.0) -> None:
        new = [self.add_vem(len(self.vems) + 1) for _ in range(n)]
        for vem in new:
            self.start_vem(vem)
        for vem in new:
            self._attach_ports(vem, ports_per_vem, timeout)

        def attached() -> bool:
            active = self.active()
            if active is None:
                return False
            mods = self.cli_json(active, "show module")
            rows = mods.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
            ok = [
                r
                for r in rows
                if r.get("modtype") == "Virtual Ethernet Module" and r.get("status") == "ok"
            ]
            return len(ok) >= len(self.vems)

        wait_for(attached, timeout, f"{len(self.vems)} VEMs to attach")

    def _attach_ports(self, vem: VemHandle, ports_per_vem: int, timeout: float) -> None:
        sock = RunDir(vem.rundir).vem
        # The socket file appears at bind(), a moment before listen(): wait for an
        # answer, not for the file (a connect in between is refused).
        wait_for(lambda: ipc_call(sock, "status"), timeout, f"{vem.host} control socket")
        for i in range(ports_per_vem):
            idx = self.vems.index(vem)
            mac = f"02:00:{idx >> 8 & 0xFF:02x}:{idx & 0xFF:02x}:00:{i & 0xFF:02x}"
            res = ipc_call(
                sock,
                "attach_port",
                vm=f"vm-{vem.host}-{i + 1}",
                port_profile="vm-net",
                mac=mac,
            )
            if isinstance(res, dict) and res.get("name"):
                vem.ports.append(str(res["name"]))

    def kill_vem(self, vem: VemHandle, sig: int = signal.SIGKILL) -> None:
        if signal_group(vem.proc, sig):
            vem.proc = None

    def lab_json(self) -> dict[str, Any]:
        def fmt(addr: tuple[str, int] | None) -> str | None:
            return f"{addr[0]}:{addr[1]}" if addr else None

        nodes = []
        for node in self.nodes.values():
            pid = node.pid
            nodes.append(
                {
                    "name": node.name,
                    "rundir": str(node.rundir),
                    "pid": pid,
                    "pgid": pid,
                    "config": str(node.config),
                    "control": fmt(node.control),
                    "mgmt": fmt(node.mgmt),
                    "vem": fmt(node.vem),
                    "rest": node.rest_url,
                    "rest_plain": node.rest_plain_url,
                    "ca": str(self.credentials.cert),
                    "ssh": fmt(node.ssh),
                }
            )
        vems = []
        for vem in self.vems:
            pid = vem.proc.pid if vem.proc is not None and vem.proc.poll() is None else None
            vems.append(
                {
                    "host": vem.host,
                    "uuid": vem.uuid,
                    "pid": pid,
                    "pgid": pid,
                    "addr": fmt(vem.addr),
                    "rundir": str(vem.rundir),
                    "config": str(vem.config),
                    "metrics": f"http://{vem.metrics[0]}:{vem.metrics[1]}/metrics"
                    if vem.metrics
                    else None,
                }
            )
        return {
            "nodes": nodes,
            "vems": vems,
            "user": "admin",
            "password": self.password,
            "domain_id": self.domain_id,
            "timers": self.timer_profile,
            "proxy": str(self.proxy_ctl) if self.use_proxy else None,
        }

    def write_lab_json(self) -> None:
        write_private(self.root / "lab.json", json.dumps(self.lab_json(), indent=2) + "\n")

    def stop(self) -> None:
        for vem in self.vems:
            self.kill_vem(vem, signal.SIGTERM)
        for name in ("secondary", "primary"):
            self.kill_node(name, signal.SIGTERM)
        if self.proxy_proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proxy_proc.pid, signal.SIGKILL)
            self.proxy_proc.wait(5)
            self.proxy_proc = None

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
