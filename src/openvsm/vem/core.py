"""Sans-IO core of the VEM agent: attach, heartbeats, switch, headless (DESIGN §5).

Frames and time go in; effects come out as data (``Send``, ``ApplyDatapath``,
``Trace``). No sockets, no clock, no asyncio: the agent (``vem.agent``) and
the simulator (``vem.sim``) own those, and tests drive a fake clock.

Theory of operation (seed, "VSM-VEM Communication Loss")::

    BOOTING ──ack──> ATTACHED ──switch request (epoch >= highest)──> SWITCHING
       ^               │  │                                            │   │
       │               │  └──no heartbeat for headless_after──┐        │   │
       │               │                                      v        │   │
       │               └──VemDetach from the active──> HEADLESS <──────┘   │
       │                                                  │   (no ack)     │
       └───────────── (never returns) ATTACHED <──ack─────┴────────ack─────┘

- BOOTING: send ``VemAttach`` to every VSM address known, every heartbeat
  interval, until an active accepts (``VemAttachAck(accepted=True)``).
- ATTACHED: heartbeat the active every interval; heartbeats from any other
  VSM are ignored (counted) -- the VEM stays with its original active -- but
  a ``SwitchRequest`` from another VSM makes it detach and attach to that VSM.
  An accepted ``VemAttachAck`` the VEM does not take -- from another VSM
  (it took one of the attaches sent to every VSM while booting or headless,
  after another answered first) or of a stale epoch -- is answered with
  ``VemDetach``, so that VSM does not list the module attached until its
  loss time (nor count it for a split-brain resolution).
- SWITCHING: attaching to the VSM that asked; other VSMs are ignored
  (an accepted ack from another is answered with ``VemDetach`` too).
- HEADLESS: no heartbeat from our VSM for ``headless_after`` (seed: ~15 s).
  The VEM keeps its ports and datapath state untouched and attaches to any
  active it can reach (``VemAttach`` to every known address, and at once to
  any VSM it hears from).

Fencing: every frame header carries the sender's epoch. A ``SwitchRequest``
or ``VemAttachAck`` from an epoch lower than the highest the VEM accepted is
ignored and counted (``stale_epoch``), and so is any frame of an epoch below
the last accepted from that VSM.

Freshness (issue 12 point 2, ``openvsm.wire.freshness``): per VSM (system
MAC, vemmgr boot id) a high-water mark of ``seq`` with a small reorder
window: a duplicate, a replay, or a frame from before the first one heard of
that boot is dropped and counted (``replayed``; ``epoch_limit`` for an epoch
beyond the bound), and changes nothing. A new vemmgr boot is accepted. Every
attach carries a fresh random ``nonce`` (one per attach round, sent to each
target); an ack must echo a nonce this VEM sent and has not yet seen answered
(each target answers once), else it is dropped and counted
(``unsolicited_acks``): a captured ack replayed later never attaches the VEM,
to an old VSM or epoch or otherwise. The VEM's own frames carry its
``boot_id`` (random per agent start) in attaches and heartbeats.

Configuration: attach acks and ``ConfigDelta`` carry a msgpack
``VemConfigSnapshot``; with the attached vEth ports it becomes a
``DesiredState`` (``desired_state``), applied only when it changes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from openvsm.config import VemConfig
from openvsm.errors import ImpossibleTransition, LocalProtocolError
from openvsm.macs import is_mac
from openvsm.vem.model import DesiredState, PortChannelState, VemConfigSnapshot, VethState
from openvsm.wire.codec import Frame
from openvsm.wire.freshness import FreshnessFilter, OutstandingRequests, new_nonce
from openvsm.wire.messages import (
    ConfigDelta,
    Message,
    SenderRole,
    SwitchRequest,
    VemAttach,
    VemAttachAck,
    VemDetach,
    VemHeartbeat,
    VemPortEvent,
    VethPort,
)

Addr = tuple[str, int]


# ---- effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    addr: Addr
    msg: Message


@dataclass(frozen=True, slots=True)
class ApplyDatapath:
    desired: DesiredState


@dataclass(frozen=True, slots=True)
class Trace:
    text: str


Effect = Send | ApplyDatapath | Trace


class VemState(enum.Enum):
    BOOTING = "booting"
    ATTACHED = "attached"
    SWITCHING = "switching"
    HEADLESS = "headless"


_TRANSITIONS: dict[VemState, frozenset[VemState]] = {
    VemState.BOOTING: frozenset({VemState.ATTACHED, VemState.SWITCHING}),
    VemState.ATTACHED: frozenset({VemState.SWITCHING, VemState.HEADLESS}),
    VemState.SWITCHING: frozenset({VemState.ATTACHED, VemState.SWITCHING, VemState.HEADLESS}),
    VemState.HEADLESS: frozenset({VemState.ATTACHED, VemState.SWITCHING}),
}


_COUNTERS = (
    "frames_in",
    "replayed",
    "epoch_limit",
    "unsolicited_acks",
    "stale_epoch",
    "bad_role",
    "heartbeats_sent",
    "heartbeats_received",
    "foreign_heartbeats_ignored",
    "attach_sent",
    "attach_accepted",
    "attach_refused",
    "acks_ignored",
    "stray_acks_detached",
    "switch_requests",
    "switch_requests_ignored",
    "switches",
    "config_applied",
    "config_ignored",
    "bad_config",
    "detach_received",
    "headless_events",
)


_valid_mac = is_mac


def port_channels(
    snapshot: VemConfigSnapshot, uplinks: tuple[tuple[str, str], ...]
) -> tuple[tuple[PortChannelState, ...], list[str]]:
    """Uplinks (device, port profile) whose profile has a channel-group -> port-channels.

    An uplink named twice keeps its first profile (the second is an error: it is
    already in another channel-group); a profile naming VLANs that are not
    configured is an error (those VLANs are left out). Member limits are the
    backend's (``lacp.validate``).
    """
    profiles = {p.name: p for p in snapshot.port_profiles}
    vlans = set(snapshot.vlans)
    errors: list[str] = []
    seen: dict[str, str] = {}
    groups: dict[int, list[str]] = {}
    modes: dict[int, str] = {}
    trunks: dict[int, tuple[int, ...]] = {}
    for device, name in uplinks:
        if device in seen:
            errors.append(
                f"uplink {device}: already in port profile {seen[device]!r}; "
                f"{name!r} ignored (an uplink belongs to one channel-group)"
            )
            continue
        seen[device] = name
        prof = profiles.get(name)
        if prof is None:
            errors.append(f"uplink {device}: port profile {name!r} is not known")
            continue
        if not prof.uplink:
            errors.append(f"uplink {device}: port profile {name!r} is not type ethernet")
            continue
        allowed = prof.allowed_vlans if prof.mode == "trunk" else (prof.access_vlan,)
        missing = sorted(set(allowed) - vlans)
        if missing:
            errors.append(f"uplink {device}: VLANs {missing} of {name!r} are not configured")
        if not prof.channel_group:
            continue
        n = prof.channel_group
        if n in modes and modes[n] != prof.lacp_mode:
            errors.append(
                f"uplink {device}: channel-group {n} mode {prof.lacp_mode or 'on'!r} differs "
                f"from {modes[n] or 'on'!r}; {device} left out"
            )
            continue
        modes[n] = prof.lacp_mode
        groups.setdefault(n, []).append(device)
        wanted = tuple(sorted(v for v in set(allowed) if v in vlans)) if allowed else ()
        trunks[n] = tuple(sorted(set(trunks.get(n, ())) | set(wanted)))
    channels = tuple(
        PortChannelState(
            number=n, members=tuple(groups[n]), lacp_mode=modes[n], trunk_vlans=trunks[n]
        )
        for n in sorted(groups)
    )
    return channels, errors


def desired_state(
    snapshot: VemConfigSnapshot,
    ports: list[VethPort],
    local_vtep: str = "",
    uplinks: tuple[tuple[str, str], ...] = (),
) -> tuple[DesiredState, list[str]]:
    """Turn the VSM's configuration and the attached ports into datapath state.

    Returns the state and the configuration errors found (a port whose
    profile, VLAN or bridge domain is unknown is kept but does not forward).
    """
    profiles = {p.name: p for p in snapshot.port_profiles}
    vlans = set(snapshot.vlans)
    domains = {d.name: d for d in snapshot.bridge_domains}
    errors: list[str] = []
    out: list[VethState] = []
    vnis: set[int] = set()
    for port in ports:
        prof = profiles.get(port.port_profile)
        if prof is None:
            errors.append(f"{port.name}: port profile {port.port_profile!r} is not known")
            out.append(
                VethState(
                    name=port.name,
                    vm=port.vm,
                    mac=port.mac,
                    port_profile=port.port_profile,
                    access_vlan=0,
                    enabled=False,
                )
            )
            continue
        access_vlan = 0
        trunk: tuple[int, ...] = ()
        vni = 0
        if prof.bridge_domain:
            bd = domains.get(prof.bridge_domain)
            if bd is None:
                errors.append(f"{port.name}: bridge domain {prof.bridge_domain!r} is not known")
            else:
                vni = bd.segment_id
                vnis.add(vni)
        elif prof.mode == "trunk":
            allowed = prof.allowed_vlans or tuple(sorted(vlans))
            trunk = tuple(sorted(v for v in set(allowed) if v in vlans))
            missing = sorted(set(allowed) - vlans)
            if missing:
                errors.append(f"{port.name}: VLANs {missing} of the trunk are not configured")
        elif prof.access_vlan in vlans:
            access_vlan = prof.access_vlan
        else:
            errors.append(f"{port.name}: access VLAN {prof.access_vlan} is not configured")
        out.append(
            VethState(
                name=port.name,
                vm=port.vm,
                mac=port.mac,
                port_profile=port.port_profile,
                mode=prof.mode,
                access_vlan=access_vlan,
                trunk_vlans=trunk,
                vni=vni,
                enabled=prof.enabled,
                max_macs=prof.max_macs,
            )
        )
    channels, pc_errors = port_channels(snapshot, uplinks)
    errors += pc_errors
    desired = DesiredState(
        ports=tuple(out),
        port_channels=channels,
        vxlan_peers=tuple(v for v in snapshot.vteps if v != local_vtep) if vnis else (),
        vnis=tuple(sorted(vnis)),
        local_vtep=local_vtep if vnis else "",
    )
    return desired, errors


@dataclass
class _Timers:
    next_attach: float = math.inf
    next_heartbeat: float = math.inf
    last_heard: float = 0.0  # last heartbeat / ack from our VSM


@dataclass
class VemCore:
    """The protocol state of one VEM; see the module docstring."""

    host_uuid: str
    host_name: str
    host_ip: str
    vsms: tuple[Addr, ...]
    heartbeat_interval: float = 1.0
    headless_after: float = 15.0
    version: str = "openvsm"
    host_os: str = "linux"
    uplinks: tuple[tuple[str, str], ...] = ()  # (device, uplink port profile)
    state: VemState = VemState.BOOTING
    module: int = 0
    highest_epoch: int = 0
    active_addr: Addr | None = None
    active_mac: str = ""
    active_epoch: int = 0
    switch_target: Addr | None = None
    config: VemConfigSnapshot = field(default_factory=VemConfigSnapshot)
    config_seq: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    boot_id: int = field(default_factory=new_nonce)  # this agent's boot (random per start)
    nonces: Callable[[], int] = new_nonce  # attach nonces (tests pass a deterministic one)
    _ports: dict[str, VethPort] = field(default_factory=dict)
    _known: list[Addr] = field(default_factory=list)
    _last_epoch: dict[str, int] = field(default_factory=dict)
    _fresh: FreshnessFilter = field(default_factory=lambda: FreshnessFilter(epoch_step=None))
    _attaches: OutstandingRequests = field(default_factory=lambda: OutstandingRequests(keep=16))
    _timers: _Timers = field(default_factory=_Timers)
    _applied: DesiredState | None = None
    _last_refusal: str = ""
    _next_port: int = 1
    # Ports changed while not attached are not reported one by one; the VSM
    # learns the list from the attach -- but the ack may answer an attach sent
    # before the change. Names in any attach since the last ack, and whether
    # the list changed meanwhile: then the accepted ack is followed by a
    # VemPortEvent with the current list.
    _sent_names: set[str] = field(default_factory=set)
    _ports_changed: bool = False
    _attach_round: bool = False  # an attach was sent since the last accepted ack
    config_errors: list[str] = field(default_factory=list)

    @classmethod
    def from_config(
        cls, cfg: VemConfig, *, version: str = "openvsm", host_os: str = "linux"
    ) -> VemCore:
        return cls(
            host_uuid=cfg.host_uuid,
            host_name=cfg.host_name,
            host_ip=cfg.host_ip,
            vsms=tuple(v.addr for v in cfg.vsms),
            heartbeat_interval=cfg.heartbeat_interval,
            headless_after=cfg.headless_after,
            uplinks=tuple((u.device, u.port_profile) for u in cfg.uplinks),
            version=version,
            host_os=host_os,
        )

    def __post_init__(self) -> None:
        for addr in self.vsms:
            if addr not in self._known:
                self._known.append(addr)

    # ---- inputs ---------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Boot: apply the ports we hold and start attaching."""
        effects = self._recompute()
        self._timers.last_heard = now
        effects += self._send_attach(now, "boot")
        return effects

    def next_deadline(self) -> float:
        t = self._timers
        deadline = min(t.next_attach, t.next_heartbeat)
        if self.state in (VemState.ATTACHED, VemState.SWITCHING):
            deadline = min(deadline, t.last_heard + self.headless_after)
        return deadline

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        t = self._timers
        if (
            self.state in (VemState.ATTACHED, VemState.SWITCHING)
            and now >= t.last_heard + self.headless_after
        ):
            effects += self._go_headless(
                now, f"no heartbeat from the VSM for {self.headless_after:g} s"
            )
        if self.state is VemState.ATTACHED and now >= t.next_heartbeat:
            effects.append(self._heartbeat())
            t.next_heartbeat = _next(t.next_heartbeat, now, self.heartbeat_interval)
        if self.state is not VemState.ATTACHED and now >= t.next_attach:
            reason = {VemState.SWITCHING: "switch", VemState.HEADLESS: "headless"}.get(
                self.state, "boot"
            )
            effects += self._send_attach(now, reason)
        return effects

    def on_frame(self, frame: Frame, src: Addr, now: float) -> list[Effect]:
        self.counters["frames_in"] += 1
        if frame.role is SenderRole.VEM:
            self.counters["bad_role"] += 1
            return []
        if frame.epoch < self._last_epoch.get(frame.mac, 0):
            self.counters["stale_epoch"] += 1
            return []
        refused = self._fresh.check(frame)
        if refused is not None:
            self.counters["replayed" if refused == "replay" else refused] += 1
            return []
        self._last_epoch[frame.mac] = frame.epoch
        msg = frame.msg
        if isinstance(msg, VemHeartbeat):
            return self._on_heartbeat(frame, src, now)
        if isinstance(msg, VemAttachAck):
            return self._on_ack(frame, msg, src, now)
        if isinstance(msg, SwitchRequest):
            return self._on_switch_request(frame, src, now)
        if isinstance(msg, ConfigDelta):
            return self._on_config_delta(frame, msg)
        if isinstance(msg, VemDetach):
            return self._on_detach(frame, msg, now)
        self.counters["bad_role"] += 1  # a VSM<->VSM message sent to a VEM
        return []

    # ---- ports (local API) ----------------------------------------------------

    def attach_port(
        self, vm: str, port_profile: str, mac: str, name: str | None = None
    ) -> tuple[str, list[Effect]]:
        mac = mac.lower()
        if not _valid_mac(mac):
            raise LocalProtocolError(f"invalid MAC address {mac!r}")
        if not vm or not port_profile:
            raise LocalProtocolError("a port needs a VM name and a port profile")
        if name is None:
            while f"vnet{self._next_port}" in self._ports:
                self._next_port += 1
            name = f"vnet{self._next_port}"
            self._next_port += 1
        if name in self._ports:
            raise LocalProtocolError(f"port {name} already exists")
        port = VethPort(name=name, vm=vm, mac=mac, port_profile=port_profile)
        self._ports[name] = port
        effects = self._recompute()
        if self.state is VemState.ATTACHED and self.active_addr is not None:
            effects.append(
                Send(
                    self.active_addr,
                    VemPortEvent(host_uuid=self.host_uuid, attached=[port], detached=[]),
                )
            )
        else:
            self._ports_changed = True
        return name, effects

    def detach_port(self, name: str) -> list[Effect]:
        if name not in self._ports:
            raise LocalProtocolError(f"no port {name}")
        del self._ports[name]
        effects = self._recompute()
        if self.state is VemState.ATTACHED and self.active_addr is not None:
            effects.append(
                Send(
                    self.active_addr,
                    VemPortEvent(host_uuid=self.host_uuid, attached=[], detached=[name]),
                )
            )
        else:
            self._ports_changed = True
        return effects

    def restore_ports(self, ports: list[VethPort]) -> None:
        """Ports the host already had (agent restart); call before ``start``."""
        for port in ports:
            self._ports[port.name] = port

    @property
    def ports(self) -> list[VethPort]:
        return list(self._ports.values())

    @property
    def applied(self) -> DesiredState | None:
        return self._applied

    @property
    def known_vsms(self) -> list[Addr]:
        return list(self._known)

    def status(self) -> dict[str, object]:
        return {
            "host_uuid": self.host_uuid,
            "host_name": self.host_name,
            "state": self.state.value,
            "headless": self.state is VemState.HEADLESS,
            "module": self.module,
            "active": _fmt(self.active_addr) if self.state is VemState.ATTACHED else None,
            "active_mac": self.active_mac if self.state is VemState.ATTACHED else "",
            "epoch": self.highest_epoch,
            "config_seq": self.config_seq,
            "ports": len(self._ports),
            "vsms": [_fmt(a) for a in self._known],
            "counters": dict(self.counters),
        }

    # ---- message handlers -----------------------------------------------------

    def _is_active(self, frame: Frame) -> bool:
        return self.state is VemState.ATTACHED and frame.mac == self.active_mac

    def _learn(self, src: Addr) -> None:
        if src not in self._known:
            self._known.append(src)

    def _on_heartbeat(self, frame: Frame, src: Addr, now: float) -> list[Effect]:
        if self._is_active(frame):
            self.counters["heartbeats_received"] += 1
            self._timers.last_heard = now
            self.active_addr = src
            return []
        self.counters["foreign_heartbeats_ignored"] += 1
        self._learn(src)
        if (
            self.state in (VemState.BOOTING, VemState.HEADLESS)
            and frame.epoch >= self.highest_epoch
        ):
            # Headless (or booting): attach to any active we can reach, now.
            reason = "headless" if self.state is VemState.HEADLESS else "boot"
            self.counters["attach_sent"] += 1
            return [Send(src, self._attach_msg(reason, 1))]
        return []

    def _on_ack(self, frame: Frame, msg: VemAttachAck, src: Addr, now: float) -> list[Effect]:
        if msg.host_uuid != self.host_uuid:
            self.counters["acks_ignored"] += 1
            return []
        if not self._attaches.answered(msg.nonce):
            # Not the answer to an attach this VEM sent (or answered already):
            # a replayed capture, or forged. Nothing changes, nothing is sent.
            self.counters["unsolicited_acks"] += 1
            return []
        if frame.epoch < self.highest_epoch:
            self.counters["stale_epoch"] += 1
            stale = f"epoch {frame.epoch} is stale"
            ignored: list[Effect] = [Trace(f"attach ack from {_fmt(src)} ignored: {stale}")]
            if msg.accepted and not self._is_active(frame):
                ignored.append(self._stray_detach(src, stale))
            return ignored
        if self._is_active(frame) and msg.accepted:
            # The active re-acknowledged (e.g. its vemmgr restarted): take its config.
            self._timers.last_heard = now
            self.module = msg.module or self.module
            return self._take_config(msg.config, msg.config_seq)
        accepting = self.state in (VemState.BOOTING, VemState.HEADLESS) or (
            self.state is VemState.SWITCHING and src == self.switch_target
        )
        if not accepting:
            self.counters["acks_ignored"] += 1
            if msg.accepted:
                # That VSM took an attach this VEM sent to every VSM (booting,
                # headless) and now lists it attached: tell it we are not.
                where = self.active_addr if self.state is VemState.ATTACHED else None
                return [self._stray_detach(src, f"attached to {_fmt(where or self.switch_target)}")]
            return []
        if not msg.accepted:
            self.counters["attach_refused"] += 1
            if msg.reason != self._last_refusal:
                self._last_refusal = msg.reason
                return [Trace(f"attach refused by {_fmt(src)}: {msg.reason}")]
            return []
        previous = self.state
        self._move(VemState.ATTACHED)
        self._last_refusal = ""
        self.counters["attach_accepted"] += 1
        self.active_addr = src
        self.active_mac = frame.mac
        self.active_epoch = frame.epoch
        self.highest_epoch = max(self.highest_epoch, frame.epoch)
        self.module = msg.module
        self.switch_target = None
        t = self._timers
        t.last_heard = now
        t.next_attach = math.inf
        t.next_heartbeat = now + self.heartbeat_interval
        effects: list[Effect] = [
            Trace(
                f"attached to {_fmt(src)} ({frame.mac}, epoch {frame.epoch}) as module "
                f"{msg.module} after {previous.value}"
            )
        ]
        effects += self._take_config(msg.config, msg.config_seq)
        effects.append(self._heartbeat())
        if self._ports_changed:
            # Ports changed while attaching: the VSM may hold an older list.
            effects.append(
                Send(
                    src,
                    VemPortEvent(
                        host_uuid=self.host_uuid,
                        attached=list(self._ports.values()),
                        detached=sorted(self._sent_names - set(self._ports)),
                    ),
                )
            )
        self._sent_names.clear()
        self._ports_changed = False
        self._attach_round = False
        return effects

    def _on_switch_request(self, frame: Frame, src: Addr, now: float) -> list[Effect]:
        self.counters["switch_requests"] += 1
        self._learn(src)
        if frame.epoch < self.highest_epoch:
            self.counters["stale_epoch"] += 1
            self.counters["switch_requests_ignored"] += 1
            return [
                Trace(
                    f"switch request from {_fmt(src)} ignored: epoch {frame.epoch} < "
                    f"{self.highest_epoch}"
                )
            ]
        if self._is_active(frame):
            self.highest_epoch = max(self.highest_epoch, frame.epoch)
            self.counters["switch_requests_ignored"] += 1
            return []
        effects: list[Effect] = []
        if self.state is VemState.ATTACHED and self.active_addr is not None:
            effects.append(
                Send(
                    self.active_addr,
                    VemDetach(host_uuid=self.host_uuid, reason=f"switch to {_fmt(src)}"),
                )
            )
        effects.append(
            Trace(
                f"switch request from {_fmt(src)} ({frame.mac}, epoch {frame.epoch}): "
                f"{self.state.value} -> switching"
            )
        )
        self._move(VemState.SWITCHING)
        self.counters["switches"] += 1
        self.highest_epoch = max(self.highest_epoch, frame.epoch)
        self.switch_target = src
        self.active_addr = None
        self.active_mac = ""
        self._timers.last_heard = now
        self._timers.next_heartbeat = math.inf
        effects += self._send_attach(now, "switch")
        return effects

    def _on_config_delta(self, frame: Frame, msg: ConfigDelta) -> list[Effect]:
        if not self._is_active(frame):
            self.counters["config_ignored"] += 1
            return []
        return self._take_config(msg.config, msg.config_seq)

    def _on_detach(self, frame: Frame, msg: VemDetach, now: float) -> list[Effect]:
        if not self._is_active(frame) or msg.host_uuid != self.host_uuid:
            self.counters["acks_ignored"] += 1
            return []
        self.counters["detach_received"] += 1
        return self._go_headless(now, f"detached by the VSM: {msg.reason}")

    # ---- helpers --------------------------------------------------------------

    def _move(self, new: VemState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise ImpossibleTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    def _go_headless(self, now: float, why: str) -> list[Effect]:
        self._move(VemState.HEADLESS)
        self.counters["headless_events"] += 1
        self.active_addr = None
        self.active_mac = ""
        self.switch_target = None
        self._timers.next_heartbeat = math.inf
        effects: list[Effect] = [Trace(f"headless: {why}; keeping {len(self._ports)} ports")]
        effects += self._send_attach(now, "headless")
        return effects

    def _stray_detach(self, src: Addr, reason: str) -> Send:
        """The answer to an accepted attach ack this VEM does not take."""
        self.counters["stray_acks_detached"] += 1
        return Send(src, VemDetach(host_uuid=self.host_uuid, reason=reason))

    def _attach_msg(self, reason: str, targets: int) -> VemAttach:
        """An attach with a fresh nonce, which each of ``targets`` may answer once."""
        nonce = self.nonces()
        self._attaches.sent(nonce, targets)
        if not self._attach_round:  # this attach carries the current list
            self._attach_round = True
            self._ports_changed = False
            self._sent_names.clear()
        self._sent_names.update(self._ports)
        return VemAttach(
            host_uuid=self.host_uuid,
            host_name=self.host_name,
            host_ip=self.host_ip,
            version=self.version,
            host_os=self.host_os,
            config_seq=self.config_seq,
            ports=list(self._ports.values()),
            reason=reason,
            uplink_profiles=sorted({p for _, p in self.uplinks}),
            module=self.module,
            boot_id=self.boot_id,
            nonce=nonce,
        )

    def _send_attach(self, now: float, reason: str) -> list[Effect]:
        targets = (
            [self.switch_target]
            if self.state is VemState.SWITCHING and self.switch_target is not None
            else list(self._known)
        )
        msg = self._attach_msg(reason, len(targets))
        self.counters["attach_sent"] += len(targets)
        self._timers.next_attach = now + self.heartbeat_interval
        return [Send(addr, msg) for addr in targets]

    def _heartbeat(self) -> Send:
        assert self.active_addr is not None
        self.counters["heartbeats_sent"] += 1
        return Send(
            self.active_addr,
            VemHeartbeat(
                host_uuid=self.host_uuid,
                module=self.module,
                config_seq=self.config_seq,
                ports=len(self._ports),
                headless=False,
                status="ok",
                boot_id=self.boot_id,
            ),
        )

    def _take_config(self, raw: bytes, seq: int) -> list[Effect]:
        try:
            snapshot = msgspec.msgpack.decode(raw, type=VemConfigSnapshot) if raw else None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counters["bad_config"] += 1
            return [Trace(f"configuration from the VSM rejected: {str(exc)[:80]}")]
        self.counters["config_applied"] += 1
        if snapshot is not None:
            self.config = snapshot
        self.config_seq = seq
        return self._recompute()

    def _recompute(self) -> list[Effect]:
        desired, errors = desired_state(
            self.config, list(self._ports.values()), self.host_ip, self.uplinks
        )
        self.config_errors = errors
        if desired == self._applied:
            return []
        self._applied = desired
        effects: list[Effect] = [Trace(f"config error: {e}") for e in errors]
        effects.append(ApplyDatapath(desired))
        return effects


def _next(deadline: float, now: float, interval: float) -> float:
    nxt = deadline + interval
    return nxt if nxt > now else now + interval


def _fmt(addr: Addr | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr is not None else ""
