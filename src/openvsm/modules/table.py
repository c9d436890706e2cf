"""Sans-IO module table of the VSM (vemmgr core, DESIGN §5).

Owns the VEM modules seen by this VSM: module numbers, attach/detach, VEM
heartbeats, status, per-module counters, vEth numbering, and the
configuration snapshot each VEM needs. Frames and time go in; effects come
out as data: ``Send`` (a frame to a VEM), ``Commit`` (store operations for
cfgmgr, so ``module`` and ``veth`` objects are replicated to the standby and
survive a switchover), ``ModuleCount`` (for hamgr's split-brain resolution)
and ``Trace``.

Module status (this VSM's view, ``ModuleStatus``)::

    (new) | offline --attach--> powered-up --the VEM's first heartbeat--> ok
    ok | headless (inherited) --became_active (takeover)--> powered-up
    powered-up --a VEM heartbeat (it took this VSM's ack)--> ok
    ok --attach again (same VEM, same address)--> ok
    powered-up --no attach or heartbeat for loss_time after the takeover--> offline
    ok --no VEM heartbeat for loss_time--> offline
    ok | powered-up --VemDetach (the VEM switched to another VSM)--> offline

Attached means attached (seed, split-brain "Module count -- the number of
modules that are attached to the VSM"): a module is ``ok`` on this VSM only
once its VEM has attached to, or exchanged heartbeats with, this VSM since
it became active. An attach alone is not enough: a VEM that is booting or
headless sends its attach to every VSM it knows and takes the first ack;
the VEM heartbeats at once the VSM whose ack it took, and answers any other
accepted ack with ``VemDetach``. So an attach makes a module ``powered-up``
and its first heartbeat ``ok``. Only ``ok`` modules count: ``ModuleCount`` (hamgr's
split-brain input), ``show svs neighbors``. The ``module`` objects are
replicated, so a standby's table holds the *active's* view; when the
standby takes over, every module that view did not list ``offline`` becomes
``powered-up`` (committed, so the store and the next standby show it too)
and gets ``loss_time`` to attach or heartbeat; a VEM that stays with the
other VSM, or cannot reach this one, drops to ``offline`` then. A VSM
isolated from every VEM therefore counts 0 however many modules it
inherited.

A status is *observed* (``Module.observed``) once this VSM, as active,
decided it (takeover, attach, heartbeat, detach, loss). Observed statuses
are never overwritten by store objects and survive a re-activation in the
same node boot (a new epoch after a hamgr restart: the same VSM, still the
VEMs' active). ``attachments``/``restore_attachments`` give vemmgr what it
checkpoints so that a restarted vemmgr resumes them for the same epoch
instead of starting every VEM at ``powered-up`` again.

Freshness (issue 12 point 2, ``openvsm.wire.freshness``): every VEM frame
passes a ``FreshnessFilter`` keyed by the VEM's MAC (derived from its host
UUID) and boot id: per sender a high-water mark of ``seq`` with a small
reorder window. A duplicate, a replay or a frame from before the first one
heard of that boot is dropped and counted (``replayed``, ``epoch_limit``) and
changes nothing; a VEM reboot (a new boot id in its attach) is accepted. An
attach ack echoes the attach's ``nonce`` (the VEM takes no other) and carries
this table's ``boot_id`` (vemmgr's, random per start), as do its heartbeats
and switch requests.

Only the active serves VEMs; the standby keeps the table current from the
replicated store objects (``apply_changes``) and answers ``show`` from it.

Numbering: modules are 3, 4, ... assigned once per host UUID and never
reused for another UUID (a detached module keeps its number); vEths are
Vethernet1, 2, ... stable per (host UUID, port name) while the port exists
(a new port gets a number above all in use, so a freed one is not reused at once).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from openvsm.contracts.objects import BodyError, from_body
from openvsm.contracts.objects import Module as ModuleBody
from openvsm.contracts.objects import Veth as VethBody
from openvsm.modules.pacing import SwitchPacer
from openvsm.timefmt import display_time
from openvsm.vem.lacp import counter_rows, neighbor_rows, summary_rows
from openvsm.vem.model import BridgeDomainConfig, PortProfileConfig, VemConfigSnapshot
from openvsm.wire.codec import Frame
from openvsm.wire.freshness import FreshnessFilter, new_nonce
from openvsm.wire.messages import (
    ConfigDelta,
    Message,
    SenderRole,
    SwitchRequest,
    VemAttach,
    VemAttachAck,
    VemDetach,
    VemHeartbeat,
    VemLacpReport,
    VemPortEvent,
    VethPort,
)

Addr = tuple[str, int]
FIRST_MODULE = 3
MAX_PORTS_PER_VEM = 4096
MAX_UPLINK_PROFILES = 64
MAX_REPORT_ERRORS = 64
MAX_CACHED_SNAPSHOTS = 1024  # attach-ack snapshots kept (by port profiles and host IP)
CONFIG_KINDS = ("port_profile", "vlan", "os_bridge_domain")


# ---- effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    addr: Addr
    msg: Message
    host: str = ""  # the host UUID whose key signs it (openvsm.wire.keys)


@dataclass(frozen=True, slots=True)
class StoreOp:
    kind: str
    key: str
    body: dict[str, Any] | None  # None deletes

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "body": self.body}


@dataclass(frozen=True, slots=True)
class Commit:
    ops: tuple[StoreOp, ...]
    command: str


@dataclass(frozen=True, slots=True)
class ModuleCount:
    count: int  # modules attached to (served by) this VSM


@dataclass(frozen=True, slots=True)
class Trace:
    text: str


Effect = Send | Commit | ModuleCount | Trace


class ModuleStatus(enum.Enum):
    OK = "ok"  # attached to this VSM (attach or heartbeat since it became active)
    POWERED_UP = "powered-up"  # inherited at takeover, not attached here yet
    HEADLESS = "headless"
    OFFLINE = "offline"


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """One module's observed status, as vemmgr checkpoints it."""

    status: str
    vem_mac: str = ""
    since: float = 0.0  # powered-up: monotonic time of the takeover (its loss clock)


class AttachmentCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The observed statuses of one activation (epoch) of this VSM."""

    epoch: int
    modules: dict[str, Attachment] = {}


@dataclass
class Module:
    number: int
    host_uuid: str
    host_name: str = ""
    host_ip: str = ""
    host_os: str = ""
    version: str = ""
    status: ModuleStatus = ModuleStatus.OFFLINE
    addr: Addr | None = None
    vem_mac: str = ""
    last_heard: float = -math.inf
    last_attach_wall: float = 0.0
    hb_sent: int = 0
    hb_received: int = 0
    hb_missed: int = 0
    config_pushes: int = 0
    attaches: int = 0
    pushed_seq: int = 0
    pushed_config: bytes = b""  # snapshot (with config_seq 0) last pushed
    dirty: bool = False
    uplink_profiles: tuple[str, ...] = ()  # profiles of the VEM's uplinks (from its attach)
    lacp: VemLacpReport | None = None  # last port-channel / LACP / error report
    observed: bool = False  # status decided by this VSM as active (not a store copy)

    def body(self, ports: int) -> dict[str, Any]:
        return {
            "module": self.number,
            "host_uuid": self.host_uuid,
            "host_name": self.host_name,
            "host_ip": self.host_ip,
            "host_os": self.host_os,
            "version": self.version,
            "status": self.status.value,
            "ports": ports,
            "addr": f"{self.addr[0]}:{self.addr[1]}" if self.addr else "",
            "last_attach": self.last_attach_wall,
        }


@dataclass
class Veth:
    number: int
    host_uuid: str
    port: str  # the name the VEM knows the port by
    vm: str
    mac: str
    port_profile: str
    status: str = "up"

    @property
    def name(self) -> str:
        return f"Vethernet{self.number}"

    def body(self, module: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": module,
            "host_uuid": self.host_uuid,
            "port": self.port,
            "vm": self.vm,
            "mac": self.mac,
            "port_profile": self.port_profile,
            "status": self.status,
        }


class VethMap(dict[tuple[str, str], Veth]):
    """vEths keyed by (host UUID, port name), indexed by host and by number.

    The indexes keep per-attach and per-heartbeat work proportional to one
    host's ports, not to every vEth of the switch. Mutate with ``[]=``,
    ``del``, ``pop`` and ``clear`` only (they keep the indexes). ``high`` is
    the highest vEth number ever held (never lowered, so a freed number is not
    handed out again at once).
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_host: dict[str, dict[str, Veth]] = {}
        self.by_number: dict[int, tuple[str, str]] = {}
        self.high = 0

    def __setitem__(self, key: tuple[str, str], veth: Veth) -> None:
        if key in self:
            self._unindex(key, self[key])
        super().__setitem__(key, veth)
        self.by_host.setdefault(key[0], {})[key[1]] = veth
        self.by_number[veth.number] = key
        self.high = max(self.high, veth.number)

    def __delitem__(self, key: tuple[str, str]) -> None:
        veth = self[key]
        super().__delitem__(key)
        self._unindex(key, veth)

    def pop(self, key: tuple[str, str], *default: Any) -> Any:
        if key in self:
            veth = self[key]
            del self[key]
            return veth
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        super().clear()
        self.by_host.clear()
        self.by_number.clear()

    def _unindex(self, key: tuple[str, str], veth: Veth) -> None:
        ports = self.by_host.get(key[0])
        if ports is not None:
            ports.pop(key[1], None)
            if not ports:
                del self.by_host[key[0]]
        if self.by_number.get(veth.number) == key:
            del self.by_number[veth.number]

    def of_host(self, host_uuid: str) -> dict[str, Veth]:
        """port name -> vEth of one host (do not mutate)."""
        return self.by_host.get(host_uuid, {})


@dataclass
class ModuleShowRows:
    """``show module``'s three tables (NX-OS keys, specs/cli-output.md), built
    the one way for VSM rows (cfgmgr) and VEM rows (this table)."""

    info: list[dict[str, Any]] = field(default_factory=list)
    sw: list[dict[str, Any]] = field(default_factory=list)
    srv: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        number: int,
        *,
        ports: int,
        modtype: str,
        model: str,
        status: str,
        sw: str,
        hw: str,
        srvip: str,
        srvuuid: str,
        srvname: str,
    ) -> None:
        self.info.append(
            {"modinf": number, "ports": ports, "modtype": modtype, "model": model, "status": status}
        )
        self.sw.append({"modwwn": number, "sw": sw, "hw": hw})
        self.srv.append({"modsrv": number, "srvip": srvip, "srvuuid": srvuuid, "srvname": srvname})

    def extend(self, data: Mapping[str, Any]) -> None:
        """Append the rows of another ``show module`` answer (``data()``'s shape)."""
        self.info += data.get("TABLE_modinfo", {}).get("ROW_modinfo", [])
        self.sw += data.get("TABLE_modwwninfo", {}).get("ROW_modwwninfo", [])
        self.srv += data.get("TABLE_modsrvinfo", {}).get("ROW_modsrvinfo", [])

    def data(self) -> dict[str, Any]:
        return {
            "TABLE_modinfo": {"ROW_modinfo": self.info},
            "TABLE_modwwninfo": {"ROW_modwwninfo": self.sw},
            "TABLE_modsrvinfo": {"ROW_modsrvinfo": self.srv},
        }


# What a repeated attach must match to commit nothing (see ``ModuleTable._attached_details``).
_AttachDetails = tuple[Addr | None, str, str, str, str, tuple[str, ...]]


def _attach_is_well_formed(msg: VemAttach) -> bool:
    names = [p.name for p in msg.ports]
    return (
        bool(msg.host_uuid)
        and len(msg.host_uuid) <= 128
        and len(msg.ports) <= MAX_PORTS_PER_VEM
        and len(set(names)) == len(names)
    )


def _parse_addr(text: object) -> Addr | None:
    if not isinstance(text, str) or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return (host, int(port))
    except ValueError:
        return None


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def profile_config(body: Mapping[str, Any]) -> PortProfileConfig:
    """A ``port_profile`` store body as the VEM needs it."""
    allowed = body.get("allowed_vlans") or ()
    return PortProfileConfig(
        name=str(body.get("name", "")),
        mode=str(body.get("mode", "access") or "access"),
        access_vlan=_int(body.get("access_vlan"), 1) or 1,
        allowed_vlans=tuple(sorted({_int(v) for v in allowed if _int(v) > 0})),
        enabled=bool(body.get("enabled", True)) and not bool(body.get("shutdown", False)),
        max_macs=_int(body.get("max_macs")),
        bridge_domain=str(body.get("bridge_domain", "") or ""),
        channel_group=_int(body.get("channel_group")),
        lacp_mode=str(body.get("lacp_mode", "") or ""),
        uplink=body.get("type") == "ethernet",
    )


def bridge_domain_config(key: str, body: Mapping[str, Any]) -> BridgeDomainConfig:
    return BridgeDomainConfig(
        name=str(body.get("name") or key),
        segment_id=_int(body.get("segmentId")),
        sub_type=str(body.get("subType", "unicast") or "unicast"),
        group_ip=str(body.get("groupIp", "") or ""),
    )


def parse_ops(raw: object) -> list[StoreOp]:
    """Store operations from an IPC payload (list of {kind, key, body}); bad items skipped."""
    ops: list[StoreOp] = []
    if not isinstance(raw, list | tuple):
        return ops
    for item in raw:
        if isinstance(item, Mapping):
            kind, key, body = item.get("kind"), item.get("key"), item.get("body")
        elif isinstance(item, list | tuple) and len(item) == 3:
            kind, key, body = item
        else:
            continue
        if not isinstance(kind, str) or not isinstance(key, str):
            continue
        ops.append(StoreOp(kind, key, dict(body) if isinstance(body, Mapping) else None))
    return ops


class _RawOp(msgspec.Struct):
    kind: str
    key: str
    body: msgspec.Raw = msgspec.Raw(b"\xc0")  # msgpack nil: a delete


class _RawChanges(msgspec.Struct):
    ops: list[_RawOp] = []


class _RawEvent(msgspec.Struct):
    event: str = ""
    data: _RawChanges | None = None


_EVENT_DECODER = msgspec.msgpack.Decoder(_RawEvent)
STANDBY_KINDS = frozenset((*CONFIG_KINDS, "module", "veth"))


def parse_changes_frame(raw: bytes, kinds: Container[str]) -> list[StoreOp] | None:
    """The ops of the ``kinds`` wanted from one raw ``changes`` IPC frame.

    Lazy: an op of another kind is skipped without decoding its body (the
    active's own ``module``/``veth`` commits come back to it by the thousand
    in an attach storm, and it ignores them). None: not a ``changes`` frame.
    A frame the typed decoder refuses is decoded in full and read like
    ``parse_ops`` (bad items skipped), never raised.
    """
    try:
        event = _EVENT_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        try:
            loose = msgspec.msgpack.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
        if not isinstance(loose, dict) or loose.get("event") != "changes":
            return None
        data = loose.get("data")
        ops = parse_ops(data.get("ops") if isinstance(data, dict) else None)
        return [op for op in ops if op.kind in kinds]
    if event.event != "changes" or event.data is None:
        return None
    out: list[StoreOp] = []
    for op in event.data.ops:
        if op.kind not in kinds:
            continue
        try:
            body = msgspec.msgpack.decode(op.body)
        except (msgspec.DecodeError, RecursionError):
            continue
        out.append(StoreOp(op.kind, op.key, dict(body) if isinstance(body, Mapping) else None))
    return out


_TABLE_COUNTERS = (
    "attach_requests",
    "attach_repeats",
    "attach_refused",
    "bad_attach",
    "not_active",
    "replayed",
    "epoch_limit",
    "bad_role",
    "unknown_module",
    "switch_requests_sent",
    "detaches",
    "offline_events",
    "module_renumbered",
    "bad_store_body",  # a module/veth body of the wrong shape, skipped at load
)


@dataclass
class ModuleTable:
    """The modules of one VSM; see the module docstring."""

    module_limit: int
    listen: str = ""  # ip:port where this VSM serves VEMs (sent in SwitchRequest)
    heartbeat_interval: float = 1.0
    loss_time: float = 15.0
    wall: Callable[[], float] = time.time
    active: bool = False
    epoch: int = 0
    modules: dict[str, Module] = field(default_factory=dict)
    veths: VethMap = field(default_factory=VethMap)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    vlans: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridge_domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TABLE_COUNTERS, 0))
    _next_heartbeat: float = math.inf
    _config_seq: int = 0
    boot_id: int = field(default_factory=new_nonce)  # vemmgr's boot (random per start)
    _fresh: FreshnessFilter = field(default_factory=lambda: FreshnessFilter(epoch_step=None))
    _reported_count: int = -1
    _refusal_traced: bool = False
    _veth_high: int = 0
    # A lower bound of the earliest module loss deadline (-inf: rescan at the
    # next tick); keeps next_deadline O(1), it runs after every datagram.
    _next_loss: float = math.inf
    _vteps: tuple[str, ...] | None = None  # every module's host IP, sorted (cache)
    _attached: int | None = None  # attached_count() (cache; None: count again)
    _numbers: set[int] | None = None  # module numbers in use (cache; None: collect again)
    _free_hint: int = FIRST_MODULE  # every number below it is in use
    # Bumped whenever an observed status (or a module's VEM MAC) changes: vemmgr
    # checkpoints ``attachments()`` when it moves.
    attachment_version: int = 0
    # Switch requests of the current activation, paced (modules/pacing.py).
    pacer: SwitchPacer = field(default_factory=SwitchPacer)
    # Attach-ack snapshots by (port profiles used, host IP): the 10,000 acks of a
    # takeover share a handful. Valid for one configuration generation and one
    # VTEP tuple (``_vtep_ips`` builds a new one whenever it may have changed).
    _config_gen: int = 0
    _snapshots: dict[tuple[tuple[str, ...], str], tuple[VemConfigSnapshot, bytes]] = field(
        default_factory=dict
    )
    _snapshots_valid: tuple[int, tuple[str, ...]] | None = None

    # ---- loading --------------------------------------------------------------

    def load(self, modules: Mapping[str, Any], veths: Mapping[str, Any]) -> None:
        """Replace modules and vEths with the store's objects (key -> body).

        Modules already in the table keep their counters and their observed
        status (a reload in the same process, e.g. a new epoch, is not a new
        attach; the store copy of a status this VSM decided may lag behind).
        """
        for key in [k for k in self.modules if k not in modules]:
            del self.modules[key]
        self._vteps = None
        self._attached = None
        self._numbers = None
        self.veths.clear()
        for key, body in modules.items():
            if isinstance(body, Mapping):
                self._load_module(key, body)
        for key, body in veths.items():
            if isinstance(body, Mapping):
                self._load_veth(key, body)

    def _load_module(self, key: str, raw: Mapping[str, Any]) -> None:
        try:
            body = from_body(ModuleBody, raw)
        except BodyError:
            self.counters["bad_store_body"] += 1
            return
        number = body.module
        if number < FIRST_MODULE:
            return
        status = ModuleStatus(body.status)
        old = self.modules.get(key)
        mod = old or Module(number=number, host_uuid=key)
        mod.number = number
        mod.host_name = body.host_name
        mod.host_ip = body.host_ip
        mod.host_os = body.host_os
        mod.version = body.version
        if not mod.observed:
            mod.status = status
        if not mod.observed or mod.addr is None:  # an observed module: the live address
            mod.addr = _parse_addr(body.addr)
        mod.last_attach_wall = body.last_attach
        self.modules[key] = mod
        self._vteps = None
        self._attached = None
        self._numbers = None
        self._next_loss = -math.inf

    def _load_veth(self, key: str, raw: Mapping[str, Any]) -> None:
        if not key.startswith("Vethernet"):
            return
        number = _int(key[len("Vethernet") :])
        try:
            body = from_body(VethBody, raw)
        except BodyError:
            self.counters["bad_store_body"] += 1
            return
        host = body.host_uuid
        if number < 1 or not host:
            return
        port = body.port or key
        holder = self.veths.by_number.get(number)
        if holder is not None and holder != (host, port):
            del self.veths[holder]
        self.veths[(host, port)] = Veth(
            number=number,
            host_uuid=host,
            port=port,
            vm=body.vm,
            mac=body.mac,
            port_profile=body.port_profile,
            status=body.status,
        )

    def load_config(
        self,
        port_profiles: Mapping[str, Any],
        vlans: Mapping[str, Any],
        bridge_domains: Mapping[str, Any],
    ) -> None:
        self._config_gen += 1
        self.profiles = {k: dict(v) for k, v in port_profiles.items() if isinstance(v, Mapping)}
        self.vlans = {k: dict(v) for k, v in vlans.items() if isinstance(v, Mapping)}
        self.bridge_domains = {
            k: dict(v) for k, v in bridge_domains.items() if isinstance(v, Mapping)
        }

    def apply_changes(self, ops: Iterable[StoreOp], now: float) -> list[Effect]:
        """Committed store changes (cfgmgr ``changes``): config kinds push to VEMs.

        ``module``/``veth`` changes are taken only on the standby (they are
        the active's own commits, replicated); the active is their author.
        """
        config_changed = False
        for op in ops:
            if op.kind in CONFIG_KINDS:
                target = {
                    "port_profile": self.profiles,
                    "vlan": self.vlans,
                    "os_bridge_domain": self.bridge_domains,
                }[op.kind]
                if op.body is None:
                    target.pop(op.key, None)
                else:
                    target[op.key] = dict(op.body)
                config_changed = True
                self._config_gen += 1
            elif not self.active and op.kind == "module":
                if op.body is None:
                    self.modules.pop(op.key, None)
                    self._vteps = None
                    self._attached = None
                    self._numbers = None
                else:
                    self._load_module(op.key, op.body)
            elif not self.active and op.kind == "veth":
                if op.body is None:
                    number = _int(op.key.removeprefix("Vethernet"))
                    holder = self.veths.by_number.get(number)
                    if holder is not None and op.key.startswith("Vethernet"):
                        del self.veths[holder]
                else:
                    self._load_veth(op.key, op.body)
        if not (config_changed and self.active):
            return []
        for mod in self.modules.values():
            mod.dirty = True
        return self._flush(now)

    def wanted_kinds(self) -> frozenset[str]:
        """The store kinds ``apply_changes`` takes now (the active: configuration only)."""
        return frozenset(CONFIG_KINDS) if self.active else STANDBY_KINDS

    def config_reloaded(self, now: float) -> list[Effect]:
        """After ``load_config`` replaced the configuration (a missed change):
        every VEM whose snapshot differs now gets it."""
        if not self.active:
            return []
        for mod in self.modules.values():
            mod.dirty = True
        return self._flush(now)

    # ---- role -----------------------------------------------------------------

    def became_active(self, epoch: int, now: float) -> list[Effect]:
        """This VSM became active: ask every known VEM to switch to it.

        The switch requests are paced (``SwitchPacer``: at most its window
        outstanding, in module order; the rest follow as VEMs answer or
        requests time out, see ``tick``). Inherited modules (statuses copied
        from the store, i.e. the previous active's view) become ``powered-up``
        with ``loss_time`` to attach or heartbeat; statuses this VSM observed
        itself are kept (a new epoch of the same active, or a restart resumed
        with ``restore_attachments``).
        """
        self.active = True
        self.epoch = epoch
        self._next_heartbeat = now + self.heartbeat_interval
        inherited: list[Module] = []
        targets: list[str] = []
        for mod in sorted(self.modules.values(), key=lambda m: m.number):
            if mod.status is ModuleStatus.OFFLINE:
                pass
            elif not mod.observed:
                self._set_status(mod, ModuleStatus.POWERED_UP)
                inherited.append(mod)
                mod.last_heard = now
            elif mod.status is not ModuleStatus.POWERED_UP or not math.isfinite(mod.last_heard):
                # Observed here, but frames were not served meanwhile: loss_time
                # from now. A powered-up module keeps its takeover clock.
                mod.last_heard = max(mod.last_heard, now)
            mod.observed = True
            mod.pushed_config = b""
            if mod.addr is not None:
                targets.append(mod.host_uuid)
        self._next_loss = -math.inf  # deadlines differ per module: rescan at the next tick
        self._attached = None
        self.attachment_version += 1
        self.pacer.start(targets)
        effects: list[Effect] = self._switch_requests(now)
        if inherited:
            effects.append(
                Commit(
                    tuple(
                        StoreOp("module", m.host_uuid, m.body(self._ports(m))) for m in inherited
                    ),
                    "module powered-up (takeover)",
                )
            )
        effects.append(
            Trace(
                f"active (epoch {epoch}): switch requests to {len(targets)} VEM(s), at most "
                f"{self.pacer.window} at a time; {len(inherited)} inherited module(s) "
                "powered-up until they attach"
            )
        )
        effects += self._count_effect()
        return effects

    def _switch_requests(self, now: float) -> list[Effect]:
        """The switch requests the pacer releases now."""
        effects: list[Effect] = []
        request = SwitchRequest(vsm_addr=self.listen, boot_id=self.boot_id)
        for host in self.pacer.release(now):
            mod = self.modules.get(host)
            if mod is not None and mod.addr is not None:
                effects.append(Send(mod.addr, request, host))
        self.counters["switch_requests_sent"] += len(effects)
        return effects

    def became_standby(self, *, keep_attachments: bool = False) -> list[Effect]:
        """Not active: stop serving VEMs.

        ``keep_attachments``: this node is still the VEMs' active for its boot
        (hamgr restarting: its status says initializing), so the observed
        statuses stay for the re-activation. Otherwise they become store
        copies again (a standby mirrors the active's view).
        """
        self.active = False
        self._next_heartbeat = math.inf
        self._reported_count = -1
        self.pacer.stop()
        if not keep_attachments:
            for mod in self.modules.values():
                mod.observed = False
        return [Trace("not active: no longer serving VEMs")]

    def has_observed(self) -> bool:
        """Some status here is this VSM's own (it was active in this process)."""
        return any(m.observed for m in self.modules.values())

    def attachments(self) -> AttachmentCheckpoint:
        """The statuses this VSM observed in its current activation (for vemmgr's checkpoint)."""
        return AttachmentCheckpoint(
            epoch=self.epoch,
            modules={
                m.host_uuid: Attachment(
                    status=m.status.value,
                    vem_mac=m.vem_mac,
                    since=m.last_heard
                    if m.status is ModuleStatus.POWERED_UP and math.isfinite(m.last_heard)
                    else 0.0,
                )
                for m in self.modules.values()
                if m.observed
            },
        )

    def restore_attachments(self, saved: AttachmentCheckpoint) -> int:
        """Take back the observed statuses of a checkpoint of this activation
        (call after ``load`` and before ``became_active``); returns how many.

        Modules the store no longer has, modules this process observed
        already (newer), and unknown statuses are skipped.
        """
        restored = 0
        for key, att in saved.modules.items():
            mod = self.modules.get(key)
            try:
                status = ModuleStatus(att.status)
            except ValueError:
                continue
            if mod is None or mod.observed:  # what this process observed is newer
                continue
            mod.status = status
            mod.observed = True
            mod.vem_mac = att.vem_mac or mod.vem_mac
            if status is ModuleStatus.POWERED_UP and att.since:
                mod.last_heard = att.since
            restored += 1
        self._attached = None
        self._next_loss = -math.inf
        return restored

    # ---- time -----------------------------------------------------------------

    def next_deadline(self) -> float:
        if not self.active:
            return math.inf
        return min(self._next_heartbeat, self._next_loss, self.pacer.next_deadline())

    def tick(self, now: float) -> list[Effect]:
        if not self.active:
            return []
        effects: list[Effect] = self._switch_requests(now) if self.pacer.busy else []
        lost: list[Module] = []
        next_loss = math.inf
        for mod in self.modules.values():
            if mod.status is ModuleStatus.OFFLINE:
                continue
            deadline = mod.last_heard + self.loss_time
            if now >= deadline:
                lost.append(mod)
            elif deadline < next_loss:
                next_loss = deadline
        self._next_loss = next_loss
        for mod in lost:
            never = mod.status is ModuleStatus.POWERED_UP
            self._set_status(mod, ModuleStatus.OFFLINE)
            self.counters["offline_events"] += 1
            why = (
                f"not attached to this VSM within {self.loss_time:g} s of the takeover"
                if never
                else f"no heartbeat for {self.loss_time:g} s"
            )
            effects.append(Trace(f"module {mod.number} ({mod.host_name}) offline: {why}"))
        if lost:
            effects.append(
                Commit(
                    tuple(StoreOp("module", m.host_uuid, m.body(self._ports(m))) for m in lost),
                    "module offline",
                )
            )
        if now >= self._next_heartbeat:
            for mod in self.modules.values():
                if mod.status is ModuleStatus.OFFLINE or mod.addr is None:
                    continue
                if now - mod.last_heard > 1.5 * self.heartbeat_interval:
                    mod.hb_missed += 1
                mod.hb_sent += 1
                effects.append(
                    Send(
                        mod.addr,
                        VemHeartbeat(
                            host_uuid=mod.host_uuid,
                            module=mod.number,
                            config_seq=mod.pushed_seq,
                            boot_id=self.boot_id,
                        ),
                        mod.host_uuid,
                    )
                )
            nxt = self._next_heartbeat + self.heartbeat_interval
            self._next_heartbeat = nxt if nxt > now else now + self.heartbeat_interval
            effects += self._flush(now)
        effects += self._count_effect()
        return effects

    # ---- frames ---------------------------------------------------------------

    def on_frame(self, frame: Frame, src: Addr, now: float) -> list[Effect]:
        if frame.role is not SenderRole.VEM:
            self.counters["bad_role"] += 1
            return []
        if not self.active:
            self.counters["not_active"] += 1
            return []
        if self._fresh.max_senders < 2 * self.module_limit:
            self._fresh.max_senders = 2 * self.module_limit  # every VEM keeps its window
        refused = self._fresh.check(frame)
        if refused is not None:
            self.counters["replayed" if refused == "replay" else refused] += 1
            return []
        msg = frame.msg
        # An attach or heartbeat answers a switch request (or the VEM is here
        # already): its slot goes to the next VEM.
        if (
            self.pacer.busy
            and isinstance(msg, VemAttach | VemHeartbeat)
            and self.pacer.answered(msg.host_uuid)
        ):
            return self._on_vem_frame(frame, msg, src, now) + self._switch_requests(now)
        return self._on_vem_frame(frame, msg, src, now)

    def _on_vem_frame(self, frame: Frame, msg: Message, src: Addr, now: float) -> list[Effect]:
        if isinstance(msg, VemAttach):
            return self._on_attach(frame, msg, src, now)
        if isinstance(msg, VemHeartbeat):
            return self._on_heartbeat(frame, msg, src, now)
        if isinstance(msg, VemPortEvent):
            return self._on_port_event(frame, msg, src, now)
        if isinstance(msg, VemDetach):
            return self._on_detach(msg, src)
        if isinstance(msg, VemLacpReport):
            return self._on_lacp_report(msg, now)
        self.counters["bad_role"] += 1
        return []

    def _on_attach(self, frame: Frame, msg: VemAttach, src: Addr, now: float) -> list[Effect]:
        self.counters["attach_requests"] += 1
        if not _attach_is_well_formed(msg):
            self.counters["bad_attach"] += 1
            return []
        effects: list[Effect] = []
        mod = self.modules.get(msg.host_uuid)
        new = mod is None
        if mod is None:
            if len(self.modules) >= self.module_limit:
                return self._refuse_attach(msg, src)
            mod = self._add_module(msg, effects)
        before_attach = self._attached_details(mod) if not new else None
        vtep_changed = self._take_host_details(mod, msg, new)
        # An attach is a request: the VEM is attached only once it took this
        # VSM's ack, which its first heartbeat says (it sends one at once).
        # Until then ``powered-up`` -- a VEM that asked every VSM and took
        # another's ack is never listed ``ok`` here, not even for one RTT.
        keep = mod.status is ModuleStatus.OK and mod.vem_mac == frame.mac and mod.addr == src
        self._set_status(
            mod, ModuleStatus.OK if keep else ModuleStatus.POWERED_UP, vem_mac=frame.mac
        )
        mod.addr = src
        mod.last_heard = now
        self._next_loss = min(self._next_loss, now + self.loss_time)
        mod.last_attach_wall = self.wall()
        mod.attaches += 1
        mod.uplink_profiles = tuple(sorted(set(msg.uplink_profiles)))[:MAX_UPLINK_PROFILES]
        ops = self._sync_ports(mod, msg.ports)
        if not ops and before_attach is not None and before_attach == self._attached_details(mod):
            # A retransmitted attach of a VEM that is attached already with the
            # same ports and details: answer it again, commit nothing.
            self.counters["attach_repeats"] += 1
        else:
            effects += self._commit_attach(mod, msg, src, ops)
        effects.append(Send(src, self._accept_attach(mod, msg), msg.host_uuid))
        if vtep_changed:
            for other in self.modules.values():
                if other is not mod:
                    other.dirty = True
        effects += self._count_effect()
        return effects

    def _refuse_attach(self, msg: VemAttach, src: Addr) -> list[Effect]:
        """The answer to an attach of a new host when the table is full."""
        self.counters["attach_refused"] += 1
        reason = f"module limit {self.module_limit} reached"
        effects: list[Effect] = []
        if not self._refusal_traced:
            self._refusal_traced = True
            effects.append(Trace(f"attach of {msg.host_name} ({msg.host_uuid}) refused: {reason}"))
        refusal = VemAttachAck(
            host_uuid=msg.host_uuid,
            accepted=False,
            reason=reason,
            nonce=msg.nonce,
            boot_id=self.boot_id,
        )
        effects.append(Send(src, refusal, msg.host_uuid))
        return effects

    def _add_module(self, msg: VemAttach, effects: list[Effect]) -> Module:
        """A module for a host this table has not seen, numbered as it asks if that is free."""
        mod = Module(number=self._claim_module_number(msg.module), host_uuid=msg.host_uuid)
        self.modules[msg.host_uuid] = mod
        if msg.module and mod.number != msg.module:
            holder = next(
                (m for m in self.modules.values() if m.number == msg.module and m is not mod),
                None,
            )
            self.counters["module_renumbered"] += 1
            held = f"{holder.host_name} ({holder.host_uuid})" if holder else "nobody"
            effects.append(
                Trace(
                    f"{msg.host_name} ({msg.host_uuid}) was module {msg.module}, which is "
                    f"held by {held}: it is module {mod.number} now"
                )
            )
        return mod

    @staticmethod
    def _attached_details(mod: Module) -> _AttachDetails | None:
        """What a repeated attach must match to commit nothing; None if not attached here."""
        attached = mod.status in (ModuleStatus.OK, ModuleStatus.POWERED_UP, ModuleStatus.HEADLESS)
        if not attached or mod.attaches == 0:  # not attached through this table (loaded)
            return None
        return (mod.addr, mod.host_name, mod.host_ip, mod.host_os, mod.version, mod.uplink_profiles)

    def _take_host_details(self, mod: Module, msg: VemAttach, new: bool) -> bool:
        """Record the host's details; True if the set of VTEP addresses changed."""
        vtep_changed = False
        if new or mod.host_ip != msg.host_ip:
            # Other VEMs need a new push only if the set of VTEP addresses changed
            # (a new host on an address already known adds nothing).
            before = self._vtep_ips()
            old_ip, mod.host_ip = mod.host_ip, msg.host_ip
            if old_ip or (msg.host_ip and msg.host_ip not in before):
                self._vteps = None
                vtep_changed = self._vtep_ips() != before
        mod.host_name = msg.host_name
        mod.host_ip = msg.host_ip
        mod.host_os = msg.host_os
        mod.version = msg.version
        return vtep_changed

    def _commit_attach(
        self, mod: Module, msg: VemAttach, src: Addr, ops: list[StoreOp]
    ) -> list[Effect]:
        ops.insert(0, StoreOp("module", mod.host_uuid, mod.body(self._ports(mod))))
        return [
            Commit(tuple(ops), f"module {mod.number} attach"),
            Trace(
                f"module {mod.number} attached: {msg.host_name} ({msg.host_uuid}) at "
                f"{src[0]}:{src[1]}, {len(msg.ports)} port(s), reason {msg.reason}"
            ),
        ]

    def _accept_attach(self, mod: Module, msg: VemAttach) -> VemAttachAck:
        """The ack that attaches the VEM, carrying its whole configuration."""
        seq, raw = self._snapshot_for(mod)
        mod.config_pushes += 1
        mod.dirty = False
        return VemAttachAck(
            host_uuid=msg.host_uuid,
            accepted=True,
            module=mod.number,
            config=raw,
            config_seq=seq,
            nonce=msg.nonce,
            boot_id=self.boot_id,
        )

    def _on_heartbeat(self, frame: Frame, msg: VemHeartbeat, src: Addr, now: float) -> list[Effect]:
        mod = self.modules.get(msg.host_uuid)
        if mod is None:
            self.counters["unknown_module"] += 1
            return [
                Send(
                    src, VemDetach(host_uuid=msg.host_uuid, reason="unknown module"), msg.host_uuid
                )
            ]
        if mod.status is ModuleStatus.OFFLINE:
            # It went offline here (or detached); it must attach again.
            self.counters["unknown_module"] += 1
            return [
                Send(
                    src,
                    VemDetach(host_uuid=msg.host_uuid, reason="module is offline"),
                    msg.host_uuid,
                )
            ]
        mod.hb_received += 1
        mod.last_heard = now
        mod.addr = src
        effects: list[Effect] = []
        # A VEM heartbeats only the VSM it is attached to: a powered-up module
        # that heartbeats us is attached here (e.g. to this VSM before a restart).
        status = ModuleStatus.HEADLESS if msg.headless else ModuleStatus.OK
        before = mod.status
        self._set_status(mod, status, vem_mac=frame.mac)
        if status is not before:
            effects.append(
                Commit(
                    (StoreOp("module", mod.host_uuid, mod.body(self._ports(mod))),),
                    f"module {mod.number} {status.value}",
                )
            )
            effects += self._count_effect()
        if msg.config_seq != mod.pushed_seq:
            mod.dirty = True
            mod.pushed_config = b""  # lost push: send it again
        if mod.dirty:  # lost, or changed while the module was powered-up
            effects += self._flush(now, only=mod)
        return effects

    def _on_port_event(
        self, frame: Frame, msg: VemPortEvent, src: Addr, now: float
    ) -> list[Effect]:
        mod = self.modules.get(msg.host_uuid)
        if mod is None or mod.status is ModuleStatus.OFFLINE:
            self.counters["unknown_module"] += 1
            return []
        mod.last_heard = now
        current = dict(self.veths.of_host(mod.host_uuid))
        for name in msg.detached:
            current.pop(name, None)
        for port in msg.attached:
            current[port.name] = Veth(
                0, mod.host_uuid, port.name, port.vm, port.mac, port.port_profile
            )
        ports = [
            VethPort(name=v.port, vm=v.vm, mac=v.mac, port_profile=v.port_profile)
            for v in current.values()
        ]
        if len(ports) > MAX_PORTS_PER_VEM:
            self.counters["bad_attach"] += 1
            return []
        ops = self._sync_ports(mod, ports)
        if not ops:
            return []
        ops.append(StoreOp("module", mod.host_uuid, mod.body(self._ports(mod))))
        effects: list[Effect] = [Commit(tuple(ops), f"module {mod.number} ports")]
        mod.dirty = True
        effects += self._flush(now, only=mod)
        return effects

    def _on_lacp_report(self, msg: VemLacpReport, now: float) -> list[Effect]:
        """Port-channel/LACP state and errors of a VEM; new errors are traced."""
        mod = self.modules.get(msg.host_uuid)
        if mod is None or mod.status is ModuleStatus.OFFLINE:
            self.counters["unknown_module"] += 1
            return []
        mod.last_heard = now
        msg = msgspec.structs.replace(msg, errors=msg.errors[:MAX_REPORT_ERRORS])
        before = mod.lacp.errors if mod.lacp is not None else []
        mod.lacp = msg
        effects: list[Effect] = [
            Trace(f"module {mod.number} ({mod.host_name}) error: {e}")
            for e in msg.errors
            if e not in before
        ]
        if before and not msg.errors:
            effects.append(Trace(f"module {mod.number} ({mod.host_name}): errors cleared"))
        return effects

    def _on_detach(self, msg: VemDetach, src: Addr) -> list[Effect]:
        mod = self.modules.get(msg.host_uuid)
        if mod is None or mod.status is ModuleStatus.OFFLINE:
            return []
        self.counters["detaches"] += 1
        self._set_status(mod, ModuleStatus.OFFLINE)
        effects: list[Effect] = [
            Commit(
                (StoreOp("module", mod.host_uuid, mod.body(self._ports(mod))),),
                f"module {mod.number} detach",
            ),
            Trace(f"module {mod.number} ({mod.host_name}) detached: {msg.reason}"),
        ]
        effects += self._count_effect()
        return effects

    # ---- helpers --------------------------------------------------------------

    def _set_status(self, mod: Module, status: ModuleStatus, *, vem_mac: str | None = None) -> None:
        """Every status this VSM decides goes through here (count cache, checkpoint)."""
        changed = status is not mod.status or (vem_mac is not None and vem_mac != mod.vem_mac)
        if self._attached is not None and mod.host_uuid in self.modules:
            self._attached += int(status is ModuleStatus.OK) - int(mod.status is ModuleStatus.OK)
        mod.status = status
        mod.observed = True
        if vem_mac is not None:
            mod.vem_mac = vem_mac
        if changed:
            self.attachment_version += 1

    def _claim_module_number(self, wanted: int) -> int:
        """The number the VEM says it had when it is free, else the lowest free one."""
        if self._numbers is None:
            self._numbers = {m.number for m in self.modules.values()}
            self._free_hint = FIRST_MODULE
        if (
            FIRST_MODULE <= wanted < FIRST_MODULE + self.module_limit
            and wanted not in self._numbers
        ):
            self._numbers.add(wanted)
            return wanted
        return self._free_module_number()

    def _free_module_number(self) -> int:
        if self._numbers is None:
            self._numbers = {m.number for m in self.modules.values()}
            self._free_hint = FIRST_MODULE
        number = self._free_hint
        while number in self._numbers:
            number += 1
        self._numbers.add(number)
        self._free_hint = number + 1
        return number

    def _ports(self, mod: Module) -> int:
        return len(self.veths.of_host(mod.host_uuid))

    def _sync_ports(self, mod: Module, ports: list[VethPort]) -> list[StoreOp]:
        """Make this module's vEths match the VEM's port list; returns store ops."""
        ops: list[StoreOp] = []
        wanted = {p.name: p for p in ports}
        for port_name, veth in list(self.veths.of_host(mod.host_uuid).items()):
            if port_name not in wanted:
                del self.veths[(mod.host_uuid, port_name)]
                ops.append(StoreOp("veth", veth.name, None))
        # New vEths get numbers above every number in use or used before, so a
        # freed number is not handed to another port at once.
        number = max(self._veth_high, self.veths.high)
        for port in ports:
            pkey = (mod.host_uuid, port.name)
            found = self.veths.get(pkey)
            changed = found is None
            if found is None:
                number += 1
                self._veth_high = number
                found = Veth(number, mod.host_uuid, port.name, "", "", "")
                self.veths[pkey] = found
            veth = found
            status = "up" if port.state == "up" else "down"
            values = (port.vm, port.mac, port.port_profile, status)
            if changed or values != (veth.vm, veth.mac, veth.port_profile, veth.status):
                veth.vm, veth.mac, veth.port_profile, veth.status = values
                ops.append(StoreOp("veth", veth.name, veth.body(mod.number)))
        return ops

    def snapshot(self, mod: Module) -> VemConfigSnapshot:
        """What this VEM needs: its ports' profiles, all VLANs, their bridge domains, VTEPs."""
        return self._cached_snapshot(mod)[0]

    def _cached_snapshot(self, mod: Module) -> tuple[VemConfigSnapshot, bytes]:
        """The snapshot and its msgpack (config_seq 0), shared by every module
        with the same port profiles and host IP until the configuration or the
        VTEP set changes."""
        used = {v.port_profile for v in self.veths.of_host(mod.host_uuid).values()}
        used.update(mod.uplink_profiles)  # uplink (type ethernet) profiles: port-channels
        valid = (self._config_gen, self._vtep_ips())
        if (
            self._snapshots_valid is None
            or valid[0] != self._snapshots_valid[0]
            or (valid[1] is not self._snapshots_valid[1])
        ):
            self._snapshots.clear()
            self._snapshots_valid = valid
        key = (tuple(sorted(used)), mod.host_ip)
        found = self._snapshots.get(key)
        if found is None:
            snap = self._build_snapshot(key[0], mod.host_ip, valid[1])
            found = (snap, msgspec.msgpack.encode(snap))
            if len(self._snapshots) >= MAX_CACHED_SNAPSHOTS:
                self._snapshots.clear()
            self._snapshots[key] = found
        return found

    def _build_snapshot(
        self, used: tuple[str, ...], host_ip: str, vtep_ips: tuple[str, ...]
    ) -> VemConfigSnapshot:
        profiles = [profile_config(self.profiles[n]) for n in used if n in self.profiles]
        wanted_bds = {p.bridge_domain for p in profiles if p.bridge_domain}
        bds = [
            bridge_domain_config(k, b)
            for k, b in sorted(self.bridge_domains.items())
            if str(b.get("name") or k) in wanted_bds
        ]
        vlans = sorted(
            {v for k, b in self.vlans.items() if 1 <= (v := _int(b.get("id"), _int(k))) <= 4094}
        )
        vteps = [ip for ip in vtep_ips if ip != host_ip]
        return VemConfigSnapshot(
            vlans=tuple(vlans),
            port_profiles=tuple(profiles),
            bridge_domains=tuple(bds),
            vteps=tuple(vteps),
        )

    def _snapshot_for(self, mod: Module) -> tuple[int, bytes]:
        snap, key = self._cached_snapshot(mod)
        if key != mod.pushed_config or not mod.pushed_seq:
            self._config_seq += 1
            mod.pushed_seq = self._config_seq
            mod.pushed_config = key
        raw = msgspec.msgpack.encode(msgspec.structs.replace(snap, config_seq=mod.pushed_seq))
        return mod.pushed_seq, raw

    def _flush(self, now: float, only: Module | None = None) -> list[Effect]:
        """Push the configuration to attached modules whose snapshot changed."""
        effects: list[Effect] = []
        mods = [only] if only is not None else list(self.modules.values())
        for mod in mods:
            if not mod.dirty:
                continue
            if mod.status in (ModuleStatus.OFFLINE, ModuleStatus.POWERED_UP) or mod.addr is None:
                continue  # only to VEMs attached here; stays dirty until then (or an ack)
            mod.dirty = False
            before = mod.pushed_config
            seq, raw = self._snapshot_for(mod)
            if mod.pushed_config == before:
                continue
            mod.config_pushes += 1
            effects.append(Send(mod.addr, ConfigDelta(config_seq=seq, config=raw), mod.host_uuid))
        return effects

    def _vtep_ips(self) -> tuple[str, ...]:
        """Every module's host IP (VTEP), sorted; cached until a module or its IP changes."""
        if self._vteps is None:
            self._vteps = tuple(sorted({m.host_ip for m in self.modules.values() if m.host_ip}))
        return self._vteps

    def attached_count(self) -> int:
        """Modules attached to this VSM: status ``ok`` only (module docstring)."""
        if self._attached is None:
            self._attached = sum(1 for m in self.modules.values() if m.status is ModuleStatus.OK)
        return self._attached

    def _count_effect(self) -> list[Effect]:
        count = self.attached_count()
        if count == self._reported_count:
            return []
        self._reported_count = count
        return [ModuleCount(count)]

    # ---- show data ------------------------------------------------------------

    def _sorted(self) -> list[Module]:
        return sorted(self.modules.values(), key=lambda m: m.number)

    def modules_data(self) -> dict[str, Any]:
        """``show module`` VEM rows (NX-OS keys, specs/cli-output.md)."""
        rows = ModuleShowRows()
        for m in self._sorted():
            rows.add(
                m.number,
                ports=self._ports(m),
                modtype="Virtual Ethernet Module",
                model="NA",
                status=m.status.value,
                sw=m.version,
                hw=m.host_os,
                srvip=m.host_ip,
                srvuuid=m.host_uuid,
                srvname=m.host_name,
            )
        return rows.data()

    def counters_data(self) -> dict[str, Any]:
        """``show module vem counters``."""
        rows = [
            {
                "module": m.number,
                "host_name": m.host_name,
                "status": m.status.value,
                "hb_sent": m.hb_sent,
                "hb_received": m.hb_received,
                "hb_recv": m.hb_received,  # the CLI's key (views.VemCounterRow)
                "hb_missed": m.hb_missed,
                "config_pushes": m.config_pushes,
                "attaches": m.attaches,
                "last_attach": _wall_str(m.last_attach_wall),
            }
            for m in self._sorted()
        ]
        return {"TABLE_vem_counters": {"ROW_vem_counters": rows}, "table": dict(self.counters)}

    def neighbors_data(self, now: float) -> dict[str, Any]:
        """``show svs neighbors``: the VEMs attached to this VSM (status ``ok``)."""
        rows = [
            {
                "src_mac": m.vem_mac,
                "type": "VEM",
                "node_id": m.number,
                "addr": f"{m.addr[0]}:{m.addr[1]}" if m.addr else "",
                "host_name": m.host_name,
                "last_learnt_s": round(now - m.last_heard, 1)
                if math.isfinite(m.last_heard)
                else None,
            }
            for m in self._sorted()
            if m.status is ModuleStatus.OK and m.vem_mac
        ]
        return {"TABLE_neighbor": {"ROW_neighbor": rows}}

    def _reports(self) -> list[tuple[Module, VemLacpReport]]:
        return [
            (m, m.lacp)
            for m in self._sorted()
            if m.lacp is not None and m.status is not ModuleStatus.OFFLINE
        ]

    def port_channels_data(self) -> dict[str, Any]:
        """``show port-channel summary``: every module's port-channels (rows carry the module)."""
        rows = [r for m, rep in self._reports() for r in summary_rows(rep.channels, m.number)]
        return {"TABLE_channel": {"ROW_channel": rows}}

    def lacp_neighbors_data(self) -> dict[str, Any]:
        rows = [r for m, rep in self._reports() for r in neighbor_rows(rep.channels, m.number)]
        return {"TABLE_lacp_neighbor": {"ROW_lacp_neighbor": rows}}

    def lacp_counters_data(self) -> dict[str, Any]:
        rows = [r for m, rep in self._reports() for r in counter_rows(rep.channels, m.number)]
        return {"TABLE_lacp_counters": {"ROW_lacp_counters": rows}}

    def errors_data(self) -> dict[str, Any]:
        """Configuration and datapath errors each VEM reported last."""
        rows = [
            {"module": m.number, "host_name": m.host_name, "backend": rep.backend, "error": e}
            for m, rep in self._reports()
            for e in rep.errors
        ]
        return {"TABLE_vem_error": {"ROW_vem_error": rows}}

    def interfaces_data(self) -> dict[str, Any]:
        """``show interface virtual``: vEth, module, owner VM, port profile, status."""
        by_host = {m.host_uuid: m for m in self.modules.values()}
        rows = []
        for veth in sorted(self.veths.values(), key=lambda v: v.number):
            mod = by_host.get(veth.host_uuid)
            up = veth.status == "up" and mod is not None and mod.status is not ModuleStatus.OFFLINE
            rows.append(
                {
                    "interface": veth.name,
                    "module": mod.number if mod else 0,
                    "owner": veth.vm,
                    "port_profile": veth.port_profile,
                    "mac": veth.mac,
                    "status": "up" if up else "down",
                    "port": veth.port,
                }
            )
        return {"TABLE_vif": {"ROW_vif": rows}}


def _wall_str(t: float) -> str:
    if not t:
        return ""
    return display_time(t)
