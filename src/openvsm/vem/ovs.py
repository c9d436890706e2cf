"""The ``ovs`` datapath backend: converges Open vSwitch to a ``DesiredState``.

Owns one OVS bridge (``br-int`` by default, userspace datapath) through two
channels: the Open_vSwitch database with ovsdbapp (ports, VLAN columns,
bonds, tunnel interfaces) and OpenFlow rules with ``ovs-ofctl`` (admission,
port security, VXLAN segments). Policy is decided by the VEM core; this
module only makes OVS hold what it is told and reports what it could not do.

Datapath layout (see docs/dataplane.md):

- vEth on a VLAN: an OVS port with ``vlan_mode=access, tag=V`` or
  ``vlan_mode=trunk, trunks=[...]``; forwarded by OVS's NORMAL action
  (MAC learning per VLAN).
- vEth in a VXLAN bridge domain, and the tunnel ports: parked in VLAN 4095
  so NORMAL never floods VLAN traffic to them; our flows forward them:
  table 1 maps the port to its VNI (``tun_id``), table 20 learns source
  MACs into table 30 (``learn``), table 40 floods unknown destinations to the
  local ports of the segment and, for local senders only, to every remote
  VTEP (head-end replication over the unicast flood list; split horizon).
- Uplinks: trunk ports (VLAN 0 = untagged admitted for the VTEP traffic of
  the bridge's own internal port). Port-channels: OVS bonds
  (``balance-tcp`` with LACP, ``balance-slb`` static) holding only the
  members ``lacp.PortChannelSelector`` chose; hot-standby members are removed
  from the bond and admin-downed so the partner sees them go.
- Shut vEth (``enabled=False``) or a vEth with no VLAN/VNI: parked in VLAN
  4095, a drop rule on ingress, and the interface admin-down (the VM sees
  its link go down).
- Port security (``max_macs > 0``): the VM's own MAC is always secure;
  further source MACs seen by NORMAL's MAC table are made secure (sticky) on
  each ``poll``/``apply`` until ``max_macs`` are; from then on a table-0 rule
  drops every other source MAC on that port.

Every flow we own carries a cookie ``0x05e7<48-bit hash of its text>``:
reconciling is a set difference on cookies, so flows that are already right
are never touched and MACs learned by ``learn`` (cookie 0) survive. OVSDB
rows are only written when a column differs, so an agent restart converges
without flapping ports (ofport and interface UUID unchanged).

``apply`` and ``poll`` never raise: every failure (OVS not running, a device
missing, a bad port) is returned as a human-readable error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from openvsm.vem.lacp import (
    LacpConfigError,
    LacpCounters,
    MemberStatus,
    PartnerInfo,
    PortChannelSelector,
    channel_info,
    counter_rows,
    member_configs,
    neighbor_rows,
    summary_rows,
)
from openvsm.vem.model import (
    DesiredState,
    Egress,
    PortChannelState,
    Probe,
    VethState,
    forwarding,
    segment_errors,
    uplink_trunks,
    veth_errors,
    vxlan_peers,
    vxlan_port_name,
)
from openvsm.wire.messages import PortChannelInfo

PARK_VLAN = 4095  # never valid on the wire: ports here get nothing from NORMAL
COOKIE_TAG = 0x05E7
COOKIE_SHIFT = 48
COOKIE_FILTER = f"cookie={COOKIE_TAG << COOKIE_SHIFT:#x}/{0xFFFF << COOKIE_SHIFT:#x}"
T_ADMIT, T_CLASSIFY, T_LEARN, T_MACS, T_OUT = 0, 1, 20, 30, 40
KIND = "openvsm-kind"
STATE = "openvsm-state"


class OvsError(Exception):
    """A datapath operation failed (carries the human-readable reason)."""


@dataclass(frozen=True)
class IfaceSpec:
    name: str
    type: str = ""
    options: dict[str, str] = field(default_factory=dict)
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PortSpec:
    """The OVSDB Port row (and its Interfaces) one desired object becomes."""

    name: str
    kind: str  # veth | uplink | port-channel | vxlan
    interfaces: tuple[IfaceSpec, ...]
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    bond_mode: str | None = None
    lacp: str | None = None
    other_config: dict[str, str] = field(default_factory=dict)
    state: str = ""  # JSON of the model object, for observed()


def _veth_errors(port: VethState) -> list[str]:
    errors: list[str] = []
    if not port.name or len(port.name) > 15 or "/" in port.name or " " in port.name:
        errors.append(f"port name {port.name!r} is invalid (1-15 characters)")
    return errors + veth_errors(port)


def veth_spec(port: VethState) -> PortSpec:
    state = msgspec.json.encode(port).decode()
    iface = (IfaceSpec(name=port.name),)
    if not forwarding(port) or port.vni:
        return PortSpec(port.name, "veth", iface, tag=PARK_VLAN, vlan_mode="access", state=state)
    if port.mode == "trunk":
        return PortSpec(
            port.name, "veth", iface, trunks=tuple(sorted(port.trunk_vlans)), vlan_mode="trunk",
            state=state,
        )  # fmt: skip
    return PortSpec(port.name, "veth", iface, tag=port.access_vlan, vlan_mode="access", state=state)


def port_channel_spec(pc: PortChannelState, active: Sequence[str]) -> PortSpec:
    prio = dict(pc.port_priorities)
    numbers = {m: i + 1 for i, m in enumerate(pc.members)}
    ifaces = tuple(
        IfaceSpec(
            name=m,
            other_config={
                "lacp-port-id": str(numbers[m]),
                "lacp-port-priority": str(prio.get(m, 32768)),
            },
        )
        for m in pc.members
        if m in active
    )
    other = {"bond-detect-mode": "carrier", "bond-rebalance-interval": "1000"}
    if pc.lacp_mode:
        other["lacp-time"] = "fast"
    return PortSpec(
        name=f"po{pc.number}",
        kind="port-channel",
        interfaces=ifaces,
        trunks=uplink_trunks(pc.trunk_vlans),
        vlan_mode="trunk",
        bond_mode="balance-tcp" if pc.lacp_mode else "balance-slb",
        lacp=pc.lacp_mode or "off",
        other_config=other,
        state=msgspec.json.encode(pc).decode(),
    )


def vxlan_spec(remote_ip: str, local_ip: str) -> PortSpec:
    options = {"remote_ip": remote_ip, "key": "flow"}
    if local_ip:
        options["local_ip"] = local_ip
    name = vxlan_port_name(remote_ip)
    return PortSpec(
        name,
        "vxlan",
        (IfaceSpec(name=name, type="vxlan", options=options),),
        tag=PARK_VLAN,
        vlan_mode="access",
        state=json.dumps(remote_ip),
    )


def _valid_ports(desired: DesiredState, errors: list[str]) -> tuple[list[VethState], list[int]]:
    """The vEths OVS can hold (the others are errors) and the configured VNIs."""
    ports: list[VethState] = []
    seen: set[str] = set()
    for port in desired.ports:
        bad = _veth_errors(port)
        if port.name in seen:
            bad.append(f"{port.name}: duplicate port name")
        if bad:
            errors += bad
            continue
        seen.add(port.name)
        ports.append(port)
    vnis = sorted({v for v in desired.vnis if 4096 <= v <= 16000000})
    errors += segment_errors(ports, vnis)
    return ports, vnis


def _vxlan_specs(desired: DesiredState, errors: list[str]) -> tuple[list[str], list[PortSpec]]:
    """The remote VTEPs and their tunnel ports."""
    peers = vxlan_peers(desired, errors)
    return peers, [vxlan_spec(p, desired.local_vtep) for p in peers]


def _missing_devices(specs: Sequence[PortSpec], links: dict[str, dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    for spec in specs:
        if spec.kind == "port-channel":
            errors += [
                f"{spec.name}: member {i.name} does not exist"
                for i in spec.interfaces
                if i.name not in links
            ]
        elif spec.kind in ("veth", "uplink") and spec.name not in links:
            errors.append(f"{spec.name}: no such network device")
    return errors


def _ofports(snap: dict[str, Any], errors: list[str]) -> dict[str, int]:
    """Interface name -> OpenFlow port; interfaces OVS could not open are errors."""
    ofports: dict[str, int] = {}
    for pname, prow in snap["ports"].items():
        for iname, irow in prow["interfaces"].items():
            if irow["ofport"] > 0:
                ofports[iname] = irow["ofport"]
            elif irow["error"] and prow["external_ids"].get(KIND):
                errors.append(f"{pname}: interface {iname}: {irow['error']}")
    return ofports


def _top_level(actions: str) -> list[str]:
    """Datapath actions split on the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(actions):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(actions[start:i])
            start = i + 1
    parts.append(actions[start:])
    return [p.strip() for p in parts if p.strip()]


def trace_egress(
    text: str, dpif: str, bonds: str, snap: dict[str, Any], vlan: int, bridge: str
) -> frozenset[Egress]:
    """Where an ``ofproto/trace`` says the frame leaves: datapath outputs (802.1Q
    tag as pushed/popped, a bond's recirculation as the bond, members as their
    bond) and OpenFlow outputs to VXLAN ports (the tag is the VNI)."""
    owner = {i: name for name, row in snap["ports"].items() for i in row["interfaces"]}
    ofport = {
        irow["ofport"]: iname
        for row in snap["ports"].values()
        if row["external_ids"].get(KIND) == "vxlan"
        for iname, irow in row["interfaces"].items()
    }
    dp: dict[int, str] = {
        int(m[3]): m[1] for m in re.finditer(r"^\s+(\S+) (\d+)/(\d+):", dpif, re.M)
    }
    recirc: dict[int, str] = {}
    for section in re.split(r"^(?=---- )", bonds, flags=re.M):
        m = re.match(r"---- (\S+) ----.*?Recirc-ID : (\d+|0x[0-9a-f]+)\b", section, re.S)
        if m:
            recirc[int(m[2], 0)] = m[1]
    out: set[Egress] = set()
    tun = re.search(r"^Final flow:.*?\btun_id=(0x[0-9a-f]+|\d+)", text, re.M)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"\s*output:(\d+)", line)
        skipped = i + 1 < len(lines) and "skipping output" in lines[i + 1]
        if m and not skipped and int(m[1]) in ofport:
            out.add((ofport[int(m[1])], int(tun[1], 0) if tun else 0))
    actions = re.search(r"^Datapath actions: (.*)$", text, re.M)
    for action in _top_level(actions[1] if actions else ""):
        if (m := re.match(r"push_vlan\(vid=(\d+)", action)) is not None:
            vlan = int(m[1])
        elif action == "pop_vlan":
            vlan = 0
        elif action.isdigit() and int(action) in dp:
            out.add((owner.get(dp[int(action)], dp[int(action)]), vlan))
        elif (m := re.fullmatch(r"recirc\((\w+)\)", action)) and int(m[1], 0) in recirc:
            out.add((recirc[int(m[1], 0)], vlan))
    return frozenset(e for e in out if e[0] != bridge)


# -- flows --------------------------------------------------------------------


def flow_cookie(text: str) -> int:
    digest = int.from_bytes(hashlib.sha1(text.encode()).digest()[:6], "big")
    return (COOKIE_TAG << COOKIE_SHIFT) | digest


def build_flows(
    ports: Sequence[VethState],
    ofports: dict[str, int],
    tunnels: dict[str, int],
    vnis: Sequence[int],
    secure: dict[str, list[str]],
) -> list[str]:
    """The whole OpenFlow table we own, as ovs-ofctl flow texts (no cookies)."""
    flows = [
        f"table={T_ADMIT},priority=0,actions=resubmit(,{T_CLASSIFY})",
        f"table={T_CLASSIFY},priority=0,actions=NORMAL",
        f"table={T_OUT},priority=50,actions=output:NXM_NX_REG7[0..15]",
    ]
    locals_by_vni: dict[int, list[int]] = {v: [] for v in vnis}
    for port in ports:
        n = ofports.get(port.name)
        if n is None:
            continue
        if not forwarding(port) or (port.vni and port.vni not in locals_by_vni):
            flows.append(f"table={T_ADMIT},priority=300,in_port={n},actions=drop")
            continue
        if port.max_macs > 0:
            macs = secure.get(port.name, [port.mac.lower()])
            for mac in macs:
                flows.append(
                    f"table={T_ADMIT},priority=200,in_port={n},dl_src={mac},"
                    f"actions=resubmit(,{T_CLASSIFY})"
                )
            if len(macs) >= port.max_macs:
                flows.append(f"table={T_ADMIT},priority=190,in_port={n},actions=drop")
        if port.vni:
            locals_by_vni[port.vni].append(n)
            flows.append(
                f"table={T_CLASSIFY},priority=100,in_port={n},"
                f"actions=set_field:{port.vni}->tun_id,resubmit(,{T_LEARN})"
            )
            flows.append(
                f"table={T_MACS},priority=200,tun_id={port.vni},dl_dst={port.mac.lower()},"
                f"actions=load:{n}->NXM_NX_REG7[0..15]"
            )
    for x in sorted(tunnels.values()):
        flows.append(f"table={T_CLASSIFY},priority=90,in_port={x},actions=drop")
        flows.append(f"table={T_OUT},priority=60,reg6=1,reg7={x},actions=drop")
        for vni in vnis:
            flows.append(
                f"table={T_CLASSIFY},priority=100,in_port={x},tun_id={vni},"
                f"actions=load:1->NXM_NX_REG6[],resubmit(,{T_LEARN})"
            )
    learn = (
        f"learn(table={T_MACS},idle_timeout=300,priority=100,NXM_NX_TUN_ID[],"
        "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG7[0..15])"
    )
    for vni, local in sorted(locals_by_vni.items()):
        flows.append(
            f"table={T_LEARN},priority=100,tun_id={vni},"
            f"actions={learn},resubmit(,{T_MACS}),resubmit(,{T_OUT})"
        )
        to_local = ",".join(f"output:{n}" for n in sorted(local)) or "drop"
        to_all = ",".join(f"output:{n}" for n in [*sorted(local), *sorted(tunnels.values())])
        flows.append(f"table={T_OUT},priority=110,reg6=1,reg7=0,tun_id={vni},actions={to_local}")
        flows.append(f"table={T_OUT},priority=100,reg7=0,tun_id={vni},actions={to_all or 'drop'}")
    return flows


# -- OVSDB commands -------------------------------------------------------------

try:  # ovsdbapp is an optional dependency (extra "ovs")
    from ovsdbapp.backend.ovs_idl import command as _ovs_command
    from ovsdbapp.backend.ovs_idl import connection as _ovs_connection
    from ovsdbapp.backend.ovs_idl import idlutils as _idlutils
    from ovsdbapp.schema.open_vswitch import impl_idl as _impl_idl

    _BaseCommand: Any = _ovs_command.BaseCommand
except ImportError:  # pragma: no cover - reported by OvsBackend.start
    _ovs_connection = _idlutils = _impl_idl = None
    _BaseCommand = object


def _set(row: Any, column: str, value: Any) -> bool:
    try:
        current = getattr(row, column)
    except AttributeError:  # a row inserted in this transaction
        current = None
    if current != value:
        setattr(row, column, value)
        return True
    return False


class _Converge(_BaseCommand):  # type: ignore[misc]
    """One OVSDB transaction: make the bridge's rows match the specs, touch nothing else."""

    def __init__(self, api: Any, bridge: str, specs: list[PortSpec], ext: dict[str, str]) -> None:
        super().__init__(api)
        self.bridge = bridge
        self.specs = specs
        self.ext = ext
        self.changes: list[str] = []

    def run_idl(self, txn: Any) -> None:
        tables = self.api._tables
        br = _idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge, None)
        if br is None:
            br = txn.insert(tables["Bridge"])
            br.name = self.bridge
            local = txn.insert(tables["Interface"])
            local.name = self.bridge
            local.type = "internal"
            lport = txn.insert(tables["Port"])
            lport.name = self.bridge
            lport.interfaces = [local]
            br.ports = [lport]
            self.api._ovs.addvalue("bridges", br)
            self.changes.append(f"bridge {self.bridge} created")
        if _set(br, "datapath_type", "netdev"):
            self.changes.append("datapath_type")
        ext = dict(br.external_ids)
        ext.update(self.ext)
        if _set(br, "external_ids", ext):
            self.changes.append("bridge external_ids")
        existing = {p.name: p for p in br.ports}
        wanted = {s.name for s in self.specs}
        for name, port in existing.items():
            if port.external_ids.get(KIND) and name not in wanted:
                br.delvalue("ports", port)
                self.changes.append(f"{name} removed")
        for spec in self.specs:
            port = existing.get(spec.name)
            if port is None:
                port = txn.insert(tables["Port"])
                port.name = spec.name
                br.addvalue("ports", port)
                self.changes.append(f"{spec.name} added")
                current: dict[str, Any] = {}
            else:
                current = {i.name: i for i in port.interfaces}
            ifaces = []
            for ispec in spec.interfaces:
                iface = current.get(ispec.name)
                if iface is None:
                    iface = txn.insert(tables["Interface"])
                    iface.name = ispec.name
                    txn.expected_ifaces.add(iface.uuid)
                    self.changes.append(f"{spec.name}: interface {ispec.name} added")
                for column, value in (
                    ("type", ispec.type),
                    ("options", ispec.options),
                    ("other_config", ispec.other_config),
                ):
                    if _set(iface, column, value):
                        self.changes.append(f"{ispec.name}: {column}")
                ifaces.append(iface)
            if {i.uuid for i in ifaces} != {i.uuid for i in current.values()} or not current:
                port.interfaces = ifaces
            columns: tuple[tuple[str, Any], ...] = (
                ("tag", [spec.tag] if spec.tag is not None else []),
                ("trunks", list(spec.trunks)),
                ("vlan_mode", [spec.vlan_mode] if spec.vlan_mode else []),
                ("bond_mode", [spec.bond_mode] if spec.bond_mode else []),
                ("lacp", [spec.lacp] if spec.lacp else []),
                ("other_config", spec.other_config),
                ("external_ids", {KIND: spec.kind, STATE: spec.state}),
            )
            for column, value in columns:
                if _set(port, column, value):
                    self.changes.append(f"{spec.name}: {column}")


class _Snapshot(_BaseCommand):  # type: ignore[misc]
    """Read the bridge's ports and interfaces into plain data (no transaction)."""

    READ_ONLY = True

    def __init__(self, api: Any, bridge: str) -> None:
        super().__init__(api)
        self.bridge = bridge

    def run_idl(self, txn: Any) -> None:
        br = _idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge, None)
        if br is None:
            self.result = None
            return
        ports = {}
        for p in br.ports:
            ports[p.name] = {
                "uuid": str(p.uuid),
                "external_ids": dict(p.external_ids),
                "tag": list(p.tag),
                "trunks": list(p.trunks),
                "vlan_mode": list(p.vlan_mode),
                "interfaces": {
                    i.name: {
                        "uuid": str(i.uuid),
                        "ofport": (list(i.ofport) or [-1])[0],
                        "error": (list(i.error) or [""])[0],
                        "admin_state": (list(i.admin_state) or [""])[0],
                        "link_state": (list(i.link_state) or [""])[0],
                        "lacp_current": (list(i.lacp_current) or [False])[0],
                        "options": dict(i.options),
                    }
                    for i in p.interfaces
                },
            }
        self.result = {"external_ids": dict(br.external_ids), "ports": ports}


# -- the backend ----------------------------------------------------------------


class OvsBackend:
    """Converges one OVS bridge to the VEM's desired state (Backend protocol)."""

    name = "ovs"

    def __init__(
        self,
        bridge: str = "br-int",
        ovsdb: str = "unix:/var/run/openvswitch/db.sock",
        uplinks: Sequence[str] = (),
        *,
        rundir: str | None = None,
        netns: str | None = None,
        timeout: float = 10.0,
        promote_timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rundir``: where ovs-vswitchd keeps ``<bridge>.mgmt`` and its control
        socket (default: the directory of a ``unix:`` ovsdb socket).
        ``netns``: the network namespace holding the bridge's devices (None:
        ours); used to hold LACP standby links down and read link state."""
        self.bridge = bridge
        self.ovsdb = ovsdb
        self.uplinks = tuple(uplinks)
        if rundir is None and ovsdb.startswith("unix:"):
            rundir = os.path.dirname(ovsdb[5:])
        self.rundir = rundir or "/var/run/openvswitch"
        self.netns = netns
        self.timeout = timeout
        self.promote_timeout = promote_timeout
        self.clock = clock
        self._api: Any = None
        self._conn: Any = None
        self._desired = DesiredState()
        self._selectors: dict[int, tuple[PortChannelState, PortChannelSelector]] = {}
        self._secure: dict[str, list[str]] = {}
        self.changes: list[str] = []  # OVSDB/flow changes of the last converge (for tests)
        self.flow_changes = 0

    # -- lifecycle --

    def start(self) -> None:
        """Connect to OVSDB; a failure is kept and reported by the next ``apply``."""
        try:
            self._connect()
        except OvsError:
            pass

    def stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.stop(timeout=self.timeout)
            except Exception:  # pragma: no cover - teardown of a dead connection
                pass
        self._conn = None
        self._api = None

    def _connect(self) -> None:
        if self._api is not None:
            return
        if _impl_idl is None:
            raise OvsError("ovsdbapp is not installed (pip install 'openvsm[ovs]')")
        if self.ovsdb.startswith("unix:") and not os.path.exists(self.ovsdb[5:]):
            raise OvsError(f"OVS is not running: ovsdb socket {self.ovsdb[5:]} does not exist")
        try:
            helper = _idlutils.get_schema_helper(self.ovsdb, "Open_vSwitch")
            helper.register_all()
            idl = _ovs_connection.OvsdbIdl(self.ovsdb, helper)
            conn = _ovs_connection.Connection(idl=idl, timeout=self.timeout)
            # ovsdbapp keeps the connection in a class attribute: one subclass per
            # backend, or every backend in a process would talk to the first OVS.
            api_class = type(
                "OvsdbIdlOneBridge", (_impl_idl.OvsdbIdl,), {"_ovsdb_connection": None}
            )
            api = api_class(conn)
        except Exception as exc:
            raise OvsError(f"OVS is not reachable at {self.ovsdb}: {exc}") from exc
        self._conn, self._api = conn, api

    def _reset(self) -> None:
        self.stop()

    # -- helpers around the OVS tools --

    def _tool(self, argv: list[str], stdin: str | None = None) -> str:
        env = dict(os.environ, OVS_RUNDIR=self.rundir)
        try:
            result = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, env=env, timeout=self.timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OvsError(f"{argv[0]}: {exc}") from exc
        if result.returncode != 0:
            raise OvsError(f"{' '.join(argv[:3])}: {result.stderr.strip()}")
        return result.stdout

    def _ofctl(
        self, command: str, *args: str, options: Sequence[str] = (), stdin: str | None = None
    ) -> str:
        target = f"unix:{self.rundir}/{self.bridge}.mgmt"
        return self._tool(["ovs-ofctl", *options, command, target, *args], stdin)

    def appctl(self, *args: str) -> str:
        ctl = os.path.join(self.rundir, "ovs-vswitchd.ctl")
        target = ctl if os.path.exists(ctl) else "ovs-vswitchd"
        return self._tool(["ovs-appctl", "-t", target, *args])

    def _ip(self, *args: str) -> str:
        prefix = ["ip", "-n", self.netns] if self.netns else ["ip"]
        return self._tool([*prefix, *args])

    def _links(self) -> dict[str, dict[str, Any]]:
        out = self._ip("-j", "link", "show")
        return {link["ifname"]: link for link in json.loads(out or "[]")}

    def _snapshot(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = _Snapshot(self._api, self.bridge).execute(
            check_error=True, log_errors=False
        )
        return result

    # -- Backend protocol --

    def apply(self, desired: DesiredState) -> list[str]:
        """Converge to ``desired``; return human-readable errors (never raises)."""
        self._desired = desired
        return self._converge()

    def poll(self) -> list[str]:
        """Re-run selection (LACP member health) and port-security learning."""
        return self._converge(learn=True)

    def _converge(self, learn: bool = False) -> list[str]:
        errors: list[str] = []
        try:
            self._connect()
            self._converge_ovs(errors, learn)
        except OvsError as exc:
            errors.append(str(exc))
            self._reset()
        except Exception as exc:
            errors.append(f"OVS at {self.ovsdb}: {type(exc).__name__}: {exc}")
            self._reset()
        return errors

    def _converge_ovs(self, errors: list[str], learn: bool) -> None:
        desired = self._desired
        ports, vnis = _valid_ports(desired, errors)
        links = self._links()
        specs = [veth_spec(p) for p in ports]
        channel_specs, held, released = self._uplink_specs(desired, links, errors)
        peers, tunnel_specs = _vxlan_specs(desired, errors)
        specs += channel_specs + tunnel_specs
        for name in released:  # members going into the bond must be up first
            if name in links and "UP" not in links[name].get("flags", []):
                self._link(name, "up", errors)
        errors += _missing_devices(specs, links)
        ext = {"openvsm-vnis": json.dumps(vnis), "openvsm-local-vtep": desired.local_vtep}
        converge = _Converge(self._api, self.bridge, specs, ext)
        with self._api.transaction(check_error=True, log_errors=False) as txn:
            txn.add(converge)
        self.changes = converge.changes
        for name in held:  # out of the bond: now hold it down so the partner sees it go
            if name in links and "UP" in links[name].get("flags", []):
                self._link(name, "down", errors)
        snap = self._snapshot()
        if snap is None:
            raise OvsError(f"bridge {self.bridge} vanished")
        ofports = _ofports(snap, errors)
        tunnels = {p: ofports[vxlan_port_name(p)] for p in peers if vxlan_port_name(p) in ofports}
        if learn:
            self._learn_secure_macs(ports, ofports, errors)
        self._sync_secure(ports)
        self._sync_flows(build_flows(ports, ofports, tunnels, vnis, self._secure))
        self._sync_admin_state(ports, snap, ofports)

    def _uplink_specs(
        self, desired: DesiredState, links: dict[str, dict[str, Any]], errors: list[str]
    ) -> tuple[list[PortSpec], list[str], list[str]]:
        """Port-channels (members the selector chose) and plain uplinks; the members
        to hold down (hot standby) and those to bring up."""
        specs: list[PortSpec] = []
        members_in_channels: set[str] = set()
        held: list[str] = []
        released: list[str] = []
        for pc in desired.port_channels:
            members_in_channels.update(pc.members)
            selection = self._select(pc, links, errors)
            if selection is None:
                continue
            active, standby, down = selection
            held += standby
            released += [*active, *down]
            if active:
                specs.append(port_channel_spec(pc, active))
        for number in set(self._selectors) - {pc.number for pc in desired.port_channels}:
            del self._selectors[number]
        for uplink in self.uplinks:
            if uplink not in members_in_channels:
                specs.append(
                    PortSpec(uplink, "uplink", (IfaceSpec(uplink),), vlan_mode="trunk", state="{}")
                )
                released.append(uplink)
        return specs, held, released

    def _sync_admin_state(
        self, ports: Sequence[VethState], snap: dict[str, Any], ofports: dict[str, int]
    ) -> None:
        """Shut vEths admin-down, the rest up (only on change)."""
        for port in ports:
            iface = snap["ports"].get(port.name, {}).get("interfaces", {}).get(port.name)
            n = ofports.get(port.name)
            if iface is None or n is None:
                continue
            want = "up" if port.enabled else "down"
            if iface["admin_state"] != want:
                self._ofctl("mod-port", str(n), want)

    def _link(self, name: str, state: str, errors: list[str]) -> None:
        try:
            self._ip("link", "set", "dev", name, state)
        except OvsError as exc:
            errors.append(f"{name}: link {state}: {exc}")

    def _select(
        self, pc: PortChannelState, links: dict[str, dict[str, Any]], errors: list[str]
    ) -> tuple[list[str], list[str], list[str]] | None:
        entry = self._selectors.get(pc.number)
        if entry is None or entry[0] != pc:
            try:
                selector = PortChannelSelector(
                    pc.number,
                    member_configs(pc.members, pc.port_priorities),
                    pc.lacp_mode,
                    promote_timeout=self.promote_timeout,
                )
            except LacpConfigError as exc:
                errors.append(f"port-channel{pc.number}: {exc}")
                return None
            self._selectors[pc.number] = (pc, selector)
        else:
            selector = entry[1]
        statuses = self._member_statuses(pc, links)
        sel = selector.update(self.clock(), statuses)
        return list(sel.active), list(sel.standby), list(sel.down)

    def _member_statuses(
        self, pc: PortChannelState, links: dict[str, dict[str, Any]]
    ) -> dict[str, MemberStatus]:
        lacp = self._lacp_show(f"po{pc.number}") if pc.lacp_mode else {}
        stats = self._lacp_stats(f"po{pc.number}") if pc.lacp_mode else {}
        statuses = {}
        for m in pc.members:
            link = links.get(m)
            flags = link.get("flags", []) if link else []
            up = bool(link) and "UP" in flags and "LOWER_UP" in flags
            info = lacp.get(m, {})
            statuses[m] = MemberStatus(
                name=m,
                link_up=up,
                lacp_current=info.get("status", "").startswith("current"),
                partner=info.get("partner"),
                counters=stats.get(m, LacpCounters()),
            )
        return statuses

    def _lacp_show(self, port: str) -> dict[str, dict[str, Any]]:
        try:
            text = self.appctl("lacp/show", port)
        except OvsError:
            return {}
        members: dict[str, dict[str, Any]] = {}
        current: dict[str, Any] | None = None
        partner: dict[str, str] = {}

        def close() -> None:
            if current is not None and partner:
                current["partner"] = PartnerInfo(
                    system_id=partner.get("sys_id", ""),
                    system_priority=_int(partner.get("sys_priority")),
                    port_number=_int(partner.get("port_id")),
                    port_priority=_int(partner.get("port_priority")),
                    key=_int(partner.get("key")),
                    state=partner.get("state", ""),
                )

        for raw in text.splitlines():
            line = raw.strip()
            m = re.match(r"(?:member|slave): (\S+): (.*)", line)
            if m:
                close()
                current = members.setdefault(m.group(1), {"status": m.group(2)})
                partner = {}
                continue
            m = re.match(r"partner (\w+): (.*)", line)
            if m and current is not None:
                partner[m.group(1)] = m.group(2).strip()
        close()
        return members

    def _lacp_stats(self, port: str) -> dict[str, LacpCounters]:
        try:
            text = self.appctl("lacp/show-stats", port)
        except OvsError:
            return {}
        out: dict[str, LacpCounters] = {}
        name = ""
        values: dict[str, int] = {}
        for raw in text.splitlines():
            line = raw.strip()
            m = re.match(r"(?:member|slave): (\S+):", line)
            if m:
                if name:
                    out[name] = _counters(values)
                name, values = m.group(1), {}
                continue
            m = re.match(r"([A-Za-z ]+):\s*(\d+)", line)
            if m and name:
                values[m.group(1).strip().lower()] = int(m.group(2))
        if name:
            out[name] = _counters(values)
        return out

    def _learn_secure_macs(
        self, ports: Sequence[VethState], ofports: dict[str, int], errors: list[str]
    ) -> None:
        watch = {ofports[p.name]: p for p in ports if p.max_macs > 1 and p.name in ofports}
        if not watch:
            return
        try:
            text = self.appctl("fdb/show", self.bridge)
        except OvsError as exc:
            errors.append(str(exc))
            return
        for line in text.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 3 or not parts[0].isdigit():
                continue
            port = watch.get(int(parts[0]))
            if port is None:
                continue
            macs = self._secure.setdefault(port.name, [port.mac.lower()])
            mac = parts[2].lower()
            if mac not in macs and len(macs) < port.max_macs:
                macs.append(mac)

    def _sync_secure(self, ports: Sequence[VethState]) -> None:
        wanted = {p.name: p for p in ports if p.max_macs > 0}
        for name in list(self._secure):
            if name not in wanted:
                del self._secure[name]
        for name, port in wanted.items():
            macs = self._secure.get(name, [])
            mac = port.mac.lower()
            macs = [mac, *[m for m in macs if m != mac]][: port.max_macs]
            self._secure[name] = macs

    def _sync_flows(self, flows: Sequence[str]) -> None:
        wanted = {flow_cookie(f): f for f in flows}
        dump = self._ofctl("dump-flows", "--no-stats", COOKIE_FILTER)
        present = {int(m.group(1), 16) for m in re.finditer(r"cookie=(0x[0-9a-f]+)", dump)}
        lines = [f"delete cookie={c:#x}/-1" for c in sorted(present - set(wanted))]
        lines += [f"add cookie={c:#x},{f}" for c, f in wanted.items() if c not in present]
        if lines:
            self._ofctl("add-flows", "-", options=("--bundle",), stdin="\n".join(lines) + "\n")
            self.flow_changes += len(lines)
            self.changes.append(f"{len(lines)} flow changes")

    def observed(self) -> DesiredState:
        """What OVS holds now (empty when OVS is unreachable)."""
        try:
            self._connect()
            snap = self._snapshot()
        except Exception:
            self._reset()
            return DesiredState()
        if snap is None:
            return DesiredState()
        ports: list[VethState] = []
        peers: list[str] = []
        for _name, prow in sorted(snap["ports"].items()):
            kind = prow["external_ids"].get(KIND)
            state = prow["external_ids"].get(STATE, "")
            try:
                if kind == "veth":
                    veth = msgspec.json.decode(state, type=VethState)
                    if prow["vlan_mode"] == ["trunk"]:
                        veth = msgspec.structs.replace(
                            veth, mode="trunk", trunk_vlans=tuple(prow["trunks"])
                        )
                    elif prow["tag"] and prow["tag"] != [PARK_VLAN]:
                        veth = msgspec.structs.replace(veth, access_vlan=prow["tag"][0])
                    ports.append(veth)
                elif kind == "vxlan":
                    iface: dict[str, Any] = next(iter(prow["interfaces"].values()), {})
                    peers.append(iface.get("options", {}).get("remote_ip", json.loads(state)))
            except (msgspec.DecodeError, ValueError):
                continue
        ext = snap["external_ids"]
        try:
            vnis = tuple(json.loads(ext.get("openvsm-vnis", "[]")))
        except ValueError:
            vnis = ()
        channels = tuple(pc for pc, _ in (self._selectors[n] for n in sorted(self._selectors)))
        if not channels:
            found = []
            for prow in snap["ports"].values():
                if prow["external_ids"].get(KIND) == "port-channel":
                    try:
                        found.append(
                            msgspec.json.decode(prow["external_ids"][STATE], type=PortChannelState)
                        )
                    except msgspec.DecodeError:
                        continue
            channels = tuple(sorted(found, key=lambda pc: pc.number))
        return DesiredState(
            ports=tuple(ports),
            port_channels=channels,
            vxlan_peers=tuple(sorted(peers)),
            vnis=vnis,
            local_vtep=ext.get("openvsm-local-vtep", ""),
        )

    # -- what the datapath does (the Observable protocol) --

    def trace(self, probe: Probe) -> frozenset[Egress]:
        """``ofproto/trace`` of ``probe`` on the bridge (empty: dropped, or OVS not
        reachable, or no such port)."""
        flow = f"in_port={probe.in_port},dl_src={probe.src},dl_dst={probe.dst}"
        flow += f",dl_vlan={probe.vlan}" if probe.vlan else ""
        flow += f",tun_id={probe.vni}" if probe.vni else ""
        try:
            self._connect()
            snap = self._snapshot()
            if snap is None:
                return frozenset()
            text = self.appctl("ofproto/trace", self.bridge, flow)
            dpif = self.appctl("dpif/show")
            bonds = self.appctl("bond/show")
        except OvsError:
            return frozenset()
        except Exception:
            self._reset()
            return frozenset()
        return trace_egress(text, dpif, bonds, snap, probe.vlan, self.bridge)

    def admin_up(self, name: str) -> bool | None:
        try:
            self._connect()
            snap = self._snapshot()
        except Exception:
            self._reset()
            return None
        iface = (snap or {}).get("ports", {}).get(name, {}).get("interfaces", {}).get(name)
        return None if iface is None else iface["admin_state"] == "up"

    def bundle(self, number: int) -> tuple[str, ...]:
        try:
            text = self.appctl("bond/show", f"po{number}")
        except OvsError:
            return ()
        return tuple(sorted(re.findall(r"^member (\S+): enabled", text, re.M)))

    # -- show data --

    def channel_infos(self) -> list[PortChannelInfo]:
        """Port-channels of the desired state with member and LACP partner state."""
        wanted = {pc.number for pc in self._desired.port_channels}
        return [channel_info(sel) for n, (_, sel) in sorted(self._selectors.items()) if n in wanted]

    def port_channel_summary(self) -> dict[str, Any]:
        """``show port-channel summary`` data (openvsm.cli.views shapes)."""
        return {"TABLE_channel": {"ROW_channel": summary_rows(self.channel_infos())}}

    def lacp_neighbors(self) -> dict[str, Any]:
        return {"TABLE_lacp_neighbor": {"ROW_lacp_neighbor": neighbor_rows(self.channel_infos())}}

    def lacp_counters(self) -> dict[str, Any]:
        return {"TABLE_lacp_counters": {"ROW_lacp_counters": counter_rows(self.channel_infos())}}

    def selector(self, number: int) -> PortChannelSelector | None:
        entry = self._selectors.get(number)
        return entry[1] if entry else None


def _int(text: str | None) -> int:
    try:
        return int(text or "0", 0)
    except ValueError:
        return 0


def _counters(values: dict[str, int]) -> LacpCounters:
    return LacpCounters(
        pdus_sent=values.get("tx pdus", 0),
        pdus_received=values.get("rx pdus", 0),
        pdus_errors=values.get("rx bad pdus", 0),
        markers_sent=values.get("tx marker pdus", 0),
        markers_received=values.get("rx marker pdus", 0),
    )
