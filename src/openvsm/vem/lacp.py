"""LACP member selection for one port-channel (sans-IO): the part OVS lacks.

Open vSwitch negotiates LACP, hashes flows over the members of a bond and
fails over within the bond, but it bundles *every* member whose partner is in
sync: it has no notion of "at most 8 active, up to 8 hot-standby". This
module adds that selection (seed, Network-Level High Availability: up to 16
interfaces in an LACP port-channel, at most 8 active and at most 8 standby).

Inputs, all data: the configured members (name, LACP port number, LACP port
priority) and, on every ``update(now, statuses)``, what the datapath sees
(link up/down or unknown, LACP partner in sync, partner info, PDU counters).
Output: a ``Selection`` — which members go into the OVS bond (``active``) and
which are *held down* (``standby``: removed from the bond and admin-down, so
the partner sees them go; OVS cannot tell the partner "not aggregating" on
its own) — plus data for ``show port-channel summary``, ``show lacp
neighbor`` and ``show lacp counters``.

Theory of operation. Members are ranked by (port priority, port number),
lower first, as an IEEE 802.1AX partner with the higher system priority
would. A member is a *candidate* when its link is up, when we hold it as
standby (its link cannot be observed while admin-down; it is presumed
ready), or when it was released less than ``promote_timeout`` seconds ago
and its link may still be coming up. The best 8 candidates are active, the
next 8 hot-standby; other members are down (left admin-up, out of the bond,
so their link is watched and they rejoin when it returns). When an active
member fails it stops being a candidate, so the best standby moves up: it is
released (admin-up, added to the bond) and must show link within
``promote_timeout`` or it is marked failed and the next one is promoted.
Selection is deterministic (no stickiness), so a recovered better member
displaces the worst active, which goes back to standby.

Member states (``MemberState``): BUNDLED (P), HOT_STANDBY (H), DOWN (D),
SUSPENDED (s: selected, link up, partner not in sync yet). Static
port-channels (no LACP) take at most 8 members and never hold any down.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openvsm.wire.messages import LacpMemberInfo, PortChannelInfo

MAX_MEMBERS = 16
MAX_ACTIVE = 8
MAX_STANDBY = 8
MAX_STATIC = 8
DEFAULT_PORT_PRIORITY = 32768
LACP_MODES = ("", "active", "passive")


class LacpConfigError(ValueError):
    """The port-channel configuration cannot be applied (caller's fault)."""


class MemberState(enum.Enum):
    BUNDLED = "P"
    HOT_STANDBY = "H"
    DOWN = "D"
    SUSPENDED = "s"


@dataclass(frozen=True)
class MemberConfig:
    name: str
    port_number: int
    priority: int = DEFAULT_PORT_PRIORITY


@dataclass(frozen=True)
class PartnerInfo:
    """The LACP partner of one member, as the datapath reports it."""

    system_id: str = ""  # partner system MAC
    system_priority: int = 0
    port_number: int = 0
    port_priority: int = 0
    key: int = 0
    state: str = ""  # e.g. "activity timeout aggregation synchronized collecting distributing"


@dataclass(frozen=True)
class LacpCounters:
    pdus_sent: int = 0
    pdus_received: int = 0
    pdus_errors: int = 0
    markers_sent: int = 0
    markers_received: int = 0


@dataclass(frozen=True)
class MemberStatus:
    """What the datapath sees of one member. ``link_up=None``: unknown (held down)."""

    name: str
    link_up: bool | None = None
    lacp_current: bool = False
    partner: PartnerInfo | None = None
    counters: LacpCounters = LacpCounters()


@dataclass(frozen=True)
class Selection:
    """Members to put in the OVS bond (``active``) and to hold down (``standby``)."""

    active: tuple[str, ...]
    standby: tuple[str, ...]
    down: tuple[str, ...]
    promoted: tuple[str, ...] = ()  # released from standby in this update
    demoted: tuple[str, ...] = ()  # moved from active to standby in this update


@dataclass
class _Member:
    config: MemberConfig
    state: MemberState = MemberState.HOT_STANDBY
    held: bool = True  # we hold it admin-down (initially: nothing released yet)
    released_at: float | None = None
    failed: bool = False
    status: MemberStatus = field(default_factory=lambda: MemberStatus(name=""))
    last_change: float = 0.0


def member_configs(
    members: Sequence[str], priorities: Sequence[tuple[str, int]] = ()
) -> list[MemberConfig]:
    """Configs from a PortChannelState: port number = position + 1 in config order."""
    prio = dict(priorities)
    return [
        MemberConfig(name=m, port_number=i + 1, priority=prio.get(m, DEFAULT_PORT_PRIORITY))
        for i, m in enumerate(members)
    ]


def validate(members: Sequence[MemberConfig], lacp_mode: str) -> None:
    """Raise LacpConfigError for a configuration that must not be applied."""
    if lacp_mode not in LACP_MODES:
        raise LacpConfigError(f"LACP mode {lacp_mode!r} is invalid (active | passive | static)")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise LacpConfigError(f"duplicate member interfaces in {names}")
    limit = MAX_MEMBERS if lacp_mode else MAX_STATIC
    if len(members) > limit:
        kind = "an LACP" if lacp_mode else "a static"
        raise LacpConfigError(
            f"{len(members)} members configured; {kind} port-channel takes at most {limit}"
        )
    numbers = [m.port_number for m in members]
    if len(set(numbers)) != len(numbers):
        raise LacpConfigError(f"duplicate LACP port numbers {numbers}")
    for m in members:
        if not 1 <= m.port_number <= 65535:
            raise LacpConfigError(f"{m.name}: LACP port number {m.port_number} out of range")
        if not 0 <= m.priority <= 65535:
            raise LacpConfigError(f"{m.name}: LACP port priority {m.priority} out of range")


class PortChannelSelector:
    """8-active / 8-standby selection for one port-channel; driven by ``update``."""

    def __init__(
        self,
        number: int,
        members: Sequence[MemberConfig],
        lacp_mode: str = "active",
        promote_timeout: float = 3.0,
    ) -> None:
        validate(members, lacp_mode)
        self.number = number
        self.lacp_mode = lacp_mode
        self.promote_timeout = promote_timeout
        self._members = {m.name: _Member(config=m) for m in members}
        self.promotions = 0
        self.demotions = 0
        self.selection = Selection(active=(), standby=(), down=())

    @property
    def members(self) -> tuple[MemberConfig, ...]:
        return tuple(m.config for m in self._members.values())

    def _rank(self, m: _Member) -> tuple[int, int]:
        return (m.config.priority, m.config.port_number)

    def _candidate(self, m: _Member, now: float) -> bool:
        link = m.status.link_up
        if link:
            m.failed = False
            m.released_at = None  # came up: no longer on probation
            return True
        if m.held:
            return not m.failed
        if m.released_at is not None and now - m.released_at < self.promote_timeout:
            return not m.failed  # just released: link may still be coming up
        if m.released_at is not None:
            m.failed = True  # released, never came up: skip it until its link shows
        return False

    def update(self, now: float, statuses: Mapping[str, MemberStatus]) -> Selection:
        """Feed the datapath's view; return the members to enable and to hold down."""
        for name, m in self._members.items():
            status = statuses.get(name)
            m.status = status if status is not None else MemberStatus(name=name)
            if m.held:
                # Our own admin-down hides the link; what the datapath says is not news.
                m.status = MemberStatus(
                    name=name, link_up=None, partner=None, counters=m.status.counters
                )
        ranked = sorted(
            (m for m in self._members.values() if self._candidate(m, now)), key=self._rank
        )
        max_active = MAX_ACTIVE if self.lacp_mode else MAX_STATIC
        active = ranked[:max_active]
        standby = ranked[max_active : max_active + MAX_STANDBY] if self.lacp_mode else []
        active_names = {m.config.name for m in active}
        standby_names = {m.config.name for m in standby}
        promoted: list[str] = []
        demoted: list[str] = []
        for name, m in self._members.items():
            before = m.state
            if name in active_names:
                if m.held:
                    m.held = False
                    m.released_at = now
                    if before is MemberState.HOT_STANDBY and self.selection.active:
                        promoted.append(name)
                        self.promotions += 1
                link_ok = bool(m.status.link_up)
                if link_ok and (m.status.lacp_current or not self.lacp_mode):
                    m.state = MemberState.BUNDLED
                elif link_ok:
                    m.state = MemberState.SUSPENDED
                else:
                    m.state = MemberState.DOWN
            elif name in standby_names:
                if not m.held:
                    m.held = True
                    m.released_at = None
                    if before in (MemberState.BUNDLED, MemberState.SUSPENDED):
                        demoted.append(name)
                        self.demotions += 1
                m.state = MemberState.HOT_STANDBY
            else:
                if m.held:  # a held member that failed earlier: release it to watch its link
                    m.held = False
                    m.released_at = None
                m.state = MemberState.DOWN
            if m.state is not before:
                m.last_change = now
        order = sorted(self._members.values(), key=self._rank)
        self.selection = Selection(
            active=tuple(m.config.name for m in order if m.config.name in active_names),
            standby=tuple(m.config.name for m in order if m.held),
            down=tuple(
                m.config.name for m in order if not m.held and m.config.name not in active_names
            ),
            promoted=tuple(promoted),
            demoted=tuple(demoted),
        )
        return self.selection

    def state(self, name: str) -> MemberState:
        return self._members[name].state

    # -- show data (renderers turn these into NX-OS text) --

    def summary(self) -> dict[str, Any]:
        """One ROW_channel of ``show port-channel summary``."""
        up = any(m.state is MemberState.BUNDLED for m in self._members.values())
        return {
            "group": self.number,
            "port-channel": f"port-channel{self.number}",
            "layer": "S",
            "status": "SU" if up else "SD",
            "type": "Eth",
            "prtcl": "LACP" if self.lacp_mode else "NONE",
            "TABLE_member": {
                "ROW_member": [
                    {"port": m.config.name, "port-status": m.state.value}
                    for m in self._members.values()
                ]
            },
        }

    def neighbors(self) -> dict[str, Any]:
        """``show lacp neighbor`` rows for this channel."""
        rows = []
        for m in self._members.values():
            p = m.status.partner
            rows.append(
                {
                    "port": m.config.name,
                    "port-state": m.state.value,
                    "partner-system-id": f"{p.system_priority},{p.system_id}" if p else "",
                    "partner-port-num": p.port_number if p else 0,
                    "partner-port-priority": p.port_priority if p else 0,
                    "partner-oper-key": p.key if p else 0,
                    "partner-state": p.state if p else "",
                    "age": 0,
                }
            )
        return {"group": self.number, "TABLE_interface": {"ROW_interface": rows}}

    def counters(self) -> dict[str, Any]:
        """``show lacp counters`` rows for this channel."""
        rows = []
        for m in self._members.values():
            c = m.status.counters
            rows.append(
                {
                    "port": m.config.name,
                    "lacpdus-sent": c.pdus_sent,
                    "lacpdus-received": c.pdus_received,
                    "markers-sent": c.markers_sent,
                    "markers-received": c.markers_received,
                    "lacpdus-errors": c.pdus_errors,
                }
            )
        return {
            "group": self.number,
            "promotions": self.promotions,
            "demotions": self.demotions,
            "TABLE_interface": {"ROW_interface": rows},
        }


class ReportPacer:
    """When a VEM sends its port-channel report (``VemLacpReport``), sans-IO.

    At once when what it would say changed (the report, the active's address
    or epoch: ``key``), else every ``interval`` seconds so the VSM's copy stays
    fresh; nothing while not attached (``reset``: the next report goes at once).
    The adapter asks ``due`` at each datapath poll and calls ``sent``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._key: object = None
        self._last = -float("inf")

    def due(self, key: object, now: float) -> bool:
        return key != self._key or now >= self.next_deadline()

    def sent(self, key: object, now: float) -> None:
        self._key, self._last = key, now

    def reset(self) -> None:
        self._key = None

    def next_deadline(self) -> float:
        """When the unchanged report is due again."""
        return self._last + self.interval


# -- reports (VEM -> VSM) and the VSM's show rows (openvsm.cli.views shapes) -------

_STATE_BITS = {
    "activity": 0x01,
    "timeout": 0x02,
    "aggregation": 0x04,
    "synchronized": 0x08,
    "collecting": 0x10,
    "distributing": 0x20,
    "defaulted": 0x40,
    "expired": 0x80,
}


def state_bits(words: str) -> int:
    """OVS's partner state words ("activity timeout aggregation ...") as 802.1AX bits."""
    return sum(_STATE_BITS.get(w, 0) for w in words.split())


def channel_info(sel: PortChannelSelector) -> PortChannelInfo:
    """What a VEM reports of one port-channel (``VemLacpReport``)."""
    members = []
    for m in sel._members.values():
        p = m.status.partner
        c = m.status.counters
        mac = p.system_id.replace(":", "-") if p else ""
        members.append(
            LacpMemberInfo(
                port=m.config.name,
                status=m.state.value,
                partner_system_id=f"{p.system_priority},{mac}" if p and mac else "",
                partner_port_number=p.port_number if p else 0,
                partner_port_priority=p.port_priority if p else 0,
                partner_oper_key=p.key if p else 0,
                partner_port_state=state_bits(p.state) if p else 0,
                lacpdus_sent=c.pdus_sent,
                lacpdus_recv=c.pdus_received,
                markers_sent=c.markers_sent,
                markers_recv=c.markers_received,
                pkts_err=c.pdus_errors,
            )
        )
    up = any(m.state is MemberState.BUNDLED for m in sel._members.values())
    return PortChannelInfo(
        group=sel.number,
        status="U" if up else "D",
        protocol="LACP" if sel.lacp_mode else "NONE",
        lacp_mode=sel.lacp_mode,
        members=members,
        promotions=sel.promotions,
    )


def _with_module(row: dict[str, Any], module: int | None) -> dict[str, Any]:
    if module is not None:
        row["module"] = module
    return row


def summary_rows(channels: Sequence[PortChannelInfo], module: int | None = None) -> list[Any]:
    """``show port-channel summary`` ROW_channel rows."""
    return [
        _with_module(
            {
                "group": ch.group,
                "port_channel": f"port-channel{ch.group}",
                "layer": "S",
                "status": ch.status,
                "type": "Eth",
                "prtcl": ch.protocol,
                "TABLE_member": {
                    "ROW_member": [{"port": m.port, "port_status": m.status} for m in ch.members]
                },
            },
            module,
        )
        for ch in channels
    ]


def neighbor_rows(channels: Sequence[PortChannelInfo], module: int | None = None) -> list[Any]:
    """``show lacp neighbor`` ROW_lacp_neighbor rows (LACP channels only)."""
    rows = []
    for ch in channels:
        if ch.protocol != "LACP":
            continue
        for m in ch.members:
            bits = m.partner_port_state
            flags = ("F" if bits & 0x02 else "S") + ("A" if bits & 0x01 else "P")
            rows.append(
                _with_module(
                    {
                        "port_channel": f"port-channel{ch.group}",
                        "port": m.port,
                        "partner_system_id": m.partner_system_id,
                        "partner_port_number": f"{m.partner_port_number:#x}",
                        "age_s": 0,
                        "flags": flags if m.partner_system_id else "",
                        "partner_port_priority": m.partner_port_priority,
                        "partner_oper_key": f"{m.partner_oper_key:#x}",
                        "partner_port_state": f"{bits:#x}",
                    },
                    module,
                )
            )
    return rows


def counter_rows(channels: Sequence[PortChannelInfo], module: int | None = None) -> list[Any]:
    """``show lacp counters`` ROW_lacp_counters rows (LACP channels only)."""
    return [
        _with_module(
            {
                "port_channel": f"port-channel{ch.group}",
                "port": m.port,
                "lacpdus_sent": m.lacpdus_sent,
                "lacpdus_recv": m.lacpdus_recv,
                "markers_sent": m.markers_sent,
                "markers_recv": m.markers_recv,
                "pkts_err": m.pkts_err,
            },
            module,
        )
        for ch in channels
        if ch.protocol == "LACP"
        for m in ch.members
    ]
