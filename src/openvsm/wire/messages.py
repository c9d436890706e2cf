"""Typed messages of the VSM<->VSM and VSM<->VEM protocols (DESIGN §2).

Every message is an immutable msgspec Struct. The frame header (see
``codec``) carries the message type number, the sender's role, system MAC,
epoch and sequence number, so payloads carry only what is specific to them.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec


class SenderRole(enum.IntEnum):
    PRIMARY = 1
    SECONDARY = 2
    VEM = 3


class Flag(enum.IntFlag):
    """Control flags carried in heartbeats (seed: "control flags requesting action")."""

    NONE = 0
    RESET_REQUESTED = 1  # standby asks the active to reset it (one-way recovery)
    RESET_ORDERED = 2  # active tells the standby to reload and resync
    SWITCHOVER = 4  # active hands over: the standby becomes active
    DEGRADED = 8  # sender sees the control interface as degraded
    GOING_DOWN = 16  # sender is about to reload
    OUT_OF_SYNC = 32  # active marked this standby out of sync (buffer overflow)


class Discovery(msgspec.Struct, frozen=True, kw_only=True):
    """Broadcast by a booting VSM; also answered by an active so it is found."""

    state: str  # "initializing" | "active" | "standby"
    boot_id: int
    reply: bool = False


class HeardVsm(msgspec.Struct, frozen=True, kw_only=True):
    """A VSM of the receiver's role that the sender heard and that is not the
    receiver: relayed role collision (unknown MAC, or a duplicate boot of the
    receiver's MAC)."""

    mac: str
    age_ms: int = 0  # how long before sending it was last heard


class HeartbeatRequest(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    flags: int = 0
    change_seq: int = 0
    boot_id: int = 0
    heard: tuple[HeardVsm, ...] = ()  # relayed collisions (at most 8, about once a second)
    peer_boot: int = 0  # boot id of the standby this active last heard (two-way proof)


class HeartbeatResponse(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    flags: int = 0
    applied_seq: int = 0
    echo_seq: int = 0  # sequence number of the request this answers
    boot_id: int = 0
    peer_present: bool = True  # whether the responder believes it is the active's standby
    heard: tuple[HeardVsm, ...] = ()  # relayed collisions (at most 8, about once a second)
    peer_boot: int = 0  # boot id of the active whose request this answers (two-way proof)


class LivenessProbe(msgspec.Struct, frozen=True, kw_only=True):
    """Crash fast path: the standby asks "are you alive?" after a sync reset."""

    nonce: int


class LivenessAck(msgspec.Struct, frozen=True, kw_only=True):
    nonce: int
    state: str


class ResolutionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Exchanged by two actives that hear each other (split-brain resolution)."""

    module_count: int
    last_config_time: float  # wall-clock seconds of the last configuration change
    last_active_time: float  # wall-clock seconds of the last standby->active switch
    boot_id: int
    change_seq: int = 0


class AccountingEntry(msgspec.Struct, frozen=True, kw_only=True):
    time: float
    user: str
    command: str
    result: str
    seq: int = 0


class ResolutionLogs(msgspec.Struct, frozen=True, kw_only=True):
    """Sent by the split-brain loser to the winner before it reloads.

    ``nonce``: fresh per exchange (the engine's); the winner's ack echoes it."""

    accounting: list[AccountingEntry]
    traces: list[str]
    discarded: list[AccountingEntry]
    nonce: int


class ResolutionLogsAck(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    nonce: int  # the ResolutionLogs' nonce


class VethPort(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # e.g. "vethernet-3-1" as the VEM knows it; VSM assigns "Vethernet<N>"
    vm: str
    mac: str
    port_profile: str
    state: str = "up"


class VemAttach(msgspec.Struct, frozen=True, kw_only=True):
    host_uuid: str
    host_name: str
    host_ip: str
    version: str
    host_os: str
    config_seq: int
    ports: list[VethPort]
    reason: str = "boot"  # "boot" | "switch" | "headless"
    # The module number this host had: a VSM whose store lacks the host (it took
    # over before its bulk sync finished) keeps the number instead of renumbering.
    module: int = 0
    uplink_profiles: list[str] = []  # port profiles of the host's uplinks (type ethernet)
    # Freshness (issue 12 point 2): the agent's boot (its frames' window) and a
    # fresh random nonce per attach round that the ack must echo (0: an old VEM).
    boot_id: int = 0
    nonce: int = 0


class VemAttachAck(msgspec.Struct, frozen=True, kw_only=True):
    host_uuid: str
    accepted: bool
    module: int = 0
    reason: str = ""
    config: bytes = b""  # msgpack of the VEM's configuration snapshot
    config_seq: int = 0
    nonce: int = 0  # the attach's nonce, echoed: a VEM takes no ack of an attach it did not send
    boot_id: int = 0  # vemmgr's boot (the window of its frames at the VEM)


class VemDetach(msgspec.Struct, frozen=True, kw_only=True):
    host_uuid: str
    reason: str


class VemHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Both directions: VSM->VEM carries config_seq; VEM->VSM carries its state."""

    host_uuid: str
    module: int = 0
    config_seq: int = 0
    ports: int = 0
    headless: bool = False
    status: str = "ok"
    boot_id: int = 0  # the sender's boot (VEM agent or vemmgr)


class VemPortEvent(msgspec.Struct, frozen=True, kw_only=True):
    host_uuid: str
    attached: list[VethPort]
    detached: list[str]


class SwitchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Broadcast by a new active to all known VEMs (seed: "request to switch")."""

    vsm_addr: str  # ip:port where the new active serves VEMs
    boot_id: int = 0  # vemmgr's boot


class ConfigDelta(msgspec.Struct, frozen=True, kw_only=True):
    config_seq: int
    config: bytes  # msgpack of the full VEM configuration (small per VEM)


class LacpMemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One member of a port-channel as the VEM sees it (LACP partner and counters)."""

    port: str  # uplink device
    status: str  # P (bundled) | H (hot-standby) | D (down) | s (suspended)
    partner_system_id: str = ""  # "32768,00-23-04-ee-be-01"
    partner_port_number: int = 0
    partner_port_priority: int = 0
    partner_oper_key: int = 0
    partner_port_state: int = 0  # IEEE 802.1AX state bits
    lacpdus_sent: int = 0
    lacpdus_recv: int = 0
    markers_sent: int = 0
    markers_recv: int = 0
    pkts_err: int = 0


class PortChannelInfo(msgspec.Struct, frozen=True, kw_only=True):
    group: int
    status: str  # U (up: a member bundled) | D
    protocol: str  # LACP | NONE
    lacp_mode: str = ""  # active | passive | "" (static)
    members: list[LacpMemberInfo] = []
    promotions: int = 0


class VemLacpReport(msgspec.Struct, frozen=True, kw_only=True):
    """VEM -> active VSM, on change and periodically: port-channels, LACP, datapath errors."""

    host_uuid: str
    channels: list[PortChannelInfo] = []
    errors: list[str] = []  # configuration and datapath errors (empty when all applied)
    backend: str = ""


Message = (
    Discovery
    | HeartbeatRequest
    | HeartbeatResponse
    | LivenessProbe
    | LivenessAck
    | ResolutionInfo
    | ResolutionLogs
    | ResolutionLogsAck
    | VemAttach
    | VemAttachAck
    | VemDetach
    | VemHeartbeat
    | VemPortEvent
    | SwitchRequest
    | ConfigDelta
    | VemLacpReport
)

# Type numbers on the wire. Never renumber: add new ones at the end.
MESSAGE_TYPES: Final[dict[int, type[msgspec.Struct]]] = {
    1: Discovery,
    2: HeartbeatRequest,
    3: HeartbeatResponse,
    4: LivenessProbe,
    5: LivenessAck,
    6: ResolutionInfo,
    7: ResolutionLogs,
    8: ResolutionLogsAck,
    20: VemAttach,
    21: VemAttachAck,
    22: VemDetach,
    23: VemHeartbeat,
    24: VemPortEvent,
    25: SwitchRequest,
    26: ConfigDelta,
    27: VemLacpReport,
}
TYPE_NUMBERS: Final[dict[type[msgspec.Struct], int]] = {v: k for k, v in MESSAGE_TYPES.items()}
