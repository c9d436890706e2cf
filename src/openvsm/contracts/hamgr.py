"""hamgr's IPC API (``RUNDIR/hamgr.sock``): requests, replies and topics."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from openvsm.contracts.base import Ok, Reply, Request, Topic

HaStateName = Literal["initializing", "active", "standby", "reloading"]
SyncStateName = Literal["none", "cold", "warm", "hot"]


class HaStatus(Reply, frozen=True, kw_only=True):
    """hamgr's status (op ``status`` and every event of the topic ``status``)."""

    state: HaStateName = "initializing"
    role: str = ""  # primary | secondary
    epoch: int = 0
    peer_present: bool = False
    # The active lost its standby (heartbeats stopped) and has not heard it again.
    peer_lost: bool = False
    peer_state: str = ""
    internal_state: str = ""
    degraded: bool = False
    # A split-brain resolution is pending: the mgmt service neither takes nor
    # announces the shared management address until it ends.
    split_brain: bool = False
    peer_control: str | None = None  # "ip:port"
    switch_seq: int = 0  # role changes of this boot
    # The engine's incarnation: kept across a stateful hamgr restart, new after
    # a node reload or a rediscovery.
    boot_id: int = 0
    # This hamgr process: new at every restart; cfgmgr re-tells a new instance
    # the facts and the sync state.
    instance: int = 0
    # Split-brain resolution inputs as hamgr holds them (DESIGN §3).
    module_count: int = 0
    last_config_time: float = 0.0


class Status(Request[HaStatus], frozen=True, kw_only=True):
    """hamgr's status now."""

    op = "status"
    reply = HaStatus


class RedundancyStatus(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``show system redundancy status`` (keys of specs/cli-output.md, plus
    ``peer_collisions`` [{mac, latest_collision_time}] and ``peer_overwrites``)."""

    op = "redundancy_status"
    reply = dict[str, Any]


class Switchover(Request[Ok], frozen=True, kw_only=True):
    """Hand over to the standby (cfgmgr is fenced first); refused with an error."""

    op = "switchover"
    reply = Ok


class Reload(Request[Ok], frozen=True, kw_only=True):
    """Reload this node (cfgmgr is fenced first)."""

    op = "reload"
    reply = Ok
    reason: str = ""  # why (sysmgr: a service crash-looped); for the log only


class SetFacts(Request[Ok], frozen=True, kw_only=True):
    """cfgmgr's split-brain resolution inputs; each one only when given."""

    op = "set_facts"
    reply = Ok
    module_count: int | UnsetType = UNSET
    last_config_time: float | UnsetType = UNSET
    change_seq: int | UnsetType = UNSET


class SetModuleCount(Request[Ok], frozen=True, kw_only=True):
    """vemmgr's count of attached (``ok``) modules, a split-brain input."""

    op = "set_module_count"
    reply = Ok
    count: int


class SyncState(Request[Ok], frozen=True, kw_only=True):
    """cfgmgr's sync stream state. A standby reports "none" while reconnecting,
    "cold" while loading a snapshot; ``out_of_sync``: the sender's buffer
    overflowed, the standby will be reset."""

    op = "sync_state"
    reply = Ok
    state: SyncStateName
    out_of_sync: bool = False


class SyncReset(Request[Ok], frozen=True, kw_only=True):
    """The standby's sync TCP was closed or reset by the peer's kernel (the
    crash fast path); ``hot``: that stream had reached streaming."""

    op = "sync_reset"
    reply = Ok
    reason: Literal["rst", "eof"]
    hot: bool = False


class Trace(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``show system internal redundancy trace``: {TABLE_trace: {ROW_trace: [...]}}."""

    op = "trace"
    reply = dict[str, Any]


class Counters(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``show system internal redundancy counters`` (drop_replay,
    drop_epoch_limit, drop_epoch_jump, drop_unsolicited, ...)."""

    op = "counters"
    reply = dict[str, Any]


class Metrics(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``HamgrMetrics`` builtins (openvsm.observe.export), answered from memory;
    ``recent`` adds the last heartbeat gap samples."""

    op = "metrics"
    reply = dict[str, Any]
    recent: bool = False


class ClearPeerMac(Request[Ok], frozen=True, kw_only=True):
    """Forget the learnt peer MAC addresses."""

    op = "clear_peer_mac"
    reply = Ok


class ActiveActive(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``show system redundancy activeactive ...``."""

    op = "activeactive"
    reply = dict[str, Any]
    which: str


class ClearActiveActive(Request[dict[str, Any]], frozen=True, kw_only=True):
    """``clear system redundancy activeactive ...``."""

    op = "clear_activeactive"
    reply = dict[str, Any]
    which: str


REQUESTS: tuple[type[Request[Any]], ...] = (
    Status,
    RedundancyStatus,
    Switchover,
    Reload,
    SetFacts,
    SetModuleCount,
    SyncState,
    SyncReset,
    Trace,
    Counters,
    Metrics,
    ClearPeerMac,
    ActiveActive,
    ClearActiveActive,
)
TOPICS = (
    Topic("status", HaStatus, "HaStatus on every change (the first item: the status now)"),
    Topic(
        "sync",
        None,
        "no events: cfgmgr's lease, held while it runs; its end means cfgmgr's stream is down",
    ),
)
